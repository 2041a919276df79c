/*
 * test_sampler.c — unit tests of the sampler (src/engine/sampler.c).
 *
 * The RNG is pinned against numbers from an independent implementation;
 * the filters (top-k, top-p, min-p) are checked on hand-made distributions
 * by which tokens can ever be drawn and by the drawn frequencies, which must
 * match the softmax renormalised over exactly the expected kept set; the
 * draw itself is checked token by token against a straightforward reference
 * that walks the sorted candidates with the same random numbers.
 */
#include "harness.h"

#include "phi3/sampler.h"

#include <float.h>

#define MAX_V 4096

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static void
mask_set(uint32_t *mask, int32_t id)
{
	mask[id >> 5] |= 1u << (id & 31);
}

static bool
mask_has(const uint32_t *mask, int32_t id)
{
	return ((mask[id >> 5] >> (id & 31)) & 1u) != 0;
}

/* Sampling parameters with every filter off: plain softmax at temperature t. */
static P3SamplerParams
plain_params(float t, uint64_t seed)
{
	P3SamplerParams p = p3_sampler_default_params();

	p.temperature = t;
	p.top_k = 0;
	p.top_p = 1.0f;
	p.min_p = 0.0f;
	p.repeat_penalty = 1.0f;
	p.seed = seed;
	return p;
}

static P3Sampler *
make_sampler(const P3SamplerParams *p, int32_t n_vocab)
{
	P3Sampler  *s = NULL;
	P3Error		err;

	p3_error_clear(&err);
	CHECK_STATUS(p3_sampler_new(p, n_vocab, &s, &err), P3_OK);
	CHECK(s != NULL);
	return s;
}

/* Draw n_draws tokens into counts[0, v); returns the number of failed calls. */
static int
draw_counts(P3Sampler *s, const float *logits, const uint32_t *mask, int v,
			int n_draws, long *counts)
{
	int			failures = 0;

	memset(counts, 0, sizeof(long) * v);
	for (int i = 0; i < n_draws; i++)
	{
		int32_t		tok = -1;
		P3Error		err;

		if (p3_sampler_sample(s, logits, mask, &tok, &err) != P3_OK || tok < 0 || tok >= v)
		{
			failures++;
			continue;
		}
		counts[tok]++;
	}
	return failures;
}

/*
 * Compare counts against probabilities: a token of probability 0 must never
 * appear, every other one must be within 5 standard deviations (+1).
 */
static void
check_frequencies(const long *counts, const double *prob, int v, int n_draws)
{
	for (int i = 0; i < v; i++)
	{
		double		expect = prob[i] * n_draws;
		double		sd = sqrt(n_draws * prob[i] * (1.0 - prob[i]));

		if (prob[i] == 0.0)
			CHECK_MSG(counts[i] == 0, "token %d has probability 0 but was drawn %ld times", i, counts[i]);
		else
			CHECK_MSG(fabs((double) counts[i] - expect) <= 5.0 * sd + 1.0,
					  "token %d drawn %ld times, expected %.1f (sd %.1f)", i, counts[i], expect, sd);
	}
}

/* Softmax of logits/temperature restricted to the tokens with keep[i]. */
static void
softmax_over(const float *logits, const bool *keep, int v, double temperature, double *prob)
{
	double		max_logit = -INFINITY;
	double		total = 0.0;

	for (int i = 0; i < v; i++)
		if (keep[i] && logits[i] > max_logit)
			max_logit = logits[i];
	for (int i = 0; i < v; i++)
	{
		prob[i] = keep[i] ? exp(((double) logits[i] - max_logit) / temperature) : 0.0;
		total += prob[i];
	}
	for (int i = 0; i < v; i++)
		prob[i] /= total;
}

/* Logits log(p) of a hand-made distribution. */
static void
logits_from_probs(const double *p, int v, float *logits)
{
	for (int i = 0; i < v; i++)
		logits[i] = (float) log(p[i]);
}

/* qsort order of token ids: larger logit first, smaller id on ties. */
static const float *sort_logits;

static int
cmp_desc(const void *a, const void *b)
{
	int			ia = *(const int *) a;
	int			ib = *(const int *) b;

	if (sort_logits[ia] != sort_logits[ib])
		return sort_logits[ia] > sort_logits[ib] ? -1 : 1;
	return ia < ib ? -1 : 1;
}

static void
sorted_ids(const float *logits, int v, int *order)
{
	for (int i = 0; i < v; i++)
		order[i] = i;
	sort_logits = logits;
	qsort(order, v, sizeof(int), cmp_desc);
}

/* ------------------------------------------------------------------------
 * RNG
 * ------------------------------------------------------------------------ */

/*
 * Expected values computed once by an independent Python implementation of
 * splitmix64 seeding + xoshiro256** (arbitrary-precision ints masked to 64
 * bits, written from Blackman & Vigna's description) and pasted here.
 */
