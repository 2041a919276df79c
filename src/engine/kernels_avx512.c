/*
 * kernels_avx512.c — the "avx512" kernel set: AVX-512 F/BW/VL/DQ with VNNI
 * (vpdpbusd / vpdpwssd for the integer dot products).
 *
 * Every function here is compiled for those instructions by the target
 * pragma below and is only reachable through p3_kernels_fill_avx512, which
 * kernels_x86.c calls after checking the CPU.  What this set shares with
 * the "avx2" set (the float layout, the float dots, the quantizers, the
 * dequant / fused dot_f32 loop, the 256-bit helpers) is written once in
 * kernels_x86_common.h, on the 16-lane vector layer defined below; tails
 * use masked loads and stores.  Here:
 *
 * Decoders.  Every fused dot_f32[T] decodes its weights to exactly the f32
 * values dequant[T] produces (the reference's arithmetic, operation for
 * operation), often through a 16- or 32-entry table of the possible values
 * of a sub-block, read by vpermps; the 256-element formats decode a round
 * of 64 elements at a time for DEF_FLOAT_KERNELS, the 32-element formats
 * two blocks at a time (DEF_FLOAT32_PAIRS).
 *
 * Integer dots.  Weights are unpacked to bytes once per block; K-quants take
 * u8 x s8 pair sums (vpmaddubsw) times the 16-bit sub-block scales
 * (vpdpwssd), the 32-element formats take s8 dots with vpdpbusd (|w| and
 * sign-moved activations).  Block sums are exact integers; only the float
 * combination differs from the reference's order: lane partial sums times
 * the block scales, summed in lanes, except for Q4_K / Q5_K / Q6_K, whose
 * blocks are combined one by one (the exact-block rule of gemm_q8k.h) so
 * that the prefill GEMM (gemm_avx512.c) gives the same bits.  Each kernel is written once for NT
 * activation rows (inline, NT a constant): NT = 1 is vec_dot, NT = 4 is
 * vec_dot_ntok; per row the operations are identical, hence so are the bits.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "gemm_q8k.h"
#include "kernels_x86.h"
#include "quant_blocks.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")

#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------------
 * the vector layer of the shared kernels (see kernels_x86_common.h)
 * --------------------------------------------------------------------- */

#define VL 16
/* all four rows: sixteen accumulators and four weight registers fit in the 32 registers */
#define X86_NTOK_ROWS 4
typedef __m512 vfloat;

/* the arithmetic: the 16-lane intrinsics */
INLINE __m512
vf_zero(void)
{
	return _mm512_setzero_ps();
}

INLINE __m512
vf_load(const float *p)
{
	return _mm512_loadu_ps(p);
}

INLINE void
vf_store(float *p, __m512 v)
{
	_mm512_storeu_ps(p, v);
}

INLINE __m512
vf_fmadd(__m512 a, __m512 b, __m512 c)
{
	return _mm512_fmadd_ps(a, b, c);
}

/* the mask of the first r < 16 lanes */
INLINE __mmask16
tail16(int r)
{
	return (__mmask16) ((1u << r) - 1);
}

/* the tails: masked loads and stores */
INLINE __m512
vf_load_part(const float *p, int r)
{
	return _mm512_maskz_loadu_ps(tail16(r), p);
}

INLINE void
vf_store_part(float *p, __m512 v, int r)
{
	_mm512_mask_storeu_ps(p, tail16(r), v);
}

INLINE __m512
vf_fmadd_part(__m512 a, __m512 b, __m512 c, int r)
{
	return _mm512_mask3_fmadd_ps(a, b, c, tail16(r));
}

/* 16 f16 values as floats (vcvtph2ps) */
INLINE __m512
vf_load_f16(const uint16_t *p)
{
	return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) p));
}

INLINE __m512
vf_load_f16_part(const uint16_t *p, int r)
{
	return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(tail16(r), p));
}

/* bf16 -> f32 of 16 values: the bits shifted up */
INLINE __m512
bf16x16(__m256i h)
{
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* 16 bf16 values as floats */
INLINE __m512
vf_load_bf16(const uint16_t *p)
{
	return bf16x16(_mm256_loadu_si256((const __m256i *) p));
}

INLINE __m512
vf_load_bf16_part(const uint16_t *p, int r)
{
	return bf16x16(_mm256_maskz_loadu_epi16(tail16(r), p));
}

/*
 * 16 f16 values to f32 exactly as p3_fp16_to_fp32: vcvtph2ps, except that
 * a signalling NaN keeps its payload unquieted (rare; fixed up by mask).
 */
INLINE __m512
f16x16_exact(__m256i h)
{
	__m512		v = _mm512_cvtph_ps(h);
	__mmask16	snan = _mm256_mask_cmpeq_epi16_mask(
		_mm256_test_epi16_mask(h, _mm256_set1_epi16(0x3FF)),
		_mm256_and_si256(h, _mm256_set1_epi16(0x7E00)), _mm256_set1_epi16(0x7C00));

	if (snan)
	{
		__m512i		x = _mm512_cvtepu16_epi32(h);
		__m512i		bits = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x8000)), 16),
										   _mm512_or_si512(_mm512_set1_epi32(0x7F800000),
														   _mm512_slli_epi32(_mm512_and_si512(x, _mm512_set1_epi32(0x3FF)), 13)));

		v = _mm512_mask_mov_ps(v, snan, _mm512_castsi512_ps(bits));
	}
	return v;
}

/* 16 f16 values as floats exactly as p3_fp16_to_fp32 */
INLINE __m512
vf_load_f16_exact(const uint16_t *p)
{
	return f16x16_exact(_mm256_loadu_si256((const __m256i *) p));
}

INLINE __m512
vf_load_f16_exact_part(const uint16_t *p, int r)
{
	return f16x16_exact(_mm256_maskz_loadu_epi16(tail16(r), p));
}

/* 16 floats to f16, round to nearest even */
INLINE void
vf_store_f16(uint16_t *p, __m512 v)
{
	_mm256_storeu_si256((__m256i *) p, _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

INLINE void
vf_store_f16_part(uint16_t *p, __m512 v, int r)
{
	_mm256_mask_storeu_epi16(p, tail16(r), _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* The fixed reduction of one accumulator. */
INLINE float
hsum16(__m512 v)
{
	__m256		s8 = _mm256_add_ps(_mm512_castps512_ps256(v), _mm512_extractf32x8_ps(v, 1));
	__m128		s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));

	s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
	s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
	return _mm_cvtss_f32(s4);
}

/*
 * The fixed reduction of the four accumulators of the float dots, as ggml's
 * GGML_F32x16_REDUCE: (0 + 2) + (1 + 3), then _mm512_reduce_add_ps's tree
 * (hsum16).
 */
INLINE float
reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
	return hsum16(_mm512_add_ps(_mm512_add_ps(a0, a2), _mm512_add_ps(a1, a3)));
}

/* Largest |x| of 16 lanes folded into m; NaN lanes of x are ignored (m is the second operand). */
INLINE __m512
absmax_fold(__m512 x, __m512 m)
{
	return _mm512_max_ps(_mm512_abs_ps(x), m);
}

/* the largest of the 16 lanes */
INLINE float
vf_hmax(__m512 m)
{
	return _mm512_reduce_max_ps(m);
}

/* bit k set where |v[k]| == a */
INLINE unsigned
vf_abs_eq(__m512 v, float a)
{
	return _mm512_cmp_ps_mask(_mm512_abs_ps(v), _mm512_set1_ps(a), _CMP_EQ_OQ);
}

/* NaN lanes -> 0 */
INLINE __m512
nan_to_zero(__m512 v)
{
	return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
}

/* v clamped to [-lim, lim] and rounded to nearest even (llama.cpp's x86 Q8_0 rule), NaN -> 0, as int32 */
INLINE __m512i
round_even_clamp(__m512 v, float lim)
{
	v = nan_to_zero(v);
	v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-lim)), _mm512_set1_ps(lim));
	return _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* Q8_0 / Q8_1 codes of v[0..1] * id (nearest even, clamped); returns their sum */
INLINE int
q8_codes32(const __m512 *v, float id, int8_t *qs)
{
	__m512i		q0 = round_even_clamp(_mm512_mul_ps(v[0], _mm512_set1_ps(id)), 127.0f);
	__m512i		q1 = round_even_clamp(_mm512_mul_ps(v[1], _mm512_set1_ps(id)), 127.0f);

	_mm_storeu_si128((__m128i *) qs, _mm512_cvtsepi32_epi8(q0));
	_mm_storeu_si128((__m128i *) (qs + 16), _mm512_cvtsepi32_epi8(q1));
	return _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
}

/* Q8_K codes of 32 values x * iscale (nearest even, clamped, NaN -> 0) and the sums of their halves */
INLINE void
q8k_codes32(const float *x, float iscale, int8_t *qs, int16_t *bsums)
{
#pragma GCC unroll 2
	for (int k = 0; k < 2; k++)
	{
		__m512		v = nan_to_zero(_mm512_mul_ps(_mm512_set1_ps(iscale), _mm512_loadu_ps(x + 16 * k)));
		__m512i		q;

		v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
		q = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
		_mm_storeu_si128((__m128i *) (qs + 16 * k), _mm512_cvtsepi32_epi8(q));
		bsums[k] = (int16_t) _mm512_reduce_add_epi32(q);
	}
}

/* the value in every lane */
INLINE __m512
vf_set1(float a)
{
	return _mm512_set1_ps(a);
}

/*
 * ggml's lane sums (ggml_tree in kernels_x86_common.h), of ggml_vec_dot_f16 /
 * _f32 and of the softmax groups: both _mm512_reduce_add_ps
 */
