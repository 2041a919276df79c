/*
 * fuzz_vocab.c — libFuzzer harness for p3_tokenizer_from_vocab on
 * adversarial vocabularies, and for tokenizing and detokenizing with them.
 *
 * Not part of the test suite.  `make fuzz` builds it into build/fuzz/:
 *
 *     build/fuzz/fuzz_vocab -max_len=1024 build/fuzz/corpus/fuzz_vocab
 *
 * Input layout (fuzz_util.h's reader: missing bytes read as 0):
 *   u8 n       token count: 1 + n % 48, or 0 tokens when n == 255
 *   u8 flags   0 add_bos, 1 add_space_prefix, 2 no scores, 3 no types,
 *              4 no lengths (NUL-terminated texts), 5 P3_TOKENIZE_SPECIAL,
 *              6 P3_TOKENIZE_ADD_BOS, 7 detokenize with special
 *   u8 × 3     bos, eos, unk: b % (n + 3) - 2, so -2 and n are out of range
 *   per token: u8 kind (& 7: 0 "<0xXX>" with the next byte, 1 a duplicate of
 *              an earlier text (next byte), or a proper prefix of it when the
 *              byte after is odd, 2 empty, 3 a marker such as <|end|>, else raw
 *              text of next % 8 bytes), u8 type (< 128: NORMAL, else
 *              b % 10 - 2, i.e. -2..7), u8 score (& 7: 0 NaN, 1 +inf, 2 -inf,
 *              3 a denormal, 4 -0, else the next byte as a signed number / 4)
 *   the rest   the text to tokenize
 *
 * A vocabulary with an id out of range, or a BYTE token whose text is not
 * <0xXX>, must be refused with an error; any other must build, keep every
 * text and type as given (chat markers CONTROL, unknown types UNDEFINED),
 * find each text at its last id, and tokenize the text into ids in range
 * (or refuse with P3_ERR_UNSUPPORTED when a byte has no token and there is
 * no <unk>); without P3_TOKENIZE_SPECIAL no id but BOS and <unk> may be a
 * chat marker <|...|> (tokenizer.h: plain text cannot inject one, whatever
 * pieces the vocabulary has).  Decoding — whole or streamed, with or without special — must
 * give valid UTF-8, and p3_token_to_piece must report the same length for
 * every buffer size.  When the text is valid UTF-8 without "<0x" or U+2581
 * and every token produced is NORMAL (not a "<0xXX>" text, not <unk>, the
 * byte fallback's last resort) or BYTE (and
 * "▁" is a token, if spaces occur), the decoded text must be the input.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phi3/generate.h"
#include "phi3/tokenizer.h"

#include "fuzz_util.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_TOKENS 48

/* Is s[0..n) a chat marker <|...|>? */
static bool
is_chat_marker(const char *s, size_t n)
{
	return n >= 5 && s[0] == '<' && s[1] == '|' && s[n - 2] == '|' && s[n - 1] == '>';
}

/* The effective type p3_tokenizer_from_vocab documents. */
static int32_t
effective_type(int32_t type, const char *s, size_t n)
{
	if (type < P3_TOKEN_UNDEFINED || type > P3_TOKEN_BYTE)
		type = P3_TOKEN_UNDEFINED;
	if (type != P3_TOKEN_BYTE && is_chat_marker(s, n))
		type = P3_TOKEN_CONTROL;
	return type;
}

/* Is s[0..n) "<0xXX>" with hex digits? */
static bool
is_byte_text(const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdefABCDEF";

	return n == 6 && s[0] == '<' && s[1] == '0' && s[2] == 'x' && s[5] == '>' &&
		s[3] != '\0' && s[4] != '\0' && strchr(hex, s[3]) != NULL && strchr(hex, s[4]) != NULL;
}