static void
test_rng_pinned(void)
{
	static const uint64_t seed42[6] = {
		0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull,
		0xecb8ad4703b360a1ull, 0xfde6dc7fe2ec5e64ull, 0xc50da53101795238ull
	};
	static const uint64_t seed0[6] = {
		0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull,
		0x6aa594f1262d2d2cull, 0xbba5ad4a1f842e59ull, 0xffef8375d9ebcacaull
	};
	/* the top 24 bits of the seed-42 outputs, from the same script */
	static const uint32_t seed42_top24[6] = {1406987, 6358233, 11409235, 15513773, 16639708, 12914085};
	P3Rng		rng;

	p3_rng_seed(&rng, 42);
	CHECK(rng.s[0] == 0xbdd732262feb6e95ull);
	CHECK(rng.s[3] == 0x581ce1ff0e4ae394ull);
	for (int i = 0; i < 6; i++)
		CHECK_MSG(p3_rng_next(&rng) == seed42[i], "seed 42 output %d", i);
	p3_rng_seed(&rng, 0);
	for (int i = 0; i < 6; i++)
		CHECK_MSG(p3_rng_next(&rng) == seed0[i], "seed 0 output %d", i);
	p3_rng_seed(&rng, 42);
	for (int i = 0; i < 6; i++)
	{
		float		f = p3_rng_float(&rng);

		CHECK(f == (float) seed42_top24[i] / 16777216.0f);
	}
}

static void
test_rng_float_range(void)
{
	P3Rng		rng;
	double		sum = 0.0;
	float		lo = 1.0f,
				hi = 0.0f;
	bool		all_exact = true;
	bool		in_range = true;
	const int	n = 250000;

	p3_rng_seed(&rng, 12345);
	for (int i = 0; i < n; i++)
	{
		float		f = p3_rng_float(&rng);
		float		scaled = f * 16777216.0f;

		if (!(f >= 0.0f && f < 1.0f))
			in_range = false;
		if (scaled != floorf(scaled))
			all_exact = false;
		lo = f < lo ? f : lo;
		hi = f > hi ? f : hi;
		sum += f;
	}
	CHECK(in_range);
	CHECK(all_exact);
	CHECK(lo < 1e-4f);
	CHECK(hi > 1.0f - 1e-4f);
	/* sd of the mean is 1/sqrt(12 n) ~ 0.00058 */
	CHECK_NEAR(sum / n, 0.5, 0.003);
}

/* ------------------------------------------------------------------------
 * Parameters and argmax
 * ------------------------------------------------------------------------ */

static void
test_params(void)
{
	P3SamplerParams p = p3_sampler_default_params();
	P3SamplerParams bad;
	P3Sampler  *s = (P3Sampler *) &p;	/* must be reset to NULL on failure */
	P3Error		err;

	CHECK_NEAR(p.temperature, 0.8, 1e-7);
	CHECK_EQ_INT(p.top_k, 40);
	CHECK_NEAR(p.top_p, 0.95, 1e-7);
	CHECK_NEAR(p.min_p, 0.05, 1e-7);
	CHECK(p.repeat_penalty == 1.0f);
	CHECK_EQ_INT(p.repeat_last_n, 64);
	CHECK(p.seed == 0);

	CHECK_STATUS(p3_sampler_new(&p, 0, &s, &err), P3_ERR_INVALID_ARG);
	CHECK(s == NULL);
	CHECK(strstr(err.message, "vocabulary") != NULL);

	bad = p;
	bad.temperature = NAN;
	CHECK_STATUS(p3_sampler_new(&bad, 10, &s, &err), P3_ERR_INVALID_ARG);
	bad = p;
	bad.temperature = INFINITY;
	CHECK_STATUS(p3_sampler_new(&bad, 10, &s, &err), P3_ERR_INVALID_ARG);
	bad = p;
	bad.repeat_penalty = 0.0f;
	CHECK_STATUS(p3_sampler_new(&bad, 10, &s, &err), P3_ERR_INVALID_ARG);
	CHECK(strstr(err.message, "repeat_penalty") != NULL);
	bad = p;
	bad.repeat_last_n = -1;
	CHECK_STATUS(p3_sampler_new(&bad, 10, &s, &err), P3_ERR_INVALID_ARG);
	bad = p;
	bad.top_p = NAN;
	CHECK_STATUS(p3_sampler_new(&bad, 10, &s, &err), P3_ERR_INVALID_ARG);
	bad = p;
	bad.min_p = NAN;
	CHECK_STATUS(p3_sampler_new(&bad, 10, &s, &err), P3_ERR_INVALID_ARG);
	CHECK(s == NULL);

	/* NULL params means the defaults; repeat_last_n 0 is fine */
	CHECK_STATUS(p3_sampler_new(NULL, 10, &s, &err), P3_OK);
	p3_sampler_free(s);
	bad = p;
	bad.repeat_last_n = 0;
	bad.repeat_penalty = 1.5f;
	s = make_sampler(&bad, 10);
	p3_sampler_accept(s, 3);	/* no ring: ignored */
	p3_sampler_free(s);
	p3_sampler_free(NULL);
}

