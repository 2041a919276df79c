/*
 * test_tokenizer.c — the Phi-3 tokenizer against the real vocabulary.
 *
 * The vocabulary is ggml-vocab-phi-3.gguf (llama.cpp's vocab-only file),
 * found through $PHI3_VOCAB, $PHI3_DATA_DIR, or the usual places relative
 * to the repository root.  Its .inp/.out companion holds llama.cpp's own
 * tokenizer test cases; every one must match.  The rest checks special
 * tokens and Phi-3's rstrip, byte fallback, hostile input, the streaming
 * UTF-8 decoder, round trips, speed on a long text, and the GGUF loader's
 * validation (on small generated files).
 */
#include "harness.h"

#include "phi3/gguf.h"
#include "phi3/tokenizer.h"

#include <time.h>
#include <unistd.h>

static P3Tokenizer *phi3_tok;
static char vocab_path[4096];

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

/* Locate the vocabulary file; false if none is found. */
static bool
find_vocab(void)
{
	const char *env = getenv("PHI3_VOCAB");
	const char *dir = getenv("PHI3_DATA_DIR");
	static const char *const candidates[] = {
		"test/data/ggml-vocab-phi-3.gguf",
	};

	if (env && *env)
	{
		snprintf(vocab_path, sizeof(vocab_path), "%s", env);
		return access(vocab_path, R_OK) == 0;
	}
	if (dir && *dir)
	{
		snprintf(vocab_path, sizeof(vocab_path), "%s/ggml-vocab-phi-3.gguf", dir);
		return access(vocab_path, R_OK) == 0;
	}
	for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
	{
		if (access(candidates[i], R_OK) == 0)
		{
			snprintf(vocab_path, sizeof(vocab_path), "%s", candidates[i]);
			return true;
		}
	}
	return false;
}

/* Read a whole file into a NUL-terminated malloc'ed buffer. */
static char *
read_file(const char *path, size_t *len)
{
	FILE	   *f = fopen(path, "rb");
	char	   *buf;
	long		size;

	if (f == NULL)
		return NULL;
	fseek(f, 0, SEEK_END);
	size = ftell(f);
	fseek(f, 0, SEEK_SET);
	buf = malloc((size_t) size + 1);
	if (buf && fread(buf, 1, (size_t) size, f) != (size_t) size)
	{
		free(buf);
		buf = NULL;
	}
	fclose(f);
	if (buf)
	{
		buf[size] = '\0';
		*len = (size_t) size;
	}
	return buf;
}

/* Tokenize, expecting success. */
static P3Tokens
tokenize(const char *text, size_t len, unsigned flags)
{
	P3Tokens	t = {0};
	P3Error		err = {0};
	P3Status	st = p3_tokenize(phi3_tok, text, len, flags, &t, &err);

	CHECK_MSG(st == P3_OK, "p3_tokenize failed: %s", err.message);
	return t;
}

/* Tokenize a C string. */
static P3Tokens
tokenize_str(const char *text, unsigned flags)
{
	return tokenize(text, strlen(text), flags);
}

/* Are two id lists equal?  Print both when not. */
static bool
ids_equal(const char *label, const int32_t *got, size_t n_got, const int32_t *want, size_t n_want)
{
	bool		same = n_got == n_want && (n_got == 0 || memcmp(got, want, n_got * sizeof(int32_t)) == 0);

	if (!same)
	{
		fprintf(stderr, "  %s:\n    got ", label);
		for (size_t i = 0; i < n_got; i++)
			fprintf(stderr, " %d", (int) got[i]);
		fprintf(stderr, "\n    want");
		for (size_t i = 0; i < n_want; i++)
			fprintf(stderr, " %d", (int) want[i]);
		fputc('\n', stderr);
	}
	return same;
}

/* Tokenize text and compare with an expected list. */
static void
expect_ids(const char *text, unsigned flags, const int32_t *want, size_t n_want)
{
	P3Tokens	t = tokenize_str(text, flags);

	CHECK_MSG(ids_equal(text, t.ids, t.n, want, n_want), "tokens of \"%s\" (flags %u)", text, flags);
	p3_tokens_free(&t);
}

#define EXPECT_IDS(text, flags, ...) \
	do { \
		const int32_t _want[] = {__VA_ARGS__}; \
		expect_ids(text, flags, _want, sizeof(_want) / sizeof(_want[0])); \
	} while (0)

/* Id of a token text that must exist. */
static int32_t
must_find(const char *text)
{
	int32_t		id = p3_tokenizer_find(phi3_tok, text);

	CHECK_MSG(id >= 0, "token \"%s\" not in the vocabulary", text);
	return id;
}

/* Id of the byte token for b. */
static int32_t
byte_id(unsigned b)
{
	char		name[8];

	snprintf(name, sizeof(name), "<0x%02X>", b);
	return must_find(name);
}

/* Decode ids with the non-streaming API. */
static char *
detokenize(const int32_t *ids, size_t n, bool special, bool strip, size_t *len)
{
	P3Text		out = {0};
	P3Error		err = {0};

	CHECK_STATUS(p3_detokenize(phi3_tok, ids, n, special, strip, &out, &err), P3_OK);
	if (out.data == NULL)
		p3_text_append(&out, "", 0, &err);
	*len = out.len;
	return out.data;
}

/* Strict UTF-8 validation (independent of the decoder under test). */
static bool
valid_utf8(const unsigned char *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		unsigned char c = s[i];
		uint32_t	cp;
		int			len;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		else if ((c & 0xe0) == 0xc0)
			len = 2, cp = c & 0x1f;
		else if ((c & 0xf0) == 0xe0)
			len = 3, cp = c & 0x0f;
		else if ((c & 0xf8) == 0xf0)
			len = 4, cp = c & 0x07;
		else
			return false;
		if (i + (size_t) len > n)
			return false;
		for (int k = 1; k < len; k++)
		{
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
			cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += (size_t) len;
	}
	return true;
}

/* Seconds of monotonic time. */
static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------
 * llama.cpp's test cases
 * ------------------------------------------------------------------------ */

/* Every case of ggml-vocab-phi-3.gguf.inp gives the ids of the .out line. */
static void
test_vocab_cases(void)
{
	static const char sep[] = "\n__ggml_vocab_test__\n";
	char		path[4200];
	size_t		inp_len = 0,
				out_len = 0;
	char	   *inp,
			   *outp;
	char	   *line;
	const char *cur;
	int			n_cases = 0,
				n_passed = 0;

	snprintf(path, sizeof(path), "%s.inp", vocab_path);
	inp = read_file(path, &inp_len);
	snprintf(path, sizeof(path), "%s.out", vocab_path);
	outp = read_file(path, &out_len);
	CHECK_MSG(inp && outp, "cannot read %s.inp/.out", vocab_path);
	if (!inp || !outp)
	{
		free(inp);
		free(outp);
		return;
	}

	cur = inp;
	line = outp;
	for (;;)
	{
		const char *end = strstr(cur, sep);
		P3Tokens	t;
		int32_t		want[2048];
		size_t		n_want = 0;
		char	   *nl;
		char	   *p;
		char		label[64];

		if (end == NULL)
			break;				/* what follows the last separator is not a case */
		CHECK_MSG(*line != '\0', "%s.out has fewer lines than there are cases", vocab_path);
		if (*line == '\0')
			break;
		nl = strchr(line, '\n');
		if (nl)
			*nl = '\0';
		for (p = line;;)
		{
			char	   *q;
			long		v = strtol(p, &q, 10);

			if (q == p || n_want == 2048)
				break;
			want[n_want++] = (int32_t) v;
			p = q;
		}
		line = nl ? nl + 1 : line + strlen(line);

		t = tokenize(cur, (size_t) (end - cur), 0);
		snprintf(label, sizeof(label), "case %d", n_cases);
		if (ids_equal(label, t.ids, t.n, want, n_want))
			n_passed++;
		else
			fprintf(stderr, "  case %d text: \"%.*s\"\n", n_cases, (int) (end - cur), cur);
		n_cases++;
		p3_tokens_free(&t);
		cur = end + strlen(sep);
	}
	CHECK_MSG(*line == '\0', "%s.out has more lines than there are cases", vocab_path);
	CHECK(n_cases >= 40);
	CHECK_EQ_INT(n_passed, n_cases);
	fprintf(stderr, "  llama.cpp vocab cases: %d of %d match\n", n_passed, n_cases);
	free(inp);
	free(outp);
}

