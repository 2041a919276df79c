/*
 * phi3-run — run a Phi-3 GGUF from the command line: generate text,
 * tokenize, or print the top logits of every position (for checking the
 * engine against independent implementations).  See `phi3-run --help`.
 *
 * This is a tool, not library code: it may print and exit.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "phi3/context.h"
#include "phi3/generate.h"
#include "phi3/gguf.h"
#include "phi3/model.h"
#include "phi3/sampler.h"
#include "phi3/tokenizer.h"

typedef struct Options
{
	const char *model_path;
	const char *prompt;			/* -p */
	const char *prompt_file;	/* -f */
	const char *token_list;		/* --tokens */
	const char *system;			/* --system */
	bool		chat;
	bool		tokenize_only;
	bool		no_bos;
	bool		special;
	bool		verbose;
	int			top_logits;		/* 0 = off */
	int			n_predict;
	P3SamplerParams sampling;
	P3ContextParams ctx;
	bool		ctx_size_given;
} Options;

static void
usage(FILE *out)
{
	fputs("usage: phi3-run -m MODEL (-p TEXT | -f FILE | --tokens \"ID ...\") [options]\n"
		  "  --chat               wrap the prompt in the Phi-3 chat template (--system TEXT adds a system turn)\n"
		  "  -n N                 tokens to generate (default 128)\n"
		  "  --temp T             temperature, 0 = greedy (default 0)\n"
		  "  --seed S             sampling seed (default 0)\n"
		  "  --top-k K --top-p P --min-p P --repeat-penalty R --repeat-last-n N\n"
		  "  -t THREADS           compute threads (default: all CPUs)\n"
		  "  -c N                 context size (default: min(4096, the model's))\n"
		  "  --batch N            tokens per forward chunk (default 64)\n"
		  "  --kv-type f16|f32    KV cache precision (default f16)\n"
		  "  --act f32|q8         activation precision with quantized weights\n"
		  "  --kernels auto|reference\n"
		  "  --verbose            timing line on stderr\n"
		  "  --tokenize           print the prompt's token ids and exit (works on a vocabulary-only GGUF)\n"
		  "  --no-bos             do not add BOS\n"
		  "  --special            parse special-token text such as <|user|> in the prompt\n"
		  "  --top-logits K       greedy-decode -n tokens and print the K highest logits of every position\n",
		  out);
}

static void die(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));
static void die_err(const char *what, const P3Error *err) __attribute__((noreturn));

static void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "phi3-run: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
die_err(const char *what, const P3Error *err)
{
	fprintf(stderr, "phi3-run: %s: %s\n", what, err->message);
	exit(1);
}

static long
parse_long(const char *s, const char *flag, long min, long max)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *s == '\0' || *end != '\0' || v < min || v > max)
		die("invalid value for %s", flag);
	return v;
}

static double
parse_double(const char *s, const char *flag)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || *s == '\0' || *end != '\0')
		die("invalid value for %s", flag);
	return v;
}

