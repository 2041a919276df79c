/*
 * quant_ref.c — scalar reference of every tensor format the engine computes
 * with: dequantization, the f32 dot product over dequantized weights and
 * llama.cpp's integer dot products.  The encoders (quantization) are in
 * quant_encode.c.
 *
 * Dequantization reproduces ggml's dequantize_row_* bit for bit: the scale
 * is read as f16, and the f32 products are formed in ggml's order (for Q4_K
 * value = (d*sc)*q - (dmin*m)).  The integer dot products mirror ggml's
 * generic CPU kernels (ggml_vec_dot_*_generic), including where ggml folds
 * the per-block floats into eight lane accumulators, so that their results
 * match llama.cpp's scalar code bit for bit for finite inputs.
 *
 * Contract violations (a type without a reference, n < 0 or not a multiple
 * of the block size) cannot be reported through these void functions: only
 * whole blocks are processed, unsupported types leave the output zeroed
 * (dequantize), and the dot products return 0.
 */
#include "phi3/quant.h"

#include <math.h>
#include <string.h>

#include "quant_blocks.h"

/* ---------------------------------------------------------------------
 * small numeric helpers
 * --------------------------------------------------------------------- */

static inline float
half(uint16_t h)
{
	return p3_fp16_to_fp32(h);
}

/* ---------------------------------------------------------------------
 * dequantization, nb blocks at a time (ggml's dequantize_row_* semantics)
 * --------------------------------------------------------------------- */

static void
dequant_q4_0(const void *src, float *y, int64_t nb)
{
	const P3BlockQ4_0 *x = src;

	for (int64_t i = 0; i < nb; i++, y += P3_QK4_0)
	{
		const float d = half(x[i].d);

		for (int j = 0; j < 16; j++)
		{
			y[j] = (float) ((x[i].qs[j] & 15) - 8) * d;
			y[j + 16] = (float) ((x[i].qs[j] >> 4) - 8) * d;
		}
	}
}

static void
dequant_q4_1(const void *src, float *y, int64_t nb)
{
	const P3BlockQ4_1 *x = src;

	for (int64_t i = 0; i < nb; i++, y += P3_QK4_1)
	{
		const float d = half(x[i].d);
		const float m = half(x[i].m);

		for (int j = 0; j < 16; j++)
		{
			y[j] = (float) (x[i].qs[j] & 15) * d + m;
			y[j + 16] = (float) (x[i].qs[j] >> 4) * d + m;
		}
	}
}

static void
dequant_q5_0(const void *src, float *y, int64_t nb)
{
	const P3BlockQ5_0 *x = src;

	for (int64_t i = 0; i < nb; i++, y += P3_QK5_0)
	{
		const float d = half(x[i].d);
		const uint32_t qh = p3_q5_high_bits(x[i].qh);

		for (int j = 0; j < 16; j++)
		{
			int			q0 = (x[i].qs[j] & 15) | (int) (((qh >> j) & 1) << 4);
			int			q1 = (x[i].qs[j] >> 4) | (int) (((qh >> (j + 16)) & 1) << 4);

			y[j] = (float) (q0 - 16) * d;
			y[j + 16] = (float) (q1 - 16) * d;
		}
	}
}

static void
dequant_q5_1(const void *src, float *y, int64_t nb)
{
	const P3BlockQ5_1 *x = src;

	for (int64_t i = 0; i < nb; i++, y += P3_QK5_1)
	{
		const float d = half(x[i].d);
		const float m = half(x[i].m);
		const uint32_t qh = p3_q5_high_bits(x[i].qh);

		for (int j = 0; j < 16; j++)
		{
			int			q0 = (x[i].qs[j] & 15) | (int) (((qh >> j) & 1) << 4);
			int			q1 = (x[i].qs[j] >> 4) | (int) (((qh >> (j + 16)) & 1) << 4);

			y[j] = (float) q0 * d + m;
			y[j + 16] = (float) q1 * d + m;
		}
	}
}

