/*
 * test_decoder.c — the step-wise multi-sequence decoder (phi3/decoder.h).
 *
 * The decoder's promise is that decoding beside other sequences changes
 * nothing: each sequence's text is byte for byte what p3_generate gives for
 * it alone in a fresh context, whatever the steps at which sequences are
 * added and finish, the prompt chunking, and the mix of prefill and decode
 * tokens in one forward pass.  Checked here on float, K-quant (4-token
 * kernels, Q8 activations) and LongRoPE models, greedy and seeded, plus:
 *   - a constraint's mask and accept run once per sampled token, the
 *     sampled token obeys the mask, complete() stops the sequence, and a
 *     failing constraint stops only its own sequence;
 *   - an abort in the middle of a step changes nothing, and stepping on
 *     gives the same texts;
 *   - prefix reuse inside a slot and KV copies across slots;
 *   - argument errors, finish during prefill, max_tokens 0, a full context;
 *   - p3_decoder_score against log-probabilities computed by hand;
 *   - jump-forward: forced runs of a constraint in one pass, the same text.
 *
 * Models come from bin/phi3-mkmodel (make engine-check builds them).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "phi3/context.h"
#include "phi3/decoder.h"
#include "phi3/generate.h"
#include "phi3/model.h"
#include "phi3/tokenizer.h"

static char model_dir[512];

static P3Model *
open_model(const char *file)
{
	char		path[1024];
	P3Model    *m = NULL;
	P3Error		err = {0};

	snprintf(path, sizeof(path), "%s/%s", model_dir, file);
	if (p3_model_open(path, &m, &err) != P3_OK)
	{
		fprintf(stderr, "cannot open %s: %s\n", path, err.message);
		exit(1);
	}
	return m;
}

static P3Context *
new_context(const P3Model *m, int n_ctx, int n_seq, int n_batch, int n_threads)
{
	P3ContextParams p = p3_context_default_params();
	P3Context  *ctx = NULL;
	P3Error		err = {0};

	p.n_ctx = n_ctx;
	p.n_seq = n_seq;
	p.n_batch = n_batch;
	p.n_threads = n_threads;
	if (p3_context_new(m, &p, &ctx, &err) != P3_OK)
	{
		fprintf(stderr, "context: %s\n", err.message);
		exit(1);
	}
	return ctx;
}

static P3Decoder *
new_decoder(P3Context *ctx, int step_tokens)
{
	P3Decoder  *d = NULL;
	P3Error		err = {0};

	CHECK_STATUS(p3_decoder_new(ctx, step_tokens, &d, &err), P3_OK);
	if (d == NULL)
		exit(1);
	return d;
}

/* Deterministic token ids in [3, n_vocab) (no BOS/EOS needed). */
static void
make_tokens(int32_t *ids, int n, uint64_t seed, int32_t n_vocab)
{
	for (int i = 0; i < n; i++)
		ids[i] = 3 + (int32_t) (harness_rand(&seed) % (uint64_t) (n_vocab - 3));
}

/* One request of a scenario: a prompt, its options, when it joins. */
typedef struct Request
{
	int32_t		prompt[48];
	int32_t		n_prompt;
	int32_t		max_tokens;
	float		temperature;
	uint64_t	seed;
	int			add_at_step;	/* joins at this step (or later if no slot is free) */
	/* the solo run */
	P3Text		solo;
	P3GenerateStats solo_stats;
	/* the run beside the others */
	int32_t		slot;
	bool		added;
	bool		removed;
	P3Text		got;			/* concatenated deltas */
	int32_t		tokens[64];		/* tokens sampled, in order */
	int			n_tokens;
	P3GenerateStats stats;
	int			mixed_steps;	/* steps it decoded in while another was in prefill */
} Request;

static P3SeqParams
request_params(const Request *r)
{
	P3SeqParams sp = p3_seq_default_params();

	sp.max_tokens = r->max_tokens;
	sp.sampling.temperature = r->temperature;
	sp.sampling.seed = r->seed;
	sp.stop_at_eog = true;
	return sp;
}

/* The reference: p3_generate alone in a fresh one-sequence context. */
static void
run_solo(const P3Model *m, int n_ctx, Request *r)
{
	P3Context  *ctx = new_context(m, n_ctx, 1, 64, 1);
	P3GenerateParams gp = p3_generate_default_params();
	P3Error		err = {0};

	gp.max_tokens = r->max_tokens;
	gp.sampling.temperature = r->temperature;
	gp.sampling.seed = r->seed;
	gp.stop_at_eog = true;
	CHECK_STATUS(p3_generate(ctx, 0, r->prompt, r->n_prompt, &gp, &r->solo, &r->solo_stats, &err), P3_OK);
	p3_context_free(ctx);
}

/*
 * Run the requests through one decoder of n_seq slots with the given step
 * budget: each joins at its step once a slot is free; finished ones are
 * removed one step after they stop.  Returns the number of steps.
 */
static int
run_together(P3Decoder *d, Request *reqs, int n_req)
{
	P3Error		err = {0};
	int			step = 0;
	int			n_removed = 0;

	while (n_removed < n_req && step < 10000)
	{
		bool		any_prefill = false;

		for (int i = 0; i < n_req; i++)
		{
			Request    *r = &reqs[i];
			P3SeqParams sp = request_params(r);

			if (r->added || step < r->add_at_step || p3_decoder_n_free(d) == 0)
				continue;
			CHECK_STATUS(p3_decoder_add(d, r->prompt, r->n_prompt, &sp, &r->slot, &err), P3_OK);
			r->added = true;
		}
		for (int i = 0; i < n_req; i++)
		{
			P3SeqInfo	info;

			if (reqs[i].added && !reqs[i].removed &&
				p3_decoder_seq_info(d, reqs[i].slot, &info) && info.phase == P3_SEQ_PREFILL)
				any_prefill = true;
		}
		CHECK_STATUS(p3_decoder_step(d, &err), P3_OK);
		step++;
		for (int i = 0; i < n_req; i++)
		{
			Request    *r = &reqs[i];
			P3SeqInfo	info;

			if (!r->added || r->removed)
				continue;
			p3_decoder_seq_info(d, r->slot, &info);
			if (info.delta_len > 0)
				p3_text_append(&r->got, info.delta, info.delta_len, &err);
			if (any_prefill && info.phase == P3_SEQ_DECODE && info.token >= 0)
				r->mixed_steps++;
			if (info.token >= 0 && r->n_tokens < 64)
				r->tokens[r->n_tokens++] = info.token;
			if (info.phase == P3_SEQ_DONE)
			{
				r->stats = info.stats;
				p3_decoder_remove(d, r->slot);
				r->removed = true;
				n_removed++;
			}
		}
	}
	return step;
}

