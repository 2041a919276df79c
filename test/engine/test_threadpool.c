/*
 * test_threadpool.c — unit tests of the compute thread pool
 * (src/engine/threadpool.c).
 *
 * Covers: every worker runs every job once with the right (ith, nth); what
 * workers write is visible after the barrier (a split sum is bit-identical
 * to the serial one); helpers have every signal blocked and process signals
 * land on the host thread; a pool of one creates no thread; pools come and
 * go without leaking threads; sleeping helpers and a sleeping caller wake up;
 * and the dispatch latency of tiny jobs, which is printed.
 */
#include "harness.h"

#include "phi3/threadpool.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
#define UNDER_SANITIZER 1
#else
#define UNDER_SANITIZER 0
#endif

typedef struct PaddedCounter
{
	_Alignas(64) long value;
} PaddedCounter;

static long
thread_id(void)
{
	return (long) syscall(SYS_gettid);
}

/* The "Threads:" count of this process from /proc/self/status (-1 if unreadable). */
static int
process_thread_count(void)
{
	FILE	   *f = fopen("/proc/self/status", "r");
	char		line[256];
	int			n = -1;

	if (f == NULL)
		return -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	fclose(f);
	return n;
}

/*
 * The thread count once it has come down to want, or the count after 2 s:
 * a joined thread can still be listed in /proc for a moment (seen under
 * valgrind, whose threads end later than the join returns).
 */