INLINE float
vf_hsum_dot(__m512 v)
{
	return _mm512_reduce_add_ps(v);
}

INLINE float
vf_hsum_sm(__m512 v)
{
	return _mm512_reduce_add_ps(v);
}

/*
 * ggml_v_expf of ggml's AVX-512 build (ggml-cpu/vec.h, MIT licence, from
 * ARM's optimized routines): 2^n * poly(b) by vscalefps; |n| > 192 gives 0
 * or infinity.
 */
INLINE __m512
vf_expf_ggml(__m512 x)
{
	const __m512 r = _mm512_set1_ps(0x1.8p23f);
	const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0f), r);
	const __m512 n = _mm512_sub_ps(z, r);
	const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20f),
									  _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1f), x));
	const __mmask16 d = _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(192), _CMP_GT_OQ);
	const __m512 u = _mm512_mul_ps(b, b);
	const __m512 j = _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7f), b,
																	 _mm512_set1_ps(0x1.573e2ep-5f)),
													 u,
													 _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3f), b,
																	 _mm512_set1_ps(0x1.fffdb6p-2f))),
									 u,
									 _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1f), b, _mm512_set1_ps(1.0F)));
	const __m512 res = _mm512_scalef_ps(j, n);

	if (_mm512_kortestz(d, d))
		return res;
	return _mm512_mask_blend_ps(d, res,
								_mm512_mask_blend_ps(_mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ),
													 _mm512_set1_ps(INFINITY), _mm512_setzero_ps()));
}

#include "kernels_x86_common.h"

/* y += a * x (multiply, then add: the reference's rounding exactly); per set (see kernels_avx2.c) */
static void
axpy_f32(float *y, float a, const float *x, int64_t n)
{
	__m512		av = _mm512_set1_ps(a);
	int64_t		i = 0;

	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i), _mm512_mul_ps(av, _mm512_loadu_ps(x + i))));
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		_mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
													  _mm512_mul_ps(av, _mm512_maskz_loadu_ps(m, x + i))));
	}
}

static void
axpy_f16(float *y, float a, const uint16_t *x, int64_t n)
{
	__m512		av = _mm512_set1_ps(a);
	int64_t		i = 0;

	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, _mm512_add_ps(_mm512_loadu_ps(y + i),
											  _mm512_mul_ps(av, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (x + i))))));
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		_mm512_mask_storeu_ps(y + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, y + i),
													  _mm512_mul_ps(av, _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, x + i)))));
	}
}

/* ---------------------------------------------------------------------
 * decoders of the quantized formats to f32 (the reference's values) and
 * the dequant / fused dot_f32 kernels built on them
 * --------------------------------------------------------------------- */

/* 0, 1, ..., 15 as floats: the codes of a 16-entry value table */
INLINE __m512
iota16(void)
{
	return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

/* Q8_0: (float) q * d */
INLINE void
dec_q8_0(const P3BlockQ8_0 *b, __m512 *v0, __m512 *v1)
{
	__m512		d = _mm512_set1_ps(h2f(b->d));

	*v0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) b->qs))), d);
	*v1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) (b->qs + 16)))), d);
}

/* Q4_0: (float) (q - 8) * d, by a table of the 16 values */
INLINE void
dec_q4_0(const P3BlockQ4_0 *b, __m512 *v0, __m512 *v1)
{
	__m512		tab = _mm512_mul_ps(_mm512_sub_ps(iota16(), _mm512_set1_ps(8.0f)), _mm512_set1_ps(h2f(b->d)));
	__m512i		q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) b->qs));

	*v0 = _mm512_permutexvar_ps(q, tab);	/* uses the low 4 bits of each index */
	*v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), tab);
}

/* Q4_1: (float) q * d + m */
INLINE void
dec_q4_1(const P3BlockQ4_1 *b, __m512 *v0, __m512 *v1)
{
	__m512		tab = _mm512_add_ps(_mm512_mul_ps(iota16(), _mm512_set1_ps(h2f(b->d))), _mm512_set1_ps(h2f(b->m)));
	__m512i		q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) b->qs));

	*v0 = _mm512_permutexvar_ps(q, tab);
	*v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), tab);
}

/* IQ4_NL: d * T[q] */
INLINE void
dec_iq4_nl(const P3BlockIQ4_NL *b, __m512 *v0, __m512 *v1)
{
	__m512		tab = _mm512_mul_ps(_mm512_set1_ps(h2f(b->d)),
									_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) p3_iq4nl_values))));
	__m512i		q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) b->qs));

	*v0 = _mm512_permutexvar_ps(q, tab);
	*v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), tab);
}

/*
 * Q5_0 / Q5_1: the 5th bit of element j is bit j of qh; codes 0..31 index
 * a 32-entry table held in two registers (vpermt2ps uses 5 index bits).
 */
INLINE void
dec_q5_tab(const uint8_t *qs, const uint8_t *qhb, __m512 lo, __m512 hi, __m512 *v0, __m512 *v1)
{
	uint32_t	qh;
	__m512i		q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) qs));
	__m512i		q0 = _mm512_and_si512(q, _mm512_set1_epi32(15));
	__m512i		q1 = _mm512_srli_epi32(q, 4);

	memcpy(&qh, qhb, 4);
	q0 = _mm512_mask_or_epi32(q0, (__mmask16) qh, q0, _mm512_set1_epi32(16));
	q1 = _mm512_mask_or_epi32(q1, (__mmask16) (qh >> 16), q1, _mm512_set1_epi32(16));
	*v0 = _mm512_permutex2var_ps(lo, q0, hi);
	*v1 = _mm512_permutex2var_ps(lo, q1, hi);
}

INLINE void
dec_q5_0(const P3BlockQ5_0 *b, __m512 *v0, __m512 *v1)
{
	__m512		d = _mm512_set1_ps(h2f(b->d));
	__m512		lo = _mm512_mul_ps(_mm512_sub_ps(iota16(), _mm512_set1_ps(16.0f)), d);
	__m512		hi = _mm512_mul_ps(iota16(), d);

	dec_q5_tab(b->qs, b->qh, lo, hi, v0, v1);
}

INLINE void
dec_q5_1(const P3BlockQ5_1 *b, __m512 *v0, __m512 *v1)
{
	__m512		d = _mm512_set1_ps(h2f(b->d));
	__m512		m = _mm512_set1_ps(h2f(b->m));
	__m512		lo = _mm512_add_ps(_mm512_mul_ps(iota16(), d), m);
	__m512		hi = _mm512_add_ps(_mm512_mul_ps(_mm512_add_ps(iota16(), _mm512_set1_ps(16.0f)), d), m);

	dec_q5_tab(b->qs, b->qh, lo, hi, v0, v1);
}

/*
 * dequant and fused dot_f32 of a 32-element format from its block decoder:
 * a round of four registers holds two blocks (a last odd block half a
 * round), so these are not DEF_FLOAT_KERNELS
 */
#define DEF_FLOAT32_PAIRS(NAME, BLOCK, DEC) \
static void \
dequant_##NAME(const void *vw, float *y, int64_t n) \
{ \
	const BLOCK *b = vw; \
	for (int64_t i = 0; i < n / 32; i++, y += 32) \
	{ \
		__m512		v0, v1; \
		DEC(&b[i], &v0, &v1); \
		_mm512_storeu_ps(y, v0); \
		_mm512_storeu_ps(y + 16, v1); \
	} \
} \
static float \
dot_f32_##NAME(const void *vw, const float *x, int64_t n) \
{ \
	const BLOCK *b = vw; \
	const int64_t nb = n / 32; \
	__m512		a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(); \
	__m512		a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps(); \
	int64_t		i = 0; \
	for (; i + 2 <= nb; i += 2, x += 64) \
	{ \
		__m512		v0, v1, v2, v3; \
		DEC(&b[i], &v0, &v1); \
		DEC(&b[i + 1], &v2, &v3); \
		a0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x), a0); \
		a1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + 16), a1); \
		a2 = _mm512_fmadd_ps(v2, _mm512_loadu_ps(x + 32), a2); \
		a3 = _mm512_fmadd_ps(v3, _mm512_loadu_ps(x + 48), a3); \
	} \
	if (i < nb) \
	{ \
		__m512		v0, v1; \
		DEC(&b[i], &v0, &v1); \
		a0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x), a0); \
		a1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + 16), a1); \
	} \
	return reduce4(a0, a1, a2, a3); \
}

DEF_FLOAT32_PAIRS(Q8_0, P3BlockQ8_0, dec_q8_0)
DEF_FLOAT32_PAIRS(Q4_0, P3BlockQ4_0, dec_q4_0)
DEF_FLOAT32_PAIRS(Q4_1, P3BlockQ4_1, dec_q4_1)
DEF_FLOAT32_PAIRS(Q5_0, P3BlockQ5_0, dec_q5_0)
DEF_FLOAT32_PAIRS(Q5_1, P3BlockQ5_1, dec_q5_1)
DEF_FLOAT32_PAIRS(IQ4_NL, P3BlockIQ4_NL, dec_iq4_nl)

/*
 * Q4_K, chunk c (elements 64c .. 64c+63): sub-block 2c from the low
 * nibbles of qs[32c ..], 2c+1 from the high nibbles; value d1 * q - m1
 * (k4_factors), by a table of the 16 values per sub-block.
 */
