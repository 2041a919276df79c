/*
 * quant_encode.c — the scalar encoders: f32 rows to every stored format,
 * as a converter would write them, and llama.cpp's activation quantizers.
 *
 *   - Q8_0 / Q8_1 / Q8_K, Q4_0 / Q4_1 / Q5_0 / Q5_1 and IQ4_NL follow
 *     ggml's *_ref quantizers exactly for finite, in-range input.
 *   - The K-quants and IQ4_XS are our own: per sub-block a weighted
 *     least-squares fit of scale (and min) over a grid of candidate
 *     quantization steps, then the sub-block scales are quantized to 4/6/8
 *     bits against the super-block scale, and the values re-quantized with
 *     the final, quantized scales.  They are not bit-identical to ggml's but
 *     of similar quality (test_quant.c holds the error bounds).
 *   - Deviation from ggml, for robustness only: scales that do not fit in f16
 *     are saturated to +-65504 (ggml stores inf, which dequantizes to NaN),
 *     and every float -> integer conversion is clamped (NaN gives 0), so no
 *     input can produce undefined behaviour or a non-finite stored scale.
 *
 * A type without an encoder, or n not a multiple of the block size, leaves
 * the output untouched (only whole blocks are written).
 */
#include "phi3/quant.h"

#include <math.h>
#include <string.h>

#include "quant_blocks.h"

#define P3_F16_MAX 65504.0f

/* ---------------------------------------------------------------------
 * small numeric helpers
 * --------------------------------------------------------------------- */

/* f32 -> f16 for a stored scale: round to nearest even, but saturate at the
 * largest finite half and map NaN to 0, so a stored scale is always finite. */
static inline uint16_t
half_sat(float f)
{
	if (f != f)
		return 0;
	if (f > P3_F16_MAX)
		f = P3_F16_MAX;
	else if (f < -P3_F16_MAX)
		f = -P3_F16_MAX;
	return p3_fp32_to_fp16(f);
}

/*
 * Round to nearest, ties to even, as ggml's nearest_int (the 1.5 * 2^23
 * trick), for |v| <= 2^22 - 1; larger magnitudes saturate there and NaN
 * gives 0 instead of being undefined.
 */
static inline int
nearest_int(float v)
{
	float		t;
	int32_t		i;

	if (!(v >= -4194303.0f))
		return (v != v) ? 0 : -4194303;
	if (v > 4194303.0f)
		return 4194303;
	t = v + 12582912.0f;
	memcpy(&i, &t, sizeof i);
	return (i & 0x007FFFFF) - 0x00400000;
}

/*
 * The same rounding without the range checks, for the hot loops of the
 * encoders where |v| < 2^22 is known (NaN yields some bounded integer,
 * which the callers clamp).
 */
static inline int
nearest_int_unchecked(float v)
{
	float		t = v + 12582912.0f;
	int32_t		i;

	memcpy(&i, &t, sizeof i);
	return (i & 0x007FFFFF) - 0x00400000;
}

static inline int
clamp_int(int v, int lo, int hi)
{
	return v < lo ? lo : (v > hi ? hi : v);
}

/* Truncate toward zero like a C cast, but clamped to [lo, hi] (NaN -> lo). */
static inline int
trunc_clamp(float v, int lo, int hi)
{
	if (!(v >= (float) lo))
		return lo;
	if (v >= (float) hi)
		return hi;
	return (int) v;
}

/* roundf (ties away from zero), clamped to [lo, hi]; NaN gives 0. */
static inline int
round_clamp(float v, int lo, int hi)
{
	if (v != v)
		return 0;
	if (v <= (float) lo)
		return lo;
	if (v >= (float) hi)
		return hi;
	return (int) roundf(v);
}

/*
 * Index of the IQ4_NL code-book value nearest to v, ties going to the
 * larger value (as ggml's best_index_int8, whose binary search this
 * replaces).  The result is the number of midpoints between consecutive
 * codes that are <= v.  No two midpoints are closer than 8, so v's bucket
 * [-128 + 8b, -120 + 8b) holds at most one: iq4_bucket_base[b] counts the
 * midpoints below the bucket, and one comparison settles the last.
 */
static const float iq4_midpoints[16] = {
	-115.5f, -93.5f, -74.0f, -57.0f, -42.0f, -28.5f, -16.0f, -4.5f,
	7.0f, 19.0f, 31.5f, 45.5f, 61.0f, 79.0f, 101.0f, 3.0e38f
};
static const uint8_t iq4_bucket_base[31] = {
	0, 0, 1, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7,
	8, 9, 9, 10, 11, 11, 12, 12, 13, 13, 14, 14, 14, 15, 15
};

