/*
 * phi3/schema.h — JSON Schema compiled to a byte automaton, token masks
 * over the vocabulary, and the decoder constraint built on them.
 *
 * p3_schema_compile parses a JSON Schema document (its own small JSON
 * parser; the text must be valid UTF-8) and compiles it into an automaton
 * that accepts exactly the COMPACT JSON documents valid for the schema: no
 * whitespace outside strings, object keys in the order of the schema's
 * "properties" (optional ones may be left out), no keys that are not in
 * "properties".  Every state the automaton can reach has a completion, so
 * a token mask is never empty before the document is complete.
 *
 * Supported (anything else is P3_ERR_INVALID_ARG naming the keyword and
 * its JSON path, e.g. `unsupported keyword "patternProperties" at
 * $.properties.items`):
 *   type             object, array, string, number, integer, boolean, null,
 *                    or a list of them (["string","null"])
 *   properties       emitted in this order; "type" may be left out when
 *                    properties / required (object) or items (array) say it
 *   required         the others are optional
 *   additionalProperties  only false (the default: extraction never invents keys)
 *   items            required for arrays (one schema for every item)
 *   minItems, maxItems
 *   enum, const      enum of scalars, const of any value, each at most 4096
 *                    bytes as compact JSON; strings in them are emitted with
 *                    the minimal escaping (only ", \ and control characters);
 *                    beside a "type", every value must have one of its types
 *   anyOf, oneOf     oneOf is treated as anyOf: overlap between the
 *                    alternatives is not checked
 *   $ref             "#/$defs/NAME" or "#/definitions/NAME" (root $defs);
 *                    a cycle of references is an error
 *   minLength, maxLength   in characters (an escape counts as one)
 *   minimum, maximum for integers only (integer values must fit int64)
 *   format           date, time, date-time, uuid (RFC 3339: time needs an
 *                    offset, Z or +hh:mm; day-of-month is 01..31 whatever the
 *                    month)
 *   pattern          at most 1024 bytes, always anchored (^ and $ optional):
 *                    literals, ., classes ([a-z], [^...], \d \w \s; ASCII
 *                    only inside classes), groups, alternation, ? * + {m}
 *                    {m,} {m,n}; no lookaround, backreferences or \b; at
 *                    most 4096 DFA states and a bounded compile effort
 *   description, title, $comment, $schema, $id, examples, default
 *                    annotations, ignored by the automaton
 * Strings under format / pattern are emitted without escapes (characters
 * that need one cannot match), and cannot also carry min/maxLength.
 * Numbers: the JSON grammar, at most 24 digits before and after the point
 * and 3 in the exponent (a model cannot loop on digits forever).  Integers
 * are written plainly: no fraction, exponent or "-0" (1.0 is not taken as
 * an integer), at most 19 digits, within int64 and the bounds; digits that
 * could not lead to a value within the bounds are refused as they come.
 * enum / const values match by their compact text (1.0 matches "1.0" only).
 *
 * Sizes are bounded (P3SchemaLimits): the states of the automaton (schema
 * nodes, key and literal bytes, pattern DFA states), the nesting depth of
 * documents, and the number of parses followed at once (anyOf alternatives
 * and optional keys that share a prefix); over a limit the error names the
 * figure.  max_threads is checked when compiling where it can be (the
 * alternatives of one anyOf / type list, a run of optional properties,
 * which are followed at once after the `"` of the next key); nested
 * alternatives multiply at run time, where going over it is an error of
 * accept_bytes (and such a token is left out of the mask).
 *
 * Token masks: a P3VocabTrie holds the vocabulary's token bytes as a byte
 * trie (built once per tokenizer by its owner, e.g. the model cache, and
 * shared by every matcher); p3_schema_matcher_mask walks it depth-first
 * against the matcher, pruning dead subtrees, and caches the masks of the
 * states it has seen in the schema (shared by the matchers of a schema;
 * at most 256 masks, about 1 MB for 32k tokens, dropped when full).
 *
 * None of this is thread-safe: a schema, its matchers and a trie used by a
 * matcher belong to one thread at a time (the mask cache lives in the
 * schema).  A trie is read-only and may be shared.
 */
