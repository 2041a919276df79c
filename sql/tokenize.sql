--
-- tokenize: phi3_tokenize, phi3_detokenize, phi3_token_count with the real
-- Phi-3 vocabulary (the test models carry it).  Ids are the ones llama.cpp
-- publishes for this vocabulary (test/data/ggml-vocab-phi-3.gguf.out): no
-- BOS, special-token text taken literally.
--
SELECT phi3_tokenize('Hello world');
SELECT phi3_tokenize(' Hello world');
SELECT phi3_tokenize('Hello, world!');
SELECT phi3_tokenize('ied 4 ½ months');
SELECT phi3_tokenize('Führer');
SELECT phi3_tokenize(E'\n');
SELECT phi3_tokenize('');
SELECT phi3_token_count('Hello world'), phi3_token_count(''), phi3_token_count(repeat('word ', 100));

-- special-token text in data is plain text: it never becomes <|user|> (32010)
SELECT phi3_tokenize('<|user|>');
SELECT 32010 = ANY (phi3_tokenize('<|user|> <|end|>')) AS injected;

-- detokenize: the inverse; control tokens (<s> = 1, <|end|> = 32007) give no text
SELECT phi3_detokenize('{15043,3186}');
SELECT phi3_detokenize('{1,15043,3186,32007}');
SELECT phi3_detokenize('{29871,15043,3186}') = ' Hello world' AS leading_space_kept;
SELECT phi3_detokenize('{}') = '' AS empty;
-- byte tokens: <0xC3> <0xBC> is "ü"; a lone <0xC3> is not UTF-8
SELECT phi3_detokenize('{198,191}');
SELECT phi3_detokenize('{15043,198}');

-- round trips, including non-Latin scripts, emoji and whitespace
SELECT t, phi3_detokenize(phi3_tokenize(t)) = t AS round_trip, phi3_token_count(t)
FROM (VALUES ('Hello world'), ('  two leading spaces'), (E'tab\tand\nnewline'),
             ('Grüße aus Köln'), ('東京は日本の首都です'), ('Привет, мир'),
             ('emoji 🐘 elephant'), ('<|end|> stays text')) AS v(t);

-- NULL in, NULL out
SELECT phi3_tokenize(NULL) IS NULL AS t, phi3_detokenize(NULL) IS NULL AS d, phi3_token_count(NULL) IS NULL AS c;

-- invalid ids
SELECT phi3_detokenize('{32064}');
SELECT phi3_detokenize('{-1}');
SELECT phi3_detokenize('{15043,NULL}');
SELECT phi3_detokenize('{{15043,3186},{1,2}}');

-- bounded inputs: 16 MB of text, 4M token ids (the engine's memory is outside PostgreSQL's)
SELECT phi3_token_count(repeat('a', 1024 * 1024)) > 0 AS one_megabyte_is_fine;
SELECT phi3_token_count(repeat('a', 16 * 1024 * 1024 + 1));
SELECT phi3_tokenize(repeat('word ', 4 * 1024 * 1024));
SELECT phi3_detokenize(array_fill(450, ARRAY[4 * 1024 * 1024 + 1]));
SELECT length(phi3_detokenize(array_fill(450, ARRAY[1000]))) AS ok_below;

-- the tokenizer functions work per row and are STABLE / PARALLEL SAFE
SELECT proname, provolatile, proparallel, proisstrict, procost
FROM pg_proc WHERE proname IN ('phi3_tokenize', 'phi3_detokenize', 'phi3_token_count') ORDER BY proname;
SELECT sum(phi3_token_count('row ' || g)) FROM generate_series(1, 100) AS g;
