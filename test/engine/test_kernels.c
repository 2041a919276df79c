/*
 * test_kernels.c — every kernel set this CPU runs, checked against the
 * scalar reference of phi3/quant.h and against its own contract
 * (phi3/kernels.h, phi3/kernels_dispatch.h):
 *
 *   - dequant, and the Q8_0 / Q8_1 / Q8_K / F16 quantizers, give the
 *     reference's bits (rows quantized from many kinds of data, raw random
 *     bytes including NaN and inf scales, halfway ties, zero, tiny, huge,
 *     negative-only and NaN inputs);
 *   - dot_f32[T](w, x) has the bits of dot_f32_f32(dequant[T](w), x) within
 *     the set; axpy has the reference's bits;
 *   - vec_dot, dot_f32 and the float dots agree with the exact value (a
 *     double-precision sum) within the tolerance below, as does the
 *     reference itself;
 *   - the multi-token kernels give the bits of the single-token ones;
 *   - p3_matmul gives the same bits with 1 and 2 threads, for a sub-range of
 *     rows, and token by token as in one chunk;
 *   - the sets are complete, every set this CPU runs is in the build (the
 *     CPU asked here, independently of the dispatcher), and
 *     p3_kernels_by_name / PHI3_KERNELS choose as documented.
 * Negative controls feed deliberately perturbed kernels to the same checks
 * and expect them to fail, so no check here is vacuous.
 *
 * Tolerance.  A fast kernel computes the same exact integer block sums (or
 * the same f32 products) as the reference and only adds them in another
 * order, so its error against the exact value is bounded by the rounding
 * of a float sum: with M = the sum of the magnitudes of the terms (scale
 * and min parts separately for the affine formats), we require
 *     |result - exact| <= (k + 40) * 2^-23 * M
 * where k is the longest chain of additions: the number of blocks for
 * vec_dot, n / 32 for a SIMD float dot (its lanes hold n / 32 or fewer
 * terms each), and n for the reference's sequential float dot.  This is
 * about twice the worst-case bound, and far below the size of any single
 * term in the tested rows, so a dropped, doubled or mis-scaled element or
 * block fails.
 *
 * Sets tested: all that p3_kernels_by_name finds, except that
 *   - PHI3_TEST_KERNEL_SETS="reference,avx2" (comma-separated) limits them;
 *   - under valgrind (detected by its preload library in LD_PRELOAD, which
 *     does not depend on the CPUID valgrind emulates) the avx512 set is
 *     skipped: valgrind cannot execute AVX-512.
 */
#include <stddef.h>

#include "harness.h"
#include "phi3/kernels.h"
#include "phi3/kernels_dispatch.h"
#include "phi3/quant.h"
#include "phi3/threadpool.h"
#include "../../src/engine/quant_blocks.h"

#define MAX_N 8192

static const P3KernelSet *sets[3];
static int	nsets;
static bool under_valgrind;

/* ---------------------------------------------------------------------
 * helpers
 * --------------------------------------------------------------------- */

static void *
xcalloc(size_t n)
{
	void	   *p = calloc(1, n ? n : 1);

	if (p == NULL)
	{
		fprintf(stderr, "test_kernels: out of memory\n");
		exit(2);
	}
	return p;
}

static bool
is_ref(const P3KernelSet *k)
{
	return k == p3_kernels_reference();
}

static size_t
row_bytes(uint32_t type, int64_t n)
{
	size_t		rb = 0;

	if (!p3_row_bytes(type, n, &rb))
	{
		fprintf(stderr, "test_kernels: bad row %s x %lld\n", p3_type_name(type), (long long) n);
		exit(2);
	}
	return rb;
}

static float
bits_float(uint32_t b)
{
	float		f;

	memcpy(&f, &b, 4);
	return f;
}

static uint32_t
float_bits(float f)
{
	uint32_t	b;

	memcpy(&b, &f, 4);
	return b;
}

/* uniform in [-1, 1) */
static float
urand(uint64_t *s)
{
	return harness_randf(s);
}

/* Kinds of f32 data for activations and for the rows weights are quantized from. */
enum
{
	DATA_UNIFORM,				/* [-1, 1) */
	DATA_SCALED,				/* uniform times 1 .. 7 by position, plus a few outliers */
	DATA_NEGATIVE,				/* (-1, 0] */
	DATA_ZERO,
	DATA_TINY,					/* uniform * 1e-30 */
	DATA_LARGE,					/* uniform * 1e30 */
	DATA_SPARSE,				/* mostly zero, a few values */
	DATA_COUNT
};

static const char *const data_names[DATA_COUNT] = {
	"uniform", "scaled", "negative", "zero", "tiny", "large", "sparse"
};

static void
fill_data(float *x, int64_t n, int kind, uint64_t *s)
{
	for (int64_t i = 0; i < n; i++)
	{
		float		u = urand(s);

		switch (kind)
		{
			case DATA_UNIFORM:
				x[i] = u;
				break;
			case DATA_SCALED:
				x[i] = u * (float) (1 + i % 7);
				if (harness_rand(s) % 97 == 0)
					x[i] *= 40.0f;
				break;
			case DATA_NEGATIVE:
				x[i] = -fabsf(u);
				break;
			case DATA_ZERO:
				x[i] = 0.0f;
				break;
			case DATA_TINY:
				x[i] = u * 1e-30f;
				break;
			case DATA_LARGE:
				x[i] = u * 1e30f;
				break;
			case DATA_SPARSE:
				x[i] = harness_rand(s) % 13 == 0 ? u * 3.0f : 0.0f;
				break;
		}
	}
}

/* exact (double) dot product and the sum of the magnitudes of its terms */
static double
dot_exact(const float *a, const float *b, int64_t n, double *mag)
{
	double		sum = 0.0;
	double		m = 0.0;

	for (int64_t i = 0; i < n; i++)
	{
		sum += (double) a[i] * (double) b[i];
		m += fabs((double) a[i] * (double) b[i]);
	}
	*mag = m;
	return sum;
}

static float
f16_value(uint16_t h)
{
	return p3_fp16_to_fp32(h);
}

/* byte offsets of the scale (d) and min fields of a block, -1 if none */
static void
scale_fields(uint32_t type, int *off_d, int *off_min)
{
	*off_d = -1;
	*off_min = -1;
	switch (type)
	{
		case P3_TYPE_Q4_K:
			*off_d = offsetof(P3BlockQ4_K, d);
			*off_min = offsetof(P3BlockQ4_K, dmin);
			break;
		case P3_TYPE_Q5_K:
			*off_d = offsetof(P3BlockQ5_K, d);
			*off_min = offsetof(P3BlockQ5_K, dmin);
			break;
		case P3_TYPE_Q2_K:
			*off_d = offsetof(P3BlockQ2_K, d);
			*off_min = offsetof(P3BlockQ2_K, dmin);
			break;
		case P3_TYPE_Q4_1:
			*off_d = offsetof(P3BlockQ4_1, d);
			*off_min = offsetof(P3BlockQ4_1, m);
			break;
		case P3_TYPE_Q5_1:
			*off_d = offsetof(P3BlockQ5_1, d);
			*off_min = offsetof(P3BlockQ5_1, m);
			break;
		default:
			break;
	}
}

/*
 * For the formats whose codes carry an offset (q - 8, q - 16, q - 32, q - 4
 * times a scale), the offset times that scale at element i: a kernel may
 * sum the unsigned codes and the offsets separately (Q6_K's -32 through the
 * activations' bsums), and those partial sums round too.
 */
static double
offset_part(uint32_t type, const uint8_t *w, int64_t i)
{
	switch (type)
	{
		case P3_TYPE_Q4_0:
			return 8.0 * fabs((double) f16_value(((const P3BlockQ4_0 *) w)[i / 32].d));
		case P3_TYPE_Q5_0:
			return 16.0 * fabs((double) f16_value(((const P3BlockQ5_0 *) w)[i / 32].d));
		case P3_TYPE_Q6_K:
			{
				const P3BlockQ6_K *b = (const P3BlockQ6_K *) w + i / 256;

				return 32.0 * fabs((double) f16_value(b->d) * b->scales[(i % 256) / 16]);
			}
		case P3_TYPE_Q3_K:
			{
				const P3BlockQ3_K *b = (const P3BlockQ3_K *) w + i / 256;
				int			sc[16];

				p3_q3k_scales(b->scales, sc);
				return 4.0 * fabs((double) f16_value(b->d) * sc[(i % 256) / 16]);
			}
		default:
			return 0.0;
	}
}

