/*
 * test_ggml_numerics.c — llama.cpp's arithmetic (P3_ACT_Q8), pinned.
 *
 * The ggml_* entries of each kernel set must give the bits of ggml's CPU
 * code of the build the set stands for: avx512 — llama.cpp's AVX-512
 * builds, avx2 — its AVX2 build, reference — ggml's generic C.  For the two
 * x86 sets the expected values below were computed by llama.cpp's own
 * libraries (libggml-cpu-zen4.so and -haswell.so of node-llama-cpp 3.21.1,
 * calling ggml_vec_dot_f16, ggml_vec_soft_max_f32, ggml_vec_swiglu_f32 and
 * ggml_vec_dot_*_q8_* on the inputs this file generates); the reference set
 * is checked against ggml's generic formulas written out here.  A scalar
 * copy of ggml_vec_dot_f16's order (emu_dot_f16, itself checked against the
 * pins) then tests K·q and V·p on many lengths.  The scalar rope and norm
 * rules (p3_rope_table_ggml, p3_rope_neox_ggml, p3_rmsnorm_ggml) are checked
 * against their formulas and shown to differ from the exact functions.
 * The avx512 set's Q4_1 / Q5_0 / Q5_1 / IQ4_XS products are the avx2 set's
 * (ggml's AVX-512 build runs its AVX2 code for them): pinned too.
 */
#include "harness.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "phi3/kernels.h"
#include "phi3/kernels_dispatch.h"
#include "phi3/quant.h"

/* the values of llama.cpp's builds (see above) */
static const uint32_t pin_dot_f16_avx512[4] = {0x418c960c, 0x4211ac9d, 0xc1e42907, 0x42f50fd5};
static const uint32_t pin_vp_f16_avx512[4] = {0x4149ee80, 0xc1487ef8, 0x4113865d, 0x40482de0};
static const uint32_t pin_softmax_avx512[21] = {0x3f3fdac6, 0x3e803cd4, 0x32bcf00d, 0x00000000, 0x2b289dc2, 0x00000000, 0x258972b2, 0x3620acf5, 0x38c7dde2, 0x2a08dac2, 0x36d1660a, 0x328fcc8d, 0x2a880410, 0x2a38bc08, 0x2646f54a, 0x25126840, 0x2e0c4b5b, 0x2e0c4b5b, 0x27c0fe56, 0x3213c195, 0x2de2885b};
static const uint32_t pin_swiglu_avx512[21] = {0xb93d4e93, 0xbb3b394a, 0xc22f36d8, 0x3a71e66c, 0x80000000, 0xbbd1b6bf, 0x80000000, 0xbc52b326, 0x3fe79cef, 0xbe37adf1, 0x4051e0e3, 0x3ebe17f4, 0xc0f28b03, 0x3d92db94, 0x3b8303b0, 0xbaac3150, 0xbc8fac15, 0x80000000, 0x3c22b6b8, 0xc2b4b608, 0x402b248e};
static const uint32_t pin_dot_f16_avx2[4] = {0x418c960c, 0x4211ac9e, 0xc1e42908, 0x42f50fd7};
static const uint32_t pin_vp_f16_avx2[4] = {0x4149ee80, 0xc1487ef9, 0x4113865e, 0x40482de8};
/* ggml_vec_dot_f32 (the f32 cache) */
static const uint32_t pin_dot_f32_avx512[4] = {0xc42028ef, 0xc4230f5f, 0xc4b301b1, 0x44958a12};
static const uint32_t pin_vp_f32_avx512[4] = {0x3fdbab80, 0xc3691af6, 0x428c399a, 0xc2c2e427};
static const uint32_t pin_dot_f32_avx2[4] = {0xc42028ef, 0xc4230f60, 0xc4b301ae, 0x44958a12};
static const uint32_t pin_vp_f32_avx2[4] = {0x3fdbab40, 0xc3691af5, 0x428c399a, 0xc2c2e42a};
/* F16 weights (vec_dot) and f32 dots over 256: the float dots' reduction */
static const uint32_t pin_float_dots_avx512[2] = {0x4334321d, 0x415a8600};
static const uint32_t pin_float_dots_avx2[2] = {0x4334321c, 0x415a8580};
static const uint32_t pin_softmax_avx2[21] = {0x3f3fdac6, 0x3e803cd4, 0x32bcf00d, 0x00000000, 0x2b289dc2, 0x00000000, 0x258972b2, 0x3620acf6, 0x38c7dde2, 0x2a08dac2, 0x36d1660b, 0x328fcc8d, 0x2a880410, 0x2a38bc08, 0x2646f54a, 0x25126840, 0x2e0c4b5b, 0x2e0c4b5b, 0x27c0fe56, 0x3213c195, 0x2de2885b};
static const uint32_t pin_swiglu_avx2[21] = {0xb93d4e93, 0xbb3b394a, 0xc22f36d8, 0x3a71e66d, 0x80000000, 0xbbd1b6bf, 0x80000000, 0xbc52b326, 0x3fe79cef, 0xbe37adf1, 0x4051e0e3, 0x3ebe17f4, 0xc0f28b03, 0x3d92db94, 0x3b8303b0, 0xbaac3150, 0xbc8fac15, 0x80000000, 0x3c22b6b8, 0xc2b4b608, 0x402b248e};
static const uint32_t pin_vec_dot_avx512[4] = {0xc1b11bfa, 0x41e55f14, 0xc1e22ab4, 0xc1932246};
static const uint32_t pin_vec_dot_avx2[4] = {0xc1b11bfa, 0x41e55f14, 0xc1e22ab4, 0xc1932246};
/* Q3_K, Q2_K, Q5_K by ggml_vec_dot_*_q8_K (llama.cpp's AVX-512 builds take other routines for Q2_K, and the avx512 set's Q5_K is not ggml's: see test_k_orders) */
static const uint32_t pin_vec_dot_k_avx512[3] = {0xc06bb774, 0x41331560, 0x42428920};
static const uint32_t pin_vec_dot_k_avx2[3] = {0xc06bb774, 0x41331560, 0x42428920};