static void
test_argmax(void)
{
	float		l[6] = {1.0f, 3.0f, -2.0f, 3.0f, NAN, 2.5f};
	uint32_t	mask[1] = {0};
	float		all_low[4] = {-INFINITY, NAN, -INFINITY, -INFINITY};

	CHECK_EQ_INT(p3_argmax(l, 6, NULL), 1);		/* tie 1/3: smaller id */
	mask_set(mask, 3);
	mask_set(mask, 5);
	CHECK_EQ_INT(p3_argmax(l, 6, mask), 3);
	mask[0] = 0;
	mask_set(mask, 4);
	mask_set(mask, 2);
	CHECK_EQ_INT(p3_argmax(l, 6, mask), 2);		/* NaN never beats a number */
	mask[0] = 0;
	CHECK_EQ_INT(p3_argmax(l, 6, mask), -1);
	CHECK_EQ_INT(p3_argmax(l, 0, NULL), -1);
	CHECK_EQ_INT(p3_argmax(all_low, 4, NULL), 0);
	mask_set(mask, 1);
	mask_set(mask, 3);
	CHECK_EQ_INT(p3_argmax(all_low, 4, mask), 1);
}

/* ------------------------------------------------------------------------
 * Greedy, masks, special values
 * ------------------------------------------------------------------------ */

static void
test_greedy_matches_argmax(void)
{
	P3SamplerParams p = plain_params(0.0f, 1);
	const int	v = 300;
	P3Sampler  *s = make_sampler(&p, v);
	float		logits[300];
	uint32_t	mask[10];
	uint64_t	r = 7;

	for (int trial = 0; trial < 200; trial++)
	{
		int32_t		tok = -1;
		P3Error		err;

		for (int i = 0; i < v; i++)
			logits[i] = (float) (int) (harness_randf(&r) * 8.0f);	/* many ties */
		memset(mask, 0, sizeof(mask));
		for (int i = 0; i < v; i++)
			if (harness_rand(&r) % 3 != 0)
				mask_set(mask, i);
		CHECK_STATUS(p3_sampler_sample(s, logits, trial % 2 ? mask : NULL, &tok, &err), P3_OK);
		CHECK_EQ_INT(tok, p3_argmax(logits, v, trial % 2 ? mask : NULL));
	}
	p3_sampler_free(s);
}

static void
test_top_k_1_is_greedy(void)
{
	P3SamplerParams p = plain_params(1.0f, 3);
	P3SamplerParams g = plain_params(0.0f, 3);
	const int	v = 500;
	P3Sampler  *s,
			   *sg;
	float		logits[500];
	uint64_t	r = 11;

	p.top_k = 1;
	p.top_p = 0.9f;
	p.min_p = 0.05f;
	s = make_sampler(&p, v);
	sg = make_sampler(&g, v);
	for (int trial = 0; trial < 300; trial++)
	{
		int32_t		a = -1,
					b = -2;
		P3Error		err;

		for (int i = 0; i < v; i++)
			logits[i] = (float) (int) (harness_randf(&r) * 5.0f);
		CHECK_STATUS(p3_sampler_sample(s, logits, NULL, &a, &err), P3_OK);
		CHECK_STATUS(p3_sampler_sample(sg, logits, NULL, &b, &err), P3_OK);
		CHECK_EQ_INT(a, b);
	}
	p3_sampler_free(s);
	p3_sampler_free(sg);
}

static void
test_mask_every_mode(void)
{
	const int	v = 100;
	float		logits[100];
	uint32_t	mask[4];
	uint32_t	sparse[4];
	long		counts[100];
	uint64_t	r = 99;
	P3SamplerParams configs[7];

	configs[0] = plain_params(0.0f, 1);
	configs[1] = plain_params(1.0f, 2);
	configs[2] = plain_params(1.5f, 3);
	configs[2].top_k = 5;
	configs[3] = plain_params(1.0f, 4);
	configs[3].top_p = 0.9f;
	configs[4] = plain_params(1.0f, 5);
	configs[4].min_p = 0.1f;
	configs[5] = p3_sampler_default_params();
	configs[6] = p3_sampler_default_params();
	configs[6].repeat_penalty = 1.3f;
	configs[6].seed = 6;

	memset(mask, 0, sizeof(mask));
	memset(sparse, 0, sizeof(sparse));
	for (int i = 0; i < v; i++)
	{
		bool		allowed = harness_rand(&r) % 2 == 0;

		/* disallowed tokens get the largest logits: they would win otherwise */
		logits[i] = harness_randf(&r) + (allowed ? 0.0f : 5.0f);
		if (allowed)
			mask_set(mask, i);
	}
	mask_set(sparse, 17);
	mask_set(sparse, 64);
	mask_set(sparse, 99);

	for (int c = 0; c < 7; c++)
	{
		P3Sampler  *s = make_sampler(&configs[c], v);
		bool		ok = true;

		for (int i = 0; i < 50; i++)
			p3_sampler_accept(s, (int32_t) (harness_rand(&r) % v));
		CHECK_EQ_INT(draw_counts(s, logits, mask, v, 10000, counts), 0);
		for (int i = 0; i < v; i++)
			if (counts[i] > 0 && !mask_has(mask, i))
				ok = false;
		CHECK_MSG(ok, "config %d drew a masked token", c);
		CHECK_EQ_INT(draw_counts(s, logits, sparse, v, 2000, counts), 0);
		CHECK_EQ_INT(counts[17] + counts[64] + counts[99], 2000);
		p3_sampler_free(s);
	}
}