/*
 * The exact value D of vec_dot(w, act) from the reference's dequantized
 * weights and activations, and the magnitude M of its terms: scale parts
 * (the row with its min fields zeroed) and min parts (min times the
 * activations, or for Q8_1 activations min times the block's stored s)
 * counted separately, since the kernels sum them separately.
 */
static void
vec_dot_expect(uint32_t type, const uint8_t *w, const uint8_t *act, int64_t n, double *D, double *M)
{
	const P3TypeTraits *t = p3_type_traits(type);
	int64_t		nb = n / t->block_size;
	float	   *a = xcalloc((size_t) n * sizeof(float));
	float	   *sp = xcalloc((size_t) n * sizeof(float));
	float	   *mp = xcalloc((size_t) n * sizeof(float));
	uint8_t    *tmp = xcalloc((size_t) nb * t->type_size);
	int			off_d,
				off_min;
	double		d = 0.0,
				m = 0.0;

	scale_fields(type, &off_d, &off_min);
	p3_dequantize_row_ref(t->vec_dot_type, act, a, n);
	if (off_min < 0)
		p3_dequantize_row_ref(type, w, sp, n);
	else
	{
		memcpy(tmp, w, (size_t) nb * t->type_size);
		for (int64_t b = 0; b < nb; b++)
			memset(tmp + b * t->type_size + off_min, 0, 2);
		p3_dequantize_row_ref(type, tmp, sp, n);
		if (t->vec_dot_type != P3_TYPE_Q8_1)
		{
			memcpy(tmp, w, (size_t) nb * t->type_size);
			for (int64_t b = 0; b < nb; b++)
				memset(tmp + b * t->type_size + off_d, 0, 2);
			p3_dequantize_row_ref(type, tmp, mp, n);
		}
	}
	for (int64_t i = 0; i < n; i++)
	{
		d += (double) sp[i] * a[i] + (double) mp[i] * a[i];
		m += (fabs((double) sp[i]) + fabs((double) mp[i]) + offset_part(type, w, i)) * fabs((double) a[i]);
	}
	if (t->vec_dot_type == P3_TYPE_Q8_1)
	{
		const P3BlockQ8_1 *y = (const P3BlockQ8_1 *) act;

		for (int64_t b = 0; b < nb; b++)
		{
			uint16_t	mh;
			double		term;

			memcpy(&mh, w + b * t->type_size + off_min, 2);
			term = (double) f16_value(mh) * (double) f16_value(y[b].s);
			d += term;
			m += fabs(term);
		}
	}
	free(a);
	free(sp);
	free(mp);
	free(tmp);
	*D = d;
	*M = m;
}

/* relative rounding bound of a sum whose longest addition chain is k */
static double
sum_bound(double k)
{
	return (k + 40.0) * ldexp(1.0, -23);
}

/* absolute error a sum of k terms may add by underflow (each rounding to f32's subnormal grid) */
static double
underflow_bound(double k)
{
	return (k + 40.0) * ldexp(1.0, -149);
}

/* Make every f16 scale field of a row of random bytes a finite half of moderate size. */
static void
sanitize_scales(uint32_t type, uint8_t *w, int64_t n, uint64_t *s)
{
	const P3TypeTraits *t = p3_type_traits(type);
	int64_t		nb = n / t->block_size;
	int			offs[2] = {-1, -1};

	switch (type)
	{
		case P3_TYPE_Q4_0:
		case P3_TYPE_Q5_0:
		case P3_TYPE_Q8_0:
		case P3_TYPE_IQ4_NL:
		case P3_TYPE_IQ4_XS:
			offs[0] = 0;
			break;
		case P3_TYPE_Q3_K:
			offs[0] = offsetof(P3BlockQ3_K, d);
			break;
		case P3_TYPE_Q6_K:
			offs[0] = offsetof(P3BlockQ6_K, d);
			break;
		default:
			scale_fields(type, &offs[0], &offs[1]);
			break;
	}
	for (int64_t b = 0; b < nb; b++)
		for (int f = 0; f < 2; f++)
			if (offs[f] >= 0)
			{
				uint16_t	h = p3_fp32_to_fp16(urand(s) * 0.01f);

				memcpy(w + b * t->type_size + offs[f], &h, 2);
			}
}

/* ---------------------------------------------------------------------
 * the checks (each returns whether it held; report prints the first miss)
 * --------------------------------------------------------------------- */

static char case_name[160];

static bool
check_dequant(P3DequantFn fn, uint32_t type, const void *w, int64_t n, bool report)
{
	float	   *want = xcalloc((size_t) n * sizeof(float));
	float	   *got = xcalloc((size_t) n * sizeof(float));
	bool		ok = true;

	p3_dequantize_row_ref(type, w, want, n);
	fn(w, got, n);
	for (int64_t i = 0; i < n && ok; i++)
		if (float_bits(want[i]) != float_bits(got[i]))
		{
			ok = false;
			if (report)
				fprintf(stderr, "  %s: dequant element %lld: %08x (%g), reference %08x (%g)\n", case_name,
						(long long) i, float_bits(got[i]), got[i], float_bits(want[i]), want[i]);
		}
	free(want);
	free(got);
	return ok;
}

static bool
check_quantize(P3QuantizeFn fn, uint32_t type, const float *x, int64_t n, bool report)
{
	size_t		rb = row_bytes(type, n);
	uint8_t    *want = xcalloc(rb);
	uint8_t    *got = xcalloc(rb);
	bool		ok;

	memset(want, 0xA5, rb);
	memset(got, 0x5A, rb);
	p3_quantize_act_row_ref(type, x, want, n);
	fn(x, got, n);
	ok = memcmp(want, got, rb) == 0;
	if (!ok && report)
		for (size_t i = 0; i < rb; i++)
			if (want[i] != got[i])
			{
				fprintf(stderr, "  %s: quantize byte %zu (block %zu): %02x, reference %02x\n", case_name, i,
						i / p3_type_traits(type)->type_size, got[i], want[i]);
				break;
			}
	free(want);
	free(got);
	return ok;
}

/* dot_f32[T](w, x) has the bits of dot_f32_f32(dequant[T](w), x) of the same set */
static bool
check_fused(const P3KernelSet *k, P3DotF32Fn dot, uint32_t type, const void *w, const float *x, int64_t n,
			bool report)
{
	float	   *dq = xcalloc((size_t) n * sizeof(float));
	float		fused,
				twostep;

	k->dequant[type](w, dq, n);
	fused = dot(w, x, n);
	twostep = k->dot_f32_f32(dq, x, n);
	free(dq);
	/* NaN results may carry different payloads (see phi3/kernels.h) */
	if (float_bits(fused) == float_bits(twostep) || (fused != fused && twostep != twostep))
		return true;
	if (report)
		fprintf(stderr, "  %s: dot_f32 %.9g (%08x), dot_f32_f32(dequant) %.9g (%08x)\n", case_name,
				fused, float_bits(fused), twostep, float_bits(twostep));
	return false;
}

/* dot_f32[T] within the sum bound of the exact f32 dot of the dequantized row */
static bool
check_dot_f32_tol(P3DotF32Fn dot, bool ref, uint32_t type, const void *w, const float *x, int64_t n, bool report)
{
	float	   *dq = xcalloc((size_t) n * sizeof(float));
	double		mag;
	double		exact;
	double		tol;
	float		got;

	p3_dequantize_row_ref(type, w, dq, n);
	exact = dot_exact(dq, x, n, &mag);
	tol = sum_bound(ref ? (double) n : (double) n / 32.0) * mag + underflow_bound((double) n);
	got = dot(w, x, n);
	free(dq);
	/* terms beyond f32's range (1e30 activations on f16-overflowed weights): only exactness applies */
	if (!(mag <= 1e37))
		return true;
	if (fabs((double) got - exact) <= tol)
		return true;
	if (report)
		fprintf(stderr, "  %s: dot_f32 %.9g, exact %.9g, |diff| %.3g > tol %.3g\n", case_name,
				got, exact, fabs((double) got - exact), tol);
	return false;
}

static bool
check_vec_dot_tol(P3VecDotFn fn, uint32_t type, const void *w, const void *act, int64_t n, bool report)
{
	double		D,
				M,
				tol;
	float		got;

	vec_dot_expect(type, w, act, n, &D, &M);
	tol = sum_bound((double) (n / p3_type_traits(type)->block_size)) * M + underflow_bound((double) n);
	got = fn(w, act, n);
	if (fabs((double) got - D) <= tol)
		return true;
	if (report)
		fprintf(stderr, "  %s: vec_dot %.9g, exact %.9g, |diff| %.3g > tol %.3g (reference %.9g)\n", case_name,
				got, D, fabs((double) got - D), tol, p3_vec_dot_ref(type, w, act, n));
	return false;
}

