/*
 * kernels_avx2.c — the "avx2" kernel set: AVX2 + FMA + F16C, for x86 CPUs
 * without AVX-512 (and for valgrind, which cannot run AVX-512).
 *
 * The same design as kernels_avx512.c with 8-lane registers:
 *   - float dots: four 8-lane accumulators, element i goes to lane i % 8 of
 *     accumulator (i / 8) % 4 (a final partial group of 8 through a zeroed
 *     copy and a blend that leaves the unused lanes untouched), one fixed
 *     reduction; the fused dot_f32[T] decode exactly dequant[T]'s values
 *     into the same lanes, so they have dot_f32_f32(dequant[T](w), x)'s bits;
 *   - integer dots: weights unpacked to bytes, vpmaddubsw pair sums, then
 *     vpmaddwd with the sub-block scales (K-quants) or with ones (32-element
 *     formats, |w| against sign-moved activations); exact block sums, float
 *     combination in lanes; one inline kernel per format for NT activation
 *     rows (vec_dot: NT = 1, vec_dot_ntok: NT = 4, the same bits per row);
 *   - quantizers bit-identical to the reference (see kernels_avx512.c).
 * Tails are read through small zeroed buffers rather than masked loads.
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
#define NTOK P3_KERNEL_NTOK

/* ---------------------------------------------------------------------
 * helpers
 * --------------------------------------------------------------------- */

INLINE float
h2f(uint16_t h)
{
	return _cvtsh_ss(h);
}

/* f32 -> f16 for a stored scale, as the reference's half_sat */
INLINE uint16_t
f2h_sat(float f)
{
	if (f != f)
		return 0;
	if (f > 65504.0f)
		f = 65504.0f;
	else if (f < -65504.0f)
		f = -65504.0f;
	return (uint16_t) _cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}

INLINE float
hsum8(__m256 v)
{
	__m128		s4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
	s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
	return _mm_cvtss_f32(s4);
}

/* the fixed reduction of the four accumulators of the float dots */
INLINE float
reduce4(__m256 a0, __m256 a1, __m256 a2, __m256 a3)
{
	return hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
}

INLINE int
hsum8_epi32(__m256i v)
{
	__m128i		s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
	return _mm_cvtsi128_si32(s);
}

INLINE float
hmax8(__m256 v)
{
	__m128		s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));

	s = _mm_max_ps(s, _mm_movehl_ps(s, s));
	s = _mm_max_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

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

INLINE __m256
nan_to_zero(__m256 v)
{
	return _mm256_and_ps(v, _mm256_cmp_ps(v, v, _CMP_ORD_Q));
}

/* roundf(v) clamped to [-lim, lim], NaN -> 0, as int32 */
INLINE __m256i
round_away_clamp(__m256 v, float lim)
{
	__m256		t;
	__m256		f;
	__m256		half;

	v = nan_to_zero(v);
	v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-lim)), _mm256_set1_ps(lim));
	t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	f = _mm256_sub_ps(v, t);
	half = _mm256_cmp_ps(abs8(f), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
	t = _mm256_add_ps(t, _mm256_and_ps(half, _mm256_or_ps(_mm256_set1_ps(1.0f),
														  _mm256_and_ps(v, _mm256_set1_ps(-0.0f)))));
	return _mm256_cvttps_epi32(t);
}

/* 32 int32 (in four registers, values in int8 range) -> 32 bytes in order */
INLINE __m256i
pack32_epi8(__m256i q0, __m256i q1, __m256i q2, __m256i q3)
{
	__m256i		p = _mm256_packs_epi16(_mm256_packs_epi32(q0, q1), _mm256_packs_epi32(q2, q3));

	return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

INLINE void
k4_unpack(const uint8_t *scales, uint8_t *sc, uint8_t *mn)
{
	uint32_t	s[3];
	uint32_t	v[4];

	memcpy(s, scales, 12);
	v[0] = s[0] & 0x3f3f3f3fu;
	v[1] = (s[2] & 0x0f0f0f0fu) | (((s[0] >> 6) & 0x03030303u) << 4);
	v[2] = s[1] & 0x3f3f3f3fu;
	v[3] = ((s[2] >> 4) & 0x0f0f0f0fu) | (((s[1] >> 6) & 0x03030303u) << 4);
	memcpy(sc, v, 8);
	memcpy(mn, v + 2, 8);
}

/* 8 bytes -> 8 int32 */
INLINE __m256i
u8x8(const uint8_t *p)
{
	return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *) p));
}

INLINE __m256i
s8x8(const int8_t *p)
{
	return _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *) p));
}

/* ---------------------------------------------------------------------
 * float kernels
 * --------------------------------------------------------------------- */

/* the last r < 8 elements as a zero-padded register, and the mask of the live lanes */
INLINE __m256
tail_ps(const float *p, int r)
{
	float		buf[8] = {0};

	memcpy(buf, p, (size_t) r * sizeof(float));
	return _mm256_loadu_ps(buf);
}

INLINE __m256
tail_mask(int r)
{
	static const int32_t m[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};

	return _mm256_loadu_ps((const float *) (m + 8 - r));
}

/* acc + a * b in the live lanes, acc elsewhere */
INLINE __m256
fma_tail(__m256 a, __m256 b, __m256 acc, int r)
{
	return _mm256_blendv_ps(acc, _mm256_fmadd_ps(a, b, acc), tail_mask(r));
}

