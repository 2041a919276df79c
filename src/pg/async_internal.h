/*-------------------------------------------------------------------------
 *
 * async_internal.h
 *	  The shared state of phi3_fill_async's background processes, shared by
 *	  async_launcher.c (shared memory, the launcher, waking) and
 *	  async_worker.c (the workers).
 *
 * One slot per worker (phi3.async_workers), taken by the launcher when it
 * starts a worker for a database and freed when that worker has ended;
 * the list of databases that wait for a worker.  Everything is guarded by
 * the one LWLock.
 *
 * IDENTIFICATION
 *	  src/pg/async_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PHI3_ASYNC_INTERNAL_H
#define PHI3_ASYNC_INTERNAL_H

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "storage/lwlock.h"

/* Idle processes look again this often even when nobody wakes them */
#define ASYNC_NAPTIME_MS		10000
/* Databases the launcher remembers as waiting for a worker */
#define ASYNC_MAX_WANTED		64

typedef struct AsyncSlot
{
	bool		in_use;			/* taken by the launcher for a worker */
	Oid			dboid;			/* the database it serves */
	int			pid;			/* 0 until the worker runs */
	Latch	   *latch;			/* NULL until the worker runs, and once it leaves */
	bool		idle;			/* waiting, its queue empty */
	bool		exit_requested; /* the launcher needs the slot */
	bool		leaving;		/* no longer takes wake-ups */
	TimestampTz serving_since;	/* when the worker started serving dboid */
} AsyncSlot;

typedef struct AsyncShared
{
	LWLock	   *lock;			/* guards everything here */
	Latch	   *launcher_latch;
	int			n_wanted;
	Oid			wanted[ASYNC_MAX_WANTED];
	int			n_slots;
	AsyncSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} AsyncShared;

/* NULL unless preloaded with phi3.async_workers > 0 (async_launcher.c) */
extern AsyncShared *phi3_async_shared;

/* Remember that dboid waits for a worker (the lock held exclusively) */
extern void Phi3AsyncAddWanted(Oid dboid);

/* A transaction of a background process (now() is its start, as in a backend) */
extern void Phi3AsyncBeginXact(void);

/* async_prepared.c: the wake-up at COMMIT PREPARED */
extern Size Phi3AsyncPreparedShmemSize(void);
extern void Phi3AsyncPreparedShmemInit(void);
extern void Phi3AsyncPreparedInit(void);
extern void Phi3AsyncPreparedQueued(void);

#endif							/* PHI3_ASYNC_INTERNAL_H */