static int
settled_thread_count(int want)
{
	int			n = process_thread_count();

	for (int i = 0; i < 200 && n != want; i++)
	{
		struct timespec ts = {0, 10 * 1000 * 1000};

		nanosleep(&ts, NULL);
		n = process_thread_count();
	}
	return n;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long) (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* ------------------------------------------------------------------------
 * Arguments and job bookkeeping
 * ------------------------------------------------------------------------ */

static void
test_invalid_args(void)
{
	P3ThreadPool *pool = (P3ThreadPool *) &pool;	/* must become NULL */
	P3Error		err;

	CHECK_STATUS(p3_threadpool_new(0, &pool, &err), P3_ERR_INVALID_ARG);
	CHECK(pool == NULL);
	CHECK(strstr(err.message, "thread count") != NULL);
	CHECK_STATUS(p3_threadpool_new(P3_MAX_THREADS + 1, &pool, &err), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_threadpool_new(2, NULL, &err), P3_ERR_INVALID_ARG);
	CHECK_EQ_INT(p3_threadpool_size(NULL), 1);
	p3_threadpool_free(NULL);
}

typedef struct RecordJob
{
	int			job;			/* index of the current job */
	int			nth_expected;
	PaddedCounter runs[P3_MAX_THREADS];
	PaddedCounter last_job[P3_MAX_THREADS];
	PaddedCounter tid[P3_MAX_THREADS];
	atomic_int	bad;			/* out-of-range ith or wrong nth */
} RecordJob;

static void
record_job(void *argp, int ith, int nth)
{
	RecordJob  *a = argp;

	if (ith < 0 || ith >= nth || nth != a->nth_expected)
	{
		atomic_fetch_add(&a->bad, 1);
		return;
	}
	a->runs[ith].value++;
	/* a job run twice by the same worker, or a stale job, shows up here */
	if (a->last_job[ith].value != a->job - 1)
		atomic_fetch_add(&a->bad, 1);
	a->last_job[ith].value = a->job;
	a->tid[ith].value = thread_id();
}

static void
test_every_worker_once(void)
{
	static RecordJob a;
	int			sizes[6] = {1, 2, 3, 4, 7, 16};

	for (int si = 0; si < 6; si++)
	{
		int			nth = sizes[si];
		P3ThreadPool *pool = NULL;
		P3Error		err;
		/* oversubscribed pools (more threads than this 2-CPU box) are slow */
		const int	jobs = nth <= 4 ? 3000 : 300;
		bool		distinct = true;

		memset(&a, 0, sizeof(a));
		a.nth_expected = nth;
		for (int i = 0; i < P3_MAX_THREADS; i++)
			a.last_job[i].value = -1;
		CHECK_STATUS(p3_threadpool_new(nth, &pool, &err), P3_OK);
		if (pool == NULL)
			continue;
		CHECK_EQ_INT(p3_threadpool_size(pool), nth);
		for (int j = 0; j < jobs; j++)
		{
			a.job = j;
			p3_threadpool_run(pool, record_job, &a);
		}
		CHECK_EQ_INT(atomic_load(&a.bad), 0);
		for (int i = 0; i < nth; i++)
		{
			CHECK_EQ_INT(a.runs[i].value, jobs);
			CHECK_EQ_INT(a.last_job[i].value, jobs - 1);
		}
		for (int i = nth; i < P3_MAX_THREADS; i++)
			CHECK_EQ_INT(a.runs[i].value, 0);
		/* the caller is worker 0; every worker is its own thread */
		CHECK_EQ_INT(a.tid[0].value, thread_id());
		for (int i = 0; i < nth; i++)
			for (int k = i + 1; k < nth; k++)
				if (a.tid[i].value == a.tid[k].value)
					distinct = false;
		CHECK(distinct);
		p3_threadpool_free(pool);
	}

	/* a NULL pool runs the job inline as worker 0 of 1 */
	memset(&a, 0, sizeof(a));
	a.nth_expected = 1;
	a.last_job[0].value = -1;
	a.job = 0;
	p3_threadpool_run(NULL, record_job, &a);
	CHECK_EQ_INT(a.runs[0].value, 1);
	CHECK_EQ_INT(a.tid[0].value, thread_id());
	CHECK_EQ_INT(atomic_load(&a.bad), 0);
}

static void
test_single_thread_creates_none(void)
{
	int			before = process_thread_count();
	P3ThreadPool *pool = NULL;
	P3Error		err;

	CHECK(before >= 1);
	CHECK_STATUS(p3_threadpool_new(1, &pool, &err), P3_OK);
	CHECK_EQ_INT(process_thread_count(), before);
	p3_threadpool_free(pool);

	CHECK_STATUS(p3_threadpool_new(4, &pool, &err), P3_OK);
	CHECK_EQ_INT(process_thread_count(), before + 3);
	p3_threadpool_free(pool);
	CHECK_EQ_INT(settled_thread_count(before), before);
}

/* ------------------------------------------------------------------------
 * Results and ranges
 * ------------------------------------------------------------------------ */

static void
test_split_range(void)
{
	int64_t		ns[7] = {0, 1, 5, 7, 100, 1001, 3000000001LL};

	for (int ni = 0; ni < 7; ni++)
	{
		for (int nth = 1; nth <= 9; nth++)
		{
			int64_t		expect_begin = 0;
			int64_t		n = ns[ni];
			bool		ok = true;

			for (int ith = 0; ith < nth; ith++)
			{
				int64_t		b = -1,
							e = -1,
							size;

				p3_split_range(n, ith, nth, &b, &e);
				size = e - b;
				if (b != expect_begin || size < n / nth || size > n / nth + 1)
					ok = false;
				/* larger chunks first */
				if (size != n / nth + (ith < n % nth ? 1 : 0))
					ok = false;
				expect_begin = e;
			}
			CHECK_MSG(ok && expect_begin == n, "n %lld nth %d", (long long) n, nth);
		}
	}
	{
		int64_t		b = -1,
					e = -1;

		p3_split_range(10, 3, 3, &b, &e);
		CHECK(b == e);
		p3_split_range(10, -1, 3, &b, &e);
		CHECK(b == e);
		p3_split_range(10, 0, 0, &b, &e);
		CHECK(b == e);
	}
}

typedef struct SumJob
{
	const float *x;
	int64_t		n;
	float		partial[P3_MAX_THREADS];
} SumJob;

static void
sum_job(void *argp, int ith, int nth)
{
	SumJob	   *a = argp;
	int64_t		b,
				e;
	float		s = 0.0f;

	p3_split_range(a->n, ith, nth, &b, &e);
	for (int64_t i = b; i < e; i++)
		s += a->x[i];
	a->partial[ith] = s;
}

static void
test_sum_bit_exact(void)
{
	const int64_t n = 1000003;
	float	   *x = malloc(sizeof(float) * n);
	uint64_t	r = 77;

	CHECK(x != NULL);
	if (x == NULL)
		return;
	for (int64_t i = 0; i < n; i++)
		x[i] = harness_randf(&r) * (float) (1 + i % 1000);

	for (int nth = 1; nth <= 6; nth++)
	{
		P3ThreadPool *pool = NULL;
		P3Error		err;
		static SumJob a;
		float		serial = 0.0f;
		float		pooled = 0.0f;

		/* the reference: the same chunks, summed one after another here */
		for (int ith = 0; ith < nth; ith++)
		{
			int64_t		b,
						e;
			float		s = 0.0f;

			p3_split_range(n, ith, nth, &b, &e);
			for (int64_t i = b; i < e; i++)
				s += x[i];
			serial += s;
		}

		CHECK_STATUS(p3_threadpool_new(nth, &pool, &err), P3_OK);
		for (int rep = 0; rep < 5; rep++)
		{
			memset(&a, 0, sizeof(a));
			for (int ith = 0; ith < nth; ith++)
				a.partial[ith] = NAN;	/* a missing partial poisons the sum */
			a.x = x;
			a.n = n;
			p3_threadpool_run(pool, sum_job, &a);
			pooled = 0.0f;
			for (int ith = 0; ith < nth; ith++)
				pooled += a.partial[ith];
			CHECK_MSG(memcmp(&pooled, &serial, sizeof(float)) == 0,
					  "nth %d: pooled %.9g serial %.9g", nth, (double) pooled, (double) serial);
		}
		p3_threadpool_free(pool);
	}
	free(x);
}

/* ------------------------------------------------------------------------
 * Signals
 * ------------------------------------------------------------------------ */

typedef struct SignalJob
{
	PaddedCounter blocked_ok[P3_MAX_THREADS];	/* 1: mask as expected */
	PaddedCounter tid[P3_MAX_THREADS];
} SignalJob;

static const int host_signals[] = {SIGINT, SIGTERM, SIGALRM, SIGUSR1, SIGUSR2, SIGQUIT, SIGHUP,
SIGPIPE, SIGCHLD};

#define N_HOST_SIGNALS ((int) (sizeof(host_signals) / sizeof(host_signals[0])))

static void
signal_job(void *argp, int ith, int nth)
{
	SignalJob  *a = argp;
	sigset_t	set;
	bool		ok = true;

	sigemptyset(&set);
	pthread_sigmask(SIG_BLOCK, NULL, &set);
	if (ith > 0)
	{
		for (int i = 0; i < N_HOST_SIGNALS; i++)
			if (!sigismember(&set, host_signals[i]))
				ok = false;
		/* synchronous fault signals stay deliverable to the faulting helper */
		if (sigismember(&set, SIGBUS) || sigismember(&set, SIGSEGV) ||
			sigismember(&set, SIGFPE) || sigismember(&set, SIGILL))
			ok = false;
	}
	else
	{
		/* the caller's own mask is untouched: SIGINT open, SIGUSR2 blocked by the test */
		ok = !sigismember(&set, SIGINT) && sigismember(&set, SIGUSR2);
	}
	a->blocked_ok[ith].value = ok;
	a->tid[ith].value = thread_id();
}

/* SigBlk of a thread from /proc/self/task/<tid>/status (0 if unreadable). */
static uint64_t
proc_sigblk(long tid)
{
	char		path[64];
	char		line[256];
	unsigned long long mask = 0;
	FILE	   *f;

	snprintf(path, sizeof(path), "/proc/self/task/%ld/status", tid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "SigBlk: %llx", &mask) == 1)
			break;
	fclose(f);
	return mask;
}