static float
dot_f32_f32(const float *a, const float *b, int64_t n)
{
	__m256		acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
	int64_t		i = 0;
	int			k = 0;

	for (; i + 32 <= n; i += 32)
	{
		acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc[0]);
		acc[1] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc[1]);
		acc[2] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc[2]);
		acc[3] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc[3]);
	}
	for (; i + 8 <= n; i += 8, k++)
		acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc[k]);
	if (i < n)
		acc[k] = fma_tail(tail_ps(a + i, (int) (n - i)), tail_ps(b + i, (int) (n - i)), acc[k], (int) (n - i));
	return reduce4(acc[0], acc[1], acc[2], acc[3]);
}

/*
 * Rows x0, x1 of dot_f32_f32_ntok over elements [i0, i0 + m) (the pointers
 * are at element i0): per row
 * dot_f32_f32's operations, the four accumulators of each row kept in its
 * state between calls (i0 is a multiple of 64, hence of 32).
 */
INLINE void
dot_f32_f32_two(const float *w, const float *x0, const float *x1, int64_t n, int64_t i0, int64_t m,
				float *st0, float *st1, float *out)
{
	__m256		a[2][4];
	const float *xs[2] = {x0, x1};
	float	   *st[2] = {st0, st1};
	int64_t		i = 0;			/* element i0 + i; i0 % 64 == 0 keeps the lanes */
	int64_t		end = m;
	int			k = 0;

	for (int t = 0; t < 2; t++)
		for (int j = 0; j < 4; j++)
			a[t][j] = i0 == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(st[t] + 8 * j);
	for (; i + 32 <= end; i += 32)
	{
		__m256		w0 = _mm256_loadu_ps(w + i);
		__m256		w1 = _mm256_loadu_ps(w + i + 8);
		__m256		w2 = _mm256_loadu_ps(w + i + 16);
		__m256		w3 = _mm256_loadu_ps(w + i + 24);

#pragma GCC unroll 2
		for (int t = 0; t < 2; t++)
		{
			a[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xs[t] + i), a[t][0]);
			a[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xs[t] + i + 8), a[t][1]);
			a[t][2] = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xs[t] + i + 16), a[t][2]);
			a[t][3] = _mm256_fmadd_ps(w3, _mm256_loadu_ps(xs[t] + i + 24), a[t][3]);
		}
	}
	for (; i + 8 <= end; i += 8, k++)
		for (int t = 0; t < 2; t++)
			a[t][k] = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(xs[t] + i), a[t][k]);
	if (i < end)
		for (int t = 0; t < 2; t++)
			a[t][k] = fma_tail(tail_ps(w + i, (int) (end - i)), tail_ps(xs[t] + i, (int) (end - i)), a[t][k],
							   (int) (end - i));
	for (int t = 0; t < 2; t++)
	{
		if (i0 + m >= n)
			out[t] = reduce4(a[t][0], a[t][1], a[t][2], a[t][3]);
		else
			for (int j = 0; j < 4; j++)
				_mm256_storeu_ps(st[t] + 8 * j, a[t][j]);
	}
}

static void
dot_f32_f32_ntok(const float *w, const float *x, int64_t ldx, int64_t n,
				 int64_t i0, int64_t m, float *state, float *out)
{
	for (int t = 0; t < NTOK; t += 2)
		dot_f32_f32_two(w, x + t * ldx, x + (t + 1) * ldx, n, i0, m,
						state + t * P3_KERNEL_DOT_STATE, state + (t + 1) * P3_KERNEL_DOT_STATE, out + t);
}

INLINE __m256
f16x8(const uint16_t *p)
{
	return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *) p));
}

INLINE __m256
f16_tail(const uint16_t *p, int r)
{
	uint16_t	buf[8] = {0};

	memcpy(buf, p, (size_t) r * sizeof(uint16_t));
	return f16x8(buf);
}

static float
dot_f16_f32(const uint16_t *w, const float *x, int64_t n)
{
	__m256		acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
	int64_t		i = 0;
	int			k = 0;

	for (; i + 32 <= n; i += 32)
	{
		acc[0] = _mm256_fmadd_ps(f16x8(w + i), _mm256_loadu_ps(x + i), acc[0]);
		acc[1] = _mm256_fmadd_ps(f16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), acc[1]);
		acc[2] = _mm256_fmadd_ps(f16x8(w + i + 16), _mm256_loadu_ps(x + i + 16), acc[2]);
		acc[3] = _mm256_fmadd_ps(f16x8(w + i + 24), _mm256_loadu_ps(x + i + 24), acc[3]);
	}
	for (; i + 8 <= n; i += 8, k++)
		acc[k] = _mm256_fmadd_ps(f16x8(w + i), _mm256_loadu_ps(x + i), acc[k]);
	if (i < n)
		acc[k] = fma_tail(f16_tail(w + i, (int) (n - i)), tail_ps(x + i, (int) (n - i)), acc[k], (int) (n - i));
	return reduce4(acc[0], acc[1], acc[2], acc[3]);
}

INLINE __m256
bf16x8(const uint16_t *p)
{
	return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *) p)), 16));
}

INLINE __m256
bf16_tail(const uint16_t *p, int r)
{
	uint16_t	buf[8] = {0};

	memcpy(buf, p, (size_t) r * sizeof(uint16_t));
	return bf16x8(buf);
}