static const P3KernelSet *sets[3];
static int	nsets;

static uint64_t rng;

static uint32_t
nx(void)
{
	rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
	return (uint32_t) (rng >> 33);
}

/* a random finite f16 of magnitude 2^-5 .. 2^3 */
static uint16_t
rh(void)
{
	uint32_t	sg = nx() & 1,
				e = 10 + nx() % 8,
				m = nx() & 1023;

	return (uint16_t) (sg << 15 | e << 10 | m);
}

static uint32_t
bits(float f)
{
	uint32_t	b;

	memcpy(&b, &f, 4);
	return b;
}

/* the lanes of the set's build: 16 (AVX-512), 8 (AVX2), 0 (generic C) */
static int
set_lanes(const P3KernelSet *k)
{
	return strcmp(k->name, "avx512") == 0 ? 16 : strcmp(k->name, "avx2") == 0 ? 8 : 0;
}

/*
 * ggml_vec_dot_f16 of W lanes written out: element i by FMA into lane i % W
 * of accumulator (i / W) % 4 over whole chunks of 4 W, accumulators (0 + 2)
 * + (1 + 3), lanes halved down to four, then (0 + 2) + (1 + 3)
 * (_mm512_reduce_add_ps) or (0 + 1) + (2 + 3) (AVX2's two hadds), the rest
 * in double; W = 0: all in double.
 */
static float
emu_dot_f16(const float *x, const float *y, int64_t n, int W)
{
	float		acc[4][16];
	double		sum;
	int64_t		np = W ? n - n % (4 * W) : 0;

	memset(acc, 0, sizeof(acc));
	for (int64_t i = 0; i < np; i++)
		acc[(i / W) % 4][i % W] = fmaf(x[i], y[i], acc[(i / W) % 4][i % W]);
	if (W)
	{
		float		l[16];

		for (int j = 0; j < W; j++)
			l[j] = (acc[0][j] + acc[2][j]) + (acc[1][j] + acc[3][j]);
		for (int h = W / 2; h >= 4; h /= 2)
			for (int j = 0; j < h; j++)
				l[j] = l[j] + l[j + h];
		sum = W == 16 ? (l[0] + l[2]) + (l[1] + l[3]) : (l[0] + l[1]) + (l[2] + l[3]);
	}
	else
		sum = 0.0;
	for (int64_t i = np; i < n; i++)
		sum += (double) (x[i] * y[i]);
	return (float) sum;
}

static void
check_pins(const char *what, const char *set, const float *got, const uint32_t *want, int n)
{
	for (int i = 0; i < n; i++)
		CHECK_MSG(bits(got[i]) == want[i], "%s %s [%d]: 0x%08x, llama.cpp 0x%08x", set, what, i, bits(got[i]), want[i]);
}

/* K·q: the four pinned dots, then the emulation on every length 1 .. 300 */
static void
test_dot_f16(void)
{
	static const int ns[4] = {16, 96, 100, 200};

	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];
		int			W = set_lanes(k);
		float		got[4],
					emu[4];

		rng = 1;
		for (int t = 0; t < 4; t++)
		{
			uint16_t	kk[200],
						qq[200];
			float		kf[200],
						qf[200];

			for (int i = 0; i < ns[t]; i++)
			{
				kk[i] = rh();
				qq[i] = rh();
				kf[i] = p3_fp16_to_fp32(kk[i]);
				qf[i] = p3_fp16_to_fp32(qq[i]);
			}
			got[t] = k->ggml_dot_f16(qf, kk, ns[t]);
			emu[t] = emu_dot_f16(kf, qf, ns[t], W);
		}
		if (W == 16)
			check_pins("ggml_dot_f16", k->name, got, pin_dot_f16_avx512, 4);
		else if (W == 8)
			check_pins("ggml_dot_f16", k->name, got, pin_dot_f16_avx2, 4);
		if (W)
			check_pins("emu_dot_f16", k->name, emu, W == 16 ? pin_dot_f16_avx512 : pin_dot_f16_avx2, 4);
		for (int t = 0; t < 4; t++)
			CHECK_MSG(bits(got[t]) == bits(emu[t]), "%s ggml_dot_f16 n %d: %.9g, ggml's order %.9g", k->name, ns[t], got[t], emu[t]);

		rng = 11;
		for (int n = 1; n <= 300; n++)
		{
			uint16_t	kk[300];
			float		kf[300],
						qf[300],
						g,
						e;

			for (int i = 0; i < n; i++)
			{
				kk[i] = rh();
				kf[i] = p3_fp16_to_fp32(kk[i]);
				qf[i] = p3_fp16_to_fp32(rh());
			}
			g = k->ggml_dot_f16(qf, kk, n);
			e = emu_dot_f16(kf, qf, n, W);
			CHECK_MSG(bits(g) == bits(e), "%s ggml_dot_f16 n %d: %.9g, ggml's order %.9g", k->name, n, g, e);
		}
	}
}

