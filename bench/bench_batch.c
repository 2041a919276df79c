/*
 * bench_batch.c — rows per second of batch enrichment (make bench).
 *
 *   build/bench/bench_batch MODEL [N_ROWS] [THREADS]
 *
 * Summaries of N_ROWS generated reports (default 200, about 100 tokens
 * each, 48-token answers: a random-weights model never stops early) in the
 * Phi-3 chat template behind one shared system prompt and instruction, as
 * phi3_summarize builds them, decoded on the engine's step-wise decoder:
 *   row          one row at a time, no prefix reuse (a fresh prompt each)
 *   row+reuse    one row at a time, the shared prefix reused from the cache
 *   batch B      continuous batching over B slots (B = 2, 4, 8, 16, 32): a
 *                finished row frees its slot for the next at once, prompts
 *                are evaluated in chunks between decode steps, the shared
 *                prefix is computed once and copied between slots
 * Each line gives rows/s, generated tokens/s and the speed-up over "row",
 * all measured in this one run.  PHI3_BENCH_BATCH_MODES (for example
 * "row,8,16") runs only those modes; PHI3_BENCH_ROW_ROWS runs the
 * row-at-a-time modes on the first rows only (their rate is what counts,
 * and at a row every 10-20 s they are the slow part of the run).  While decode is bandwidth-bound a step of
 * B rows costs about one step of one row, so rows/s grows almost B-fold;
 * it flattens where the products become compute-bound.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phi3/context.h"
#include "phi3/decoder.h"
#include "phi3/generate.h"
#include "phi3/model.h"
#include "phi3/tokenizer.h"

#define MAX_TOKENS 48

static const char *SYSTEM =
	"You are a careful assistant that writes faithful, concise summaries of business documents.";
static const char *INSTRUCTION =
	"Summarize the following document in at most 40 words. Keep names, figures and dates.\n\n";

static const char *REGIONS[] = {"northern", "southern", "eastern", "western", "central"};
static const char *ITEMS[] = {"software licences", "support contracts", "hardware", "training", "consulting"};

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

/* A report of about 100 tokens, different for every i. */
static void
make_report(int i, char *buf, size_t cap)
{
	snprintf(buf, cap,
			 "Report %d. Revenue in the %s region grew by %d percent in quarter %d, mostly from %s. "
			 "Costs rose by %d percent because of new hires and a delayed shipment from the %s warehouse. "
			 "Two customers renewed early and one was lost to a competitor offering a %d percent discount. "
			 "The team proposes a review of prices for %s before the meeting on day %d.",
			 i, REGIONS[i % 5], 3 + i % 17, 1 + i % 4, ITEMS[i % 5], 2 + i % 9, REGIONS[(i + 2) % 5],
			 5 + i % 20, ITEMS[(i + 3) % 5], 1 + i % 28);
}

static P3Tokens *
make_prompts(const P3Tokenizer *tok, int n)
{
	P3Tokens   *prompts = calloc((size_t) n, sizeof(P3Tokens));

	for (int i = 0; i < n; i++)
	{
		char		report[1024];
		char		user[2048];
		P3ChatMessage msg[2];
		P3Error		err = {0};

		make_report(i, report, sizeof(report));
		snprintf(user, sizeof(user), "%s%s", INSTRUCTION, report);
		msg[0].role = P3_ROLE_SYSTEM;
		msg[0].content = SYSTEM;
		msg[0].len = strlen(SYSTEM);
		msg[1].role = P3_ROLE_USER;
		msg[1].content = user;
		msg[1].len = strlen(user);
		if (p3_chat_tokenize(tok, msg, 2, true, &prompts[i], &err) != P3_OK)
		{
			fprintf(stderr, "tokenize: %s\n", err.message);
			exit(1);
		}
	}
	return prompts;
}

/*
 * Decode every prompt with up to n_slots rows at once; returns the tokens
 * generated.  reuse: prefix reuse and sharing between slots.
 */
