/*
 * decoder.c — the step-wise multi-sequence decoder (see phi3/decoder.h).
 *
 * Each slot of the decoder mirrors one KV sequence of the context and is
 * FREE, PREFILL, DECODE or DONE.  A step:
 *   1. builds one batch: first the pending (last sampled) token of every
 *      DECODE slot, each asking for its logits; then chunks of the prompts
 *      of PREFILL slots, oldest first, up to the step's token budget; the
 *      last prompt token of a chunk that completes a prompt asks for logits;
 *   2. runs p3_eval on it (nothing changes if that fails);
 *   3. records the prefill progress and samples, for every slot whose
 *      logits came out, its next token (sample_next), which either becomes
 *      the slot's pending token or stops the slot.
 * The order of the checks in sample_next is the one p3_generate always
 * had, so the single-sequence wrapper over this decoder gives the same
 * text, token for token.
 *
 * Jump-forward (jump_forward): after a sampled token, a constraint with a
 * forced hook may name the tokens that must follow; they are taken as if
 * sampled (sampler history, accept, text, completion, max_tokens) and go
 * into the next batch behind the sampled token, logits only for the last,
 * so a run of k forced tokens costs one forward pass instead of k.  Logits
 * do not depend on how a sequence's tokens are grouped into passes, so a
 * greedy sequence gives the same text with and without it (a sampled one
 * differs: forced positions draw nothing from the RNG), and decoded beside
 * others the same text as alone.
 *
 * Slot choice (choose_slot) and cross-slot prefix copies keep the KV cache
 * of finished sequences useful: a prompt goes where the longest prefix of
 * it already is, or has that prefix copied in from another slot.  Prompts
 * in prefill at the same time share too: a younger one waits while an
 * older one computes their common prefix (prefill_should_wait), then
 * copies it after the step (catch_up).
 */
#include "phi3/decoder.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phi3/tokenizer.h"

typedef struct DecSeq
{
	P3SeqPhase	phase;
	P3SeqParams params;
	P3Constraint constraint;	/* valid when has_constraint */
	bool		has_constraint;
	int32_t    *prompt;			/* (n_prompt) copy of the prompt */
	int32_t		n_prompt;
	int32_t		n_done;			/* prompt tokens in the KV cache */
	int32_t		n_sched;		/* prompt tokens in the batch being evaluated */
	bool		waiting;		/* sits this step out: an older prompt computes its prefix */
	int32_t		pending;		/* token to evaluate next (DECODE), else -1 */
	int32_t		run[P3_DECODER_MAX_FORCED];	/* forced tokens to evaluate after it */
	int32_t		n_run;
	int32_t		token;			/* token sampled in the last step, -1 if none */
	uint64_t	order;			/* when it was added (prefill goes oldest first) */
	P3Sampler  *sampler;
	P3Detokenizer detok;
	P3Text		text;
	size_t		delta_from;		/* text[delta_from..] is the last step's delta */
	double		t_added;
	double		t_prompt_done;
	P3GenerateStats stats;
	P3Error		error;
} DecSeq;

struct P3Decoder
{
	P3Context  *ctx;
	const P3Tokenizer *tok;
	int32_t		n_seq;
	int32_t		n_vocab;
	int32_t		n_ctx;
	int32_t		step_tokens;
	uint64_t	next_order;
	DecSeq	   *seqs;			/* (n_seq) */
	uint32_t   *mask;			/* (ceil(n_vocab / 32)) scratch for constraints */
	/* the batch of one step */
	int32_t		b_cap;			/* step_tokens + n_seq */
	int32_t    *b_tokens;		/* (b_cap) */
	int32_t    *b_seq;			/* (b_cap) */
	uint8_t    *b_want;			/* (b_cap) */
	int32_t    *b_out_seq;		/* (n_seq) slot of each output row, in batch order */
};

static const char empty_text[] = "";

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

const char *
p3_stop_reason_name(P3StopReason stop)
{
	switch (stop)
	{
		case P3_STOP_NONE:
			return "none";
		case P3_STOP_EOG:
			return "end of generation";
		case P3_STOP_MAX_TOKENS:
			return "max_tokens";
		case P3_STOP_CONTEXT:
			return "context full";
		case P3_STOP_CALLBACK:
			return "finished by the caller";
		case P3_STOP_CONSTRAINT:
			return "constraint complete";
		case P3_STOP_ERROR:
			return "error";
	}
	return "unknown";
}

