/*
 * phi3-trainprep — the engine's own tokenizer and schema describer, in
 * bulk, for the training tools (tools/train/).  Training data must be
 * exactly the token sequences the SQL functions send, so nothing is
 * re-implemented in Python: every prompt goes through p3_chat_tokenize
 * (the template BuildPrompt in src/pg/generate.c uses) and every schema
 * through p3_schema_compile + p3_schema_describe (what phi3_extract puts
 * into its prompt).
 *
 *     phi3-trainprep [--vocab VOCAB.gguf] < records > results
 *
 * One record a line, fields separated by TAB, with \\ \n \t escaped as
 * two characters.  Records and their result line:
 *     C SYSTEM USER MODE ANSWER  ->  "PROMPT_IDS|ANSWER_IDS" (space-separated ids)
 *         the chat prompt (system turn left out when SYSTEM is empty, then
 *         the user turn and <|assistant|>), and ANSWER tokenized as content
 *         followed by <|end|>.  MODE "p": as a text answer (with the
 *         leading space the detokenizer strips); MODE "n": without it, as
 *         a constrained JSON answer must start ("{", "\"", not "▁{").
 *     S SCHEMA_JSON              ->  the schema's description, escaped
 *     T TEXT                     ->  the ids of TEXT tokenized as content
 * A record that fails gives "ERROR message".
 *
 * A tool, not library code: it may print and exit.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phi3/generate.h"
#include "phi3/gguf.h"
#include "phi3/schema.h"
#include "phi3/tokenizer.h"

#define DEFAULT_VOCAB	"test/data/ggml-vocab-phi-3.gguf"
#define MAX_FIELDS		5

static void
die(const char *msg, const char *detail)
{
	fprintf(stderr, "phi3-trainprep: %s%s%s\n", msg, detail ? ": " : "", detail ? detail : "");
	exit(1);
}

/* Undo the escaping in place; returns the new length. */
static size_t
unescape(char *s)
{
	char	   *w = s;

	for (char *r = s; *r; r++)
	{
		if (*r == '\\' && r[1] != '\0')
		{
			r++;
			*w++ = *r == 'n' ? '\n' : *r == 't' ? '\t' : *r;
		}
		else
			*w++ = *r;
	}
	*w = '\0';
	return (size_t) (w - s);
}

static void
print_escaped(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		if (s[i] == '\\')
			fputs("\\\\", stdout);
		else if (s[i] == '\n')
			fputs("\\n", stdout);
		else if (s[i] == '\t')
			fputs("\\t", stdout);
		else
			putchar(s[i]);
	}
}

static void
print_ids(const P3Tokens *t, size_t from)
{
	for (size_t i = from; i < t->n; i++)
		printf(i > from ? " %d" : "%d", t->ids[i]);
}

/*
 * The answer's tokens as content; without_space: the leading "▁" taken
 * off the first token (dropped if it is all of it, else replaced by the
 * token spelled without it when there is one).
 */
static P3Status
answer_tokens(const P3Tokenizer *tok, const char *a, size_t n, bool without_space,
			  P3Tokens *out, P3Error *err)
{
	size_t		start = out->n;
	P3Status	st = p3_tokenize(tok, a, n, 0, out, err);
	const char *first;
	size_t		first_len = 0;
	char		rest[256];
	int32_t		id;

	if (st != P3_OK || !without_space || out->n == start)
		return st;
	first = p3_tokenizer_token_text(tok, out->ids[start], &first_len);
	if (first == NULL || first_len < 3 || strncmp(first, "\xe2\x96\x81", 3) != 0)
		return P3_OK;
	if (first_len == 3)
	{
		memmove(out->ids + start, out->ids + start + 1, (out->n - start - 1) * sizeof(int32_t));
		out->n--;
		return P3_OK;
	}
	if (first_len - 3 >= sizeof(rest))
		return p3_error(err, P3_ERR_INVALID_ARG, "answer's first token is too long");
	memcpy(rest, first + 3, first_len - 3);
	rest[first_len - 3] = '\0';
	id = p3_tokenizer_find(tok, rest);
	if (id < 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "no token \"%s\" for the answer's start", rest);
	out->ids[start] = id;
	return P3_OK;
}

