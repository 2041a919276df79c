/*
 * phi3/generate.h — the Phi-3 chat template and the generation loop,
 * shared by the command-line tool and the PostgreSQL functions.
 *
 * Chat template (Phi-3 July 2024 / Phi-3.5 form, which llama.cpp's built-in
 * "phi3" template also produces):
 *     [BOS] <|system|>\nSYSTEM<|end|>\n<|user|>\nUSER<|end|>\n<|assistant|>\n
 * BOS only when the file's tokenizer.ggml.add_bos_token says so; a system
 * message only when it is non-empty.  The markers are inserted as token ids
 * and each message's content is tokenized as plain text (never parsing
 * special tokens), so text taken from a table cannot inject <|end|> or a
 * new turn.  The result is identical to tokenizing the rendered template
 * text with special parsing, whenever the content holds no marker text:
 * the markers' rstrip swallows the "\n" after them and any whitespace that
 * starts the content, and the content gets SentencePiece's dummy space.
 *
 * Generation: the prompt is evaluated (reusing the longest prefix already
 * in the sequence's KV cache, e.g. a system prompt shared by every row of
 * an UPDATE), then tokens are sampled one at a time until max_tokens, an
 * end-of-generation token (<|end|>, <|endoftext|>, the file's eos) or the
 * caller's callback says stop.  Text is delivered as complete UTF-8.
 */
#ifndef PHI3_GENERATE_H
#define PHI3_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/context.h"
#include "phi3/sampler.h"
#include "phi3/status.h"
#include "phi3/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum P3Role
{
	P3_ROLE_SYSTEM = 0,
	P3_ROLE_USER = 1,
	P3_ROLE_ASSISTANT = 2
} P3Role;

typedef struct P3ChatMessage
{
	P3Role		role;
	const char *content;		/* need not be NUL-terminated */
	size_t		len;
} P3ChatMessage;

/*
 * Append the chat-formatted tokens of the messages to *out; with
 * add_generation_prompt, end with <|assistant|> so the model answers.
 */
P3Status	p3_chat_tokenize(const P3Tokenizer *tok, const P3ChatMessage *messages, int n_messages,
							 bool add_generation_prompt, P3Tokens *out, P3Error *err);

/*
 * As p3_chat_tokenize, but fails with P3_ERR_CONTEXT_FULL (appending
 * nothing) as soon as the prompt certainly has more than max_tokens tokens,
 * with time and memory bounded by max_tokens (see p3_tokenize_bounded).
 */
P3Status	p3_chat_tokenize_bounded(const P3Tokenizer *tok, const P3ChatMessage *messages,
									 int n_messages, bool add_generation_prompt, size_t max_tokens,
									 P3Tokens *out, P3Error *err);

/* The template as text (for display and debugging), NUL-terminated in *out. */
P3Status	p3_chat_render(const P3Tokenizer *tok, const P3ChatMessage *messages, int n_messages,
						   bool add_generation_prompt, P3Text *out, P3Error *err);

typedef enum P3StopReason
{
	P3_STOP_NONE = 0,
	P3_STOP_EOG,				/* the model produced an end-of-generation token */
	P3_STOP_MAX_TOKENS,			/* max_tokens reached */
	P3_STOP_CONTEXT,			/* the context is full */
	P3_STOP_CALLBACK			/* a callback returned false */
} P3StopReason;

/*
 * Fills mask (n_vocab bits, all preset to 1) for the next token; return
 * P3_OK or an error that stops generation.  Used for constrained decoding.
 */
typedef P3Status (*P3MaskFn) (void *user, const int32_t *generated, int32_t n_generated,
							  uint32_t *mask, P3Error *err);

typedef struct P3GenerateParams
{
	int32_t		max_tokens;		/* tokens to generate at most (>= 0) */
	P3SamplerParams sampling;
	bool		stop_at_eog;	/* stop at end-of-generation tokens (default true) */
	bool		context_full_is_error;	/* true: P3_ERR_CONTEXT_FULL; false: stop quietly */
	bool		reuse_prefix;	/* reuse the KV of a common prompt prefix (default true) */
	/* Optional callbacks; user is passed to each. */
	void	   *user;
	/* Each piece of generated text as complete UTF-8; return false to stop. */
	bool		(*on_text) (void *user, const char *text, size_t len);
	/* Drop one leading space of the reply (chat answers); keep it for raw completions. */
	bool		strip_leading_space;
	P3MaskFn	mask_fn;		/* optional constraint on the next token */
} P3GenerateParams;

/* max_tokens 256, default sampling, stop_at_eog, reuse_prefix, strip_leading_space, no callbacks */
P3GenerateParams p3_generate_default_params(void);

typedef struct P3GenerateStats
{
	int32_t		n_prompt;		/* prompt tokens */
	int32_t		n_prompt_reused;	/* of which taken from the KV cache */
	int32_t		n_generated;	/* tokens sampled (including a final EOG) */
	double		prompt_ms;		/* time evaluating the prompt */
	double		generate_ms;	/* time sampling and evaluating generated tokens */
	P3StopReason stop;
} P3GenerateStats;

/*
 * Generate a continuation of prompt[0..n_prompt) in sequence `seq` of ctx.
 * Generated text (without the final EOG token) is appended to *out, which
 * may be NULL when on_text is used.  Errors: those of p3_eval (including
 * P3_ERR_ABORTED from the context's abort callback, polled between tokens
 * too), P3_ERR_CONTEXT_FULL when the prompt alone does not fit.
 */
P3Status	p3_generate(P3Context *ctx, int32_t seq, const int32_t *prompt, int32_t n_prompt,
						const P3GenerateParams *params, P3Text *out, P3GenerateStats *stats,
						P3Error *err);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_GENERATE_H */