P3SeqParams
p3_seq_default_params(void)
{
	P3SeqParams p;

	memset(&p, 0, sizeof(p));
	p.max_tokens = 256;
	p.sampling = p3_sampler_default_params();
	p.stop_at_eog = true;
	p.reuse_prefix = true;
	p.strip_leading_space = true;
	p.constraint = NULL;
	p.slot = -1;
	p.jump_forward = true;
	return p;
}

P3Status
p3_decoder_new(P3Context *ctx, int32_t step_tokens, P3Decoder **out, P3Error *err)
{
	const P3ContextParams *cp = p3_context_params(ctx);
	const P3Model *model = p3_context_model(ctx);
	P3Decoder  *d;

	*out = NULL;
	if (step_tokens < 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "step token budget must not be negative (got %d)",
						(int) step_tokens);
	if (step_tokens == 0)
		step_tokens = cp->n_batch;
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory allocating the decoder");
	d->ctx = ctx;
	d->tok = model->tokenizer;
	d->n_seq = cp->n_seq;
	d->n_vocab = model->hp.n_vocab;
	d->n_ctx = cp->n_ctx;
	d->step_tokens = step_tokens;
	d->b_cap = step_tokens + cp->n_seq * (1 + P3_DECODER_MAX_FORCED);
	d->seqs = calloc((size_t) d->n_seq, sizeof(DecSeq));
	d->mask = malloc(((size_t) d->n_vocab + 31) / 32 * sizeof(uint32_t));
	d->b_tokens = malloc((size_t) d->b_cap * sizeof(int32_t));
	d->b_seq = malloc((size_t) d->b_cap * sizeof(int32_t));
	d->b_want = malloc((size_t) d->b_cap);
	d->b_out_seq = malloc((size_t) d->n_seq * sizeof(int32_t));
	if (!d->seqs || !d->mask || !d->b_tokens || !d->b_seq || !d->b_want || !d->b_out_seq)
	{
		p3_decoder_free(d);
		return p3_error(err, P3_ERR_NOMEM, "out of memory allocating the decoder for %d sequences",
						(int) cp->n_seq);
	}
	for (int32_t s = 0; s < d->n_seq; s++)
		d->seqs[s].pending = d->seqs[s].token = -1;
	*out = d;
	return P3_OK;
}

/* Release what a slot's sequence holds and mark the slot free (its KV stays). */
static void
clear_slot(DecSeq *q)
{
	p3_sampler_free(q->sampler);
	free(q->prompt);
	p3_text_free(&q->text);
	memset(q, 0, sizeof(*q));
	q->phase = P3_SEQ_FREE;
	q->pending = q->token = -1;
}

void
p3_decoder_free(P3Decoder *d)
{
	if (d == NULL)
		return;
	if (d->seqs)
		for (int32_t s = 0; s < d->n_seq; s++)
			clear_slot(&d->seqs[s]);
	free(d->seqs);
	free(d->mask);
	free(d->b_tokens);
	free(d->b_seq);
	free(d->b_want);
	free(d->b_out_seq);
	free(d);
}

P3Context *
p3_decoder_context(const P3Decoder *d)
{
	return d->ctx;
}

/* ---- adding a sequence: slot choice and prefix reuse ---- */

/*
 * How many leading prompt tokens slot s holds, computed the way this prompt
 * would compute them (same tokens, same LongRoPE list).  At least the last
 * prompt token is always left to evaluate: its logits choose the first
 * generated token.
 */
static int32_t
reusable_prefix(const P3Decoder *d, int32_t s, const int32_t *prompt, int32_t n_prompt)
{
	const P3HParams *hp = &p3_context_model(d->ctx)->hp;
	const int32_t *held = p3_kv_seq_tokens(d->ctx, s);
	int32_t		n_held = p3_kv_seq_len(d->ctx, s);
	bool		will_be_long = hp->has_longrope && n_prompt > hp->n_ctx_orig;
	int32_t		n = 0;

	while (n < n_held && n < n_prompt - 1 && held[n] == prompt[n] &&
		   p3_kv_seq_pos_is_long(d->ctx, s, n) == will_be_long)
		n++;
	return n;
}

/*
 * The free slot for a new prompt: the one holding its longest prefix; on a
 * tie the one with the least cached (least reuse lost for others), then
 * the lowest id.  -1 if none is free.
 */
