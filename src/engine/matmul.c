/*
 * matmul.c — y = x · Wᵀ over a chunk of tokens, split over the thread pool.
 *
 * Two precisions (P3ActPrecision):
 *   P3_ACT_F32  each worker decodes a weight row to f32 once and takes the
 *               f32 dot product with every token of the chunk, P3_KERNEL_NTOK
 *               tokens per call of dot_f32_f32_ntok (the decoded row is read
 *               once per group).  For a single token it calls the fused
 *               dot_f32 kernel instead, which by contract gives the same bits
 *               as decode-then-dot.
 *   P3_ACT_Q8   the chunk's activations are first quantized (in parallel, one
 *               token per worker at a time) to the weight's vec_dot_type
 *               (Q8_0 / Q8_1 / Q8_K); then each worker takes integer dot
 *               products of its weight rows with every token: P3_KERNEL_NTOK
 *               tokens per call of vec_dot_ntok (each row unpacked once per
 *               group), over blocks of rows small enough to stay in cache.
 *               Float weights (F32 / F16 / BF16) always use the f32 path.
 * The multi-token kernels give each token the bits of the single-token
 * kernel, and work is split by output rows only, so each y element is
 * computed by one worker in a fixed order: the result is independent of the
 * thread count and of how the tokens were grouped into chunks.
 */
#include "phi3/kernels.h"

#include <string.h>

size_t
p3_matmul_scratch_per_thread(int64_t n_in)
{
	/* one decoded weight row, plus room to keep the next one aligned */
	return (size_t) n_in + 16;
}

size_t
p3_matmul_act_bytes(uint32_t wtype, int64_t n_in, int32_t n_tok)
{
	const P3TypeTraits *t = p3_type_traits(wtype);
	size_t		row = 0;

	if (t == NULL || t->vec_dot_type == P3_TYPE_F32)
		return 0;
	if (!p3_row_bytes(t->vec_dot_type, n_in, &row))
		return 0;
	return row * (size_t) n_tok;
}

/* Whether the product runs on quantized activations. */
static bool
uses_q8(const P3MatmulArgs *a)
{
	const P3TypeTraits *t = p3_type_traits(a->w->type);

	return a->act == P3_ACT_Q8 && t != NULL && t->vec_dot_type != P3_TYPE_F32;
}

static size_t
act_row_bytes(const P3MatmulArgs *a)
{
	size_t		row = 0;

	(void) p3_row_bytes(p3_type_traits(a->w->type)->vec_dot_type, a->w->n_in, &row);
	return row;
}

/* Worker: quantize this worker's share of the tokens' activations. */
static void
quantize_task(void *arg, int ith, int nth)
{
	const P3MatmulArgs *a = arg;
	P3Type		vdt = p3_type_traits(a->w->type)->vec_dot_type;
	P3QuantizeFn quantize = a->kernels->quantize[vdt];
	size_t		row = act_row_bytes(a);
	int64_t		t0,
				t1;

	p3_split_range(a->n_tok, ith, nth, &t0, &t1);
	for (int64_t t = t0; t < t1; t++)
		quantize(a->x + t * a->ldx, (uint8_t *) a->act_buf + (size_t) t * row, a->w->n_in);
}

/*
 * Rows per block of the multi-token loops: a block of weight rows (about
 * 32 KiB) stays in the core's cache while every group of tokens passes
 * over it, so the weights are read from memory once per chunk.
 */
static int64_t
rows_per_block(size_t row_bytes)
{
	int64_t		rows = (int64_t) ((32 * 1024) / (row_bytes ? row_bytes : 1));

	return rows < 1 ? 1 : rows;
}