INLINE void
dec_q4_k_chunk(const uint8_t *qs, const uint8_t *qh, int c, const float *d1, const float *m1, __m512 *v)
{
	__m512		t0 = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d1[2 * c]), iota16()), _mm512_set1_ps(m1[2 * c]));
	__m512		t1 = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d1[2 * c + 1]), iota16()), _mm512_set1_ps(m1[2 * c + 1]));
	__m512i		q0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (qs + 32 * c)));
	__m512i		q1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (qs + 32 * c + 16)));

	(void) qh;
	v[0] = _mm512_permutexvar_ps(q0, t0);	/* uses the low 4 bits of each index */
	v[1] = _mm512_permutexvar_ps(q1, t0);
	v[2] = _mm512_permutexvar_ps(_mm512_srli_epi32(q0, 4), t1);
	v[3] = _mm512_permutexvar_ps(_mm512_srli_epi32(q1, 4), t1);
}

/*
 * Q5_K chunk c: as Q4_K plus 16 for bit 2c (low half) / 2c+1 (high half)
 * of qh[l]; the 5-bit codes index 32-entry tables (two registers).
 */
INLINE void
dec_q5_k_chunk(const uint8_t *qs, const uint8_t *qh, int c, const float *d1, const float *m1, __m512 *v)
{
	__m512		da = _mm512_set1_ps(d1[2 * c]);
	__m512		ma = _mm512_set1_ps(m1[2 * c]);
	__m512		db = _mm512_set1_ps(d1[2 * c + 1]);
	__m512		mb = _mm512_set1_ps(m1[2 * c + 1]);
	__m512		i16 = _mm512_add_ps(iota16(), _mm512_set1_ps(16.0f));
	__m512		tal = _mm512_sub_ps(_mm512_mul_ps(da, iota16()), ma);
	__m512		tah = _mm512_sub_ps(_mm512_mul_ps(da, i16), ma);
	__m512		tbl = _mm512_sub_ps(_mm512_mul_ps(db, iota16()), mb);
	__m512		tbh = _mm512_sub_ps(_mm512_mul_ps(db, i16), mb);
	__m512i		q0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (qs + 32 * c)));
	__m512i		q1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (qs + 32 * c + 16)));
	__m512i		h0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) qh));
	__m512i		h1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (qh + 16)));
	__m512i		blo = _mm512_set1_epi32(1 << (2 * c));
	__m512i		bhi = _mm512_set1_epi32(2 << (2 * c));
	__m512i		s16 = _mm512_set1_epi32(16);
	__m512i		m15 = _mm512_set1_epi32(15);
	__m512i		i0 = _mm512_and_si512(q0, m15);
	__m512i		i1 = _mm512_and_si512(q1, m15);
	__m512i		i2 = _mm512_srli_epi32(q0, 4);
	__m512i		i3 = _mm512_srli_epi32(q1, 4);

	i0 = _mm512_mask_or_epi32(i0, _mm512_test_epi32_mask(h0, blo), i0, s16);
	i1 = _mm512_mask_or_epi32(i1, _mm512_test_epi32_mask(h1, blo), i1, s16);
	i2 = _mm512_mask_or_epi32(i2, _mm512_test_epi32_mask(h0, bhi), i2, s16);
	i3 = _mm512_mask_or_epi32(i3, _mm512_test_epi32_mask(h1, bhi), i3, s16);
	v[0] = _mm512_permutex2var_ps(tal, i0, tah);
	v[1] = _mm512_permutex2var_ps(tal, i1, tah);
	v[2] = _mm512_permutex2var_ps(tbl, i2, tbh);
	v[3] = _mm512_permutex2var_ps(tbl, i3, tbh);
}

DEF_FLOAT_KERNELS(Q4_K, P3BlockQ4_K, P3_QK_K, K_AFFINE_SETUP(false), dec_q4_k_chunk(b->qs, NULL, r, d1, m1, v))
DEF_FLOAT_KERNELS(Q5_K, P3BlockQ5_K, P3_QK_K, K_AFFINE_SETUP(true), dec_q5_k_chunk(b->qs, b->qh, r, d1, m1, v))

/*
 * Q6_K: the 256 codes (q - 32, signed bytes) of a block in element order,
 * and the 16 group factors d * sc[g].  Half h: ql[64h ..] low nibbles are
 * elements 0..63 with qh bits 0-1 / 2-3, high nibbles elements 64..127 with
 * bits 4-5 / 6-7 (qh[32h ..] repeated for both 32-byte halves).
 */
INLINE void
q6_k_codes(const P3BlockQ6_K *b, int h, __m512i *lo, __m512i *hi)
{
	const __m512i m4 = _mm512_set1_epi8(0x0F);
	const __m512i m30 = _mm512_set1_epi8(0x30);
	__m512i		ql = _mm512_loadu_si512(b->ql + 64 * h);
	__m512i		qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) (b->qh + 32 * h)));
	/* per 16-bit lane shifts: lower 256 bits, upper 256 bits */
	__m512i		shl_lo = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
	__m512i		shr_hi = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);

	*lo = _mm512_or_si512(_mm512_and_si512(ql, m4),
						  _mm512_and_si512(_mm512_sllv_epi16(qh, shl_lo), m30));
	*hi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
						  _mm512_and_si512(_mm512_srlv_epi16(qh, shr_hi), m30));
}

/* a decoded Q6_K block: the codes q - 32 in element order and the group factors d * sc[g] */
INLINE void
dec_q6_k_block(const P3BlockQ6_K *b, int8_t *codes, float *dsc)
{
	const __m512i k32 = _mm512_set1_epi8(32);

#pragma GCC unroll 16
	for (int h = 0; h < 2; h++)
	{
		__m512i		lo,
					hi;

		q6_k_codes(b, h, &lo, &hi);
		_mm512_storeu_si512(codes + 128 * h, _mm512_sub_epi8(lo, k32));
		_mm512_storeu_si512(codes + 128 * h + 64, _mm512_sub_epi8(hi, k32));
	}
	/* d * (float) sc[g], as the reference's left-to-right d * sc * q */
	_mm512_storeu_ps(dsc, _mm512_mul_ps(_mm512_set1_ps(h2f(b->d)),
										_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) b->scales)))));
}

/*
 * Round r of a decoded Q6_K / Q3_K / Q2_K block: groups g = 4r .. 4r+3 (16
 * elements each), dl[g] * (float) code, minus ml[g] when ml is given.
 */
INLINE void
code_groups(const int8_t *codes, const float *dl, const float *ml, int r, __m512 *v)
{
#pragma GCC unroll 4
	for (int k = 0; k < 4; k++)
	{
		int			g = 4 * r + k;

		v[k] = _mm512_mul_ps(_mm512_set1_ps(dl[g]),
							 _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) (codes + 16 * g)))));
		if (ml != NULL)
			v[k] = _mm512_sub_ps(v[k], _mm512_set1_ps(ml[g]));
	}
}

DEF_FLOAT_KERNELS(Q6_K, P3BlockQ6_K, P3_QK_K,
				  int8_t codes[P3_QK_K] __attribute__((aligned(64))); float dsc[16] __attribute__((aligned(64)));
				  dec_q6_k_block(b, codes, dsc),
				  code_groups(codes, dsc, NULL, r, v))

/* the 8 sub-block scales ls - 32 of an IQ4_XS block (dwords) */
INLINE __m256i
iq4xs_scales(const P3BlockIQ4_XS *b)
{
	uint32_t	lo;

	memcpy(&lo, b->scales_l, 4);
	/* low 4 bits of sub-block ib at bit 4 ib of scales_l, high 2 at bit 2 ib of scales_h */
	__m256i		l4 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int) lo),
														_mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
									  _mm256_set1_epi32(15));
	__m256i		h2 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(b->scales_h),
														_mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
									  _mm256_set1_epi32(3));

	return _mm256_sub_epi32(_mm256_or_si256(l4, _mm256_slli_epi32(h2, 4)), _mm256_set1_epi32(32));
}

/* dl[ib] = d * (float) (ls - 32) of the 8 sub-blocks of an IQ4_XS block, as the reference */
INLINE void
iq4xs_factors(const P3BlockIQ4_XS *b, float *dl)
{
	_mm256_storeu_ps(dl, _mm256_mul_ps(_mm256_set1_ps(h2f(b->d)), _mm256_cvtepi32_ps(iq4xs_scales(b))));
}

/*
 * The 16 signed scales (-32..31) of a Q3_K block as dwords in one register
 * (kernels_avx2.c's q3k_scales_w at full width; deriving these from its
 * words cost 11-14% in every Q3_K kernel here).
 */
INLINE __m512i
q3k_scales16(const uint8_t *scales)
{
	uint64_t	lo8;
	uint32_t	hi;
	__m128i		v;
	__m128i		l4;

	memcpy(&lo8, scales, 8);
	memcpy(&hi, scales + 8, 4);
	v = _mm_cvtsi64_si128((long long) lo8);
	/* groups 0-7: low nibbles of bytes 0-7, groups 8-15: high nibbles */
	l4 = _mm_unpacklo_epi64(_mm_and_si128(v, _mm_set1_epi8(15)), _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)));
	/* high 2 bits of group j: bits 2 (j / 4) of byte 8 + j % 4 */
	__m512i		h2 = _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32((int) hi),
														_mm512_setr_epi32(0, 8, 16, 24, 2, 10, 18, 26,
																		  4, 12, 20, 28, 6, 14, 22, 30)),
									  _mm512_set1_epi32(3));

	return _mm512_sub_epi32(_mm512_or_si512(_mm512_cvtepu8_epi32(l4), _mm512_slli_epi32(h2, 4)), _mm512_set1_epi32(32));
}