/* vec_dot_ntok against P3_KERNEL_NTOK calls of vec_dot on rows act + t * stride */
static bool
check_ntok(P3VecDotFn one, P3VecDotNtokFn many, const void *w, const uint8_t *act, size_t stride, int64_t n,
		   bool report)
{
	float		out[P3_KERNEL_NTOK];

	many(w, act, stride, n, out);
	for (int t = 0; t < P3_KERNEL_NTOK; t++)
	{
		float		single = one(w, act + (size_t) t * stride, n);

		if (float_bits(single) != float_bits(out[t]))
		{
			if (report)
				fprintf(stderr, "  %s: ntok row %d %.9g, single %.9g\n", case_name, t, out[t], single);
			return false;
		}
	}
	return true;
}

/* ---------------------------------------------------------------------
 * the sets
 * --------------------------------------------------------------------- */

static void
pick_sets(void)
{
	static const char *const names[] = {"reference", "avx2", "avx512"};
	const char *only = getenv("PHI3_TEST_KERNEL_SETS");
	const char *preload = getenv("LD_PRELOAD");

	under_valgrind = preload != NULL && strstr(preload, "vgpreload") != NULL;
	for (int i = 0; i < 3; i++)
	{
		const P3KernelSet *k = p3_kernels_by_name(names[i]);

		if (k == NULL)
			continue;
		if (only != NULL && only[0] != '\0' && strstr(only, names[i]) == NULL)
			continue;
		if (under_valgrind && strcmp(names[i], "avx512") == 0)
			continue;
		sets[nsets++] = k;
	}
	fprintf(stderr, "kernel sets tested:");
	for (int i = 0; i < nsets; i++)
		fprintf(stderr, " %s", sets[i]->name);
	fprintf(stderr, "%s\n", under_valgrind ? " (valgrind: avx512 skipped)" : "");
}

/* types the engine computes with */
static int
weight_types(uint32_t *out)
{
	int			count = 0;

	for (uint32_t t = 0; t < P3_TYPE_COUNT; t++)
	{
		const P3TypeTraits *tr = p3_type_traits(t);

		if (tr != NULL && tr->weights_ok)
			out[count++] = t;
	}
	return count;
}

static void
test_sets_complete(void)
{
	uint32_t	types[P3_TYPE_COUNT];
	int			nt = weight_types(types);

	CHECK(nsets >= 1);
	CHECK(is_ref(sets[0]));
	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];

		CHECK(k->name != NULL);
		CHECK(k->dot_f32_f32 && k->dot_f32_f32_ntok && k->dot_f32_f16 && k->axpy_f16 && k->axpy_f32);
		for (int i = 0; i < nt; i++)
		{
			uint32_t	t = types[i];

			CHECK_MSG(k->dequant[t] && k->dot_f32[t] && k->vec_dot[t] && k->vec_dot_ntok[t] && k->quantize[t],
					  "set %s type %s has a missing entry", k->name, p3_type_name(t));
			CHECK_MSG(k->quantize[p3_type_traits(t)->vec_dot_type] != NULL,
					  "set %s has no quantizer for %s's activations", k->name, p3_type_name(t));
		}
	}
}

/* p3_kernels_by_name and the PHI3_KERNELS override */
static void
test_dispatch(void)
{
	static const char *const names[] = {"reference", "avx2", "avx512"};
	const char *saved = getenv("PHI3_KERNELS");
	char	   *saved_copy = saved ? strdup(saved) : NULL;
	const P3KernelSet *natural;
	const P3KernelSet *strongest = NULL;

	CHECK(p3_kernels_by_name("reference") == p3_kernels_reference());
	CHECK(p3_kernels_by_name("no-such-set") == NULL);
	CHECK(p3_kernels_by_name(NULL) == NULL);
	CHECK(p3_kernels_by_name("") == NULL);

	unsetenv("PHI3_KERNELS");
	natural = p3_kernels_best();
	for (int i = 0; i < 3; i++)
		if (p3_kernels_by_name(names[i]))
			strongest = p3_kernels_by_name(names[i]);
	CHECK(natural == strongest);
	CHECK(p3_kernels_best() == natural);	/* stable */
	for (int i = 0; i < 3; i++)
	{
		const P3KernelSet *k = p3_kernels_by_name(names[i]);

		if (k == NULL)
			continue;
		CHECK(strcmp(k->name, names[i]) == 0);
		setenv("PHI3_KERNELS", names[i], 1);
		CHECK_MSG(p3_kernels_best() == k, "PHI3_KERNELS=%s gave %s", names[i], p3_kernels_best()->name);
	}
#if defined(__x86_64__)
	/*
	 * A set the CPU runs is in the build: kernels.h's feature lists, asked
	 * here independently of kernels_x86.c (fails if a set went missing from
	 * the dispatch table or its CPU check is wrong).
	 */
	{
		bool		avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
			__builtin_cpu_supports("f16c");
		bool		avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
			__builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
			__builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vnni");

		CHECK_MSG((p3_kernels_by_name("avx2") != NULL) == avx2, "avx2 set %s, CPU %s",
				  p3_kernels_by_name("avx2") ? "found" : "missing", avx2 ? "runs it" : "does not");
		CHECK_MSG((p3_kernels_by_name("avx512") != NULL) == avx512, "avx512 set %s, CPU %s",
				  p3_kernels_by_name("avx512") ? "found" : "missing", avx512 ? "runs it" : "does not");
		CHECK(strcmp(natural->name, avx512 ? "avx512" : avx2 ? "avx2" : "reference") == 0);
	}
#endif
	setenv("PHI3_KERNELS", "bogus", 1);
	CHECK(p3_kernels_best() == natural);
	setenv("PHI3_KERNELS", "", 1);
	CHECK(p3_kernels_best() == natural);

	if (saved_copy)
		setenv("PHI3_KERNELS", saved_copy, 1);
	else
		unsetenv("PHI3_KERNELS");
	free(saved_copy);
}

/* ---------------------------------------------------------------------
 * per-type kernels on rows quantized from every kind of data
 * --------------------------------------------------------------------- */

/* row lengths per block size: one block, odd block counts, the model's widths */
static int
lengths_for(uint32_t bs, int64_t *out)
{
	int			c = 0;

	if (bs == 256)
	{
		out[c++] = 256;
		out[c++] = 768;
		out[c++] = 3072;
		out[c++] = 8192;
	}
	else if (bs == 32)
	{
		out[c++] = 32;
		out[c++] = 96;
		out[c++] = 288;
		out[c++] = 3072;
		out[c++] = 8192 - 32;
	}
	else
	{
		/* float types: every tail length, and the model's widths */
		out[c++] = 1;
		out[c++] = 7;
		out[c++] = 17;
		out[c++] = 63;
		out[c++] = 96;
		out[c++] = 3072 + 5;
		out[c++] = 8192;
	}
	return c;
}