/* ------------------------------------------------------------------------
 * Special tokens
 * ------------------------------------------------------------------------ */

/* The two examples of the spec (PR #8039, Toolio #12). */
static void
test_verified_examples(void)
{
	EXPECT_IDS("Test:<|user|>This is a test<|end|>\n<|assistant|>",
			   P3_TOKENIZE_ADD_BOS | P3_TOKENIZE_SPECIAL,
			   1, 4321, 29901, 32010, 910, 338, 263, 1243, 32007, 32001);
	EXPECT_IDS("Hello<|end|>", P3_TOKENIZE_SPECIAL, 15043, 32007);
	/* BOS only on request */
	EXPECT_IDS("Hello", P3_TOKENIZE_ADD_BOS, 1, 15043);
	EXPECT_IDS("", P3_TOKENIZE_ADD_BOS, 1);
	{
		P3Tokens	t = tokenize_str("", 0);

		CHECK_EQ_INT(t.n, 0);
		p3_tokens_free(&t);
	}
}

/* Check that tokens(text, flags) == prefix ++ tokens(rest, rest_flags). */
static void
expect_split(const char *text, unsigned flags, const int32_t *prefix, size_t n_prefix,
			 const char *rest, unsigned rest_flags)
{
	P3Tokens	got = tokenize_str(text, flags);
	P3Tokens	want = {0};
	P3Error		err = {0};

	for (size_t i = 0; i < n_prefix; i++)
		p3_tokens_push(&want, prefix[i], &err);
	CHECK_STATUS(p3_tokenize(phi3_tok, rest, strlen(rest), rest_flags, &want, &err), P3_OK);
	CHECK_MSG(ids_equal(text, got.ids, got.n, want.ids, want.n), "split of \"%s\"", text);
	p3_tokens_free(&got);
	p3_tokens_free(&want);
}

/* Special-token parsing with and without the flag, and Phi-3's rstrip. */
static void
test_special_tokens(void)
{
	int32_t		end_id = must_find("<|end|>");
	int32_t		user_id = must_find("<|user|>");
	int32_t		eot_id = must_find("<|endoftext|>");
	int32_t		s_close = must_find("</s>");
	P3Tokens	t;

	/* the markers are CONTROL, </s> is USER_DEFINED in this file */
	CHECK_EQ_INT(p3_tokenizer_token_type(phi3_tok, end_id), P3_TOKEN_CONTROL);
	CHECK_EQ_INT(p3_tokenizer_token_type(phi3_tok, s_close), P3_TOKEN_USER_DEFINED);

	/* without the flag, control text is plain text */
	t = tokenize_str("<|user|>Hi<|end|>", 0);
	for (size_t i = 0; i < t.n; i++)
		CHECK(t.ids[i] != user_id && t.ids[i] != end_id && t.ids[i] < 32000);
	CHECK(t.n > 4);
	p3_tokens_free(&t);
	t = tokenize_str("<s><unk>[PAD32011]<|endoftext|>", 0);
	for (size_t i = 0; i < t.n; i++)
		CHECK(t.ids[i] > 2 && t.ids[i] < 32000);
	p3_tokens_free(&t);

	/* with it, they are tokens; UNKNOWN-type entries too, as llama.cpp */
	EXPECT_IDS("<s><unk>[PAD32011]<|endoftext|>", P3_TOKENIZE_SPECIAL, 1, 0, 32011, 32000);

	/* rstrip swallows the newline and every kind of whitespace after a marker */
	{
		const int32_t pre[] = {user_id};
		const int32_t pre2[] = {end_id};

		expect_split("<|user|>\nHello", P3_TOKENIZE_SPECIAL, pre, 1, "Hello", 0);
		expect_split("<|user|> \t\n\r\v\f  Hello world", P3_TOKENIZE_SPECIAL, pre, 1, "Hello world", 0);
		expect_split("<|end|>\n\n", P3_TOKENIZE_SPECIAL, pre2, 1, "", 0);
		/* only leading whitespace goes: inner and trailing whitespace stays */
		expect_split("<|user|>\n a b \n", P3_TOKENIZE_SPECIAL, pre, 1, "a b \n", 0);
	}
	EXPECT_IDS("<|end|>\n<|user|>\n", P3_TOKENIZE_SPECIAL, end_id, user_id);

	/* <|endoftext|> and <s> keep the whitespace after them */
	{
		const int32_t pre[] = {eot_id};
		const int32_t pre_bos[] = {1};

		expect_split("<|endoftext|>\nHello", P3_TOKENIZE_SPECIAL, pre, 1, "\nHello", 0);
		expect_split("<s> Hello", P3_TOKENIZE_SPECIAL, pre_bos, 1, " Hello", 0);
	}

	/* </s> is USER_DEFINED: matched even without the flag, with rstrip */
	{
		const int32_t pre[] = {15043, s_close};
		P3Tokens	a = tokenize_str("Hello</s>  world", 0);
		P3Tokens	b = tokenize_str("world", 0);

		CHECK(a.n == 2 + b.n && ids_equal("</s>", a.ids, 2, pre, 2) &&
			  ids_equal("</s> rest", a.ids + 2, a.n - 2, b.ids, b.n));
		p3_tokens_free(&a);
		p3_tokens_free(&b);
	}

	/* the space prefix applies after each special token, not before it */
	EXPECT_IDS("Hello<|end|>Hello", P3_TOKENIZE_SPECIAL, 15043, end_id, 15043);
	EXPECT_IDS(" Hello<|end|>", P3_TOKENIZE_SPECIAL, 29871, 15043, end_id);
}