/*
 * The scores of queries against a run of keys (ggml_dot_f16_keys): for
 * every set the bits of ggml_dot_f16 on each query and key, for head sizes
 * with and without leftover elements (and past the avx512 set's transposed
 * path, 256), runs of keys that are and are not a multiple of 16, 1 to 5
 * queries at a stride, rows at a stride with other data between them, and
 * nothing written past a query's keys.
 */
static void
test_dot_f16_keys(void)
{
	static const int heads[] = {1, 16, 32, 64, 80, 96, 100, 127, 128, 160, 200, 256, 300};
	static const int runs[] = {1, 7, 8, 9, 15, 16, 17, 31, 40, 65};
	static const int queries[] = {1, 2, 3, 5};
	enum {MAXH = 300, STRIDE = 2 * MAXH + 6, MAXK = 65, MAXQ = 5, QSTRIDE = MAXH + 3, OSTRIDE = MAXK + 2};
	static uint16_t kc[MAXK * STRIDE];

	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];

		rng = 21;
		for (size_t i = 0; i < sizeof(kc) / sizeof(kc[0]); i++)
			kc[i] = rh();
		for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++)
			for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++)
				for (size_t m = 0; m < sizeof(queries) / sizeof(queries[0]); m++)
				{
					int			n = heads[h],
								nk = runs[r],
								nq = queries[m];
					static float qf[MAXQ * QSTRIDE],
								got[MAXQ * OSTRIDE];

					for (int i = 0; i < nq * QSTRIDE; i++)
						qf[i] = p3_fp16_to_fp32(rh());
					for (int i = 0; i < MAXQ * OSTRIDE; i++)
						got[i] = 12345.0f;
					k->ggml_dot_f16_keys(qf, QSTRIDE, nq, (const uint8_t *) kc, STRIDE * sizeof(uint16_t), nk, n,
										 got, OSTRIDE);
					for (int i = 0; i < nq; i++)
					{
						for (int j = nk; j < OSTRIDE; j++)
							CHECK_MSG(got[i * OSTRIDE + j] == 12345.0f, "%s ggml_dot_f16_keys wrote past key %d of query %d",
									  k->name, nk, i);
						for (int j = 0; j < nk; j++)
						{
							float		e = k->ggml_dot_f16(qf + i * QSTRIDE, kc + (size_t) j * STRIDE, n);

							CHECK_MSG(bits(got[i * OSTRIDE + j]) == bits(e),
									  "%s ggml_dot_f16_keys head %d, %d keys, %d queries, query %d key %d: %.9g, ggml_dot_f16 %.9g",
									  k->name, n, nk, nq, i, j, got[i * OSTRIDE + j], e);
						}
					}
				}
	}
}

/* V·p as over ggml's transposed V (n_kv a multiple of 256, zeros past npos) */
static void
emu_vp(float *out, const float *p, const uint16_t *v, int32_t npos, int32_t hd, int W)
{
	int32_t		nkv = (npos + 255) / 256 * 256;
	float	   *col = calloc((size_t) nkv, sizeof(float));
	float	   *pp = calloc((size_t) nkv, sizeof(float));

	memcpy(pp, p, (size_t) npos * sizeof(float));
	for (int32_t d = 0; d < hd; d++)
	{
		for (int32_t j = 0; j < npos; j++)
			col[j] = p3_fp16_to_fp32(v[(size_t) j * hd + d]);
		out[d] = emu_dot_f16(col, pp, nkv, W);
	}
	free(col);
	free(pp);
}

