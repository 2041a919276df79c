--
-- encoding: the engine works in UTF-8; arguments are converted from the
-- server encoding and results back.  In a LATIN1 database a character the
-- model produces that LATIN1 cannot hold becomes "?"; a SQL_ASCII database
-- passes bytes through.  phi3_extract's answers (through the test hook
-- phi3_extract_answer) with \u escapes and non-ASCII text, in keys and
-- values: an escape is the character it names, in every encoding.
--
SELECT current_database() AS regress_db \gset
SELECT phi3_tokenize('Grüße') AS utf8_ids, phi3_generate('Grüße', max_tokens => 8) AS utf8_answer;

CREATE FUNCTION pg_temp.phi3_extract_answer(answer text, schema jsonb) RETURNS jsonb
AS '$libdir/phi3_test_hooks', 'phi3_extract_answer' LANGUAGE C STRICT;
-- schema keys written raw and escaped; answers escaped, raw, and beyond LATIN1
\set schema '{"café": "text", "Gr\\u00f6\\u00dfe": "integer", "name": "text", "note": "text"}'
SELECT pg_temp.phi3_extract_answer('{"caf\u00e9": "cr\u00e8me br\u00fbl\u00e9e", "Gr\u00f6\u00dfe": 42, "name": "M\u00fcller"}', :'schema');
SELECT pg_temp.phi3_extract_answer('{"café": "crème", "Größe": "7", "name": "Zoë"}', :'schema');
SELECT pg_temp.phi3_extract_answer('{"name": "5 \u20ac", "note": "\ud83d\ude00 smile", "\u20ac": 1, "café": "ok"}', :'schema');

CREATE DATABASE regression_phi3_latin1 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;
CREATE DATABASE regression_phi3_sql_ascii ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0;

\c regression_phi3_latin1
SET client_encoding = 'UTF8';
CREATE EXTENSION phi3;
\getenv model_dir PHI3_TEST_MODEL_DIR
\set model :model_dir '/tiny-f32.gguf'
SET phi3.model = :'model';
-- the same ids as in UTF-8: the text reaches the tokenizer as UTF-8
SELECT phi3_tokenize('Grüße'), phi3_detokenize(phi3_tokenize('Grüße')) = 'Grüße' AS round_trip;
-- <0xC3> <0xBC> is ü, which LATIN1 holds
SELECT phi3_detokenize('{198,191}');
-- the UTF-8 answer with the characters LATIN1 lacks replaced
SELECT phi3_generate('Grüße', max_tokens => 8);
SELECT phi3_generate('Hello', max_tokens => 8);

-- phi3_extract in LATIN1: the schema's keys (raw and escaped) come back in LATIN1
\set schema '{"café": "text", "Gr\\u00f6\\u00dfe": "integer", "name": "text", "note": "text"}'
SELECT (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(phi3_extract('Größe: 42, café: crème', :'schema')) AS k) AS keys;
CREATE FUNCTION pg_temp.phi3_extract_answer(answer text, schema jsonb) RETURNS jsonb
AS '$libdir/phi3_test_hooks', 'phi3_extract_answer' LANGUAGE C STRICT;
-- escaped keys match the schema's, escaped values come back in LATIN1
SELECT pg_temp.phi3_extract_answer('{"caf\u00e9": "cr\u00e8me br\u00fbl\u00e9e", "Gr\u00f6\u00dfe": 42, "name": "M\u00fcller"}', :'schema');
-- the same answer written raw (it reaches the parser as UTF-8)
SELECT pg_temp.phi3_extract_answer('{"café": "crème brûlée", "Größe": 42, "name": "Müller"}', :'schema');
-- raw and escaped in one answer; escapes in numbers written as strings
SELECT pg_temp.phi3_extract_answer('{"café": "na\u00efve", "Gr\u00f6\u00dfe": "\u0034\u0032", "name": "Zo\u00eb"}', :'schema');
-- characters LATIN1 lacks: in a value "?" (as in generated text), as a key
-- they match no schema key; the call does not fail
SELECT pg_temp.phi3_extract_answer('{"name": "5 \u20ac", "note": "\ud83d\ude00 smile", "\u20ac": 1, "café": "ok"}', :'schema');
-- ASCII escapes, and an escaped backslash before "u00e9" (no escape)
SELECT pg_temp.phi3_extract_answer('{"n\u0061me": "\u0041BC \"q\" \\ \/", "note": "C:\\u00e9"}', :'schema');
-- what PostgreSQL's JSON parser rejects (\u0000, an unpaired surrogate)
-- makes the answer unparseable: every field null
SELECT pg_temp.phi3_extract_answer('{"name": "a\u0000b", "café": "x"}', :'schema');
SELECT pg_temp.phi3_extract_answer('{"name": "a\ud800b", "café": "x"}', :'schema');
SELECT pg_temp.phi3_extract_answer('{"name": "a\udc00\ud800b", "café": "x"}', :'schema');

\c regression_phi3_sql_ascii
SET client_encoding = 'UTF8';
CREATE EXTENSION phi3;
SET phi3.model = :'model';
SELECT phi3_tokenize('Grüße'), phi3_generate('Grüße', max_tokens => 8);
-- an escape in an answer becomes its UTF-8 bytes, as the model's text does
CREATE FUNCTION pg_temp.phi3_extract_answer(answer text, schema jsonb) RETURNS jsonb
AS '$libdir/phi3_test_hooks', 'phi3_extract_answer' LANGUAGE C STRICT;
SELECT pg_temp.phi3_extract_answer('{"name": "Caf\u00e9 5 \u20ac", "note": "Café"}', '{"name": "text", "note": "text"}');

\c :regress_db
DROP DATABASE regression_phi3_latin1;
DROP DATABASE regression_phi3_sql_ascii;
