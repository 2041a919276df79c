/*
 * matmul.c — y = x · Wᵀ over a chunk of tokens, split over the thread pool.
 *
 * Two precisions (P3ActPrecision):
 *   P3_ACT_F32  each worker decodes its weight rows to f32 (a block at a
 *               time) and takes the f32 dot products with every token of the
 *               chunk, P3_KERNEL_NTOK tokens per call of dot_f32_f32_ntok,
 *               walking the activations in slices that stay in cache while
 *               the block's rows pass over them.  For a single token it calls
 *               the fused dot_f32 kernel instead, which by contract gives the
 *               same bits as decode-then-dot.
 *   P3_ACT_Q8   the chunk's activations are first quantized (in parallel, one
 *               token per worker at a time) to the weight's vec_dot_type
 *               (Q8_0 / Q8_1 / Q8_K); then each worker takes integer dot
 *               products of its weight rows with every token: P3_KERNEL_NTOK
 *               tokens per call of vec_dot_ntok (each row unpacked once per
 *               group), over blocks of rows small enough to stay in cache.
 *               Float weights (F32 / F16 / BF16) always use the f32 path;
 *               with P3_ACT_Q8, F16 / BF16 weights meet activations rounded
 *               to f16 / bf16 there, as llama.cpp's (act_round_type).
 *   GEMM        Q4_K / Q5_K / Q6_K / Q4_0 / Q8_0 weights in a chunk of at least
 *               GEMM_MIN_TOKENS tokens, where the kernel set has the GEMM
 *               (avx512): the workers quantize whole groups of 16 tokens
 *               and repack them into panels, then each runs the GEMM over
 *               its output rows (gemm_q8k.h, gemm_avx512.c) — 16 tokens
 *               per register, every weight row unpacked once per chunk.
 * The multi-token kernels and the GEMM give each token the bits of the
 * single-token kernel, and work is split by output rows only, so each y element is
 * computed by one worker in a fixed order: the result is independent of the
 * thread count and of how the tokens were grouped into chunks.
 */
#include "phi3/kernels.h"

#include <stdint.h>
#include <string.h>

#include "gemm_q8k.h"

/*
 * Chunks of at least this many tokens take the K-quant GEMM where the
 * kernel set has one (fewer leave most of its 16 lanes empty; measured
 * with bench_kernels' prefill rows).
 */
#define GEMM_MIN_TOKENS 8

/*
 * The f32 path for a chunk of tokens decodes F32_ROWS weight rows at a time
 * and walks the activations in slices of F32_SLICE elements (a multiple of
 * 64, as dot_f32_f32_ntok requires): one slice of P3_KERNEL_NTOK tokens
 * (16 KiB) stays in the L1 cache while all the block's rows pass over it.
 */
#define F32_ROWS 8
#define F32_SLICE 1024

/* floats of one decoded row in the scratch: a multiple of 16, so every row starts 64-byte aligned */
static size_t
row_stride(int64_t n_in)
{
	return ((size_t) n_in + 15) & ~(size_t) 15;
}

/* floats of the aligned copy of the activations: one token, or one slice of a group */
static size_t
xcopy_floats(int64_t n_in)
{
	size_t		slice = (size_t) P3_KERNEL_NTOK * F32_SLICE;

	return (size_t) n_in > slice ? row_stride(n_in) : slice;
}

size_t
p3_matmul_scratch_per_thread(int64_t n_in)
{
	/*
	 * F32_ROWS decoded weight rows, their partial sums, an aligned copy of
	 * the activations, and 16 floats to align the start; or the GEMM's
	 * unpacked rows
	 */
	size_t		f32 = (size_t) F32_ROWS * row_stride(n_in) +
		(size_t) F32_ROWS * P3_KERNEL_NTOK * P3_KERNEL_DOT_STATE +
		xcopy_floats(n_in) + 16;
	size_t		gemm = p3_gemm_rows_bytes(n_in) / sizeof(float) + 16;

	return f32 > gemm ? f32 : gemm;
}