static void
test_vp_f16(void)
{
	static const int32_t hds[5] = {4, 16, 96, 100, 160};	/* 160: more than 8 registers of a head */
	static const int32_t nps[6] = {1, 5, 64, 65, 200, 513};
	float	   *slots = malloc(P3_GGML_VP_SLOTS * 160 * sizeof(float));
	uint16_t   *v = malloc(513 * 160 * sizeof(uint16_t));
	float		p[513],
				got[160],
				emu[160];

	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];
		int			W = set_lanes(k);

		/* the pinned case: 200 positions of 4 dims, p from f16 */
		rng = 2;
		for (int j = 0; j < 200; j++)
		{
			for (int d = 0; d < 4; d++)
				v[j * 4 + d] = rh();
			p[j] = p3_fp16_to_fp32(rh() & 0x3fff);
		}
		k->ggml_vp_f16(got, p, (const uint8_t *) v, 4 * sizeof(uint16_t), 200, 4, slots);
		if (W)
			check_pins("ggml_vp_f16", k->name, got, W == 16 ? pin_vp_f16_avx512 : pin_vp_f16_avx2, 4);
		for (int h = 0; h < 5; h++)
			for (int c = 0; c < 6; c++)
			{
				int32_t		hd = hds[h],
							np = nps[c];

				rng = 100 + h * 10 + c;
				for (int32_t j = 0; j < np; j++)
				{
					for (int32_t d = 0; d < hd; d++)
						v[j * hd + d] = rh();
					p[j] = p3_fp16_to_fp32(rh() & 0x3fff);
				}
				k->ggml_vp_f16(got, p, (const uint8_t *) v, (size_t) hd * sizeof(uint16_t), np, hd, slots);
				emu_vp(emu, p, v, np, hd, W);
				for (int32_t d = 0; d < hd; d++)
					CHECK_MSG(bits(got[d]) == bits(emu[d]), "%s ggml_vp_f16 hd %d npos %d dim %d: %.9g, ggml's order %.9g",
							  k->name, hd, np, d, got[d], emu[d]);
				/* the same in pieces (the cache's blocks of 16, and odd pieces) */
				for (int32_t piece = 16; piece <= 23; piece += 7)
				{
					memset(slots, 0, P3_GGML_VP_SLOTS * (size_t) hd * sizeof(float));
					for (int32_t j0 = 0; j0 < np; j0 += piece)
						k->ggml_vp_f16_acc(slots, p + j0, (const uint8_t *) (v + (size_t) j0 * hd), (size_t) hd * sizeof(uint16_t),
										   j0, np - j0 < piece ? np - j0 : piece, hd);
					k->ggml_vp_finish(got, slots, hd);
					for (int32_t d = 0; d < hd; d++)
						CHECK_MSG(bits(got[d]) == bits(emu[d]), "%s ggml_vp_f16_acc pieces of %d, hd %d npos %d dim %d: %.9g, ggml's order %.9g",
								  k->name, piece, hd, np, d, got[d], emu[d]);
				}
			}
	}
	free(slots);
	free(v);
}

/*
 * V·p of several tokens over a cache stored in blocks (ggml_vp_f16_blocks,
 * attention_group's f16 case): every query's output the bits of ggml's
 * order, for 1 to 6 queries (past the avx512 set's four at once) with
 * different position counts, blocks of 16 and of 5 rows with other heads'
 * rows between them, head sizes below, at and past 96 (the avx512 set's
 * pass), and nothing written past a query's output.
 */
static void
test_vp_f16_blocks(void)
{
	static const int32_t hds[] = {4, 16, 96, 100, 200};
	static const int32_t blks[] = {16, 5};
	static const int32_t counts[][6] = {{1}, {65, 64}, {200, 201, 202}, {7, 513, 64, 1}, {130, 131, 132, 133, 134},
	{3, 80, 64, 65, 300, 2}};
	enum {MAXH = 200, MAXP = 513, HEADS = 3, OSTRIDE = MAXH + 5};
	uint16_t   *cache = malloc((size_t) MAXP * HEADS * MAXH * sizeof(uint16_t));
	uint16_t   *rows = malloc((size_t) MAXP * MAXH * sizeof(uint16_t));
	float	   *slots = malloc((size_t) P3_GGML_VP_QUERIES * P3_GGML_VP_SLOTS * MAXH * sizeof(float));
	static float p[6 * MAXP],
				got[6 * OSTRIDE],
				emu[MAXH];

	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];
		int			W = set_lanes(k);

		for (size_t h = 0; h < sizeof(hds) / sizeof(hds[0]); h++)
			for (size_t b = 0; b < sizeof(blks) / sizeof(blks[0]); b++)
				for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++)
				{
					int32_t		hd = hds[h],
								blk = blks[b],
								nq = 0,
								npos[6];
					size_t		rstride = (size_t) hd * sizeof(uint16_t),
								bstride = (size_t) blk * HEADS * rstride;

					for (int i = 0; i < 6 && counts[c][i] > 0; i++)
						npos[nq++] = counts[c][i];
					rng = 300 + (uint32_t) (h * 100 + b * 10 + c);
					for (size_t e = 0; e < (size_t) MAXP * HEADS * MAXH; e++)
						cache[e] = rh();
					for (int i = 0; i < 6 * MAXP; i++)
						p[i] = p3_fp16_to_fp32(rh() & 0x3fff);
					for (int i = 0; i < 6 * OSTRIDE; i++)
						got[i] = 12345.0f;
					/* head 1 of the cache; the rows of position j, contiguous, for ggml's order */
					for (int32_t j = 0; j < MAXP; j++)
						memcpy(rows + (size_t) j * hd, (const uint8_t *) cache + (size_t) (j / blk) * bstride +
							   ((size_t) blk + (size_t) (j % blk)) * rstride, rstride);
					k->ggml_vp_f16_blocks(got, OSTRIDE, p, MAXP, npos, nq, (const uint8_t *) cache + (size_t) blk * rstride,
										  blk, bstride, rstride, hd, slots);
					for (int i = 0; i < nq; i++)
					{
						emu_vp(emu, p + (size_t) i * MAXP, rows, npos[i], hd, W);
						for (int32_t d = 0; d < hd; d++)
							CHECK_MSG(bits(got[i * OSTRIDE + d]) == bits(emu[d]),
									  "%s ggml_vp_f16_blocks hd %d blk %d, %d queries, query %d (%d positions) dim %d: %.9g, ggml's order %.9g",
									  k->name, hd, blk, nq, i, npos[i], d, got[i * OSTRIDE + d], emu[d]);
						for (int32_t d = hd; d < OSTRIDE; d++)
							CHECK_MSG(got[i * OSTRIDE + d] == 12345.0f, "%s ggml_vp_f16_blocks wrote past dim %d", k->name, hd);
					}
				}
	}
	free(slots);
	free(rows);
	free(cache);
}

