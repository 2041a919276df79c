/*-------------------------------------------------------------------------
 *
 * stats.c
 *	  What the model is doing: cumulative statistics per function
 *	  (phi3_stats) and the generations running now (phi3_stat_activity),
 *	  in shared memory.
 *
 * Like pg_stat_statements, the shared state exists only when phi3 is in
 * shared_preload_libraries (the postmaster reserves it at startup); without
 * it the views are empty and say why in a NOTICE, and nothing is counted.
 *
 * Shared state: one counter block per SQL function (Phi3StatFunc), guarded
 * by one LWLock, updated once per generation loop (a one-row call, or a
 * whole batch); and one activity slot per process (indexed by pgprocno),
 * written only by its own process under its spinlock: who is generating,
 * in which function and phase, rows done (of how many, for the batch
 * forms), tokens so far and the current speed, updated after every decoder
 * step.  Readers copy a slot under its spinlock.
 *
 * Counting: SQL functions name themselves (Phi3StatsSetFunction) before
 * doing anything; the generation loops (generate.c RunDecoder, batch.c
 * Phi3RunBatch) then call Phi3StatsLoopBegin, Phi3StatsStep per step,
 * Phi3StatsRowDone per finished row, and Phi3StatsLoopEnd (through
 * Phi3DecoderLoopBegin / End / Abort, with whether an error or a cancel
 * ended the loop).  Calls
 * that do not run the model (an empty document) are not counted.  Times
 * are per row, summed: rows of a batch overlap in time.
 *
 * Privacy: as pg_stat_activity, rows of phi3_stat_activity that belong to
 * another role show only pid, role and database unless the reader has the
 * privileges of that role or of pg_read_all_stats.
 *
 * IDENTIFICATION
 *	  src/pg/stats.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "access/twophase.h"
#include "catalog/pg_authid.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(phi3_stats);
PG_FUNCTION_INFO_V1(phi3_stats_reset);
PG_FUNCTION_INFO_V1(phi3_stat_activity);

static const char *const FuncNames[PHI3_N_STAT_FUNCS] = {
	"phi3_generate", "phi3_complete", "phi3_summarize", "phi3_describe", "phi3_extract",
	"phi3_fill", "phi3_generate_batch", "phi3_summarize_batch", "phi3_describe_batch",
	"phi3_extract_batch", "phi3_generate_rows", "phi3_summarize_rows", "phi3_describe_rows",
	"phi3_extract_rows", "phi3_classify", "phi3_fill_async"
};

typedef struct FuncCounters
{
	int64		calls;			/* generation loops run */
	int64		rows;			/* rows (sequences) generated */
	int64		prompt_tokens;
	int64		reused_tokens;	/* of which served from a cached or copied prefix */
	int64		generated_tokens;
	double		prefill_ms;
	double		decode_ms;
	int64		errors;
	int64		cancels;
} FuncCounters;

typedef struct ActivitySlot
{
	slock_t		mutex;
	int			pid;			/* 0: not generating */
	Oid			userid;
	Oid			dbid;
	int			func;
	bool		decoding;		/* some row is past its prompt */
	int64		rows_done;
	int64		rows_total;		/* -1: not known (a query's rows) */
	int64		tokens;
	double		tokens_per_s;
	TimestampTz started;
} ActivitySlot;

typedef struct SharedStats
{
	LWLock	   *lock;			/* guards funcs and reset_time */
	TimestampTz reset_time;
	FuncCounters funcs[PHI3_N_STAT_FUNCS];
	int			n_slots;
	ActivitySlot slots[FLEXIBLE_ARRAY_MEMBER];
} SharedStats;

static SharedStats *shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* This backend's current function and loop */
static Phi3StatFunc current_func = PHI3_STAT_GENERATE;
static FuncCounters loop_counts;
static bool loop_active = false;
static TimestampTz loop_started;
static TimestampTz rate_since;	/* start of the current speed window */
static int64 rate_tokens;		/* tokens at rate_since */

static int	SlotCount(void);
static Size SharedSize(void);
static void StatsShmemRequest(void);
static void StatsShmemStartup(void);
static ActivitySlot *MySlot(void);

/*
 * With shared_preload_libraries: ask for the shared state.
 */
void
Phi3StatsInit(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = StatsShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = StatsShmemStartup;
}

/* Every process that may have a PGPROC: backends, workers, auxiliary, prepared */
static int
SlotCount(void)
{
	return MaxBackends + NUM_AUXILIARY_PROCS + max_prepared_xacts;
}

