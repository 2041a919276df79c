/*-------------------------------------------------------------------------
 *
 * model_cache.c
 *	  The backend's open model and engine context, and their lifetime.
 *
 * Each backend keeps at most one P3Model (the mapped GGUF file, its
 * hyper-parameters and tokenizer) and one P3Context (KV cache, scratch,
 * compute threads) in static variables owned by this file.  They are
 * created on first use and kept across calls and transactions, because
 * opening a model costs milliseconds to seconds and a context's KV cache
 * lets consecutive rows reuse a shared prompt prefix.
 *
 * Lifetime rules:
 *   - The model is reopened when phi3.model names another path, or when the
 *     file at that path is not the one mapped any more (device, inode, size
 *     or modification time changed: a file replaced by rename is noticed;
 *     the old mapping stays valid until we unmap it).  The file's identity
 *     is checked at most once per statement.
 *   - The context is recreated when the model changes, or when the
 *     effective context size, thread count or kernel choice changes
 *     (cheap: the KV cache grows lazily).  The thread count is
 *     phi3.threads capped by the superuser's phi3.max_threads and by the
 *     CPUs the backend may run on.  It holds phi3.batch_size sequences
 *     (at most phi3.max_batch_size), whose KV caches grow only when used:
 *     one-row calls take one of them, the batch forms (batch.c) all.
 *   - The decoder (phi3/decoder.h) lives and dies with the context; each
 *     generating call takes it with no live sequence (ModelCacheGetDecoder).
 *   - The KV cache shrinks to phi3.kv_keep_tokens positions at the end of
 *     every statement that generated (ModelCacheScheduleTrim), so one long
 *     document does not leave gigabytes behind in an idle backend.
 *   - Both are freed when the backend exits, by an on_proc_exit callback, which also joins the
 *     engine's threads.
 *
 * Preload: with shared_preload_libraries = 'phi3' and phi3.model set in
 * postgresql.conf, _PG_init opens the model in the postmaster: it maps the
 * file and builds the tokenizer, and nothing else -- no context, no
 * threads, because a postmaster must never fork with live helper threads.
 * Every backend forked afterwards inherits the mapping (and the parsed
 * model, copy-on-write), so its first call does not pay a load; it reuses
 * the inherited model as long as the path and the file identity match.
 * A failed preload is logged as a WARNING and the backends retry lazily,
 * reporting the error to the caller.
 *
 * Threads: the engine's compute threads are created by p3_context_new with
 * every signal blocked (the engine's contract), only in backends, so
 * PostgreSQL's signal handlers only ever run on the backend's own thread;
 * the threads never call PostgreSQL.  OpenBLAS is deliberately not linked:
 * it starts its threads when the library is loaded, which in a preloaded
 * postmaster would mean forking with live threads.  If a BLAS is ever used
 * for prefill, it is to be dlopen'ed lazily in a backend, inside a section
 * with all signals blocked, with its own threading set to 1.
 *
 * A model file changed under the mapping: the weights are a shared file
 * mapping, so if someone truncates or rewrites the file in place (cp over
 * it, say) while a backend computes, reading a page past the new end of
 * file raises SIGBUS -- which would kill the backend and make the
 * postmaster restart every session.  Backends therefore guard the mapping
 * (phi3/mapguard.h): a fault inside it is answered by mapping a page of
 * zeros at the faulting address (the engine, which only reads, then
 * finishes its computation on garbage), and recorded; after the engine
 * returns, ModelCacheCheckMappingFault() discards the model and raises an
 * error instead of returning that garbage.  Any other SIGBUS goes to the
 * handler that was installed before (another extension's, or the default
 * action), and releasing the model puts that handler back.  The engine's
 * helper threads leave SIGBUS unblocked for this (threadpool.h).
 *
 * Cancel: the context's abort callback returns true once a query cancel
 * (including statement_timeout) or a termination is pending.  The engine
 * polls it on the backend's thread between layers and tokens and returns
 * P3_ERR_ABORTED, which errors.c turns into CHECK_FOR_INTERRUPTS().  No
 * lock is held while the engine computes.
 *
 * IDENTIFICATION
 *	  src/pg/model_cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "phi3/mapguard.h"
#include "phi3/schema.h"
#include "phi3/threadpool.h"
#include "storage/ipc.h"
#include "access/xact.h"
#include "tcop/tcopprot.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

/* What identifies the file a model was opened from */
typedef struct FileIdentity
{
	dev_t		dev;
	ino_t		ino;
	off_t		size;
	int64		mtime_ns;
} FileIdentity;