static void
dequant_q8_0(const void *src, float *y, int64_t nb)
{
	const P3BlockQ8_0 *x = src;

	for (int64_t i = 0; i < nb; i++, y += P3_QK8_0)
	{
		const float d = half(x[i].d);

		for (int j = 0; j < P3_QK8_0; j++)
			y[j] = (float) x[i].qs[j] * d;
	}
}

static void
dequant_q8_1(const void *src, float *y, int64_t nb)
{
	const P3BlockQ8_1 *x = src;

	for (int64_t i = 0; i < nb; i++, y += P3_QK8_1)
	{
		const float d = half(x[i].d);

		for (int j = 0; j < P3_QK8_1; j++)
			y[j] = (float) x[i].qs[j] * d;
	}
}

static void
dequant_q2_k(const void *src, float *y, int64_t nb)
{
	const P3BlockQ2_K *x = src;

	for (int64_t i = 0; i < nb; i++)
	{
		const float d = half(x[i].d);
		const float dmin = half(x[i].dmin);
		int			g = 0;

		for (int h = 0; h < 2; h++)
		{
			const uint8_t *q = x[i].qs + 32 * h;

			for (int shift = 0; shift < 8; shift += 2)
			{
				for (int half16 = 0; half16 < 2; half16++, g++)
				{
					const float dl = d * (float) (x[i].scales[g] & 15);
					const float ml = dmin * (float) (x[i].scales[g] >> 4);

					for (int l = 16 * half16; l < 16 * half16 + 16; l++)
						*y++ = dl * (float) ((q[l] >> shift) & 3) - ml;
				}
			}
		}
	}
}

static void
dequant_q3_k(const void *src, float *y, int64_t nb)
{
	const P3BlockQ3_K *x = src;

	for (int64_t i = 0; i < nb; i++)
	{
		const float d = half(x[i].d);
		int			sc[16];
		int			g = 0;
		int			bit = 0;

		p3_q3k_scales(x[i].scales, sc);
		for (int h = 0; h < 2; h++)
		{
			const uint8_t *q = x[i].qs + 32 * h;

			for (int shift = 0; shift < 8; shift += 2, bit++)
			{
				for (int half16 = 0; half16 < 2; half16++, g++)
				{
					const float dl = d * (float) sc[g];

					for (int l = 16 * half16; l < 16 * half16 + 16; l++)
					{
						int			v = ((q[l] >> shift) & 3) - (((x[i].hmask[l] >> bit) & 1) ? 0 : 4);

						*y++ = dl * (float) v;
					}
				}
			}
		}
	}
}

static void
dequant_q4_k(const void *src, float *y, int64_t nb)
{
	const P3BlockQ4_K *x = src;

	for (int64_t i = 0; i < nb; i++)
	{
		const float d = half(x[i].d);
		const float dmin = half(x[i].dmin);

		for (int c = 0; c < 4; c++)
		{
			const uint8_t *q = x[i].qs + 32 * c;
			int			sc,
						m;
			float		d1,
						m1,
						d2,
						m2;

			p3_q4k_scale_min(2 * c, x[i].scales, &sc, &m);
			d1 = d * (float) sc;
			m1 = dmin * (float) m;
			p3_q4k_scale_min(2 * c + 1, x[i].scales, &sc, &m);
			d2 = d * (float) sc;
			m2 = dmin * (float) m;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (float) (q[l] & 15) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * (float) (q[l] >> 4) - m2;
		}
	}
}

static void
dequant_q5_k(const void *src, float *y, int64_t nb)
{
	const P3BlockQ5_K *x = src;

	for (int64_t i = 0; i < nb; i++)
	{
		const float d = half(x[i].d);
		const float dmin = half(x[i].dmin);

		for (int c = 0; c < 4; c++)
		{
			const uint8_t *q = x[i].qs + 32 * c;
			const uint8_t *qh = x[i].qh;
			int			sc,
						m;
			float		d1,
						m1,
						d2,
						m2;

			p3_q4k_scale_min(2 * c, x[i].scales, &sc, &m);
			d1 = d * (float) sc;
			m1 = dmin * (float) m;
			p3_q4k_scale_min(2 * c + 1, x[i].scales, &sc, &m);
			d2 = d * (float) sc;
			m2 = dmin * (float) m;
			for (int l = 0; l < 32; l++)
				*y++ = d1 * (float) ((q[l] & 15) + (((qh[l] >> (2 * c)) & 1) << 4)) - m1;
			for (int l = 0; l < 32; l++)
				*y++ = d2 * (float) ((q[l] >> 4) + (((qh[l] >> (2 * c + 1)) & 1) << 4)) - m2;
		}
	}
}

