/*
 * kernels_avx2.c — the "avx2" kernel set: AVX2 + FMA + F16C, for x86 CPUs
 * without AVX-512 (and for valgrind, which cannot run AVX-512).
 *
 * Every function here is compiled for those instructions by the target
 * pragma below and is only reachable through p3_kernels_fill_avx2, which
 * kernels_x86.c calls after checking the CPU.  What this set shares with
 * the "avx512" set (the float layout, the float dots, the quantizers, the
 * dequant / fused dot_f32 loop, the 256-bit helpers) is written once in
 * kernels_x86_common.h, on the 8-lane vector layer defined below; tails
 * go through small zeroed buffers rather than masked loads.  Here:
 *   - the decoders of the quantized formats to f32 (the reference's
 *     arithmetic), 32 values in four registers per call;
 *   - the integer dots: weights unpacked to bytes, vpmaddubsw pair sums,
 *     then vpmaddwd with the sub-block scales (K-quants) or with ones
 *     (32-element formats, |w| against sign-moved activations); exact
 *     block sums, float combination in lanes; one inline kernel per format
 *     for NT activation rows (vec_dot: NT = 1, vec_dot_ntok: NT = 4, the
 *     same bits per row).
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels_x86.h"
#include "quant_blocks.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

#define INLINE static inline __attribute__((always_inline))

/* ---------------------------------------------------------------------
 * the vector layer of the shared kernels (see kernels_x86_common.h)
 * --------------------------------------------------------------------- */

#define VL 8
/* two rows of four accumulators plus four weight registers fit in the 16 registers */
#define X86_NTOK_ROWS 2
typedef __m256 vfloat;

/* the arithmetic: the 8-lane intrinsics */
INLINE __m256
vf_zero(void)
{
	return _mm256_setzero_ps();
}

INLINE __m256
vf_load(const float *p)
{
	return _mm256_loadu_ps(p);
}

INLINE void
vf_store(float *p, __m256 v)
{
	_mm256_storeu_ps(p, v);
}

INLINE __m256
vf_fmadd(__m256 a, __m256 b, __m256 c)
{
	return _mm256_fmadd_ps(a, b, c);
}

/* the last r < 8 elements as a zero-padded register */
INLINE __m256
vf_load_part(const float *p, int r)
{
	float		buf[8] = {0};

	memcpy(buf, p, (size_t) r * sizeof(float));
	return _mm256_loadu_ps(buf);
}

INLINE void
vf_store_part(float *p, __m256 v, int r)
{
	float		buf[8];

	_mm256_storeu_ps(buf, v);
	memcpy(p, buf, (size_t) r * sizeof(float));
}

/* the mask of the r live lanes */
INLINE __m256
tail_mask(int r)
{
	static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

	return _mm256_loadu_ps((const float *) (m + 8 - r));
}

/* acc + a * b in the live lanes, acc elsewhere */
INLINE __m256
vf_fmadd_part(__m256 a, __m256 b, __m256 acc, int r)
{
	return _mm256_blendv_ps(acc, _mm256_fmadd_ps(a, b, acc), tail_mask(r));
}

/* 8 f16 values as floats (vcvtph2ps) */
INLINE __m256
vf_load_f16(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) p));
}

INLINE __m256
vf_load_f16_part(const uint16_t *p, int r)
{
	uint16_t	buf[8] = {0};

	memcpy(buf, p, (size_t) r * sizeof(uint16_t));
	return vf_load_f16(buf);
}

/* 8 bf16 values as floats: the bits shifted up */
INLINE __m256
vf_load_bf16(const uint16_t *p)
{
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *) p)), 16));
}

INLINE __m256
vf_load_bf16_part(const uint16_t *p, int r)
{
	uint16_t	buf[8] = {0};

	memcpy(buf, p, (size_t) r * sizeof(uint16_t));
	return vf_load_bf16(buf);
}

/* 8 f16 values to f32 exactly as p3_fp16_to_fp32 (signalling NaNs, rare, converted one by one) */
INLINE __m256
vf_load_f16_exact(const uint16_t *p)
{
	__m128i		h = _mm_loadu_si128((const __m128i *) p);
	__m128i		snan = _mm_andnot_si128(_mm_cmpeq_epi16(_mm_and_si128(h, _mm_set1_epi16(0x3FF)), _mm_setzero_si128()),
										_mm_cmpeq_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7E00)), _mm_set1_epi16(0x7C00)));

	if (_mm_movemask_epi8(snan))
	{
		float		buf[8];

		for (int j = 0; j < 8; j++)
			buf[j] = p3_fp16_to_fp32(p[j]);
		return _mm256_loadu_ps(buf);
	}
	return _mm256_cvtph_ps(h);
}

INLINE __m256
vf_load_f16_exact_part(const uint16_t *p, int r)
{
	uint16_t	buf[8] = {0};

	memcpy(buf, p, (size_t) r * sizeof(uint16_t));
	return vf_load_f16_exact(buf);
}

