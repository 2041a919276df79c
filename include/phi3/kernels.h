/*
 * phi3/kernels.h — the compute kernels of the forward pass: kernel sets,
 * element-wise operations and the matrix product.
 *
 * The kernel layer depends only on the tensor formats (phi3/quant.h) and
 * the thread pool (phi3/threadpool.h); the model and the context are built
 * on it, never the other way round.
 *
 * A P3KernelSet is a table of function pointers per weight type.  The
 * reference set wraps the scalar code of phi3/quant.h and is always
 * available; faster sets (AVX2, AVX-512 / VNNI) are chosen once from the
 * CPU's features (phi3/kernels_dispatch.h).  Every entry of a fast set has the
 * exact contract of its reference counterpart and is tested against it
 * (test/engine/test_kernels.c); an entry a fast set does not provide is
 * the reference one, so every set is complete.
 *
 * Exactness rules every set keeps (the tests enforce them):
 *   - dequant and the f32 -> Q8_0/Q8_1/Q8_K/F16 quantizers give the same
 *     bits as the reference (they are exact arithmetic and fixed rounding;
 *     the Q8 activation rule is below);
 *   - within one set, dot_f32[T](w, x) gives the same bits as
 *     dot_f32_f32(dequant[T](w), x), so a token's result does not depend on
 *     whether it was computed alone or in a chunk (when several NaNs meet,
 *     which NaN payload comes out may differ);
 *   - axpy_f16 / axpy_f32 round as the reference (multiply, then add);
 *   - vec_dot and the float dots may sum in another order than the
 *     reference (SIMD lanes); they agree with it within a relative
 *     tolerance: |result - exact| <= (k + 40) * 2^-23 * M, M the sum of the
 *     magnitudes of the terms, k the longest chain of additions (blocks for
 *     vec_dot, n / 32 for SIMD float dots) — see test/engine/test_kernels.c.
 *
 * Activation rounding (llama.cpp's x86 CPU numerics, spec 2.4): the
 * quantize entries for Q8_0 / Q8_1 follow ggml's x86 quantize_row_q8_0 /
 * _q8_1 (multiplier 127 / amax, round to nearest even), Q8_K follows
 * quantize_row_q8_K_ref (signed max, iscale = -127 / max, nearest even,
 * d = 1 / iscale), all sets bit for bit (p3_quantize_act_row_ref); with
 * P3_ACT_Q8, p3_matmul rounds the activations of F16 / BF16 weights to
 * f16 / bf16 first, as ggml converts them to the weight's vec_dot_type.
 *
 * Summation order against llama.cpp (its AVX2 and AVX-512 builds; checked
 * against their libggml-cpu libraries, test/engine/test_ggml_numerics.c; a
 * 1e-7 difference of a sum can flip a later activation rounding, so the
 * order matters for matching llama.cpp's greedy text, not for accuracy):
 *   - ggml's x86 quants.c has only AVX2 code for the vec_dot of Q4_0 / Q4_1
 *     / Q5_0 / Q5_1 / Q8_0 / Q2_K / Q3_K / Q5_K / Q6_K / IQ4_XS, which its
 *     AVX-512 builds run too (per block int32 lanes of exact sums of 4
 *     consecutive products, FMA'd by the block scale into one 8-lane
 *     accumulator, hsum_float_8; Q5_K's mins in a scalar chain added last);
 *     for weights of 8k rows llama.cpp takes its repack routines instead for
 *     Q4_0, Q4_K, IQ4_NL (AVX2 and AVX-512) and Q2_K (AVX-512): exact integer
 *     block sums, for Q4_K / Q2_K a scale chain and a min chain subtracted at
 *     the end.
 *   - the avx2 set gives those bits (checked against llama.cpp's libraries):
 *     ggml's vec_dot for Q4_0 / Q4_1 / Q5_0 / Q5_1 / Q8_0 / Q2_K / Q3_K / Q5_K
 *     / Q6_K / IQ4_XS, the repack rule for Q4_K; its IQ4_NL (one accumulator)
 *     differs.
 *   - the avx512 set takes the avx2 set's Q4_1 / Q5_0 / Q5_1 / IQ4_XS
 *     products (kernels_x86.c), its own Q3_K has ggml's lanes, its Q2_K is
 *     the repack rule.
 *   - Q4_K / Q5_K / Q6_K / Q8_0 / Q4_0 / IQ4_NL (avx512 set) combine blocks
 *     by the exact-block rule of src/engine/gemm_q8k.h (exact integer sums
 *     per block, then one fixed fmaf chain) so that the prefill GEMM and
 *     vec_dot agree: not llama.cpp's order for Q8_0 / Q6_K / Q5_K (its AVX2
 *     vec_dot) nor Q4_K (two chains); Q4_0 and IQ4_NL agree with its repack
 *     routines on the generated files.
 *   - the reference set follows ggml's generic (scalar) kernels.
 *   - attention, softmax, SwiGLU with P3_ACT_Q8: the ggml_* entries below.
 *
 * Prefill: vec_dot_ntok and dot_f32_f32_ntok apply one weight row to
 * P3_KERNEL_NTOK activation rows at once, so the row is unpacked once for
 * several tokens; each output has the same bits as the single-token kernel
 * of the same set (p3_matmul uses them for chunks of tokens, so chunked and
 * unchunked evaluation agree exactly).  The avx512 set also has a GEMM for
 * K-quant, Q4_0 and Q8_0 weights (gemm_pack / gemm below: 16 tokens per register,
 * each row unpacked once per chunk), bit-identical to its vec_dot because
 * both combine a row's blocks by one rule (src/engine/gemm_q8k.h).
 *
 * The matrix product p3_matmul computes y = x · Wᵀ for a chunk of tokens:
 *     W: n_out rows of n_in elements of its stored type (a view into the mapping)
 *     x: (n_tok, n_in) f32, row stride ldx
 *     y: (n_tok, n_out) f32, row stride ldy
 * Output rows are split among the pool's workers; each output element is
 * computed by exactly one worker in a fixed order, so results do not
 * depend on the thread count.  Each worker walks its weight rows once per
 * chunk and applies each row to all n_tok tokens, so a prompt chunk costs
 * one pass over the weights (prefill as matrix-matrix product).
 */
