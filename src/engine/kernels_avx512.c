/*
 * kernels_avx512.c — the "avx512" kernel set: AVX-512 F/BW/VL/DQ with VNNI
 * (vpdpbusd / vpdpwssd for the integer dot products).
 *
 * Every function here is compiled for those instructions by the target
 * pragma below and is only reachable through p3_kernels_fill_avx512, which
 * kernels_x86.c calls after checking the CPU.
 *
 * Float layout.  dot_f32_f32 keeps four 16-lane accumulators: element i is
 * added (by FMA, in increasing i) to lane i % 16 of accumulator (i / 16) % 4;
 * a final partial group of 16 uses masked lanes; the accumulators are then
 * reduced in one fixed order (reduce4).  Every fused dot_f32[T] decodes its
 * weights to exactly the f32 values dequant[T] produces (the reference's
 * arithmetic, operation for operation, often through a 16- or 32-entry
 * table of the possible values of a sub-block, read by vpermps) and feeds
 * them through the same lanes in the same order, so dot_f32[T](w, x) has
 * the bits of dot_f32_f32(dequant[T](w), x).
 *
 * Integer dots.  Weights are unpacked to bytes once per block; K-quants take
 * u8 x s8 pair sums (vpmaddubsw) times the 16-bit sub-block scales
 * (vpdpwssd), the 32-element formats take s8 dots with vpdpbusd (|w| and
 * sign-moved activations).  Block sums are exact integers; only the float
 * combination (lane partial sums times the block scales, summed in lanes)
 * differs from the reference's order.  Each kernel is written once for NT
 * activation rows (inline, NT a constant): NT = 1 is vec_dot, NT = 4 is
 * vec_dot_ntok; per row the operations are identical, hence so are the bits.
 *
 * Quantizers reproduce the reference bit for bit: Q8_0 / Q8_1 round halves
 * away from zero (roundf), Q8_K to nearest even, NaN gives 0, values are
 * clamped first (clamping to integers commutes with rounding), and the
 * stored f16 scales come from vcvtps2ph with round-to-nearest-even.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels_x86.h"
#include "quant_blocks.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")

#define INLINE static inline __attribute__((always_inline))
#define NTOK P3_KERNEL_NTOK

/* ---------------------------------------------------------------------
 * helpers
 * --------------------------------------------------------------------- */

/* f16 bits -> f32 (exact; a signalling NaN comes back quiet) */
INLINE float
h2f(uint16_t h)
{
	return _cvtsh_ss(h);
}

/* f32 -> f16 for a stored scale, as the reference's half_sat: NaN -> 0, saturate, nearest even */
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

/* The fixed reduction of the four accumulators of the float dots. */
INLINE float
reduce4(__m512 a0, __m512 a1, __m512 a2, __m512 a3)
{
	return hsum16(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
}

/* Largest |x| of 16 lanes folded into m; NaN lanes of x are ignored (m is the second operand). */
INLINE __m512
absmax_fold(__m512 x, __m512 m)
{
	return _mm512_max_ps(_mm512_abs_ps(x), m);
}

/* NaN lanes -> 0 */
INLINE __m512
nan_to_zero(__m512 v)
{
	return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v, v, _CMP_ORD_Q), v);
}

/* roundf(v) (halves away from zero) clamped to [-lim, lim], NaN -> 0, as int32 */
INLINE __m512i
round_away_clamp(__m512 v, float lim)
{
	__m512		t;
	__m512		f;
	__mmask16	half;

	v = nan_to_zero(v);
	v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-lim)), _mm512_set1_ps(lim));
	t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
	f = _mm512_sub_ps(v, t);	/* exact */
	half = _mm512_cmp_ps_mask(_mm512_abs_ps(f), _mm512_set1_ps(0.5f), _CMP_GE_OQ);
	t = _mm512_mask_add_ps(t, half, t,
						   _mm512_or_ps(_mm512_set1_ps(1.0f),
										_mm512_and_ps(v, _mm512_set1_ps(-0.0f))));
	return _mm512_cvttps_epi32(t);
}

/* 0, 1, ..., 15 as floats: the codes of a 16-entry value table */
INLINE __m512
iota16(void)
{
	return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}

/* Scales and mins (6 bits each) of the 8 sub-blocks of a Q4_K / Q5_K block, as bytes. */
INLINE void
k4_unpack(const uint8_t *scales, uint64_t *sc8, uint64_t *mn8)
{
	uint32_t	s[3];

	memcpy(s, scales, 12);
	*sc8 = (s[0] & 0x3f3f3f3fu) |
		((uint64_t) ((s[2] & 0x0f0f0f0fu) | (((s[0] >> 6) & 0x03030303u) << 4)) << 32);
	*mn8 = (s[1] & 0x3f3f3f3fu) |
		((uint64_t) (((s[2] >> 4) & 0x0f0f0f0fu) | (((s[1] >> 6) & 0x03030303u) << 4)) << 32);
}

/*
 * The factors of the 8 sub-blocks of a Q4_K / Q5_K block, as the
 * reference computes them: d1[j] = d * (float) sc[j], m1[j] = dmin * (float) mn[j].
 */
INLINE void
k4_factors(const uint8_t *scales, float d, float dmin, float *d1, float *m1, bool reload)
{
	uint64_t	sc8,
				mn8;

	k4_unpack(scales, &sc8, &mn8);
	_mm256_storeu_ps(d1, _mm256_mul_ps(_mm256_set1_ps(d),
									   _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long) sc8)))));
	_mm256_storeu_ps(m1, _mm256_mul_ps(_mm256_set1_ps(dmin),
									   _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long) mn8)))));
	/*
	 * With reload, make the compiler read them back from memory: broadcasts
	 * from memory take a load slot instead of two ALU operations (faster for
	 * the ALU-heavy Q5_K decoder, slower for the load-heavy Q4_K one).
	 */
	if (reload)
		__asm__ volatile("" ::: "memory");
}

