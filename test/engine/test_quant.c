/*
 * test_quant.c — tests of the tensor-format reference (src/engine/quant_ref.c,
 * phi3/quant.h).
 *
 * Layouts are checked against blocks built byte by byte here, with every
 * expected value computed in this file straight from the rules of
 * phi3-spec.md 2.3 (element index -> byte, bits, scale), never with the
 * engine's helpers.  Encoders are checked by round-trip error bounds on
 * Gaussian data (measured, with a small margin: see the bounds table), by
 * exact agreement with spec 2.4 for the activation quantizers, and by
 * finite output on degenerate rows.  The dot products are checked against
 * the dequantized row (exactly), against exact double sums of the two
 * quantized operands (kernel arithmetic) and against the f32 dot (the
 * error the activation quantization adds).  All data is deterministic.
 */
#include "phi3/quant.h"

#include "harness.h"

#include <float.h>

/* ---------------------------------------------------------------------
 * helpers
 * --------------------------------------------------------------------- */

static float
f16(const uint8_t *p)
{
	return p3_fp16_to_fp32((uint16_t) (p[0] | (p[1] << 8)));
}

static void
put_u16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t) v;
	p[1] = (uint8_t) (v >> 8);
}

static int
nib_lo(uint8_t x)
{
	return x & 15;
}

static int
nib_hi(uint8_t x)
{
	return x >> 4;
}

static const int iq4_table[16] = {
	-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113
};