static int32_t
choose_slot(const P3Decoder *d, const int32_t *prompt, int32_t n_prompt, bool reuse)
{
	int32_t		best = -1;
	int32_t		best_reuse = -1;
	int32_t		best_held = 0;

	for (int32_t s = 0; s < d->n_seq; s++)
	{
		int32_t		r;
		int32_t		held;

		if (d->seqs[s].phase != P3_SEQ_FREE)
			continue;
		r = reuse ? reusable_prefix(d, s, prompt, n_prompt) : 0;
		held = p3_kv_seq_len(d->ctx, s);
		if (r > best_reuse || (r == best_reuse && held < best_held))
		{
			best = s;
			best_reuse = r;
			best_held = held;
		}
	}
	return best;
}

/* The slot other than dst holding the longest reusable prefix (*len), or -1. */
static int32_t
best_copy_source(const P3Decoder *d, int32_t dst, const int32_t *prompt, int32_t n_prompt,
				 int32_t *len)
{
	int32_t		best = -1;

	*len = 0;
	for (int32_t s = 0; s < d->n_seq; s++)
	{
		int32_t		r;

		if (s == dst)
			continue;
		r = reusable_prefix(d, s, prompt, n_prompt);
		if (r > *len)
		{
			best = s;
			*len = r;
		}
	}
	return best;
}

static P3Status
check_add(const P3Decoder *d, const int32_t *prompt, int32_t n_prompt, const P3SeqParams *p,
		  P3Error *err)
{
	if (n_prompt < 1 || prompt == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "the prompt has no tokens");
	if (p->max_tokens < 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "max_tokens must not be negative (got %d)",
						(int) p->max_tokens);
	if (n_prompt > d->n_ctx)
		return p3_error(err, P3_ERR_CONTEXT_FULL, "the prompt has %d tokens but the context holds %d",
						(int) n_prompt, (int) d->n_ctx);
	for (int32_t i = 0; i < n_prompt; i++)
		if (prompt[i] < 0 || prompt[i] >= d->n_vocab)
			return p3_error(err, P3_ERR_INVALID_ARG, "prompt token %d at index %d is out of range (0 to %d)",
							(int) prompt[i], (int) i, (int) d->n_vocab - 1);
	if (p->constraint && (p->constraint->mask == NULL || p->constraint->accept == NULL))
		return p3_error(err, P3_ERR_INVALID_ARG, "a constraint needs both a mask and an accept step");
	if (p->slot >= d->n_seq || p->slot < -1)
		return p3_error(err, P3_ERR_INVALID_ARG, "slot %d is out of range (0 to %d)",
						(int) p->slot, (int) d->n_seq - 1);
	if (p->slot >= 0 && d->seqs[p->slot].phase != P3_SEQ_FREE)
		return p3_error(err, P3_ERR_INVALID_ARG, "slot %d is in use", (int) p->slot);
	return P3_OK;
}

P3Status
p3_decoder_add(P3Decoder *d, const int32_t *prompt, int32_t n_prompt,
			   const P3SeqParams *params, int32_t *seq, P3Error *err)
{
	P3SeqParams p = params ? *params : p3_seq_default_params();
	DecSeq	   *q;
	P3Sampler  *sampler = NULL;
	int32_t    *copy;
	int32_t		slot;
	int32_t		reuse = 0;
	int32_t		copied = 0;
	P3Status	st;

	if ((st = check_add(d, prompt, n_prompt, &p, err)))
		return st;
	slot = p.slot >= 0 ? p.slot : choose_slot(d, prompt, n_prompt, p.reuse_prefix);
	if (slot < 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "all %d sequences of the decoder are in use",
						(int) d->n_seq);

	/* allocate first: a failure leaves the slot and its cache untouched */
	if ((st = p3_sampler_new(&p.sampling, d->n_vocab, &sampler, err)))
		return st;
	copy = malloc((size_t) n_prompt * sizeof(int32_t));
	if (copy == NULL)
	{
		p3_sampler_free(sampler);
		return p3_error(err, P3_ERR_NOMEM, "out of memory copying a prompt of %d tokens", (int) n_prompt);
	}
	memcpy(copy, prompt, (size_t) n_prompt * sizeof(int32_t));

	if (p.reuse_prefix)
	{
		int32_t		src_len;
		int32_t		src;

		reuse = reusable_prefix(d, slot, prompt, n_prompt);
		src = best_copy_source(d, slot, prompt, n_prompt, &src_len);
		if (src >= 0 && src_len > reuse)
		{
			if ((st = p3_kv_seq_copy(d->ctx, src, slot, src_len, err)))
			{
				free(copy);
				p3_sampler_free(sampler);
				return st;
			}
			copied = src_len;
			reuse = src_len;
		}
	}
	p3_kv_seq_truncate(d->ctx, slot, reuse);
	if (reuse == 0)
		p3_kv_seq_clear(d->ctx, slot);
	p3_seq_set_rope_len(d->ctx, slot, n_prompt);

	q = &d->seqs[slot];
	clear_slot(q);
	q->phase = P3_SEQ_PREFILL;
	q->params = p;
	q->params.constraint = NULL;
	if (p.constraint)
	{
		q->constraint = *p.constraint;
		q->has_constraint = true;
	}
	q->prompt = copy;
	q->n_prompt = n_prompt;
	q->n_done = reuse;
	q->order = d->next_order++;
	q->sampler = sampler;
	for (int32_t i = 0; i < n_prompt; i++)
		p3_sampler_accept(sampler, prompt[i]);
	p3_detok_init(&q->detok, d->tok, false, p.strip_leading_space);
	q->t_added = now_ms();
	q->stats.n_prompt = n_prompt;
	q->stats.n_prompt_reused = reuse;
	q->stats.n_prompt_copied = copied;
	*seq = slot;
	return P3_OK;
}

