/*
 * sampler.c — choosing the next token from the logits (see phi3/sampler.h).
 *
 * One call of p3_sampler_sample runs llama.cpp's common sampler chain over a
 * candidate array built fresh from the logits:
 *
 *   mask → repetition penalty → (greedy) → top-k → top-p → min-p →
 *   temperature → softmax → draw
 *
 * Candidates are (id, logit) pairs.  All ordering uses one total order,
 * "larger logit first, then smaller id", so every kept set and every
 * cumulative sum is uniquely defined whatever the selection algorithm does.
 * NaN logits become -inf when the candidates are built and +inf becomes
 * FLT_MAX, so the rest of the pipeline only sees finite values and -inf;
 * an all -inf candidate set yields the smallest allowed id.
 *
 * Sorting is partial where it can be: top-k keeps the k best with a bounded
 * min-heap (O(V log k)) and sorts only those; top-p without top-k sorts a
 * growing prefix (64, then 512 candidates) and only sorts everything when
 * the nucleus is larger still; min-p without a prior sort filters in one
 * linear pass.  Small sets are sorted with the heap, large ones with a
 * stable LSD radix sort on (logit, id) keys into a spare buffer.  No libc
 * qsort (glibc's may allocate).
 *
 * Probabilities are computed in double from exp(logit - max), so results
 * depend only on the logits, the seed and the platform's exp().  Nothing is
 * allocated after p3_sampler_new.
 */
#include "phi3/sampler.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The longest recent-token window we accept (the ring is allocated up front). */
#define P3_SAMPLER_MAX_LAST_N	(1 << 20)

/*
 * First prefix that top-p sorts when nothing is sorted yet, its growth
 * factor, and the largest prefix worth a heap selection before sorting all.
 */
#define P3_TOP_P_FIRST_PREFIX	64
#define P3_TOP_P_GROWTH			8
#define P3_TOP_P_LAST_PREFIX	512

/* Sets at least this large are fully sorted by radix rather than by heap. */
#define P3_RADIX_MIN			1024

typedef struct P3Candidate
{
	int32_t		id;
	float		logit;
} P3Candidate;

struct P3Sampler
{
	P3SamplerParams params;
	int32_t		n_vocab;
	P3Rng		rng;
	P3Candidate *cand;			/* (n_vocab) scratch, rebuilt on every call */
	P3Candidate *spare;			/* (n_vocab) buffer of the radix sort */
	double	   *weight;			/* (n_vocab) unnormalised probabilities of the draw */
	uint32_t   *seen;			/* (ceil(n_vocab / 32)) bitset, all zero between calls */
	int32_t    *recent;			/* (repeat_last_n) ring of accepted tokens */
	int32_t		recent_count;	/* valid entries in recent */
	int32_t		recent_next;	/* slot the next accepted token goes to */
};

P3SamplerParams
p3_sampler_default_params(void)
{
	P3SamplerParams p;

	memset(&p, 0, sizeof(p));
	p.temperature = 0.8f;
	p.top_k = 40;
	p.top_p = 0.95f;
	p.min_p = 0.05f;
	p.repeat_penalty = 1.0f;
	p.repeat_last_n = 64;
	p.seed = 0;
	return p;
}

/* ------------------------------------------------------------------------
 * RNG: xoshiro256** seeded through splitmix64 (Blackman & Vigna).
 * ------------------------------------------------------------------------ */