/* A standard normal deviate (Box-Muller on harness_rand). */
static float
gauss(uint64_t *s)
{
	double		u1 = ((double) (harness_rand(s) >> 11) + 0.5) / 9007199254740992.0;
	double		u2 = (double) (harness_rand(s) >> 11) / 9007199254740992.0;

	return (float) (sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* A random finite f16 of moderate magnitude (2^-8 .. 2^3), random sign. */
static uint16_t
random_scale_f16(uint64_t *s)
{
	uint64_t	r = harness_rand(s);
	uint16_t	exp = (uint16_t) (7 + r % 11);	/* biased exponent 7..17 */

	return (uint16_t) (((r >> 8) & 1) << 15 | exp << 10 | ((r >> 16) & 0x3FF));
}

static size_t
row_bytes(uint32_t type, int64_t n)
{
	size_t		b = 0;

	if (!p3_row_bytes(type, n, &b))
		return 0;
	return b;
}

/* Bitwise float equality (also distinguishes -0 / +0, and NaN payloads). */
static bool
same_bits(float a, float b)
{
	return memcmp(&a, &b, sizeof a) == 0;
}

/* Every type the reference supports: weights_ok types plus Q8_1, Q8_K. */
static const uint32_t all_types[] = {
	P3_TYPE_F32, P3_TYPE_F16, P3_TYPE_BF16,
	P3_TYPE_Q4_0, P3_TYPE_Q4_1, P3_TYPE_Q5_0, P3_TYPE_Q5_1, P3_TYPE_Q8_0, P3_TYPE_Q8_1,
	P3_TYPE_Q2_K, P3_TYPE_Q3_K, P3_TYPE_Q4_K, P3_TYPE_Q5_K, P3_TYPE_Q6_K, P3_TYPE_Q8_K,
	P3_TYPE_IQ4_NL, P3_TYPE_IQ4_XS,
};
#define N_ALL_TYPES ((int) (sizeof all_types / sizeof all_types[0]))

/* ---------------------------------------------------------------------
 * half precision spot values (the exhaustive check lives with quant_types)
 * --------------------------------------------------------------------- */

static void
test_fp16_bf16_spots(void)
{
	CHECK(p3_fp16_to_fp32(0x3C00) == 1.0f);
	CHECK(p3_fp16_to_fp32(0xC000) == -2.0f);
	CHECK(p3_fp16_to_fp32(0x0001) == ldexpf(1.0f, -24));	/* smallest subnormal */
	CHECK(p3_fp16_to_fp32(0x03FF) == 1023.0f * ldexpf(1.0f, -24));	/* largest subnormal */
	CHECK(p3_fp16_to_fp32(0x7BFF) == 65504.0f);
	CHECK(isinf(p3_fp16_to_fp32(0x7C00)) && p3_fp16_to_fp32(0x7C00) > 0);
	CHECK(isinf(p3_fp16_to_fp32(0xFC00)) && p3_fp16_to_fp32(0xFC00) < 0);
	CHECK(isnan(p3_fp16_to_fp32(0x7E00)));
	CHECK(same_bits(p3_fp16_to_fp32(0x8000), -0.0f));

	CHECK_EQ_INT(p3_fp32_to_fp16(1.0f), 0x3C00);
	CHECK_EQ_INT(p3_fp32_to_fp16(65504.0f), 0x7BFF);
	CHECK_EQ_INT(p3_fp32_to_fp16(65519.0f), 0x7BFF);	/* below the midpoint */
	CHECK_EQ_INT(p3_fp32_to_fp16(65520.0f), 0x7C00);	/* tie, rounds to even = inf */
	CHECK_EQ_INT(p3_fp32_to_fp16(1.0f + ldexpf(1.0f, -11)), 0x3C00);	/* tie to even (down) */
	CHECK_EQ_INT(p3_fp32_to_fp16(1.0f + 3.0f * ldexpf(1.0f, -11)), 0x3C02);	/* tie to even (up) */
	CHECK_EQ_INT(p3_fp32_to_fp16(ldexpf(1.0f, -25)), 0x0000);	/* tie between 0 and 2^-24 */
	CHECK_EQ_INT(p3_fp32_to_fp16(3.0f * ldexpf(1.0f, -25)), 0x0002);	/* tie, to even */
	CHECK_EQ_INT(p3_fp32_to_fp16(-ldexpf(1.0f, -24)), 0x8001);
	CHECK_EQ_INT(p3_fp32_to_fp16(1e10f), 0x7C00);
	CHECK((p3_fp32_to_fp16(NAN) & 0x7C00) == 0x7C00 && (p3_fp32_to_fp16(NAN) & 0x3FF) != 0);

	CHECK(p3_bf16_to_fp32(0x3F80) == 1.0f);
	CHECK(p3_bf16_to_fp32(0xC040) == -3.0f);
	CHECK_EQ_INT(p3_fp32_to_bf16(1.0f), 0x3F80);
	{
		float		tie_down,
					tie_up;
		uint32_t	u1 = 0x3F808000u,	/* halfway between 0x3F80 and 0x3F81 */
					u2 = 0x3F818000u;	/* halfway between 0x3F81 and 0x3F82 */

		memcpy(&tie_down, &u1, 4);
		memcpy(&tie_up, &u2, 4);
		CHECK_EQ_INT(p3_fp32_to_bf16(tie_down), 0x3F80);
		CHECK_EQ_INT(p3_fp32_to_bf16(tie_up), 0x3F82);
	}
	CHECK(isnan(p3_bf16_to_fp32(p3_fp32_to_bf16(NAN))));
}

static void
test_row_bytes(void)
{
	size_t		b = 0;

	CHECK(p3_row_bytes(P3_TYPE_Q4_K, 3072, &b) && b == 12 * 144);
	CHECK(p3_row_bytes(P3_TYPE_Q6_K, 8192, &b) && b == 32 * 210);
	CHECK(p3_row_bytes(P3_TYPE_Q4_0, 3072, &b) && b == 96 * 18);
	CHECK(p3_row_bytes(P3_TYPE_Q8_K, 256, &b) && b == 292);
	CHECK(p3_row_bytes(P3_TYPE_IQ4_XS, 512, &b) && b == 272);
	CHECK(p3_row_bytes(P3_TYPE_F16, 5, &b) && b == 10);
	CHECK(p3_row_bytes(P3_TYPE_F32, 0, &b) && b == 0);
	CHECK(!p3_row_bytes(P3_TYPE_Q4_K, 100, &b));
	CHECK(!p3_row_bytes(P3_TYPE_Q8_0, -32, &b));
	CHECK(!p3_row_bytes(4, 32, &b));	/* removed type code */
	CHECK(!p3_row_bytes(1000, 32, &b));
}

/* ---------------------------------------------------------------------
 * layouts: expected element k of a block from the bytes, per spec 2.3
 * --------------------------------------------------------------------- */

static float
spec_q4_0(const uint8_t *b, int k)
{
	const uint8_t *qs = b + 2;
	int			q = k < 16 ? nib_lo(qs[k]) : nib_hi(qs[k - 16]);

	return (float) (q - 8) * f16(b);
}

static float
spec_q4_1(const uint8_t *b, int k)
{
	const uint8_t *qs = b + 4;
	int			q = k < 16 ? nib_lo(qs[k]) : nib_hi(qs[k - 16]);

	return (float) q * f16(b) + f16(b + 2);
}

static uint32_t
u32le(const uint8_t *p)
{
	return (uint32_t) p[0] | (uint32_t) p[1] << 8 | (uint32_t) p[2] << 16 | (uint32_t) p[3] << 24;
}

static float
spec_q5_0(const uint8_t *b, int k)
{
	uint32_t	h = u32le(b + 2);
	const uint8_t *qs = b + 6;
	int			q = k < 16 ? nib_lo(qs[k]) : nib_hi(qs[k - 16]);

	q |= (int) ((h >> k) & 1) << 4;
	return (float) (q - 16) * f16(b);
}

static float
spec_q5_1(const uint8_t *b, int k)
{
	uint32_t	h = u32le(b + 4);
	const uint8_t *qs = b + 8;
	int			q = k < 16 ? nib_lo(qs[k]) : nib_hi(qs[k - 16]);

	q |= (int) ((h >> k) & 1) << 4;
	return (float) q * f16(b) + f16(b + 2);
}

static float
spec_q8_0(const uint8_t *b, int k)
{
	return (float) (int8_t) b[2 + k] * f16(b);
}

static float
spec_q8_1(const uint8_t *b, int k)
{
	return (float) (int8_t) b[4 + k] * f16(b);
}

static float
spec_q2_k(const uint8_t *b, int i)
{
	const uint8_t *scales = b;
	const uint8_t *qs = b + 16;
	int			h = i / 128,
				r = i % 128,
				s = r / 32,
				l = r % 32;
	int			g = 8 * h + 2 * s + (l >= 16 ? 1 : 0);
	int			q = (qs[32 * h + l] >> (2 * s)) & 3;
	float		d = f16(b + 80),
				dmin = f16(b + 82);

	return (d * (float) (scales[g] & 15)) * (float) q - dmin * (float) (scales[g] >> 4);
}

static float
spec_q3_k(const uint8_t *b, int i)
{
	const uint8_t *hmask = b;
	const uint8_t *qs = b + 32;
	const uint8_t *scales = b + 96;
	int			h = i / 128,
				r = i % 128,
				s = r / 32,
				l = r % 32;
	int			g = 8 * h + 2 * s + (l >= 16);
	int			low4 = g < 8 ? (scales[g] & 15) : (scales[g - 8] >> 4);
	int			high2 = (scales[8 + g % 4] >> (2 * (g / 4))) & 3;
	int			sc = (low4 | high2 << 4) - 32;
	int			low2 = (qs[32 * h + l] >> (2 * s)) & 3;
	int			hbit = (hmask[l] >> (4 * h + s)) & 1;
	int			q = low2 - (hbit ? 0 : 4);

	return (f16(b + 108) * (float) sc) * (float) q;
}

/* Q4_K / Q5_K 6-bit scale and min of sub-block j, in the words of spec 2.3 */
static void
spec_k4_scale_min(const uint8_t *scales, int j, int *sc, int *mn)
{
	if (j < 4)
	{
		*sc = scales[j] & 63;
		*mn = scales[j + 4] & 63;
	}
	else
	{
		*sc = (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4);
		*mn = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
	}
}

static float
spec_q4_k(const uint8_t *b, int i)
{
	const uint8_t *qs = b + 16;
	int			c = i / 64,
				r = i % 64;
	int			q,
				sub,
				sc,
				mn;

	if (r < 32)
	{
		q = nib_lo(qs[32 * c + r]);
		sub = 2 * c;
	}
	else
	{
		q = nib_hi(qs[32 * c + r - 32]);
		sub = 2 * c + 1;
	}
	spec_k4_scale_min(b + 4, sub, &sc, &mn);
	return (f16(b) * (float) sc) * (float) q - f16(b + 2) * (float) mn;
}

static float
spec_q5_k(const uint8_t *b, int i)
{
	const uint8_t *qh = b + 16;
	const uint8_t *qs = b + 48;
	int			c = i / 64,
				r = i % 64;
	int			q,
				sub,
				sc,
				mn;

	if (r < 32)
	{
		q = nib_lo(qs[32 * c + r]) + (((qh[r] >> (2 * c)) & 1) ? 16 : 0);
		sub = 2 * c;
	}
	else
	{
		q = nib_hi(qs[32 * c + r - 32]) + (((qh[r - 32] >> (2 * c + 1)) & 1) ? 16 : 0);
		sub = 2 * c + 1;
	}
	spec_k4_scale_min(b + 4, sub, &sc, &mn);
	return (f16(b) * (float) sc) * (float) q - f16(b + 2) * (float) mn;
}

static float
spec_q6_k(const uint8_t *b, int i)
{
	const uint8_t *ql = b;
	const uint8_t *qh = b + 128;
	const int8_t *scales = (const int8_t *) (b + 192);
	int			h = i / 128,
				r = i % 128,
				k = r / 32,
				l = r % 32;
	int			ql_base = 64 * h,
				qh_base = 32 * h,
				sc_base = 8 * h;
	int			nib,
				high2,
				q;

	switch (k)
	{
		case 0:
			nib = nib_lo(ql[ql_base + l]);
			break;
		case 1:
			nib = nib_lo(ql[ql_base + l + 32]);
			break;
		case 2:
			nib = nib_hi(ql[ql_base + l]);
			break;
		default:
			nib = nib_hi(ql[ql_base + l + 32]);
			break;
	}
	high2 = (qh[qh_base + l] >> (2 * k)) & 3;
	q = (nib | high2 << 4) - 32;
	return (f16(b + 208) * (float) scales[sc_base + 2 * k + (l >= 16)]) * (float) q;
}

static float
spec_q8_k(const uint8_t *b, int k)
{
	float		d;

	memcpy(&d, b, 4);
	return d * (float) (int8_t) b[4 + k];
}

static float
spec_iq4_nl(const uint8_t *b, int k)
{
	const uint8_t *qs = b + 2;
	int			idx = k < 16 ? nib_lo(qs[k]) : nib_hi(qs[k - 16]);

	return f16(b) * (float) iq4_table[idx];
}

static float
spec_iq4_xs(const uint8_t *b, int i)
{
	uint16_t	scales_h = (uint16_t) (b[2] | b[3] << 8);
	const uint8_t *scales_l = b + 4;
	const uint8_t *qs = b + 8;
	int			ib = i / 32,
				j = i % 32;
	int			ls = ((scales_l[ib / 2] >> (4 * (ib % 2))) & 15) | (((scales_h >> (2 * ib)) & 3) << 4);
	int			idx = j < 16 ? nib_lo(qs[16 * ib + j]) : nib_hi(qs[16 * ib + j - 16]);

	return (f16(b) * (float) (ls - 32)) * (float) iq4_table[idx];
}

static float
spec_f16(const uint8_t *b, int k)
{
	return f16(b);
}

static float
spec_bf16(const uint8_t *b, int k)
{
	return p3_bf16_to_fp32((uint16_t) (b[0] | b[1] << 8));
}

static float
spec_f32(const uint8_t *b, int k)
{
	float		v;

	memcpy(&v, b, 4);
	return v;
}

typedef struct SpecLayout
{
	uint32_t	type;
	float		(*element) (const uint8_t *block, int k);
	int			f16_offsets[2];	/* where the f16 scales live (-1: none) */
	bool		f32_scale;		/* Q8_K: an f32 at offset 0 */
} SpecLayout;

static const SpecLayout layouts[] = {
	{P3_TYPE_Q4_0, spec_q4_0, {0, -1}, false},
	{P3_TYPE_Q4_1, spec_q4_1, {0, 2}, false},
	{P3_TYPE_Q5_0, spec_q5_0, {0, -1}, false},
	{P3_TYPE_Q5_1, spec_q5_1, {0, 2}, false},
	{P3_TYPE_Q8_0, spec_q8_0, {0, -1}, false},
	{P3_TYPE_Q8_1, spec_q8_1, {0, 2}, false},
	{P3_TYPE_Q2_K, spec_q2_k, {80, 82}, false},
	{P3_TYPE_Q3_K, spec_q3_k, {108, -1}, false},
	{P3_TYPE_Q4_K, spec_q4_k, {0, 2}, false},
	{P3_TYPE_Q5_K, spec_q5_k, {0, 2}, false},
	{P3_TYPE_Q6_K, spec_q6_k, {208, -1}, false},
	{P3_TYPE_Q8_K, spec_q8_k, {-1, -1}, true},
	{P3_TYPE_IQ4_NL, spec_iq4_nl, {0, -1}, false},
	{P3_TYPE_IQ4_XS, spec_iq4_xs, {0, -1}, false},
	{P3_TYPE_F16, spec_f16, {0, -1}, false},
	{P3_TYPE_BF16, spec_bf16, {-1, -1}, false},
	{P3_TYPE_F32, spec_f32, {-1, -1}, false},
};

/*
 * Rows of random bytes (random finite scales) in every layout: each element
 * of p3_dequantize_row_ref must equal, bit for bit, the value computed from
 * the spec's rules for that element's block.
 */
static void
test_layouts_random_blocks(void)
{
	uint64_t	seed = 1;

	for (size_t t = 0; t < sizeof layouts / sizeof layouts[0]; t++)
	{
		const SpecLayout *L = &layouts[t];
		const P3TypeTraits *tr = p3_type_traits(L->type);
		const int	nblocks = tr->block_size == 1 ? 64 : 5;
		const int64_t n = (int64_t) nblocks * tr->block_size;
		uint8_t    *row = malloc(row_bytes(L->type, n));
		float	   *out = malloc((size_t) n * sizeof(float));
		int			bad = 0;

		CHECK_MSG(row_bytes(L->type, n) == (size_t) nblocks * tr->type_size, "%s", tr->name);
		for (int rep = 0; rep < 20; rep++)
		{
			for (size_t i = 0; i < (size_t) nblocks * tr->type_size; i++)
				row[i] = (uint8_t) harness_rand(&seed);
			for (int b = 0; b < nblocks; b++)
			{
				uint8_t    *blk = row + (size_t) b * tr->type_size;

				if (tr->block_size == 1)
					continue;	/* float types: every bit pattern is an element */
				for (int s = 0; s < 2; s++)
					if (L->f16_offsets[s] >= 0)
						put_u16(blk + L->f16_offsets[s], random_scale_f16(&seed));
				if (L->f32_scale)
				{
					float		d = ldexpf((float) (harness_rand(&seed) % 1000) + 1.0f, -12);

					memcpy(blk, &d, 4);
				}
			}
			p3_dequantize_row_ref(L->type, row, out, n);
			for (int b = 0; b < nblocks; b++)
				for (uint32_t k = 0; k < tr->block_size; k++)
				{
					float		want = L->element(row + (size_t) b * tr->type_size, (int) k);
					float		got = out[(size_t) b * tr->block_size + k];

					if (!same_bits(want, got) && !(isnan(want) && isnan(got)))
					{
						if (bad++ < 5)
							fprintf(stderr, "  %s block %d element %u: got %.9g want %.9g\n",
									tr->name, b, k, got, want);
					}
				}
		}
		CHECK_MSG(bad == 0, "%s: %d elements differ from the spec layout", tr->name, bad);
		free(row);
		free(out);
	}
}

/* Dequantize one block of `type` from bytes. */
static void
dequant_block(uint32_t type, const uint8_t *blk, float *out)
{
	p3_dequantize_row_ref(type, blk, out, p3_type_traits(type)->block_size);
}

/*
 * Hand-built blocks with one thing set at a time, each naming one layout
 * rule of spec 2.3, with the expected values worked out by hand.
 */
static void
test_layout_spot_rules(void)
{
	uint8_t		b[292];
	float		y[256];

	/* Q4_0: element 17 is the high nibble of qs[1]; element 1 its low nibble */
	memset(b, 0x88, 18);		/* all codes 8: value 0 */
	put_u16(b, 0x3800);			/* d = 0.5 */
	b[2 + 1] = 0x3C;			/* low 12 -> elem 1 = 2, high 3 -> elem 17 = -2.5 */
	dequant_block(P3_TYPE_Q4_0, b, y);
	CHECK(y[1] == 2.0f && y[17] == -2.5f && y[0] == 0.0f && y[16] == 0.0f && y[2] == 0.0f);

	/* Q4_1: value = d * q + m */
	memset(b, 0, 20);
	put_u16(b, 0x3800);			/* d = 0.5 */
	put_u16(b + 2, 0xBC00);		/* m = -1 */
	b[4 + 15] = 0xF1;			/* elem 15: 1 -> -0.5; elem 31: 15 -> 6.5 */
	dequant_block(P3_TYPE_Q4_1, b, y);
	CHECK(y[15] == -0.5f && y[31] == 6.5f && y[0] == -1.0f);

	/* Q5_0: the 5th bit of element 20 is bit 20 of qh (byte 2, bit 4) */
	memset(b, 0, 22);
	put_u16(b, 0x3C00);			/* d = 1 */
	b[2 + 2] = 0x10;			/* qh bit 20 */
	b[6 + 4] = 0x30;			/* elem 20 high nibble 3, elem 4 low nibble 0 */
	dequant_block(P3_TYPE_Q5_0, b, y);
	CHECK(y[20] == (float) ((3 | 16) - 16) && y[4] == -16.0f);
	b[2 + 0] = 0x10;			/* qh bit 4: elem 4 -> 16 - 16 = 0 */
	dequant_block(P3_TYPE_Q5_0, b, y);
	CHECK(y[4] == 0.0f && y[20] == 3.0f);

	/* Q5_1: qh at offset 4, value = d * q + m, no -16 */
	memset(b, 0, 24);
	put_u16(b, 0x3C00);
	put_u16(b + 2, 0x4000);		/* m = 2 */
	b[4 + 3] = 0x80;			/* qh bit 31: elem 31 */
	b[8 + 15] = 0x20;			/* elem 31 high nibble 2 */
	dequant_block(P3_TYPE_Q5_1, b, y);
	CHECK(y[31] == 18.0f + 2.0f && y[15] == 2.0f);

	/* Q8_0: signed bytes */
	memset(b, 0, 34);
	put_u16(b, 0x3400);			/* d = 0.25 */
	b[2 + 31] = 0x80;			/* -128 */
	dequant_block(P3_TYPE_Q8_0, b, y);
	CHECK(y[31] == -32.0f);

	/* Q2_K: element 200 -> h=1, r=72, s=2, l=8: group 12, bits 4-5 of qs[40] */
	memset(b, 0, 84);
	put_u16(b + 80, 0x3C00);	/* d = 1 */
	put_u16(b + 82, 0x3800);	/* dmin = 0.5 */
	b[12] = 0x35;				/* group 12: scale 5, min 3 */
	b[16 + 40] = 0x20;			/* q = 2 at shift 4 */
	dequant_block(P3_TYPE_Q2_K, b, y);
	CHECK(y[200] == 5.0f * 2.0f - 1.5f);
	CHECK(y[199] == -1.5f && y[201] == -1.5f);	/* same group, q = 0 */
	CHECK(y[72 + 128 - 64] == 0.0f);	/* element 136: group 8, scale byte 0 */
	/* element 24 -> h=0, s=0, l=24: group 1 (l >= 16) */
	b[1] = 0x02;
	b[16 + 24] = 0x03;
	dequant_block(P3_TYPE_Q2_K, b, y);
	CHECK(y[24] == 6.0f && y[8] == 0.0f);

	/* Q3_K: element 40 -> h=0, s=1, l=8: group 2, bits 2-3 of qs[8], hmask[8] bit 1 */
	memset(b, 0, 110);
	put_u16(b + 108, 0x3C00);	/* d = 1 */
	memset(b + 96, 0, 12);
	/* scale of group 2 = 40 - 32 = 8: low4 = 8 in scales[2], high2 = 2 in scales[10] bits 0-1 */
	b[96 + 2] = 0x08;
	b[96 + 10] = 0x02;
	b[32 + 8] = 0x0C;			/* low2 = 3 at shift 2 */
	dequant_block(P3_TYPE_Q3_K, b, y);
	CHECK(y[40] == 8.0f * (3.0f - 4.0f));	/* hmask bit clear: q - 4 */
	b[8] = 0x02;				/* hmask[8] bit 1 set */
	dequant_block(P3_TYPE_Q3_K, b, y);
	CHECK(y[40] == 8.0f * 3.0f);
	/* group 13 (h=1, s=2, l>=16): low4 from high nibble of scales[5], high2 from scales[9] bits 6-7 */
	memset(b, 0, 110);
	put_u16(b + 108, 0x3C00);
	b[96 + 5] = 0x30;			/* low4 = 3 */
	b[96 + 9] = 0x40;			/* (13 % 4 = 1 -> scales[9]), 13 / 4 = 3 -> bits 6-7 = 1 */
	b[32 + 32 + 20] = 0x30;		/* element 128 + 64 + 20 = 212: low2 = 3 at shift 4 */
	b[20] = 0x40;				/* hmask[20] bit 4h+s = 6 */
	dequant_block(P3_TYPE_Q3_K, b, y);
	CHECK(y[212] == (float) ((3 | 16) - 32) * 3.0f);

	/* Q4_K: sub-block 5 (elements 160..191: chunk 2, high nibbles) with scale 37, min 20 */
	memset(b, 0, 144);
	put_u16(b, 0x3800);			/* d = 0.5 */
	put_u16(b + 2, 0x3400);		/* dmin = 0.25 */
	/* j = 5: scale = (scales[9] & 15) | (scales[1] >> 6) << 4; min = (scales[9] >> 4) | (scales[5] >> 6) << 4 */
	b[4 + 9] = (uint8_t) ((37 & 15) | ((20 & 15) << 4));
	b[4 + 1] = (uint8_t) ((37 >> 4) << 6);
	b[4 + 5] = (uint8_t) ((20 >> 4) << 6);
	b[16 + 64 + 3] = 0x70;		/* element 163 = high nibble of qs[64 + 3] = 7 */
	dequant_block(P3_TYPE_Q4_K, b, y);
	CHECK(y[163] == 0.5f * 37.0f * 7.0f - 0.25f * 20.0f);
	CHECK(y[131] == 0.0f);		/* element 131: low nibble 0, sub-block 4: scale/min from scales[8] = 0 */
	/* sub-block 1 (j < 4): scale in scales[1] low 6 bits = 0 after the masks above */
	CHECK(y[40] == 0.0f);

	/* Q5_K: element 100 (c=1, r=36: high nibble of qs[32+4], qh[4] bit 3) */
	memset(b, 0, 176);
	put_u16(b, 0x3C00);
	b[4 + 3] = 1;				/* sub-block 3: scale 1, min 0 */
	b[48 + 36] = 0x50;			/* high nibble 5 */
	b[16 + 4] = 0x08;			/* qh[4] bit 2c+1 = 3 */
	dequant_block(P3_TYPE_Q5_K, b, y);
	CHECK(y[100] == 21.0f);
	b[16 + 4] = 0x04;			/* bit 2 belongs to element 68 (low half of chunk 1) */
	dequant_block(P3_TYPE_Q5_K, b, y);
	CHECK(y[100] == 5.0f);

	/* Q6_K: element 200 -> h=1, k=2, l=8: high nibble of ql[72], bits 4-5 of qh[40], scale 12 */
	memset(b, 0, 210);
	put_u16(b + 208, 0x3800);	/* d = 0.5 */
	for (int g = 0; g < 16; g++)
		b[192 + g] = 1;
	b[192 + 12] = (uint8_t) -3;
	b[72] = 0x90;				/* nibble 9 */
	b[128 + 40] = 0x20;			/* high2 = 2 */
	dequant_block(P3_TYPE_Q6_K, b, y);
	CHECK(y[200] == (0.5f * -3.0f) * (float) ((9 | 2 << 4) - 32));
	CHECK(y[8] == 0.5f * -32.0f);	/* all-zero codes are -32 */

	/* Q8_K: f32 scale */
	memset(b, 0, 292);
	{
		float		d = 0.125f;

		memcpy(b, &d, 4);
	}
	b[4 + 255] = 0xFF;			/* -1 */
	dequant_block(P3_TYPE_Q8_K, b, y);
	CHECK(y[255] == -0.125f);

	/* IQ4_NL: table lookup, nibble order as Q4_0 */
	memset(b, 0, 18);
	put_u16(b, 0x3C00);
	b[2 + 3] = 0xF8;			/* elem 3 -> T[8] = 1, elem 19 -> T[15] = 113 */
	dequant_block(P3_TYPE_IQ4_NL, b, y);
	CHECK(y[3] == 1.0f && y[19] == 113.0f && y[0] == -127.0f);

	/* IQ4_XS: sub-block 5 scale = low nibble from scales_l[2] high half, high 2 from scales_h bits 10-11 */
	memset(b, 0, 136);
	put_u16(b, 0x3800);			/* d = 0.5 */
	b[4 + 2] = 0x70;			/* low4 = 7 */
	put_u16(b + 2, (uint16_t) (3u << 10));	/* high2 = 3 -> ls = 55, ls - 32 = 23 */
	b[8 + 16 * 5 + 2] = 0xA0;	/* element 5*32 + 18 = 178 -> T[10] = 25 */
	dequant_block(P3_TYPE_IQ4_XS, b, y);
	CHECK(y[178] == (0.5f * 23.0f) * 25.0f);
	CHECK(y[0] == (0.5f * -32.0f) * -127.0f);
}

/* ---------------------------------------------------------------------
 * activation quantizers: exactly spec 2.4
 * --------------------------------------------------------------------- */

static void
test_q8_activation_rules(void)
{
	float		x[256];
	uint8_t		q[292];
	uint64_t	seed = 7;

	/* Q8_0: amax 127 gives d = 1, and roundf rounds ties away from zero */
	memset(x, 0, sizeof x);
	x[0] = 127.0f;
	x[1] = 2.5f;
	x[2] = -2.5f;
	x[3] = 0.5f;
	x[4] = -1.5f;
	p3_quantize_row_ref(P3_TYPE_Q8_0, x, q, 32);
	CHECK(f16(q) == 1.0f);
	CHECK((int8_t) q[2 + 0] == 127 && (int8_t) q[2 + 1] == 3 && (int8_t) q[2 + 2] == -3);
	CHECK((int8_t) q[2 + 3] == 1 && (int8_t) q[2 + 4] == -2);

	/* Q8_0 / Q8_1 on random data: the rule written out */
	for (int rep = 0; rep < 50; rep++)
	{
		float		scale = ldexpf(1.0f, (int) (harness_rand(&seed) % 20) - 10);
		float		amax = 0.0f,
					d,
					id;
		int			sum = 0,
					bad = 0;

		for (int j = 0; j < 32; j++)
		{
			x[j] = gauss(&seed) * scale;
			amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
		}
		d = amax / 127.0f;
		id = d != 0.0f ? 1.0f / d : 0.0f;
		p3_quantize_row_ref(P3_TYPE_Q8_0, x, q, 32);
		bad += (q[0] | q[1] << 8) != p3_fp32_to_fp16(d);
		for (int j = 0; j < 32; j++)
			bad += (int8_t) q[2 + j] != (int8_t) roundf(x[j] * id);
		p3_quantize_row_ref(P3_TYPE_Q8_1, x, q, 32);
		bad += (q[0] | q[1] << 8) != p3_fp32_to_fp16(d);
		for (int j = 0; j < 32; j++)
		{
			bad += (int8_t) q[4 + j] != (int8_t) roundf(x[j] * id);
			sum += (int8_t) roundf(x[j] * id);
		}
		bad += (q[2] | q[3] << 8) != p3_fp32_to_fp16((float) sum * d);
		CHECK_MSG(bad == 0, "q8_0/q8_1 rule, rep %d", rep);
	}

	/* Q8_K: iscale = -127 / max (signed), nearest-even rounding, d = 1 / iscale */
	memset(x, 0, sizeof x);
	x[0] = -127.0f;				/* max is negative: iscale = +1 */
	x[1] = 2.5f;
	x[2] = 3.5f;
	x[3] = -2.5f;
	x[4] = 0.5f;
	x[17] = 100.0f;
	p3_quantize_row_ref(P3_TYPE_Q8_K, x, q, 256);
	{
		float		d;
		int16_t		bs0,
					bs1;

		memcpy(&d, q, 4);
		memcpy(&bs0, q + 260, 2);
		memcpy(&bs1, q + 262, 2);
		CHECK(d == 1.0f);
		CHECK((int8_t) q[4] == -127 && (int8_t) q[5] == 2 && (int8_t) q[6] == 4 && (int8_t) q[7] == -2 && q[8] == 0);
		CHECK_EQ_INT(bs0, -127 + 2 + 4 - 2);
		CHECK_EQ_INT(bs1, 100);
	}
	x[0] = 127.0f;				/* max positive: iscale = -1, d = -1, signs flip */
	p3_quantize_row_ref(P3_TYPE_Q8_K, x, q, 256);
	{
		float		d;

		memcpy(&d, q, 4);
		CHECK(d == -1.0f);
		CHECK((int8_t) q[4] == -127 && (int8_t) q[5] == -2 && (int8_t) q[6] == -4 && (int8_t) q[7] == 2);
	}
	/* equal magnitudes: the first one found is the max */
	memset(x, 0, sizeof x);
	x[0] = -5.0f;
	x[1] = 5.0f;
	p3_quantize_row_ref(P3_TYPE_Q8_K, x, q, 256);
	CHECK((int8_t) q[4] == -127 && (int8_t) q[5] == 127);

	/* Q8_K on random data: the rule written out */
	for (int rep = 0; rep < 20; rep++)
	{
		float		max = 0.0f,
					amax = 0.0f,
					iscale,
					d;
		int			bad = 0;

		for (int j = 0; j < 256; j++)
		{
			x[j] = gauss(&seed);
			if (fabsf(x[j]) > amax)
			{
				amax = fabsf(x[j]);
				max = x[j];
			}
		}
		iscale = -127.0f / max;
		p3_quantize_row_ref(P3_TYPE_Q8_K, x, q, 256);
		memcpy(&d, q, 4);
		bad += d != 1.0f / iscale;
		for (int g = 0; g < 16; g++)
		{
			int			sum = 0;
			int16_t		bs;

			for (int l = 0; l < 16; l++)
			{
				int			k = 16 * g + l;
				int			v = (int) lrintf(iscale * x[k]);	/* default mode: to nearest even */

				v = v > 127 ? 127 : v;
				bad += (int8_t) q[4 + k] != v;
				sum += v;
			}
			memcpy(&bs, q + 260 + 2 * g, 2);
			bad += bs != sum;
		}
		CHECK_MSG(bad == 0, "q8_K rule, rep %d", rep);
	}

	/* all-zero Q8_K block: d = 0, q = 0, bsums = 0 */
	memset(x, 0, sizeof x);
	memset(q, 0x5A, sizeof q);
	p3_quantize_row_ref(P3_TYPE_Q8_K, x, q, 256);
	{
		int			nonzero = 0;

		for (int i = 0; i < 292; i++)
			nonzero += q[i] != 0;
		CHECK_EQ_INT(nonzero, 0);
	}
}

/* The reference weight quantizers of ggml that the brief fixes exactly. */
static void
test_legacy_quantizer_rules(void)
{
	float		x[32];
	uint8_t		q[24];
	float		y[32];
	uint64_t	seed = 11;

	/* Q4_0: d = max / -8 with max the signed value of largest magnitude */
	for (int j = 0; j < 32; j++)
		x[j] = (float) (j % 7) * 0.25f - 0.75f;	/* -0.75 .. 0.75 */
	x[5] = -4.0f;
	x[9] = 4.0f;				/* same magnitude later: the first (-4) wins */
	p3_quantize_row_ref(P3_TYPE_Q4_0, x, q, 32);
	CHECK(f16(q) == 0.5f);
	p3_dequantize_row_ref(P3_TYPE_Q4_0, q, y, 32);
	CHECK(y[5] == -4.0f);		/* code 0 */
	CHECK(y[9] == 3.5f);		/* code 16 clamped to 15 */
	CHECK(y[1] == -0.5f);		/* -0.5 / 0.5 + 8.5 = 7.5 -> truncates to 7 -> -0.5 */

	/*
	 * IQ4_NL: with max = -127 the codes are chosen for x itself; a value on
	 * the midpoint between two codes takes the larger one (ggml's
	 * best_index_int8)
	 */
	{
		static const float mids[6] = {-115.5f, -16.0f, 7.0f, 31.5f, 101.0f, -4.5f};
		static const int want[6] = {1, 7, 9, 11, 15, 8};
		int			bad = 0;

		for (int j = 0; j < 32; j++)
			x[j] = 0.0f;
		x[0] = -127.0f;
		for (int j = 0; j < 6; j++)
			x[1 + j] = mids[j];
		p3_quantize_row_ref(P3_TYPE_IQ4_NL, x, q, 32);
		bad += nib_lo(q[2]) != 0;
		for (int j = 0; j < 6; j++)
			bad += nib_lo(q[2 + 1 + j]) != want[j];
		CHECK_EQ_INT(bad, 0);
	}

	/* Q4_0, Q4_1, Q5_0, Q5_1 against the rules written out, random blocks */
	for (int rep = 0; rep < 50; rep++)
	{
		float		amax = 0.0f,
					max = 0.0f,
					mn = FLT_MAX,
					mx = -FLT_MAX;
		int			bad = 0;

		for (int j = 0; j < 32; j++)
		{
			x[j] = gauss(&seed) + (rep % 3 == 0 ? 1.5f : 0.0f);
			if (fabsf(x[j]) > amax)
			{
				amax = fabsf(x[j]);
				max = x[j];
			}
			mn = x[j] < mn ? x[j] : mn;
			mx = x[j] > mx ? x[j] : mx;
		}
		{
			float		d = max / -8,
						id = 1.0f / d;

			p3_quantize_row_ref(P3_TYPE_Q4_0, x, q, 32);
			bad += (q[0] | q[1] << 8) != p3_fp32_to_fp16(d);
			for (int j = 0; j < 16; j++)
			{
				int			q0 = (int) (x[j] * id + 8.5f),
							q1 = (int) (x[j + 16] * id + 8.5f);

				q0 = q0 > 15 ? 15 : q0;
				q1 = q1 > 15 ? 15 : q1;
				bad += q[2 + j] != (q0 | q1 << 4);
			}
		}
		{
			float		d = max / -16,
						id = 1.0f / d;
			uint32_t	qh = 0;

			p3_quantize_row_ref(P3_TYPE_Q5_0, x, q, 32);
			bad += (q[0] | q[1] << 8) != p3_fp32_to_fp16(d);
			for (int j = 0; j < 16; j++)
			{
				int			q0 = (int) (x[j] * id + 16.5f),
							q1 = (int) (x[j + 16] * id + 16.5f);

				q0 = q0 > 31 ? 31 : q0;
				q1 = q1 > 31 ? 31 : q1;
				bad += q[6 + j] != ((q0 & 15) | (q1 & 15) << 4);
				qh |= (uint32_t) (q0 >> 4) << j | (uint32_t) (q1 >> 4) << (j + 16);
			}
			bad += u32le(q + 2) != qh;
		}
		{
			float		d = (mx - mn) / 15,
						id = 1.0f / d;

			p3_quantize_row_ref(P3_TYPE_Q4_1, x, q, 32);
			bad += (q[0] | q[1] << 8) != p3_fp32_to_fp16(d);
			bad += (q[2] | q[3] << 8) != p3_fp32_to_fp16(mn);
			for (int j = 0; j < 16; j++)
			{
				int			q0 = (int) ((x[j] - mn) * id + 0.5f),
							q1 = (int) ((x[j + 16] - mn) * id + 0.5f);

				q0 = q0 > 15 ? 15 : q0;
				q1 = q1 > 15 ? 15 : q1;
				bad += q[4 + j] != (q0 | q1 << 4);
			}
		}
		{
			float		d = (mx - mn) / 31,
						id = 1.0f / d;
			uint32_t	qh = 0;

			p3_quantize_row_ref(P3_TYPE_Q5_1, x, q, 32);
			bad += (q[0] | q[1] << 8) != p3_fp32_to_fp16(d);
			bad += (q[2] | q[3] << 8) != p3_fp32_to_fp16(mn);
			for (int j = 0; j < 16; j++)
			{
				int			q0 = (int) ((x[j] - mn) * id + 0.5f),
							q1 = (int) ((x[j + 16] - mn) * id + 0.5f);

				bad += q[8 + j] != ((q0 & 15) | (q1 & 15) << 4);
				qh |= (uint32_t) (q0 >> 4) << j | (uint32_t) (q1 >> 4) << (j + 16);
			}
			bad += u32le(q + 4) != qh;
		}
		{
			/* IQ4_NL (ggml's reference): codes from id = -127 / max, nearest
			 * code by brute force, then d refit with weights x^2 */
			float		id = 1.0f / (max / -127.0f);
			float		sumqx = 0.0f,
						sumq2 = 0.0f;
			int			codes[32];

			for (int j = 0; j < 32; j++)
			{
				float		v = id * x[j];
				int			best = 0;
				float		w = x[j] * x[j],
							c;

				for (int k = 1; k < 16; k++)	/* nearest; ties to the larger code */
					if (fabsf(v - (float) iq4_table[k]) <= fabsf(v - (float) iq4_table[best]))
						best = k;
				codes[j] = best;
				c = (float) iq4_table[best];
				sumqx += w * c * x[j];
				sumq2 += w * c * c;
			}
			p3_quantize_row_ref(P3_TYPE_IQ4_NL, x, q, 32);
			bad += (q[0] | q[1] << 8) != p3_fp32_to_fp16(sumqx / sumq2);
			for (int j = 0; j < 16; j++)
				bad += q[2 + j] != (codes[j] | codes[j + 16] << 4);
		}
		CHECK_MSG(bad == 0, "legacy quantizer rules, rep %d: %d mismatches", rep, bad);
	}
}

/* ---------------------------------------------------------------------
 * encoders: round trip error on Gaussian data, degenerate rows
 * --------------------------------------------------------------------- */

/*
 * RMS(x - dequant(quant(x))) / RMS(x) on 65536 standard normal values.
 * The bounds are the values measured on this data (in the comment) plus
 * 4-7 %; Q8_0 / Q8_1 / Q8_K and Q4_0 .. Q5_1 / IQ4_NL are ggml's exact
 * algorithms, the K-quants and IQ4_XS our least-squares encoders.  With the
 * scale search and least-squares refit removed (plain min/max steps) the
 * K-quant errors grow by 7 - 20 % and every K-quant bound fails.
 */
typedef struct RmsBound
{
	uint32_t	type;
	double		bound;
} RmsBound;

static const RmsBound rms_bounds[] = {
	{P3_TYPE_F32, 0.0},			/* exact */
	{P3_TYPE_F16, 0.00025},		/* 0.00021 */
	{P3_TYPE_BF16, 0.0018},		/* 0.00166 */
	{P3_TYPE_Q8_0, 0.0056},		/* 0.00534 */
	{P3_TYPE_Q8_1, 0.0056},		/* 0.00534 */
	{P3_TYPE_Q8_K, 0.0074},		/* 0.00697 */
	{P3_TYPE_Q4_0, 0.090},		/* 0.0858 */
	{P3_TYPE_Q4_1, 0.082},		/* 0.0782 */
	{P3_TYPE_Q5_0, 0.045},		/* 0.0426 */
	{P3_TYPE_Q5_1, 0.040},		/* 0.0377 */
	{P3_TYPE_IQ4_NL, 0.083},	/* 0.0786 */
	{P3_TYPE_Q2_K, 0.288},		/* 0.2745 */
	{P3_TYPE_Q3_K, 0.152},		/* 0.1452 */
	{P3_TYPE_Q4_K, 0.075},		/* 0.0718 */
	{P3_TYPE_Q5_K, 0.0376},		/* 0.0359 */
	{P3_TYPE_Q6_K, 0.0185},		/* 0.0176 */
	{P3_TYPE_IQ4_XS, 0.079},	/* 0.0750 */
};

static double
rms_rel_error(const float *x, const float *y, int64_t n)
{
	double		e = 0.0,
				r = 0.0;

	for (int64_t i = 0; i < n; i++)
	{
		e += ((double) x[i] - y[i]) * ((double) x[i] - y[i]);
		r += (double) x[i] * x[i];
	}
	return r > 0.0 ? sqrt(e / r) : sqrt(e);
}

static void
test_round_trip_gaussian(void)
{
	const int64_t n = 65536;
	float	   *x = malloc((size_t) n * sizeof(float));
	float	   *y = malloc((size_t) n * sizeof(float));
	float	   *z = malloc((size_t) n * sizeof(float));
	void	   *q = malloc((size_t) n * 4);
	uint64_t	seed = 2024;

	for (int64_t i = 0; i < n; i++)
		x[i] = gauss(&seed);
	for (size_t t = 0; t < sizeof rms_bounds / sizeof rms_bounds[0]; t++)
	{
		uint32_t	type = rms_bounds[t].type;
		double		err,
					err2;

		p3_quantize_row_ref(type, x, q, n);
		p3_dequantize_row_ref(type, q, y, n);
		err = rms_rel_error(x, y, n);
		fprintf(stderr, "  %-7s rms error %.5f (bound %.5f)", p3_type_name(type), err, rms_bounds[t].bound);
		CHECK_MSG(err <= rms_bounds[t].bound, "%s: rms error %.5f above %.5f",
				  p3_type_name(type), err, rms_bounds[t].bound);

		/* re-quantizing an already quantized row changes it much less */
		p3_quantize_row_ref(type, y, q, n);
		p3_dequantize_row_ref(type, q, z, n);
		err2 = rms_rel_error(y, z, n);
		fprintf(stderr, ", again %.5f\n", err2);
		CHECK_MSG(err2 <= 0.35 * err, "%s: re-quantization error %.5f vs first %.5f",
				  p3_type_name(type), err2, err);
	}
	free(x);
	free(y);
	free(z);
	free(q);
}

/* Degenerate rows quantize to finite values, zero rows to exact zeros. */
static void
test_degenerate_rows(void)
{
	const int64_t n = 512;
	float		x[512],
				y[512];
	uint8_t		q[512 * 4];

	for (int t = 0; t < N_ALL_TYPES; t++)
	{
		uint32_t	type = all_types[t];
		const char *name = p3_type_name(type);

		for (int kind = 0; kind < 11; kind++)
		{
			int			nonfinite = 0;
			double		maxrel = 0.0;
			bool		constant = false;
			uint64_t	seed = 99;

			for (int i = 0; i < n; i++)
			{
				float		g = gauss(&seed);

				switch (kind)
				{
					case 0:		/* zeros */
						x[i] = 0.0f;
						break;
					case 1:		/* positive constant */
						x[i] = 0.37f;
						constant = true;
						break;
					case 2:		/* negative constant */
						x[i] = -2.5f;
						constant = true;
						break;
					case 3:		/* huge: beyond what f16 scales can express */
						x[i] = g * 1e30f;
						break;
					case 4:		/* tiny, f16 scales underflow */
						x[i] = g * 1e-30f;
						break;
					case 5:		/* f32 subnormals */
						x[i] = g * 1e-40f;
						break;
					case 6:		/* huge and tiny mixed */
						x[i] = (i % 2) ? g * 1e20f : g * 1e-20f;
						break;
					case 7:		/* one spike per block */
						x[i] = (i % 32 == 3) ? 1000.0f : g * 1e-3f;
						break;
					case 8:		/* near the top of f32 (Q8_K's f32 d * 127 must stay finite) */
						x[i] = (i % 3 == 0) ? 3e38f : ((i % 3 == 1) ? -3e38f : 0.0f);
						break;
					case 9:		/* only positive values, large offset */
						x[i] = 1000.0f + g;
						break;
					default:	/* NaN and infinities among normal values */
						x[i] = (i % 37 == 5) ? NAN : ((i % 53 == 7) ? INFINITY : ((i % 59 == 1) ? -INFINITY : g));
						break;
				}
			}
			/* float formats keep NaN / inf; every block format stores finite scales */
			if (kind == 10 && p3_type_traits(type)->block_size == 1)
				continue;
			/* f16 cannot hold 1e30 or FLT_MAX: IEEE (and ggml) give inf there */
			if (type == P3_TYPE_F16 && (kind == 3 || kind == 6 || kind == 8))
				continue;
			memset(q, 0, sizeof q);
			p3_quantize_row_ref(type, x, q, n);
			p3_dequantize_row_ref(type, q, y, n);
			for (int i = 0; i < n; i++)
			{
				if (!isfinite(y[i]))
					nonfinite++;
				if (constant)
				{
					double		rel = fabs((double) y[i] - x[i]) / fabs(x[i]);

					maxrel = rel > maxrel ? rel : maxrel;
				}
			}
			CHECK_MSG(nonfinite == 0, "%s kind %d: %d non-finite values", name, kind, nonfinite);
			CHECK_MSG(kind != 4 || type == P3_TYPE_F32 || type == P3_TYPE_BF16 || type == P3_TYPE_Q8_K ||
					  rms_rel_error(x, y, n) <= 1.0, "%s: tiny row blew up", name);
			if (kind == 0)
			{
				int			nonzero = 0;

				for (int i = 0; i < n; i++)
					nonzero += y[i] != 0.0f;
				CHECK_MSG(nonzero == 0, "%s: zero row gives %d non-zero values", name, nonzero);
			}
			/* a constant is one code times an f16 scale (bf16: 8 significant bits) */
			if (constant)
				CHECK_MSG(maxrel < 4e-3, "%s kind %d: constant row off by %.5f", name, kind, maxrel);
			/*
			 * 1000 +- 1: the K-quant mins can only subtract (ggml's format),
			 * so the codes span [0, 1003]; still a sane approximation
			 */
			if (kind == 9)
			{
				double		err = rms_rel_error(x, y, n);

				CHECK_MSG(err < 0.1, "%s: offset row error %.6f", name, err);
			}
		}
	}
}

/* ---------------------------------------------------------------------
 * dot products
 * --------------------------------------------------------------------- */

/* p3_dot_f32_ref is the element-order f32 sum over the dequantized row. */
static void
test_dot_f32_is_element_order(void)
{
	const int64_t lengths[] = {256, 352, 1280, 3072};
	uint64_t	seed = 5;

	for (int t = 0; t < N_ALL_TYPES; t++)
	{
		uint32_t	type = all_types[t];
		const P3TypeTraits *tr = p3_type_traits(type);

		if (!tr->weights_ok)
			continue;
		for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
		{
			int64_t		n = lengths[li];
			float	   *w = malloc((size_t) n * sizeof(float));
			float	   *x = malloc((size_t) n * sizeof(float));
			float	   *deq = malloc((size_t) n * sizeof(float));
			void	   *q;
			float		sum = 0.0f,
						got;

			if (n % tr->block_size != 0)
			{
				free(w);
				free(x);
				free(deq);
				continue;
			}
			q = malloc(row_bytes(type, n));
			for (int64_t i = 0; i < n; i++)
			{
				w[i] = gauss(&seed);
				x[i] = gauss(&seed);
			}
			p3_quantize_row_ref(type, w, q, n);
			p3_dequantize_row_ref(type, q, deq, n);
			for (int64_t i = 0; i < n; i++)
				sum += deq[i] * x[i];
			got = p3_dot_f32_ref(type, q, x, n);
			CHECK_MSG(same_bits(got, sum), "%s n=%lld: %.9g vs %.9g", tr->name, (long long) n, got, sum);
			free(w);
			free(x);
			free(deq);
			free(q);
		}
	}
}

/*
 * The integer kernels compute exactly sum(deq(w) * deq(a)) up to f32
 * rounding: compare with that sum taken in double from the two quantized
 * rows.  Q4_1 / Q5_1 use s = d * sum(q) rounded to f16 (and d unrounded in
 * it), so their min term carries a relative error up to ~2^-11.
 */
static void
test_vec_dot_kernel_arithmetic(void)
{
	const int64_t n = 2048;
	float	   *w = malloc((size_t) n * sizeof(float));
	float	   *x = malloc((size_t) n * sizeof(float));
	float	   *dw = malloc((size_t) n * sizeof(float));
	float	   *da = malloc((size_t) n * sizeof(float));
	void	   *qw = malloc((size_t) n * 4);
	void	   *qa = malloc((size_t) n * 4);
	uint64_t	seed = 17;

	for (int t = 0; t < N_ALL_TYPES; t++)
	{
		uint32_t	type = all_types[t];
		const P3TypeTraits *tr = p3_type_traits(type);
		uint32_t	vdt = tr->vec_dot_type;

		if (!tr->weights_ok)
			continue;
		for (int rep = 0; rep < 4; rep++)
		{
			double		exact = 0.0,
						mag = 0.0,
						tol;
			float		got;

			for (int64_t i = 0; i < n; i++)
			{
				w[i] = gauss(&seed) + (rep == 3 ? 0.8f : 0.0f);	/* rep 3: offset, big min terms */
				x[i] = gauss(&seed) + (rep >= 2 ? 0.5f : 0.0f);
			}
			p3_quantize_row_ref(type, w, qw, n);
			p3_dequantize_row_ref(type, qw, dw, n);
			p3_quantize_row_ref(vdt, x, qa, n);
			p3_dequantize_row_ref(vdt, qa, da, n);
			for (int64_t i = 0; i < n; i++)
			{
				exact += (double) dw[i] * da[i];
				mag += fabs((double) dw[i] * da[i]);
			}
			got = p3_vec_dot_ref(type, qw, qa, n);
			tol = (type == P3_TYPE_Q4_1 || type == P3_TYPE_Q5_1) ? 1e-3 * mag : 2e-6 * mag;
			CHECK_MSG(fabs(got - exact) <= tol, "%s rep %d: %.9g vs exact %.9g (tol %.3g)",
					  tr->name, rep, got, exact, tol);
		}
	}
	free(w);
	free(x);
	free(dw);
	free(da);
	free(qw);
	free(qa);
}

/*
 * Q8_0 x Q8_0 against the formula written out: per block the int32 sum
 * times (dx * dy), accumulated in f32 in block order.  Must agree exactly.
 */
static void
test_vec_dot_q8_0_formula(void)
{
	const int64_t n = 4096;
	float	   *w = malloc((size_t) n * sizeof(float));
	float	   *x = malloc((size_t) n * sizeof(float));
	uint8_t    *qw = malloc(row_bytes(P3_TYPE_Q8_0, n));
	uint8_t    *qa = malloc(row_bytes(P3_TYPE_Q8_0, n));
	uint64_t	seed = 23;
	float		sumf = 0.0f;
	double		sumd = 0.0;

	for (int64_t i = 0; i < n; i++)
	{
		w[i] = gauss(&seed);
		x[i] = gauss(&seed) * 3.0f;
	}
	p3_quantize_row_ref(P3_TYPE_Q8_0, w, qw, n);
	p3_quantize_row_ref(P3_TYPE_Q8_0, x, qa, n);
	for (int64_t b = 0; b < n / 32; b++)
	{
		const uint8_t *bw = qw + 34 * b;
		const uint8_t *ba = qa + 34 * b;
		int			sumi = 0;

		for (int j = 0; j < 32; j++)
			sumi += (int8_t) bw[2 + j] * (int8_t) ba[2 + j];
		sumf += (float) sumi * (f16(bw) * f16(ba));
		sumd += (double) sumi * f16(bw) * f16(ba);
	}
	CHECK(same_bits(p3_vec_dot_ref(P3_TYPE_Q8_0, qw, qa, n), sumf));
	CHECK_NEAR(p3_vec_dot_ref(P3_TYPE_Q8_0, qw, qa, n), sumd, 1e-5 * fabs(sumd) + 1e-4);
	free(w);
	free(x);
	free(qw);
	free(qa);
}

/* Integer code of element i of a Q4_K block and its sub-block (spec 2.3). */
static int
q4k_code(const uint8_t *b, int i, int *sub)
{
	const uint8_t *qs = b + 16;
	int			c = i / 64,
				r = i % 64;

	*sub = r < 32 ? 2 * c : 2 * c + 1;
	return r < 32 ? nib_lo(qs[32 * c + r]) : nib_hi(qs[32 * c + r - 32]);
}

/* Integer code (-32..31) of element i of a Q6_K block and its scale index. */
static int
q6k_code(const uint8_t *b, int i, int *group)
{
	const uint8_t *ql = b;
	const uint8_t *qh = b + 128;
	int			h = i / 128,
				r = i % 128,
				k = r / 32,
				l = r % 32;
	int			byte = ql[64 * h + l + (k % 2 ? 32 : 0)];
	int			nib = k < 2 ? nib_lo((uint8_t) byte) : nib_hi((uint8_t) byte);

	*group = 8 * h + 2 * k + (l >= 16);
	return (nib | ((qh[32 * h + l] >> (2 * k)) & 3) << 4) - 32;
}

/*
 * The float arithmetic of ggml's generic kernels written out for a few
 * types, to pin p3_vec_dot_ref to llama.cpp's results bit for bit:
 *   Q4_0:   sumf += ((float) sumi * dx) * dy, per block
 *   IQ4_NL: sumf += (dy * dx) * (float) sumi
 *   Q4_K:   int lanes aux[k % 8] += sc * q * q8; lanes[l] += (dx * d8) * aux[l];
 *           sumf -= (dminx * d8) * sum(bsums[g] * min[g / 2]); finally
 *           sumf += lanes[0] + ... + lanes[7], added one by one
 *   Q6_K:   the same lanes, scale per 16, no min term
 */
static void
test_vec_dot_ggml_order(void)
{
	const int64_t n = 4096;
	float	   *w = malloc((size_t) n * sizeof(float));
	float	   *x = malloc((size_t) n * sizeof(float));
	uint8_t    *qw = malloc((size_t) n * 4);
	uint8_t    *qa = malloc((size_t) n * 4);
	uint64_t	seed = 41;

	for (int64_t i = 0; i < n; i++)
	{
		w[i] = gauss(&seed);
		x[i] = gauss(&seed);
	}

	/* Q4_0 and IQ4_NL with Q8_0 activations */
	p3_quantize_row_ref(P3_TYPE_Q8_0, x, qa, n);
	for (int pass = 0; pass < 2; pass++)
	{
		uint32_t	type = pass == 0 ? P3_TYPE_Q4_0 : P3_TYPE_IQ4_NL;
		float		sumf = 0.0f;

		p3_quantize_row_ref(type, w, qw, n);
		for (int64_t bi = 0; bi < n / 32; bi++)
		{
			const uint8_t *bw = qw + 18 * bi;
			const uint8_t *ba = qa + 34 * bi;
			int			sumi = 0;

			for (int k = 0; k < 32; k++)
			{
				int			nib = k < 16 ? nib_lo(bw[2 + k]) : nib_hi(bw[2 + k - 16]);

				sumi += (pass == 0 ? nib - 8 : iq4_table[nib]) * (int8_t) ba[2 + k];
			}
			if (pass == 0)
				sumf += (float) sumi * f16(bw) * f16(ba);
			else
				sumf += (f16(ba) * f16(bw)) * (float) sumi;
		}
		CHECK_MSG(same_bits(p3_vec_dot_ref(type, qw, qa, n), sumf), "%s", p3_type_name(type));
	}

	/* Q4_K and Q6_K with Q8_K activations */
	p3_quantize_row_ref(P3_TYPE_Q8_K, x, qa, n);
	for (int pass = 0; pass < 2; pass++)
	{
		uint32_t	type = pass == 0 ? P3_TYPE_Q4_K : P3_TYPE_Q6_K;
		size_t		bsize = pass == 0 ? 144 : 210;
		float		lanes[8] = {0};
		float		sumf = 0.0f;

		p3_quantize_row_ref(type, w, qw, n);
		for (int64_t bi = 0; bi < n / 256; bi++)
		{
			const uint8_t *bw = qw + bsize * bi;
			const uint8_t *ba = qa + 292 * bi;
			float		d8;
			int			aux[8] = {0};

			memcpy(&d8, ba, 4);
			for (int k = 0; k < 256; k++)
			{
				int			grp,
							code,
							scale,
							mn;

				if (pass == 0)
				{
					code = q4k_code(bw, k, &grp);
					spec_k4_scale_min(bw + 4, grp, &scale, &mn);
				}
				else
				{
					code = q6k_code(bw, k, &grp);
					scale = (int8_t) bw[192 + grp];
				}
				aux[k % 8] += scale * code * (int8_t) ba[4 + k];
			}
			for (int l = 0; l < 8; l++)
				lanes[l] += ((pass == 0 ? f16(bw) : f16(bw + 208)) * d8) * (float) aux[l];
			if (pass == 0)
			{
				int			summ = 0;

				for (int g = 0; g < 16; g++)
				{
					int			scale,
								mn;
					int16_t		bs;

					spec_k4_scale_min(bw + 4, g / 2, &scale, &mn);
					memcpy(&bs, ba + 260 + 2 * g, 2);
					summ += bs * mn;
				}
				sumf -= (f16(bw + 2) * d8) * (float) summ;
			}
		}
		for (int l = 0; l < 8; l++)
			sumf += lanes[l];
		CHECK_MSG(same_bits(p3_vec_dot_ref(type, qw, qa, n), sumf), "%s: %.9g vs %.9g",
				  p3_type_name(type), p3_vec_dot_ref(type, qw, qa, n), sumf);
	}
	free(w);
	free(x);
	free(qw);
	free(qa);
}

/*
 * p3_vec_dot_ref against p3_dot_f32_ref on random rows: the difference is
 * the activation quantization error.  Normalized as
 * |vec - f32| / (|deq(w)| |x|) * sqrt(n), it is about the relative RMS
 * error of the activation format (0.5 % for Q8_0/Q8_1, 0.7 % for Q8_K);
 * the measured maxima over these 40 rows per type are 1.1 - 1.6 % for
 * the Q8_0/Q8_1 pairs and 1.2 - 2.0 % for the Q8_K ones; the bound is 3 %.
 * Float weights agree exactly.
 */
static void
test_vec_dot_vs_f32(void)
{
	const int64_t lengths[] = {256, 768, 3072, 8192};
	const int64_t nmax = 8192;
	float	   *w = malloc((size_t) nmax * sizeof(float));
	float	   *x = malloc((size_t) nmax * sizeof(float));
	float	   *dw = malloc((size_t) nmax * sizeof(float));
	void	   *qw = malloc((size_t) nmax * 4);
	void	   *qa = malloc((size_t) nmax * 4);
	uint64_t	seed = 31;

	for (int t = 0; t < N_ALL_TYPES; t++)
	{
		uint32_t	type = all_types[t];
		const P3TypeTraits *tr = p3_type_traits(type);
		double		worst = 0.0;

		if (!tr->weights_ok)
			continue;
		for (size_t li = 0; li < sizeof lengths / sizeof lengths[0]; li++)
		{
			int64_t		n = lengths[li];

			for (int rep = 0; rep < 10; rep++)
			{
				double		nw = 0.0,
							nx = 0.0,
							rel;
				float		fd,
							vd;

				for (int64_t i = 0; i < n; i++)
				{
					w[i] = gauss(&seed);
					x[i] = gauss(&seed) * (rep % 2 ? 10.0f : 0.1f);
				}
				p3_quantize_row_ref(type, w, qw, n);
				p3_dequantize_row_ref(type, qw, dw, n);
				for (int64_t i = 0; i < n; i++)
				{
					nw += (double) dw[i] * dw[i];
					nx += (double) x[i] * x[i];
				}
				fd = p3_dot_f32_ref(type, qw, x, n);
				if (tr->vec_dot_type == P3_TYPE_F32)
				{
					vd = p3_vec_dot_ref(type, qw, x, n);
					CHECK_MSG(same_bits(vd, fd), "%s n=%lld: %.9g vs %.9g", tr->name, (long long) n, vd, fd);
					continue;
				}
				p3_quantize_row_ref(tr->vec_dot_type, x, qa, n);
				vd = p3_vec_dot_ref(type, qw, qa, n);
				rel = fabs((double) vd - fd) / sqrt(nw * nx) * sqrt((double) n);
				worst = rel > worst ? rel : worst;
			}
		}
		if (tr->vec_dot_type != P3_TYPE_F32)
		{
			fprintf(stderr, "  %-7s vec_dot vs f32: worst normalized error %.4f\n", tr->name, worst);
			CHECK_MSG(worst < 0.03, "%s: vec_dot differs from the f32 dot by %.4f (normalized)", tr->name, worst);
		}
	}
	free(w);
	free(x);
	free(dw);
	free(qw);
	free(qa);
}

/* ---------------------------------------------------------------------
 * contract violations stay harmless
 * --------------------------------------------------------------------- */

static void
test_unsupported_and_partial(void)
{
	float		x[256],
				y[64];
	uint8_t		q[292];

	for (int i = 0; i < 256; i++)
		x[i] = (float) i;
	memset(q, 0, sizeof q);
	/* a type without a reference: zeros, and dot products of 0 */
	memset(y, 0x7F, sizeof y);
	p3_dequantize_row_ref(P3_TYPE_IQ2_XXS, q, y, 64);
	CHECK(y[0] == 0.0f && y[63] == 0.0f);
	memset(q, 0xAB, sizeof q);
	p3_quantize_row_ref(P3_TYPE_IQ2_XXS, x, q, 256);
	p3_quantize_row_ref(1000, x, q, 64);
	CHECK(q[0] == 0xAB);
	CHECK(p3_dot_f32_ref(P3_TYPE_TQ1_0, q, x, 256) == 0.0f);
	CHECK(p3_vec_dot_ref(P3_TYPE_Q8_K, q, q, 256) == 0.0f);	/* activation format, no weights kernel */

	/* a partial block is not read: the tail of the output is zeroed */
	p3_quantize_row_ref(P3_TYPE_Q8_0, x, q, 32);
	memset(y, 0x7F, sizeof y);
	p3_dequantize_row_ref(P3_TYPE_Q8_0, q, y, 40);
	CHECK(y[31] != 0.0f && y[32] == 0.0f && y[39] == 0.0f);
	CHECK(p3_dot_f32_ref(P3_TYPE_Q8_0, q, x, 40) == p3_dot_f32_ref(P3_TYPE_Q8_0, q, x, 32));
	p3_dequantize_row_ref(P3_TYPE_Q8_0, q, y, -5);	/* nothing happens */
}

int
main(void)
{
	RUN(test_fp16_bf16_spots);
	RUN(test_row_bytes);
	RUN(test_layouts_random_blocks);
	RUN(test_layout_spot_rules);
	RUN(test_q8_activation_rules);
	RUN(test_legacy_quantizer_rules);
	RUN(test_round_trip_gaussian);
	RUN(test_degenerate_rows);
	RUN(test_dot_f32_is_element_order);
	RUN(test_vec_dot_kernel_arithmetic);
	RUN(test_vec_dot_q8_0_formula);
	RUN(test_vec_dot_ggml_order);
	RUN(test_vec_dot_vs_f32);
	RUN(test_unsupported_and_partial);
	return harness_finish();
}
