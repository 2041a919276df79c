/*-------------------------------------------------------------------------
 *
 * async_prepared.c
 *	  Waking the worker when a prepared transaction that queued rows is
 *	  committed by COMMIT PREPARED -- which is how Citus commits every
 *	  write that touches more than one node.
 *
 * A plain commit wakes its database's worker from async_queue.c's
 * transaction callback.  A transaction that PREPARE TRANSACTION ends
 * instead is committed later by COMMIT PREPARED, possibly in another
 * session, and its queued rows become visible only then; without this
 * file they waited for the worker's poll (ASYNC_NAPTIME_MS), or, when no
 * worker served the database, for the next commit there that queued rows.
 *
 * So: the ProcessUtility hook notes the GID of a PREPARE TRANSACTION; when
 * that transaction is prepared having queued rows (XACT_EVENT_PREPARE, in
 * async_queue.c's callback, while the prepared transaction is still locked
 * by this backend), its database and GID go into a list in shared memory
 * (room for max_prepared_transactions, guarded by the async LWLock).  A
 * COMMIT PREPARED of a GID on the list wakes its database's worker once
 * the commit is done (Phi3AsyncWakeDatabase); a ROLLBACK PREPARED takes it
 * off.  Any other COMMIT PREPARED costs one look at the list.
 *
 * The list lives in shared memory only: a transaction prepared before a
 * server restart and committed after it wakes nobody (its rows wait for
 * the poll of a worker serving the database, or the next commit that
 * queues rows there).  Should the list ever be full (prepared transactions
 * ended without their COMMIT or ROLLBACK PREPARED passing through here),
 * every COMMIT PREPARED wakes its database from then on.
 *
 * IDENTIFICATION
 *	  src/pg/async_prepared.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "access/twophase.h"
#include "access/xact.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/utility.h"

#include "async_internal.h"

typedef struct AsyncPrepared
{
	Oid			dboid;
	char		gid[GIDSIZE];
} AsyncPrepared;

typedef struct AsyncPreparedList
{
	int			n;
	int			max;
	bool		overflow;		/* a GID was not remembered: wake at every COMMIT PREPARED */
	AsyncPrepared items[FLEXIBLE_ARRAY_MEMBER];
} AsyncPreparedList;

static AsyncPreparedList *prepared_list = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;
/* the GID of this backend's PREPARE TRANSACTION being executed */
static char preparing_gid[GIDSIZE];

static void AsyncProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
								ProcessUtilityContext context, ParamListInfo params,
								QueryEnvironment *queryEnv, DestReceiver *dest,
								QueryCompletion *qc);

static int
PreparedCapacity(void)
{
	return Max(max_prepared_xacts, 1);
}

/*
 * Shared memory for the list (max_prepared_transactions is final by now:
 * Citus raises it in its _PG_init).
 */
Size
Phi3AsyncPreparedShmemSize(void)
{
	return add_size(offsetof(AsyncPreparedList, items),
					mul_size(PreparedCapacity(), sizeof(AsyncPrepared)));
}

/* Attach to (or create) the list; called under AddinShmemInitLock. */
void
Phi3AsyncPreparedShmemInit(void)
{
	bool		found;

	prepared_list = ShmemInitStruct("phi3_async_prepared", Phi3AsyncPreparedShmemSize(), &found);
	if (!found)
	{
		memset(prepared_list, 0, Phi3AsyncPreparedShmemSize());
		prepared_list->max = PreparedCapacity();
	}
}

/* Install the ProcessUtility hook (with shared_preload_libraries). */
void
Phi3AsyncPreparedInit(void)
{
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = AsyncProcessUtility;
}

/*
 * This backend's transaction, which queued rows, has just been prepared:
 * remember its GID.  Called from the XACT_EVENT_PREPARE callback; cannot
 * fail.
 */
void
Phi3AsyncPreparedQueued(void)
{
	if (prepared_list == NULL || phi3_async_shared == NULL || preparing_gid[0] == '\0')
		return;
	LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
	if (prepared_list->n < prepared_list->max)
	{
		AsyncPrepared *p = &prepared_list->items[prepared_list->n++];

		p->dboid = MyDatabaseId;
		strlcpy(p->gid, preparing_gid, GIDSIZE);
	}
	else
		prepared_list->overflow = true;
	LWLockRelease(phi3_async_shared->lock);
	preparing_gid[0] = '\0';
}

/*
 * A prepared transaction of this database has ended: take its GID off the
 * list; true if it was there (or the list overflowed), i.e. if it may have
 * queued rows.
 */
static bool
PreparedForget(const char *gid)
{
	bool		found = false;

	LWLockAcquire(phi3_async_shared->lock, LW_EXCLUSIVE);
	for (int i = 0; i < prepared_list->n; i++)
	{
		AsyncPrepared *p = &prepared_list->items[i];

		if (p->dboid == MyDatabaseId && strcmp(p->gid, gid) == 0)
		{
			*p = prepared_list->items[--prepared_list->n];
			found = true;
			break;
		}
	}
	found = found || prepared_list->overflow;
	LWLockRelease(phi3_async_shared->lock);
	return found;
}

/*
 * PREPARE TRANSACTION: note the GID for Phi3AsyncPreparedQueued.  COMMIT
 * PREPARED of a transaction that queued rows: once it is committed, wake
 * the database's worker.  ROLLBACK PREPARED: forget it.
 */
static void
AsyncProcessUtility(PlannedStmt *pstmt, const char *queryString, bool readOnlyTree,
					ProcessUtilityContext context, ParamListInfo params,
					QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc)
{
	TransactionStmt *finish = NULL;

	if (IsA(pstmt->utilityStmt, TransactionStmt))
	{
		TransactionStmt *stmt = (TransactionStmt *) pstmt->utilityStmt;

		if (stmt->kind == TRANS_STMT_PREPARE && stmt->gid != NULL)
			strlcpy(preparing_gid, stmt->gid, GIDSIZE);
		else if ((stmt->kind == TRANS_STMT_COMMIT_PREPARED ||
				  stmt->kind == TRANS_STMT_ROLLBACK_PREPARED) && stmt->gid != NULL)
			finish = stmt;
	}

	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params, queryEnv,
								dest, qc);

	/* (reached only if the statement succeeded) */
	if (finish != NULL && prepared_list != NULL && phi3_async_shared != NULL &&
		PreparedForget(finish->gid) && finish->kind == TRANS_STMT_COMMIT_PREPARED)
		Phi3AsyncWakeDatabase(MyDatabaseId);
}
