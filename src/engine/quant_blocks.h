/*
 * quant_blocks.h — byte layouts of the ggml block formats, private to the
 * engine (quantization reference and the kernels built on it).
 *
 * Each struct mirrors one block of ggml's ggml-common.h field by field, in
 * file order, all multi-byte fields little-endian (the engine only runs on
 * little-endian hosts).  f16 fields are kept as raw uint16_t bits and read
 * with p3_fp16_to_fp32.  The structs have no padding (checked below), so a
 * row of n elements is exactly n / P3_QK_xxx consecutive structs; their
 * alignment is 2 bytes (4 for P3BlockQ8_K), which GGUF's 32-byte tensor
 * alignment and every type size (all even) guarantee for weight rows.
 *
 * See /work/shared/docs/phi3-spec.md section 2.2 for the table these follow.
 */
#ifndef PHI3_QUANT_BLOCKS_H
#define PHI3_QUANT_BLOCKS_H

#include <stdint.h>
#include <string.h>

#include "phi3/quant.h"

#define P3_QK4_0	32
#define P3_QK4_1	32
#define P3_QK5_0	32
#define P3_QK5_1	32
#define P3_QK8_0	32
#define P3_QK8_1	32
#define P3_QK4_NL	32

/* Q4_0: y = d * (q - 8), q in 0..15; qs[j] low nibble = element j, high = j+16 */
typedef struct P3BlockQ4_0
{
	uint16_t	d;
	uint8_t		qs[P3_QK4_0 / 2];
} P3BlockQ4_0;

/* Q4_1: y = d * q + m */
typedef struct P3BlockQ4_1
{
	uint16_t	d;
	uint16_t	m;
	uint8_t		qs[P3_QK4_1 / 2];
} P3BlockQ4_1;

/* Q5_0: 5th bit of element j is bit j of qh (as a little-endian u32) */
typedef struct P3BlockQ5_0
{
	uint16_t	d;
	uint8_t		qh[4];
	uint8_t		qs[P3_QK5_0 / 2];
} P3BlockQ5_0;

/* Q5_1: as Q5_0, y = d * q + m */
typedef struct P3BlockQ5_1
{
	uint16_t	d;
	uint16_t	m;
	uint8_t		qh[4];
	uint8_t		qs[P3_QK5_1 / 2];
} P3BlockQ5_1;

/* Q8_0: y = d * qs[j] */
typedef struct P3BlockQ8_0
{
	uint16_t	d;
	int8_t		qs[P3_QK8_0];
} P3BlockQ8_0;

/* Q8_1 (activations): s = d * sum(qs), rounded to f16 */
typedef struct P3BlockQ8_1
{
	uint16_t	d;
	uint16_t	s;
	int8_t		qs[P3_QK8_1];
} P3BlockQ8_1;

/* Q2_K: 16 groups of 16; scales[g] = scale (low nibble) | min (high nibble) */
typedef struct P3BlockQ2_K
{
	uint8_t		scales[P3_QK_K / 16];
	uint8_t		qs[P3_QK_K / 4];
	uint16_t	d;
	uint16_t	dmin;
} P3BlockQ2_K;

/* Q3_K: 2 low bits in qs, high bit in hmask, 6-bit signed scales packed in 12 bytes */
typedef struct P3BlockQ3_K
{
	uint8_t		hmask[P3_QK_K / 8];
	uint8_t		qs[P3_QK_K / 4];
	uint8_t		scales[12];
	uint16_t	d;
} P3BlockQ3_K;

/* Q4_K: 8 sub-blocks of 32, 6-bit scale and min each, packed in 12 bytes */
typedef struct P3BlockQ4_K
{
	uint16_t	d;
	uint16_t	dmin;
	uint8_t		scales[12];
	uint8_t		qs[P3_QK_K / 2];
} P3BlockQ4_K;

/* Q5_K: Q4_K plus a 5th bit per element in qh */
typedef struct P3BlockQ5_K
{
	uint16_t	d;
	uint16_t	dmin;
	uint8_t		scales[12];
	uint8_t		qh[P3_QK_K / 8];
	uint8_t		qs[P3_QK_K / 2];
} P3BlockQ5_K;

/* Q6_K: 4 low bits in ql, 2 high bits in qh, int8 scale per 16 elements */
typedef struct P3BlockQ6_K
{
	uint8_t		ql[P3_QK_K / 2];
	uint8_t		qh[P3_QK_K / 4];
	int8_t		scales[P3_QK_K / 16];
	uint16_t	d;
} P3BlockQ6_K;

/* Q8_K (activations): f32 scale, bsums[g] = sum of qs[16g .. 16g+15] */
typedef struct P3BlockQ8_K
{
	float		d;
	int8_t		qs[P3_QK_K];
	int16_t		bsums[P3_QK_K / 16];
} P3BlockQ8_K;