static Size
SharedSize(void)
{
	return add_size(offsetof(SharedStats, slots), mul_size(SlotCount(), sizeof(ActivitySlot)));
}

static void
StatsShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(SharedSize());
	RequestNamedLWLockTranche("phi3_stats", 1);
}

static void
StatsShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	shared = ShmemInitStruct("phi3_stats", SharedSize(), &found);
	if (!found)
	{
		memset(shared, 0, SharedSize());
		shared->lock = &(GetNamedLWLockTranche("phi3_stats"))->lock;
		shared->reset_time = GetCurrentTimestamp();
		shared->n_slots = SlotCount();
		for (int i = 0; i < shared->n_slots; i++)
			SpinLockInit(&shared->slots[i].mutex);
	}
	LWLockRelease(AddinShmemInitLock);
}

static ActivitySlot *
MySlot(void)
{
	if (shared == NULL || MyProc == NULL || MyProc->pgprocno < 0 ||
		MyProc->pgprocno >= shared->n_slots)
		return NULL;
	return &shared->slots[MyProc->pgprocno];
}

/* ---- reporting, called by the glue ---- */

/* The SQL function this backend is in (called first thing by each one). */
void
Phi3StatsSetFunction(Phi3StatFunc func)
{
	current_func = func;
}

/* A generation loop starts (rows_total -1 when not known). */
void
Phi3StatsLoopBegin(int64 rows_total)
{
	ActivitySlot *slot = MySlot();

	memset(&loop_counts, 0, sizeof(loop_counts));
	loop_active = true;
	loop_started = rate_since = GetCurrentTimestamp();
	rate_tokens = 0;
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	slot->pid = MyProcPid;
	slot->userid = GetUserId();
	slot->dbid = MyDatabaseId;
	slot->func = current_func;
	slot->decoding = false;
	slot->rows_done = 0;
	slot->rows_total = rows_total;
	slot->tokens = 0;
	slot->tokens_per_s = 0;
	slot->started = loop_started;
	SpinLockRelease(&slot->mutex);
}

/*
 * After a decoder step: tokens generated so far in this loop (finished
 * rows included) and whether any row is decoding.  The speed is taken
 * over windows of at least a second.
 */
void
Phi3StatsStep(int64 tokens_so_far, bool decoding)
{
	ActivitySlot *slot = MySlot();
	TimestampTz now;
	long		secs;
	int			usecs;
	double		elapsed;

	if (slot == NULL)
		return;
	now = GetCurrentTimestamp();
	TimestampDifference(rate_since, now, &secs, &usecs);
	elapsed = secs + usecs / 1e6;
	SpinLockAcquire(&slot->mutex);
	slot->decoding = decoding;
	slot->tokens = tokens_so_far;
	if (elapsed >= 1.0)
		slot->tokens_per_s = (tokens_so_far - rate_tokens) / elapsed;
	SpinLockRelease(&slot->mutex);
	if (elapsed >= 1.0)
	{
		rate_since = now;
		rate_tokens = tokens_so_far;
	}
}

/* A row of the loop finished: its counts. */
void
Phi3StatsRowDone(const P3GenerateStats *st)
{
	ActivitySlot *slot = MySlot();

	loop_counts.rows++;
	loop_counts.prompt_tokens += st->n_prompt;
	loop_counts.reused_tokens += st->n_prompt_reused;
	loop_counts.generated_tokens += st->n_generated;
	loop_counts.prefill_ms += st->prompt_ms;
	loop_counts.decode_ms += st->generate_ms;
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	slot->rows_done = loop_counts.rows;
	SpinLockRelease(&slot->mutex);
}

/*
 * The loop ended (from PG_FINALLY): add its counts to the function's, with
 * an error or a cancel if one ended it, and clear the activity slot.
 * Runs during error recovery too, so it takes the LWLock only when shared
 * memory exists and never raises an error itself.
 */
void
Phi3StatsLoopEnd(bool failed, bool cancelled)
{
	ActivitySlot *slot = MySlot();

	if (!loop_active)
		return;
	loop_active = false;
	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		slot->pid = 0;
		SpinLockRelease(&slot->mutex);
	}
	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	{
		FuncCounters *c = &shared->funcs[current_func];

		c->calls++;
		c->rows += loop_counts.rows;
		c->prompt_tokens += loop_counts.prompt_tokens;
		c->reused_tokens += loop_counts.reused_tokens;
		c->generated_tokens += loop_counts.generated_tokens;
		c->prefill_ms += loop_counts.prefill_ms;
		c->decode_ms += loop_counts.decode_ms;
		if (cancelled)
			c->cancels++;
		else if (failed)
			c->errors++;
	}
	LWLockRelease(shared->lock);
}