static void
test_mask_allows_nothing(void)
{
	P3SamplerParams p = p3_sampler_default_params();
	P3Sampler  *s = make_sampler(&p, 40);
	float		logits[40] = {0};
	uint32_t	mask[2] = {0, 0};
	int32_t		tok = 123;
	P3Error		err;

	p3_error_clear(&err);
	CHECK_STATUS(p3_sampler_sample(s, logits, mask, &tok, &err), P3_ERR_INVALID_ARG);
	CHECK_EQ_INT(err.status, P3_ERR_INVALID_ARG);
	CHECK(strstr(err.message, "mask") != NULL);
	CHECK_EQ_INT(tok, 123);
	/* bits beyond n_vocab do not count */
	mask[1] = 0xffffff00u;
	CHECK_STATUS(p3_sampler_sample(s, logits, mask, &tok, &err), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_sampler_sample(s, NULL, NULL, &tok, &err), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_sampler_sample(s, logits, NULL, NULL, &err), P3_ERR_INVALID_ARG);
	p3_sampler_free(s);
}

static void
test_special_values(void)
{
	const int	v = 8;
	float		logits[8] = {1.0f, NAN, 0.5f, NAN, 2.0f, NAN, -1.0f, 0.0f};
	float		low[8] = {-INFINITY, NAN, -INFINITY, -INFINITY, NAN, -INFINITY, NAN, -INFINITY};
	float		big[8] = {1.0f, INFINITY, 0.5f, 3e38f, 2.0f, INFINITY, -1.0f, 0.0f};
	uint32_t	mask[1] = {0};
	long		counts[8];
	P3SamplerParams modes[3];

	modes[0] = plain_params(0.0f, 1);
	modes[1] = plain_params(1.0f, 2);
	modes[2] = p3_sampler_default_params();
	for (int m = 0; m < 3; m++)
	{
		P3Sampler  *s = make_sampler(&modes[m], v);

		/* NaN is never drawn */
		CHECK_EQ_INT(draw_counts(s, logits, NULL, v, 10000, counts), 0);
		CHECK_EQ_INT(counts[1] + counts[3] + counts[5], 0);

		/* nothing but -inf and NaN: the smallest allowed id */
		CHECK_EQ_INT(draw_counts(s, low, NULL, v, 100, counts), 0);
		CHECK_EQ_INT(counts[0], 100);
		mask[0] = 0;
		mask_set(mask, 6);
		mask_set(mask, 3);
		mask_set(mask, 7);
		CHECK_EQ_INT(draw_counts(s, low, mask, v, 100, counts), 0);
		CHECK_EQ_INT(counts[3], 100);

		/* a lone allowed NaN is still a valid answer */
		mask[0] = 0;
		mask_set(mask, 5);
		CHECK_EQ_INT(draw_counts(s, logits, mask, v, 10, counts), 0);
		CHECK_EQ_INT(counts[5], 10);

		/* +inf dominates everything; ties between the two by id in greedy */
		CHECK_EQ_INT(draw_counts(s, big, NULL, v, 1000, counts), 0);
		CHECK_EQ_INT(counts[1] + counts[5], 1000);
		if (m == 0)
			CHECK_EQ_INT(counts[1], 1000);
		p3_sampler_free(s);
	}
}

/* ------------------------------------------------------------------------
 * Distributions
 * ------------------------------------------------------------------------ */

/*
 * A straightforward reference of the whole chain without penalty or mask:
 * qsort the ids (larger logit first, smaller id on ties), cut top-k, top-p
 * (masses summed in sorted order), min-p (exp(logit - max) >= min_p), then
 * walk the exp((logit - max) / T) weights in sorted order with r from an
 * RNG of the same seed.  Returns how many of n_draws tokens differ from the
 * sampler's, and in *margin the distance of the closest top-p / min-p test
 * to its threshold (the test's premise: no borderline case).
 */
static int
draws_differing_from_reference(const float *logits, int v, const P3SamplerParams *p,
							   int n_draws, double *margin)
{
	int		   *order = malloc(sizeof(int) * v);
	double	   *w = malloc(sizeof(double) * v);
	P3Sampler  *s = make_sampler(p, v);
	P3Rng		rng;
	int			kept = v;
	double		max_logit,
				total = 0.0;
	int			differing = 0;

	*margin = INFINITY;
	if (order == NULL || w == NULL || s == NULL)
	{
		free(order);
		free(w);
		p3_sampler_free(s);
		return -1;
	}
	sorted_ids(logits, v, order);
	max_logit = logits[order[0]];
	if (p->top_k > 0 && p->top_k < kept)
		kept = p->top_k;
	if (p->top_p < 1.0f)
	{
		double		sum = 0.0,
					cum = 0.0;
		int			i = 0;

		for (int j = 0; j < kept; j++)
			sum += exp((double) logits[order[j]] - max_logit);
		while (i < kept)
		{
			cum += exp((double) logits[order[i]] - max_logit) / sum;
			i++;
			*margin = fmin(*margin, fabs(cum - p->top_p));
			if (cum >= p->top_p)
				break;
		}
		kept = i;
	}
	if (p->min_p > 0.0f)
	{
		int			i = 1;

		for (; i < kept; i++)
		{
			double		ratio = exp((double) logits[order[i]] - max_logit);

			*margin = fmin(*margin, fabs(ratio - p->min_p));
			if (ratio < p->min_p)
				break;
		}
		kept = i;
	}
	for (int i = 0; i < kept; i++)
	{
		w[i] = exp(((double) logits[order[i]] - max_logit) / p->temperature);
		total += w[i];
	}

	p3_rng_seed(&rng, p->seed);
	for (int n = 0; n < n_draws; n++)
	{
		double		target = (double) p3_rng_float(&rng) * total;
		double		cum = 0.0;
		int			expect = order[kept - 1];
		int32_t		tok = -1;
		P3Error		err;

		for (int i = 0; i < kept; i++)
		{
			cum += w[i];
			if (target < cum)
			{
				expect = order[i];
				break;
			}
		}
		if (p3_sampler_sample(s, logits, NULL, &tok, &err) != P3_OK || tok != expect)
			differing++;
	}
	free(order);
	free(w);
	p3_sampler_free(s);
	return differing;
}