static float
dot_f32_BF16(const void *vw, const float *x, int64_t n)
{
	const uint16_t *w = vw;
	__m256		acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
	int64_t		i = 0;
	int			k = 0;

	for (; i + 32 <= n; i += 32)
	{
		acc[0] = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), acc[0]);
		acc[1] = _mm256_fmadd_ps(bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), acc[1]);
		acc[2] = _mm256_fmadd_ps(bf16x8(w + i + 16), _mm256_loadu_ps(x + i + 16), acc[2]);
		acc[3] = _mm256_fmadd_ps(bf16x8(w + i + 24), _mm256_loadu_ps(x + i + 24), acc[3]);
	}
	for (; i + 8 <= n; i += 8, k++)
		acc[k] = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), acc[k]);
	if (i < n)
		acc[k] = fma_tail(bf16_tail(w + i, (int) (n - i)), tail_ps(x + i, (int) (n - i)), acc[k], (int) (n - i));
	return reduce4(acc[0], acc[1], acc[2], acc[3]);
}

static float
dot_f32_F16(const void *w, const float *x, int64_t n)
{
	return dot_f16_f32(w, x, n);
}

static float
vec_dot_F16(const void *w, const void *a, int64_t n)
{
	return dot_f16_f32(w, a, n);
}

static float
dot_f32_f16(const float *a, const uint16_t *b, int64_t n)
{
	return dot_f16_f32(b, a, n);
}

static float
dot_f32_F32(const void *w, const float *x, int64_t n)
{
	return dot_f32_f32(w, x, n);
}

static float
vec_dot_F32(const void *w, const void *a, int64_t n)
{
	return dot_f32_f32(w, a, n);
}

static float
vec_dot_BF16(const void *w, const void *a, int64_t n)
{
	return dot_f32_BF16(w, a, n);
}

#define DEF_FLOAT_NTOK(T) \
static void \
vec_dot_ntok_##T(const void *w, const void *a, size_t stride, int64_t n, float *out) \
{ \
	for (int t = 0; t < NTOK; t++) \
		out[t] = vec_dot_##T(w, (const uint8_t *) a + (size_t) t * stride, n); \
}

DEF_FLOAT_NTOK(F32)
DEF_FLOAT_NTOK(F16)
DEF_FLOAT_NTOK(BF16)

/* 8 f16 values to f32 exactly as p3_fp16_to_fp32 (signalling NaNs kept unquieted) */
INLINE void
f16x8_store_exact(const uint16_t *p, float *y)
{
	__m128i		h = _mm_loadu_si128((const __m128i *) p);
	__m128i		snan = _mm_andnot_si128(_mm_cmpeq_epi16(_mm_and_si128(h, _mm_set1_epi16(0x3FF)), _mm_setzero_si128()),
										_mm_cmpeq_epi16(_mm_and_si128(h, _mm_set1_epi16(0x7E00)), _mm_set1_epi16(0x7C00)));

	_mm256_storeu_ps(y, _mm256_cvtph_ps(h));
	if (_mm_movemask_epi8(snan))
#pragma GCC unroll 16
		for (int j = 0; j < 8; j++)
			y[j] = p3_fp16_to_fp32(p[j]);
}

static void
dequant_F16(const void *vw, float *y, int64_t n)
{
	const uint16_t *w = vw;
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
		f16x8_store_exact(w + i, y + i);
	for (; i < n; i++)
		y[i] = p3_fp16_to_fp32(w[i]);
}

static void
dequant_BF16(const void *vw, float *y, int64_t n)
{
	const uint16_t *w = vw;
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, bf16x8(w + i));
	for (; i < n; i++)
		y[i] = p3_bf16_to_fp32(w[i]);
}

static void
quantize_F16(const float *x, void *vy, int64_t n)
{
	uint16_t   *y = vy;
	int64_t		i = 0;

	for (; i + 8 <= n; i += 8)
		_mm_storeu_si128((__m128i *) (y + i),
						 _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	if (i < n)
	{
		uint16_t	buf[8];

		_mm_storeu_si128((__m128i *) buf,
						 _mm256_cvtps_ph(tail_ps(x + i, (int) (n - i)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
		memcpy(y + i, buf, (size_t) (n - i) * sizeof(uint16_t));
	}
}

/* y += a * x (multiply, then add: the reference's rounding exactly) */
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
		_mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_mul_ps(av, f16x8(x + i))));
	for (; i < n; i++)
		y[i] += a * h2f(x[i]);
}

/* ---------------------------------------------------------------------
 * decoders of the quantized formats to f32 (the reference's arithmetic)
 * and the dequant / fused dot_f32 kernels built on them; a decoder gives
 * the 32 values of a (sub-)block in four registers
 * --------------------------------------------------------------------- */

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

INLINE void
dec_q4_0(const P3BlockQ4_0 *b, __m256 *v)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));

#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
		v[k] = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(nib8(b->qs, k), _mm256_set1_epi32(8))), d);
}

INLINE void
dec_q4_1(const P3BlockQ4_1 *b, __m256 *v)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));
	__m256		m = _mm256_set1_ps(h2f(b->m));

#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
		v[k] = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(nib8(b->qs, k)), d), m);
}

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

/* the element order of nib8: group k holds elements 8k .. 8k+7 */
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

#define DEF_FLOAT32_KERNELS(NAME, BLOCK, DEC) \
static void \
dequant_##NAME(const void *vw, float *y, int64_t n) \
{ \
	const BLOCK *b = vw; \
	for (int64_t i = 0; i < n / 32; i++, y += 32) \
	{ \
		__m256		v[4]; \
		DEC(&b[i], v); \
		_Pragma("GCC unroll 16") \
		for (int k = 0; k < 4; k++) \
			_mm256_storeu_ps(y + 8 * k, v[k]); \
	} \
} \
static float \
dot_f32_##NAME(const void *vw, const float *x, int64_t n) \
{ \
	const BLOCK *b = vw; \
	__m256		a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(); \
	__m256		a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps(); \
	for (int64_t i = 0; i < n / 32; i++, x += 32) \
	{ \
		__m256		v[4]; \
		DEC(&b[i], v); \
		a0 = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(x), a0); \
		a1 = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(x + 8), a1); \
		a2 = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(x + 16), a2); \
		a3 = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(x + 24), a3); \
	} \
	return reduce4(a0, a1, a2, a3); \
}

