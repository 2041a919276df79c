/*-------------------------------------------------------------------------
 *
 * async_worker.c
 *	  The background workers of phi3_fill_async: each fills the queued rows
 *	  of one database (started by the launcher, async_launcher.c).
 *
 * A worker repeats: claim, prepare, generate, write.
 *   claim    (one short transaction) up to phi3.batch_size pending items of
 *            the oldest pending item's trigger, FOR UPDATE SKIP LOCKED, set
 *            running with attempts + 1 and its pid.
 *   prepare  (one transaction, as the table's owner) read each row by its
 *            key and render the trigger's template; a row deleted or whose
 *            column was set meanwhile is done at once ("row deleted",
 *            "value set").
 *   generate (a transaction without snapshot or lock) the prompts through
 *            Phi3RunBatch, continuous batching; when the batch fails, its
 *            rows are generated one by one so that the error is one row's.
 *   write    (one transaction per row) as the owner, UPDATE ... SET col =
 *            $1 WHERE <key> AND col IS NULL (never over a value set
 *            meanwhile), then the item done -- only if it is still this
 *            worker's running item.  The item is done exactly when the
 *            update commits.
 * Errors of a row are recorded on its item (last_error) and it goes back
 * to pending, due again after phi3.async_retry_delay (doubled at each
 * attempt, at most an hour: retry_at), or to failed after
 * phi3.async_max_attempts; they never stop the worker.  An attempt is counted when the item is claimed, so a worker
 * that dies (kill -9, immediate shutdown, a crash) uses up one attempt of
 * each of its items; items left running by a process that is no longer a
 * phi3 worker are put back to pending (or failed) by the next worker, at
 * its start and whenever it is idle.  A row can therefore be generated
 * twice, but written once: the write only fills a NULL.
 *
 * Least privilege: the worker connects as the bootstrap superuser, but
 * reads and writes the user's table as the table's owner, in a
 * security-restricted operation with its settings changes undone
 * (SetUserIdAndSecContext, NewGUCNestLevel), as VACUUM and REFRESH
 * MATERIALIZED VIEW run user code, with the database's configured
 * search_path.  Its own statements run with search_path = pg_catalog,
 * are schema-qualified and use pg_catalog operators.
 *
 * Signals: SIGTERM ends a worker within one decoder step (the batch
 * driver's CHECK_FOR_INTERRUPTS); SIGHUP reloads the configuration
 * between batches.  DROP EXTENSION: the worker sees the extension gone at
 * its next round (at the latest after ASYNC_NAPTIME_MS) and leaves.
 *
 * IDENTIFICATION
 *	  src/pg/async_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/tcopprot.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/wait_event.h"

#include "async_internal.h"

PGDLLEXPORT void phi3_async_worker_main(Datum arg);

/* A worker whose round failed waits this long before the next (unless woken) */
#define ASYNC_ERROR_NAPTIME_MS	1000

static bool am_worker = false;
static AsyncSlot *my_slot = NULL;
static char *owner_search_path = NULL;	/* the database's search_path, for user code */

/* One claimed queue item and what became of it */
typedef struct AsyncItem
{
	int64		id;
	int			nkeys;
	Datum	   *keys;			/* key values, of the key columns' types */
	char	   *prompt;			/* rendered template; NULL: nothing to generate */
	char	   *result;			/* the model's answer, server encoding */
	const char *outcome;		/* set: done without generating */
	char	   *error;			/* set: this attempt failed */
} AsyncItem;

/* A claimed batch: items of one trigger, hence of one table and column */
typedef struct AsyncBatch
{
	MemoryContext cxt;
	char	   *queue;			/* qualified queue table */
	Oid			relid;
	Oid			trigger_oid;
	char	   *column;
	int			n;
	AsyncItem  *items;
	/* from prepare */
	Oid			owner;
	char	   *system;			/* the trigger's system prompt, or NULL */
	FormData_pg_attribute target; /* the target column */
	int			nkeys;
	Oid		   *key_types;		/* (nkeys + 1) $1 is the value, then the keys */
	char	   *update_sql;		/* UPDATE ... SET col = $1 WHERE <key> AND col IS NULL */
	char	   *exists_sql;		/* SELECT 1 FROM ... WHERE <key> */
	/* for the generate step */
	int			gen_next;		/* the batch driver's next row: an index into items */
	int		   *gen_items;		/* driver row -> item index */
	int			n_gen;
} AsyncBatch;
static void WorkerLeave(void);
static void WorkerOnExit(int code, Datum arg);
static bool WorkerRound(MemoryContext cxt);
static int	ClaimItems(AsyncBatch *b);
static void PrepareItems(AsyncBatch *b);
static void GenerateItems(AsyncBatch *b);
static void WriteItem(AsyncBatch *b, AsyncItem *it);
static void FinishItem(AsyncBatch *b, AsyncItem *it, const char *outcome, const char *error);
static uint64 RecoverOrphans(void);
static long NextRetryDelayMs(bool *waiting);
static char *CatchError(MemoryContext cxt);


