/*
 * phi3/decoder.h — a step-wise decoder over several live sequences.
 *
 * A P3Decoder drives one context (phi3/context.h): each sequence the caller
 * adds takes one of the context's KV sequences (a "slot") and keeps its own
 * prompt, sampler and RNG, stop conditions, optional constraint and output
 * text.  The caller runs the loop:
 *
 *     p3_decoder_add(d, prompt, n, &params, &seq, &err);   any number, any time
 *     while (p3_decoder_n_live(d) > 0)
 *     {
 *         p3_decoder_step(d, &err);             one p3_eval over every live sequence
 *         p3_decoder_seq_info(d, seq, &info);   token, text delta, stop reason
 *         ... check for interrupts, add or finish sequences ...
 *     }
 *     p3_decoder_remove(d, seq);
 *
 * One step evaluates, in a single forward pass, the last sampled token of
 * every decoding sequence and the next chunk of the prompt of every
 * sequence still in prefill (prompt chunks interleaved with decode tokens,
 * up to the step's token budget), then samples the next token of every
 * sequence whose logits came out.  Because each token's logits depend only
 * on its own sequence (phi3/context.h), a sequence decoded beside others
 * gives byte for byte the text it gives alone, whatever the step at which
 * it was added.
 *
 * Per sequence, after sampling: end-of-generation tokens stop it (EOG, not
 * part of the text), then the constraint's accept step, the text, the
 * constraint's completion test, max_tokens and a full context, in that
 * order; then the constraint's forced tokens (jump-forward, see
 * P3Constraint), each through the same checks, evaluated with the sampled
 * token in the next step's pass.  The stopped sequence's text is flushed (an unfinished UTF-8
 * character becomes U+FFFD) and it stays DONE, its info readable, until
 * p3_decoder_remove frees the slot.
 *
 * Prefix reuse: a new sequence takes the free slot whose cached tokens share
 * the longest prefix with its prompt; when another slot (free or live)
 * holds a longer one, that prefix's KV is copied in, so a system prompt and
 * instruction shared by many rows is evaluated once.  Prompts in prefill
 * together share it too: a younger one waits while an older one computes
 * their common prefix, then copies it.  A removed sequence's KV stays in
 * its slot as a cache for later ones.
 *
 * Errors: a failed or aborted p3_decoder_step (the context's abort callback
 * is polled between forward chunks and layers) changes nothing, so the
 * caller may report it, or step again.  An error that belongs to one
 * sequence (its constraint's mask or accept step failed, or the mask left
 * no token) stops that sequence with P3_STOP_ERROR and its own P3Error;
 * the others go on.
 *
 * Not thread-safe; at most one decoder per context at a time (it owns the
 * context's sequences while it lives).
 */
#ifndef PHI3_DECODER_H
#define PHI3_DECODER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/context.h"
#include "phi3/sampler.h"
#include "phi3/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum P3StopReason
{
	P3_STOP_NONE = 0,
	P3_STOP_EOG,				/* the model produced an end-of-generation token */
	P3_STOP_MAX_TOKENS,			/* max_tokens reached */
	P3_STOP_CONTEXT,			/* the context is full */
	P3_STOP_CALLBACK,			/* the caller finished the sequence */
	P3_STOP_CONSTRAINT,			/* the constraint says the output is complete */
	P3_STOP_ERROR				/* a per-sequence error (P3SeqInfo.error) */
} P3StopReason;

/* Short stable name of a stop reason, e.g. "max_tokens". */
const char *p3_stop_reason_name(P3StopReason stop);

/*
 * A constraint on what a sequence may generate (a schema automaton, a label
 * set).  The decoder calls mask before each sampling, with n_vocab bits all
 * preset to 1 (bit i of mask[i / 32] set: token i allowed), then accept
 * with the chosen token (never with an end-of-generation token that stops
 * the sequence).  complete, if set, is asked after accept: true stops the
 * sequence with P3_STOP_CONSTRAINT.  forced, if set (and the sequence's
 * jump_forward), is asked after a sampled token was accepted: it writes up
 * to cap tokens that are the only possible continuation (in the order
 * they come) and returns how many; the decoder accepts them as if
 * sampled (accept, text, complete, max_tokens) and evaluates them in the
 * same forward pass as the sampled token, so a forced run of k tokens
 * costs one pass instead of k + 1.  The state belongs to the caller and
 * must outlive the sequence; an error from mask or accept stops the
 * sequence with P3_STOP_ERROR.
 */
typedef struct P3Constraint
{
	void	   *state;
	P3Status	(*mask) (void *state, uint32_t *mask, int32_t n_vocab, P3Error *err);
	P3Status	(*accept) (void *state, int32_t token, P3Error *err);
	bool		(*complete) (void *state);
	int32_t		(*forced) (void *state, int32_t *tokens, int32_t cap);
} P3Constraint;

/* The most forced tokens evaluated with one sampled token */
#define P3_DECODER_MAX_FORCED	32

typedef struct P3SeqParams
{
	int32_t		max_tokens;		/* tokens to generate at most (>= 0) */
	P3SamplerParams sampling;
	bool		stop_at_eog;	/* stop at end-of-generation tokens (default true) */
	bool		reuse_prefix;	/* reuse cached KV of a common prompt prefix (default true) */
	bool		strip_leading_space;	/* drop one leading space of the text (chat answers) */
	const P3Constraint *constraint; /* optional; copied by p3_decoder_add */
	int32_t		slot;			/* -1: any free slot; else this KV sequence (must be free) */
	bool		jump_forward;	/* take the constraint's forced tokens without sampling (default true) */
} P3SeqParams;