static void
test_type_kernels(void)
{
	uint32_t	types[P3_TYPE_COUNT];
	int			nt = weight_types(types);
	uint64_t	rng = 12345;
	float	   *src = xcalloc(MAX_N * sizeof(float));
	float	   *xs = xcalloc((size_t) P3_KERNEL_NTOK * MAX_N * sizeof(float));
	uint8_t    *w = xcalloc((size_t) MAX_N * 4);
	uint8_t    *acts = xcalloc((size_t) P3_KERNEL_NTOK * MAX_N * 4);

	for (int ti = 0; ti < nt; ti++)
	{
		uint32_t	type = types[ti];
		const P3TypeTraits *tr = p3_type_traits(type);
		int64_t		lens[8];
		int			nl = lengths_for(tr->block_size, lens);
		bool		q8 = tr->vec_dot_type != P3_TYPE_F32;

		for (int li = 0; li < nl; li++)
		{
			int64_t		n = lens[li];
			/* fewer weight kinds for the long rows: the K-quant encoders are slow */
			int			nkinds = n >= 3072 ? 3 : DATA_COUNT + 1;

			for (int wk = 0; wk < nkinds; wk++)
			{
				size_t		rb = row_bytes(type, n);
				size_t		arb = q8 ? row_bytes(tr->vec_dot_type, n) : 0;
				bool		raw = wk == DATA_COUNT; /* random bytes, scales made finite */

				if (raw)
				{
					for (size_t i = 0; i < rb; i++)
						w[i] = (uint8_t) harness_rand(&rng);
					if (type == P3_TYPE_F32)
						for (int64_t i = 0; i < n; i++)
						{
							float		v = urand(&rng) * 4.0f;

							memcpy(w + 4 * i, &v, 4);
						}
					else if (type == P3_TYPE_F16 || type == P3_TYPE_BF16)
						for (int64_t i = 0; i < n; i++)
						{
							uint16_t	h = type == P3_TYPE_F16 ? p3_fp32_to_fp16(urand(&rng) * 4.0f)
								: p3_fp32_to_bf16(urand(&rng) * 4.0f);

							memcpy(w + 2 * i, &h, 2);
						}
					else
						sanitize_scales(type, w, n, &rng);
				}
				else
				{
					fill_data(src, n, wk, &rng);
					p3_quantize_row_ref(type, src, w, n);
				}

				/* activation rows: a different kind of data each */
				for (int t = 0; t < P3_KERNEL_NTOK; t++)
				{
					int			ak = (wk + 2 * t) % DATA_COUNT;

					fill_data(xs + (size_t) t * n, n, ak, &rng);
					if (q8)
						p3_quantize_row_ref(tr->vec_dot_type, xs + (size_t) t * n, acts + (size_t) t * arb, n);
				}

				for (int s = 0; s < nsets; s++)
				{
					const P3KernelSet *k = sets[s];
					bool		ref = is_ref(k);

					snprintf(case_name, sizeof case_name, "set %s type %s n %lld weights %s",
							 k->name, tr->name, (long long) n, raw ? "random-bytes" : data_names[wk]);
					CHECK_MSG(check_dequant(k->dequant[type], type, w, n, true), "%s", case_name);
					for (int t = 0; t < P3_KERNEL_NTOK; t++)
					{
						const float *xt = xs + (size_t) t * n;

						CHECK_MSG(check_fused(k, k->dot_f32[type], type, w, xt, n, true), "%s", case_name);
						CHECK_MSG(check_dot_f32_tol(k->dot_f32[type], ref, type, w, xt, n, true), "%s", case_name);
						if (q8)
							CHECK_MSG(check_vec_dot_tol(k->vec_dot[type], type, w, acts + (size_t) t * arb, n, true),
									  "%s", case_name);
					}
					if (q8)
						CHECK_MSG(check_ntok(k->vec_dot[type], k->vec_dot_ntok[type], w, acts, arb, n, true),
								  "%s", case_name);
					else
						CHECK_MSG(check_ntok(k->vec_dot[type], k->vec_dot_ntok[type], w, (const uint8_t *) xs,
											 (size_t) n * sizeof(float), n, true), "%s", case_name);
				}
			}
		}
	}
	free(src);
	free(xs);
	free(w);
	free(acts);
}

/* dequant of raw random bytes (NaN, inf, subnormal scales and values included) */
static void
test_dequant_random_bytes(void)
{
	uint32_t	types[P3_TYPE_COUNT];
	int			nt = weight_types(types);
	uint64_t	rng = 777;
	uint8_t    *w = xcalloc((size_t) 1024 * 4);
	float	   *x = xcalloc(1024 * sizeof(float));

	for (int ti = 0; ti < nt; ti++)
	{
		uint32_t	type = types[ti];
		const P3TypeTraits *tr = p3_type_traits(type);
		int64_t		n = tr->block_size == 1 ? 1000 : 1024;

		for (int rep = 0; rep < 8; rep++)
		{
			for (size_t i = 0; i < row_bytes(type, n); i++)
				w[i] = (uint8_t) harness_rand(&rng);
			fill_data(x, n, DATA_UNIFORM, &rng);
			for (int s = 0; s < nsets; s++)
			{
				snprintf(case_name, sizeof case_name, "set %s type %s random bytes rep %d",
						 sets[s]->name, tr->name, rep);
				CHECK_MSG(check_dequant(sets[s]->dequant[type], type, w, n, true), "%s", case_name);
				CHECK_MSG(check_fused(sets[s], sets[s]->dot_f32[type], type, w, x, n, true), "%s", case_name);
			}
		}
	}
	free(w);
	free(x);
}

/* ---------------------------------------------------------------------
 * activation quantizers
 * --------------------------------------------------------------------- */

/* rows of n with halfway ties after scaling, for Q8_0 / Q8_1 (d = 1 or 0.5) and Q8_K (iscale = +-1) */
static void
fill_ties(float *x, int64_t n, int variant, uint64_t *s)
{
	int			bs = variant < 2 || n % 256 != 0 ? 32 : 256;

	for (int64_t b = 0; b < n / bs; b++)
	{
		float	   *xb = x + b * bs;
		float		scale = variant == 1 ? 0.5f : 1.0f;

		for (int j = 0; j < bs; j++)
		{
			int			k = (int) (harness_rand(s) % 127);

			xb[j] = ((float) k + 0.5f) * scale * (harness_rand(s) & 1 ? -1.0f : 1.0f);
		}
		/* the largest magnitude fixes d (Q8_0: amax / 127) or iscale (Q8_K: -127 / max) */
		xb[harness_rand(s) % bs] = (variant == 3 ? -127.0f : 127.0f) * scale;
	}
}

/*
 * Blocks of 32 whose multipliers 127 / amax and 1 / (amax / 127) often
 * differ in the last bit (amax just above 1), with values next to the
 * ties of x * (127 / amax): a quantizer using 1 / d moves some codes.
 */
static void
fill_multiplier(float *x, int64_t n, uint64_t *s)
{
	for (int64_t b = 0; b < n / 32; b++)
	{
		float	   *xb = x + b * 32;
		float		amax = 1.0f + (float) (1 + harness_rand(s) % 4096) * 0x1p-23f;
		float		id = 127.0f / amax;

		for (int j = 0; j < 32; j++)
		{
			float		v = ((float) (harness_rand(s) % 126) + 0.5f) / id;
			uint64_t	r = harness_rand(s) % 3;

			if (r != 1)
				v = nextafterf(v, r == 0 ? 0.0f : 2.0f);
			xb[j] = harness_rand(s) & 1 ? -v : v;
		}
		xb[harness_rand(s) % 32] = harness_rand(s) & 1 ? -amax : amax;
	}
}

static void
test_quantizers(void)
{
	static const uint32_t qtypes[] = {P3_TYPE_Q8_0, P3_TYPE_Q8_1, P3_TYPE_Q8_K, P3_TYPE_F16};
	uint64_t	rng = 4242;
	float	   *x = xcalloc(MAX_N * sizeof(float));

	for (size_t qi = 0; qi < sizeof(qtypes) / sizeof(qtypes[0]); qi++)
	{
		uint32_t	type = qtypes[qi];
		int64_t		lens[8];
		int			nl = lengths_for(p3_type_traits(type)->block_size, lens);

		for (int li = 0; li < nl; li++)
		{
			int64_t		n = lens[li];

			/* every data kind, ties, NaN and inf sprinkled in, f16 rounding edges */
			for (int kind = 0; kind < DATA_COUNT + 7; kind++)
			{
				const char *what;

				if (kind == DATA_COUNT + 6)
				{
					fill_multiplier(x, n, &rng);
					what = "multiplier";
				}
				else if (kind < DATA_COUNT)
				{
					fill_data(x, n, kind, &rng);
					what = data_names[kind];
				}
				else if (kind < DATA_COUNT + 4)
				{
					fill_ties(x, n, kind - DATA_COUNT, &rng);
					if (type == P3_TYPE_F16)
						for (int64_t i = 0; i < n; i++)
						{
							/* halfway between two halves: h's value plus half its ulp */
							uint16_t	h = (uint16_t) (harness_rand(&rng) & 0x7BFF);
							float		v = p3_fp16_to_fp32(h);
							int			e = (h >> 10) & 31;
							float		half_ulp = ldexpf(1.0f, (e ? e : 1) - 15 - 11);

							x[i] = (harness_rand(&rng) & 1 ? -1.0f : 1.0f) * (v + half_ulp);
						}
					what = "ties";
				}
				else if (kind == DATA_COUNT + 4)
				{
					fill_data(x, n, DATA_UNIFORM, &rng);
					for (int64_t i = 0; i < n; i += 5)
						x[i] = (i / 5) % 3 == 0 ? bits_float(0x7FC00001u + (uint32_t) i) :
							((i / 5) % 3 == 1 ? INFINITY : -INFINITY);
					what = "nan-inf";
				}
				else
				{
					static const float edges[] = {
						65504.0f, 65519.996f, 65520.0f, -65520.0f, 1e-8f, 5.96e-8f, 2.98e-8f, 2.9802322e-8f,
						6.1035156e-5f, 6.1e-5f, 1e38f, 3.4e38f, -0.0f, 1e-45f, 1.5e-5f, 0.33333334f
					};

					for (int64_t i = 0; i < n; i++)
						x[i] = edges[i % 16] * (1.0f + (float) (i / 16) * 1e-3f);
					what = "edges";
				}
				for (int s = 0; s < nsets; s++)
				{
					snprintf(case_name, sizeof case_name, "set %s quantize %s n %lld data %s",
							 sets[s]->name, p3_type_name(type), (long long) n, what);
					CHECK_MSG(check_quantize(sets[s]->quantize[type], type, x, n, true), "%s", case_name);
				}
			}
		}
	}
	free(x);
}

