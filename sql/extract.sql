--
-- extract: phi3_extract decodes under its schema (short form, JSON Schema
-- or a composite type), so its answer always has the schema's shape and
-- types, even on a random-weights model; schema errors come before any
-- token.  At the end, the lenient parser of the earlier unconstrained
-- extraction, checked on written answers through phi3_extract_answer (in
-- phi3_test_hooks.so, a module only the tests install: make
-- install-test-hooks); phi3_extract itself no longer uses it.
--
SET phi3.max_tokens = 48;
CREATE FUNCTION pg_temp.phi3_extract_answer(answer text, schema jsonb) RETURNS jsonb
AS '$libdir/phi3_test_hooks', 'phi3_extract_answer' LANGUAGE C STRICT;
-- the shipped library has no such entry point
SELECT split_part(regress_error($$CREATE FUNCTION pg_temp.no_hook(text, jsonb) RETURNS jsonb AS '$libdir/phi3', 'phi3_extract_answer' LANGUAGE C STRICT$$), ' in file', 1) AS phi3_so;

-- the old flat short form: decoded under the schema, so every field is
-- there, non-null and of its type, even on a random-weights model
\set schema '{"vendor": "text", "total": "numeric", "invoice_no": "integer", "paid": "boolean", "issued": "date"}'
SELECT phi3_extract('Invoice 17 from ACME Corp, issued 2024-03-05, total 99.50 EUR, already paid.', :'schema') AS result \gset
SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'result'::jsonb) AS k) =
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'schema'::jsonb) AS k) AS same_keys;
SELECT key, jsonb_typeof(value) = CASE s.type WHEN 'text' THEN 'string' WHEN 'date' THEN 'string'
                                               WHEN 'boolean' THEN 'boolean' ELSE 'number' END AS type_ok
FROM jsonb_each(:'result'::jsonb) JOIN jsonb_each_text(:'schema'::jsonb) AS s(key, type) USING (key) ORDER BY key;
SELECT (:'result'::jsonb->>'issued')::date IS NOT NULL AS real_date,
       (:'result'::jsonb->>'invoice_no')::int IS NOT NULL AS fits_integer;
-- the same call twice gives the same document (greedy)
SELECT phi3_extract('Invoice 17 from ACME Corp, issued 2024-03-05, total 99.50 EUR, already paid.', :'schema') = :'result'::jsonb AS deterministic;

-- the extended short form: PostgreSQL type names, arrays, nested
-- objects, enums, and "?" for null
\set schema '{"code": "varchar(4)", "tags": "text[]", "address": {"city": "text", "zip": "integer"}, "mood": ["good", "bad"], "due": "date?", "seen": "timestamptz", "id": "uuid", "n": "bigint", "small": "smallint", "at": "time", "ok": "bool"}'
CREATE TEMP TABLE short_answers AS
SELECT i, phi3_extract('Order ' || i || ' for Berlin, due soon, customer is happy.', :'schema') AS a
FROM generate_series(1, 3) AS i;
SELECT bool_and((SELECT count(*) FROM jsonb_object_keys(a)) = 11) AS all_keys,
       bool_and(jsonb_typeof(a->'code') = 'string' AND length(a->>'code') <= 4) AS varchar_ok,
       bool_and(jsonb_typeof(a->'tags') = 'array' AND
                NOT EXISTS (SELECT 1 FROM jsonb_array_elements(a->'tags') t WHERE jsonb_typeof(t) <> 'string')) AS array_ok,
       bool_and(jsonb_typeof(a->'address'->'city') = 'string' AND (a->'address'->>'zip')::int IS NOT NULL
                AND (SELECT count(*) FROM jsonb_object_keys(a->'address')) = 2) AS nested_ok,
       bool_and(a->>'mood' IN ('good', 'bad')) AS enum_ok,
       bool_and(jsonb_typeof(a->'due') = 'null' OR (a->>'due')::date IS NOT NULL) AS nullable_date_ok,
       bool_and((a->>'seen')::timestamptz IS NOT NULL AND (a->>'id')::uuid IS NOT NULL
                AND (a->>'n')::bigint IS NOT NULL AND (a->>'small')::smallint IS NOT NULL
                AND (a->>'at')::time IS NOT NULL AND jsonb_typeof(a->'ok') = 'boolean') AS types_ok
FROM short_answers;
-- not null where no "?" is written
SELECT bool_and(NOT EXISTS (SELECT 1 FROM jsonb_each(a) e WHERE e.key <> 'due' AND jsonb_typeof(e.value) = 'null')) AS non_null
FROM short_answers;
-- the schema may be text too (and a text column with a literal schema resolves to jsonb)
SELECT pg_typeof(phi3_extract(d, '{"a": "integer"}')) FROM (VALUES ('x'::text)) AS v(d);
SELECT jsonb_typeof(phi3_extract('Seven', '{"a": "integer"}'::text)->'a') AS text_schema;
-- a nullable enum: a null element
SELECT phi3_extract('Weather today', '{"sky": ["sunny", "rainy", null]}')->>'sky' IN ('sunny', 'rainy') IS NOT FALSE AS null_enum_ok;
-- the batch forms decode each row under the schema with its own automaton
-- state, and give what the one-row call gives
SELECT bool_and(b.a = s.a) AS batch_same
FROM (SELECT row_number() OVER () AS i, a
      FROM unnest(phi3_extract_batch(ARRAY(SELECT 'Order ' || i || ' for Berlin, due soon, customer is happy.'
                                           FROM generate_series(1, 3) AS i), :'schema')) AS a) AS b