/*
 * Greedy tokens of r computed without the decoder: the whole prompt in one
 * p3_eval, then argmax and feed back, stopping as the decoder does.  The
 * token list must equal the one the decoder sampled beside the others.
 */
static void
check_greedy_by_hand(const P3Model *m, int n_ctx, const Request *r)
{
	P3Context  *ctx = new_context(m, n_ctx, 1, 64, 1);
	const P3Tokenizer *tok = m->tokenizer;
	P3Batch		b = {0};
	P3Error		err = {0};
	int32_t		want[64];
	int			n = 0;

	b.n_tokens = r->n_prompt;
	b.tokens = r->prompt;
	CHECK_STATUS(p3_eval(ctx, &b, &err), P3_OK);
	while (n < r->max_tokens && n < 64)
	{
		int32_t		id = p3_argmax(p3_logits(ctx, 0), m->hp.n_vocab, NULL);

		want[n++] = id;
		if (p3_tokenizer_is_eog(tok, id) || n == r->max_tokens || p3_kv_seq_len(ctx, 0) >= n_ctx)
			break;
		b.n_tokens = 1;
		b.tokens = &id;
		CHECK_STATUS(p3_eval(ctx, &b, &err), P3_OK);
	}
	CHECK_EQ_INT(r->n_tokens, n);
	CHECK(n == r->n_tokens && memcmp(want, r->tokens, sizeof(int32_t) * (size_t) n) == 0);
	p3_context_free(ctx);
}

static void
check_same_as_solo(Request *reqs, int n_req, const char *what)
{
	for (int i = 0; i < n_req; i++)
	{
		Request    *r = &reqs[i];

		CHECK_MSG(r->removed, "%s: request %d never finished", what, i);
		CHECK_MSG(r->got.len == r->solo.len &&
				  (r->got.len == 0 || memcmp(r->got.data, r->solo.data, r->got.len) == 0),
				  "%s: request %d differs from its solo run (%zu vs %zu bytes)", what, i,
				  r->got.len, r->solo.len);
		CHECK_EQ_INT(r->stats.n_generated, r->solo_stats.n_generated);
		CHECK_EQ_INT(r->stats.stop, r->solo_stats.stop);
		CHECK_EQ_INT(r->stats.n_prompt, r->n_prompt);
	}
}

static void
free_requests(Request *reqs, int n_req)
{
	for (int i = 0; i < n_req; i++)
	{
		p3_text_free(&reqs[i].solo);
		p3_text_free(&reqs[i].got);
	}
}

/*
 * Seven requests of different prompt lengths and budgets, joining at
 * different steps, through 3 slots: later ones wait for a free slot.
 */
static void
scenario(const char *model_file, int n_ctx, int step_tokens, int n_seq)
{
	P3Model    *m = open_model(model_file);
	const int32_t V = m->hp.n_vocab;
	static const int lens[] = {5, 37, 12, 1, 48, 20, 9};
	static const int budgets[] = {14, 6, 20, 9, 3, 11, 0};
	static const int joins[] = {0, 0, 2, 3, 3, 7, 8};
	enum
	{
	N = 7};
	Request    *reqs = calloc(N, sizeof(Request));
	P3Context  *ctx;
	P3Decoder  *d;
	int			steps;
	int			mixed = 0;

	for (int i = 0; i < N; i++)
	{
		Request    *r = &reqs[i];

		r->n_prompt = lens[i];
		make_tokens(r->prompt, r->n_prompt, 500 + (uint64_t) i, V);
		/* requests 2 and 5 share their first 8 tokens with request 1 (prefix copies) */
		if (i == 2 || i == 5)
			memcpy(r->prompt, reqs[1].prompt, 8 * sizeof(int32_t));
		r->max_tokens = budgets[i];
		r->temperature = (i % 3 == 1) ? 0.9f : 0.0f;
		r->seed = 77 + (uint64_t) i;
		r->add_at_step = joins[i];
		run_solo(m, n_ctx, r);
	}

	ctx = new_context(m, n_ctx, n_seq, 64, 2);
	d = new_decoder(ctx, step_tokens);
	steps = run_together(d, reqs, N);
	check_same_as_solo(reqs, N, model_file);
	for (int i = 0; i < N; i++)
	{
		mixed += reqs[i].mixed_steps;
		if (reqs[i].temperature == 0.0f)
			check_greedy_by_hand(m, n_ctx, &reqs[i]);
	}
	/* the scenario must really have mixed prefill chunks with decode tokens */
	CHECK_MSG(mixed > 0, "%s: no step mixed prefill and decode", model_file);
	CHECK(steps > 0);
	CHECK_EQ_INT(p3_decoder_n_live(d), 0);
	CHECK_EQ_INT(p3_decoder_n_free(d), n_seq);

	p3_decoder_free(d);
	p3_context_free(ctx);
	free_requests(reqs, N);
	free(reqs);
	p3_model_free(m);
}

static void
test_together_f32(void)
{
	scenario("tiny-f32.gguf", 128, 8, 3);
	scenario("tiny-f32.gguf", 128, 64, 4);
}

static void
test_together_q4_k(void)
{
	scenario("tiny-q4_k.gguf", 128, 8, 3);
}

static void
test_together_longrope(void)
{
	/* n_ctx_orig 16: prompts of 20+ tokens use the long factors, chunked in 8s */
	scenario("tiny-longrope.gguf", 64, 8, 3);
}

/* ---- constraints ---- */

/* Allows only tokens in [lo, hi); counts calls; completes after `complete_after` tokens. */
typedef struct RangeConstraint
{
	int32_t		lo;
	int32_t		hi;
	int			masks;
	int			accepts;
	int			complete_after;	/* 0: never */
	int			fail_mask_at;	/* mask call number that fails; 0: never */
	bool		allow_none;		/* clear every bit */
	bool		bad_accept;		/* an accepted token was outside the range */
	int32_t		last_accepted;
} RangeConstraint;