/* One splitmix64 step: advances *x and returns the mixed output. */
static uint64_t
splitmix64_next(uint64_t *x)
{
	uint64_t	z = (*x += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static inline uint64_t
rotl64(uint64_t v, int k)
{
	return (v << k) | (v >> (64 - k));
}

void
p3_rng_seed(P3Rng *rng, uint64_t seed)
{
	uint64_t	x = seed;

	/* four consecutive splitmix64 outputs are never all zero */
	for (int i = 0; i < 4; i++)
		rng->s[i] = splitmix64_next(&x);
}

uint64_t
p3_rng_next(P3Rng *rng)
{
	uint64_t   *s = rng->s;
	uint64_t	result = rotl64(s[1] * 5, 7) * 9;
	uint64_t	t = s[1] << 17;

	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl64(s[3], 45);
	return result;
}

float
p3_rng_float(P3Rng *rng)
{
	/* a 24-bit integer times 2^-24 is exact in a float */
	return (float) (p3_rng_next(rng) >> 40) * 0x1.0p-24f;
}

/* ------------------------------------------------------------------------
 * Candidate ordering and selection.
 * ------------------------------------------------------------------------ */

/* The total order of the sampler: larger logit first, smaller id on ties. */
static inline bool
cand_before(const P3Candidate *a, const P3Candidate *b)
{
	return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static inline void
cand_swap(P3Candidate *a, P3Candidate *b)
{
	P3Candidate t = *a;

	*a = *b;
	*b = t;
}

/* Restore the heap below i; the heap's root is the candidate that sorts last. */
static void
heap_sift_down(P3Candidate *h, int64_t n, int64_t i)
{
	for (;;)
	{
		int64_t		left = 2 * i + 1;
		int64_t		right = left + 1;
		int64_t		last = i;

		if (left < n && cand_before(&h[last], &h[left]))
			last = left;
		if (right < n && cand_before(&h[last], &h[right]))
			last = right;
		if (last == i)
			return;
		cand_swap(&h[i], &h[last]);
		i = last;
	}
}

/*
 * Move the k candidates of c[lo, n) that come first in the total order to
 * c[lo, lo + k), sorted; the others end up in c[lo + k, n) in no particular
 * (but deterministic) order.  O((n - lo) log k), in place.
 */
static void
select_sorted_prefix(P3Candidate *c, int64_t lo, int64_t n, int64_t k)
{
	P3Candidate *h = c + lo;
	int64_t		m = n - lo;

	if (k > m)
		k = m;
	if (k <= 0)
		return;
	for (int64_t i = k / 2 - 1; i >= 0; i--)
		heap_sift_down(h, k, i);
	for (int64_t i = k; i < m; i++)
	{
		if (cand_before(&h[i], &h[0]))
		{
			cand_swap(&h[i], &h[0]);
			heap_sift_down(h, k, 0);
		}
	}
	/* heap sort: the root (the one that sorts last) goes to the end */
	for (int64_t end = k - 1; end > 0; end--)
	{
		cand_swap(&h[0], &h[end]);
		heap_sift_down(h, end, 0);
	}
}

/*
 * Radix key of a logit: unsigned order of the key is descending order of
 * the logit (-0 must already have become +0, and there is no NaN).
 */
static inline uint32_t
cand_sort_key(float logit)
{
	uint32_t	u;

	memcpy(&u, &logit, sizeof(u));
	u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);	/* ascending with the float */
	return ~u;
}

/* Byte `pass` of the radix key: passes 0-3 are the id, 4-7 the logit, low byte first. */
static inline uint32_t
radix_digit(const P3Candidate *x, int pass)
{
	uint32_t	word = pass < 4 ? (uint32_t) x->id : cand_sort_key(x->logit);

	return (word >> ((pass & 3) * 8)) & 0xffu;
}

/*
 * Sort c[0, n) in the total order with a stable LSD radix sort through
 * spare (n entries).  If c is already in id order the id passes are skipped:
 * stability keeps equal logits in id order.  A pass in which every element
 * has the same digit is skipped too.
 */
static void
radix_sort_candidates(P3Candidate *c, P3Candidate *spare, int64_t n, bool in_id_order)
{
	P3Candidate *src = c;
	P3Candidate *dst = spare;
	uint32_t	offset[256];

	for (int pass = in_id_order ? 4 : 0; pass < 8; pass++)
	{
		uint32_t	sum = 0;

		memset(offset, 0, sizeof(offset));
		for (int64_t i = 0; i < n; i++)
			offset[radix_digit(&src[i], pass)]++;
		if (offset[radix_digit(&src[0], pass)] == (uint32_t) n)
			continue;
		for (int b = 0; b < 256; b++)
		{
			uint32_t	count = offset[b];

			offset[b] = sum;
			sum += count;
		}
		for (int64_t i = 0; i < n; i++)
			dst[offset[radix_digit(&src[i], pass)]++] = src[i];
		{
			P3Candidate *t = src;

			src = dst;
			dst = t;
		}
	}
	if (src != c)
		memcpy(c, src, (size_t) n * sizeof(P3Candidate));
}

/* Sort c[lo, n) completely; in_id_order says c[lo, n) is in ascending id order. */
static void
sort_candidates(P3Candidate *c, P3Candidate *spare, int64_t lo, int64_t n, bool in_id_order)
{
	if (n - lo >= P3_RADIX_MIN)
		radix_sort_candidates(c + lo, spare, n - lo, in_id_order);
	else
		select_sorted_prefix(c, lo, n, n - lo);
}

/* Index of the candidate that comes first in the total order (n >= 1). */
static int64_t
cand_best_index(const P3Candidate *c, int64_t n)
{
	int64_t		best = 0;

	for (int64_t i = 1; i < n; i++)
		if (cand_before(&c[i], &c[best]))
			best = i;
	return best;
}

/* The largest logit among c[0, n); c sorted means it is c[0]. */
static double
cand_max_logit(const P3Candidate *c, int64_t n, bool sorted)
{
	return (double) c[sorted ? 0 : cand_best_index(c, n)].logit;
}

/* ------------------------------------------------------------------------
 * The pipeline stages.  Each returns the new candidate count (>= 1).
 * ------------------------------------------------------------------------ */

/*
 * Top-p (nucleus): keep the shortest prefix of the sorted candidates whose
 * softmax mass reaches top_p.  Leaves c[0, result) sorted.  Unsorted input
 * is in id order (nothing has moved it yet).
 */
static int64_t
apply_top_p(P3Sampler *s, int64_t n, bool sorted, float top_p)
{
	P3Candidate *c = s->cand;
	double		max_logit = cand_max_logit(c, n, sorted);
	double		sum = 0.0;
	double		cum = 0.0;
	int64_t		have = sorted ? n : 0;	/* length of the sorted prefix */
	int64_t		i = 0;

	for (int64_t j = 0; j < n; j++)
		sum += exp((double) c[j].logit - max_logit);

	while (i < n)
	{
		if (i == have)
		{
			int64_t		want = have == 0 ? P3_TOP_P_FIRST_PREFIX : have * P3_TOP_P_GROWTH;

			if (want >= n || want > P3_TOP_P_LAST_PREFIX)
			{
				/* a wide nucleus: sort all the rest at once */
				sort_candidates(c, s->spare, have, n, have == 0);
				have = n;
			}
			else
			{
				select_sorted_prefix(c, have, n, want - have);
				have = want;
			}
		}
		cum += exp((double) c[i].logit - max_logit) / sum;
		i++;
		if (cum >= (double) top_p)
			break;
	}
	/* c[0, i) is sorted: i never passes have */
	return i;
}

/*
 * Min-p: keep the candidates whose probability is at least min_p times the
 * largest, tested as exp(logit - max_logit) >= min_p.  Keeps the order of
 * the survivors (so a sorted array stays sorted), and at least the best.
 */
static int64_t
apply_min_p(P3Candidate *c, int64_t n, bool sorted, float min_p)
{
	double		max_logit = cand_max_logit(c, n, sorted);
	int64_t		kept = 0;

	for (int64_t i = 0; i < n; i++)
	{
		if (exp((double) c[i].logit - max_logit) >= (double) min_p)
			c[kept++] = c[i];
	}
	if (kept == 0)
	{
		/* min_p > 1 keeps nobody: keep the best candidate */
		c[0] = c[cand_best_index(c, n)];
		kept = 1;
	}
	return kept;
}

/*
 * Temperature, softmax and the draw over sorted candidates c[0, n): the
 * weights are exp((logit - max) / T), and the token is the first whose
 * cumulative weight exceeds r * total for r = p3_rng_float().
 */
static int32_t
draw_token(P3Sampler *s, int64_t n)
{
	const P3Candidate *c = s->cand;
	double	   *w = s->weight;
	double		max_logit = (double) c[0].logit;
	double		temperature = (double) s->params.temperature;
	double		total = 0.0;
	double		target;
	double		cum = 0.0;

	for (int64_t i = 0; i < n; i++)
	{
		w[i] = exp(((double) c[i].logit - max_logit) / temperature);
		total += w[i];
	}
	target = (double) p3_rng_float(&s->rng) * total;
	for (int64_t i = 0; i < n; i++)
	{
		cum += w[i];
		if (target < cum)
			return c[i].id;
	}
	/* unreachable: target < total == the final cum; take the best anyway */
	return c[0].id;
}

/* ------------------------------------------------------------------------
 * Public API.
 * ------------------------------------------------------------------------ */

/* Check one set of parameters; fills err and returns its status. */
static P3Status
check_params(const P3SamplerParams *p, P3Error *err)
{
	if (isnan(p->temperature) || isinf(p->temperature))
		return p3_error(err, P3_ERR_INVALID_ARG, "sampler temperature must be finite, not %g",
						(double) p->temperature);
	if (isnan(p->top_p))
		return p3_error(err, P3_ERR_INVALID_ARG, "sampler top_p must be a number");
	if (isnan(p->min_p))
		return p3_error(err, P3_ERR_INVALID_ARG, "sampler min_p must be a number");
	if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
		return p3_error(err, P3_ERR_INVALID_ARG,
						"sampler repeat_penalty must be finite and greater than 0, not %g",
						(double) p->repeat_penalty);
	if (p->repeat_last_n < 0 || p->repeat_last_n > P3_SAMPLER_MAX_LAST_N)
		return p3_error(err, P3_ERR_INVALID_ARG,
						"sampler repeat_last_n must be between 0 and %d, not %d",
						P3_SAMPLER_MAX_LAST_N, (int) p->repeat_last_n);
	return P3_OK;
}

P3Status
p3_sampler_new(const P3SamplerParams *params, int32_t n_vocab, P3Sampler **out, P3Error *err)
{
	P3SamplerParams defaults = p3_sampler_default_params();
	P3Sampler  *s;
	P3Status	st;

	if (out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "sampler output pointer is NULL");
	*out = NULL;
	if (params == NULL)
		params = &defaults;
	if (n_vocab <= 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "sampler vocabulary size must be positive, not %d",
						(int) n_vocab);
	st = check_params(params, err);
	if (st != P3_OK)
		return st;

	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return p3_error(err, P3_ERR_NOMEM, "could not allocate the sampler");
	s->params = *params;
	s->n_vocab = n_vocab;
	s->cand = malloc((size_t) n_vocab * sizeof(P3Candidate));
	s->spare = malloc((size_t) n_vocab * sizeof(P3Candidate));
	s->weight = malloc((size_t) n_vocab * sizeof(double));
	s->seen = calloc(((size_t) n_vocab + 31) / 32, sizeof(uint32_t));
	if (params->repeat_last_n > 0)
		s->recent = malloc((size_t) params->repeat_last_n * sizeof(int32_t));
	if (s->cand == NULL || s->spare == NULL || s->weight == NULL || s->seen == NULL ||
		(params->repeat_last_n > 0 && s->recent == NULL))
	{
		p3_sampler_free(s);
		return p3_error(err, P3_ERR_NOMEM,
						"could not allocate sampler scratch for %d tokens", (int) n_vocab);
	}
	p3_sampler_reset(s);
	*out = s;
	return P3_OK;
}

void
p3_sampler_free(P3Sampler *s)
{
	if (s == NULL)
		return;
	free(s->cand);
	free(s->spare);
	free(s->weight);
	free(s->seen);
	free(s->recent);
	free(s);
}

void
p3_sampler_reset(P3Sampler *s)
{
	if (s == NULL)
		return;
	p3_rng_seed(&s->rng, s->params.seed);
	s->recent_count = 0;
	s->recent_next = 0;
}

void
p3_sampler_accept(P3Sampler *s, int32_t id)
{
	int32_t		cap;

	if (s == NULL)
		return;
	cap = s->params.repeat_last_n;
	if (cap <= 0)
		return;
	s->recent[s->recent_next] = id;
	s->recent_next = (s->recent_next + 1) % cap;
	if (s->recent_count < cap)
		s->recent_count++;
}

static inline bool
mask_allows(const uint32_t *mask, int32_t id)
{
	return mask == NULL || ((mask[id >> 5] >> (id & 31)) & 1u) != 0;
}

/* Set (or clear) the seen bit of every in-range recent token. */
static void
mark_recent(P3Sampler *s, bool set)
{
	for (int32_t i = 0; i < s->recent_count; i++)
	{
		int32_t		id = s->recent[i];

		if (id < 0 || id >= s->n_vocab)
			continue;
		if (set)
			s->seen[id >> 5] |= 1u << (id & 31);
		else
			s->seen[id >> 5] &= ~(1u << (id & 31));
	}
}

/*
 * Build the candidates: the allowed tokens in id order with sanitised logits
 * and the repetition penalty applied once to each distinct recent token.
 */
static int64_t
build_candidates(P3Sampler *s, const float *logits, const uint32_t *mask)
{
	float		penalty = s->params.repeat_penalty;
	bool		penalize = penalty != 1.0f && s->recent_count > 0;
	int64_t		n = 0;

	if (penalize)
		mark_recent(s, true);
	for (int32_t id = 0; id < s->n_vocab; id++)
	{
		float		v;

		if (!mask_allows(mask, id))
			continue;
		v = logits[id];
		if (isnan(v))
			v = -INFINITY;
		if (penalize && ((s->seen[id >> 5] >> (id & 31)) & 1u) != 0)
			v = v > 0.0f ? v / penalty : v * penalty;
		if (v > FLT_MAX)
			v = FLT_MAX;
		if (v == 0.0f)
			v = 0.0f;			/* -0 and +0 are one key for the radix sort */
		s->cand[n].id = id;
		s->cand[n].logit = v;
		n++;
	}
	if (penalize)
		mark_recent(s, false);
	return n;
}

P3Status
p3_sampler_sample(P3Sampler *s, const float *logits, const uint32_t *mask,
				  int32_t *out, P3Error *err)
{
	const P3SamplerParams *p;
	int64_t		n;
	bool		sorted = false;

	if (s == NULL || logits == NULL || out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "sampler, logits and output must not be NULL");
	p = &s->params;

	n = build_candidates(s, logits, mask);
	if (n == 0)
		return p3_error(err, P3_ERR_INVALID_ARG,
						"token mask allows none of the %d tokens of the vocabulary",
						(int) s->n_vocab);

	/* greedy, and the all -inf case (the smallest allowed id wins the tie) */
	if (p->temperature <= 0.0f)
	{
		*out = s->cand[cand_best_index(s->cand, n)].id;
		return P3_OK;
	}
	if (s->cand[cand_best_index(s->cand, n)].logit == -INFINITY)
	{
		*out = s->cand[0].id;
		return P3_OK;
	}

	if (p->top_k > 0 && p->top_k < n)
	{
		select_sorted_prefix(s->cand, 0, n, p->top_k);
		n = p->top_k;
		sorted = true;
	}
	if (p->top_p < 1.0f && n > 1)
	{
		n = apply_top_p(s, n, sorted, p->top_p);
		sorted = true;
	}
	if (p->min_p > 0.0f && n > 1)
		n = apply_min_p(s->cand, n, sorted, p->min_p);
	if (!sorted)				/* still in id order: min-p keeps the order */
		sort_candidates(s->cand, s->spare, 0, n, true);

	*out = draw_token(s, n);
	return P3_OK;
}

int32_t
p3_argmax(const float *logits, int32_t n, const uint32_t *mask)
{
	int32_t		best = -1;
	float		best_value = -INFINITY;

	if (logits == NULL)
		return -1;
	for (int32_t i = 0; i < n; i++)
	{
		float		v;

		if (!mask_allows(mask, i))
			continue;
		v = isnan(logits[i]) ? -INFINITY : logits[i];
		if (best < 0 || v > best_value)
		{
			best = i;
			best_value = v;
		}
	}
	return best;
}