/* ---- stopping and sampling ---- */

/* Stop a live sequence: flush its text, record the reason and the times. */
static void
stop_seq(DecSeq *q, P3StopReason reason)
{
	double		t = now_ms();

	if (reason != P3_STOP_ERROR)
	{
		P3Error		e;

		p3_error_clear(&e);
		if (p3_detok_flush(&q->detok, &q->text, &e) != P3_OK)
		{
			q->error = e;
			reason = P3_STOP_ERROR;
		}
	}
	if (q->phase == P3_SEQ_PREFILL)
		q->stats.prompt_ms = t - q->t_added;
	else
		q->stats.generate_ms = t - q->t_prompt_done;
	q->stats.stop = reason;
	q->phase = P3_SEQ_DONE;
	q->pending = -1;
	q->n_run = 0;
}

static void jump_forward(P3Decoder *d, int32_t s);

static void
fail_seq(DecSeq *q, const P3Error *e)
{
	q->error = *e;
	stop_seq(q, P3_STOP_ERROR);
}

/*
 * Slot s has logits for its next token: sample it and decide whether the
 * sequence goes on (the token becomes pending) or stops.
 */
static void
sample_next(P3Decoder *d, int32_t s, const float *logits)
{
	DecSeq	   *q = &d->seqs[s];
	const uint32_t *mask = NULL;
	P3Error		e;
	int32_t		id;

	p3_error_clear(&e);
	if (q->stats.n_generated >= q->params.max_tokens)
	{
		stop_seq(q, P3_STOP_MAX_TOKENS);
		return;
	}
	if (q->has_constraint)
	{
		memset(d->mask, 0xFF, ((size_t) d->n_vocab + 31) / 32 * sizeof(uint32_t));
		if (q->constraint.mask(q->constraint.state, d->mask, d->n_vocab, &e) != P3_OK)
		{
			fail_seq(q, &e);
			return;
		}
		mask = d->mask;
	}
	if (p3_sampler_sample(q->sampler, logits, mask, &id, &e) != P3_OK)
	{
		fail_seq(q, &e);
		return;
	}
	q->stats.n_generated++;
	q->token = id;
	if (q->params.stop_at_eog && p3_tokenizer_is_eog(d->tok, id))
	{
		stop_seq(q, P3_STOP_EOG);
		return;
	}
	p3_sampler_accept(q->sampler, id);
	if (q->has_constraint && q->constraint.accept(q->constraint.state, id, &e) != P3_OK)
	{
		fail_seq(q, &e);
		return;
	}
	if (p3_detok_push(&q->detok, id, &q->text, &e) != P3_OK)
	{
		fail_seq(q, &e);
		return;
	}
	if (q->has_constraint && q->constraint.complete && q->constraint.complete(q->constraint.state))
		stop_seq(q, P3_STOP_CONSTRAINT);
	else if (q->stats.n_generated == q->params.max_tokens)
		stop_seq(q, P3_STOP_MAX_TOKENS);
	else if (p3_kv_seq_len(d->ctx, s) >= d->n_ctx)
		stop_seq(q, P3_STOP_CONTEXT);
	else
	{
		q->pending = id;
		jump_forward(d, s);
	}
}