#ifndef PHI3_KERNELS_H
#define PHI3_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/quant.h"
#include "phi3/threadpool.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Activation precision in products with quantized weights.  The default is
 * P3_ACT_Q8, as llama.cpp computes on CPU: about twice as fast on AVX-512
 * VNNI; logits differ from exact f32 activations by ~1e-2 on quantized
 * weights.  With it, F16 / BF16 weights take activations rounded to f16 /
 * bf16 (llama.cpp's); F32 weights always use f32 activations.  P3_ACT_F32
 * gives the dequantized model's exact semantics (phi3-run --act f32; the
 * numpy reference checks both).
 */
typedef enum P3ActPrecision
{
	P3_ACT_F32 = 0,				/* dequantize weights, multiply by f32 activations */
	P3_ACT_Q8 = 1,				/* quantize activations to Q8_0/Q8_1/Q8_K, integer dots (llama.cpp) */
} P3ActPrecision;

/* A weight matrix inside the mapping: n_out rows of n_in elements of `type`. */
typedef struct P3Weight
{
	const char *name;			/* tensor name (points into the P3GGUF) */
	uint32_t	type;			/* P3Type code */
	int64_t		n_in;			/* ne[0]: row length, contiguous */
	int64_t		n_out;			/* ne[1]: number of rows */
	size_t		row_bytes;		/* bytes per row */
	const uint8_t *data;		/* n_out * row_bytes bytes */
} P3Weight;

/* Same contracts as the *_ref functions of phi3/quant.h, for one type. */
typedef void (*P3DequantFn) (const void *src, float *dst, int64_t n);
typedef void (*P3QuantizeFn) (const float *src, void *dst, int64_t n);
typedef float (*P3DotF32Fn) (const void *w, const float *x, int64_t n);
typedef float (*P3VecDotFn) (const void *w, const void *a, int64_t n);

/* Activation rows per call of the multi-token kernels. */
#define P3_KERNEL_NTOK 4
/* Floats of partial sums dot_f32_f32_ntok keeps per activation row between calls. */
#define P3_KERNEL_DOT_STATE 64

/* out[t] = vec_dot(w, a + t * a_stride bytes, n) for t < P3_KERNEL_NTOK, the same bits. */
typedef void (*P3VecDotNtokFn) (const void *w, const void *a, size_t a_stride, int64_t n,
								float *out);

