/*-------------------------------------------------------------------------
 *
 * async_queue.c
 *	  phi3_fill_async(): a trigger that queues a row for a background
 *	  worker to fill after commit, and the SQL functions of the queue
 *	  (phi3_async_wait, phi3_async_retry, phi3_async_purge).
 *
 *     CREATE TRIGGER products_fill AFTER INSERT OR UPDATE ON products
 *         FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('description',
 *             'Write a one-sentence product description for {name}.'
 *             [, 'system prompt']);
 *
 * The arguments and template rules are phi3_fill's (trigger.c).  When the
 * target column of the new row is NULL, the trigger inserts the row's key
 * (the values of its primary key, or of its replica identity index, as
 * text, in index column order) into the extension's queue table,
 * phi3_async_queue; nothing is generated in the user's transaction, and
 * the item commits or rolls back with it.  A table without such a key is
 * an error on the first row.  An item already pending for the same row and
 * trigger is not queued twice.
 *
 * The insert runs as the owner of the queue table (the user has no right
 * on it): a fixed statement, schema-qualified, with the values as
 * parameters, under search_path = pg_catalog (QueueOwnerBegin), as do
 * phi3_async_retry's and phi3_async_purge's.  At commit (a transaction callback, so only once the items
 * are visible) the database's worker is woken through its latch, or the
 * launcher is asked for one (async_worker.c); a transaction prepared
 * instead (PREPARE TRANSACTION, as Citus ends every write on more than one
 * node) wakes it at its COMMIT PREPARED (async_prepared.c).  Without
 * shared_preload_libraries, or with phi3.async_workers = 0, no worker
 * runs: the rows are still queued, and a WARNING (once per transaction)
 * says that nobody will fill them yet.
 *
 * Privileges: phi3_queue_status and phi3_queue_items (SQL views) show the
 * items of the tables the reader may SELECT (or all, with
 * pg_read_all_stats); phi3_async_retry and phi3_async_purge act on the
 * tables the caller owns (or all, for a superuser).
 *
 * IDENTIFICATION
 *	  src/pg/async_queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include <math.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "commands/extension.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"
#include "utils/wait_event.h"

#include "async_internal.h"

PG_FUNCTION_INFO_V1(phi3_fill_async);
PG_FUNCTION_INFO_V1(phi3_async_wait);
PG_FUNCTION_INFO_V1(phi3_async_retry);
PG_FUNCTION_INFO_V1(phi3_async_purge);

/* phi3_async_wait polls the queue this often (milliseconds) */
#define ASYNC_WAIT_POLL_MS		50

static bool xact_callback_registered = false;
static bool wake_at_commit = false;	/* this transaction queued something */
static LocalTransactionId warned_lxid = InvalidLocalTransactionId;

static void CheckFillAsyncCall(FunctionCallInfo fcinfo);
static ArrayType *RowKey(Relation rel, HeapTuple tuple);
static void Enqueue(Relation rel, Trigger *trigger, const char *column, ArrayType *key);
static void WakeAtCommit(void);
static void AsyncXactCallback(XactEvent event, void *arg);
static void WarnNoWorkers(void);

/* The schema of extension ext (get_extension_schema is not exported before PG 16). */
static Oid
ExtensionSchema(Oid ext)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nsp = InvalidOid;

	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(ext));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nsp = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return nsp;
}

/* The schema of the phi3 extension (an error if it is not installed). */
static Oid
Phi3Schema(void)
{
	return ExtensionSchema(get_extension_oid("phi3", false));
}

/*
 * The queue table's qualified, quoted name ("schema".phi3_async_queue);
 * NULL when the extension is not installed in this database and
 * missing_ok.
 */
char *
Phi3AsyncQueueName(bool missing_ok)
{
	Oid			ext = get_extension_oid("phi3", true);
	Oid			nsp;

	if (!OidIsValid(ext))
	{
		if (missing_ok)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"phi3\" is not installed in this database")));
	}
	nsp = ExtensionSchema(ext);
	return psprintf("%s.%s", quote_identifier(get_namespace_name(nsp)), PHI3_ASYNC_QUEUE_TABLE);
}