static atomic_long signal_handler_tid;
static atomic_int signal_handler_calls;

static void
record_signal(int signo)
{
	atomic_store(&signal_handler_tid, thread_id());
	atomic_fetch_add(&signal_handler_calls, 1);
}

static void
test_signals_blocked(void)
{
	static SignalJob a;
	sigset_t	block_usr2,
				saved,
				after;
	P3ThreadPool *pool = NULL;
	P3Error		err;
	struct sigaction sa,
				old_sa;
	const int	nth = 3;

	/* the host: SIGUSR2 blocked, SIGINT and SIGUSR1 open */
	sigemptyset(&block_usr2);
	sigaddset(&block_usr2, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &block_usr2, &saved);

	CHECK_STATUS(p3_threadpool_new(nth, &pool, &err), P3_OK);
	pthread_sigmask(SIG_BLOCK, NULL, &after);
	CHECK(sigismember(&after, SIGUSR2));
	CHECK(!sigismember(&after, SIGINT));
	CHECK(!sigismember(&after, SIGTERM));

	memset(&a, 0, sizeof(a));
	p3_threadpool_run(pool, signal_job, &a);
	for (int i = 0; i < nth; i++)
		CHECK_MSG(a.blocked_ok[i].value == 1, "worker %d has the wrong signal mask", i);

	/* the kernel's view of the helpers */
	for (int i = 1; i < nth; i++)
	{
		uint64_t	blk = proc_sigblk(a.tid[i].value);

		for (int s = 0; s < N_HOST_SIGNALS; s++)
			CHECK_MSG((blk >> (host_signals[s] - 1)) & 1,
					  "worker %d SigBlk %016llx lacks signal %d", i,
					  (unsigned long long) blk, host_signals[s]);
	}
	CHECK(((proc_sigblk(thread_id()) >> (SIGINT - 1)) & 1) == 0);

	/* a process-directed signal can only be handled by the host thread */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = record_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, &old_sa);
	for (int i = 0; i < 20; i++)
	{
		atomic_store(&signal_handler_tid, 0);
		kill(getpid(), SIGUSR1);
		for (int w = 0; w < 1000 && atomic_load(&signal_handler_tid) == 0; w++)
			sleep_ms(1);
		CHECK_EQ_INT(atomic_load(&signal_handler_tid), thread_id());
	}
	CHECK_EQ_INT(atomic_load(&signal_handler_calls), 20);
	sigaction(SIGUSR1, &old_sa, NULL);

	p3_threadpool_free(pool);
	pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* ------------------------------------------------------------------------
 * Lifetimes and waking
 * ------------------------------------------------------------------------ */