/*
 * Prefill GEMM of K-quant weights (Q4_K / Q5_K / Q6_K) with Q8_K
 * activations and of Q4_0 / Q8_0 weights with Q8_0 activations, in sets
 * that have one (NULL otherwise; the layouts are private to the engine,
 * src/engine/gemm_q8k.h):
 *   pack  repacks the token groups [g0, g1) (16 tokens each) of n_tok
 *         quantized rows (arow bytes apart) into panels
 *   gemm  rows [r0, r1) of the weight w (of type; row_bytes apart) against
 *         the panels: y[t * ldy + ycol + (r - r0)] for t < n_tok; rows is the
 *         worker's scratch for unpacked rows
 * Each output has the bits of vec_dot of the same set.
 */
typedef void (*P3GemmPackFn) (const void *act, size_t arow, int32_t n_tok, int64_t n_in,
							  int32_t g0, int32_t g1, void *panels);
typedef void (*P3GemmFn) (uint32_t type, const uint8_t *w, size_t row_bytes, int64_t r0, int64_t r1,
						  int64_t n_in, const void *panels, int32_t n_tok, float *y, int64_t ldy,
						  int64_t ycol, void *rows);

typedef struct P3KernelSet
{
	const char *name;			/* "reference", "avx2", "avx512" */
	P3DequantFn dequant[P3_TYPE_COUNT];		/* weight row -> f32 */
	P3DotF32Fn	dot_f32[P3_TYPE_COUNT];		/* weight row · f32 activations */
	P3VecDotFn	vec_dot[P3_TYPE_COUNT];		/* weight row · activations in vec_dot_type */
	P3QuantizeFn quantize[P3_TYPE_COUNT];	/* f32 -> Q8_0 / Q8_1 / Q8_K activations (x86 rule), F16 */
	float		(*dot_f32_f32) (const float *a, const float *b, int64_t n);
	/* attention over the KV cache: q · k for an f16 k row; y += a * v for f16 / f32 v rows */
	float		(*dot_f32_f16) (const float *a, const uint16_t *b, int64_t n);
	void		(*axpy_f16) (float *y, float a, const uint16_t *x, int64_t n);
	void		(*axpy_f32) (float *y, float a, const float *x, int64_t n);
	/* prefill: one weight row against P3_KERNEL_NTOK activation rows (see above) */
	P3VecDotNtokFn vec_dot_ntok[P3_TYPE_COUNT];
	/*
	 * out[t] = dot_f32_f32(w, x + t * ldx, n) for t < P3_KERNEL_NTOK, the same
	 * bits, computable in pieces: a call adds elements [i0, i0 + m) of the
	 * rows (w and x point at element i0, the m elements follow) to the
	 * partial sums in state (P3_KERNEL_NTOK * P3_KERNEL_DOT_STATE floats; a
	 * call with i0 = 0 starts them) and the call that reaches n writes out.
	 * i0 must be a multiple of 64.
	 */
	void		(*dot_f32_f32_ntok) (const float *w, const float *x, int64_t ldx, int64_t n,
									 int64_t i0, int64_t m, float *state, float *out);
	/* prefill GEMM (see above): pack by activation type (Q8_K, Q8_0), gemm by weight type */
	P3GemmPackFn gemm_pack[P3_TYPE_COUNT];
	P3GemmFn	gemm[P3_TYPE_COUNT];

	/*
	 * llama.cpp's arithmetic (P3_ACT_Q8, "ggml" below): ggml's CPU code of
	 * the build this set stands for — the reference set its generic C, the
	 * avx2 set its AVX2 build, the avx512 set its AVX-512 build — bit for
	 * bit (test/engine/test_kernels.c pins each against a scalar copy of
	 * ggml's code):
	 *   ggml_dot_f16(q, k, n)  ggml_vec_dot_f16 of the f16 row k and q (f32
	 *       values that are f16 numbers): 4 accumulators of VL lanes over
	 *       chunks of 4 VL elements by FMA, summed acc0 + acc2, acc1 + acc3,
	 *       then together, the lanes by ggml's tree, the leftover elements
	 *       added in double (generic C: all of it in double);
	 *   ggml_vp_f16(out, p, v, stride, npos, hd, slots)  out[d] = sum over
	 *       positions j < npos of p[j] * v_j[d] (v_j the f16 row at
	 *       v + j * stride) in the order of ggml_vec_dot_f16 over ggml's
	 *       transposed V of n_kv >= npos positions (n_kv a multiple of 256,
	 *       the rest zeros): position j in lane j % VL of accumulator
	 *       (j / VL) % 4; slots holds P3_GGML_VP_SLOTS * hd floats;
	 *   ggml_vp_f16_acc(slots, p, v, stride, j0, n, hd), ggml_vp_finish(out,
	 *       slots, hd)  the same in pieces: _acc adds positions j0 .. j0 + n - 1
	 *       (rows v + (j - j0) * stride, probabilities p[j - j0]) to slots,
	 *       which the caller zeroed (P3_GGML_VP_SLOTS * hd floats), pieces in
	 *       increasing j; _finish writes out.  Zeroing, pieces that cover
	 *       0 .. npos - 1, then _finish give ggml_vp_f16's bits (a KV cache
	 *       stored in blocks is summed block by block);
	 *   ggml_vp_f16_blocks(out, ostride, p, pstride, npos, nq, v, blk, bstride,
	 *       rstride, hd, slots)  ggml_vp_f16 for each of nq queries of one head
	 *       over a cache stored in blocks: query i's output at out + i *
	 *       ostride, its probabilities at p + i * pstride for positions j <
	 *       npos[i], position j's row at v + (j / blk) * bstride + (j % blk) *
	 *       rstride; slots holds P3_GGML_VP_QUERIES * P3_GGML_VP_SLOTS * hd
	 *       floats (the avx512 set sums four queries at once in registers);
	 *   ggml_dot_f16_keys(q, qstride, nq, k, stride, nkeys, n, out, ostride)
	 *       out[i * ostride + j] = ggml_dot_f16(q + i * qstride, k + j * stride,
	 *       n) for i < nq, j < nkeys, the same bits (the scores of nq queries
	 *       of one head against a run of cached keys; the avx512 set
	 *       transposes 16 keys once for all the queries, so that ggml's sums
	 *       run one key per lane);
	 *   ggml_dot_f32, ggml_vp_f32, ggml_vp_f32_acc  the same over an f32 k row / f32 V rows
	 *       (ggml_vec_dot_f32: the leftover elements added in float);
	 *   ggml_softmax(x, n)  ggml_soft_max_f32 without mask or scale: exp(x -
	 *       max) by ggml_v_expf in groups of VL (each group summed by the
	 *       lane tree into a double), then times (float) (1 / sum);
	 *   ggml_swiglu(y, gate, up, n)  ggml_vec_swiglu_f32: gate / (1 +
	 *       ggml_v_expf(-gate)) * up in groups of VL, the rest with libm's expf.
	 */
	float		(*ggml_dot_f16) (const float *q, const uint16_t *k, int64_t n);
	void		(*ggml_vp_f16) (float *out, const float *p, const uint8_t *v, size_t stride,
								int32_t npos, int32_t hd, float *slots);
	void		(*ggml_dot_f16_keys) (const float *q, size_t qstride, int32_t nq, const uint8_t *k,
									  size_t stride, int32_t nkeys, int64_t n, float *out, size_t ostride);
	float		(*ggml_dot_f32) (const float *q, const float *k, int64_t n);
	void		(*ggml_vp_f32) (float *out, const float *p, const uint8_t *v, size_t stride,
								int32_t npos, int32_t hd, float *slots);
	void		(*ggml_vp_f16_acc) (float *slots, const float *p, const uint8_t *v, size_t stride,
									int32_t j0, int32_t n, int32_t hd);
	void		(*ggml_vp_f32_acc) (float *slots, const float *p, const uint8_t *v, size_t stride,
									int32_t j0, int32_t n, int32_t hd);
	void		(*ggml_vp_finish) (float *out, float *slots, int32_t hd);
	void		(*ggml_vp_f16_blocks) (float *out, size_t ostride, const float *p, size_t pstride,
									   const int32_t *npos, int32_t nq, const uint8_t *v, int32_t blk,
									   size_t bstride, size_t rstride, int32_t hd, float *slots);
	void		(*ggml_softmax) (float *x, int64_t n);
	void		(*ggml_swiglu) (float *y, const float *gate, const float *up, int64_t n);
} P3KernelSet;