/* The draw is the cumulative walk over the sorted candidates with r = p3_rng_float. */
static void
test_draw_matches_reference(void)
{
	float		small[7] = {0.3f, 1.2f, -0.5f, 1.2f, 0.9f, -2.0f, 0.0f};
	int			order[7];
	P3SamplerParams p = plain_params(0.8f, 2024);
	double		margin;

	sorted_ids(small, 7, order);
	CHECK_EQ_INT(order[0], 1);	/* the tie 1/3 is ordered by id */
	CHECK_EQ_INT(order[1], 3);
	CHECK_EQ_INT(draws_differing_from_reference(small, 7, &p, 5000, &margin), 0);
}

/*
 * The same over 5000 tokens with many ties, -inf and both zeros, through
 * every sorting path: the radix sort of an id-ordered set (filters off,
 * min-p), of a permuted remainder (a wide top-p nucleus), and the heaps.
 */
static void
test_large_draws_match_reference(void)
{
	const int	v = 5000;
	static float logits[5000];
	uint64_t	r = 555;
	P3SamplerParams cases[5];
	const char *names[5] = {"filters off", "wide top-p", "min-p", "top-k chain", "zeros"};

	for (int c = 0; c < 5; c++)
		cases[c] = plain_params(0.9f, 900 + c);
	cases[1].top_p = 0.9f;
	cases[1].temperature = 1.1f;
	cases[2].min_p = 0.2f;
	cases[3].top_k = 300;
	cases[3].top_p = 0.95f;
	cases[3].min_p = 0.05f;
	cases[3].temperature = 0.7f;

	for (int c = 0; c < 5; c++)
	{
		double		margin;
		int			differing;

		for (int i = 0; i < v; i++)
		{
			/* quarter steps in [-2.75, 2.75]: hundreds of tokens share each value */
			logits[i] = (float) (int) (harness_randf(&r) * 12.0f) / 4.0f;
			if (harness_rand(&r) % 100 == 0)
				logits[i] = -INFINITY;
			if (c == 4)			/* the case of the two zeros: half of them negative */
				logits[i] = harness_rand(&r) % 2 ? -0.0f : (logits[i] < 0.0f ? 0.0f : logits[i]);
		}
		differing = draws_differing_from_reference(logits, v, &cases[c], 400, &margin);
		CHECK_MSG(differing == 0, "%s: %d draws differ", names[c], differing);
		CHECK_MSG(margin > 1e-9, "%s: borderline premise (margin %g)", names[c], margin);
	}
}

static void
test_temperature_frequencies(void)
{
	const int	v = 6;
	const int	n = 100000;
	float		logits[6] = {1.0f, 2.0f, 0.5f, -1.0f, 1.5f, 0.0f};
	bool		keep[6] = {true, true, true, true, true, true};
	double		prob[6];
	long		counts[6];
	float		temps[3] = {0.7f, 1.0f, 2.5f};

	for (int t = 0; t < 3; t++)
	{
		P3SamplerParams p = plain_params(temps[t], 77 + t);
		P3Sampler  *s = make_sampler(&p, v);
		double		chi2 = 0.0;

		softmax_over(logits, keep, v, temps[t], prob);
		CHECK_EQ_INT(draw_counts(s, logits, NULL, v, n, counts), 0);
		check_frequencies(counts, prob, v, n);
		for (int i = 0; i < v; i++)
			chi2 += pow(counts[i] - n * prob[i], 2) / (n * prob[i]);
		/* chi-square with 5 degrees of freedom: P(X > 30.9) = 1e-5 */
		CHECK_MSG(chi2 < 30.9, "temperature %g: chi-square %.2f", (double) temps[t], chi2);
		p3_sampler_free(s);
	}
}

static void
test_top_k_kept_set(void)
{
	const int	v = 8;
	const int	n = 60000;
	float		logits[8] = {0.1f, 2.0f, -1.0f, 1.0f, 1.8f, 0.5f, 1.0f, 3.0f};
	bool		keep[8] = {false, true, false, false, true, false, false, true};
	float		ties[5] = {0.0f, 3.0f, 3.0f, 3.0f, 1.0f};
	bool		keep_ties[5] = {false, true, true, false, false};
	double		prob[8];
	long		counts[8];
	P3SamplerParams p = plain_params(1.0f, 5);
	P3Sampler  *s;

	p.top_k = 3;
	s = make_sampler(&p, v);
	softmax_over(logits, keep, v, 1.0, prob);
	CHECK_EQ_INT(draw_counts(s, logits, NULL, v, n, counts), 0);
	check_frequencies(counts, prob, v, n);
	p3_sampler_free(s);

	/* ties at the cut are kept by smaller id */
	p.top_k = 2;
	s = make_sampler(&p, 5);
	softmax_over(ties, keep_ties, 5, 1.0, prob);
	CHECK_EQ_INT(draw_counts(s, ties, NULL, 5, n, counts), 0);
	check_frequencies(counts, prob, 5, n);
	p3_sampler_free(s);
}

