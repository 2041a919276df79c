/*
 * bench_f32gemm.c — prefill of F16 weights: the engine's f32 product
 * against OpenBLAS sgemm (make bench, when Debian's libopenblas-serial-dev
 * is installed; built with -DHAVE_OPENBLAS then).
 *
 *   build/bench/bench_f32gemm [N_TOK ...]     (default 128 512)
 *
 * The four matrices of a Phi-3-mini layer in F16 (3072x9216, 3072x3072,
 * 3072x16384, 8192x3072, random), a chunk of N_TOK tokens, 2 threads:
 *   engine    p3_matmul as a prompt chunk runs it (F16 weights decoded to
 *             f32 a few rows at a time, 4-token f32 kernels; the default
 *             activations rounded to f16 first, as llama.cpp does)
 *   openblas  each of the engine's two worker threads decodes blocks of 128
 *             rows to f32 and calls the single-threaded OpenBLAS's
 *             cblas_sgemm on them (so no BLAS thread is ever started)
 * Prints ms per token of 32 layers, tokens/s and % of the f32 multiply-add
 * peak measured in this run, and the largest difference of the outputs.
 * Only timing: sgemm's blocking sums in another order than the engine's
 * single-token kernel, which the engine's exactness rule (a chunk gives
 * each token the bits of decode) does not allow in the engine itself.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phi3/kernels.h"
#include "phi3/kernels_dispatch.h"
#include "phi3/quant.h"
#include "phi3/threadpool.h"

#include "bench_peak.h"

#ifdef HAVE_OPENBLAS
#include <cblas.h>
#endif

#define N_MAT 4
#define BLAS_ROWS 128
#define FMA_ITERS 20000000L

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

static void *
xmalloc(size_t n)
{
	void	   *p = aligned_alloc(64, (n + 63) & ~(size_t) 63);

	if (p == NULL)
	{
		fprintf(stderr, "bench_f32gemm: out of memory\n");
		exit(1);
	}
	return p;
}

static uint64_t rng = 88172645463325252ull;

static float
randf(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float) ((double) (rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static P3Weight
make_f16(int64_t n_in, int64_t n_out, const char *name)
{
	P3Weight	w;
	float	   *row = xmalloc((size_t) n_in * sizeof(float));
	uint8_t    *data = xmalloc((size_t) n_in * 2 * (size_t) n_out);

	for (int64_t r = 0; r < n_out; r++)
	{
		for (int64_t i = 0; i < n_in; i++)
			row[i] = randf() * 0.05f;
		p3_quantize_row_ref(P3_TYPE_F16, row, data + (size_t) r * n_in * 2, n_in);
	}
	free(row);
	memset(&w, 0, sizeof w);
	w.name = name;
	w.type = P3_TYPE_F16;
	w.n_in = n_in;
	w.n_out = n_out;
	w.row_bytes = (size_t) n_in * 2;
	w.data = data;
	return w;
}

typedef struct Job
{
	const P3KernelSet *k;
	const P3Weight *w;
	const float *x;
	int32_t		n_tok;
	float	   *y;
	float	   *wbuf[2];		/* (BLAS_ROWS, n_in) per worker */
} Job;

#ifdef HAVE_OPENBLAS
/* Worker: its half of the rows, BLAS_ROWS at a time: decode to f32, then sgemm. */
static void
blas_task(void *arg, int ith, int nth)
{
	const Job  *j = arg;
	int64_t		r0,
				r1;

	p3_split_range(j->w->n_out, ith, nth, &r0, &r1);
	for (int64_t rb = r0; rb < r1; rb += BLAS_ROWS)
	{
		int64_t		nr = r1 - rb < BLAS_ROWS ? r1 - rb : BLAS_ROWS;

		for (int64_t r = 0; r < nr; r++)
			j->k->dequant[P3_TYPE_F16] (j->w->data + (size_t) (rb + r) * j->w->row_bytes,
										j->wbuf[ith] + (size_t) r * j->w->n_in, j->w->n_in);
		cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->n_tok, (int) nr, (int) j->w->n_in, 1.0f,
					j->x, (int) j->w->n_in, j->wbuf[ith], (int) j->w->n_in, 0.0f, j->y + rb, (int) j->w->n_out);
	}
}
#endif