/* 8 floats to f16, round to nearest even */
INLINE void
vf_store_f16(uint16_t *p, __m256 v)
{
	_mm_storeu_si128((__m128i *) p, _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

INLINE void
vf_store_f16_part(uint16_t *p, __m256 v, int r)
{
	uint16_t	buf[8];

	vf_store_f16(buf, v);
	memcpy(p, buf, (size_t) r * sizeof(uint16_t));
}

/* the sum of the 8 lanes, in a fixed order */
INLINE float
hsum8(__m256 v)
{
	__m128		s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
	s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
	return _mm_cvtss_f32(s4);
}

/* the fixed reduction of the four accumulators of the float dots: ggml_vec_dot_f32's / _f16's */
INLINE float
reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
	/* ggml's GGML_F32x8_REDUCE: (0 + 2) + (1 + 3), then the two hadds */
	__m256		v = _mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3));
	__m128		t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	t = _mm_hadd_ps(t, t);
	return _mm_cvtss_f32(_mm_hadd_ps(t, t));
}

/* the sum of 8 int32 lanes */
INLINE int
hsum8_epi32(__m256i v)
{
	__m128i		s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
	return _mm_cvtsi128_si32(s);
}

/* the largest of the 8 lanes */
INLINE float
vf_hmax(__m256 v)
{
	__m128		s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* |v| per lane (the sign bit cleared) */
INLINE __m256
abs8(__m256 v)
{
	return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v);
}

/* largest |x| folded into m; NaN lanes of x are ignored (m is the second operand) */
INLINE __m256
absmax_fold(__m256 x, __m256 m)
{
	return _mm256_max_ps(abs8(x), m);
}

/* bit k set where |v[k]| == a */
INLINE unsigned
vf_abs_eq(__m256 v, float a)
{
	return (unsigned) _mm256_movemask_ps(_mm256_cmp_ps(abs8(v), _mm256_set1_ps(a), _CMP_EQ_OQ));
}

/* NaN lanes -> 0 */
INLINE __m256
nan_to_zero(__m256 v)
{
	return _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
}

/* v clamped to [-lim, lim] and rounded to nearest even (llama.cpp's x86 Q8_0 rule), NaN -> 0, as int32 */
INLINE __m256i
round_even_clamp(__m256 v, float lim)
{
	v = nan_to_zero(v);
	v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-lim)), _mm256_set1_ps(lim));
	return _mm256_cvttps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* 32 int32 (in four registers, values in int8 range) -> 32 bytes in order */
INLINE __m256i
pack32_epi8(__m256i q0, __m256i q1, __m256i q2, __m256i q3)
{
	__m256i		p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));

	return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Q8_0 / Q8_1 codes of v[0..3] * id (nearest even, clamped); returns their sum */
INLINE int
q8_codes32(const __m256 *v, float id, int8_t *qs)
{
	__m256i		q[4];

#pragma GCC unroll 4
	for (int k = 0; k < 4; k++)
		q[k] = round_even_clamp(_mm256_mul_ps(v[k], _mm256_set1_ps(id)), 127.0f);
	_mm256_storeu_si256((__m256i *) qs, pack32_epi8(q[0], q[1], q[2], q[3]));
	return hsum8_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

/* Q8_K codes of 32 values x * iscale (nearest even, clamped, NaN -> 0) and the sums of their halves */
INLINE void
q8k_codes32(const float *x, float iscale, int8_t *qs, int16_t *bsums)
{
	__m256i		q[4];

#pragma GCC unroll 4
	for (int k = 0; k < 4; k++)
	{
		__m256		v = nan_to_zero(_mm256_mul_ps(_mm256_set1_ps(iscale), _mm256_loadu_ps(x + 8 * k)));

		v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
		q[k] = _mm256_cvttps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	}
	_mm256_storeu_si256((__m256i *) qs, pack32_epi8(q[0], q[1], q[2], q[3]));
	bsums[0] = (int16_t) hsum8_epi32(_mm256_add_epi32(q[0], q[1]));
	bsums[1] = (int16_t) hsum8_epi32(_mm256_add_epi32(q[2], q[3]));
}

/* the value in every lane */
INLINE __m256
vf_set1(float a)
{
	return _mm256_set1_ps(a);
}

/*
 * ggml's lane sums (ggml_tree in kernels_x86_common.h): GGML_F32x8_REDUCE's
 * two hadds for the dots, the softmax's movehl / movehdup (hsum8)
 */
INLINE float
vf_hsum_dot(__m256 v)
{
	__m128		t = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	t = _mm_hadd_ps(t, t);
	return _mm_cvtss_f32(_mm_hadd_ps(t, t));
}

INLINE float
vf_hsum_sm(__m256 v)
{
	return hsum8(v);
}

/*
 * ggml_v_expf of ggml's AVX2 build (ggml-cpu/vec.h, MIT licence, from
 * ARM's optimized routines): k = 2^n by the exponent bits, k + k * poly(b);
 * |n| > 126 scaled in two steps, |n| > 192 gives 0 or infinity.
 */
INLINE __m256
vf_expf_ggml(__m256 x)
{
	const __m256 r = _mm256_set1_ps(0x1.8p23f);
	const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
	const __m256 n = _mm256_sub_ps(z, r);
	const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
									  _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
	const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
	const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
	const __m256i c = _mm256_castps_si256(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n),
														_mm256_set1_ps(126), _CMP_GT_OQ));
	const __m256 u = _mm256_mul_ps(b, b);
	const __m256 j = _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b,
																	 _mm256_set1_ps(0x1.573e2ep-5f)), u,
													 _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b,
																	 _mm256_set1_ps(0x1.fffdb6p-2f))),
									 u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));

	if (!_mm256_movemask_ps(_mm256_castsi256_ps(c)))
		return _mm256_fmadd_ps(j, k, k);
	{
		const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
										   _mm256_set1_epi32((int) 0x82000000u));
		const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
		const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
		const __m256i d = _mm256_castps_si256(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n),
															_mm256_set1_ps(192), _CMP_GT_OQ));

		return _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
							_mm256_andnot_ps(_mm256_castsi256_ps(d),
											 _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(c),
																		_mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
														  _mm256_andnot_ps(_mm256_castsi256_ps(c),
																		   _mm256_fmadd_ps(k, j, k)))));
	}
}