static P3Status
range_mask(void *state, uint32_t *mask, int32_t n_vocab, P3Error *err)
{
	RangeConstraint *c = state;

	c->masks++;
	if (c->fail_mask_at > 0 && c->masks == c->fail_mask_at)
		return p3_error(err, P3_ERR_INVALID_ARG, "mask failed on purpose at call %d", c->masks);
	for (int32_t i = 0; i < n_vocab; i++)
		if (c->allow_none || i < c->lo || i >= c->hi)
			mask[i / 32] &= ~(1u << (i % 32));
	return P3_OK;
}

static P3Status
range_accept(void *state, int32_t token, P3Error *err)
{
	RangeConstraint *c = state;

	c->accepts++;
	c->last_accepted = token;
	if (token < c->lo || token >= c->hi)
		c->bad_accept = true;
	return P3_OK;
}

static bool
range_complete(void *state)
{
	RangeConstraint *c = state;

	return c->complete_after > 0 && c->accepts >= c->complete_after;
}

/* Step d until slot seq is done; returns its final info. */
static P3SeqInfo
run_to_done(P3Decoder *d, int32_t seq)
{
	P3SeqInfo	info;
	P3Error		err = {0};

	for (int i = 0; i < 1000; i++)
	{
		p3_decoder_seq_info(d, seq, &info);
		if (info.phase == P3_SEQ_DONE)
			break;
		CHECK_STATUS(p3_decoder_step(d, &err), P3_OK);
	}
	p3_decoder_seq_info(d, seq, &info);
	return info;
}

static void
test_constraint(void)
{
	P3Model    *m = open_model("tiny-f32.gguf");
	P3Context  *ctx = new_context(m, 128, 2, 64, 2);
	P3Decoder  *d = new_decoder(ctx, 0);
	int32_t		prompt[10];
	P3Error		err = {0};
	P3SeqParams sp = p3_seq_default_params();
	P3SeqInfo	info;
	int32_t		a,
				b;

	make_tokens(prompt, 10, 9, m->hp.n_vocab);
	sp.sampling.temperature = 0.0f;
	sp.max_tokens = 12;

	/* tokens 1000..1099 only; mask and accept once per token; the sampled token obeys */
	{
		RangeConstraint c = {.lo = 1000, .hi = 1100};
		P3Constraint pc = {.state = &c, .mask = range_mask, .accept = range_accept, .complete = range_complete};
		int			tokens_seen = 0;

		sp.constraint = &pc;
		CHECK_STATUS(p3_decoder_add(d, prompt, 10, &sp, &a, &err), P3_OK);
		for (int i = 0; i < 100; i++)
		{
			CHECK_STATUS(p3_decoder_step(d, &err), P3_OK);
			p3_decoder_seq_info(d, a, &info);
			if (info.token >= 0)
			{
				tokens_seen++;
				CHECK(info.token >= 1000 && info.token < 1100);
				CHECK_EQ_INT(c.last_accepted, info.token);
				CHECK_EQ_INT(c.masks, tokens_seen);
				CHECK_EQ_INT(c.accepts, tokens_seen);
			}
			if (info.phase == P3_SEQ_DONE)
				break;
		}
		CHECK_EQ_INT(info.stats.stop, P3_STOP_MAX_TOKENS);
		CHECK_EQ_INT(c.masks, 12);
		CHECK_EQ_INT(c.accepts, 12);
		CHECK(!c.bad_accept);
		p3_decoder_remove(d, a);
	}

	/* complete() after 4 tokens stops with P3_STOP_CONSTRAINT */
	{
		RangeConstraint c = {.lo = 3, .hi = 32000, .complete_after = 4};
		P3Constraint pc = {.state = &c, .mask = range_mask, .accept = range_accept, .complete = range_complete};

		sp.constraint = &pc;
		CHECK_STATUS(p3_decoder_add(d, prompt, 10, &sp, &a, &err), P3_OK);
		info = run_to_done(d, a);
		CHECK_EQ_INT(info.stats.stop, P3_STOP_CONSTRAINT);
		CHECK_EQ_INT(info.stats.n_generated, 4);
		p3_decoder_remove(d, a);
	}

	/* a failing mask stops its own sequence only; a mask allowing nothing too */
	{
		RangeConstraint bad = {.lo = 3, .hi = 32000, .fail_mask_at = 3};
		RangeConstraint none = {.lo = 3, .hi = 32000, .allow_none = true};
		P3Constraint pbad = {.state = &bad, .mask = range_mask, .accept = range_accept, .complete = NULL};
		P3Constraint pnone = {.state = &none, .mask = range_mask, .accept = range_accept, .complete = NULL};
		P3SeqParams free_sp = sp;
		P3SeqInfo	ib;
		P3Text		solo = {0};

		sp.constraint = &pbad;
		CHECK_STATUS(p3_decoder_add(d, prompt, 10, &sp, &a, &err), P3_OK);
		free_sp.constraint = NULL;
		CHECK_STATUS(p3_decoder_add(d, prompt, 10, &free_sp, &b, &err), P3_OK);
		info = run_to_done(d, a);
		CHECK_EQ_INT(info.stats.stop, P3_STOP_ERROR);
		CHECK(info.error != NULL && info.error->status == P3_ERR_INVALID_ARG);
		CHECK(info.error != NULL && strstr(info.error->message, "on purpose at call 3") != NULL);
		CHECK_EQ_INT(info.stats.n_generated, 2);
		ib = run_to_done(d, b);
		CHECK_EQ_INT(ib.stats.stop, P3_STOP_MAX_TOKENS);
		CHECK_EQ_INT(ib.stats.n_generated, 12);
		/* the unconstrained neighbour wrote what it writes alone */
		{
			P3Context  *c1 = new_context(m, 128, 1, 64, 1);
			P3GenerateParams gp = p3_generate_default_params();

			gp.max_tokens = 12;
			gp.sampling.temperature = 0.0f;
			CHECK_STATUS(p3_generate(c1, 0, prompt, 10, &gp, &solo, NULL, &err), P3_OK);
			CHECK(solo.len == ib.text_len && memcmp(solo.data, ib.text, solo.len) == 0);
			p3_context_free(c1);
			p3_text_free(&solo);
		}
		p3_decoder_remove(d, a);
		p3_decoder_remove(d, b);

		sp.constraint = &pnone;
		CHECK_STATUS(p3_decoder_add(d, prompt, 10, &sp, &a, &err), P3_OK);
		info = run_to_done(d, a);
		CHECK_EQ_INT(info.stats.stop, P3_STOP_ERROR);
		CHECK(info.error != NULL && info.error->status == P3_ERR_INVALID_ARG);
		CHECK_EQ_INT(none.accepts, 0);
		p3_decoder_remove(d, a);
	}

	/* a constraint without an accept step is refused */
	{
		RangeConstraint c = {.lo = 0, .hi = 10};
		P3Constraint pc = {.state = &c, .mask = range_mask, .accept = NULL, .complete = NULL};

		sp.constraint = &pc;
		CHECK_STATUS(p3_decoder_add(d, prompt, 10, &sp, &a, &err), P3_ERR_INVALID_ARG);
	}

	/* through the wrapper: p3_generate honours the constraint too */
	{
		RangeConstraint c = {.lo = 1000, .hi = 1100};
		P3Constraint pc = {.state = &c, .mask = range_mask, .accept = range_accept, .complete = NULL};
		P3GenerateParams gp = p3_generate_default_params();
		P3GenerateStats st;
		P3Context  *c1 = new_context(m, 128, 1, 64, 1);

		gp.max_tokens = 5;
		gp.sampling.temperature = 0.0f;
		gp.constraint = &pc;
		CHECK_STATUS(p3_generate(c1, 0, prompt, 10, &gp, NULL, &st, &err), P3_OK);
		CHECK_EQ_INT(c.accepts, 5);
		CHECK(!c.bad_accept);
		p3_context_free(c1);
	}

	p3_decoder_free(d);
	p3_context_free(ctx);
	p3_model_free(m);
}