/* Whether this process is a phi3 async worker. */
bool
Phi3AsyncIsWorker(void)
{
	return am_worker;
}

/* ---- a worker ---- */

void
phi3_async_worker_main(Datum arg)
{
	int			index = DatumGetInt32(arg);
	Oid			dboid;
	MemoryContext cxt;
	TimestampTz idle_since = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	if (phi3_async_shared == NULL || index < 0 || index >= phi3_async_shared->n_slots)
		proc_exit(1);
	my_slot = &phi3_async_shared->slots[index];
	LWLockAcquire(phi3_async_shared->lock, LW_SHARED);
	dboid = my_slot->dboid;
	LWLockRelease(phi3_async_shared->lock);

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	am_worker = true;

	/*
	 * The worker's own statements see only pg_catalog; the table owner's
	 * code (BecomeOwner) gets the database's configured search_path back
	 */
	owner_search_path = MemoryContextStrdup(TopMemoryContext, GetConfigOption("search_path", false, false));
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_SESSION);
	pgstat_report_appname(PHI3_ASYNC_WORKER_TYPE);
	before_shmem_exit(WorkerOnExit, (Datum) 0);
	LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
	my_slot->pid = MyProcPid;
	my_slot->latch = MyLatch;
	my_slot->serving_since = GetCurrentTimestamp();
	LWLockRelease(phi3_async_shared->lock);

	cxt = AllocSetContextCreate(TopMemoryContext, "phi3 async batch", ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		busy = false;
		bool		failed = false;
		bool		waiting = true;
		bool		leave;
		long		naptime = ASYNC_NAPTIME_MS;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * An error outside the rows' own (which are caught and recorded
		 * where they happen): the queue's statements, the extension being
		 * dropped under the worker.  Logged; the worker goes on.
		 */
		PG_TRY();
		{
			busy = WorkerRound(cxt);
			/* rows of a worker that died are queued again: take them now */
			if (!busy)
				busy = RecoverOrphans() > 0;
			if (!busy)
				naptime = NextRetryDelayMs(&waiting);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(TopMemoryContext);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			MemoryContextReset(cxt);
			failed = true;
		}
		PG_END_TRY();
		if (busy || failed || waiting)
			idle_since = 0;
		if (busy)
		{
			/* another database waits and this one had its time slice */
			LWLockAcquire(phi3_async_shared->lock, LW_SHARED);
			leave = my_slot->exit_requested;
			LWLockRelease(phi3_async_shared->lock);
			if (leave)
				break;
			continue;
		}

		/*
		 * Nothing to do: sleep until woken.  After phi3.async_idle_timeout
		 * with an empty queue the worker leaves the database (so that DROP
		 * DATABASE and CREATE DATABASE ... TEMPLATE are not blocked by it);
		 * the next commit that queues rows there starts a worker again.
		 */
		if (idle_since == 0)
			idle_since = GetCurrentTimestamp();
		else if (phi3_async_idle_timeout > 0 &&
				 TimestampDifferenceExceeds(idle_since, GetCurrentTimestamp(), phi3_async_idle_timeout))
			break;
		if (phi3_async_idle_timeout > 0)
			naptime = Min(naptime, phi3_async_idle_timeout);
		LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
		my_slot->idle = true;
		leave = my_slot->exit_requested;
		LWLockRelease(phi3_async_shared->lock);
		if (leave)
			break;
		pgstat_report_activity(STATE_IDLE, NULL);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 failed ? ASYNC_ERROR_NAPTIME_MS : naptime, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
		my_slot->idle = false;
		LWLockRelease(phi3_async_shared->lock);
	}
	WorkerLeave();
	proc_exit(0);
}

