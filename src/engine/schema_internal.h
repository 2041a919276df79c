/*
 * schema_internal.h — declarations shared by the files of the schema
 * subsystem (never installed; the public API is phi3/schema.h).
 *
 * The subsystem compiles a JSON Schema to a byte automaton and matches
 * bytes and token masks against it:
 *   schema.c           everything not yet split out
 *   schema_json.c      arena, UTF-8, the JSON DOM parser, the byte buffer
 *   schema_regex.c     pattern -> Thompson NFA -> DFA
 *
 * Functions shared between these files are prefixed p3s_; everything else
 * is static to its file.
 */
#ifndef PHI3_SCHEMA_INTERNAL_H
#define PHI3_SCHEMA_INTERNAL_H

#include "phi3/schema.h"

/* ---- arena (the DOM and compile scratch), schema_json.c ---- */

typedef struct ArenaBlock
{
	struct ArenaBlock *next;
	size_t		used;
	size_t		cap;
	max_align_t data[];
} ArenaBlock;

typedef struct Arena
{
	ArenaBlock *head;
} Arena;

void	   *p3s_arena_alloc(Arena *a, size_t n);
void		p3s_arena_free(Arena *a);

/* ---- UTF-8, schema_json.c ---- */

int			p3s_utf8_char_len(const unsigned char *s, size_t n);
size_t		p3s_utf8_check(const unsigned char *s, size_t n);
int			p3s_hexval(int c);	/* a hex digit's value, -1 if not one */

/* ---- the JSON DOM of the schema text, schema_json.c ---- */

typedef enum JType
{
	J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ
} JType;

typedef struct JVal
{
	JType		t;
	size_t		n;				/* items / members */
	char	   *s;				/* string value (decoded, NUL-terminated) or number text */
	size_t		slen;
	struct JVal **items;		/* array items / member values */
	char	  **keys;			/* member names (decoded, NUL-terminated) */
	size_t	   *klens;
} JVal;

JVal	   *p3s_json_parse(const char *json, size_t len, Arena *arena, P3Error *err, P3Status *st);
JVal	   *p3s_jget(const JVal *obj, const char *name);
bool		p3s_jnum_int64(const JVal *v, int64_t *out);

/* ---- growable byte buffer (compile output, descriptions), schema_json.c ---- */

typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
	bool		oom;
} Buf;

void		p3s_buf_put(Buf *b, const void *p, size_t n);
void		p3s_buf_puts(Buf *b, const char *s);
void		p3s_buf_json_string(Buf *b, const char *s, size_t n);
void		p3s_buf_json_value(Buf *b, const JVal *v);

/* ---- patterns, schema_regex.c ---- */

#define RE_MAX_DFA		4096
#define RE_MAX_PATTERN	1024	/* bytes */

/* A DFA under construction (states local, 0 = start). */
typedef struct Dfa
{
	int			n;
	int32_t    *trans;			/* n * 256, -1 dead */
	bool	   *accept;
	const char *error;
} Dfa;

const char *p3s_regex_to_dfa(const char *pattern, size_t plen, int max_states, Dfa *out);

#endif							/* PHI3_SCHEMA_INTERNAL_H */