/*
 * After a sampled token: take the constraint's forced tokens as if they
 * had been sampled (the same checks in the same order), to be evaluated
 * with the sampled token in the next pass.  They are capped so that the
 * sequence stays within max_tokens and the context; the sequence may stop
 * on one of them (complete, max_tokens), then nothing is evaluated.
 */
static void
jump_forward(P3Decoder *d, int32_t s)
{
	DecSeq	   *q = &d->seqs[s];
	int32_t		forced[P3_DECODER_MAX_FORCED];
	int32_t		cap = P3_DECODER_MAX_FORCED;
	int32_t		room = d->n_ctx - p3_kv_seq_len(d->ctx, s) - 1;	/* after the pending token */
	int32_t		n;
	P3Error		e;

	q->n_run = 0;
	if (!q->has_constraint || !q->params.jump_forward || q->constraint.forced == NULL)
		return;
	if (cap > room)
		cap = room;
	if (cap > q->params.max_tokens - q->stats.n_generated)
		cap = q->params.max_tokens - q->stats.n_generated;
	if (cap <= 0)
		return;
	n = q->constraint.forced(q->constraint.state, forced, cap);
	p3_error_clear(&e);
	for (int32_t i = 0; i < n && i < cap; i++)
	{
		int32_t		id = forced[i];

		if (id < 0 || id >= d->n_vocab || p3_tokenizer_is_eog(d->tok, id))
			break;
		q->stats.n_generated++;
		q->stats.n_forced++;
		p3_sampler_accept(q->sampler, id);
		if (q->constraint.accept(q->constraint.state, id, &e) != P3_OK ||
			p3_detok_push(&q->detok, id, &q->text, &e) != P3_OK)
		{
			fail_seq(q, &e);
			return;
		}
		q->run[q->n_run++] = id;
		if (q->constraint.complete && q->constraint.complete(q->constraint.state))
		{
			stop_seq(q, P3_STOP_CONSTRAINT);
			return;
		}
		if (q->stats.n_generated == q->params.max_tokens)
		{
			stop_seq(q, P3_STOP_MAX_TOKENS);
			return;
		}
	}
}

/* ---- the step ---- */

/*
 * How many leading prompt tokens q could copy from p's KV once p has
 * computed them: their common prefix (q's last token excluded), if both
 * prompts rotate with the same LongRoPE factor list.
 */
static int32_t
shared_prompt_prefix(const P3Decoder *d, const DecSeq *p, const DecSeq *q)
{
	const P3HParams *hp = &p3_context_model(d->ctx)->hp;
	int32_t		limit = p->n_prompt < q->n_prompt - 1 ? p->n_prompt : q->n_prompt - 1;
	int32_t		n = 0;

	if (hp->has_longrope && (p->n_prompt > hp->n_ctx_orig) != (q->n_prompt > hp->n_ctx_orig))
		return 0;
	while (n < limit && p->prompt[n] == q->prompt[n])
		n++;
	return n;
}

/*
 * Whether prefill slot qs should sit this step out: an older prompt still
 * in prefill is about to compute positions qs shares with it, which qs
 * then copies (catch_up) instead of computing them a second time.  Rows
 * added together with one system prompt and instruction thus evaluate it
 * once.  Waiting only on older slots cannot deadlock.
 */
static bool
prefill_should_wait(const P3Decoder *d, int32_t qs)
{
	const DecSeq *q = &d->seqs[qs];

	for (int32_t s = 0; s < d->n_seq; s++)
	{
		const DecSeq *p = &d->seqs[s];
		int32_t		shared;

		if (s == qs || p->phase != P3_SEQ_PREFILL || p->order > q->order)
			continue;
		shared = shared_prompt_prefix(d, p, q);
		if (shared > q->n_done && p->n_done < shared)
			return true;
	}
	return false;
}

/*
 * Copy into prefill slot qs the longest prefix of its prompt that another
 * slot's KV cache now holds beyond what qs has.  A failed copy (out of
 * memory) changes nothing: qs computes those positions itself.
 */
