/*
 * bench_extract.c — structured extraction against free generation (make bench).
 *
 *   build/bench/bench_extract MODEL [N_DOCS] [THREADS]
 *
 * N_DOCS generated invoices (default 8) are decoded one at a time, greedy,
 * with the same prompt (an instruction showing the schema compactly, then
 * the document, in the Phi-3 chat template) two ways:
 *   free       no constraint, up to MAX_TOKENS tokens
 *   schema     under the schema below (the decoder's P3Constraint from the
 *              schema engine, jump-forward on: forced keys and punctuation
 *              evaluated behind the sampled token in one pass)
 * and for each: output tokens per second, forward passes per output token.
 * Then the schema engine's own costs on this model's vocabulary: compile
 * time, and the time of every mask the decoding needed, replayed over the
 * outputs (first pass with an empty mask cache, then warm): mean and p99.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phi3/context.h"
#include "phi3/decoder.h"
#include "phi3/generate.h"
#include "phi3/model.h"
#include "phi3/schema.h"
#include "phi3/tokenizer.h"

#define MAX_TOKENS 96
#define MAX_MASKS 65536

static const char *SCHEMA =
	"{\"type\":\"object\",\"properties\":{"
	"\"customer\":{\"type\":\"string\",\"maxLength\":40},"
	"\"amount\":{\"type\":\"number\"},"
	"\"due\":{\"type\":\"string\",\"format\":\"date\"},"
	"\"status\":{\"enum\":[\"open\",\"paid\",\"overdue\"]},"
	"\"lines\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":999}},"
	"\"required\":[\"customer\",\"amount\",\"due\",\"status\",\"lines\"],"
	"\"additionalProperties\":false}";

static const char *CUSTOMERS[] = {"Acme Corp", "Globex", "Initech", "Umbrella Ltd", "Stark Industries"};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
die(const char *what, const P3Error *err)
{
	fprintf(stderr, "bench_extract: %s: %s\n", what, err->message);
	exit(1);
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

/* The prompt of document i: instruction with the schema, then the invoice. */
static void
make_prompt(const P3Tokenizer *tok, const char *described, int i, P3Tokens *out)
{
	char		user[4096];
	P3ChatMessage msg[1];
	P3Error		err = {0};

	snprintf(user, sizeof(user),
			 "Extract the fields of this JSON schema from the document and answer with the JSON only: %s\n\n"
			 "Invoice %d from %s, issued on 2026-%02d-%02d. %d lines of consulting and licences, "
			 "total %d.%02d EUR, payment due on 2026-%02d-%02d. Status: %s.",
			 described, 1000 + i, CUSTOMERS[i % 5], 1 + i % 12, 1 + i % 27, 1 + i % 40,
			 100 + 37 * i, i % 100, 1 + (i + 1) % 12, 1 + (i + 5) % 27,
			 i % 3 == 0 ? "open" : i % 3 == 1 ? "paid" : "overdue");
	msg[0].role = P3_ROLE_USER;
	msg[0].content = user;
	msg[0].len = strlen(user);
	if (p3_chat_tokenize(tok, msg, 1, true, out, &err) != P3_OK)
		die("tokenize", &err);
}

typedef struct RunStats
{
	long		tokens;
	long		passes;
	long		forced;
	double		seconds;		/* prompt and decode */
	long		decode_tokens;	/* after the first */
	double		decode_seconds;
} RunStats;

