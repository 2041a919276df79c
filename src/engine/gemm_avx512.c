/*
 * gemm_avx512.c — the prefill GEMM of the "avx512" set for K-quant weights
 * (Q4_K, Q5_K, Q6_K) with Q8_K activations: y = x · Wᵀ for a chunk of
 * tokens, 16 tokens in the dword lanes of each register.
 *
 * Layout and rule in gemm_q8k.h.  Two steps:
 *   pack    the chunk's Q8_K rows -> one P3PanelQ8K per (16 tokens, block);
 *           each worker packs whole groups of 16 tokens
 *   gemm    a worker's output rows, P3_GEMM_ROWS at a time: unpack those
 *           rows' blocks once (codes as signed bytes, scales as dwords),
 *           then for every pair of token groups a register tile of
 *           4 rows x 2 groups: per sub-block, vpdpbusd of each panel dword
 *           (16 tokens' 4 activations, unsigned) with the broadcast dword
 *           of 4 weight codes; the sub-block sum times its scale (vpmulld)
 *           into the block sum; at the block's end the exact-block chain
 *           step in all 16 lanes at once.
 * Per (row, token) the integers are those of vec_dot and the float chain is
 * the same, so the outputs have the bits of the single-token kernel.
 */
#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#include "gemm_q8k.h"
#include "kernels_x86.h"
#include "quant_blocks.h"

#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")

#define INLINE static inline __attribute__((always_inline))

/* tokens of a register tile: groups of P3_GEMM_LANES */
#define TILE_GROUPS 2

/* f16 bits -> f32 */
INLINE float
half_to_float(uint16_t h)
{
	return _cvtsh_ss(h);
}

/* ---------------------------------------------------------------------
 * packing the activations
 * --------------------------------------------------------------------- */

/* the word pair (lo, hi) as one dword */
static int32_t
word_pair(int32_t lo, int32_t hi)
{
	return (int32_t) (((uint32_t) (uint16_t) lo) | ((uint32_t) (uint16_t) hi << 16));
}

/* Lane t of panel p from the Q8_K block y (NULL: padding, contributes nothing). */
static void
pack_lane(P3PanelQ8K *p, int t, const P3BlockQ8_K *y)
{
	for (int g = 0; g < 64; g++)
	{
		uint32_t	v = 0x80808080u;

		if (y != NULL)
		{
			memcpy(&v, y->qs + 4 * g, 4);
			v ^= 0x80808080u;
		}
		memcpy(&p->qs[g][4 * t], &v, 4);
	}
	p->d[t] = y != NULL ? y->d : 0.0f;
	for (int q = 0; q < 8; q++)
		p->bs6[q][t] = y != NULL ? word_pair(y->bsums[2 * q], y->bsums[2 * q + 1]) : 0;
	for (int q = 0; q < 4; q++)
		p->bsk[q][t] = y != NULL ?
			word_pair(y->bsums[4 * q] + y->bsums[4 * q + 1], y->bsums[4 * q + 2] + y->bsums[4 * q + 3]) : 0;
}

/* Panels of token groups [g0, g1) from the Q8_K rows act (row stride arow bytes). */
static void
gemm_pack_q8k(const void *act, size_t arow, int32_t n_tok, int64_t n_in,
			  int32_t g0, int32_t g1, void *panels)
{
	int64_t		nb = n_in / P3_QK_K;
	P3PanelQ8K *pan = panels;

	for (int32_t g = g0; g < g1; g++)
		for (int64_t i = 0; i < nb; i++)
			for (int t = 0; t < P3_GEMM_LANES; t++)
			{
				int32_t		tok = g * P3_GEMM_LANES + t;
				const P3BlockQ8_K *y = tok < n_tok ?
					(const P3BlockQ8_K *) ((const uint8_t *) act + (size_t) tok * arow) + i : NULL;

				pack_lane(&pan[(size_t) g * nb + i], t, y);
			}
}