/* p rounded up to a 64-byte boundary */
static float *
align64(float *p)
{
	return (float *) (((uintptr_t) p + 63) & ~(uintptr_t) 63);
}

/*
 * Activations for the f32 kernels: 64-byte aligned, so that no 64-byte
 * load straddles two cache lines (callers' buffers come from malloc).  A
 * copy when src is not aligned already (the values, hence the results,
 * are the same).
 */
static const float *
aligned_rows(const float *src, int64_t ld, int rows, int64_t m, float *copy, int64_t *ld_out)
{
	if (((uintptr_t) src & 63) == 0 && (rows == 1 || (ld & 15) == 0))
	{
		*ld_out = ld;
		return src;
	}
	for (int r = 0; r < rows; r++)
		memcpy(copy + r * m, src + r * ld, (size_t) m * sizeof(float));
	*ld_out = m;
	return copy;
}

/*
 * llama.cpp converts the activations to the weight's vec_dot_type before
 * the product, F16 for F16 weights and BF16 for BF16 ones (spec 2.4): with
 * P3_ACT_Q8 the f32 path does the same, taking the activations rounded to
 * f16 / bf16 (nearest even) and kept as f32, so every product is exact and
 * only the summation order differs from ggml's vec_dot_f16 / _bf16.
 * P3_ACT_F32 keeps them exact.  Returns the type to round to, or F32.
 */
static P3Type
act_round_type(const P3MatmulArgs *a)
{
	if (a->act == P3_ACT_Q8 && (a->w->type == P3_TYPE_F16 || a->w->type == P3_TYPE_BF16))
		return (P3Type) a->w->type;
	return P3_TYPE_F32;
}

/* x rounded to f16 / bf16 (type) and back into y, m values, with the set's converters */
static void
round_act_row(const P3KernelSet *k, P3Type type, const float *x, float *y, int64_t m)
{
	uint16_t	buf[256];

	for (int64_t i = 0; i < m; i += 256)
	{
		int64_t		c = m - i < 256 ? m - i : 256;

		k->quantize[type] (x + i, buf, c);
		k->dequant[type] (buf, y + i, c);
	}
}

/*
 * The activations the f32 kernels see: aligned_rows, or for an F16 / BF16
 * weight with P3_ACT_Q8 the rows rounded to its type, in copy (m apart).
 */
