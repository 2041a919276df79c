--
-- describe: phi3_describe over rows as jsonb.
--
CREATE TABLE gadgets (id int, name text, category text, price numeric, description text);
INSERT INTO gadgets VALUES
  (1, 'Desk lamp', 'home', 19.99, NULL),
  (2, 'Fountain pen', 'office', 45.00, NULL);

-- keep the answers short
SET phi3.max_tokens = 24;

SELECT id, phi3_describe(to_jsonb(g) - 'id') FROM gadgets g ORDER BY id;
SELECT id, phi3_describe(to_jsonb(g) - 'id', 'playful social media post') FROM gadgets g WHERE id = 1;

-- the prompt (prompts.c): the item as jsonb_pretty without null fields;
-- the answer budget is phi3.max_tokens
SELECT phi3_describe(to_jsonb(g) - 'id') = btrim(phi3_generate(
         E'Write a product description for the following item. Use only facts from the data. Reply with the description only.\n\n'
         || jsonb_pretty(jsonb_strip_nulls(to_jsonb(g) - 'id')),
         'You are a copywriter. You write accurate, appealing texts and never invent facts.'), E' \t\n\r\f') AS same_as_generate
FROM gadgets g WHERE id = 1;
SELECT phi3_describe(to_jsonb(g) - 'id', 'playful social media post') = btrim(phi3_generate(
         E'Write a playful social media post product description for the following item. Use only facts from the data. Reply with the description only.\n\n'
         || jsonb_pretty(jsonb_strip_nulls(to_jsonb(g) - 'id')),
         'You are a copywriter. You write accurate, appealing texts and never invent facts.'), E' \t\n\r\f') AS style_same_as_generate
FROM gadgets g WHERE id = 1;

-- null fields are left out of the prompt: they do not change the text
SELECT phi3_describe('{"name": "Desk lamp", "category": "home", "price": 19.99, "description": null}')
     = phi3_describe('{"name": "Desk lamp", "category": "home", "price": 19.99}') AS nulls_ignored;
-- NULL style is the default style, as is an empty one
SELECT phi3_describe('{"name": "Desk lamp"}', NULL) = phi3_describe('{"name": "Desk lamp"}', '') AS default_style;
-- the description is trimmed
SELECT d = btrim(d, E' \t\n\r') AS trimmed FROM phi3_describe('{"name": "Desk lamp"}') AS d;

-- nothing to describe: NULL gives NULL, an item without facts gives ''
SELECT phi3_describe(NULL) IS NULL AS null_item;
SELECT phi3_describe('{}') = '' AS empty_object,
       phi3_describe('null') = '' AS json_null,
       phi3_describe('{"description": null}') = '' AS only_nulls;
-- any jsonb is accepted: a scalar or an array is described too
SELECT length(phi3_describe('"a red bicycle"')) > 0 AS scalar_ok,
       length(phi3_describe('["pen", "ink"]')) > 0 AS array_ok;