/* The role that owns the queue table (the extension's owner). */
Oid
Phi3AsyncQueueOwner(void)
{
	Oid			nsp = Phi3Schema();
	Oid			relid = get_relname_relid(PHI3_ASYNC_QUEUE_TABLE, nsp);
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("the phi3 queue table \"%s\" does not exist", PHI3_ASYNC_QUEUE_TABLE),
				 errhint("Reinstall the extension (DROP EXTENSION phi3; CREATE EXTENSION phi3).")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Become the queue's owner for one of our own statements on the queue:
 * also with search_path = pg_catalog, pg_temp, so that no operator or
 * function of the caller's schemas can run with the owner's rights.
 * Undone by QueueOwnerEnd (or by the transaction's abort).
 */
typedef struct QueueOwnerState
{
	Oid			save_userid;
	int			save_sec;
	int			nest;
} QueueOwnerState;

static void
QueueOwnerBegin(QueueOwnerState *st)
{
	Oid			owner = Phi3AsyncQueueOwner();

	GetUserIdAndSecContext(&st->save_userid, &st->save_sec);
	SetUserIdAndSecContext(owner, st->save_sec | SECURITY_LOCAL_USERID_CHANGE);
	st->nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
}

static void
QueueOwnerEnd(QueueOwnerState *st)
{
	AtEOXact_GUC(false, st->nest);
	SetUserIdAndSecContext(st->save_userid, st->save_sec);
}

/*
 * phi3_fill_async() trigger: queue NEW for the background workers when
 * its target column is NULL.
 */
Datum
phi3_fill_async(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	const char *relname;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	int			attnum;
	bool		isnull;
	ArrayType  *key;

	CheckFillAsyncCall(fcinfo);
	trigger = trigdata->tg_trigger;
	rel = trigdata->tg_relation;
	relname = RelationGetRelationName(rel);
	tupdesc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;

	/* Check everything (as phi3_fill does) before deciding whether there is work */
	attnum = Phi3FillTargetColumn("phi3_fill_async", trigger->tgargs[0], tupdesc, relname);
	(void) Phi3FillRenderTemplate("phi3_fill_async", trigger->tgargs[1], tuple, tupdesc, relname);
	key = RowKey(rel, tuple);

	(void) heap_getattr(tuple, attnum, tupdesc, &isnull);
	if (isnull)
		Enqueue(rel, trigger, NameStr(TupleDescAttr(tupdesc, attnum - 1)->attname), key);
	return PointerGetDatum(NULL);
}

/* The trigger must be AFTER ... FOR EACH ROW, on INSERT or UPDATE, with 2 or 3 arguments. */
static void
CheckFillAsyncCall(FunctionCallInfo fcinfo)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("phi3_fill_async: not called by trigger manager")));
	if (!TRIGGER_FIRED_AFTER(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("phi3_fill_async must be fired AFTER, FOR EACH ROW"),
				 errhint("The row is filled after commit; use phi3_fill for a BEFORE trigger that fills it at once.")));
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("phi3_fill_async must be fired by INSERT or UPDATE")));
	if (trigdata->tg_trigger->tgnargs != 2 && trigdata->tg_trigger->tgnargs != 3)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("phi3_fill_async needs 2 or 3 arguments, got %d", trigdata->tg_trigger->tgnargs),
				 errhint("Pass the target column, a prompt template with {column} placeholders, and optionally a system prompt.")));
}

/*
 * Whether a type's text output depends on the session's DateStyle or
 * IntervalStyle (the date and time types, and domains over them): a key
 * of such a type is written in ISO style, which the worker reads back
 * whatever its own settings (timestamptz with its numeric offset).
 */
static bool
SettingDependentOutput(Oid type)
{
	switch (getBaseType(type))
	{
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
		case INTERVALOID:
			return true;
		default:
			return false;
	}
}