static P3Model *cache_model = NULL;
static char *cache_path = NULL;		/* in TopMemoryContext */
static FileIdentity cache_identity;
static bool cache_preloaded = false;	/* cache_model came from the postmaster */
static TimestampTz cache_checked_stmt = 0;	/* statement of the last identity check */

static P3Context *cache_ctx = NULL;
static int32 cache_ctx_n_ctx = 0;
static int32 cache_ctx_threads = 0;
static int	cache_ctx_kernels = 0;
static int	cache_ctx_act = 0;
static int	cache_ctx_kv_type = 0;
static int32 cache_ctx_n_seq = 0;

static bool exit_callback_registered = false;

/* The step-wise decoder over cache_ctx (created with it) */
static P3Decoder *cache_dec = NULL;

/* The vocabulary as a byte trie, for schema masks (built on first use) */
static P3VocabTrie *cache_trie = NULL;

/* A KV trim is scheduled for the end of the current statement */
static bool trim_scheduled = false;

/* A generation loop is driving cache_dec (Phi3DecoderBegin .. End) */
static bool decoder_busy = false;

static bool StatIdentity(const char *path, FileIdentity *id);
static bool CachedModelIsCurrent(const char *path);
static P3Status OpenModel(const char *path, P3Error *err);
static void ReleaseContext(void);
static void ReleaseAll(void);
static void ModelCacheAtExit(int code, Datum arg);
static bool ShouldAbort(void *user);
static void GuardArm(const P3Model *model);
static void GuardDisarm(void);
static void TrimAtStatementEnd(void *arg);
static int32 EffectiveThreads(void);

/*
 * Preload the model when loaded through shared_preload_libraries.
 */
void
ModelCacheInit(void)
{
	P3Error		err;

	if (!process_shared_preload_libraries_in_progress)
		return;
	if (phi3_model == NULL || phi3_model[0] == '\0')
		return;

	p3_error_clear(&err);
	if (OpenModel(phi3_model, &err) != P3_OK)
	{
		ereport(WARNING,
				(errmsg("could not preload phi3 model \"%s\"", phi3_model),
				 errdetail("%s", err.message),
				 errhint("Backends will try to open it when a phi3 function is first called.")));
		return;
	}
	cache_preloaded = true;
	ereport(LOG,
			(errmsg("phi3 preloaded model \"%s\"", phi3_model)));
}

/*
 * The model phi3.model names, opened or reused.  Errors are reported with
 * ereport.  Does not create a context (no threads): enough for the
 * tokenizer functions.
 */
const P3Model *
ModelCacheGetModel(void)
{
	const char *path = phi3_model;
	P3Error		err;

	if (path == NULL || path[0] == '\0')
		Phi3ReportModelNotSet();

	/* a fault noticed outside a generation (metadata reads) is reported here */
	ModelCacheCheckMappingFault();

	if (cache_model != NULL && CachedModelIsCurrent(path))
	{
		GuardArm(cache_model);
		return cache_model;
	}

	/* A different path or a replaced file: drop what we have, then open */
	ReleaseAll();

	if (!exit_callback_registered)
	{
		on_proc_exit(ModelCacheAtExit, (Datum) 0);
		exit_callback_registered = true;
	}

	p3_error_clear(&err);
	if (OpenModel(path, &err) != P3_OK)
		Phi3ReportEngineError(&err, path);
	cache_checked_stmt = GetCurrentStatementStartTimestamp();
	GuardArm(cache_model);
	return cache_model;
}