/* the float dots of F16 / F32 weights: ggml_vec_dot_f16 / _f32 over whole chunks (reduce4's order) */
static void
test_float_dots(void)
{
	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];
		int			W = set_lanes(k);
		static uint16_t w[256];
		static float x[256],
					a[256],
					b[256];
		float		got[2];

		if (!W)
			continue;
		rng = 12;
		for (int i = 0; i < 256; i++)
		{
			w[i] = rh();
			x[i] = p3_fp16_to_fp32(rh());
		}
		got[0] = k->vec_dot[P3_TYPE_F16] (w, x, 256);
		for (int i = 0; i < 256; i++)
		{
			a[i] = (float) ((int) (nx() % 200001) - 100000) / 3333.0f;
			b[i] = (float) ((int) (nx() % 200001) - 100000) / 7777.0f;
		}
		got[1] = k->dot_f32_f32(a, b, 256);
		check_pins("vec_dot F16, dot_f32_f32", k->name, got, W == 16 ? pin_float_dots_avx512 : pin_float_dots_avx2, 2);
	}
}

/* the f32 cache: ggml_vec_dot_f32 for K·q (leftovers in float) and for V·p; n = 100 reaches the FMA tail */
static float
emu_dot_f32(const float *x, const float *y, int64_t n, int W)
{
	int64_t		np = W ? n - n % (4 * W) : 0;
	float		head = emu_dot_f16(x, y, np, W);	/* the chunks: the same lanes and reduction */

	if (!W)
	{
		double		sum = 0.0;

		for (int64_t i = 0; i < n; i++)
			sum += (double) (x[i] * y[i]);
		return (float) sum;
	}
	/* GCC's vectorised loop in llama.cpp's builds: products of groups of W and one of W / 2 added in order, then FMAs */
	{
		int64_t		m = np + (n - np) / W * W;

		if (n - m >= W / 2)
			m += W / 2;
		for (int64_t i = np; i < n; i++)
		{
			float		p = x[i] * y[i];

			head = i < m ? head + p : fmaf(x[i], y[i], head);
		}
	}
	return head;
}

static void
test_f32_cache(void)
{
	static const int ns[4] = {16, 96, 100, 200};
	float	   *slots = malloc(P3_GGML_VP_SLOTS * 100 * sizeof(float));

	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];
		int			W = set_lanes(k);
		float		got[4],
					emu[4];
		static float v[200 * 4],
					col[256],
					p[256];

		rng = 8;
		for (int t = 0; t < 4; t++)
		{
			float		kf[200],
						qf[200];

			for (int i = 0; i < ns[t]; i++)
			{
				kf[i] = (float) ((int) (nx() % 200001) - 100000) / 3333.0f;
				qf[i] = (float) ((int) (nx() % 200001) - 100000) / 7777.0f;
			}
			got[t] = k->ggml_dot_f32(qf, kf, ns[t]);
			emu[t] = emu_dot_f32(kf, qf, ns[t], W);
			CHECK_MSG(bits(got[t]) == bits(emu[t]), "%s ggml_dot_f32 n %d: %.9g, ggml's order %.9g", k->name, ns[t], got[t], emu[t]);
		}
		if (W)
		{
			check_pins("ggml_dot_f32", k->name, got, W == 16 ? pin_dot_f32_avx512 : pin_dot_f32_avx2, 4);
			check_pins("emu_dot_f32", k->name, emu, W == 16 ? pin_dot_f32_avx512 : pin_dot_f32_avx2, 4);
		}
		rng = 9;
		memset(p, 0, sizeof(p));
		for (int j = 0; j < 200; j++)
		{
			for (int d = 0; d < 4; d++)
				v[j * 4 + d] = (float) ((int) (nx() % 200001) - 100000) / 3333.0f;
			p[j] = (float) (nx() % 65536) / 65536.0f;
		}
		k->ggml_vp_f32(got, p, (const uint8_t *) v, 4 * sizeof(float), 200, 4, slots);
		for (int d = 0; d < 4; d++)
		{
			memset(col, 0, sizeof(col));
			for (int j = 0; j < 200; j++)
				col[j] = v[j * 4 + d];
			emu[d] = emu_dot_f32(col, p, 256, W);
			CHECK_MSG(bits(got[d]) == bits(emu[d]), "%s ggml_vp_f32 dim %d: %.9g, ggml's order %.9g", k->name, d, got[d], emu[d]);
		}
		if (W)
			check_pins("ggml_vp_f32", k->name, got, W == 16 ? pin_vp_f32_avx512 : pin_vp_f32_avx2, 4);
		/* the same in pieces of 16 */
		memset(slots, 0, P3_GGML_VP_SLOTS * 4 * sizeof(float));
		for (int32_t j0 = 0; j0 < 200; j0 += 16)
			k->ggml_vp_f32_acc(slots, p + j0, (const uint8_t *) (v + (size_t) j0 * 4), 4 * sizeof(float), j0,
							   200 - j0 < 16 ? 200 - j0 : 16, 4);
		k->ggml_vp_finish(got, slots, 4);
		for (int d = 0; d < 4; d++)
			CHECK_MSG(bits(got[d]) == bits(emu[d]), "%s ggml_vp_f32_acc dim %d: %.9g, ggml's order %.9g", k->name, d, got[d], emu[d]);
	}
	free(slots);
}