/* ---------------------------------------------------------------------
 * float kernels
 * --------------------------------------------------------------------- */

static float
dot_f32_f32(const float *a, const float *b, int64_t n)
{
	__m512		acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
	int64_t		i = 0;
	int			k = 0;

	for (; i + 64 <= n; i += 64)
	{
		acc[0] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc[0]);
		acc[1] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), acc[1]);
		acc[2] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), acc[2]);
		acc[3] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), acc[3]);
	}
	for (; i + 16 <= n; i += 16, k++)
		acc[k] = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), acc[k]);
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		acc[k] = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(m, a + i), _mm512_maskz_loadu_ps(m, b + i),
									   acc[k], m);
	}
	return reduce4(acc[0], acc[1], acc[2], acc[3]);
}

/*
 * dot_f32_f32 of one row w against NTOK rows of x, per row the same
 * operations, over elements [i0, i0 + m) (w and x point at element i0) with
 * the four accumulators of each row kept in state between calls (i0 is a
 * multiple of 64, so every element meets the accumulator dot_f32_f32 gives it).
 */
static void
dot_f32_f32_ntok(const float *w, const float *x, int64_t ldx, int64_t n,
				 int64_t i0, int64_t m, float *state, float *out)
{
	__m512		acc[NTOK][4];
	int64_t		i = 0;			/* element i0 + i; i0 % 64 == 0 keeps the lanes */
	int64_t		end = m;
	int			k = 0;

	for (int t = 0; t < NTOK; t++)
		for (int j = 0; j < 4; j++)
			acc[t][j] = i0 == 0 ? _mm512_setzero_ps() : _mm512_loadu_ps(state + t * P3_KERNEL_DOT_STATE + 16 * j);
	for (; i + 64 <= end; i += 64)
	{
		__m512		w0 = _mm512_loadu_ps(w + i);
		__m512		w1 = _mm512_loadu_ps(w + i + 16);
		__m512		w2 = _mm512_loadu_ps(w + i + 32);
		__m512		w3 = _mm512_loadu_ps(w + i + 48);

#pragma GCC unroll 4
		for (int t = 0; t < NTOK; t++)
		{
			const float *xt = x + t * ldx + i;

			acc[t][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xt), acc[t][0]);
			acc[t][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xt + 16), acc[t][1]);
			acc[t][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xt + 32), acc[t][2]);
			acc[t][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xt + 48), acc[t][3]);
		}
	}
	for (; i + 16 <= end; i += 16, k++)
		for (int t = 0; t < NTOK; t++)
			acc[t][k] = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + t * ldx + i), acc[t][k]);
	if (i < end)
	{
		__mmask16	msk = (__mmask16) ((1u << (end - i)) - 1);

		for (int t = 0; t < NTOK; t++)
			acc[t][k] = _mm512_mask3_fmadd_ps(_mm512_maskz_loadu_ps(msk, w + i),
											  _mm512_maskz_loadu_ps(msk, x + t * ldx + i), acc[t][k], msk);
	}
	if (i0 + m >= n)
	{
		for (int t = 0; t < NTOK; t++)
			out[t] = reduce4(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);
	}
	else
	{
		for (int t = 0; t < NTOK; t++)
			for (int j = 0; j < 4; j++)
				_mm512_storeu_ps(state + t * P3_KERNEL_DOT_STATE + 16 * j, acc[t][j]);
	}
}

/* f16 weights · f32 (also the attention's q · k for an f16 K cache) */
static float
dot_f16_f32(const uint16_t *w, const float *x, int64_t n)
{
	__m512		acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
	int64_t		i = 0;
	int			k = 0;

	for (; i + 64 <= n; i += 64)
	{
		acc[0] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (w + i))),
								 _mm512_loadu_ps(x + i), acc[0]);
		acc[1] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (w + i + 16))),
								 _mm512_loadu_ps(x + i + 16), acc[1]);
		acc[2] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (w + i + 32))),
								 _mm512_loadu_ps(x + i + 32), acc[2]);
		acc[3] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (w + i + 48))),
								 _mm512_loadu_ps(x + i + 48), acc[3]);
	}
	for (; i + 16 <= n; i += 16, k++)
		acc[k] = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *) (w + i))),
								 _mm512_loadu_ps(x + i), acc[k]);
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		acc[k] = _mm512_mask3_fmadd_ps(_mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + i)),
									   _mm512_maskz_loadu_ps(m, x + i), acc[k], m);
	}
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

/* bf16 -> f32 of 16 values: the bits shifted up */
INLINE __m512
bf16x16(__m256i h)
{
	return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

static float
dot_f32_BF16(const void *vw, const float *x, int64_t n)
{
	const uint16_t *w = vw;
	__m512		acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
	int64_t		i = 0;
	int			k = 0;

	for (; i + 64 <= n; i += 64)
	{
		acc[0] = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const __m256i *) (w + i))),
								 _mm512_loadu_ps(x + i), acc[0]);
		acc[1] = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const __m256i *) (w + i + 16))),
								 _mm512_loadu_ps(x + i + 16), acc[1]);
		acc[2] = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const __m256i *) (w + i + 32))),
								 _mm512_loadu_ps(x + i + 32), acc[2]);
		acc[3] = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const __m256i *) (w + i + 48))),
								 _mm512_loadu_ps(x + i + 48), acc[3]);
	}
	for (; i + 16 <= n; i += 16, k++)
		acc[k] = _mm512_fmadd_ps(bf16x16(_mm256_loadu_si256((const __m256i *) (w + i))),
								 _mm512_loadu_ps(x + i), acc[k]);
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		acc[k] = _mm512_mask3_fmadd_ps(bf16x16(_mm256_maskz_loadu_epi16(m, w + i)),
									   _mm512_maskz_loadu_ps(m, x + i), acc[k], m);
	}
	return reduce4(acc[0], acc[1], acc[2], acc[3]);
}