/*
 * Stop taking wake-ups; if rows were queued meanwhile, want this database
 * again (the launcher starts a worker for it when a slot is free).
 */
static void
WorkerLeave(void)
{
	bool		pending = false;
	char	   *queue;

	LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
	my_slot->leaving = true;
	LWLockRelease(phi3_async_shared->lock);

	Phi3AsyncBeginXact();
	PushActiveSnapshot(GetTransactionSnapshot());
	queue = Phi3AsyncQueueName(true);
	if (queue != NULL && SPI_connect() == SPI_OK_CONNECT)
	{
		char	   *sql = psprintf("SELECT 1 FROM %s WHERE state = 'pending' LIMIT 1", queue);

		pending = SPI_execute(sql, true, 1) == SPI_OK_SELECT && SPI_processed > 0;
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (pending)
	{
		/* (not Phi3AsyncWakeDatabase, which ignores the workers' own commits) */
		LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
		Phi3AsyncAddWanted(MyDatabaseId);
		if (phi3_async_shared->launcher_latch)
			SetLatch(phi3_async_shared->launcher_latch);
		LWLockRelease(phi3_async_shared->lock);
	}
}

/* However the worker ends: no more wake-ups for it. */
static void
WorkerOnExit(int code, Datum arg)
{
	if (phi3_async_shared == NULL || my_slot == NULL)
		return;
	LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
	my_slot->leaving = true;
	my_slot->latch = NULL;

	/*
	 * Ended by an error: the launcher starts another worker here at its
	 * next round (not at once: an error that repeats is not a busy loop)
	 */
	if (code != 0)
		Phi3AsyncAddWanted(MyDatabaseId);
	LWLockRelease(phi3_async_shared->lock);
}

/*
 * One round: claim a batch and fill it.  False when there was nothing to
 * do (or the extension is gone: then the worker leaves).
 */
static bool
WorkerRound(MemoryContext cxt)
{
	AsyncBatch	b;
	bool		extension_gone;

	Phi3AsyncBeginXact();
	extension_gone = !OidIsValid(get_extension_oid("phi3", true));
	CommitTransactionCommand();
	if (extension_gone)
	{
		LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
		my_slot->exit_requested = true;
		LWLockRelease(phi3_async_shared->lock);
		return false;
	}

	memset(&b, 0, sizeof(b));
	b.cxt = cxt;
	if (ClaimItems(&b) == 0)
	{
		MemoryContextReset(cxt);
		return false;
	}
	pgstat_report_activity(STATE_RUNNING, "phi3_fill_async: filling queued rows");
	PrepareItems(&b);
	GenerateItems(&b);
	for (int i = 0; i < b.n; i++)
	{
		AsyncItem  *it = &b.items[i];

		CHECK_FOR_INTERRUPTS();
		if (it->error != NULL)
			FinishItem(&b, it, NULL, it->error);
		else if (it->result != NULL)
			WriteItem(&b, it);
	}
	MemoryContextReset(cxt);
	return true;
}

/*
 * The error being handled, as text in cxt; the transaction is aborted.
 * Call from PG_CATCH.
 */
static char *
CatchError(MemoryContext cxt)
{
	ErrorData  *edata;
	char	   *msg;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	AbortCurrentTransaction();
	msg = edata->detail ? psprintf("%s (%s)", edata->message, edata->detail)
		: pstrdup(edata->message);
	FreeErrorData(edata);
	return msg;
}

/* Run an SPI statement in the current transaction; error on an unexpected result. */
static void
RunSql(const char *sql, int nargs, Oid *types, Datum *values, const char *nulls, int expect)
{
	int			ret = SPI_execute_with_args(sql, nargs, types, values, nulls, false, 0);

	if (ret != expect)
		elog(ERROR, "phi3 async worker: statement failed (%s): %s", SPI_result_code_string(ret), sql);
}

/*
 * Claim up to phi3.batch_size pending items of the oldest pending item's
 * trigger: running, one more attempt, this worker's pid.
 */
static int
ClaimItems(AsyncBatch *b)
{
	Oid			types[2] = {INT4OID, INT4OID};
	Datum		values[2];
	MemoryContext old;

	Phi3AsyncBeginXact();
	PushActiveSnapshot(GetTransactionSnapshot());
	b->queue = Phi3AsyncQueueName(true);
	if (b->queue == NULL || SPI_connect() != SPI_OK_CONNECT)
	{
		PopActiveSnapshot();
		CommitTransactionCommand();
		return 0;
	}
	old = MemoryContextSwitchTo(b->cxt);
	b->queue = pstrdup(b->queue);
	MemoryContextSwitchTo(old);
	values[0] = Int32GetDatum(Max(Min(phi3_batch_size, phi3_max_batch_size), 1));
	values[1] = Int32GetDatum(MyProcPid);
	RunSql(psprintf("WITH next AS (SELECT trigger_oid FROM %s WHERE state = 'pending' "
					"AND (retry_at IS NULL OR retry_at OPERATOR(pg_catalog.<=) pg_catalog.now()) "
					"ORDER BY id LIMIT 1), "
					"c AS (SELECT q.id FROM %s q, next WHERE q.state = 'pending' "
					"AND (q.retry_at IS NULL OR q.retry_at OPERATOR(pg_catalog.<=) pg_catalog.now()) "
					"AND q.trigger_oid OPERATOR(pg_catalog.=) next.trigger_oid "
					"ORDER BY q.id LIMIT $1 FOR UPDATE OF q SKIP LOCKED) "
					"UPDATE %s q SET state = 'running', attempts = q.attempts OPERATOR(pg_catalog.+) 1, "
					"worker_pid = $2, updated_at = pg_catalog.now() FROM c "
					"WHERE q.id OPERATOR(pg_catalog.=) c.id "
					"RETURNING q.id, q.relid, q.trigger_oid, q.column_name::pg_catalog.text, q.key",
					b->queue, b->queue, b->queue),
		   2, types, values, NULL, SPI_OK_UPDATE_RETURNING);

	old = MemoryContextSwitchTo(b->cxt);
	b->n = (int) SPI_processed;
	b->items = palloc0(sizeof(AsyncItem) * Max(b->n, 1));
	for (int i = 0; i < b->n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum	   *keys;
		bool	   *key_nulls;

		b->items[i].id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		b->relid = DatumGetObjectId(SPI_getbinval(tup, desc, 2, &isnull));
		b->trigger_oid = DatumGetObjectId(SPI_getbinval(tup, desc, 3, &isnull));
		b->column = SPI_getvalue(tup, desc, 4);
		deconstruct_array(DatumGetArrayTypePCopy(SPI_getbinval(tup, desc, 5, &isnull)),
						  TEXTOID, -1, false, TYPALIGN_INT, &keys, &key_nulls, &b->items[i].nkeys);
		b->items[i].keys = keys;
	}
	MemoryContextSwitchTo(old);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return b->n;
}

/* Become the table's owner for user code; returns the GUC nest level to undo. */
static int
BecomeOwner(Oid owner, Oid *save_userid, int *save_sec)
{
	int			nest;

	GetUserIdAndSecContext(save_userid, save_sec);
	SetUserIdAndSecContext(owner, *save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", owner_search_path, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

static void
EndOwner(int nest, Oid save_userid, int save_sec)
{
	AtEOXact_GUC(false, nest);
	SetUserIdAndSecContext(save_userid, save_sec);
}

/*
 * The statements that find the row by its key ($2..): the replica
 * identity index's columns, compared with its operator class's equality.
 */
static void
BuildKeySql(AsyncBatch *b, Relation rel)
{
	Oid			indexoid = RelationGetReplicaIndex(rel);
	Relation	index;
	StringInfoData where;
	char	   *qrel;
	const char *qcol = quote_identifier(b->column);

	if (!OidIsValid(indexoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no primary key or replica identity index any more",
						RelationGetRelationName(rel))));
	index = index_open(indexoid, AccessShareLock);
	b->nkeys = index->rd_index->indnkeyatts;
	b->key_types = MemoryContextAlloc(b->cxt, sizeof(Oid) * (b->nkeys + 1));
	b->key_types[0] = TEXTOID;
	initStringInfo(&where);
	for (int k = 0; k < b->nkeys; k++)
	{
		AttrNumber	att = index->rd_index->indkey.values[k];
		Form_pg_attribute attr = TupleDescAttr(RelationGetDescr(rel), att - 1);
		Oid			op = get_opfamily_member(index->rd_opfamily[k], index->rd_opcintype[k],
											 index->rd_opcintype[k], BTEqualStrategyNumber);
		HeapTuple	optup = SearchSysCache1(OPEROID, ObjectIdGetDatum(op));
		Form_pg_operator opform;

		if (!HeapTupleIsValid(optup))
			elog(ERROR, "no equality operator for key column %d of \"%s\"", k + 1,
				 RelationGetRelationName(rel));
		opform = (Form_pg_operator) GETSTRUCT(optup);
		appendStringInfo(&where, "%s%s OPERATOR(%s.%s) $%d", k > 0 ? " AND " : "",
						 quote_identifier(NameStr(attr->attname)),
						 quote_identifier(get_namespace_name(opform->oprnamespace)),
						 NameStr(opform->oprname), k + 2);
		ReleaseSysCache(optup);
		b->key_types[k + 1] = attr->atttypid;
	}
	index_close(index, AccessShareLock);
	qrel = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
									  RelationGetRelationName(rel));
	b->update_sql = MemoryContextStrdup(b->cxt,
										psprintf("UPDATE ONLY %s SET %s = $1 WHERE %s AND %s IS NULL",
												 qrel, qcol, where.data, qcol));
	b->exists_sql = MemoryContextStrdup(b->cxt,
										psprintf("SELECT * FROM ONLY %s WHERE %s", qrel, where.data));
}

/* The key's text values converted to the key columns' types (in b->cxt). */
static void
ConvertKeys(AsyncBatch *b, AsyncItem *it)
{
	Datum	   *vals;
	MemoryContext old;

	if (it->nkeys != b->nkeys)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the queued key has %d columns but the table's key has %d", it->nkeys, b->nkeys),
				 errdetail("The table's primary key or replica identity changed after the row was queued.")));
	old = MemoryContextSwitchTo(b->cxt);
	vals = palloc(sizeof(Datum) * (b->nkeys + 1));
	vals[0] = (Datum) 0;
	for (int k = 0; k < b->nkeys; k++)
	{
		Oid			typinput;
		Oid			typioparam;

		getTypeInputInfo(b->key_types[k + 1], &typinput, &typioparam);
		vals[k + 1] = OidInputFunctionCall(typinput, TextDatumGetCString(it->keys[k]),
										   typioparam, -1);
	}
	MemoryContextSwitchTo(old);
	it->keys = vals;
}