/* Check what the built tokenizer reports against what it was given. */
static void
check_vocab(const P3Tokenizer *tok, int32_t n, char texts[][16], const size_t *lens, const int32_t *types)
{
	for (int32_t id = 0; id < n; id++)
	{
		size_t		len;
		const char *s = p3_tokenizer_token_text(tok, id, &len);
		int32_t		found;

		REQUIRE(s != NULL && len == lens[id] && memcmp(s, texts[id], len) == 0 && s[len] == '\0');
		REQUIRE((int32_t) p3_tokenizer_token_type(tok, id) == effective_type(types ? types[id] : P3_TOKEN_NORMAL, s, len));
		if (memchr(s, '\0', len) != NULL)
			continue;
		/* later duplicates win */
		found = p3_tokenizer_find(tok, s);
		REQUIRE(found >= id && found < n && lens[found] == len && memcmp(texts[found], s, len) == 0);
		for (int32_t later = found + 1; later < n; later++)
			REQUIRE(!(lens[later] == len && memcmp(texts[later], s, len) == 0));
	}
	REQUIRE(p3_tokenizer_token_text(tok, n, NULL) == NULL);
	REQUIRE(p3_tokenizer_token_text(tok, -1, NULL) == NULL);
	REQUIRE(p3_tokenizer_token_type(tok, n) == P3_TOKEN_UNDEFINED);
}

/* p3_token_to_piece: same length for any buffer, a prefix when cut. */
static void
check_pieces(const P3Tokenizer *tok, int32_t n)
{
	for (int32_t id = -1; id <= n; id++)
	{
		for (int special = 0; special < 2; special++)
		{
			char		full[64];
			char		part[4];
			size_t		len = p3_token_to_piece(tok, id, special, full, sizeof(full));

			REQUIRE(len <= sizeof(full));
			REQUIRE(p3_token_to_piece(tok, id, special, NULL, 0) == len);
			REQUIRE(p3_token_to_piece(tok, id, special, part, sizeof(part)) == len);
			REQUIRE(memcmp(part, full, len < sizeof(part) ? len : sizeof(part)) == 0);
			(void) p3_tokenizer_is_eog(tok, id);
		}
	}
}