/* scratch rows ggml_vp_f16 needs (4 accumulators of up to 16 lanes) */
#define P3_GGML_VP_SLOTS 64
/* queries whose slots ggml_vp_f16_blocks keeps at once */
#define P3_GGML_VP_QUERIES 4

/* The reference set (scalar, every CPU; the sets of phi3/kernels_dispatch.h start from it). */
const P3KernelSet *p3_kernels_reference(void);

/* ---- element-wise operations (f32, scalar, deterministic) ---- */

/* out = x / sqrt(mean(x²) + eps) ⊙ w; squares summed in double. out may alias x. */
void		p3_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps);

/* In place: x -= max; x = exp(x); x /= sum.  n >= 1. */
void		p3_softmax(float *x, int64_t n);

/* silu(z) = z / (1 + exp(-z)) */
float		p3_silu(float z);

/*
 * NeoX rotary embedding of one head vector in place: for i < n_rot/2,
 * (x[i], x[i + n_rot/2]) rotated by cs[2i] = cos θ_i, cs[2i+1] = sin θ_i
 * (both already multiplied by the attention factor).  Dims >= n_rot are
 * left unchanged.
 */
void		p3_rope_neox(float *x, int32_t n_rot, const float *cs);

/*
 * Fill cs[2i], cs[2i+1] (i < n_rot/2) for position pos:
 *     θ_i = pos · base^(-2i/n_rot) / factors[i]   (factors NULL: 1)
 *     cs  = (cos θ_i · mscale, sin θ_i · mscale)
 * computed in double and rounded once.
 */
