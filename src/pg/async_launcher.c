/*-------------------------------------------------------------------------
 *
 * async_launcher.c
 *	  The shared state and the launcher of phi3_fill_async's background
 *	  workers (async_worker.c), and the wake-up at commit.
 *
 * Only with phi3 in shared_preload_libraries and phi3.async_workers > 0:
 * _PG_init reserves shared memory (one slot per worker, async_internal.h)
 * and registers the launcher, which connects to no database.  At start it
 * wants a worker for every database that accepts connections (a worker in
 * a database without the extension leaves at once); later a database is
 * wanted when a transaction that queued rows commits and no worker serves
 * it (Phi3AsyncWakeDatabase, called by async_queue.c's commit callback:
 * it sets the serving worker's latch, or adds the database to the wanted
 * list and sets the launcher's latch; a transaction prepared instead wakes
 * it at its COMMIT PREPARED, async_prepared.c).  The launcher starts a dynamic
 * worker for a wanted database when a slot is free (at most one per
 * ASYNC_START_INTERVAL_MS, so a worker that fails at once is no busy
 * loop); when none is, it asks an idle worker to leave, or else the
 * worker that has served its database longer than phi3.async_time_slice
 * (after its current batch); a worker that leaves re-queues its own
 * database as wanted if rows are pending there, so busy databases take
 * turns.  A database has at most one worker.
 *
 * IDENTIFICATION
 *	  src/pg/async_launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "async_internal.h"

PGDLLEXPORT void phi3_async_launcher_main(Datum arg);

/* The launcher starts at most one worker this often */
#define ASYNC_START_INTERVAL_MS	500

AsyncShared *phi3_async_shared = NULL;
static bool preloaded = false;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size AsyncSharedSize(void);
static void AsyncShmemRequest(void);
static void AsyncShmemStartup(void);
static void LauncherWantAllDatabases(void);
static void LauncherReap(BackgroundWorkerHandle **handles);
static bool LauncherStartWanted(BackgroundWorkerHandle **handles, bool *waiting);
static int	MakeRoomVictim(void);
static bool DatabaseAcceptsWorker(Oid dboid);

/* A transaction of a background process (now() is its start, as in a backend). */
void
Phi3AsyncBeginXact(void)
{
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
}

/* ---- shared memory and registration ---- */

/*
 * With shared_preload_libraries: reserve the slots and register the
 * launcher (unless phi3.async_workers is 0).
 */
void
Phi3AsyncInit(void)
{
	BackgroundWorker bgw;

	if (!process_shared_preload_libraries_in_progress)
		return;
	preloaded = true;
	if (phi3_async_workers == 0)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = AsyncShmemRequest;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = AsyncShmemStartup;
	Phi3AsyncPreparedInit();

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	snprintf(bgw.bgw_library_name, BGW_MAXLEN, "phi3");
	snprintf(bgw.bgw_function_name, BGW_MAXLEN, "phi3_async_launcher_main");
	snprintf(bgw.bgw_name, BGW_MAXLEN, PHI3_ASYNC_LAUNCHER_TYPE);
	snprintf(bgw.bgw_type, BGW_MAXLEN, PHI3_ASYNC_LAUNCHER_TYPE);
	RegisterBackgroundWorker(&bgw);
}

/* Why no worker will fill queued rows, or NULL when workers run. */
const char *
Phi3AsyncNoWorkersReason(void)
{
	if (!preloaded)
		return "phi3 is not in shared_preload_libraries, so no phi3 background worker runs.";
	if (phi3_async_workers == 0)
		return "phi3.async_workers is 0, so no phi3 background worker runs.";
	return NULL;
}

static Size
AsyncSharedSize(void)
{
	return add_size(offsetof(AsyncShared, slots), mul_size(phi3_async_workers, sizeof(AsyncSlot)));
}

static void
AsyncShmemRequest(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(AsyncSharedSize());
	RequestAddinShmemSpace(Phi3AsyncPreparedShmemSize());
	RequestNamedLWLockTranche("phi3_async", 1);
}

static void
AsyncShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	phi3_async_shared = ShmemInitStruct("phi3_async", AsyncSharedSize(), &found);
	if (!found)
	{
		memset(phi3_async_shared, 0, AsyncSharedSize());
		phi3_async_shared->lock = &(GetNamedLWLockTranche("phi3_async"))->lock;
		phi3_async_shared->n_slots = phi3_async_workers;
	}
	Phi3AsyncPreparedShmemInit();
	LWLockRelease(AddinShmemInitLock);
}

