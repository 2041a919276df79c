--
-- json_schema: phi3_generate(..., json_schema => ...) decodes under the
-- schema, so the answer always parses and matches it, even on a
-- random-weights model; when max_tokens runs out first the document is
-- closed the shortest valid way (with a NOTICE); a schema the engine does
-- not support is an error naming the keyword and its path, before any
-- token is generated.
--
\set person '{"type": "object", "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120}, "tags": {"type": "array", "items": {"enum": ["vip", "new", "late"]}, "maxItems": 3}, "email": {"type": ["string", "null"]}}, "required": ["name", "age", "tags"]}'
CREATE TEMP TABLE answers AS
SELECT i, phi3_generate('Describe customer ' || i || ' as JSON.', max_tokens => 64,
                        json_schema => :'person') AS answer
FROM generate_series(1, 4) AS i;
SELECT i, answer FROM answers ORDER BY i;
-- every answer parses and has what the schema demands
SELECT bool_and(a ? 'name' AND a ? 'age' AND a ? 'tags') AS required_present,
       bool_and(jsonb_typeof(a->'name') = 'string' AND length(a->>'name') <= 12) AS name_ok,
       bool_and(jsonb_typeof(a->'age') = 'number' AND (a->>'age')::numeric BETWEEN 0 AND 120
                AND (a->>'age')::numeric = trunc((a->>'age')::numeric)) AS age_ok,
       bool_and(jsonb_array_length(a->'tags') <= 3 AND
                NOT EXISTS (SELECT 1 FROM jsonb_array_elements_text(a->'tags') t WHERE t NOT IN ('vip', 'new', 'late'))) AS tags_ok,
       bool_and(NOT a ? 'email' OR jsonb_typeof(a->'email') IN ('string', 'null')) AS email_ok,
       bool_and((SELECT count(*) FROM jsonb_object_keys(a) k WHERE k NOT IN ('name', 'age', 'tags', 'email')) = 0) AS no_other_keys
FROM (SELECT answer::jsonb AS a FROM answers) AS s;
-- compact JSON, keys in jsonb's order of the schema's properties (shorter first)
SELECT bool_and(answer ~ '^\{"age":') AS compact_in_order FROM answers;
-- a budget too small: the document is closed the shortest way and still valid
SELECT phi3_generate('Describe a customer.', max_tokens => 3, json_schema => :'person')::jsonb ? 'tags' AS completed;
SELECT phi3_generate('Pick one.', max_tokens => 0, json_schema => '{"enum": ["x", "y"]}') AS budget_0;
-- scalars, enums, formats
SELECT phi3_generate('A number', max_tokens => 8, json_schema => '{"type": "integer", "minimum": 10, "maximum": 20}')::int BETWEEN 10 AND 20 AS int_in_range;
SELECT phi3_generate('A day', max_tokens => 16, json_schema => '{"type": "string", "format": "date"}') ~ '^"\d{4}-\d{2}-\d{2}"$' AS is_date;
-- the same call twice gives the same document (greedy)
SELECT phi3_generate('Describe customer 1 as JSON.', max_tokens => 64, json_schema => :'person')
       = (SELECT answer FROM answers WHERE i = 1) AS deterministic;
-- errors, before anything is generated
SELECT regress_error($$SELECT phi3_generate('x', json_schema => '{"type": "object", "properties": {"a": {"type": "string", "contentEncoding": "base64"}}}')$$);
SELECT regress_error($$SELECT phi3_generate('x', json_schema => '{"type": "array"}')$$);
SELECT regress_error($$SELECT phi3_generate('x', json_schema => '"string"')$$);
SELECT regress_error($$SELECT phi3_generate('x', json_schema => '{"$ref": "#/$defs/a", "$defs": {"a": {"type": "array", "items": {"$ref": "#/$defs/a"}}}}')$$);