static void
dequant_q6_k(const void *src, float *y, int64_t nb)
{
	const P3BlockQ6_K *x = src;

	for (int64_t i = 0; i < nb; i++)
	{
		const float d = half(x[i].d);

		for (int h = 0; h < 2; h++, y += 128)
		{
			const uint8_t *ql = x[i].ql + 64 * h;
			const uint8_t *qh = x[i].qh + 32 * h;
			const int8_t *sc = x[i].scales + 8 * h;

			for (int l = 0; l < 32; l++)
			{
				int			is = l / 16;
				int			q1 = ((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32;
				int			q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32;
				int			q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
				int			q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;

				y[l] = d * (float) sc[is] * (float) q1;
				y[l + 32] = d * (float) sc[is + 2] * (float) q2;
				y[l + 64] = d * (float) sc[is + 4] * (float) q3;
				y[l + 96] = d * (float) sc[is + 6] * (float) q4;
			}
		}
	}
}

static void
dequant_q8_k(const void *src, float *y, int64_t nb)
{
	const P3BlockQ8_K *x = src;

	for (int64_t i = 0; i < nb; i++, y += P3_QK_K)
		for (int j = 0; j < P3_QK_K; j++)
			y[j] = x[i].d * (float) x[i].qs[j];
}

static void
dequant_iq4_nl(const void *src, float *y, int64_t nb)
{
	const P3BlockIQ4_NL *x = src;

	for (int64_t i = 0; i < nb; i++, y += P3_QK4_NL)
	{
		const float d = half(x[i].d);

		for (int j = 0; j < 16; j++)
		{
			y[j] = d * (float) p3_iq4nl_values[x[i].qs[j] & 15];
			y[j + 16] = d * (float) p3_iq4nl_values[x[i].qs[j] >> 4];
		}
	}
}

static void
dequant_iq4_xs(const void *src, float *y, int64_t nb)
{
	const P3BlockIQ4_XS *x = src;

	for (int64_t i = 0; i < nb; i++)
	{
		const float d = half(x[i].d);

		for (int ib = 0; ib < 8; ib++, y += 32)
		{
			const uint8_t *qs = x[i].qs + 16 * ib;
			int			ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 15) |
				(((x[i].scales_h >> (2 * ib)) & 3) << 4);
			const float dl = d * (float) (ls - 32);

			for (int j = 0; j < 16; j++)
			{
				y[j] = dl * (float) p3_iq4nl_values[qs[j] & 15];
				y[j + 16] = dl * (float) p3_iq4nl_values[qs[j] >> 4];
			}
		}
	}
}

static void
dequant_f32(const void *src, float *y, int64_t n)
{
	memcpy(y, src, (size_t) n * sizeof(float));
}

static void
dequant_f16(const void *src, float *y, int64_t n)
{
	const uint16_t *x = src;

	for (int64_t i = 0; i < n; i++)
		y[i] = p3_fp16_to_fp32(x[i]);
}

static void
dequant_bf16(const void *src, float *y, int64_t n)
{
	const uint16_t *x = src;

	for (int64_t i = 0; i < n; i++)
		y[i] = p3_bf16_to_fp32(x[i]);
}

/* ---------------------------------------------------------------------
 * integer dot products with quantized activations, as ggml's generic
 * kernels (ggml-cpu/quants.c, ggml_vec_dot_*_generic) compute them
 * --------------------------------------------------------------------- */

static float
vec_dot_q4_0(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ4_0 *x = vw;
	const P3BlockQ8_0 *y = va;
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		int			sumi0 = 0;
		int			sumi1 = 0;

		for (int j = 0; j < 16; j++)
		{
			sumi0 += ((x[i].qs[j] & 15) - 8) * y[i].qs[j];
			sumi1 += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
		}
		sumf += (float) (sumi0 + sumi1) * half(x[i].d) * half(y[i].d);
	}
	return sumf;
}