static void
chat_record(const P3Tokenizer *tok, char **f, size_t *len, int32_t end_id)
{
	P3ChatMessage m[2];
	int			n = 0;
	P3Tokens	prompt = {0};
	P3Tokens	answer = {0};
	P3Error		err = {0};

	if (len[1] > 0)
		m[n++] = (P3ChatMessage) {P3_ROLE_SYSTEM, f[1], len[1]};
	m[n++] = (P3ChatMessage) {P3_ROLE_USER, f[2], len[2]};
	if (p3_chat_tokenize(tok, m, n, true, &prompt, &err) != P3_OK ||
		answer_tokens(tok, f[4], len[4], f[3][0] == 'n', &answer, &err) != P3_OK ||
		p3_tokens_push(&answer, end_id, &err) != P3_OK)
		printf("ERROR %s\n", err.message);
	else
	{
		print_ids(&prompt, 0);
		putchar('|');
		print_ids(&answer, 0);
		putchar('\n');
	}
	p3_tokens_free(&prompt);
	p3_tokens_free(&answer);
}

static void
schema_record(const char *json, size_t len)
{
	P3Schema   *s = NULL;
	P3Text		d = {0};
	P3Error		err = {0};

	if (p3_schema_compile(json, len, NULL, &s, &err) != P3_OK ||
		p3_schema_describe(s, &d, &err) != P3_OK)
		printf("ERROR %s\n", err.message);
	else
	{
		print_escaped(d.data, d.len);
		putchar('\n');
	}
	p3_text_free(&d);
	if (s)
		p3_schema_free(s);
}

static void
text_record(const P3Tokenizer *tok, const char *s, size_t len)
{
	P3Tokens	t = {0};
	P3Error		err = {0};

	if (p3_tokenize(tok, s, len, 0, &t, &err) != P3_OK)
		printf("ERROR %s\n", err.message);
	else
	{
		print_ids(&t, 0);
		putchar('\n');
	}
	p3_tokens_free(&t);
}

int
main(int argc, char **argv)
{
	const char *vocab = DEFAULT_VOCAB;
	P3GGUF	   *g = NULL;
	P3Tokenizer *tok = NULL;
	P3Error		err = {0};
	char	   *line = NULL;
	size_t		cap = 0;
	ssize_t		got;
	int32_t		end_id;

	if (argc == 3 && strcmp(argv[1], "--vocab") == 0)
		vocab = argv[2];
	else if (argc != 1)
		die("usage: phi3-trainprep [--vocab VOCAB.gguf] < records", NULL);
	if (p3_gguf_open(vocab, &g, &err) != P3_OK || p3_tokenizer_from_gguf(g, &tok, &err) != P3_OK)
		die("cannot load the vocabulary", err.message);
	end_id = p3_tokenizer_find(tok, "<|end|>");
	if (end_id < 0)
		die("the vocabulary has no <|end|>", NULL);

	while ((got = getline(&line, &cap, stdin)) > 0)
	{
		char	   *f[MAX_FIELDS] = {0};
		size_t		len[MAX_FIELDS] = {0};
		int			nf = 0;
		char	   *p = line;

		if (line[got - 1] == '\n')
			line[got - 1] = '\0';
		while (nf < MAX_FIELDS)
		{
			char	   *tab = strchr(p, '\t');

			f[nf++] = p;
			if (tab == NULL)
				break;
			*tab = '\0';
			p = tab + 1;
		}
		for (int i = 0; i < nf; i++)
			len[i] = unescape(f[i]);
		if (f[0][0] == 'C' && nf == 5)
			chat_record(tok, f, len, end_id);
		else if (f[0][0] == 'S' && nf == 2)
			schema_record(f[1], len[1]);
		else if (f[0][0] == 'T' && nf == 2)
			text_record(tok, f[1], len[1]);
		else
			printf("ERROR malformed record (%d fields)\n", nf);
	}
	fflush(stdout);
	free(line);
	p3_tokenizer_free(tok);
	p3_gguf_close(g);
	return 0;
}