/* 16 dword scales as word pairs (both halves the scale) for vpdpwssd */
INLINE __m512i
word_pairs(__m512i v)
{
	return _mm512_or_si512(_mm512_and_si512(v, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(v, 16));
}

/* dword lane k of element group e (64 elements, 16 per scale): scale 4e + k / 4 */
INLINE __m512i
group_scales(__m512i pairs, int e)
{
	return _mm512_permutexvar_epi32(_mm512_srli_epi32(_mm512_add_epi32(_mm512_set1_epi32(16 * e),
																	   _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)), 2),
									pairs);
}

/* dword lanes of chunk c (64 elements, 32 per scale): lanes 0-7 scale 2c, lanes 8-15 scale 2c + 1 */
INLINE __m512i
chunk_scales(__m512i pairs, int c)
{
	return _mm512_permutexvar_epi32(_mm512_inserti64x4(_mm512_set1_epi32(2 * c), _mm256_set1_epi32(2 * c + 1), 1), pairs);
}

/*
 * The 2-bit codes of element group e (elements 64e .. 64e+63) of a Q2_K /
 * Q3_K block: bits 2s of qs[32 (e / 2) + l], s = 2 (e % 2) for the first 32
 * elements and s + 1 for the next 32.
 */
INLINE __m512i
codes2(const uint8_t *qs, int e)
{
	__m512i		q = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) (qs + 32 * (e / 2))));
	__m512i		sh = _mm512_inserti64x4(_mm512_set1_epi16((short) (4 * (e % 2))), _mm256_set1_epi16((short) (4 * (e % 2) + 2)), 1);

	return _mm512_and_si512(_mm512_srlv_epi16(q, sh), _mm512_set1_epi8(3));
}

/* Q3_K element group e as q + 4 (0..7): the 2-bit code plus 4 where bit 4h + s of hmask[l] is set */
INLINE __m512i
q3k_codes(const P3BlockQ3_K *b, int e)
{
	__m512i		low = codes2(b->qs, e);
	__m512i		hm = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) b->hmask));
	int			bit = 4 * (e / 2) + 2 * (e % 2);
	__m512i		sel = _mm512_inserti64x4(_mm512_set1_epi8((char) (1 << bit)), _mm256_set1_epi8((char) (1 << (bit + 1))), 1);

	return _mm512_mask_add_epi8(low, _mm512_test_epi8_mask(hm, sel), low, _mm512_set1_epi8(4));
}

/* IQ4_XS sub-block ib: d * (ls - 32) * T[q], by a table of its 16 values */
INLINE void
dec_iq4_xs_sub(const P3BlockIQ4_XS *b, const float *dl, int ib, __m512 *v)
{
	__m512		tab = _mm512_mul_ps(_mm512_set1_ps(dl[ib]),
									_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) p3_iq4nl_values))));
	__m512i		q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (b->qs + 16 * ib)));

	v[0] = _mm512_permutexvar_ps(q, tab);
	v[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), tab);
}

DEF_FLOAT_KERNELS(IQ4_XS, P3BlockIQ4_XS, P3_QK_K, float dl[8]; iq4xs_factors(b, dl),
				  dec_iq4_xs_sub(b, dl, 2 * r, v); dec_iq4_xs_sub(b, dl, 2 * r + 1, v + 2))

/*
 * Q3_K / Q2_K decoded block: codes (signed q for Q3_K, 0..3 for Q2_K) in
 * element order, and the group factors (Q3_K: d * sc[g]; Q2_K: d * (sc & 15)
 * and dmin * (sc >> 4)), as the reference computes them.
 */
INLINE void
dec_q3_k_block(const P3BlockQ3_K *b, int8_t *codes, float *dl)
{
#pragma GCC unroll 4
	for (int e = 0; e < 4; e++)
		_mm512_storeu_si512(codes + 64 * e, _mm512_sub_epi8(q3k_codes(b, e), _mm512_set1_epi8(4)));
	_mm512_storeu_ps(dl, _mm512_mul_ps(_mm512_set1_ps(h2f(b->d)), _mm512_cvtepi32_ps(q3k_scales16(b->scales))));
}

/* (see dec_q3_k_block) */
INLINE void
dec_q2_k_block(const P3BlockQ2_K *b, int8_t *codes, float *dl, float *ml)
{
	__m512i		sc = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) b->scales));

#pragma GCC unroll 4
	for (int e = 0; e < 4; e++)
		_mm512_storeu_si512(codes + 64 * e, codes2(b->qs, e));
	_mm512_storeu_ps(dl, _mm512_mul_ps(_mm512_set1_ps(h2f(b->d)),
									   _mm512_cvtepi32_ps(_mm512_and_si512(sc, _mm512_set1_epi32(15)))));
	_mm512_storeu_ps(ml, _mm512_mul_ps(_mm512_set1_ps(h2f(b->dmin)), _mm512_cvtepi32_ps(_mm512_srli_epi32(sc, 4))));
}

DEF_FLOAT_KERNELS(Q3_K, P3BlockQ3_K, P3_QK_K,
				  int8_t codes[P3_QK_K] __attribute__((aligned(64))); float dl[16] __attribute__((aligned(64)));
				  dec_q3_k_block(b, codes, dl),
				  code_groups(codes, dl, NULL, r, v))
DEF_FLOAT_KERNELS(Q2_K, P3BlockQ2_K, P3_QK_K,
				  int8_t codes[P3_QK_K] __attribute__((aligned(64))); float dl[16] __attribute__((aligned(64)));
				  float ml[16] __attribute__((aligned(64))); dec_q2_k_block(b, codes, dl, ml),
				  code_groups(codes, dl, ml, r, v))

/* ---------------------------------------------------------------------
 * integer dot products with quantized activations, for NT rows at once
 * --------------------------------------------------------------------- */

/* 16 dword lanes: [v0 x 8, v1 x 8] */
INLINE __m512
pair_ps(float v0, float v1)
{
	return _mm512_insertf32x8(_mm512_set1_ps(v0), _mm256_set1_ps(v1), 1);
}

/* 64 bytes: two 32-byte loads side by side */
INLINE __m512i
load_pair(const void *p0, const void *p1)
{
	return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *) p0)),
							  _mm256_loadu_si256((const __m256i *) p1), 1);
}

/* nibbles of two 16-byte groups to 64 bytes: [lo(p0), hi(p0), lo(p1), hi(p1)] */
INLINE __m512i
nibbles_pair(const uint8_t *p0, const uint8_t *p1)
{
	__m256i		t = _mm256_set_m128i(_mm_loadu_si128((const __m128i *) p1), _mm_loadu_si128((const __m128i *) p0));
	__m512i		z = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 1, 0, 1, 2, 3, 2, 3), _mm512_castsi256_si512(t));
	__m512i		sh = _mm512_setr_epi64(0, 0, 0x0004000400040004LL, 0x0004000400040004LL,
									   0, 0, 0x0004000400040004LL, 0x0004000400040004LL);

	return _mm512_and_si512(_mm512_srlv_epi16(z, sh), _mm512_set1_epi8(0x0F));
}

/*
 * Signed weight bytes of a 32-element format (two blocks per register):
 * the int32 lane sums of w · y by vpdpbusd on |w| and y with w's sign.
 */
INLINE __m512i
sdot_pair(__m512i aw, __mmask64 neg, __m512i y)
{
	return _mm512_dpbusd_epi32(_mm512_setzero_si512(), aw, _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y));
}

/* the same for one block in 256 bits */
INLINE __m256i
sdot_one(__m256i w, __m256i y)
{
	return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(y, w));
}

/* the two blocks' signed weight bytes of each 32-element format with Q8_0 activations */
INLINE __m512i
sw_pair_q8_0(const P3BlockQ8_0 *b)
{
	return load_pair(b[0].qs, b[1].qs);
}

INLINE __m512i
sw_pair_q4_0(const P3BlockQ4_0 *b)
{
	return _mm512_sub_epi8(nibbles_pair(b[0].qs, b[1].qs), _mm512_set1_epi8(8));
}

INLINE __m512i
sw_pair_iq4_nl(const P3BlockIQ4_NL *b)
{
	__m512i		tab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *) p3_iq4nl_values));

	return _mm512_shuffle_epi8(tab, nibbles_pair(b[0].qs, b[1].qs));
}

/* Q5_0: (nibble | bit << 4) - 16; the bit of element j is bit j of qh, i.e. of byte j */
INLINE __m512i
sw_pair_q5_0(const P3BlockQ5_0 *b)
{
	uint32_t	h0,
				h1;

	memcpy(&h0, b[0].qh, 4);
	memcpy(&h1, b[1].qh, 4);
	return _mm512_mask_sub_epi8(nibbles_pair(b[0].qs, b[1].qs), _cvtu64_mask64(~((uint64_t) h1 << 32 | h0)),
								nibbles_pair(b[0].qs, b[1].qs), _mm512_set1_epi8(16));
}

/* the f16 scales of 4 consecutive blocks of size bsz (d first in the block) as 4 floats */
INLINE __m128
d4_ps(const uint8_t *p, size_t bsz)
{
	uint16_t	h[4];

	for (int j = 0; j < 4; j++)
		memcpy(&h[j], p + j * bsz, 2);
	return _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *) h));
}

/*
 * The exact dot of a 256-element block of unsigned codes wv[e] (element
 * groups of 64) with the Q8_K activations y: vpmaddubsw pair sums times
 * the word scales sv[e] of each dword lane, accumulated by vpdpwssd.
 */
INLINE __m512i
groups_dot(const __m512i *wv, const __m512i *sv, const P3BlockQ8_K *y)
{
	__m512i		s = _mm512_setzero_si512();

#pragma GCC unroll 4
	for (int e = 0; e < 4; e++)
		s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wv[e], _mm512_loadu_si512(y->qs + 64 * e)), sv[e]);
	return s;
}