/* ---------------------------------------------------------------------
 * unpacking the weights
 * --------------------------------------------------------------------- */

/* the exact sum of 8 dword lanes */
INLINE int32_t
sum8_epi32(__m256i v)
{
	__m128i		s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));

	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
	s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
	return _mm_cvtsi128_si32(s);
}

/* 32 bytes: the byte b0 in the low 16, b1 in the high 16 */
INLINE __m256i
two_bytes(int8_t b0, int8_t b1)
{
	return _mm256_set_m128i(_mm_set1_epi8(b1), _mm_set1_epi8(b0));
}

/* a Q4_K / Q5_K block (qh NULL for Q4_K) -> its P3KRowBlock */
INLINE void
unpack_k_affine(uint16_t d, uint16_t dmin, const uint8_t *scales, const uint8_t *qs,
				const uint8_t *qh, P3KRowBlock *o)
{
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	const __m256i hv = qh != NULL ? _mm256_loadu_si256((const __m256i *) qh) : _mm256_setzero_si256();
	uint64_t	sc8,
				mn8;
	__m256i		cw16 = _mm256_setzero_si256();

	k4_unpack(scales, &sc8, &mn8);
	for (int c = 0; c < 4; c++)
	{
		__m256i		v = _mm256_loadu_si256((const __m256i *) (qs + 32 * c));
		__m256i		lo = _mm256_and_si256(v, m4);
		__m256i		hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);

		if (qh != NULL)
		{
			/* the 5th bit of element l: bit 2c (lo) or 2c + 1 (hi) of qh[l], as 16 */
			lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * c), 4),
													  _mm256_set1_epi8(16)));
			hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(_mm256_srli_epi16(hv, 2 * c + 1), 4),
													  _mm256_set1_epi8(16)));
		}
		_mm256_storeu_si256((__m256i *) (o->q + 64 * c), lo);
		_mm256_storeu_si256((__m256i *) (o->q + 64 * c + 32), hi);
		/* Σ sc · q in words: at most 8 · 2 · 31 · 63 = 31248 */
		cw16 = _mm256_add_epi16(cw16, _mm256_maddubs_epi16(lo, _mm256_set1_epi8((char) (sc8 >> (16 * c)))));
		cw16 = _mm256_add_epi16(cw16, _mm256_maddubs_epi16(hi, _mm256_set1_epi8((char) (sc8 >> (16 * c + 8)))));
	}
	o->cw = 128 * sum8_epi32(_mm256_madd_epi16(cw16, _mm256_set1_epi16(1)));
	_mm256_store_si256((__m256i *) o->sc, _mm256_cvtepu8_epi32(_mm_cvtsi64_si128((long long) sc8)));
	_mm_store_si128((__m128i *) o->pair, _mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long) mn8)));
	o->d = half_to_float(d);
	o->dm = half_to_float(dmin);
}

/* a Q6_K block -> its P3KRowBlock (codes 0..63; the -32 is taken off through bs6) */
INLINE void
unpack_q6_k(const P3BlockQ6_K *b, P3KRowBlock *o)
{
	const __m256i m4 = _mm256_set1_epi8(0x0F);
	const __m256i m3 = _mm256_set1_epi8(0x03);
	const __m128i sc = _mm_loadu_si128((const __m128i *) b->scales);
	__m256i		cw32 = _mm256_setzero_si256();

	for (int h = 0; h < 2; h++)
	{
		__m256i		l0 = _mm256_loadu_si256((const __m256i *) (b->ql + 64 * h));
		__m256i		l1 = _mm256_loadu_si256((const __m256i *) (b->ql + 64 * h + 32));
		__m256i		qh = _mm256_loadu_si256((const __m256i *) (b->qh + 32 * h));
		__m256i		q[4];

		q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
		q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
							   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m3), 4));
		q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
							   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m3), 4));
		q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
							   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m3), 4));
		for (int k = 0; k < 4; k++)
		{
			int			g = 8 * h + 2 * k;	/* the two groups of 16 of these 32 elements */

			_mm256_storeu_si256((__m256i *) (o->q + 128 * h + 32 * k), q[k]);
			/* Σ sc · q: word pairs at most 2 · 63 · 128, summed in dwords */
			cw32 = _mm256_add_epi32(cw32, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], two_bytes(b->scales[g], b->scales[g + 1])),
															_mm256_set1_epi16(1)));
		}
	}
	o->cw = 128 * sum8_epi32(cw32);
	_mm512_store_si512((void *) o->sc, _mm512_cvtepi8_epi32(sc));
	_mm256_store_si256((__m256i *) o->pair, _mm256_cvtepi8_epi16(sc));
	o->d = half_to_float(b->d);
	o->dm = 0.0f;
}

