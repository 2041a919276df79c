/*
 * chat.c — the Phi-3 chat template (see phi3/generate.h):
 *
 *     [BOS] <|system|>\nSYSTEM<|end|>\n<|user|>\nUSER<|end|>\n ... <|assistant|>\n
 *
 * p3_chat_tokenize builds the token sequence structurally: the markers are
 * inserted as ids and each message's content is tokenized as plain text
 * (flags 0), so content taken from a table can never produce <|end|> or
 * start a new turn.  To give exactly the tokens that tokenizing the
 * rendered text with special parsing would give (for content without
 * special-token text), it reproduces the effects of the markers' rstrip:
 * the "\n" after a marker and the whitespace that starts the content are
 * dropped, the "\n" after <|end|> likewise, and the content, being the
 * first fragment of its own p3_tokenize call, gets the same dummy-space
 * prefix that a fragment following a special token gets.
 *
 * p3_chat_render writes the same template as text, without BOS: tokenizing
 * it with P3_TOKENIZE_SPECIAL (plus P3_TOKENIZE_ADD_BOS when
 * p3_tokenizer_add_bos) gives what p3_chat_tokenize gives, which is how
 * llama.cpp tokenizes a rendered chat prompt.
 */
#include "phi3/generate.h"

#include <stdint.h>
#include <string.h>

/* The marker text of each role. */
static const char *
role_marker(P3Role role)
{
	switch (role)
	{
		case P3_ROLE_SYSTEM:
			return "<|system|>";
		case P3_ROLE_USER:
			return "<|user|>";
		case P3_ROLE_ASSISTANT:
			return "<|assistant|>";
	}
	return NULL;
}

/* Check the arguments shared by both entry points. */
static P3Status
check_messages(const P3ChatMessage *messages, int n_messages, P3Error *err)
{
	if (n_messages < 0 || (messages == NULL && n_messages > 0))
		return p3_error(err, P3_ERR_INVALID_ARG, "invalid chat message list (%d messages)", n_messages);
	for (int i = 0; i < n_messages; i++)
	{
		if (role_marker(messages[i].role) == NULL)
			return p3_error(err, P3_ERR_INVALID_ARG, "chat message %d has invalid role %d",
							i, (int) messages[i].role);
		if (messages[i].content == NULL && messages[i].len > 0)
			return p3_error(err, P3_ERR_INVALID_ARG, "chat message %d has no content but length %zu",
							i, messages[i].len);
	}
	return P3_OK;
}

/* Is the message left out of the prompt?  (Only an empty system message is.) */
static bool
skip_message(const P3ChatMessage *m)
{
	return m->role == P3_ROLE_SYSTEM && m->len == 0;
}

/* The id of a marker the template needs, or an error naming it. */
static P3Status
find_marker(const P3Tokenizer *tok, const char *text, int32_t *id, P3Error *err)
{
	*id = p3_tokenizer_find(tok, text);
	if (*id < 0)
		return p3_error_kind(err, P3_ERR_UNSUPPORTED, P3_KIND_MISSING_TOKEN,
							 "vocabulary has no %s token, needed by the chat template", text);
	return P3_OK;
}