#ifndef PHI3_SCHEMA_H
#define PHI3_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/decoder.h"
#include "phi3/status.h"
#include "phi3/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

#define P3_SCHEMA_DEFAULT_MAX_STATES	65536
#define P3_SCHEMA_DEFAULT_MAX_DEPTH		32
#define P3_SCHEMA_MAX_MAX_DEPTH			64		/* max_depth may not exceed this */
#define P3_SCHEMA_DEFAULT_MAX_THREADS	256

typedef struct P3SchemaLimits
{
	int32_t		max_states;		/* automaton size: nodes + key/literal bytes + DFA states */
	int32_t		max_depth;		/* nesting of objects / arrays in a document (<= 64) */
	int32_t		max_threads;	/* parses followed at once while matching */
} P3SchemaLimits;

/* max_states 65536, max_depth 32, max_threads 256 */
P3SchemaLimits p3_schema_default_limits(void);

typedef struct P3Schema P3Schema;

/*
 * Compile json[0..len) (need not be NUL-terminated).  limits may be NULL
 * (the defaults).  Errors: P3_ERR_INVALID_ARG (invalid UTF-8, malformed
 * JSON, an unsupported or invalid keyword, a limit exceeded; the message
 * says where), P3_ERR_NOMEM.
 */
P3Status	p3_schema_compile(const char *json, size_t len, const P3SchemaLimits *limits,
							  P3Schema **out, P3Error *err);
void		p3_schema_free(P3Schema *schema);

typedef struct P3SchemaStats
{
	int32_t		n_nodes;		/* schema nodes */
	int32_t		n_states;		/* what counts against max_states */
	int32_t		depth;			/* deepest document nesting */
	double		compile_ms;		/* wall time of p3_schema_compile */
	int64_t		mask_calls;		/* p3_schema_matcher_mask calls on this schema */
	int64_t		mask_cache_hits;
} P3SchemaStats;

void		p3_schema_stats(const P3Schema *schema, P3SchemaStats *stats);

/*
 * The schema as a compact text for a prompt: field names, types,
 * descriptions, enum values, e.g.
 *   {"customer": string (who pays), "amount": number, "status": "open" | "closed", "tags"?: [string]}
 * ("?" after a key: optional).  Appends to *out.
 */
P3Status	p3_schema_describe(const P3Schema *schema, P3Text *out, P3Error *err);

/* ---- the vocabulary as a byte trie ---- */

typedef struct P3VocabTrie P3VocabTrie;

/*
 * Build the trie of tok's token bytes (p3_token_to_piece, special=false;
 * tokens without bytes are left out).  It copies what it needs: tok may be
 * freed first.  A few MB; about 15 ms for Phi-3's 32,064 tokens.
 */
P3Status	p3_vocab_trie_new(const P3Tokenizer *tok, P3VocabTrie **out, P3Error *err);
void		p3_vocab_trie_free(P3VocabTrie *trie);
int32_t		p3_vocab_trie_n_vocab(const P3VocabTrie *trie);

/* ---- matching ---- */

typedef struct P3SchemaMatcher P3SchemaMatcher;

/*
 * A matcher at the start of a document.  trie may be NULL (then no masks
 * and no constraint); both must outlive the matcher.
 */
P3Status	p3_schema_matcher_new(P3Schema *schema, const P3VocabTrie *trie,
								  P3SchemaMatcher **out, P3Error *err);