static void
catch_up(P3Decoder *d, int32_t qs)
{
	DecSeq	   *q = &d->seqs[qs];
	int32_t		len;
	int32_t		src = best_copy_source(d, qs, q->prompt, q->n_prompt, &len);
	P3Error		e;

	if (src < 0 || len <= q->n_done)
		return;
	p3_error_clear(&e);
	if (p3_kv_seq_copy(d->ctx, src, qs, len, &e) != P3_OK)
		return;
	q->stats.n_prompt_copied += len - q->n_done;
	q->stats.n_prompt_reused += len - q->n_done;
	q->n_done = len;
}

/* The PREFILL slot added longest ago that has no tokens in this batch yet, or -1. */
static int32_t
oldest_unscheduled_prefill(const P3Decoder *d)
{
	int32_t		best = -1;

	for (int32_t s = 0; s < d->n_seq; s++)
	{
		const DecSeq *q = &d->seqs[s];

		if (q->phase == P3_SEQ_PREFILL && q->n_sched == 0 && !q->waiting &&
			(best < 0 || q->order < d->seqs[best].order))
			best = s;
	}
	return best;
}

/*
 * Fill the step's batch; returns its token count and the number of rows of
 * logits it asks for (*n_out, their slots in b_out_seq).
 */
static int32_t
build_batch(P3Decoder *d, int32_t *n_out)
{
	int32_t		n = 0;
	int32_t		budget;
	int32_t		floor = d->step_tokens / 4 > 0 ? d->step_tokens / 4 : 1;

	*n_out = 0;
	for (int32_t s = 0; s < d->n_seq; s++)
	{
		DecSeq	   *q = &d->seqs[s];

		q->n_sched = 0;
		q->waiting = false;
		if (q->phase != P3_SEQ_DECODE)
			continue;
		/* the sampled token and the forced ones after it; logits of the last */
		d->b_tokens[n] = q->pending;
		d->b_seq[n] = s;
		d->b_want[n] = q->n_run == 0;
		n++;
		for (int32_t i = 0; i < q->n_run; i++)
		{
			d->b_tokens[n] = q->run[i];
			d->b_seq[n] = s;
			d->b_want[n] = i == q->n_run - 1;
			n++;
		}
		d->b_out_seq[(*n_out)++] = s;
	}
	budget = d->step_tokens - n;
	if (budget < floor)
		budget = floor;

	while (budget > 0)
	{
		int32_t		s = oldest_unscheduled_prefill(d);
		DecSeq	   *q;
		int32_t		k;

		if (s < 0)
			break;
		q = &d->seqs[s];
		if (prefill_should_wait(d, s))
		{
			q->waiting = true;
			continue;
		}
		k = q->n_prompt - q->n_done;
		if (k > budget)
			k = budget;
		for (int32_t i = 0; i < k; i++)
		{
			d->b_tokens[n + i] = q->prompt[q->n_done + i];
			d->b_seq[n + i] = s;
			d->b_want[n + i] = 0;
		}
		if (q->n_done + k == q->n_prompt)
		{
			d->b_want[n + k - 1] = 1;
			d->b_out_seq[(*n_out)++] = s;
		}
		q->n_sched = k;
		n += k;
		budget -= k;
	}
	return n;
}

P3Status
p3_decoder_step(P3Decoder *d, P3Error *err)
{
	P3Batch		batch;
	int32_t		n_out;
	int32_t		n;
	P3Status	st;

	n = build_batch(d, &n_out);
	if (n == 0)
		return P3_OK;
	memset(&batch, 0, sizeof(batch));
	batch.n_tokens = n;
	batch.tokens = d->b_tokens;
	batch.seq = d->b_seq;
	batch.want_logits = d->b_want;
	if ((st = p3_eval(d->ctx, &batch, err)))
	{
		for (int32_t s = 0; s < d->n_seq; s++)
			d->seqs[s].n_sched = 0;
		return st;
	}

	/* committed: the last step's deltas end here */
	for (int32_t s = 0; s < d->n_seq; s++)
	{
		DecSeq	   *q = &d->seqs[s];

		q->delta_from = q->text.len;
		q->token = -1;
		if (q->phase == P3_SEQ_PREFILL)
		{
			q->n_done += q->n_sched;
			q->n_sched = 0;
		}
		else if (q->phase == P3_SEQ_DECODE)
		{
			q->n_run = 0;		/* evaluated */
			q->stats.n_passes++;
		}
	}
	for (int32_t i = 0; i < n_out; i++)
	{
		int32_t		s = d->b_out_seq[i];
		DecSeq	   *q = &d->seqs[s];

		if (q->phase == P3_SEQ_PREFILL)
		{
			q->t_prompt_done = now_ms();
			q->stats.prompt_ms = q->t_prompt_done - q->t_added;
			q->phase = P3_SEQ_DECODE;
		}
		sample_next(d, s, p3_logits(d->ctx, i));
	}
	/* prompts still in prefill copy what the others just computed */
	for (int32_t s = 0; s < d->n_seq; s++)
		if (d->seqs[s].phase == P3_SEQ_PREFILL)
			catch_up(d, s);
	return P3_OK;
}