#include "kernels_x86_common.h"

/*
 * y += a * x (multiply, then add: the reference's rounding exactly).  Not
 * shared: a tail through the zeroed buffers would cost this short kernel
 * (attention, once per cached position) a stack frame on every call.
 */
static void
axpy_f32(float *y, float a, const float *x, int64_t n)
{
	__m256		av = _mm256_set1_ps(a);
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(av, _mm256_loadu_ps(x + i))));
	for (; i < n; i++)
		y[i] += a * x[i];
}

static void
axpy_f16(float *y, float a, const uint16_t *x, int64_t n)
{
	__m256		av = _mm256_set1_ps(a);
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(av, vf_load_f16(x + i))));
	for (; i < n; i++)
		y[i] += a * h2f(x[i]);
}

/* ---------------------------------------------------------------------
 * decoders of the quantized formats to f32 (the reference's arithmetic):
 * the 32 values of a (sub-)block in four registers, for DEF_FLOAT_KERNELS
 * --------------------------------------------------------------------- */

/* 8 bytes -> 8 int32 */
INLINE __m256i
u8x8(const uint8_t *p)
{
	return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *) p));
}

/* 8 signed bytes -> 8 int32 */
INLINE __m256i
s8x8(const int8_t *p)
{
	return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *) p));
}

/* Q8_0: (float) q * d */
INLINE void
dec_q8_0(const P3BlockQ8_0 *b, __m256 *v)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));

#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
		v[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(s8x8(b->qs + 8 * k)), d);
}

/* nibble codes of a 16-byte group: k < 2 low nibbles of bytes 8k.., k >= 2 high nibbles of 8(k-2).. */
INLINE __m256i
nib8(const uint8_t *qs, int k)
{
	__m256i		q = u8x8(qs + 8 * (k & 1));

	return k < 2 ? _mm256_and_si256(q, _mm256_set1_epi32(15)) : _mm256_srli_epi32(q, 4);
}

/* Q4_0: (float) (q - 8) * d */
INLINE void
dec_q4_0(const P3BlockQ4_0 *b, __m256 *v)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));

#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
		v[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(nib8(b->qs, k), _mm256_set1_epi32(8))), d);
}

/* Q4_1: (float) q * d + m */
INLINE void
dec_q4_1(const P3BlockQ4_1 *b, __m256 *v)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));
	__m256		m = _mm256_set1_ps(h2f(b->m));

#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
		v[k] = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(nib8(b->qs, k)), d), m);
}

/* IQ4_NL: d * T[q] */
INLINE void
dec_iq4_nl(const P3BlockIQ4_NL *b, __m256 *v)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));
	__m128i		tab = _mm_loadu_si128((const __m128i *) p3_iq4nl_values);

#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
	{
		__m128i		q = _mm_loadl_epi64((const __m128i *) (b->qs + 8 * (k & 1)));

		q = k < 2 ? _mm_and_si128(q, _mm_set1_epi8(15)) : _mm_and_si128(_mm_srli_epi16(q, 4), _mm_set1_epi8(15));
		v[k] = _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_shuffle_epi8(tab, q))));
	}
}

/* the 5th bits of 8 elements e0 .. e0+7 (bit e of qh) as 0 / 16 in int32 lanes */
INLINE __m256i
bit5x8(uint32_t qh, int e0)
{
	__m256i		bits = _mm256_srlv_epi32(_mm256_set1_epi32((int) (qh >> e0)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));

	return _mm256_slli_epi32(_mm256_and_si256(bits, _mm256_set1_epi32(1)), 4);
}

/* Q5_0: (float) (q - 16) * d, q with its 5th bit (nib8's order: group k holds elements 8k .. 8k+7) */
INLINE void
dec_q5_0(const P3BlockQ5_0 *b, __m256 *v)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));
	uint32_t	qh;

	memcpy(&qh, b->qh, 4);
#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
	{
		__m256i		q = _mm256_or_si256(nib8(b->qs, k), bit5x8(qh, 8 * k));

		v[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q, _mm256_set1_epi32(16))), d);
	}
}