/* Read one item's row as the owner: skip it, or render its prompt. */
static void
PrepareItem(AsyncBatch *b, AsyncItem *it, const char *template, Relation rel)
{
	char	   *nulls = palloc(b->nkeys + 1);
	bool		isnull;
	int			attnum;

	memset(nulls, ' ', b->nkeys + 1);
	nulls[0] = 'n';
	ConvertKeys(b, it);
	RunSql(b->exists_sql, b->nkeys + 1, b->key_types, it->keys, nulls, SPI_OK_SELECT);
	if (SPI_processed == 0)
	{
		it->outcome = "row deleted";
		return;
	}
	attnum = SPI_fnumber(SPI_tuptable->tupdesc, b->column);
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, attnum, &isnull);
	if (!isnull)
	{
		it->outcome = "value set";
		return;
	}
	it->prompt = MemoryContextStrdup(b->cxt,
									 Phi3FillRenderTemplate("phi3_fill_async", template,
															SPI_tuptable->vals[0],
															SPI_tuptable->tupdesc,
															RelationGetRelationName(rel)));
}

/* Find the trigger and its table; NULL when either was dropped. */
static Trigger *
FindTrigger(Relation rel, Oid trigger_oid)
{
	if (rel == NULL || rel->trigdesc == NULL)
		return NULL;
	for (int i = 0; i < rel->trigdesc->numtriggers; i++)
		if (rel->trigdesc->triggers[i].tgoid == trigger_oid)
			return &rel->trigdesc->triggers[i];
	return NULL;
}

