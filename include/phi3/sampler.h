/*
 * phi3/sampler.h — choosing the next token from the logits.
 *
 * Pure functions over a logits vector plus a seeded RNG of our own
 * (splitmix64-seeded xoshiro256**), so the same seed gives the same text on
 * every machine and with any thread count.  No global state.
 *
 * The pipeline, in llama.cpp's order:
 *   allowed-mask (constrained decoding: disallowed tokens are removed
 *   before anything else) → repetition penalty over the recent tokens →
 *   greedy if temperature <= 0 → top-k → top-p → min-p → temperature →
 *   softmax → draw.
 * Ties between equal logits are always broken by the smaller token id, so
 * the result never depends on the sort implementation.
 *
 * The mask is how phi3_extract (JSON under a schema) and phi3_classify
 * (one of N labels) will constrain decoding: bit i of mask[i / 32] set means
 * token i may be produced.
 */
#ifndef PHI3_SAMPLER_H
#define PHI3_SAMPLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct P3SamplerParams
{
	float		temperature;	/* <= 0: greedy (argmax) */
	int32_t		top_k;			/* <= 0: off */
	float		top_p;			/* >= 1: off */
	float		min_p;			/* <= 0: off */
	float		repeat_penalty; /* 1: off; > 1 discourages repeats (llama.cpp rule) */
	int32_t		repeat_last_n;	/* how many recent tokens the penalty looks at */
	uint64_t	seed;
} P3SamplerParams;

/* temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1.0 (off), last_n 64, seed 0 */
P3SamplerParams p3_sampler_default_params(void);

typedef struct P3Rng
{
	uint64_t	s[4];
} P3Rng;

void		p3_rng_seed(P3Rng *rng, uint64_t seed);
uint64_t	p3_rng_next(P3Rng *rng);
/* Uniform in [0, 1) with 24 random bits, exact on every platform. */
float		p3_rng_float(P3Rng *rng);

typedef struct P3Sampler P3Sampler;

/*
 * Allocate scratch for n_vocab candidates (P3_ERR_NOMEM, P3_ERR_INVALID_ARG).
 * params NULL means the defaults; rejected: a NaN or infinite temperature,
 * NaN top_p or min_p, repeat_penalty not finite and > 0, repeat_last_n
 * outside [0, 2^20].
 */
P3Status	p3_sampler_new(const P3SamplerParams *params, int32_t n_vocab, P3Sampler **out, P3Error *err);
void		p3_sampler_free(P3Sampler *s);
/* Restart the RNG from the params' seed and forget the recent tokens. */
void		p3_sampler_reset(P3Sampler *s);

/*
 * Tell the sampler a token became part of the sequence (prompt tokens
 * included, so the repetition penalty sees them).
 */
void		p3_sampler_accept(P3Sampler *s, int32_t id);

/*
 * Pick a token.  logits has n_vocab entries and is not modified.  mask may
 * be NULL (all allowed).  Returns P3_ERR_INVALID_ARG if the mask allows no
 * token; the chosen id goes to *out.  A NaN logit counts as -inf and +inf
 * as FLT_MAX; if every allowed logit is -inf the smallest allowed id is
 * returned.  min-p keeps p >= min_p * p_max, tested as
 * exp(logit - max_logit) >= min_p.  Allocates nothing.
 */
P3Status	p3_sampler_sample(P3Sampler *s, const float *logits, const uint32_t *mask,
							  int32_t *out, P3Error *err);

/*
 * Greedy: the index of the largest logit, smallest index on ties (NaN counts
 * as -inf); mask as above (-1 if none allowed or n <= 0).
 */
int32_t		p3_argmax(const float *logits, int32_t n, const uint32_t *mask);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_SAMPLER_H */