/* Tokenize and decode text with the built tokenizer. */
static void
exercise(const P3Tokenizer *tok, int32_t n, int32_t unk, unsigned flags, bool add_space_prefix,
		 const char *text, size_t len)
{
	P3Tokens	toks = {0};
	P3Text		out = {0};
	P3Text		streamed = {0};
	P3Error		err;
	P3Detokenizer d;
	unsigned	tflags = (flags & 0x20 ? P3_TOKENIZE_SPECIAL : 0) | (flags & 0x40 ? P3_TOKENIZE_ADD_BOS : 0);
	bool		special = (flags & 0x80) != 0;
	bool		decodable = true;
	P3Status	st;

	memset(&err, 0, sizeof(err));
	st = p3_tokenize(tok, text, len, tflags, &toks, &err);
	if (st != P3_OK)
	{
		REQUIRE_ERROR(st, err);
		REQUIRE(st == P3_ERR_UNSUPPORTED);
		REQUIRE(toks.n == 0);
		p3_tokens_free(&toks);
		return;
	}
	if ((tflags & P3_TOKENIZE_ADD_BOS) && p3_tokenizer_bos(tok) >= 0)
		REQUIRE(toks.n >= 1 && toks.ids[0] == p3_tokenizer_bos(tok));
	for (size_t i = 0; i < toks.n; i++)
	{
		int32_t		t;
		size_t		tl;
		const char *ts;

		REQUIRE(toks.ids[i] >= 0 && toks.ids[i] < n);
		t = p3_tokenizer_token_type(tok, toks.ids[i]);
		ts = p3_tokenizer_token_text(tok, toks.ids[i], &tl);
		/* plain text never becomes a chat marker (but BOS, if asked for, or <unk> may be one) */
		if (!(tflags & P3_TOKENIZE_SPECIAL) && toks.ids[i] != unk &&
			!(i == 0 && (tflags & P3_TOKENIZE_ADD_BOS) && toks.ids[i] == p3_tokenizer_bos(tok)))
			REQUIRE(!is_chat_marker(ts, tl));
		if (toks.ids[i] == unk ||
			!(t == P3_TOKEN_BYTE || (t == P3_TOKEN_NORMAL && !is_byte_text(ts, tl))))
			decodable = false;
	}

	REQUIRE(p3_detokenize(tok, toks.ids, toks.n, special, add_space_prefix, &out, &err) == P3_OK);
	REQUIRE(fuzz_valid_utf8(out.data, out.len));
	p3_detok_init(&d, tok, special, add_space_prefix);
	for (size_t i = 0; i < toks.n; i++)
	{
		REQUIRE(p3_detok_push(&d, toks.ids[i], &streamed, &err) == P3_OK);
		REQUIRE(fuzz_valid_utf8(streamed.data, streamed.len));
	}
	REQUIRE(p3_detok_flush(&d, &streamed, &err) == P3_OK);
	REQUIRE(streamed.len == out.len && (out.len == 0 || memcmp(streamed.data, out.data, out.len) == 0));

	/* a "▁" that falls back to its bytes decodes as "▁", not as a space */
	if (p3_tokenizer_find(tok, "\xe2\x96\x81") < 0 && (add_space_prefix || memchr(text, ' ', len)))
		decodable = false;
	if (decodable && !(tflags & P3_TOKENIZE_ADD_BOS) && fuzz_valid_utf8(text, len) &&
		memmem(text, len, "<0x", 3) == NULL && memmem(text, len, "\xe2\x96\x81", 3) == NULL)
	{
		P3Text		plain = {0};

		REQUIRE(p3_detokenize(tok, toks.ids, toks.n, false, add_space_prefix, &plain, &err) == P3_OK);
		REQUIRE(plain.len == len && (len == 0 || memcmp(plain.data, text, len) == 0));
		p3_text_free(&plain);
	}

	/* the chat template either finds its markers or says which is missing */
	{
		P3ChatMessage m = {P3_ROLE_USER, text, len};
		P3Tokens	chat = {0};

		memset(&err, 0, sizeof(err));
		st = p3_chat_tokenize(tok, &m, 1, true, &chat, &err);
		if (st != P3_OK)
		{
			REQUIRE_ERROR(st, err);
			REQUIRE(st == P3_ERR_UNSUPPORTED);
		}
		for (size_t i = 0; i < chat.n; i++)
			REQUIRE(chat.ids[i] >= 0 && chat.ids[i] < n);
		p3_tokens_free(&chat);
	}
	p3_tokens_free(&toks);
	p3_text_free(&out);
	p3_text_free(&streamed);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const markers[] = {
		"<|end|>", "<|user|>", "<|assistant|>", "<|system|>", "<|endoftext|>", "<s>", "</s>", "<unk>",
		"<|", "[PAD1]", "\xe2\x96\x81", "\xe2\x96\x81t", "<|x|>", "|>", "x|>", "<|x", "<0", "<0x"
	};
	FuzzReader	r = {data, size};
	uint8_t		nb = fuzz_u8(&r);
	int32_t		n = nb == 255 ? 0 : 1 + nb % MAX_TOKENS;
	unsigned	flags = fuzz_u8(&r);
	char		texts[MAX_TOKENS][16];
	const char *ptrs[MAX_TOKENS];
	size_t		lens[MAX_TOKENS];
	float		scores[MAX_TOKENS];
	int32_t		types[MAX_TOKENS];
	P3TokenizerVocab v;
	P3Tokenizer *tok = NULL;
	P3Error		err;
	P3Status	st;
	bool		valid = n > 0;
	int32_t		ids[3];

	memset(&v, 0, sizeof(v));
	for (int i = 0; i < 3; i++)
	{
		ids[i] = (int32_t) (fuzz_u8(&r) % (n + 3)) - 2;
		if (ids[i] < -1 || ids[i] >= n)
			valid = false;
	}
	for (int32_t id = 0; id < n; id++)
	{
		uint8_t		kind = fuzz_u8(&r);
		uint8_t		tb;
		uint8_t		sb;

		memset(texts[id], 0, sizeof(texts[id]));
		switch (kind & 7)
		{
			case 0:
				snprintf(texts[id], sizeof(texts[id]), "<0x%02X>", fuzz_u8(&r));
				lens[id] = 6;
				break;
			case 1:
				{
					/* a duplicate, or a prefix: prefixes of a marker chain up to it by merges */
					int32_t		src = id ? fuzz_u8(&r) % id : 0;
					uint8_t		cut = fuzz_u8(&r);

					memcpy(texts[id], texts[src], sizeof(texts[id]));
					lens[id] = id ? lens[src] : 0;
					if ((cut & 1) && lens[id] > 0)
					{
						lens[id] = (size_t) (cut >> 1) % lens[id];
						memset(texts[id] + lens[id], 0, sizeof(texts[id]) - lens[id]);
					}
					break;
				}
			case 2:
				lens[id] = 0;
				break;
			case 3:
				{
					const char *m = markers[fuzz_u8(&r) % (sizeof(markers) / sizeof(markers[0]))];

					lens[id] = strlen(m);
					memcpy(texts[id], m, lens[id]);
					break;
				}
			default:
				{
					size_t		got;
					const uint8_t *b = fuzz_bytes(&r, fuzz_u8(&r) % 8, &got);

					memcpy(texts[id], b, got);
					lens[id] = got;
					break;
				}
		}
		tb = fuzz_u8(&r);
		types[id] = tb < 128 ? P3_TOKEN_NORMAL : (int32_t) (tb % 10) - 2;
		sb = fuzz_u8(&r);
		switch (sb & 7)
		{
			case 0:
				scores[id] = NAN;
				break;
			case 1:
				scores[id] = INFINITY;
				break;
			case 2:
				scores[id] = -INFINITY;
				break;
			case 3:
				scores[id] = 1e-45f;
				break;
			case 4:
				scores[id] = -0.0f;
				break;
			default:
				scores[id] = (float) (int8_t) fuzz_u8(&r) / 4.0f;
				break;
		}
	}
	/* NUL-terminated texts: the length is where the first NUL is */
	if (flags & 0x10)
		for (int32_t id = 0; id < n; id++)
			lens[id] = strlen(texts[id]);
	v.n_tokens = n;
	v.texts = ptrs;
	v.lengths = (flags & 0x10) ? NULL : lens;
	v.scores = (flags & 0x04) ? NULL : scores;
	v.types = (flags & 0x08) ? NULL : types;
	v.bos_id = ids[0];
	v.eos_id = ids[1];
	v.unk_id = ids[2];
	v.add_bos = (flags & 1) != 0;
	v.add_space_prefix = (flags & 2) != 0;
	for (int32_t id = 0; id < n; id++)
	{
		ptrs[id] = texts[id];
		if (v.types && types[id] == P3_TOKEN_BYTE && !is_byte_text(texts[id], lens[id]))
			valid = false;
	}

	memset(&err, 0, sizeof(err));
	st = p3_tokenizer_from_vocab(&v, &tok, &err);
	if (!valid)
	{
		REQUIRE(st != P3_OK && tok == NULL);
		REQUIRE_ERROR(st, err);
		REQUIRE(st == P3_ERR_FORMAT);
		return 0;
	}
	REQUIRE(st == P3_OK && tok != NULL);
	REQUIRE(p3_tokenizer_n_vocab(tok) == n);
	REQUIRE(p3_tokenizer_bos(tok) == ids[0] && p3_tokenizer_eos(tok) == ids[1]);
	REQUIRE(p3_tokenizer_add_bos(tok) == (v.add_bos && ids[0] >= 0));
	check_vocab(tok, n, texts, lens, v.types);
	check_pieces(tok, n);
	{
		size_t		got;
		const char *text = (const char *) fuzz_bytes(&r, r.n, &got);

		exercise(tok, n, ids[2], flags, v.add_space_prefix, text, got);
	}
	p3_tokenizer_free(tok);
	return 0;
}