void		p3_rope_table(float *cs, int32_t pos, int32_t n_rot, float base,
						  const float *factors, float mscale);

/*
 * The same three operations as ggml computes them (used with P3_ACT_Q8,
 * llama.cpp's arithmetic; the functions above keep the exact one):
 *   p3_rmsnorm_ggml: the squares rounded to float before the double sum
 *       (ggml_compute_forward_rms_norm_f32);
 *   p3_rope_table_ggml: ggml_rope_cache_init — θ in float, starting at
 *       (float) pos and multiplied by powf(base, -2 / n_rot) pair after
 *       pair, cos / sin by libm's cosf / sinf, times mscale;
 *   p3_rope_neox_ggml: the rotation with the fused multiply-adds GCC makes
 *       of ggml's rotate_pairs in its x86 builds:
 *       x0' = fma(x0, cos, -(x1 sin)), x1' = fma(x0, sin, x1 cos).
 */
void		p3_rmsnorm_ggml(float *out, const float *x, const float *w, int64_t n, float eps);
void		p3_rope_table_ggml(float *cs, int32_t pos, int32_t n_rot, float base,
							   const float *factors, float mscale);
void		p3_rope_neox_ggml(float *x, int32_t n_rot, const float *cs);

/* ---- matrix product ---- */

/* Scratch a worker needs for p3_matmul with a weight of n_in columns. */
size_t		p3_matmul_scratch_per_thread(int64_t n_in);
/* Shared scratch for quantized activations: n_tok rows of n_in in vec_dot_type of wtype. */
size_t		p3_matmul_act_bytes(uint32_t wtype, int64_t n_in, int32_t n_tok);

typedef struct P3MatmulArgs
{
	const P3KernelSet *kernels;
	P3ActPrecision act;
	const P3Weight *w;
	int64_t		row_begin;		/* compute output rows [row_begin, row_end) of W */
	int64_t		row_end;
	const float *x;				/* (n_tok, w->n_in), row stride ldx */
	int64_t		ldx;
	int32_t		n_tok;
	float	   *y;				/* (n_tok, row_end - row_begin), row stride ldy */
	int64_t		ldy;
	void	   *act_buf;		/* p3_matmul_act_bytes(...) bytes (used with P3_ACT_Q8) */
	float	   *thread_scratch; /* n_threads * p3_matmul_scratch_per_thread(n_in) bytes */
	size_t		thread_scratch_floats;	/* floats per thread */
} P3MatmulArgs;

/* y = x · W[row_begin:row_end]ᵀ, parallel over the pool (pool may be NULL). */
void		p3_matmul(P3ThreadPool *pool, const P3MatmulArgs *args);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_KERNELS_H */