/* C-locale isspace(), the whitespace a marker's rstrip swallows. */
static inline bool
chat_isspace(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* Append the chat-formatted tokens of the messages; see phi3/generate.h. */
P3Status
p3_chat_tokenize(const P3Tokenizer *tok, const P3ChatMessage *messages, int n_messages,
				 bool add_generation_prompt, P3Tokens *out, P3Error *err)
{
	return p3_chat_tokenize_bounded(tok, messages, n_messages, add_generation_prompt, SIZE_MAX,
									out, err);
}

/* Push one marker id, unless that makes more than max tokens since n_before. */
static P3Status
push_marker(P3Tokens *out, int32_t id, size_t n_before, size_t max, P3Error *err)
{
	if (out->n - n_before >= max)
		return p3_error(err, P3_ERR_CONTEXT_FULL, "chat prompt has more than %zu tokens", max);
	return p3_tokens_push(out, id, err);
}

/* As p3_chat_tokenize, within max_tokens; see phi3/generate.h. */
P3Status
p3_chat_tokenize_bounded(const P3Tokenizer *tok, const P3ChatMessage *messages, int n_messages,
						 bool add_generation_prompt, size_t max_tokens, P3Tokens *out, P3Error *err)
{
	int32_t		end_id;
	int32_t		role_ids[3];
	size_t		n_before;
	P3Status	st;

	if (tok == NULL || out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "tokenizer or token list is NULL");
	st = check_messages(messages, n_messages, err);
	if (st != P3_OK)
		return st;
	if ((st = find_marker(tok, "<|end|>", &end_id, err)) != P3_OK ||
		(st = find_marker(tok, "<|system|>", &role_ids[P3_ROLE_SYSTEM], err)) != P3_OK ||
		(st = find_marker(tok, "<|user|>", &role_ids[P3_ROLE_USER], err)) != P3_OK ||
		(st = find_marker(tok, "<|assistant|>", &role_ids[P3_ROLE_ASSISTANT], err)) != P3_OK)
		return st;

	n_before = out->n;
	if (p3_tokenizer_add_bos(tok))
		st = push_marker(out, p3_tokenizer_bos(tok), n_before, max_tokens, err);

	for (int i = 0; st == P3_OK && i < n_messages; i++)
	{
		const P3ChatMessage *m = &messages[i];
		size_t		skip = 0;

		if (skip_message(m))
			continue;
		st = push_marker(out, role_ids[m->role], n_before, max_tokens, err);
		if (st != P3_OK)
			break;
		/* the marker's rstrip eats "\n" and the content's leading whitespace */
		while (skip < m->len && chat_isspace((unsigned char) m->content[skip]))
			skip++;
		if (skip < m->len)
		{
			st = p3_tokenize_bounded(tok, m->content + skip, m->len - skip, 0,
									 max_tokens - (out->n - n_before), out, err);
			if (st == P3_ERR_CONTEXT_FULL)
				st = p3_error(err, P3_ERR_CONTEXT_FULL, "chat prompt has more than %zu tokens", max_tokens);
		}
		if (st == P3_OK)
			st = push_marker(out, end_id, n_before, max_tokens, err);
	}
	if (st == P3_OK && add_generation_prompt)
		st = push_marker(out, role_ids[P3_ROLE_ASSISTANT], n_before, max_tokens, err);

	if (st != P3_OK)
		out->n = n_before;
	return st;
}

/* Render the template as text (no BOS), NUL-terminated in *out. */
P3Status
p3_chat_render(const P3Tokenizer *tok, const P3ChatMessage *messages, int n_messages,
			   bool add_generation_prompt, P3Text *out, P3Error *err)
{
	size_t		len_before;
	P3Status	st;

	if (out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "output text is NULL");
	st = check_messages(messages, n_messages, err);
	if (st != P3_OK)
		return st;

	len_before = out->len;
	st = p3_text_append(out, "", 0, err);	/* allocated and terminated even if empty */
	for (int i = 0; st == P3_OK && i < n_messages; i++)
	{
		const P3ChatMessage *m = &messages[i];
		const char *marker = role_marker(m->role);

		if (skip_message(m))
			continue;
		if ((st = p3_text_append(out, marker, strlen(marker), err)) != P3_OK ||
			(st = p3_text_append(out, "\n", 1, err)) != P3_OK ||
			(st = p3_text_append(out, m->content, m->len, err)) != P3_OK)
			break;
		st = p3_text_append(out, "<|end|>\n", 8, err);
	}
	if (st == P3_OK && add_generation_prompt)
		st = p3_text_append(out, "<|assistant|>\n", 14, err);

	if (st != P3_OK && out->data != NULL)
	{
		out->len = len_before;
		out->data[out->len] = '\0';
	}
	return st;
}
