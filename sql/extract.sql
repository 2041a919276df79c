--
-- extract: phi3_extract always returns exactly the schema's keys, each
-- value of the declared type or null; schema errors; and the coercion
-- rules, checked on written answers through phi3_extract_answer (the
-- parsing half of phi3_extract, in phi3_test_hooks.so, a module only the
-- tests install: make install-test-hooks).
--
SET phi3.max_tokens = 48;
CREATE FUNCTION pg_temp.phi3_extract_answer(answer text, schema jsonb) RETURNS jsonb
AS '$libdir/phi3_test_hooks', 'phi3_extract_answer' LANGUAGE C STRICT;
-- the shipped library has no such entry point
SELECT split_part(regress_error($$CREATE FUNCTION pg_temp.no_hook(text, jsonb) RETURNS jsonb AS '$libdir/phi3', 'phi3_extract_answer' LANGUAGE C STRICT$$), ' in file', 1) AS phi3_so;

-- the model's answer, whatever it is, comes back in the schema's shape
\set schema '{"vendor": "text", "total": "numeric", "invoice_no": "integer", "paid": "boolean", "issued": "date"}'
SELECT phi3_extract('Invoice 17 from ACME Corp, issued 2024-03-05, total 99.50 EUR, already paid.', :'schema') AS result \gset
SELECT :'result'::jsonb AS result;
SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'result'::jsonb) AS k) =
       (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(:'schema'::jsonb) AS k) AS same_keys;
SELECT key, jsonb_typeof(value) IN ('null', CASE s.type WHEN 'text' THEN 'string' WHEN 'date' THEN 'string'
                                                         WHEN 'boolean' THEN 'boolean' ELSE 'number' END) AS type_ok
FROM jsonb_each(:'result'::jsonb) JOIN jsonb_each_text(:'schema'::jsonb) AS s(key, type) USING (key) ORDER BY key;

-- an empty document gives every field null without running the model
SELECT phi3_extract('', '{"a": "text", "b": "integer"}');
SELECT phi3_extract(E' \n ', '{"a": "text"}');
-- NULL in, NULL out (STRICT)
SELECT phi3_extract(NULL, '{"a": "text"}') IS NULL AS null_doc, phi3_extract('x', NULL) IS NULL AS null_schema;

-- schema errors, reported before the model runs
SELECT phi3_extract('x', '[]');
SELECT phi3_extract('x', '"text"');
SELECT phi3_extract('x', '{}');
SELECT phi3_extract('x', '{"price": "money"}');
SELECT phi3_extract('x', '{"price": 1}');
SELECT phi3_extract('x', '{"price": {"type": "numeric"}}');
SELECT regress_error($$SELECT phi3_extract('x', '{"a": "float"}')$$);

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