/* Q5_1: (float) q * d + m */
INLINE void
dec_q5_1(const P3BlockQ5_1 *b, __m256 *v)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));
	__m256		m = _mm256_set1_ps(h2f(b->m));
	uint32_t	qh;

	memcpy(&qh, b->qh, 4);
#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
	{
		__m256i		q = _mm256_or_si256(nib8(b->qs, k), bit5x8(qh, 8 * k));

		v[k] = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(q), d), m);
	}
}

DEF_FLOAT_KERNELS(Q8_0, P3BlockQ8_0, 32, , dec_q8_0(b, v))
DEF_FLOAT_KERNELS(Q4_0, P3BlockQ4_0, 32, , dec_q4_0(b, v))
DEF_FLOAT_KERNELS(Q4_1, P3BlockQ4_1, 32, , dec_q4_1(b, v))
DEF_FLOAT_KERNELS(Q5_0, P3BlockQ5_0, 32, , dec_q5_0(b, v))
DEF_FLOAT_KERNELS(Q5_1, P3BlockQ5_1, 32, , dec_q5_1(b, v))
DEF_FLOAT_KERNELS(IQ4_NL, P3BlockIQ4_NL, 32, , dec_iq4_nl(b, v))

/*
 * Q4_K / Q5_K sub-block j (32 elements): d1 * q - m1 with d1 = d * sc[j],
 * m1 = dmin * mn[j]; q = nibble (low for even j, high for odd j) of
 * qs[32 (j / 2) + l], plus 16 · bit j of qh[l] for Q5_K.
 */
INLINE void
dec_k_affine_sub(const uint8_t *qs, const uint8_t *qh, int j, float d1, float m1, __m256 *v)
{
	__m256		dv = _mm256_set1_ps(d1);
	__m256		mv = _mm256_set1_ps(m1);
	const uint8_t *q = qs + 32 * (j / 2);

#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
	{
		__m256i		c = u8x8(q + 8 * k);

		c = (j & 1) ? _mm256_srli_epi32(c, 4) : _mm256_and_si256(c, _mm256_set1_epi32(15));
		if (qh != NULL)
		{
			__m256i		h = _mm256_and_si256(_mm256_srli_epi32(u8x8(qh + 8 * k), j), _mm256_set1_epi32(1));

			c = _mm256_or_si256(c, _mm256_slli_epi32(h, 4));
		}
		v[k] = _mm256_sub_ps(_mm256_mul_ps(dv, _mm256_cvtepi32_ps(c)), mv);
	}
}

DEF_FLOAT_KERNELS(Q4_K, P3BlockQ4_K, P3_QK_K, K_AFFINE_SETUP(true), dec_k_affine_sub(b->qs, NULL, r, d1[r], m1[r], v))
DEF_FLOAT_KERNELS(Q5_K, P3BlockQ5_K, P3_QK_K, K_AFFINE_SETUP(true), dec_k_affine_sub(b->qs, b->qh, r, d1[r], m1[r], v))

/*
 * Q6_K: the codes 0..63 of half h in four registers of 32 bytes, elements
 * 128h + 32k .. (k = 0..3): low nibbles of ql[64h ..] / ql[64h + 32 ..]
 * with qh bits 0-1 / 2-3, then high nibbles with bits 4-5 / 6-7.
 */
INLINE void
q6_k_codes(const P3BlockQ6_K *b, int h, __m256i *q)
{
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	__m256i		ql0 = _mm256_loadu_si256((const __m256i *) (b->ql + 64 * h));
	__m256i		ql1 = _mm256_loadu_si256((const __m256i *) (b->ql + 64 * h + 32));
	__m256i		qh = _mm256_loadu_si256((const __m256i *) (b->qh + 32 * h));

	q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4),
						   _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x03)), 4));
	q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4),
						   _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8(0x0C)), 2));
	q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
						   _mm256_and_si256(qh, _mm256_set1_epi8(0x30)));
	q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
						   _mm256_srli_epi16(_mm256_and_si256(qh, _mm256_set1_epi8((char) 0xC0)), 2));
}

/* 32 signed bytes (values in int8 range) times per-16 factors f0, f1, as four registers of 8 floats */
INLINE void
bytes_times(__m256i c, float f0, float f1, __m256 *v)
{
	__m128i		lo = _mm256_castsi256_si128(c);
	__m128i		hi = _mm256_extracti128_si256(c, 1);

	v[0] = _mm256_mul_ps(_mm256_set1_ps(f0), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)));
	v[1] = _mm256_mul_ps(_mm256_set1_ps(f0), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))));
	v[2] = _mm256_mul_ps(_mm256_set1_ps(f1), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)));
	v[3] = _mm256_mul_ps(_mm256_set1_ps(f1), _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))));
}

/* d * (float) sc[g] of the 16 groups, as the reference's left-to-right d * sc * q */
INLINE void
q6_k_factors(const P3BlockQ6_K *b, float *dsc)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));

	_mm256_storeu_ps(dsc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(s8x8(b->scales))));
	_mm256_storeu_ps(dsc + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(s8x8(b->scales + 8))));
}