/* nr rows of w (row_bytes apart) -> nr * nb P3KRowBlocks, row after row */
static void
unpack_rows(uint32_t type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, P3KRowBlock *out)
{
	for (int r = 0; r < nr; r++)
	{
		const uint8_t *row = w + (size_t) r * row_bytes;
		P3KRowBlock *o = out + (size_t) r * nb;

		for (int64_t i = 0; i < nb; i++)
		{
			if (type == P3_TYPE_Q4_K)
			{
				const P3BlockQ4_K *b = (const P3BlockQ4_K *) row + i;

				unpack_k_affine(b->d, b->dmin, b->scales, b->qs, NULL, &o[i]);
			}
			else if (type == P3_TYPE_Q5_K)
			{
				const P3BlockQ5_K *b = (const P3BlockQ5_K *) row + i;

				unpack_k_affine(b->d, b->dmin, b->scales, b->qs, b->qh, &o[i]);
			}
			else
				unpack_q6_k((const P3BlockQ6_K *) row + i, &o[i]);
		}
	}
}

/* ---------------------------------------------------------------------
 * the register tile
 * --------------------------------------------------------------------- */

/*
 * The weights are read in bursts, one unpack per block of rows, which the
 * hardware prefetcher does not run ahead of; so the tiles of one block of
 * rows ask for the next block's lines, a few per weight block they
 * compute (spread out: a burst of a hundred prefetches stalls on the
 * cache's miss queue).  (As asm: GCC deletes a loop of nothing but
 * __builtin_prefetch as dead code.)
 */
typedef struct Prefetch
{
	const char *next;			/* next line to ask for */
	const char *end;
	int			per_block;		/* lines per tile block */
} Prefetch;

INLINE void
prefetch_some(Prefetch *pf)
{
	for (int k = 0; k < pf->per_block && pf->next < pf->end; k++, pf->next += 64)
		__asm__ volatile("prefetcht0 %0" : : "m"(*pf->next));
}

/* a panel's dwords: 16 tokens' 4 activation bytes side by side */
typedef const uint8_t (*PanelDwords)[P3_GEMM_LANES * 4];

/*
 * The inner loop of both tiles: sub[r][g] = Σ over the n dwords from dw0 of
 * vpdpbusd(panel dword of group g (16 tokens, unsigned), the broadcast
 * dword of 4 codes of row r (signed)).  R, G and n are constants at every
 * call.
 */
INLINE void
dot_dwords(const int8_t *const *wq, const int R, const PanelDwords *pq, const int G, int dw0, const int n,
		   __m512i sub[P3_GEMM_ROWS][TILE_GROUPS])
{
#pragma GCC unroll 16
	for (int r = 0; r < R; r++)
#pragma GCC unroll 16
		for (int g = 0; g < G; g++)
			sub[r][g] = _mm512_setzero_si512();
#pragma GCC unroll 8
	for (int k = 0; k < n; k++)
	{
		__m512i		a[TILE_GROUPS];

#pragma GCC unroll 16
		for (int g = 0; g < G; g++)
			a[g] = _mm512_load_si512((const void *) pq[g][dw0 + k]);
#pragma GCC unroll 16
		for (int r = 0; r < R; r++)
		{
			int32_t		wd;
			__m512i		wb;

			memcpy(&wd, wq[r] + 4 * (dw0 + k), 4);
			wb = _mm512_set1_epi32(wd);
#pragma GCC unroll 16
			for (int g = 0; g < G; g++)
				sub[r][g] = _mm512_dpbusd_epi32(sub[r][g], a[g], wb);
		}
	}
}