/*
 * Read the rows of the batch as the table's owner and render their
 * prompts; rows deleted or set meanwhile are done now.  An error here
 * (the table's, the owner's rights) is every item's.
 */
static void
PrepareItems(AsyncBatch *b)
{
	Oid			save_userid = InvalidOid;
	int			save_sec = 0;
	int			nest = -1;
	bool		orphan = false;

	PG_TRY();
	{
		Relation	rel;
		Trigger    *trigger;

		Phi3AsyncBeginXact();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		rel = try_table_open(b->relid, AccessShareLock);
		trigger = FindTrigger(rel, b->trigger_oid);
		if (trigger == NULL)
			orphan = true;
		else
		{
			char	   *template = pstrdup(trigger->tgargs[1]);

			if (trigger->tgnargs == 3)
				b->system = MemoryContextStrdup(b->cxt, trigger->tgargs[2]);
			b->owner = rel->rd_rel->relowner;
			(void) Phi3FillTargetColumn("phi3_fill_async", b->column, RelationGetDescr(rel),
										RelationGetRelationName(rel));
			b->target = *TupleDescAttr(RelationGetDescr(rel),
									   SPI_fnumber(RelationGetDescr(rel), b->column) - 1);
			BuildKeySql(b, rel);
			nest = BecomeOwner(b->owner, &save_userid, &save_sec);
			for (int i = 0; i < b->n; i++)
				PrepareItem(b, &b->items[i], template, rel);
			EndOwner(nest, save_userid, save_sec);
			nest = -1;
		}
		if (rel != NULL)
			table_close(rel, AccessShareLock);
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		char	   *msg;

		if (nest >= 0)
			SetUserIdAndSecContext(save_userid, save_sec);
		msg = CatchError(b->cxt);
		for (int i = 0; i < b->n; i++)
		{
			b->items[i].error = msg;
			b->items[i].prompt = NULL;
			b->items[i].outcome = NULL;
		}
		return;
	}
	PG_END_TRY();

	if (orphan)
	{
		/* the table or the trigger was dropped: the work is moot */
		Oid			types[1] = {INT8OID};

		Phi3AsyncBeginXact();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");
		for (int i = 0; i < b->n; i++)
		{
			Datum		v = Int64GetDatum(b->items[i].id);

			RunSql(psprintf("DELETE FROM %s WHERE id OPERATOR(pg_catalog.=) $1", b->queue),
				   1, types, &v, NULL, SPI_OK_DELETE);
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		b->n = 0;
		return;
	}
	for (int i = 0; i < b->n; i++)
		if (b->items[i].outcome != NULL)
			FinishItem(b, &b->items[i], b->items[i].outcome, NULL);
}

/* ---- generation through the batch driver ---- */

static bool
GenNext(void *arg, int64 index, Phi3GenRequest *req, Phi3RowResult *kind)
{
	AsyncBatch *b = (AsyncBatch *) arg;

	if (index >= b->n_gen)
		return false;
	Phi3FillRequestInit(req, b->items[b->gen_items[index]].prompt, b->system);
	*kind = PHI3_ROW_TEXT;
	return true;
}

static void
GenEmit(void *arg, int64 index, Phi3RowResult kind, const char *text, size_t len)
{
	AsyncBatch *b = (AsyncBatch *) arg;
	size_t		n = len;
	char	   *trimmed;

	trimmed = Phi3TrimUtf8(pnstrdup(text, len), &n);
	b->items[b->gen_items[index]].result = MemoryContextStrdup(b->cxt, Phi3Utf8ToCString(trimmed, n));
}

static void
GenDescribeRow(void *arg, int64 index)
{
	AsyncBatch *b = (AsyncBatch *) arg;

	if (index < b->n_gen)
		errcontext("phi3 queue item %lld", (long long) b->items[b->gen_items[index]].id);
}

/* Generate the rows listed in b->gen_items; false (and the error, in cxt) when it failed. */
static bool
GenerateList(AsyncBatch *b, char **error)
{
	static const Phi3BatchOps ops = {GenNext, GenEmit, GenDescribeRow};
	volatile bool ok = true;

	PG_TRY();
	{
		Phi3AsyncBeginXact();
		Phi3StatsSetFunction(PHI3_STAT_FILL_ASYNC);
		Phi3RunBatch(&ops, b, b->n_gen);
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		*error = CatchError(b->cxt);
		ok = false;
	}
	PG_END_TRY();
	return ok;
}

/*
 * Generate every item that has a prompt, batched; if the batch fails,
 * once more one row at a time, so that only the failing rows fail.
 */
static void
GenerateItems(AsyncBatch *b)
{
	int		   *all = MemoryContextAlloc(b->cxt, sizeof(int) * Max(b->n, 1));
	int			n_all = 0;
	char	   *error = NULL;

	for (int i = 0; i < b->n; i++)
		if (b->items[i].prompt != NULL && b->items[i].error == NULL)
			all[n_all++] = i;
	if (n_all == 0)
		return;
	b->gen_items = all;
	b->n_gen = n_all;
	if (GenerateList(b, &error))
		return;
	for (int k = 0; k < n_all; k++)
	{
		AsyncItem  *it = &b->items[all[k]];

		CHECK_FOR_INTERRUPTS();
		if (it->result != NULL)
			continue;
		if (n_all > 1)
		{
			b->gen_items = &all[k];
			b->n_gen = 1;
			if (GenerateList(b, &error))
				continue;
		}
		it->error = error;
	}
}

/* ---- writing ---- */

/*
 * Fill one row: as the owner, set the column where it is still NULL; then
 * the item done, if it is still this worker's.  One transaction.
 */
static void
WriteItem(AsyncBatch *b, AsyncItem *it)
{
	Oid			save_userid = InvalidOid;
	int			save_sec = 0;
	int			nest = -1;

	PG_TRY();
	{
		char	   *nulls = palloc(b->nkeys + 1);
		const char *outcome;
		Datum		qvals[3];
		Oid			qtypes[3] = {INT8OID, INT4OID, TEXTOID};
		bool		still_ours;

		memset(nulls, ' ', b->nkeys + 1);
		Phi3AsyncBeginXact();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "SPI_connect failed");

		nest = BecomeOwner(b->owner, &save_userid, &save_sec);
		it->keys[0] = Phi3FillTargetValue(it->result, &b->target);
		b->key_types[0] = b->target.atttypid;
		RunSql(b->update_sql, b->nkeys + 1, b->key_types, it->keys, nulls, SPI_OK_UPDATE);
		if (SPI_processed == 1)
			outcome = "filled";
		else
		{
			nulls[0] = 'n';
			RunSql(b->exists_sql, b->nkeys + 1, b->key_types, it->keys, nulls, SPI_OK_SELECT);
			outcome = SPI_processed == 0 ? "row deleted" : "value set";
		}
		EndOwner(nest, save_userid, save_sec);
		nest = -1;

		qvals[0] = Int64GetDatum(it->id);
		qvals[1] = Int32GetDatum(MyProcPid);
		qvals[2] = CStringGetTextDatum(outcome);
		RunSql(psprintf("UPDATE %s SET state = 'done', outcome = $3, last_error = NULL, "
						"worker_pid = NULL, updated_at = pg_catalog.now() "
						"WHERE id OPERATOR(pg_catalog.=) $1 AND state = 'running' "
						"AND worker_pid OPERATOR(pg_catalog.=) $2", b->queue),
			   3, qtypes, qvals, NULL, SPI_OK_UPDATE);
		still_ours = SPI_processed == 1;
		SPI_finish();
		PopActiveSnapshot();
		/* not this worker's item any more (retried, purged): write nothing */
		if (still_ours)
			CommitTransactionCommand();
		else
			AbortCurrentTransaction();
	}
	PG_CATCH();
	{
		char	   *msg;

		if (nest >= 0)
			SetUserIdAndSecContext(save_userid, save_sec);
		msg = CatchError(b->cxt);
		FinishItem(b, it, NULL, msg);
	}
	PG_END_TRY();
}

