/*
 * threadpool.c — a small fixed pool of compute threads (see phi3/threadpool.h).
 *
 * Dispatch is a generation counter.  The caller stores the job (fn, arg),
 * sets the count of helpers still to finish, and increments the generation
 * with release ordering; each helper, having seen a new generation with
 * acquire ordering, reads the job, runs it, and decrements the count with
 * release ordering; the caller returns once it reads 0 with acquire
 * ordering, so everything a helper wrote is visible to it.
 *
 * Waiting is a short spin followed by a futex sleep.  The forward pass
 * dispatches ~150 jobs per token back to back, so helpers spin with a pause
 * instruction for a few tens of microseconds after each job before they go
 * to sleep on the generation word; between tokens and between queries they
 * sleep and cost nothing.  A sleeper count avoids the futex wake system call
 * when nobody sleeps: a would-be sleeper increments it before re-checking
 * the generation, the caller bumps the generation before reading it, and
 * both are sequentially consistent, so one of the two always sees the other
 * (and the kernel re-checks the word under its own lock).  The caller waits
 * for the helpers in the same way on the pending count.
 *
 * Helpers are started with every asynchronous signal blocked (the fault
 * signals SIGBUS, SIGSEGV, SIGFPE, SIGILL stay deliverable to the faulting
 * thread) and touch nothing but the
 * pool and the job: no allocation, no callbacks into the host.  The futex
 * is Linux's; elsewhere a mutex and condition variable stand in for it.
 */
#include "phi3/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__) && !defined(P3_THREADPOOL_NO_FUTEX)
#define P3_USE_FUTEX 1
#include <linux/futex.h>
#include <sys/syscall.h>
#endif

/* How long a helper spins for the next job, and the caller for the helpers. */
#define P3_WORKER_SPIN_NS	30000
#define P3_CALLER_SPIN_NS	100000
/* Pause instructions between two looks at the clock. */
#define P3_SPIN_CHECK_EVERY 64

#define P3_CACHE_LINE 64

typedef struct P3Worker
{
	pthread_t	thread;
	struct P3ThreadPool *pool;
	int			ith;
} P3Worker;

struct P3ThreadPool
{
	/* written by the caller once per job, read by helpers */
	_Alignas(P3_CACHE_LINE) atomic_uint generation;
	atomic_int	n_sleeping;		/* helpers in (or entering) a futex wait */
	atomic_bool stop;
	P3TaskFn	fn;
	void	   *arg;

	/* written by helpers once per job, read by the caller */
	_Alignas(P3_CACHE_LINE) atomic_uint pending;
	atomic_bool caller_sleeping;

	_Alignas(P3_CACHE_LINE) int n_threads;
	int			n_started;		/* helpers actually created */
#ifndef P3_USE_FUTEX
	pthread_mutex_t wait_mutex;
	pthread_cond_t wait_cond;
#endif
	P3Worker	workers[];		/* (n_threads - 1) helpers; worker ith is workers[ith - 1] */
};

/* A hint to the CPU that we are busy-waiting. */
static inline void
cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__) || defined(__arm__)
	__asm__ __volatile__("yield" ::: "memory");
#else
	atomic_signal_fence(memory_order_seq_cst);
#endif
}

static inline int64_t
monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * Spin until *word differs from old or budget_ns has passed; returns the
 * last value read (acquire).
 */
static unsigned
spin_while_equal(atomic_uint *word, unsigned old, int64_t budget_ns)
{
	int64_t		deadline = 0;

	for (int i = 1;; i++)
	{
		unsigned	v = atomic_load_explicit(word, memory_order_acquire);

		if (v != old)
			return v;
		if (i % P3_SPIN_CHECK_EVERY == 0)
		{
			int64_t		now = monotonic_ns();

			if (deadline == 0)
				deadline = now + budget_ns;
			else if (now >= deadline)
				return v;
		}
		cpu_relax();
	}
}

/* Spin until *word is 0 or budget_ns has passed; returns the last value read (acquire). */
static unsigned
spin_until_zero(atomic_uint *word, int64_t budget_ns)
{
	int64_t		deadline = 0;

	for (int i = 1;; i++)
	{
		unsigned	v = atomic_load_explicit(word, memory_order_acquire);

		if (v == 0)
			return v;
		if (i % P3_SPIN_CHECK_EVERY == 0)
		{
			int64_t		now = monotonic_ns();

			if (deadline == 0)
				deadline = now + budget_ns;
			else if (now >= deadline)
				return v;
		}
		cpu_relax();
	}
}

#ifdef P3_USE_FUTEX