/* ---- abort in the middle of a step ---- */

typedef struct AbortCounter
{
	int			calls;
	int			abort_at;
} AbortCounter;

static bool
abort_at_call(void *user)
{
	AbortCounter *a = user;

	return ++a->calls == a->abort_at;
}

static void
test_abort_mid_step(void)
{
	P3Model    *m = open_model("tiny-q4_k.gguf");
	enum
	{
	N = 3};
	Request    *reqs = calloc(N, sizeof(Request));
	P3Context  *ctx;
	P3Decoder  *d;
	P3Error		err = {0};
	int			aborted = 0;

	for (int i = 0; i < N; i++)
	{
		reqs[i].n_prompt = 10 + 13 * i;
		make_tokens(reqs[i].prompt, reqs[i].n_prompt, 900 + (uint64_t) i, m->hp.n_vocab);
		reqs[i].max_tokens = 8 + i;
		reqs[i].temperature = i == 1 ? 0.8f : 0.0f;
		reqs[i].seed = 5;
		run_solo(m, 128, &reqs[i]);
	}
	ctx = new_context(m, 128, N, 64, 2);
	d = new_decoder(ctx, 8);
	for (int i = 0; i < N; i++)
	{
		P3SeqParams sp = request_params(&reqs[i]);

		CHECK_STATUS(p3_decoder_add(d, reqs[i].prompt, reqs[i].n_prompt, &sp, &reqs[i].slot, &err), P3_OK);
	}
	/* every other step is aborted at its second poll, then retried */
	for (int step = 0; p3_decoder_n_live(d) > 0 && step < 1000; step++)
	{
		if (step % 2 == 0)
		{
			AbortCounter ac = {0, 2};
			int32_t		len_before[N];
			P3SeqInfo	before[N];

			for (int i = 0; i < N; i++)
			{
				len_before[i] = p3_kv_seq_len(ctx, reqs[i].slot);
				p3_decoder_seq_info(d, reqs[i].slot, &before[i]);
			}
			p3_context_set_abort(ctx, abort_at_call, &ac);
			if (p3_decoder_step(d, &err) == P3_ERR_ABORTED)
			{
				aborted++;
				CHECK_EQ_INT(err.status, P3_ERR_ABORTED);
				for (int i = 0; i < N; i++)
				{
					P3SeqInfo	after;

					p3_decoder_seq_info(d, reqs[i].slot, &after);
					CHECK_EQ_INT(p3_kv_seq_len(ctx, reqs[i].slot), len_before[i]);
					CHECK_EQ_INT(after.phase, before[i].phase);
					CHECK_EQ_INT(after.stats.n_generated, before[i].stats.n_generated);
					CHECK_EQ_INT(after.text_len, before[i].text_len);
				}
			}
			p3_context_set_abort(ctx, NULL, NULL);
		}
		CHECK_STATUS(p3_decoder_step(d, &err), P3_OK);
		for (int i = 0; i < N; i++)
		{
			P3SeqInfo	info;

			p3_decoder_seq_info(d, reqs[i].slot, &info);
			if (info.delta_len > 0)
				p3_text_append(&reqs[i].got, info.delta, info.delta_len, &err);
			if (info.phase == P3_SEQ_DONE && !reqs[i].removed)
			{
				reqs[i].stats = info.stats;
				reqs[i].removed = true;
			}
		}
	}
	CHECK(aborted >= 3);
	check_same_as_solo(reqs, N, "abort");
	p3_decoder_free(d);
	p3_context_free(ctx);
	free_requests(reqs, N);
	free(reqs);
	p3_model_free(m);
}

/* ---- prefix reuse in a slot and across slots ---- */

