/*
 * kernels_x86_common.h — the code the "avx2" and "avx512" kernel sets
 * share, written once.  Private to kernels_avx2.c and kernels_avx512.c.
 *
 * Each of the two files includes this header after its target pragma, so
 * everything here is compiled twice, once for each set's instructions, and
 * stays static to its file.  Two parts:
 *
 *   1. helpers on 128- and 256-bit registers that need nothing beyond
 *      AVX2 + FMA + F16C, so both sets use the same code: f16 scales, the
 *      packed scales and mins of Q4_K / Q5_K, the Q2_K mins, one block of a
 *      32-element format as 32 weight bytes, the products with the Q8_K
 *      block sums;
 *   2. kernels written once over the including file's float vector layer
 *      (VL lanes of type vfloat, listed below), where the sets differ only
 *      in register width: the float dots and their multi-token form, the
 *      f16 / bf16 conversions, the activation quantizers, the dequant /
 *      fused dot_f32 loop every quantized format runs on its set's
 *      decoder, the vec_dot wrappers and the table of entries.
 *
 * What really differs stays in each set's file: the decoders of the
 * quantized formats, the integer dot products (vpmaddubsw + vpmaddwd
 * against vpdpbusd / vpdpwssd, 32 against 64 bytes per register), axpy's
 * tail, and the layer itself.
 *
 * Float layout (both sets): dot_f32_f32 keeps four accumulators; element i
 * is added by FMA, in increasing i, to lane i % VL of accumulator
 * (i / VL) % 4; a last partial register goes through vf_fmadd_part, which
 * leaves the unused lanes untouched; reduce4 then sums in one fixed order
 * (ggml_vec_dot_f32 / _f16's: (0 + 2) + (1 + 3), then its lane tree).
 * Every fused dot_f32[T] decodes its weights to exactly the f32 values
 * dequant[T] produces (the reference's arithmetic) and feeds them through
 * the same lanes in the same order, so dot_f32[T](w, x) has the bits of
 * dot_f32_f32(dequant[T](w), x).
 *
 * Quantizers reproduce the reference (p3_quantize_act_row_ref: llama.cpp's
 * x86 rule) bit for bit: Q8_0 / Q8_1 multiply by 127 / amax, Q8_K by
 * -127 / max; all round to nearest even, NaN gives 0, values are clamped
 * first (clamping to integers commutes with rounding), and the stored f16
 * scales come from vcvtps2ph with round-to-nearest-even.
 *
 * The including file defines first (the layer of its register width):
 *   INLINE                    static inline, always inlined
 *   VL, vfloat                float lanes per register, the register type
 *   X86_NTOK_ROWS             activation rows dot_f32_f32_ntok runs at once
 *   vf_zero() vf_load(p) vf_store(p, v)
 *   vf_fmadd(a, b, c)         a * b + c, fused
 *   vf_load_part(p, r)        the first r < VL floats at p, zeros elsewhere
 *                             (reads only those r), vf_store_part(p, v, r)
 *                             writes only r; vf_fmadd_part(a, b, c, r) is
 *                             vf_fmadd in lanes < r and c elsewhere
 *   vf_load_f16(p) vf_load_bf16(p), and their _part(p, r) forms: VL
 *                             f16 / bf16 values as floats (vcvtph2ps: a
 *                             signalling NaN comes back quiet)
 *   vf_load_f16_exact(p), _part(p, r): as p3_fp16_to_fp32 (NaNs unquieted)
 *   vf_store_f16(p, v), _part(p, v, r): to f16, round to nearest even
 *   reduce4(a0, a1, a2, a3)   the fixed reduction of the four accumulators
 *   absmax_fold(x, m)         max(|x|, m) per lane; NaN lanes of x ignored
 *   vf_hmax(m)                the largest lane
 *   vf_abs_eq(v, a)           bit k set where |v[k]| == a
 *   q8_codes32(v, id, qs)     Q8_0 codes (nearest even) of the 32 floats
 *                             v[0 .. 32 / VL) times id into qs; returns their sum
 *   q8k_codes32(x, iscale, qs, bsums)  Q8_K codes of 32 floats at x and
 *                             the block sums of their two halves
 */
#ifndef PHI3_KERNELS_X86_COMMON_H
#define PHI3_KERNELS_X86_COMMON_H

#define NTOK P3_KERNEL_NTOK

/* the activation row t of a multi-token kernel, as blocks of type */
#define ACT_ROW(type, a, stride, t) ((const type *) ((const uint8_t *) (a) + (size_t) (t) * (stride)))