static inline int
iq4_best_index(float v)
{
	int			base;

	if (!(v > -127.0f))			/* also NaN */
		return 0;
	if (v >= 113.0f)
		return 15;
	base = iq4_bucket_base[(int) (v + 128.0f) >> 3];
	return base + (v >= iq4_midpoints[base]);
}

/* Inverse of p3_q4k_scale_min: pack eight 6-bit scales and mins into 12 bytes. */
static void
k4_pack_scales(const uint8_t *ls, const uint8_t *lm, uint8_t *scales)
{
	memset(scales, 0, 12);
	for (int j = 0; j < 8; j++)
	{
		if (j < 4)
		{
			scales[j] = ls[j];
			scales[j + 4] = lm[j];
		}
		else
		{
			scales[j + 4] = (uint8_t) ((ls[j] & 15) | ((lm[j] & 15) << 4));
			scales[j - 4] |= (uint8_t) ((ls[j] >> 4) << 6);
			scales[j] |= (uint8_t) ((lm[j] >> 4) << 6);
		}
	}
}

/* ---------------------------------------------------------------------
 * quantization of the 32-element formats: ggml's reference quantizers
 * --------------------------------------------------------------------- */

/* Signed value of largest magnitude (the first one on ties), and its |.|. */
static inline float
signed_absmax(const float *x, int n, float *amax_out)
{
	float		amax = 0.0f;
	float		max = 0.0f;

	for (int j = 0; j < n; j++)
	{
		if (amax < fabsf(x[j]))
		{
			amax = fabsf(x[j]);
			max = x[j];
		}
	}
	*amax_out = amax;
	return max;
}

static void
quant_q4_0(const float *x, void *dst, int64_t nb)
{
	P3BlockQ4_0 *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK4_0)
	{
		float		amax;
		const float max = signed_absmax(x, P3_QK4_0, &amax);
		const float d = max / -8;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;

		y[i].d = half_sat(d);
		for (int j = 0; j < 16; j++)
		{
			int			q0 = trunc_clamp(x[j] * id + 8.5f, 0, 15);
			int			q1 = trunc_clamp(x[j + 16] * id + 8.5f, 0, 15);

			y[i].qs[j] = (uint8_t) (q0 | (q1 << 4));
		}
	}
}

/* Smallest and largest value of a block (min starts at +FLT_MAX as ggml). */
static inline void
block_min_max(const float *x, int n, float *min_out, float *max_out)
{
	float		min = 3.40282347e+38f;
	float		max = -3.40282347e+38f;

	for (int j = 0; j < n; j++)
	{
		if (x[j] < min)
			min = x[j];
		if (x[j] > max)
			max = x[j];
	}
	*min_out = min;
	*max_out = max;
}

static void
quant_q4_1(const float *x, void *dst, int64_t nb)
{
	P3BlockQ4_1 *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK4_1)
	{
		float		min,
					max;

		block_min_max(x, P3_QK4_1, &min, &max);

		const float d = (max - min) / 15;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;

		y[i].d = half_sat(d);
		y[i].m = half_sat(min);
		for (int j = 0; j < 16; j++)
		{
			int			q0 = trunc_clamp((x[j] - min) * id + 0.5f, 0, 15);
			int			q1 = trunc_clamp((x[j + 16] - min) * id + 0.5f, 0, 15);

			y[i].qs[j] = (uint8_t) (q0 | (q1 << 4));
		}
	}
}

static void
quant_q5_0(const float *x, void *dst, int64_t nb)
{
	P3BlockQ5_0 *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK5_0)
	{
		float		amax;
		const float max = signed_absmax(x, P3_QK5_0, &amax);
		const float d = max / -16;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		uint32_t	qh = 0;

		y[i].d = half_sat(d);
		for (int j = 0; j < 16; j++)
		{
			int			q0 = trunc_clamp(x[j] * id + 16.5f, 0, 31);
			int			q1 = trunc_clamp(x[j + 16] * id + 16.5f, 0, 31);

			y[i].qs[j] = (uint8_t) ((q0 & 15) | ((q1 & 15) << 4));
			qh |= (uint32_t) (q0 >> 4) << j;
			qh |= (uint32_t) (q1 >> 4) << (j + 16);
		}
		for (int b = 0; b < 4; b++)
			y[i].qh[b] = (uint8_t) (qh >> (8 * b));
	}
}

