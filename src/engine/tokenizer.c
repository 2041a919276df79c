/*
 * tokenizer.c — Phi-3's SentencePiece-style ("SPM") tokenizer, with
 * llama.cpp's semantics (see phi3/tokenizer.h and the spec, section 5).
 *
 * The tokenizer is built from plain arrays (p3_tokenizer_from_vocab); the
 * GGUF loader at the bottom only reads tokenizer.ggml.* and calls it.  It
 * keeps its own copy of every token text in one pool, an open-addressing
 * hash table from text to id (the merge loop looks up every candidate
 * pair), the special tokens sorted longest first, and the byte-fallback
 * table.  Token types are the file's, except that chat markers "<|...|>"
 * are always CONTROL (older Phi-3 files mark some USER_DEFINED, which
 * would let plain text inject them).
 *
 * Encoding one call of p3_tokenize:
 *   1. partition: for each special token, longest first, split every
 *      remaining raw-text fragment at its occurrences (only USER_DEFINED
 *      tokens unless P3_TOKENIZE_SPECIAL).  Phi-3 rstrip: after every
 *      special token but <unk>, <s> and <|endoftext|>, the whitespace that
 *      follows in the same fragment is dropped.
 *   2. each raw fragment that starts the text or follows a special token
 *      gets one leading space; every ' ' becomes "▁".
 *   3. the fragment is cut into UTF-8 characters (length from the lead
 *      byte, truncated at the end, so invalid input cannot read past it),
 *      and adjacent symbols are merged through a binary heap: highest score
 *      of the merged text first, ties to the leftmost pair; stale entries
 *      are recognised by their recorded size.  Every merge produces a
 *      vocabulary entry, so llama.cpp's rev_merge re-segmentation never
 *      applies; a final symbol that is not a token is a single character
 *      outside the vocabulary and becomes one <0xXX> token per byte.  As
 *      in SentencePiece, merges and that lookup never yield a control,
 *      unknown or byte piece, so plain text cannot become a chat marker
 *      whatever pieces the vocabulary has.
 * The heap keeps a whole fragment O(n log n); a 100 KB text takes
 * milliseconds.
 *
 * Decoding maps "▁" back to ' ' and byte tokens to their byte; the
 * streaming P3Detokenizer validates UTF-8 as it goes (strictly: no
 * overlongs, surrogates or code points past U+10FFFF), holds back an
 * unfinished character and turns every invalid sequence into U+FFFD.
 */
#include "phi3/tokenizer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest text p3_tokenize accepts; keeps every offset within uint32. */
#define P3_TOKENIZE_MAX_TEXT	((size_t) 1 << 30)

/* "▁" (U+2581), SentencePiece's visible space */
#define SPM_SPACE		"\xe2\x96\x81"
#define SPM_SPACE_LEN	3

struct P3Tokenizer
{
	int32_t		n_vocab;
	char	   *pool;			/* every token text, each followed by a NUL */
	size_t	   *offsets;		/* (n_vocab) start of each text in pool */
	uint32_t   *lengths;		/* (n_vocab) byte length of each text */
	float	   *scores;			/* (n_vocab) merge priority, higher first */
	uint8_t    *types;			/* (n_vocab) effective P3TokenType */
	uint8_t    *rstrip;			/* (n_vocab) swallow whitespace after it */
	int16_t    *byte_values;	/* (n_vocab) the byte of a BYTE token, else -1 */
	int32_t    *slots;			/* hash table of ids, -1 = empty */
	uint32_t	slot_mask;		/* table size - 1 (a power of two) */
	uint32_t	max_token_len;	/* longest token text, bytes */
	int32_t    *specials;		/* ids matched before SPM, longest first */
	int32_t		n_specials;
	int32_t		byte_tokens[256];	/* id for each byte (<0xXX>, or unk, or -1) */
	int32_t		eog[4];			/* end-of-generation ids */
	int32_t		n_eog;
	int32_t		bos;
	int32_t		eos;
	int32_t		unk;
	bool		add_bos;
	bool		add_space_prefix;
};

/* ------------------------------------------------------------------------
 * Small helpers
 * ------------------------------------------------------------------------ */