/* IQ4_NL: y = d * T[nibble], T = p3_iq4nl_values */
typedef struct P3BlockIQ4_NL
{
	uint16_t	d;
	uint8_t		qs[P3_QK4_NL / 2];
} P3BlockIQ4_NL;

/* IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (low 4 bits in scales_l, high 2 in scales_h) */
typedef struct P3BlockIQ4_XS
{
	uint16_t	d;
	uint16_t	scales_h;
	uint8_t		scales_l[P3_QK_K / 64];
	uint8_t		qs[P3_QK_K / 2];
} P3BlockIQ4_XS;

_Static_assert(sizeof(P3BlockQ4_0) == 18, "wrong q4_0 block size");
_Static_assert(sizeof(P3BlockQ4_1) == 20, "wrong q4_1 block size");
_Static_assert(sizeof(P3BlockQ5_0) == 22, "wrong q5_0 block size");
_Static_assert(sizeof(P3BlockQ5_1) == 24, "wrong q5_1 block size");
_Static_assert(sizeof(P3BlockQ8_0) == 34, "wrong q8_0 block size");
_Static_assert(sizeof(P3BlockQ8_1) == 36, "wrong q8_1 block size");
_Static_assert(sizeof(P3BlockQ2_K) == 84, "wrong q2_K block size");
_Static_assert(sizeof(P3BlockQ3_K) == 110, "wrong q3_K block size");
_Static_assert(sizeof(P3BlockQ4_K) == 144, "wrong q4_K block size");
_Static_assert(sizeof(P3BlockQ5_K) == 176, "wrong q5_K block size");
_Static_assert(sizeof(P3BlockQ6_K) == 210, "wrong q6_K block size");
_Static_assert(sizeof(P3BlockQ8_K) == 292, "wrong q8_K block size");
_Static_assert(sizeof(P3BlockIQ4_NL) == 18, "wrong iq4_nl block size");
_Static_assert(sizeof(P3BlockIQ4_XS) == 136, "wrong iq4_xs block size");

/* The IQ4_NL / IQ4_XS code book (ggml's kvalues_iq4nl), sorted ascending. */
static const int8_t p3_iq4nl_values[16] = {
	-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113
};

/* ---- layout decoding shared by the reference and the kernels ---- */

/* The 32 high bits of a Q5_0 / Q5_1 block: bit j belongs to element j. */
static inline uint32_t
p3_q5_high_bits(const uint8_t qh[4])
{
	return (uint32_t) qh[0] | ((uint32_t) qh[1] << 8) | ((uint32_t) qh[2] << 16) | ((uint32_t) qh[3] << 24);
}

/*
 * 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K block: bytes
 * 0-3 / 4-7 hold the scales / mins of sub-blocks 0-3 in their low 6 bits,
 * bytes 8-11 the low 4 bits of scale (low nibble) and min (high nibble) of
 * sub-blocks 4-7, whose bits 4-5 are the top 2 bits of bytes 0-3 / 4-7.
 */
static inline void
p3_q4k_scale_min(int j, const uint8_t *scales, int *sc, int *m)
{
	if (j < 4)
	{
		*sc = scales[j] & 63;
		*m = scales[j + 4] & 63;
	}
	else
	{
		*sc = (scales[j + 4] & 15) | ((scales[j - 4] >> 6) << 4);
		*m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
	}
}

/*
 * The sixteen signed scales (-32..31) of a Q3_K block: low 4 bits in the
 * low (groups 0-7) or high (groups 8-15) nibbles of bytes 0-7, high 2 bits
 * of group j in bits 2*(j/4) of byte 8 + j%4; stored value minus 32.
 */
static inline void
p3_q3k_scales(const uint8_t *scales, int *out)
{
	for (int j = 0; j < 16; j++)
	{
		int			low4 = j < 8 ? (scales[j] & 15) : (scales[j - 8] >> 4);
		int			high2 = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;

		out[j] = (low4 | (high2 << 4)) - 32;
	}
}

/*
 * Scales and mins (6 bits each) of the 8 sub-blocks of a Q4_K / Q5_K block,
 * as bytes: byte j of sc8 / mn8 belongs to sub-block j.
 */
static inline void
k4_unpack(const uint8_t *scales, uint64_t *sc8, uint64_t *mn8)
{
	uint32_t	s[3];

	memcpy(s, scales, 12);
	*sc8 = (s[0] & 0x3f3f3f3fu) |
		((uint64_t) ((s[2] & 0x0f0f0f0fu) | (((s[0] >> 6) & 0x03030303u) << 4)) << 32);
	*mn8 = (s[1] & 0x3f3f3f3fu) |
		((uint64_t) (((s[2] >> 4) & 0x0f0f0f0fu) | (((s[1] >> 6) & 0x03030303u) << 4)) << 32);
}

#endif							/* PHI3_QUANT_BLOCKS_H */
