--
-- memory: the KV cache a statement grew is given back when the statement
-- ends, down to phi3.kv_keep_tokens positions (also when the statement
-- failed), while it stays whole for the rows of one statement.
--
-- The tiny test model takes 512 bytes of f16 KV cache per position (2
-- layers, K and V of 64 values), so a 600-token prompt needs 768 positions
-- of room (393216 bytes) and 128 kept positions about 64 kB.
--
LOAD 'phi3';
SHOW phi3.kv_keep_tokens;
SELECT (phi3_model_info()->>'kv_cache_memory')::bigint AS kv_before_any_call;
CREATE TEMP TABLE kv (label text, bytes bigint);

-- inside the statement the cache holds the whole prompt; after it, 128 positions
INSERT INTO kv
SELECT 'during', (phi3_model_info()->>'kv_cache_memory')::bigint
FROM (SELECT phi3_complete(repeat('lorem ipsum ', 300), 4) AS t) AS s WHERE t IS NOT NULL;
INSERT INTO kv SELECT 'after', (phi3_model_info()->>'kv_cache_memory')::bigint;
SELECT label, bytes >= 393216 AS holds_the_prompt, bytes <= 128 * 512 + 4 * 4096 AS trimmed
FROM kv ORDER BY label DESC;

-- several rows of one statement keep the cache between them (no trim per row)
TRUNCATE kv;
INSERT INTO kv
SELECT 'row ' || i, (phi3_model_info()->>'kv_cache_memory')::bigint
FROM generate_series(1, 3) AS i,
     LATERAL (SELECT phi3_complete(repeat('lorem ipsum ', 300) || i, 2) AS t) AS s
WHERE t IS NOT NULL;
SELECT label, bytes >= 393216 AS holds_the_prompt FROM kv ORDER BY label;

-- a statement that fails after generating is trimmed too
SELECT 1 / (length(t) * 0) AS fails FROM (SELECT phi3_complete(repeat('lorem ipsum ', 300), 2) AS t) AS s;
SELECT (phi3_model_info()->>'kv_cache_memory')::bigint <= 128 * 512 + 4 * 4096 AS trimmed_after_error;

-- the kept prefix is still reused, and the text does not change
SELECT phi3_complete('The shared prefix of every row, then row one', 8) AS first;
SELECT phi3_complete('The shared prefix of every row, then row one', 8) AS again;

-- keep nothing: the cache is empty between statements
SET phi3.kv_keep_tokens = 0;
SELECT length(phi3_complete('Once upon a time', 4)) > 0 AS generated;
SELECT (phi3_model_info()->>'kv_cache_memory')::bigint AS kv_after_keep_0;
-- keep more than was used: nothing is dropped
SET phi3.kv_keep_tokens = 4096;
SELECT length(phi3_complete(repeat('lorem ipsum ', 300), 2)) > 0 AS generated;
SELECT (phi3_model_info()->>'kv_cache_memory')::bigint >= 393216 AS kept_all;
SET phi3.kv_keep_tokens = -1;
RESET phi3.kv_keep_tokens;
SELECT (phi3_model_info()->>'kv_keep_tokens')::int AS kv_keep_tokens;
