/*
 * phi3/threadpool.h — a small fixed pool of compute threads.
 *
 * The calling thread is worker 0 and does its share of every job; the pool
 * adds n_threads - 1 helpers.  Helpers are created with every asynchronous
 * signal blocked (so a host's signal handlers — PostgreSQL's SIGINT,
 * SIGTERM, SIGALRM — only ever run on the host's own thread); only the
 * synchronous fault signals (SIGBUS, SIGSEGV, SIGFPE, SIGILL) stay
 * deliverable, since they concern the faulting thread itself.  Helpers never call back into
 * the host, and never allocate.  A job is one function run by every worker
 * with its index; p3_threadpool_run returns when all have finished.  Work
 * is split statically by index, so results never depend on timing: the same
 * inputs give bit-identical outputs with any thread count as long as each
 * output element is computed by exactly one worker.
 *
 * Do not create a pool in a process that will fork() afterwards (a
 * PostgreSQL postmaster): threads do not survive fork.
 */
#ifndef PHI3_THREADPOOL_H
#define PHI3_THREADPOOL_H

#include <stdint.h>

#include "phi3/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define P3_MAX_THREADS 256

typedef struct P3ThreadPool P3ThreadPool;

/* One job: called once per worker, ith in [0, nth). */
typedef void (*P3TaskFn) (void *arg, int ith, int nth);

/* n_threads >= 1; 1 creates no thread at all.  P3_ERR_NOMEM / P3_ERR_INTERNAL if a thread cannot start. */
P3Status	p3_threadpool_new(int n_threads, P3ThreadPool **out, P3Error *err);
/* Stop and join the helpers.  NULL allowed. */
void		p3_threadpool_free(P3ThreadPool *pool);
int			p3_threadpool_size(const P3ThreadPool *pool);

/*
 * Run fn(arg, ith, nth) on every worker and wait for all.  pool may be NULL
 * (runs fn(arg, 0, 1) inline).  Not reentrant: one job at a time, from the
 * thread that created the pool.
 */
void		p3_threadpool_run(P3ThreadPool *pool, P3TaskFn fn, void *arg);

/* Split [0, n) into nth near-equal contiguous ranges; worker ith gets [*begin, *end). */
void		p3_split_range(int64_t n, int ith, int nth, int64_t *begin, int64_t *end);

/* Number of CPUs this process may run on (sched_getaffinity), at least 1. */
int			p3_cpu_count(void);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_THREADPOOL_H */
