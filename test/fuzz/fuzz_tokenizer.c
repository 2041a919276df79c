/*
 * fuzz_tokenizer.c — libFuzzer harness for the tokenizer over the real
 * Phi-3 vocabulary: p3_tokenize, p3_detokenize, the streaming
 * P3Detokenizer and p3_chat_tokenize / p3_chat_render.
 *
 * Not part of the test suite.  `make fuzz` builds it into build/fuzz/;
 * run it from the repository root (it loads
 * test/data/ggml-vocab-phi-3.gguf once, or $PHI3_FUZZ_VOCAB):
 *
 *     build/fuzz/fuzz_tokenizer -max_len=4096 build/fuzz/corpus/fuzz_tokenizer
 *
 * Input: one flag byte, then text.  Flag bits: 0 P3_TOKENIZE_SPECIAL,
 * 1 P3_TOKENIZE_ADD_BOS, 2 detokenize with special, 3 strip the leading
 * space, 4 add the generation prompt, 5-7 the max_tokens of the bounded
 * forms (from small tables).  For every input:
 *   1. tokenize with the flags: ids in range, BOS first when asked, no
 *      control or unknown token without P3_TOKENIZE_SPECIAL; the bounded
 *      form gives the same ids when they fit, else P3_ERR_CONTEXT_FULL
 *      appending nothing; detokenize: valid UTF-8.
 *   2. oracle: for valid UTF-8 text without special-token text (and without
 *      U+2581, which SentencePiece decodes as a space), tokenizing plainly
 *      and detokenizing with the leading space stripped gives the text back
 *      byte for byte; and with or without P3_TOKENIZE_SPECIAL the ids agree.
 *   3. the text read as little-endian u16 token ids (mod the vocabulary)
 *      through the streaming detokenizer: after every push the output is
 *      valid UTF-8; the result equals p3_detokenize of the same ids; and
 *      when the raw pieces concatenate to valid UTF-8 the result is exactly
 *      that concatenation (less one leading space when stripping).
 *   4. the text cut at 0x1E into chat messages (first byte of each: the
 *      role): p3_chat_tokenize gives ids in range (the bounded form: the
 *      same ids, or CONTEXT_FULL exactly when they do not fit), and, when no content
 *      holds special-token text, exactly what tokenizing p3_chat_render's
 *      text with P3_TOKENIZE_SPECIAL (+ BOS) gives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phi3/generate.h"
#include "phi3/gguf.h"
#include "phi3/tokenizer.h"

#include "fuzz_util.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int			LLVMFuzzerInitialize(int *argc, char ***argv);

#define MAX_MESSAGES 8

/* Loaded once for the whole run (harness state, not engine state). */
static P3Tokenizer *vocab_tok;
static int32_t n_vocab;
static const char **special_texts;	/* texts of CONTROL / USER_DEFINED / UNKNOWN tokens */
static size_t *special_lens;
static int	n_special;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *path = getenv("PHI3_FUZZ_VOCAB");
	P3GGUF	   *g;
	P3Error		err;

	if (path == NULL || path[0] == '\0')
		path = "test/data/ggml-vocab-phi-3.gguf";
	if (p3_gguf_open(path, &g, &err) != P3_OK ||
		p3_tokenizer_from_gguf(g, &vocab_tok, &err) != P3_OK)
	{
		fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s (run from the repository root)\n",
				path, err.message);
		exit(1);
	}
	p3_gguf_close(g);
	n_vocab = p3_tokenizer_n_vocab(vocab_tok);
	special_texts = malloc((size_t) n_vocab * sizeof(char *));
	special_lens = malloc((size_t) n_vocab * sizeof(size_t));
	REQUIRE(special_texts && special_lens);
	for (int32_t id = 0; id < n_vocab; id++)
	{
		P3TokenType t = p3_tokenizer_token_type(vocab_tok, id);
		size_t		len;
		const char *s = p3_tokenizer_token_text(vocab_tok, id, &len);

		if ((t == P3_TOKEN_CONTROL || t == P3_TOKEN_USER_DEFINED || t == P3_TOKEN_UNKNOWN) && len > 0)
		{
			special_texts[n_special] = s;
			special_lens[n_special] = len;
			n_special++;
		}
	}
	return 0;
}

/* Does s[0..n) contain the text of a special token? */
static bool
has_special_text(const char *s, size_t n)
{
	for (int i = 0; i < n_special; i++)
		if (special_lens[i] <= n && memmem(s, n, special_texts[i], special_lens[i]) != NULL)
			return true;
	return false;
}

/* Every id in range. */
static void
check_ids(const P3Tokens *t)
{
	for (size_t i = 0; i < t->n; i++)
		REQUIRE(t->ids[i] >= 0 && t->ids[i] < n_vocab);
}