static float
vec_dot_BF16(const void *w, const void *a, int64_t n)
{
	return dot_f32_BF16(w, a, n);
}

/* float weights: the activations are f32 rows; NTOK calls of the single-row kernel */
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

static void
dequant_F16(const void *vw, float *y, int64_t n)
{
	const uint16_t *w = vw;
	int64_t		i = 0;

	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, f16x16_exact(_mm256_loadu_si256((const __m256i *) (w + i))));
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		_mm512_mask_storeu_ps(y + i, m, f16x16_exact(_mm256_maskz_loadu_epi16(m, w + i)));
	}
}

static void
dequant_BF16(const void *vw, float *y, int64_t n)
{
	const uint16_t *w = vw;
	int64_t		i = 0;

	for (; i + 16 <= n; i += 16)
		_mm512_storeu_ps(y + i, bf16x16(_mm256_loadu_si256((const __m256i *) (w + i))));
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		_mm512_mask_storeu_ps(y + i, m, bf16x16(_mm256_maskz_loadu_epi16(m, w + i)));
	}
}

/* f32 -> f16, round to nearest even (the KV cache store) */
static void
quantize_F16(const float *x, void *vy, int64_t n)
{
	uint16_t   *y = vy;
	int64_t		i = 0;

	for (; i + 16 <= n; i += 16)
		_mm256_storeu_si256((__m256i *) (y + i),
							_mm512_cvtps_ph(_mm512_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	if (i < n)
	{
		__mmask16	m = (__mmask16) ((1u << (n - i)) - 1);

		_mm256_mask_storeu_epi16(y + i, m,
								 _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
												 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
	}
}

/* y += a * x (multiply, then add: the reference's rounding exactly) */
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

/* dequant and fused dot_f32 of a 32-element format from its block decoder */
#define DEF_FLOAT32_KERNELS(NAME, BLOCK, DEC) \
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

DEF_FLOAT32_KERNELS(Q8_0, P3BlockQ8_0, dec_q8_0)
DEF_FLOAT32_KERNELS(Q4_0, P3BlockQ4_0, dec_q4_0)
DEF_FLOAT32_KERNELS(Q4_1, P3BlockQ4_1, dec_q4_1)
DEF_FLOAT32_KERNELS(Q5_0, P3BlockQ5_0, dec_q5_0)
DEF_FLOAT32_KERNELS(Q5_1, P3BlockQ5_1, dec_q5_1)
DEF_FLOAT32_KERNELS(IQ4_NL, P3BlockIQ4_NL, dec_iq4_nl)

/*
 * Q4_K, chunk c (elements 64c .. 64c+63): sub-block 2c from the low
 * nibbles of qs[32c ..], 2c+1 from the high nibbles; value d1 * q - m1
 * (k4_factors), by a table of the 16 values per sub-block.
 */
INLINE void
dec_q4_k_chunk(const uint8_t *qs, const uint8_t *qh, int c, const float *d1, const float *m1,
			   __m512 *v0, __m512 *v1, __m512 *v2, __m512 *v3)
{
	__m512		t0 = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d1[2 * c]), iota16()), _mm512_set1_ps(m1[2 * c]));
	__m512		t1 = _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d1[2 * c + 1]), iota16()), _mm512_set1_ps(m1[2 * c + 1]));
	__m512i		q0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (qs + 32 * c)));
	__m512i		q1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (qs + 32 * c + 16)));

	(void) qh;
	*v0 = _mm512_permutexvar_ps(q0, t0);	/* uses the low 4 bits of each index */
	*v1 = _mm512_permutexvar_ps(q1, t0);
	*v2 = _mm512_permutexvar_ps(_mm512_srli_epi32(q0, 4), t1);
	*v3 = _mm512_permutexvar_ps(_mm512_srli_epi32(q1, 4), t1);
}

/*
 * Q5_K chunk c: as Q4_K plus 16 for bit 2c (low half) / 2c+1 (high half)
 * of qh[l]; the 5-bit codes index 32-entry tables (two registers).
 */
INLINE void
dec_q5_k_chunk(const uint8_t *qs, const uint8_t *qh, int c, const float *d1, const float *m1,
			   __m512 *v0, __m512 *v1, __m512 *v2, __m512 *v3)
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
	*v0 = _mm512_permutex2var_ps(tal, i0, tah);
	*v1 = _mm512_permutex2var_ps(tal, i1, tah);
	*v2 = _mm512_permutex2var_ps(tbl, i2, tbh);
	*v3 = _mm512_permutex2var_ps(tbl, i3, tbh);
}