static void
quant_q5_1(const float *x, void *dst, int64_t nb)
{
	P3BlockQ5_1 *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK5_1)
	{
		float		min,
					max;
		uint32_t	qh = 0;

		block_min_max(x, P3_QK5_1, &min, &max);

		const float d = (max - min) / 31;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;

		y[i].d = half_sat(d);
		y[i].m = half_sat(min);
		for (int j = 0; j < 16; j++)
		{
			int			q0 = trunc_clamp((x[j] - min) * id + 0.5f, 0, 31);
			int			q1 = trunc_clamp((x[j + 16] - min) * id + 0.5f, 0, 31);

			y[i].qs[j] = (uint8_t) ((q0 & 15) | ((q1 & 15) << 4));
			qh |= (uint32_t) (q0 >> 4) << j;
			qh |= (uint32_t) (q1 >> 4) << (j + 16);
		}
		for (int b = 0; b < 4; b++)
			y[i].qh[b] = (uint8_t) (qh >> (8 * b));
	}
}

/* Largest |x| of a block, as ggml's MAX(amax, fabsf(v)) loop for finite x. */
static inline float
block_amax(const float *x, int n)
{
	float		amax = 0.0f;

	for (int j = 0; j < n; j++)
		if (fabsf(x[j]) > amax)
			amax = fabsf(x[j]);
	return amax;
}

/* Q8_0 (spec 2.4): d = amax/127 stored as f16, q = roundf(x / d) using the unrounded 1/d. */
static void
quant_q8_0(const float *x, void *dst, int64_t nb)
{
	P3BlockQ8_0 *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK8_0)
	{
		const float d = block_amax(x, P3_QK8_0) / 127;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;

		y[i].d = half_sat(d);
		for (int j = 0; j < P3_QK8_0; j++)
			y[i].qs[j] = (int8_t) round_clamp(x[j] * id, -127, 127);
	}
}

/* Q8_1: as Q8_0, plus s = d * sum(q) (unrounded d) stored as f16. */
static void
quant_q8_1(const float *x, void *dst, int64_t nb)
{
	P3BlockQ8_1 *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK8_1)
	{
		const float d = block_amax(x, P3_QK8_1) / 127;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;
		int			sum = 0;

		y[i].d = half_sat(d);
		for (int j = 0; j < P3_QK8_1; j++)
		{
			y[i].qs[j] = (int8_t) round_clamp(x[j] * id, -127, 127);
			sum += y[i].qs[j];
		}
		y[i].s = half_sat((float) sum * d);
	}
}

/*
 * Q8_K (spec 2.4): iscale = -127 / (signed value of largest magnitude),
 * q = nearest_int(iscale * x) capped at 127, d = 1 / iscale as f32, and the
 * sums of every 16 quants.  An all-zero block gets d = 0, q = 0, bsums = 0
 * (ggml leaves bsums unwritten there); a block holding +-inf is quantized
 * as if it were +-1e38 (ggml's d would be inf).
 */
static void
quant_q8_k(const float *x, void *dst, int64_t nb)
{
	P3BlockQ8_K *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK_K)
	{
		float		amax;
		const float max = signed_absmax(x, P3_QK_K, &amax);

		if (amax == 0.0f)
		{
			memset(&y[i], 0, sizeof(P3BlockQ8_K));
			continue;
		}

		/* an infinite element counts as +-1e38 (finite input is unaffected) */
		const float iscale = -127.0f / (isinf(max) ? copysignf(1e38f, max) : max);

		/* |iscale * x| <= 127 for finite x: the clamp only acts on inf / NaN */
		for (int j = 0; j < P3_QK_K; j++)
			y[i].qs[j] = (int8_t) clamp_int(nearest_int(iscale * x[j]), -127, 127);
		for (int g = 0; g < P3_QK_K / 16; g++)
		{
			int			sum = 0;

			for (int l = 0; l < 16; l++)
				sum += y[i].qs[16 * g + l];
			y[i].bsums[g] = (int16_t) sum;
		}
		y[i].d = 1.0f / iscale;
	}
}

/*
 * IQ4_NL as ggml's quantize_row_iq4_nl_ref: map the value of largest
 * magnitude to the code book's end (-127), pick the nearest code of every
 * element, then refit d by least squares weighted with x^2.
 */