/* 1 and 2: tokenize, detokenize, round trip. */
static void
fuzz_round_trip(unsigned flags, const char *text, size_t len)
{
	P3Tokens	toks = {0};
	P3Text		out = {0};
	P3Error		err;
	unsigned	tflags = (flags & 1 ? P3_TOKENIZE_SPECIAL : 0) | (flags & 2 ? P3_TOKENIZE_ADD_BOS : 0);
	P3Status	st;

	st = p3_tokenize(vocab_tok, text, len, tflags, &toks, &err);
	REQUIRE(st == P3_OK);
	check_ids(&toks);
	/* without special parsing no control or unknown token comes from the text */
	if (!(tflags & P3_TOKENIZE_SPECIAL))
		for (size_t i = (tflags & P3_TOKENIZE_ADD_BOS) ? 1 : 0; i < toks.n; i++)
			REQUIRE(p3_tokenizer_token_type(vocab_tok, toks.ids[i]) != P3_TOKEN_CONTROL &&
					p3_tokenizer_token_type(vocab_tok, toks.ids[i]) != P3_TOKEN_UNKNOWN);
	if (tflags & P3_TOKENIZE_ADD_BOS)
		REQUIRE(toks.n >= 1 && toks.ids[0] == p3_tokenizer_bos(vocab_tok));
	REQUIRE(len == 0 || toks.n > (tflags & P3_TOKENIZE_ADD_BOS ? 1u : 0u));
	/* the bounded form: the same tokens when they fit, else CONTEXT_FULL and nothing appended */
	{
		static const size_t bounds[8] = {0, 1, 2, 3, 5, 8, 13, 64};
		size_t		max_tokens = bounds[(flags >> 5) & 7];
		P3Tokens	bounded = {0};

		REQUIRE(p3_tokens_push(&bounded, -7, &err) == P3_OK);
		st = p3_tokenize_bounded(vocab_tok, text, len, tflags, max_tokens, &bounded, &err);
		if (toks.n <= max_tokens)
		{
			REQUIRE(st == P3_OK && bounded.n == toks.n + 1);
			REQUIRE(toks.n == 0 || memcmp(bounded.ids + 1, toks.ids, toks.n * sizeof(int32_t)) == 0);
		}
		else
			REQUIRE(st == P3_ERR_CONTEXT_FULL && bounded.n == 1);
		REQUIRE(bounded.ids[0] == -7);
		p3_tokens_free(&bounded);
	}
	st = p3_detokenize(vocab_tok, toks.ids, toks.n, (flags & 4) != 0, (flags & 8) != 0, &out, &err);
	REQUIRE(st == P3_OK && out.data != NULL && out.data[out.len] == '\0');
	REQUIRE(fuzz_valid_utf8(out.data, out.len));

	if (fuzz_valid_utf8(text, len) && !has_special_text(text, len) &&
		memmem(text, len, "\xe2\x96\x81", 3) == NULL)
	{
		P3Tokens	plain = {0};
		P3Text		back = {0};
		size_t		skip = tflags & P3_TOKENIZE_ADD_BOS ? 1 : 0;

		/* without special text, P3_TOKENIZE_SPECIAL changes nothing */
		REQUIRE(toks.n - skip <= toks.n);
		REQUIRE(p3_tokenize(vocab_tok, text, len, 0, &plain, &err) == P3_OK);
		REQUIRE(plain.n == toks.n - skip);
		REQUIRE(plain.n == 0 || memcmp(plain.ids, toks.ids + skip, plain.n * sizeof(int32_t)) == 0);
		REQUIRE(p3_detokenize(vocab_tok, plain.ids, plain.n, false, true, &back, &err) == P3_OK);
		REQUIRE(back.len == len && (len == 0 || memcmp(back.data, text, len) == 0));
		p3_tokens_free(&plain);
		p3_text_free(&back);
	}
	p3_tokens_free(&toks);
	p3_text_free(&out);
}