/* Longest-first matching and marker typing, on a small custom vocabulary. */
static void
test_special_custom_vocab(void)
{
	const char *texts[] = {"<unk>", "<s>", "</s>", "ab", "bcd", "abcd", "\xe2\x96\x81",
		"a", "b", "c", "d", "x", "<|turn|>", "<|end|>"};
	int32_t		types[] = {P3_TOKEN_UNKNOWN, P3_TOKEN_CONTROL, P3_TOKEN_CONTROL,
		P3_TOKEN_USER_DEFINED, P3_TOKEN_USER_DEFINED, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL,
		P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL,
	P3_TOKEN_USER_DEFINED, P3_TOKEN_NORMAL};
	P3TokenizerVocab v = {0};
	P3Tokenizer *tok = NULL;
	P3Error		err = {0};
	P3Tokens	t = {0};

	v.n_tokens = (int32_t) (sizeof(texts) / sizeof(texts[0]));
	v.texts = texts;
	v.types = types;
	v.bos_id = 1;
	v.eos_id = 2;
	v.unk_id = 0;
	v.add_bos = true;
	v.add_space_prefix = false;
	CHECK_STATUS(p3_tokenizer_from_vocab(&v, &tok, &err), P3_OK);
	if (tok == NULL)
		return;

	/* "bcd" (3 bytes) is split out before "ab": a | bcd, not ab | cd */
	CHECK_STATUS(p3_tokenize(tok, "xabcd", 5, 0, &t, &err), P3_OK);
	{
		const int32_t want[] = {11, 7, 4};

		CHECK(ids_equal("longest first", t.ids, t.n, want, 3));
	}

	/* <|...|> markers are CONTROL whatever the file says */
	CHECK_EQ_INT(p3_tokenizer_token_type(tok, 12), P3_TOKEN_CONTROL);
	CHECK_EQ_INT(p3_tokenizer_token_type(tok, 13), P3_TOKEN_CONTROL);
	t.n = 0;
	CHECK_STATUS(p3_tokenize(tok, "<|turn|>", 8, 0, &t, &err), P3_OK);
	for (size_t i = 0; i < t.n; i++)
		CHECK(t.ids[i] != 12);
	t.n = 0;
	CHECK_STATUS(p3_tokenize(tok, "<|turn|>\nx", 10, P3_TOKENIZE_SPECIAL, &t, &err), P3_OK);
	{
		const int32_t want[] = {12, 11};

		CHECK(ids_equal("marker", t.ids, t.n, want, 2));
	}
	/* the markers are end-of-generation only by name */
	CHECK(p3_tokenizer_is_eog(tok, 13));
	CHECK(p3_tokenizer_is_eog(tok, 2));
	CHECK(!p3_tokenizer_is_eog(tok, 12));

	/* no byte tokens: a character outside the vocabulary falls back to <unk> */
	t.n = 0;
	CHECK_STATUS(p3_tokenize(tok, "a\xc3\xa9", 3, 0, &t, &err), P3_OK);
	{
		const int32_t want[] = {7, 0, 0};

		CHECK(ids_equal("unk fallback", t.ids, t.n, want, 3));
	}
	p3_tokens_free(&t);
	p3_tokenizer_free(tok);

	/* no byte tokens and no <unk>: such a character cannot be tokenized */
	v.unk_id = -1;
	CHECK_STATUS(p3_tokenizer_from_vocab(&v, &tok, &err), P3_OK);
	if (tok != NULL)
	{
		CHECK_STATUS(p3_tokenize(tok, "a\xc3\xa9", 3, 0, &t, &err), P3_ERR_UNSUPPORTED);
		CHECK_EQ_INT(err.kind, P3_KIND_MISSING_TOKEN);
		CHECK(strstr(err.message, "byte 0xC3") != NULL);
		p3_tokens_free(&t);
		p3_tokenizer_free(tok);
	}
	v.unk_id = 0;

	/* bad arguments to the array constructor */
	v.bos_id = 99;
	CHECK_STATUS(p3_tokenizer_from_vocab(&v, &tok, &err), P3_ERR_FORMAT);
	CHECK(tok == NULL);
	v.bos_id = 1;
	v.n_tokens = 0;
	CHECK_STATUS(p3_tokenizer_from_vocab(&v, &tok, &err), P3_ERR_FORMAT);
	{
		const char *bad[] = {"<unk>", "<0xZZ>"};
		int32_t		bad_types[] = {P3_TOKEN_UNKNOWN, P3_TOKEN_BYTE};
		P3TokenizerVocab bv = {0};

		bv.n_tokens = 2;
		bv.texts = bad;
		bv.types = bad_types;
		bv.bos_id = bv.eos_id = -1;
		CHECK_STATUS(p3_tokenizer_from_vocab(&bv, &tok, &err), P3_ERR_FORMAT);
		CHECK(strstr(err.message, "<0xZZ>") != NULL);
	}
}

/*
 * Plain text never becomes a control, unknown or byte piece, even when the
 * vocabulary's normal pieces chain up to one (found by test/fuzz/fuzz_vocab:
 * "<|x|>" merged through "<|" + "|>", then "x|>", into the marker).
 */
static void
test_merges_skip_special_pieces(void)
{
	const char *texts[] = {"<unk>", "<s>", "</s>", "<", "|", "x", ">", "<|", "|>", "x|>", "<|x|>",
		"0", "<0", "<0x", "4", "1", "<0x4", "<0x41", "<0x41>", "y"};
	float		scores[] = {0, 0, 0, -1, -1, -1, -1, -2, -2, -3, -4,
		-1, -2, -3, -1, -1, -4, -5, -6, -1};
	int32_t		types[] = {P3_TOKEN_UNKNOWN, P3_TOKEN_CONTROL, P3_TOKEN_CONTROL,
		P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL,
		P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL,
		P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_NORMAL,
		P3_TOKEN_NORMAL, P3_TOKEN_NORMAL, P3_TOKEN_BYTE, P3_TOKEN_CONTROL};
	P3TokenizerVocab v = {0};
	P3Tokenizer *tok = NULL;
	P3Error		err = {0};
	P3Tokens	t = {0};
	P3Text		out = {0};

	v.n_tokens = (int32_t) (sizeof(texts) / sizeof(texts[0]));
	v.texts = texts;
	v.scores = scores;
	v.types = types;
	v.bos_id = 1;
	v.eos_id = 2;
	v.unk_id = 0;
	v.add_space_prefix = false;
	CHECK_STATUS(p3_tokenizer_from_vocab(&v, &tok, &err), P3_OK);
	if (tok == NULL)
		return;
	CHECK_EQ_INT(p3_tokenizer_token_type(tok, 10), P3_TOKEN_CONTROL);

	/* the pieces stay pieces: "<|" + "x|>" is as far as the merges go */
	CHECK_STATUS(p3_tokenize(tok, "<|x|>", 5, 0, &t, &err), P3_OK);
	{
		const int32_t want[] = {7, 9};

		CHECK(ids_equal("no marker from pieces", t.ids, t.n, want, 2));
	}
	CHECK_STATUS(p3_detokenize(tok, t.ids, t.n, false, false, &out, &err), P3_OK);
	CHECK(out.len == 5 && memcmp(out.data, "<|x|>", 5) == 0);
	/* asked for, the marker is recognised as a whole */
	t.n = 0;
	CHECK_STATUS(p3_tokenize(tok, "<|x|>", 5, P3_TOKENIZE_SPECIAL, &t, &err), P3_OK);
	CHECK(t.n == 1 && t.ids[0] == 10);

	/* "<0x41>" typed as text is not the byte token (which decodes as "A") */
	t.n = 0;
	out.len = 0;
	CHECK_STATUS(p3_tokenize(tok, "<0x41>", 6, 0, &t, &err), P3_OK);
	for (size_t i = 0; i < t.n; i++)
		CHECK(t.ids[i] != 18);
	CHECK_STATUS(p3_detokenize(tok, t.ids, t.n, false, false, &out, &err), P3_OK);
	CHECK(out.len == 6 && memcmp(out.data, "<0x41>", 6) == 0);

	/* a one-character control token is not a piece either: <unk> stands in */
	t.n = 0;
	CHECK_STATUS(p3_tokenize(tok, "y", 1, 0, &t, &err), P3_OK);
	CHECK(t.n == 1 && t.ids[0] == 0);

	p3_tokens_free(&t);
	p3_text_free(&out);
	p3_tokenizer_free(tok);
}

/* ------------------------------------------------------------------------
 * Byte fallback and hostile input
 * ------------------------------------------------------------------------ */

