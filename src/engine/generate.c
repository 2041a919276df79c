/*
 * generate.c — the generation loop shared by phi3-run and the SQL
 * functions (see phi3/generate.h).
 *
 *   1. Prefix reuse: the sequence's KV cache already holds the tokens of the
 *      previous call.  The longest common prefix with the new prompt is kept
 *      (if it was rotated with the same LongRoPE factor list this prompt
 *      will use), so rows that share a system prompt and instruction only
 *      evaluate their own part.  At least the last prompt token is always
 *      evaluated, since its logits choose the first generated token.
 *   2. The rest of the prompt is evaluated in one p3_eval call (chunked
 *      inside into matrix-matrix products).
 *   3. Tokens are sampled one at a time; each is streamed as complete UTF-8
 *      through the detokenizer and, unless it ends generation, fed back.
 * The context's abort callback is polled inside p3_eval and before every
 * token, so a cancel stops generation within one token.
 */
#include "phi3/generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

P3GenerateParams
p3_generate_default_params(void)
{
	P3GenerateParams p;

	memset(&p, 0, sizeof(p));
	p.max_tokens = 256;
	p.sampling = p3_sampler_default_params();
	p.stop_at_eog = true;
	p.context_full_is_error = false;
	p.reuse_prefix = true;
	p.strip_leading_space = true;
	return p;
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

/*
 * How many leading prompt tokens the sequence already holds, computed the
 * way this prompt would compute them (same tokens, same LongRoPE list).
 */
static int32_t
reusable_prefix(const P3Context *ctx, int32_t seq, const int32_t *prompt, int32_t n_prompt)
{
	const P3HParams *hp = &p3_context_model(ctx)->hp;
	const int32_t *held = p3_kv_seq_tokens(ctx, seq);
	int32_t		n_held = p3_kv_seq_len(ctx, seq);
	bool		will_be_long = hp->has_longrope && n_prompt > hp->n_ctx_orig;
	int32_t		n = 0;

	while (n < n_held && n < n_prompt - 1 && held[n] == prompt[n] &&
		   p3_kv_seq_pos_is_long(ctx, seq, n) == will_be_long)
		n++;
	return n;
}

/* Hand the text appended since `from` to the caller's callback; false means stop. */
static void
deliver(const P3GenerateParams *params, const P3Text *text, size_t from, bool *keep_going)
{
	if (params->on_text && text->len > from &&
		!params->on_text(params->user, text->data + from, text->len - from))
		*keep_going = false;
}

P3Status
p3_generate(P3Context *ctx, int32_t seq, const int32_t *prompt, int32_t n_prompt,
			const P3GenerateParams *params, P3Text *out, P3GenerateStats *stats,
			P3Error *err)
{
	const P3Model *model = p3_context_model(ctx);
	const P3Tokenizer *tok = model->tokenizer;
	int32_t		n_ctx = p3_context_params(ctx)->n_ctx;
	int32_t		n_vocab = model->hp.n_vocab;
	P3GenerateStats local_stats;
	P3Sampler  *sampler = NULL;
	P3Detokenizer detok;
	P3Text		scratch = {0};
	P3Text	   *text;
	P3Tokens	generated = {0};
	uint32_t   *mask = NULL;
	P3Status	st;
	int32_t		reuse = 0;
	double		t0;
	bool		keep_going = true;

	if (stats == NULL)
		stats = &local_stats;
	memset(stats, 0, sizeof(*stats));
	stats->n_prompt = n_prompt;

	if (seq < 0 || seq >= p3_context_params(ctx)->n_seq)
		return p3_error(err, P3_ERR_INVALID_ARG, "sequence id %d is out of range", (int) seq);
	if (n_prompt < 1)
		return p3_error(err, P3_ERR_INVALID_ARG, "the prompt has no tokens");
	if (params->max_tokens < 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "max_tokens must not be negative (got %d)", (int) params->max_tokens);
	if (n_prompt > n_ctx)
		return p3_error(err, P3_ERR_CONTEXT_FULL, "the prompt has %d tokens but the context holds %d",
						(int) n_prompt, (int) n_ctx);
	if (params->context_full_is_error && (int64_t) n_prompt + params->max_tokens > n_ctx)
		return p3_error(err, P3_ERR_CONTEXT_FULL,
						"the prompt has %d tokens and up to %d may be generated, but the context holds %d",
						(int) n_prompt, (int) params->max_tokens, (int) n_ctx);

	if ((st = p3_sampler_new(&params->sampling, n_vocab, &sampler, err)))
		return st;
	for (int32_t i = 0; i < n_prompt; i++)
		p3_sampler_accept(sampler, prompt[i]);
	if (params->mask_fn)
	{
		mask = malloc(((size_t) n_vocab + 31) / 32 * sizeof(uint32_t));
		if (mask == NULL)
		{
			st = p3_error(err, P3_ERR_NOMEM, "out of memory allocating the token mask");
			goto done;
		}
	}

	/* 1. prefix reuse, 2. the rest of the prompt */
	t0 = now_ms();
	if (params->reuse_prefix)
		reuse = reusable_prefix(ctx, seq, prompt, n_prompt);
	p3_kv_seq_truncate(ctx, seq, reuse);
	if (reuse == 0)
		p3_kv_seq_clear(ctx, seq);
	p3_seq_set_rope_len(ctx, seq, n_prompt);
	stats->n_prompt_reused = reuse;
	{
		P3Batch		batch = {0};
		int32_t    *seq_ids = malloc((size_t) (n_prompt - reuse) * sizeof(int32_t));

		if (seq_ids == NULL)
		{
			st = p3_error(err, P3_ERR_NOMEM, "out of memory");
			goto done;
		}
		for (int32_t i = 0; i < n_prompt - reuse; i++)
			seq_ids[i] = seq;
		batch.n_tokens = n_prompt - reuse;
		batch.tokens = prompt + reuse;
		batch.seq = seq_ids;
		st = p3_eval(ctx, &batch, err);
		free(seq_ids);
		if (st)
		{
			/* the cache holds only the reused prefix now; forget it rather than half a prompt */
			p3_kv_seq_clear(ctx, seq);
			goto done;
		}
	}
	stats->prompt_ms = now_ms() - t0;

	/* 3. sample, stream, feed back */
	t0 = now_ms();
	text = out ? out : &scratch;
	p3_detok_init(&detok, tok, false, params->strip_leading_space);
	for (int32_t g = 0; g < params->max_tokens && keep_going; g++)
	{
		const float *logits = p3_logits(ctx, p3_n_outputs(ctx) - 1);
		int32_t		id;
		size_t		before;

		if (mask)
		{
			memset(mask, 0xFF, ((size_t) n_vocab + 31) / 32 * sizeof(uint32_t));
			if ((st = params->mask_fn(params->user, generated.ids, (int32_t) generated.n, mask, err)))
				goto done;
		}
		if ((st = p3_sampler_sample(sampler, logits, mask, &id, err)))
			goto done;
		stats->n_generated++;
		if ((st = p3_tokens_push(&generated, id, err)))
			goto done;
		if (params->stop_at_eog && p3_tokenizer_is_eog(tok, id))
		{
			stats->stop = P3_STOP_EOG;
			break;
		}
		p3_sampler_accept(sampler, id);

		before = text->len;
		if ((st = p3_detok_push(&detok, id, text, err)))
			goto done;
		deliver(params, text, before, &keep_going);
		if (!keep_going)
		{
			stats->stop = P3_STOP_CALLBACK;
			break;
		}
		if (g == params->max_tokens - 1)
		{
			stats->stop = P3_STOP_MAX_TOKENS;
			break;
		}
		if (p3_kv_seq_len(ctx, seq) >= n_ctx)
		{
			if (params->context_full_is_error)
			{
				st = p3_error(err, P3_ERR_CONTEXT_FULL, "the context of %d tokens is full", (int) n_ctx);
				goto done;
			}
			stats->stop = P3_STOP_CONTEXT;
			break;
		}
		{
			P3Batch		batch = {0};

			batch.n_tokens = 1;
			batch.tokens = &id;
			batch.seq = &seq;
			if ((st = p3_eval(ctx, &batch, err)))
				goto done;
		}
	}
	if (params->max_tokens == 0)
		stats->stop = P3_STOP_MAX_TOKENS;
	{
		size_t		before = text->len;

		if ((st = p3_detok_flush(&detok, text, err)))
			goto done;
		deliver(params, text, before, &keep_going);
	}
	stats->generate_ms = now_ms() - t0;

done:
	p3_sampler_free(sampler);
	p3_tokens_free(&generated);
	p3_text_free(&scratch);
	free(mask);
	return st;
}