/* Remember that dboid waits for a worker (caller holds the lock exclusively). */
void
Phi3AsyncAddWanted(Oid dboid)
{
	for (int i = 0; i < phi3_async_shared->n_wanted; i++)
		if (phi3_async_shared->wanted[i] == dboid)
			return;
	if (phi3_async_shared->n_wanted < ASYNC_MAX_WANTED)
		phi3_async_shared->wanted[phi3_async_shared->n_wanted++] = dboid;
}

/*
 * Rows were queued in dboid and committed: wake the worker that serves
 * it, or ask the launcher for one.  Called after commit: cannot fail.
 */
void
Phi3AsyncWakeDatabase(Oid dboid)
{
	bool		served = false;

	if (phi3_async_shared == NULL || Phi3AsyncIsWorker())
		return;
	LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < phi3_async_shared->n_slots; i++)
	{
		AsyncSlot  *s = &phi3_async_shared->slots[i];

		if (s->in_use && s->dboid == dboid && !s->leaving)
		{
			served = true;
			if (s->latch)
				SetLatch(s->latch);
		}
	}
	if (!served)
	{
		Phi3AsyncAddWanted(dboid);
		if (phi3_async_shared->launcher_latch)
			SetLatch(phi3_async_shared->launcher_latch);
	}
	LWLockRelease(phi3_async_shared->lock);
}

/* ---- the launcher ---- */

void
phi3_async_launcher_main(Datum arg)
{
	BackgroundWorkerHandle **handles;
	TimestampTz last_start = 0;
	long		timeout;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	handles = MemoryContextAllocZero(TopMemoryContext, sizeof(*handles) * phi3_async_shared->n_slots);
	LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
	phi3_async_shared->launcher_latch = MyLatch;
	/* a launcher restarted after an error: slots of workers that are gone are free */
	for (int i = 0; i < phi3_async_shared->n_slots; i++)
	{
		AsyncSlot  *s = &phi3_async_shared->slots[i];

		if (s->in_use && (s->pid == 0 || kill(s->pid, 0) != 0))
			memset(s, 0, sizeof(*s));
	}
	LWLockRelease(phi3_async_shared->lock);
	LauncherWantAllDatabases();

	for (;;)
	{
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		LauncherReap(handles);
		if (TimestampDifferenceExceeds(last_start, GetCurrentTimestamp(), ASYNC_START_INTERVAL_MS))
		{
			bool		waiting = false;

			if (LauncherStartWanted(handles, &waiting))
				last_start = GetCurrentTimestamp();
			/* a database waits for a busy worker's time slice: look again soon */
			timeout = waiting ? ASYNC_START_INTERVAL_MS : ASYNC_NAPTIME_MS;
		}
		else
			timeout = ASYNC_START_INTERVAL_MS;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}

/* At start every database that accepts connections may have queued rows. */
static void
LauncherWantAllDatabases(void)
{
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	Phi3AsyncBeginXact();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
			Phi3AsyncAddWanted(db->oid);
	}
	LWLockRelease(phi3_async_shared->lock);
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
}

/* Free the slots of workers that have ended. */
static void
LauncherReap(BackgroundWorkerHandle **handles)
{
	for (int i = 0; i < phi3_async_shared->n_slots; i++)
	{
		pid_t		pid;

		if (handles[i] == NULL || GetBackgroundWorkerPid(handles[i], &pid) != BGWH_STOPPED)
			continue;
		LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
		memset(&phi3_async_shared->slots[i], 0, sizeof(AsyncSlot));
		LWLockRelease(phi3_async_shared->lock);
		pfree(handles[i]);
		handles[i] = NULL;
	}
}

/* Whether a worker can connect to dboid (it exists and accepts connections). */
static bool
DatabaseAcceptsWorker(Oid dboid)
{
	HeapTuple	tup;
	bool		ok = false;

	StartTransactionCommand();
	tup = SearchSysCache1(DATABASEOID, ObjectIdGetDatum(dboid));
	if (HeapTupleIsValid(tup))
	{
		ok = ((Form_pg_database) GETSTRUCT(tup))->datallowconn;
		ReleaseSysCache(tup);
	}
	CommitTransactionCommand();
	return ok;
}

/*
 * Every slot is busy and a database waits: the worker that should make
 * room (the lock held).  An idle one, else the one that has served its
 * database longest, once that is more than phi3.async_time_slice; -1 when
 * none should yet.  A busy worker leaves after its current batch.
 */