/* softmax and SwiGLU: the pinned rows (reference set: libm's expf, sums in double) */
static void
test_softmax_swiglu(void)
{
	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];
		int			W = set_lanes(k);
		float		x[21],
					y[21],
					g[21],
					u[21],
					want[21];

		rng = 3;
		for (int i = 0; i < 21; i++)
			x[i] = (float) ((int) (nx() % 40000) - 30000) / 1000.0f;
		x[3] = -100.0f;
		x[5] = -150.0f;
		memcpy(y, x, sizeof(x));
		k->ggml_softmax(y, 21);
		if (W)
			check_pins("ggml_softmax", k->name, y, W == 16 ? pin_softmax_avx512 : pin_softmax_avx2, 21);
		else
		{
			/* ggml_vec_soft_max_f32 without SIMD */
			float		max = x[0];
			double		sum = 0.0;

			for (int i = 1; i < 21; i++)
				max = x[i] > max ? x[i] : max;
			for (int i = 0; i < 21; i++)
			{
				want[i] = expf(x[i] - max);
				sum += (double) want[i];
			}
			for (int i = 0; i < 21; i++)
			{
				want[i] *= (float) (1.0 / sum);
				CHECK_MSG(bits(y[i]) == bits(want[i]), "reference ggml_softmax [%d]", i);
			}
		}

		rng = 4;
		for (int i = 0; i < 21; i++)
		{
			g[i] = (float) ((int) (nx() % 2000) - 1000) / 100.0f;
			u[i] = (float) (nx() % 65536) / 32768.0f - 1.0f;
		}
		g[2] = 95.0f;
		g[4] = -100.0f;
		g[6] = -130.0f;
		g[17] = -100.0f;
		g[19] = 95.0f;
		k->ggml_swiglu(y, g, u, 21);
		if (W)
			check_pins("ggml_swiglu", k->name, y, W == 16 ? pin_swiglu_avx512 : pin_swiglu_avx2, 21);
		else
			for (int i = 0; i < 21; i++)
			{
				want[i] = (g[i] / (1.0f + expf(-g[i]))) * u[i];
				CHECK_MSG(bits(y[i]) == bits(want[i]), "reference ggml_swiglu [%d]", i);
			}
	}
}

/*
 * A random weight row of type (n <= 1024 elements) into w and random
 * activations in its vec_dot_type into q; returns k's vec_dot of them.
 */
static float
random_vec_dot(const P3KernelSet *k, uint32_t type, int64_t n, uint8_t *w, uint8_t *q)
{
	float		x[1024],
				a[1024];

	for (int64_t i = 0; i < n; i++)
	{
		x[i] = (float) (nx() % 65536) / 32768.0f - 1.0f;
		a[i] = (float) (nx() % 65536) / 8192.0f - 4.0f;
	}
	p3_quantize_row_ref(type, x, w, n);
	p3_quantize_act_row_ref(p3_type_traits(type)->vec_dot_type, a, q, n);
	return k->vec_dot[type] (w, q, n);
}

/* Q4_1, Q5_0, Q5_1, IQ4_XS: the x86 sets give ggml's AVX2 vec_dot (both builds run it) */
static void
test_vec_dot_orders(void)
{
	static const uint32_t ty[4] = {P3_TYPE_Q4_1, P3_TYPE_Q5_0, P3_TYPE_Q5_1, P3_TYPE_IQ4_XS};

	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];
		int			W = set_lanes(k);
		float		got[4];

		if (!W)
			continue;
		rng = 5;
		for (int t = 0; t < 4; t++)
		{
			static uint8_t w[4096],
						q[4096];

			got[t] = random_vec_dot(k, ty[t], 512, w, q);
		}
		check_pins("vec_dot q4_1 q5_0 q5_1 iq4_xs", k->name, got, W == 16 ? pin_vec_dot_avx512 : pin_vec_dot_avx2, 4);
	}
}