static float
vec_dot_q4_1(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ4_1 *x = vw;
	const P3BlockQ8_1 *y = va;
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		int			sumi0 = 0;
		int			sumi1 = 0;

		for (int j = 0; j < 16; j++)
		{
			sumi0 += (x[i].qs[j] & 15) * y[i].qs[j];
			sumi1 += (x[i].qs[j] >> 4) * y[i].qs[j + 16];
		}
		sumf += (half(x[i].d) * half(y[i].d)) * (float) (sumi0 + sumi1) + half(x[i].m) * half(y[i].s);
	}
	return sumf;
}

static float
vec_dot_q5_0(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ5_0 *x = vw;
	const P3BlockQ8_0 *y = va;
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		const uint32_t qh = p3_q5_high_bits(x[i].qh);
		int			sumi0 = 0;
		int			sumi1 = 0;

		for (int j = 0; j < 16; j++)
		{
			int			q0 = ((x[i].qs[j] & 15) | (int) (((qh >> j) & 1) << 4)) - 16;
			int			q1 = ((x[i].qs[j] >> 4) | (int) (((qh >> (j + 16)) & 1) << 4)) - 16;

			sumi0 += q0 * y[i].qs[j];
			sumi1 += q1 * y[i].qs[j + 16];
		}
		sumf += (half(x[i].d) * half(y[i].d)) * (float) (sumi0 + sumi1);
	}
	return sumf;
}

static float
vec_dot_q5_1(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ5_1 *x = vw;
	const P3BlockQ8_1 *y = va;
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		const uint32_t qh = p3_q5_high_bits(x[i].qh);
		int			sumi0 = 0;
		int			sumi1 = 0;

		for (int j = 0; j < 16; j++)
		{
			int			q0 = (x[i].qs[j] & 15) | (int) (((qh >> j) & 1) << 4);
			int			q1 = (x[i].qs[j] >> 4) | (int) (((qh >> (j + 16)) & 1) << 4);

			sumi0 += q0 * y[i].qs[j];
			sumi1 += q1 * y[i].qs[j + 16];
		}
		sumf += (half(x[i].d) * half(y[i].d)) * (float) (sumi0 + sumi1) + half(x[i].m) * half(y[i].s);
	}
	return sumf;
}

static float
vec_dot_q8_0(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ8_0 *x = vw;
	const P3BlockQ8_0 *y = va;
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		int			sumi = 0;

		for (int j = 0; j < P3_QK8_0; j++)
			sumi += x[i].qs[j] * y[i].qs[j];
		sumf += (float) sumi * (half(x[i].d) * half(y[i].d));
	}
	return sumf;
}

static float
vec_dot_iq4_nl(const void *vw, const void *va, int64_t nb)
{
	const P3BlockIQ4_NL *x = vw;
	const P3BlockQ8_0 *y = va;
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		const float d = half(y[i].d) * half(x[i].d);
		int			sumi1 = 0;
		int			sumi2 = 0;

		for (int j = 0; j < 16; j++)
		{
			sumi1 += y[i].qs[j] * p3_iq4nl_values[x[i].qs[j] & 15];
			sumi2 += y[i].qs[j + 16] * p3_iq4nl_values[x[i].qs[j] >> 4];
		}
		sumf += d * (float) (sumi1 + sumi2);
	}
	return sumf;
}