static void
parse_args(int argc, char **argv, Options *o)
{
	memset(o, 0, sizeof(*o));
	o->n_predict = 128;
	o->sampling = p3_sampler_default_params();
	o->sampling.temperature = 0.0f;
	o->ctx = p3_context_default_params();

	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

#define NEEDS_VALUE() do { if (v == NULL) die("%s needs a value", a); i++; } while (0)
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
		{
			usage(stdout);
			exit(0);
		}
		else if (strcmp(a, "-m") == 0) { NEEDS_VALUE(); o->model_path = v; }
		else if (strcmp(a, "-p") == 0) { NEEDS_VALUE(); o->prompt = v; }
		else if (strcmp(a, "-f") == 0) { NEEDS_VALUE(); o->prompt_file = v; }
		else if (strcmp(a, "--tokens") == 0) { NEEDS_VALUE(); o->token_list = v; }
		else if (strcmp(a, "--system") == 0) { NEEDS_VALUE(); o->system = v; }
		else if (strcmp(a, "--chat") == 0) o->chat = true;
		else if (strcmp(a, "--tokenize") == 0) o->tokenize_only = true;
		else if (strcmp(a, "--no-bos") == 0) o->no_bos = true;
		else if (strcmp(a, "--special") == 0) o->special = true;
		else if (strcmp(a, "--verbose") == 0) o->verbose = true;
		else if (strcmp(a, "--top-logits") == 0) { NEEDS_VALUE(); o->top_logits = (int) parse_long(v, a, 1, 1000000); }
		else if (strcmp(a, "-n") == 0) { NEEDS_VALUE(); o->n_predict = (int) parse_long(v, a, 0, 1 << 24); }
		else if (strcmp(a, "--temp") == 0) { NEEDS_VALUE(); o->sampling.temperature = (float) parse_double(v, a); }
		else if (strcmp(a, "--seed") == 0) { NEEDS_VALUE(); o->sampling.seed = strtoull(v, NULL, 10); }
		else if (strcmp(a, "--top-k") == 0) { NEEDS_VALUE(); o->sampling.top_k = (int32_t) parse_long(v, a, 0, 1 << 30); }
		else if (strcmp(a, "--top-p") == 0) { NEEDS_VALUE(); o->sampling.top_p = (float) parse_double(v, a); }
		else if (strcmp(a, "--min-p") == 0) { NEEDS_VALUE(); o->sampling.min_p = (float) parse_double(v, a); }
		else if (strcmp(a, "--repeat-penalty") == 0) { NEEDS_VALUE(); o->sampling.repeat_penalty = (float) parse_double(v, a); }
		else if (strcmp(a, "--repeat-last-n") == 0) { NEEDS_VALUE(); o->sampling.repeat_last_n = (int32_t) parse_long(v, a, 0, 1 << 20); }
		else if (strcmp(a, "-t") == 0) { NEEDS_VALUE(); o->ctx.n_threads = (int32_t) parse_long(v, a, 1, 256); }
		else if (strcmp(a, "-c") == 0) { NEEDS_VALUE(); o->ctx.n_ctx = (int32_t) parse_long(v, a, 1, 1 << 24); o->ctx_size_given = true; }
		else if (strcmp(a, "--batch") == 0) { NEEDS_VALUE(); o->ctx.n_batch = (int32_t) parse_long(v, a, 1, 4096); }
		else if (strcmp(a, "--kv-type") == 0)
		{
			NEEDS_VALUE();
			if (strcmp(v, "f16") == 0) o->ctx.kv_type = P3_KV_F16;
			else if (strcmp(v, "f32") == 0) o->ctx.kv_type = P3_KV_F32;
			else die("invalid --kv-type \"%s\" (f16 or f32)", v);
		}
		else if (strcmp(a, "--act") == 0)
		{
			NEEDS_VALUE();
			if (strcmp(v, "f32") == 0) o->ctx.act = P3_ACT_F32;
			else if (strcmp(v, "q8") == 0) o->ctx.act = P3_ACT_Q8;
			else die("invalid --act \"%s\" (f32 or q8)", v);
		}
		else if (strcmp(a, "--kernels") == 0)
		{
			NEEDS_VALUE();
			if (strcmp(v, "auto") == 0) o->ctx.matmul = P3_MATMUL_AUTO;
			else if (strcmp(v, "reference") == 0) o->ctx.matmul = P3_MATMUL_REFERENCE;
			else die("invalid --kernels \"%s\" (auto or reference)", v);
		}
		else
		{
			usage(stderr);
			die("unknown option %s", a);
		}
#undef NEEDS_VALUE
	}
	if (o->model_path == NULL)
		die("%s", "no model given (-m MODEL)");
	if ((o->prompt != NULL) + (o->prompt_file != NULL) + (o->token_list != NULL) != 1)
		die("%s", "give exactly one of -p TEXT, -f FILE, --tokens \"ID ...\"");
}

/* Read a whole file verbatim into a NUL-terminated buffer. */
static char *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf = NULL;
	size_t		cap = 0;
	size_t		n = 0;

	if (f == NULL)
		die("cannot open prompt file \"%s\"", path);
	for (;;)
	{
		size_t		got;

		if (n + 4096 + 1 > cap)
		{
			cap = (n + 4096 + 1) * 2;
			buf = realloc(buf, cap);
			if (buf == NULL)
				die("%s", "out of memory");
		}
		got = fread(buf + n, 1, cap - n - 1, f);
		n += got;
		if (got == 0)
			break;
	}
	if (ferror(f))
		die("cannot read prompt file \"%s\"", path);
	fclose(f);
	buf[n] = '\0';
	*len = n;
	return buf;
}