DEF_FLOAT32_KERNELS(Q8_0, P3BlockQ8_0, dec_q8_0)
DEF_FLOAT32_KERNELS(Q4_0, P3BlockQ4_0, dec_q4_0)
DEF_FLOAT32_KERNELS(Q4_1, P3BlockQ4_1, dec_q4_1)
DEF_FLOAT32_KERNELS(Q5_0, P3BlockQ5_0, dec_q5_0)
DEF_FLOAT32_KERNELS(Q5_1, P3BlockQ5_1, dec_q5_1)
DEF_FLOAT32_KERNELS(IQ4_NL, P3BlockIQ4_NL, dec_iq4_nl)

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

#define DEF_FLOAT_K_AFFINE(NAME, BLOCK, QH) \
static void \
dequant_##NAME(const void *vw, float *y, int64_t n) \
{ \
	const BLOCK *b = vw; \
	for (int64_t i = 0; i < n / P3_QK_K; i++) \
	{ \
		const float d = h2f(b[i].d), dmin = h2f(b[i].dmin); \
		uint8_t		sc[8], mn[8]; \
		k4_unpack(b[i].scales, sc, mn); \
		_Pragma("GCC unroll 16") \
		for (int j = 0; j < 8; j++, y += 32) \
		{ \
			__m256		v[4]; \
			dec_k_affine_sub(b[i].qs, QH, j, d * (float) sc[j], dmin * (float) mn[j], v); \
			_Pragma("GCC unroll 16") \
			for (int k = 0; k < 4; k++) \
				_mm256_storeu_ps(y + 8 * k, v[k]); \
		} \
	} \
} \
static float \
dot_f32_##NAME(const void *vw, const float *x, int64_t n) \
{ \
	const BLOCK *b = vw; \
	__m256		a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(); \
	__m256		a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps(); \
	for (int64_t i = 0; i < n / P3_QK_K; i++) \
	{ \
		const float d = h2f(b[i].d), dmin = h2f(b[i].dmin); \
		uint8_t		sc[8], mn[8]; \
		k4_unpack(b[i].scales, sc, mn); \
		_Pragma("GCC unroll 16") \
		for (int j = 0; j < 8; j++, x += 32) \
		{ \
			__m256		v[4]; \
			dec_k_affine_sub(b[i].qs, QH, j, d * (float) sc[j], dmin * (float) mn[j], v); \
			a0 = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(x), a0); \
			a1 = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(x + 8), a1); \
			a2 = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(x + 16), a2); \
			a3 = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(x + 24), a3); \
		} \
	} \
	return reduce4(a0, a1, a2, a3); \
}

DEF_FLOAT_K_AFFINE(Q4_K, P3BlockQ4_K, NULL)
DEF_FLOAT_K_AFFINE(Q5_K, P3BlockQ5_K, b[i].qh)

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

/*
 * The 32 values of q6_k_codes' register k of half h (elements 128h + 32k
 * ..), as the reference's d * sc[g] * (q - 32): dsc holds d * (float) sc[g].
 */
INLINE void
q6_k_values(__m256i q, const float *dsc, int h, int k, __m256 *v)
{
	__m256i		c = _mm256_sub_epi8(q, _mm256_set1_epi8(32));
	__m128i		lo = _mm256_castsi256_si128(c);
	__m128i		hi = _mm256_extracti128_si256(c, 1);
	__m256		d0 = _mm256_set1_ps(dsc[8 * h + 2 * k]);
	__m256		d1 = _mm256_set1_ps(dsc[8 * h + 2 * k + 1]);

	v[0] = _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)));
	v[1] = _mm256_mul_ps(d0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))));
	v[2] = _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)));
	v[3] = _mm256_mul_ps(d1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))));
}

/* d * (float) sc[g] of the 16 groups, as the reference's left-to-right d * sc * q */
INLINE void
q6_k_factors(const P3BlockQ6_K *b, float *dsc)
{
	__m256		d = _mm256_set1_ps(h2f(b->d));

	_mm256_storeu_ps(dsc, _mm256_mul_ps(d, _mm256_cvtepi32_ps(s8x8(b->scales))));
	_mm256_storeu_ps(dsc + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(s8x8(b->scales + 8))));
}

static void
dequant_Q6_K(const void *vw, float *y, int64_t n)
{
	const P3BlockQ6_K *b = vw;

	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		float		dsc[16];

		q6_k_factors(&b[i], dsc);
#pragma GCC unroll 16
		for (int h = 0; h < 2; h++)
		{
			__m256i		q[4];

			q6_k_codes(&b[i], h, q);
#pragma GCC unroll 16
			for (int k = 0; k < 4; k++, y += 32)
			{
				__m256		v[4];

				q6_k_values(q[k], dsc, h, k, v);
				for (int j = 0; j < 4; j++)
					_mm256_storeu_ps(y + 8 * j, v[j]);
			}
		}
	}
}