JOIN short_answers AS s USING (i);

-- JSON Schema, as phi3_generate's json_schema takes it (descriptions are shown to the model)
\set js '{"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$", "description": "the article number"}, "qty": {"type": "integer", "minimum": 1, "maximum": 9}, "gift": {"type": ["boolean", "null"]}}, "required": ["sku", "qty"]}'
SELECT phi3_extract('Two boxes of ABC-12, not a gift.', :'js') AS a \gset
SELECT (:'a'::jsonb->>'sku') ~ '^[A-Z]{3}-[0-9]{2}$' AS pattern_ok,
       (:'a'::jsonb->>'qty')::int BETWEEN 1 AND 9 AS bounds_ok,
       NOT :'a'::jsonb ? 'gift' OR jsonb_typeof(:'a'::jsonb->'gift') IN ('boolean', 'null') AS optional_ok;
SELECT phi3_extract('Pick', '{"type": "string", "enum": ["a", "b"]}') IN ('"a"', '"b"') AS scalar_root;
-- without a JSON Schema marker ($schema, a JSON type, $ref, anyOf, oneOf) it is the short form: a field "enum"
SELECT phi3_extract('Pick', '{"enum": ["a", "b"]}')->>'enum' IN ('a', 'b') AS short_form_enum_field;

-- a composite type: a typed row, every column valid for its type
CREATE TYPE pg_temp.address AS (city text, zip int);
CREATE DOMAIN pg_temp.short_code AS varchar(3);
CREATE TYPE pg_temp.mood AS ENUM ('calm', 'angry');
CREATE TYPE pg_temp.facts AS (customer text, amount numeric(6,2), due date, code pg_temp.short_code,
                              place pg_temp.address, tags text[], mood pg_temp.mood, ratio real, at timestamptz);
SELECT (f).customer IS NOT NULL AS customer_set, pg_typeof((f).amount) AS amount_type,
       (f).amount BETWEEN -9999.99 AND 9999.99 AS amount_fits, (f).due IS NOT NULL AS due_set,
       length((f).code) <= 3 AS domain_ok, ((f).place).zip IS NOT NULL AS nested_ok,
       pg_typeof((f).tags) AS tags_type, (f).mood IN ('calm', 'angry') AS enum_ok,
       (f).ratio IS NOT NULL AS real_ok, (f).at IS NOT NULL AS timestamptz_ok
FROM (SELECT phi3_extract('ACME owes 12.50 by 2024-05-01 in Berlin.', NULL::pg_temp.facts) AS f) AS s;
-- empty document: a row of nulls; NULL document: NULL
SELECT phi3_extract('', NULL::pg_temp.facts) IS NOT DISTINCT FROM ROW(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)::pg_temp.facts AS blank_row,
       phi3_extract(NULL, NULL::pg_temp.facts) IS NULL AS null_doc;
-- the UPDATE recipe
CREATE TYPE pg_temp.invoice_facts AS (customer text, amount numeric(10,2), due date);
CREATE TEMP TABLE invoices (id int PRIMARY KEY, body text, customer text, amount numeric(10,2), due date);
INSERT INTO invoices VALUES (1, 'ACME Corp owes 12.50 EUR, due 2024-05-01.', NULL, NULL, NULL),
                            (2, 'Globex: 99 EUR, payable by 2024-06-30.', NULL, NULL, NULL);
UPDATE invoices SET (customer, amount, due) =
       (SELECT customer, amount, due FROM phi3_extract(body, NULL::pg_temp.invoice_facts));
SELECT id, customer IS NOT NULL AS customer_set, amount IS NOT NULL AS amount_set, due IS NOT NULL AS due_set
FROM invoices ORDER BY id;
-- the same as the jsonb form under the type's shape
SELECT (SELECT customer FROM phi3_extract(body, NULL::pg_temp.invoice_facts)) = customer AS same_as_update
FROM invoices WHERE id = 1;

-- an empty document gives every field null without running the model
SELECT phi3_extract('', '{"a": "text", "b": "integer"}');
SELECT phi3_extract(E' \n ', '{"a": "text"}');
SELECT phi3_extract('', '{"type": "object", "properties": {"x": {"type": "string"}}}') AS json_schema_blank,
       phi3_extract('', '{"type": "string"}') AS scalar_blank;