/* max_tokens 256, default sampling, stop_at_eog, reuse_prefix, strip_leading_space, slot -1, jump_forward */
P3SeqParams p3_seq_default_params(void);

typedef enum P3SeqPhase
{
	P3_SEQ_FREE = 0,			/* no sequence in this slot */
	P3_SEQ_PREFILL,				/* prompt still being evaluated */
	P3_SEQ_DECODE,				/* generating */
	P3_SEQ_DONE					/* stopped; info stays until p3_decoder_remove */
} P3SeqPhase;

typedef struct P3GenerateStats
{
	int32_t		n_prompt;		/* prompt tokens */
	int32_t		n_prompt_reused;	/* of which taken from the KV cache */
	int32_t		n_prompt_copied;	/* of those, copied from another slot */
	int32_t		n_generated;	/* tokens generated (including a final EOG and forced ones) */
	int32_t		n_forced;		/* of those, forced by the constraint (jump-forward) */
	int32_t		n_passes;		/* forward passes that evaluated generated tokens */
	double		prompt_ms;		/* time from add until the prompt was evaluated */
	double		generate_ms;	/* time sampling and evaluating generated tokens */
	P3StopReason stop;
} P3GenerateStats;

typedef struct P3SeqInfo
{
	P3SeqPhase	phase;
	int32_t		token;			/* token sampled in the last step, -1 if none */
	const char *delta;			/* text added in the last step (complete UTF-8) */
	size_t		delta_len;
	const char *text;			/* all text so far, NUL-terminated */
	size_t		text_len;
	const P3Error *error;		/* stats.stop == P3_STOP_ERROR: what failed */
	P3GenerateStats stats;
} P3SeqInfo;

typedef struct P3Decoder P3Decoder;

/*
 * A decoder over every sequence of ctx.  step_tokens bounds the tokens one
 * step evaluates (decode tokens always fit; prompt chunks take the rest, at
 * least a quarter of it); 0 means the context's n_batch.
 */
P3Status	p3_decoder_new(P3Context *ctx, int32_t step_tokens, P3Decoder **out, P3Error *err);
void		p3_decoder_free(P3Decoder *d);

P3Context  *p3_decoder_context(const P3Decoder *d);

/*
 * Add a sequence; its slot (the KV sequence id, which identifies it in the
 * other calls) goes to *seq.  Errors: P3_ERR_INVALID_ARG (empty prompt,
 * negative max_tokens, bad sampling parameters, a token id out of range,
 * no free slot or the slot asked for is busy), P3_ERR_CONTEXT_FULL (the
 * prompt alone does not fit), P3_ERR_NOMEM.  Nothing is evaluated yet.
 */
P3Status	p3_decoder_add(P3Decoder *d, const int32_t *prompt, int32_t n_prompt,
						   const P3SeqParams *params, int32_t *seq, P3Error *err);

/*
 * One forward pass over every live sequence, then sampling.  With no live
 * sequence it does nothing.  Errors: those of p3_eval (P3_ERR_ABORTED,
 * P3_ERR_NOMEM, ...), after which every sequence is as before the call.
 */
P3Status	p3_decoder_step(P3Decoder *d, P3Error *err);

/* Sequences in PREFILL or DECODE; free slots. */
int32_t		p3_decoder_n_live(const P3Decoder *d);
int32_t		p3_decoder_n_free(const P3Decoder *d);

/* The state of slot seq (false if out of range).  Pointers stay valid until the next call. */
bool		p3_decoder_seq_info(const P3Decoder *d, int32_t seq, P3SeqInfo *info);

/* Stop a live sequence now (P3_STOP_CALLBACK), flushing its text into the delta. */
void		p3_decoder_finish(P3Decoder *d, int32_t seq);

/* Free the slot; its KV cache stays for prefix reuse by later sequences. */
void		p3_decoder_remove(P3Decoder *d, int32_t seq);

/* Remove every sequence (for instance those of a caller that stopped on an error). */
void		p3_decoder_reset(P3Decoder *d);

/*
 * Score continuations of a prompt without sampling: logprobs[k] gets the
 * sum of the natural log-probabilities (log-softmax over the whole
 * vocabulary, temperature 1) of the tokens conts[k][0..n_conts[k]), each
 * given the prompt and the continuation's tokens before it.  The prompt
 * is evaluated once, in a free slot chosen and prefilled as p3_decoder_add
 * would (prefix reuse and copies); each continuation of more than one
 * token costs one more forward pass.  The slot stays free and keeps the
 * prompt's KV for later reuse.  The values are the same whatever the slot
 * and whatever the other sequences (per-sequence logits).  Errors:
 * P3_ERR_INVALID_ARG (empty prompt or continuation, a token out of range,
 * no free slot), P3_ERR_CONTEXT_FULL (prompt plus a continuation does not
 * fit), P3_ERR_NOMEM, those of p3_eval (P3_ERR_ABORTED, ...).
 */
P3Status	p3_decoder_score(P3Decoder *d, const int32_t *prompt, int32_t n_prompt,
							 const int32_t *const *conts, const int32_t *n_conts, int32_t n_cont,
							 double *logprobs, P3Error *err);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_DECODER_H */
