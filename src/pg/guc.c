/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Every phi3.* setting.
 *
 * The contexts follow the risk of each setting: the model path and the
 * resource caps (phi3.max_context_size, phi3.max_tokens_limit,
 * phi3.max_threads, phi3.max_batch_size) are superuser-only, so no role can make the server open an arbitrary file or
 * take more memory or time per call than the administrator allows; the
 * rest is per session.  Limits are the PHI3_MIN/DEFAULT/MAX_* macros of
 * pg_phi3.h.
 *
 * Settings that bound one another (phi3.context_size by
 * phi3.max_context_size, phi3.max_tokens by phi3.max_tokens_limit,
 * phi3.threads by phi3.max_threads) are
 * reconciled where they are used, not in check hooks: a check hook sees the
 * settings in whatever order postgresql.conf or ALTER SYSTEM applies them,
 * so it would refuse valid combinations.
 *
 * IDENTIFICATION
 *	  src/pg/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "miscadmin.h"
#include "utils/guc.h"

char	   *phi3_model = NULL;
int			phi3_threads = PHI3_DEFAULT_THREADS;
int			phi3_max_threads = PHI3_DEFAULT_MAX_THREADS;
int			phi3_kv_keep_tokens = PHI3_DEFAULT_KV_KEEP_TOKENS;
int			phi3_batch_size = PHI3_DEFAULT_BATCH_SIZE;
int			phi3_max_batch_size = PHI3_DEFAULT_MAX_BATCH_SIZE;
int			phi3_context_size = PHI3_DEFAULT_CONTEXT_SIZE;
int			phi3_max_context_size = PHI3_DEFAULT_MAX_CONTEXT_SIZE;
int			phi3_max_tokens = PHI3_DEFAULT_MAX_TOKENS;
int			phi3_max_tokens_limit = PHI3_DEFAULT_MAX_TOKENS_LIMIT;
double		phi3_temperature = PHI3_DEFAULT_TEMPERATURE;
int			phi3_top_k = PHI3_DEFAULT_TOP_K;
double		phi3_top_p = PHI3_DEFAULT_TOP_P;
double		phi3_min_p = PHI3_DEFAULT_MIN_P;
double		phi3_repeat_penalty = PHI3_DEFAULT_REPEAT_PENALTY;
int			phi3_seed = PHI3_DEFAULT_SEED;
int			phi3_input_overflow = PHI3_DEFAULT_INPUT_OVERFLOW;
int			phi3_kernels = PHI3_DEFAULT_KERNELS;
int			phi3_async_workers = PHI3_DEFAULT_ASYNC_WORKERS;
int			phi3_async_max_attempts = PHI3_DEFAULT_ASYNC_MAX_ATTEMPTS;
int			phi3_async_retry_delay = PHI3_DEFAULT_ASYNC_RETRY_DELAY;
int			phi3_async_idle_timeout = PHI3_DEFAULT_ASYNC_IDLE_TIMEOUT;
int			phi3_async_time_slice = PHI3_DEFAULT_ASYNC_TIME_SLICE;
int			phi3_activations = PHI3_DEFAULT_ACTIVATIONS;
int			phi3_kv_cache_type = PHI3_DEFAULT_KV_CACHE_TYPE;

static const struct config_enum_entry input_overflow_options[] = {
	{"error", PHI3_OVERFLOW_ERROR, false},
	{"truncate", PHI3_OVERFLOW_TRUNCATE, false},
	{NULL, 0, false}
};

static const struct config_enum_entry kernels_options[] = {
	{"auto", P3_MATMUL_AUTO, false},
	{"reference", P3_MATMUL_REFERENCE, false},
	{NULL, 0, false}
};

static const struct config_enum_entry activations_options[] = {
	{"q8", P3_ACT_Q8, false},
	{"f32", P3_ACT_F32, false},
	{NULL, 0, false}
};