/* 3: the streaming detokenizer on arbitrary ids. */
static void
fuzz_stream(unsigned flags, const uint8_t *data, size_t size)
{
	size_t		n = size / 2;
	int32_t    *ids = malloc((n + 1) * sizeof(int32_t));
	bool		special = (flags & 4) != 0;
	bool		strip = (flags & 8) != 0;
	P3Detokenizer d;
	P3Text		out = {0};
	P3Text		whole = {0};
	P3Text		raw = {0};
	P3Error		err;

	REQUIRE(ids != NULL);
	for (size_t i = 0; i < n; i++)
		ids[i] = (int32_t) ((data[2 * i] | (uint32_t) data[2 * i + 1] << 8) % (uint32_t) n_vocab);

	p3_detok_init(&d, vocab_tok, special, strip);
	for (size_t i = 0; i < n; i++)
	{
		char		piece[512];
		size_t		plen = p3_token_to_piece(vocab_tok, ids[i], special, piece, sizeof(piece));

		REQUIRE(plen <= sizeof(piece));
		REQUIRE(p3_text_append(&raw, piece, plen, &err) == P3_OK);
		REQUIRE(p3_detok_push(&d, ids[i], &out, &err) == P3_OK);
		REQUIRE(out.len == 0 || out.data[out.len] == '\0');
		REQUIRE(fuzz_valid_utf8(out.data, out.len));
		REQUIRE(d.n_pending >= 0 && d.n_pending < 4);
	}
	REQUIRE(p3_detok_flush(&d, &out, &err) == P3_OK);
	REQUIRE(fuzz_valid_utf8(out.data, out.len));

	REQUIRE(p3_detokenize(vocab_tok, ids, n, special, strip, &whole, &err) == P3_OK);
	REQUIRE(whole.len == out.len && (out.len == 0 || memcmp(whole.data, out.data, out.len) == 0));

	if (fuzz_valid_utf8(raw.data, raw.len))
	{
		size_t		skip = (strip && raw.len > 0 && raw.data[0] == ' ') ? 1 : 0;

		REQUIRE(out.len == raw.len - skip);
		REQUIRE(out.len == 0 || memcmp(out.data, raw.data + skip, out.len) == 0);
	}
	free(ids);
	p3_text_free(&out);
	p3_text_free(&whole);
	p3_text_free(&raw);
}

/* 4: chat messages cut from the input. */
static void
fuzz_chat(unsigned flags, const char *text, size_t len)
{
	P3ChatMessage msgs[MAX_MESSAGES];
	int			n_msgs = 0;
	bool		plain = true;
	bool		gen_prompt = (flags & 16) != 0;
	P3Tokens	toks = {0};
	P3Error		err;
	size_t		pos = 0;

	while (pos <= len && n_msgs < MAX_MESSAGES)
	{
		const char *sep = memchr(text + pos, 0x1e, len - pos);
		size_t		end = sep ? (size_t) (sep - text) : len;

		if (end > pos)
		{
			msgs[n_msgs].role = (P3Role) ((unsigned char) text[pos] % 3);
			msgs[n_msgs].content = text + pos + 1;
			msgs[n_msgs].len = end - pos - 1;
		}
		else
		{
			msgs[n_msgs].role = P3_ROLE_USER;
			msgs[n_msgs].content = text + pos;
			msgs[n_msgs].len = 0;
		}
		if (has_special_text(msgs[n_msgs].content, msgs[n_msgs].len))
			plain = false;
		n_msgs++;
		pos = end + 1;
	}

	REQUIRE(p3_chat_tokenize(vocab_tok, msgs, n_msgs, gen_prompt, &toks, &err) == P3_OK);
	check_ids(&toks);
	{
		static const size_t bounds[8] = {0, 1, 3, 6, 10, 20, 40, 200};
		size_t		max_tokens = bounds[(flags >> 5) & 7];
		P3Tokens	bounded = {0};
		P3Status	st = p3_chat_tokenize_bounded(vocab_tok, msgs, n_msgs, gen_prompt, max_tokens, &bounded, &err);

		if (toks.n <= max_tokens)
			REQUIRE(st == P3_OK && bounded.n == toks.n &&
					(toks.n == 0 || memcmp(bounded.ids, toks.ids, toks.n * sizeof(int32_t)) == 0));
		else
			REQUIRE(st == P3_ERR_CONTEXT_FULL && bounded.n == 0);
		p3_tokens_free(&bounded);
	}
	if (plain)
	{
		P3Text		rendered = {0};
		P3Tokens	again = {0};
		unsigned	tflags = P3_TOKENIZE_SPECIAL | (p3_tokenizer_add_bos(vocab_tok) ? P3_TOKENIZE_ADD_BOS : 0);

		REQUIRE(p3_chat_render(vocab_tok, msgs, n_msgs, gen_prompt, &rendered, &err) == P3_OK);
		REQUIRE(p3_tokenize(vocab_tok, rendered.data, rendered.len, tflags, &again, &err) == P3_OK);
		REQUIRE(again.n == toks.n);
		REQUIRE(toks.n == 0 || memcmp(again.ids, toks.ids, toks.n * sizeof(int32_t)) == 0);
		p3_text_free(&rendered);
		p3_tokens_free(&again);
	}
	p3_tokens_free(&toks);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned	flags;
	const char *text;
	size_t		len;

	if (size == 0)
		return 0;
	flags = data[0];
	text = (const char *) data + 1;
	len = size - 1;
	fuzz_round_trip(flags, text, len);
	fuzz_stream(flags, data + 1, len);
	fuzz_chat(flags, text, len);
	return 0;
}
