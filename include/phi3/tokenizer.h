/*
 * phi3/tokenizer.h — the SentencePiece-style (llama "SPM") tokenizer of
 * Phi-3, built from a GGUF's tokenizer.ggml.* metadata.
 *
 * Encoding (llama.cpp's llm_tokenizer_spm semantics, which match
 * SentencePiece BPE on ordinary text):
 *   1. With P3_TOKENIZE_SPECIAL, control / user-defined special-token text
 *      (<|user|>, <|end|>, ...; and UNKNOWN-type entries such as the
 *      [PAD32011] fillers, as llama.cpp does) is split out first, longest
 *      first; Phi-3's added tokens swallow the whitespace that follows them
 *      (rstrip), except <unk>, <s> and <|endoftext|>.  Without the flag, only
 *      USER_DEFINED tokens are matched (as llama.cpp does, e.g. "</s>" in
 *      this vocabulary).  Chat markers of the form <|...|> are always
 *      treated as CONTROL whatever type the file stores (older Phi-3 files
 *      mark some USER_DEFINED), so text from a table can never inject
 *      <|end|> or <|user|> unless the caller asks for special parsing.
 *   2. Each remaining text fragment that is the first fragment, or follows
 *      a special token, gets one leading space (add_space_prefix); every ' '
 *      becomes U+2581 "▁".
 *   3. Characters are merged pairwise by highest vocabulary score (ties to
 *      the leftmost pair); a character that is not in the vocabulary becomes
 *      its UTF-8 bytes as <0xXX> tokens.
 *   4. BOS is prepended when P3_TOKENIZE_ADD_BOS is given.
 *
 * Decoding turns "▁" back into spaces and byte tokens into bytes.  The
 * streaming P3Detokenizer returns only complete, valid UTF-8: it holds back
 * the bytes of a character that is not finished yet, and replaces invalid
 * sequences with U+FFFD, so no returned piece ever splits a character and
 * every piece is valid text for a UTF-8 database.
 */
#ifndef PHI3_TOKENIZER_H
#define PHI3_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/gguf.h"
#include "phi3/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* GGUF tokenizer.ggml.token_type values */
typedef enum P3TokenType
{
	P3_TOKEN_UNDEFINED = 0,
	P3_TOKEN_NORMAL = 1,
	P3_TOKEN_UNKNOWN = 2,
	P3_TOKEN_CONTROL = 3,
	P3_TOKEN_USER_DEFINED = 4,
	P3_TOKEN_UNUSED = 5,
	P3_TOKEN_BYTE = 6
} P3TokenType;

typedef struct P3Tokenizer P3Tokenizer;

/* A growable list of token ids, owned by the caller. */
typedef struct P3Tokens
{
	int32_t    *ids;
	size_t		n;
	size_t		cap;
} P3Tokens;

/* Append one id (P3_ERR_NOMEM on failure); free the storage. */
P3Status	p3_tokens_push(P3Tokens *list, int32_t id, P3Error *err);
void		p3_tokens_free(P3Tokens *list);

/* tokenize flags */
#define P3_TOKENIZE_ADD_BOS		0x1		/* prepend BOS */
#define P3_TOKENIZE_SPECIAL		0x2		/* recognise control-token text such as <|user|> */

/*
 * Build the tokenizer from tokenizer.ggml.{model,tokens,scores,token_type,
 * bos_token_id,eos_token_id,unknown_token_id,add_bos_token,...}.  Requires
 * tokenizer.ggml.model = "llama".  Validates ids and array lengths; the
 * returned tokenizer holds copies of what it needs, so it does not depend
 * on the GGUF staying mapped.
 */
P3Status	p3_tokenizer_from_gguf(const P3GGUF *gguf, P3Tokenizer **out, P3Error *err);

/*
 * The same from plain arrays (p3_tokenizer_from_gguf is a thin layer over
 * this; tests and tools use it directly).  Everything is copied.  Missing
 * scores default to 0, missing types to NORMAL; an id of -1 means "none"
 * (without a BOS id, BOS is never added).
 */
typedef struct P3TokenizerVocab
{
	int32_t		n_tokens;
	const char *const *texts;	/* n_tokens token texts */
	const size_t *lengths;		/* their byte lengths; NULL: NUL-terminated */
	const float *scores;		/* NULL: all 0 */
	const int32_t *types;		/* P3TokenType values; NULL: all NORMAL */
	int32_t		bos_id;
	int32_t		eos_id;
	int32_t		unk_id;
	bool		add_bos;		/* tokenizer.ggml.add_bos_token */
	bool		add_space_prefix;	/* tokenizer.ggml.add_space_prefix */
} P3TokenizerVocab;