/*
 * The item done with an outcome (a row not generated), or its attempt
 * failed with error: pending again, or failed after the last attempt.
 */
static void
FinishItem(AsyncBatch *b, AsyncItem *it, const char *outcome, const char *error)
{
	Oid			types[5] = {INT8OID, INT4OID, TEXTOID, INT4OID, FLOAT8OID};
	Datum		values[5];

	Phi3AsyncBeginXact();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = Int64GetDatum(it->id);
	values[1] = Int32GetDatum(MyProcPid);
	values[2] = CStringGetTextDatum(outcome ? outcome : error);
	values[3] = Int32GetDatum(phi3_async_max_attempts);
	values[4] = Float8GetDatum(phi3_async_retry_delay / 1000.0);
	if (outcome != NULL)
		RunSql(psprintf("UPDATE %s SET state = 'done', outcome = $3, last_error = NULL, "
						"worker_pid = NULL, updated_at = pg_catalog.now() "
						"WHERE id OPERATOR(pg_catalog.=) $1 AND state = 'running' "
						"AND worker_pid OPERATOR(pg_catalog.=) $2", b->queue),
			   3, types, values, NULL, SPI_OK_UPDATE);
	else
		RunSql(psprintf("UPDATE %s SET state = CASE WHEN attempts OPERATOR(pg_catalog.>=) $4 "
						"THEN 'failed' ELSE 'pending' END, last_error = $3, worker_pid = NULL, "
						"updated_at = pg_catalog.now(), "
		/* the next attempt after phi3.async_retry_delay, doubled each time, at most an hour */
						"retry_at = CASE WHEN attempts OPERATOR(pg_catalog.>=) $4 THEN NULL "
						"ELSE pg_catalog.now() OPERATOR(pg_catalog.+) pg_catalog.make_interval("
						"secs => LEAST($5 OPERATOR(pg_catalog.*) pg_catalog.power(2::pg_catalog.float8, "
						"(attempts OPERATOR(pg_catalog.-) 1)::pg_catalog.float8), 3600::pg_catalog.float8)) END "
						"WHERE id OPERATOR(pg_catalog.=) $1 AND state = 'running' "
						"AND worker_pid OPERATOR(pg_catalog.=) $2", b->queue),
			   5, types, values, NULL, SPI_OK_UPDATE);
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * Milliseconds until the earliest pending item waiting for its next
 * attempt is due; ASYNC_NAPTIME_MS when none is sooner.  *waiting: some
 * item waits for its next attempt.
 */
static long
NextRetryDelayMs(bool *waiting)
{
	char	   *queue;
	long		delay = ASYNC_NAPTIME_MS;

	*waiting = false;
	Phi3AsyncBeginXact();
	PushActiveSnapshot(GetTransactionSnapshot());
	queue = Phi3AsyncQueueName(true);
	if (queue != NULL && SPI_connect() == SPI_OK_CONNECT)
	{
		bool		isnull;
		Datum		d;

		RunSql(psprintf("SELECT pg_catalog.ceil(1000 OPERATOR(pg_catalog.*) pg_catalog.date_part('epoch', "
						"pg_catalog.min(retry_at) OPERATOR(pg_catalog.-) pg_catalog.now()))::pg_catalog.int8 "
						"FROM %s WHERE state = 'pending' "
						"AND retry_at OPERATOR(pg_catalog.>) pg_catalog.now()", queue),
			   0, NULL, NULL, NULL, SPI_OK_SELECT);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		*waiting = !isnull;
		if (!isnull)
			delay = Max(Min(DatumGetInt64(d), (int64) ASYNC_NAPTIME_MS), 1);
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	return delay;
}

/*
 * Items left running by a process that is not a phi3 worker any more (it
 * was killed, the server restarted): pending again, or failed if that was
 * their last attempt.
 */
static uint64
RecoverOrphans(void)
{
	Oid			types[1] = {INT4OID};
	Datum		values[1];
	char	   *queue;
	uint64		n = 0;

	Phi3AsyncBeginXact();
	PushActiveSnapshot(GetTransactionSnapshot());
	queue = Phi3AsyncQueueName(true);
	if (queue != NULL && SPI_connect() == SPI_OK_CONNECT)
	{
		values[0] = Int32GetDatum(phi3_async_max_attempts);
		RunSql(psprintf("UPDATE %s q SET state = CASE WHEN attempts OPERATOR(pg_catalog.>=) $1 "
						"THEN 'failed' ELSE 'pending' END, "
						"last_error = 'the phi3 worker (pid ' OPERATOR(pg_catalog.||) worker_pid "
						"OPERATOR(pg_catalog.||) ') ended while filling this row', "
						"worker_pid = NULL, retry_at = NULL, updated_at = pg_catalog.now() "
						"WHERE state = 'running' AND NOT EXISTS (SELECT 1 FROM "
						"pg_catalog.pg_stat_get_activity(q.worker_pid) a "
						"WHERE a.backend_type OPERATOR(pg_catalog.=) '%s')",
						queue, PHI3_ASYNC_WORKER_TYPE),
			   1, types, values, NULL, SPI_OK_UPDATE);
		n = SPI_processed;
		SPI_finish();
	}
	PopActiveSnapshot();
	CommitTransactionCommand();
	if (n > 0)
		ereport(LOG,
				(errmsg("phi3 async worker queued again %llu rows of a worker that ended while filling them",
						(unsigned long long) n)));
	return n;
}