/* the exact sum of 8 dword lanes */
INLINE int32_t
hsum8_epi32(__m256i v)
{
	__m128i		s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
	return _mm_cvtsi128_si32(s);
}

/* the f16 scales of 16 consecutive blocks of size bsz (d first in the block) as 16 floats */
INLINE __m512
d16_ps(const uint8_t *p, size_t bsz)
{
	uint16_t	h[16];

	for (int j = 0; j < 16; j++)
		memcpy(&h[j], p + j * bsz, 2);
	return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) h));
}

/*
 * The 16 block sums of 8 pair vectors (vector j: 8 dword partials of block
 * 2j, then 8 of block 2j + 1), exact, in block order: two rounds of
 * unpack-and-add leave each 128-bit lane with one sum per input vector,
 * the lane pairs of a block are added, and a permutation sorts them.
 */
INLINE __m512i
block_sums16(const __m512i *p)
{
	__m512i		u[4],
				v[2],
				z;

	for (int j = 0; j < 4; j++)
		u[j] = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2 * j], p[2 * j + 1]),
								_mm512_unpackhi_epi32(p[2 * j], p[2 * j + 1]));
	for (int j = 0; j < 2; j++)
		v[j] = _mm512_add_epi32(_mm512_unpacklo_epi64(u[2 * j], u[2 * j + 1]),
								_mm512_unpackhi_epi64(u[2 * j], u[2 * j + 1]));
	/* lanes: blocks 0 2 4 6, 1 3 5 7, 8 10 12 14, 9 11 13 15 */
	z = _mm512_add_epi32(_mm512_shuffle_i32x4(v[0], v[1], 0x88), _mm512_shuffle_i32x4(v[0], v[1], 0xDD));
	return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15), z);
}

/* the exact-block chain over 16 blocks: acc = fmaf(s[b], dd[b], acc) in block order */
INLINE float
chain16(float acc, __m512i s, __m512 dd)
{
	float		sf[16],
				df[16];

	_mm512_storeu_ps(sf, _mm512_cvtepi32_ps(s));
	_mm512_storeu_ps(df, dd);
	for (int b = 0; b < 16; b++)
		acc = fmaf(sf[b], df[b], acc);
	return acc;
}

/*
 * The 32-element formats with Q8_0 activations, by the exact-block rule
 * of gemm_q8k.h (the prefill GEMM gives the same bits): per block the
 * exact integer S = Σ w a, then acc = fmaf((float) S, dx · dy, acc) in
 * block order.  Blocks in sixteens (block_sums16, the products dx · dy
 * sixteen at a time), the rest one by one (SWONE: one block as 32 bytes).
 */
#define DEF_VEC_DOT_S8(NAME, BLOCK, SWPAIR, SWONE) \
INLINE void \
vec_dot_##NAME##_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt) \
{ \
	const BLOCK *x = vw; \
	const int64_t nb = n / 32; \
	float		acc[NTOK]; \
	int64_t		i = 0; \
	for (int t = 0; t < nt; t++) \
		acc[t] = 0.0f; \
	for (; i + 16 <= nb; i += 16) \
	{ \
		__m512i		aw[8]; \
		__mmask64	neg[8]; \
		__m512		dx = d16_ps((const uint8_t *) &x[i], sizeof(BLOCK)); \
		_Pragma("GCC unroll 8") \
		for (int j = 0; j < 8; j++) \
		{ \
			__m512i		sw = SWPAIR(&x[i + 2 * j]); \
			aw[j] = _mm512_abs_epi8(sw); \
			neg[j] = _mm512_movepi8_mask(sw); \
		} \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_0 *y = ACT_ROW(P3BlockQ8_0, va, stride, t) + i; \
			__m512i		p[8]; \
			_Pragma("GCC unroll 8") \
			for (int j = 0; j < 8; j++) \
				p[j] = sdot_pair(aw[j], neg[j], load_pair(y[2 * j].qs, y[2 * j + 1].qs)); \
			acc[t] = chain16(acc[t], block_sums16(p), \
							 _mm512_mul_ps(dx, d16_ps((const uint8_t *) y, sizeof(P3BlockQ8_0)))); \
		} \
	} \
	for (; i < nb; i++) \
	{ \
		__m256i		sw = SWONE(&x[i]); \
		const float dx = h2f(x[i].d); \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_0 *y = ACT_ROW(P3BlockQ8_0, va, stride, t) + i; \
			int32_t		s = hsum8_epi32(sdot_one(sw, _mm256_loadu_si256((const __m256i *) y->qs))); \
			acc[t] = fmaf((float) s, dx * h2f(y->d), acc[t]); \
		} \
	} \
	for (int t = 0; t < nt; t++) \
		out[t] = acc[t]; \
} \
DEF_VEC_WRAPPERS(NAME, vec_dot_##NAME##_nt)

DEF_VEC_DOT_S8(Q8_0, P3BlockQ8_0, sw_pair_q8_0, sw_q8_0)
DEF_VEC_DOT_S8(Q4_0, P3BlockQ4_0, sw_pair_q4_0, sw_q4_0)
DEF_VEC_DOT_S8(Q5_0, P3BlockQ5_0, sw_pair_q5_0, sw_q5_0)
DEF_VEC_DOT_S8(IQ4_NL, P3BlockIQ4_NL, sw_pair_iq4_nl, sw_iq4_nl)

/* unsigned weight bytes of Q4_1 / Q5_1 (codes 0..15 / 0..31) */
INLINE __m512i
uw_pair_q4_1(const P3BlockQ4_1 *b)
{
	return nibbles_pair(b[0].qs, b[1].qs);
}

INLINE __m512i
uw_pair_q5_1(const P3BlockQ5_1 *b)
{
	uint32_t	h0,
				h1;
	__m512i		q = nibbles_pair(b[0].qs, b[1].qs);

	memcpy(&h0, b[0].qh, 4);
	memcpy(&h1, b[1].qh, 4);
	return _mm512_mask_add_epi8(q, _cvtu64_mask64((uint64_t) h1 << 32 | h0), q, _mm512_set1_epi8(16));
}

/* Q4_1 / Q5_1 · Q8_1: dx dy Σ q y + m s per block, blocks in fours (see DEF_VEC_DOT_S8) */
#define DEF_VEC_DOT_U8_Q8_1(NAME, BLOCK, UWPAIR, UWONE) \
INLINE void \
vec_dot_##NAME##_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt) \
{ \
	const BLOCK *x = vw; \
	const int64_t nb = n / 32; \
	const __m512i lo2 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(1), 1); \
	const __m512i hi2 = _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(3), 1); \
	__m512		acc[NTOK]; \
	__m128		accm[NTOK]; \
	float		summ[NTOK]; \
	int64_t		i = 0; \
	for (int t = 0; t < nt; t++) \
	{ \
		acc[t] = _mm512_setzero_ps(); \
		accm[t] = _mm_setzero_ps(); \
		summ[t] = 0.0f; \
	} \
	for (; i + 4 <= nb; i += 4) \
	{ \
		__m512i		uwa = UWPAIR(&x[i]); \
		__m512i		uwb = UWPAIR(&x[i + 2]); \
		__m128		dx = d4_ps((const uint8_t *) &x[i], sizeof(BLOCK)); \
		__m128		mx = d4_ps((const uint8_t *) &x[i] + 2, sizeof(BLOCK)); \
		_Pragma("GCC unroll 4") \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_1 *y = ACT_ROW(P3BlockQ8_1, va, stride, t) + i; \
			__m512		dd = _mm512_castps128_ps512(_mm_mul_ps(dx, d4_ps((const uint8_t *) y, sizeof(P3BlockQ8_1)))); \
			__m512i		sa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), uwa, load_pair(y[0].qs, y[1].qs)); \
			__m512i		sb = _mm512_dpbusd_epi32(_mm512_setzero_si512(), uwb, load_pair(y[2].qs, y[3].qs)); \
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sa), _mm512_permutexvar_ps(lo2, dd), acc[t]); \
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sb), _mm512_permutexvar_ps(hi2, dd), acc[t]); \
			accm[t] = _mm_fmadd_ps(mx, d4_ps((const uint8_t *) y + 2, sizeof(P3BlockQ8_1)), accm[t]); \
		} \
	} \
	for (; i + 2 <= nb; i += 2) \
	{ \
		__m512i		uw = UWPAIR(&x[i]); \
		__m512		dx = pair_ps(h2f(x[i].d), h2f(x[i + 1].d)); \
		const float m0 = h2f(x[i].m), m1 = h2f(x[i + 1].m); \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_1 *y = ACT_ROW(P3BlockQ8_1, va, stride, t) + i; \
			__m512i		s = _mm512_dpbusd_epi32(_mm512_setzero_si512(), uw, load_pair(y[0].qs, y[1].qs)); \
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dx, pair_ps(h2f(y[0].d), h2f(y[1].d))), acc[t]); \
			summ[t] += m0 * h2f(y[0].s) + m1 * h2f(y[1].s); \
		} \
	} \
	if (i < nb) \
	{ \
		__m256i		uw = UWONE(&x[i]); \
		const float dx = h2f(x[i].d), m0 = h2f(x[i].m); \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_1 *y = ACT_ROW(P3BlockQ8_1, va, stride, t) + i; \
			__m256i		s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), uw, _mm256_loadu_si256((const __m256i *) y->qs)); \
			acc[t] = _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(s)), _mm512_set1_ps(dx * h2f(y->d)), acc[t]); \
			summ[t] += m0 * h2f(y->s); \
		} \
	} \
	for (int t = 0; t < nt; t++) \
	{ \
		__m128		m = _mm_add_ps(accm[t], _mm_movehl_ps(accm[t], accm[t])); \
		out[t] = hsum16(acc[t]) + (summ[t] + _mm_cvtss_f32(_mm_add_ss(m, _mm_movehdup_ps(m)))); \
	} \
} \
DEF_VEC_WRAPPERS(NAME, vec_dot_##NAME##_nt)

DEF_VEC_DOT_U8_Q8_1(Q4_1, P3BlockQ4_1, uw_pair_q4_1, uw_q4_1)
DEF_VEC_DOT_U8_Q8_1(Q5_1, P3BlockQ5_1, uw_pair_q5_1, uw_q5_1)

/*
 * Q4_K / Q5_K · Q8_K.  Chunk c of a block (64 elements) is unpacked to the
 * byte order of the activations: sub-block 2c (low nibbles of qs[32c ..])
 * then 2c+1 (high nibbles).  vpmaddubsw gives 16-bit pair sums, vpdpwssd
 * multiplies them by the sub-block scale (dword lanes 0-7: 2c, 8-15: 2c+1)
 * and accumulates exactly; the mins meet the activations' bsums.  The
 * block's exact sums are combined by the exact-block rule of gemm_q8k.h,
 * which the prefill GEMM shares.
 */
INLINE void
vec_dot_k_affine_nt(const void *vw, size_t xsize, int five, const void *va, size_t stride,
					int64_t n, float *out, const int nt)
{
	const uint8_t *xb = vw;
	const int64_t nb = n / P3_QK_K;
	const __m512i m4 = _mm512_set1_epi8(0x0F);
	const __m512i shift04 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
	float		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = 0.0f;
	for (int64_t i = 0; i < nb; i++, xb += xsize)
	{
		/* Q4_K and Q5_K share d, dmin, scales; qs (and qh) follow */
		const P3BlockQ4_K *b4 = (const P3BlockQ4_K *) xb;
		const uint8_t *qh = xb + offsetof(P3BlockQ5_K, qh);
		const uint8_t *qs = five ? xb + offsetof(P3BlockQ5_K, qs) : xb + offsetof(P3BlockQ4_K, qs);
		uint64_t	sc8,
					mn8;
		__m512i		wv[4];
		__m512i		sv[4];
		__m256i		mins16;
		__m512i		scz;
		const float dx = h2f(b4->d);
		const float dmx = h2f(b4->dmin);

		k4_unpack(b4->scales, &sc8, &mn8);
		{
			__m256i		scd = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long) sc8));

			scz = _mm512_castsi256_si512(_mm256_or_si256(scd, _mm256_slli_epi32(scd, 16)));
		}
		mins16 = k4_mins16(mn8);