/*
 * Elements 32r .. 32r+31 of a Q6_K block, dsc[g] * (q - 32): the codes of
 * half r / 4 are unpacked into q when its first 32 elements are asked for.
 */
INLINE void
dec_q6_k_32(const P3BlockQ6_K *b, const float *dsc, __m256i *q, int r, __m256 *v)
{
	if (r % 4 == 0)
		q6_k_codes(b, r / 4, q);
	bytes_times(_mm256_sub_epi8(q[r % 4], _mm256_set1_epi8(32)), dsc[2 * r], dsc[2 * r + 1], v);
}

DEF_FLOAT_KERNELS(Q6_K, P3BlockQ6_K, P3_QK_K, float dsc[16]; __m256i q6[4]; q6_k_factors(b, dsc),
				  dec_q6_k_32(b, dsc, q6, r, v))

/* the 6-bit scale minus 32 of IQ4_XS sub-block ib (kernels_avx512.c's 8-at-once iq4xs_scales is slower here) */
INLINE int
iq4xs_scale(const P3BlockIQ4_XS *b, int ib)
{
	return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((b->scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

/*
 * The 2-bit codes of elements 32j .. 32j+31 of a Q2_K / Q3_K block (j = 4h
 * + s): bits 2s of qs[32h + l].
 */
INLINE __m256i
codes2_32(const uint8_t *qs, int j)
{
	__m256i		q = _mm256_loadu_si256((const __m256i *) (qs + 32 * (j / 4)));

	return _mm256_and_si256(_mm256_srl_epi16(q, _mm_cvtsi32_si128(2 * (j % 4))), _mm256_set1_epi8(3));
}

/* Q3_K elements 32j ..: q + 4 (0..7), 4 added where bit j of hmask[l] is set */
INLINE __m256i
q3k_codes32(const P3BlockQ3_K *b, int j)
{
	__m256i		hb = _mm256_and_si256(_mm256_srl_epi16(_mm256_loadu_si256((const __m256i *) b->hmask), _mm_cvtsi32_si128(j)),
									  _mm256_set1_epi8(1));

	return _mm256_or_si256(codes2_32(b->qs, j), _mm256_slli_epi16(hb, 2));
}

/*
 * The 32 values of elements 32j .. of a block, as the reference computes
 * them: IQ4_XS dl * T[q] (dl = d * (ls - 32)); Q3_K dl * q (dl = d * sc[g]);
 * Q2_K dl * q - ml (dl = d * (sc & 15), ml = dmin * (sc >> 4)).
 */
INLINE void
dec_iq4_xs_32(const P3BlockIQ4_XS *b, float d, int j, __m256 *v)
{
	const float dl = d * (float) iq4xs_scale(b, j);

	bytes_times(iq4nl_values32(b->qs + 16 * j), dl, dl, v);
}

INLINE void
dec_q3_k_32(const P3BlockQ3_K *b, const int *sc, float d, int j, __m256 *v)
{
	bytes_times(_mm256_sub_epi8(q3k_codes32(b, j), _mm256_set1_epi8(4)),
				d * (float) sc[2 * j], d * (float) sc[2 * j + 1], v);
}

INLINE void
dec_q2_k_32(const P3BlockQ2_K *b, float d, float dmin, int j, __m256 *v)
{
	const uint8_t s0 = b->scales[2 * j];
	const uint8_t s1 = b->scales[2 * j + 1];

	bytes_times(codes2_32(b->qs, j), d * (float) (s0 & 15), d * (float) (s1 & 15), v);
	v[0] = _mm256_sub_ps(v[0], _mm256_set1_ps(dmin * (float) (s0 >> 4)));
	v[1] = _mm256_sub_ps(v[1], _mm256_set1_ps(dmin * (float) (s0 >> 4)));
	v[2] = _mm256_sub_ps(v[2], _mm256_set1_ps(dmin * (float) (s1 >> 4)));
	v[3] = _mm256_sub_ps(v[3], _mm256_set1_ps(dmin * (float) (s1 >> 4)));
}

DEF_FLOAT_KERNELS(IQ4_XS, P3BlockIQ4_XS, P3_QK_K, const float d = h2f(b->d), dec_iq4_xs_32(b, d, r, v))
DEF_FLOAT_KERNELS(Q3_K, P3BlockQ3_K, P3_QK_K, const float d = h2f(b->d); int sc[16]; p3_q3k_scales(b->scales, sc),
				  dec_q3_k_32(b, sc, d, r, v))
DEF_FLOAT_KERNELS(Q2_K, P3BlockQ2_K, P3_QK_K, const float d = h2f(b->d); const float dmin = h2f(b->dmin),
				  dec_q2_k_32(b, d, dmin, r, v))

/* ---------------------------------------------------------------------
 * integer dot products with quantized activations, for NT rows at once
 * --------------------------------------------------------------------- */

/* 8 dword lanes: the pair sums of the unsigned codes q · the 32 activation bytes at y, times the word scales s */
INLINE __m256i
scaled_pairs(__m256i q, const int8_t *y, __m256i s)
{
	return _mm256_madd_epi16(_mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *) y)), s);
}