/* Decode every prompt alone; with m != NULL under its schema (reset per document). Outputs kept in texts. */
static RunStats
run(const P3Model *model, int threads, const P3Tokens *prompts, int n, P3SchemaMatcher *m, char **texts)
{
	const P3Tokenizer *tok = model->tokenizer;
	P3ContextParams cp = p3_context_default_params();
	P3Context  *ctx = NULL;
	RunStats	rs = {0};
	P3Decoder  *d = NULL;
	P3Error		err = {0};

	/* a context of its own: nothing cached from the other run */
	cp.n_ctx = 1024;
	cp.n_seq = 1;
	cp.n_threads = threads;
	if (p3_context_new(model, &cp, &ctx, &err) != P3_OK || p3_decoder_new(ctx, 0, &d, &err) != P3_OK)
		die("context", &err);
	for (int i = 0; i < n; i++)
	{
		P3SeqParams sp = p3_seq_default_params();
		P3Constraint c;
		P3SeqInfo	info;
		int32_t		seq;
		double		t0 = now_s();

		sp.max_tokens = MAX_TOKENS;
		sp.sampling.temperature = 0.0f;
		if (m != NULL)
		{
			p3_schema_matcher_reset(m);
			if (p3_schema_constraint(m, tok, &c, &err) != P3_OK)
				die("constraint", &err);
			sp.constraint = &c;
		}
		if (p3_decoder_add(d, prompts[i].ids, (int32_t) prompts[i].n, &sp, &seq, &err) != P3_OK)
			die("add", &err);
		double		t_first = 0;
		int32_t		n_first = 0;

		do
		{
			if (p3_decoder_step(d, &err) != P3_OK)
				die("step", &err);
			if (!p3_decoder_seq_info(d, seq, &info))
				die("seq_info", &err);
			/* the step that ends the prompt samples the first token(s): decode is timed from there */
			if (t_first == 0 && info.stats.n_generated > 0)
			{
				t_first = now_s();
				n_first = info.stats.n_generated;
			}
		} while (info.phase != P3_SEQ_DONE);
		rs.seconds += now_s() - t0;
		rs.decode_seconds += now_s() - t_first;
		rs.decode_tokens += info.stats.n_generated - n_first;
		rs.tokens += info.stats.n_generated;
		rs.passes += info.stats.n_passes;
		rs.forced += info.stats.n_forced;
		texts[i] = strndup(info.text, info.text_len);
		p3_decoder_remove(d, seq);
	}
	p3_decoder_free(d);
	p3_context_free(ctx);
	return rs;
}

/* The masks the schema's decoding needs along each output, timed (ms into times; returns the count). */
static int
replay_masks(P3SchemaMatcher *m, const P3VocabTrie *trie, const P3Tokenizer *tok, char **texts, int n,
			 double *times)
{
	int			count = 0;
	int32_t		n_vocab = p3_vocab_trie_n_vocab(trie);
	uint32_t   *bits = calloc((size_t) (n_vocab + 31) / 32, sizeof(uint32_t));
	P3Error		err = {0};

	for (int i = 0; i < n; i++)
	{
		P3Tokens	ids = {0};

		p3_schema_matcher_reset(m);
		if (p3_tokenize(tok, texts[i], strlen(texts[i]), 0, &ids, &err) != P3_OK)
			die("tokenize output", &err);
		for (size_t k = 0; k <= ids.n && count < MAX_MASKS; k++)
		{
			double		t0 = now_s();
			char		piece[256];
			int32_t		len;

			if (p3_schema_matcher_mask(m, trie, bits, &err) != P3_OK)
				die("mask", &err);
			times[count++] = (now_s() - t0) * 1e3;
			if (k == ids.n)
				break;
			len = (int32_t) p3_token_to_piece(tok, ids.ids[k], false, piece, sizeof(piece));
			/* (the tokenizer's dummy space prefix is not part of the output) */
			if (k == 0 && len > 0 && piece[0] == ' ')
				memmove(piece, piece + 1, (size_t) --len);
			if (len <= 0 || len > (int32_t) sizeof(piece) ||
				p3_schema_matcher_accept_bytes(m, piece, (size_t) len, &err) != P3_OK)
				break;			/* the output's own tokenization may split differently: stop there */
		}
		p3_tokens_free(&ids);
	}
	free(bits);
	return count;
}

static void
print_run(const char *name, const RunStats *r, int n)
{
	printf("%-8s %8ld %8ld %8ld %14.2f %14.2f %12.2f\n", name, r->tokens, r->forced, r->passes,
		   (double) r->passes / (double) (r->tokens ? r->tokens : 1),
		   r->decode_seconds > 0 ? r->decode_tokens / r->decode_seconds : 0.0, r->seconds / n);
}

