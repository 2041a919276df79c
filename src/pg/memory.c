/*-------------------------------------------------------------------------
 *
 * memory.c
 *	  Engine-allocated buffers owned by a memory context.
 *
 * The engine allocates token lists and texts with malloc and never
 * longjmps, but the glue may ereport at any point after an engine call
 * (a conversion error, a cancel, an out-of-memory in palloc).  So every
 * P3Tokens / P3Text the glue hands to the engine is created here, inside
 * the current memory context, with a reset callback that frees the
 * engine's storage: when the call's context is reset or deleted, including
 * by error cleanup, nothing malloc'ed is left behind.  Callers may also
 * free early (and should, for big buffers); freeing twice is harmless.
 *
 * The conversions between the server encoding and the engine's UTF-8 are
 * in encoding.c.
 *
 * IDENTIFICATION
 *	  src/pg/memory.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "utils/memutils.h"

typedef struct TokensHolder
{
	MemoryContextCallback callback;
	P3Tokens	tokens;
} TokensHolder;

typedef struct TextHolder
{
	MemoryContextCallback callback;
	P3Text		text;
} TextHolder;

static void TokensReset(void *arg);
static void TextReset(void *arg);

/*
 * Create an empty token list whose storage is freed with the current
 * memory context.
 */
P3Tokens *
Phi3TokensNew(void)
{
	TokensHolder *holder = palloc0(sizeof(TokensHolder));

	holder->callback.func = TokensReset;
	holder->callback.arg = &holder->tokens;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &holder->callback);
	return &holder->tokens;
}

/*
 * Free a token list's storage now; the list stays usable (empty).
 */
void
Phi3TokensFree(P3Tokens *tokens)
{
	p3_tokens_free(tokens);
	memset(tokens, 0, sizeof(P3Tokens));
}

/*
 * Create an empty text buffer whose storage is freed with the current
 * memory context.
 */
P3Text *
Phi3TextNew(void)
{
	TextHolder *holder = palloc0(sizeof(TextHolder));

	holder->callback.func = TextReset;
	holder->callback.arg = &holder->text;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &holder->callback);
	return &holder->text;
}

/*
 * Free a text buffer's storage now; the buffer stays usable (empty).
 */
void
Phi3TextFree(P3Text *text)
{
	p3_text_free(text);
	memset(text, 0, sizeof(P3Text));
}

/* Reset callback of a token list */
static void
TokensReset(void *arg)
{
	Phi3TokensFree((P3Tokens *) arg);
}

/* Reset callback of a text buffer */
static void
TextReset(void *arg)
{
	Phi3TextFree((P3Text *) arg);
}