static long
run(const P3Model *m, const P3Tokens *prompts, int n, int n_slots, int threads, bool reuse)
{
	P3ContextParams cp = p3_context_default_params();
	P3Context  *ctx = NULL;
	P3Decoder  *d = NULL;
	P3Error		err = {0};
	int			next = 0;
	int			done = 0;
	long		tokens = 0;

	cp.n_ctx = 512;
	cp.n_seq = n_slots;
	cp.n_threads = threads;
	if (p3_context_new(m, &cp, &ctx, &err) != P3_OK || p3_decoder_new(ctx, 0, &d, &err) != P3_OK)
	{
		fprintf(stderr, "context: %s\n", err.message);
		exit(1);
	}
	while (done < n)
	{
		while (next < n && p3_decoder_n_free(d) > 0)
		{
			P3SeqParams sp = p3_seq_default_params();
			int32_t		seq;

			sp.max_tokens = MAX_TOKENS;
			sp.sampling.temperature = 0.0f;
			sp.reuse_prefix = reuse;
			if (p3_decoder_add(d, prompts[next].ids, (int32_t) prompts[next].n, &sp, &seq, &err) != P3_OK)
			{
				fprintf(stderr, "add: %s\n", err.message);
				exit(1);
			}
			next++;
		}
		if (p3_decoder_step(d, &err) != P3_OK)
		{
			fprintf(stderr, "step: %s\n", err.message);
			exit(1);
		}
		for (int s = 0; s < n_slots; s++)
		{
			P3SeqInfo	info;

			if (p3_decoder_seq_info(d, s, &info) && info.phase == P3_SEQ_DONE)
			{
				tokens += info.stats.n_generated;
				p3_decoder_remove(d, s);
				done++;
			}
		}
	}
	p3_decoder_free(d);
	p3_context_free(ctx);
	return tokens;
}

/* Whether mode (row, reuse, or a batch size) is in the comma-separated list (NULL or empty: all). */
static bool
mode_wanted(const char *list, const char *mode)
{
	size_t		len = strlen(mode);

	if (list == NULL || list[0] == '\0')
		return true;
	for (const char *p = list; *p != '\0';)
	{
		const char *e = strchr(p, ',');
		size_t		n = e != NULL ? (size_t) (e - p) : strlen(p);

		if (n == len && strncmp(p, mode, n) == 0)
			return true;
		p += n + (e != NULL);
	}
	return false;
}

int
main(int argc, char **argv)
{
	const char *path = argc > 1 ? argv[1] : NULL;
	int			n = argc > 2 ? atoi(argv[2]) : 200;
	int			threads = argc > 3 ? atoi(argv[3]) : 2;
	const char *modes = getenv("PHI3_BENCH_BATCH_MODES");
	const char *rr = getenv("PHI3_BENCH_ROW_ROWS");
	int			row_rows = rr != NULL && atoi(rr) > 0 ? atoi(rr) : n;
	static const int batches[] = {2, 4, 8, 16, 32};
	P3Model    *m = NULL;
	P3Error		err = {0};
	P3Tokens   *prompts;
	double		base = 0;
	size_t		total = 0;

	if (path == NULL || n < 1)
	{
		fprintf(stderr, "usage: bench_batch MODEL [N_ROWS] [THREADS]\n");
		return 2;
	}
	if (p3_model_open(path, &m, &err) != P3_OK)
	{
		fprintf(stderr, "%s: %s\n", path, err.message);
		return 1;
	}
	prompts = make_prompts(m->tokenizer, n);
	for (int i = 0; i < n; i++)
		total += prompts[i].n;
	printf("%d reports, %.0f prompt tokens each on average, %d-token answers, %d threads\n",
		   n, (double) total / n, MAX_TOKENS, threads);
	printf("%-12s %8s %10s %8s\n", "mode", "rows/s", "gen_tok/s", "speedup");
	for (int mode = 0; mode < 2 + (int) (sizeof(batches) / sizeof(batches[0])); mode++)
	{
		int			slots = mode < 2 ? 1 : batches[mode - 2];
		bool		reuse = mode != 0;
		/* the row-at-a-time modes may run on the first rows only (a rate either way) */
		int			rows = mode < 2 && row_rows < n ? row_rows : n;
		double		t0;
		long		tok;
		double		dt;
		char		name[32];

		if (mode < 2)
			snprintf(name, sizeof(name), "%s", mode == 0 ? "row" : "row+reuse");
		else
			snprintf(name, sizeof(name), "%d", slots);
		if (!mode_wanted(modes, mode == 0 ? "row" : mode == 1 ? "reuse" : name))
			continue;
		t0 = now_s();
		tok = run(m, prompts, rows, slots, threads, reuse);
		dt = now_s() - t0;
		if (mode == 0)
			base = rows / dt;
		if (mode >= 2)
			snprintf(name, sizeof(name), "batch %d", slots);
		printf("%-12s %8.3f %10.2f %7.2fx  (%d rows)\n", name, rows / dt, tok / dt,
			   base > 0 ? (rows / dt) / base : 0.0, rows);
		fflush(stdout);
	}
	for (int i = 0; i < n; i++)
		p3_tokens_free(&prompts[i]);
	free(prompts);
	p3_model_free(m);
	return 0;
}