static float
vec_dot_q2_k(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ2_K *x = vw;
	const P3BlockQ8_K *y = va;
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		const uint8_t *sc = x[i].scales;
		const int8_t *q8 = y[i].qs;
		const float dall = y[i].d * half(x[i].d);
		const float dmin = y[i].d * half(x[i].dmin);
		int			summs = 0;
		int			isum = 0;
		int			g = 0;

		for (int j = 0; j < 16; j++)
			summs += y[i].bsums[j] * (sc[j] >> 4);
		for (int h = 0; h < 2; h++)
		{
			const uint8_t *q2 = x[i].qs + 32 * h;

			for (int shift = 0; shift < 8; shift += 2, q8 += 32)
			{
				int			isuml = 0;

				for (int l = 0; l < 16; l++)
					isuml += q8[l] * ((q2[l] >> shift) & 3);
				isum += (sc[g++] & 15) * isuml;
				isuml = 0;
				for (int l = 16; l < 32; l++)
					isuml += q8[l] * ((q2[l] >> shift) & 3);
				isum += (sc[g++] & 15) * isuml;
			}
		}
		sumf += dall * (float) isum - dmin * (float) summs;
	}
	return sumf;
}

/*
 * Shared tail of the Q3_K / Q4_K / Q5_K / Q6_K kernels: ggml accumulates
 * scale * q * q8 over element k of a block into int32 lane k % 8, then
 * adds d * lane into eight float lane sums, which are added up last.
 */
static inline void
lanes_accumulate(const int8_t *a, const int8_t *q8, const int *scale_of_16, int32_t *aux32)
{
	memset(aux32, 0, 8 * sizeof(int32_t));
	for (int k = 0; k < P3_QK_K; k++)
		aux32[k % 8] += scale_of_16[k / 16] * (q8[k] * a[k]);
}

static float
vec_dot_q3_k(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ3_K *x = vw;
	const P3BlockQ8_K *y = va;
	float		sums[8] = {0};
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		int8_t		a[P3_QK_K];
		int			sc[16];
		int32_t		aux32[8];

		for (int h = 0; h < 2; h++)
			for (int s = 0; s < 4; s++)
				for (int l = 0; l < 32; l++)
					a[128 * h + 32 * s + l] = (int8_t) (((x[i].qs[32 * h + l] >> (2 * s)) & 3) -
														(((x[i].hmask[l] >> (4 * h + s)) & 1) ? 0 : 4));
		p3_q3k_scales(x[i].scales, sc);
		lanes_accumulate(a, y[i].qs, sc, aux32);

		const float d = half(x[i].d) * y[i].d;

		for (int l = 0; l < 8; l++)
			sums[l] += d * (float) aux32[l];
	}
	for (int l = 0; l < 8; l++)
		sumf += sums[l];
	return sumf;
}

/*
 * One Q4_K / Q5_K block (d, dmin, 12 scale bytes, nibbles, optional 5th
 * bits) against one Q8_K block: adds d * lane into sums[8] and returns the
 * min correction dmin * sum(bsums * min), which the caller subtracts.
 */
static float
vec_dot_k_affine_block(uint16_t dh, uint16_t dminh, const uint8_t *scales,
					   const uint8_t *qs, const uint8_t *qh,
					   const P3BlockQ8_K *y, float *sums)
{
	int8_t		a[P3_QK_K];
	int			sc16[16];
	int			mins[8];
	int32_t		aux32[8];
	int			sumi = 0;

	for (int c = 0; c < 4; c++)
	{
		for (int l = 0; l < 32; l++)
		{
			int			lo = qs[32 * c + l] & 15;
			int			hi = qs[32 * c + l] >> 4;

			if (qh != NULL)
			{
				lo += ((qh[l] >> (2 * c)) & 1) << 4;
				hi += ((qh[l] >> (2 * c + 1)) & 1) << 4;
			}
			a[64 * c + l] = (int8_t) lo;
			a[64 * c + 32 + l] = (int8_t) hi;
		}
	}
	for (int j = 0; j < 8; j++)
	{
		int			sc;

		p3_q4k_scale_min(j, scales, &sc, &mins[j]);
		sc16[2 * j] = sc16[2 * j + 1] = sc;
	}
	for (int j = 0; j < 16; j++)
		sumi += y->bsums[j] * mins[j / 2];
	lanes_accumulate(a, y->qs, sc16, aux32);

	const float d = half(dh) * y->d;
	const float dmin = half(dminh) * y->d;

	for (int l = 0; l < 8; l++)
		sums[l] += d * (float) aux32[l];
	return dmin * (float) sumi;
}