#define DEF_FLOAT_K_AFFINE(NAME, BLOCK, DEC, QH, RELOAD) \
static void \
dequant_##NAME(const void *vw, float *y, int64_t n) \
{ \
	const BLOCK *b = vw; \
	for (int64_t i = 0; i < n / P3_QK_K; i++) \
	{ \
		float		d1[8], m1[8]; \
		k4_factors(b[i].scales, h2f(b[i].d), h2f(b[i].dmin), d1, m1, RELOAD); \
		_Pragma("GCC unroll 16") \
		for (int c = 0; c < 4; c++, y += 64) \
		{ \
			__m512		v0, v1, v2, v3; \
			DEC(b[i].qs, QH, c, d1, m1, &v0, &v1, &v2, &v3); \
			_mm512_storeu_ps(y, v0); \
			_mm512_storeu_ps(y + 16, v1); \
			_mm512_storeu_ps(y + 32, v2); \
			_mm512_storeu_ps(y + 48, v3); \
		} \
	} \
} \
static float \
dot_f32_##NAME(const void *vw, const float *x, int64_t n) \
{ \
	const BLOCK *b = vw; \
	__m512		a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps(); \
	__m512		a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps(); \
	for (int64_t i = 0; i < n / P3_QK_K; i++) \
	{ \
		float		d1[8], m1[8]; \
		k4_factors(b[i].scales, h2f(b[i].d), h2f(b[i].dmin), d1, m1, RELOAD); \
		_Pragma("GCC unroll 16") \
		for (int c = 0; c < 4; c++, x += 64) \
		{ \
			__m512		v0, v1, v2, v3; \
			DEC(b[i].qs, QH, c, d1, m1, &v0, &v1, &v2, &v3); \
			a0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x), a0); \
			a1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + 16), a1); \
			a2 = _mm512_fmadd_ps(v2, _mm512_loadu_ps(x + 32), a2); \
			a3 = _mm512_fmadd_ps(v3, _mm512_loadu_ps(x + 48), a3); \
		} \
	} \
	return reduce4(a0, a1, a2, a3); \
}

DEF_FLOAT_K_AFFINE(Q4_K, P3BlockQ4_K, dec_q4_k_chunk, NULL, false)
DEF_FLOAT_K_AFFINE(Q5_K, P3BlockQ5_K, dec_q5_k_chunk, b[i].qh, true)

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

/* element group g (16 values) of a decoded Q6_K block */
INLINE __m512
q6_k_group(const int8_t *codes, const float *dsc, int g)
{
	return _mm512_mul_ps(_mm512_set1_ps(dsc[g]),
						 _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) (codes + 16 * g)))));
}

static void
dequant_Q6_K(const void *vw, float *y, int64_t n)
{
	const P3BlockQ6_K *b = vw;

	for (int64_t i = 0; i < n / P3_QK_K; i++, y += P3_QK_K)
	{
		int8_t		codes[P3_QK_K] __attribute__((aligned(64)));
		float		dsc[16] __attribute__((aligned(64)));

		dec_q6_k_block(&b[i], codes, dsc);
#pragma GCC unroll 16
		for (int g = 0; g < 16; g++)
			_mm512_storeu_ps(y + 16 * g, q6_k_group(codes, dsc, g));
	}
}

static float
dot_f32_Q6_K(const void *vw, const float *x, int64_t n)
{
	const P3BlockQ6_K *b = vw;
	__m512		a0 = _mm512_setzero_ps(),
				a1 = _mm512_setzero_ps();
	__m512		a2 = _mm512_setzero_ps(),
				a3 = _mm512_setzero_ps();

	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		int8_t		codes[P3_QK_K] __attribute__((aligned(64)));
		float		dsc[16] __attribute__((aligned(64)));

		dec_q6_k_block(&b[i], codes, dsc);
#pragma GCC unroll 16
		for (int g = 0; g < 16; g += 4, x += 64)
		{
			a0 = _mm512_fmadd_ps(q6_k_group(codes, dsc, g), _mm512_loadu_ps(x), a0);
			a1 = _mm512_fmadd_ps(q6_k_group(codes, dsc, g + 1), _mm512_loadu_ps(x + 16), a1);
			a2 = _mm512_fmadd_ps(q6_k_group(codes, dsc, g + 2), _mm512_loadu_ps(x + 32), a2);
			a3 = _mm512_fmadd_ps(q6_k_group(codes, dsc, g + 3), _mm512_loadu_ps(x + 48), a3);
		}
	}
	return reduce4(a0, a1, a2, a3);
}

/* ---------------------------------------------------------------------
 * activation quantizers (bit-identical to the reference)
 * --------------------------------------------------------------------- */

/* Q8_0 / Q8_1 block: returns the sum of the codes */
INLINE int
quant_q8_block32(const float *x, int8_t *qs, float *d_out)
{
	__m512		v0 = _mm512_loadu_ps(x);
	__m512		v1 = _mm512_loadu_ps(x + 16);
	__m512		m = absmax_fold(v1, absmax_fold(v0, _mm512_setzero_ps()));
	const float amax = _mm512_reduce_max_ps(m);
	const float d = amax / 127;
	const float id = d != 0.0f ? 1.0f / d : 0.0f;
	__m512i		q0 = round_away_clamp(_mm512_mul_ps(v0, _mm512_set1_ps(id)), 127.0f);
	__m512i		q1 = round_away_clamp(_mm512_mul_ps(v1, _mm512_set1_ps(id)), 127.0f);

	_mm_storeu_si128((__m128i *) qs, _mm512_cvtsepi32_epi8(q0));
	_mm_storeu_si128((__m128i *) (qs + 16), _mm512_cvtsepi32_epi8(q1));
	*d_out = d;
	return _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
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
		__m512		m = _mm512_setzero_ps();
		float		amax;
		float		max = 0.0f;
		float		iscale;

#pragma GCC unroll 16
		for (int k = 0; k < 16; k++)
			m = absmax_fold(_mm512_loadu_ps(x + 16 * k), m);
		amax = _mm512_reduce_max_ps(m);
		if (amax == 0.0f)
		{
			memset(&y[i], 0, sizeof(P3BlockQ8_K));
			continue;
		}
		/* the first element of largest magnitude, with its sign */
#pragma GCC unroll 16
		for (int k = 0; k < 16; k++)
		{
			__mmask16	e = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * k)),
											   _mm512_set1_ps(amax), _CMP_EQ_OQ);

			if (e)
			{
				max = x[16 * k + __builtin_ctz(e)];
				break;
			}
		}
		/* an infinite element counts as +-1e38, as in the reference */
		iscale = -127.0f / (isinf(max) ? copysignf(1e38f, max) : max);