static void
count_job(void *argp, int ith, int nth)
{
	PaddedCounter *c = argp;

	c[ith].value++;
}

static void
test_many_pools(void)
{
	static PaddedCounter c[8];
	int			before = process_thread_count();

	for (int i = 0; i < 200; i++)
	{
		int			nth = 1 + i % 4;
		P3ThreadPool *pool = NULL;
		P3Error		err;

		CHECK_STATUS(p3_threadpool_new(nth, &pool, &err), P3_OK);
		if (i % 3 != 0)			/* a third of them never run anything */
		{
			memset(c, 0, sizeof(c));
			p3_threadpool_run(pool, count_job, c);
			p3_threadpool_run(pool, count_job, c);
			for (int k = 0; k < nth; k++)
				CHECK_EQ_INT(c[k].value, 2);
		}
		p3_threadpool_free(pool);
	}
	CHECK_EQ_INT(settled_thread_count(before), before);
}

typedef struct SlowJob
{
	int			slow_worker;	/* this one sleeps before writing */
	int			ms;
	PaddedCounter out[P3_MAX_THREADS];
} SlowJob;

static void
slow_job(void *argp, int ith, int nth)
{
	SlowJob    *a = argp;

	if (ith == a->slow_worker)
		sleep_ms(a->ms);
	a->out[ith].value = 1000 + ith;
}