/*
 * The activation rounding rules pinned by value in every set (llama.cpp's
 * x86 quantize_row_q8_0 / _q8_1 and quantize_row_q8_K_ref, spec 2.4):
 * Q8_0 / Q8_1 ties to even and the multiplier 127 / amax, Q8_K's signed
 * max, ties to even, d = 1 / iscale, bsums.
 */
static void
test_quantizer_rules(void)
{
	float		x[512];
	P3BlockQ8_0 q0[2];
	P3BlockQ8_1 q1[1];
	P3BlockQ8_K qk[2];

	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];
		static const float ties[] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -2.5f, 126.5f, -125.5f};
		static const int8_t ties_q[] = {127, 0, 2, 2, 0, -2, 126, -126};
		/* amax 0x3f80000f: 127 / amax = 126.99977, 1 / (amax / 127) = 126.99978 */
		static const uint32_t mult[] = {0x3f80000fu, 0x3c41831cu, 0x3ca14298u, 0x3ce1c3a1u};
		static const int8_t mult_q[] = {127, 1, 2, 3};	/* with 1 / d: 127, 2, 3, 4 */

		snprintf(case_name, sizeof case_name, "set %s quantizer rules", k->name);

		/* Q8_0 / Q8_1: ties to even (amax 127: the multiplier is 1) */
		memset(x, 0, sizeof x);
		memcpy(x, ties, sizeof ties);
		memset(q0, 0x55, sizeof q0);
		k->quantize[P3_TYPE_Q8_0] (x, q0, 32);
		CHECK_MSG(memcmp(q0[0].qs, ties_q, sizeof ties_q) == 0 && q0[0].qs[8] == 0 && q0[0].qs[31] == 0,
				  "%s: q8_0 ties %d %d %d %d %d %d %d %d", case_name, q0[0].qs[0], q0[0].qs[1], q0[0].qs[2],
				  q0[0].qs[3], q0[0].qs[4], q0[0].qs[5], q0[0].qs[6], q0[0].qs[7]);
		CHECK_MSG(q0[0].d == 0x3C00, "%s: q8_0 d %04x", case_name, q0[0].d);
		k->quantize[P3_TYPE_Q8_1] (x, q1, 32);
		CHECK_MSG(memcmp(q1[0].qs, ties_q, sizeof ties_q) == 0, "%s: q8_1 ties", case_name);
		/* s = f16(d * sum q) = 127 + 0 + 2 + 2 + 0 - 2 + 126 - 126 = 129 */
		CHECK_MSG(q1[0].d == 0x3C00 && p3_fp16_to_fp32(q1[0].s) == 129.0f, "%s: q8_1 d %04x s %g", case_name,
				  q1[0].d, p3_fp16_to_fp32(q1[0].s));

		/* Q8_0 / Q8_1: the multiplier is 127 / amax, not 1 / d */
		memset(x, 0, sizeof x);
		for (int j = 0; j < 4; j++)
			x[32 + j] = bits_float(mult[j]);
		k->quantize[P3_TYPE_Q8_0] (x, q0, 64);
		CHECK_MSG(memcmp(q0[1].qs, mult_q, sizeof mult_q) == 0, "%s: q8_0 multiplier: %d %d %d %d", case_name,
				  q0[1].qs[0], q0[1].qs[1], q0[1].qs[2], q0[1].qs[3]);
		CHECK_MSG(q0[0].d == 0 && q0[0].qs[0] == 0 && q0[1].d == p3_fp32_to_fp16(bits_float(mult[0]) / 127.0f),
				  "%s: q8_0 zero block / d", case_name);
		k->quantize[P3_TYPE_Q8_1] (x + 32, q1, 32);
		CHECK_MSG(memcmp(q1[0].qs, mult_q, sizeof mult_q) == 0, "%s: q8_1 multiplier", case_name);

		/* Q8_K: the first element of largest magnitude (-127, before +127) gives iscale 1 */
		memset(x, 0, sizeof x);
		x[0] = -127.0f;
		x[1] = 2.5f;
		x[2] = 3.5f;
		x[3] = -0.5f;
		x[4] = 126.5f;
		x[10] = 127.0f;
		x[17] = -1.5f;
		/* second block: max +4 (signed), so iscale = -31.75 and 4 -> -127, -3 -> 95.25 -> 95 */
		x[256] = -3.0f;
		x[300] = 4.0f;
		x[301] = 0.063f;		/* -31.75 * 0.063 = -2.00025 -> -2 */
		k->quantize[P3_TYPE_Q8_K] (x, qk, 512);
		CHECK_MSG(qk[0].qs[0] == -127 && qk[0].qs[1] == 2 && qk[0].qs[2] == 4 && qk[0].qs[3] == 0 &&
				  qk[0].qs[4] == 126 && qk[0].qs[10] == 127 && qk[0].qs[17] == -2 && qk[0].d == 1.0f,
				  "%s: q8_k ties %d %d %d %d %d %d %d d %g", case_name, qk[0].qs[0], qk[0].qs[1], qk[0].qs[2],
				  qk[0].qs[3], qk[0].qs[4], qk[0].qs[10], qk[0].qs[17], qk[0].d);
		CHECK_MSG(qk[0].bsums[0] == -127 + 2 + 4 + 0 + 126 + 127 && qk[0].bsums[1] == -2 && qk[0].bsums[2] == 0,
				  "%s: q8_k bsums %d %d", case_name, qk[0].bsums[0], qk[0].bsums[1]);
		CHECK_MSG(qk[1].qs[0] == 95 && qk[1].qs[44] == -127 && qk[1].qs[45] == -2 &&
				  qk[1].d == 1.0f / (-127.0f / 4.0f),
				  "%s: q8_k signed max %d %d %d d %g", case_name, qk[1].qs[0], qk[1].qs[44], qk[1].qs[45], qk[1].d);
	}
}

/* ---------------------------------------------------------------------
 * float kernels of attention
 * --------------------------------------------------------------------- */