/*
 * Rows w[0..R) against token groups p[0..G) over nb blocks: acc[r][g] gets
 * the 16 lanes' results.  nsub = 8 (Q4_K / Q5_K: sub-blocks of 32, mins)
 * or 16 (Q6_K: sub-blocks of 16, the -32 through bs6).  R, G and nsub are
 * constants at every call, so the loops unroll into registers.
 */
INLINE void
tile(const P3KRowBlock *const *w, const int R, const P3PanelQ8K *const *p, const int G,
	 int64_t nb, const int nsub, __m512 acc[P3_GEMM_ROWS][TILE_GROUPS], Prefetch *pf)
{
	const int	per = 64 / nsub;	/* panel dwords per sub-block */

#pragma GCC unroll 16
	for (int r = 0; r < R; r++)
#pragma GCC unroll 16
		for (int g = 0; g < G; g++)
			acc[r][g] = _mm512_setzero_ps();
	for (int64_t i = 0; i < nb; i++)
	{
		__m512i		blk[P3_GEMM_ROWS][TILE_GROUPS];
		const int8_t *wq[P3_GEMM_ROWS];
		PanelDwords pq[TILE_GROUPS];

		prefetch_some(pf);
#pragma GCC unroll 16
		for (int r = 0; r < R; r++)
#pragma GCC unroll 16
			for (int g = 0; g < G; g++)
				blk[r][g] = _mm512_setzero_si512();
#pragma GCC unroll 16
		for (int r = 0; r < R; r++)
			wq[r] = w[r][i].q;
#pragma GCC unroll 16
		for (int g = 0; g < G; g++)
			pq[g] = p[g][i].qs;
		for (int j = 0; j < nsub; j++)
		{
			__m512i		sub[P3_GEMM_ROWS][TILE_GROUPS];

			dot_dwords(wq, R, pq, G, j * per, per, sub);
#pragma GCC unroll 16
			for (int r = 0; r < R; r++)
			{
				__m512i		s = _mm512_set1_epi32(w[r][i].sc[j]);

#pragma GCC unroll 16
				for (int g = 0; g < G; g++)
					blk[r][g] = _mm512_add_epi32(blk[r][g], _mm512_mullo_epi32(sub[r][g], s));
			}
		}
#pragma GCC unroll 16
		for (int r = 0; r < R; r++)
#pragma GCC unroll 16
			for (int g = 0; g < G; g++)
			{
				const P3PanelQ8K *pg = &p[g][i];
				__m512		dy = _mm512_load_ps(pg->d);
				__m512i		s = _mm512_sub_epi32(blk[r][g], _mm512_set1_epi32(w[r][i].cw));
				__m512i		m = _mm512_setzero_si512();

				if (nsub == 8)
				{
#pragma GCC unroll 16
					for (int q = 0; q < 4; q++)
						m = _mm512_dpwssd_epi32(m, _mm512_load_si512((const void *) pg->bsk[q]),
												_mm512_set1_epi32(w[r][i].pair[q]));
					acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(_mm512_set1_ps(w[r][i].d), dy),
												acc[r][g]);
					acc[r][g] = _mm512_fnmadd_ps(_mm512_cvtepi32_ps(m), _mm512_mul_ps(_mm512_set1_ps(w[r][i].dm), dy),
												 acc[r][g]);
				}
				else
				{
#pragma GCC unroll 16
					for (int q = 0; q < 8; q++)
						m = _mm512_dpwssd_epi32(m, _mm512_load_si512((const void *) pg->bs6[q]),
												_mm512_set1_epi32(w[r][i].pair[q]));
					s = _mm512_sub_epi32(s, _mm512_slli_epi32(m, 5));
					acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(_mm512_set1_ps(w[r][i].d), dy),
												acc[r][g]);
				}
			}
	}
}