static void
test_prefix_reuse(void)
{
	P3Model    *m = open_model("tiny-f32.gguf");
	P3Context  *ctx = new_context(m, 128, 3, 64, 2);
	P3Decoder  *d = new_decoder(ctx, 0);
	P3SeqParams sp = p3_seq_default_params();
	P3Error		err = {0};
	Request		ra = {0},
				rb = {0};
	P3SeqInfo	info;
	int32_t		a,
				b,
				c;

	ra.n_prompt = rb.n_prompt = 30;
	make_tokens(ra.prompt, 30, 61, m->hp.n_vocab);
	memcpy(rb.prompt, ra.prompt, sizeof(ra.prompt));
	make_tokens(rb.prompt + 20, 10, 62, m->hp.n_vocab);	/* shares 20 tokens */
	ra.max_tokens = rb.max_tokens = 6;
	run_solo(m, 128, &ra);
	run_solo(m, 128, &rb);
	sp.max_tokens = 6;
	sp.sampling.temperature = 0.0f;

	CHECK_STATUS(p3_decoder_add(d, ra.prompt, 30, &sp, &a, &err), P3_OK);
	info = run_to_done(d, a);
	CHECK_EQ_INT(info.stats.n_prompt_reused, 0);
	CHECK(info.text_len == ra.solo.len && memcmp(info.text, ra.solo.data, info.text_len) == 0);

	/* a is DONE but not removed: b takes another slot and copies the shared 20 tokens */
	CHECK_STATUS(p3_decoder_add(d, rb.prompt, 30, &sp, &b, &err), P3_OK);
	CHECK(b != a);
	info = run_to_done(d, b);
	CHECK_EQ_INT(info.stats.n_prompt_reused, 20);
	CHECK_EQ_INT(info.stats.n_prompt_copied, 20);
	CHECK(info.text_len == rb.solo.len && memcmp(info.text, rb.solo.data, info.text_len) == 0);

	/* a removed: the same prompt again goes to a's slot and reuses all but its last token */
	p3_decoder_remove(d, a);
	CHECK_STATUS(p3_decoder_add(d, ra.prompt, 30, &sp, &c, &err), P3_OK);
	CHECK_EQ_INT(c, a);
	info = run_to_done(d, c);
	CHECK_EQ_INT(info.stats.n_prompt_reused, 29);
	CHECK_EQ_INT(info.stats.n_prompt_copied, 0);
	CHECK(info.text_len == ra.solo.len && memcmp(info.text, ra.solo.data, info.text_len) == 0);
	p3_decoder_remove(d, c);

	/* reuse_prefix off: nothing reused, same text */
	sp.reuse_prefix = false;
	CHECK_STATUS(p3_decoder_add(d, ra.prompt, 30, &sp, &c, &err), P3_OK);
	info = run_to_done(d, c);
	CHECK_EQ_INT(info.stats.n_prompt_reused, 0);
	CHECK(info.text_len == ra.solo.len && memcmp(info.text, ra.solo.data, info.text_len) == 0);

	p3_text_free(&ra.solo);
	p3_text_free(&rb.solo);
	p3_decoder_free(d);
	p3_context_free(ctx);
	p3_model_free(m);
}

/*
 * Rows added together with a common 24-token prefix: the oldest computes
 * it, the others wait one step and copy it; every text is its solo text.
 */
static void
test_shared_prefix_together(void)
{
	P3Model    *m = open_model("tiny-q4_k.gguf");
	enum
	{
	N = 4};
	Request    *reqs = calloc(N, sizeof(Request));
	P3Context  *ctx;
	P3Decoder  *d;
	int			copied = 0;

	for (int i = 0; i < N; i++)
	{
		Request    *r = &reqs[i];

		r->n_prompt = 30 + i;
		make_tokens(r->prompt, r->n_prompt, 40 + (uint64_t) i, m->hp.n_vocab);
		if (i > 0)
			memcpy(r->prompt, reqs[0].prompt, 24 * sizeof(int32_t));
		r->max_tokens = 5;
		run_solo(m, 128, r);
	}
	ctx = new_context(m, 128, N, 64, 2);
	d = new_decoder(ctx, 8);
	run_together(d, reqs, N);
	check_same_as_solo(reqs, N, "shared prefix");
	CHECK_EQ_INT(reqs[0].stats.n_prompt_copied, 0);
	for (int i = 1; i < N; i++)
	{
		CHECK_MSG(reqs[i].stats.n_prompt_copied >= 24, "request %d copied %d", i,
				  reqs[i].stats.n_prompt_copied);
		copied += reqs[i].stats.n_prompt_copied;
	}
	CHECK(copied >= 3 * 24);
	p3_decoder_free(d);
	p3_context_free(ctx);
	free_requests(reqs, N);
	free(reqs);
	p3_model_free(m);
}

/* ---- errors and edge cases ---- */