/* 8 int32 lane sums of w · y for signed w (|w| against y with w's sign) */
INLINE __m256i
sdot32(__m256i aw, __m256i sgn, __m256i y)
{
	return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(y, sgn)), _mm256_set1_epi16(1));
}

/* the 32-element formats with Q8_0 activations: signed weight bytes SW (kernels_x86_common.h) */
#define DEF_VEC_DOT_S8(NAME, BLOCK, SW) \
INLINE void \
vec_dot_##NAME##_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt) \
{ \
	const BLOCK *x = vw; \
	__m256		acc[NTOK]; \
	for (int t = 0; t < nt; t++) \
		acc[t] = _mm256_setzero_ps(); \
	for (int64_t i = 0; i < n / 32; i++) \
	{ \
		__m256i		sw = SW(&x[i]); \
		__m256i		aw = _mm256_sign_epi8(sw, sw); \
		const float dx = h2f(x[i].d); \
		_Pragma("GCC unroll 4") \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_0 *y = ACT_ROW(P3BlockQ8_0, va, stride, t) + i; \
			__m256i		s = sdot32(aw, sw, _mm256_loadu_si256((const __m256i *) y->qs)); \
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dx * h2f(y->d)), acc[t]); \
		} \
	} \
	for (int t = 0; t < nt; t++) \
		out[t] = hsum8(acc[t]); \
} \
DEF_VEC_WRAPPERS(NAME, vec_dot_##NAME##_nt)

DEF_VEC_DOT_S8(Q8_0, P3BlockQ8_0, sw_q8_0)
DEF_VEC_DOT_S8(Q4_0, P3BlockQ4_0, sw_q4_0)
DEF_VEC_DOT_S8(Q5_0, P3BlockQ5_0, sw_q5_0)
DEF_VEC_DOT_S8(IQ4_NL, P3BlockIQ4_NL, sw_iq4_nl)

/* Q4_1 / Q5_1 · Q8_1: dx dy Σ q y + m s per block, unsigned weight bytes UW */
#define DEF_VEC_DOT_U8_Q8_1(NAME, BLOCK, UW) \
INLINE void \
vec_dot_##NAME##_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt) \
{ \
	const BLOCK *x = vw; \
	__m256		acc[NTOK]; \
	float		summ[NTOK]; \
	for (int t = 0; t < nt; t++) \
	{ \
		acc[t] = _mm256_setzero_ps(); \
		summ[t] = 0.0f; \
	} \
	for (int64_t i = 0; i < n / 32; i++) \
	{ \
		__m256i		uw = UW(&x[i]); \
		const float dx = h2f(x[i].d), mx = h2f(x[i].m); \
		_Pragma("GCC unroll 4") \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_1 *y = ACT_ROW(P3BlockQ8_1, va, stride, t) + i; \
			__m256i		s = scaled_pairs(uw, y->qs, _mm256_set1_epi16(1)); \
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dx * h2f(y->d)), acc[t]); \
			summ[t] += mx * h2f(y->s); \
		} \
	} \
	for (int t = 0; t < nt; t++) \
		out[t] = hsum8(acc[t]) + summ[t]; \
} \
DEF_VEC_WRAPPERS(NAME, vec_dot_##NAME##_nt)

DEF_VEC_DOT_U8_Q8_1(Q4_1, P3BlockQ4_1, uw_q4_1)
DEF_VEC_DOT_U8_Q8_1(Q5_1, P3BlockQ5_1, uw_q5_1)

/*
 * Q4_K / Q5_K · Q8_K: per chunk c, sub-blocks 2c (low nibbles) and 2c+1
 * (high nibbles) of qs[32c ..], pair sums times the sub-block scale by
 * vpmaddwd, exact int32 lanes per block; mins against the bsums.  Combined
 * as llama.cpp does (its AVX2 code, which its AVX-512 builds run too):
 * Q5_K as ggml_vec_dot_q5_K_q8_K, one FMA per block and lane, the mins in a
 * scalar FMA chain added after hsum8; Q4_K as its repack routine
 * (ggml_gemv_q4_K_8x8_q8_K, taken for every weight of 8k rows): the exact
 * block sums in a scale chain and a min chain, their difference.
 */
INLINE void
vec_dot_k_affine_nt(const void *vw, size_t xsize, int five, const void *va, size_t stride,
					int64_t n, float *out, const int nt)
{
	const uint8_t *xb = vw;
	const int64_t nb = n / P3_QK_K;
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	__m256		acc[NTOK];
	float		accs[NTOK],
				accm[NTOK];

	for (int t = 0; t < nt; t++)
	{
		acc[t] = _mm256_setzero_ps();
		accs[t] = accm[t] = 0.0f;
	}
	for (int64_t i = 0; i < nb; i++, xb += xsize)
	{
		/* Q4_K and Q5_K share d, dmin, scales; qs (and qh) follow */
		const P3BlockQ4_K *b4 = (const P3BlockQ4_K *) xb;
		const uint8_t *qh = xb + offsetof(P3BlockQ5_K, qh);
		const uint8_t *qs = five ? xb + offsetof(P3BlockQ5_K, qs) : xb + offsetof(P3BlockQ4_K, qs);
		uint64_t	sc8,
					mn8;
		__m256i		mins16;
		__m256i		hv = _mm256_setzero_si256();
		__m256i		si[NTOK];
		const float dx = h2f(b4->d);
		const float dmx = h2f(b4->dmin);

		k4_unpack(b4->scales, &sc8, &mn8);
		mins16 = k4_mins16(mn8);
		if (five)
			hv = _mm256_loadu_si256((const __m256i *) qh);
		for (int t = 0; t < nt; t++)
			si[t] = _mm256_setzero_si256();
#pragma GCC unroll 16
		for (int c = 0; c < 4; c++)
		{
			__m256i		q4 = _mm256_loadu_si256((const __m256i *) (qs + 32 * c));
			__m256i		lo = _mm256_and_si256(q4, m4);
			__m256i		hi = _mm256_and_si256(_mm256_srli_epi16(q4, 4), m4);
			__m256i		s_lo = _mm256_set1_epi16((short) ((sc8 >> (16 * c)) & 0xFF));
			__m256i		s_hi = _mm256_set1_epi16((short) ((sc8 >> (16 * c + 8)) & 0xFF));

			if (five)
			{
				__m256i		one = _mm256_set1_epi8(1);

				lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hv, _mm_cvtsi32_si128(2 * c)), one), 4));
				hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srl_epi16(hv, _mm_cvtsi32_si128(2 * c + 1)), one), 4));
			}