/* ---------------------------------------------------------------------
 * part 1: helpers on 128- and 256-bit registers (AVX2, FMA, F16C)
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

/* (k4_unpack, the 6-bit scales and mins of a Q4_K / Q5_K block, is in quant_blocks.h) */

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
	 * an ALU-heavy decoder, slower for a load-heavy one).
	 */
	if (reload)
		__asm__ volatile("" ::: "memory");
}

/* DEF_FLOAT_KERNELS' per-block SETUP of Q4_K / Q5_K: the sub-block factors d1, m1 (see k4_factors) */
#define K_AFFINE_SETUP(RELOAD) \
	float d1[8]; float m1[8]; k4_factors(b->scales, h2f(b->d), h2f(b->dmin), d1, m1, RELOAD)

/* the 8 mins of a Q4_K / Q5_K block (k4_unpack's mn8) as 16 words, each twice (one per 16-element bsum) */
INLINE __m256i
k4_mins16(uint64_t mn8)
{
	return _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(_mm_cvtsi64_si128((long long) mn8),
												  _mm_cvtsi64_si128((long long) mn8)));
}

/* the mins (high nibbles) of the 16 groups of a Q2_K block as words */
INLINE __m256i
q2k_mins16(const uint8_t *scales)
{
	__m128i		sc = _mm_loadu_si128((const __m128i *) scales);

	return _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(15)));
}

/* 16 bytes of nibbles -> 32 codes: low nibbles (elements 0..15), then high */
INLINE __m256i
nibbles32(const uint8_t *p)
{
	__m128i		q = _mm_loadu_si128((const __m128i *) p);
	__m128i		m4 = _mm_set1_epi8(0x0F);

	return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4));
}

/* the 32 signed code-book values (p3_iq4nl_values) of 16 bytes of IQ4_NL / IQ4_XS nibbles */
INLINE __m256i
iq4nl_values32(const uint8_t *qs)
{
	return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *) p3_iq4nl_values)),
							   nibbles32(qs));
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

/* signed weight bytes of one block of the 32-element formats with Q8_0 activations */
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
	return iq4nl_values32(b->qs);
}

/* Q5_0: (nibble | bit << 4) - 16; the bit of element j is bit j of qh */
INLINE __m256i
sw_q5_0(const P3BlockQ5_0 *b)
{
	uint32_t	qh;

	memcpy(&qh, b->qh, 4);
	return _mm256_sub_epi8(_mm256_or_si256(nibbles32(b->qs), _mm256_and_si256(bits_to_bytes(qh), _mm256_set1_epi8(16))),
						   _mm256_set1_epi8(16));
}

/* unsigned weight bytes of one block of Q4_1 / Q5_1 (codes 0..15 / 0..31) */
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

/* 8 dword lanes: bsums[2k] * s[2k] + bsums[2k+1] * s[2k+1] of a Q8_K block and 16 word factors s */
INLINE __m256i
bsums_madd(const P3BlockQ8_K *y, __m256i s)
{
	return _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *) y->bsums), s);
}

/* ---------------------------------------------------------------------
 * part 2: kernels over the including file's vector layer
 * --------------------------------------------------------------------- */

/* the weights a float kernel reads */
enum
{
	W_F32, W_F16, W_BF16
};

/* VL weights of kind at element i of w, as floats */
INLINE vfloat
load_w(const void *w, int64_t i, const int kind)
{
	if (kind == W_F16)
		return vf_load_f16((const uint16_t *) w + i);
	if (kind == W_BF16)
		return vf_load_bf16((const uint16_t *) w + i);
	return vf_load((const float *) w + i);
}

/* the r < VL weights of kind at element i of w, as floats, zeros in the other lanes */
INLINE vfloat
load_w_part(const void *w, int64_t i, int r, const int kind)
{
	if (kind == W_F16)
		return vf_load_f16_part((const uint16_t *) w + i, r);
	if (kind == W_BF16)
		return vf_load_bf16_part((const uint16_t *) w + i, r);
	return vf_load_part((const float *) w + i, r);
}

