/*
 * kernels_ref.c — the reference kernel set and the element-wise operations
 * of the forward pass.
 *
 * The reference set binds each weight type to the scalar functions of
 * quant_ref.c; it runs on every CPU, is the last entry of the dispatch
 * table (kernels_dispatch.c), and the x86 sets start as copies of it.
 * The element-wise operations (RMSNorm, softmax, SiLU, RoPE) are plain
 * scalar code: they are a tiny share of the work and being exact and
 * deterministic matters more than their speed.
 */
#include "phi3/kernels.h"

#include <math.h>
#include <string.h>

/* Per-type wrappers binding the type argument of the quant.h functions. */
#define REF_WRAPPERS(T) \
	static void dequant_##T(const void *src, float *dst, int64_t n) \
	{ p3_dequantize_row_ref(P3_TYPE_##T, src, dst, n); } \
	static void __attribute__((unused)) quantize_##T(const float *src, void *dst, int64_t n) \
	{ p3_quantize_row_ref(P3_TYPE_##T, src, dst, n); } \
	static float dot_f32_##T(const void *w, const float *x, int64_t n) \
	{ return p3_dot_f32_ref(P3_TYPE_##T, w, x, n); } \
	static float vec_dot_##T(const void *w, const void *a, int64_t n) \
	{ return p3_vec_dot_ref(P3_TYPE_##T, w, a, n); } \
	static void vec_dot_ntok_##T(const void *w, const void *a, size_t stride, int64_t n, float *out) \
	{ \
		for (int t = 0; t < P3_KERNEL_NTOK; t++) \
			out[t] = p3_vec_dot_ref(P3_TYPE_##T, w, (const uint8_t *) a + (size_t) t * stride, n); \
	}

REF_WRAPPERS(F32)
REF_WRAPPERS(F16)
REF_WRAPPERS(BF16)
REF_WRAPPERS(Q4_0)
REF_WRAPPERS(Q4_1)
REF_WRAPPERS(Q5_0)
REF_WRAPPERS(Q5_1)
REF_WRAPPERS(Q8_0)
REF_WRAPPERS(Q8_1)
REF_WRAPPERS(Q2_K)
REF_WRAPPERS(Q3_K)
REF_WRAPPERS(Q4_K)
REF_WRAPPERS(Q5_K)
REF_WRAPPERS(Q6_K)
REF_WRAPPERS(Q8_K)
REF_WRAPPERS(IQ4_NL)
REF_WRAPPERS(IQ4_XS)

/* Activation quantizers: llama.cpp's x86 rule (p3_quantize_act_row_ref). */
#define ACT_WRAPPER(T) \
	static void quantize_act_##T(const float *src, void *dst, int64_t n) \
	{ p3_quantize_act_row_ref(P3_TYPE_##T, src, dst, n); }
ACT_WRAPPER(Q8_0)
ACT_WRAPPER(Q8_1)
ACT_WRAPPER(Q8_K)

/* Plain f32 dot product, summed in element order (the reference order). */
static float
dot_f32_f32_ref(const float *a, const float *b, int64_t n)
{
	float		sum = 0.0f;

	for (int64_t i = 0; i < n; i++)
		sum += a[i] * b[i];
	return sum;
}

/* dot_f32_f32_ref of NTOK rows in pieces: the running sum of each row is its state */
static void
dot_f32_f32_ntok_ref(const float *w, const float *x, int64_t ldx, int64_t n,
					 int64_t i0, int64_t m, float *state, float *out)
{
	for (int t = 0; t < P3_KERNEL_NTOK; t++)
	{
		const float *xt = x + t * ldx;
		float		sum = i0 == 0 ? 0.0f : state[t * P3_KERNEL_DOT_STATE];

		for (int64_t i = 0; i < m; i++)
			sum += w[i] * xt[i];
		state[t * P3_KERNEL_DOT_STATE] = sum;
		if (i0 + m >= n)
			out[t] = sum;
	}
}

static float
dot_f32_f16_ref(const float *a, const uint16_t *b, int64_t n)
{
	float		sum = 0.0f;

	for (int64_t i = 0; i < n; i++)
		sum += a[i] * p3_fp16_to_fp32(b[i]);
	return sum;
}

static void
axpy_f16_ref(float *y, float a, const uint16_t *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] += a * p3_fp16_to_fp32(x[i]);
}

static void
axpy_f32_ref(float *y, float a, const float *x, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] += a * x[i];
}

/*
 * llama.cpp's arithmetic, ggml's generic C (no SIMD): every sum in double,
 * element after element (ggml_vec_dot_f16 without GGML_SIMD); softmax and
 * SiLU with libm's expf.
 */
static float
ggml_dot_f16_ref(const float *q, const uint16_t *k, int64_t n)
{
	double		sum = 0.0;

	for (int64_t i = 0; i < n; i++)
		sum += (double) (p3_fp16_to_fp32(k[i]) * q[i]);
	return (float) sum;
}

static void
ggml_dot_f16_keys_ref(const float *q, size_t qstride, int32_t nq, const uint8_t *k, size_t stride,
					  int32_t nkeys, int64_t n, float *out, size_t ostride)
{
	for (int32_t i = 0; i < nq; i++)
		for (int32_t j = 0; j < nkeys; j++)
			out[(size_t) i * ostride + j] =
				ggml_dot_f16_ref(q + (size_t) i * qstride, (const uint16_t *) (const void *) (k + (size_t) j * stride), n);
}

/*
 * V·p in pieces: ggml_vp_*_acc adds positions j0 .. j0 + n - 1 (rows v +
 * (j - j0) * stride, probabilities p[j - j0]) to slots, zeroed by the
 * caller; ggml_vp_finish writes the sums.  The generic C sums in one
 * double per dimension, position by position: slots holds hd doubles.
 */
static void
ggml_vp_acc_ref(float *slots, const float *p, const uint8_t *v, size_t stride, int32_t n, int32_t hd, bool f16)
{
	double	   *acc = (double *) (void *) slots;	/* hd doubles: 2 hd <= P3_GGML_VP_SLOTS hd floats */

	for (int32_t j = 0; j < n; j++)
	{
		const uint8_t *vr = v + (size_t) j * stride;

		for (int32_t d = 0; d < hd; d++)
		{
			float		x = f16 ? p3_fp16_to_fp32(((const uint16_t *) (const void *) vr)[d])
				: ((const float *) (const void *) vr)[d];

			acc[d] += (double) (x * p[j]);
		}
	}
}

static void
ggml_vp_f16_acc_ref(float *slots, const float *p, const uint8_t *v, size_t stride,
					int32_t j0, int32_t n, int32_t hd)
{
	(void) j0;
	ggml_vp_acc_ref(slots, p, v, stride, n, hd, true);
}

static void
ggml_vp_f32_acc_ref(float *slots, const float *p, const uint8_t *v, size_t stride,
					int32_t j0, int32_t n, int32_t hd)
{
	(void) j0;
	ggml_vp_acc_ref(slots, p, v, stride, n, hd, false);
}

static void
ggml_vp_finish_ref(float *out, float *slots, int32_t hd)
{
	const double *acc = (const double *) (void *) slots;

	for (int32_t d = 0; d < hd; d++)
		out[d] = (float) acc[d];
}

static void
ggml_vp_f16_ref(float *out, const float *p, const uint8_t *v, size_t stride,
				int32_t npos, int32_t hd, float *slots)
{
	memset(slots, 0, (size_t) hd * sizeof(double));
	ggml_vp_f16_acc_ref(slots, p, v, stride, 0, npos, hd);
	ggml_vp_finish_ref(out, slots, hd);
}

static void
ggml_vp_f16_blocks_ref(float *out, size_t ostride, const float *p, size_t pstride, const int32_t *npos,
					   int32_t nq, const uint8_t *v, int32_t blk, size_t bstride, size_t rstride, int32_t hd,
					   float *slots)
{
	for (int32_t i = 0; i < nq; i++)
	{
		memset(slots, 0, (size_t) hd * sizeof(double));
		for (int32_t j0 = 0; j0 < npos[i]; j0 += blk)
			ggml_vp_f16_acc_ref(slots, p + (size_t) i * pstride + j0, v + (size_t) (j0 / blk) * bstride, rstride, j0,
								npos[i] - j0 < blk ? npos[i] - j0 : blk, hd);
		ggml_vp_finish_ref(out + (size_t) i * ostride, slots, hd);
	}
}

static float
ggml_dot_f32_ref(const float *q, const float *k, int64_t n)
{
	double		sum = 0.0;

	for (int64_t i = 0; i < n; i++)
		sum += (double) (k[i] * q[i]);
	return (float) sum;
}

static void
ggml_vp_f32_ref(float *out, const float *p, const uint8_t *v, size_t stride,
				int32_t npos, int32_t hd, float *slots)
{
	memset(slots, 0, (size_t) hd * sizeof(double));
	ggml_vp_f32_acc_ref(slots, p, v, stride, 0, npos, hd);
	ggml_vp_finish_ref(out, slots, hd);
}

static void
ggml_swiglu_ref(float *y, const float *gate, const float *up, int64_t n)
{
	for (int64_t i = 0; i < n; i++)
		y[i] = p3_silu(gate[i]) * up[i];
}

static const P3KernelSet reference_set = {
	.name = "reference",
	.dequant = {
		[P3_TYPE_F32] = dequant_F32, [P3_TYPE_F16] = dequant_F16, [P3_TYPE_BF16] = dequant_BF16,
		[P3_TYPE_Q4_0] = dequant_Q4_0, [P3_TYPE_Q4_1] = dequant_Q4_1, [P3_TYPE_Q5_0] = dequant_Q5_0,
		[P3_TYPE_Q5_1] = dequant_Q5_1, [P3_TYPE_Q8_0] = dequant_Q8_0, [P3_TYPE_Q8_1] = dequant_Q8_1,
		[P3_TYPE_Q2_K] = dequant_Q2_K, [P3_TYPE_Q3_K] = dequant_Q3_K, [P3_TYPE_Q4_K] = dequant_Q4_K,
		[P3_TYPE_Q5_K] = dequant_Q5_K, [P3_TYPE_Q6_K] = dequant_Q6_K, [P3_TYPE_Q8_K] = dequant_Q8_K,
		[P3_TYPE_IQ4_NL] = dequant_IQ4_NL, [P3_TYPE_IQ4_XS] = dequant_IQ4_XS,
	},
	.dot_f32 = {
		[P3_TYPE_F32] = dot_f32_F32, [P3_TYPE_F16] = dot_f32_F16, [P3_TYPE_BF16] = dot_f32_BF16,
		[P3_TYPE_Q4_0] = dot_f32_Q4_0, [P3_TYPE_Q4_1] = dot_f32_Q4_1, [P3_TYPE_Q5_0] = dot_f32_Q5_0,
		[P3_TYPE_Q5_1] = dot_f32_Q5_1, [P3_TYPE_Q8_0] = dot_f32_Q8_0, [P3_TYPE_Q8_1] = dot_f32_Q8_1,
		[P3_TYPE_Q2_K] = dot_f32_Q2_K, [P3_TYPE_Q3_K] = dot_f32_Q3_K, [P3_TYPE_Q4_K] = dot_f32_Q4_K,
		[P3_TYPE_Q5_K] = dot_f32_Q5_K, [P3_TYPE_Q6_K] = dot_f32_Q6_K, [P3_TYPE_Q8_K] = dot_f32_Q8_K,
		[P3_TYPE_IQ4_NL] = dot_f32_IQ4_NL, [P3_TYPE_IQ4_XS] = dot_f32_IQ4_XS,
	},
	.vec_dot = {
		[P3_TYPE_F32] = vec_dot_F32, [P3_TYPE_F16] = vec_dot_F16, [P3_TYPE_BF16] = vec_dot_BF16,
		[P3_TYPE_Q4_0] = vec_dot_Q4_0, [P3_TYPE_Q4_1] = vec_dot_Q4_1, [P3_TYPE_Q5_0] = vec_dot_Q5_0,
		[P3_TYPE_Q5_1] = vec_dot_Q5_1, [P3_TYPE_Q8_0] = vec_dot_Q8_0, [P3_TYPE_Q8_1] = vec_dot_Q8_1,
		[P3_TYPE_Q2_K] = vec_dot_Q2_K, [P3_TYPE_Q3_K] = vec_dot_Q3_K, [P3_TYPE_Q4_K] = vec_dot_Q4_K,
		[P3_TYPE_Q5_K] = vec_dot_Q5_K, [P3_TYPE_Q6_K] = vec_dot_Q6_K, [P3_TYPE_Q8_K] = vec_dot_Q8_K,
		[P3_TYPE_IQ4_NL] = vec_dot_IQ4_NL, [P3_TYPE_IQ4_XS] = vec_dot_IQ4_XS,
	},
	.quantize = {
		[P3_TYPE_F32] = quantize_F32, [P3_TYPE_F16] = quantize_F16, [P3_TYPE_BF16] = quantize_BF16,
		[P3_TYPE_Q4_0] = quantize_Q4_0, [P3_TYPE_Q4_1] = quantize_Q4_1, [P3_TYPE_Q5_0] = quantize_Q5_0,
		[P3_TYPE_Q5_1] = quantize_Q5_1, [P3_TYPE_Q8_0] = quantize_act_Q8_0, [P3_TYPE_Q8_1] = quantize_act_Q8_1,
		[P3_TYPE_Q2_K] = quantize_Q2_K, [P3_TYPE_Q3_K] = quantize_Q3_K, [P3_TYPE_Q4_K] = quantize_Q4_K,
		[P3_TYPE_Q5_K] = quantize_Q5_K, [P3_TYPE_Q6_K] = quantize_Q6_K, [P3_TYPE_Q8_K] = quantize_act_Q8_K,
		[P3_TYPE_IQ4_NL] = quantize_IQ4_NL, [P3_TYPE_IQ4_XS] = quantize_IQ4_XS,
	},
	.vec_dot_ntok = {
		[P3_TYPE_F32] = vec_dot_ntok_F32, [P3_TYPE_F16] = vec_dot_ntok_F16, [P3_TYPE_BF16] = vec_dot_ntok_BF16,
		[P3_TYPE_Q4_0] = vec_dot_ntok_Q4_0, [P3_TYPE_Q4_1] = vec_dot_ntok_Q4_1, [P3_TYPE_Q5_0] = vec_dot_ntok_Q5_0,
		[P3_TYPE_Q5_1] = vec_dot_ntok_Q5_1, [P3_TYPE_Q8_0] = vec_dot_ntok_Q8_0, [P3_TYPE_Q8_1] = vec_dot_ntok_Q8_1,
		[P3_TYPE_Q2_K] = vec_dot_ntok_Q2_K, [P3_TYPE_Q3_K] = vec_dot_ntok_Q3_K, [P3_TYPE_Q4_K] = vec_dot_ntok_Q4_K,
		[P3_TYPE_Q5_K] = vec_dot_ntok_Q5_K, [P3_TYPE_Q6_K] = vec_dot_ntok_Q6_K, [P3_TYPE_Q8_K] = vec_dot_ntok_Q8_K,
		[P3_TYPE_IQ4_NL] = vec_dot_ntok_IQ4_NL, [P3_TYPE_IQ4_XS] = vec_dot_ntok_IQ4_XS,
	},
	.dot_f32_f32_ntok = dot_f32_f32_ntok_ref,
	.dot_f32_f32 = dot_f32_f32_ref,
	.dot_f32_f16 = dot_f32_f16_ref,
	.axpy_f16 = axpy_f16_ref,
	.axpy_f32 = axpy_f32_ref,
	.ggml_dot_f16 = ggml_dot_f16_ref,
	.ggml_vp_f16 = ggml_vp_f16_ref,
	.ggml_dot_f16_keys = ggml_dot_f16_keys_ref,
	.ggml_dot_f32 = ggml_dot_f32_ref,
	.ggml_vp_f32 = ggml_vp_f32_ref,
	.ggml_vp_f16_acc = ggml_vp_f16_acc_ref,
	.ggml_vp_f32_acc = ggml_vp_f32_acc_ref,
	.ggml_vp_finish = ggml_vp_finish_ref,
	.ggml_vp_f16_blocks = ggml_vp_f16_blocks_ref,
	.ggml_softmax = p3_softmax,
	.ggml_swiglu = ggml_swiglu_ref,
};

const P3KernelSet *
p3_kernels_reference(void)
{
	return &reference_set;
}

/* ---- element-wise operations ---- */

void
p3_rmsnorm(float *out, const float *x, const float *w, int64_t n, float eps)
{
	double		sum = 0.0;
	float		mean;
	float		scale;

	for (int64_t i = 0; i < n; i++)
		sum += (double) x[i] * (double) x[i];
	mean = (float) (sum / (double) n);
	scale = 1.0f / sqrtf(mean + eps);
	for (int64_t i = 0; i < n; i++)
		out[i] = (x[i] * scale) * w[i];
}

void
p3_rmsnorm_ggml(float *out, const float *x, const float *w, int64_t n, float eps)
{
	double		sum = 0.0;
	float		mean;
	float		scale;

	for (int64_t i = 0; i < n; i++)
		sum += (double) (x[i] * x[i]);
	mean = (float) (sum / (double) n);
	scale = 1.0f / sqrtf(mean + eps);
	for (int64_t i = 0; i < n; i++)
		out[i] = (x[i] * scale) * w[i];
}

void
p3_softmax(float *x, int64_t n)
{
	float		max = x[0];
	double		sum = 0.0;
	float		inv;

	for (int64_t i = 1; i < n; i++)
		if (x[i] > max)
			max = x[i];
	for (int64_t i = 0; i < n; i++)
	{
		x[i] = expf(x[i] - max);
		sum += x[i];
	}
	inv = (float) (1.0 / sum);
	for (int64_t i = 0; i < n; i++)
		x[i] *= inv;
}

float
p3_silu(float z)
{
	return z / (1.0f + expf(-z));
}

void
p3_rope_table(float *cs, int32_t pos, int32_t n_rot, float base,
			  const float *factors, float mscale)
{
	int32_t		half = n_rot / 2;

	for (int32_t i = 0; i < half; i++)
	{
		double		inv_freq = pow((double) base, -2.0 * (double) i / (double) n_rot);
		double		theta = (double) pos * inv_freq;

		if (factors)
			theta /= (double) factors[i];
		cs[2 * i] = (float) (cos(theta) * (double) mscale);
		cs[2 * i + 1] = (float) (sin(theta) * (double) mscale);
	}
}

void
p3_rope_table_ggml(float *cs, int32_t pos, int32_t n_rot, float base,
				   const float *factors, float mscale)
{
	float		theta_scale = powf(base, -2.0f / (float) n_rot);
	float		theta = (float) pos;

	for (int32_t i = 0; i < n_rot / 2; i++)
	{
		float		t = factors ? theta / factors[i] : theta;

		cs[2 * i] = cosf(t) * mscale;
		cs[2 * i + 1] = sinf(t) * mscale;
		theta *= theta_scale;
	}
}

void
p3_rope_neox_ggml(float *x, int32_t n_rot, const float *cs)
{
	int32_t		half = n_rot / 2;

	for (int32_t i = 0; i < half; i++)
	{
		float		c = cs[2 * i];
		float		s = cs[2 * i + 1];
		float		x0 = x[i];
		float		x1 = x[i + half];

		x[i] = fmaf(x0, c, -(x1 * s));
		x[i + half] = fmaf(x0, s, x1 * c);
	}
}

void
p3_rope_neox(float *x, int32_t n_rot, const float *cs)
{
	int32_t		half = n_rot / 2;

	for (int32_t i = 0; i < half; i++)
	{
		float		c = cs[2 * i];
		float		s = cs[2 * i + 1];
		float		x0 = x[i];
		float		x1 = x[i + half];

		x[i] = x0 * c - x1 * s;
		x[i + half] = x0 * s + x1 * c;
	}
}