#pragma GCC unroll 16
		for (int k = 0; k < 16; k++)
		{
			__m512		v = nan_to_zero(_mm512_mul_ps(_mm512_set1_ps(iscale), _mm512_loadu_ps(x + 16 * k)));
			__m512i		q;

			v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
			q = _mm512_cvt_roundps_epi32(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
			_mm_storeu_si128((__m128i *) (y[i].qs + 16 * k), _mm512_cvtsepi32_epi8(q));
			y[i].bsums[k] = (int16_t) _mm512_reduce_add_epi32(q);
		}
		y[i].d = 1.0f / iscale;
	}
}

/* ---------------------------------------------------------------------
 * integer dot products with quantized activations, for NT rows at once
 * --------------------------------------------------------------------- */

/* the activation block i of row t */
#define ACT_ROW(type, a, stride, t) ((const type *) ((const uint8_t *) (a) + (size_t) (t) * (stride)))

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

/* the same for one block (32 bytes) */
INLINE __m256i
nibbles_one(const uint8_t *p)
{
	__m256i		z = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *) p));

	return _mm256_and_si256(_mm256_srlv_epi16(z, _mm256_setr_epi64x(0, 0, 0x0004000400040004LL, 0x0004000400040004LL)),
							_mm256_set1_epi8(0x0F));
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

INLINE __m256i
sw_one_q8_0(const P3BlockQ8_0 *b)
{
	return _mm256_loadu_si256((const __m256i *) b->qs);
}

INLINE __m512i
sw_pair_q4_0(const P3BlockQ4_0 *b)
{
	return _mm512_sub_epi8(nibbles_pair(b[0].qs, b[1].qs), _mm512_set1_epi8(8));
}

INLINE __m256i
sw_one_q4_0(const P3BlockQ4_0 *b)
{
	return _mm256_sub_epi8(nibbles_one(b->qs), _mm256_set1_epi8(8));
}

INLINE __m512i
sw_pair_iq4_nl(const P3BlockIQ4_NL *b)
{
	__m512i		tab = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *) p3_iq4nl_values));

	return _mm512_shuffle_epi8(tab, nibbles_pair(b[0].qs, b[1].qs));
}

INLINE __m256i
sw_one_iq4_nl(const P3BlockIQ4_NL *b)
{
	__m256i		tab = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *) p3_iq4nl_values));

	return _mm256_shuffle_epi8(tab, nibbles_one(b->qs));
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

INLINE __m256i
sw_one_q5_0(const P3BlockQ5_0 *b)
{
	uint32_t	h;
	__m256i		q = nibbles_one(b->qs);

	memcpy(&h, b->qh, 4);
	return _mm256_mask_sub_epi8(q, (__mmask32) ~h, q, _mm256_set1_epi8(16));
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
 * The 32-element formats with Q8_0 activations: blocks in fours, the
 * products dx * dy of their scales formed at once; per pair of blocks the
 * lane sums times [dd0 x 8, dd1 x 8] go into one accumulator.
 */
#define DEF_VEC_DOT_S8(NAME, BLOCK, SWPAIR, SWONE) \
INLINE void \
vec_dot_##NAME##_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt) \
{ \
	const BLOCK *x = vw; \
	const int64_t nb = n / 32; \
	const __m512i lo2 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi32(1), 1); \
	const __m512i hi2 = _mm512_inserti64x4(_mm512_set1_epi32(2), _mm256_set1_epi32(3), 1); \
	__m512		acc[NTOK]; \
	int64_t		i = 0; \
	for (int t = 0; t < nt; t++) \
		acc[t] = _mm512_setzero_ps(); \
	for (; i + 4 <= nb; i += 4) \
	{ \
		__m512i		swa = SWPAIR(&x[i]); \
		__m512i		swb = SWPAIR(&x[i + 2]); \
		__m512i		awa = _mm512_abs_epi8(swa); \
		__m512i		awb = _mm512_abs_epi8(swb); \
		__mmask64	nega = _mm512_movepi8_mask(swa); \
		__mmask64	negb = _mm512_movepi8_mask(swb); \
		__m128		dx = d4_ps((const uint8_t *) &x[i], sizeof(BLOCK)); \
		_Pragma("GCC unroll 4") \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_0 *y = ACT_ROW(P3BlockQ8_0, va, stride, t) + i; \
			__m512		dd = _mm512_castps128_ps512(_mm_mul_ps(dx, d4_ps((const uint8_t *) y, sizeof(P3BlockQ8_0)))); \
			__m512i		sa = sdot_pair(awa, nega, load_pair(y[0].qs, y[1].qs)); \
			__m512i		sb = sdot_pair(awb, negb, load_pair(y[2].qs, y[3].qs)); \
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sa), _mm512_permutexvar_ps(lo2, dd), acc[t]); \
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sb), _mm512_permutexvar_ps(hi2, dd), acc[t]); \
		} \
	} \
	for (; i + 2 <= nb; i += 2) \
	{ \
		__m512i		sw = SWPAIR(&x[i]); \
		__m512i		aw = _mm512_abs_epi8(sw); \
		__mmask64	neg = _mm512_movepi8_mask(sw); \
		__m512		dx = pair_ps(h2f(x[i].d), h2f(x[i + 1].d)); \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_0 *y = ACT_ROW(P3BlockQ8_0, va, stride, t) + i; \
			__m512i		s = sdot_pair(aw, neg, load_pair(y[0].qs, y[1].qs)); \
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dx, pair_ps(h2f(y[0].d), h2f(y[1].d))), acc[t]); \
		} \
	} \
	if (i < nb) \
	{ \
		__m256i		sw = SWONE(&x[i]); \
		const float dx = h2f(x[i].d); \
		for (int t = 0; t < nt; t++) \
		{ \
			const P3BlockQ8_0 *y = ACT_ROW(P3BlockQ8_0, va, stride, t) + i; \
			__m256i		s = sdot_one(sw, _mm256_loadu_si256((const __m256i *) y->qs)); \
			acc[t] = _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(s)), _mm512_set1_ps(dx * h2f(y->d)), acc[t]); \
		} \
	} \
	for (int t = 0; t < nt; t++) \
		out[t] = hsum16(acc[t]); \
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