/* DateStyle ISO and IntervalStyle postgres until AtEOXact_GUC(false, the level returned). */
static int
CanonicalDateOutput(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("datestyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/*
 * The row's key: the text of each column of the primary key (or replica
 * identity index), in index order.  A table without one is an error.
 * Date and time keys are written in ISO style (SettingDependentOutput).
 */
static ArrayType *
RowKey(Relation rel, HeapTuple tuple)
{
	Oid			indexoid = RelationGetReplicaIndex(rel);
	Relation	index;
	Datum	   *texts;
	int			n;
	ArrayType  *key;
	int			nest = -1;

	if (!OidIsValid(indexoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" has no primary key or replica identity index",
						RelationGetRelationName(rel)),
				 errdetail("phi3_fill_async queues a row by its key, and the background worker finds it again by that key."),
				 errhint("Add a primary key, or mark a unique index on NOT NULL columns with ALTER TABLE ... REPLICA IDENTITY USING INDEX.")));
	index = index_open(indexoid, AccessShareLock);
	n = index->rd_index->indnkeyatts;
	texts = palloc(sizeof(Datum) * n);
	for (int i = 0; i < n; i++)
		if (nest < 0 && SettingDependentOutput(TupleDescAttr(RelationGetDescr(rel),
															 index->rd_index->indkey.values[i] - 1)->atttypid))
			nest = CanonicalDateOutput();
	for (int i = 0; i < n; i++)
	{
		char	   *v = SPI_getvalue(tuple, RelationGetDescr(rel), index->rd_index->indkey.values[i]);

		/* key columns of a replica identity index are NOT NULL */
		if (v == NULL)
			elog(ERROR, "key column %d of \"%s\" is null", i + 1, RelationGetRelationName(rel));
		texts[i] = CStringGetTextDatum(v);
	}
	if (nest >= 0)
		AtEOXact_GUC(false, nest);
	index_close(index, AccessShareLock);
	key = construct_array(texts, n, TEXTOID, -1, false, TYPALIGN_INT);
	return key;
}

/*
 * Insert the queue item, as the queue's owner; an item already pending
 * for this row and trigger is kept as it is.
 */
static void
Enqueue(Relation rel, Trigger *trigger, const char *column, ArrayType *key)
{
	char	   *queue = Phi3AsyncQueueName(false);
	QueueOwnerState st;
	Oid			argtypes[4] = {OIDOID, OIDOID, NAMEOID, TEXTARRAYOID};
	Datum		values[4];
	char	   *sql;
	int			ret;

	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[1] = ObjectIdGetDatum(trigger->tgoid);
	values[2] = DirectFunctionCall1(namein, CStringGetDatum(column));
	values[3] = PointerGetDatum(key);
	sql = psprintf("INSERT INTO %s (relid, trigger_oid, column_name, key) VALUES ($1, $2, $3, $4) "
				   "ON CONFLICT (trigger_oid, key) WHERE state = 'pending' DO NOTHING", queue);

	QueueOwnerBegin(&st);
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	ret = SPI_execute_with_args(sql, 4, argtypes, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "could not queue the row: %s", SPI_result_code_string(ret));
	SPI_finish();
	QueueOwnerEnd(&st);

	WakeAtCommit();
	if (Phi3AsyncNoWorkersReason() != NULL)
		WarnNoWorkers();
}

/* Once per transaction: nothing will process the queue. */
static void
WarnNoWorkers(void)
{
	if (MyProc == NULL || MyProc->lxid == warned_lxid)
		return;
	warned_lxid = MyProc->lxid;
	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("phi3_fill_async queued a row that no background worker will fill"),
			 errdetail("%s", Phi3AsyncNoWorkersReason()),
			 errhint("Add phi3 to shared_preload_libraries (with phi3.async_workers >= 1) and restart the server; until then the rows wait in the queue (see phi3_queue_status).")));
}

/* Wake this database's worker when the current transaction commits. */
static void
WakeAtCommit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(AsyncXactCallback, NULL);
		xact_callback_registered = true;
	}
	wake_at_commit = true;
}

/*
 * After commit (the items are visible now): wake the worker.  Nothing
 * here may fail.
 */
static void
AsyncXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_at_commit)
				Phi3AsyncWakeDatabase(MyDatabaseId);
			wake_at_commit = false;
			break;
		case XACT_EVENT_PREPARE:
			/* the rows become visible at COMMIT PREPARED: wake then */
			if (wake_at_commit)
				Phi3AsyncPreparedQueued();
			wake_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_at_commit = false;
			break;
		default:
			break;
	}
}

/* ---- the queue's functions ---- */