static void
engine_matmul(P3ThreadPool *pool, const Job *j, void *act, float *scratch, size_t sfloats)
{
	P3MatmulArgs a;

	memset(&a, 0, sizeof a);
	a.kernels = j->k;
	a.act = P3_ACT_Q8;
	a.w = j->w;
	a.row_begin = 0;
	a.row_end = j->w->n_out;
	a.x = j->x;
	a.ldx = j->w->n_in;
	a.n_tok = j->n_tok;
	a.y = j->y;
	a.ldy = j->w->n_out;
	a.act_buf = act;
	a.thread_scratch = scratch;
	a.thread_scratch_floats = sfloats;
	p3_matmul(pool, &a);
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/* Worker: the f32 multiply-add peak loop (bench_peak.h), its sum into out[ith] */
#if defined(__x86_64__)
static void
fma_task(void *arg, int ith, int nth)
{
	float	   *out = arg;

	(void) nth;
	out[ith] = fma_peak_loop(FMA_ITERS);
}
#endif

int
main(int argc, char **argv)
{
	static const int64_t shapes[N_MAT][2] = {{3072, 9216}, {3072, 3072}, {3072, 16384}, {8192, 3072}};
	static const char *names[N_MAT] = {"attn_qkv", "attn_output", "ffn_up", "ffn_down"};
	const P3KernelSet *k = p3_kernels_best();
	P3ThreadPool *pool = NULL;
	P3Error		err;
	P3Weight	w[N_MAT];
	int32_t		toks[8] = {128, 512};
	int			ntoks = 2;
	double		macs = 0.0;
	size_t		sfloats = p3_matmul_scratch_per_thread(8192);
	float	   *scratch = xmalloc(2 * sfloats * sizeof(float));
	float		sink[2];

	if (argc > 1)
	{
		ntoks = 0;
		for (int i = 1; i < argc && ntoks < 8; i++)
			if (atoi(argv[i]) > 0)
				toks[ntoks++] = atoi(argv[i]);
	}
	if (p3_threadpool_new(2, &pool, &err) != P3_OK)
	{
		fprintf(stderr, "bench_f32gemm: %s\n", err.message);
		return 1;
	}
	for (int m = 0; m < N_MAT; m++)
	{
		w[m] = make_f16(shapes[m][0], shapes[m][1], names[m]);
		macs += (double) shapes[m][0] * (double) shapes[m][1];
	}
	{
		double		t0 = now_s();
		double		peak;

		p3_threadpool_run(pool, fma_task, sink);
		peak = 2.0 * (double) FMA_ITERS * 12 * 16 / (now_s() - t0);
		printf("F16 weights, one Phi-3-mini layer x 32, 2 threads, set %s; f32 multiply-add peak (this run) %.1f G/s\n",
			   k->name, peak * 1e-9);
		printf("%6s %-9s | %9s %8s %6s | %s\n", "n_tok", "product", "ms/tok", "tok/s", "%peak", "max |engine - sgemm|");
		for (int ti = 0; ti < ntoks; ti++)
		{
			int32_t		n = toks[ti];
			float	   *x = xmalloc((size_t) n * 8192 * sizeof(float));
			float	   *y1 = xmalloc((size_t) n * 16384 * sizeof(float));
			float	   *y2 = xmalloc((size_t) n * 16384 * sizeof(float));
			void	   *act = xmalloc(p3_matmul_act_bytes(P3_TYPE_F16, 8192, n) + 64);
			double		te[3],
						tb[3];
#ifdef HAVE_OPENBLAS
			float		maxd = 0.0f;
#endif

			float	   *xr = xmalloc((size_t) n * 8192 * sizeof(float));

			/* sgemm gets the activations rounded to f16 as the engine's default takes them */
			for (size_t i = 0; i < (size_t) n * 8192; i++)
			{
				x[i] = randf();
				xr[i] = p3_fp16_to_fp32(p3_fp32_to_fp16(x[i]));
			}
			for (int rep = 0; rep < 3; rep++)
			{
				te[rep] = tb[rep] = 0.0;
				for (int m = 0; m < N_MAT; m++)
				{
					Job			j = {k, &w[m], x, n, y1, {NULL, NULL}};
					double		t;

					t = now_s();
					engine_matmul(pool, &j, act, scratch, sfloats);
					te[rep] += now_s() - t;
#ifdef HAVE_OPENBLAS
					j.y = y2;
					j.x = xr;
					j.wbuf[0] = xmalloc((size_t) BLAS_ROWS * w[m].n_in * sizeof(float));
					j.wbuf[1] = xmalloc((size_t) BLAS_ROWS * w[m].n_in * sizeof(float));
					t = now_s();
					p3_threadpool_run(pool, blas_task, &j);
					tb[rep] += now_s() - t;
					free(j.wbuf[0]);
					free(j.wbuf[1]);
					if (rep == 0)
						for (size_t i = 0; i < (size_t) n * w[m].n_out; i++)
							if (fabsf(y1[i] - y2[i]) > maxd)
								maxd = fabsf(y1[i] - y2[i]);
#endif
				}
			}
			qsort(te, 3, sizeof(double), cmp_double);
			qsort(tb, 3, sizeof(double), cmp_double);
			printf("%6d %-9s | %9.2f %8.2f %5.0f%% |\n", n, "engine", 32e3 * te[1] / n, n / (32 * te[1]),
				   100.0 * n * macs / te[1] / peak);
#ifdef HAVE_OPENBLAS
			printf("%6d %-9s | %9.2f %8.2f %5.0f%% | %.3g (engine / sgemm time %.2f)\n", n, "openblas",
				   32e3 * tb[1] / n, n / (32 * tb[1]), 100.0 * n * macs / tb[1] / peak, maxd, te[1] / tb[1]);
#else
			printf("%6d %-9s | (not built: install libopenblas-serial-dev)\n", n, "openblas");
#endif
			fflush(stdout);
			free(x);
			free(xr);
			free(y1);
			free(y2);
			free(act);
		}
	}
	p3_threadpool_free(pool);
	return 0;
}
