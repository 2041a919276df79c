/*
 * quant_types.c — the table of ggml tensor types and the half-precision
 * conversions every other kernel builds on (see phi3/quant.h).
 *
 * The table knows the block geometry of every ggml type a GGUF file may
 * contain, including ones we cannot compute with (IQ2/IQ3/IQ1 grids,
 * ternary, MXFP4, integer types): the GGUF reader needs their sizes to
 * validate a file, and the model loader then names the tensor and type it
 * cannot run.  Sizes follow ggml's ggml-common.h block structs.
 */
#include "phi3/quant.h"

#include <string.h>

#define TRAITS(nm, bs, ts, ok, vdt) { nm, bs, ts, ok, vdt }

static const P3TypeTraits type_table[P3_TYPE_COUNT] = {
	[P3_TYPE_F32] = TRAITS("f32", 1, 4, true, P3_TYPE_F32),
	[P3_TYPE_F16] = TRAITS("f16", 1, 2, true, P3_TYPE_F32),
	[P3_TYPE_Q4_0] = TRAITS("q4_0", 32, 18, true, P3_TYPE_Q8_0),
	[P3_TYPE_Q4_1] = TRAITS("q4_1", 32, 20, true, P3_TYPE_Q8_1),
	[P3_TYPE_Q5_0] = TRAITS("q5_0", 32, 22, true, P3_TYPE_Q8_0),
	[P3_TYPE_Q5_1] = TRAITS("q5_1", 32, 24, true, P3_TYPE_Q8_1),
	[P3_TYPE_Q8_0] = TRAITS("q8_0", 32, 34, true, P3_TYPE_Q8_0),
	[P3_TYPE_Q8_1] = TRAITS("q8_1", 32, 36, false, P3_TYPE_Q8_1),
	[P3_TYPE_Q2_K] = TRAITS("q2_K", 256, 84, true, P3_TYPE_Q8_K),
	[P3_TYPE_Q3_K] = TRAITS("q3_K", 256, 110, true, P3_TYPE_Q8_K),
	[P3_TYPE_Q4_K] = TRAITS("q4_K", 256, 144, true, P3_TYPE_Q8_K),
	[P3_TYPE_Q5_K] = TRAITS("q5_K", 256, 176, true, P3_TYPE_Q8_K),
	[P3_TYPE_Q6_K] = TRAITS("q6_K", 256, 210, true, P3_TYPE_Q8_K),
	[P3_TYPE_Q8_K] = TRAITS("q8_K", 256, 292, false, P3_TYPE_Q8_K),
	[P3_TYPE_IQ2_XXS] = TRAITS("iq2_xxs", 256, 66, false, P3_TYPE_Q8_K),
	[P3_TYPE_IQ2_XS] = TRAITS("iq2_xs", 256, 74, false, P3_TYPE_Q8_K),
	[P3_TYPE_IQ3_XXS] = TRAITS("iq3_xxs", 256, 98, false, P3_TYPE_Q8_K),
	[P3_TYPE_IQ1_S] = TRAITS("iq1_s", 256, 50, false, P3_TYPE_Q8_K),
	[P3_TYPE_IQ4_NL] = TRAITS("iq4_nl", 32, 18, true, P3_TYPE_Q8_0),
	[P3_TYPE_IQ3_S] = TRAITS("iq3_s", 256, 110, false, P3_TYPE_Q8_K),
	[P3_TYPE_IQ2_S] = TRAITS("iq2_s", 256, 82, false, P3_TYPE_Q8_K),
	[P3_TYPE_IQ4_XS] = TRAITS("iq4_xs", 256, 136, true, P3_TYPE_Q8_K),
	[P3_TYPE_I8] = TRAITS("i8", 1, 1, false, P3_TYPE_F32),
	[P3_TYPE_I16] = TRAITS("i16", 1, 2, false, P3_TYPE_F32),
	[P3_TYPE_I32] = TRAITS("i32", 1, 4, false, P3_TYPE_F32),
	[P3_TYPE_I64] = TRAITS("i64", 1, 8, false, P3_TYPE_F32),
	[P3_TYPE_F64] = TRAITS("f64", 1, 8, false, P3_TYPE_F32),
	[P3_TYPE_IQ1_M] = TRAITS("iq1_m", 256, 56, false, P3_TYPE_Q8_K),
	[P3_TYPE_BF16] = TRAITS("bf16", 1, 2, true, P3_TYPE_F32),
	[P3_TYPE_TQ1_0] = TRAITS("tq1_0", 256, 54, false, P3_TYPE_Q8_K),
	[P3_TYPE_TQ2_0] = TRAITS("tq2_0", 256, 66, false, P3_TYPE_Q8_K),
	[P3_TYPE_MXFP4] = TRAITS("mxfp4", 32, 17, false, P3_TYPE_Q8_0),
};

