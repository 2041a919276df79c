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
 * Generation (p3_generate): the prompt is evaluated (reusing the longest
 * prefix already in the sequence's KV cache, e.g. a system prompt shared by
 * every row of an UPDATE), then tokens are sampled one at a time until
 * max_tokens, an end-of-generation token (<|end|>, <|endoftext|>, the
 * file's eos), the constraint's completion or the caller's callback says
 * stop.  Text is delivered as complete UTF-8.  It runs the step-wise
 * decoder of phi3/decoder.h over one sequence.
 */
#ifndef PHI3_GENERATE_H
#define PHI3_GENERATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/context.h"
#include "phi3/decoder.h"
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

/*
 * One generation in one sequence, as the command-line tool and the
 * bit-exact tests run it: a thin wrapper over the decoder (phi3/decoder.h),
 * which the SQL functions drive step by step themselves.
 */
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
	const P3Constraint *constraint; /* optional constraint on the tokens (phi3/decoder.h) */
} P3GenerateParams;

/* max_tokens 256, default sampling, stop_at_eog, reuse_prefix, strip_leading_space, no callbacks */
P3GenerateParams p3_generate_default_params(void);

/*
 * Generate a continuation of prompt[0..n_prompt) in sequence `seq` of ctx.
 * Generated text (without the final EOG token) is appended to *out, which
 * may be NULL when on_text is used.  Errors: those of p3_eval (including
 * P3_ERR_ABORTED from the context's abort callback, polled between forward
 * chunks and layers), P3_ERR_CONTEXT_FULL when the prompt alone does not
 * fit, and a constraint's own errors.  Runs a decoder of its own over ctx
 * (phi3/decoder.h): no other decoder may be using ctx meanwhile.
 */
P3Status	p3_generate(P3Context *ctx, int32_t seq, const int32_t *prompt, int32_t n_prompt,
						const P3GenerateParams *params, P3Text *out, P3GenerateStats *stats,
						P3Error *err);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_GENERATE_H */