static void
test_errors_and_edges(void)
{
	P3Model    *m = open_model("tiny-f32.gguf");
	P3Context  *ctx = new_context(m, 32, 2, 64, 1);
	P3Decoder  *d = new_decoder(ctx, 4);
	P3SeqParams sp = p3_seq_default_params();
	P3Error		err = {0};
	P3SeqInfo	info;
	int32_t		prompt[40];
	int32_t		a,
				b,
				c;

	make_tokens(prompt, 40, 3, m->hp.n_vocab);
	sp.sampling.temperature = 0.0f;
	sp.stop_at_eog = false;

	{
		P3Decoder  *bad = NULL;

		CHECK_STATUS(p3_decoder_new(ctx, -1, &bad, &err), P3_ERR_INVALID_ARG);
		CHECK(bad == NULL);
	}
	CHECK_STATUS(p3_decoder_add(d, prompt, 0, &sp, &a, &err), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_decoder_add(d, prompt, 33, &sp, &a, &err), P3_ERR_CONTEXT_FULL);
	CHECK(strstr(err.message, "33 tokens") != NULL);
	sp.max_tokens = -1;
	CHECK_STATUS(p3_decoder_add(d, prompt, 5, &sp, &a, &err), P3_ERR_INVALID_ARG);
	sp.max_tokens = 4;
	{
		int32_t		bad[2] = {5, 1 << 30};

		CHECK_STATUS(p3_decoder_add(d, bad, 2, &sp, &a, &err), P3_ERR_INVALID_ARG);
	}
	sp.slot = 2;
	CHECK_STATUS(p3_decoder_add(d, prompt, 5, &sp, &a, &err), P3_ERR_INVALID_ARG);
	sp.slot = -1;
	sp.sampling.temperature = NAN;
	CHECK_STATUS(p3_decoder_add(d, prompt, 5, &sp, &a, &err), P3_ERR_INVALID_ARG);
	sp.sampling.temperature = 0.0f;
	CHECK_EQ_INT(p3_decoder_n_free(d), 2);

	/* a step with nothing live does nothing */
	CHECK_STATUS(p3_decoder_step(d, &err), P3_OK);

	/* two slots taken: a third add is refused; a busy slot cannot be asked for */
	CHECK_STATUS(p3_decoder_add(d, prompt, 10, &sp, &a, &err), P3_OK);
	CHECK_STATUS(p3_decoder_add(d, prompt + 10, 10, &sp, &b, &err), P3_OK);
	CHECK_STATUS(p3_decoder_add(d, prompt, 10, &sp, &c, &err), P3_ERR_INVALID_ARG);
	CHECK(strstr(err.message, "in use") != NULL);
	sp.slot = a;
	CHECK_STATUS(p3_decoder_add(d, prompt, 10, &sp, &c, &err), P3_ERR_INVALID_ARG);
	sp.slot = -1;

	/* finish during prefill (step budget 4: the 10-token prompts need 3 steps) */
	CHECK_STATUS(p3_decoder_step(d, &err), P3_OK);
	p3_decoder_seq_info(d, a, &info);
	CHECK_EQ_INT(info.phase, P3_SEQ_PREFILL);
	p3_decoder_finish(d, a);
	p3_decoder_seq_info(d, a, &info);
	CHECK_EQ_INT(info.phase, P3_SEQ_DONE);
	CHECK_EQ_INT(info.stats.stop, P3_STOP_CALLBACK);
	CHECK_EQ_INT(info.text_len, 0);
	CHECK_EQ_INT(p3_decoder_n_live(d), 1);
	p3_decoder_finish(d, a);	/* finishing twice is harmless */
	p3_decoder_remove(d, a);
	CHECK_EQ_INT(p3_decoder_n_free(d), 1);
	info = run_to_done(d, b);
	CHECK_EQ_INT(info.stats.stop, P3_STOP_MAX_TOKENS);
	CHECK_EQ_INT(info.stats.n_generated, 4);
	p3_decoder_reset(d);
	CHECK_EQ_INT(p3_decoder_n_free(d), 2);

	/* max_tokens 0: the prompt is evaluated, nothing sampled */
	sp.max_tokens = 0;
	CHECK_STATUS(p3_decoder_add(d, prompt, 6, &sp, &a, &err), P3_OK);
	info = run_to_done(d, a);
	CHECK_EQ_INT(info.stats.stop, P3_STOP_MAX_TOKENS);
	CHECK_EQ_INT(info.stats.n_generated, 0);
	CHECK_EQ_INT(p3_kv_seq_len(ctx, a), 6);
	p3_decoder_remove(d, a);

	/* a full context stops the sequence: 28 + 4 = 32 positions, 5th token sampled, not fed */
	sp.max_tokens = 10;
	CHECK_STATUS(p3_decoder_add(d, prompt, 28, &sp, &a, &err), P3_OK);
	info = run_to_done(d, a);
	CHECK_EQ_INT(info.stats.stop, P3_STOP_CONTEXT);
	CHECK_EQ_INT(info.stats.n_generated, 5);
	CHECK_EQ_INT(p3_kv_seq_len(ctx, a), 32);
	CHECK(strcmp(p3_stop_reason_name(P3_STOP_CONTEXT), "context full") == 0);
	p3_decoder_remove(d, a);
	/* out-of-range slots are ignored */
	CHECK(!p3_decoder_seq_info(d, 7, &info));
	p3_decoder_finish(d, -1);
	p3_decoder_remove(d, 99);

	p3_decoder_free(d);
	p3_context_free(ctx);
	p3_model_free(m);
}

/* log-softmax by hand, in double */
static double
by_hand_log_prob(const float *logits, int32_t n, int32_t id)
{
	double		max = logits[0];
	double		sum = 0.0;

	for (int32_t i = 1; i < n; i++)
		if (logits[i] > max)
			max = logits[i];
	for (int32_t i = 0; i < n; i++)
		sum += exp((double) logits[i] - max);
	return (double) logits[id] - max - log(sum);
}

/* The score of prompt + cont computed without the decoder: one p3_eval of everything. */
static double
score_by_hand(const P3Model *m, const int32_t *prompt, int n_prompt, const int32_t *cont, int n_cont)
{
	P3Context  *ctx = new_context(m, 128, 1, 64, 1);
	int32_t		all[96];
	uint8_t		want[96] = {0};
	P3Batch		b = {0};
	P3Error		err = {0};
	double		sum = 0.0;

	memcpy(all, prompt, sizeof(int32_t) * (size_t) n_prompt);
	memcpy(all + n_prompt, cont, sizeof(int32_t) * (size_t) n_cont);
	for (int i = n_prompt - 1; i < n_prompt + n_cont - 1; i++)
		want[i] = 1;
	b.n_tokens = n_prompt + n_cont - 1;
	b.tokens = all;
	b.want_logits = want;
	CHECK_STATUS(p3_eval(ctx, &b, &err), P3_OK);
	for (int i = 0; i < n_cont; i++)
		sum += by_hand_log_prob(p3_logits(ctx, i), m->hp.n_vocab, cont[i]);
	p3_context_free(ctx);
	return sum;
}

/*
 * p3_decoder_score: each continuation's log-probability equals the one
 * computed by hand from a single forward pass; it does not depend on the
 * slot, on prefix reuse, on the other continuations, nor on a sequence
 * decoding in another slot; the scores of all continuations of one token
 * sum (as probabilities) to 1; errors change nothing.
 */