static float
dot_f32_Q6_K(const void *vw, const float *x, int64_t n)
{
	const P3BlockQ6_K *b = vw;
	__m256		a0 = _mm256_setzero_ps(),
				a1 = _mm256_setzero_ps();
	__m256		a2 = _mm256_setzero_ps(),
				a3 = _mm256_setzero_ps();

	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		float		dsc[16];

		q6_k_factors(&b[i], dsc);
#pragma GCC unroll 16
		for (int h = 0; h < 2; h++)
		{
			__m256i		q[4];

			q6_k_codes(&b[i], h, q);
#pragma GCC unroll 16
			for (int k = 0; k < 4; k++, x += 32)
			{
				__m256		v[4];

				q6_k_values(q[k], dsc, h, k, v);
				a0 = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(x), a0);
				a1 = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(x + 8), a1);
				a2 = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(x + 16), a2);
				a3 = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(x + 24), a3);
			}
		}
	}
	return reduce4(a0, a1, a2, a3);
}

/* ---------------------------------------------------------------------
 * activation quantizers (bit-identical to the reference)
 * --------------------------------------------------------------------- */

INLINE int
quant_q8_block32(const float *x, int8_t *qs, float *d_out)
{
	__m256		v[4];
	__m256		m = _mm256_setzero_ps();
	__m256i		q[4];
	float		amax,
				d,
				id;

#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
	{
		v[k] = _mm256_loadu_ps(x + 8 * k);
		m = absmax_fold(v[k], m);
	}
	amax = hmax8(m);
	d = amax / 127;
	id = d != 0.0f ? 1.0f / d : 0.0f;
#pragma GCC unroll 16
	for (int k = 0; k < 4; k++)
		q[k] = round_away_clamp(_mm256_mul_ps(v[k], _mm256_set1_ps(id)), 127.0f);
	_mm256_storeu_si256((__m256i *) qs, pack32_epi8(q[0], q[1], q[2], q[3]));
	*d_out = d;
	return hsum8_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
}

static void
quantize_Q8_0(const float *x, void *vy, int64_t n)
{
	P3BlockQ8_0 *y = vy;

	for (int64_t i = 0; i < n / 32; i++, x += 32)
	{
		float		d;

		(void) quant_q8_block32(x, y[i].qs, &d);
		y[i].d = f2h_sat(d);
	}
}

static void
quantize_Q8_1(const float *x, void *vy, int64_t n)
{
	P3BlockQ8_1 *y = vy;

	for (int64_t i = 0; i < n / 32; i++, x += 32)
	{
		float		d;
		int			sum = quant_q8_block32(x, y[i].qs, &d);

		y[i].d = f2h_sat(d);
		y[i].s = f2h_sat((float) sum * d);
	}
}

static void
quantize_Q8_K(const float *x, void *vy, int64_t n)
{
	P3BlockQ8_K *y = vy;

	for (int64_t i = 0; i < n / P3_QK_K; i++, x += P3_QK_K)
	{
		__m256		m = _mm256_setzero_ps();
		float		amax;
		float		max = 0.0f;
		__m256		is;

#pragma GCC unroll 16
		for (int k = 0; k < 32; k++)
			m = absmax_fold(_mm256_loadu_ps(x + 8 * k), m);
		amax = hmax8(m);
		if (amax == 0.0f)
		{
			memset(&y[i], 0, sizeof(P3BlockQ8_K));
			continue;
		}
		/* the first element of largest magnitude, with its sign */
#pragma GCC unroll 16
		for (int k = 0; k < 32; k++)
		{
			int			e = _mm256_movemask_ps(_mm256_cmp_ps(abs8(_mm256_loadu_ps(x + 8 * k)),
															 _mm256_set1_ps(amax), _CMP_EQ_OQ));

			if (e)
			{
				max = x[8 * k + __builtin_ctz((unsigned) e)];
				break;
			}
		}

		/* an infinite element counts as +-1e38, as in the reference */
		const float iscale = -127.0f / (isinf(max) ? copysignf(1e38f, max) : max);

		is = _mm256_set1_ps(iscale);
#pragma GCC unroll 16
		for (int g = 0; g < 8; g++)
		{
			__m256i		q[4];

#pragma GCC unroll 16
			for (int k = 0; k < 4; k++)
			{
				__m256		v = nan_to_zero(_mm256_mul_ps(is, _mm256_loadu_ps(x + 32 * g + 8 * k)));

				v = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
				q[k] = _mm256_cvttps_epi32(_mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
			}
			_mm256_storeu_si256((__m256i *) (y[i].qs + 32 * g), pack32_epi8(q[0], q[1], q[2], q[3]));
			y[i].bsums[2 * g] = (int16_t) hsum8_epi32(_mm256_add_epi32(q[0], q[1]));
			y[i].bsums[2 * g + 1] = (int16_t) hsum8_epi32(_mm256_add_epi32(q[2], q[3]));
		}
		y[i].d = 1.0f / iscale;
	}
}

/* ---------------------------------------------------------------------
 * integer dot products with quantized activations, for NT rows at once
 * --------------------------------------------------------------------- */

#define ACT_ROW(type, a, stride, t) ((const type *) ((const uint8_t *) (a) + (size_t) (t) * (stride)))

/* 16 bytes of nibbles -> 32 codes: low nibbles (elements 0..15), then high */
INLINE __m256i
nibbles32(const uint8_t *p)
{
	__m128i		q = _mm_loadu_si128((const __m128i *) p);
	__m128i		m4 = _mm_set1_epi8(0x0F);

	return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* 32 bits -> 32 bytes, 0xFF where the bit of the byte's index is set */
INLINE __m256i
bits_to_bytes(uint32_t bits)
{
	__m256i		v = _mm256_shuffle_epi8(_mm256_set1_epi32((int) bits),
										_mm256_setr_epi64x(0, 0x0101010101010101LL,
														   0x0202020202020202LL, 0x0303030303030303LL));
	__m256i		sel = _mm256_set1_epi64x((long long) 0x8040201008040201ULL);

	return _mm256_cmpeq_epi8(_mm256_and_si256(v, sel), sel);
}

/* signed weight bytes of the 32-element formats with Q8_0 activations */
INLINE __m256i
sw_q8_0(const P3BlockQ8_0 *b)
{
	return _mm256_loadu_si256((const __m256i *) b->qs);
}

INLINE __m256i
sw_q4_0(const P3BlockQ4_0 *b)
{
	return _mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8));
}