/* w · x in the float layout (see the top of this file), w of the given kind */
INLINE float
dot_float(const void *w, const float *x, int64_t n, const int kind)
{
	vfloat		acc[4] = {vf_zero(), vf_zero(), vf_zero(), vf_zero()};
	int64_t		i = 0;
	int			k = 0;

	for (; i + 4 * VL <= n; i += 4 * VL)
	{
		acc[0] = vf_fmadd(load_w(w, i, kind), vf_load(x + i), acc[0]);
		acc[1] = vf_fmadd(load_w(w, i + VL, kind), vf_load(x + i + VL), acc[1]);
		acc[2] = vf_fmadd(load_w(w, i + 2 * VL, kind), vf_load(x + i + 2 * VL), acc[2]);
		acc[3] = vf_fmadd(load_w(w, i + 3 * VL, kind), vf_load(x + i + 3 * VL), acc[3]);
	}
	for (; i + VL <= n; i += VL, k++)
		acc[k] = vf_fmadd(load_w(w, i, kind), vf_load(x + i), acc[k]);
	if (i < n)
		acc[k] = vf_fmadd_part(load_w_part(w, i, (int) (n - i), kind), vf_load_part(x + i, (int) (n - i)), acc[k],
							   (int) (n - i));
	return reduce4(acc[0], acc[1], acc[2], acc[3]);
}

/* the float dots of the set and the entries of the float weight types built on them */
static float
dot_f32_f32(const float *a, const float *b, int64_t n)
{
	return dot_float(a, b, n, W_F32);
}

/* f16 weights · f32 (also the attention's q · k for an f16 K cache) */
static float
dot_f16_f32(const uint16_t *w, const float *x, int64_t n)
{
	return dot_float(w, x, n, W_F16);
}