static void
test_score(void)
{
	P3Model    *m = open_model("tiny-f32.gguf");
	int32_t		n_vocab = m->hp.n_vocab;
	P3Context  *ctx = new_context(m, 128, 2, 16, 1);
	P3Decoder  *d = new_decoder(ctx, 0);
	int32_t		prompt[40];
	int32_t		c0[] = {5, 9, 11};
	int32_t		c1[] = {7};
	int32_t		c2[] = {7, 8, 9, 10, 12, 13};
	const int32_t *conts[] = {c0, c1, c2};
	int32_t		n_conts[] = {3, 1, 6};
	double		lp[3];
	double		again[3];
	P3Error		err = {0};

	make_tokens(prompt, 40, 77, n_vocab);
	CHECK_STATUS(p3_decoder_score(d, prompt, 40, conts, n_conts, 3, lp, &err), P3_OK);
	for (int k = 0; k < 3; k++)
	{
		double		want = score_by_hand(m, prompt, 40, conts[k], n_conts[k]);

		CHECK_MSG(fabs(lp[k] - want) < 1e-4, "continuation %d: %.6f, by hand %.6f", k, lp[k], want);
		CHECK(lp[k] < 0.0);
	}
	CHECK_EQ_INT(p3_kv_seq_len(ctx, 0), 40);	/* the prompt stays cached */

	/* again: the prompt is reused from the cache; one at a time; the same values */
	CHECK_STATUS(p3_decoder_score(d, prompt, 40, conts, n_conts, 3, again, &err), P3_OK);
	for (int k = 0; k < 3; k++)
		CHECK(again[k] == lp[k]);
	CHECK_STATUS(p3_decoder_score(d, prompt, 40, &conts[2], &n_conts[2], 1, again, &err), P3_OK);
	CHECK(again[0] == lp[2]);

	/* beside a sequence decoding in the other slot */
	{
		P3SeqParams sp = p3_seq_default_params();
		int32_t		other[20];
		int32_t		seq;

		make_tokens(other, 20, 5, n_vocab);
		sp.max_tokens = 4;
		CHECK_STATUS(p3_decoder_add(d, other, 20, &sp, &seq, &err), P3_OK);
		CHECK_STATUS(p3_decoder_step(d, &err), P3_OK);
		CHECK_STATUS(p3_decoder_score(d, prompt, 40, conts, n_conts, 3, again, &err), P3_OK);
		for (int k = 0; k < 3; k++)
			CHECK_MSG(fabs(again[k] - lp[k]) < 1e-9, "beside another sequence, continuation %d: %.9f vs %.9f",
					  k, again[k], lp[k]);
		/* no free slot left: an error */
		{
			int32_t		seq2;

			CHECK_STATUS(p3_decoder_add(d, other, 20, &sp, &seq2, &err), P3_OK);
			CHECK_STATUS(p3_decoder_score(d, prompt, 40, conts, n_conts, 3, again, &err), P3_ERR_INVALID_ARG);
		}
		p3_decoder_reset(d);
	}

	/* every one-token continuation: the probabilities sum to 1 */
	{
		int32_t    *ids = malloc(sizeof(int32_t) * (size_t) n_vocab);
		const int32_t **each = malloc(sizeof(int32_t *) * (size_t) n_vocab);
		int32_t    *ones = malloc(sizeof(int32_t) * (size_t) n_vocab);
		double	   *all = malloc(sizeof(double) * (size_t) n_vocab);
		double		total = 0.0;

		for (int32_t i = 0; i < n_vocab; i++)
		{
			ids[i] = i;
			each[i] = &ids[i];
			ones[i] = 1;
		}
		CHECK_STATUS(p3_decoder_score(d, prompt, 40, each, ones, n_vocab, all, &err), P3_OK);
		for (int32_t i = 0; i < n_vocab; i++)
			total += exp(all[i]);
		CHECK_NEAR(total, 1.0, 1e-6);
		free(ids);
		free(each);
		free(ones);
		free(all);
	}

	/* errors */
	{
		int32_t		bad[] = {n_vocab};
		const int32_t *badc[] = {bad};
		int32_t		one[] = {1};
		int32_t		zero[] = {0};

		CHECK_STATUS(p3_decoder_score(d, prompt, 40, badc, one, 1, lp, &err), P3_ERR_INVALID_ARG);
		CHECK_STATUS(p3_decoder_score(d, prompt, 40, conts, zero, 1, lp, &err), P3_ERR_INVALID_ARG);
		CHECK_STATUS(p3_decoder_score(d, prompt, 40, conts, n_conts, 0, lp, &err), P3_ERR_INVALID_ARG);
		CHECK_STATUS(p3_decoder_score(d, prompt, 0, conts, n_conts, 3, lp, &err), P3_ERR_INVALID_ARG);
	}
	p3_decoder_free(d);
	p3_context_free(ctx);
	p3_model_free(m);
}

/* ---- jump-forward ---- */

/*
 * A scripted constraint: script[i] >= 0 forces token i of the output (the
 * mask allows only it), -1 leaves it free among tokens [3, 300); complete
 * after the whole script.  forced returns the forced tokens that follow.
 */
typedef struct ScriptConstraint
{
	const int32_t *script;
	int			n;
	int			pos;
	int			forced_calls;
} ScriptConstraint;

static P3Status
script_mask(void *state, uint32_t *mask, int32_t n_vocab, P3Error *err)
{
	ScriptConstraint *c = state;

	(void) err;
	for (int32_t i = 0; i < n_vocab; i++)
	{
		bool		ok = c->pos < c->n && (c->script[c->pos] >= 0 ? i == c->script[c->pos] : (i >= 3 && i < 300));

		if (!ok)
			mask[i / 32] &= ~(1u << (i % 32));
	}
	return P3_OK;
}

static P3Status
script_accept(void *state, int32_t token, P3Error *err)
{
	ScriptConstraint *c = state;

	if (c->pos >= c->n || (c->script[c->pos] >= 0 && token != c->script[c->pos]))
		return p3_error(err, P3_ERR_INVALID_ARG, "token %d not allowed at %d", (int) token, c->pos);
	c->pos++;
	return P3_OK;
}

static bool
script_complete(void *state)
{
	ScriptConstraint *c = state;

	return c->pos >= c->n;
}

static int32_t
script_forced(void *state, int32_t *tokens, int32_t cap)
{
	ScriptConstraint *c = state;
	int32_t		n = 0;

	c->forced_calls++;
	while (n < cap && c->pos + n < c->n && c->script[c->pos + n] >= 0)
	{
		tokens[n] = c->script[c->pos + n];
		n++;
	}
	return n;
}

/* Run one scripted sequence; its tokens' text, stats. */
static P3SeqInfo
run_script(P3Decoder *d, const int32_t *prompt, int n_prompt, ScriptConstraint *c, bool jump,
		   int max_tokens, char *text, size_t cap)
{
	P3Constraint pc = {.state = c, .mask = script_mask, .accept = script_accept,
	.complete = script_complete, .forced = script_forced};
	P3SeqParams sp = p3_seq_default_params();
	P3SeqInfo	info;
	P3Error		err = {0};
	int32_t		seq;

	sp.constraint = &pc;
	sp.jump_forward = jump;
	sp.max_tokens = max_tokens;
	sp.sampling.temperature = 0.0f;	/* sampled, a forced position would draw from the RNG */
	c->pos = 0;
	c->forced_calls = 0;
	CHECK_STATUS(p3_decoder_add(d, prompt, n_prompt, &sp, &seq, &err), P3_OK);
	info = run_to_done(d, seq);
	snprintf(text, cap, "%s", info.text);
	p3_decoder_remove(d, seq);
	return info;
}

