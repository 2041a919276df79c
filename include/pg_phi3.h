/*
 * pg_phi3.h — declarations shared by the PostgreSQL glue of phi3 (src/pg).
 *
 * The glue turns the engine (the headers in include/phi3, no PostgreSQL in
 * them) into SQL functions.  Its parts:
 *     phi3.c         PG_MODULE_MAGIC and _PG_init (one init call per part)
 *     guc.c          every phi3.* setting; limits are the macros below
 *     model_cache.c  the backend's open model and engine context, preload
 *     errors.c       the one place that turns engine errors into ereport
 *     memory.c       engine-allocated buffers owned by a memory context
 *     encoding.c     server encoding <-> UTF-8 (no engine, no settings)
 *     prompts.c      the text of every prompt the task functions use
 *     generate.c     phi3_generate, phi3_complete, phi3_summarize,
 *                    phi3_describe and the shared generation helper
 *     extract.c      phi3_extract: runs the model on the schema's prompt
 *     extract_answer.c  the schema, and the answer parsed and coerced to it
 *                    (no engine, no settings: test/hooks links it too)
 *     tokenize.c     phi3_tokenize, phi3_detokenize, phi3_token_count,
 *                    phi3_model_info
 *     trigger.c      the phi3_fill trigger function and the template rules
 *     async_queue.c  phi3_fill_async (enqueue after commit), the queue's
 *                    SQL functions (wait, retry, purge)
 *     async_launcher.c  shared state, the launcher, the wake-up at commit
 *     async_worker.c the workers that fill queued rows
 *     stats.c        phi3_stats and phi3_stat_activity (shared memory)
 *     classify.c     phi3_classify (decoding under an enum schema)
 *     constrain.c    generation under a JSON Schema (json_schema, classify)
 *
 * All text handed to the engine is UTF-8; the glue converts from and to
 * the server encoding at the SQL boundary.
 */
#ifndef PG_PHI3_H
#define PG_PHI3_H

#include "postgres.h"

#include "access/htup.h"
#include "access/tupdesc.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/jsonb.h"

#include "phi3/context.h"
#include "phi3/decoder.h"
#include "phi3/generate.h"
#include "phi3/model.h"
#include "phi3/sampler.h"
#include "phi3/schema.h"
#include "phi3/status.h"
#include "phi3/tokenizer.h"

/* ---- settings: limits of every phi3.* GUC ---- */

/* phi3.threads: compute threads per backend, 0 = every CPU it may use */
#define PHI3_MIN_THREADS				0
#define PHI3_DEFAULT_THREADS			0
#define PHI3_MAX_THREADS				256

/* phi3.max_threads: superuser cap on phi3.threads, 0 = the CPUs the backend may use */
#define PHI3_MIN_MAX_THREADS			0
#define PHI3_DEFAULT_MAX_THREADS		0
#define PHI3_MAX_MAX_THREADS			PHI3_MAX_THREADS

/* phi3.kv_keep_tokens: KV positions a backend keeps after a statement */
#define PHI3_MIN_KV_KEEP_TOKENS			0
#define PHI3_DEFAULT_KV_KEEP_TOKENS		128
#define PHI3_MAX_KV_KEEP_TOKENS			131072

/* phi3.batch_size: rows decoded together; phi3.max_batch_size: its superuser cap */
#define PHI3_MIN_BATCH_SIZE				1
#define PHI3_DEFAULT_BATCH_SIZE			8
#define PHI3_MAX_BATCH_SIZE				64
#define PHI3_MIN_MAX_BATCH_SIZE			1
#define PHI3_DEFAULT_MAX_BATCH_SIZE		16
#define PHI3_MAX_MAX_BATCH_SIZE			PHI3_MAX_BATCH_SIZE

/* phi3.context_size: positions per call (KV cache bound), in tokens */
#define PHI3_MIN_CONTEXT_SIZE			64
#define PHI3_DEFAULT_CONTEXT_SIZE		2048
#define PHI3_MAX_CONTEXT_SIZE			131072

/* phi3.max_context_size: superuser cap on phi3.context_size, in tokens */
#define PHI3_MIN_MAX_CONTEXT_SIZE		PHI3_MIN_CONTEXT_SIZE
#define PHI3_DEFAULT_MAX_CONTEXT_SIZE	8192
#define PHI3_MAX_MAX_CONTEXT_SIZE		PHI3_MAX_CONTEXT_SIZE