/* Rows [r0, r1) of the quantized-activation product, for every token. */
static void
matmul_rows_q8(const P3MatmulArgs *a, int64_t r0, int64_t r1)
{
	const P3Weight *w = a->w;
	P3VecDotFn	vec_dot = a->kernels->vec_dot[w->type];
	P3VecDotNtokFn vec_dot_ntok = a->kernels->vec_dot_ntok[w->type];
	size_t		arow = act_row_bytes(a);
	const uint8_t *act = a->act_buf;
	int64_t		n_in = w->n_in;
	int64_t		block = a->n_tok >= P3_KERNEL_NTOK ? rows_per_block(w->row_bytes) : r1 - r0;

	for (int64_t rb = r0; rb < r1; rb += block)
	{
		int64_t		rb_end = rb + block < r1 ? rb + block : r1;
		int32_t		t = 0;

		for (; t + P3_KERNEL_NTOK <= a->n_tok; t += P3_KERNEL_NTOK)
		{
			for (int64_t r = rb; r < rb_end; r++)
			{
				float		out[P3_KERNEL_NTOK];

				vec_dot_ntok(w->data + (size_t) r * w->row_bytes, act + (size_t) t * arow, arow, n_in, out);
				for (int j = 0; j < P3_KERNEL_NTOK; j++)
					a->y[(t + j) * a->ldy + (r - a->row_begin)] = out[j];
			}
		}
		for (; t < a->n_tok; t++)
			for (int64_t r = rb; r < rb_end; r++)
				a->y[t * a->ldy + (r - a->row_begin)] =
					vec_dot(w->data + (size_t) r * w->row_bytes, act + (size_t) t * arow, n_in);
	}
}

/*
 * Rows [r0, r1) with f32 activations for a chunk of tokens: each row is
 * decoded once (F32 rows are used in place) and applied to the tokens in
 * groups of P3_KERNEL_NTOK.
 */
static void
matmul_rows_f32(const P3MatmulArgs *a, float *decoded, int64_t r0, int64_t r1)
{
	const P3Weight *w = a->w;
	const P3KernelSet *k = a->kernels;
	int64_t		n_in = w->n_in;

	for (int64_t r = r0; r < r1; r++)
	{
		const float *row;
		int32_t		t = 0;

		if (w->type == P3_TYPE_F32)
			row = (const float *) (w->data + (size_t) r * w->row_bytes);
		else
		{
			k->dequant[w->type](w->data + (size_t) r * w->row_bytes, decoded, n_in);
			row = decoded;
		}
		for (; t + P3_KERNEL_NTOK <= a->n_tok; t += P3_KERNEL_NTOK)
		{
			float		out[P3_KERNEL_NTOK];

			k->dot_f32_f32_ntok(row, a->x + t * a->ldx, a->ldx, n_in, out);
			for (int j = 0; j < P3_KERNEL_NTOK; j++)
				a->y[(t + j) * a->ldy + (r - a->row_begin)] = out[j];
		}
		for (; t < a->n_tok; t++)
			a->y[t * a->ldy + (r - a->row_begin)] = k->dot_f32_f32(row, a->x + t * a->ldx, n_in);
	}
}

/* Worker: this worker's output rows, for every token. */
static void
matmul_task(void *arg, int ith, int nth)
{
	const P3MatmulArgs *a = arg;
	const P3Weight *w = a->w;
	int64_t		r0,
				r1;

	p3_split_range(a->row_end - a->row_begin, ith, nth, &r0, &r1);
	r0 += a->row_begin;
	r1 += a->row_begin;

	if (uses_q8(a))
		matmul_rows_q8(a, r0, r1);
	else if (a->n_tok == 1)
	{
		P3DotF32Fn	dot = a->kernels->dot_f32[w->type];

		for (int64_t r = r0; r < r1; r++)
			a->y[r - a->row_begin] = dot(w->data + (size_t) r * w->row_bytes, a->x, w->n_in);
	}
	else
		matmul_rows_f32(a, a->thread_scratch + (size_t) ith * a->thread_scratch_floats, r0, r1);
}

void
p3_matmul(P3ThreadPool *pool, const P3MatmulArgs *args)
{
	if (uses_q8(args))
		p3_threadpool_run(pool, quantize_task, (void *) args);
	p3_threadpool_run(pool, matmul_task, (void *) args);
}