static float
vec_dot_q4_k(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ4_K *x = vw;
	const P3BlockQ8_K *y = va;
	float		sums[8] = {0};
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
		sumf -= vec_dot_k_affine_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, NULL, &y[i], sums);
	for (int l = 0; l < 8; l++)
		sumf += sums[l];
	return sumf;
}

static float
vec_dot_q5_k(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ5_K *x = vw;
	const P3BlockQ8_K *y = va;
	float		sums[8] = {0};
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
		sumf -= vec_dot_k_affine_block(x[i].d, x[i].dmin, x[i].scales, x[i].qs, x[i].qh, &y[i], sums);
	for (int l = 0; l < 8; l++)
		sumf += sums[l];
	return sumf;
}

static float
vec_dot_q6_k(const void *vw, const void *va, int64_t nb)
{
	const P3BlockQ6_K *x = vw;
	const P3BlockQ8_K *y = va;
	float		sums[8] = {0};
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		int8_t		a[P3_QK_K];
		int			sc[16];
		int32_t		aux32[8];

		for (int h = 0; h < 2; h++)
		{
			const uint8_t *ql = x[i].ql + 64 * h;
			const uint8_t *qh = x[i].qh + 32 * h;
			int8_t	   *ah = a + 128 * h;

			for (int l = 0; l < 32; l++)
			{
				ah[l] = (int8_t) (((ql[l] & 15) | (((qh[l] >> 0) & 3) << 4)) - 32);
				ah[l + 32] = (int8_t) (((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
				ah[l + 64] = (int8_t) (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
				ah[l + 96] = (int8_t) (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
			}
		}
		for (int g = 0; g < 16; g++)
			sc[g] = x[i].scales[g];
		lanes_accumulate(a, y[i].qs, sc, aux32);

		const float d = half(x[i].d) * y[i].d;

		for (int l = 0; l < 8; l++)
			sums[l] += d * (float) aux32[l];
	}
	for (int l = 0; l < 8; l++)
		sumf += sums[l];
	return sumf;
}

static float
vec_dot_iq4_xs(const void *vw, const void *va, int64_t nb)
{
	const P3BlockIQ4_XS *x = vw;
	const P3BlockQ8_K *y = va;
	float		sumf = 0.0f;

	for (int64_t i = 0; i < nb; i++)
	{
		const float d4d8 = half(x[i].d) * y[i].d;

		for (int ib = 0; ib < 8; ib++)
		{
			const uint8_t *qs = x[i].qs + 16 * ib;
			const int8_t *q8 = y[i].qs + 32 * ib;
			int			ls = ((x[i].scales_l[ib / 2] >> (4 * (ib % 2))) & 15) |
				(((x[i].scales_h >> (2 * ib)) & 3) << 4);
			const float dl = d4d8 * (float) (ls - 32);
			int			sumi1 = 0;
			int			sumi2 = 0;

			for (int j = 0; j < 16; j++)
			{
				sumi1 += q8[j] * p3_iq4nl_values[qs[j] & 15];
				sumi2 += q8[j + 16] * p3_iq4nl_values[qs[j] >> 4];
			}
			sumf += dl * (float) (sumi1 + sumi2);
		}
	}
	return sumf;
}

/* Float weights: activations stay f32; sum in element order. */
static float
vec_dot_f32(const void *vw, const void *va, int64_t n)
{
	const float *w = vw;
	const float *a = va;
	float		sum = 0.0f;

	for (int64_t i = 0; i < n; i++)
		sum += w[i] * a[i];
	return sum;
}

static float
vec_dot_f16(const void *vw, const void *va, int64_t n)
{
	const uint16_t *w = vw;
	const float *a = va;
	float		sum = 0.0f;

	for (int64_t i = 0; i < n; i++)
		sum += p3_fp16_to_fp32(w[i]) * a[i];
	return sum;
}

static float
vec_dot_bf16(const void *vw, const void *va, int64_t n)
{
	const uint16_t *w = vw;
	const float *a = va;
	float		sum = 0.0f;

	for (int64_t i = 0; i < n; i++)
		sum += p3_bf16_to_fp32(w[i]) * a[i];
	return sum;
}

/* ---------------------------------------------------------------------
 * dispatch
 * --------------------------------------------------------------------- */

typedef struct RefOps
{
	void		(*dequant) (const void *src, float *dst, int64_t nblocks);
	float		(*vec_dot) (const void *w, const void *a, int64_t nblocks);
} RefOps;

static const RefOps ref_ops[P3_TYPE_COUNT] = {
	[P3_TYPE_F32] = {dequant_f32, vec_dot_f32},
	[P3_TYPE_F16] = {dequant_f16, vec_dot_f16},
	[P3_TYPE_BF16] = {dequant_bf16, vec_dot_bf16},
	[P3_TYPE_Q4_0] = {dequant_q4_0, vec_dot_q4_0},
	[P3_TYPE_Q4_1] = {dequant_q4_1, vec_dot_q4_1},
	[P3_TYPE_Q5_0] = {dequant_q5_0, vec_dot_q5_0},
	[P3_TYPE_Q5_1] = {dequant_q5_1, vec_dot_q5_1},
	[P3_TYPE_Q8_0] = {dequant_q8_0, vec_dot_q8_0},
	[P3_TYPE_Q8_1] = {dequant_q8_1, NULL},
	[P3_TYPE_Q2_K] = {dequant_q2_k, vec_dot_q2_k},
	[P3_TYPE_Q3_K] = {dequant_q3_k, vec_dot_q3_k},
	[P3_TYPE_Q4_K] = {dequant_q4_k, vec_dot_q4_k},
	[P3_TYPE_Q5_K] = {dequant_q5_k, vec_dot_q5_k},
	[P3_TYPE_Q6_K] = {dequant_q6_k, vec_dot_q6_k},
	[P3_TYPE_Q8_K] = {dequant_q8_k, NULL},
	[P3_TYPE_IQ4_NL] = {dequant_iq4_nl, vec_dot_iq4_nl},
	[P3_TYPE_IQ4_XS] = {dequant_iq4_xs, vec_dot_iq4_xs},
};

/* Operations and geometry of a type; NULL when the type has no reference. */
static const RefOps *
lookup(uint32_t type, int64_t n, const P3TypeTraits **traits, int64_t *nblocks)
{
	const P3TypeTraits *t = p3_type_traits(type);

	if (t == NULL || ref_ops[type].dequant == NULL)
		return NULL;
	*traits = t;
	*nblocks = n > 0 ? n / t->block_size : 0;
	return &ref_ops[type];
}

void
p3_dequantize_row_ref(uint32_t type, const void *src, float *dst, int64_t n)
{
	const P3TypeTraits *t;
	int64_t		nb;
	const RefOps *ops = lookup(type, n, &t, &nb);
	int64_t		done;

	if (n <= 0)
		return;
	if (ops == NULL)
	{
		memset(dst, 0, (size_t) n * sizeof(float));
		return;
	}
	ops->dequant(src, dst, nb);
	done = nb * t->block_size;
	if (done < n)
		memset(dst + done, 0, (size_t) (n - done) * sizeof(float));
}

/*
 * Dequantize up to 256 elements at a time into a stack buffer and take the
 * f32 dot product in element order: the same sum, bit for bit, as a loop
 * over the output of p3_dequantize_row_ref.
 */
float
p3_dot_f32_ref(uint32_t type, const void *w, const float *x, int64_t n)
{
	const P3TypeTraits *t;
	int64_t		nb;
	const RefOps *ops = lookup(type, n, &t, &nb);
	const uint8_t *wp = w;
	float		buf[P3_QK_K];
	float		sum = 0.0f;
	int64_t		chunk;

	if (ops == NULL || nb == 0)
		return 0.0f;
	chunk = P3_QK_K / t->block_size;	/* blocks per 256 elements */
	for (int64_t b = 0; b < nb; b += chunk)
	{
		const int64_t cb = nb - b < chunk ? nb - b : chunk;
		const int64_t m = cb * t->block_size;
		const float *xb = x + b * t->block_size;

		ops->dequant(wp + b * t->type_size, buf, cb);
		for (int64_t j = 0; j < m; j++)
			sum += buf[j] * xb[j];
	}
	return sum;
}

float
p3_vec_dot_ref(uint32_t type, const void *w, const void *a, int64_t n)
{
	const P3TypeTraits *t;
	int64_t		nb;
	const RefOps *ops = lookup(type, n, &t, &nb);

	if (ops == NULL || ops->vec_dot == NULL || nb == 0)
		return 0.0f;
	return ops->vec_dot(w, a, nb);
}

/* ---------------------------------------------------------------------
 * activation quantization, llama.cpp's x86 rule (spec 2.4)
 *
 * ggml's x86 quantize_row_q8_0 / _q8_1 (AVX / AVX2, and so the AVX-512
 * builds) differ from its scalar quantize_row_q8_0_ref in two details:
 * the multiplier is 127 / amax rather than 1 / d (the two differ in the
 * last bit for about half of all blocks), and x * id is rounded to nearest
 * even (vroundps) rather than with roundf.  d = amax / 127 is the same and
 * is stored as f16; Q8_1's s is f16(d * sum(q)) with the unrounded d.
 * Q8_K is the same on every ggml path: p3_quantize_row_ref's encoder.
 *
 * Beyond ggml: NaN codes are 0 and codes are clamped to [-127, 127] before
 * rounding (ggml's packs would turn an infinite product into -128 or 127),
 * and an f16 scale saturates at the largest finite half.
 * --------------------------------------------------------------------- */

/* f32 -> f16 for a stored scale, saturating, NaN -> 0 (as the encoders) */
static inline uint16_t
act_half(float f)
{
	if (f != f)
		return 0;
	if (f > 65504.0f)
		f = 65504.0f;
	else if (f < -65504.0f)
		f = -65504.0f;
	return p3_fp32_to_fp16(f);
}

/* v clamped to [-127, 127] and rounded to nearest even (NaN -> 0) */
static inline int8_t
act_code(float v)
{
	float		t;
	int32_t		i;

	if (v != v)
		return 0;
	if (v > 127.0f)
		v = 127.0f;
	else if (v < -127.0f)
		v = -127.0f;
	/* |v| <= 127: adding 1.5 * 2^23 rounds to an integer, ties to even */
	t = v + 12582912.0f;
	memcpy(&i, &t, sizeof i);
	return (int8_t) ((i & 0x007FFFFF) - 0x00400000);
}

/* One block of 32: codes into qs, d = amax / 127 into *d; returns the sum of the codes. */
static int
act_q8_block(const float *x, int8_t *qs, float *d)
{
	float		amax = 0.0f;
	float		id;
	int			sum = 0;

	for (int j = 0; j < 32; j++)
		if (fabsf(x[j]) > amax)
			amax = fabsf(x[j]);
	*d = amax / 127.0f;
	id = amax != 0.0f ? 127.0f / amax : 0.0f;
	for (int j = 0; j < 32; j++)
	{
		qs[j] = act_code(x[j] * id);
		sum += qs[j];
	}
	return sum;
}

void
p3_quantize_act_row_ref(uint32_t type, const float *src, void *dst, int64_t n)
{
	if (type == P3_TYPE_Q8_0)
	{
		P3BlockQ8_0 *y = dst;

		for (int64_t i = 0; i < n / 32; i++)
		{
			float		d;

			(void) act_q8_block(src + 32 * i, y[i].qs, &d);
			y[i].d = act_half(d);
		}
	}
	else if (type == P3_TYPE_Q8_1)
	{
		P3BlockQ8_1 *y = dst;

		for (int64_t i = 0; i < n / 32; i++)
		{
			float		d;
			int			sum = act_q8_block(src + 32 * i, y[i].qs, &d);

			y[i].d = act_half(d);
			y[i].s = act_half(d * (float) sum);
		}
	}
	else
		p3_quantize_row_ref(type, src, dst, n);
}
