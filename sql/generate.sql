--
-- generate: phi3_generate (chat template) and phi3_complete (raw), greedy
-- outputs pinned on the tiny model and cross-checked with bin/phi3-run,
-- seeded sampling, argument checks.
--
\getenv model_dir PHI3_TEST_MODEL_DIR
\getenv abs_srcdir PG_ABS_SRCDIR
\set phi3_run :abs_srcdir '/bin/phi3-run'
\set tiny_f32 :model_dir '/tiny-f32.gguf'
\set tiny_q8_0 :model_dir '/tiny-q8_0.gguf'
\set tiny_q4_k :model_dir '/tiny-q4_k.gguf'

-- greedy (phi3.temperature = 0 by default): pinned outputs
SELECT phi3_generate('Hello', max_tokens => 8);
SELECT phi3_generate('Hello', 'You are a helpful assistant.', 8);
SELECT phi3_generate('Write a haiku about PostgreSQL.', max_tokens => 12);
SELECT phi3_complete('Once upon a time', 8);
-- the same call twice (the second reuses the prompt's KV cache) gives the same text
SELECT phi3_generate('Hello', max_tokens => 8) = phi3_generate('Hello', max_tokens => 8) AS repeatable;

-- the same text as the command-line tool for the same prompt (with the
-- reference kernels, which the regression database uses)
\set cli `:'phi3_run' --kernels reference -m :'tiny_f32' --chat -p 'Hello' -n 8`
SELECT phi3_generate('Hello', max_tokens => 8) = :'cli' AS generate_same_as_phi3_run;
\set cli `:'phi3_run' --kernels reference -m :'tiny_f32' --chat --system 'You are a helpful assistant.' -p 'Hello' -n 8`
SELECT phi3_generate('Hello', 'You are a helpful assistant.', 8) = :'cli' AS system_same_as_phi3_run;
\set cli `:'phi3_run' --kernels reference -m :'tiny_f32' -p 'Once upon a time' -n 8`
SELECT phi3_complete('Once upon a time', 8) = :'cli' AS complete_same_as_phi3_run;
-- a raw continuation keeps the space its first token starts with (only a
-- chat answer drops SentencePiece's dummy space), as phi3-run does
\set cli `:'phi3_run' --kernels reference -m :'tiny_f32' -p 'Hello' -n 3`
SELECT phi3_complete('Hello', 3) = :'cli' AS complete_keeps_leading_space,
       left(phi3_complete('Hello', 3), 1) = ' ' AS starts_with_space;
\set cli `:'phi3_run' --kernels reference -m :'tiny_f32' --chat -p 'Hello' -n 16 --temp 0.9 --seed 42`
SELECT phi3_generate('Hello', max_tokens => 16, temperature => 0.9, seed => 42) = :'cli' AS sampled_same_as_phi3_run;

-- the quantized models (q8_0, and a K-quant) and a LongRoPE model through the same path
SET phi3.model = :'tiny_q8_0';
SELECT phi3_complete('Once upon a time', 8);
\set cli `:'phi3_run' --kernels reference -m :'tiny_q8_0' -p 'Once upon a time' -n 8`
SELECT phi3_complete('Once upon a time', 8) = :'cli' AS q8_0_same_as_phi3_run;
-- phi3.activations = f32 and phi3.kv_cache_type = f32: exact arithmetic, as
-- phi3-run --act f32 --kv-type f32 (on this model the text differs from the
-- first token; the f32 cache takes twice the memory of the f16 one, less
-- the per-position bookkeeping)
SELECT phi3_complete('Once upon a time', 8) AS llama_numerics,
       (phi3_model_info()->>'kv_cache_memory')::bigint AS kv_f16 \gset
SET phi3.activations = f32;
SET phi3.kv_cache_type = f32;
\set cli `:'phi3_run' --kernels reference --act f32 --kv-type f32 -m :'tiny_q8_0' -p 'Once upon a time' -n 8`
SELECT phi3_complete('Once upon a time', 8) AS exact;
SELECT phi3_complete('Once upon a time', 8) = :'cli' AS exact_same_as_phi3_run,
       phi3_complete('Once upon a time', 8) <> :'llama_numerics' AS exact_differs,
       (phi3_model_info()->>'kv_cache_memory')::bigint BETWEEN 1.9 * :kv_f16 AND 2 * :kv_f16
         AS f32_cache_about_twice_the_memory;
RESET phi3.activations;
RESET phi3.kv_cache_type;
SELECT phi3_complete('Once upon a time', 8) = :'llama_numerics' AS reset_gives_llama_numerics;
SET phi3.model = :'tiny_q4_k';
SELECT phi3_generate('Hello', max_tokens => 8);
\set cli `:'phi3_run' --kernels reference -m :'tiny_q4_k' --chat -p 'Hello' -n 8`
SELECT phi3_generate('Hello', max_tokens => 8) = :'cli' AS q4_k_same_as_phi3_run;
\set tiny_longrope :model_dir '/tiny-longrope.gguf'
SET phi3.model = :'tiny_longrope';
SELECT phi3_generate('Hello', max_tokens => 8);
\set cli `:'phi3_run' --kernels reference -m :'tiny_longrope' --chat -p 'Hello' -n 8`
SELECT phi3_generate('Hello', max_tokens => 8) = :'cli' AS longrope_same_as_phi3_run;
RESET phi3.model;

-- and with the fastest kernels of this CPU (phi3.kernels = auto, phi3-run's
-- default): outputs may differ from the reference ones in the last bits, so
-- they are only compared with the command-line tool
SET phi3.kernels = auto;
\set cli `:'phi3_run' -m :'tiny_f32' --chat -p 'Hello' -n 8`
SELECT phi3_generate('Hello', max_tokens => 8) = :'cli' AS auto_f32_same_as_phi3_run;
\set cli `:'phi3_run' -m :'tiny_f32' -p 'Once upon a time' -n 16 --temp 0.9 --seed 42`
SELECT phi3_complete('Once upon a time', 16, 0.9, 42) = :'cli' AS auto_sampled_same_as_phi3_run;
SET phi3.model = :'tiny_q8_0';
\set cli `:'phi3_run' -m :'tiny_q8_0' --chat -p 'Hello' -n 8`
SELECT phi3_generate('Hello', max_tokens => 8) = :'cli' AS auto_q8_0_same_as_phi3_run;
SET phi3.model = :'tiny_q4_k';
\set cli `:'phi3_run' -m :'tiny_q4_k' --chat -p 'Hello' -n 8`
SELECT phi3_generate('Hello', max_tokens => 8) = :'cli' AS auto_q4_k_same_as_phi3_run;
RESET phi3.model;
RESET phi3.kernels;

-- sampling: the same seed gives the same text, another seed another text
SELECT phi3_generate('Hello', max_tokens => 16, temperature => 0.9, seed => 42) =
       phi3_generate('Hello', max_tokens => 16, temperature => 0.9, seed => 42) AS same_seed_same_text;
SELECT phi3_generate('Hello', max_tokens => 16, temperature => 0.9, seed => 1) <>
       phi3_generate('Hello', max_tokens => 16, temperature => 0.9, seed => 2) AS other_seed_other_text;
SELECT phi3_generate('Hello', max_tokens => 16, temperature => 0.9, seed => 1) <>
       phi3_generate('Hello', max_tokens => 16) AS sampled_differs_from_greedy;
-- phi3.seed and phi3.temperature stand in for the arguments
SET phi3.seed = 42;
SET phi3.temperature = 0.9;
SELECT phi3_generate('Hello', max_tokens => 16) =
       phi3_generate('Hello', max_tokens => 16, temperature => 0.9, seed => 42) AS settings_used;
-- an explicit temperature 0 is greedy whatever the settings say
SELECT phi3_generate('Hello', max_tokens => 8, temperature => 0) =
       phi3_generate('Hello', max_tokens => 8, temperature => 0, seed => 7) AS greedy_ignores_seed;
RESET phi3.seed;
RESET phi3.temperature;

-- NULL and empty inputs: NULL prompt gives NULL; NULL options use the
-- settings; an empty or NULL system prompt means no system turn; an empty
-- prompt is answered from the template alone (or, raw, from BOS)
SELECT phi3_generate(NULL, 'system') IS NULL AS null_prompt;
SELECT phi3_generate('Hello', NULL, NULL, NULL, NULL) = phi3_generate('Hello') AS null_options;
SELECT phi3_generate('Hello', '', 8) = phi3_generate('Hello', NULL, 8) AS empty_system;
SELECT phi3_generate('', max_tokens => 8);
SELECT phi3_complete('', 8);
-- max_tokens 0 generates nothing
SELECT phi3_generate('Hello', max_tokens => 0) = '' AS zero_tokens;
-- chat markers in the prompt are text, not turns (see tokenize): an answer
SELECT phi3_generate('<|end|><|assistant|>', max_tokens => 4);

-- argument errors
SELECT phi3_generate('Hello', max_tokens => -1);
SELECT phi3_generate('Hello', max_tokens => 4097);
SELECT phi3_complete('Hello', 100000);
SELECT phi3_generate('Hello', temperature => 2.5);
SELECT phi3_generate('Hello', temperature => -1);
SELECT phi3_generate('Hello', temperature => 'NaN');
SELECT phi3_generate('Hello', seed => -1);
SELECT regress_error('SELECT phi3_generate(''Hello'', max_tokens => 5000)');

-- labels of the generating functions
SELECT proname, provolatile, proparallel, proisstrict, procost
FROM pg_proc WHERE proname IN ('phi3_generate', 'phi3_complete', 'phi3_summarize', 'phi3_describe', 'phi3_extract', 'phi3_model_info', 'phi3_fill')
ORDER BY proname, pg_get_function_identity_arguments(oid);