/*
 * Jump-forward: a sequence whose constraint forces runs of tokens gives
 * the same text with and without it (greedy: a mask of one token samples
 * that token; sampling, the forced positions would have drawn from the
 * RNG, so a seeded run differs from one without jump-forward), with the forced tokens evaluated in one pass with the
 * sampled one before them (fewer passes, the same logits for the free
 * tokens after them); decoded beside other sequences it gives the same
 * text as alone; max_tokens and completion inside a forced run stop it
 * there.
 */
static void
test_jump_forward(void)
{
	static const int32_t script[] = {-1, 10, 11, 12, 13, -1, -1, 20, 21, -1, 30, 31, 32, 33, 34, 35, 36, -1, 40};
	const int	n_script = (int) (sizeof(script) / sizeof(script[0]));
	P3Model    *m = open_model("tiny-f32.gguf");
	P3Context  *ctx = new_context(m, 256, 3, 16, 1);
	P3Decoder  *d = new_decoder(ctx, 0);
	ScriptConstraint c = {.script = script, .n = n_script};
	int32_t		prompt[3][30];
	char		plain[3][512];
	char		jumped[512];
	P3SeqInfo	a;
	P3SeqInfo	b;
	P3Error		err = {0};

	for (int r = 0; r < 3; r++)
		make_tokens(prompt[r], 30, 300 + (uint64_t) r, m->hp.n_vocab);

	/* the same text, fewer passes */
	a = run_script(d, prompt[0], 30, &c, false, 100, plain[0], sizeof(plain[0]));
	CHECK_EQ_INT(a.stats.stop, P3_STOP_CONSTRAINT);
	CHECK_EQ_INT(a.stats.n_generated, n_script);
	CHECK_EQ_INT(a.stats.n_forced, 0);
	CHECK_EQ_INT(c.forced_calls, 0);
	b = run_script(d, prompt[0], 30, &c, true, 100, jumped, sizeof(jumped));
	CHECK_EQ_INT(b.stats.stop, P3_STOP_CONSTRAINT);
	CHECK_EQ_INT(b.stats.n_generated, n_script);
	CHECK_EQ_INT(b.stats.n_forced, 4 + 2 + 7 + 1);
	CHECK_MSG(strcmp(plain[0], jumped) == 0, "with jump-forward: %s, without: %s", jumped, plain[0]);
	CHECK_MSG(b.stats.n_passes < a.stats.n_passes, "passes: %d with jump-forward, %d without",
			  b.stats.n_passes, a.stats.n_passes);
	fprintf(stderr, "  jump-forward: %d tokens in %d passes (%d forced), %d passes without\n",
			b.stats.n_generated, b.stats.n_passes, b.stats.n_forced, a.stats.n_passes);

	/* three together, one jump-forward run each: each as alone */
	for (int r = 1; r < 3; r++)
		(void) run_script(d, prompt[r], 30, &c, true, 100, plain[r], sizeof(plain[r]));
	(void) run_script(d, prompt[0], 30, &c, true, 100, plain[0], sizeof(plain[0]));
	{
		ScriptConstraint cs[3] = {{.script = script, .n = n_script}, {.script = script, .n = n_script},
		{.script = script, .n = n_script}};
		P3Constraint pcs[3];
		int32_t		seqs[3];

		for (int r = 0; r < 3; r++)
		{
			P3SeqParams sp = p3_seq_default_params();

			pcs[r] = (P3Constraint) {.state = &cs[r], .mask = script_mask, .accept = script_accept,
			.complete = script_complete, .forced = script_forced};
			sp.constraint = &pcs[r];
			sp.max_tokens = 100;
			sp.sampling.temperature = 0.0f;
			CHECK_STATUS(p3_decoder_add(d, prompt[r], 30, &sp, &seqs[r], &err), P3_OK);
			if (r == 0)			/* the others join a step later */
				CHECK_STATUS(p3_decoder_step(d, &err), P3_OK);
		}
		while (p3_decoder_n_live(d) > 0)
			CHECK_STATUS(p3_decoder_step(d, &err), P3_OK);
		for (int r = 0; r < 3; r++)
		{
			P3SeqInfo	info;

			p3_decoder_seq_info(d, seqs[r], &info);
			CHECK_MSG(strcmp(info.text, plain[r]) == 0, "row %d together: %s, alone: %s", r, info.text, plain[r]);
			CHECK_EQ_INT(info.stats.n_forced, 14);
		}
		p3_decoder_reset(d);
	}

	/* max_tokens inside a forced run: stops there, the text as without jump-forward */
	a = run_script(d, prompt[1], 30, &c, false, 12, plain[1], sizeof(plain[1]));
	b = run_script(d, prompt[1], 30, &c, true, 12, jumped, sizeof(jumped));
	CHECK_EQ_INT(a.stats.stop, P3_STOP_MAX_TOKENS);
	CHECK_EQ_INT(b.stats.stop, P3_STOP_MAX_TOKENS);
	CHECK_EQ_INT(b.stats.n_generated, 12);
	CHECK_MSG(strcmp(plain[1], jumped) == 0, "max_tokens 12 with jump-forward: %s, without: %s", jumped, plain[1]);

	p3_decoder_free(d);
	p3_context_free(ctx);
	p3_model_free(m);
}

int
main(void)
{
	const char *dir = getenv("PHI3_TEST_MODELS");

	snprintf(model_dir, sizeof(model_dir), "%s", dir ? dir : "build/test-models");
	RUN(test_together_f32);
	RUN(test_together_q4_k);
	RUN(test_together_longrope);
	RUN(test_constraint);
	RUN(test_abort_mid_step);
	RUN(test_prefix_reuse);
	RUN(test_shared_prefix_together);
	RUN(test_errors_and_edges);
	RUN(test_score);
	RUN(test_jump_forward);
	return harness_finish();
}