/*
 * acc[r][g] lanes -> y[token][row] for the tokens < n_tok.  With the full 4
 * rows, 4 x 4 transposes within each 128-bit lane give each token its 4
 * consecutive outputs, stored at once (16 scattered stores, not 64).
 */
static void
store_tile(__m512 acc[P3_GEMM_ROWS][TILE_GROUPS], int R, int G, int32_t tok0, int32_t n_tok,
		   float *y, int64_t ldy, int64_t row0)
{
	for (int g = 0; g < G; g++)
	{
		int32_t		base = tok0 + g * P3_GEMM_LANES;

		if (R == 4)
		{
			__m512		t0 = _mm512_unpacklo_ps(acc[0][g], acc[1][g]);	/* r0 r1 r0 r1 of tokens 0, 1 */
			__m512		t1 = _mm512_unpackhi_ps(acc[0][g], acc[1][g]);	/* tokens 2, 3 */
			__m512		t2 = _mm512_unpacklo_ps(acc[2][g], acc[3][g]);
			__m512		t3 = _mm512_unpackhi_ps(acc[2][g], acc[3][g]);
			__m512		tok[4];

			tok[0] = _mm512_shuffle_ps(t0, t2, 0x44);	/* token 4j + 0 of each 128-bit lane j */
			tok[1] = _mm512_shuffle_ps(t0, t2, 0xEE);
			tok[2] = _mm512_shuffle_ps(t1, t3, 0x44);
			tok[3] = _mm512_shuffle_ps(t1, t3, 0xEE);
			for (int t = 0; t < P3_GEMM_LANES && base + t < n_tok; t++)
			{
				__m128		v;

				switch (t / 4)
				{
					case 0:
						v = _mm512_extractf32x4_ps(tok[t % 4], 0);
						break;
					case 1:
						v = _mm512_extractf32x4_ps(tok[t % 4], 1);
						break;
					case 2:
						v = _mm512_extractf32x4_ps(tok[t % 4], 2);
						break;
					default:
						v = _mm512_extractf32x4_ps(tok[t % 4], 3);
						break;
				}
				_mm_storeu_ps(y + (base + t) * ldy + row0, v);
			}
			continue;
		}
		for (int r = 0; r < R; r++)
		{
			float		lanes[P3_GEMM_LANES];

			_mm512_storeu_ps(lanes, acc[r][g]);
			for (int t = 0; t < P3_GEMM_LANES && base + t < n_tok; t++)
				y[(base + t) * ldy + row0 + r] = lanes[t];
		}
	}
}

/* one tile of R rows x G groups, with R, G, nsub as constants */
#define TILE_CASE(RR, GG, NS) \
	tile(w, RR, p, GG, nb, NS, acc, pf)

static void
run_tile(const P3KRowBlock *const *w, int R, const P3PanelQ8K *const *p, int G, int64_t nb, int nsub,
		 __m512 acc[P3_GEMM_ROWS][TILE_GROUPS], Prefetch *pf)
{
	if (nsub == 8)
	{
		if (R == P3_GEMM_ROWS && G == 2)
			TILE_CASE(P3_GEMM_ROWS, 2, 8);
		else if (R == P3_GEMM_ROWS)
			TILE_CASE(P3_GEMM_ROWS, 1, 8);
		else if (G == 2)
			TILE_CASE(1, 2, 8);
		else
			TILE_CASE(1, 1, 8);
	}
	else
	{
		if (R == P3_GEMM_ROWS && G == 2)
			TILE_CASE(P3_GEMM_ROWS, 2, 16);
		else if (R == P3_GEMM_ROWS)
			TILE_CASE(P3_GEMM_ROWS, 1, 16);
		else if (G == 2)
			TILE_CASE(1, 2, 16);
		else
			TILE_CASE(1, 1, 16);
	}
}

