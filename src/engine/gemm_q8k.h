/*
 * gemm_q8k.h — private to the engine: the prefill GEMM of K-quant weights
 * (Q4_K, Q5_K, Q6_K) with Q8_K activations and of Q4_0 / Q8_0 weights with
 * Q8_0 activations, and the one rule by which every fast kernel of those
 * types combines a row's blocks.
 *
 * The rule (the "exact-block" order).  For one weight row and one token,
 * block i (256 elements) contributes two exact integers:
 *     S_i = Σ_k sc(k) · q_k · a_k      (q_k the code, minus 32 for Q6_K;
 *                                        sc(k) the scale of k's sub-block)
 *     M_i = Σ_j m_j · (bsums[2j] + bsums[2j+1])   (Q4_K / Q5_K mins only)
 * (for the 32-element formats Q4_0 / Q5_0 / Q8_0 / IQ4_NL: per block of 32
 * the exact S_i = Σ w_k · a_k of the signed codes, and no M_i)
 * and the float result is the chain, block by block from acc = 0:
 *     acc = fmaf((float) S_i, d_i · dy_i, acc)
 *     acc = fmaf((float) M_i, -(dmin_i · dy_i), acc)     (Q4_K / Q5_K)
 * with d_i, dmin_i the f16 block scales as floats and dy_i the Q8_K scale.
 * The integer part is exact whatever the order of its terms, so SIMD code
 * is free in how it forms S_i and M_i; only this float chain is fixed.  A
 * token's result is then the same whether it comes from vec_dot (decode),
 * vec_dot_ntok or the GEMM below (16 tokens in the lanes of a register),
 * which is what lets a batch or a prompt chunk give the one-token bits.
 * k_block_affine / k_block_q6 below are that chain's step, used by both.
 *
 * The GEMM (gemm_avx512.c).  The chunk's Q8_K activations are repacked
 * once per product into panels of 16 tokens (P3PanelQ8K, one per group of
 * 16 tokens and block): dword g of the 16 tokens side by side, as unsigned
 * bytes a + 128, so that vpdpbusd can take them as its unsigned operand
 * and a broadcast dword of 4 weight codes as its signed one.  The offset
 * adds 128 · Σ q per sub-block, which the weight side removes exactly
 * (P3KRowBlock.cw).  Each worker unpacks a few of its weight rows at a
 * time into P3KRowBlocks (codes in element order, scales as dwords) and
 * runs them against every panel of the chunk.
 */
#ifndef PHI3_GEMM_Q8K_H
#define PHI3_GEMM_Q8K_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/kernels.h"

/* tokens per panel: the 16 dword lanes of a 512-bit register */
#define P3_GEMM_LANES 16

/* one block (256 elements) of 16 tokens' Q8_K activations, repacked */
typedef struct P3PanelQ8K
{
	uint8_t		qs[64][P3_GEMM_LANES * 4];	/* [dword g][token][4]: qs[4g .. 4g+3] + 128 */
	float		d[P3_GEMM_LANES];			/* dy of each token (0 for padding) */
	int32_t		bsk[4][P3_GEMM_LANES];		/* word pairs (bs[2p], bs[2p+1]), bs[j] = bsums[2j] + bsums[2j+1] */
	int32_t		bs6[8][P3_GEMM_LANES];		/* word pairs (bsums[2p], bsums[2p+1]) */
} P3PanelQ8K;

/* one block of one weight row, unpacked */
typedef struct P3KRowBlock
{
	int8_t		q[256];			/* codes in element order: Q4_K 0..15, Q5_K 0..31, Q6_K 0..63 */
	int32_t		sc[16];			/* scale of each sub-block (Q4_K / Q5_K: 8 of 32 elements; Q6_K: 16 of 16) */
	int32_t		pair[8];		/* word pairs against bsk (Q4_K / Q5_K mins) or bs6 (Q6_K scales) */
	int32_t		cw;				/* 128 · Σ_j sc[j] · Σ q over sub-block j: the panel's offset, removed */
	float		d;				/* the block's d and dmin as floats */
	float		dm;
	int32_t		pad[5];
} P3KRowBlock;

_Static_assert(sizeof(P3PanelQ8K) % 64 == 0, "panel blocks must stay 64-byte aligned");
_Static_assert(sizeof(P3KRowBlock) % 64 == 0, "row blocks must stay 64-byte aligned");

/* one block (32 elements) of 16 tokens' Q8_0 activations, repacked */
typedef struct P3PanelQ8_0
{
	uint8_t		qs[8][P3_GEMM_LANES * 4];	/* [dword g][token][4]: qs[4g .. 4g+3] + 128 */
	float		d[P3_GEMM_LANES];			/* dy of each token (0 for padding) */
} P3PanelQ8_0;

/* one block (32 elements) of one Q4_0 / Q8_0 weight row, unpacked */
typedef struct P3S8RowBlock
{
	int8_t		q[32];			/* signed codes in element order */
	int32_t		cw;				/* 128 · Σ q: the panel's offset, removed */
	float		d;
} P3S8RowBlock;

_Static_assert(sizeof(P3PanelQ8_0) % 64 == 0, "panel blocks must stay 64-byte aligned");

/* weight rows unpacked at a time per worker */
#define P3_GEMM_ROWS 4

/* the chain step of the exact-block rule, Q4_K / Q5_K */
static inline float
k_block_affine(float acc, int32_t s, int32_t m, float d, float dmin, float dy)
{
	acc = fmaf((float) s, d * dy, acc);
	return fmaf((float) m, -(dmin * dy), acc);
}

/* the chain step of the exact-block rule, Q6_K */
static inline float
k_block_q6(float acc, int32_t s, float d, float dy)
{
	return fmaf((float) s, d * dy, acc);
}

/* Whether the GEMM handles weights of this type: K-quants with Q8_K activations, Q4_0 / Q8_0 with Q8_0. */
static inline int
p3_gemm_q8k_type(uint32_t wtype)
{
	return wtype == P3_TYPE_Q4_K || wtype == P3_TYPE_Q5_K || wtype == P3_TYPE_Q6_K;
}

static inline int
p3_gemm_s8_type(uint32_t wtype)
{
	return wtype == P3_TYPE_Q4_0 || wtype == P3_TYPE_Q8_0;
}

static inline int
p3_gemm_type(uint32_t wtype)
{
	return p3_gemm_q8k_type(wtype) || p3_gemm_s8_type(wtype);
}

/* Bytes of the panels for n_tok tokens of n_in elements for weights of wtype (0: no GEMM). */
static inline size_t
p3_gemm_panel_bytes(uint32_t wtype, int64_t n_in, int32_t n_tok)
{
	size_t		groups = ((size_t) n_tok + P3_GEMM_LANES - 1) / P3_GEMM_LANES;

	if (p3_gemm_q8k_type(wtype))
		return groups * (size_t) (n_in / 256) * sizeof(P3PanelQ8K);
	if (p3_gemm_s8_type(wtype))
		return groups * (size_t) (n_in / 32) * sizeof(P3PanelQ8_0);
	return 0;
}

/* Bytes of a worker's unpacked rows for any GEMM weight of n_in columns. */
static inline size_t
p3_gemm_rows_bytes(int64_t n_in)
{
	size_t		k = (size_t) P3_GEMM_ROWS * (size_t) (n_in / 256) * sizeof(P3KRowBlock);
	size_t		s8 = (size_t) P3_GEMM_ROWS * (size_t) (n_in / 32) * sizeof(P3S8RowBlock);

	return k > s8 ? k : s8;
}

#endif							/* PHI3_GEMM_Q8K_H */
