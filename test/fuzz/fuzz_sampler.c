/*
 * fuzz_sampler.c — libFuzzer harness for p3_sampler_new / p3_sampler_sample
 * and p3_argmax on arbitrary logits, masks and parameters.
 *
 * Not part of the test suite.  `make fuzz` builds it into build/fuzz/:
 *
 *     build/fuzz/fuzz_sampler -max_len=8192 build/fuzz/corpus/fuzz_sampler
 *
 * Input layout (fuzz_util.h's reader: missing bytes read as 0):
 *   u16 vocabulary size (1 + v % 2048: both the heap and the radix sorts)
 *   u8 × 6 + u32: temperature, top_k, top_p, min_p, repeat_penalty,
 *          repeat_last_n, each an index into a table of edge values (NaN,
 *          inf, denormals, 0, -0, negatives, past-the-end counts...) or,
 *          past the table, a raw value read from the input; then the seed
 *   u8 n, n × u16 (as int16): tokens given to p3_sampler_accept (some out
 *          of range)
 *   u8 mask kind: NULL, all clear, all set, bits from the input, one id,
 *          only the padding bits past the vocabulary
 *   the rest: logits, one byte each, repeated cyclically: b % 16 < 8 is
 *          (int8) b / 8, else NaN, +inf, -inf, a denormal, -0, FLT_MAX,
 *          -FLT_MAX, 1.0 (ties)
 *
 * Parameters the header forbids must be refused with P3_ERR_INVALID_ARG.
 * A sample must be an allowed id in range, or P3_ERR_INVALID_ARG exactly
 * when the mask allows none.  With the repetition penalty out of play the
 * choice is checked against the documented pipeline: greedy is the first
 * allowed id in the order "larger logit (NaN as -inf, +inf as FLT_MAX),
 * then smaller id"; all -inf gives the smallest allowed id; the id is
 * within top-k, passes min-p, lies inside the top-p nucleus and has a
 * nonzero weight at the temperature.  A second sampler with the same
 * seed and history picks the same id, and p3_argmax matches a reference.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phi3/sampler.h"

#include "fuzz_util.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_VOCAB		2048
#define MAX_ACCEPTED	64

/* A float from a table of edge values, or raw bits past its end. */
static float
pick_float(FuzzReader *r, const float *table, size_t n)
{
	uint8_t		sel = fuzz_u8(r);
	uint32_t	bits;
	float		f;

	if (sel < n)
		return table[sel];
	bits = fuzz_u32(r);
	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* An int32 from a table, or raw past its end. */
static int32_t
pick_int(FuzzReader *r, const int32_t *table, size_t n)
{
	uint8_t		sel = fuzz_u8(r);

	if (sel < n)
		return table[sel];
	return (int32_t) fuzz_u32(r);
}

/* The sampler's view of a logit. */
static float
sanitize(float v)
{
	if (isnan(v))
		return -INFINITY;
	if (v > FLT_MAX)
		return FLT_MAX;
	if (v == 0.0f)
		return 0.0f;
	return v;
}

/* The sampler's total order: does (a, ia) come before (b, ib)? */
static bool
before(float a, int32_t ia, float b, int32_t ib)
{
	return a > b || (a == b && ia < ib);
}

static bool
allowed(const uint32_t *mask, int32_t id)
{
	return mask == NULL || ((mask[id >> 5] >> (id & 31)) & 1u) != 0;
}

typedef struct Cand
{
	float		s;
	int32_t		id;
} Cand;

/* qsort comparator for the sampler's total order. */
static int
cand_cmp(const void *a, const void *b)
{
	const Cand *x = a;
	const Cand *y = b;

	if (before(x->s, x->id, y->s, y->id))
		return -1;
	if (before(y->s, y->id, x->s, x->id))
		return 1;
	return 0;
}

/* Check a sampled id against the pipeline (penalty out of play). */
static void
check_choice(const P3SamplerParams *p, int32_t n, const float *logits, const uint32_t *mask, int32_t id)
{
	static Cand c[MAX_VOCAB];
	int32_t		m = 0;
	int32_t		pos = -1;
	int32_t		k_eff;
	double		max_logit;

	for (int32_t i = 0; i < n; i++)
		if (allowed(mask, i))
		{
			c[m].s = sanitize(logits[i]);
			c[m].id = i;
			m++;
		}
	REQUIRE(m > 0);
	qsort(c, (size_t) m, sizeof(Cand), cand_cmp);
	for (int32_t i = 0; i < m; i++)
		if (c[i].id == id)
			pos = i;
	REQUIRE(pos >= 0);
	max_logit = (double) c[0].s;
	if (p->temperature <= 0.0f)
	{
		REQUIRE(pos == 0);
		return;
	}
	if (max_logit == -INFINITY)
	{
		/* every allowed logit is -inf: the smallest allowed id */
		for (int32_t i = 0; i < m; i++)
			REQUIRE(c[i].id >= id);
		return;
	}
	if (pos == 0)
		return;

	/* top-k */
	k_eff = (p->top_k > 0 && p->top_k < m) ? p->top_k : m;
	REQUIRE(pos < k_eff);

	/* min-p, as the sampler tests it */
	if (p->min_p > 0.0f)
		REQUIRE(exp((double) c[pos].s - max_logit) >= (double) p->min_p);

	/* top-p over the top-k set: the mass strictly before id stays below top_p */
	if (p->top_p < 1.0f)
	{
		double		sum = 0.0;
		double		cum_before = 0.0;

		for (int32_t i = 0; i < k_eff; i++)
		{
			double		w = exp((double) c[i].s - max_logit);

			sum += w;
			if (i < pos)
				cum_before += w;
		}
		REQUIRE(cum_before / sum < (double) p->top_p + 1e-9);
	}

	/* the draw: a zero weight is never chosen */
	REQUIRE(exp(((double) c[pos].s - max_logit) / (double) p->temperature) > 0.0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const float temps[] = {0.0f, -1.0f, 1e-45f, 1e-30f, 0.1f, 0.8f, 1.0f, 2.0f, 100.0f, 1e30f,
		FLT_MAX, NAN, INFINITY, -INFINITY, -0.0f};
	static const int32_t top_ks[] = {0, -1, 1, 2, 3, 40, 1023, 1024, 2047, 2048, INT32_MAX, INT32_MIN};
	static const float probs[] = {0.0f, -0.5f, 0.5f, 0.95f, 1.0f, 1.5f, NAN, INFINITY, -INFINITY, 1e-45f,
		0.99999994f, 0.05f, 1e-30f};
	static const float penalties[] = {1.0f, 0.0f, -1.0f, 1.1f, 1e-30f, 1e30f, NAN, INFINITY, 0.5f, FLT_MAX,
		-0.0f, 1e-45f};
	static const int32_t last_ns[] = {0, 1, 64, -1, 1 << 20, (1 << 20) + 1, INT32_MAX, 3};
	FuzzReader	r = {data, size};
	int32_t		n = 1 + fuzz_u16(&r) % MAX_VOCAB;
	P3SamplerParams p;
	int32_t		accepted[MAX_ACCEPTED];
	int			n_accepted;
	uint32_t	mask_words[(MAX_VOCAB + 31) / 32];
	uint32_t   *mask = mask_words;
	float		logits[MAX_VOCAB];
	P3Sampler  *s = NULL;
	P3Sampler  *s2 = NULL;
	P3Error		err;
	P3Status	st;
	bool		valid;
	bool		any_allowed = false;
	bool		penalty_off;
	int32_t		id = -1;

	memset(&p, 0, sizeof(p));
	p.temperature = pick_float(&r, temps, sizeof(temps) / sizeof(temps[0]));
	p.top_k = pick_int(&r, top_ks, sizeof(top_ks) / sizeof(top_ks[0]));
	p.top_p = pick_float(&r, probs, sizeof(probs) / sizeof(probs[0]));
	p.min_p = pick_float(&r, probs, sizeof(probs) / sizeof(probs[0]));
	p.repeat_penalty = pick_float(&r, penalties, sizeof(penalties) / sizeof(penalties[0]));
	p.repeat_last_n = pick_int(&r, last_ns, sizeof(last_ns) / sizeof(last_ns[0]));
	p.seed = fuzz_u32(&r);

	n_accepted = fuzz_u8(&r) % (MAX_ACCEPTED + 1);
	for (int i = 0; i < n_accepted; i++)
		accepted[i] = (int16_t) fuzz_u16(&r);

	switch (fuzz_u8(&r) % 6)
	{
		case 0:
			mask = NULL;
			break;
		case 1:
			memset(mask_words, 0, sizeof(mask_words));
			break;
		case 2:
			memset(mask_words, 0xff, sizeof(mask_words));
			break;
		case 3:
			for (int32_t w = 0; w < (n + 31) / 32; w++)
				mask_words[w] = fuzz_u32(&r);
			break;
		case 4:
			memset(mask_words, 0, sizeof(mask_words));
			{
				int32_t		one = fuzz_u16(&r) % n;

				mask_words[one >> 5] |= 1u << (one & 31);
			}
			break;
		default:
			/* only bits past the vocabulary: nothing is allowed */
			memset(mask_words, 0xff, sizeof(mask_words));
			for (int32_t i = 0; i < n; i++)
				mask_words[i >> 5] &= ~(1u << (i & 31));
			break;
	}

	{
		size_t		got;
		const uint8_t *b = fuzz_bytes(&r, r.n, &got);

		for (int32_t i = 0; i < n; i++)
		{
			uint8_t		c = got ? b[(size_t) i % got] : 0;

			switch (c % 16)
			{
				case 8:
					logits[i] = NAN;
					break;
				case 9:
					logits[i] = INFINITY;
					break;
				case 10:
					logits[i] = -INFINITY;
					break;
				case 11:
					logits[i] = 1e-44f;
					break;
				case 12:
					logits[i] = -0.0f;
					break;
				case 13:
					logits[i] = FLT_MAX;
					break;
				case 14:
					logits[i] = -FLT_MAX;
					break;
				case 15:
					logits[i] = 1.0f;
					break;
				default:
					logits[i] = (float) (int8_t) c / 8.0f;
					break;
			}
		}
	}
	for (int32_t i = 0; i < n; i++)
		if (allowed(mask, i))
			any_allowed = true;

	/* p3_argmax against a reference (its own rule: NaN is -inf, +inf stays) */
	{
		int32_t		ref = -1;
		float		best = -INFINITY;

		for (int32_t i = 0; i < n; i++)
		{
			float		v;

			if (!allowed(mask, i))
				continue;
			v = isnan(logits[i]) ? -INFINITY : logits[i];
			if (ref < 0 || v > best)
			{
				ref = i;
				best = v;
			}
		}
		REQUIRE(p3_argmax(logits, n, mask) == ref);
	}

	valid = isfinite(p.temperature) && !isnan(p.top_p) && !isnan(p.min_p) &&
		p.repeat_penalty > 0.0f && isfinite(p.repeat_penalty) &&
		p.repeat_last_n >= 0 && p.repeat_last_n <= (1 << 20);
	memset(&err, 0, sizeof(err));
	st = p3_sampler_new(&p, n, &s, &err);
	if (!valid)
	{
		REQUIRE(s == NULL);
		REQUIRE_ERROR(st, err);
		REQUIRE(st == P3_ERR_INVALID_ARG);
		return 0;
	}
	REQUIRE(st == P3_OK && s != NULL);
	REQUIRE(p3_sampler_new(&p, n, &s2, &err) == P3_OK);
	for (int i = 0; i < n_accepted; i++)
	{
		p3_sampler_accept(s, accepted[i]);
		p3_sampler_accept(s2, accepted[i]);
	}
	penalty_off = p.repeat_penalty == 1.0f || p.repeat_last_n == 0 || n_accepted == 0;

	for (int round = 0; round < 2; round++)
	{
		memset(&err, 0, sizeof(err));
		st = p3_sampler_sample(s, logits, mask, &id, &err);
		if (!any_allowed)
		{
			REQUIRE_ERROR(st, err);
			REQUIRE(st == P3_ERR_INVALID_ARG);
			break;
		}
		REQUIRE(st == P3_OK);
		REQUIRE(id >= 0 && id < n && allowed(mask, id));
		if (penalty_off)
			check_choice(&p, n, logits, mask, id);
		if (round == 0)
		{
			int32_t		id2 = -1;

			REQUIRE(p3_sampler_sample(s2, logits, mask, &id2, &err) == P3_OK);
			REQUIRE(id2 == id);
		}
	}
	p3_sampler_free(s);
	p3_sampler_free(s2);
	return 0;
}