/*
 * After the engine computed: if a page of the model's mapping vanished
 * while it ran (the file was truncated or rewritten in place), discard the
 * model and raise an error rather than return what was computed.
 */
void
ModelCacheCheckMappingFault(void)
{
	char	   *path;

	if (!p3_mapguard_take_fault())
		return;
	path = pstrdup(cache_path ? cache_path : "");
	ReleaseAll();
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("model file \"%s\" changed while it was in use", path),
			 errdetail("Part of the mapped file disappeared during the computation (the file was truncated or rewritten in place); the result was discarded."),
			 errhint("Replace model files by writing a new file and renaming it over the old one (mv), never by overwriting them in place (cp).")));
}

/*
 * The backend's engine context over the current model, created or reused.
 * Its size is phi3.context_size, capped by phi3.max_context_size and the
 * model's training context; its threads phi3.threads, capped by the CPUs;
 * its kernels phi3.kernels; its numerics phi3.activations and
 * phi3.kv_cache_type (a change makes a new context: the KV cache is not
 * reused across precisions).
 */
P3Context *
ModelCacheGetContext(void)
{
	const P3Model *model = ModelCacheGetModel();
	int32		n_ctx;
	int32		threads;
	int32		n_seq;
	P3ContextParams params;
	P3Context  *ctx = NULL;
	P3Error		err;

	/* Never in the postmaster: it must not start threads */
	Assert(IsUnderPostmaster || !IsPostmasterEnvironment);

	n_ctx = Min(phi3_context_size, phi3_max_context_size);
	if (model->hp.n_ctx_train > 0)
		n_ctx = Min(n_ctx, model->hp.n_ctx_train);
	threads = EffectiveThreads();

	n_seq = Min(phi3_batch_size, phi3_max_batch_size);

	if (cache_ctx != NULL && cache_ctx_n_ctx == n_ctx && cache_ctx_threads == threads &&
		cache_ctx_kernels == phi3_kernels && cache_ctx_n_seq == n_seq &&
		cache_ctx_act == phi3_activations && cache_ctx_kv_type == phi3_kv_cache_type)
		return cache_ctx;

	ReleaseContext();

	params = p3_context_default_params();
	params.n_ctx = n_ctx;
	params.n_seq = n_seq;
	params.n_threads = threads;
	params.matmul = (P3MatmulMode) phi3_kernels;
	params.act = (P3ActPrecision) phi3_activations;
	params.kv_type = (P3KVType) phi3_kv_cache_type;

	p3_error_clear(&err);
	if (p3_context_new(model, &params, &ctx, &err) != P3_OK)
		Phi3ReportEngineError(&err, cache_path);
	p3_context_set_abort(ctx, ShouldAbort, NULL);

	cache_ctx = ctx;
	cache_ctx_n_ctx = n_ctx;
	cache_ctx_threads = threads;
	cache_ctx_kernels = phi3_kernels;
	cache_ctx_act = phi3_activations;
	cache_ctx_kv_type = phi3_kv_cache_type;
	cache_ctx_n_seq = n_seq;
	return cache_ctx;
}

/*
 * Compute threads for the context: phi3.threads (0: every CPU the backend
 * may run on), at most phi3.max_threads (0: those CPUs), at most the CPUs.
 */
static int32
EffectiveThreads(void)
{
	int32		cpus = Max(p3_cpu_count(), 1);
	int32		cap = phi3_max_threads > 0 ? Min(phi3_max_threads, cpus) : cpus;

	return phi3_threads > 0 ? Min(phi3_threads, cap) : cap;
}