static float
dot_f32_BF16(const void *w, const float *x, int64_t n)
{
	return dot_float(w, x, n, W_BF16);
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
 * dot_f32_f32 of one row w against nr rows of x (row stride ldx), per row
 * the same operations, over elements [i0, i0 + m) (w and x point at
 * element i0) with the four accumulators of each row kept in state between
 * calls (i0 is a multiple of 64, hence of 4 VL, so every element meets the
 * lane dot_f32_f32 gives it).
 */
INLINE void
dot_f32_f32_rows(const float *w, const float *x, int64_t ldx, int64_t n, int64_t i0, int64_t m,
				 float *state, float *out, const int nr)
{
	vfloat		acc[NTOK][4];
	int64_t		i = 0;			/* element i0 + i; i0 % 64 == 0 keeps the lanes */
	int			k = 0;

	for (int t = 0; t < nr; t++)
		for (int j = 0; j < 4; j++)
			acc[t][j] = i0 == 0 ? vf_zero() : vf_load(state + t * P3_KERNEL_DOT_STATE + VL * j);
	for (; i + 4 * VL <= m; i += 4 * VL)
	{
		vfloat		w0 = vf_load(w + i);
		vfloat		w1 = vf_load(w + i + VL);
		vfloat		w2 = vf_load(w + i + 2 * VL);
		vfloat		w3 = vf_load(w + i + 3 * VL);

#pragma GCC unroll 4
		for (int t = 0; t < nr; t++)
		{
			const float *xt = x + t * ldx + i;

			acc[t][0] = vf_fmadd(w0, vf_load(xt), acc[t][0]);
			acc[t][1] = vf_fmadd(w1, vf_load(xt + VL), acc[t][1]);
			acc[t][2] = vf_fmadd(w2, vf_load(xt + 2 * VL), acc[t][2]);
			acc[t][3] = vf_fmadd(w3, vf_load(xt + 3 * VL), acc[t][3]);
		}
	}
	for (; i + VL <= m; i += VL, k++)
		for (int t = 0; t < nr; t++)
			acc[t][k] = vf_fmadd(vf_load(w + i), vf_load(x + t * ldx + i), acc[t][k]);
	if (i < m)
		for (int t = 0; t < nr; t++)
			acc[t][k] = vf_fmadd_part(vf_load_part(w + i, (int) (m - i)), vf_load_part(x + t * ldx + i, (int) (m - i)),
									  acc[t][k], (int) (m - i));
	if (i0 + m >= n)
	{
		for (int t = 0; t < nr; t++)
			out[t] = reduce4(acc[t][0], acc[t][1], acc[t][2], acc[t][3]);
	}
	else
	{
		for (int t = 0; t < nr; t++)
			for (int j = 0; j < 4; j++)
				vf_store(state + t * P3_KERNEL_DOT_STATE + VL * j, acc[t][j]);
	}
}

/* dot_f32_f32 of one row against NTOK rows, X86_NTOK_ROWS at a time */
static void
dot_f32_f32_ntok(const float *w, const float *x, int64_t ldx, int64_t n,
				 int64_t i0, int64_t m, float *state, float *out)
{
	for (int t = 0; t < NTOK; t += X86_NTOK_ROWS)
		dot_f32_f32_rows(w, x + t * ldx, ldx, n, i0, m, state + t * P3_KERNEL_DOT_STATE, out + t, X86_NTOK_ROWS);
}

/* f16 -> f32 exactly as p3_fp16_to_fp32 */
static void
dequant_F16(const void *vw, float *y, int64_t n)
{
	const uint16_t *w = vw;
	int64_t		i = 0;

	for (; i + VL <= n; i += VL)
		vf_store(y + i, vf_load_f16_exact(w + i));
	if (i < n)
		vf_store_part(y + i, vf_load_f16_exact_part(w + i, (int) (n - i)), (int) (n - i));
}

/* bf16 -> f32: the bits shifted up */
static void
dequant_BF16(const void *vw, float *y, int64_t n)
{
	const uint16_t *w = vw;
	int64_t		i = 0;

	for (; i + VL <= n; i += VL)
		vf_store(y + i, vf_load_bf16(w + i));
	if (i < n)
		vf_store_part(y + i, vf_load_bf16_part(w + i, (int) (n - i)), (int) (n - i));
}

/* f32 -> f16, round to nearest even (the KV cache store) */
static void
quantize_F16(const float *x, void *vy, int64_t n)
{
	uint16_t   *y = vy;
	int64_t		i = 0;

	for (; i + VL <= n; i += VL)
		vf_store_f16(y + i, vf_load(x + i));
	if (i < n)
		vf_store_f16_part(y + i, vf_load_part(x + i, (int) (n - i)), (int) (n - i));
}

/* ---- activation quantizers (bit-identical to the reference) ---- */

/*
 * Q8_0 / Q8_1 block as ggml's x86 quantize_row_q8_0 / _q8_1: d = amax / 127,
 * codes x * (127 / amax) rounded to nearest even (p3_quantize_act_row_ref);
 * returns the sum of the codes
 */
INLINE int
quant_q8_block32(const float *x, int8_t *qs, float *d_out)
{
	vfloat		v[32 / VL];
	vfloat		m = vf_zero();

#pragma GCC unroll 16
	for (int k = 0; k < 32 / VL; k++)
	{
		v[k] = vf_load(x + VL * k);
		m = absmax_fold(v[k], m);
	}

	const float amax = vf_hmax(m);
	const float d = amax / 127;
	const float id = amax != 0.0f ? 127.0f / amax : 0.0f;

	*d_out = d;
	return q8_codes32(v, id, qs);
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

/* Q8_K: scale -127 / (the first element of largest magnitude), codes to nearest even, block sums */
static void
quantize_Q8_K(const float *x, void *vy, int64_t n)
{
	P3BlockQ8_K *y = vy;

	for (int64_t i = 0; i < n / P3_QK_K; i++, x += P3_QK_K)
	{
		vfloat		m = vf_zero();
		float		amax;
		float		max = 0.0f;
		float		iscale;

#pragma GCC unroll 16
		for (int k = 0; k < P3_QK_K / VL; k++)
			m = absmax_fold(vf_load(x + VL * k), m);
		amax = vf_hmax(m);
		if (amax == 0.0f)
		{
			memset(&y[i], 0, sizeof(P3BlockQ8_K));
			continue;
		}
		/* the first element of largest magnitude, with its sign */
#pragma GCC unroll 16
		for (int k = 0; k < P3_QK_K / VL; k++)
		{
			unsigned	e = vf_abs_eq(vf_load(x + VL * k), amax);

			if (e)
			{
				max = x[VL * k + __builtin_ctz(e)];
				break;
			}
		}
		/* an infinite element counts as +-1e38, as in the reference */
		iscale = -127.0f / (isinf(max) ? copysignf(1e38f, max) : max);
#pragma GCC unroll 16
		for (int g = 0; g < 8; g++)
			q8k_codes32(x + 32 * g, iscale, y[i].qs + 32 * g, y[i].bsums + 2 * g);
		y[i].d = 1.0f / iscale;
	}
}

/* ---- float kernels of the quantized formats ---- */

/*
 * dequant_NAME and the fused dot_f32_NAME of a format with blocks of ELEMS
 * elements, from its set's decoder: per block b, SETUP runs once, then DEC
 * puts the values of elements 4 VL r .. 4 VL r + 4 VL - 1 of b into
 * v[0..3], for r = 0 .. ELEMS / (4 VL) - 1.  SETUP and DEC are statements
 * over b, r and v; their values must be dequant's exactly (see the top).
 */
#define DEF_FLOAT_KERNELS(NAME, BLOCK, ELEMS, SETUP, DEC) \
static void \
dequant_##NAME(const void *vw, float *y, int64_t n) \
{ \
	for (int64_t i = 0; i < n / (ELEMS); i++) \
	{ \
		const BLOCK *b = (const BLOCK *) vw + i; \
		SETUP; \
		_Pragma("GCC unroll 16") \
		for (int r = 0; r < (ELEMS) / (4 * VL); r++, y += 4 * VL) \
		{ \
			vfloat		v[4]; \
			DEC; \
			_Pragma("GCC unroll 4") \
			for (int k = 0; k < 4; k++) \
				vf_store(y + VL * k, v[k]); \
		} \
	} \
} \
static float \
dot_f32_##NAME(const void *vw, const float *x, int64_t n) \
{ \
	vfloat		a0 = vf_zero(), a1 = vf_zero(), a2 = vf_zero(), a3 = vf_zero(); \
	for (int64_t i = 0; i < n / (ELEMS); i++) \
	{ \
		const BLOCK *b = (const BLOCK *) vw + i; \
		SETUP; \
		_Pragma("GCC unroll 16") \
		for (int r = 0; r < (ELEMS) / (4 * VL); r++, x += 4 * VL) \
		{ \
			vfloat		v[4]; \
			DEC; \
			a0 = vf_fmadd(v[0], vf_load(x), a0); \
			a1 = vf_fmadd(v[1], vf_load(x + VL), a1); \
			a2 = vf_fmadd(v[2], vf_load(x + 2 * VL), a2); \
			a3 = vf_fmadd(v[3], vf_load(x + 3 * VL), a3); \
		} \
	} \
	return reduce4(a0, a1, a2, a3); \
}

/* ---- integer dot products ---- */

/*
 * vec_dot_NAME and vec_dot_ntok_NAME from the set's inline kernel FN for NT
 * activation rows: FN(w, extra arguments..., a, stride, n, out, nt).
 */
#define DEF_VEC_WRAPPERS(NAME, FN, ...) \
static float \
vec_dot_##NAME(const void *w, const void *a, int64_t n) \
{ \
	float		out; \
	FN(w, ##__VA_ARGS__, a, 0, n, &out, 1); \
	return out; \
} \
static void \
vec_dot_ntok_##NAME(const void *w, const void *a, size_t stride, int64_t n, float *out) \
{ \
	FN(w, ##__VA_ARGS__, a, stride, n, out, NTOK); \
}

/* ---- llama.cpp's arithmetic: ggml's code of the build of this register width ---- */

/*
 * ggml's sum of the VL lanes held in rows l * stride + [0, n) (l < VL),
 * into row 0, for each of the n columns: lanes l and l + VL/2 added, halving
 * down to four lanes, then either (0 + 2) + (1 + 3) — _mm512_reduce_add_ps,
 * and the AVX2 softmax's movehl / movehdup — or (0 + 1) + (2 + 3), the two
 * hadds of the AVX2 GGML_F32x8_REDUCE.
 */
/* rows a[0 .. n) = a + b, VL columns at a time */
INLINE void
rows_add(float *a, const float *b, int64_t n)
{
	int64_t		d = 0;

	for (; d + VL <= n; d += VL)
		vf_store(a + d, vf_load(a + d) + vf_load(b + d));
	if (d < n)
		vf_store_part(a + d, vf_load_part(a + d, (int) (n - d)) + vf_load_part(b + d, (int) (n - d)), (int) (n - d));
}

static void
ggml_tree(float *r, size_t stride, int64_t n, bool hadd_tail)
{
	for (int half = VL / 2; half >= 4; half /= 2)
		for (int l = 0; l < half; l++)
			rows_add(r + l * stride, r + (l + half) * stride, n);
	if (hadd_tail)
	{
		rows_add(r, r + stride, n);
		rows_add(r + 2 * stride, r + 3 * stride, n);
		rows_add(r, r + 2 * stride, n);
	}
	else
	{
		rows_add(r, r + 2 * stride, n);
		rows_add(r + stride, r + 3 * stride, n);
		rows_add(r, r + stride, n);
	}
}

/*
 * hadd tail in ggml_vec_dot_f16's reduction: the AVX2 build (the including
 * file's vf_hsum_dot / vf_hsum_sm are the same trees on one register)
 */
#define GGML_DOT_HADD (VL == 8)

/*
 * ggml_vec_dot_f16 (k f16) and ggml_vec_dot_f32 (k f32): the same chunks,
 * accumulators and reduction (ggml_dot_chunks: the np = n rounded down to
 * 4 VL elements into one register, before its lane sum); the leftover
 * elements added in double (f16) or in float (f32, see below).
 */
INLINE vfloat
ggml_dot_chunks(const float *q, const void *k, int64_t np, const bool f16)
{
	const uint16_t *k16 = k;
	const float *k32 = k;
	vfloat		a0 = vf_zero(),
				a1 = vf_zero(),
				a2 = vf_zero(),
				a3 = vf_zero();

#define KROW(o) (f16 ? vf_load_f16(k16 + (o)) : vf_load(k32 + (o)))
	for (int64_t i = 0; i < np; i += 4 * VL)
	{
		a0 = vf_fmadd(KROW(i), vf_load(q + i), a0);
		a1 = vf_fmadd(KROW(i + VL), vf_load(q + i + VL), a1);
		a2 = vf_fmadd(KROW(i + 2 * VL), vf_load(q + i + 2 * VL), a2);
		a3 = vf_fmadd(KROW(i + 3 * VL), vf_load(q + i + 3 * VL), a3);
	}
#undef KROW
	/* ggml: acc0 + acc2, acc1 + acc3, then together */
	return (a0 + a2) + (a1 + a3);
}

INLINE float
ggml_dot_any(const float *q, const void *k, int64_t n, const bool f16)
{
	const uint16_t *k16 = k;
	const float *k32 = k;
	int64_t		np = n & ~(int64_t) (4 * VL - 1);
	vfloat		a0 = ggml_dot_chunks(q, k, np, f16);

	if (f16)
	{
		double		sum = vf_hsum_dot(a0);

		for (int64_t i = np; i < n; i++)
			sum += (double) (h2f(k16[i]) * q[i]);
		return (float) sum;
	}
	else
	{
		/*
		 * ggml's "sumf += x[i] * y[i]" as GCC compiled it in llama.cpp's
		 * builds: products of whole groups of VL, then one of VL / 2,
		 * rounded and added in order; the last few by a fused multiply-add
		 */
		float		sum = vf_hsum_dot(a0);
		int64_t		m = np + (n - np) / VL * VL;
		int64_t		i = np;

		if (n - m >= VL / 2)
			m += VL / 2;
		for (; i < m; i++)
		{
			float		p = k32[i] * q[i];

			sum += p;
		}
		for (; i < n; i++)
			sum = fmaf(k32[i], q[i], sum);
		return sum;
	}
}

static float
ggml_dot_f16(const float *q, const uint16_t *k, int64_t n)
{
	return ggml_dot_any(q, k, n, true);
}

static float
ggml_dot_f32(const float *q, const float *k, int64_t n)
{
	return ggml_dot_any(q, k, n, false);
}

/* ggml_dot_f16 of each query and each of nkeys rows k + j * stride (the avx512 set has a faster one) */
static void
ggml_dot_f16_keys_each(const float *q, size_t qstride, int32_t nq, const uint8_t *k, size_t stride,
					   int32_t nkeys, int64_t n, float *out, size_t ostride)
{
	for (int32_t i = 0; i < nq; i++)
		for (int32_t j = 0; j < nkeys; j++)
			out[(size_t) i * ostride + j] =
				ggml_dot_f16(q + (size_t) i * qstride, (const uint16_t *) (const void *) (k + (size_t) j * stride), n);
}

/*
 * V·p in ggml_vec_dot_f16's order over the transposed V: position j in
 * lane j % VL of accumulator (j / VL) % 4, kept as slot row j % (4 VL)
 * (slots zeroed by the caller); positions j0 .. j0 + n - 1 here, rows v +
 * (j - j0) * stride, so a cache of blocks is summed block by block.
 */
INLINE void
ggml_vp_acc_any(float *slots, const float *p, const uint8_t *v, size_t stride, int32_t j0, int32_t n,
				int32_t hd, const bool f16)
{
	const int	ns = 4 * VL;
	int32_t		dv = hd - hd % VL;

	for (int32_t jj = 0; jj < n; jj++)
	{
		float	   *s = slots + (size_t) ((j0 + jj) % ns) * (size_t) hd;
		const uint16_t *v16 = (const uint16_t *) (v + (size_t) jj * stride);
		const float *v32 = (const float *) (v + (size_t) jj * stride);
		vfloat		pj = vf_set1(p[jj]);
		int32_t		d = 0;

		/* the rows may be far apart (a cache row of every head): ask for one 8 ahead */
		if (jj + 8 < n)
			for (int32_t b = 0; b < hd * (f16 ? 2 : 4); b += 64)
				_mm_prefetch((const char *) (v + (size_t) (jj + 8) * stride) + b, _MM_HINT_T0);

		for (; d < dv; d += VL)
			vf_store(s + d, vf_fmadd(f16 ? vf_load_f16(v16 + d) : vf_load(v32 + d), pj, vf_load(s + d)));
		if (d < hd)
			vf_store_part(s + d, vf_fmadd(f16 ? vf_load_f16_part(v16 + d, hd - d) : vf_load_part(v32 + d, hd - d),
										  pj, vf_load_part(s + d, hd - d)), hd - d);
	}
}

static void
ggml_vp_f16_acc(float *slots, const float *p, const uint8_t *v, size_t stride, int32_t j0, int32_t n, int32_t hd)
{
	ggml_vp_acc_any(slots, p, v, stride, j0, n, hd, true);
}

static void
ggml_vp_f32_acc(float *slots, const float *p, const uint8_t *v, size_t stride, int32_t j0, int32_t n, int32_t hd)
{
	ggml_vp_acc_any(slots, p, v, stride, j0, n, hd, false);
}

/* the sums of the slots: acc0 + acc2, acc1 + acc3, then together, then ggml's lane tree */
static void
ggml_vp_finish(float *out, float *slots, int32_t hd)
{
	for (int l = 0; l < VL; l++)
	{
		float	   *s0 = slots + (size_t) l * hd;
		float	   *s1 = s0 + (size_t) VL * hd;

		rows_add(s0, s1 + (size_t) VL * hd, hd);
		rows_add(s1, s1 + (size_t) 2 * VL * hd, hd);
		rows_add(s0, s1, hd);
	}
	ggml_tree(slots, (size_t) hd, hd, GGML_DOT_HADD);
	memcpy(out, slots, (size_t) hd * sizeof(float));
}

/* ggml_vp_f16 of each query over a cache in blocks: zeroed slots, a block's piece at a time (the avx512 set has a faster one) */
static void
ggml_vp_f16_blocks_each(float *out, size_t ostride, const float *p, size_t pstride, const int32_t *npos,
						int32_t nq, const uint8_t *v, int32_t blk, size_t bstride, size_t rstride, int32_t hd,
						float *slots)
{
	for (int32_t i = 0; i < nq; i++)
	{
		memset(slots, 0, (size_t) 4 * VL * (size_t) hd * sizeof(float));
		for (int32_t j0 = 0; j0 < npos[i]; j0 += blk)
			ggml_vp_acc_any(slots, p + (size_t) i * pstride + j0, v + (size_t) (j0 / blk) * bstride, rstride, j0,
							npos[i] - j0 < blk ? npos[i] - j0 : blk, hd, true);
		ggml_vp_finish(out + (size_t) i * ostride, slots, hd);
	}
}

static void
ggml_vp_f16(float *out, const float *p, const uint8_t *v, size_t stride, int32_t npos, int32_t hd,
			float *slots)
{
	memset(slots, 0, (size_t) 4 * VL * (size_t) hd * sizeof(float));
	ggml_vp_acc_any(slots, p, v, stride, 0, npos, hd, true);
	ggml_vp_finish(out, slots, hd);
}

static void
ggml_vp_f32(float *out, const float *p, const uint8_t *v, size_t stride, int32_t npos, int32_t hd,
			float *slots)
{
	memset(slots, 0, (size_t) 4 * VL * (size_t) hd * sizeof(float));
	ggml_vp_acc_any(slots, p, v, stride, 0, npos, hd, false);
	ggml_vp_finish(out, slots, hd);
}

static void
ggml_softmax(float *x, int64_t n)
{
	float		max = x[0];
	double		sum = 0.0;
	float		inv;
	int64_t		i = 0;

	for (int64_t m = 1; m < n; m++)
		if (x[m] > max)
			max = x[m];
	for (; i + VL <= n; i += VL)
	{
		vfloat		e = vf_expf_ggml(vf_load(x + i) - vf_set1(max));

		vf_store(x + i, e);
		sum += (double) vf_hsum_sm(e);
	}
	if (i < n)
	{
		/* ggml's row goes on with masked positions, exp(-inf) = 0 */
		int			r = (int) (n - i);
		vfloat		e = vf_expf_ggml(vf_load_part(x + i, r) - vf_set1(max));

		vf_store_part(x + i, e, r);
		sum += (double) vf_hsum_sm(vf_load_part(x + i, r));
	}
	inv = (float) (1.0 / sum);
	for (i = 0; i < n; i++)
		x[i] *= inv;
}

static void
ggml_swiglu(float *y, const float *gate, const float *up, int64_t n)
{
	int64_t		i = 0;

	for (; i + VL <= n; i += VL)
	{
		vfloat		g = vf_load(gate + i);
		vfloat		e = vf_expf_ggml(vf_zero() - g);

		vf_store(y + i, (g / (vf_set1(1.0f) + e)) * vf_load(up + i));
	}
	for (; i < n; i++)
		y[i] = (gate[i] / (1.0f + expf(-gate[i]))) * up[i];
}

/* ---- the entries of a set (p3_kernels_fill_*, compiled without the target options) ---- */

/* the four kernels of weight type T */
#define X86_SET_TYPE(k, T) \
	do { \
		(k)->dequant[P3_TYPE_##T] = dequant_##T; \
		(k)->dot_f32[P3_TYPE_##T] = dot_f32_##T; \
		(k)->vec_dot[P3_TYPE_##T] = vec_dot_##T; \
		(k)->vec_dot_ntok[P3_TYPE_##T] = vec_dot_ntok_##T; \
	} while (0)

/* every entry an x86 set accelerates (both provide the same; F32's dequant stays the reference copy) */
#define X86_FILL_SET(k) \
	do { \
		(k)->dot_f32_f32 = dot_f32_f32; \
		(k)->dot_f32_f32_ntok = dot_f32_f32_ntok; \
		(k)->dot_f32_f16 = dot_f32_f16; \
		(k)->axpy_f16 = axpy_f16; \
		(k)->axpy_f32 = axpy_f32; \
		(k)->ggml_dot_f16 = ggml_dot_f16; \
		(k)->ggml_vp_f16 = ggml_vp_f16; \
		(k)->ggml_dot_f16_keys = ggml_dot_f16_keys_each; \
		(k)->ggml_dot_f32 = ggml_dot_f32; \
		(k)->ggml_vp_f32 = ggml_vp_f32; \
		(k)->ggml_vp_f16_acc = ggml_vp_f16_acc; \
		(k)->ggml_vp_f32_acc = ggml_vp_f32_acc; \
		(k)->ggml_vp_finish = ggml_vp_finish; \
		(k)->ggml_vp_f16_blocks = ggml_vp_f16_blocks_each; \
		(k)->ggml_softmax = ggml_softmax; \
		(k)->ggml_swiglu = ggml_swiglu; \
		(k)->dot_f32[P3_TYPE_F32] = dot_f32_F32; \
		(k)->vec_dot[P3_TYPE_F32] = vec_dot_F32; \
		(k)->vec_dot_ntok[P3_TYPE_F32] = vec_dot_ntok_F32; \
		X86_SET_TYPE(k, F16); \
		X86_SET_TYPE(k, BF16); \
		(k)->quantize[P3_TYPE_F16] = quantize_F16; \
		(k)->quantize[P3_TYPE_Q8_0] = quantize_Q8_0; \
		(k)->quantize[P3_TYPE_Q8_1] = quantize_Q8_1; \
		(k)->quantize[P3_TYPE_Q8_K] = quantize_Q8_K; \
		X86_SET_TYPE(k, Q8_0); \
		X86_SET_TYPE(k, Q4_0); \
		X86_SET_TYPE(k, Q4_1); \
		X86_SET_TYPE(k, Q5_0); \
		X86_SET_TYPE(k, Q5_1); \
		X86_SET_TYPE(k, IQ4_NL); \
		X86_SET_TYPE(k, Q4_K); \
		X86_SET_TYPE(k, Q5_K); \
		X86_SET_TYPE(k, Q6_K); \
		X86_SET_TYPE(k, IQ4_XS); \
		X86_SET_TYPE(k, Q3_K); \
		X86_SET_TYPE(k, Q2_K); \
	} while (0)

#endif							/* PHI3_KERNELS_X86_COMMON_H */