static void
test_sleep_and_wake(void)
{
	static SlowJob a;
	P3ThreadPool *pool = NULL;
	P3Error		err;
	const int	nth = 3;

	CHECK_STATUS(p3_threadpool_new(nth, &pool, &err), P3_OK);
	for (int rep = 0; rep < 6; rep++)
	{
		bool		ok = true;

		/* idle long enough for the helpers to go to sleep */
		sleep_ms(5);
		memset(&a, 0, sizeof(a));
		/* a slow helper makes the caller sleep; a slow caller lets helpers finish first */
		a.slow_worker = rep % 3;
		a.ms = rep < 3 ? 3 : 0;
		p3_threadpool_run(pool, slow_job, &a);
		for (int i = 0; i < nth; i++)
			if (a.out[i].value != 1000 + i)
				ok = false;
		CHECK_MSG(ok, "repetition %d", rep);
	}
	p3_threadpool_free(pool);

	/* a pool that sleeps from the start, and is freed while asleep */
	CHECK_STATUS(p3_threadpool_new(nth, &pool, &err), P3_OK);
	sleep_ms(5);
	p3_threadpool_free(pool);
}

/* More threads than CPUs: helpers get descheduled mid-spin. */
static void
test_oversubscribed(void)
{
	static PaddedCounter c[12];
	P3ThreadPool *pool = NULL;
	P3Error		err;
	const int	nth = 12;
	const int	jobs = 1000;
	bool		ok = true;

	memset(c, 0, sizeof(c));
	CHECK_STATUS(p3_threadpool_new(nth, &pool, &err), P3_OK);
	for (int j = 0; j < jobs; j++)
		p3_threadpool_run(pool, count_job, c);
	for (int i = 0; i < nth; i++)
		if (c[i].value != jobs)
			ok = false;
	CHECK(ok);
	p3_threadpool_free(pool);
}

static void
test_cpu_count(void)
{
	int			n = p3_cpu_count();
	long		conf = sysconf(_SC_NPROCESSORS_CONF);

	CHECK(n >= 1);
	if (conf > 0)
		CHECK(n <= conf);
	fprintf(stderr, "     p3_cpu_count() = %d\n", n);
}

/* ------------------------------------------------------------------------
 * Dispatch latency
 * ------------------------------------------------------------------------ */

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/*
 * 100k empty jobs on 2 threads, 5 times; prints the median time per job.
 * Under valgrind or a sanitizer the job count is cut.
 */
static void
test_dispatch_latency(void)
{
	static PaddedCounter c[2];
	bool		slow_tool = RUNNING_ON_VALGRIND || UNDER_SANITIZER;
	const int	jobs = slow_tool ? 5000 : 100000;
	const int	runs = 5;
	double		per_job[5];
	P3ThreadPool *pool = NULL;
	P3Error		err;

	memset(c, 0, sizeof(c));
	CHECK_STATUS(p3_threadpool_new(2, &pool, &err), P3_OK);
	for (int r = 0; r < runs; r++)
	{
		double		t0 = now_seconds();

		for (int j = 0; j < jobs; j++)
			p3_threadpool_run(pool, count_job, c);
		per_job[r] = (now_seconds() - t0) / jobs;
	}
	p3_threadpool_free(pool);
	CHECK_EQ_INT(c[0].value, (long) jobs * runs);
	CHECK_EQ_INT(c[1].value, (long) jobs * runs);

	qsort(per_job, runs, sizeof(double), cmp_double);
	fprintf(stderr, "     dispatch latency, 2 threads, %d jobs x %d runs: median %.3f us/job "
			"(min %.3f, max %.3f)\n", jobs, runs, per_job[runs / 2] * 1e6, per_job[0] * 1e6,
			per_job[runs - 1] * 1e6);
	/* printed for information: speed is measured by `make bench`, not asserted by tests */
}

int
main(void)
{
	RUN(test_invalid_args);
	RUN(test_every_worker_once);
	RUN(test_single_thread_creates_none);
	RUN(test_split_range);
	RUN(test_sum_bit_exact);
	RUN(test_signals_blocked);
	RUN(test_many_pools);
	RUN(test_sleep_and_wake);
	RUN(test_oversubscribed);
	RUN(test_cpu_count);
	RUN(test_dispatch_latency);
	return harness_finish();
}