static const struct config_enum_entry kv_cache_type_options[] = {
	{"f16", P3_KV_F16, false},
	{"f32", P3_KV_F32, false},
	{NULL, 0, false}
};

/*
 * Register every phi3.* setting and reserve the prefix.
 */
void
GucInit(void)
{
	DefineCustomStringVariable("phi3.model",
							   "Sets the path of the Phi-3 GGUF model file.",
							   "An empty string means no model. A relative path is "
							   "taken relative to the data directory. Only superusers "
							   "can change it.",
							   &phi3_model,
							   "",
							   PGC_SUSET,
							   0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.threads",
							"Sets the number of compute threads of each backend.",
							"0 uses every CPU the backend may run on; a larger "
							"value is reduced to that number and to "
							"phi3.max_threads. Valid range is 0..256.",
							&phi3_threads,
							PHI3_DEFAULT_THREADS,
							PHI3_MIN_THREADS, PHI3_MAX_THREADS,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.max_threads",
							"Sets the most compute threads any session may use.",
							"Caps phi3.threads. 0 means the number of CPUs the "
							"backend may run on. Valid range is 0..256.",
							&phi3_max_threads,
							PHI3_DEFAULT_MAX_THREADS,
							PHI3_MIN_MAX_THREADS, PHI3_MAX_MAX_THREADS,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.batch_size",
							"Sets how many rows the batch functions decode together.",
							"One pass over the weights then serves this many rows; "
							"each may hold up to phi3.context_size positions of KV "
							"cache. It may not exceed phi3.max_batch_size. Valid "
							"range is 1..64.",
							&phi3_batch_size,
							PHI3_DEFAULT_BATCH_SIZE,
							PHI3_MIN_BATCH_SIZE, PHI3_MAX_BATCH_SIZE,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.max_batch_size",
							"Sets the largest phi3.batch_size any session may use.",
							"Bounds the KV-cache memory of each backend to "
							"phi3.max_context_size times this many sequences. Valid "
							"range is 1..64.",
							&phi3_max_batch_size,
							PHI3_DEFAULT_MAX_BATCH_SIZE,
							PHI3_MIN_MAX_BATCH_SIZE, PHI3_MAX_MAX_BATCH_SIZE,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.kv_keep_tokens",
							"Sets how many token positions of KV cache a backend "
							"keeps after each statement.",
							"At the end of a statement that generated, the cache is "
							"shrunk to this many positions (a Phi-3-mini token takes "
							"384 kB); the prompt prefix they hold is reused by the "
							"next statement. Valid range is 0..131072 tokens.",
							&phi3_kv_keep_tokens,
							PHI3_DEFAULT_KV_KEEP_TOKENS,
							PHI3_MIN_KV_KEEP_TOKENS, PHI3_MAX_KV_KEEP_TOKENS,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.context_size",
							"Sets the number of token positions one call may use.",
							"The prompt and the generated tokens must fit. It bounds "
							"the KV cache of each backend (a Phi-3-mini token takes "
							"384 kB). The value used is at most phi3.max_context_size "
							"and the model's training context. Valid range is "
							"64..131072 tokens.",
							&phi3_context_size,
							PHI3_DEFAULT_CONTEXT_SIZE,
							PHI3_MIN_CONTEXT_SIZE, PHI3_MAX_CONTEXT_SIZE,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.max_context_size",
							"Sets the largest context size any session may use.",
							"Caps phi3.context_size, and so the KV-cache memory of "
							"each backend. Valid range is 64..131072 tokens.",
							&phi3_max_context_size,
							PHI3_DEFAULT_MAX_CONTEXT_SIZE,
							PHI3_MIN_MAX_CONTEXT_SIZE, PHI3_MAX_MAX_CONTEXT_SIZE,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.max_tokens",
							"Sets the number of tokens a call generates at most when "
							"it does not say.",
							"The value used is at most phi3.max_tokens_limit. Valid "
							"range is 1..131072 tokens.",
							&phi3_max_tokens,
							PHI3_DEFAULT_MAX_TOKENS,
							PHI3_MIN_MAX_TOKENS, PHI3_MAX_MAX_TOKENS,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.max_tokens_limit",
							"Sets the largest number of tokens one call may generate.",
							"A call that asks for more is an error. Valid range is "
							"1..131072 tokens.",
							&phi3_max_tokens_limit,
							PHI3_DEFAULT_MAX_TOKENS_LIMIT,
							PHI3_MIN_MAX_TOKENS_LIMIT, PHI3_MAX_MAX_TOKENS_LIMIT,
							PGC_SUSET,
							0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("phi3.temperature",
							 "Sets the sampling temperature.",
							 "0 always chooses the most likely token (greedy, "
							 "deterministic). Valid range is 0..2.",
							 &phi3_temperature,
							 PHI3_DEFAULT_TEMPERATURE,
							 PHI3_MIN_TEMPERATURE, PHI3_MAX_TEMPERATURE,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.top_k",
							"Sets the number of most likely tokens sampling chooses from.",
							"0 disables the limit. No effect when the temperature "
							"is 0. Valid range is 0..100000.",
							&phi3_top_k,
							PHI3_DEFAULT_TOP_K,
							PHI3_MIN_TOP_K, PHI3_MAX_TOP_K,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("phi3.top_p",
							 "Sets the probability mass of the most likely tokens "
							 "sampling chooses from.",
							 "1 disables nucleus sampling. No effect when the "
							 "temperature is 0. Valid range is 0..1.",
							 &phi3_top_p,
							 PHI3_DEFAULT_TOP_P,
							 PHI3_MIN_TOP_P, PHI3_MAX_TOP_P,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("phi3.min_p",
							 "Sets the probability, relative to the most likely "
							 "token, below which tokens are not sampled.",
							 "0 disables the cut. No effect when the temperature "
							 "is 0. Valid range is 0..1.",
							 &phi3_min_p,
							 PHI3_DEFAULT_MIN_P,
							 PHI3_MIN_MIN_P, PHI3_MAX_MIN_P,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomRealVariable("phi3.repeat_penalty",
							 "Sets the penalty on tokens among the last 64 of the "
							 "sequence.",
							 "1 disables the penalty; values above 1 discourage "
							 "repetition. Applies in greedy mode too. Valid range "
							 "is 0.1..10.",
							 &phi3_repeat_penalty,
							 PHI3_DEFAULT_REPEAT_PENALTY,
							 PHI3_MIN_REPEAT_PENALTY, PHI3_MAX_REPEAT_PENALTY,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.seed",
							"Sets the seed of the sampler.",
							"-1 draws a random seed for every call; any other value "
							"makes every call with the same input and settings "
							"produce the same text. Valid range is -1..2147483647.",
							&phi3_seed,
							PHI3_DEFAULT_SEED,
							PHI3_MIN_SEED, PHI3_MAX_SEED,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("phi3.input_overflow",
							 "Sets what happens when an input does not fit the context.",
							 "error raises an error; truncate drops tokens from the "
							 "end of the document or prompt (never the instruction) "
							 "and emits a notice.",
							 &phi3_input_overflow,
							 PHI3_DEFAULT_INPUT_OVERFLOW,
							 input_overflow_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("phi3.kernels",
							 "Sets which compute kernels the engine uses.",
							 "auto picks the fastest validated kernels for this CPU; "
							 "reference uses the portable scalar kernels, which give "
							 "the same numbers on every machine (slower; for tests "
							 "and debugging).",
							 &phi3_kernels,
							 PHI3_DEFAULT_KERNELS,
							 kernels_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.async_workers",
							"Sets how many background workers fill the rows queued "
							"by phi3_fill_async, for the whole server.",
							"Needs phi3 in shared_preload_libraries; 0 starts none "
							"(rows stay queued). A worker serves one database at "
							"a time. Valid range is 0..64.",
							&phi3_async_workers,
							PHI3_DEFAULT_ASYNC_WORKERS,
							PHI3_MIN_ASYNC_WORKERS, PHI3_MAX_ASYNC_WORKERS,
	/* a server setting, which only a preload may define; without it, read-only */
							process_shared_preload_libraries_in_progress ?
							PGC_POSTMASTER : PGC_INTERNAL,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.async_max_attempts",
							"Sets how many times a background worker tries to fill "
							"a queued row before marking it failed.",
							"A worker that ends while filling a row (a crash, an "
							"immediate shutdown) uses up one attempt of each of "
							"its rows. Valid range is 1..1000.",
							&phi3_async_max_attempts,
							PHI3_DEFAULT_ASYNC_MAX_ATTEMPTS,
							PHI3_MIN_ASYNC_MAX_ATTEMPTS, PHI3_MAX_ASYNC_MAX_ATTEMPTS,
							PGC_SIGHUP,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.async_retry_delay",
							"Sets how long a queued row that failed waits before "
							"its next attempt.",
							"The delay doubles with each attempt, up to an hour. "
							"0 retries at once. Valid range is 0..3600000 ms.",
							&phi3_async_retry_delay,
							PHI3_DEFAULT_ASYNC_RETRY_DELAY,
							PHI3_MIN_ASYNC_RETRY_DELAY, PHI3_MAX_ASYNC_RETRY_DELAY,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.async_idle_timeout",
							"Sets how long a background worker with nothing to do "
							"stays connected to its database.",
							"Then it leaves (DROP DATABASE and CREATE DATABASE "
							"... TEMPLATE need no connection there); the next "
							"commit that queues rows starts a worker again. 0 "
							"stays for ever. Valid range is 0..86400000 ms.",
							&phi3_async_idle_timeout,
							PHI3_DEFAULT_ASYNC_IDLE_TIMEOUT,
							PHI3_MIN_ASYNC_IDLE_TIMEOUT, PHI3_MAX_ASYNC_IDLE_TIMEOUT,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("phi3.async_time_slice",
							"Sets how long a background worker serves one database "
							"while another waits for a worker.",
							"When every worker is busy, the one that has served its "
							"database longer than this leaves after its current "
							"batch, and its database waits its turn. 0 never "
							"switches. Valid range is 0..86400000 ms.",
							&phi3_async_time_slice,
							PHI3_DEFAULT_ASYNC_TIME_SLICE,
							PHI3_MIN_ASYNC_TIME_SLICE, PHI3_MAX_ASYNC_TIME_SLICE,
							PGC_SIGHUP,
							GUC_UNIT_MS,
							NULL, NULL, NULL);
	DefineCustomEnumVariable("phi3.activations",
							 "Sets the precision of the activations in products with quantized or half-precision weights.",
							 "q8 computes as llama.cpp does on x86 CPUs: activations are "
							 "quantized to 8 bits (Q8_0, Q8_1 or Q8_K) for quantized weights "
							 "and rounded to f16 or bf16 for F16 or BF16 weights, so a GGUF "
							 "file gives llama.cpp's greedy text; f32 keeps them exact (more "
							 "accurate, about half the speed with quantized weights).",
							 &phi3_activations,
							 PHI3_DEFAULT_ACTIVATIONS,
							 activations_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomEnumVariable("phi3.kv_cache_type",
							 "Sets the precision of the attention key/value cache.",
							 "f16 is llama.cpp's default: keys and values are stored as f16, "
							 "and the query and the attention weights are rounded to f16 "
							 "before their products with them; f32 keeps attention exact "
							 "and takes twice the memory (768 kB per token for Phi-3-mini).",
							 &phi3_kv_cache_type,
							 PHI3_DEFAULT_KV_CACHE_TYPE,
							 kv_cache_type_options,
							 PGC_USERSET,
							 0,
							 NULL, NULL, NULL);

	MarkGUCPrefixReserved("phi3");
}