static void
test_float_kernels(void)
{
	uint64_t	rng = 99;
	int64_t		maxn = 3100;
	float	   *a = xcalloc((size_t) maxn * sizeof(float));
	float	   *b = xcalloc((size_t) maxn * 4 * sizeof(float));
	float	   *bh = xcalloc((size_t) maxn * sizeof(float));
	uint16_t   *h = xcalloc((size_t) maxn * sizeof(uint16_t));
	float	   *y0 = xcalloc((size_t) maxn * sizeof(float));
	float	   *y1 = xcalloc((size_t) maxn * sizeof(float));

	for (int64_t n = 0; n <= maxn; n = n < 140 ? n + 1 : n * 3 + 7)
	{
		int			kind = (int) (n % DATA_COUNT);

		if (kind == DATA_LARGE)
			kind = DATA_SCALED;
		fill_data(a, n, kind, &rng);
		fill_data(b, 4 * n, DATA_UNIFORM, &rng);
		for (int64_t i = 0; i < n; i++)
		{
			h[i] = p3_fp32_to_fp16(urand(&rng) * 2.0f);
			bh[i] = p3_fp16_to_fp32(h[i]);
		}
		for (int s = 0; s < nsets; s++)
		{
			const P3KernelSet *k = sets[s];
			double		mag,
						exact,
						tol;
			float		got,
						out[P3_KERNEL_NTOK];
			float		alpha = urand(&rng);

			snprintf(case_name, sizeof case_name, "set %s float kernels n %lld", k->name, (long long) n);
			exact = dot_exact(a, b, n, &mag);
			tol = sum_bound(is_ref(k) ? (double) n : (double) n / 32.0) * mag + underflow_bound((double) n);
			got = k->dot_f32_f32(a, b, n);
			CHECK_MSG(fabs((double) got - exact) <= tol, "%s: dot_f32_f32 %.9g exact %.9g", case_name, got, exact);

			exact = dot_exact(a, bh, n, &mag);
			tol = sum_bound(is_ref(k) ? (double) n : (double) n / 32.0) * mag + underflow_bound((double) n);
			got = k->dot_f32_f16(a, h, n);
			CHECK_MSG(fabs((double) got - exact) <= tol, "%s: dot_f32_f16 %.9g exact %.9g", case_name, got, exact);

			/* the multi-token dot in one piece and in 64-aligned pieces of every size */
			for (int64_t piece = 64; piece <= n + 64; piece = piece < 256 ? piece + 64 : piece * 4)
			{
				float		state[P3_KERNEL_NTOK * P3_KERNEL_DOT_STATE];
				int64_t		i0 = 0;

				memset(out, 0, sizeof out);
				do
				{
					int64_t		m = n - i0 < piece ? n - i0 : piece;

					k->dot_f32_f32_ntok(a + i0, b + i0, n, n, i0, m, state, out);
					i0 += m;
				} while (i0 < n);
				for (int t = 0; t < P3_KERNEL_NTOK; t++)
					CHECK_MSG(float_bits(out[t]) == float_bits(k->dot_f32_f32(a, b + t * n, n)),
							  "%s: dot_f32_f32_ntok row %d in pieces of %lld", case_name, t, (long long) piece);
			}

			/* axpy: the reference's bits (multiply, then add) */
			memcpy(y0, b, (size_t) n * sizeof(float));
			memcpy(y1, b, (size_t) n * sizeof(float));
			p3_kernels_reference()->axpy_f32(y0, alpha, a, n);
			k->axpy_f32(y1, alpha, a, n);
			CHECK_MSG(memcmp(y0, y1, (size_t) n * sizeof(float)) == 0, "%s: axpy_f32", case_name);
			memcpy(y0, b, (size_t) n * sizeof(float));
			memcpy(y1, b, (size_t) n * sizeof(float));
			p3_kernels_reference()->axpy_f16(y0, alpha, h, n);
			k->axpy_f16(y1, alpha, h, n);
			CHECK_MSG(memcmp(y0, y1, (size_t) n * sizeof(float)) == 0, "%s: axpy_f16", case_name);
		}
	}
	free(a);
	free(b);
	free(bh);
	free(h);
	free(y0);
	free(y1);
}

/* ---------------------------------------------------------------------
 * p3_matmul: thread count, row ranges, chunking
 * --------------------------------------------------------------------- */

typedef struct MatmulCase
{
	const P3KernelSet *k;
	P3ActPrecision act;
	const P3Weight *w;
	const float *x;
	int32_t		n_tok;
	int64_t		row_begin;
	int64_t		row_end;
} MatmulCase;

/* y (n_tok rows of row_end - row_begin) of one p3_matmul call */
static void
run_matmul(P3ThreadPool *pool, const MatmulCase *c, float *y)
{
	P3MatmulArgs a;
	size_t		sfloats = p3_matmul_scratch_per_thread(c->w->n_in);
	float	   *scratch = xcalloc(2 * sfloats * sizeof(float));
	void	   *act = xcalloc(p3_matmul_act_bytes(c->w->type, c->w->n_in, c->n_tok));

	memset(&a, 0, sizeof a);
	a.kernels = c->k;
	a.act = c->act;
	a.w = c->w;
	a.row_begin = c->row_begin;
	a.row_end = c->row_end;
	a.x = c->x;
	a.ldx = c->w->n_in;
	a.n_tok = c->n_tok;
	a.y = y;
	a.ldy = c->row_end - c->row_begin;
	a.act_buf = act;
	a.thread_scratch = scratch;
	a.thread_scratch_floats = sfloats;
	p3_matmul(pool, &a);
	free(scratch);
	free(act);
}

static void
test_matmul(void)
{
	static const uint32_t mtypes[] = {
		P3_TYPE_Q4_K, P3_TYPE_Q5_K, P3_TYPE_Q6_K, P3_TYPE_Q8_0, P3_TYPE_Q4_0, P3_TYPE_Q4_1,
		P3_TYPE_Q5_0, P3_TYPE_Q5_1, P3_TYPE_IQ4_NL, P3_TYPE_IQ4_XS, P3_TYPE_Q3_K, P3_TYPE_Q2_K,
		P3_TYPE_F16, P3_TYPE_BF16, P3_TYPE_F32
	};
	const int64_t n_in = 512;
	const int64_t n_out = 37;
	const int32_t max_tok = 37;	/* 1 .. 37 by 4: the GEMM's partial and odd groups of 16 too */
	uint64_t	rng = 31337;
	P3ThreadPool *pool = NULL;
	P3Error		err;
	float	   *src = xcalloc((size_t) n_in * sizeof(float));
	float	   *x = xcalloc((size_t) max_tok * n_in * sizeof(float));
	float	   *y1 = xcalloc((size_t) max_tok * n_out * sizeof(float));
	float	   *y2 = xcalloc((size_t) max_tok * n_out * sizeof(float));
	float	   *yt = xcalloc((size_t) n_out * sizeof(float));
	float	   *xr = xcalloc((size_t) max_tok * n_in * sizeof(float));

	CHECK_STATUS(p3_threadpool_new(2, &pool, &err), P3_OK);
	fill_data(x, max_tok * n_in, DATA_SCALED, &rng);
	for (size_t ti = 0; ti < sizeof(mtypes) / sizeof(mtypes[0]); ti++)
	{
		P3Weight	w;
		size_t		rb = row_bytes(mtypes[ti], n_in);
		uint8_t    *data = xcalloc(rb * (size_t) n_out);

		for (int64_t r = 0; r < n_out; r++)
		{
			fill_data(src, n_in, (int) (r % 3), &rng);
			p3_quantize_row_ref(mtypes[ti], src, data + (size_t) r * rb, n_in);
		}
		memset(&w, 0, sizeof w);
		w.name = "test";
		w.type = mtypes[ti];
		w.n_in = n_in;
		w.n_out = n_out;
		w.row_bytes = rb;
		w.data = data;

		for (int s = 0; s < nsets; s++)
			for (int act = 0; act < 2; act++)
				for (int32_t n_tok = 1; n_tok <= max_tok; n_tok += 4)
				{
					MatmulCase	c = {sets[s], act ? P3_ACT_Q8 : P3_ACT_F32, &w, x, n_tok, 0, n_out};
					MatmulCase	sub = c;

					snprintf(case_name, sizeof case_name, "set %s matmul %s act %s n_tok %d", sets[s]->name,
							 p3_type_name(w.type), act ? "q8" : "f32", n_tok);
					run_matmul(NULL, &c, y1);
					run_matmul(pool, &c, y2);
					CHECK_MSG(memcmp(y1, y2, (size_t) n_tok * n_out * sizeof(float)) == 0,
							  "%s: 1 and 2 threads differ", case_name);

					/* each token alone (decode) gives the chunk's bits */
					for (int32_t t = 0; t < n_tok; t++)
					{
						MatmulCase	one = c;

						one.x = x + (size_t) t * n_in;
						one.n_tok = 1;
						run_matmul(pool, &one, yt);
						CHECK_MSG(memcmp(yt, y1 + (size_t) t * n_out, (size_t) n_out * sizeof(float)) == 0,
								  "%s: token %d alone differs from the chunk", case_name, t);
					}

					/* F16 / BF16 weights with Q8 activations: f32 activations rounded to the weight's type */
					if (act && (w.type == P3_TYPE_F16 || w.type == P3_TYPE_BF16))
					{
						MatmulCase	rc = c;

						for (int64_t i = 0; i < (int64_t) n_tok * n_in; i++)
							xr[i] = w.type == P3_TYPE_F16 ? p3_fp16_to_fp32(p3_fp32_to_fp16(x[i])) :
								p3_bf16_to_fp32(p3_fp32_to_bf16(x[i]));
						rc.act = P3_ACT_F32;
						rc.x = xr;
						run_matmul(pool, &rc, y2);
						CHECK_MSG(memcmp(y1, y2, (size_t) n_tok * n_out * sizeof(float)) == 0,
								  "%s: not the product with activations rounded to %s", case_name,
								  p3_type_name(w.type));
					}

					/* a sub-range of rows */
					sub.row_begin = 3;
					sub.row_end = 30;
					run_matmul(pool, &sub, y2);
					for (int32_t t = 0; t < n_tok; t++)
						CHECK_MSG(memcmp(y2 + (size_t) t * 27, y1 + (size_t) t * n_out + 3, 27 * sizeof(float)) == 0,
								  "%s: rows 3..29 differ", case_name);
				}
		free(data);
	}
	p3_threadpool_free(pool);
	free(src);
	free(x);
	free(y1);
	free(y2);
	free(yt);
	free(xr);
}