/* Run a statement on the queue as its owner; returns SPI_processed. */
static uint64
RunAsQueueOwner(const char *sql, int nargs, Oid *argtypes, Datum *values, const char *nulls,
				int expect)
{
	QueueOwnerState st;
	int			ret;
	uint64		n;

	QueueOwnerBegin(&st);
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	ret = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);
	if (ret != expect)
		elog(ERROR, "queue statement failed: %s", SPI_result_code_string(ret));
	n = SPI_processed;
	SPI_finish();
	QueueOwnerEnd(&st);
	return n;
}

/* A table named to retry or purge must be the caller's. */
static void
CheckQueueTableOwner(Oid relid)
{
	if (!pg_class_ownercheck(relid, GetUserId()))
		aclcheck_error(ACLCHECK_NOT_OWNER, get_relkind_objtype(get_rel_relkind(relid)),
					   get_rel_name(relid));
}

/*
 * The tables whose items the caller may retry or purge, as an oid[] for
 * "q.relid = ANY($1)": tbl (which must be the caller's), or, when tbl is
 * NULL, every table with items in the queue that the caller owns (a
 * superuser: all that still exist).  Ownership is checked here, through
 * the syscache, and not by a scan of pg_class in the statement: on a Citus
 * worker node, Citus hides the shards from pg_class in sessions other than
 * its own, and their items would be skipped.
 */
static Datum
CallerQueueTables(bool tbl_isnull, Oid tbl)
{
	Oid		   *relids;
	int			n = 0;
	QueueOwnerState st;
	int			ret;

	if (!tbl_isnull)
	{
		CheckQueueTableOwner(tbl);
		relids = palloc(sizeof(Oid));
		relids[n++] = tbl;
		return PointerGetDatum(construct_array((Datum *) relids, n, OIDOID, sizeof(Oid), true,
											   TYPALIGN_INT));
	}
	QueueOwnerBegin(&st);
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	ret = SPI_execute(psprintf("SELECT DISTINCT relid FROM %s", Phi3AsyncQueueName(false)), true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read the queue: %s", SPI_result_code_string(ret));
	relids = SPI_palloc(sizeof(Oid) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
														   SPI_tuptable->tupdesc, 1, &isnull));

		if (!isnull && SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)) &&
			pg_class_ownercheck(relid, st.save_userid))
			relids[n++] = relid;
	}
	SPI_finish();
	QueueOwnerEnd(&st);
	{
		Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

		for (int i = 0; i < n; i++)
			elems[i] = ObjectIdGetDatum(relids[i]);
		return PointerGetDatum(construct_array(elems, n, OIDOID, sizeof(Oid), true, TYPALIGN_INT));
	}
}

/*
 * phi3_async_retry(tbl regclass DEFAULT NULL) returns bigint: failed
 * items (of tbl, or of every table the caller owns) are queued again with
 * their attempts reset, and pending items waiting for their next attempt
 * are due now; returns how many.
 */
Datum
phi3_async_retry(PG_FUNCTION_ARGS)
{
	Oid			argtypes[1] = {OIDARRAYOID};
	Datum		values[1];
	char	   *sql;
	uint64		n;

	values[0] = CallerQueueTables(PG_ARGISNULL(0), PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0));
	sql = psprintf("UPDATE %s q SET state = 'pending', "
				   "attempts = CASE WHEN q.state = 'failed' THEN 0 ELSE q.attempts END, "
				   "worker_pid = NULL, retry_at = NULL, updated_at = pg_catalog.now() "
				   "WHERE (q.state = 'failed' OR (q.state = 'pending' AND "
				   "q.retry_at OPERATOR(pg_catalog.>) pg_catalog.now())) "
				   "AND q.relid OPERATOR(pg_catalog.=) ANY ($1)", Phi3AsyncQueueName(false));
	n = RunAsQueueOwner(sql, 1, argtypes, values, NULL, SPI_OK_UPDATE);
	if (n > 0)
		WakeAtCommit();
	PG_RETURN_INT64((int64) n);
}

/*
 * phi3_async_purge(tbl regclass DEFAULT NULL, states text[] DEFAULT
 * '{done}') returns bigint: deletes the items in those states (pending,
 * done, failed; not running) of tbl, or of every table the caller owns.
 */