/*
 * Q2_K in llama.cpp's AVX-512 builds goes through the repack buffer
 * (ggml_gemv_q2_K_8x8_q8_K): per block the exact integer sums of
 * (scale & 15) * code * y and of (scale >> 4) * bsum, FMA'd by d * dy and
 * dmin * dy into two float chains, the result their difference.
 */
static float
emu_q2k_repack(const uint8_t *w, const uint8_t *a, int64_t n)
{
	float		acc = 0.0f,
				accm = 0.0f;

	for (int64_t i = 0; i < n / 256; i++)
	{
		/* block_q2_K: scales[16], qs[64], d, dmin; block_q8_K: d, qs[256], bsums[16] */
		const uint8_t *b = w + i * 84;
		const uint8_t *y = a + i * 292;
		float		dy;
		int16_t		bs[16];
		int64_t		S = 0,
					M = 0;
		uint16_t	hd,
					hm;

		memcpy(&dy, y, 4);
		memcpy(bs, y + 4 + 256, 32);
		memcpy(&hd, b + 80, 2);
		memcpy(&hm, b + 82, 2);
		for (int e = 0; e < 256; e++)
		{
			int			nb = e / 128,
						j = (e % 128) / 32,
						l = e % 32;
			int			q = (b[16 + 32 * nb + l] >> (2 * j)) & 3;
			int			sc = b[nb * 8 + 2 * j + l / 16] & 15;

			S += (int64_t) sc * q * (int8_t) y[4 + e];
		}
		for (int g = 0; g < 16; g++)
			M += (int64_t) (b[g] >> 4) * bs[g];
		acc = fmaf((float) S, p3_fp16_to_fp32(hd) * dy, acc);
		accm = fmaf((float) M, p3_fp16_to_fp32(hm) * dy, accm);
	}
	return acc - accm;
}

/*
 * Q4_K through llama.cpp's repack routine (ggml_gemv_q4_K_8x8_q8_K, its AVX2
 * code in both builds): per block the exact sums of sc * code * y and of
 * m * (bsum pair), two chains, their difference (the avx2 set's Q4_K).
 */
static float
emu_q4k_repack(const uint8_t *w, const uint8_t *a, int64_t n)
{
	float		acc = 0.0f,
				accm = 0.0f;

	for (int64_t i = 0; i < n / 256; i++)
	{
		/* block_q4_K: d, dmin, scales[12], qs[128] */
		const uint8_t *b = w + i * 144;
		const uint8_t *sc = b + 4;
		const uint8_t *y = a + i * 292;
		float		dy;
		int16_t		bs[16];
		int64_t		S = 0,
					M = 0;
		uint16_t	hd,
					hm;

		memcpy(&hd, b, 2);
		memcpy(&hm, b + 2, 2);
		memcpy(&dy, y, 4);
		memcpy(bs, y + 4 + 256, 32);
		for (int j = 0; j < 8; j++)
		{
			int			s6 = j < 4 ? sc[j] & 63 : (sc[j + 4] & 15) | ((sc[j - 4] >> 6) << 4);
			int			m6 = j < 4 ? sc[j + 4] & 63 : (sc[j + 4] >> 4) | ((sc[j] >> 6) << 4);

			for (int l = 0; l < 32; l++)
				S += (int64_t) s6 * ((b[16 + 32 * (j / 2) + l] >> (4 * (j % 2))) & 15) * (int8_t) y[4 + 32 * j + l];
			M += (int64_t) m6 * (bs[2 * j] + bs[2 * j + 1]);
		}
		acc = fmaf((float) S, p3_fp16_to_fp32(hd) * dy, acc);
		accm = fmaf((float) M, p3_fp16_to_fp32(hm) * dy, accm);
	}
	return acc - accm;
}

/*
 * Q3_K (both x86 sets: ggml's AVX2 vec_dot), Q2_K (avx2: ggml's AVX2
 * vec_dot; avx512: the repack rule), Q5_K (avx2: ggml's AVX2 vec_dot) and
 * Q4_K (avx2: the repack rule).
 */