static void
quant_iq4_nl(const float *x, void *dst, int64_t nb)
{
	P3BlockIQ4_NL *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK4_NL)
	{
		float		amax;
		const float max = signed_absmax(x, P3_QK4_NL, &amax);
		uint8_t		L[P3_QK4_NL];
		float		d = 0.0f;

		memset(L, 0, sizeof L);
		if (amax >= 1e-15f)
		{
			const float id = 1.0f / (max / (float) p3_iq4nl_values[0]);
			float		sumqx = 0.0f;
			float		sumq2 = 0.0f;

			for (int j = 0; j < P3_QK4_NL; j++)
			{
				const float w = x[j] * x[j];
				float		q;

				L[j] = (uint8_t) iq4_best_index(id * x[j]);
				q = (float) p3_iq4nl_values[L[j]];
				sumqx += w * q * x[j];
				sumq2 += w * q * q;
			}
			d = sumq2 > 0 ? sumqx / sumq2 : 0.0f;
		}
		y[i].d = half_sat(d);
		for (int j = 0; j < 16; j++)
			y[i].qs[j] = (uint8_t) (L[j] | (L[j + 16] << 4));
	}
}

/* ---------------------------------------------------------------------
 * K-quant and IQ4_XS encoders (our own; see the file comment)
 * --------------------------------------------------------------------- */

/*
 * Fit x[i] ~= scale * L[i] - mn with L[i] in 0..nmax, scale >= 0, mn >= 0,
 * minimizing sum w[i] * err[i]^2.  For each candidate step
 * (xmax - xmin) / (nmax + off), off = off_lo + k * off_step, the codes are
 * rounded from the range, then scale and offset are solved in closed form
 * (2x2 normal equations, the offset clamped to <= 0); the candidate that
 * removes the most weighted error wins.  Returns scale; *mn_out gets mn.
 */
static float
fit_affine(int n, int nmax, const float *x, const float *w, uint8_t *L,
		   float *mn_out, float off_lo, float off_step, int nstep)
{
	float		xmin = x[0];
	float		xmax = x[0];
	double		sw = 0.0;
	double		swx = 0.0;
	double		best_gain = -1.0;
	double		best_s = 0.0;
	double		best_m = 0.0;
	uint8_t		Lt[32];

	for (int i = 0; i < n; i++)
	{
		if (x[i] < xmin)
			xmin = x[i];
		if (x[i] > xmax)
			xmax = x[i];
		sw += w[i];
		swx += (double) w[i] * x[i];
	}
	if (xmin > 0.0f)
		xmin = 0.0f;
	memset(L, 0, (size_t) n);
	if (!(xmax > xmin) || !(xmax - xmin < 3.0e38f))
	{
		/* constant block (or no usable range): all codes 0, value -mn */
		*mn_out = (xmin == xmin) ? -xmin : 0.0f;
		return 0.0f;
	}
	for (int k = 0; k <= nstep; k++)
	{
		const float iscale = ((float) nmax + off_lo + off_step * (float) k) / (xmax - xmin);
		float		sl = 0.0f;
		float		sl2 = 0.0f;
		float		slx = 0.0f;
		double		s,
					m,
					det,
					gain;

		/* iscale * (x - xmin) lies in [0, nmax + 1]: no range check needed */
		for (int i = 0; i < n; i++)
		{
			int			l = clamp_int(nearest_int_unchecked(iscale * (x[i] - xmin)), 0, nmax);
			float		wl = w[i] * (float) l;

			Lt[i] = (uint8_t) l;
			sl += wl;
			sl2 += wl * (float) l;
			slx += wl * x[i];
		}
		det = sw * sl2 - (double) sl * sl;
		if (det > 0.0)
		{
			s = (sw * slx - swx * sl) / det;
			m = ((double) sl2 * swx - (double) sl * slx) / det;
			if (m > 0.0)
			{
				m = 0.0;
				s = (double) slx / sl2;
			}
		}
		else if (sl2 > 0.0f)
		{
			m = 0.0;
			s = (double) slx / sl2;
		}
		else
			continue;
		if (!(s >= 0.0))
			continue;
		/* at the optimum, sum w (x - s l - m)^2 = sum w x^2 - gain */
		gain = s * slx + m * swx;
		if (gain > best_gain)
		{
			best_gain = gain;
			best_s = s;
			best_m = m;
			memcpy(L, Lt, (size_t) n);
		}
	}
	if (best_gain < 0.0)
	{
		*mn_out = -xmin;
		return 0.0f;
	}
	*mn_out = (float) -best_m;
	return (float) best_s;
}

/*
 * Fit x[i] ~= scale * L[i] with L[i] in -nmax..nmax-1 (scale signed),
 * minimizing sum w[i] * err[i]^2: candidate steps map the value of largest
 * magnitude to -(nmax + 0.1 * t), t in -ntry..ntry, and the least-squares
 * scale of the best codes is kept; with `refine`, a few rounds of
 * coordinate descent then move single codes while that lowers the error.
 */
