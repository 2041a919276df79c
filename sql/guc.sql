--
-- guc: every phi3.* setting, its default and range, who may change it,
-- and how the caps bound the per-session values at use.
--
LOAD 'phi3';

-- defaults
SHOW phi3.threads;
SHOW phi3.context_size;
SHOW phi3.max_context_size;
SHOW phi3.max_tokens;
SHOW phi3.max_tokens_limit;
SHOW phi3.temperature;
SHOW phi3.top_k;
SHOW phi3.top_p;
SHOW phi3.min_p;
SHOW phi3.repeat_penalty;
SHOW phi3.seed;
SHOW phi3.input_overflow;
-- (auto by default; the regression database sets reference)
SHOW phi3.kernels;
-- llama.cpp's numerics by default
SHOW phi3.activations;
SHOW phi3.kv_cache_type;
SELECT current_setting('phi3.model') = current_setting('regress.model_dir') || '/tiny-f32.gguf' AS model_from_database_setting;

-- declared ranges, contexts and descriptions
SELECT name, vartype, context, boot_val, min_val, max_val, enumvals
FROM pg_settings WHERE name LIKE 'phi3.%' ORDER BY name;
SELECT name, short_desc, extra_desc FROM pg_settings WHERE name LIKE 'phi3.%' ORDER BY name;

-- out of range, invalid values
SET phi3.context_size = 32;
SET phi3.context_size = 200000;
SET phi3.threads = -1;
SET phi3.max_tokens = 0;
SET phi3.temperature = 2.5;
SET phi3.temperature = -0.1;
SET phi3.top_p = 1.5;
SET phi3.min_p = -1;
SET phi3.repeat_penalty = 0;
SET phi3.seed = -2;
SET phi3.input_overflow = 'ignore';
SET phi3.kernels = 'fast';
SET phi3.activations = 'f16';
SET phi3.kv_cache_type = 'q8';
-- the prefix is reserved: a misspelled setting is an error, not a placeholder
SET phi3.temprature = 0.5;

-- valid values
SET phi3.context_size = 4096;
SHOW phi3.context_size;
SET phi3.input_overflow = truncate;
SHOW phi3.input_overflow;
SET phi3.seed = 42;
SHOW phi3.seed;
RESET ALL;

-- the model path and the caps are superuser-only
CREATE ROLE regress_phi3_user;
SET ROLE regress_phi3_user;
SET phi3.model = '/etc/passwd';
SET phi3.max_context_size = 131072;
SET phi3.max_tokens_limit = 131072;
SET phi3.max_threads = 64;
-- per-session settings are allowed
SET phi3.context_size = 1024;
SET phi3.temperature = 0.7;
SET phi3.threads = 1;
-- and the functions work for a plain role with the administrator's model
SELECT phi3_token_count('Hello world');
RESET ROLE;
DROP ROLE regress_phi3_user;
RESET ALL;

-- phi3.context_size is used up to phi3.max_context_size and the model's
-- training context (4096 for the test model)
SELECT phi3_model_info()->'context_size' AS context_size;
SET phi3.max_context_size = 1024;
SELECT phi3_model_info()->'context_size' AS context_size;
SET phi3.max_context_size = 131072;
SET phi3.context_size = 131072;
SELECT phi3_model_info()->'context_size' AS context_size;
RESET phi3.context_size;
RESET phi3.max_context_size;

-- phi3.threads is used up to phi3.max_threads and the CPUs (at least 1 here)
SET phi3.max_threads = 1;
SET phi3.threads = 8;
SELECT phi3_model_info()->'threads' AS threads;
SET phi3.threads = 0;
SELECT phi3_model_info()->'threads' AS threads;
RESET phi3.max_threads;
SET phi3.threads = 1;
SELECT phi3_model_info()->'threads' AS threads;
-- both at 0 (the defaults): every CPU the backend may use
RESET phi3.threads;
SELECT (phi3_model_info()->>'threads')::int >= 1 AS all_cpus;
SET phi3.max_threads = -1;

-- phi3.max_tokens (the default per call) is used up to phi3.max_tokens_limit,
-- while an explicit max_tokens above the limit is an error
SELECT phi3_generate('Hello', max_tokens => 8) AS eight, phi3_generate('Hello', max_tokens => 16) AS sixteen \gset
SELECT :'eight' <> :'sixteen' AS sixteen_tokens_differ_from_eight;
SET phi3.max_tokens_limit = 8;
SET phi3.max_tokens = 16;
SELECT phi3_generate('Hello') = :'eight' AS default_capped_at_limit;
SELECT phi3_generate('Hello', max_tokens => 9);
RESET ALL;
