/*
 * bench_stream — read bandwidth over a model file's mapping, the way decode
 * reads the weights: the file is mapped PROT_READ / MAP_SHARED at a 2 MiB
 * boundary with MADV_HUGEPAGE (as p3_gguf_open maps it) and summed front to back by 1 and by 2 threads,
 * each thread taking one contiguous half.  The first pass (page-table
 * population, page cache) is reported separately; the figure used as the
 * decode limit is the median of the following passes.
 *
 *     bench_stream FILE [passes]
 *
 * Prints four lines:
 *     first pass: X s (page tables and page cache)
 *     file read bandwidth: 1 thread A GB/s, 2 threads B GB/s
 *     weights read per token: N bytes (...)
 *     multiply-adds per prompt token: M (...)
 * the last from the model the engine opens: every matrix of every layer and
 * the output matrix once, one row of token_embd (the decode limit is N
 * bytes over the bandwidth).
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
 * Bytes of weights a decode step reads (the matrices once, one embedding
 * row) and multiply-adds of a prompt token (the layers' products; the
 * output layer only runs for the last); -1 if the model does not open.
 */
static double
token_weight_bytes(const char *path, double *macs)
{
	P3Model    *m = NULL;
	P3Error		err = {0};
	double		sum = 0.0;

	*macs = 0.0;

	if (p3_model_open(path, &m, &err) != P3_OK)
	{
		fprintf(stderr, "bench_stream: %s: %s\n", path, err.message);
		return -1.0;
	}
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
	sum += weight_bytes(&m->output) + (double) m->token_embd.row_bytes;
	p3_model_free(m);
	return sum;
}

/*
 * The file mapped as the engine maps a model (gguf.c's map_file): at a
 * 2 MiB-aligned address with MADV_HUGEPAGE, so where the page cache holds
 * huge folios the passes read through the same PMD mappings decode does.
 */
static const uint8_t *
map_like_engine(int fd, size_t size)
{
	const size_t align = (size_t) 2 << 20;
	uint8_t    *reserve = mmap(NULL, size + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t    *at;
	void	   *map;

	if (reserve == MAP_FAILED)
		return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	at = (uint8_t *) (((uintptr_t) reserve + align - 1) & ~(uintptr_t) (align - 1));
	map = mmap(at, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
	if (map == MAP_FAILED)
		return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
#ifdef MADV_HUGEPAGE
	(void) madvise(map, size, MADV_HUGEPAGE);
#endif
	return map;
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
	int			fd;
	struct stat st;
	const uint8_t *base;
	int			passes = argc > 2 ? atoi(argv[2]) : 5;
	double		first;
	double		gbs[2];

	if (argc < 2 || passes < 1 || passes > 100)
	{
		fprintf(stderr, "usage: bench_stream FILE [passes]\n");
		return 1;
	}
	fd = open(argv[1], O_RDONLY);
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 8192)
	{
		fprintf(stderr, "bench_stream: cannot open %s\n", argv[1]);
		return 1;
	}
	base = map_like_engine(fd, (size_t) st.st_size);
	if (base == MAP_FAILED)
	{
		perror("bench_stream: mmap");
		return 1;
	}
	first = pass(base, (size_t) st.st_size, 2);
	for (int nth = 1; nth <= 2; nth++)
	{
		double		t[100];

		for (int i = 0; i < passes; i++)
			t[i] = pass(base, (size_t) st.st_size, nth);
		qsort(t, passes, sizeof(double), cmp_double);
		gbs[nth - 1] = (double) st.st_size / t[passes / 2] / 1e9;
	}
	printf("first pass: %.3f s (page tables and page cache)\n", first);
	printf("file read bandwidth: 1 thread %.1f GB/s, 2 threads %.1f GB/s\n", gbs[0], gbs[1]);
	{
		double		macs;
		double		bytes = token_weight_bytes(argv[1], &macs);

		printf("weights read per token: %.0f bytes (each matrix once, one token_embd row)\n", bytes);
		printf("multiply-adds per prompt token: %.0f (the layers' products)\n", macs);
	}
	munmap((void *) base, (size_t) st.st_size);
	close(fd);
	return 0;
}