INLINE __m256i
sw_iq4_nl(const P3BlockIQ4_NL *b)
{
	return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *) p3_iq4nl_values)),
							   nibbles32(b->qs));
}

INLINE __m256i
sw_q5_0(const P3BlockQ5_0 *b)
{
	uint32_t	qh;

	memcpy(&qh, b->qh, 4);
	return _mm256_sub_epi8(_mm256_or_si256(nibbles32(b->qs), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16))),
						   _mm256_set1_epi8(16));
}

/* 8 int32 lane sums of w · y for signed w (|w| against y with w's sign) */
INLINE __m256i
sdot32(__m256i aw, __m256i sgn, __m256i y)
{
	return _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(y, sgn)), _mm256_set1_epi16(1));
}

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
static float \
vec_dot_##NAME(const void *w, const void *a, int64_t n) \
{ \
	float		out; \
	vec_dot_##NAME##_nt(w, a, 0, n, &out, 1); \
	return out; \
} \
static void \
vec_dot_ntok_##NAME(const void *w, const void *a, size_t stride, int64_t n, float *out) \
{ \
	vec_dot_##NAME##_nt(w, a, stride, n, out, NTOK); \
}

DEF_VEC_DOT_S8(Q8_0, P3BlockQ8_0, sw_q8_0)
DEF_VEC_DOT_S8(Q4_0, P3BlockQ4_0, sw_q4_0)
DEF_VEC_DOT_S8(Q5_0, P3BlockQ5_0, sw_q5_0)
DEF_VEC_DOT_S8(IQ4_NL, P3BlockIQ4_NL, sw_iq4_nl)

INLINE __m256i
uw_q4_1(const P3BlockQ4_1 *b)
{
	return nibbles32(b->qs);
}

INLINE __m256i
uw_q5_1(const P3BlockQ5_1 *b)
{
	uint32_t	qh;

	memcpy(&qh, b->qh, 4);
	return _mm256_or_si256(nibbles32(b->qs), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16)));
}

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
			__m256i		s = _mm256_madd_epi16(_mm256_maddubs_epi16(uw, _mm256_loadu_si256((const __m256i *) y->qs)), \
											  _mm256_set1_epi16(1)); \
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dx * h2f(y->d)), acc[t]); \
			summ[t] += mx * h2f(y->s); \
		} \
	} \
	for (int t = 0; t < nt; t++) \
		out[t] = hsum8(acc[t]) + summ[t]; \
} \
static float \
vec_dot_##NAME(const void *w, const void *a, int64_t n) \
{ \
	float		out; \
	vec_dot_##NAME##_nt(w, a, 0, n, &out, 1); \
	return out; \
} \
static void \
vec_dot_ntok_##NAME(const void *w, const void *a, size_t stride, int64_t n, float *out) \
{ \
	vec_dot_##NAME##_nt(w, a, stride, n, out, NTOK); \
}

DEF_VEC_DOT_U8_Q8_1(Q4_1, P3BlockQ4_1, uw_q4_1)
DEF_VEC_DOT_U8_Q8_1(Q5_1, P3BlockQ5_1, uw_q5_1)

/*
 * Q4_K / Q5_K · Q8_K: per chunk c, sub-blocks 2c (low nibbles) and 2c+1
 * (high nibbles) of qs[32c ..], pair sums times the sub-block scale by
 * vpmaddwd, exact int32 lanes per block; mins against the bsums.
 */
INLINE void
vec_dot_k_affine_nt(const uint8_t *xb, size_t xsize, int five, const void *va, size_t stride,
					int64_t n, float *out, const int nt)
{
	const int64_t nb = n / P3_QK_K;
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	__m256		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm256_setzero_ps();
	for (int64_t i = 0; i < nb; i++, xb += xsize)
	{
		const P3BlockQ4_K *b4 = (const P3BlockQ4_K *) xb;
		const uint8_t *qh = xb + offsetof(P3BlockQ5_K, qh);
		const uint8_t *qs = five ? xb + offsetof(P3BlockQ5_K, qs) : xb + offsetof(P3BlockQ4_K, qs);
		uint8_t		sc[8],
					mn[8];
		uint64_t	mn8;
		__m256i		mins16;
		__m256i		hv = _mm256_setzero_si256();
		__m256i		si[NTOK];
		const float dx = h2f(b4->d);
		const float dmx = h2f(b4->dmin);

		k4_unpack(b4->scales, sc, mn);
		memcpy(&mn8, mn, 8);
		mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(_mm_cvtsi64_si128((long long) mn8),
														_mm_cvtsi64_si128((long long) mn8)));
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
			__m256i		s_lo = _mm256_set1_epi16(sc[2 * c]);
			__m256i		s_hi = _mm256_set1_epi16(sc[2 * c + 1]);

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
				__m256i		p_lo = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *) (y->qs + 64 * c))), s_lo);
				__m256i		p_hi = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *) (y->qs + 64 * c + 32))), s_hi);

				si[t] = _mm256_add_epi32(si[t], _mm256_add_epi32(p_lo, p_hi));
			}
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			__m256i		pm = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) y->bsums), mins16);

			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[t]), _mm256_set1_ps(dx * y->d), acc[t]);
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(-(dmx * y->d)), acc[t]);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum8(acc[t]);
}