/* A character outside the vocabulary becomes its UTF-8 bytes. */
static void
test_byte_fallback(void)
{
	const char *clef = "\xf0\x9d\x84\x9e";	/* U+1D11E MUSICAL SYMBOL G CLEF */
	P3Tokens	t;
	char		piece[8];

	CHECK_EQ_INT(p3_tokenizer_find(phi3_tok, clef), -1);
	t = tokenize_str(clef, 0);
	CHECK_EQ_INT(t.n, 5);
	if (t.n == 5)
	{
		CHECK_EQ_INT(t.ids[0], must_find("\xe2\x96\x81"));
		for (int i = 0; i < 4; i++)
		{
			CHECK_EQ_INT(t.ids[1 + i], byte_id((unsigned char) clef[i]));
			CHECK_EQ_INT(p3_tokenizer_token_type(phi3_tok, t.ids[1 + i]), P3_TOKEN_BYTE);
			CHECK_EQ_INT(p3_token_to_piece(phi3_tok, t.ids[1 + i], false, piece, sizeof(piece)), 1);
			CHECK_EQ_INT((unsigned char) piece[0], (unsigned char) clef[i]);
		}
	}
	p3_tokens_free(&t);
	/* byte tokens are <0x00>..<0xFF> in order after the three specials */
	CHECK_EQ_INT(byte_id(0x0a), 13);
}

/*
 * Tokenize text without flags and check that the tokens spell out exactly
 * what SPM saw: the dummy "▁", then the input with every ' ' as "▁" (the
 * text of each NORMAL token, the byte of each BYTE token).  A space right
 * after a broken lead byte is swallowed into that byte's symbol and comes
 * out as the three bytes of "▁", as in llama.cpp, so the check is on the
 * escaped text rather than on the decoded one.
 */
static void
check_spelling(const unsigned char *text, size_t len, const char *label)
{
	P3Tokens	t = tokenize((const char *) text, len, 0);
	char	   *want = malloc(len * 3 + 4);
	char	   *got = malloc(len * 3 + 4);
	size_t		n_want = 0,
				n_got = 0;
	bool		ids_ok = true;

	memcpy(want, "\xe2\x96\x81", 3);
	n_want = 3;
	for (size_t i = 0; i < len; i++)
	{
		if (text[i] == ' ')
		{
			memcpy(want + n_want, "\xe2\x96\x81", 3);
			n_want += 3;
		}
		else
			want[n_want++] = (char) text[i];
	}
	for (size_t i = 0; i < t.n; i++)
	{
		P3TokenType type = p3_tokenizer_token_type(phi3_tok, t.ids[i]);
		size_t		k;
		const char *s = p3_tokenizer_token_text(phi3_tok, t.ids[i], &k);
		char		b;

		if (s == NULL || (type != P3_TOKEN_NORMAL && type != P3_TOKEN_BYTE))
		{
			ids_ok = false;
			continue;
		}
		if (type == P3_TOKEN_BYTE)
		{
			CHECK_EQ_INT(p3_token_to_piece(phi3_tok, t.ids[i], false, &b, 1), 1);
			s = &b;
			k = 1;
		}
		if (n_got + k > len * 3 + 4)
		{
			ids_ok = false;
			break;
		}
		memcpy(got + n_got, s, k);
		n_got += k;
	}
	CHECK_MSG(ids_ok, "%s: unexpected token", label);
	CHECK_MSG(len == 0 || (n_got == n_want && memcmp(got, want, n_got) == 0),
			  "%s: tokens do not spell the input (%zu bytes vs %zu)", label, n_got, n_want);
	CHECK(len > 0 || t.n == 0);

	/* and whatever the input, the decoded text is valid UTF-8 */
	{
		size_t		out_len;
		char	   *out = detokenize(t.ids, t.n, false, true, &out_len);

		CHECK(valid_utf8((const unsigned char *) out, out_len));
		free(out);
	}
	free(want);
	free(got);
	p3_tokens_free(&t);
}