static const float *
act_rows(const P3MatmulArgs *a, const float *src, int64_t ld, int rows, int64_t m, float *copy,
		 int64_t *ld_out)
{
	P3Type		rt = act_round_type(a);

	if (rt == P3_TYPE_F32)
		return aligned_rows(src, ld, rows, m, copy, ld_out);
	for (int r = 0; r < rows; r++)
		round_act_row(a->kernels, rt, src + r * ld, copy + r * m, m);
	*ld_out = m;
	return copy;
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
	/* the quantized rows, then (64-byte aligned) the GEMM's panels */
	if (p3_gemm_type(wtype))
		return row * (size_t) n_tok + 64 + p3_gemm_panel_bytes(wtype, n_in, n_tok);
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

/* Whether the product runs on the set's K-quant GEMM. */
static bool
uses_gemm(const P3MatmulArgs *a)
{
	const P3TypeTraits *t = p3_type_traits(a->w->type);

	return uses_q8(a) && p3_gemm_type(a->w->type) && a->kernels->gemm[a->w->type] != NULL &&
		a->kernels->gemm_pack[t->vec_dot_type] != NULL && a->n_tok >= GEMM_MIN_TOKENS &&
		a->w->n_in % 256 == 0;
}

/* The GEMM's panels: after the quantized rows in act_buf, 64-byte aligned. */
static void *
gemm_panels(const P3MatmulArgs *a)
{
	uintptr_t	p = (uintptr_t) a->act_buf + act_row_bytes(a) * (size_t) a->n_tok;

	return (void *) ((p + 63) & ~(uintptr_t) 63);
}

/* Tokens [t0, t1) of the activations quantized to the weight's vec_dot_type into act_buf. */
static void
quantize_tokens(const P3MatmulArgs *a, int64_t t0, int64_t t1)
{
	P3QuantizeFn quantize = a->kernels->quantize[p3_type_traits(a->w->type)->vec_dot_type];
	size_t		row = act_row_bytes(a);

	for (int64_t t = t0; t < t1; t++)
		quantize(a->x + t * a->ldx, (uint8_t *) a->act_buf + (size_t) t * row, a->w->n_in);
}

/* Worker: quantize and pack this worker's groups of 16 tokens. */
static void
quantize_pack_task(void *arg, int ith, int nth)
{
	const P3MatmulArgs *a = arg;
	P3Type		vdt = p3_type_traits(a->w->type)->vec_dot_type;
	int32_t		groups = (a->n_tok + P3_GEMM_LANES - 1) / P3_GEMM_LANES;
	int64_t		g0,
				g1;

	p3_split_range(groups, ith, nth, &g0, &g1);
	if (g1 <= g0)
		return;
	quantize_tokens(a, g0 * P3_GEMM_LANES, g1 * P3_GEMM_LANES < a->n_tok ? g1 * P3_GEMM_LANES : a->n_tok);
	a->kernels->gemm_pack[vdt](a->act_buf, act_row_bytes(a), a->n_tok, a->w->n_in, (int32_t) g0, (int32_t) g1,
							   gemm_panels(a));
}

/* Worker: this worker's output rows through the GEMM. */
static void
gemm_task(void *arg, int ith, int nth)
{
	const P3MatmulArgs *a = arg;
	const P3Weight *w = a->w;
	float	   *scratch = align64(a->thread_scratch + (size_t) ith * a->thread_scratch_floats);
	int64_t		r0,
				r1;

	p3_split_range(a->row_end - a->row_begin, ith, nth, &r0, &r1);
	if (r1 > r0)
		a->kernels->gemm[w->type](w->type, w->data, w->row_bytes, a->row_begin + r0, a->row_begin + r1,
							 w->n_in, gemm_panels(a), a->n_tok, a->y, a->ldy, r0, scratch);
}

/* Worker: quantize this worker's share of the tokens' activations. */
static void
quantize_task(void *arg, int ith, int nth)
{
	const P3MatmulArgs *a = arg;
	int64_t		t0,
				t1;

	p3_split_range(a->n_tok, ith, nth, &t0, &t1);
	quantize_tokens(a, t0, t1);
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

/*
 * Where the next group of P3_KERNEL_NTOK tokens starts after tokens [0, t)
 * are done, or -1 when the rest is left to the single-token kernels: a
 * last partial group is moved back to overlap the previous one, so it too
 * runs through the multi-token kernel (the overlapped outputs are written
 * again with the same bits).
 */
static int32_t
next_group(int32_t t, int32_t n_tok)
{
	if (t + P3_KERNEL_NTOK <= n_tok)
		return t;
	if (t < n_tok && n_tok >= P3_KERNEL_NTOK)
		return n_tok - P3_KERNEL_NTOK;
	return -1;
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
	/* several tokens (a decode step of a few rows, too): each passes over a cached block */
	int64_t		block = a->n_tok > 1 ? rows_per_block(w->row_bytes) : r1 - r0;

	for (int64_t rb = r0; rb < r1; rb += block)
	{
		int64_t		rb_end = rb + block < r1 ? rb + block : r1;
		int32_t		t = 0;
		int32_t		g;

		for (; (g = next_group(t, a->n_tok)) >= 0; t = g + P3_KERNEL_NTOK)
		{
			t = g;
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
 * Rows [r0, r1) with f32 activations for a chunk of tokens: F32_ROWS rows
 * are decoded at a time (F32 rows are used in place); each group of
 * P3_KERNEL_NTOK tokens meets them slice by slice through the resumable
 * dot_f32_f32_ntok, the remaining tokens through dot_f32_f32.  Either way
 * each output has the bits of dot_f32_f32 on the decoded row.
 */
static void
matmul_rows_f32(const P3MatmulArgs *a, float *scratch, int64_t r0, int64_t r1)
{
	const P3Weight *w = a->w;
	const P3KernelSet *k = a->kernels;
	int64_t		n_in = w->n_in;
	size_t		stride = row_stride(n_in);
	float	   *decoded = align64(scratch);
	float	   *state = decoded + F32_ROWS * stride;
	float	   *xcopy = state + F32_ROWS * P3_KERNEL_NTOK * P3_KERNEL_DOT_STATE;
	const float *rows[F32_ROWS];

	for (int64_t rb = r0; rb < r1; rb += F32_ROWS)
	{
		int			nr = r1 - rb < F32_ROWS ? (int) (r1 - rb) : F32_ROWS;
		int32_t		t = 0;
		int32_t		g;

		for (int j = 0; j < nr; j++)
		{
			const uint8_t *src = w->data + (size_t) (rb + j) * w->row_bytes;

			if (w->type == P3_TYPE_F32)
				rows[j] = (const float *) src;
			else
			{
				k->dequant[w->type](src, decoded + j * stride, n_in);
				rows[j] = decoded + j * stride;
			}
		}
		for (; (g = next_group(t, a->n_tok)) >= 0; t = g + P3_KERNEL_NTOK)
		{
			int64_t		i0 = 0;

			t = g;
			do
			{
				int64_t		m = n_in - i0 < F32_SLICE ? n_in - i0 : F32_SLICE;
				int64_t		ldx;
				const float *xs = act_rows(a, a->x + t * a->ldx + i0, a->ldx, P3_KERNEL_NTOK, m, xcopy, &ldx);

				for (int j = 0; j < nr; j++)
				{
					float		out[P3_KERNEL_NTOK];

					k->dot_f32_f32_ntok(rows[j] + i0, xs, ldx, n_in, i0, m,
										state + (size_t) j * P3_KERNEL_NTOK * P3_KERNEL_DOT_STATE, out);
					if (i0 + m >= n_in)
						for (int q = 0; q < P3_KERNEL_NTOK; q++)
							a->y[(t + q) * a->ldy + (rb + j - a->row_begin)] = out[q];
				}
				i0 += m;
			} while (i0 < n_in);
		}
		for (; t < a->n_tok; t++)
		{
			int64_t		ldx;
			const float *xt = act_rows(a, a->x + t * a->ldx, a->ldx, 1, n_in, xcopy, &ldx);

			for (int j = 0; j < nr; j++)
				a->y[t * a->ldy + (rb + j - a->row_begin)] = k->dot_f32_f32(rows[j], xt, n_in);
		}
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
		float	   *scratch = a->thread_scratch + (size_t) ith * a->thread_scratch_floats;
		int64_t		ldx;
		const float *x = act_rows(a, a->x, a->ldx, 1, w->n_in,
									  align64(scratch) + F32_ROWS * row_stride(w->n_in) +
									  F32_ROWS * P3_KERNEL_NTOK * P3_KERNEL_DOT_STATE, &ldx);

		for (int64_t r = r0; r < r1; r++)
			a->y[r - a->row_begin] = dot(w->data + (size_t) r * w->row_bytes, x, w->n_in);
	}
	else
		matmul_rows_f32(a, a->thread_scratch + (size_t) ith * a->thread_scratch_floats, r0, r1);
}

void
p3_matmul(P3ThreadPool *pool, const P3MatmulArgs *args)
{
	if (uses_gemm(args))
	{
		p3_threadpool_run(pool, quantize_pack_task, (void *) args);
		p3_threadpool_run(pool, gemm_task, (void *) args);
		return;
	}
	if (uses_q8(args))
		p3_threadpool_run(pool, quantize_task, (void *) args);
	p3_threadpool_run(pool, matmul_task, (void *) args);
}