/* C-locale isspace(), without the locale. */
static inline bool
ascii_isspace(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* FNV-1a over a byte string. */
static inline uint32_t
hash_bytes(const char *s, size_t n)
{
	uint32_t	h = 2166136261u;

	for (size_t i = 0; i < n; i++)
	{
		h ^= (unsigned char) s[i];
		h *= 16777619u;
	}
	return h;
}

/* The id whose text is exactly s[0..n), or -1. */
static int32_t
vocab_lookup(const P3Tokenizer *tok, const char *s, size_t n)
{
	uint32_t	i;

	if (n > tok->max_token_len)
		return -1;
	i = hash_bytes(s, n) & tok->slot_mask;
	for (;;)
	{
		int32_t		id = tok->slots[i];

		if (id < 0)
			return -1;
		if (tok->lengths[id] == n && memcmp(tok->pool + tok->offsets[id], s, n) == 0)
			return id;
		i = (i + 1) & tok->slot_mask;
	}
}

/* Is this text a chat marker of the form <|name|>? */
static bool
is_chat_marker(const char *s, size_t n)
{
	return n >= 5 && s[0] == '<' && s[1] == '|' && s[n - 2] == '|' && s[n - 1] == '>';
}

/* Parse "<0xXX>" (either case); -1 if the text is not of that form. */
static int
parse_byte_token(const char *s, size_t n)
{
	int			v = 0;

	if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>')
		return -1;
	for (int i = 3; i < 5; i++)
	{
		char		c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else
			return -1;
	}
	return v;
}

/* Grow *buf (element size elem) to hold at least need elements. */
static bool
grow_array(void **buf, size_t *cap, size_t need, size_t elem)
{
	size_t		ncap;
	void	   *p;

	if (need <= *cap)
		return true;
	ncap = *cap ? *cap : 16;
	while (ncap < need)
	{
		if (ncap > SIZE_MAX / 2)
			return false;
		ncap *= 2;
	}
	if (ncap > SIZE_MAX / elem)
		return false;
	p = realloc(*buf, ncap * elem);
	if (p == NULL)
		return false;
	*buf = p;
	*cap = ncap;
	return true;
}

/* ------------------------------------------------------------------------
 * Token and text lists
 * ------------------------------------------------------------------------ */

/* Append one id to a token list. */
P3Status
p3_tokens_push(P3Tokens *list, int32_t id, P3Error *err)
{
	if (list == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "token list is NULL");
	if (!grow_array((void **) &list->ids, &list->cap, list->n + 1, sizeof(int32_t)))
		return p3_error(err, P3_ERR_NOMEM, "out of memory growing a token list to %zu tokens",
						list->n + 1);
	list->ids[list->n++] = id;
	return P3_OK;
}

/* Release a token list's storage and empty it. */
void
p3_tokens_free(P3Tokens *list)
{
	if (list == NULL)
		return;
	free(list->ids);
	list->ids = NULL;
	list->n = 0;
	list->cap = 0;
}

/* Make room for extra more bytes plus the NUL. */
static P3Status
text_reserve(P3Text *text, size_t extra, P3Error *err)
{
	if (extra > SIZE_MAX - text->len - 1 ||
		!grow_array((void **) &text->data, &text->cap, text->len + extra + 1, 1))
		return p3_error(err, P3_ERR_NOMEM, "out of memory growing a text buffer to %zu bytes",
						text->len + extra);
	return P3_OK;
}

/* Append bytes to a text buffer; it stays NUL-terminated (and allocated). */
P3Status
p3_text_append(P3Text *text, const char *bytes, size_t len, P3Error *err)
{
	P3Status	st;

	if (text == NULL || (bytes == NULL && len > 0))
		return p3_error(err, P3_ERR_INVALID_ARG, "text buffer or bytes are NULL");
	st = text_reserve(text, len, err);
	if (st != P3_OK)
		return st;
	if (len > 0)
		memcpy(text->data + text->len, bytes, len);
	text->len += len;
	text->data[text->len] = '\0';
	return P3_OK;
}

/* Release a text buffer's storage and empty it. */
void
p3_text_free(P3Text *text)
{
	if (text == NULL)
		return;
	free(text->data);
	text->data = NULL;
	text->len = 0;
	text->cap = 0;
}

/* ------------------------------------------------------------------------
 * Construction
 * ------------------------------------------------------------------------ */

typedef struct SpecialEntry
{
	uint32_t	len;
	int32_t		id;
} SpecialEntry;

/* Longest text first; equal lengths by id, so the order is deterministic. */
static int
special_cmp(const void *a, const void *b)
{
	const SpecialEntry *x = a;
	const SpecialEntry *y = b;

	if (x->len != y->len)
		return x->len > y->len ? -1 : 1;
	return (x->id > y->id) - (x->id < y->id);
}

/* Is this (effective) type matched as a special token before SPM? */
static inline bool
is_special_type(uint8_t type)
{
	return type == P3_TOKEN_CONTROL || type == P3_TOKEN_USER_DEFINED || type == P3_TOKEN_UNKNOWN;
}

/*
 * May SPM produce this token from text?  As in SentencePiece, control,
 * unknown and byte pieces are never the result of a merge or a lookup:
 * otherwise a vocabulary whose pieces chain up to "<|end|>" would let
 * plain text become the marker.  (Byte tokens come from the byte fallback
 * only; <unk> is its last resort.)
 */
static inline bool
spm_piece_ok(const P3Tokenizer *tok, int32_t id)
{
	uint8_t		type = tok->types[id];

	return type != P3_TOKEN_CONTROL && type != P3_TOKEN_UNKNOWN && type != P3_TOKEN_BYTE;
}

/* Has the token exactly this text? */
static bool
token_text_is(const P3Tokenizer *tok, int32_t id, const char *s)
{
	size_t		n = strlen(s);

	return tok->lengths[id] == n && memcmp(tok->pool + tok->offsets[id], s, n) == 0;
}

/* Build the hash table, special list, byte table and EOG set. */
static P3Status
tokenizer_index(P3Tokenizer *tok, P3Error *err)
{
	size_t		nslots = 16;
	SpecialEntry *entries;
	int32_t		n = tok->n_vocab;
	int32_t		nspec = 0;

	while (nslots < (size_t) n * 2)
		nslots *= 2;
	tok->slots = malloc(nslots * sizeof(int32_t));
	if (tok->slots == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory allocating the vocabulary index (%zu slots)",
						nslots);
	memset(tok->slots, 0xff, nslots * sizeof(int32_t));
	tok->slot_mask = (uint32_t) (nslots - 1);

	/* later duplicates win, as in llama.cpp's token_to_id map */
	for (int32_t id = 0; id < n; id++)
	{
		const char *s = tok->pool + tok->offsets[id];
		uint32_t	i = hash_bytes(s, tok->lengths[id]) & tok->slot_mask;

		for (;;)
		{
			int32_t		other = tok->slots[i];

			if (other < 0 ||
				(tok->lengths[other] == tok->lengths[id] &&
				 memcmp(tok->pool + tok->offsets[other], s, tok->lengths[id]) == 0))
			{
				tok->slots[i] = id;
				break;
			}
			i = (i + 1) & tok->slot_mask;
		}
	}

	/* special tokens, longest first, and their rstrip attribute */
	entries = malloc((size_t) n * sizeof(SpecialEntry));
	if (entries == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory sorting special tokens");
	for (int32_t id = 0; id < n; id++)
	{
		if (token_text_is(tok, id, "</s>"))
			tok->rstrip[id] = 1;
		if (!is_special_type(tok->types[id]) || tok->lengths[id] == 0)
			continue;
		tok->rstrip[id] = !(token_text_is(tok, id, "<unk>") ||
							token_text_is(tok, id, "<s>") ||
							token_text_is(tok, id, "<|endoftext|>"));
		entries[nspec].len = tok->lengths[id];
		entries[nspec].id = id;
		nspec++;
	}
	qsort(entries, (size_t) nspec, sizeof(SpecialEntry), special_cmp);
	tok->specials = malloc(((size_t) nspec + 1) * sizeof(int32_t));
	if (tok->specials == NULL)
	{
		free(entries);
		return p3_error(err, P3_ERR_NOMEM, "out of memory listing special tokens");
	}
	for (int32_t i = 0; i < nspec; i++)
		tok->specials[i] = entries[i].id;
	tok->n_specials = nspec;
	free(entries);

	/* byte fallback: <0xXX>, else the one-byte string (neither a control token), else <unk> */
	for (int b = 0; b < 256; b++)
	{
		char		name[8];
		char		one = (char) b;
		int32_t		id;

		snprintf(name, sizeof(name), "<0x%02X>", b);
		id = vocab_lookup(tok, name, 6);
		if (id >= 0 && (tok->types[id] == P3_TOKEN_CONTROL || tok->types[id] == P3_TOKEN_UNKNOWN))
			id = -1;			/* a control "<0xXX>" is not a byte */
		if (id < 0)
			id = vocab_lookup(tok, &one, 1);
		if (id >= 0 && (tok->types[id] == P3_TOKEN_CONTROL || tok->types[id] == P3_TOKEN_UNKNOWN))
			id = -1;
		if (id < 0)
			id = tok->unk;
		tok->byte_tokens[b] = id;
	}

	/* end of generation: eos, <|end|>, <|endoftext|>, <|assistant|> */
	tok->n_eog = 0;
	if (tok->eos >= 0)
		tok->eog[tok->n_eog++] = tok->eos;
	{
		static const char *const eog_texts[] = {"<|end|>", "<|endoftext|>", "<|assistant|>"};

		for (size_t i = 0; i < sizeof(eog_texts) / sizeof(eog_texts[0]); i++)
		{
			int32_t		id = vocab_lookup(tok, eog_texts[i], strlen(eog_texts[i]));

			if (id >= 0 && id != tok->eos)
				tok->eog[tok->n_eog++] = id;
		}
	}
	return P3_OK;
}

/* Build a tokenizer from arrays; see phi3/tokenizer.h. */
P3Status
p3_tokenizer_from_vocab(const P3TokenizerVocab *vocab, P3Tokenizer **out, P3Error *err)
{
	P3Tokenizer *tok;
	size_t		pool_size = 0;
	int32_t		n;
	P3Status	st;

	if (out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "tokenizer output pointer is NULL");
	*out = NULL;
	if (vocab == NULL || vocab->texts == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "vocabulary has no token texts");
	n = vocab->n_tokens;
	if (n <= 0)
		return p3_error(err, P3_ERR_FORMAT, "vocabulary is empty (%d tokens)", (int) n);
	if (n > INT32_MAX / 2)
		return p3_error(err, P3_ERR_FORMAT, "vocabulary has too many tokens (%d)", (int) n);

	/* the ids must name tokens */
	{
		const char *names[3] = {"bos", "eos", "unknown"};
		int32_t		ids[3] = {vocab->bos_id, vocab->eos_id, vocab->unk_id};

		for (int i = 0; i < 3; i++)
			if (ids[i] < -1 || ids[i] >= n)
				return p3_error(err, P3_ERR_FORMAT,
								"%s token id %d is out of range (vocabulary has %d tokens)",
								names[i], (int) ids[i], (int) n);
	}

	for (int32_t id = 0; id < n; id++)
	{
		const char *s = vocab->texts[id];
		size_t		len;

		if (s == NULL && (vocab->lengths == NULL || vocab->lengths[id] > 0))
			return p3_error(err, P3_ERR_INVALID_ARG, "token %d has no text", (int) id);
		len = vocab->lengths ? vocab->lengths[id] : strlen(s);
		if (len > UINT32_MAX || len + 1 > SIZE_MAX - pool_size)
			return p3_error(err, P3_ERR_FORMAT, "token %d text is too long (%zu bytes)", (int) id, len);
		pool_size += len + 1;
	}

	tok = calloc(1, sizeof(P3Tokenizer));
	if (tok == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory allocating a tokenizer");
	tok->n_vocab = n;
	tok->bos = vocab->bos_id;
	tok->eos = vocab->eos_id;
	tok->unk = vocab->unk_id;
	tok->add_bos = vocab->add_bos && vocab->bos_id >= 0;
	tok->add_space_prefix = vocab->add_space_prefix;
	tok->pool = malloc(pool_size);
	tok->offsets = malloc((size_t) n * sizeof(size_t));
	tok->lengths = malloc((size_t) n * sizeof(uint32_t));
	tok->scores = malloc((size_t) n * sizeof(float));
	tok->types = malloc((size_t) n);
	tok->rstrip = calloc((size_t) n, 1);
	tok->byte_values = malloc((size_t) n * sizeof(int16_t));
	if (!tok->pool || !tok->offsets || !tok->lengths || !tok->scores || !tok->types ||
		!tok->rstrip || !tok->byte_values)
	{
		p3_tokenizer_free(tok);
		return p3_error(err, P3_ERR_NOMEM, "out of memory copying a vocabulary of %d tokens (%zu bytes of text)",
						(int) n, pool_size);
	}

	pool_size = 0;
	for (int32_t id = 0; id < n; id++)
	{
		size_t		len = vocab->lengths ? vocab->lengths[id] : strlen(vocab->texts[id]);
		const char *s = tok->pool + pool_size;
		int32_t		type = vocab->types ? vocab->types[id] : P3_TOKEN_NORMAL;
		float		score = vocab->scores ? vocab->scores[id] : 0.0f;

		if (len > 0)
			memcpy(tok->pool + pool_size, vocab->texts[id], len);
		tok->pool[pool_size + len] = '\0';
		tok->offsets[id] = pool_size;
		tok->lengths[id] = (uint32_t) len;
		if (len > tok->max_token_len)
			tok->max_token_len = (uint32_t) len;
		pool_size += len + 1;

		/* a NaN would make the merge order undefined */
		tok->scores[id] = isnan(score) ? -INFINITY : score;

		/* types the format does not define are treated as UNDEFINED */
		if (type < P3_TOKEN_UNDEFINED || type > P3_TOKEN_BYTE)
			type = P3_TOKEN_UNDEFINED;
		if (type != P3_TOKEN_BYTE && is_chat_marker(s, len))
			type = P3_TOKEN_CONTROL;
		tok->types[id] = (uint8_t) type;

		tok->byte_values[id] = -1;
		if (type == P3_TOKEN_BYTE)
		{
			int			b = parse_byte_token(s, len);

			if (b < 0)
			{
				p3_tokenizer_free(tok);
				return p3_error(err, P3_ERR_FORMAT,
								"byte token %d has text \"%.*s\", expected <0xXX>",
								(int) id, (int) (len > 32 ? 32 : len), vocab->texts[id]);
			}
			tok->byte_values[id] = (int16_t) b;
		}
	}

	st = tokenizer_index(tok, err);
	if (st != P3_OK)
	{
		p3_tokenizer_free(tok);
		return st;
	}
	*out = tok;
	return P3_OK;
}

/* Free a tokenizer; NULL is allowed. */
void
p3_tokenizer_free(P3Tokenizer *tok)
{
	if (tok == NULL)
		return;
	free(tok->pool);
	free(tok->offsets);
	free(tok->lengths);
	free(tok->scores);
	free(tok->types);
	free(tok->rstrip);
	free(tok->byte_values);
	free(tok->slots);
	free(tok->specials);
	free(tok);
}

/* ------------------------------------------------------------------------
 * Vocabulary facts
 * ------------------------------------------------------------------------ */

int32_t
p3_tokenizer_n_vocab(const P3Tokenizer *tok)
{
	return tok ? tok->n_vocab : 0;
}

int32_t
p3_tokenizer_bos(const P3Tokenizer *tok)
{
	return tok ? tok->bos : -1;
}

int32_t
p3_tokenizer_eos(const P3Tokenizer *tok)
{
	return tok ? tok->eos : -1;
}

bool
p3_tokenizer_add_bos(const P3Tokenizer *tok)
{
	return tok ? tok->add_bos : false;
}

/* The effective type (chat markers are CONTROL); UNDEFINED if out of range. */
P3TokenType
p3_tokenizer_token_type(const P3Tokenizer *tok, int32_t id)
{
	if (tok == NULL || id < 0 || id >= tok->n_vocab)
		return P3_TOKEN_UNDEFINED;
	return (P3TokenType) tok->types[id];
}

/* The id whose text is exactly text, or -1. */
int32_t
p3_tokenizer_find(const P3Tokenizer *tok, const char *text)
{
	if (tok == NULL || text == NULL)
		return -1;
	return vocab_lookup(tok, text, strlen(text));
}

/* The raw text of a token (NUL-terminated in the pool); NULL if out of range. */
const char *
p3_tokenizer_token_text(const P3Tokenizer *tok, int32_t id, size_t *len)
{
	if (tok == NULL || id < 0 || id >= tok->n_vocab)
	{
		if (len)
			*len = 0;
		return NULL;
	}
	if (len)
		*len = tok->lengths[id];
	return tok->pool + tok->offsets[id];
}

/* eos, <|end|>, <|endoftext|> or <|assistant|>? */
bool
p3_tokenizer_is_eog(const P3Tokenizer *tok, int32_t id)
{
	if (tok == NULL || id < 0)
		return false;
	for (int32_t i = 0; i < tok->n_eog; i++)
		if (tok->eog[i] == id)
			return true;
	return false;
}

/* ------------------------------------------------------------------------
 * Encoding: special-token partition
 * ------------------------------------------------------------------------ */

/* A piece of the input: raw text [start, start+len) when id < 0, else a token. */
typedef struct Fragment
{
	size_t		start;
	size_t		len;
	int32_t		id;
} Fragment;

typedef struct FragmentList
{
	Fragment   *v;
	size_t		n;
	size_t		cap;
} FragmentList;

/* Append a fragment. */
static bool
fragments_push(FragmentList *list, size_t start, size_t len, int32_t id)
{
	if (!grow_array((void **) &list->v, &list->cap, list->n + 1, sizeof(Fragment)))
		return false;
	list->v[list->n].start = start;
	list->v[list->n].len = len;
	list->v[list->n].id = id;
	list->n++;
	return true;
}

/*
 * Split text into raw fragments and special tokens (llama.cpp's
 * tokenizer_st_partition): each candidate, longest first, is searched in
 * every raw fragment left by the previous ones.  The result is in *cur.
 * More than max_specials special tokens is P3_ERR_CONTEXT_FULL (each is
 * one token), so the lists never grow past what the caller can take.
 */
static P3Status
partition_special(const P3Tokenizer *tok, const char *text, size_t len, bool parse_special,
				  size_t max_specials, FragmentList *cur, P3Error *err)
{
	FragmentList next = {0};
	size_t		n_specials;

	if (!fragments_push(cur, 0, len, -1))
		return p3_error(err, P3_ERR_NOMEM, "out of memory splitting text at special tokens");

	for (int32_t k = 0; k < tok->n_specials; k++)
	{
		int32_t		id = tok->specials[k];
		const char *needle = tok->pool + tok->offsets[id];
		size_t		nlen = tok->lengths[id];

		if (!parse_special && tok->types[id] != P3_TOKEN_USER_DEFINED)
			continue;
		if (nlen > len || memmem(text, len, needle, nlen) == NULL)
			continue;

		next.n = 0;
		n_specials = 0;
		for (size_t f = 0; f < cur->n; f++)
		{
			Fragment	frag = cur->v[f];
			size_t		pos = frag.start;
			size_t		end = frag.start + frag.len;

			if (frag.id >= 0)
			{
				if (!fragments_push(&next, frag.start, frag.len, frag.id))
					goto nomem;
				n_specials++;
				continue;
			}
			while (pos < end)
			{
				const char *m = memmem(text + pos, end - pos, needle, nlen);
				size_t		at;

				if (m == NULL)
				{
					if (!fragments_push(&next, pos, end - pos, -1))
						goto nomem;
					break;
				}
				at = (size_t) (m - text);
				if (at > pos && !fragments_push(&next, pos, at - pos, -1))
					goto nomem;
				if (++n_specials > max_specials)
				{
					free(next.v);
					return p3_error(err, P3_ERR_CONTEXT_FULL, "text has more than %zu tokens", max_specials);
				}
				if (!fragments_push(&next, at, nlen, id))
					goto nomem;
				pos = at + nlen;
				if (tok->rstrip[id])
					while (pos < end && ascii_isspace((unsigned char) text[pos]))
						pos++;
			}
		}
		/* swap the lists */
		{
			FragmentList tmp = *cur;

			*cur = next;
			next = tmp;
		}
	}
	free(next.v);
	return P3_OK;

nomem:
	free(next.v);
	return p3_error(err, P3_ERR_NOMEM, "out of memory splitting text at special tokens");
}

/* ------------------------------------------------------------------------
 * Encoding: SentencePiece BPE merges over one raw fragment
 * ------------------------------------------------------------------------ */

/* One symbol: a run text[start, start+n) of the escaped fragment; n = 0 once merged away. */
typedef struct SpmSymbol
{
	int32_t		prev;
	int32_t		next;
	uint32_t	start;
	uint32_t	n;
} SpmSymbol;

/* A candidate merge of two adjacent symbols. */
typedef struct SpmBigram
{
	float		score;
	int32_t		left;
	int32_t		right;
	uint32_t	size;			/* bytes of the merged text when it was queued */
} SpmBigram;

/* Scratch reused across the fragments of one p3_tokenize call. */
typedef struct SpmWork
{
	char	   *text;
	size_t		text_cap;
	SpmSymbol  *sym;
	size_t		sym_cap;
	SpmBigram  *heap;
	size_t		heap_n;
	size_t		heap_cap;
} SpmWork;

/* Does a pop before b?  Higher score first, then the leftmost. */
static inline bool
bigram_before(const SpmBigram *a, const SpmBigram *b)
{
	return a->score > b->score || (a->score == b->score && a->left < b->left);
}

/* Push a candidate onto the heap. */
static bool
heap_push(SpmWork *w, SpmBigram b)
{
	size_t		i;

	if (!grow_array((void **) &w->heap, &w->heap_cap, w->heap_n + 1, sizeof(SpmBigram)))
		return false;
	i = w->heap_n++;
	while (i > 0)
	{
		size_t		parent = (i - 1) / 2;

		if (!bigram_before(&b, &w->heap[parent]))
			break;
		w->heap[i] = w->heap[parent];
		i = parent;
	}
	w->heap[i] = b;
	return true;
}

/* Remove and return the best candidate (the heap must not be empty). */
static SpmBigram
heap_pop(SpmWork *w)
{
	SpmBigram	top = w->heap[0];
	SpmBigram	last = w->heap[--w->heap_n];
	size_t		n = w->heap_n;
	size_t		i = 0;

	for (;;)
	{
		size_t		c = 2 * i + 1;

		if (c >= n)
			break;
		if (c + 1 < n && bigram_before(&w->heap[c + 1], &w->heap[c]))
			c++;
		if (!bigram_before(&w->heap[c], &last))
			break;
		w->heap[i] = w->heap[c];
		i = c;
	}
	if (n > 0)
		w->heap[i] = last;
	return top;
}

/* Queue the merge of symbols left and right if their text is a token. */
static bool
try_add_bigram(const P3Tokenizer *tok, SpmWork *w, int32_t left, int32_t right)
{
	SpmBigram	b;
	int32_t		id;

	if (left < 0 || right < 0)
		return true;
	b.size = w->sym[left].n + w->sym[right].n;
	id = vocab_lookup(tok, w->text + w->sym[left].start, b.size);
	if (id < 0 || !spm_piece_ok(tok, id))
		return true;
	b.score = tok->scores[id];
	b.left = left;
	b.right = right;
	return heap_push(w, b);
}

/* Emit a final symbol: its token, or one byte token per byte. */
static P3Status
emit_symbol(const P3Tokenizer *tok, const char *s, size_t n, P3Tokens *out, P3Error *err)
{
	int32_t		id = vocab_lookup(tok, s, n);

	if (id >= 0 && spm_piece_ok(tok, id))
		return p3_tokens_push(out, id, err);
	for (size_t i = 0; i < n; i++)
	{
		unsigned char b = (unsigned char) s[i];
		P3Status	st;

		if (tok->byte_tokens[b] < 0)
			return p3_error_kind(err, P3_ERR_UNSUPPORTED, P3_KIND_MISSING_TOKEN,
								 "vocabulary has no token for byte 0x%02X and no unknown token", b);
		st = p3_tokens_push(out, tok->byte_tokens[b], err);
		if (st != P3_OK)
			return st;
	}
	return P3_OK;
}

/* Tokenize one raw fragment (llama.cpp's llm_tokenizer_spm_session). */
static P3Status
spm_encode(const P3Tokenizer *tok, SpmWork *w, const char *src, size_t len, bool space_prefix,
		   P3Tokens *out, P3Error *err)
{
	size_t		n = 0;
	int32_t		nsym = 0;

	/* escape: optional leading space, every ' ' as "▁" */
	if (!grow_array((void **) &w->text, &w->text_cap, (len + 1) * SPM_SPACE_LEN, 1))
		goto nomem;
	if (space_prefix)
	{
		memcpy(w->text, SPM_SPACE, SPM_SPACE_LEN);
		n = SPM_SPACE_LEN;
	}
	for (size_t i = 0; i < len; i++)
	{
		if (src[i] == ' ')
		{
			memcpy(w->text + n, SPM_SPACE, SPM_SPACE_LEN);
			n += SPM_SPACE_LEN;
		}
		else
			w->text[n++] = src[i];
	}
	if (n == 0)
		return P3_OK;

	/* one symbol per UTF-8 character, length from the lead byte */
	if (!grow_array((void **) &w->sym, &w->sym_cap, n, sizeof(SpmSymbol)))
		goto nomem;
	for (size_t offs = 0; offs < n;)
	{
		static const uint8_t lead_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
		size_t		clen = lead_len[(unsigned char) w->text[offs] >> 4];

		if (clen > n - offs)
			clen = n - offs;
		w->sym[nsym].start = (uint32_t) offs;
		w->sym[nsym].n = (uint32_t) clen;
		w->sym[nsym].prev = nsym - 1;
		offs += clen;
		w->sym[nsym].next = offs == n ? -1 : nsym + 1;
		nsym++;
	}

	/* merge the best pair until none is left */
	w->heap_n = 0;
	for (int32_t i = 1; i < nsym; i++)
		if (!try_add_bigram(tok, w, i - 1, i))
			goto nomem;
	while (w->heap_n > 0)
	{
		SpmBigram	b = heap_pop(w);
		SpmSymbol  *l = &w->sym[b.left];
		SpmSymbol  *r = &w->sym[b.right];

		if (l->n == 0 || r->n == 0 || l->n + r->n != b.size)
			continue;			/* stale */
		l->n += r->n;
		r->n = 0;
		l->next = r->next;
		if (r->next >= 0)
			w->sym[r->next].prev = b.left;
		if (!try_add_bigram(tok, w, l->prev, b.left) ||
			!try_add_bigram(tok, w, b.left, l->next))
			goto nomem;
	}

	/* symbol 0 is never merged into a left neighbour, so it heads the list */
	for (int32_t i = 0; i >= 0; i = w->sym[i].next)
	{
		P3Status	st = emit_symbol(tok, w->text + w->sym[i].start, w->sym[i].n, out, err);

		if (st != P3_OK)
			return st;
	}
	return P3_OK;

nomem:
	return p3_error(err, P3_ERR_NOMEM, "out of memory tokenizing a text fragment of %zu bytes", len);
}

/* Tokenize text[0..len); see phi3/tokenizer.h. */
P3Status
p3_tokenize(const P3Tokenizer *tok, const char *text, size_t len, unsigned flags,
			P3Tokens *out, P3Error *err)
{
	return p3_tokenize_bounded(tok, text, len, flags, SIZE_MAX, out, err);
}

/*
 * Tokenize text[0..len), giving up as soon as there are certainly more than
 * max_tokens tokens; see phi3/tokenizer.h.  A raw fragment of n bytes has
 * at least n / longest tokens (each token it yields covers at most the
 * longest token text's bytes of the escaped fragment, a byte token one),
 * so a fragment that cannot fit is refused before it is encoded.
 */
P3Status
p3_tokenize_bounded(const P3Tokenizer *tok, const char *text, size_t len, unsigned flags,
					size_t max_tokens, P3Tokens *out, P3Error *err)
{
	FragmentList frags = {0};
	SpmWork		work = {0};
	size_t		n_before;
	size_t		longest;
	bool		prev_special = true;	/* the start counts as "after a special token" */
	P3Status	st = P3_OK;

	if (tok == NULL || out == NULL || (text == NULL && len > 0))
		return p3_error(err, P3_ERR_INVALID_ARG, "tokenizer, text or token list is NULL");
	if (len > P3_TOKENIZE_MAX_TEXT)
		return p3_error(err, P3_ERR_INVALID_ARG, "text of %zu bytes is too long to tokenize (at most %zu)",
						len, P3_TOKENIZE_MAX_TEXT);
	n_before = out->n;
	longest = tok->max_token_len > 0 ? tok->max_token_len : 1;

	if ((flags & P3_TOKENIZE_ADD_BOS) && tok->bos >= 0)
	{
		if (max_tokens < 1)
			return p3_error(err, P3_ERR_CONTEXT_FULL, "text has more than %zu tokens", max_tokens);
		st = p3_tokens_push(out, tok->bos, err);
		if (st != P3_OK)
			return st;
	}
	if (len == 0)
		return P3_OK;

	st = partition_special(tok, text, len, (flags & P3_TOKENIZE_SPECIAL) != 0, max_tokens, &frags, err);
	for (size_t f = 0; st == P3_OK && f < frags.n; f++)
	{
		size_t		done = out->n - n_before;

		if (frags.v[f].id >= 0)
		{
			st = p3_tokens_push(out, frags.v[f].id, err);
			prev_special = true;
		}
		else if (frags.v[f].len / longest > max_tokens - done)
			st = p3_error(err, P3_ERR_CONTEXT_FULL, "text has more than %zu tokens", max_tokens);
		else
		{
			st = spm_encode(tok, &work, text + frags.v[f].start, frags.v[f].len,
							tok->add_space_prefix && prev_special, out, err);
			prev_special = false;
		}
		if (st == P3_OK && out->n - n_before > max_tokens)
			st = p3_error(err, P3_ERR_CONTEXT_FULL, "text has more than %zu tokens", max_tokens);
	}

	free(frags.v);
	free(work.text);
	free(work.sym);
	free(work.heap);
	if (st != P3_OK)
		out->n = n_before;
	return st;
}

/* ------------------------------------------------------------------------
 * Decoding
 * ------------------------------------------------------------------------ */

/* Copy what fits of src[0..n) to buf at pos; return the new logical length. */
static inline size_t
piece_put(char *buf, size_t cap, size_t pos, const char *src, size_t n)
{
	if (pos < cap)
		memcpy(buf + pos, src, n < cap - pos ? n : cap - pos);
	return pos + n;
}

/* The bytes a token stands for (like snprintf: returns the full length). */
size_t
p3_token_to_piece(const P3Tokenizer *tok, int32_t id, bool special, char *buf, size_t cap)
{
	const char *s;
	size_t		n;
	size_t		pos = 0;

	if (tok == NULL || id < 0 || id >= tok->n_vocab)
		return 0;
	if (buf == NULL)
		cap = 0;
	s = tok->pool + tok->offsets[id];
	n = tok->lengths[id];
	switch ((P3TokenType) tok->types[id])
	{
		case P3_TOKEN_NORMAL:
			for (size_t i = 0; i < n;)
			{
				if (n - i >= SPM_SPACE_LEN && memcmp(s + i, SPM_SPACE, SPM_SPACE_LEN) == 0)
				{
					pos = piece_put(buf, cap, pos, " ", 1);
					i += SPM_SPACE_LEN;
				}
				else
				{
					size_t		j = i + 1;

					/* copy up to the next possible "▁" in one go */
					while (j < n && (unsigned char) s[j] != 0xe2)
						j++;
					pos = piece_put(buf, cap, pos, s + i, j - i);
					i = j;
				}
			}
			return pos;
		case P3_TOKEN_BYTE:
			{
				char		b = (char) tok->byte_values[id];

				return piece_put(buf, cap, 0, &b, 1);
			}
		case P3_TOKEN_USER_DEFINED:
			return piece_put(buf, cap, 0, s, n);
		case P3_TOKEN_CONTROL:
		case P3_TOKEN_UNKNOWN:
		case P3_TOKEN_UNUSED:
		case P3_TOKEN_UNDEFINED:
			return special ? piece_put(buf, cap, 0, s, n) : 0;
	}
	return 0;
}

/* Start a streaming decode. */
void
p3_detok_init(P3Detokenizer *d, const P3Tokenizer *tok, bool special, bool strip_leading_space)
{
	if (d == NULL)
		return;
	memset(d, 0, sizeof(*d));
	d->tok = tok;
	d->special = special;
	d->strip_leading_space = strip_leading_space;
}

/* Length of the UTF-8 sequence a lead byte starts; 0 if it cannot start one. */
static inline int
utf8_sequence_length(unsigned char lead)
{
	if (lead < 0x80)
		return 1;
	if (lead >= 0xc2 && lead <= 0xdf)
		return 2;
	if (lead >= 0xe0 && lead <= 0xef)
		return 3;
	if (lead >= 0xf0 && lead <= 0xf4)
		return 4;
	return 0;					/* continuation, overlong C0/C1, or F5..FF */
}

/* Is b valid at position pos (>= 1) of a sequence starting with lead? */
static inline bool
utf8_continuation_ok(unsigned char lead, int pos, unsigned char b)
{
	if (pos == 1)
	{
		switch (lead)
		{
			case 0xe0:
				return b >= 0xa0 && b <= 0xbf;	/* no overlong */
			case 0xed:
				return b >= 0x80 && b <= 0x9f;	/* no surrogates */
			case 0xf0:
				return b >= 0x90 && b <= 0xbf;	/* no overlong */
			case 0xf4:
				return b >= 0x80 && b <= 0x8f;	/* not past U+10FFFF */
		}
	}
	return b >= 0x80 && b <= 0xbf;
}

/* Write one byte of validated output, dropping the first one if it is the leading space. */
static inline void
detok_emit(P3Detokenizer *d, P3Text *out, unsigned char b)
{
	if (!d->started)
	{
		d->started = true;
		if (d->strip_leading_space && b == ' ')
			return;
	}
	out->data[out->len++] = (char) b;
}

/* Write U+FFFD. */
static inline void
detok_emit_replacement(P3Detokenizer *d, P3Text *out)
{
	detok_emit(d, out, 0xef);
	detok_emit(d, out, 0xbf);
	detok_emit(d, out, 0xbd);
}

/* Feed raw bytes through the UTF-8 validator into out. */
static P3Status
detok_feed(P3Detokenizer *d, const char *bytes, size_t n, P3Text *out, P3Error *err)
{
	P3Status	st;

	/* each input or held byte yields at most 3 output bytes */
	if (n > (SIZE_MAX - 64) / 3)
		return p3_error(err, P3_ERR_NOMEM, "token piece of %zu bytes is too long", n);
	st = text_reserve(out, 3 * (n + (size_t) d->n_pending), err);
	if (st != P3_OK)
		return st;

	for (size_t i = 0; i < n; i++)
	{
		unsigned char b = (unsigned char) bytes[i];

		if (d->n_pending > 0)
		{
			unsigned char lead = d->pending[0];

			if (utf8_continuation_ok(lead, d->n_pending, b))
			{
				d->pending[d->n_pending++] = b;
				if (d->n_pending == utf8_sequence_length(lead))
				{
					for (int k = 0; k < d->n_pending; k++)
						detok_emit(d, out, d->pending[k]);
					d->n_pending = 0;
				}
				continue;
			}
			/* the held sequence is broken: replace it, then read b afresh */
			detok_emit_replacement(d, out);
			d->n_pending = 0;
		}
		switch (utf8_sequence_length(b))
		{
			case 1:
				detok_emit(d, out, b);
				break;
			case 0:
				detok_emit_replacement(d, out);
				break;
			default:
				d->pending[0] = b;
				d->n_pending = 1;
				break;
		}
	}
	out->data[out->len] = '\0';
	return P3_OK;
}

/* Decode one token, appending only complete valid UTF-8 to out. */
P3Status
p3_detok_push(P3Detokenizer *d, int32_t id, P3Text *out, P3Error *err)
{
	char		stack_buf[256];
	char	   *piece = stack_buf;
	size_t		n;
	P3Status	st;

	if (d == NULL || d->tok == NULL || out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "detokenizer or output text is NULL");
	if (id < 0 || id >= d->tok->n_vocab)
		return p3_error(err, P3_ERR_INVALID_ARG, "token id %d is out of range (vocabulary has %d tokens)",
						(int) id, (int) d->tok->n_vocab);
	n = p3_token_to_piece(d->tok, id, d->special, stack_buf, sizeof(stack_buf));
	if (n > sizeof(stack_buf))
	{
		piece = malloc(n);
		if (piece == NULL)
			return p3_error(err, P3_ERR_NOMEM, "out of memory decoding token %d (%zu bytes)", (int) id, n);
		p3_token_to_piece(d->tok, id, d->special, piece, n);
	}
	st = detok_feed(d, piece, n, out, err);
	if (piece != stack_buf)
		free(piece);
	return st;
}

/* Emit the bytes of an unfinished character as U+FFFD. */
P3Status
p3_detok_flush(P3Detokenizer *d, P3Text *out, P3Error *err)
{
	P3Status	st;

	if (d == NULL || out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "detokenizer or output text is NULL");
	st = text_reserve(out, 3, err);
	if (st != P3_OK)
		return st;
	if (d->n_pending > 0)
	{
		detok_emit_replacement(d, out);
		d->n_pending = 0;
	}
	out->data[out->len] = '\0';
	return P3_OK;
}

/* Decode a whole sequence; on error out is left as it was. */
P3Status
p3_detokenize(const P3Tokenizer *tok, const int32_t *ids, size_t n, bool special,
			  bool strip_leading_space, P3Text *out, P3Error *err)
{
	P3Detokenizer d;
	size_t		len_before;
	P3Status	st = P3_OK;

	if (tok == NULL || out == NULL || (ids == NULL && n > 0))
		return p3_error(err, P3_ERR_INVALID_ARG, "tokenizer, token ids or output text is NULL");
	len_before = out->len;
	p3_detok_init(&d, tok, special, strip_leading_space);
	for (size_t i = 0; st == P3_OK && i < n; i++)
		st = p3_detok_push(&d, ids[i], out, err);
	if (st == P3_OK)
		st = p3_detok_flush(&d, out, err);
	if (st != P3_OK && out->data != NULL)
	{
		out->len = len_before;
		out->data[out->len] = '\0';
	}
	return st;
}

/* ------------------------------------------------------------------------
 * Loading from GGUF metadata
 * ------------------------------------------------------------------------ */

/* Read an optional token id key: absent leaves *id alone. */
static P3Status
gguf_token_id(const P3GGUF *gguf, const char *key, int32_t n_vocab, int32_t *id, P3Error *err)
{
	int64_t		v;
	P3Status	st = p3_gguf_get_i64(gguf, key, &v, err);

	if (st == P3_ERR_INVALID_ARG)
		return P3_OK;
	if (st != P3_OK)
		return st;
	if (v < 0 || v >= n_vocab)
		return p3_error(err, P3_ERR_FORMAT, "%s = %lld is out of range (vocabulary has %d tokens)",
						key, (long long) v, (int) n_vocab);
	*id = (int32_t) v;
	return P3_OK;
}

/* Read an optional boolean key with a default. */
static P3Status
gguf_flag(const P3GGUF *gguf, const char *key, bool dflt, bool *out, P3Error *err)
{
	P3Status	st = p3_gguf_get_bool(gguf, key, out, err);

	if (st == P3_ERR_INVALID_ARG)
	{
		*out = dflt;
		return P3_OK;
	}
	return st;
}

/* Find an optional numeric array of exactly n elements; NULL when absent. */
static P3Status
gguf_numeric_array(const P3GGUF *gguf, const char *key, uint64_t n, bool want_float,
				   const P3GGUFValue **out, P3Error *err)
{
	const P3GGUFKV *kv = p3_gguf_find_kv(gguf, key);
	P3GGUFType	et;

	*out = NULL;
	if (kv == NULL)
		return P3_OK;
	if (kv->value.type != P3_GGUF_ARRAY)
		return p3_error(err, P3_ERR_FORMAT, "%s has type %s, expected an array",
						key, p3_gguf_type_name(kv->value.type));
	et = kv->value.v.arr.elem_type;
	if (et == P3_GGUF_STRING || et == P3_GGUF_ARRAY || et == P3_GGUF_BOOL ||
		(!want_float && (et == P3_GGUF_FLOAT32 || et == P3_GGUF_FLOAT64)))
		return p3_error(err, P3_ERR_FORMAT, "%s is an array of %s, expected %s",
						key, p3_gguf_type_name(et), want_float ? "numbers" : "integers");
	if (kv->value.v.arr.count != n)
		return p3_error(err, P3_ERR_FORMAT, "%s has %llu entries but tokenizer.ggml.tokens has %llu",
						key, (unsigned long long) kv->value.v.arr.count, (unsigned long long) n);
	*out = &kv->value;
	return P3_OK;
}

/* Build the tokenizer from a GGUF's tokenizer.ggml.* metadata. */
P3Status
p3_tokenizer_from_gguf(const P3GGUF *gguf, P3Tokenizer **out, P3Error *err)
{
	P3GGUFString model;
	const P3GGUFKV *tokens_kv;
	const P3GGUFValue *scores_arr;
	const P3GGUFValue *types_arr;
	P3TokenizerVocab vocab;
	const char **texts = NULL;
	size_t	   *lengths = NULL;
	float	   *scores = NULL;
	int32_t    *types = NULL;
	uint64_t	n;
	P3Status	st;

	if (out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "tokenizer output pointer is NULL");
	*out = NULL;
	if (gguf == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "gguf is NULL");

	st = p3_gguf_get_string(gguf, "tokenizer.ggml.model", &model, err);
	if (st == P3_ERR_INVALID_ARG)
		return p3_error(err, P3_ERR_FORMAT, "file has no tokenizer (tokenizer.ggml.model is missing)");
	if (st != P3_OK)
		return st;
	if (!p3_gguf_string_eq(model, "llama"))
		return p3_error_kind(err, P3_ERR_UNSUPPORTED, P3_KIND_TOKENIZER_MODEL,
							 "tokenizer model \"%.*s\" is not supported (only \"llama\" is)",
							 (int) (model.len > 64 ? 64 : model.len), model.ptr);

	tokens_kv = p3_gguf_find_kv(gguf, "tokenizer.ggml.tokens");
	if (tokens_kv == NULL)
		return p3_error(err, P3_ERR_FORMAT, "tokenizer.ggml.tokens is missing");
	if (tokens_kv->value.type != P3_GGUF_ARRAY || tokens_kv->value.v.arr.elem_type != P3_GGUF_STRING)
		return p3_error(err, P3_ERR_FORMAT, "tokenizer.ggml.tokens is not an array of strings");
	n = tokens_kv->value.v.arr.count;
	if (n == 0 || n > INT32_MAX / 2)
		return p3_error(err, P3_ERR_FORMAT, "tokenizer.ggml.tokens has %llu entries",
						(unsigned long long) n);

	st = gguf_numeric_array(gguf, "tokenizer.ggml.scores", n, true, &scores_arr, err);
	if (st == P3_OK)
		st = gguf_numeric_array(gguf, "tokenizer.ggml.token_type", n, false, &types_arr, err);
	if (st != P3_OK)
		return st;

	memset(&vocab, 0, sizeof(vocab));
	vocab.n_tokens = (int32_t) n;
	/* llama.cpp's SPM defaults */
	vocab.bos_id = n > 1 ? 1 : -1;
	vocab.eos_id = n > 2 ? 2 : -1;
	vocab.unk_id = 0;
	if ((st = gguf_token_id(gguf, "tokenizer.ggml.bos_token_id", vocab.n_tokens, &vocab.bos_id, err)) != P3_OK ||
		(st = gguf_token_id(gguf, "tokenizer.ggml.eos_token_id", vocab.n_tokens, &vocab.eos_id, err)) != P3_OK ||
		(st = gguf_token_id(gguf, "tokenizer.ggml.unknown_token_id", vocab.n_tokens, &vocab.unk_id, err)) != P3_OK ||
		(st = gguf_flag(gguf, "tokenizer.ggml.add_bos_token", true, &vocab.add_bos, err)) != P3_OK ||
		(st = gguf_flag(gguf, "tokenizer.ggml.add_space_prefix", true, &vocab.add_space_prefix, err)) != P3_OK)
		return st;

	texts = malloc(n * sizeof(char *));
	lengths = malloc(n * sizeof(size_t));
	if (scores_arr)
		scores = malloc(n * sizeof(float));
	if (types_arr)
		types = malloc(n * sizeof(int32_t));
	if (!texts || !lengths || (scores_arr && !scores) || (types_arr && !types))
	{
		st = p3_error(err, P3_ERR_NOMEM, "out of memory reading a vocabulary of %llu tokens",
					  (unsigned long long) n);
		goto done;
	}
	{
		const uint8_t *cursor = tokens_kv->value.v.arr.data;

		for (uint64_t i = 0; i < n; i++)
		{
			P3GGUFString s = p3_gguf_next_string(&cursor);

			texts[i] = s.ptr;
			lengths[i] = (size_t) s.len;
		}
	}
	for (uint64_t i = 0; scores && i < n; i++)
		scores[i] = (float) p3_gguf_array_f64(scores_arr, i);
	for (uint64_t i = 0; types && i < n; i++)
	{
		int64_t		t = p3_gguf_array_i64(types_arr, i);

		types[i] = (t < 0 || t > P3_TOKEN_BYTE) ? P3_TOKEN_UNDEFINED : (int32_t) t;
	}
	vocab.texts = texts;
	vocab.lengths = lengths;
	vocab.scores = scores;
	vocab.types = types;
	st = p3_tokenizer_from_vocab(&vocab, out, err);

done:
	free(texts);
	free(lengths);
	free(scores);
	free(types);
	return st;
}