static void
test_top_p_kept_set(void)
{
	const int	v = 5;
	const int	n = 60000;
	/* sorted: 0.5 (id 1), 0.25 (id 4), 0.15 (id 3), 0.07 (id 0), 0.03 (id 2) */
	double		dist[5] = {0.07, 0.5, 0.03, 0.15, 0.25};
	float		logits[5];
	struct
	{
		float		top_p;
		bool		keep[5];
	}			cases[4] = {
		{0.8f, {false, true, false, true, true}},	/* 0.75 < 0.8 <= 0.9 */
		{0.7f, {false, true, false, false, true}},	/* 0.5 < 0.7 <= 0.75 */
		{0.3f, {false, true, false, false, false}},
		{0.95f, {true, true, false, true, true}},	/* 0.9 < 0.95 <= 0.97 */
	};

	logits_from_probs(dist, v, logits);
	for (int c = 0; c < 4; c++)
	{
		P3SamplerParams p = plain_params(1.0f, 10 + c);
		P3Sampler  *s;
		double		prob[5];
		long		counts[5];

		p.top_p = cases[c].top_p;
		s = make_sampler(&p, v);
		softmax_over(logits, cases[c].keep, v, 1.0, prob);
		CHECK_EQ_INT(draw_counts(s, logits, NULL, v, n, counts), 0);
		check_frequencies(counts, prob, v, n);
		p3_sampler_free(s);
	}
}

/*
 * Top-p over a flat distribution with no top-k: the nucleus (about 90
 * tokens) is larger than the first sorted prefix, so the prefix must grow.
 * The expected set is computed here with qsort.
 */