/* the prefetches of rows [rb, rb + P3_GEMM_ROWS) below r1, spread over the tiles of this block */
static void
prefetch_plan(Prefetch *pf, const uint8_t *w, size_t row_bytes, int64_t rb, int64_t r1, int64_t nb,
			  int32_t n_groups)
{
	int64_t		end = rb + P3_GEMM_ROWS < r1 ? rb + P3_GEMM_ROWS : r1;
	int64_t		lines = end > rb ? (int64_t) (((size_t) (end - rb) * row_bytes + 63) / 64) : 0;
	int64_t		blocks = nb * ((n_groups + TILE_GROUPS - 1) / TILE_GROUPS);

	pf->next = (const char *) (w + (size_t) rb * row_bytes);
	pf->end = pf->next + lines * 64;
	pf->per_block = (int) ((lines + blocks - 1) / blocks);
}

/* ---------------------------------------------------------------------
 * Q4_0 / Q8_0 weights with Q8_0 activations (blocks of 32)
 * --------------------------------------------------------------------- */

/* Panels of token groups [g0, g1) from the Q8_0 rows act (row stride arow bytes). */
static void
gemm_pack_q8_0(const void *act, size_t arow, int32_t n_tok, int64_t n_in,
			   int32_t g0, int32_t g1, void *panels)
{
	int64_t		nb = n_in / 32;
	P3PanelQ8_0 *pan = panels;

	for (int32_t g = g0; g < g1; g++)
		for (int64_t i = 0; i < nb; i++)
		{
			P3PanelQ8_0 *p = &pan[(size_t) g * nb + i];

			for (int t = 0; t < P3_GEMM_LANES; t++)
			{
				int32_t		tok = g * P3_GEMM_LANES + t;
				const P3BlockQ8_0 *y = tok < n_tok ?
					(const P3BlockQ8_0 *) ((const uint8_t *) act + (size_t) tok * arow) + i : NULL;

				for (int k = 0; k < 8; k++)
				{
					uint32_t	v = 0x80808080u;

					if (y != NULL)
					{
						memcpy(&v, y->qs + 4 * k, 4);
						v ^= 0x80808080u;
					}
					memcpy(&p->qs[k][4 * t], &v, 4);
				}
				p->d[t] = y != NULL ? half_to_float(y->d) : 0.0f;
			}
		}
}

/* nr rows of Q4_0 / Q8_0 weights -> nr * nb P3S8RowBlocks, row after row */
static void
unpack_s8_rows(uint32_t type, const uint8_t *w, size_t row_bytes, int nr, int64_t nb, P3S8RowBlock *out)
{
	for (int r = 0; r < nr; r++)
		for (int64_t i = 0; i < nb; i++)
		{
			P3S8RowBlock *o = out + (size_t) r * nb + i;
			__m256i		q;
			__m256i		sum;

			if (type == P3_TYPE_Q8_0)
			{
				const P3BlockQ8_0 *b = (const P3BlockQ8_0 *) (w + (size_t) r * row_bytes) + i;

				q = _mm256_loadu_si256((const __m256i *) b->qs);
				o->d = half_to_float(b->d);
			}
			else
			{
				const P3BlockQ4_0 *b = (const P3BlockQ4_0 *) (w + (size_t) r * row_bytes) + i;
				__m128i		v = _mm_loadu_si128((const __m128i *) b->qs);
				__m256i		nib = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), _mm_set1_epi8(15)),
												   _mm_and_si128(v, _mm_set1_epi8(15)));

				q = _mm256_sub_epi8(nib, _mm256_set1_epi8(8));
				o->d = half_to_float(b->d);
			}
			_mm256_storeu_si256((__m256i *) o->q, q);
			/* Σ q (signed) as word pairs, then dwords */
			sum = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q), _mm256_set1_epi16(1));
			o->cw = 128 * sum8_epi32(sum);
		}
}