/* Invalid UTF-8 never crashes, and byte fallback keeps every byte. */
static void
test_invalid_utf8(void)
{
	static const struct
	{
		const char *bytes;
		size_t		len;
	}			cases[] = {
		{"abc\xe2\x82", 5},		/* truncated 3-byte sequence at the end */
		{"\xf0", 1},			/* lone 4-byte lead at the end */
		{"\xf0\x9f\x98", 3},	/* truncated emoji */
		{"\x80\x80" "a", 3},	/* lone continuation bytes */
		{"\xc3" "a b", 4},		/* lead byte followed by ASCII */
		{"\xff\xfe\xc0\x80", 4},	/* never-valid bytes and an overlong NUL */
		{"\xed\xa0\x80", 3},	/* a surrogate */
		{"a\0b", 3},			/* an embedded NUL */
		{"\xe2\x96", 2},		/* half a "▁" */
	};
	uint64_t	rng = 42;
	unsigned char buf[64];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		check_spelling((const unsigned char *) cases[i].bytes, cases[i].len, "invalid case");

	/* random bytes, biased to high bytes and spaces */
	for (int iter = 0; iter < 300; iter++)
	{
		size_t		len = harness_rand(&rng) % sizeof(buf);

		for (size_t i = 0; i < len; i++)
		{
			uint64_t	r = harness_rand(&rng);

			buf[i] = (r & 3) == 0 ? ' ' : (unsigned char) (0x70 + (r >> 8) % 0x90);
		}
		/* "</s>" cannot occur: '<' is not in the range used */
		check_spelling(buf, len, "random bytes");
	}

	/* a NULL text with length 0 is fine, with a length it is an error */
	{
		P3Tokens	t = {0};
		P3Error		err = {0};

		CHECK_STATUS(p3_tokenize(phi3_tok, NULL, 0, 0, &t, &err), P3_OK);
		CHECK_STATUS(p3_tokenize(phi3_tok, NULL, 3, 0, &t, &err), P3_ERR_INVALID_ARG);
		CHECK_EQ_INT(t.n, 0);
		p3_tokens_free(&t);
	}
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

/* Feed ids one at a time; record what each push appended. */
static void
push_all(P3Detokenizer *d, const int32_t *ids, size_t n, P3Text *out, size_t *appended)
{
	P3Error		err = {0};

	for (size_t i = 0; i < n; i++)
	{
		size_t		before = out->len;

		CHECK_STATUS(p3_detok_push(d, ids[i], out, &err), P3_OK);
		appended[i] = out->len - before;
	}
}

/* Pieces of single tokens, and the snprintf-like contract of p3_token_to_piece. */
static void
test_token_to_piece(void)
{
	char		buf[32];
	size_t		n;

	n = p3_token_to_piece(phi3_tok, 15043, false, buf, sizeof(buf));	/* ▁Hello */
	CHECK(n == 6 && memcmp(buf, " Hello", 6) == 0);
	memset(buf, '#', sizeof(buf));
	CHECK_EQ_INT(p3_token_to_piece(phi3_tok, 15043, false, buf, 3), 6);
	CHECK(memcmp(buf, " He#", 4) == 0);
	CHECK_EQ_INT(p3_token_to_piece(phi3_tok, 15043, false, NULL, 0), 6);
	CHECK_EQ_INT(p3_token_to_piece(phi3_tok, 259, false, buf, sizeof(buf)), 2);	/* ▁▁ */
	/* control tokens only when asked */
	CHECK_EQ_INT(p3_token_to_piece(phi3_tok, 32007, false, buf, sizeof(buf)), 0);
	n = p3_token_to_piece(phi3_tok, 32007, true, buf, sizeof(buf));
	CHECK(n == 7 && memcmp(buf, "<|end|>", 7) == 0);
	CHECK_EQ_INT(p3_token_to_piece(phi3_tok, 1, false, buf, sizeof(buf)), 0);
	CHECK_EQ_INT(p3_token_to_piece(phi3_tok, 32011, false, buf, sizeof(buf)), 0);
	/* USER_DEFINED always */
	n = p3_token_to_piece(phi3_tok, 2, false, buf, sizeof(buf));
	CHECK(n == 4 && memcmp(buf, "</s>", 4) == 0);
	/* out of range */
	CHECK_EQ_INT(p3_token_to_piece(phi3_tok, -1, true, buf, sizeof(buf)), 0);
	CHECK_EQ_INT(p3_token_to_piece(phi3_tok, 1 << 20, true, buf, sizeof(buf)), 0);
	{
		size_t		len = 99;

		CHECK(p3_tokenizer_token_text(phi3_tok, 32064, &len) == NULL && len == 0);
		CHECK(strcmp(p3_tokenizer_token_text(phi3_tok, 13, &len), "<0x0A>") == 0 && len == 6);
	}
}

/* The streaming decoder emits whole characters only and repairs bad bytes. */
static void
test_detok_streaming(void)
{
	P3Detokenizer d;
	P3Text		out = {0};
	P3Error		err = {0};
	size_t		app[8];

	/* a 4-byte emoji as four byte tokens appears only when complete */
	{
		const int32_t ids[] = {byte_id(0xf0), byte_id(0x9f), byte_id(0x98), byte_id(0x80)};

		p3_detok_init(&d, phi3_tok, false, false);
		push_all(&d, ids, 4, &out, app);
		CHECK(app[0] == 0 && app[1] == 0 && app[2] == 0 && app[3] == 4);
		CHECK(out.len == 4 && memcmp(out.data, "\xf0\x9f\x98\x80", 4) == 0);
		CHECK_STATUS(p3_detok_flush(&d, &out, &err), P3_OK);
		CHECK_EQ_INT(out.len, 4);
		CHECK_EQ_INT(out.data[out.len], '\0');
	}

	/* invalid sequences become U+FFFD; each case: bytes in, text out */
	{
		static const struct
		{
			const char *in;
			const char *want;
		}			cases[] = {
			{"\x80", "\xef\xbf\xbd"},	/* lone continuation */
			{"\xc3" "A", "\xef\xbf\xbd" "A"},	/* lead then ASCII */
			{"\xc0\x80", "\xef\xbf\xbd\xef\xbf\xbd"},	/* overlong NUL */
			{"\xe0\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},	/* overlong 3-byte */
			{"\xed\xa0\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},	/* surrogate D800 */
			{"\xf4\x90\x80\x80", "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"},	/* > U+10FFFF */
			{"\xf5", "\xef\xbf\xbd"},
			{"\xe2\x82" "\xe2\x82\xac", "\xef\xbf\xbd\xe2\x82\xac"},	/* broken, then a euro sign */
			{"\xf0\x9f" "x", "\xef\xbf\xbd" "x"},
			{"\xc3\xa9", "\xc3\xa9"},	/* valid é */
		};

		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		{
			int32_t		ids[8];
			size_t		n = strlen(cases[i].in);

			for (size_t k = 0; k < n; k++)
				ids[k] = byte_id((unsigned char) cases[i].in[k]);
			out.len = 0;
			p3_detok_init(&d, phi3_tok, false, false);
			push_all(&d, ids, n, &out, app);
			CHECK_STATUS(p3_detok_flush(&d, &out, &err), P3_OK);
			CHECK_MSG(out.len == strlen(cases[i].want) && memcmp(out.data, cases[i].want, out.len) == 0,
					  "decode case %zu", i);
			CHECK(valid_utf8((const unsigned char *) out.data, out.len));
		}
	}

	/* held bytes at the end become one U+FFFD on flush */
	{
		const int32_t ids[] = {byte_id('a'), byte_id(0xf0), byte_id(0x9f)};

		out.len = 0;
		p3_detok_init(&d, phi3_tok, false, false);
		push_all(&d, ids, 3, &out, app);
		CHECK(out.len == 1 && out.data[0] == 'a');
		CHECK_STATUS(p3_detok_flush(&d, &out, &err), P3_OK);
		CHECK(out.len == 4 && memcmp(out.data, "a\xef\xbf\xbd", 4) == 0);
	}

	/* strip_leading_space: once, at the first emitted text, even after BOS */
	{
		const int32_t ids[] = {1, 15043, 2787};	/* <s> ▁Hello ▁World */

		out.len = 0;
		p3_detok_init(&d, phi3_tok, false, true);
		push_all(&d, ids, 3, &out, app);
		CHECK(app[0] == 0 && app[1] == 5 && app[2] == 6);
		CHECK(out.len == 11 && memcmp(out.data, "Hello World", 11) == 0);

		out.len = 0;
		p3_detok_init(&d, phi3_tok, true, true);	/* <s> rendered: no space to strip */
		push_all(&d, ids, 3, &out, app);
		CHECK(out.len == 15 && memcmp(out.data, "<s> Hello World", 15) == 0);

		out.len = 0;
		p3_detok_init(&d, phi3_tok, false, false);
		push_all(&d, ids + 1, 2, &out, app);
		CHECK(out.len == 12 && memcmp(out.data, " Hello World", 12) == 0);
	}

	/* an id out of range is an error, not a crash */
	p3_detok_init(&d, phi3_tok, false, false);
	CHECK_STATUS(p3_detok_push(&d, 40000, &out, &err), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_detok_push(&d, -5, &out, &err), P3_ERR_INVALID_ARG);
	p3_text_free(&out);
}

/* Streaming pieces always form valid UTF-8 and add up to the whole decode. */
static void
test_detok_random_ids(void)
{
	uint64_t	rng = 7;
	int32_t		ids[64];
	size_t		app[64];

	for (int iter = 0; iter < 200; iter++)
	{
		size_t		n = 1 + harness_rand(&rng) % 64;
		P3Detokenizer d;
		P3Text		stream = {0};
		P3Error		err = {0};
		char	   *whole;
		size_t		whole_len;

		for (size_t i = 0; i < n; i++)
		{
			uint64_t	r = harness_rand(&rng);

			/* mostly byte tokens, so characters get split and broken */
			ids[i] = (r & 1) ? (int32_t) (3 + (r >> 8) % 256) : (int32_t) ((r >> 8) % 32064);
		}
		p3_detok_init(&d, phi3_tok, false, true);
		for (size_t i = 0; i < n; i++)
		{
			size_t		before = stream.len;

			CHECK_STATUS(p3_detok_push(&d, ids[i], &stream, &err), P3_OK);
			app[i] = stream.len - before;
			CHECK(valid_utf8((const unsigned char *) stream.data + before, app[i]));
		}
		CHECK_STATUS(p3_detok_flush(&d, &stream, &err), P3_OK);
		whole = detokenize(ids, n, false, true, &whole_len);
		CHECK(whole_len == stream.len && memcmp(whole, stream.data, whole_len) == 0);
		CHECK(valid_utf8((const unsigned char *) whole, whole_len));
		free(whole);
		p3_text_free(&stream);
	}
}

/* ------------------------------------------------------------------------
 * Round trips
 * ------------------------------------------------------------------------ */

/* detokenize(tokenize(t), strip_leading_space) == t. */
static bool
round_trips(const char *text, size_t len)
{
	P3Tokens	t = tokenize(text, len, 0);
	size_t		out_len;
	char	   *out = detokenize(t.ids, t.n, false, true, &out_len);
	bool		ok = out_len == len && memcmp(out, text, len) == 0;

	if (!ok)
		fprintf(stderr, "  round trip of \"%.*s\" gave \"%.*s\"\n", (int) len, text, (int) out_len, out);
	free(out);
	p3_tokens_free(&t);
	return ok;
}

/* Round trips of the llama.cpp cases and of random text. */
static void
test_round_trips(void)
{
	static const char sep[] = "\n__ggml_vocab_test__\n";
	static const char *const pool[] = {
		"a", "b", "e", "t", "T", "z", "Q", "0", "7", " ", " ", " ", "  ", "\n", "\n\n", "\t", "\r\n",
		".", ",", "!", "?", "'", "\"", "-", "(", ")", "<", ">", "/", "|", "s", "[", "]", "{", "}",
		"\xc3\xa9", "\xc3\x9f", "\xe4\xb8\xad", "\xe6\x96\x87", "\xf0\x9f\x98\x80", "\xf0\x9f\xa6\x99",
		"\xe2\x80\x8d", "\xd0\x96", "\xe1\x9e\x80", "\xef\xbd\x9e", "\xf0\x9d\x84\x9e",
		"the", "Hello", " world", "ing", "\xe2\x82\xac",
	};
	char		path[4200];
	size_t		inp_len = 0;
	char	   *inp;
	uint64_t	rng = 1234;
	char		buf[512];
	int			n_cases = 0;

	snprintf(path, sizeof(path), "%s.inp", vocab_path);
	inp = read_file(path, &inp_len);
	CHECK(inp != NULL);
	for (const char *cur = inp; inp;)
	{
		const char *end = strstr(cur, sep);

		if (end == NULL)
			break;
		CHECK_MSG(round_trips(cur, (size_t) (end - cur)), "round trip of case %d", n_cases);
		n_cases++;
		cur = end + strlen(sep);
	}
	free(inp);
	CHECK(n_cases >= 40);

	for (int iter = 0; iter < 500; iter++)
	{
		size_t		len = 0;
		int			parts = (int) (harness_rand(&rng) % 40);

		for (int p = 0; p < parts; p++)
		{
			const char *s = pool[harness_rand(&rng) % (sizeof(pool) / sizeof(pool[0]))];
			size_t		k = strlen(s);

			if (len + k >= sizeof(buf))
				break;
			memcpy(buf + len, s, k);
			len += k;
			buf[len] = '\0';
			/* the USER_DEFINED "</s>" is parsed even without flags: keep it out */
			if (strstr(buf, "</s>") != NULL)
				len -= k;
		}
		CHECK(round_trips(buf, len));
	}
}

/* ------------------------------------------------------------------------
 * Speed
 * ------------------------------------------------------------------------ */

/* Fill buf with n bytes of text built from words (deterministic). */
static void
make_text(char *buf, size_t n, uint64_t seed, bool with_spaces)
{
	static const char *const words[] = {
		"the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "PostgreSQL", "database",
		"tokenizer", "\xe4\xb8\xad\xe6\x96\x87", "caf\xc3\xa9", "\xf0\x9f\x98\x80", "1234", "x=y+z;",
		"\n", "\t", "<|end|>", "</", "s>",
	};
	size_t		len = 0;

	while (len < n)
	{
		const char *w = words[harness_rand(&seed) % (sizeof(words) / sizeof(words[0]))];
		size_t		k = strlen(w);

		if (k > n - len)
			k = n - len;
		memcpy(buf + len, w, k);
		len += k;
		if (with_spaces && len < n)
			buf[len++] = ' ';
	}
}

/* Best of three runs of tokenizing text[0..n), in seconds. */
static double
time_tokenize(const char *text, size_t n, unsigned flags, size_t *n_tokens)
{
	double		best = 1e9;

	for (int r = 0; r < 3; r++)
	{
		P3Tokens	t = {0};
		P3Error		err = {0};
		double		t0 = now_seconds();

		CHECK_STATUS(p3_tokenize(phi3_tok, text, n, flags, &t, &err), P3_OK);
		t0 = now_seconds() - t0;
		if (t0 < best)
			best = t0;
		*n_tokens = t.n;
		p3_tokens_free(&t);
	}
	return best;
}

/*
 * Long documents tokenize (the times are printed for information only:
 * speed is measured by `make bench`, never asserted by a timed test).
 */
static void
test_long_text_speed(void)
{
	const size_t big = 100 * 1024;
	char	   *buf = malloc(big);
	size_t		n_tokens = 0;

	for (int variant = 0; variant < 3; variant++)
	{
		double		t_small,
					t_big;

		if (variant == 0)
			make_text(buf, big, 99, true);
		else if (variant == 1)
			make_text(buf, big, 98, false);	/* no spaces: one long run of merges */
		else
			memset(buf, 'a', big);	/* a single repeated letter */

		t_small = time_tokenize(buf, big / 4, P3_TOKENIZE_SPECIAL, &n_tokens);
		t_big = time_tokenize(buf, big, P3_TOKENIZE_SPECIAL, &n_tokens);
		fprintf(stderr, "  variant %d: 25 KB %.4f s, 100 KB %.4f s, %zu tokens\n",
				variant, t_small, t_big, n_tokens);
		CHECK(n_tokens > 0);
	}
	free(buf);
}

/*
 * p3_tokenize_bounded: the same tokens as p3_tokenize whenever they fit the
 * bound; one token more than the bound is P3_ERR_CONTEXT_FULL with the list
 * unchanged; a text far too long is refused without being encoded.
 */
static void
test_tokenize_bounded(void)
{
	const size_t n_text = 3000;
	char	   *buf = malloc(n_text);
	const unsigned flag_sets[] = {0, P3_TOKENIZE_ADD_BOS, P3_TOKENIZE_SPECIAL,
	P3_TOKENIZE_ADD_BOS | P3_TOKENIZE_SPECIAL};
	const char *const specials = "<|user|>Hi</s>  there<|end|>\n<s>x";
	uint64_t	seed = 41;

	for (int round = 0; round < 24; round++)
	{
		size_t		len = 1 + (size_t) (harness_rand(&seed) % n_text);
		unsigned	flags = flag_sets[round % 4];
		P3Tokens	want = {0};
		P3Error		err = {0};

		make_text(buf, len, (uint64_t) round, round % 3 != 0);
		if (round % 5 == 0)
			memcpy(buf + len / 2, specials, len - len / 2 < strlen(specials) ? len - len / 2 : strlen(specials));
		CHECK_STATUS(p3_tokenize(phi3_tok, buf, len, flags, &want, &err), P3_OK);
		for (size_t slack = 0; slack < 2; slack++)
		{
			P3Tokens	got = {0};

			CHECK_STATUS(p3_tokens_push(&got, 7, &err), P3_OK);	/* a list that already holds one id */
			CHECK_STATUS(p3_tokenize_bounded(phi3_tok, buf, len, flags, want.n + slack, &got, &err), P3_OK);
			CHECK(got.n == want.n + 1 && got.ids[0] == 7 &&
				  memcmp(got.ids + 1, want.ids, want.n * sizeof(int32_t)) == 0);
			p3_tokens_free(&got);
		}
		{
			P3Tokens	got = {0};

			CHECK_STATUS(p3_tokens_push(&got, 7, &err), P3_OK);
			CHECK_STATUS(p3_tokenize_bounded(phi3_tok, buf, len, flags, want.n - 1, &got, &err),
						 P3_ERR_CONTEXT_FULL);
			CHECK(got.n == 1 && got.ids[0] == 7);
			CHECK_MSG(strstr(err.message, "more than") != NULL, "message: %s", err.message);
			p3_tokens_free(&got);
		}
		p3_tokens_free(&want);
	}
	free(buf);

	/*
	 * 4 MB of one letter (about a million tokens, and some 130 MB of
	 * scratch for p3_tokenize): refused at once with a bound of 1000
	 */
	{
		const size_t big = 4 << 20;
		char	   *text = malloc(big);
		P3Tokens	got = {0};
		P3Error		err = {0};

		memset(text, 'a', big);
		CHECK_STATUS(p3_tokenize_bounded(phi3_tok, text, big, 0, 1000, &got, &err), P3_ERR_CONTEXT_FULL);
		CHECK(got.n == 0);
		free(text);
	}

	/* many special tokens: the fragment list stops growing at the bound */
	{
		const char *texts[] = {"<unk>", "<s>", "</s>", "a", "<x>"};
		int32_t		types[] = {P3_TOKEN_UNKNOWN, P3_TOKEN_CONTROL, P3_TOKEN_CONTROL, P3_TOKEN_NORMAL,
		P3_TOKEN_USER_DEFINED};
		P3TokenizerVocab v = {0};
		P3Tokenizer *tok = NULL;
		P3Error		err = {0};
		const size_t reps = 100000;
		char	   *text = malloc(3 * reps);
		P3Tokens	got = {0};

		v.n_tokens = 5;
		v.texts = texts;
		v.types = types;
		v.bos_id = 1;
		v.eos_id = 2;
		v.unk_id = 0;
		CHECK_STATUS(p3_tokenizer_from_vocab(&v, &tok, &err), P3_OK);
		for (size_t i = 0; i < reps; i++)
			memcpy(text + 3 * i, "<x>", 3);
		if (tok != NULL)
		{
			CHECK_STATUS(p3_tokenize_bounded(tok, text, 3 * reps, 0, 10, &got, &err), P3_ERR_CONTEXT_FULL);
			CHECK(got.n == 0);
			CHECK_STATUS(p3_tokenize_bounded(tok, text, 3 * 10, 0, 10, &got, &err), P3_OK);
			CHECK_EQ_INT(got.n, 10);
			p3_tokens_free(&got);
			/* BOS alone does not fit a bound of 0 */
			CHECK_STATUS(p3_tokenize_bounded(tok, "", 0, P3_TOKENIZE_ADD_BOS, 0, &got, &err), P3_ERR_CONTEXT_FULL);
			CHECK_STATUS(p3_tokenize_bounded(tok, "", 0, P3_TOKENIZE_ADD_BOS, 1, &got, &err), P3_OK);
			CHECK_EQ_INT(got.n, 1);
			p3_tokens_free(&got);
		}
		p3_tokenizer_free(tok);
		free(text);
	}
}

/* ------------------------------------------------------------------------
 * GGUF loading
 * ------------------------------------------------------------------------ */

/* The real file: sizes, ids and flags. */
static void
test_gguf_real(void)
{
	CHECK_EQ_INT(p3_tokenizer_n_vocab(phi3_tok), 32064);
	CHECK_EQ_INT(p3_tokenizer_bos(phi3_tok), 1);
	CHECK_EQ_INT(p3_tokenizer_eos(phi3_tok), 32000);
	CHECK(p3_tokenizer_add_bos(phi3_tok));
	CHECK_EQ_INT(p3_tokenizer_find(phi3_tok, "<|user|>"), 32010);
	CHECK_EQ_INT(p3_tokenizer_find(phi3_tok, "\xe2\x96\x81Hello"), 15043);
	CHECK_EQ_INT(p3_tokenizer_find(phi3_tok, "no such token"), -1);
	CHECK_EQ_INT(p3_tokenizer_token_type(phi3_tok, 0), P3_TOKEN_CONTROL);
	CHECK_EQ_INT(p3_tokenizer_token_type(phi3_tok, 32011), P3_TOKEN_UNKNOWN);
	CHECK_EQ_INT(p3_tokenizer_token_type(phi3_tok, 100), P3_TOKEN_BYTE);
	CHECK_EQ_INT(p3_tokenizer_token_type(phi3_tok, 1000), P3_TOKEN_NORMAL);
	CHECK_EQ_INT(p3_tokenizer_token_type(phi3_tok, 99999), P3_TOKEN_UNDEFINED);

	/* end of generation */
	CHECK(p3_tokenizer_is_eog(phi3_tok, 32000));
	CHECK(p3_tokenizer_is_eog(phi3_tok, 32007));
	CHECK(p3_tokenizer_is_eog(phi3_tok, 32001));
	CHECK(!p3_tokenizer_is_eog(phi3_tok, 32010));
	CHECK(!p3_tokenizer_is_eog(phi3_tok, 2));
	CHECK(!p3_tokenizer_is_eog(phi3_tok, 1));
	CHECK(!p3_tokenizer_is_eog(phi3_tok, -1));
}

typedef struct SmallVocabOptions
{
	const char *model;			/* NULL: key absent */
	bool		with_tokens;
	int			n_scores;		/* -1: key absent */
	int			n_types;		/* -1: key absent */
	int64_t		bos;			/* -2: key absent */
	int			add_bos;		/* -1: key absent */
	bool		end_user_defined;	/* store <|end|> as USER_DEFINED */
} SmallVocabOptions;

#define SMALL_N 265

/* Write a small llama-style vocabulary GGUF to memory. */
static uint8_t *
small_vocab_gguf(const SmallVocabOptions *o, size_t *size)
{
	const char *texts[SMALL_N];
	char		names[256][8];
	float		scores[SMALL_N];
	int32_t		types[SMALL_N];
	P3GGUFWriter *w = NULL;
	P3Error		err = {0};
	uint8_t    *buf = NULL;
	int			n = 0;

	texts[n] = "<unk>", types[n++] = P3_TOKEN_UNKNOWN;
	texts[n] = "<s>", types[n++] = P3_TOKEN_CONTROL;
	texts[n] = "</s>", types[n++] = P3_TOKEN_CONTROL;
	for (int b = 0; b < 256; b++)
	{
		snprintf(names[b], sizeof(names[b]), "<0x%02X>", b);
		texts[n] = names[b], types[n++] = P3_TOKEN_BYTE;
	}
	texts[n] = "\xe2\x96\x81", types[n++] = P3_TOKEN_NORMAL;	/* 259 */
	texts[n] = "a", types[n++] = P3_TOKEN_NORMAL;	/* 260 */
	texts[n] = "b", types[n++] = P3_TOKEN_NORMAL;	/* 261 */
	texts[n] = "\xe2\x96\x81" "a", types[n++] = P3_TOKEN_NORMAL;	/* 262 */
	texts[n] = "\xe2\x96\x81" "ab", types[n++] = P3_TOKEN_NORMAL;	/* 263 */
	texts[n] = "<|end|>", types[n++] = o->end_user_defined ? P3_TOKEN_USER_DEFINED : P3_TOKEN_CONTROL;	/* 264 */
	for (int i = 0; i < n; i++)
		scores[i] = i >= 259 ? (float) -i : 0.0f;

	if (p3_gguf_writer_new(&w, &err) != P3_OK)
		return NULL;
	if (o->model)
		p3_gguf_writer_add_string(w, "tokenizer.ggml.model", o->model, &err);
	if (o->with_tokens)
		p3_gguf_writer_add_string_array(w, "tokenizer.ggml.tokens", texts, NULL, (uint64_t) n, &err);
	if (o->n_scores >= 0)
		p3_gguf_writer_add_array(w, "tokenizer.ggml.scores", P3_GGUF_FLOAT32, scores, (uint64_t) o->n_scores, &err);
	if (o->n_types >= 0)
		p3_gguf_writer_add_array(w, "tokenizer.ggml.token_type", P3_GGUF_INT32, types, (uint64_t) o->n_types, &err);
	if (o->bos != -2)
		p3_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t) o->bos, &err);
	p3_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2, &err);
	if (o->add_bos >= 0)
		p3_gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", o->add_bos != 0, &err);
	if (err.status != P3_OK || p3_gguf_writer_to_buffer(w, &buf, size, &err) != P3_OK)
	{
		fprintf(stderr, "  writer: %s\n", err.message);
		buf = NULL;
	}
	p3_gguf_writer_free(w);
	return buf;
}

