/*
 * bench_kernels.c — speed of the kernel sets against the machine's memory
 * bandwidth (a standalone program, not a test).
 *
 * Three measurements, each the median of several repetitions:
 *   1. read bandwidth: summing a buffer much larger than the caches
 *      (default 1 GiB) with 1 and 2 threads;
 *   2. per-row kernels for n = 3072 and 8192: ns per row and GB/s of
 *      weight bytes for vec_dot (quantized activations) and dot_f32 (f32
 *      activations) of every accelerated type, for each kernel set, over a
 *      weight matrix larger than the last-level cache (streamed, as in
 *      decode); the fraction is of the 1-thread bandwidth;
 *   3. a Phi-3-mini Q4_K_M layer (3072->9216 Q5_K, 3072->3072 Q4_K,
 *      3072->16384 Q4_K, 8192->3072 Q6_K) through p3_matmul with 1 and 2
 *      threads: decode time per layer and projected tokens/s for 32 layers
 *      plus the 3072->32064 Q6_K output matrix (fraction of the 2.4 GB per
 *      token a bandwidth-bound decode would reach), and prefill time per
 *      token at n_tok = 64, against the row-at-a-time product used before
 *      the multi-token kernels.
 *
 * Build (from the repository root):
 *   gcc <engine flags> -Isrc/engine -o /tmp/bench_kernels bench/bench_kernels.c \
 *       src/engine/[a-z]*.c -lm -lpthread     (every engine source file)
 * Run: bench_kernels [--quick] [--mem-mib N] [--reps N] [--only rows|layers|steps|peak]
 * PHI3_KERNELS does not matter here: every set the CPU runs is measured.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phi3/kernels.h"
#include "phi3/kernels_dispatch.h"
#include "phi3/quant.h"
#include "phi3/threadpool.h"

#include "bench_peak.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

static int	reps = 5;
static bool quick = false;
static const char *only = NULL;	/* "rows", "layers" or "steps" (its last table): run only that part */

static double
now_sec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a;
	double		y = *(const double *) b;

	return (x > y) - (x < y);
}

