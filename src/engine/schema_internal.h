/*
 * schema_internal.h — declarations shared by the files of the schema
 * subsystem (never installed; the public API is phi3/schema.h).
 *
 * The subsystem compiles a JSON Schema to a byte automaton and matches
 * bytes and token masks against it:
 *   schema.c           the public entry points not below: limits, free,
 *                      statistics, the schema as prompt text
 *   schema_compile.c   schema DOM -> Nodes (limits, $ref, literal tries)
 *   schema_match.c     threads of frames fed byte by byte; the matcher
 *   schema_mask.c      the vocabulary trie, token masks, the mask cache,
 *                      the decoder constraint
 *   schema_complete.c  shortest documents per node, shortest completions
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

#define SCHEMA_MAX_REF_CHAIN 64	/* $ref inside a definition named by a $ref ..., deepest chain */
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

/* ---- the compiled schema (built by schema_compile.c, read by all) ---- */

typedef enum NodeKind
{
	K_ANYOF, K_OBJECT, K_ARRAY, K_STRING, K_NUMBER, K_INTEGER, K_LITERAL
} NodeKind;

#define NO_LIMIT UINT32_MAX

typedef struct Prop
{
	uint32_t	key_off;		/* `"name":` in the pool */
	uint32_t	key_len;
	uint32_t	name_off;		/* the decoded name (for describe) */
	uint32_t	name_len;
	int32_t		child;
	bool		required;
} Prop;

typedef struct Node
{
	NodeKind	kind;
	int32_t		alt_off;		/* concrete alternatives in schema->alts */
	int32_t		n_alts;
	int32_t		depth;			/* frames a document of this node needs at most */
	int32_t		desc_off;		/* description in the pool, -1 none */
	/* K_OBJECT */
	int32_t		prop_off;
	int32_t		n_props;
	/* K_ARRAY */
	int32_t		item;
	uint32_t	min_items;
	uint32_t	max_items;
	/* K_STRING */
	uint32_t	min_len;
	uint32_t	max_len;
	int32_t		dfa_start;		/* global DFA state, -1: none */
	const char *format;			/* static name, for describe */
	/* K_INTEGER */
	int64_t		imin;
	int64_t		imax;
	/* K_LITERAL */
	int32_t		lit_root;
	/* K_ANYOF: its direct children (for describe) */
	int32_t		child_off;
	int32_t		n_children;
} Node;

typedef struct LitNode
{
	uint32_t	edge_off;
	uint16_t	n_edges;
	bool		terminal;
} LitNode;

typedef struct MaskCacheEntry
{
	uint8_t    *key;			/* NULL: empty slot */
	uint32_t	key_len;
	uint64_t	hash;
	uint32_t   *mask;
} MaskCacheEntry;

#define MASK_CACHE_SLOTS 512	/* open addressing; cleared when half full */

struct P3Schema
{
	Node	   *nodes;
	int32_t		n_nodes;
	int32_t		root;
	Prop	   *props;
	int32_t		n_props;
	int32_t    *next_req;		/* per prop index: first required prop index >= it (node-relative) */
	int32_t    *alts;
	int32_t		n_alts;
	int32_t    *children;
	int32_t		n_children;
	char	   *pool;
	size_t		pool_len;
	LitNode    *lits;
	int32_t		n_lits;
	uint8_t    *lit_bytes;		/* edges: byte and target */
	int32_t    *lit_targets;
	int32_t		n_lit_edges;
	int32_t    *dfa_trans;		/* global DFA states * 256 */
	bool	   *dfa_accept;
	int32_t		n_dfa;
	int32_t		T;				/* frames per thread: depth + 1 */
	P3SchemaLimits limits;
	int32_t		n_states;
	double		compile_ms;
	uint32_t   *min_off;		/* per node: its shortest document in minpool */
	uint32_t   *min_len;		/* (NO_LIMIT: longer than MIN_DOC_CAP, none kept) */
	char	   *minpool;
	const void *min_building;	/* compute_min_docs: the Buf being built (aliases minpool) */

	/* mask cache (see schema_mask.c), for the trie of this serial */
	uint64_t	cache_trie;
	MaskCacheEntry *cache;
	int32_t		cache_used;
	int64_t		mask_calls;
	int64_t		cache_hits;
};

bool		p3s_compute_min_docs(P3Schema *s);	/* schema_complete.c */

/* ---- threads of frames, schema_match.c ---- */

/* One open node of a parse; a thread is T of them (see schema_match.c). */
typedef struct Frame
{
	uint16_t	node;
	uint8_t		phase;
	uint8_t		aux;
	uint32_t	a;
	uint64_t	b;
} Frame;

/* Frame.phase, per node kind */
enum
{
	/* object */
	O_START = 0, O_FIRST, O_KEY, O_VALUE, O_AFTER, O_NEXT,
	/* array */
	A_START = 0, A_FIRST, A_ITEM, A_AFTER, A_NEXT,
	/* string */
	S_START = 0, S_BODY, S_U8, S_ESC, S_HEX, S_SUR_BS, S_SUR_U, S_HEX2,
	/* number */
	N_START = 0, N_MINUS, N_ZERO, N_INT, N_DOT, N_FRAC, N_E, N_ESIGN, N_EXP,
	/* integer */
	I_START = 0, I_MINUS, I_ZERO, I_DIG,
	/* literal */
	L_IN = 0
};

#define DEPTH(th) ((th)[0].a)		/* open frames of thread th */

/* The matcher (schema_match.c); its walk and key scratch serve schema_mask.c. */
struct P3SchemaMatcher
{
	P3Schema   *s;
	const P3VocabTrie *trie;
	Frame	   *cur;			/* the current threads */
	uint32_t	n_cur;
	size_t		cap_cur;		/* frames */
	Frame	   *scratch;		/* step and walk buffer */
	size_t		cap_scratch;
	uint32_t   *level_n;		/* walk: threads per trie depth */
	size_t	   *level_off;
	int32_t		level_cap;		/* entries of both (trie depth + 1) */
	uint8_t    *key;			/* cache key scratch */
	size_t		cap_key;
	const P3Tokenizer *tok;		/* set by p3_schema_constraint */
};

bool		p3s_int_in_range(bool neg, uint64_t m, int64_t lo, int64_t hi);
void		p3s_pop(const P3Schema *s, Frame *th);
uint32_t	p3s_step_set(const P3Schema *s, Frame **buf, size_t *cap, size_t in, uint32_t n_in,
						 size_t out, int c, P3Status *status);
bool		p3s_set_complete(const P3Schema *s, const Frame *buf, uint32_t n);
bool		p3s_frames_reserve(Frame **buf, size_t *cap, size_t n);

#endif							/* PHI3_SCHEMA_INTERNAL_H */