static int
MakeRoomVictim(void)
{
	int			victim = -1;
	TimestampTz now = GetCurrentTimestamp();

	for (int i = 0; i < phi3_async_shared->n_slots; i++)
	{
		AsyncSlot  *s = &phi3_async_shared->slots[i];

		if (!s->in_use || s->leaving || s->exit_requested || s->latch == NULL)
			continue;
		if (s->idle)
			return i;
		if (phi3_async_time_slice > 0 &&
			TimestampDifferenceExceeds(s->serving_since, now, phi3_async_time_slice) &&
			(victim < 0 || s->serving_since < phi3_async_shared->slots[victim].serving_since))
			victim = i;
	}
	return victim;
}

/*
 * Start a worker for the first wanted database that has none, if a slot
 * is free; when none is, ask a worker to make room (MakeRoomVictim), or
 * set *waiting when none should yet.  Wanted databases that are gone are
 * forgotten.  Returns whether a worker was started.
 */
static bool
LauncherStartWanted(BackgroundWorkerHandle **handles, bool *waiting)
{
	int			start_slot[1];
	int			n_start = 0;
	int			w = 0;
	Oid			wanted[ASYNC_MAX_WANTED];
	bool		accepts[ASYNC_MAX_WANTED];
	int			n_wanted;

	/* catalog lookups outside the lock */
	LWLockAcquire(phi3_async_shared->lock, LW_SHARED);
	n_wanted = phi3_async_shared->n_wanted;
	memcpy(wanted, phi3_async_shared->wanted, sizeof(Oid) * n_wanted);
	LWLockRelease(phi3_async_shared->lock);
	for (int i = 0; i < n_wanted; i++)
		accepts[i] = DatabaseAcceptsWorker(wanted[i]);

	LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < n_wanted; i++)
	{
		if (accepts[i])
			continue;
		for (int j = 0; j < phi3_async_shared->n_wanted; j++)
			if (phi3_async_shared->wanted[j] == wanted[i])
				phi3_async_shared->wanted[j] = phi3_async_shared->wanted[--phi3_async_shared->n_wanted];
	}
	while (w < phi3_async_shared->n_wanted && n_start == 0)
	{
		Oid			db = phi3_async_shared->wanted[w];
		int			free_slot = -1;
		bool		served = false;

		for (int i = 0; i < phi3_async_shared->n_slots; i++)
		{
			AsyncSlot  *s = &phi3_async_shared->slots[i];

			if (s->in_use && s->dboid == db && !s->leaving)
				served = true;
			else if (!s->in_use && handles[i] == NULL && free_slot < 0)
				free_slot = i;
		}
		if (!served && free_slot < 0)
		{
			int			victim = MakeRoomVictim();

			if (victim >= 0)
			{
				phi3_async_shared->slots[victim].exit_requested = true;
				SetLatch(phi3_async_shared->slots[victim].latch);
			}
			else
				*waiting = true;
			break;
		}
		phi3_async_shared->wanted[w] = phi3_async_shared->wanted[--phi3_async_shared->n_wanted];
		if (!served)
		{
			AsyncSlot  *s = &phi3_async_shared->slots[free_slot];

			memset(s, 0, sizeof(*s));
			s->in_use = true;
			s->dboid = db;
			start_slot[n_start++] = free_slot;
		}
	}
	LWLockRelease(phi3_async_shared->lock);

	for (int k = 0; k < n_start; k++)
	{
		int			i = start_slot[k];
		BackgroundWorker bgw;

		memset(&bgw, 0, sizeof(bgw));
		bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
		bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
		bgw.bgw_restart_time = BGW_NEVER_RESTART;
		snprintf(bgw.bgw_library_name, BGW_MAXLEN, "phi3");
		snprintf(bgw.bgw_function_name, BGW_MAXLEN, "phi3_async_worker_main");
		snprintf(bgw.bgw_name, BGW_MAXLEN, "%s for database %u", PHI3_ASYNC_WORKER_TYPE,
				 phi3_async_shared->slots[i].dboid);
		snprintf(bgw.bgw_type, BGW_MAXLEN, PHI3_ASYNC_WORKER_TYPE);
		bgw.bgw_main_arg = Int32GetDatum(i);
		bgw.bgw_notify_pid = MyProcPid;
		if (!RegisterDynamicBackgroundWorker(&bgw, &handles[i]))
		{
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("could not start a phi3 async worker for database %u",
							phi3_async_shared->slots[i].dboid),
					 errhint("Raise max_worker_processes; it must leave room for phi3.async_workers.")));
			LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
			Phi3AsyncAddWanted(phi3_async_shared->slots[i].dboid);
			memset(&phi3_async_shared->slots[i], 0, sizeof(AsyncSlot));
			LWLockRelease(phi3_async_shared->lock);
			handles[i] = NULL;
			return false;
		}
	}
	return n_start > 0;
}