-- a call site keeps its last compiled schema; a schema that changes from row to row is recompiled
SELECT i, phi3_extract('', jsonb_build_object('f' || (i % 2), 'date')) FROM generate_series(1, 4) AS i;
SELECT i, phi3_extract(CASE WHEN i = 2 THEN 'doc' ELSE '' END, jsonb_build_object('f', CASE WHEN i < 3 THEN 'date' ELSE 'nosuch' END))
FROM generate_series(1, 3) AS i;
-- NULL in, NULL out (STRICT)
SELECT phi3_extract(NULL, '{"a": "text"}') IS NULL AS null_doc, phi3_extract('x', NULL::jsonb) IS NULL AS null_schema;

-- schema errors, reported before the model runs (an empty document does
-- not hide them)
SELECT phi3_extract('x', '[]');
SELECT phi3_extract('x', '"text"');
SELECT phi3_extract('x', '{}');
SELECT phi3_extract('', '{"price": "money"}');
SELECT phi3_extract('', '{"price": "nosuch"}');
SELECT phi3_extract('', '{"price": "numeric; drop table x"}');
SELECT phi3_extract('', '{"price": {"net": "numeric(2000)"}}');
SELECT phi3_extract('', '{"price": 1}');
SELECT phi3_extract('', '{"a": {"b": {}}}');
SELECT phi3_extract('', '{"mood": [1, 2]}');
SELECT phi3_extract('', '{"mood": [null]}');
SELECT regress_error($$SELECT phi3_extract('x', '{"a": "float"}')$$) AS float_ok;
-- JSON Schema errors name the keyword and its path
SELECT regress_error($$SELECT phi3_extract('', '{"type": "object", "properties": {"a": {"type": "string", "contentEncoding": "base64"}}}')$$);
SELECT regress_error($$SELECT phi3_extract('', '{"address": {"type": "object", "properties": {"zip": {"type": "integer", "multipleOf": 5}}}}')$$);
-- invalid
SELECT regress_error($$SELECT phi3_extract('', '{"type": "array"}')$$);
SELECT regress_error($$SELECT phi3_extract('', '{"type": "string", "pattern": "(a"}')$$);
-- too large
SELECT regress_error(format($$SELECT phi3_extract('', %L)$$,
       jsonb_build_object('big', (SELECT jsonb_agg(md5(i::text)) FROM generate_series(1, 5000) AS i))));
SELECT regress_error(format($$SELECT phi3_extract('', %L)$$, repeat('{"a": ', 40) || '"text"' || repeat('}', 40)));
-- a target that is not a composite type
SELECT regress_error($$SELECT phi3_extract('x', NULL::int)$$);
SELECT regress_error($$SELECT phi3_extract('x', NULL::money)$$);

-- coercion of written answers
\set schema '{"name": "text", "price": "numeric", "qty": "integer", "ok": "boolean", "day": "date"}'
SELECT pg_temp.phi3_extract_answer('{"name": "Lamp", "price": 19.99, "qty": 3, "ok": true, "day": "2024-02-29"}', :'schema');
-- text around the object, markdown fences, and strings holding values
SELECT pg_temp.phi3_extract_answer(E'Sure! Here it is:\n```json\n{"name": "Lamp", "price": "19.99", "qty": "3", "ok": "yes", "day": " 2024-02-29 "}\n```\nAnything else?', :'schema');
-- only the first balanced object counts; braces inside strings do not
SELECT pg_temp.phi3_extract_answer('{"name": "a {curly} name", "qty": 1} {"name": "second"}', :'schema');
-- numbers and booleans as text; whole numbers written with zeros
SELECT pg_temp.phi3_extract_answer('{"name": 42, "qty": 7.00, "ok": false, "price": -1.5e3}', :'schema');
-- values that do not fit their type become null
SELECT pg_temp.phi3_extract_answer('{"name": null, "price": "about 20", "qty": 2.5, "ok": "maybe", "day": "2023-02-29"}', :'schema');
SELECT pg_temp.phi3_extract_answer('{"qty": 99999999999999999999, "price": 1e99999, "day": "03/05/2024", "ok": 2}', :'schema');
SELECT pg_temp.phi3_extract_answer('{"price": "NaN", "qty": "-0", "day": "0000-01-01"}', :'schema');
-- nested values are not scalars: null
SELECT pg_temp.phi3_extract_answer('{"name": {"first": "A"}, "qty": [1, 2], "price": 3}', :'schema');
-- keys: unknown keys are ignored, a later duplicate wins, case is a fallback
SELECT pg_temp.phi3_extract_answer('{"color": "red", "qty": 1, "qty": 2, "NAME": "upper", "Price": 5, "price": 6}', :'schema');
-- escapes and unicode in strings
SELECT pg_temp.phi3_extract_answer('{"name": "Caf\u00e9 \"Zur Post\"\nKöln"}', :'schema');
-- no object, an unfinished object, invalid JSON: every field null
SELECT pg_temp.phi3_extract_answer('I cannot help with that.', :'schema');
SELECT pg_temp.phi3_extract_answer('{"name": "Lamp", "qty": 3', :'schema');
SELECT pg_temp.phi3_extract_answer('{"name": "Lamp", qty: 3}', :'schema');
SELECT pg_temp.phi3_extract_answer('{"name": "deep", "x": ' || repeat('[', 100) || repeat(']', 100) || '}', :'schema');