static double
median(double *v, int n)
{
	qsort(v, (size_t) n, sizeof(double), cmp_double);
	return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void *
xmalloc(size_t n)
{
	void	   *p = aligned_alloc(64, (n + 63) / 64 * 64);

	if (p == NULL)
	{
		fprintf(stderr, "bench_kernels: out of memory (%zu bytes)\n", n);
		exit(1);
	}
	return p;
}

static uint64_t rng_state = 0x1234567;

static float
randf(void)
{
	uint64_t	z = (rng_state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	z ^= z >> 31;
	return (float) ((double) (z >> 40) / (double) (1ull << 24) * 2.0 - 1.0);
}

/* ---------------------------------------------------------------------
 * memory read bandwidth
 * --------------------------------------------------------------------- */

typedef struct ReadJob
{
	const uint64_t *buf;
	size_t		words;
	uint64_t	sums[P3_MAX_THREADS];
} ReadJob;

#if defined(__x86_64__)
__attribute__((target("avx2")))
static uint64_t
sum_words_avx2(const uint64_t *p, size_t n)
{
	__m256i		a0 = _mm256_setzero_si256(),
				a1 = _mm256_setzero_si256(),
				a2 = _mm256_setzero_si256(),
				a3 = _mm256_setzero_si256();
	size_t		i = 0;
	uint64_t	lanes[4];

	for (; i + 16 <= n; i += 16)
	{
		a0 = _mm256_add_epi64(a0, _mm256_load_si256((const __m256i *) (p + i)));
		a1 = _mm256_add_epi64(a1, _mm256_load_si256((const __m256i *) (p + i + 4)));
		a2 = _mm256_add_epi64(a2, _mm256_load_si256((const __m256i *) (p + i + 8)));
		a3 = _mm256_add_epi64(a3, _mm256_load_si256((const __m256i *) (p + i + 12)));
	}
	_mm256_storeu_si256((__m256i *) lanes, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
	for (; i < n; i++)
		lanes[0] += p[i];
	return lanes[0] + lanes[1] + lanes[2] + lanes[3];
}
#endif

static uint64_t
sum_words(const uint64_t *p, size_t n)
{
	uint64_t	s0 = 0,
				s1 = 0,
				s2 = 0,
				s3 = 0;
	size_t		i = 0;

#if defined(__x86_64__)
	if (__builtin_cpu_supports("avx2"))
		return sum_words_avx2(p, n);
#endif
	for (; i + 4 <= n; i += 4)
	{
		s0 += p[i];
		s1 += p[i + 1];
		s2 += p[i + 2];
		s3 += p[i + 3];
	}
	for (; i < n; i++)
		s0 += p[i];
	return s0 + s1 + s2 + s3;
}

static void
read_task(void *arg, int ith, int nth)
{
	ReadJob    *job = arg;
	int64_t		b,
				e;

	/* split on 64-byte lines */
	p3_split_range((int64_t) (job->words / 8), ith, nth, &b, &e);
	job->sums[ith] = sum_words(job->buf + b * 8, (size_t) (e - b) * 8);
}

/* GB/s (1e9 bytes) of reading size bytes with the pool's threads */
static double
read_bandwidth(P3ThreadPool *pool, const uint64_t *buf, size_t size)
{
	ReadJob		job;
	double		t[16];
	int			n = reps < 16 ? reps : 16;

	memset(&job, 0, sizeof job);
	job.buf = buf;
	job.words = size / 8;
	p3_threadpool_run(pool, read_task, &job);	/* warm up */
	for (int r = 0; r < n; r++)
	{
		double		t0 = now_sec();

		p3_threadpool_run(pool, read_task, &job);
		t[r] = now_sec() - t0;
	}
	if (job.sums[0] == 42)
		printf(" ");			/* keep the sums alive */
	return (double) size / median(t, n) * 1e-9;
}

/* ---------------------------------------------------------------------
 * weight matrices
 * --------------------------------------------------------------------- */

#define DISTINCT_ROWS 16

/* n_out rows of type made of DISTINCT_ROWS random quantized rows repeated */
static P3Weight
make_weight(uint32_t type, int64_t n_in, int64_t n_out, const char *name)
{
	P3Weight	w;
	size_t		rb = 0;
	float	   *src = xmalloc((size_t) n_in * sizeof(float));
	uint8_t    *data;

	if (!p3_row_bytes(type, n_in, &rb))
	{
		fprintf(stderr, "bench_kernels: bad row %s x %lld\n", p3_type_name(type), (long long) n_in);
		exit(1);
	}
	data = xmalloc(rb * (size_t) n_out);
	for (int64_t r = 0; r < n_out; r++)
	{
		if (r < DISTINCT_ROWS)
		{
			for (int64_t i = 0; i < n_in; i++)
				src[i] = randf() * (1.0f + (float) (i % 7));
			p3_quantize_row_ref(type, src, data + (size_t) r * rb, n_in);
		}
		else
			memcpy(data + (size_t) r * rb, data + (size_t) (r % DISTINCT_ROWS) * rb, rb);
	}
	free(src);
	memset(&w, 0, sizeof w);
	w.name = name;
	w.type = type;
	w.n_in = n_in;
	w.n_out = n_out;
	w.row_bytes = rb;
	w.data = data;
	return w;
}

/* ---------------------------------------------------------------------
 * per-row kernels
 * --------------------------------------------------------------------- */

static volatile float sink;

/* median seconds of one pass of vec_dot (q8 = true) or dot_f32 over all rows */
static double
time_rows(const P3KernelSet *k, const P3Weight *w, bool q8, const void *act, const float *x, int nrep)
{
	double		t[16];
	float		s = 0.0f;

	for (int r = 0; r < nrep + 1; r++)
	{
		double		t0 = now_sec();

		if (q8)
			for (int64_t i = 0; i < w->n_out; i++)
				s += k->vec_dot[w->type](w->data + (size_t) i * w->row_bytes, act, w->n_in);
		else
			for (int64_t i = 0; i < w->n_out; i++)
				s += k->dot_f32[w->type](w->data + (size_t) i * w->row_bytes, x, w->n_in);
		if (r > 0)
			t[r - 1] = now_sec() - t0;	/* the first pass warms up */
	}
	sink = s;
	return median(t, nrep);
}

static void
bench_rows(const P3KernelSet **sets, int nsets, double bw1)
{
	static const uint32_t types[] = {
		P3_TYPE_Q4_K, P3_TYPE_Q5_K, P3_TYPE_Q6_K, P3_TYPE_Q8_0, P3_TYPE_Q4_0,
		P3_TYPE_Q4_1, P3_TYPE_Q5_0, P3_TYPE_Q5_1, P3_TYPE_IQ4_NL, P3_TYPE_F16, P3_TYPE_BF16, P3_TYPE_F32,
	};
	static const int64_t ns[] = {3072, 8192};
	size_t		target = quick ? ((size_t) 48 << 20) : ((size_t) 96 << 20);

	printf("\nper-row kernels, 1 thread, weights streamed from memory (%zu MiB per pass); "
		   "ns/row, GB/s, %% of 1-thread read bandwidth\n", target >> 20);
	printf("%-7s %5s %-7s", "type", "n", "kernel");
	for (int s = 0; s < nsets; s++)
		printf(" | %-9s %8s %5s %4s", sets[s]->name, "ns/row", "GB/s", "%bw");
	printf("\n");
	for (size_t ti = 0; ti < sizeof(types) / sizeof(types[0]); ti++)
	{
		for (size_t ni = 0; ni < sizeof(ns) / sizeof(ns[0]); ni++)
		{
			uint32_t	type = types[ti];
			const P3TypeTraits *tr = p3_type_traits(type);
			int64_t		n = ns[ni];
			size_t		rb = 0;
			P3Weight	w;
			float	   *x = xmalloc((size_t) n * sizeof(float));
			uint8_t    *act = xmalloc((size_t) n * 4 + 1024);

			(void) p3_row_bytes(type, n, &rb);
			w = make_weight(type, n, (int64_t) (target / rb), "bench");
			for (int64_t i = 0; i < n; i++)
				x[i] = randf();
			if (tr->vec_dot_type != P3_TYPE_F32)
				p3_quantize_row_ref(tr->vec_dot_type, x, act, n);
			for (int kind = 0; kind < 2; kind++)
			{
				bool		q8 = kind == 0;

				if (q8 && tr->vec_dot_type == P3_TYPE_F32)
					continue;
				printf("%-7s %5lld %-7s", tr->name, (long long) n, q8 ? "vec_dot" : "dot_f32");
				for (int s = 0; s < nsets; s++)
				{
					bool		ref = strcmp(sets[s]->name, "reference") == 0;
					double		sec = time_rows(sets[s], &w, q8, act, x, ref ? 1 : reps);
					double		gbs = (double) rb * (double) w.n_out / sec * 1e-9;

					printf(" | %-9s %8.1f %5.1f %3.0f%%", "", sec / (double) w.n_out * 1e9, gbs, 100.0 * gbs / bw1);
				}
				printf("\n");
				fflush(stdout);
			}
			free((void *) w.data);
			free(x);
			free(act);
		}
	}
}

/* ---------------------------------------------------------------------
 * decode and prefill through p3_matmul
 * --------------------------------------------------------------------- */

typedef struct LayerSet
{
	P3Weight	w[5];			/* qkv, attn_output, ffn_up, ffn_down, output */
	int			n_layer_w;		/* the first 4 are one layer */
	size_t		layer_bytes;
	size_t		output_bytes;
	double		layer_macs;		/* multiply-adds of the first 4 per token */
} LayerSet;

/*
 * The baseline for prefill: the row-at-a-time product matmul.c had before
 * the multi-token kernels (each row decoded or unpacked again for every
 * token: vec_dot per token, or dequant then dot_f32_f32 per token).
 */
typedef struct BaselineJob
{
	const P3MatmulArgs *a;
	size_t		arow;			/* bytes per quantized activation row */
} BaselineJob;

static void
baseline_quantize_task(void *arg, int ith, int nth)
{
	const BaselineJob *job = arg;
	const P3MatmulArgs *a = job->a;
	P3Type		vdt = p3_type_traits(a->w->type)->vec_dot_type;
	int64_t		t0,
				t1;

	p3_split_range(a->n_tok, ith, nth, &t0, &t1);
	for (int64_t t = t0; t < t1; t++)
		a->kernels->quantize[vdt](a->x + t * a->ldx, (uint8_t *) a->act_buf + (size_t) t * job->arow, a->w->n_in);
}

static void
baseline_task(void *arg, int ith, int nth)
{
	const BaselineJob *job = arg;
	const P3MatmulArgs *a = job->a;
	const P3Weight *w = a->w;
	int64_t		r0,
				r1;

	p3_split_range(a->row_end - a->row_begin, ith, nth, &r0, &r1);
	for (int64_t r = r0; r < r1; r++)
	{
		const uint8_t *row = w->data + (size_t) r * w->row_bytes;

		if (a->act == P3_ACT_Q8)
			for (int32_t t = 0; t < a->n_tok; t++)
				a->y[t * a->ldy + r] = a->kernels->vec_dot[w->type](row, (const uint8_t *) a->act_buf + (size_t) t * job->arow,
																	 w->n_in);
		else
		{
			float	   *dec = a->thread_scratch + (size_t) ith * a->thread_scratch_floats;

			a->kernels->dequant[w->type](row, dec, w->n_in);
			for (int32_t t = 0; t < a->n_tok; t++)
				a->y[t * a->ldy + r] = a->kernels->dot_f32_f32(dec, a->x + t * a->ldx, w->n_in);
		}
	}
}

static void
baseline_matmul(P3ThreadPool *pool, const P3MatmulArgs *a)
{
	BaselineJob job = {a, 0};

	(void) p3_row_bytes(p3_type_traits(a->w->type)->vec_dot_type, a->w->n_in, &job.arow);
	if (a->act == P3_ACT_Q8)
		p3_threadpool_run(pool, baseline_quantize_task, &job);
	p3_threadpool_run(pool, baseline_task, &job);
}

/* median seconds of y = x · Wᵀ for every weight of [first, last) of the set */
static double
time_matmul(P3ThreadPool *pool, const P3KernelSet *k, P3ActPrecision act, LayerSet *ls,
			int first, int last, int32_t n_tok, int nrep, bool baseline,
			const float *x, float *y, void *act_buf, float *scratch, size_t scratch_floats)
{
	double		t[16];

	for (int r = 0; r < nrep + 1; r++)
	{
		double		t0 = now_sec();

		for (int i = first; i < last; i++)
		{
			P3MatmulArgs a;

			memset(&a, 0, sizeof a);
			a.kernels = k;
			a.act = act;
			a.w = &ls->w[i];
			a.row_begin = 0;
			a.row_end = ls->w[i].n_out;
			a.x = x;
			a.ldx = ls->w[i].n_in;
			a.n_tok = n_tok;
			a.y = y;
			a.ldy = ls->w[i].n_out;
			a.act_buf = act_buf;
			a.thread_scratch = scratch;
			a.thread_scratch_floats = scratch_floats;
			if (baseline)
				baseline_matmul(pool, &a);
			else
				p3_matmul(pool, &a);
		}
		if (r > 0)
			t[r - 1] = now_sec() - t0;
	}
	return median(t, nrep);
}

/* ---------------------------------------------------------------------
 * the int8 multiply-add peak: independent vpdpbusd chains
 * --------------------------------------------------------------------- */

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void
vnni_loop_task(void *arg, int ith, int nth)
{
	const long	iters = *(const long *) arg;
	__m512i		acc[12];
	__m512i		a = _mm512_set1_epi8(3),
				b = _mm512_set1_epi8(5);

	(void) ith;
	(void) nth;
#pragma GCC unroll 12
	for (int k = 0; k < 12; k++)
		acc[k] = _mm512_set1_epi32(k);
	for (long i = 0; i < iters; i++)
	{
#pragma GCC unroll 12
		for (int k = 0; k < 12; k++)
			acc[k] = _mm512_dpbusd_epi32(acc[k], a, b);
		/* keep a and b in registers, not folded as constants */
		__asm__ volatile("" : "+v"(a), "+v"(b));
	}
#pragma GCC unroll 12
	for (int k = 1; k < 12; k++)
		acc[0] = _mm512_add_epi32(acc[0], acc[k]);
	sink += (float) _mm512_reduce_add_epi32(acc[0]);
}
#endif

/* multiply-adds per second of vpdpbusd on 512 bits with nth threads (0 when the CPU has none) */
static double
vnni_peak(P3ThreadPool *pool, int nth)
{
#if defined(__x86_64__)
	long		iters = quick ? 2000000 : 10000000;
	double		t[16];

	if (!__builtin_cpu_supports("avx512vnni"))
		return 0.0;
	for (int r = 0; r < reps; r++)
	{
		double		t0 = now_sec();

		p3_threadpool_run(pool, vnni_loop_task, &iters);
		t[r] = now_sec() - t0;
	}
	return (double) iters * 12.0 * 64.0 * nth / median(t, reps);
#else
	(void) pool;
	(void) nth;
	return 0.0;
#endif
}

#if defined(__x86_64__)
static void
fma_loop_task(void *arg, int ith, int nth)
{
	(void) ith;
	(void) nth;
	sink += fma_peak_loop(*(const long *) arg);
}
#endif

/* f32 multiply-adds per second of vfmadd on 512 bits with nth threads (0 without AVX-512) */
static double
fma_peak(P3ThreadPool *pool, int nth)
{
#if defined(__x86_64__)
	long		iters = quick ? 2000000 : 10000000;
	double		t[16];

	if (!__builtin_cpu_supports("avx512f"))
		return 0.0;
	for (int r = 0; r < reps; r++)
	{
		double		t0 = now_sec();

		p3_threadpool_run(pool, fma_loop_task, &iters);
		t[r] = now_sec() - t0;
	}
	return (double) iters * 12.0 * 16.0 * nth / median(t, reps);
#else
	(void) pool;
	(void) nth;
	return 0.0;
#endif
}

/* A copy of the set k without its GEMM: the 4-token kernels for every chunk. */
static P3KernelSet
without_gemm(const P3KernelSet *k)
{
	P3KernelSet c = *k;

	memset(c.gemm, 0, sizeof(c.gemm));
	memset(c.gemm_pack, 0, sizeof(c.gemm_pack));
	return c;
}

/* ms per decode step of n_tok rows (32 layers, no attention), with and without the GEMM */
static void
bench_batch_steps(P3ThreadPool *pool, const P3KernelSet *k, LayerSet *ls, const float *x, float *y,
				  void *act_buf, float *scratch, size_t sfloats)
{
	static const int32_t steps[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128};
	P3KernelSet plain = without_gemm(k);

	if (k->gemm[P3_TYPE_Q4_K] == NULL)
		return;
	printf("\nbatched decode steps and chunks, set %s, q8, 2 threads, 32 layers (no attention, no output): "
		   "ms per step and tokens/s, with the K-quant GEMM and with the 4-token kernels\n", k->name);
	printf("%5s | %9s %8s | %9s %8s | %7s\n", "n_tok", "GEMM ms", "tok/s", "4-tok ms", "tok/s", "GEMM/4");
	const char *one = getenv("PHI3_BENCH_STEP");	/* only this n_tok (for a profile) */

	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++)
	{
		int			nrep = quick ? 1 : 3;

		if (one != NULL && atoi(one) != steps[i])
			continue;
		double		tg = 32.0 * time_matmul(pool, k, P3_ACT_Q8, ls, 0, 4, steps[i], nrep, false,
											x, y, act_buf, scratch, sfloats);
		double		tp = 32.0 * time_matmul(pool, &plain, P3_ACT_Q8, ls, 0, 4, steps[i], nrep, false,
											x, y, act_buf, scratch, sfloats);

		printf("%5d | %9.1f %8.1f | %9.1f %8.1f | %6.2fx\n", steps[i], tg * 1e3, steps[i] / tg,
			   tp * 1e3, steps[i] / tp, tp / tg);
		fflush(stdout);
	}
}

static void
bench_layers(const P3KernelSet **sets, int nsets, double bw1, double bw2)
{
	LayerSet	ls;
	int32_t		max_tok = 128;
	int64_t		max_in = 8192,
				max_out = 32064;
	/* activations offset by 16 bytes from a cache line, as the engine's malloc'ed buffers are */
	float	   *xbuf = xmalloc((size_t) max_tok * max_in * sizeof(float) + 64);
	float	   *x = xbuf + 4;
	float	   *y = xmalloc((size_t) max_tok * max_out * sizeof(float));
	void	   *act_buf;
	size_t		sfloats = p3_matmul_scratch_per_thread(max_in);
	float	   *scratch = xmalloc(2 * sfloats * sizeof(float));
	P3ThreadPool *pools[2] = {NULL, NULL};
	P3Error		err;
	double		token_bytes;
	double		peak[2];

	memset(&ls, 0, sizeof ls);
	ls.w[0] = make_weight(P3_TYPE_Q5_K, 3072, 9216, "attn_qkv");
	ls.w[1] = make_weight(P3_TYPE_Q4_K, 3072, 3072, "attn_output");
	ls.w[2] = make_weight(P3_TYPE_Q4_K, 3072, 16384, "ffn_up");
	ls.w[3] = make_weight(P3_TYPE_Q6_K, 8192, 3072, "ffn_down");
	ls.w[4] = make_weight(P3_TYPE_Q6_K, 3072, 32064, "output");
	{
		size_t		ab = 0;

		for (int i = 0; i < 5; i++)
		{
			size_t		b = p3_matmul_act_bytes(ls.w[i].type, ls.w[i].n_in, max_tok);

			ab = b > ab ? b : ab;
		}
		act_buf = xmalloc(ab);
	}
	for (int i = 0; i < 4; i++)
	{
		ls.layer_bytes += ls.w[i].row_bytes * (size_t) ls.w[i].n_out;
		ls.layer_macs += (double) ls.w[i].n_in * (double) ls.w[i].n_out;
	}
	ls.output_bytes = ls.w[4].row_bytes * (size_t) ls.w[4].n_out;
	token_bytes = 32.0 * (double) ls.layer_bytes + (double) ls.output_bytes;
	for (size_t i = 0; i < (size_t) max_tok * max_in; i++)
		x[i] = randf();
	if (p3_threadpool_new(2, &pools[1], &err) != P3_OK)
	{
		fprintf(stderr, "bench_kernels: %s\n", err.message);
		exit(1);
	}

	if (only != NULL && strcmp(only, "steps") == 0)
		goto steps;
	printf("\ndecode (1 token) through p3_matmul: layer = Q5_K 3072x9216 + Q4_K 3072x3072 + Q4_K 3072x16384 + "
		   "Q6_K 8192x3072 = %.1f MB, output Q6_K 3072x32064 = %.1f MB, token = 32 layers + output = %.2f GB\n",
		   (double) ls.layer_bytes * 1e-6, (double) ls.output_bytes * 1e-6, token_bytes * 1e-9);
	printf("bandwidth-bound limit: %.1f tok/s (1 thread, %.1f GB/s), %.1f tok/s (2 threads, %.1f GB/s)\n",
		   bw1 * 1e9 / token_bytes, bw1, bw2 * 1e9 / token_bytes, bw2);
	printf("%-9s %-3s %3s | %9s %9s %7s %6s %5s\n", "set", "act", "thr", "layer ms", "output ms", "GB/s", "tok/s", "%bw");
	for (int s = 0; s < nsets; s++)
	{
		bool		ref = strcmp(sets[s]->name, "reference") == 0;

		for (int a = 0; a < 2; a++)
			for (int th = 1; th <= 2; th++)
			{
				P3ActPrecision act = a == 0 ? P3_ACT_F32 : P3_ACT_Q8;
				int			nrep = ref ? 1 : reps;
				double		tl = time_matmul(pools[th - 1], sets[s], act, &ls, 0, 4, 1, nrep, false,
											 x, y, act_buf, scratch, sfloats);
				double		to = time_matmul(pools[th - 1], sets[s], act, &ls, 4, 5, 1, nrep, false,
											 x, y, act_buf, scratch, sfloats);
				double		tok = 32.0 * tl + to;
				double		gbs = token_bytes / tok * 1e-9;

				printf("%-9s %-3s %3d | %9.2f %9.2f %7.1f %6.2f %4.0f%%\n", sets[s]->name,
					   a == 0 ? "f32" : "q8", th, tl * 1e3, to * 1e3, gbs, 1.0 / tok,
					   100.0 * gbs / (th == 1 ? bw1 : bw2));
				fflush(stdout);
			}
	}

	peak[0] = vnni_peak(pools[0], 1);
	peak[1] = vnni_peak(pools[1], 2);
	printf("\nint8 multiply-add peak (vpdpbusd, 512 bits, 12 chains): 1 thread %.1f G/s, 2 threads %.1f G/s; "
		   "a token of 32 layers is %.2f G multiply-adds\n", peak[0] * 1e-9, peak[1] * 1e-9, 32.0 * ls.layer_macs * 1e-9);
	printf("\nprefill, n_tok = %d, 32 layers (no attention, no output): ms per token, tokens/s, %% of the int8 peak (q8); "
		   "'row-at-a-time' = the product before the multi-token kernels (every row unpacked per token)\n", max_tok);
	printf("%-9s %-3s %3s | %9s %8s %6s | %13s %8s | %7s\n", "set", "act", "thr", "ms/tok", "tok/s", "%peak",
		   "row-at-a-time", "tok/s", "speedup");
	for (int s = 0; s < nsets; s++)
	{
		if (strcmp(sets[s]->name, "reference") == 0)
			continue;
		for (int a = 0; a < 2; a++)
			for (int th = 1; th <= 2; th++)
			{
				P3ActPrecision act = a == 0 ? P3_ACT_F32 : P3_ACT_Q8;
				int			nrep = quick ? 1 : 3;
				double		tl = time_matmul(pools[th - 1], sets[s], act, &ls, 0, 4, max_tok, nrep, false,
											 x, y, act_buf, scratch, sfloats);
				double		tb = time_matmul(pools[th - 1], sets[s], act, &ls, 0, 4, max_tok, nrep, true,
											 x, y, act_buf, scratch, sfloats);
				double		per = 32.0 * tl / max_tok;
				double		per_b = 32.0 * tb / max_tok;

				double		pct = a == 1 && peak[th - 1] > 0 ? 100.0 * 32.0 * ls.layer_macs / per / peak[th - 1] : 0.0;

				printf("%-9s %-3s %3d | %9.2f %8.1f %5.0f%% | %13.2f %8.1f | %6.2fx\n", sets[s]->name,
					   a == 0 ? "f32" : "q8", th, per * 1e3, 1.0 / per, pct, per_b * 1e3, 1.0 / per_b, per_b / per);
				fflush(stdout);
			}
	}
steps:
	bench_batch_steps(pools[1], sets[nsets - 1], &ls, x, y, act_buf, scratch, sfloats);
	p3_threadpool_free(pools[1]);
	for (int i = 0; i < 5; i++)
		free((void *) ls.w[i].data);
	free(xbuf);
	free(y);
	free(act_buf);
	free(scratch);
}

int
main(int argc, char **argv)
{
	size_t		mem_mib = 1024;
	const P3KernelSet *sets[3];
	int			nsets = 0;
	static const char *names[] = {"reference", "avx2", "avx512"};
	uint64_t   *buf;
	P3ThreadPool *pool2 = NULL;
	P3Error		err;
	double		bw1,
				bw2;

	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--quick") == 0)
			quick = true;
		else if (strcmp(argv[i], "--mem-mib") == 0 && i + 1 < argc)
			mem_mib = (size_t) atol(argv[++i]);
		else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
			reps = atoi(argv[++i]);
		else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
			only = argv[++i];
		else
		{
			fprintf(stderr, "usage: bench_kernels [--quick] [--mem-mib N] [--reps N] [--only rows|layers|steps|peak]\n");
			return 2;
		}
	}
	if (quick && reps > 3)
		reps = 3;
	if (reps < 1)
		reps = 1;
	if (reps > 15)
		reps = 15;
	for (int i = 0; i < 3; i++)
		if (p3_kernels_by_name(names[i]))
			sets[nsets++] = p3_kernels_by_name(names[i]);

	printf("kernel sets on this CPU:");
	for (int s = 0; s < nsets; s++)
		printf(" %s", sets[s]->name);
	printf("; best: %s; %d CPUs; median of %d runs\n", p3_kernels_best()->name, p3_cpu_count(), reps);

	if (only != NULL && strcmp(only, "peak") == 0)
	{
		/* the int8 peak alone, for bench/table.sh */
		P3ThreadPool *pools[2] = {NULL, NULL};

		if (p3_threadpool_new(2, &pools[1], &err) != P3_OK)
		{
			fprintf(stderr, "bench_kernels: %s\n", err.message);
			return 1;
		}
		printf("int8 multiply-add peak (vpdpbusd, 512 bits, 12 chains): 1 thread %.1f G/s, 2 threads %.1f G/s\n",
			   vnni_peak(pools[0], 1) * 1e-9, vnni_peak(pools[1], 2) * 1e-9);
		printf("f32 multiply-add peak (vfmadd, 512 bits, 12 chains): 1 thread %.1f G/s, 2 threads %.1f G/s\n",
			   fma_peak(pools[0], 1) * 1e-9, fma_peak(pools[1], 2) * 1e-9);
		p3_threadpool_free(pools[1]);
		return 0;
	}
	buf = xmalloc(mem_mib << 20);
	memset(buf, 1, mem_mib << 20);
	if (p3_threadpool_new(2, &pool2, &err) != P3_OK)
	{
		fprintf(stderr, "bench_kernels: %s\n", err.message);
		return 1;
	}
	bw1 = read_bandwidth(NULL, buf, mem_mib << 20);
	bw2 = read_bandwidth(pool2, buf, mem_mib << 20);
	p3_threadpool_free(pool2);
	free(buf);
	printf("memory read bandwidth (%zu MiB buffer): 1 thread %.1f GB/s, 2 threads %.1f GB/s\n", mem_mib, bw1, bw2);

	if (only == NULL || strcmp(only, "rows") == 0)
		bench_rows(sets, nsets, bw1);
	if (only == NULL || strcmp(only, "layers") == 0 || strcmp(only, "steps") == 0)
		bench_layers(sets, nsets, bw1, bw2);
	return 0;
}