#pragma GCC unroll 16
		for (int c = 0; c < 4; c++)
		{
			wv[c] = _mm512_and_si512(_mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) (qs + 32 * c))),
													   shift04), m4);
			sv[c] = chunk_scales(scz, c);
		}
		if (five)
		{
			__m512i		hv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) qh));

#pragma GCC unroll 16
			for (int c = 0; c < 4; c++)
			{
				__m512i		bit = _mm512_inserti64x4(_mm512_set1_epi8((char) (1 << (2 * c))),
													 _mm256_set1_epi8((char) (2 << (2 * c))), 1);

				wv[c] = _mm512_mask_add_epi8(wv[c], _mm512_test_epi8_mask(hv, bit), wv[c], _mm512_set1_epi8(16));
			}
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			int32_t		s = _mm512_reduce_add_epi32(groups_dot(wv, sv, y));
			int32_t		m = hsum8_epi32(bsums_madd(y, mins16));

			acc[t] = k_block_affine(acc[t], s, m, dx, dmx, y->d);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = acc[t];
}

DEF_VEC_WRAPPERS(Q4_K, vec_dot_k_affine_nt, sizeof(P3BlockQ4_K), 0)
DEF_VEC_WRAPPERS(Q5_K, vec_dot_k_affine_nt, sizeof(P3BlockQ5_K), 1)

/*
 * Q6_K · Q8_K: codes 0..63 as unsigned bytes (q6_k_codes); group e of 64
 * elements has scales 4e .. 4e+3 (dword lane k: scale 4e + k / 4).  The
 * -32 offset is taken off once per block as 32 · Σ sc[g] · bsums[g]; the
 * exact block sum is combined by the rule of gemm_q8k.h.
 */
INLINE void
vec_dot_q6_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ6_K *x = vw;
	const int64_t nb = n / P3_QK_K;
	float		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = 0.0f;
	for (int64_t i = 0; i < nb; i++)
	{
		__m512i		wv[4];
		__m512i		sv[4];
		__m128i		sc = _mm_loadu_si128((const __m128i *) x[i].scales);
		__m512i		pairs = word_pairs(_mm512_cvtepi8_epi32(sc));
		__m256i		sc16 = _mm256_cvtepi8_epi16(sc);
		const float dx = h2f(x[i].d);

		q6_k_codes(&x[i], 0, &wv[0], &wv[1]);
		q6_k_codes(&x[i], 1, &wv[2], &wv[3]);
#pragma GCC unroll 16
		for (int e = 0; e < 4; e++)
			sv[e] = group_scales(pairs, e);
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			__m256i		corr = bsums_madd(y, sc16);
			__m512i		s = groups_dot(wv, sv, y);

			s = _mm512_sub_epi32(s, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
			acc[t] = k_block_q6(acc[t], _mm512_reduce_add_epi32(s), dx, y->d);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = acc[t];
}

DEF_VEC_WRAPPERS(Q6_K, vec_dot_q6_k_nt)

/*
 * IQ4_XS · Q8_K: per pair of sub-blocks (64 elements, the activations'
 * order), code-book values by vpshufb, |w| against sign-moved activations
 * (vpmaddubsw: 2 * 127 * 127 fits), times ls - 32 by vpdpwssd.
 */
INLINE void
vec_dot_iq4_xs_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockIQ4_XS *x = vw;
	const __m512i tab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *) p3_iq4nl_values));
	__m512		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm512_setzero_ps();
	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		__m512i		aw[4];
		__mmask64	neg[4];
		__m512i		sv[4];
		__m512i		scz = _mm512_castsi256_si512(iq4xs_scales(&x[i]));
		const float dx = h2f(x[i].d);

		scz = word_pairs(scz);
#pragma GCC unroll 4
		for (int p = 0; p < 4; p++)
		{
			__m512i		w = _mm512_shuffle_epi8(tab, nibbles_pair(x[i].qs + 32 * p, x[i].qs + 32 * p + 16));

			aw[p] = _mm512_abs_epi8(w);
			neg[p] = _mm512_movepi8_mask(w);
			sv[p] = chunk_scales(scz, p);
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			__m512i		s = _mm512_setzero_si512();

#pragma GCC unroll 4
			for (int p = 0; p < 4; p++)
			{
				__m512i		yv = _mm512_loadu_si512(y->qs + 64 * p);

				s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(aw[p], _mm512_mask_sub_epi8(yv, neg[p], _mm512_setzero_si512(), yv)),
										sv[p]);
			}
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dx * y->d), acc[t]);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum16(acc[t]);
}

/*
 * Q3_K · Q8_K in ggml's AVX2 order (llama.cpp's AVX-512 builds run that
 * code): codes 0..7 (2-bit code plus 4 for its high bit) with 4 taken off
 * per byte pair (codes · y - 4 · y by two vpmaddubsw), pair sums times the
 * 16-element group scales by vpdpwssd, so dword lane k of 64 elements holds
 * the exact sum of elements 4k .. 4k+3; lanes k and k + 8 added give ggml's
 * 8 int32 lanes (bytes 4m .. 4m+3 of each 32), then one FMA per block and
 * lane by d · dy and hsum_float_8's tree.  Q2_K (below) meets its mins
 * through the bsums.
 */
INLINE void
vec_dot_q3_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ3_K *x = vw;
	const __m512i four = _mm512_set1_epi8(4);
	__m256		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		__m512i		wv[4];
		__m512i		sv[4];
		__m512i		pairs = word_pairs(q3k_scales16(x[i].scales));
		const float dx = h2f(x[i].d);

#pragma GCC unroll 4
		for (int e = 0; e < 4; e++)
		{
			wv[e] = q3k_codes(&x[i], e);
			sv[e] = group_scales(pairs, e);
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			__m512i		s = _mm512_setzero_si512();
			__m256i		s8;

#pragma GCC unroll 4
			for (int e = 0; e < 4; e++)
			{
				__m512i		y8 = _mm512_loadu_si512(y->qs + 64 * e);

				s = _mm512_dpwssd_epi32(s, _mm512_sub_epi16(_mm512_maddubs_epi16(wv[e], y8), _mm512_maddubs_epi16(four, y8)),
										sv[e]);
			}
			s8 = _mm256_add_epi32(_mm512_castsi512_si256(s), _mm512_extracti64x4_epi64(s, 1));
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s8), _mm256_set1_ps(dx * y->d), acc[t]);
		}
	}
	for (int t = 0; t < nt; t++)
	{
		/* hsum_float_8 */
		__m128		r = _mm_add_ps(_mm256_extractf128_ps(acc[t], 1), _mm256_castps256_ps128(acc[t]));

		r = _mm_add_ps(r, _mm_movehl_ps(r, r));
		r = _mm_add_ss(r, _mm_movehdup_ps(r));
		out[t] = _mm_cvtss_f32(r);
	}
}

/*
 * Q2_K: as llama.cpp's AVX-512 builds compute it, through their "repack"
 * buffer (ggml_gemv_q2_K_8x8_q8_K, taken for every weight of 8k rows): per
 * block the exact integer sums of scale · code · activation and of min ·
 * bsum, each FMA'd by d · dy and dmin · dy into its own float chain, block
 * after block; the result is the first chain minus the second.
 */