static float
vec_dot_Q4_K(const void *w, const void *a, int64_t n)
{
	float		out;

	vec_dot_k_affine_nt(w, sizeof(P3BlockQ4_K), 0, a, 0, n, &out, 1);
	return out;
}

static void
vec_dot_ntok_Q4_K(const void *w, const void *a, size_t stride, int64_t n, float *out)
{
	vec_dot_k_affine_nt(w, sizeof(P3BlockQ4_K), 0, a, stride, n, out, NTOK);
}

static float
vec_dot_Q5_K(const void *w, const void *a, int64_t n)
{
	float		out;

	vec_dot_k_affine_nt(w, sizeof(P3BlockQ5_K), 1, a, 0, n, &out, 1);
	return out;
}

static void
vec_dot_ntok_Q5_K(const void *w, const void *a, size_t stride, int64_t n, float *out)
{
	vec_dot_k_affine_nt(w, sizeof(P3BlockQ5_K), 1, a, stride, n, out, NTOK);
}

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

			si[t] = _mm256_slli_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) y->bsums), sc16), 5);
			si[t] = _mm256_sub_epi32(_mm256_setzero_si256(), si[t]);
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
					__m256i		p = _mm256_maddubs_epi16(q[k], _mm256_loadu_si256((const __m256i *) (y->qs + 128 * h + 32 * k)));

					si[t] = _mm256_add_epi32(si[t], _mm256_madd_epi16(p, s));
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

static float
vec_dot_Q6_K(const void *w, const void *a, int64_t n)
{
	float		out;

	vec_dot_q6_k_nt(w, a, 0, n, &out, 1);
	return out;
}

static void
vec_dot_ntok_Q6_K(const void *w, const void *a, size_t stride, int64_t n, float *out)
{
	vec_dot_q6_k_nt(w, a, stride, n, out, NTOK);
}

/* ---------------------------------------------------------------------
 * IQ4_XS, Q3_K, Q2_K
 * --------------------------------------------------------------------- */

/* the 6-bit scale minus 32 of IQ4_XS sub-block ib */
INLINE int
iq4xs_scale(const P3BlockIQ4_XS *b, int ib)
{
	return (((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((b->scales_h >> (2 * ib)) & 3) << 4)) - 32;
}

/* the 32 signed code-book values of IQ4_XS sub-block ib, in element order */
INLINE __m256i
iq4xs_values(const P3BlockIQ4_XS *b, int ib)
{
	return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *) p3_iq4nl_values)),
							   nibbles32(b->qs + 16 * ib));
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

/*
 * The 32 values of elements 32j .. of a block, as the reference computes
 * them: IQ4_XS dl * T[q] (dl = d * (ls - 32)); Q3_K dl * q (dl = d * sc[g]);
 * Q2_K dl * q - ml (dl = d * (sc & 15), ml = dmin * (sc >> 4)).
 */
INLINE void
dec_iq4_xs_32(const P3BlockIQ4_XS *b, float d, int j, __m256 *v)
{
	const float dl = d * (float) iq4xs_scale(b, j);

	bytes_times(iq4xs_values(b, j), dl, dl, v);
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

/* dequant and fused dot_f32 of a 256-element format from a 32-element decoder; SETUP runs per block */
#define DEF_FLOAT_K32(NAME, BLOCK, SETUP, DEC) \
static void \
dequant_##NAME(const void *vw, float *y, int64_t n) \
{ \
	const BLOCK *b = vw; \
	for (int64_t i = 0; i < n / P3_QK_K; i++) \
	{ \
		SETUP; \
		_Pragma("GCC unroll 8") \
		for (int j = 0; j < 8; j++, y += 32) \
		{ \
			__m256		v[4]; \
			DEC; \
			for (int k = 0; k < 4; k++) \
				_mm256_storeu_ps(y + 8 * k, v[k]); \
		} \
	} \
} \
static float \
dot_f32_##NAME(const void *vw, const float *x, int64_t n) \
{ \
	const BLOCK *b = vw; \
	__m256		a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(); \
	__m256		a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps(); \
	for (int64_t i = 0; i < n / P3_QK_K; i++) \
	{ \
		SETUP; \
		_Pragma("GCC unroll 8") \
		for (int j = 0; j < 8; j++, x += 32) \
		{ \
			__m256		v[4]; \
			DEC; \
			a0 = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(x), a0); \
			a1 = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(x + 8), a1); \
			a2 = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(x + 16), a2); \
			a3 = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(x + 24), a3); \
		} \
	} \
	return reduce4(a0, a1, a2, a3); \
}

DEF_FLOAT_K32(IQ4_XS, P3BlockIQ4_XS, const float d = h2f(b[i].d), dec_iq4_xs_32(&b[i], d, j, v))
DEF_FLOAT_K32(Q3_K, P3BlockQ3_K, const float d = h2f(b[i].d); int sc[16]; p3_q3k_scales(b[i].scales, sc),
			  dec_q3_k_32(&b[i], sc, d, j, v))
DEF_FLOAT_K32(Q2_K, P3BlockQ2_K, const float d = h2f(b[i].d); const float dmin = h2f(b[i].dmin),
			  dec_q2_k_32(&b[i], d, dmin, j, v))