static void
print_masks(const char *what, double *t, int n)
{
	double		sum = 0;

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
		sum += t[i];
	qsort(t, (size_t) n, sizeof(double), cmp_double);
	printf("mask (%s): %d masks, mean %.1f us, p99 %.1f us, max %.1f us\n", what, n,
		   1e3 * sum / n, 1e3 * t[(int) ((n - 1) * 0.99)], 1e3 * t[n - 1]);
}

int
main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : NULL;
	int			n = argc > 2 ? atoi(argv[2]) : 8;
	int			threads = argc > 3 ? atoi(argv[3]) : 2;
	P3Model    *model = NULL;
	P3Schema   *schema = NULL;
	P3VocabTrie *trie = NULL;
	P3SchemaMatcher *m = NULL;
	P3SchemaStats ss;
	P3Text		described = {0};
	P3Error		err = {0};
	P3Tokens   *prompts;
	char	  **free_texts,
			  **schema_texts;
	double	   *times = malloc(MAX_MASKS * sizeof(double));
	RunStats	fr,
				sr;
	int			nm;

	if (path == NULL || n < 1)
	{
		fprintf(stderr, "usage: bench_extract MODEL [N_DOCS] [THREADS]\n");
		return 2;
	}
	if (p3_model_open(path, &model, &err) != P3_OK)
		die(path, &err);
	if (p3_schema_compile(SCHEMA, strlen(SCHEMA), NULL, &schema, &err) != P3_OK ||
		p3_vocab_trie_new(model->tokenizer, &trie, &err) != P3_OK ||
		p3_schema_matcher_new(schema, trie, &m, &err) != P3_OK ||
		p3_schema_describe(schema, &described, &err) != P3_OK)
		die("schema", &err);
	p3_schema_stats(schema, &ss);
	printf("schema: %d nodes, %d states, compiled in %.2f ms; vocabulary %d tokens\n",
		   ss.n_nodes, ss.n_states, ss.compile_ms, p3_vocab_trie_n_vocab(trie));
	prompts = calloc((size_t) n, sizeof(P3Tokens));
	free_texts = calloc((size_t) n, sizeof(char *));
	schema_texts = calloc((size_t) n, sizeof(char *));
	for (int i = 0; i < n; i++)
		make_prompt(model->tokenizer, described.data, i, &prompts[i]);
	printf("%d documents, %d prompt tokens for the first, greedy, at most %d tokens, %d threads\n",
		   n, (int) prompts[0].n, MAX_TOKENS, threads);

	fr = run(model, threads, prompts, n, NULL, free_texts);
	sr = run(model, threads, prompts, n, m, schema_texts);
	printf("%-8s %8s %8s %8s %14s %14s %12s\n", "mode", "tokens", "forced", "passes", "passes/token",
		   "decode tok/s", "doc s");
	print_run("free", &fr, n);
	print_run("schema", &sr, n);
	printf("(decode tok/s: output tokens after the first over the time after the prompt; doc s: "
		   "seconds per document, prompt included)\n");
	printf("first schema output: %s\n", schema_texts[0]);

	/* a fresh schema, so that the first replay starts with an empty mask cache */
	p3_schema_matcher_free(m);
	p3_schema_free(schema);
	if (p3_schema_compile(SCHEMA, strlen(SCHEMA), NULL, &schema, &err) != P3_OK ||
		p3_schema_matcher_new(schema, trie, &m, &err) != P3_OK)
		die("schema", &err);
	nm = replay_masks(m, trie, model->tokenizer, schema_texts, n, times);
	print_masks("cold cache", times, nm);
	nm = replay_masks(m, trie, model->tokenizer, schema_texts, n, times);
	print_masks("warm cache", times, nm);

	for (int i = 0; i < n; i++)
	{
		free(free_texts[i]);
		free(schema_texts[i]);
		p3_tokens_free(&prompts[i]);
	}
	free(prompts);
	free(free_texts);
	free(schema_texts);
	free(times);
	p3_text_free(&described);
	p3_schema_matcher_free(m);
	p3_schema_free(schema);
	p3_vocab_trie_free(trie);
	p3_model_free(model);
	return 0;
}