INLINE void
vec_dot_q2_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ2_K *x = vw;
	float		acc[NTOK],
				accm[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = accm[t] = 0.0f;
	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		__m512i		wv[4];
		__m512i		sv[4];
		__m128i		sc = _mm_loadu_si128((const __m128i *) x[i].scales);
		__m512i		pairs = word_pairs(_mm512_cvtepu8_epi32(_mm_and_si128(sc, _mm_set1_epi8(15))));
		__m256i		mins16 = q2k_mins16(x[i].scales);
		const float dx = h2f(x[i].d);
		const float dmx = h2f(x[i].dmin);

#pragma GCC unroll 4
		for (int e = 0; e < 4; e++)
		{
			wv[e] = codes2(x[i].qs, e);
			sv[e] = group_scales(pairs, e);
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			int			pm = _mm512_reduce_add_epi32(_mm512_zextsi256_si512(bsums_madd(y, mins16)));
			int			si = _mm512_reduce_add_epi32(groups_dot(wv, sv, y));

			acc[t] = fmaf((float) si, dx * y->d, acc[t]);
			accm[t] = fmaf((float) pm, dmx * y->d, accm[t]);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = acc[t] - accm[t];
}

/*
 * ggml_dot_f16 against 16 keys at once.  ggml adds the leftover elements of
 * a row (past the whole chunks of 64) one by one into a double: a chain of
 * dependent adds that costs more than the rest of the dot for a head of 96.
 * Here each key's chunks and lane sum are ggml_dot_f16's (ggml_dot_chunks,
 * vf_hsum_dot); the leftover products (f16 times f16-valued q: exact in
 * float, as ggml computes them) of 16 keys are transposed so that key j is
 * lane j, and the 16 double sums advance together, element after element in
 * ggml's order.  Every lane does the same operations as ggml_dot_f16 on its
 * key: the same bits.
 */

/* r[i] lane j <- r[j] lane i (a 16 x 16 transpose: 4 x 4 blocks in the 128-bit lanes, then the lanes) */
INLINE void
transpose16x16(__m512 r[16])
{
	__m512		t[16];

	for (int k = 0; k < 4; k++)
	{
		t[4 * k] = _mm512_unpacklo_ps(r[4 * k], r[4 * k + 1]);
		t[4 * k + 1] = _mm512_unpackhi_ps(r[4 * k], r[4 * k + 1]);
		t[4 * k + 2] = _mm512_unpacklo_ps(r[4 * k + 2], r[4 * k + 3]);
		t[4 * k + 3] = _mm512_unpackhi_ps(r[4 * k + 2], r[4 * k + 3]);
	}
	/* s[4k + m] 128-bit lane L: rows 4k .. 4k + 3 of column 4L + m */
	for (int k = 0; k < 4; k++)
	{
		r[4 * k] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
		r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
		r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
		r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
	}
	for (int m = 0; m < 4; m++)
	{
		__m512		ab_lo = _mm512_shuffle_f32x4(r[m], r[4 + m], 0x44);
		__m512		ab_hi = _mm512_shuffle_f32x4(r[m], r[4 + m], 0xEE);
		__m512		cd_lo = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0x44);
		__m512		cd_hi = _mm512_shuffle_f32x4(r[8 + m], r[12 + m], 0xEE);

		t[m] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0x88);	/* column m */
		t[4 + m] = _mm512_shuffle_f32x4(ab_lo, cd_lo, 0xDD);	/* column 4 + m */
		t[8 + m] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0x88);
		t[12 + m] = _mm512_shuffle_f32x4(ab_hi, cd_hi, 0xDD);
	}
	memcpy(r, t, sizeof(t));
}

/*
 * 16 keys (rows k + j * stride, j < 16; nk < 16 repeats the last); prefetch:
 * the next 16 rows follow (the cache rows of a sequence are far apart, and
 * the dot waits on their loads otherwise)
 */
static void
dot_f16_keys16(const float *q, const uint8_t *k, size_t stride, int nk, int64_t n, float *out, bool prefetch)
{
	int64_t		np = n & ~(int64_t) 63;
	int			nchunk = (int) ((n - np + 15) / 16);
	double		head[16];
	__m512		prod[4][16];	/* [chunk][key]: the leftover products of elements np + 16 chunk + lane */
	__m512d		lo,
				hi;

	for (int j = 0; j < 16; j++)
	{
		const uint16_t *kr = (const uint16_t *) (const void *) (k + (size_t) (j < nk ? j : nk - 1) * stride);

		if (prefetch)
			for (int64_t b = 0; b < 2 * n; b += 64)		/* the same key of the next 16 */
				_mm_prefetch((const char *) kr + 16 * stride + b, _MM_HINT_T0);
		head[j] = (double) vf_hsum_dot(ggml_dot_chunks(q, kr, np, true));
		for (int c = 0; c < nchunk; c++)
		{
			int64_t		i = np + 16 * c;
			int			r = n - i < 16 ? (int) (n - i) : 16;

			prod[c][j] = _mm512_mul_ps(vf_load_f16_part(kr + i, r), vf_load_part(q + i, r));
		}
	}
	lo = _mm512_loadu_pd(head);
	hi = _mm512_loadu_pd(head + 8);
	for (int c = 0; c < nchunk; c++)
	{
		int64_t		i0 = np + 16 * c;
		int			r = n - i0 < 16 ? (int) (n - i0) : 16;

		transpose16x16(prod[c]);
		for (int i = 0; i < r; i++)
		{
			lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(prod[c][i])));
			hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm512_extractf32x8_ps(prod[c][i], 1)));
		}
	}
	_mm256_mask_storeu_ps(out, (__mmask8) (nk >= 8 ? 0xFF : (1u << nk) - 1), _mm512_cvtpd_ps(lo));
	if (nk > 8)
		_mm256_mask_storeu_ps(out + 8, (__mmask8) ((1u << (nk - 8)) - 1), _mm512_cvtpd_ps(hi));
}

/*
 * Several queries against the same keys (a prompt chunk's tokens of one
 * head): the 16 keys are converted and transposed once (keys16_columns:
 * column c holds element c of every key, key j in lane j), and for each
 * query ggml_vec_dot_f16's sums become whole-register operations, one key
 * per lane, with no lane sum per key (keys16_dot).  Per key and query the
 * operations are ggml_dot_f16's, in its order:
 *   accumulator a < 4, lane l: an fma chain over the chunks t of 64
 *     elements, element 64 t + 16 a + l (the first fma on zero);
 *   s_l = (acc0 + acc2) + (acc1 + acc3) in lane l;
 *   the lane sum of s as _mm512_reduce_add_ps takes it: s_l + s_(l+8),
 *     then + 4, + 2, + 1;
 *   that float in a double, then each leftover element (past the chunks)
 *     added in order: an f16 value times an f16-valued q is exact in float
 *     and in double, so one double fma rounds as ggml's add of their float
 *     product does.
 * Heads of up to KEYS_MAXH elements (larger ones take dot_f16_keys16).
 */
#define KEYS_MAXH 256

/* kt[c][j] = key j's element c (c < np), kd[c - np][j] the same in double (c >= np); nk < 16 repeats the last key */
INLINE void
keys16_columns(const uint8_t *k, size_t stride, int nk, int64_t n, float *kt, double *kd)
{
	int64_t		np = n & ~(int64_t) 63;

	for (int64_t c0 = 0; c0 < n; c0 += 16)
	{
		int			r = n - c0 < 16 ? (int) (n - c0) : 16;
		__m512		col[16];

		for (int j = 0; j < 16; j++)
			col[j] = vf_load_f16_part((const uint16_t *) (const void *) (k + (size_t) (j < nk ? j : nk - 1) * stride) + c0, r);
		transpose16x16(col);
		for (int c = 0; c < r; c++)
		{
			if (c0 < np)		/* np is a multiple of 64: a group of 16 is all chunk or all leftover */
				_mm512_store_ps(kt + (c0 + c) * 16, col[c]);
			else
			{
				_mm512_store_pd(kd + (c0 + c - np) * 16, _mm512_cvtps_pd(_mm512_castps512_ps256(col[c])));
				_mm512_store_pd(kd + (c0 + c - np) * 16 + 8, _mm512_cvtps_pd(_mm512_extractf32x8_ps(col[c], 1)));
			}
		}
	}
}

/* s_l of the comment above: lane l of ggml's four accumulators, combined, for 16 keys */
INLINE __m512
keys16_lane(const float *q, const float *kt, int64_t np, int l)
{
	__m512		a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};

#pragma GCC unroll 4
	for (int64_t t = 0; t < np; t += 64)
#pragma GCC unroll 4
		for (int i = 0; i < 4; i++)
		{
			int64_t		c = t + 16 * i + l;

			a[i] = _mm512_fmadd_ps(_mm512_load_ps(kt + c * 16), _mm512_set1_ps(q[c]), a[i]);
		}
	return _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
}