/* rows w[0..R) against token groups p[0..G) over nb blocks of 32 (as tile, without sub-blocks and mins) */
INLINE void
tile_s8(const P3S8RowBlock *const *w, const int R, const P3PanelQ8_0 *const *p, const int G,
		int64_t nb, __m512 acc[P3_GEMM_ROWS][TILE_GROUPS], Prefetch *pf)
{
#pragma GCC unroll 16
	for (int r = 0; r < R; r++)
#pragma GCC unroll 16
		for (int g = 0; g < G; g++)
			acc[r][g] = _mm512_setzero_ps();
	for (int64_t i = 0; i < nb; i++)
	{
		__m512i		sub[P3_GEMM_ROWS][TILE_GROUPS];
		const int8_t *wq[P3_GEMM_ROWS];
		PanelDwords pq[TILE_GROUPS];

		if ((i & 7) == 0)
			prefetch_some(pf);
#pragma GCC unroll 16
		for (int r = 0; r < R; r++)
			wq[r] = w[r][i].q;
#pragma GCC unroll 16
		for (int g = 0; g < G; g++)
			pq[g] = p[g][i].qs;
		dot_dwords(wq, R, pq, G, 0, 8, sub);
#pragma GCC unroll 16
		for (int r = 0; r < R; r++)
#pragma GCC unroll 16
			for (int g = 0; g < G; g++)
			{
				__m512i		s = _mm512_sub_epi32(sub[r][g], _mm512_set1_epi32(w[r][i].cw));

				acc[r][g] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),
											_mm512_mul_ps(_mm512_set1_ps(w[r][i].d), _mm512_load_ps(p[g][i].d)),
											acc[r][g]);
			}
	}
}

static void
run_tile_s8(const P3S8RowBlock *const *w, int R, const P3PanelQ8_0 *const *p, int G, int64_t nb,
			__m512 acc[P3_GEMM_ROWS][TILE_GROUPS], Prefetch *pf)
{
	if (R == P3_GEMM_ROWS && G == 2)
		tile_s8(w, P3_GEMM_ROWS, p, 2, nb, acc, pf);
	else if (R == P3_GEMM_ROWS)
		tile_s8(w, P3_GEMM_ROWS, p, 1, nb, acc, pf);
	else if (G == 2)
		tile_s8(w, 1, p, 2, nb, acc, pf);
	else
		tile_s8(w, 1, p, 1, nb, acc, pf);
}

/* ---------------------------------------------------------------------
 * the driver, for both families
 * --------------------------------------------------------------------- */

/* One register tile of either family: R rows w[] against G panels p[] (R < P3_GEMM_ROWS: one row). */
static void
tile_any(bool s8, const void *const *w, int R, const void *const *p, int G, int64_t nb, int nsub,
		 __m512 acc[P3_GEMM_ROWS][TILE_GROUPS], Prefetch *pf)
{
	if (s8)
		run_tile_s8((const P3S8RowBlock *const *) w, R, (const P3PanelQ8_0 *const *) p, G, nb, acc, pf);
	else
		run_tile((const P3KRowBlock *const *) w, R, (const P3PanelQ8K *const *) p, G, nb, nsub, acc, pf);
}

/*
 * Rows [r0, r1) of W (type; row_bytes apart from w) against the panels of
 * n_tok tokens: y[t * ldy + (r - r0) + ycol] for every token t.  rows is
 * p3_gemm_rows_bytes(n_in) bytes of scratch, 64-byte aligned.  K-quants
 * go against Q8_K panels (blocks of 256), Q4_0 / Q8_0 against Q8_0 panels
 * (blocks of 32); the loops are the same.
 */