/* ---------------------------------------------------------------------
 * the exact-block rule of the avx512 set's K-quant kernels
 * (src/engine/gemm_q8k.h), written again here from the block formats: per
 * block the exact integers S and M, then a fixed fmaf chain
 * --------------------------------------------------------------------- */

/* the 6-bit scale and min of sub-block j of a Q4_K / Q5_K block (ggml's get_scale_min_k4) */
static void
kq_scale_min(int j, const uint8_t *q, int *sc, int *m)
{
	*sc = j < 4 ? q[j] & 63 : (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
	*m = j < 4 ? q[j + 4] & 63 : (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
}

static float
kq_half(uint16_t h)
{
	return p3_fp16_to_fp32(h);
}

/* code of element e of a Q4_K / Q5_K block (qh NULL for Q4_K) */
static int
kq_affine_code(const uint8_t *qs, const uint8_t *qh, int e)
{
	int			c = e / 64,
				l = e % 32,
				hi = (e % 64) >= 32;
	int			q = hi ? qs[32 * c + l] >> 4 : qs[32 * c + l] & 15;

	if (qh != NULL && (qh[l] >> (2 * c + hi)) & 1)
		q += 16;
	return q;
}

/* code of element e of a Q6_K block, minus 32 */
static int
kq_q6_code(const P3BlockQ6_K *b, int e)
{
	int			h = e / 128,
				p = e % 128,
				k = p / 32,
				l = p % 32;
	const uint8_t *ql = b->ql + 64 * h;
	const uint8_t *qh = b->qh + 32 * h;
	int			lo = (k & 1) ? ql[l + 32] : ql[l];

	lo = (k & 2) ? lo >> 4 : lo & 15;
	return (lo | (((qh[l] >> (2 * k)) & 3) << 4)) - 32;
}

/* signed code of element e of a 32-element block (Q8_0, Q4_0, Q5_0, IQ4_NL) */
static int
s8_code(uint32_t type, const void *blk, int e)
{
	switch (type)
	{
		case P3_TYPE_Q8_0:
			return ((const P3BlockQ8_0 *) blk)->qs[e];
		case P3_TYPE_Q4_0:
			{
				const P3BlockQ4_0 *b = blk;

				return (e < 16 ? b->qs[e] & 15 : b->qs[e - 16] >> 4) - 8;
			}
		case P3_TYPE_Q5_0:
			{
				const P3BlockQ5_0 *b = blk;
				uint32_t	qh;
				int			q = e < 16 ? b->qs[e] & 15 : b->qs[e - 16] >> 4;

				memcpy(&qh, b->qh, 4);
				return (q | (int) (((qh >> e) & 1) << 4)) - 16;
			}
		default:
			{
				const P3BlockIQ4_NL *b = blk;

				return p3_iq4nl_values[e < 16 ? b->qs[e] & 15 : b->qs[e - 16] >> 4];
			}
	}
}

/* the exact-block rule for the 32-element formats with Q8_0 activations */
static float
s8_exact_dot(uint32_t type, const void *w, const P3BlockQ8_0 *y, int64_t n)
{
	size_t		bsz = row_bytes(type, 32);
	float		acc = 0.0f;

	for (int64_t i = 0; i < n / 32; i++)
	{
		const uint8_t *blk = (const uint8_t *) w + (size_t) i * bsz;
		uint16_t	d;
		int64_t		S = 0;

		memcpy(&d, blk, 2);
		for (int e = 0; e < 32; e++)
			S += (int64_t) s8_code(type, blk, e) * y[i].qs[e];
		acc = fmaf((float) S, kq_half(d) * kq_half(y[i].d), acc);
	}
	return acc;
}

static float
kq_exact_dot(uint32_t type, const void *w, const P3BlockQ8_K *y, int64_t n)
{
	if (type == P3_TYPE_Q8_0 || type == P3_TYPE_Q4_0 || type == P3_TYPE_Q5_0 || type == P3_TYPE_IQ4_NL)
		return s8_exact_dot(type, w, (const P3BlockQ8_0 *) y, n);
	float		acc = 0.0f;

	for (int64_t i = 0; i < n / P3_QK_K; i++)
	{
		int64_t		S = 0,
					M = 0;

		if (type == P3_TYPE_Q6_K)
		{
			const P3BlockQ6_K *b = (const P3BlockQ6_K *) w + i;

			for (int e = 0; e < P3_QK_K; e++)
				S += (int64_t) b->scales[e / 16] * kq_q6_code(b, e) * y[i].qs[e];
			acc = fmaf((float) S, kq_half(b->d) * y[i].d, acc);
			continue;
		}
		{
			const P3BlockQ4_K *b4 = (const P3BlockQ4_K *) w + i;
			const P3BlockQ5_K *b5 = (const P3BlockQ5_K *) w + i;
			const uint8_t *scales = type == P3_TYPE_Q4_K ? b4->scales : b5->scales;
			uint16_t	d = type == P3_TYPE_Q4_K ? b4->d : b5->d;
			uint16_t	dmin = type == P3_TYPE_Q4_K ? b4->dmin : b5->dmin;

			for (int e = 0; e < P3_QK_K; e++)
			{
				int			sc,
							m;
				int			q = type == P3_TYPE_Q4_K ? kq_affine_code(b4->qs, NULL, e) : kq_affine_code(b5->qs, b5->qh, e);

				kq_scale_min(e / 32, scales, &sc, &m);
				S += (int64_t) sc * q * y[i].qs[e];
				if (e % 16 == 0)
					M += (int64_t) m * y[i].bsums[e / 16];
			}
			acc = fmaf((float) S, kq_half(d) * y[i].d, acc);
			acc = fmaf((float) M, -(kq_half(dmin) * y[i].d), acc);
		}
	}
	return acc;
}

/*
 * avx512's vec_dot, vec_dot_ntok and matmul (the GEMM) give the rule's bits.
 * Q5_0 (no GEMM) left the rule: the avx512 set takes the avx2 set's Q5_0
 * products, ggml's AVX2 order (test_ggml_numerics.c).
 */
static void
test_exact_block_rule(void)
{
	static const uint32_t ktypes[] = {P3_TYPE_Q4_K, P3_TYPE_Q5_K, P3_TYPE_Q6_K,
	P3_TYPE_Q8_0, P3_TYPE_Q4_0, P3_TYPE_IQ4_NL};
	const P3KernelSet *k = NULL;
	const int64_t n = 1280;		/* 40 blocks of 32 (two runs of 16 and 8 alone) or 5 of 256 */
	const int32_t n_tok = 21;
	uint64_t	rng = 4242;

	for (int s = 0; s < nsets; s++)
		if (strcmp(sets[s]->name, "avx512") == 0)
			k = sets[s];
	if (k == NULL)
	{
		fprintf(stderr, "  (no avx512 set here: skipped)\n");
		return;
	}
	CHECK(k->gemm[P3_TYPE_Q4_K] != NULL && k->gemm[P3_TYPE_Q4_0] != NULL && k->gemm_pack[P3_TYPE_Q8_K] != NULL && k->gemm_pack[P3_TYPE_Q8_0] != NULL);
	for (size_t ti = 0; ti < sizeof(ktypes) / sizeof(ktypes[0]); ti++)
		for (int wk = 0; wk < DATA_COUNT; wk++)
		{
			uint32_t	type = ktypes[ti];
			size_t		rb = row_bytes(type, n);
			uint32_t	atype = p3_type_traits(type)->vec_dot_type;
			size_t		ab = row_bytes(atype, n);
			const int64_t n_out = 6;
			uint8_t    *w = xcalloc(rb * n_out);
			uint8_t    *a = xcalloc(ab * n_tok);
			float	   *src = xcalloc((size_t) n * n_tok * sizeof(float));
			float	   *y = xcalloc((size_t) n_out * n_tok * sizeof(float));
			float		nt[P3_KERNEL_NTOK];
			P3Weight	W;
			MatmulCase	c;

			for (int64_t r = 0; r < n_out; r++)
			{
				fill_data(src, n, (wk + (int) r) % DATA_COUNT, &rng);
				p3_quantize_row_ref(type, src, w + r * rb, n);
			}
			fill_data(src, n * n_tok, (wk + 1) % DATA_COUNT == DATA_LARGE ? DATA_SCALED : (wk + 1) % DATA_COUNT, &rng);
			for (int32_t t = 0; t < n_tok; t++)
				p3_quantize_row_ref(atype, src + (size_t) t * n, a + t * ab, n);
			memset(&W, 0, sizeof W);
			W.name = "rule";
			W.type = type;
			W.n_in = n;
			W.n_out = n_out;
			W.row_bytes = rb;
			W.data = w;
			c = (MatmulCase) {k, P3_ACT_Q8, &W, src, n_tok, 0, n_out};
			run_matmul(NULL, &c, y);
			for (int64_t r = 0; r < n_out; r++)
			{
				k->vec_dot_ntok[type](w + r * rb, a, ab, n, nt);
				for (int32_t t = 0; t < n_tok; t++)
				{
					float		want = kq_exact_dot(type, w + r * rb, (const P3BlockQ8_K *) (a + t * ab), n);
					float		got = k->vec_dot[type](w + r * rb, a + t * ab, n);

					CHECK_MSG(float_bits(got) == float_bits(want) || (got != got && want != want),
							  "%s weights %s row %d token %d: vec_dot %.9g, the rule %.9g", p3_type_name(type),
							  data_names[wk], (int) r, t, got, want);
					CHECK_MSG(float_bits(y[t * n_out + r]) == float_bits(want) || (want != want && y[t * n_out + r] != y[t * n_out + r]),
							  "%s weights %s row %d token %d: GEMM %.9g, the rule %.9g", p3_type_name(type),
							  data_names[wk], (int) r, t, y[t * n_out + r], want);
					if (t < P3_KERNEL_NTOK)
						CHECK_MSG(float_bits(nt[t]) == float_bits(want) || (want != want && nt[t] != nt[t]),
								  "%s row %d token %d: vec_dot_ntok differs from the rule", p3_type_name(type), (int) r, t);
				}
			}
			free(w);
			free(a);
			free(src);
			free(y);
		}
}

/* ---------------------------------------------------------------------
 * negative controls: perturbed kernels must fail the same checks
 * --------------------------------------------------------------------- */

static P3DequantFn base_dequant;
static P3VecDotFn base_vec_dot;

/* dequant with one element one ulp off */
static void
dequant_one_ulp(const void *w, float *y, int64_t n)
{
	base_dequant(w, y, n);
	y[n / 2] = nextafterf(y[n / 2], INFINITY);
}

/* Q8_0 with ggml's scalar rule (multiplier 1 / d, roundf): the weight encoder */
static void
quantize_q8_0_scalar_rule(const float *x, void *dst, int64_t n)
{
	p3_quantize_row_ref(P3_TYPE_Q8_0, x, dst, n);
}

/* Q8_0 with the multiplier 1 / d, rounding to even */
static void
quantize_q8_0_inv_d(const float *x, void *dst, int64_t n)
{
	P3BlockQ8_0 *y = dst;

	p3_quantize_act_row_ref(P3_TYPE_Q8_0, x, dst, n);
	for (int64_t b = 0; b < n / 32; b++)
	{
		float		amax = 0.0f;

		for (int j = 0; j < 32; j++)
			if (fabsf(x[32 * b + j]) > amax)
				amax = fabsf(x[32 * b + j]);

		const float d = amax / 127;
		const float id = d != 0.0f ? 1.0f / d : 0.0f;

		for (int j = 0; j < 32; j++)
			y[b].qs[j] = (int8_t) nearbyintf(x[32 * b + j] * id);
	}
}

/* Q8_K rounding halves away from zero instead of to even */
static void
quantize_q8_k_away(const float *x, void *dst, int64_t n)
{
	P3BlockQ8_K *y = dst;

	p3_quantize_row_ref(P3_TYPE_Q8_K, x, dst, n);
	for (int64_t b = 0; b < n / 256; b++)
	{
		const float iscale = 1.0f / y[b].d;

		for (int j = 0; j < 256; j++)
		{
			float		v = roundf(iscale * x[256 * b + j]);

			y[b].qs[j] = (int8_t) (v > 127.0f ? 127.0f : v);
		}
	}
}

/* dot_f32 summed in the reference's order: not the fast set's lanes */
static float
dot_f32_sequential_q4_k(const void *w, const float *x, int64_t n)
{
	return p3_dot_f32_ref(P3_TYPE_Q4_K, w, x, n);
}

/* vec_dot that leaves out the last block */
static float
vec_dot_drop_block(const void *w, const void *a, int64_t n)
{
	return base_vec_dot(w, a, n - 256);
}

/* float dot that leaves out the last element */
static float
dot_drop_last(const void *w, const float *x, int64_t n)
{
	return p3_dot_f32_ref(P3_TYPE_F32, w, x, n - 1);
}

/* ntok whose last row is one ulp off */
static void
ntok_one_ulp(const void *w, const void *a, size_t stride, int64_t n, float *out)
{
	for (int t = 0; t < P3_KERNEL_NTOK; t++)
		out[t] = base_vec_dot(w, (const uint8_t *) a + (size_t) t * stride, n);
	out[P3_KERNEL_NTOK - 1] = nextafterf(out[P3_KERNEL_NTOK - 1], INFINITY);
}

static void
test_negative_controls(void)
{
	uint64_t	rng = 5;
	int64_t		n = 3072;
	float	   *x = xcalloc((size_t) n * sizeof(float));
	float	   *src = xcalloc((size_t) n * sizeof(float));
	uint8_t    *w = xcalloc(row_bytes(P3_TYPE_Q4_K, n));
	uint8_t    *act = xcalloc((size_t) P3_KERNEL_NTOK * row_bytes(P3_TYPE_Q8_K, n));
	size_t		arb = row_bytes(P3_TYPE_Q8_K, n);
	const P3KernelSet *fast = nsets > 1 ? sets[nsets - 1] : sets[0];

	snprintf(case_name, sizeof case_name, "negative control");
	fill_data(src, n, DATA_UNIFORM, &rng);
	fill_data(x, n, DATA_UNIFORM, &rng);
	p3_quantize_row_ref(P3_TYPE_Q4_K, src, w, n);
	for (int t = 0; t < P3_KERNEL_NTOK; t++)
	{
		fill_data(src, n, DATA_UNIFORM, &rng);
		p3_quantize_row_ref(P3_TYPE_Q8_K, src, act + (size_t) t * arb, n);
	}

	base_dequant = fast->dequant[P3_TYPE_Q4_K];
	CHECK(!check_dequant(dequant_one_ulp, P3_TYPE_Q4_K, w, n, false));

	fill_ties(src, 256, 0, &rng);
	CHECK(!check_quantize(quantize_q8_0_scalar_rule, P3_TYPE_Q8_0, src, 256, false));
	fill_multiplier(src, 256, &rng);
	CHECK(!check_quantize(quantize_q8_0_inv_d, P3_TYPE_Q8_0, src, 256, false));
	CHECK(check_quantize(p3_kernels_reference()->quantize[P3_TYPE_Q8_0], P3_TYPE_Q8_0, src, 256, false));
	fill_ties(src, 512, 2, &rng);
	CHECK(!check_quantize(quantize_q8_k_away, P3_TYPE_Q8_K, src, 512, false));

	/* a different summation order does not give the set's bits (only meaningful for a SIMD set) */
	if (!is_ref(fast))
		CHECK(!check_fused(fast, dot_f32_sequential_q4_k, P3_TYPE_Q4_K, w, x, n, false));

	base_vec_dot = fast->vec_dot[P3_TYPE_Q4_K];
	CHECK(!check_vec_dot_tol(vec_dot_drop_block, P3_TYPE_Q4_K, w, act, n, false));
	CHECK(!check_dot_f32_tol(dot_drop_last, false, P3_TYPE_F32, x, src, 100, false));
	CHECK(!check_ntok(fast->vec_dot[P3_TYPE_Q4_K], ntok_one_ulp, w, act, arb, n, false));

	free(x);
	free(src);
	free(w);
	free(act);
}

int
main(void)
{
	pick_sets();
	RUN(test_sets_complete);
	RUN(test_dispatch);
	RUN(test_quantizers);
	RUN(test_quantizer_rules);
	RUN(test_float_kernels);
	RUN(test_dequant_random_bytes);
	RUN(test_type_kernels);
	RUN(test_matmul);
	RUN(test_exact_block_rule);
	RUN(test_negative_controls);
	return harness_finish();
}