static void
test_top_p_large(void)
{
	const int	v = 200;
	const int	n = 10000;
	const float top_p = 0.5f;
	static float logits[200];
	static int	order[200];
	static bool keep[200];
	static double prob[200];
	static long counts[200];
	double		total = 0.0;
	double		cum = 0.0;
	int			n_keep = 0;
	int			n_seen = 0;
	bool		clear_cut = true;
	uint64_t	r = 5;
	P3SamplerParams p = plain_params(1.0f, 31);
	P3Sampler  *s;

	/* a random permutation of ranks, logit = -0.002 * rank */
	for (int i = 0; i < v; i++)
		order[i] = i;
	for (int i = v - 1; i > 0; i--)
	{
		int			j = (int) (harness_rand(&r) % (uint64_t) (i + 1));
		int			t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
	for (int i = 0; i < v; i++)
		logits[order[i]] = -0.002f * (float) i;

	sorted_ids(logits, v, order);
	for (int i = 0; i < v; i++)
		total += exp((double) logits[order[i]] - logits[order[0]]);
	for (int i = 0; i < v && cum < top_p; i++)
	{
		cum += exp((double) logits[order[i]] - logits[order[0]]) / total;
		keep[order[i]] = true;
		n_keep++;
		if (fabs(cum - top_p) < 1e-6)
			clear_cut = false;
	}
	CHECK(clear_cut);			/* the test's own premise */
	CHECK(n_keep > 64 && n_keep < 120);

	p.top_p = top_p;
	s = make_sampler(&p, v);
	softmax_over(logits, keep, v, 1.0, prob);
	CHECK_EQ_INT(draw_counts(s, logits, NULL, v, n, counts), 0);
	check_frequencies(counts, prob, v, n);
	for (int i = 0; i < v; i++)
		n_seen += counts[i] > 0;
	CHECK_EQ_INT(n_seen, n_keep);
	p3_sampler_free(s);
}

static void
test_min_p_kept_set(void)
{
	const int	v = 5;
	const int	n = 60000;
	/* p_max 0.4; min_p 0.12 -> threshold 0.048: 0.06 stays, 0.04 goes */
	double		dist[5] = {0.06, 0.4, 0.04, 0.3, 0.2};
	bool		keep[5] = {true, true, false, true, true};
	bool		keep_half[5] = {false, true, false, true, false};
	float		logits[5];
	double		prob[5];
	long		counts[5];

	logits_from_probs(dist, v, logits);
	for (int path = 0; path < 3; path++)
	{
		P3SamplerParams p = plain_params(1.0f, 20 + path);
		P3Sampler  *s;

		p.min_p = 0.12f;
		if (path == 1)
			p.top_p = 0.9999f;	/* keeps everything but sorts first */
		if (path == 2)
			p.top_k = 4;		/* sorted by top-k, which drops id 2 itself */
		s = make_sampler(&p, v);
		softmax_over(logits, keep, v, 1.0, prob);
		CHECK_EQ_INT(draw_counts(s, logits, NULL, v, n, counts), 0);
		check_frequencies(counts, prob, v, n);
		p3_sampler_free(s);
	}

	/* min_p 0.6: only 0.4 and 0.3 (ratio 0.75) stay, 0.2 (ratio 0.5) goes */
	{
		P3SamplerParams p = plain_params(1.0f, 25);
		P3Sampler  *s;

		p.min_p = 0.6f;
		s = make_sampler(&p, v);
		softmax_over(logits, keep_half, v, 1.0, prob);
		CHECK_EQ_INT(draw_counts(s, logits, NULL, v, n, counts), 0);
		check_frequencies(counts, prob, v, n);
		p3_sampler_free(s);
	}

	/* min_p above 1 keeps only the best */
	{
		P3SamplerParams p = plain_params(1.0f, 26);
		P3Sampler  *s;

		p.min_p = 1.5f;
		s = make_sampler(&p, v);
		CHECK_EQ_INT(draw_counts(s, logits, NULL, v, 1000, counts), 0);
		CHECK_EQ_INT(counts[1], 1000);
		p3_sampler_free(s);
	}
}

/* Temperature is applied after the filters: it reshapes only the kept set. */
static void
test_temperature_after_filters(void)
{
	const int	v = 5;
	const int	n = 60000;
	double		dist[5] = {0.07, 0.5, 0.03, 0.15, 0.25};
	bool		keep[5] = {false, true, false, true, true};
	float		logits[5];
	double		prob[5];
	long		counts[5];
	P3SamplerParams p = plain_params(3.0f, 40);
	P3Sampler  *s;

	/* top-p 0.8 on the temperature-1 probabilities keeps {1, 4, 3} */
	logits_from_probs(dist, v, logits);
	p.top_p = 0.8f;
	s = make_sampler(&p, v);
	softmax_over(logits, keep, v, 3.0, prob);
	CHECK_EQ_INT(draw_counts(s, logits, NULL, v, n, counts), 0);
	check_frequencies(counts, prob, v, n);
	p3_sampler_free(s);
}

/* ------------------------------------------------------------------------
 * Repetition penalty
 * ------------------------------------------------------------------------ */

static void
test_repetition_penalty(void)
{
	float		logits[8] = {2.0f, 1.9f, -1.0f, -1.05f, 1.7f, 0.0f, 0.0f, 0.0f};
	uint32_t	neg[1] = {0};
	P3SamplerParams p = plain_params(0.0f, 1);
	P3Sampler  *s;
	int32_t		tok = -1;
	P3Error		err;

	p.repeat_penalty = 1.1f;
	p.repeat_last_n = 3;
	s = make_sampler(&p, 8);

	CHECK_STATUS(p3_sampler_sample(s, logits, NULL, &tok, &err), P3_OK);
	CHECK_EQ_INT(tok, 0);
	/* positive logit divided: 2.0 / 1.1 = 1.82 < 1.9 */
	p3_sampler_accept(s, 0);
	CHECK_STATUS(p3_sampler_sample(s, logits, NULL, &tok, &err), P3_OK);
	CHECK_EQ_INT(tok, 1);

	/* negative logit multiplied: -1.0 * 1.1 = -1.1 < -1.05 */
	mask_set(neg, 2);
	mask_set(neg, 3);
	CHECK_STATUS(p3_sampler_sample(s, logits, neg, &tok, &err), P3_OK);
	CHECK_EQ_INT(tok, 2);
	p3_sampler_accept(s, 2);
	CHECK_STATUS(p3_sampler_sample(s, logits, neg, &tok, &err), P3_OK);
	CHECK_EQ_INT(tok, 3);

	/* the window holds 3 tokens: 0 and 2 fall out after three more */
	p3_sampler_accept(s, 6);
	p3_sampler_accept(s, 7);
	p3_sampler_accept(s, 5);
	CHECK_STATUS(p3_sampler_sample(s, logits, NULL, &tok, &err), P3_OK);
	CHECK_EQ_INT(tok, 0);
	CHECK_STATUS(p3_sampler_sample(s, logits, neg, &tok, &err), P3_OK);
	CHECK_EQ_INT(tok, 2);

	/* out-of-range ids are harmless */
	p3_sampler_accept(s, -5);
	p3_sampler_accept(s, 1000);
	CHECK_STATUS(p3_sampler_sample(s, logits, NULL, &tok, &err), P3_OK);
	p3_sampler_free(s);

	/* a token repeated in the window is penalised once: 2.0 / 1.1 > 1.7 > 2.0 / 1.1^3 */
	{
		float		l2[3] = {2.0f, 0.0f, 1.7f};

		p.repeat_last_n = 8;
		s = make_sampler(&p, 3);
		p3_sampler_accept(s, 0);
		p3_sampler_accept(s, 0);
		p3_sampler_accept(s, 0);
		CHECK_STATUS(p3_sampler_sample(s, l2, NULL, &tok, &err), P3_OK);
		CHECK_EQ_INT(tok, 0);
		p3_sampler_free(s);

		p.repeat_penalty = 1.3f;
		s = make_sampler(&p, 3);
		p3_sampler_accept(s, 0);
		CHECK_STATUS(p3_sampler_sample(s, l2, NULL, &tok, &err), P3_OK);
		CHECK_EQ_INT(tok, 2);
		/* reset forgets the recent tokens */
		p3_sampler_reset(s);
		CHECK_STATUS(p3_sampler_sample(s, l2, NULL, &tok, &err), P3_OK);
		CHECK_EQ_INT(tok, 0);
		p3_sampler_free(s);
	}
}

/* The penalty changes the sampled distribution, not only the argmax. */
static void
test_repetition_penalty_frequencies(void)
{
	const int	v = 4;
	const int	n = 60000;
	float		logits[4] = {1.0f, 0.5f, -0.5f, 0.2f};
	float		penalised[4] = {1.0f / 1.5f, 0.5f, -0.5f * 1.5f, 0.2f};
	bool		keep[4] = {true, true, true, true};
	double		prob[4];
	long		counts[4];
	P3SamplerParams p = plain_params(1.0f, 50);
	P3Sampler  *s;

	p.repeat_penalty = 1.5f;
	s = make_sampler(&p, v);
	p3_sampler_accept(s, 0);
	p3_sampler_accept(s, 2);
	softmax_over(penalised, keep, v, 1.0, prob);
	CHECK_EQ_INT(draw_counts(s, logits, NULL, v, n, counts), 0);
	check_frequencies(counts, prob, v, n);
	p3_sampler_free(s);
}

/* ------------------------------------------------------------------------
 * Determinism
 * ------------------------------------------------------------------------ */

static void
test_determinism_and_reset(void)
{
	const int	v = 500;
	const int	steps = 600;
	static float logits[600][500];
	static int32_t first[600];
	P3SamplerParams p = p3_sampler_default_params();
	P3SamplerParams q;
	P3Sampler  *a,
			   *b,
			   *c;
	uint64_t	r = 1234;
	int			same_ab = 0,
				diff_ac = 0;

	p.seed = 987654321;
	p.repeat_penalty = 1.1f;
	p.temperature = 1.2f;
	q = p;
	q.seed = p.seed + 1;
	for (int t = 0; t < steps; t++)
		for (int i = 0; i < v; i++)
			logits[t][i] = harness_randf(&r) * 3.0f;
	a = make_sampler(&p, v);
	b = make_sampler(&p, v);
	c = make_sampler(&q, v);
	for (int t = 0; t < steps; t++)
	{
		int32_t		ta = -1,
					tb = -2,
					tc = -3;
		P3Error		err;

		CHECK_STATUS(p3_sampler_sample(a, logits[t], NULL, &ta, &err), P3_OK);
		CHECK_STATUS(p3_sampler_sample(b, logits[t], NULL, &tb, &err), P3_OK);
		CHECK_STATUS(p3_sampler_sample(c, logits[t], NULL, &tc, &err), P3_OK);
		p3_sampler_accept(a, ta);
		p3_sampler_accept(b, tb);
		p3_sampler_accept(c, tc);
		first[t] = ta;
		same_ab += ta == tb;
		diff_ac += ta != tc;
	}
	CHECK_EQ_INT(same_ab, steps);
	CHECK(diff_ac > steps / 4);

	/* reset restarts the stream and forgets the penalty window */
	p3_sampler_reset(a);
	for (int t = 0; t < steps; t++)
	{
		int32_t		ta = -1;
		P3Error		err;

		CHECK_STATUS(p3_sampler_sample(a, logits[t], NULL, &ta, &err), P3_OK);
		p3_sampler_accept(a, ta);
		if (ta != first[t])
		{
			CHECK_MSG(false, "step %d after reset: %d, first run %d", t, ta, first[t]);
			break;
		}
	}
	p3_sampler_free(a);
	p3_sampler_free(b);
	p3_sampler_free(c);
}

/* A realistic vocabulary with the default chain: only top-k tokens appear. */
static void
test_default_chain_large_vocab(void)
{
	const int	v = 32064;
	static float logits[32064];
	static int	order[32064];
	static bool in_top[32064];
	uint64_t	r = 4242;
	P3SamplerParams p = p3_sampler_default_params();
	P3Sampler  *s;
	bool		ok = true;

	for (int i = 0; i < v; i++)
		logits[i] = harness_randf(&r) * 4.0f;
	sorted_ids(logits, v, order);
	for (int i = 0; i < p.top_k; i++)
		in_top[order[i]] = true;
	s = make_sampler(&p, v);
	for (int t = 0; t < 300; t++)
	{
		int32_t		tok = -1;
		P3Error		err;

		CHECK_STATUS(p3_sampler_sample(s, logits, NULL, &tok, &err), P3_OK);
		if (tok < 0 || tok >= v || !in_top[tok])
			ok = false;
	}
	CHECK(ok);
	p3_sampler_free(s);
}

int
main(void)
{
	RUN(test_rng_pinned);
	RUN(test_rng_float_range);
	RUN(test_params);
	RUN(test_argmax);
	RUN(test_greedy_matches_argmax);
	RUN(test_top_k_1_is_greedy);
	RUN(test_mask_every_mode);
	RUN(test_mask_allows_nothing);
	RUN(test_special_values);
	RUN(test_draw_matches_reference);
	RUN(test_large_draws_match_reference);
	RUN(test_temperature_frequencies);
	RUN(test_top_k_kept_set);
	RUN(test_top_p_kept_set);
	RUN(test_top_p_large);
	RUN(test_min_p_kept_set);
	RUN(test_temperature_after_filters);
	RUN(test_repetition_penalty);
	RUN(test_repetition_penalty_frequencies);
	RUN(test_determinism_and_reset);
	RUN(test_default_chain_large_vocab);
	return harness_finish();
}