static void
gemm_rows(uint32_t type, const uint8_t *w, size_t row_bytes, int64_t r0, int64_t r1, int64_t n_in,
		  const void *panels, int32_t n_tok, float *y, int64_t ldy, int64_t ycol, void *rows)
{
	const bool	s8 = p3_gemm_s8_type(type);
	const int64_t nb = n_in / (s8 ? 32 : P3_QK_K);
	const size_t panel_bytes = s8 ? sizeof(P3PanelQ8_0) : sizeof(P3PanelQ8K);
	const size_t block_bytes = s8 ? sizeof(P3S8RowBlock) : sizeof(P3KRowBlock);
	const int	nsub = type == P3_TYPE_Q6_K ? 16 : 8;
	const int32_t n_groups = (n_tok + P3_GEMM_LANES - 1) / P3_GEMM_LANES;
	Prefetch	pf;

	for (int64_t rb = r0; rb < r1; rb += P3_GEMM_ROWS)
	{
		int			nr = r1 - rb < P3_GEMM_ROWS ? (int) (r1 - rb) : P3_GEMM_ROWS;
		const void *wr[P3_GEMM_ROWS];

		if (s8)
			unpack_s8_rows(type, w + (size_t) rb * row_bytes, row_bytes, nr, nb, rows);
		else
			unpack_rows(type, w + (size_t) rb * row_bytes, row_bytes, nr, nb, rows);
		for (int r = 0; r < nr; r++)
			wr[r] = (const uint8_t *) rows + (size_t) r * nb * block_bytes;
		/* (the Q8_0 tiles prefetch once every 8 blocks) */
		prefetch_plan(&pf, w, row_bytes, rb + nr, r1, s8 ? (nb + 7) / 8 : nb, n_groups);
		for (int32_t g = 0; g < n_groups; g += TILE_GROUPS)
		{
			int			ng = n_groups - g < TILE_GROUPS ? n_groups - g : TILE_GROUPS;
			const void *pg[TILE_GROUPS];
			__m512		acc[P3_GEMM_ROWS][TILE_GROUPS];

			for (int k = 0; k < ng; k++)
				pg[k] = (const uint8_t *) panels + (size_t) (g + k) * nb * panel_bytes;
			if (nr == P3_GEMM_ROWS)
				tile_any(s8, wr, nr, pg, ng, nb, nsub, acc, &pf);
			else
			{
				/* a tail of rows: one at a time */
				for (int r = 0; r < nr; r++)
				{
					__m512		one[P3_GEMM_ROWS][TILE_GROUPS];

					tile_any(s8, &wr[r], 1, pg, ng, nb, nsub, one, &pf);
					for (int k = 0; k < ng; k++)
						acc[r][k] = one[0][k];
				}
			}
			store_tile(acc, nr, ng, g * P3_GEMM_LANES, n_tok, y, ldy, ycol + (rb - r0));
		}
	}
}

#pragma GCC pop_options

/* The GEMM entries of the avx512 set (compiled without the target options: it only stores pointers). */
void
p3_gemm_fill_avx512(P3KernelSet *k)
{
	k->gemm_pack[P3_TYPE_Q8_K] = gemm_pack_q8k;
	k->gemm_pack[P3_TYPE_Q8_0] = gemm_pack_q8_0;
	k->gemm[P3_TYPE_Q4_K] = gemm_rows;
	k->gemm[P3_TYPE_Q5_K] = gemm_rows;
	k->gemm[P3_TYPE_Q6_K] = gemm_rows;
	k->gemm[P3_TYPE_Q4_0] = gemm_rows;
	k->gemm[P3_TYPE_Q8_0] = gemm_rows;
}

#endif							/* __x86_64__ */