/* Load the tokenizer from a small generated GGUF; returns the status. */
static P3Status
load_small(const SmallVocabOptions *o, P3Tokenizer **tok, P3Error *err)
{
	size_t		size = 0;
	uint8_t    *buf = small_vocab_gguf(o, &size);
	P3GGUF	   *g = NULL;
	P3Status	st;

	*tok = NULL;
	CHECK(buf != NULL);
	if (buf == NULL)
		return P3_ERR_INTERNAL;
	st = p3_gguf_parse(buf, size, &g, err);
	CHECK_MSG(st == P3_OK, "parse: %s", err->message);
	if (st == P3_OK)
		st = p3_tokenizer_from_gguf(g, tok, err);
	/* the tokenizer must not depend on the file's bytes */
	p3_gguf_close(g);
	memset(buf, 0xab, size);
	free(buf);
	return st;
}

/* Validation of tokenizer.ggml.* and the defaults. */
static void
test_gguf_validation(void)
{
	const SmallVocabOptions good = {"llama", true, SMALL_N, SMALL_N, 1, -1, false};
	SmallVocabOptions o;
	P3Tokenizer *tok = NULL;
	P3Error		err = {0};

	/* a good file; the tokenizer outlives the file's bytes */
	CHECK_STATUS(load_small(&good, &tok, &err), P3_OK);
	if (tok)
	{
		P3Tokens	t = {0};

		CHECK(p3_tokenizer_add_bos(tok));	/* add_bos_token absent: true */
		CHECK_STATUS(p3_tokenize(tok, "ab a\xc3", 5, P3_TOKENIZE_ADD_BOS, &t, &err), P3_OK);
		{
			const int32_t want[] = {1, 263, 262, 3 + 0xc3};

			CHECK(ids_equal("small vocab", t.ids, t.n, want, 4));
		}
		p3_tokens_free(&t);
		p3_tokenizer_free(tok);
	}

	o = good;
	o.model = "gpt2";
	CHECK_STATUS(load_small(&o, &tok, &err), P3_ERR_UNSUPPORTED);
	CHECK(tok == NULL && strstr(err.message, "gpt2") != NULL);
	CHECK_EQ_INT(err.kind, P3_KIND_TOKENIZER_MODEL);

	o = good;
	o.model = NULL;
	CHECK_STATUS(load_small(&o, &tok, &err), P3_ERR_FORMAT);

	o = good;
	o.with_tokens = false;
	CHECK_STATUS(load_small(&o, &tok, &err), P3_ERR_FORMAT);

	o = good;
	o.n_scores = SMALL_N - 1;
	CHECK_STATUS(load_small(&o, &tok, &err), P3_ERR_FORMAT);
	CHECK(strstr(err.message, "tokenizer.ggml.scores") != NULL);

	o = good;
	o.n_types = SMALL_N - 3;
	CHECK_STATUS(load_small(&o, &tok, &err), P3_ERR_FORMAT);
	CHECK(strstr(err.message, "tokenizer.ggml.token_type") != NULL);

	o = good;
	o.bos = SMALL_N;
	CHECK_STATUS(load_small(&o, &tok, &err), P3_ERR_FORMAT);
	CHECK(strstr(err.message, "bos") != NULL);

	/* scores and types absent: 0 and NORMAL */
	o = good;
	o.n_scores = -1;
	o.n_types = -1;
	CHECK_STATUS(load_small(&o, &tok, &err), P3_OK);
	if (tok)
	{
		CHECK_EQ_INT(p3_tokenizer_token_type(tok, 100), P3_TOKEN_NORMAL);
		CHECK_EQ_INT(p3_tokenizer_token_type(tok, 264), P3_TOKEN_CONTROL);	/* <|end|> is a marker */
		p3_tokenizer_free(tok);
	}

	/* add_bos_token = false; bos absent defaults to 1 */
	o = good;
	o.add_bos = 0;
	o.bos = -2;
	CHECK_STATUS(load_small(&o, &tok, &err), P3_OK);
	if (tok)
	{
		CHECK(!p3_tokenizer_add_bos(tok));
		CHECK_EQ_INT(p3_tokenizer_bos(tok), 1);
		p3_tokenizer_free(tok);
	}

	/* <|end|> stored as USER_DEFINED is still CONTROL: plain text cannot inject it */
	o = good;
	o.end_user_defined = true;
	CHECK_STATUS(load_small(&o, &tok, &err), P3_OK);
	if (tok)
	{
		P3Tokens	t = {0};

		CHECK_EQ_INT(p3_tokenizer_token_type(tok, 264), P3_TOKEN_CONTROL);
		CHECK_STATUS(p3_tokenize(tok, "a<|end|>", 8, 0, &t, &err), P3_OK);
		for (size_t i = 0; i < t.n; i++)
			CHECK(t.ids[i] != 264);
		t.n = 0;
		CHECK_STATUS(p3_tokenize(tok, "a<|end|>", 8, P3_TOKENIZE_SPECIAL, &t, &err), P3_OK);
		CHECK(t.n == 2 && t.ids[1] == 264);
		CHECK(p3_tokenizer_is_eog(tok, 264));
		p3_tokens_free(&t);
		p3_tokenizer_free(tok);
	}

	/* not a tokenizer at all */
	CHECK_STATUS(p3_tokenizer_from_gguf(NULL, &tok, &err), P3_ERR_INVALID_ARG);
}

