/*
 * bench_stream — read bandwidth over a model file's mapping, the way decode
 * reads the weights: the engine's own mapping of the model (p3_model_open:
 * PROT_READ / MAP_SHARED at a 2 MiB boundary with MADV_HUGEPAGE), summed
 * front to back by 1 and by 2 threads, each thread taking one contiguous
 * half.  The first pass (page-table
 * population, page cache) is reported separately; the figure used as the
 * decode limit is the median of the following passes.
 *
 *     bench_stream MODEL [passes]
 *
 * Prints four lines:
 *     first pass: X s (page tables and page cache)
 *     file read bandwidth: 1 thread A GB/s, 2 threads B GB/s
 *     weights read per token: N bytes (...)
 *     multiply-adds per prompt token: M (...)
 * the last two from the model the engine opens: every matrix of every layer and
 * the output matrix once, one row of token_embd (the decode limit is N
 * bytes over the bandwidth).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "phi3/gguf.h"
#include "phi3/model.h"

typedef struct Slice
{
	const uint8_t *p;
	size_t		n;
	uint64_t	sum;
} Slice;

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* Sum 64-bit words with four independent accumulators (the loads dominate). */
static void *
sum_slice(void *arg)
{
	Slice	   *s = arg;
	const uint64_t *w = (const uint64_t *) s->p;
	size_t		n = s->n / 8;
	uint64_t	a0 = 0,
				a1 = 0,
				a2 = 0,
				a3 = 0;
	size_t		i;

	for (i = 0; i + 4 <= n; i += 4)
	{
		a0 += w[i];
		a1 += w[i + 1];
		a2 += w[i + 2];
		a3 += w[i + 3];
	}
	for (; i < n; i++)
		a0 += w[i];
	s->sum = a0 + a1 + a2 + a3;
	return NULL;
}

/* One pass over base[0..size) with nth threads; seconds. */
static double
pass(const uint8_t *base, size_t size, int nth)
{
	pthread_t	t[2];
	Slice		s[2];
	size_t		half = (size / 2) & ~(size_t) 4095;
	double		t0 = now_s();

	if (nth == 1)
	{
		s[0].p = base;
		s[0].n = size;
		sum_slice(&s[0]);
	}
	else
	{
		s[0].p = base;
		s[0].n = half;
		s[1].p = base + half;
		s[1].n = size - half;
		pthread_create(&t[0], NULL, sum_slice, &s[0]);
		pthread_create(&t[1], NULL, sum_slice, &s[1]);
		pthread_join(t[0], NULL);
		pthread_join(t[1], NULL);
		s[0].sum += s[1].sum;
	}
	if (s[0].sum == 42)			/* keep the sum alive */
		putchar(' ');
	return now_s() - t0;
}

/* bytes of w, 0 when absent */
static double
weight_bytes(const P3Weight *w)
{
	return w->data != NULL ? (double) w->row_bytes * (double) w->n_out : 0.0;
}

/* multiply-adds of a product by w, 0 when absent */
static double
weight_macs(const P3Weight *w)
{
	return w->data != NULL ? (double) w->n_in * (double) w->n_out : 0.0;
}

/*
 * Bytes of weights a decode step reads from m (the matrices once, one
 * embedding row) and multiply-adds of a prompt token (the layers'
 * products; the output layer only runs for the last).
 */
static double
token_weight_bytes(const P3Model *m, double *macs)
{
	double		sum = 0.0;

	*macs = 0.0;
	for (int32_t l = 0; l < m->hp.n_layer; l++)
	{
		const P3Layer *L = &m->layers[l];

		sum += weight_bytes(&L->attn_qkv) + weight_bytes(&L->attn_q) + weight_bytes(&L->attn_k) +
			weight_bytes(&L->attn_v) + weight_bytes(&L->attn_output) + weight_bytes(&L->ffn_up) +
			weight_bytes(&L->ffn_down);
		*macs += weight_macs(&L->attn_qkv) + weight_macs(&L->attn_q) + weight_macs(&L->attn_k) +
			weight_macs(&L->attn_v) + weight_macs(&L->attn_output) + weight_macs(&L->ffn_up) +
			weight_macs(&L->ffn_down);
	}
	return sum + weight_bytes(&m->output) + (double) m->token_embd.row_bytes;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

int
main(int argc, char **argv)
{
	P3Model    *m = NULL;
	P3Error		err = {0};
	const uint8_t *base;
	size_t		size;
	int			passes = argc > 2 ? atoi(argv[2]) : 5;
	double		first;
	double		gbs[2];
	double		macs;
	double		bytes;

	if (argc < 2 || passes < 1 || passes > 100)
	{
		fprintf(stderr, "usage: bench_stream MODEL [passes]\n");
		return 1;
	}
	/* the engine's own mapping of the file (2 MiB-aligned, MADV_HUGEPAGE: gguf.c) */
	if (p3_model_open(argv[1], &m, &err) != P3_OK)
	{
		fprintf(stderr, "bench_stream: %s: %s\n", argv[1], err.message);
		return 1;
	}
	base = m->gguf->base;
	size = m->gguf->size;
	bytes = token_weight_bytes(m, &macs);
	first = pass(base, size, 2);
	for (int nth = 1; nth <= 2; nth++)
	{
		double		t[100];

		for (int i = 0; i < passes; i++)
			t[i] = pass(base, size, nth);
		qsort(t, passes, sizeof(double), cmp_double);
		gbs[nth - 1] = (double) size / t[passes / 2] / 1e9;
	}
	printf("first pass: %.3f s (page tables and page cache)\n", first);
	printf("file read bandwidth: 1 thread %.1f GB/s, 2 threads %.1f GB/s\n", gbs[0], gbs[1]);
	printf("weights read per token: %.0f bytes (each matrix once, one token_embd row)\n", bytes);
	printf("multiply-adds per prompt token: %.0f (the layers' products)\n", macs);
	p3_model_free(m);
	return 0;
}