/*
 * The backend's decoder over the current context, with no live sequence:
 * one left by a call that stopped on an error (a cancel between steps,
 * say) is removed first; its KV stays for prefix reuse.  Schedules the
 * trim of the KV cache at the end of the statement.
 */
P3Decoder *
ModelCacheGetDecoder(void)
{
	P3Context  *ctx;
	P3Error		err;

	/*
	 * A phi3 function called by the query of a phi3_*_rows function would
	 * reset the decoder under the batch that is fetching that query's rows
	 */
	if (decoder_busy)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("phi3 functions cannot run inside the query of a phi3 batch function"),
				 errhint("Compute the query's values in a separate statement, or pass the inputs themselves.")));
	ctx = ModelCacheGetContext();

	if (cache_dec == NULL)
	{
		p3_error_clear(&err);
		if (p3_decoder_new(ctx, 0, &cache_dec, &err) != P3_OK)
			Phi3ReportEngineError(&err, cache_path);
	}
	p3_decoder_reset(cache_dec);
	ModelCacheScheduleTrim();
	return cache_dec;
}

/*
 * The current model's vocabulary as a byte trie (phi3/schema.h), built on
 * first use (about 10 ms for 32k tokens) and kept with the model.
 */
const P3VocabTrie *
ModelCacheGetVocabTrie(void)
{
	const P3Model *model = ModelCacheGetModel();
	P3Error		err;

	if (cache_trie == NULL)
	{
		p3_error_clear(&err);
		if (p3_vocab_trie_new(model->tokenizer, &cache_trie, &err) != P3_OK)
			Phi3ReportEngineError(&err, cache_path);
	}
	return cache_trie;
}

/*
 * Mark the decoder in use by a generation loop (Phi3DecoderLoopBegin), and
 * free again when the loop ends or is left by an error.
 */
void
ModelCacheDecoderBusy(bool busy)
{
	decoder_busy = busy;
}

/*
 * Shrink the KV cache to phi3.kv_keep_tokens positions when the current
 * statement ends: a reset callback on the portal's memory context (the
 * top-level statement's, whatever SPI nesting runs us), or on the
 * transaction's when there is no portal (a background worker).  A cache
 * grown by one long document is not kept for the life of the backend,
 * while the shared prefix of the next statement's rows still is.
 */
void
ModelCacheScheduleTrim(void)
{
	MemoryContext cxt = PortalContext ? PortalContext : TopTransactionContext;
	MemoryContextCallback *cb;

	if (trim_scheduled || cxt == NULL)
		return;
	cb = MemoryContextAllocZero(cxt, sizeof(MemoryContextCallback));
	cb->func = TrimAtStatementEnd;
	cb->arg = NULL;
	MemoryContextRegisterResetCallback(cxt, cb);
	trim_scheduled = true;
}

/*
 * The reset callback: runs at the end of the statement, also when it
 * failed (during abort cleanup), so it only calls the engine, which
 * cannot raise errors.
 */
static void
TrimAtStatementEnd(void *arg)
{
	trim_scheduled = false;
	if (cache_dec != NULL)
		p3_decoder_reset(cache_dec);
	if (cache_ctx != NULL)
		p3_kv_trim(cache_ctx, phi3_kv_keep_tokens);
}

/*
 * Path of the open model (NULL if none).
 */
const char *
ModelCachePath(void)
{
	return cache_model ? cache_path : NULL;
}

/*
 * Whether the open model was mapped by the postmaster (preload).
 */
bool
ModelCacheIsPreloaded(void)
{
	return cache_model != NULL && cache_preloaded;
}

/*
 * Whether the cached model is still what phi3.model names: same path, and
 * (checked once per statement) the same file.
 */