Datum
phi3_async_purge(PG_FUNCTION_ARGS)
{
	Oid			argtypes[2] = {OIDARRAYOID, TEXTARRAYOID};
	Datum		values[2];
	Datum	   *elems;
	bool	   *elem_nulls;
	int			n_elems;
	char	   *sql;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("states must not be null")));
	deconstruct_array(PG_GETARG_ARRAYTYPE_P(1), TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, &elem_nulls, &n_elems);
	for (int i = 0; i < n_elems; i++)
	{
		char	   *s = elem_nulls[i] ? NULL : TextDatumGetCString(elems[i]);

		if (s != NULL && strcmp(s, "running") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("running queue items cannot be purged"),
					 errdetail("A background worker is filling them now."),
					 errhint("Purge them once they are done or failed, or purge pending items before a worker takes them.")));
		if (s == NULL || (strcmp(s, "pending") != 0 && strcmp(s, "done") != 0 &&
						  strcmp(s, "failed") != 0))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid queue state \"%s\"", s ? s : "NULL"),
					 errhint("The states that can be purged are pending, done and failed.")));
	}
	values[0] = CallerQueueTables(PG_ARGISNULL(0), PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0));
	values[1] = PG_GETARG_DATUM(1);
	sql = psprintf("DELETE FROM %s q WHERE q.state OPERATOR(pg_catalog.=) ANY ($2) "
				   "AND q.relid OPERATOR(pg_catalog.=) ANY ($1)", Phi3AsyncQueueName(false));
	PG_RETURN_INT64((int64) RunAsQueueOwner(sql, 2, argtypes, values, NULL, SPI_OK_DELETE));
}

/* Items of the queue still to be filled (pending or running) that the caller may see. */
static int64
CountUnfinished(Datum relid, bool relid_isnull)
{
	Oid			argtypes[1] = {OIDOID};
	char		nulls[1] = {relid_isnull ? 'n' : ' '};
	char	   *sql;
	int			ret;
	int64		n;
	bool		isnull;

	sql = psprintf("SELECT pg_catalog.count(*) FROM %s.phi3_queue_items "
				   "WHERE state IN ('pending', 'running') AND ($1 IS NULL OR relid = $1)",
				   quote_identifier(get_namespace_name(Phi3Schema())));
	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	ret = SPI_execute_with_args(sql, 1, argtypes, &relid, nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not count the queue: %s", SPI_result_code_string(ret));
	n = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	pfree(sql);
	return n;
}

/*
 * phi3_async_wait(timeout float8 DEFAULT 60, tbl regclass DEFAULT NULL)
 * returns boolean: waits until no item the caller may see (of tbl, or of
 * every table) is pending or running; false when timeout seconds passed
 * first.  Failed items are not waited for.
 */
Datum
phi3_async_wait(PG_FUNCTION_ARGS)
{
	float8		timeout = PG_ARGISNULL(0) ? 60.0 : PG_GETARG_FLOAT8(0);
	TimestampTz deadline;

	if (isnan(timeout) || timeout < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must be a number of seconds >= 0")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("phi3_async_wait cannot see the workers' progress in a %s transaction",
						IsolationIsSerializable() ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errhint("Call it in a READ COMMITTED transaction, or outside a transaction block.")));
	if (wake_at_commit)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("phi3_async_wait cannot wait for rows queued by its own transaction"),
				 errdetail("The workers see queued rows only once the transaction that queued them commits."),
				 errhint("Commit first, then wait.")));

	deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), (int64) (Min(timeout, 1e9) * 1000.0));
	for (;;)
	{
		if (CountUnfinished(PG_GETARG_DATUM(1), PG_ARGISNULL(1)) == 0)
			PG_RETURN_BOOL(true);
		if (Phi3AsyncNoWorkersReason() != NULL)
		{
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no background worker fills the phi3 queue"),
					 errdetail("%s", Phi3AsyncNoWorkersReason()),
					 errhint("Add phi3 to shared_preload_libraries (with phi3.async_workers >= 1) and restart the server.")));
			PG_RETURN_BOOL(false);
		}
		if (GetCurrentTimestamp() >= deadline)
			PG_RETURN_BOOL(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ASYNC_WAIT_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