/* the 16 signed scales (-32..31) of a Q3_K block as words (see p3_q3k_scales) */
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
			__m256i		w = iq4xs_values(&x[i], j);
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

/* Q3_K / Q2_K · Q8_K: codes 0..7 (Q3_K, -4 through the bsums) or 0..3 (Q2_K, mins through the bsums) */
INLINE void
vec_dot_q3_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ3_K *x = vw;
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
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;

			si[t] = _mm256_sub_epi32(_mm256_setzero_si256(),
									 _mm256_slli_epi32(_mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) y->bsums), sc16), 2));
		}
#pragma GCC unroll 8
		for (int j = 0; j < 8; j++)
		{
			__m256i		q = q3k_codes32(&x[i], j);
			__m256i		s = scale_halves(sc[2 * j], sc[2 * j + 1]);

#pragma GCC unroll 4
			for (int t = 0; t < nt; t++)
			{
				const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
				__m256i		p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *) (y->qs + 32 * j)));

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
		__m128i		scb = _mm_loadu_si128((const __m128i *) x[i].scales);
		__m256i		mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(scb, 4), _mm_set1_epi8(15)));
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
				__m256i		p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *) (y->qs + 32 * j)));

				si[t] = _mm256_add_epi32(si[t], _mm256_madd_epi16(p, s));
			}
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			__m256i		pm = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) y->bsums), mins16);

			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si[t]), _mm256_set1_ps(dx * y->d), acc[t]);
			acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pm), _mm256_set1_ps(-(dmx * y->d)), acc[t]);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum8(acc[t]);
}

#define DEF_VEC_WRAPPERS(NAME, FN) \
static float \
vec_dot_##NAME(const void *w, const void *a, int64_t n) \
{ \
	float		out; \
	FN(w, a, 0, n, &out, 1); \
	return out; \
} \
static void \
vec_dot_ntok_##NAME(const void *w, const void *a, size_t stride, int64_t n, float *out) \
{ \
	FN(w, a, stride, n, out, NTOK); \
}

DEF_VEC_WRAPPERS(IQ4_XS, vec_dot_iq4_xs_nt)
DEF_VEC_WRAPPERS(Q3_K, vec_dot_q3_k_nt)
DEF_VEC_WRAPPERS(Q2_K, vec_dot_q2_k_nt)

#pragma GCC pop_options

/* ---------------------------------------------------------------------
 * the set (compiled without the target options; it only stores pointers)
 * --------------------------------------------------------------------- */

void
p3_kernels_fill_avx2(P3KernelSet *k)
{
	k->name = "avx2";

	k->dot_f32_f32 = dot_f32_f32;
	k->dot_f32_f32_ntok = dot_f32_f32_ntok;
	k->dot_f32_f16 = dot_f32_f16;
	k->axpy_f16 = axpy_f16;
	k->axpy_f32 = axpy_f32;

	k->dot_f32[P3_TYPE_F32] = dot_f32_F32;
	k->vec_dot[P3_TYPE_F32] = vec_dot_F32;
	k->vec_dot_ntok[P3_TYPE_F32] = vec_dot_ntok_F32;
	k->dequant[P3_TYPE_F16] = dequant_F16;
	k->dot_f32[P3_TYPE_F16] = dot_f32_F16;
	k->vec_dot[P3_TYPE_F16] = vec_dot_F16;
	k->vec_dot_ntok[P3_TYPE_F16] = vec_dot_ntok_F16;
	k->quantize[P3_TYPE_F16] = quantize_F16;
	k->dequant[P3_TYPE_BF16] = dequant_BF16;
	k->dot_f32[P3_TYPE_BF16] = dot_f32_BF16;
	k->vec_dot[P3_TYPE_BF16] = vec_dot_BF16;
	k->vec_dot_ntok[P3_TYPE_BF16] = vec_dot_ntok_BF16;

	k->quantize[P3_TYPE_Q8_0] = quantize_Q8_0;
	k->quantize[P3_TYPE_Q8_1] = quantize_Q8_1;
	k->quantize[P3_TYPE_Q8_K] = quantize_Q8_K;

#define SET_FLOAT(T) \
	do { k->dequant[P3_TYPE_##T] = dequant_##T; k->dot_f32[P3_TYPE_##T] = dot_f32_##T; } while (0)
#define SET_VEC(T) \
	do { k->vec_dot[P3_TYPE_##T] = vec_dot_##T; k->vec_dot_ntok[P3_TYPE_##T] = vec_dot_ntok_##T; } while (0)

	SET_FLOAT(Q8_0);
	SET_FLOAT(Q4_0);
	SET_FLOAT(Q4_1);
	SET_FLOAT(Q5_0);
	SET_FLOAT(Q5_1);
	SET_FLOAT(IQ4_NL);
	SET_FLOAT(Q4_K);
	SET_FLOAT(Q5_K);
	SET_FLOAT(Q6_K);

	SET_FLOAT(IQ4_XS);
	SET_FLOAT(Q3_K);
	SET_FLOAT(Q2_K);

	SET_VEC(Q8_0);
	SET_VEC(Q4_0);
	SET_VEC(Q5_0);
	SET_VEC(IQ4_NL);
	SET_VEC(Q4_1);
	SET_VEC(Q5_1);
	SET_VEC(Q4_K);
	SET_VEC(Q5_K);
	SET_VEC(Q6_K);
	SET_VEC(IQ4_XS);
	SET_VEC(Q3_K);
	SET_VEC(Q2_K);
#undef SET_FLOAT
#undef SET_VEC
}

#endif							/* __x86_64__ */