/* ---- the views ---- */

/* Say that there are no statistics without preload (NOTICE for the views, ERROR for a reset). */
static void
ReportNotCollected(int elevel)
{
	ereport(elevel,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("phi3 statistics are not collected"),
			 errdetail("phi3 is not in shared_preload_libraries, so there is no shared memory for them."),
			 errhint("Add phi3 to shared_preload_libraries and restart the server.")));
}

/* Whether the views can show anything; a NOTICE saying why not if they cannot. */
static bool
StatsAvailable(void)
{
	if (shared != NULL)
		return true;
	ReportNotCollected(NOTICE);
	return false;
}

/*
 * phi3_stats() returns one row per function that ran the model since the
 * last reset.
 */
Datum
phi3_stats(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	FuncCounters copy[PHI3_N_STAT_FUNCS];
	TimestampTz reset_time;

	InitMaterializedSRF(fcinfo, 0);
	if (!StatsAvailable())
		return (Datum) 0;
	LWLockAcquire(shared->lock, LW_SHARED);
	memcpy(copy, shared->funcs, sizeof(copy));
	reset_time = shared->reset_time;
	LWLockRelease(shared->lock);

	for (int f = 0; f < PHI3_N_STAT_FUNCS; f++)
	{
		Datum		values[11];
		bool		nulls[11] = {0};

		if (copy[f].calls == 0)
			continue;
		values[0] = CStringGetTextDatum(FuncNames[f]);
		values[1] = Int64GetDatum(copy[f].calls);
		values[2] = Int64GetDatum(copy[f].rows);
		values[3] = Int64GetDatum(copy[f].prompt_tokens);
		values[4] = Int64GetDatum(copy[f].reused_tokens);
		values[5] = Int64GetDatum(copy[f].generated_tokens);
		values[6] = Float8GetDatum(copy[f].prefill_ms);
		values[7] = Float8GetDatum(copy[f].decode_ms);
		values[8] = Int64GetDatum(copy[f].errors);
		values[9] = Int64GetDatum(copy[f].cancels);
		values[10] = TimestampTzGetDatum(reset_time);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* phi3_stats_reset(): zero every counter (EXECUTE is revoked from PUBLIC). */
Datum
phi3_stats_reset(PG_FUNCTION_ARGS)
{
	if (shared == NULL)
		ReportNotCollected(ERROR);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	memset(shared->funcs, 0, sizeof(shared->funcs));
	shared->reset_time = GetCurrentTimestamp();
	LWLockRelease(shared->lock);
	PG_RETURN_VOID();
}

/*
 * phi3_stat_activity() returns one row per process generating now.
 */
Datum
phi3_stat_activity(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	bool		read_all;

	InitMaterializedSRF(fcinfo, 0);
	if (!StatsAvailable())
		return (Datum) 0;
	read_all = has_privs_of_role(GetUserId(), ROLE_PG_READ_ALL_STATS);

	for (int i = 0; i < shared->n_slots; i++)
	{
		ActivitySlot s;
		Datum		values[10];
		bool		nulls[10] = {0};

		SpinLockAcquire(&shared->slots[i].mutex);
		s = shared->slots[i];
		SpinLockRelease(&shared->slots[i].mutex);
		if (s.pid == 0)
			continue;

		values[0] = Int32GetDatum(s.pid);
		values[1] = ObjectIdGetDatum(s.userid);
		values[2] = ObjectIdGetDatum(s.dbid);
		if (read_all || has_privs_of_role(GetUserId(), s.userid))
		{
			values[3] = CStringGetTextDatum(FuncNames[s.func]);
			values[4] = CStringGetTextDatum(s.decoding ? "decode" : "prefill");
			values[5] = Int64GetDatum(s.rows_done);
			values[6] = Int64GetDatum(s.rows_total);
			nulls[6] = s.rows_total < 0;
			values[7] = Int64GetDatum(s.tokens);
			values[8] = Float8GetDatum(s.tokens_per_s);
			values[9] = TimestampTzGetDatum(s.started);
		}
		else
			for (int c = 3; c < 10; c++)
				nulls[c] = true;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