DEF_VEC_DOT_S8(Q8_0, P3BlockQ8_0, sw_pair_q8_0, sw_one_q8_0)
DEF_VEC_DOT_S8(Q4_0, P3BlockQ4_0, sw_pair_q4_0, sw_one_q4_0)
DEF_VEC_DOT_S8(Q5_0, P3BlockQ5_0, sw_pair_q5_0, sw_one_q5_0)
DEF_VEC_DOT_S8(IQ4_NL, P3BlockIQ4_NL, sw_pair_iq4_nl, sw_one_iq4_nl)

/* unsigned weight bytes of Q4_1 / Q5_1 (codes 0..15 / 0..31) */
INLINE __m512i
uw_pair_q4_1(const P3BlockQ4_1 *b)
{
	return nibbles_pair(b[0].qs, b[1].qs);
}

INLINE __m256i
uw_one_q4_1(const P3BlockQ4_1 *b)
{
	return nibbles_one(b->qs);
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

INLINE __m256i
uw_one_q5_1(const P3BlockQ5_1 *b)
{
	uint32_t	h;
	__m256i		q = nibbles_one(b->qs);

	memcpy(&h, b->qh, 4);
	return _mm256_mask_add_epi8(q, (__mmask32) h, q, _mm256_set1_epi8(16));
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

DEF_VEC_DOT_U8_Q8_1(Q4_1, P3BlockQ4_1, uw_pair_q4_1, uw_one_q4_1)
DEF_VEC_DOT_U8_Q8_1(Q5_1, P3BlockQ5_1, uw_pair_q5_1, uw_one_q5_1)

/*
 * Q4_K / Q5_K · Q8_K.  Chunk c of a block (64 elements) is unpacked to the
 * byte order of the activations: sub-block 2c (low nibbles of qs[32c ..])
 * then 2c+1 (high nibbles).  vpmaddubsw gives 16-bit pair sums, vpdpwssd
 * multiplies them by the sub-block scale (dword lanes 0-7: 2c, 8-15: 2c+1)
 * and accumulates exactly; the mins meet the activations' bsums.
 */
INLINE void
vec_dot_k_affine_nt(const uint8_t *xb, size_t xsize, int five, const void *va, size_t stride,
					int64_t n, float *out, const int nt)
{
	const int64_t nb = n / P3_QK_K;
	const __m512i m4 = _mm512_set1_epi8(0x0F);
	const __m512i shift04 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(4), 1);
	__m512		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm512_setzero_ps();
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
		mins16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(_mm_cvtsi64_si128((long long) mn8),
														_mm_cvtsi64_si128((long long) mn8)));
#pragma GCC unroll 16
		for (int c = 0; c < 4; c++)
		{
			__m512i		idx = _mm512_inserti64x4(_mm512_set1_epi32(2 * c), _mm256_set1_epi32(2 * c + 1), 1);

			wv[c] = _mm512_and_si512(_mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *) (qs + 32 * c))),
													   shift04), m4);
			sv[c] = _mm512_permutexvar_epi32(idx, scz);
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
			__m512i		s = _mm512_setzero_si512();
			__m256i		pm;

#pragma GCC unroll 16
			for (int c = 0; c < 4; c++)
				s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wv[c], _mm512_loadu_si512(y->qs + 64 * c)), sv[c]);
			pm = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) y->bsums), mins16);
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dx * y->d), acc[t]);
			acc[t] = _mm512_mask3_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(pm)),
										   _mm512_set1_ps(-(dmx * y->d)), acc[t], 0x00FF);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum16(acc[t]);
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

/*
 * Q6_K · Q8_K: codes 0..63 as unsigned bytes (q6_k_codes); group e of 64
 * elements has scales 4e .. 4e+3 (dword lane k: scale 4e + k / 4).  The
 * -32 offset is taken off once per block as 32 · Σ sc[g] · bsums[g].
 */
INLINE void
vec_dot_q6_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ6_K *x = vw;
	const int64_t nb = n / P3_QK_K;
	__m512		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm512_setzero_ps();
	for (int64_t i = 0; i < nb; i++)
	{
		__m512i		wv[4];
		__m512i		sv[4];
		__m128i		sc = _mm_loadu_si128((const __m128i *) x[i].scales);
		__m512i		scd = _mm512_cvtepi8_epi32(sc);
		__m256i		sc16 = _mm256_cvtepi8_epi16(sc);
		const float dx = h2f(x[i].d);

		scd = _mm512_or_si512(_mm512_and_si512(scd, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(scd, 16));
		q6_k_codes(&x[i], 0, &wv[0], &wv[1]);
		q6_k_codes(&x[i], 1, &wv[2], &wv[3]);
#pragma GCC unroll 16
		for (int e = 0; e < 4; e++)
		{
			__m512i		idx = _mm512_srli_epi32(_mm512_add_epi32(_mm512_set1_epi32(16 * e),
																 _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15)), 2);

			sv[e] = _mm512_permutexvar_epi32(idx, scd);
		}
#pragma GCC unroll 4
		for (int t = 0; t < nt; t++)
		{
			const P3BlockQ8_K *y = ACT_ROW(P3BlockQ8_K, va, stride, t) + i;
			__m512i		s = _mm512_setzero_si512();
			__m256i		corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) y->bsums), sc16);