/* phi3.max_tokens: tokens generated per call unless the call says */
#define PHI3_MIN_MAX_TOKENS				1
#define PHI3_DEFAULT_MAX_TOKENS			256
#define PHI3_MAX_MAX_TOKENS				PHI3_MAX_CONTEXT_SIZE

/* phi3.max_tokens_limit: superuser cap on tokens generated per call */
#define PHI3_MIN_MAX_TOKENS_LIMIT		1
#define PHI3_DEFAULT_MAX_TOKENS_LIMIT	4096
#define PHI3_MAX_MAX_TOKENS_LIMIT		PHI3_MAX_CONTEXT_SIZE

/* phi3.temperature: 0 = greedy */
#define PHI3_MIN_TEMPERATURE			0.0
#define PHI3_DEFAULT_TEMPERATURE		0.0
#define PHI3_MAX_TEMPERATURE			2.0

/* phi3.top_k: 0 = off */
#define PHI3_MIN_TOP_K					0
#define PHI3_DEFAULT_TOP_K				40
#define PHI3_MAX_TOP_K					100000

/* phi3.top_p: 1 = off */
#define PHI3_MIN_TOP_P					0.0
#define PHI3_DEFAULT_TOP_P				0.95
#define PHI3_MAX_TOP_P					1.0

/* phi3.min_p: 0 = off */
#define PHI3_MIN_MIN_P					0.0
#define PHI3_DEFAULT_MIN_P				0.05
#define PHI3_MAX_MIN_P					1.0

/* phi3.repeat_penalty: 1 = off */
#define PHI3_MIN_REPEAT_PENALTY			0.1
#define PHI3_DEFAULT_REPEAT_PENALTY		1.0
#define PHI3_MAX_REPEAT_PENALTY			10.0

/* phi3.seed: -1 = a random seed per call */
#define PHI3_MIN_SEED					(-1)
#define PHI3_DEFAULT_SEED				(-1)
#define PHI3_MAX_SEED					PG_INT32_MAX

/* phi3.input_overflow */
typedef enum Phi3InputOverflow
{
	PHI3_OVERFLOW_ERROR = 0,	/* an input that does not fit is an error */
	PHI3_OVERFLOW_TRUNCATE = 1	/* shorten the input's content to fit */
} Phi3InputOverflow;

#define PHI3_DEFAULT_INPUT_OVERFLOW		PHI3_OVERFLOW_ERROR

/* phi3.kernels: values are P3MatmulMode (phi3/context.h) */
#define PHI3_DEFAULT_KERNELS			P3_MATMUL_AUTO

/* phi3.activations (P3ActPrecision) and phi3.kv_cache_type (P3KVType): llama.cpp's numerics by default */
#define PHI3_DEFAULT_ACTIVATIONS		P3_ACT_Q8
#define PHI3_DEFAULT_KV_CACHE_TYPE		P3_KV_F16

/* phi3_summarize: words when the call does not say, and the bounds */
#define PHI3_DEFAULT_SUMMARY_WORDS		60
#define PHI3_MAX_SUMMARY_WORDS			10000

/*
 * Input bounds of the tokenizer functions.  The tokenizer's working memory
 * is about 30 bytes per byte of text, outside PostgreSQL's accounting and
 * not interruptible: these keep one call below about half a gigabyte.
 */
#define PHI3_MAX_TOKENIZE_BYTES			(16 * 1024 * 1024)
#define PHI3_MAX_DETOKENIZE_TOKENS		(4 * 1024 * 1024)

/* phi3.async_workers: background workers filling queued rows, per server */
#define PHI3_MIN_ASYNC_WORKERS			0
#define PHI3_DEFAULT_ASYNC_WORKERS		1
#define PHI3_MAX_ASYNC_WORKERS			64

/* phi3.async_max_attempts: tries of a queued row before it is failed */
#define PHI3_MIN_ASYNC_MAX_ATTEMPTS		1
#define PHI3_DEFAULT_ASYNC_MAX_ATTEMPTS	3
#define PHI3_MAX_ASYNC_MAX_ATTEMPTS		1000

/* phi3.async_retry_delay: ms before a failed row's next attempt (doubled each time) */
#define PHI3_MIN_ASYNC_RETRY_DELAY		0
#define PHI3_DEFAULT_ASYNC_RETRY_DELAY	10000
#define PHI3_MAX_ASYNC_RETRY_DELAY		3600000

