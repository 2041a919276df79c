--
-- encoding: the engine works in UTF-8; arguments are converted from the
-- server encoding and results back.  In a LATIN1 database a character the
-- model produces that LATIN1 cannot hold becomes "?"; a SQL_ASCII database
-- passes bytes through.
--
SELECT current_database() AS regress_db \gset
SELECT phi3_tokenize('Grüße') AS utf8_ids, phi3_generate('Grüße', max_tokens => 8) AS utf8_answer;

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

\c regression_phi3_sql_ascii
SET client_encoding = 'UTF8';
CREATE EXTENSION phi3;
SET phi3.model = :'model';
SELECT phi3_tokenize('Grüße'), phi3_generate('Grüße', max_tokens => 8);

\c :regress_db
DROP DATABASE regression_phi3_latin1;
DROP DATABASE regression_phi3_sql_ascii;