P3Status	p3_tokenizer_from_vocab(const P3TokenizerVocab *vocab, P3Tokenizer **out, P3Error *err);
void		p3_tokenizer_free(P3Tokenizer *tok);

/*
 * Append the tokens of text[0..len) to *out (the list is not cleared).
 * Text need not be NUL-terminated nor valid UTF-8.
 */
P3Status	p3_tokenize(const P3Tokenizer *tok, const char *text, size_t len, unsigned flags,
						P3Tokens *out, P3Error *err);

/*
 * As p3_tokenize, but fails with P3_ERR_CONTEXT_FULL (appending nothing) as
 * soon as the text certainly has more than max_tokens tokens, so that time
 * and memory depend on max_tokens rather than on len: a raw fragment of n
 * bytes has at least n / (longest token text) tokens and is refused before
 * it is encoded.  Whenever the text has at most max_tokens tokens, the
 * result is exactly p3_tokenize's.  (p3_tokenize of a long text takes about
 * 30 bytes of scratch per byte of text; callers that only go on when the
 * tokens fit somewhere, such as a context, should use this.)
 */
P3Status	p3_tokenize_bounded(const P3Tokenizer *tok, const char *text, size_t len, unsigned flags,
								size_t max_tokens, P3Tokens *out, P3Error *err);

/* Vocabulary facts */
int32_t		p3_tokenizer_n_vocab(const P3Tokenizer *tok);
int32_t		p3_tokenizer_bos(const P3Tokenizer *tok);
int32_t		p3_tokenizer_eos(const P3Tokenizer *tok);
bool		p3_tokenizer_add_bos(const P3Tokenizer *tok);	/* tokenizer.ggml.add_bos_token, default true */
P3TokenType p3_tokenizer_token_type(const P3Tokenizer *tok, int32_t id);
/* The id of the token whose text is exactly `text`, or -1. */
int32_t		p3_tokenizer_find(const P3Tokenizer *tok, const char *text);
/* The raw vocabulary text of a token ("▁Hello", "<0x0A>", "<|end|>"); NULL if out of range. */
const char *p3_tokenizer_token_text(const P3Tokenizer *tok, int32_t id, size_t *len);

/*
 * End-of-generation: the file's eos id, <|end|> and <|endoftext|> (and
 * <|assistant|>, which Phi-3's generation config also stops on).
 */
bool		p3_tokenizer_is_eog(const P3Tokenizer *tok, int32_t id);

/*
 * The bytes a token stands for: NORMAL pieces with "▁" → " ", BYTE tokens as
 * their byte, USER_DEFINED as their text; CONTROL / UNKNOWN / UNUSED give
 * nothing unless `special`, in which case their text.  Writes at most cap
 * bytes to buf and returns the full length (like snprintf, no NUL).
 */
size_t		p3_token_to_piece(const P3Tokenizer *tok, int32_t id, bool special, char *buf, size_t cap);

/*
 * Streaming decoder.  Feed tokens one at a time; each call appends to *out
 * only complete, valid UTF-8 (invalid sequences become U+FFFD).  If
 * strip_leading_space, one leading space of the first non-empty text is
 * dropped (SentencePiece's dummy prefix).  p3_detok_flush emits any held
 * bytes (as U+FFFD, since they are an unfinished character).
 */
typedef struct P3Detokenizer
{
	const P3Tokenizer *tok;
	bool		special;		/* render control tokens as text */
	bool		strip_leading_space;
	bool		started;		/* some text has been emitted */
	uint8_t		pending[8];		/* bytes of an unfinished UTF-8 character */
	int			n_pending;
} P3Detokenizer;

/* A growable byte buffer owned by the caller (data is NUL-terminated). */
typedef struct P3Text
{
	char	   *data;
	size_t		len;
	size_t		cap;
} P3Text;

P3Status	p3_text_append(P3Text *text, const char *bytes, size_t len, P3Error *err);
void		p3_text_free(P3Text *text);

void		p3_detok_init(P3Detokenizer *d, const P3Tokenizer *tok, bool special, bool strip_leading_space);
P3Status	p3_detok_push(P3Detokenizer *d, int32_t id, P3Text *out, P3Error *err);
P3Status	p3_detok_flush(P3Detokenizer *d, P3Text *out, P3Error *err);

/* Decode a whole sequence (convenience over P3Detokenizer). */
P3Status	p3_detokenize(const P3Tokenizer *tok, const int32_t *ids, size_t n, bool special,
						  bool strip_leading_space, P3Text *out, P3Error *err);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_TOKENIZER_H */
