--
-- model: phi3_model_info, loading errors (each with its SQLSTATE), and
-- reloading when phi3.model changes.
--
\getenv model_dir PHI3_TEST_MODEL_DIR
\set tiny_f32 :model_dir '/tiny-f32.gguf'
\set tiny_q8_0 :model_dir '/tiny-q8_0.gguf'
\set tiny_q4_k :model_dir '/tiny-q4_k.gguf'
\set missing :model_dir '/missing.gguf'
\set not_gguf :model_dir '/not-gguf.gguf'
\set truncated :model_dir '/truncated.gguf'
\set wrong_arch :model_dir '/wrong-arch.gguf'
\set arch_tensor_type :model_dir '/arch-tensor-type.gguf'
\set bad_type :model_dir '/bad-type.gguf'
\set vocab_only :model_dir '/vocab-only.gguf'
\set tiny_longrope :model_dir '/tiny-longrope.gguf'

-- what the model is (path, kernel, threads and memory vary by machine)
SELECT key, value FROM jsonb_each(phi3_model_info())
WHERE key NOT IN ('path', 'kernel', 'threads', 'context_memory') ORDER BY key;
SELECT info->>'path' = :'tiny_f32' AS path_ok,
       (info->>'file_size')::bigint = (pg_stat_file(:'tiny_f32')).size AS file_size_ok,
       jsonb_typeof(info->'kernel') AS kernel,
       (info->>'threads')::int >= 0 AS threads_ok,
       (info->>'context_memory')::bigint > 0 AS context_memory_ok
FROM phi3_model_info() AS info;

-- NULL inputs give NULL without needing a model
SET phi3.model = '';
SELECT phi3_generate(NULL) IS NULL AS generate_null,
       phi3_complete(NULL) IS NULL AS complete_null,
       phi3_summarize(NULL) IS NULL AS summarize_null,
       phi3_describe(NULL) IS NULL AS describe_null,
       phi3_extract(NULL, '{"a": "text"}') IS NULL AS extract_null,
       phi3_tokenize(NULL) IS NULL AS tokenize_null;

-- model not set
SELECT phi3_generate('Hello');
SELECT regress_error('SELECT phi3_model_info()');
SELECT regress_error('SELECT phi3_tokenize(''Hello'')');

-- missing file, a directory, not a GGUF, truncated, wrong architecture,
-- a tensor type the engine cannot compute, no tensors at all
SET phi3.model = :'missing';
SELECT regress_error('SELECT phi3_model_info()');
SET phi3.model = :'model_dir';
SELECT regress_error('SELECT phi3_model_info()');
SET phi3.model = :'not_gguf';
SELECT regress_error('SELECT phi3_model_info()');
SET phi3.model = :'truncated';
SELECT regress_error('SELECT phi3_model_info()');
SET phi3.model = :'wrong_arch';
SELECT regress_error('SELECT phi3_model_info()');
-- an architecture whose name speaks of tensor types is still no tensor-type problem (no hint)
SET phi3.model = :'arch_tensor_type';
SELECT regress_error('SELECT phi3_model_info()');
SET phi3.model = :'bad_type';
SELECT regress_error('SELECT phi3_model_info()');
SET phi3.model = :'vocab_only';
SELECT regress_error('SELECT phi3_generate(''Hello'')');

-- the backend is still fine after all these errors: reload the good model
SET phi3.model = :'tiny_f32';
SELECT phi3_model_info()->'n_embd' AS n_embd;

-- phi3.model changes: the other model is loaded (and back)
SET phi3.model = :'tiny_q8_0';
SELECT info->'n_embd' AS n_embd, info->'tensor_types' AS tensor_types, info->>'path' = :'tiny_q8_0' AS path_ok
FROM phi3_model_info() AS info;
SET phi3.model = :'tiny_q4_k';
SELECT info->'n_embd' AS n_embd, info->'n_ff' AS n_ff, info->'tensor_types' AS tensor_types, info->'n_params' AS n_params
FROM phi3_model_info() AS info;
SET phi3.model = :'tiny_f32';
SELECT info->'n_embd' AS n_embd, info->'tensor_types' AS tensor_types
FROM phi3_model_info() AS info;

-- a LongRoPE (128k-style) model: its training context is 131072, the
-- context used is still phi3.context_size
SET phi3.model = :'tiny_longrope';
SELECT info->'longrope' AS longrope, info->'n_ctx_train' AS n_ctx_train, info->'context_size' AS context_size
FROM phi3_model_info() AS info;
SET phi3.model = :'tiny_f32';

-- a context setting change recreates the context, keeping the model
SET phi3.context_size = 128;
SELECT phi3_model_info()->'context_size' AS context_size;
RESET phi3.context_size;
SELECT phi3_model_info()->'context_size' AS context_size;