/* ---- queries and removal ---- */

int32_t
p3_decoder_n_live(const P3Decoder *d)
{
	int32_t		n = 0;

	for (int32_t s = 0; s < d->n_seq; s++)
		if (d->seqs[s].phase == P3_SEQ_PREFILL || d->seqs[s].phase == P3_SEQ_DECODE)
			n++;
	return n;
}

int32_t
p3_decoder_n_free(const P3Decoder *d)
{
	int32_t		n = 0;

	for (int32_t s = 0; s < d->n_seq; s++)
		if (d->seqs[s].phase == P3_SEQ_FREE)
			n++;
	return n;
}

bool
p3_decoder_seq_info(const P3Decoder *d, int32_t seq, P3SeqInfo *info)
{
	const DecSeq *q;

	memset(info, 0, sizeof(*info));
	if (seq < 0 || seq >= d->n_seq)
		return false;
	q = &d->seqs[seq];
	info->phase = q->phase;
	info->token = q->token;
	info->text = q->text.data ? q->text.data : empty_text;
	info->text_len = q->text.len;
	info->delta = info->text + q->delta_from;
	info->delta_len = q->text.len - q->delta_from;
	info->error = q->stats.stop == P3_STOP_ERROR ? &q->error : NULL;
	info->stats = q->stats;
	return true;
}

void
p3_decoder_finish(P3Decoder *d, int32_t seq)
{
	DecSeq	   *q;

	if (seq < 0 || seq >= d->n_seq)
		return;
	q = &d->seqs[seq];
	if (q->phase != P3_SEQ_PREFILL && q->phase != P3_SEQ_DECODE)
		return;
	q->delta_from = q->text.len;
	q->token = -1;
	stop_seq(q, P3_STOP_CALLBACK);
}

void
p3_decoder_remove(P3Decoder *d, int32_t seq)
{
	if (seq < 0 || seq >= d->n_seq)
		return;
	clear_slot(&d->seqs[seq]);
}

void
p3_decoder_reset(P3Decoder *d)
{
	for (int32_t s = 0; s < d->n_seq; s++)
		clear_slot(&d->seqs[s]);
}

/* ---- scoring continuations ---- */

/* log of the sum of exp(logits[0..n)) (natural log, in double) */
static double
log_sum_exp(const float *logits, int32_t n)
{
	float		max = logits[0];
	double		sum = 0.0;

	for (int32_t i = 1; i < n; i++)
		if (logits[i] > max)
			max = logits[i];
	for (int32_t i = 0; i < n; i++)
		sum += exp((double) logits[i] - (double) max);
	return (double) max + log(sum);
}

static P3Status
check_score(const P3Decoder *d, const int32_t *prompt, int32_t n_prompt,
			const int32_t *const *conts, const int32_t *n_conts, int32_t n_cont, P3Error *err)
{
	P3SeqParams p = p3_seq_default_params();
	P3Status	st;

	p.max_tokens = 0;
	if ((st = check_add(d, prompt, n_prompt, &p, err)))
		return st;
	if (n_cont < 1 || conts == NULL || n_conts == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "there are no continuations to score");
	for (int32_t k = 0; k < n_cont; k++)
	{
		if (n_conts[k] < 1 || conts[k] == NULL)
			return p3_error(err, P3_ERR_INVALID_ARG, "continuation %d has no tokens", (int) k);
		if ((int64_t) n_prompt + n_conts[k] > d->n_ctx)
			return p3_error(err, P3_ERR_CONTEXT_FULL,
							"the prompt (%d tokens) and continuation %d (%d tokens) do not fit the context of %d",
							(int) n_prompt, (int) k, (int) n_conts[k], (int) d->n_ctx);
		for (int32_t i = 0; i < n_conts[k]; i++)
			if (conts[k][i] < 0 || conts[k][i] >= d->n_vocab)
				return p3_error(err, P3_ERR_INVALID_ARG,
								"token %d of continuation %d is out of range (0 to %d)",
								(int) conts[k][i], (int) k, (int) d->n_vocab - 1);
	}
	return P3_OK;
}