/* phi3.async_idle_timeout: ms an idle worker stays connected to its database, 0 = for ever */
#define PHI3_MIN_ASYNC_IDLE_TIMEOUT		0
#define PHI3_DEFAULT_ASYNC_IDLE_TIMEOUT	60000
#define PHI3_MAX_ASYNC_IDLE_TIMEOUT		86400000

/* phi3.async_time_slice: ms a worker serves one database while another waits, 0 = no switch */
#define PHI3_MIN_ASYNC_TIME_SLICE		0
#define PHI3_DEFAULT_ASYNC_TIME_SLICE	60000
#define PHI3_MAX_ASYNC_TIME_SLICE		86400000

/* GUC variables (guc.c) */
extern char *phi3_model;
extern int	phi3_threads;
extern int	phi3_max_threads;
extern int	phi3_kv_keep_tokens;
extern int	phi3_batch_size;
extern int	phi3_max_batch_size;
extern int	phi3_context_size;
extern int	phi3_max_context_size;
extern int	phi3_max_tokens;
extern int	phi3_max_tokens_limit;
extern double phi3_temperature;
extern int	phi3_top_k;
extern double phi3_top_p;
extern double phi3_min_p;
extern double phi3_repeat_penalty;
extern int	phi3_seed;
extern int	phi3_input_overflow;
extern int	phi3_kernels;
extern int	phi3_async_workers;
extern int	phi3_async_max_attempts;
extern int	phi3_async_retry_delay;
extern int	phi3_async_idle_timeout;
extern int	phi3_async_time_slice;
extern int	phi3_activations;
extern int	phi3_kv_cache_type;

extern void GucInit(void);

/* ---- model_cache.c ---- */
extern void ModelCacheInit(void);
extern const P3Model *ModelCacheGetModel(void);
extern P3Context *ModelCacheGetContext(void);
extern P3Decoder *ModelCacheGetDecoder(void);
extern void ModelCacheScheduleTrim(void);
extern void ModelCacheDecoderBusy(bool busy);
extern const P3VocabTrie *ModelCacheGetVocabTrie(void);
extern void ModelCacheCheckMappingFault(void);
extern const char *ModelCachePath(void);
extern bool ModelCacheIsPreloaded(void);

/* ---- errors.c ---- */
extern void Phi3ReportModelNotSet(void) pg_attribute_noreturn();
extern void Phi3ReportEngineError(const P3Error *err, const char *model_path) pg_attribute_noreturn();
extern void Phi3ReportSchemaError(const P3Error *err) pg_attribute_noreturn();
extern void Phi3ReportInputTooLong(int32 n_prompt, bool more_than, int32 max_tokens, int32 n_ctx,
								   bool after_truncation) pg_attribute_noreturn();

/* ---- memory.c ---- */
extern P3Tokens *Phi3TokensNew(void);
extern void Phi3TokensFree(P3Tokens *tokens);
extern P3Text *Phi3TextNew(void);
extern void Phi3TextFree(P3Text *text);

/* ---- encoding.c ---- */
extern char *Phi3TextToUtf8(text *t, size_t *len);
extern char *Phi3CStringToUtf8(const char *s, size_t len, size_t *out_len);
extern text *Phi3Utf8ToText(const char *s, size_t len);
extern char *Phi3Utf8ToCString(const char *s, size_t len);

/* ---- prompts.c ---- */
extern const char *Phi3SummarizeSystem(void);
extern char *Phi3SummarizeInstruction(int max_words, const char *focus);
extern const char *Phi3DescribeSystem(void);
extern char *Phi3DescribeInstruction(const char *style);
extern const char *Phi3ExtractSystem(void);
extern char *Phi3ExtractInstruction(const char *shape);
extern const char *Phi3ClassifySystem(void);
extern char *Phi3ClassifyInstruction(const char *label_list, const char *instruction);

/* ---- extract_answer.c: phi3_extract's schema and answer handling ---- */
typedef struct Phi3ExtractSchema Phi3ExtractSchema;

extern Phi3ExtractSchema *Phi3ExtractParseSchema(Jsonb *schema);
extern char *Phi3ExtractFieldList(const Phi3ExtractSchema *schema);
extern Jsonb *Phi3ExtractFromAnswer(const Phi3ExtractSchema *schema, const char *answer, size_t len);
extern Jsonb *Phi3JsonbFromAnswer(const char *answer, size_t len);

