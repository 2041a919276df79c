/*
 * generate.c — p3_generate, one generation in one sequence (see
 * phi3/generate.h), for phi3-run and the engine tests.
 *
 * A thin wrapper over the step-wise decoder (decoder.c), which owns the
 * generation rules: prefix reuse from the sequence's KV cache (at least the
 * last prompt token is always evaluated), the prompt evaluated in chunks of
 * the context's n_batch, then one token sampled, streamed as complete UTF-8
 * and fed back per step.  Here the steps are run to the end, each step's
 * text is appended to the caller's buffer and handed to on_text, and a
 * false from on_text finishes the sequence.  The context's abort callback
 * is polled inside every step (p3_eval), so a cancel stops generation
 * within one token.
 */
#include "phi3/generate.h"

#include <string.h>

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

/* Hand the step's new text to the caller's callback; false means stop. */
static bool
deliver(const P3GenerateParams *params, const P3SeqInfo *info)
{
	if (params->on_text && info->delta_len > 0)
		return params->on_text(params->user, info->delta, info->delta_len);
	return true;
}

P3Status
p3_generate(P3Context *ctx, int32_t seq, const int32_t *prompt, int32_t n_prompt,
			const P3GenerateParams *params, P3Text *out, P3GenerateStats *stats,
			P3Error *err)
{
	int32_t		n_ctx = p3_context_params(ctx)->n_ctx;
	P3GenerateStats local_stats;
	P3Decoder  *dec = NULL;
	P3SeqParams sp = p3_seq_default_params();
	P3SeqInfo	info;
	P3Status	st;
	int32_t		slot;
	bool		callback_stopped = false;

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

	sp.max_tokens = params->max_tokens;
	sp.sampling = params->sampling;
	sp.stop_at_eog = params->stop_at_eog;
	sp.reuse_prefix = params->reuse_prefix;
	sp.strip_leading_space = params->strip_leading_space;
	sp.constraint = params->constraint;
	sp.slot = seq;

	if ((st = p3_decoder_new(ctx, 0, &dec, err)))
		return st;
	if ((st = p3_decoder_add(dec, prompt, n_prompt, &sp, &slot, err)))
		goto done;
	while (p3_decoder_n_live(dec) > 0)
	{
		p3_decoder_seq_info(dec, slot, &info);
		if ((st = p3_decoder_step(dec, err)))
		{
			/* the cache holds part of the prompt at most: forget it rather than half a prompt */
			if (info.phase == P3_SEQ_PREFILL)
				p3_kv_seq_clear(ctx, seq);
			goto done;
		}
		p3_decoder_seq_info(dec, slot, &info);
		if (out && info.delta_len > 0 && (st = p3_text_append(out, info.delta, info.delta_len, err)))
			goto done;
		if (!deliver(params, &info))
		{
			/* as before the decoder: the callback's "stop" wins over max_tokens and a full context */
			if (info.phase != P3_SEQ_DONE || info.stats.stop == P3_STOP_MAX_TOKENS ||
				info.stats.stop == P3_STOP_CONTEXT)
				callback_stopped = true;
			if (info.phase != P3_SEQ_DONE)
			{
				p3_decoder_finish(dec, slot);
				p3_decoder_seq_info(dec, slot, &info);
				if (out && info.delta_len > 0 && (st = p3_text_append(out, info.delta, info.delta_len, err)))
					goto done;
				(void) deliver(params, &info);
			}
		}
	}
	p3_decoder_seq_info(dec, slot, &info);
	*stats = info.stats;
	if (callback_stopped)
		stats->stop = P3_STOP_CALLBACK;
	if (info.stats.stop == P3_STOP_ERROR)
	{
		st = info.error->status;
		if (err)
			*err = *info.error;
	}
	else if (info.stats.stop == P3_STOP_CONTEXT && params->context_full_is_error)
		st = p3_error(err, P3_ERR_CONTEXT_FULL, "the context of %d tokens is full", (int) n_ctx);

done:
	p3_decoder_free(dec);
	return st;
}