#pragma GCC unroll 4
			for (int t = 0; t < nt; t++)
			{
				const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
				si[t] = _mm256_add_epi32(si[t], _mm256_add_epi32(scaled_pairs(lo, y->qs + 64 * c, s_lo),
																 scaled_pairs(hi, y->qs + 64 * c + 32, s_hi)));
			}
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			int			m = hsum8_epi32(bsums_madd(y, mins16));

			if (five)
			{
				acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[t]), _mm256_set1_ps(dx * y->d), acc[t]);
				accm[t] = fmaf((float) m, -(dmx * y->d), accm[t]);
			}
			else
			{
				accs[t] = fmaf((float) hsum8_epi32(si[t]), dx * y->d, accs[t]);
				accm[t] = fmaf((float) m, dmx * y->d, accm[t]);
			}
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = five ? hsum8(acc[t]) + accm[t] : accs[t] - accm[t];
}

DEF_VEC_WRAPPERS(Q4_K, vec_dot_k_affine_nt, sizeof(P3BlockQ4_K), 0)
DEF_VEC_WRAPPERS(Q5_K, vec_dot_k_affine_nt, sizeof(P3BlockQ5_K), 1)

/* Q6_K · Q8_K: unsigned codes, 16-element groups with int8 scales, -32 via the bsums */
INLINE void
vec_dot_q6_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ6_K *x = vw;
	__m256		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		__m256i		sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *) x[i].scales));
		__m256i		si[NTOK];
		const float dx = h2f(x[i].d);

#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;

			si[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(bsums_madd(y, sc16), 5));
		}
#pragma GCC unroll 16
		for (int h = 0; h < 2; h++)
		{
			__m256i		q[4];

			q6_k_codes(&x[i], h, q);
#pragma GCC unroll 16
			for (int k = 0; k < 4; k++)
			{
				int			g = 8 * h + 2 * k;
				__m256i		s = _mm256_set_m128i(_mm_set1_epi16(x[i].scales[g + 1]), _mm_set1_epi16(x[i].scales[g]));

#pragma GCC unroll 4
				for (int t = 0; t < nt; t++)
				{
					const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
					si[t] = _mm256_add_epi32(si[t], scaled_pairs(q[k], y->qs + 128 * h + 32 * k, s));
				}
			}
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;

			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[t]), _mm256_set1_ps(dx * y->d), acc[t]);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum8(acc[t]);
}

DEF_VEC_WRAPPERS(Q6_K, vec_dot_q6_k_nt)

/*
 * The 16 signed scales (-32..31) of a Q3_K block as words (see
 * p3_q3k_scales; kernels_avx512.c has them as dwords in one register).
 */
INLINE __m256i
q3k_scales_w(const uint8_t *scales)
{
	uint64_t	lo8;
	uint32_t	hi;
	__m128i		v;
	__m128i		l4;
	__m256i		h0,
				h1,
				h16;

	memcpy(&lo8, scales, 8);
	memcpy(&hi, scales + 8, 4);
	v = _mm_cvtsi64_si128((long long) lo8);
	/* groups 0-7: low nibbles of bytes 0-7, groups 8-15: high nibbles */
	l4 = _mm_unpacklo_epi64(_mm_and_si128(v, _mm_set1_epi8(15)), _mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)));
	/* high 2 bits of group j: bits 2 (j / 4) of byte 8 + j % 4 */
	h0 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int) hi), _mm256_setr_epi32(0, 8, 16, 24, 2, 10, 18, 26)),
						  _mm256_set1_epi32(3));
	h1 = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int) hi), _mm256_setr_epi32(4, 12, 20, 28, 6, 14, 22, 30)),
						  _mm256_set1_epi32(3));
	h16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(h0, h1), 0xD8);
	return _mm256_sub_epi16(_mm256_or_si256(_mm256_cvtepu8_epi16(l4), _mm256_slli_epi16(h16, 4)), _mm256_set1_epi16(32));
}