/* ---- extract_schema.c: what phi3_extract decodes under ---- */
typedef struct Phi3ExtractSpec Phi3ExtractSpec;

extern Phi3ExtractSpec *Phi3ExtractSpecFromJsonb(Jsonb *schema);
extern Phi3ExtractSpec *Phi3ExtractSpecFromType(Oid typid);
extern P3Schema *Phi3ExtractSpecSchema(const Phi3ExtractSpec *spec);
extern const char *Phi3ExtractSpecDescription(const Phi3ExtractSpec *spec);
extern const char *Phi3ExtractSpecJson(const Phi3ExtractSpec *spec, size_t *len);
extern Jsonb *Phi3ExtractSpecResult(const Phi3ExtractSpec *spec, const char *answer, size_t len);

/* ---- generate.c: the shared generation helper ---- */

/*
 * One generation.  All strings are UTF-8 and need not be NUL-terminated.
 * With chat, the prompt is the chat template over an optional system turn
 * and one user turn holding instruction followed by content; without chat
 * it is BOS (as the model's tokenizer says) followed by instruction and
 * content as plain text.  When the prompt plus max_tokens does not fit the
 * context, phi3.input_overflow decides: an error, or dropping tokens from
 * the end of content (never from the instruction or the template).
 */
typedef struct Phi3GenRequest
{
	bool		chat;
	const char *system;			/* NULL or "": no system turn */
	size_t		system_len;
	const char *instruction;	/* kept whole; may be NULL */
	size_t		instruction_len;
	const char *content;		/* the part that truncation may shorten */
	size_t		content_len;
	int32		max_tokens;		/* >= 0, already checked against the limit */
	P3SamplerParams sampling;
	P3Schema   *schema;			/* NULL, or decode under it (batch.c; Phi3CompileSchema) */
} Phi3GenRequest;

extern char *Phi3Generate(const Phi3GenRequest *req, size_t *out_len);
extern char *Phi3GenerateConstrained(const Phi3GenRequest *req, const P3Constraint *constraint,
									 size_t *out_len, P3StopReason *stop);

/* ---- constrain.c: generation under a JSON Schema ---- */
extern char *Phi3GenerateUnderSchema(const Phi3GenRequest *req, const char *json, size_t len,
									 size_t *out_len);
extern P3Schema *Phi3CompileSchema(const char *json, size_t len);
extern char *Phi3GenerateUnderCompiled(const Phi3GenRequest *req, P3Schema *schema, size_t *out_len);
extern char *Phi3SchemaCompletion(const P3SchemaMatcher *m, size_t *len);
extern P3Tokens *Phi3BuildRequestPrompt(const Phi3GenRequest *req);
extern text *Phi3TrimmedResult(char *s, size_t len);

/* Request builders of the task functions (generate.c), shared with batch.c */
typedef struct Phi3SummarizeOptions
{
	int32		max_words;
	const char *focus;			/* UTF-8, trimmed; NULL: none */
} Phi3SummarizeOptions;

extern void Phi3ChatRequestInit(Phi3GenRequest *req, text *prompt, text *system);
extern Phi3SummarizeOptions Phi3SummarizeOptionsFrom(bool max_words_isnull, int32 max_words,
													 text *focus);
extern bool Phi3SummarizeRequestInit(Phi3GenRequest *req, text *doc,
									 const Phi3SummarizeOptions *opts);
extern char *Phi3DescribeStyle(text *style);
extern bool Phi3DescribeRequestInit(Phi3GenRequest *req, Datum item, const char *style);
extern P3SeqParams Phi3RequestSeqParams(const Phi3GenRequest *req);
extern void Phi3DecoderLoopBegin(int64 rows_total);
extern void Phi3DecoderLoopEnd(bool failed);
extern void Phi3DecoderLoopAbort(void);
extern int32 Phi3ResolveMaxTokens(bool isnull, int32 value);
extern P3SamplerParams Phi3ResolveSampling(bool temperature_isnull, float8 temperature,
										   bool seed_isnull, int64 seed);
extern char *Phi3TrimUtf8(char *s, size_t *len);
extern bool Phi3IsBlank(const char *s, size_t len);