static float
fit_symmetric(int n, int nmax, const float *x, const float *w, int8_t *L, int ntry, bool refine)
{
	float		amax;
	const float max = signed_absmax(x, n, &amax);
	double		best_slx = 0.0;
	double		best_sl2 = 0.0;
	int8_t		Lt[32];

	memset(L, 0, (size_t) n);
	if (!(amax >= 1e-30f) || !(amax < 3.0e38f))
		return 0.0f;
	for (int t = -ntry; t <= ntry; t++)
	{
		const float iscale = -((float) nmax + 0.1f * (float) t) / max;
		float		slx = 0.0f;
		float		sl2 = 0.0f;

		/* |iscale * x| <= nmax + 1: no range check needed */
		for (int i = 0; i < n; i++)
		{
			int			l = clamp_int(nearest_int_unchecked(iscale * x[i]), -nmax, nmax - 1);
			float		wl = w[i] * (float) l;

			Lt[i] = (int8_t) l;
			slx += wl * x[i];
			sl2 += wl * (float) l;
		}
		/* the error removed by the optimal scale is slx^2 / sl2 */
		if (sl2 > 0.0f && (best_sl2 == 0.0 || (double) slx * slx * best_sl2 > best_slx * best_slx * sl2))
		{
			best_slx = slx;
			best_sl2 = sl2;
			memcpy(L, Lt, (size_t) n);
		}
	}
	if (best_sl2 == 0.0)
		return 0.0f;
	for (int round = 0; refine && round < 5; round++)
	{
		int			changed = 0;

		for (int i = 0; i < n; i++)
		{
			const double wi = w[i];
			const double slx_i = best_slx - wi * x[i] * L[i];
			const double sl2_i = best_sl2 - wi * L[i] * L[i];
			int			l;
			double		slx,
						sl2;

			if (slx_i == 0.0 || sl2_i <= 0.0)
				continue;
			/* best code for x[i] at the scale of all the others */
			l = clamp_int(nearest_int((float) (x[i] * sl2_i / slx_i)), -nmax, nmax - 1);
			if (l == L[i])
				continue;
			slx = slx_i + wi * x[i] * l;
			sl2 = sl2_i + wi * l * l;
			if (sl2 > 0.0 && slx * slx * best_sl2 > best_slx * best_slx * sl2)
			{
				L[i] = (int8_t) l;
				best_slx = slx;
				best_sl2 = sl2;
				changed++;
			}
		}
		if (changed == 0)
			break;
	}
	return (float) (best_slx / best_sl2);
}

/*
 * Quantize a scale (or min) vector of sub-blocks against one super-block
 * step: step = max / levels stored as f16 (saturated), codes rounded from
 * the stored step and clamped to 0..levels.  Returns the stored f16 bits.
 */
static uint16_t
quantize_unsigned_scales(const float *v, int count, int levels, uint8_t *codes)
{
	float		max = 0.0f;
	uint16_t	h;
	float		step;

	for (int j = 0; j < count; j++)
		if (v[j] > max)
			max = v[j];
	h = half_sat(max / (float) levels);
	step = p3_fp16_to_fp32(h);
	for (int j = 0; j < count; j++)
		codes[j] = (uint8_t) (step > 0.0f ? clamp_int(nearest_int(v[j] / step), 0, levels) : 0);
	return h;
}

/* Codes of a sub-block re-quantized with its final scale de and min me. */
static void
requantize_affine(const float *x, int n, int nmax, float de, float me, uint8_t *L)
{
	if (de == 0.0f)
	{
		memset(L, 0, (size_t) n);
		return;
	}
	for (int i = 0; i < n; i++)
		L[i] = (uint8_t) clamp_int(nearest_int((x[i] + me) / de), 0, nmax);
}

/*
 * Weights of the least-squares fits: w = rms(sub-block) + |x|.  Larger
 * values count more (as in ggml's encoders, which use |x| or x^2), yet
 * small ones are not ignored, which keeps the plain RMS error low too.
 */
static void
fit_weights(const float *x, int n, float *w)
{
	float		sum_x2 = 0.0f;
	float		av;

	for (int i = 0; i < n; i++)
		sum_x2 += x[i] * x[i];
	av = sqrtf(sum_x2 / (float) n);
	for (int i = 0; i < n; i++)
		w[i] = av + fabsf(x[i]);
}

/*
 * The common part of Q4_K and Q5_K: fit the eight 32-element sub-blocks,
 * quantize their scales and mins to 6 bits, and re-quantize the values
 * (0..nmax) with the final scales.
 */