/* Evaluate tokens[0..n) on seq; every token's logits kept when all_logits, else the last's. */
static P3Status
eval_run(P3Decoder *d, int32_t seq, const int32_t *tokens, int32_t n, bool all_logits,
		 int32_t *seq_ids, uint8_t *want, P3Error *err)
{
	P3Batch		b;

	for (int32_t i = 0; i < n; i++)
	{
		seq_ids[i] = seq;
		want[i] = all_logits || i == n - 1;
	}
	b.n_tokens = n;
	b.tokens = tokens;
	b.seq = seq_ids;
	b.want_logits = want;
	return p3_eval(d->ctx, &b, err);
}

P3Status
p3_decoder_score(P3Decoder *d, const int32_t *prompt, int32_t n_prompt,
				 const int32_t *const *conts, const int32_t *n_conts, int32_t n_cont,
				 double *logprobs, P3Error *err)
{
	int32_t		slot;
	int32_t		reuse;
	int32_t		src;
	int32_t		src_len;
	int32_t		longest = n_prompt;
	int32_t    *seq_ids;
	uint8_t    *want;
	float	   *first;			/* logits after the prompt */
	double		first_lse;
	P3Status	st;

	if ((st = check_score(d, prompt, n_prompt, conts, n_conts, n_cont, err)))
		return st;
	slot = choose_slot(d, prompt, n_prompt, true);
	if (slot < 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "all %d sequences of the decoder are in use",
						(int) d->n_seq);
	for (int32_t k = 0; k < n_cont; k++)
		if (n_conts[k] > longest)
			longest = n_conts[k];
	seq_ids = malloc((size_t) longest * sizeof(int32_t));
	want = malloc((size_t) longest);
	first = malloc((size_t) d->n_vocab * sizeof(float));
	if (seq_ids == NULL || want == NULL || first == NULL)
	{
		st = p3_error(err, P3_ERR_NOMEM, "out of memory scoring %d continuations", (int) n_cont);
		goto done;
	}

	/* the prompt, reusing a cached prefix as p3_decoder_add does */
	reuse = reusable_prefix(d, slot, prompt, n_prompt);
	src = best_copy_source(d, slot, prompt, n_prompt, &src_len);
	if (src >= 0 && src_len > reuse)
	{
		if ((st = p3_kv_seq_copy(d->ctx, src, slot, src_len, err)))
			goto done;
		reuse = src_len;
	}
	p3_kv_seq_truncate(d->ctx, slot, reuse);
	if (reuse == 0)
		p3_kv_seq_clear(d->ctx, slot);
	p3_seq_set_rope_len(d->ctx, slot, n_prompt);
	if ((st = eval_run(d, slot, prompt + reuse, n_prompt - reuse, false, seq_ids, want, err)))
		goto done;
	memcpy(first, p3_logits(d->ctx, 0), (size_t) d->n_vocab * sizeof(float));
	first_lse = log_sum_exp(first, d->n_vocab);

	/* each continuation: its first token from the prompt's logits, the rest in one pass */
	for (int32_t k = 0; k < n_cont; k++)
	{
		double		sum = (double) first[conts[k][0]] - first_lse;

		if (n_conts[k] > 1)
		{
			p3_kv_seq_truncate(d->ctx, slot, n_prompt);
			if ((st = eval_run(d, slot, conts[k], n_conts[k] - 1, true, seq_ids, want, err)))
				goto done;
			for (int32_t i = 1; i < n_conts[k]; i++)
			{
				const float *row = p3_logits(d->ctx, i - 1);

				sum += (double) row[conts[k][i]] - log_sum_exp(row, d->n_vocab);
			}
		}
		logprobs[k] = sum;
	}
	st = P3_OK;

done:
	/* the slot keeps the prompt for later prefix reuse */
	if (p3_kv_seq_len(d->ctx, slot) > n_prompt)
		p3_kv_seq_truncate(d->ctx, slot, n_prompt);
	free(seq_ids);
	free(want);
	free(first);
	return st;
}