int
main(void)
{
	P3GGUF	   *g = NULL;
	P3Error		err = {0};

	if (!find_vocab())
	{
		fprintf(stderr, "cannot find ggml-vocab-phi-3.gguf; set PHI3_VOCAB or PHI3_DATA_DIR\n");
		return 1;
	}
	if (p3_gguf_open(vocab_path, &g, &err) != P3_OK ||
		p3_tokenizer_from_gguf(g, &phi3_tok, &err) != P3_OK)
	{
		fprintf(stderr, "cannot load %s: %s\n", vocab_path, err.message);
		p3_gguf_close(g);
		return 1;
	}
	p3_gguf_close(g);			/* the tokenizer keeps its own copies */

	RUN(test_gguf_real);
	RUN(test_vocab_cases);
	RUN(test_verified_examples);
	RUN(test_special_tokens);
	RUN(test_special_custom_vocab);
	RUN(test_merges_skip_special_pieces);
	RUN(test_byte_fallback);
	RUN(test_invalid_utf8);
	RUN(test_token_to_piece);
	RUN(test_detok_streaming);
	RUN(test_detok_random_ids);
	RUN(test_round_trips);
	RUN(test_long_text_speed);
	RUN(test_tokenize_bounded);
	RUN(test_gguf_validation);

	p3_tokenizer_free(phi3_tok);
	return harness_finish();
}