void		p3_schema_matcher_free(P3SchemaMatcher *m);
/* Back to the start of a document. */
void		p3_schema_matcher_reset(P3SchemaMatcher *m);
/* A new matcher in the same state. */
P3Status	p3_schema_matcher_clone(const P3SchemaMatcher *m, P3SchemaMatcher **out, P3Error *err);
/* Put dst in src's state (same schema; for save / restore).  P3_ERR_INVALID_ARG otherwise. */
P3Status	p3_schema_matcher_copy(P3SchemaMatcher *dst, const P3SchemaMatcher *src, P3Error *err);

/*
 * Advance by bytes[0..len): all or nothing.  P3_ERR_INVALID_ARG (state
 * unchanged) if they do not keep the output a valid prefix, or if more
 * than max_threads parses would be followed.
 */
P3Status	p3_schema_matcher_accept_bytes(P3SchemaMatcher *m, const void *bytes, size_t len, P3Error *err);
/* Whether accept_bytes would succeed (the matcher does not change). */
bool		p3_schema_matcher_allows(const P3SchemaMatcher *m, const void *bytes, size_t len);
/* The output so far is a complete valid document. */
bool		p3_schema_matcher_is_complete(const P3SchemaMatcher *m);
/* Some byte may still follow (false after a closing "}" of the root, true after a root "12"). */
bool		p3_schema_matcher_can_continue(const P3SchemaMatcher *m);

/*
 * The allowed tokens: sets bit i of mask_bits[i / 32] (ceil(n_vocab / 32)
 * words, all written) exactly when token i's bytes keep the output a valid
 * prefix; a token without bytes is disallowed, except the
 * end-of-generation tokens, allowed exactly when the document is complete.
 * vocab may be NULL (the matcher's trie).  P3_ERR_INVALID_ARG without a
 * trie; P3_ERR_NOMEM.
 */
P3Status	p3_schema_matcher_mask(P3SchemaMatcher *m, const P3VocabTrie *vocab, uint32_t *mask_bits,
								   P3Error *err);

/*
 * Jump-forward: the bytes that are the only possible continuation (a key,
 * punctuation, the rest of an enum value or const), up to the first point
 * where there is a choice or the document could end.  Writes at most cap
 * bytes and returns how many (0: a choice now).  The matcher does not
 * change.
 */
size_t		p3_schema_matcher_forced(const P3SchemaMatcher *m, char *buf, size_t cap);

/*
 * Jump-forward tokens: the forced bytes (at most 256) split into tokens by
 * longest match over the matcher's trie (a normal token before a byte
 * token of the same bytes), without the run's last token, which is left
 * to sampling under the mask: the model may then end the run with a
 * token that crosses into what follows (token healing), instead of being
 * forced into a split it would not make.  Writes at most cap ids and
 * returns how many (0 without a trie).  The matcher does not change.
 */
int32_t		p3_schema_matcher_forced_tokens(const P3SchemaMatcher *m, int32_t *tokens, int32_t cap);

/*
 * The shortest valid completion of the output so far (closing strings and
 * containers, required fields with their shortest values: "" or the
 * fewest characters allowed, 0 or the bound nearest to it, the shortest
 * enum value, the fewest items), appended to *out; empty when the
 * document is already complete.  For closing a document when the token
 * budget runs low.  P3_ERR_INTERNAL if none is known (a minimum over
 * 1 MB); the matcher does not change.
 */
P3Status	p3_schema_matcher_completion(const P3SchemaMatcher *m, P3Text *out, P3Error *err);

/*
 * The decoder constraint over m (which must have a trie built from tok's
 * vocabulary): mask as p3_schema_matcher_mask; accept advances m by the
 * token's bytes and fails with P3_ERR_INVALID_ARG if the token was not
 * allowed; complete is true when the document is complete and nothing can
 * follow (a root number or enum that could go on waits for an
 * end-of-generation token); forced is p3_schema_matcher_forced_tokens
 * (jump-forward).  m and tok must outlive the sequence.
 */
P3Status	p3_schema_constraint(P3SchemaMatcher *m, const P3Tokenizer *tok, P3Constraint *out, P3Error *err);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_SCHEMA_H */