const P3TypeTraits *
p3_type_traits(uint32_t type)
{
	if (type >= P3_TYPE_COUNT || type_table[type].name == NULL)
		return NULL;
	return &type_table[type];
}

const char *
p3_type_name(uint32_t type)
{
	const P3TypeTraits *t = p3_type_traits(type);

	return t ? t->name : "unknown";
}

bool
p3_row_bytes(uint32_t type, int64_t n, size_t *out)
{
	const P3TypeTraits *t = p3_type_traits(type);
	uint64_t	blocks;

	if (t == NULL || n < 0 || n % t->block_size != 0)
		return false;
	blocks = (uint64_t) n / t->block_size;
	/* n < 2^63 and type_size < 2^9: the product cannot overflow 64 bits only if blocks < 2^55 */
	if (blocks > (UINT64_MAX / t->type_size) || blocks * t->type_size > (uint64_t) SIZE_MAX)
		return false;
	*out = (size_t) (blocks * t->type_size);
	return true;
}

/* ---------------------------------------------------------------------
 * IEEE binary16 <-> binary32, exact in the widening direction, round to
 * nearest even when narrowing.  Written with integer operations only so
 * the result never depends on the FPU's rounding mode or on F16C.
 * --------------------------------------------------------------------- */

static inline float
bits_to_float(uint32_t u)
{
	float		f;

	memcpy(&f, &u, sizeof f);
	return f;
}

static inline uint32_t
float_to_bits(float f)
{
	uint32_t	u;

	memcpy(&u, &f, sizeof u);
	return u;
}

float
p3_fp16_to_fp32(uint16_t h)
{
	uint32_t	sign = (uint32_t) (h & 0x8000u) << 16;
	uint32_t	exp = (h >> 10) & 0x1Fu;
	uint32_t	mant = h & 0x3FFu;

	if (exp == 0x1F)			/* inf / nan: keep the payload */
		return bits_to_float(sign | 0x7F800000u | (mant << 13));
	if (exp == 0)
	{
		if (mant == 0)
			return bits_to_float(sign);
		/* subnormal: value = mant * 2^-24, exactly representable */
		{
			float		v = (float) mant * (1.0f / 16777216.0f);

			return sign ? -v : v;
		}
	}
	return bits_to_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

uint16_t
p3_fp32_to_fp16(float f)
{
	uint32_t	x = float_to_bits(f);
	uint32_t	sign = (x >> 16) & 0x8000u;
	uint32_t	absx = x & 0x7FFFFFFFu;
	uint32_t	exp;
	uint32_t	mant;

	if (absx >= 0x7F800000u)	/* inf or nan */
		return (uint16_t) (sign | 0x7C00u | (absx > 0x7F800000u ? (0x200u | ((absx >> 13) & 0x3FFu)) : 0));
	if (absx >= 0x477FF000u)	/* rounds to >= 65520: overflow to inf */
		return (uint16_t) (sign | 0x7C00u);
	exp = absx >> 23;
	if (exp < 113)
	{
		/* result is subnormal (or zero): value / 2^-24, rounded to nearest even */
		uint32_t	shift;
		uint32_t	m;
		uint32_t	q;
		uint32_t	rem;
		uint32_t	half;

		if (exp < 102)			/* below half of the smallest subnormal */
			return (uint16_t) sign;
		m = (absx & 0x7FFFFFu) | 0x800000u;
		shift = 126 - exp;		/* 14 .. 24 */
		q = m >> shift;
		rem = m & ((1u << shift) - 1);
		half = 1u << (shift - 1);
		if (rem > half || (rem == half && (q & 1)))
			q++;
		return (uint16_t) (sign | q);
	}
	/* normal: rebias and round the 13 dropped bits to nearest even */
	mant = absx & 0x7FFFFFu;
	{
		uint32_t	h = ((exp - 112u) << 10) | (mant >> 13);
		uint32_t	rem = mant & 0x1FFFu;

		if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
			h++;				/* may carry into the exponent, which is right */
		return (uint16_t) (sign | h);
	}
}

float
p3_bf16_to_fp32(uint16_t h)
{
	return bits_to_float((uint32_t) h << 16);
}

uint16_t
p3_fp32_to_bf16(float f)
{
	uint32_t	x = float_to_bits(f);

	if ((x & 0x7FFFFFFFu) > 0x7F800000u)	/* nan: force quiet */
		return (uint16_t) ((x >> 16) | 64);
	/* round to nearest even on the 16 dropped bits */
	return (uint16_t) ((x + (0x7FFFu + ((x >> 16) & 1))) >> 16);
}