#pragma GCC unroll 16
			for (int e = 0; e < 4; e++)
				s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wv[e], _mm512_loadu_si512(y->qs + 64 * e)), sv[e]);
			s = _mm512_sub_epi32(s, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 5)));
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dx * y->d), acc[t]);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum16(acc[t]);
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

/* the 16 signed scales (-32..31) of a Q3_K block (dwords) */
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
dec_iq4_xs_sub(const P3BlockIQ4_XS *b, const float *dl, int ib, __m512 *v0, __m512 *v1)
{
	__m512		tab = _mm512_mul_ps(_mm512_set1_ps(dl[ib]),
									_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) p3_iq4nl_values))));
	__m512i		q = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *) (b->qs + 16 * ib)));

	*v0 = _mm512_permutexvar_ps(q, tab);
	*v1 = _mm512_permutexvar_ps(_mm512_srli_epi32(q, 4), tab);
}

/* dl[ib] = d * (float) (ls - 32), as the reference */
INLINE void
iq4xs_factors(const P3BlockIQ4_XS *b, float *dl)
{
	_mm256_storeu_ps(dl, _mm256_mul_ps(_mm256_set1_ps(h2f(b->d)), _mm256_cvtepi32_ps(iq4xs_scales(b))));
}

static void
dequant_IQ4_XS(const void *vw, float *y, int64_t n)
{
	const P3BlockIQ4_XS *b = vw;

	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		float		dl[8];

		iq4xs_factors(&b[i], dl);
#pragma GCC unroll 8
		for (int ib = 0; ib < 8; ib++, y += 32)
		{
			__m512		v0,
						v1;

			dec_iq4_xs_sub(&b[i], dl, ib, &v0, &v1);
			_mm512_storeu_ps(y, v0);
			_mm512_storeu_ps(y + 16, v1);
		}
	}
}

static float
dot_f32_IQ4_XS(const void *vw, const float *x, int64_t n)
{
	const P3BlockIQ4_XS *b = vw;
	__m512		a0 = _mm512_setzero_ps(),
				a1 = _mm512_setzero_ps();
	__m512		a2 = _mm512_setzero_ps(),
				a3 = _mm512_setzero_ps();

	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		float		dl[8];

		iq4xs_factors(&b[i], dl);
#pragma GCC unroll 8
		for (int ib = 0; ib < 8; ib += 2, x += 64)
		{
			__m512		v0,
						v1,
						v2,
						v3;

			dec_iq4_xs_sub(&b[i], dl, ib, &v0, &v1);
			dec_iq4_xs_sub(&b[i], dl, ib + 1, &v2, &v3);
			a0 = _mm512_fmadd_ps(v0, _mm512_loadu_ps(x), a0);
			a1 = _mm512_fmadd_ps(v1, _mm512_loadu_ps(x + 16), a1);
			a2 = _mm512_fmadd_ps(v2, _mm512_loadu_ps(x + 32), a2);
			a3 = _mm512_fmadd_ps(v3, _mm512_loadu_ps(x + 48), a3);
		}
	}
	return reduce4(a0, a1, a2, a3);
}

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

/* group g (16 values) of a decoded Q3_K block: dl * (float) q */
INLINE __m512
q3_k_group(const int8_t *codes, const float *dl, int g)
{
	return _mm512_mul_ps(_mm512_set1_ps(dl[g]),
						 _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) (codes + 16 * g)))));
}

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

/* group g of a decoded Q2_K block: dl * (float) q - ml */
INLINE __m512
q2_k_group(const int8_t *codes, const float *dl, const float *ml, int g)
{
	return _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(dl[g]),
									   _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) (codes + 16 * g))))),
						 _mm512_set1_ps(ml[g]));
}

static void
dequant_Q3_K(const void *vw, float *y, int64_t n)
{
	const P3BlockQ3_K *b = vw;

	for (int64_t i = 0; i < n / P3_QK_K; i++, y += P3_QK_K)
	{
		int8_t		codes[P3_QK_K] __attribute__((aligned(64)));
		float		dl[16] __attribute__((aligned(64)));

		dec_q3_k_block(&b[i], codes, dl);
#pragma GCC unroll 16
		for (int g = 0; g < 16; g++)
			_mm512_storeu_ps(y + 16 * g, q3_k_group(codes, dl, g));
	}
}

static float
dot_f32_Q3_K(const void *vw, const float *x, int64_t n)
{
	const P3BlockQ3_K *b = vw;
	__m512		a0 = _mm512_setzero_ps(),
				a1 = _mm512_setzero_ps();
	__m512		a2 = _mm512_setzero_ps(),
				a3 = _mm512_setzero_ps();

	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		int8_t		codes[P3_QK_K] __attribute__((aligned(64)));
		float		dl[16] __attribute__((aligned(64)));

		dec_q3_k_block(&b[i], codes, dl);
#pragma GCC unroll 16
		for (int g = 0; g < 16; g += 4, x += 64)
		{
			a0 = _mm512_fmadd_ps(q3_k_group(codes, dl, g), _mm512_loadu_ps(x), a0);
			a1 = _mm512_fmadd_ps(q3_k_group(codes, dl, g + 1), _mm512_loadu_ps(x + 16), a1);
			a2 = _mm512_fmadd_ps(q3_k_group(codes, dl, g + 2), _mm512_loadu_ps(x + 32), a2);
			a3 = _mm512_fmadd_ps(q3_k_group(codes, dl, g + 3), _mm512_loadu_ps(x + 48), a3);
		}
	}
	return reduce4(a0, a1, a2, a3);
}

static void
dequant_Q2_K(const void *vw, float *y, int64_t n)
{
	const P3BlockQ2_K *b = vw;

	for (int64_t i = 0; i < n / P3_QK_K; i++, y += P3_QK_K)
	{
		int8_t		codes[P3_QK_K] __attribute__((aligned(64)));
		float		dl[16] __attribute__((aligned(64)));
		float		ml[16] __attribute__((aligned(64)));

		dec_q2_k_block(&b[i], codes, dl, ml);
#pragma GCC unroll 16
		for (int g = 0; g < 16; g++)
			_mm512_storeu_ps(y + 16 * g, q2_k_group(codes, dl, ml, g));
	}
}