/* Sleep while *word == expected (returns at once if it already differs). */
static void
word_wait(P3ThreadPool *pool, atomic_uint *word, unsigned expected)
{
	syscall(SYS_futex, (unsigned *) word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

/* Wake every thread sleeping on word. */
static void
word_wake(P3ThreadPool *pool, atomic_uint *word)
{
	syscall(SYS_futex, (unsigned *) word, FUTEX_WAKE_PRIVATE, P3_MAX_THREADS, NULL, NULL, 0);
}

#else							/* !P3_USE_FUTEX */

/*
 * Portable stand-in: one mutex and condition variable per pool.  The waker
 * takes the mutex before broadcasting, so a waiter that checked the word
 * under the mutex cannot miss the wake-up.
 */
static void
word_wait(P3ThreadPool *pool, atomic_uint *word, unsigned expected)
{
	pthread_mutex_lock(&pool->wait_mutex);
	if (atomic_load(word) == expected)
		pthread_cond_wait(&pool->wait_cond, &pool->wait_mutex);
	pthread_mutex_unlock(&pool->wait_mutex);
}

static void
word_wake(P3ThreadPool *pool, atomic_uint *word)
{
	pthread_mutex_lock(&pool->wait_mutex);
	pthread_cond_broadcast(&pool->wait_cond);
	pthread_mutex_unlock(&pool->wait_mutex);
}

#endif							/* P3_USE_FUTEX */

/* Wait (spin, then sleep) until the generation differs from seen; returns it. */
static unsigned
wait_new_generation(P3ThreadPool *pool, unsigned seen)
{
	unsigned	gen = spin_while_equal(&pool->generation, seen, P3_WORKER_SPIN_NS);

	while (gen == seen)
	{
		atomic_fetch_add(&pool->n_sleeping, 1);
		gen = atomic_load(&pool->generation);
		if (gen == seen)
			word_wait(pool, &pool->generation, seen);
		atomic_fetch_sub(&pool->n_sleeping, 1);
		gen = atomic_load_explicit(&pool->generation, memory_order_acquire);
	}
	return gen;
}

/* Body of every helper thread: run each published job once, until stopped. */
static void *
worker_main(void *argp)
{
	P3Worker   *self = argp;
	P3ThreadPool *pool = self->pool;

	/*
	 * Generation 0 is the pool's state before p3_threadpool_new returns; a
	 * helper that starts late must still see the first job as new.
	 */
	unsigned	seen = 0;

	for (;;)
	{
		seen = wait_new_generation(pool, seen);
		if (atomic_load_explicit(&pool->stop, memory_order_relaxed))
			break;
		pool->fn(pool->arg, self->ith, pool->n_threads);
		/* seq_cst, paired with the caller's caller_sleeping store then pending load */
		if (atomic_fetch_sub(&pool->pending, 1) == 1 &&
			atomic_load(&pool->caller_sleeping))
			word_wake(pool, &pool->pending);
	}
	return NULL;
}

/* Publish a new generation (job or stop) and wake sleeping helpers. */
static void
publish(P3ThreadPool *pool)
{
	atomic_fetch_add(&pool->generation, 1);	/* seq_cst: see the header comment */
	if (atomic_load(&pool->n_sleeping) > 0)
		word_wake(pool, &pool->generation);
}

/* Stop and join the helpers that were started. */
static void
stop_workers(P3ThreadPool *pool)
{
	if (pool->n_started == 0)
		return;
	atomic_store_explicit(&pool->stop, true, memory_order_relaxed);
	publish(pool);
	for (int i = 0; i < pool->n_started; i++)
		pthread_join(pool->workers[i].thread, NULL);
	pool->n_started = 0;
}

P3Status
p3_threadpool_new(int n_threads, P3ThreadPool **out, P3Error *err)
{
	P3ThreadPool *pool;
	size_t		size;
	sigset_t	all_signals;
	sigset_t	saved_mask;
	int			rc = 0;

	if (out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "thread pool output pointer is NULL");
	*out = NULL;
	if (n_threads < 1 || n_threads > P3_MAX_THREADS)
		return p3_error(err, P3_ERR_INVALID_ARG,
						"thread count must be between 1 and %d, not %d", P3_MAX_THREADS, n_threads);

	size = sizeof(P3ThreadPool) + (size_t) (n_threads - 1) * sizeof(P3Worker);
	size = (size + P3_CACHE_LINE - 1) / P3_CACHE_LINE * P3_CACHE_LINE;
	pool = aligned_alloc(P3_CACHE_LINE, size);
	if (pool == NULL)
		return p3_error(err, P3_ERR_NOMEM, "could not allocate a thread pool of %d threads", n_threads);
	memset(pool, 0, size);
	atomic_init(&pool->generation, 0);
	atomic_init(&pool->n_sleeping, 0);
	atomic_init(&pool->stop, false);
	atomic_init(&pool->pending, 0);
	atomic_init(&pool->caller_sleeping, false);
	pool->n_threads = n_threads;
	pool->n_started = 0;
#ifndef P3_USE_FUTEX
	pthread_mutex_init(&pool->wait_mutex, NULL);
	pthread_cond_init(&pool->wait_cond, NULL);
#endif

	if (n_threads > 1)
	{
		/*
		 * Helpers inherit this mask: every asynchronous signal stays with the
		 * host thread.  The synchronous fault signals stay unblocked: a fault
		 * raised while they are blocked kills the process outright, whereas
		 * unblocked they reach the host's handler on the faulting thread
		 * (the PostgreSQL glue uses this to survive a model file truncated
		 * under its mapping).
		 */
		sigfillset(&all_signals);
		sigdelset(&all_signals, SIGBUS);
		sigdelset(&all_signals, SIGSEGV);
		sigdelset(&all_signals, SIGFPE);
		sigdelset(&all_signals, SIGILL);
		pthread_sigmask(SIG_BLOCK, &all_signals, &saved_mask);
		for (int i = 0; i < n_threads - 1; i++)
		{
			P3Worker   *w = &pool->workers[i];

			w->pool = pool;
			w->ith = i + 1;
			rc = pthread_create(&w->thread, NULL, worker_main, w);
			if (rc != 0)
				break;
			pool->n_started++;
		}
		pthread_sigmask(SIG_SETMASK, &saved_mask, NULL);
	}

	if (rc != 0)
	{
		int			started = pool->n_started;

		p3_threadpool_free(pool);
		errno = rc;
		return p3_error_errno(err, rc == EAGAIN || rc == ENOMEM ? P3_ERR_NOMEM : P3_ERR_INTERNAL,
							  "could not start compute thread %d of %d", started + 1, n_threads - 1);
	}
	*out = pool;
	return P3_OK;
}

void
p3_threadpool_free(P3ThreadPool *pool)
{
	if (pool == NULL)
		return;
	stop_workers(pool);
#ifndef P3_USE_FUTEX
	pthread_mutex_destroy(&pool->wait_mutex);
	pthread_cond_destroy(&pool->wait_cond);
#endif
	free(pool);
}

int
p3_threadpool_size(const P3ThreadPool *pool)
{
	return pool == NULL ? 1 : pool->n_threads;
}

void
p3_threadpool_run(P3ThreadPool *pool, P3TaskFn fn, void *arg)
{
	unsigned	left;

	if (pool == NULL || pool->n_threads == 1)
	{
		fn(arg, 0, 1);
		return;
	}

	/* publish the job: everything written so far happens before the helpers run */
	pool->fn = fn;
	pool->arg = arg;
	atomic_store_explicit(&pool->pending, (unsigned) (pool->n_threads - 1), memory_order_relaxed);
	publish(pool);

	fn(arg, 0, pool->n_threads);

	/* the barrier: wait for the helpers, spinning first */
	left = atomic_load_explicit(&pool->pending, memory_order_acquire);
	while (left != 0)
	{
		left = spin_until_zero(&pool->pending, P3_CALLER_SPIN_NS);
		if (left == 0)
			break;
		atomic_store(&pool->caller_sleeping, true);
		left = atomic_load(&pool->pending);
		if (left != 0)
			word_wait(pool, &pool->pending, left);
		atomic_store(&pool->caller_sleeping, false);
		left = atomic_load_explicit(&pool->pending, memory_order_acquire);
	}
}

void
p3_split_range(int64_t n, int ith, int nth, int64_t *begin, int64_t *end)
{
	int64_t		base,
				extra,
				b;

	if (n <= 0 || nth < 1 || ith < 0 || ith >= nth)
	{
		*begin = *end = 0;
		return;
	}
	base = n / nth;
	extra = n % nth;
	/* the first `extra` workers take one more element */
	b = (int64_t) ith * base + (ith < extra ? ith : extra);
	*begin = b;
	*end = b + base + (ith < extra ? 1 : 0);
}

int
p3_cpu_count(void)
{
	int			count = 0;

#ifdef __linux__
	cpu_set_t	set;

	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0)
		count = CPU_COUNT(&set);
#endif
	if (count < 1)
	{
		long		online = sysconf(_SC_NPROCESSORS_ONLN);

		count = online > 0 ? (int) (online > 1 << 20 ? 1 << 20 : online) : 1;
	}
	return count;
}