static void
encode_k_affine32(const float *x, int nmax, uint16_t *d, uint16_t *dmin,
				  uint8_t *scales12, uint8_t *L)
{
	float		scales[8];
	float		mins[8];
	float		w[32];
	uint8_t		ls[8];
	uint8_t		lm[8];

	for (int j = 0; j < 8; j++)
	{
		fit_weights(x + 32 * j, 32, w);
		scales[j] = fit_affine(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], -1.0f, 0.2f, 10);
	}
	*d = quantize_unsigned_scales(scales, 8, 63, ls);
	*dmin = quantize_unsigned_scales(mins, 8, 63, lm);
	k4_pack_scales(ls, lm, scales12);
	for (int j = 0; j < 8; j++)
	{
		int			sc,
					m;

		p3_q4k_scale_min(j, scales12, &sc, &m);
		requantize_affine(x + 32 * j, 32, nmax, p3_fp16_to_fp32(*d) * (float) sc, p3_fp16_to_fp32(*dmin) * (float) m, L + 32 * j);
	}
}

static void
quant_q4_k(const float *x, void *dst, int64_t nb)
{
	P3BlockQ4_K *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK_K)
	{
		uint8_t		L[P3_QK_K];

		encode_k_affine32(x, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
		for (int c = 0; c < 4; c++)
			for (int l = 0; l < 32; l++)
				y[i].qs[32 * c + l] = (uint8_t) (L[64 * c + l] | (L[64 * c + 32 + l] << 4));
	}
}

static void
quant_q5_k(const float *x, void *dst, int64_t nb)
{
	P3BlockQ5_K *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK_K)
	{
		uint8_t		L[P3_QK_K];

		encode_k_affine32(x, 31, &y[i].d, &y[i].dmin, y[i].scales, L);
		memset(y[i].qh, 0, sizeof y[i].qh);
		for (int c = 0; c < 4; c++)
		{
			for (int l = 0; l < 32; l++)
			{
				int			lo = L[64 * c + l];
				int			hi = L[64 * c + 32 + l];

				y[i].qs[32 * c + l] = (uint8_t) ((lo & 15) | ((hi & 15) << 4));
				y[i].qh[l] |= (uint8_t) (((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
			}
		}
	}
}

static void
quant_q2_k(const float *x, void *dst, int64_t nb)
{
	P3BlockQ2_K *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK_K)
	{
		float		scales[16];
		float		mins[16];
		float		w[16];
		uint8_t		ls[16];
		uint8_t		lm[16];
		uint8_t		L[P3_QK_K];

		for (int g = 0; g < 16; g++)
		{
			fit_weights(x + 16 * g, 16, w);
			scales[g] = fit_affine(16, 3, x + 16 * g, w, L + 16 * g, &mins[g], -0.5f, 0.1f, 15);
		}
		y[i].d = quantize_unsigned_scales(scales, 16, 15, ls);
		y[i].dmin = quantize_unsigned_scales(mins, 16, 15, lm);
		for (int g = 0; g < 16; g++)
		{
			y[i].scales[g] = (uint8_t) (ls[g] | (lm[g] << 4));
			requantize_affine(x + 16 * g, 16, 3, p3_fp16_to_fp32(y[i].d) * (float) ls[g],
							  p3_fp16_to_fp32(y[i].dmin) * (float) lm[g], L + 16 * g);
		}
		/* element 128h + 32s + l is in bits 2s of qs[32h + l] */
		for (int h = 0; h < 2; h++)
			for (int l = 0; l < 32; l++)
				y[i].qs[32 * h + l] = (uint8_t) (L[128 * h + l] | (L[128 * h + 32 + l] << 2) |
												 (L[128 * h + 64 + l] << 4) | (L[128 * h + 96 + l] << 6));
	}
}

/*
 * Signed sub-block scales against one super-block step: the scale of
 * largest magnitude maps to code -levels, step = max / -levels stored as
 * f16 (saturated), codes rounded from the stored step and clamped.
 */
static uint16_t
quantize_signed_scales(const float *v, int count, int levels, int *codes)
{
	float		amax = 0.0f;
	float		max = 0.0f;
	uint16_t	h;
	float		step;

	for (int j = 0; j < count; j++)
	{
		if (fabsf(v[j]) > amax)
		{
			amax = fabsf(v[j]);
			max = v[j];
		}
	}
	h = half_sat(max / (float) -levels);
	step = p3_fp16_to_fp32(h);
	for (int j = 0; j < count; j++)
		codes[j] = step != 0.0f ? clamp_int(nearest_int(v[j] / step), -levels, levels - 1) : 0;
	return h;
}

/* Codes of a symmetric sub-block re-quantized with its final scale de. */
static void
requantize_symmetric(const float *x, int n, int nmax, float de, int8_t *L)
{
	if (de == 0.0f)
	{
		memset(L, 0, (size_t) n);
		return;
	}
	for (int i = 0; i < n; i++)
		L[i] = (int8_t) clamp_int(nearest_int(x[i] / de), -nmax, nmax - 1);
}

static void
quant_q3_k(const float *x, void *dst, int64_t nb)
{
	P3BlockQ3_K *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK_K)
	{
		float		scales[16];
		float		w[16];
		int			codes[16];
		int8_t		L[P3_QK_K];
		float		d;

		for (int g = 0; g < 16; g++)
		{
			fit_weights(x + 16 * g, 16, w);
			scales[g] = fit_symmetric(16, 4, x + 16 * g, w, L + 16 * g, 9, true);
		}
		y[i].d = quantize_signed_scales(scales, 16, 32, codes);
		d = p3_fp16_to_fp32(y[i].d);
		memset(y[i].scales, 0, sizeof y[i].scales);
		for (int g = 0; g < 16; g++)
		{
			int			l = codes[g] + 32;

			if (g < 8)
				y[i].scales[g] = (uint8_t) (l & 15);
			else
				y[i].scales[g - 8] |= (uint8_t) ((l & 15) << 4);
			y[i].scales[8 + g % 4] |= (uint8_t) ((l >> 4) << (2 * (g / 4)));
			requantize_symmetric(x + 16 * g, 16, 4, d * (float) codes[g], L + 16 * g);
		}
		/* low 2 bits of element 128h + 32s + l in bits 2s of qs[32h + l]; high bit in bit 4h+s of hmask[l] */
		memset(y[i].hmask, 0, sizeof y[i].hmask);
		for (int h = 0; h < 2; h++)
		{
			for (int l = 0; l < 32; l++)
			{
				uint8_t		byte = 0;

				for (int s = 0; s < 4; s++)
				{
					int			q = L[128 * h + 32 * s + l] + 4;	/* 0..7 */

					byte |= (uint8_t) ((q & 3) << (2 * s));
					y[i].hmask[l] |= (uint8_t) ((q >> 2) << (4 * h + s));
				}
				y[i].qs[32 * h + l] = byte;
			}
		}
	}
}