static float
dot_f32_Q2_K(const void *vw, const float *x, int64_t n)
{
	const P3BlockQ2_K *b = vw;
	__m512		a0 = _mm512_setzero_ps(),
				a1 = _mm512_setzero_ps();
	__m512		a2 = _mm512_setzero_ps(),
				a3 = _mm512_setzero_ps();

	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		int8_t		codes[P3_QK_K] __attribute__((aligned(64)));
		float		dl[16] __attribute__((aligned(64)));
		float		ml[16] __attribute__((aligned(64)));

		dec_q2_k_block(&b[i], codes, dl, ml);
#pragma GCC unroll 16
		for (int g = 0; g < 16; g += 4, x += 64)
		{
			a0 = _mm512_fmadd_ps(q2_k_group(codes, dl, ml, g), _mm512_loadu_ps(x), a0);
			a1 = _mm512_fmadd_ps(q2_k_group(codes, dl, ml, g + 1), _mm512_loadu_ps(x + 16), a1);
			a2 = _mm512_fmadd_ps(q2_k_group(codes, dl, ml, g + 2), _mm512_loadu_ps(x + 32), a2);
			a3 = _mm512_fmadd_ps(q2_k_group(codes, dl, ml, g + 3), _mm512_loadu_ps(x + 48), a3);
		}
	}
	return reduce4(a0, a1, a2, a3);
}

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
			sv[p] = _mm512_permutexvar_epi32(_mm512_inserti64x4(_mm512_set1_epi32(2 * p), _mm256_set1_epi32(2 * p + 1), 1), scz);
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
 * Q3_K / Q2_K · Q8_K: 2-bit codes (Q3_K: plus 4 for its high bit, so 0..7,
 * the -4 taken off through the bsums like Q6_K's -32), pair sums times the
 * 16-element group scales by vpdpwssd; Q2_K's mins meet the bsums.
 */
INLINE void
vec_dot_q3_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ3_K *x = vw;
	__m512		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm512_setzero_ps();
	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		__m512i		wv[4];
		__m512i		sv[4];
		__m512i		scd = q3k_scales16(x[i].scales);
		__m256i		sc16 = _mm512_cvtepi32_epi16(scd);
		__m512i		pairs = word_pairs(scd);
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
			__m256i		corr = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) y->bsums), sc16);

#pragma GCC unroll 4
			for (int e = 0; e < 4; e++)
				s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wv[e], _mm512_loadu_si512(y->qs + 64 * e)), sv[e]);
			s = _mm512_sub_epi32(s, _mm512_zextsi256_si512(_mm256_slli_epi32(corr, 2)));
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dx * y->d), acc[t]);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum16(acc[t]);
}

INLINE void
vec_dot_q2_k_nt(const void *vw, const void *va, size_t stride, int64_t n, float *out, const int nt)
{
	const P3BlockQ2_K *x = vw;
	__m512		acc[NTOK];

	for (int t = 0; t < nt; t++)
		acc[t] = _mm512_setzero_ps();
	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		__m512i		wv[4];
		__m512i		sv[4];
		__m128i		sc = _mm_loadu_si128((const __m128i *) x[i].scales);
		__m512i		pairs = word_pairs(_mm512_cvtepu8_epi32(_mm_and_si128(sc, _mm_set1_epi8(15))));
		__m256i		mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(15)));
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
			__m512i		s = _mm512_setzero_si512();
			__m256i		pm = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) y->bsums), mins16);

#pragma GCC unroll 4
			for (int e = 0; e < 4; e++)
				s = _mm512_dpwssd_epi32(s, _mm512_maddubs_epi16(wv[e], _mm512_loadu_si512(y->qs + 64 * e)), sv[e]);
			acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_set1_ps(dx * y->d), acc[t]);
			acc[t] = _mm512_mask3_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(pm)),
										   _mm512_set1_ps(-(dmx * y->d)), acc[t], 0x00FF);
		}
	}
	for (int t = 0; t < nt; t++)
		out[t] = hsum16(acc[t]);
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
 * the set (compiled without the target options: called before any check
 * could matter, it only stores pointers)
 * --------------------------------------------------------------------- */

void
p3_kernels_fill_avx512(P3KernelSet *k)
{
	k->name = "avx512";

	k->dot_f32_f32 = dot_f32_f32;
	k->dot_f32_f32_ntok = dot_f32_f32_ntok;
	k->dot_f32_f16 = dot_f32_f16;
	k->axpy_f16 = axpy_f16;
	k->axpy_f32 = axpy_f32;

	k->dot_f32[P3_TYPE_F32] = dot_f32_F32;
	k->vec_dot[P3_TYPE_F32] = vec_dot_F32;
	k->vec_dot_ntok[P3_TYPE_F32] = vec_dot_ntok_F32;
	k->vec_dot_ntok[P3_TYPE_F16] = vec_dot_ntok_F16;
	k->vec_dot_ntok[P3_TYPE_BF16] = vec_dot_ntok_BF16;
	k->dequant[P3_TYPE_F16] = dequant_F16;
	k->dot_f32[P3_TYPE_F16] = dot_f32_F16;
	k->vec_dot[P3_TYPE_F16] = vec_dot_F16;
	k->quantize[P3_TYPE_F16] = quantize_F16;
	k->dequant[P3_TYPE_BF16] = dequant_BF16;
	k->dot_f32[P3_TYPE_BF16] = dot_f32_BF16;
	k->vec_dot[P3_TYPE_BF16] = vec_dot_BF16;

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