/* ---- extract.c ---- */
extern bool Phi3ExtractRequestInit(Phi3GenRequest *req, text *doc, const Phi3ExtractSpec *spec);
extern Jsonb *Phi3ExtractOne(text *doc, const Phi3ExtractSpec *spec);

/* ---- batch.c: many rows per pass over the weights ---- */

/* What a row of a batch gives */
typedef enum Phi3RowResult
{
	PHI3_ROW_TEXT = 0,			/* the model's text */
	PHI3_ROW_EMPTY,				/* an empty result, without the model (empty input) */
	PHI3_ROW_NULL				/* NULL (NULL input) */
} Phi3RowResult;

/*
 * A batch's rows and results.  next fills the request of row index
 * (0-based, in order; its strings live until the row is in the decoder)
 * and its kind, or returns false when there are no more rows; emit takes
 * the result of each row in input order (text is UTF-8, valid during the
 * call); describe_row, if set, adds the error context line naming a row.
 */
typedef struct Phi3BatchOps
{
	bool		(*next) (void *arg, int64 index, Phi3GenRequest *req, Phi3RowResult *kind);
	void		(*emit) (void *arg, int64 index, Phi3RowResult kind, const char *text, size_t len);
	void		(*describe_row) (void *arg, int64 index);
} Phi3BatchOps;

extern void Phi3RunBatch(const Phi3BatchOps *ops, void *arg, int64 rows_total);
extern int32 Phi3CheckedBatchSize(void);

/* ---- trigger.c: the template rules of phi3_fill and phi3_fill_async ---- */
extern int	Phi3FillTargetColumn(const char *fname, const char *name, TupleDesc tupdesc,
								 const char *relname);
extern char *Phi3FillRenderTemplate(const char *fname, const char *tmpl, HeapTuple tuple,
									TupleDesc tupdesc, const char *relname);
extern Datum Phi3FillTargetValue(const char *value, Form_pg_attribute attr);
extern void Phi3FillRequestInit(Phi3GenRequest *req, const char *prompt, const char *system);

/* ---- async_queue.c, async_worker.c: phi3_fill_async ---- */

/* The queue table, in the extension's schema */
#define PHI3_ASYNC_QUEUE_TABLE			"phi3_async_queue"
/* bgw_type of the processes (pg_stat_activity.backend_type) */
#define PHI3_ASYNC_LAUNCHER_TYPE		"phi3 async launcher"
#define PHI3_ASYNC_WORKER_TYPE			"phi3 async worker"

extern void Phi3AsyncInit(void);
extern const char *Phi3AsyncNoWorkersReason(void);
extern bool Phi3AsyncIsWorker(void);
extern void Phi3AsyncWakeDatabase(Oid dboid);
extern char *Phi3AsyncQueueName(bool missing_ok);
extern Oid	Phi3AsyncQueueOwner(void);

/* ---- stats.c: phi3_stats and phi3_stat_activity ---- */

/* The functions counted in phi3_stats (names in stats.c) */
typedef enum Phi3StatFunc
{
	PHI3_STAT_GENERATE = 0,
	PHI3_STAT_COMPLETE,
	PHI3_STAT_SUMMARIZE,
	PHI3_STAT_DESCRIBE,
	PHI3_STAT_EXTRACT,
	PHI3_STAT_FILL,
	PHI3_STAT_GENERATE_BATCH,
	PHI3_STAT_SUMMARIZE_BATCH,
	PHI3_STAT_DESCRIBE_BATCH,
	PHI3_STAT_EXTRACT_BATCH,
	PHI3_STAT_GENERATE_ROWS,
	PHI3_STAT_SUMMARIZE_ROWS,
	PHI3_STAT_DESCRIBE_ROWS,
	PHI3_STAT_EXTRACT_ROWS,
	PHI3_STAT_CLASSIFY,
	PHI3_STAT_FILL_ASYNC,
	PHI3_N_STAT_FUNCS
} Phi3StatFunc;

extern void Phi3StatsInit(void);
extern void Phi3StatsSetFunction(Phi3StatFunc func);
extern void Phi3StatsLoopBegin(int64 rows_total);
extern void Phi3StatsStep(int64 tokens_so_far, bool decoding);
extern void Phi3StatsRowDone(const P3GenerateStats *st);
extern void Phi3StatsLoopEnd(bool failed, bool cancelled);

#endif							/* PG_PHI3_H */