static bool
CachedModelIsCurrent(const char *path)
{
	FileIdentity now;
	TimestampTz stmt;

	if (strcmp(cache_path, path) != 0)
		return false;

	stmt = GetCurrentStatementStartTimestamp();
	if (stmt == cache_checked_stmt)
		return true;

	if (!StatIdentity(path, &now))
		return false;			/* gone: reopening reports the error */
	if (now.dev != cache_identity.dev || now.ino != cache_identity.ino ||
		now.size != cache_identity.size || now.mtime_ns != cache_identity.mtime_ns)
		return false;
	cache_checked_stmt = stmt;
	return true;
}

/*
 * Open the model at path into the cache (which must be empty).  The file's
 * identity is taken before opening: if the file is replaced in between,
 * the next check sees a different identity and reopens, which is safe.
 */
static P3Status
OpenModel(const char *path, P3Error *err)
{
	FileIdentity id;
	P3Model    *model = NULL;
	P3Status	st;
	char	   *path_copy;

	Assert(cache_model == NULL);

	if (!StatIdentity(path, &id))
		memset(&id, 0, sizeof(id));

	/*
	 * Copy the path first: if this palloc fails, nothing is cached yet (a
	 * cached model without its path would make the next call compare with
	 * a NULL path)
	 */
	path_copy = MemoryContextStrdup(TopMemoryContext, path);
	st = p3_model_open(path, &model, err);
	if (st != P3_OK)
	{
		pfree(path_copy);
		return st;
	}

	cache_model = model;
	cache_path = path_copy;
	cache_identity = id;
	cache_preloaded = false;
	return P3_OK;
}

/*
 * stat() the file and fill *id; false if it cannot be stat'ed.
 */
static bool
StatIdentity(const char *path, FileIdentity *id)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return false;
	memset(id, 0, sizeof(*id));
	id->dev = st.st_dev;
	id->ino = st.st_ino;
	id->size = st.st_size;
	id->mtime_ns = (int64) st.st_mtim.tv_sec * INT64CONST(1000000000) + st.st_mtim.tv_nsec;
	return true;
}

/*
 * Free the context (joins the engine's threads, frees the KV cache).
 */
static void
ReleaseContext(void)
{
	if (cache_dec != NULL)
	{
		P3Decoder  *dec = cache_dec;

		cache_dec = NULL;
		p3_decoder_free(dec);
	}
	if (cache_ctx != NULL)
	{
		P3Context  *ctx = cache_ctx;

		cache_ctx = NULL;
		p3_context_free(ctx);
	}
}

/*
 * Free the context and the model (unmaps the file).
 */
static void
ReleaseAll(void)
{
	ReleaseContext();
	if (cache_trie != NULL)
	{
		P3VocabTrie *trie = cache_trie;

		cache_trie = NULL;
		p3_vocab_trie_free(trie);
	}
	GuardDisarm();
	if (cache_model != NULL)
	{
		P3Model    *model = cache_model;

		cache_model = NULL;
		p3_model_free(model);
	}
	if (cache_path != NULL)
	{
		pfree(cache_path);
		cache_path = NULL;
	}
	cache_preloaded = false;
	cache_checked_stmt = 0;
}

/* on_proc_exit callback: release the engine at backend exit */
static void
ModelCacheAtExit(int code, Datum arg)
{
	ReleaseAll();
}

/*
 * The engine's abort callback, polled on the backend's thread: stop when a
 * cancel (pg_cancel_backend, statement_timeout) or termination is pending.
 */
static bool
ShouldAbort(void *user)
{
	return QueryCancelPending || ProcDiePending;
}

/*
 * Watch the model's mapping for SIGBUS (only in backends: the postmaster
 * never computes).  The handler (phi3/mapguard.h) is installed on the
 * first arm and passes faults outside the mapping to whatever handler was
 * there before; disarming puts that handler back.
 */
static void
GuardArm(const P3Model *model)
{
	if (!IsUnderPostmaster && IsPostmasterEnvironment)
		return;
	(void) p3_mapguard_arm(model->gguf->base, model->gguf->size);	/* false: no guard, as before */
}

static void
GuardDisarm(void)
{
	p3_mapguard_disarm();
}