static void
quant_q6_k(const float *x, void *dst, int64_t nb)
{
	P3BlockQ6_K *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK_K)
	{
		float		scales[16];
		float		w[16];
		int			codes[16];
		int8_t		L[P3_QK_K];
		float		d;

		for (int g = 0; g < 16; g++)
		{
			fit_weights(x + 16 * g, 16, w);
			scales[g] = fit_symmetric(16, 32, x + 16 * g, w, L + 16 * g, 6, false);
		}
		y[i].d = quantize_signed_scales(scales, 16, 128, codes);
		d = p3_fp16_to_fp32(y[i].d);
		for (int g = 0; g < 16; g++)
		{
			y[i].scales[g] = (int8_t) codes[g];
			requantize_symmetric(x + 16 * g, 16, 32, d * (float) codes[g], L + 16 * g);
		}
		for (int h = 0; h < 2; h++)
		{
			uint8_t    *ql = y[i].ql + 64 * h;
			uint8_t    *qh = y[i].qh + 32 * h;
			const int8_t *Lh = L + 128 * h;

			for (int l = 0; l < 32; l++)
			{
				int			q1 = Lh[l] + 32;
				int			q2 = Lh[l + 32] + 32;
				int			q3 = Lh[l + 64] + 32;
				int			q4 = Lh[l + 96] + 32;

				ql[l] = (uint8_t) ((q1 & 15) | ((q3 & 15) << 4));
				ql[l + 32] = (uint8_t) ((q2 & 15) | ((q4 & 15) << 4));
				qh[l] = (uint8_t) ((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
			}
		}
	}
}

/*
 * Least-squares scale of one 32-element IQ4 sub-block: candidate steps map
 * the value of largest magnitude near either end of the code book, the
 * nearest codes are chosen and the scale refit; the best fit is returned
 * (0 for an all-zero sub-block).
 */
static float
fit_iq4(const float *x, const float *w)
{
	float		amax;
	const float max = signed_absmax(x, 32, &amax);
	double		best_sqx = 0.0;
	double		best_sq2 = 0.0;

	if (!(amax >= 1e-30f) || !(amax < 3.0e38f))
		return 0.0f;
	for (int t = -8; t <= 7; t++)
	{
		/* t = -8: the largest value at the top code; else near the bottom code */
		const float id = t == -8 ? (float) p3_iq4nl_values[15] / max
			: ((float) p3_iq4nl_values[0] + (float) t) / max;
		double		sqx = 0.0;
		double		sq2 = 0.0;

		for (int j = 0; j < 32; j++)
		{
			const double q = p3_iq4nl_values[iq4_best_index(id * x[j])];

			sqx += w[j] * q * x[j];
			sq2 += w[j] * q * q;
		}
		if (sq2 > 0.0 && (best_sq2 == 0.0 || sqx * sqx * best_sq2 > best_sqx * best_sqx * sq2))
		{
			best_sqx = sqx;
			best_sq2 = sq2;
		}
	}
	return best_sq2 > 0.0 ? (float) (best_sqx / best_sq2) : 0.0f;
}

static void
quant_iq4_xs(const float *x, void *dst, int64_t nb)
{
	P3BlockIQ4_XS *y = dst;

	for (int64_t i = 0; i < nb; i++, x += P3_QK_K)
	{
		float		scales[8];
		float		w[32];
		int			codes[8];
		float		d;

		for (int ib = 0; ib < 8; ib++)
		{
			fit_weights(x + 32 * ib, 32, w);
			scales[ib] = fit_iq4(x + 32 * ib, w);
		}
		y[i].d = quantize_signed_scales(scales, 8, 32, codes);
		d = p3_fp16_to_fp32(y[i].d);
		y[i].scales_h = 0;
		memset(y[i].scales_l, 0, sizeof y[i].scales_l);
		for (int ib = 0; ib < 8; ib++)
		{
			const float *xb = x + 32 * ib;
			const float dl = d * (float) codes[ib];
			const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
			int			ls = codes[ib] + 32;
			uint8_t		L[32];

			y[i].scales_l[ib / 2] |= (uint8_t) ((ls & 15) << (4 * (ib % 2)));
			y[i].scales_h |= (uint16_t) ((ls >> 4) << (2 * ib));
			for (int j = 0; j < 32; j++)
				L[j] = (uint8_t) iq4_best_index(idl * xb[j]);
			for (int j = 0; j < 16; j++)
				y[i].qs[16 * ib + j] = (uint8_t) (L[j] | (L[j + 16] << 4));
		}
	}
}

static void
quant_f32(const float *x, void *dst, int64_t n)
{
	memcpy(dst, x, (size_t) n * sizeof(float));
}

static void
quant_f16(const float *x, void *dst, int64_t n)
{
	uint16_t   *y = dst;

	for (int64_t i = 0; i < n; i++)
		y[i] = p3_fp32_to_fp16(x[i]);
}

static void
quant_bf16(const float *x, void *dst, int64_t n)
{
	uint16_t   *y = dst;

	for (int64_t i = 0; i < n; i++)
		y[i] = p3_fp32_to_bf16(x[i]);
}

/* ---------------------------------------------------------------------
 * dispatch
 * --------------------------------------------------------------------- */

typedef void (*EncodeFn) (const float *src, void *dst, int64_t nblocks);

static const EncodeFn encoders[P3_TYPE_COUNT] = {
	[P3_TYPE_F32] = quant_f32,
	[P3_TYPE_F16] = quant_f16,
	[P3_TYPE_BF16] = quant_bf16,
	[P3_TYPE_Q4_0] = quant_q4_0,
	[P3_TYPE_Q4_1] = quant_q4_1,
	[P3_TYPE_Q5_0] = quant_q5_0,
	[P3_TYPE_Q5_1] = quant_q5_1,
	[P3_TYPE_Q8_0] = quant_q8_0,
	[P3_TYPE_Q8_1] = quant_q8_1,
	[P3_TYPE_Q2_K] = quant_q2_k,
	[P3_TYPE_Q3_K] = quant_q3_k,
	[P3_TYPE_Q4_K] = quant_q4_k,
	[P3_TYPE_Q5_K] = quant_q5_k,
	[P3_TYPE_Q6_K] = quant_q6_k,
	[P3_TYPE_Q8_K] = quant_q8_k,
	[P3_TYPE_IQ4_NL] = quant_iq4_nl,
	[P3_TYPE_IQ4_XS] = quant_iq4_xs,
};

void
p3_quantize_row_ref(uint32_t type, const float *src, void *dst, int64_t n)
{
	const P3TypeTraits *t = p3_type_traits(type);

	if (t == NULL || encoders[type] == NULL || n < t->block_size)
		return;
	encoders[type] (src, dst, n / t->block_size);
}