static void
test_k_orders(void)
{
	static const uint32_t ty[3] = {P3_TYPE_Q3_K, P3_TYPE_Q2_K, P3_TYPE_Q5_K};

	for (int s = 0; s < nsets; s++)
	{
		const P3KernelSet *k = sets[s];
		int			W = set_lanes(k);
		float		got[3];

		if (!W)
			continue;
		rng = 7;
		for (int t = 0; t < 3; t++)
		{
			static uint8_t w[4096],
						q[4096];

			got[t] = random_vec_dot(k, ty[t], 512, w, q);
			if (W == 16 && ty[t] == P3_TYPE_Q2_K)
			{
				float		e = emu_q2k_repack(w, q, 512);

				CHECK_MSG(bits(got[t]) == bits(e), "avx512 Q2_K %.9g, the repack rule %.9g", got[t], e);
			}
		}
		check_pins("vec_dot q3_k q2_k q5_k", k->name, got, W == 16 ? pin_vec_dot_k_avx512 : pin_vec_dot_k_avx2, W == 16 ? 1 : 3);
		if (W == 8)
			for (int r = 0; r < 200; r++)
			{
				static uint8_t w[8192],
							q[8192];
				float		g = random_vec_dot(k, P3_TYPE_Q4_K, 1024, w, q);
				float		e = emu_q4k_repack(w, q, 1024);

				CHECK_MSG(bits(g) == bits(e), "avx2 Q4_K row %d: %.9g, the repack rule %.9g", r, g, e);
			}
		/* more rows: the repack rule on random blocks */
		if (W == 16)
			for (int r = 0; r < 200; r++)
			{
				static uint8_t w[8192],
							q[8192];
				float		g = random_vec_dot(k, P3_TYPE_Q2_K, 1024, w, q);
				float		e = emu_q2k_repack(w, q, 1024);

				CHECK_MSG(bits(g) == bits(e), "avx512 Q2_K row %d: %.9g, the repack rule %.9g", r, g, e);
			}
	}
}

/* the scalar rules: their formulas, and not the exact functions' bits */
static void
test_rope_norm(void)
{
	float		cs[96],
				exact[96];
	int			differ = 0;

	for (int32_t pos = 0; pos < 4096; pos += 37)
	{
		float		theta = (float) pos,
					scale = powf(10000.0f, -2.0f / 96.0f);

		p3_rope_table_ggml(cs, pos, 96, 10000.0f, NULL, 1.0f);
		p3_rope_table(exact, pos, 96, 10000.0f, NULL, 1.0f);
		for (int i = 0; i < 48; i++)
		{
			CHECK(bits(cs[2 * i]) == bits(cosf(theta)) && bits(cs[2 * i + 1]) == bits(sinf(theta)));
			differ += bits(cs[2 * i]) != bits(exact[2 * i]);
			theta *= scale;
		}
	}
	CHECK_MSG(differ > 0, "the float θ chain never differed from the exact table");

	rng = 6;
	differ = 0;
	for (int r = 0; r < 1000; r++)
	{
		float		x[8],
					y[8],
					c[8],
					want[8];

		for (int i = 0; i < 8; i++)
			x[i] = y[i] = (float) (nx() % 65536) / 8192.0f - 4.0f;
		for (int i = 0; i < 4; i++)
		{
			float		t = (float) (nx() % 6283) / 1000.0f;

			c[2 * i] = cosf(t);
			c[2 * i + 1] = sinf(t);
			want[i] = fmaf(x[i], c[2 * i], -(x[i + 4] * c[2 * i + 1]));
			want[i + 4] = fmaf(x[i], c[2 * i + 1], x[i + 4] * c[2 * i]);
		}
		p3_rope_neox_ggml(x, 8, c);
		p3_rope_neox(y, 8, c);
		for (int i = 0; i < 8; i++)
		{
			CHECK(bits(x[i]) == bits(want[i]));
			differ += bits(x[i]) != bits(y[i]);
		}
	}
	CHECK_MSG(differ > 0, "the fused rotation never differed from the plain one");

	{
		float		x[64],
					w[64],
					o[64],
					e[64];
		int			nd = 0;

		for (int r = 0; r < 2000; r++)
		{
			double		sum = 0.0;
			float		scale;

			for (int i = 0; i < 64; i++)
			{
				x[i] = (float) ((int) (nx() % 2000001) - 1000000) / 77777.0f;
				w[i] = (float) (nx() % 65536) / 32768.0f;
				sum += (double) (x[i] * x[i]);
			}
			scale = 1.0f / sqrtf((float) (sum / 64.0) + 1e-5f);
			p3_rmsnorm_ggml(o, x, w, 64, 1e-5f);
			p3_rmsnorm(e, x, w, 64, 1e-5f);
			for (int i = 0; i < 64; i++)
			{
				CHECK(bits(o[i]) == bits((x[i] * scale) * w[i]));
				nd += bits(o[i]) != bits(e[i]);
			}
		}
		CHECK_MSG(nd > 0, "float squares never changed the norm");
	}
}

int
main(void)
{
	static const char *const names[] = {"reference", "avx2", "avx512"};
	const char *preload = getenv("LD_PRELOAD");
	bool		valgrind = preload != NULL && strstr(preload, "vgpreload") != NULL;

	for (int i = 0; i < 3; i++)
	{
		const P3KernelSet *k = p3_kernels_by_name(names[i]);

		/* valgrind runs no AVX-512 */
		if (k != NULL && !(valgrind && strcmp(names[i], "avx512") == 0))
			sets[nsets++] = k;
	}
	RUN(test_dot_f16);
	RUN(test_dot_f16_keys);
	RUN(test_vp_f16);
	RUN(test_vp_f16_blocks);
	RUN(test_f32_cache);
	RUN(test_float_dots);
	RUN(test_softmax_swiglu);
	RUN(test_vec_dot_orders);
	RUN(test_k_orders);
	RUN(test_rope_norm);
	return harness_finish();
}