/* 16 words: [s0 x 8, s1 x 8] (the scales of the two 16-element halves of 32 bytes) */
INLINE __m256i
scale_halves(int s0, int s1)
{
	return _mm256_set_m128i(_mm_set1_epi16((short) s1), _mm_set1_epi16((short) s0));
}

/* IQ4_XS · Q8_K: per sub-block, |w| against sign-moved activations, times ls - 32 */
INLINE void
vec_dot_iq4_xs_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockIQ4_XS *x = vw;
	__m256		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		__m256i		si[NTOK];
		const float dx = h2f(x[i].d);

		for (int t = 0; t < nt; t++)
			si[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++)
		{
			__m256i		w = iq4nl_values32(x[i].qs + 16 * j);
			__m256i		aw = _mm256_sign_epi8(w, w);
			__m256i		sc = _mm256_set1_epi16((short) iq4xs_scale(&x[i], j));

#pragma GCC unroll 4
			for (int t = 0; t < nt; t++)
			{
				const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
				__m256i		p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *) (y->qs + 32 * j)), w));

				si[t] = _mm256_add_epi32(si[t], _mm256_madd_epi16(p, sc));
			}
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[t]), _mm256_set1_ps(dx * ACT_ROW(P3BlockQ8_K, va, stride, t)[i].d), acc[t]);
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum8(acc[t]);
}

/*
 * Q3_K · Q8_K: codes 0..7, 4 subtracted per pair of bytes before the scales
 * (codes · y - 4 · y by two vpmaddubsw), so each int32 lane holds exactly
 * what it holds in ggml's AVX2 ggml_vec_dot_q3_K_q8_K (bytes 4m .. 4m+3 of
 * each 32: lane m), which llama.cpp's AVX2 and AVX-512 builds both run;
 * then, as there, one FMA per block and lane and hsum8.  Q2_K: codes 0..3,
 * the mins through the bsums.
 */
INLINE void
vec_dot_q3_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ3_K *x = vw;
	const __m256i four = _mm256_set1_epi8(4);
	__m256		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		__m256i		si[NTOK];
		int16_t		sc[16];
		__m256i		sc16 = q3k_scales_w(x[i].scales);
		const float dx = h2f(x[i].d);

		_mm256_storeu_si256((__m256i *) sc, sc16);
		for (int t = 0; t < nt; t++)
			si[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++)
		{
			__m256i		q = q3k_codes32(&x[i], j);
			__m256i		s = scale_halves(sc[2 * j], sc[2 * j + 1]);

#pragma GCC unroll 4
			for (int t = 0; t < nt; t++)
			{
				const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
				__m256i		y8 = _mm256_loadu_si256((const __m256i *) (y->qs + 32 * j));
				__m256i		p = _mm256_sub_epi16(_mm256_maddubs_epi16(q, y8), _mm256_maddubs_epi16(four, y8));

				si[t] = _mm256_add_epi32(si[t], _mm256_madd_epi16(p, s));
			}
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[t]), _mm256_set1_ps(dx * ACT_ROW(P3BlockQ8_K, va, stride, t)[i].d), acc[t]);
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum8(acc[t]);
}

/* (see vec_dot_q3_k_nt) */
INLINE void
vec_dot_q2_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ2_K *x = vw;
	__m256		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm256_setzero_ps();
	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		__m256i		si[NTOK];
		__m256i		mins16 = q2k_mins16(x[i].scales);
		const float dx = h2f(x[i].d);
		const float dmx = h2f(x[i].dmin);

		for (int t = 0; t < nt; t++)
			si[t] = _mm256_setzero_si256();
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++)
		{
			__m256i		q = codes2_32(x[i].qs, j);
			__m256i		s = scale_halves(x[i].scales[2 * j] & 15, x[i].scales[2 * j + 1] & 15);

#pragma GCC unroll 4
			for (int t = 0; t < nt; t++)
			{
				const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
				si[t] = _mm256_add_epi32(si[t], scaled_pairs(q, y->qs + 32 * j, s));
			}
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			__m256i		pm = bsums_madd(y, mins16);

			/* the mins first, as ggml's AVX2 ggml_vec_dot_q2_K_q8_K */
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(-(dmx * y->d)), acc[t]);
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[t]), _mm256_set1_ps(dx * y->d), acc[t]);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum8(acc[t]);
}

DEF_VEC_WRAPPERS(IQ4_XS, vec_dot_iq4_xs_nt)
DEF_VEC_WRAPPERS(Q3_K, vec_dot_q3_k_nt)
DEF_VEC_WRAPPERS(Q2_K, vec_dot_q2_k_nt)

#pragma GCC pop_options

/* Fill the avx2 set (compiled without the target options: it only stores pointers). */
void
p3_kernels_fill_avx2(P3KernelSet *k)
{
	k->name = "avx2";
	X86_FILL_SET(k);
}

#endif							/* __x86_64__ */