/* the scores of NQ (1 or 2) queries against 16 transposed keys; nk of them stored in out + i * ostride */
INLINE void
keys16_dot(const float *q, size_t qstride, const int NQ, const float *kt, const double *kd, int64_t n, int nk,
		   float *out, size_t ostride)
{
	int64_t		np = n & ~(int64_t) 63;
	__m512d		lo[2],
				hi[2];

	for (int i = 0; i < NQ; i++)
	{
		const float *qi = q + (size_t) i * qstride;
		__m512		t6[4];

		/* (s_l + s_(l+8)) + (s_(l+4) + s_(l+12)), l < 4: the first two levels of the lane sum */
#pragma GCC unroll 4
		for (int l = 0; l < 4; l++)
			t6[l] = _mm512_add_ps(_mm512_add_ps(keys16_lane(qi, kt, np, l), keys16_lane(qi, kt, np, l + 8)),
								  _mm512_add_ps(keys16_lane(qi, kt, np, l + 4), keys16_lane(qi, kt, np, l + 12)));
		t6[0] = _mm512_add_ps(_mm512_add_ps(t6[0], t6[2]), _mm512_add_ps(t6[1], t6[3]));
		lo[i] = _mm512_cvtps_pd(_mm512_castps512_ps256(t6[0]));
		hi[i] = _mm512_cvtps_pd(_mm512_extractf32x8_ps(t6[0], 1));
	}
#pragma GCC unroll 32
	for (int64_t c = np; c < n; c++)
#pragma GCC unroll 2
		for (int i = 0; i < NQ; i++)
		{
			__m512d		qc = _mm512_set1_pd((double) q[(size_t) i * qstride + c]);

			lo[i] = _mm512_fmadd_pd(_mm512_load_pd(kd + (c - np) * 16), qc, lo[i]);
			hi[i] = _mm512_fmadd_pd(_mm512_load_pd(kd + (c - np) * 16 + 8), qc, hi[i]);
		}
	for (int i = 0; i < NQ; i++)
	{
		float	   *o = out + (size_t) i * ostride;

		_mm256_mask_storeu_ps(o, (__mmask8) (nk >= 8 ? 0xFF : (1u << nk) - 1), _mm512_cvtpd_ps(lo[i]));
		if (nk > 8)
			_mm256_mask_storeu_ps(o + 8, (__mmask8) ((1u << (nk - 8)) - 1), _mm512_cvtpd_ps(hi[i]));
	}
}

/* a block of 16 keys (nk of them) against nq queries; n a constant where inlined for a head size */
INLINE void
keys16_block(const float *q, size_t qstride, int32_t nq, const float *kt, const double *kd, const int64_t n, int nk,
			 float *out, size_t ostride)
{
	int32_t		i = 0;

	for (; i + 2 <= nq; i += 2)
		keys16_dot(q + (size_t) i * qstride, qstride, 2, kt, kd, n, nk, out + (size_t) i * ostride, ostride);
	if (i < nq)
		keys16_dot(q + (size_t) i * qstride, qstride, 1, kt, kd, n, nk, out + (size_t) i * ostride, ostride);
}

static void
ggml_dot_f16_keys16(const float *q, size_t qstride, int32_t nq, const uint8_t *k, size_t stride, int32_t nkeys,
					int64_t n, float *out, size_t ostride)
{
	float		kt[KEYS_MAXH * 16] __attribute__((aligned(64)));
	double		kd[64 * 16] __attribute__((aligned(64)));

	if (n > KEYS_MAXH || nq == 1)
	{
		if ((n & 63) == 0)
		{
			ggml_dot_f16_keys_each(q, qstride, nq, k, stride, nkeys, n, out, ostride);
			return;
		}
		for (int32_t i = 0; i < nq; i++)
			for (int32_t j = 0; j < nkeys; j += 16)
				dot_f16_keys16(q + (size_t) i * qstride, k + (size_t) j * stride, stride,
							   nkeys - j < 16 ? (int) (nkeys - j) : 16, n, out + (size_t) i * ostride + j,
							   nkeys - j >= 32);
		return;
	}
	for (int32_t j = 0; j < nkeys; j += 16)
	{
		int			nk = nkeys - j < 16 ? (int) (nkeys - j) : 16;

		if (n == 96)			/* Phi-3's heads: the loops unrolled */
		{
			keys16_columns(k + (size_t) j * stride, stride, nk, 96, kt, kd);
			keys16_block(q, qstride, nq, kt, kd, 96, nk, out + j, ostride);
		}
		else
		{
			keys16_columns(k + (size_t) j * stride, stride, nk, n, kt, kd);
			keys16_block(q, qstride, nq, kt, kd, n, nk, out + j, ostride);
		}
	}
}

/*
 * V·p of the tokens of one head over a cache in blocks, four queries at a
 * time with the sums in registers.  ggml_vp_f16_acc keeps slot j % 64 of a
 * position j in memory and loads and stores its row for every position;
 * here, for each slot s and a range of 96 dimensions, the positions s,
 * s + 64, s + 128, ... of four queries are summed in 4 x 6 registers and
 * stored once (slots no position reaches are stored as zeros), and each
 * row of V is converted once for the four.  Every slot's sum is the same
 * fma chain over the same positions in the same increasing order: the same
 * bits as zeroing, ggml_vp_f16_acc and ggml_vp_finish.
 */
#define VP_DIMS 96				/* dimensions per pass: 6 registers of 16 */
_Static_assert(P3_GGML_VP_QUERIES == 4, "vp_slots4 keeps four queries' slots (the scratch attention_group gives it)");

INLINE __mmask16
lanes_upto(int64_t r)
{
	return r >= 16 ? (__mmask16) 0xFFFF : r <= 0 ? (__mmask16) 0 : (__mmask16) ((1u << r) - 1);
}

/* slots of queries i < nq (<= 4) at slots + i * sstride: the 64 slot rows of dimensions d0 .. d0 + 95 */
static void
vp_slots4(float *slots, size_t sstride, const float *p, size_t pstride, const int32_t *npos, int32_t nq,
		  const uint8_t *v, int32_t blk, size_t bstride, size_t rstride, int32_t hd, int32_t d0)
{
	int32_t		n[4],
				maxn = 0;
	__mmask16	m[6];
	int			nbytes = 2 * (hd - d0 < VP_DIMS ? hd - d0 : VP_DIMS);

	for (int i = 0; i < 4; i++)
	{
		n[i] = i < nq ? npos[i] : 0;
		maxn = n[i] > maxn ? n[i] : maxn;
	}
	for (int c = 0; c < 6; c++)
		m[c] = lanes_upto(hd - d0 - 16 * c);
	for (int32_t s = 0; s < P3_GGML_VP_SLOTS; s++)
	{
		__m512		acc[4][6];

#pragma GCC unroll 24
		for (int e = 0; e < 24; e++)
			acc[e / 6][e % 6] = _mm512_setzero_ps();
		for (int32_t j = s; j < maxn; j += P3_GGML_VP_SLOTS)
		{
			const uint16_t *row = (const uint16_t *) (const void *) (v + (size_t) (j / blk) * bstride +
																	 (size_t) (j % blk) * rstride) + d0;
			__m512		x[6];

			if (j + P3_GGML_VP_SLOTS < maxn)	/* the slot's next row, 64 positions (four blocks) on */
			{
				int32_t		jn = j + P3_GGML_VP_SLOTS;
				const char *next = (const char *) (v + (size_t) (jn / blk) * bstride + (size_t) (jn % blk) * rstride) + 2 * d0;

				for (int b = 0; b < nbytes; b += 64)
					_mm_prefetch(next + b, _MM_HINT_T0);
			}
#pragma GCC unroll 6
			for (int c = 0; c < 6; c++)
				x[c] = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m[c], row + 16 * c));
#pragma GCC unroll 4
			for (int i = 0; i < 4; i++)
				if (j < n[i])
				{
					__m512		pj = _mm512_set1_ps(p[(size_t) i * pstride + j]);

#pragma GCC unroll 6
					for (int c = 0; c < 6; c++)
						acc[i][c] = _mm512_fmadd_ps(x[c], pj, acc[i][c]);
				}
		}
#pragma GCC unroll 24
		for (int e = 0; e < 24; e++)
			if (e / 6 < nq)
				_mm512_mask_storeu_ps(slots + (size_t) (e / 6) * sstride + (size_t) s * hd + d0 + 16 * (e % 6), m[e % 6],
									  acc[e / 6][e % 6]);
	}
}

static void
ggml_vp_f16_blocks4(float *out, size_t ostride, const float *p, size_t pstride, const int32_t *npos, int32_t nq,
					const uint8_t *v, int32_t blk, size_t bstride, size_t rstride, int32_t hd, float *slots)
{
	size_t		sstride = (size_t) P3_GGML_VP_SLOTS * hd;

	for (int32_t i0 = 0; i0 < nq; i0 += P3_GGML_VP_QUERIES)
	{
		int32_t		m = nq - i0 < P3_GGML_VP_QUERIES ? nq - i0 : P3_GGML_VP_QUERIES;

		for (int32_t d0 = 0; d0 < hd; d0 += VP_DIMS)
			vp_slots4(slots, sstride, p + (size_t) i0 * pstride, pstride, npos + i0, m, v, blk, bstride, rstride, hd, d0);
		for (int32_t i = 0; i < m; i++)
			ggml_vp_finish(out + (size_t) (i0 + i) * ostride, slots + (size_t) i * sstride, hd);
	}
}

DEF_VEC_WRAPPERS(IQ4_XS, vec_dot_iq4_xs_nt)
DEF_VEC_WRAPPERS(Q3_K, vec_dot_q3_k_nt)
DEF_VEC_WRAPPERS(Q2_K, vec_dot_q2_k_nt)

#pragma GCC pop_options

/* Fill the avx512 set (compiled without the target options: it only stores pointers). */
void
p3_kernels_fill_avx512(P3KernelSet *k)
{
	k->name = "avx512";
	X86_FILL_SET(k);
	k->ggml_dot_f16_keys = ggml_dot_f16_keys16;
	k->ggml_vp_f16_blocks = ggml_vp_f16_blocks4;
	p3_gemm_fill_avx512(k);
}

#endif							/* __x86_64__ */