static void
parse_token_list(const char *s, P3Tokens *out)
{
	P3Error		err;

	while (*s)
	{
		char	   *end;
		long		v;

		while (*s == ' ' || *s == '\t' || *s == ',' || *s == '\n')
			s++;
		if (*s == '\0')
			break;
		errno = 0;
		v = strtol(s, &end, 10);
		if (errno || end == s || v < 0 || v > 0x7fffffff)
			die("invalid token id in --tokens near \"%s\"", s);
		if (p3_tokens_push(out, (int32_t) v, &err))
			die_err("tokens", &err);
		s = end;
	}
}

/* Build the prompt tokens from -p/-f/--tokens, --chat, --no-bos, --special. */
static void
build_prompt(const Options *o, const P3Tokenizer *tok, P3Tokens *out)
{
	P3Error		err;
	char	   *file_text = NULL;
	const char *text = o->prompt;
	size_t		len = o->prompt ? strlen(o->prompt) : 0;

	if (o->token_list)
	{
		parse_token_list(o->token_list, out);
		return;
	}
	if (o->prompt_file)
	{
		file_text = read_file(o->prompt_file, &len);
		text = file_text;
	}
	if (o->chat)
	{
		P3ChatMessage msgs[2];
		int			n = 0;

		if (o->system)
		{
			msgs[n].role = P3_ROLE_SYSTEM;
			msgs[n].content = o->system;
			msgs[n].len = strlen(o->system);
			n++;
		}
		msgs[n].role = P3_ROLE_USER;
		msgs[n].content = text;
		msgs[n].len = len;
		n++;
		if (p3_chat_tokenize(tok, msgs, n, true, out, &err))
			die_err("chat template", &err);
	}
	else
	{
		unsigned	flags = 0;

		if (!o->no_bos && p3_tokenizer_add_bos(tok))
			flags |= P3_TOKENIZE_ADD_BOS;
		if (o->special)
			flags |= P3_TOKENIZE_SPECIAL;
		if (p3_tokenize(tok, text, len, flags, out, &err))
			die_err("tokenize", &err);
	}
	free(file_text);
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

/* Print "<pos> <id>:<logit> ..." with the k largest logits, ties by smaller id. */
static void
print_top_logits(int32_t pos, const float *logits, int32_t n_vocab, int k, int32_t *best)
{
	int			n = 0;

	if (k > n_vocab)
		k = n_vocab;
	for (int32_t id = 0; id < n_vocab; id++)
	{
		int			j;

		if (n == k && !(logits[id] > logits[best[n - 1]]))
			continue;
		j = n < k ? n++ : n - 1;
		while (j > 0 && logits[id] > logits[best[j - 1]])
		{
			best[j] = best[j - 1];
			j--;
		}
		best[j] = id;
	}
	printf("%d", (int) pos);
	for (int i = 0; i < n; i++)
		printf(" %d:%.6f", (int) best[i], (double) logits[best[i]]);
	putchar('\n');
}

/* --top-logits: logits of every prompt position, then greedy decoding of n tokens. */
static void
run_top_logits(const Options *o, P3Context *ctx, const P3Tokens *prompt)
{
	int32_t		n_vocab = p3_context_model(ctx)->hp.n_vocab;
	int32_t    *best = malloc((size_t) o->top_logits * sizeof(int32_t));
	uint8_t    *want = malloc(prompt->n);
	P3Batch		batch = {0};
	P3Error		err;
	int32_t		pos;

	if (best == NULL || want == NULL)
		die("%s", "out of memory");
	memset(want, 1, prompt->n);
	batch.n_tokens = (int32_t) prompt->n;
	batch.tokens = prompt->ids;
	batch.want_logits = want;
	if (p3_eval(ctx, &batch, &err))
		die_err("eval", &err);
	for (pos = 0; pos < (int32_t) prompt->n; pos++)
		print_top_logits(pos, p3_logits(ctx, pos), n_vocab, o->top_logits, best);
	for (int g = 0; g < o->n_predict; g++, pos++)
	{
		const float *last = p3_logits(ctx, p3_n_outputs(ctx) - 1);
		int32_t		id = p3_argmax(last, n_vocab, NULL);

		batch.n_tokens = 1;
		batch.tokens = &id;
		batch.want_logits = NULL;
		if (p3_eval(ctx, &batch, &err))
			die_err("eval", &err);
		print_top_logits(pos, p3_logits(ctx, 0), n_vocab, o->top_logits, best);
	}
	free(best);
	free(want);
}

static bool
print_text(void *user, const char *text, size_t len)
{
	fwrite(text, 1, len, stdout);
	fflush(stdout);
	return true;
}

int
main(int argc, char **argv)
{
	Options		o;
	P3Error		err;
	P3Model    *model = NULL;
	P3Context  *ctx = NULL;
	P3Tokens	prompt = {0};
	double		t0;
	double		load_ms;

	parse_args(argc, argv, &o);

	if (o.tokenize_only)
	{
		P3GGUF	   *gguf;
		P3Tokenizer *tok;

		if (p3_gguf_open(o.model_path, &gguf, &err))
			die_err("model", &err);
		if (p3_tokenizer_from_gguf(gguf, &tok, &err))
			die_err("tokenizer", &err);
		build_prompt(&o, tok, &prompt);
		for (size_t i = 0; i < prompt.n; i++)
			printf(i ? " %d" : "%d", (int) prompt.ids[i]);
		putchar('\n');
		p3_tokens_free(&prompt);
		p3_tokenizer_free(tok);
		p3_gguf_close(gguf);
		return 0;
	}

	t0 = now_ms();
	if (p3_model_open(o.model_path, &model, &err))
		die_err("model", &err);
	load_ms = now_ms() - t0;

	if (!o.ctx_size_given)
		o.ctx.n_ctx = model->hp.n_ctx_train < 4096 ? model->hp.n_ctx_train : 4096;
	build_prompt(&o, model->tokenizer, &prompt);
	if (prompt.n == 0)
		die("%s", "the prompt has no tokens");
	if (p3_context_new(model, &o.ctx, &ctx, &err))
		die_err("context", &err);

	if (o.verbose)
		fprintf(stderr, "model: %s, %d layers, embd %d, heads %d/%d, ff %d, vocab %d, ctx %d; kernels %s, threads %d\n",
				model->name[0] ? model->name : o.model_path, (int) model->hp.n_layer, (int) model->hp.n_embd,
				(int) model->hp.n_head, (int) model->hp.n_head_kv, (int) model->hp.n_ff, (int) model->hp.n_vocab,
				(int) p3_context_params(ctx)->n_ctx, p3_context_kernel_name(ctx),
				(int) p3_context_params(ctx)->n_threads);

	if (o.top_logits > 0)
		run_top_logits(&o, ctx, &prompt);
	else
	{
		P3GenerateParams gp = p3_generate_default_params();
		P3GenerateStats stats;

		gp.max_tokens = o.n_predict;
		gp.sampling = o.sampling;
		gp.on_text = print_text;
		gp.strip_leading_space = o.chat;
		if (p3_generate(ctx, 0, prompt.ids, (int32_t) prompt.n, &gp, NULL, &stats, &err))
			die_err("generate", &err);
		putchar('\n');
		if (o.verbose)
			fprintf(stderr, "prompt_tokens=%d prompt_tps=%.2f gen_tokens=%d gen_tps=%.2f load_ms=%.1f\n",
					(int) stats.n_prompt,
					stats.prompt_ms > 0 ? (stats.n_prompt - stats.n_prompt_reused) * 1000.0 / stats.prompt_ms : 0.0,
					(int) stats.n_generated,
					stats.generate_ms > 0 ? stats.n_generated * 1000.0 / stats.generate_ms : 0.0,
					load_ms);
	}

	p3_tokens_free(&prompt);
	p3_context_free(ctx);
	p3_model_free(model);
	return 0;
}
