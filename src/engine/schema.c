/*
 * schema.c — JSON Schema to a byte automaton, matching, token masks (see
 * phi3/schema.h).
 *
 * Compilation.  The schema text is checked as UTF-8, parsed into a small
 * DOM (arena-allocated, freed at the end of the compile), and each schema
 * object becomes a Node:
 *   K_OBJECT   properties in order: key bytes `"name":` (pool), child node,
 *              required flag; next_req[i] = first required index >= i
 *   K_ARRAY    item node, min / max items
 *   K_STRING   min / max characters, or a DFA (format, pattern)
 *   K_NUMBER   the JSON number grammar
 *   K_INTEGER  int64 bounds
 *   K_LITERAL  a trie of byte strings (enum, const, true/false, null)
 *   K_ANYOF    alternatives; never on a stack: pushing a node pushes each of
 *              its flattened concrete alternatives (alts) as its own parse
 * $ref targets are compiled once and shared; reference cycles are refused,
 * so the node graph is a DAG and its depth (longest chain of nested
 * objects / arrays) is known at compile time and bounded by max_depth.
 *
 * Matching.  A parse ("thread") is a stack of Frames, one per open node:
 * node id, phase, and two counters (characters, items, the current key and
 * position, an integer's magnitude, a trie or DFA state).  A thread has a
 * fixed size T = depth + 1 frames (frame 0's `a` holds the stack depth;
 * unused frames are zero, so threads compare with memcmp).  The matcher's
 * state is a set of threads (nondeterminism: anyOf alternatives, optional
 * keys sharing a prefix, a number or literal that may end or go on).  One
 * byte maps a set to the set of successors (deduplicated); empty = dead.
 * Each node only admits bytes after which a completion still exists, so a
 * live set always has a completion.
 *
 * Masks.  The vocabulary trie is stored in preorder with subtree ends; the
 * walk keeps one state set per depth in a scratch buffer and skips the
 * subtree of any node whose set is empty.  Two shortcuts: (1) the masks of
 * the states seen are cached in the schema, keyed by the state's bytes
 * with the counters of strings and arrays clamped to the range in which
 * no token (at most L bytes) can tell them apart; (2) when a thread is in
 * the body of an unconstrained string (or one with more than L characters
 * left), every "free" token (complete UTF-8 without ", \ or control
 * characters) is allowed at once and subtrees holding only free tokens are
 * not walked; within a length-bounded string, free tokens are decided by
 * their character count.
 *
 * Patterns and formats: regex -> Thompson NFA -> DFA over byte classes,
 * bounded in states and in work; DFA states that cannot reach acceptance
 * are removed, so a pattern string never dead-ends either.
 *
 * Shortest completions: each node's shortest document is computed when
 * compiling (children before parents: node ids grow bottom-up); from a
 * state, each thread's open frames are closed innermost first, and the
 * shortest result that the automaton itself accepts is returned.
 *
 * Recursion is bounded everywhere it depends on the input: the JSON parser
 * (128 levels), the compiler (the JSON depth), patterns (64 nested groups,
 * 1024 bytes), literal tries (4096 bytes per value), matching (max_depth).
 */
#include "schema_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ========================================================================
 * The compiled schema
 * ======================================================================== */

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

	/* mask cache (see the file header), for the trie of this serial */
	uint64_t	cache_trie;
	MaskCacheEntry *cache;
	int32_t		cache_used;
	int64_t		mask_calls;
	int64_t		cache_hits;
};

/* ---- the compiler ---- */

typedef struct RefMemo
{
	const JVal *target;
	int32_t		node;			/* -1: being compiled (a cycle if met again) */
} RefMemo;

typedef struct Compiler
{
	P3Schema   *s;
	const JVal *root;
	P3Error    *err;
	P3Status	st;
	Buf			pool;
	char		path[1024];
	size_t		path_len;
	int32_t		cap_nodes,
				cap_props,
				cap_alts,
				cap_children,
				cap_lits,
				cap_lit_edges;
	RefMemo    *refs;
	int32_t		n_refs,
				cap_refs;
	int32_t		ref_depth;
} Compiler;

static P3Status
cfail(Compiler *c, P3Status st, const char *fmt,...) __attribute__((format(printf, 3, 4)));

static P3Status
cfail(Compiler *c, P3Status st, const char *fmt,...)
{
	va_list		ap;

	if (c->st != P3_OK)
		return c->st;
	c->st = st;
	if (c->err)
	{
		c->err->status = st;
		c->err->kind = P3_KIND_NONE;
		c->err->sys_errno = 0;
		va_start(ap, fmt);
		vsnprintf(c->err->message, sizeof(c->err->message), fmt, ap);
		va_end(ap);
	}
	return st;
}

static P3Status
cnomem(Compiler *c)
{
	return cfail(c, P3_ERR_NOMEM, "out of memory compiling the schema");
}

/* Count n states against the limit. */
static bool
cstates(Compiler *c, int64_t n)
{
	if (c->st != P3_OK)
		return false;
	if ((int64_t) c->s->n_states + n > c->s->limits.max_states)
	{
		cfail(c, P3_ERR_INVALID_ARG, "schema needs more than %d automaton states (max_states) at %s",
			  (int) c->s->limits.max_states, c->path);
		return false;
	}
	c->s->n_states += (int32_t) n;
	return true;
}

/* Grow an array to hold n + 1 elements. */
static bool
cgrow(Compiler *c, void **arr, int32_t *cap, int32_t n, size_t elem)
{
	void	   *na;
	int32_t		ncap;

	if (n < *cap)
		return true;
	ncap = *cap ? *cap * 2 : 16;
	na = realloc(*arr, (size_t) ncap * elem);
	if (na == NULL)
	{
		cnomem(c);
		return false;
	}
	*arr = na;
	*cap = ncap;
	return true;
}

/* Path helpers: push ".name" or "[i]", return the old length to pop to. */
static size_t
cpath_push(Compiler *c, const char *seg, size_t seglen, bool index)
{
	size_t		old = c->path_len;
	int			w;

	if (index)
		w = snprintf(c->path + old, sizeof(c->path) - old, "[%.*s]", (int) seglen, seg);
	else
		w = snprintf(c->path + old, sizeof(c->path) - old, ".%.*s", (int) seglen, seg);
	if (w > 0)
		c->path_len = old + (size_t) w < sizeof(c->path) ? old + (size_t) w : sizeof(c->path) - 1;
	return old;
}

static void
cpath_pop(Compiler *c, size_t old)
{
	c->path_len = old;
	c->path[old] = '\0';
}

static int32_t
cnew_node(Compiler *c, NodeKind kind)
{
	Node	   *n;

	if (!cstates(c, 1))
		return -1;
	if (c->s->n_nodes >= 65535)
	{
		cfail(c, P3_ERR_INVALID_ARG, "schema has more than 65535 nodes at %s", c->path);
		return -1;
	}
	if (!cgrow(c, (void **) &c->s->nodes, &c->cap_nodes, c->s->n_nodes, sizeof(Node)))
		return -1;
	n = &c->s->nodes[c->s->n_nodes];
	memset(n, 0, sizeof(*n));
	n->kind = kind;
	n->desc_off = -1;
	n->dfa_start = -1;
	n->min_len = 0;
	n->max_len = NO_LIMIT;
	n->max_items = NO_LIMIT;
	n->imin = INT64_MIN;
	n->imax = INT64_MAX;
	n->lit_root = -1;
	n->item = -1;
	return c->s->n_nodes++;
}

/* Finish a node: its alternatives (itself unless anyOf) and depth; check the depth limit. */
static int32_t
cfinish_node(Compiler *c, int32_t id)
{
	P3Schema   *s = c->s;
	Node	   *n = &s->nodes[id];
	int32_t		depth = 1;

	if (c->st != P3_OK)
		return -1;
	n->alt_off = s->n_alts;
	if (n->kind != K_ANYOF)
	{
		if (!cgrow(c, (void **) &s->alts, &c->cap_alts, s->n_alts, sizeof(int32_t)))
			return -1;
		s->alts[s->n_alts++] = id;
		n = &s->nodes[id];
		n->n_alts = 1;
		if (n->kind == K_OBJECT)
			for (int32_t i = 0; i < n->n_props; i++)
			{
				int32_t		d = 1 + s->nodes[s->props[n->prop_off + i].child].depth;

				if (d > depth)
					depth = d;
			}
		if (n->kind == K_ARRAY)
			depth = 1 + s->nodes[n->item].depth;
	}
	else
	{
		depth = 0;
		for (int32_t k = 0; k < n->n_children; k++)
		{
			const Node *ch = &s->nodes[s->children[n->child_off + k]];

			for (int32_t a = 0; a < ch->n_alts; a++)
			{
				int32_t		alt = s->alts[ch->alt_off + a];
				bool		dup = false;

				for (int32_t j = s->nodes[id].alt_off; j < s->n_alts; j++)
					if (s->alts[j] == alt)
						dup = true;
				if (dup)
					continue;
				if (!cgrow(c, (void **) &s->alts, &c->cap_alts, s->n_alts, sizeof(int32_t)))
					return -1;
				s->alts[s->n_alts++] = alt;
			}
			ch = &s->nodes[s->children[s->nodes[id].child_off + k]];
			if (ch->depth > depth)
				depth = ch->depth;
		}
		n = &s->nodes[id];
		n->n_alts = s->n_alts - n->alt_off;
	}
	n->depth = depth;
	if (n->n_alts > s->limits.max_threads)
	{
		cfail(c, P3_ERR_INVALID_ARG, "%d alternatives at %s, over the limit of %d parses at once (max_threads)",
			  (int) n->n_alts, c->path[0] ? c->path : "$", (int) s->limits.max_threads);
		return -1;
	}
	if (n->kind == K_OBJECT)
	{
		/* the keys that may come next at one point: a run of optional ones and the required one after */
		int32_t		run = 0;

		for (int32_t i = 0; i < n->n_props; i++)
		{
			run = s->props[n->prop_off + i].required ? 0 : run + 1;
			if (run + 1 > s->limits.max_threads)
			{
				cfail(c, P3_ERR_INVALID_ARG,
					  "object at %s has more than %d optional properties in a row (max_threads)",
					  c->path[0] ? c->path : "$", (int) s->limits.max_threads - 1);
				return -1;
			}
		}
	}
	if (depth > s->limits.max_depth)
	{
		cfail(c, P3_ERR_INVALID_ARG, "schema nests %d levels deep at %s, over the limit of %d (max_depth)",
			  (int) depth, c->path[0] ? c->path : "$", (int) s->limits.max_depth);
		return -1;
	}
	return id;
}

/* ---- literal tries (enum, const, booleans, null) ---- */

static int32_t
clit_new(Compiler *c)
{
	P3Schema   *s = c->s;

	if (!cstates(c, 1) || !cgrow(c, (void **) &s->lits, &c->cap_lits, s->n_lits, sizeof(LitNode)))
		return -1;
	memset(&s->lits[s->n_lits], 0, sizeof(LitNode));
	return s->n_lits++;
}

/*
 * Insert bytes into the trie at root.  The trie is built in one go per
 * node: edges of a node must be contiguous, so tries are built from a
 * sorted list of literals (clit_build) rather than by insertion.
 */
#define LIT_MAX_LEN 4096		/* bytes of one enum / const value */

typedef struct LitStr
{
	const char *p;
	size_t		n;
} LitStr;

static int
litstr_cmp(const void *a, const void *b)
{
	const LitStr *x = a,
			   *y = b;
	size_t		m = x->n < y->n ? x->n : y->n;
	int			r = memcmp(x->p, y->p, m);

	if (r)
		return r;
	return x->n < y->n ? -1 : x->n > y->n;
}

/* Build the trie node for strs[lo..hi) (sorted, all sharing the first `depth` bytes). */
static int32_t
clit_build(Compiler *c, LitStr *strs, size_t lo, size_t hi, size_t depth)
{
	int32_t		id = clit_new(c);
	size_t		i = lo;
	int32_t		n_edges = 0;
	int32_t		edge_off;
	P3Schema   *s = c->s;

	if (id < 0)
		return -1;
	while (i < hi && strs[i].n == depth)
	{
		s->lits[id].terminal = true;
		i++;
	}
	/* count distinct next bytes, reserve their edges contiguously */
	for (size_t j = i; j < hi;)
	{
		unsigned char b = (unsigned char) strs[j].p[depth];

		n_edges++;
		while (j < hi && (unsigned char) strs[j].p[depth] == b)
			j++;
	}
	edge_off = s->n_lit_edges;
	for (int32_t k = 0; k < n_edges; k++)
	{
		int32_t		old_cap = c->cap_lit_edges;

		if (!cgrow(c, (void **) &s->lit_bytes, &c->cap_lit_edges, s->n_lit_edges, 1))
			return -1;
		/* lit_targets grows with the same capacity */
		if (c->cap_lit_edges != old_cap)
		{
			int32_t    *nt = realloc(s->lit_targets, (size_t) c->cap_lit_edges * sizeof(int32_t));

			if (nt == NULL)
			{
				cnomem(c);
				return -1;
			}
			s->lit_targets = nt;
		}
		s->n_lit_edges++;
	}
	s->lits[id].edge_off = (uint32_t) edge_off;
	s->lits[id].n_edges = (uint16_t) n_edges;
	{
		int32_t		k = 0;

		for (size_t j = i; j < hi;)
		{
			unsigned char b = (unsigned char) strs[j].p[depth];
			size_t		e = j;
			int32_t		child;

			while (e < hi && (unsigned char) strs[e].p[depth] == b)
				e++;
			child = clit_build(c, strs, j, e, depth + 1);
			if (child < 0)
				return -1;
			s->lit_bytes[edge_off + k] = b;
			s->lit_targets[edge_off + k] = child;
			k++;
			j = e;
		}
	}
	return id;
}

/* A K_LITERAL node for the serialized values in vals (n_vals strings in one buffer). */
static int32_t
cliteral(Compiler *c, LitStr *strs, size_t n)
{
	int32_t		id;
	int32_t		root;
	size_t		m = 0;

	qsort(strs, n, sizeof(LitStr), litstr_cmp);
	/* drop duplicates */
	for (size_t i = 0; i < n; i++)
		if (m == 0 || litstr_cmp(&strs[m - 1], &strs[i]) != 0)
			strs[m++] = strs[i];
	/* clit_build recurses per byte: bound the length of a literal */
	for (size_t i = 0; i < m; i++)
		if (strs[i].n > LIT_MAX_LEN)
		{
			cfail(c, P3_ERR_INVALID_ARG, "enum / const value longer than %d bytes at %s", LIT_MAX_LEN, c->path);
			return -1;
		}
		else if ((int64_t) strs[i].n > c->s->limits.max_states - c->s->n_states)
		{
			cfail(c, P3_ERR_INVALID_ARG, "schema needs more than %d automaton states (max_states) at %s",
				  (int) c->s->limits.max_states, c->path);
			return -1;
		}
	id = cnew_node(c, K_LITERAL);
	if (id < 0)
		return -1;
	root = clit_build(c, strs, 0, m, 0);
	if (root < 0)
		return -1;
	c->s->nodes[id].lit_root = root;
	return cfinish_node(c, id);
}

static const char *const known_keywords[] = {
	"type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
	"enum", "const", "anyOf", "oneOf", "$ref", "minLength", "maxLength", "minimum", "maximum",
	"format", "pattern", "description", "title", "$schema", "$id", "$comment", "$defs",
	"definitions", "examples", "default", NULL
};

static const char *const format_patterns[][2] = {
	{"date", "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"},
	{"time", "([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"},
	{"date-time", "[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"},
	{"uuid", "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"},
};

static int32_t compile_schema(Compiler *c, const JVal *v);

/* Compile the subschema at member `key` of v (path extended by key). */
static int32_t
compile_member(Compiler *c, const JVal *v, const char *key, const char *sub, size_t sublen, bool index)
{
	size_t		old = cpath_push(c, key, strlen(key), false);
	int32_t		id;

	if (sub)
		cpath_push(c, sub, sublen, index);
	id = compile_schema(c, v);
	cpath_pop(c, old);
	return id;
}

/* Read a non-negative integer keyword into *out (<= UINT32_MAX - 1). */
static bool
cuint_kw(Compiler *c, const JVal *v, const char *kw, uint32_t *out)
{
	const JVal *x = p3s_jget(v, kw);
	int64_t		i;

	if (x == NULL)
		return true;
	if (!p3s_jnum_int64(x, &i) || i < 0 || i >= (int64_t) NO_LIMIT)
	{
		cfail(c, P3_ERR_INVALID_ARG, "\"%s\" must be a non-negative integer at %s", kw, c->path);
		return false;
	}
	*out = (uint32_t) i;
	return true;
}

static int32_t
cdesc(Compiler *c, const JVal *v)
{
	const JVal *d = p3s_jget(v, "description");
	int32_t		off;

	if (d == NULL)
		d = p3s_jget(v, "title");
	if (d == NULL)
		return -1;
	if (d->t != J_STR)
	{
		cfail(c, P3_ERR_INVALID_ARG, "\"description\" must be a string at %s", c->path);
		return -1;
	}
	off = (int32_t) c->pool.len;
	p3s_buf_put(&c->pool, d->s, d->slen + 1);
	return off;
}

/* Compile one concrete type of v. */
static int32_t
compile_type(Compiler *c, const JVal *v, const char *type)
{
	int32_t		id;

	if (strcmp(type, "object") == 0)
	{
		const JVal *props = p3s_jget(v, "properties");
		const JVal *req = p3s_jget(v, "required");
		const JVal *add = p3s_jget(v, "additionalProperties");
		int32_t		first_prop,
					n_props = props ? (int32_t) props->n : 0;
		int32_t    *childs = NULL;

		if (props && props->t != J_OBJ)
			return cfail(c, P3_ERR_INVALID_ARG, "\"properties\" must be an object at %s", c->path), -1;
		if (add && add->t != J_FALSE)
			return cfail(c, P3_ERR_INVALID_ARG,
						 "\"additionalProperties\" other than false is not supported at %s", c->path), -1;
		if (req)
		{
			if (req->t != J_ARR)
				return cfail(c, P3_ERR_INVALID_ARG, "\"required\" must be an array at %s", c->path), -1;
			for (size_t i = 0; i < req->n; i++)
			{
				if (req->items[i]->t != J_STR)
					return cfail(c, P3_ERR_INVALID_ARG, "\"required\" must list strings at %s", c->path), -1;
				if (props == NULL || p3s_jget(props, req->items[i]->s) == NULL ||
					strlen(req->items[i]->s) != req->items[i]->slen)
					return cfail(c, P3_ERR_INVALID_ARG,
								 "required property \"%s\" is not in \"properties\" at %s",
								 req->items[i]->s, c->path), -1;
			}
		}
		if (n_props > 0)
		{
			childs = malloc((size_t) n_props * sizeof(int32_t));
			if (childs == NULL)
				return cnomem(c), -1;
		}
		for (int32_t i = 0; i < n_props; i++)
		{
			childs[i] = compile_member(c, props->items[i], "properties", props->keys[i], props->klens[i], false);
			if (childs[i] < 0)
			{
				free(childs);
				return -1;
			}
		}
		id = cnew_node(c, K_OBJECT);
		if (id < 0)
		{
			free(childs);
			return -1;
		}
		first_prop = c->s->n_props;
		for (int32_t i = 0; i < n_props; i++)
		{
			Prop	   *p;
			size_t		key_start;
			bool		required = false;

			if (!cgrow(c, (void **) &c->s->props, &c->cap_props, c->s->n_props, sizeof(Prop)))
				break;
			if (req)
				for (size_t k = 0; k < req->n; k++)
					if (req->items[k]->slen == props->klens[i] &&
						memcmp(req->items[k]->s, props->keys[i], props->klens[i]) == 0)
						required = true;
			p = &c->s->props[c->s->n_props++];
			p->child = childs[i];
			p->required = required;
			key_start = c->pool.len;
			p3s_buf_json_string(&c->pool, props->keys[i], props->klens[i]);
			p3s_buf_put(&c->pool, ":", 1);
			p->key_off = (uint32_t) key_start;
			p->key_len = (uint32_t) (c->pool.len - key_start);
			p->name_off = (uint32_t) c->pool.len;
			p->name_len = (uint32_t) props->klens[i];
			p3s_buf_put(&c->pool, props->keys[i], props->klens[i] + 1);
			if (!cstates(c, p->key_len))
				break;
		}
		free(childs);
		if (c->st != P3_OK)
			return -1;
		c->s->nodes[id].prop_off = first_prop;
		c->s->nodes[id].n_props = n_props;
		return cfinish_node(c, id);
	}
	if (strcmp(type, "array") == 0)
	{
		const JVal *items = p3s_jget(v, "items");
		uint32_t	mn = 0,
					mx = NO_LIMIT;
		int32_t		item;

		if (items == NULL)
			return cfail(c, P3_ERR_INVALID_ARG, "array without \"items\" is not supported at %s", c->path), -1;
		if (items->t != J_OBJ)
			return cfail(c, P3_ERR_INVALID_ARG, "\"items\" must be a schema object at %s", c->path), -1;
		if (!cuint_kw(c, v, "minItems", &mn) || !cuint_kw(c, v, "maxItems", &mx))
			return -1;
		if (mn > mx)
			return cfail(c, P3_ERR_INVALID_ARG, "\"minItems\" is greater than \"maxItems\" at %s", c->path), -1;
		item = compile_member(c, items, "items", NULL, 0, false);
		if (item < 0)
			return -1;
		id = cnew_node(c, K_ARRAY);
		if (id < 0)
			return -1;
		c->s->nodes[id].item = item;
		c->s->nodes[id].min_items = mn;
		c->s->nodes[id].max_items = mx;
		return cfinish_node(c, id);
	}
	if (strcmp(type, "string") == 0)
	{
		const JVal *fmt = p3s_jget(v, "format");
		const JVal *pat = p3s_jget(v, "pattern");
		uint32_t	mn = 0,
					mx = NO_LIMIT;
		const char *re = NULL;
		size_t		relen = 0;
		const char *fmt_name = NULL;

		if (!cuint_kw(c, v, "minLength", &mn) || !cuint_kw(c, v, "maxLength", &mx))
			return -1;
		if (mn > mx)
			return cfail(c, P3_ERR_INVALID_ARG, "\"minLength\" is greater than \"maxLength\" at %s", c->path), -1;
		if (fmt && pat)
			return cfail(c, P3_ERR_INVALID_ARG, "\"format\" together with \"pattern\" is not supported at %s", c->path), -1;
		if (fmt)
		{
			if (fmt->t != J_STR)
				return cfail(c, P3_ERR_INVALID_ARG, "\"format\" must be a string at %s", c->path), -1;
			for (size_t i = 0; i < sizeof(format_patterns) / sizeof(format_patterns[0]); i++)
				if (strcmp(fmt->s, format_patterns[i][0]) == 0)
				{
					fmt_name = format_patterns[i][0];
					re = format_patterns[i][1];
					relen = strlen(re);
				}
			if (re == NULL)
				return cfail(c, P3_ERR_INVALID_ARG, "unsupported format \"%s\" at %s", fmt->s, c->path), -1;
		}
		if (pat)
		{
			if (pat->t != J_STR)
				return cfail(c, P3_ERR_INVALID_ARG, "\"pattern\" must be a string at %s", c->path), -1;
			/* the regex compiler recurses over the pattern's structure */
			if (pat->slen > RE_MAX_PATTERN)
				return cfail(c, P3_ERR_INVALID_ARG, "\"pattern\" longer than %d bytes at %s", RE_MAX_PATTERN, c->path), -1;
			re = pat->s;
			relen = pat->slen;
		}
		if (re && (p3s_jget(v, "minLength") || p3s_jget(v, "maxLength")))
			return cfail(c, P3_ERR_INVALID_ARG,
						 "\"minLength\" / \"maxLength\" together with \"%s\" is not supported at %s",
						 fmt ? "format" : "pattern", c->path), -1;
		id = cnew_node(c, K_STRING);
		if (id < 0)
			return -1;
		c->s->nodes[id].min_len = mn;
		c->s->nodes[id].max_len = mx;
		c->s->nodes[id].format = fmt_name ? fmt_name : (re ? "pattern" : NULL);
		if (re)
		{
			Dfa			d;
			int64_t		room = (int64_t) c->s->limits.max_states - c->s->n_states;
			const char *why = p3s_regex_to_dfa(re, relen, room > 0 ? (int) (room < RE_MAX_DFA ? room : RE_MAX_DFA) + 1 : 1, &d);
			P3Schema   *s = c->s;

			if (why)
			{
				if (strcmp(why, "pattern needs too many DFA states") == 0 && room < RE_MAX_DFA)
					return cfail(c, P3_ERR_INVALID_ARG, "schema needs more than %d automaton states (max_states) at %s",
								 (int) s->limits.max_states, c->path), -1;
				return cfail(c, P3_ERR_INVALID_ARG, "unsupported or invalid pattern at %s: %s", c->path, why), -1;
			}
			if (!cstates(c, d.n))
			{
				free(d.trans);
				free(d.accept);
				return -1;
			}
			{
				int32_t    *nt = realloc(s->dfa_trans, ((size_t) s->n_dfa + (size_t) d.n) * 256 * sizeof(int32_t));
				bool	   *na;

				if (nt)
					s->dfa_trans = nt;
				na = nt ? realloc(s->dfa_accept, ((size_t) s->n_dfa + (size_t) d.n) * sizeof(bool)) : NULL;
				if (na)
					s->dfa_accept = na;
				if (!nt || !na)
				{
					free(d.trans);
					free(d.accept);
					return cnomem(c), -1;
				}
				for (int i = 0; i < d.n; i++)
				{
					for (int b = 0; b < 256; b++)
					{
						int32_t		t = d.trans[(size_t) i * 256 + b];

						s->dfa_trans[((size_t) s->n_dfa + i) * 256 + b] = t < 0 ? -1 : t + s->n_dfa;
					}
					s->dfa_accept[s->n_dfa + i] = d.accept[i];
				}
				s->nodes[id].dfa_start = s->n_dfa;
				s->n_dfa += d.n;
				free(d.trans);
				free(d.accept);
			}
		}
		return cfinish_node(c, id);
	}
	if (strcmp(type, "integer") == 0)
	{
		const JVal *mn = p3s_jget(v, "minimum");
		const JVal *mx = p3s_jget(v, "maximum");
		int64_t		lo = INT64_MIN,
					hi = INT64_MAX;

		if (mn && !p3s_jnum_int64(mn, &lo))
			return cfail(c, P3_ERR_INVALID_ARG, "\"minimum\" must be an int64 integer at %s", c->path), -1;
		if (mx && !p3s_jnum_int64(mx, &hi))
			return cfail(c, P3_ERR_INVALID_ARG, "\"maximum\" must be an int64 integer at %s", c->path), -1;
		if (lo > hi)
			return cfail(c, P3_ERR_INVALID_ARG, "\"minimum\" is greater than \"maximum\" at %s", c->path), -1;
		id = cnew_node(c, K_INTEGER);
		if (id < 0)
			return -1;
		c->s->nodes[id].imin = lo;
		c->s->nodes[id].imax = hi;
		return cfinish_node(c, id);
	}
	if (strcmp(type, "number") == 0)
	{
		id = cnew_node(c, K_NUMBER);
		return id < 0 ? -1 : cfinish_node(c, id);
	}
	if (strcmp(type, "boolean") == 0 || strcmp(type, "null") == 0)
	{
		LitStr		l[2];

		if (type[0] == 'b')
		{
			l[0].p = "true", l[0].n = 4;
			l[1].p = "false", l[1].n = 5;
			return cliteral(c, l, 2);
		}
		l[0].p = "null", l[0].n = 4;
		return cliteral(c, l, 1);
	}
	return cfail(c, P3_ERR_INVALID_ARG, "unsupported type \"%s\" at %s", type, c->path), -1;
}

/* Which keywords each type uses (to refuse one that applies to none of the types given). */
static bool
keyword_applies(const char *kw, const char *type)
{
	static const char *const obj[] = {"properties", "required", "additionalProperties", NULL};
	static const char *const arr[] = {"items", "minItems", "maxItems", NULL};
	static const char *const str[] = {"minLength", "maxLength", "format", "pattern", NULL};
	static const char *const num[] = {"minimum", "maximum", NULL};
	const char *const *list = NULL;

	if (strcmp(type, "object") == 0)
		list = obj;
	else if (strcmp(type, "array") == 0)
		list = arr;
	else if (strcmp(type, "string") == 0)
		list = str;
	else if (strcmp(type, "integer") == 0)
		list = num;
	if (list == NULL)
		return false;
	for (int i = 0; list[i]; i++)
		if (strcmp(list[i], kw) == 0)
			return true;
	return false;
}

static bool
is_annotation(const char *kw)
{
	return strcmp(kw, "description") == 0 || strcmp(kw, "title") == 0 || strcmp(kw, "$comment") == 0 ||
		strcmp(kw, "$schema") == 0 || strcmp(kw, "$id") == 0 || strcmp(kw, "examples") == 0 ||
		strcmp(kw, "default") == 0 || strcmp(kw, "$defs") == 0 || strcmp(kw, "definitions") == 0;
}

/* Resolve a local $ref to the JVal it names. */
static const JVal *
cresolve_ref(Compiler *c, const JVal *ref, char *name, size_t name_cap)
{
	const char *r = ref->s;
	const char *defs_kw;
	const JVal *defs;
	const JVal *target;
	size_t		prefix;
	size_t		o = 0;

	if (ref->t != J_STR)
		return cfail(c, P3_ERR_INVALID_ARG, "\"$ref\" must be a string at %s", c->path), NULL;
	if (strncmp(r, "#/$defs/", 8) == 0)
		defs_kw = "$defs", prefix = 8;
	else if (strncmp(r, "#/definitions/", 14) == 0)
		defs_kw = "definitions", prefix = 14;
	else
		return cfail(c, P3_ERR_INVALID_ARG,
					 "unsupported \"$ref\" \"%s\" at %s (only \"#/$defs/NAME\" and \"#/definitions/NAME\")",
					 r, c->path), NULL;
	/* JSON pointer unescaping of the name: ~1 is /, ~0 is ~ */
	for (const char *q = r + prefix; *q && o + 1 < name_cap; q++)
	{
		if (*q == '/')
			return cfail(c, P3_ERR_INVALID_ARG, "unsupported \"$ref\" \"%s\" at %s (nested pointer)", r, c->path), NULL;
		if (q[0] == '~' && (q[1] == '0' || q[1] == '1'))
		{
			name[o++] = q[1] == '0' ? '~' : '/';
			q++;
		}
		else
			name[o++] = *q;
	}
	name[o] = '\0';
	defs = p3s_jget(c->root, defs_kw);
	target = (defs && defs->t == J_OBJ) ? p3s_jget(defs, name) : NULL;
	if (target == NULL)
		return cfail(c, P3_ERR_INVALID_ARG, "\"$ref\" \"%s\" at %s names no definition", r, c->path), NULL;
	return target;
}

static int32_t
compile_schema(Compiler *c, const JVal *v)
{
	const JVal *type;
	const JVal *any;
	const char *types[8];
	int			n_types = 0;
	const char *any_kw = NULL;
	int32_t		id = -1;

	if (c->st != P3_OK)
		return -1;
	if (v->t != J_OBJ)
		return cfail(c, P3_ERR_INVALID_ARG, "schema at %s is not an object (boolean schemas are not supported)",
					 c->path), -1;
	for (size_t i = 0; i < v->n; i++)
	{
		bool		known = false;

		for (int k = 0; known_keywords[k]; k++)
			if (strlen(known_keywords[k]) == v->klens[i] && memcmp(known_keywords[k], v->keys[i], v->klens[i]) == 0)
				known = true;
		if (!known)
			return cfail(c, P3_ERR_INVALID_ARG, "unsupported keyword \"%s\" at %s", v->keys[i], c->path), -1;
		if ((strcmp(v->keys[i], "$defs") == 0 || strcmp(v->keys[i], "definitions") == 0) && v != c->root)
			return cfail(c, P3_ERR_INVALID_ARG, "\"%s\" is only supported at the root, found at %s",
						 v->keys[i], c->path), -1;
	}

	/* $ref: alone (but for annotations) */
	if (p3s_jget(v, "$ref"))
	{
		char		name[256];
		const JVal *target;

		for (size_t i = 0; i < v->n; i++)
			if (strcmp(v->keys[i], "$ref") != 0 && !is_annotation(v->keys[i]))
				return cfail(c, P3_ERR_INVALID_ARG, "keyword \"%s\" beside \"$ref\" is not supported at %s",
							 v->keys[i], c->path), -1;
		target = cresolve_ref(c, p3s_jget(v, "$ref"), name, sizeof(name));
		if (target == NULL)
			return -1;
		for (int32_t i = 0; i < c->n_refs; i++)
			if (c->refs[i].target == target)
			{
				if (c->refs[i].node < 0)
					return cfail(c, P3_ERR_INVALID_ARG, "recursive \"$ref\" \"%s\" at %s is not supported",
								 p3s_jget(v, "$ref")->s, c->path), -1;
				return c->refs[i].node;
			}
		if (!cgrow(c, (void **) &c->refs, &c->cap_refs, c->n_refs, sizeof(RefMemo)))
			return -1;
		c->refs[c->n_refs].target = target;
		c->refs[c->n_refs].node = -1;
		c->n_refs++;
		/* the definition's own path, for its errors */
		{
			char		saved[sizeof(c->path)];
			size_t		saved_len = c->path_len;
			int32_t		slot = c->n_refs - 1;

			memcpy(saved, c->path, sizeof(saved));
			c->path_len = (size_t) snprintf(c->path, sizeof(c->path), "$.%s",
											strncmp(p3s_jget(v, "$ref")->s, "#/$defs/", 8) == 0 ? "$defs" : "definitions");
			cpath_push(c, name, strlen(name), false);
			id = compile_schema(c, target);
			memcpy(c->path, saved, sizeof(saved));
			c->path_len = saved_len;
			if (id >= 0)
				c->refs[slot].node = id;
		}
		return id;
	}

	if (p3s_jget(v, "anyOf"))
		any_kw = "anyOf";
	if (p3s_jget(v, "oneOf"))
	{
		if (any_kw)
			return cfail(c, P3_ERR_INVALID_ARG, "\"anyOf\" together with \"oneOf\" is not supported at %s", c->path), -1;
		any_kw = "oneOf";
	}
	if (any_kw)
	{
		int32_t    *kids;

		any = p3s_jget(v, any_kw);
		for (size_t i = 0; i < v->n; i++)
			if (strcmp(v->keys[i], any_kw) != 0 && !is_annotation(v->keys[i]))
				return cfail(c, P3_ERR_INVALID_ARG, "keyword \"%s\" beside \"%s\" is not supported at %s",
							 v->keys[i], any_kw, c->path), -1;
		if (any->t != J_ARR || any->n == 0)
			return cfail(c, P3_ERR_INVALID_ARG, "\"%s\" must be a non-empty array at %s", any_kw, c->path), -1;
		kids = malloc(any->n * sizeof(int32_t));
		if (kids == NULL)
			return cnomem(c), -1;
		for (size_t i = 0; i < any->n; i++)
		{
			char		idx[24];
			int			l = snprintf(idx, sizeof(idx), "%zu", i);

			kids[i] = compile_member(c, any->items[i], any_kw, idx, (size_t) l, true);
			if (kids[i] < 0)
			{
				free(kids);
				return -1;
			}
		}
		id = cnew_node(c, K_ANYOF);
		if (id >= 0)
		{
			c->s->nodes[id].child_off = c->s->n_children;
			c->s->nodes[id].n_children = (int32_t) any->n;
			for (size_t i = 0; i < any->n && c->st == P3_OK; i++)
				if (cgrow(c, (void **) &c->s->children, &c->cap_children, c->s->n_children, sizeof(int32_t)))
					c->s->children[c->s->n_children++] = kids[i];
		}
		free(kids);
		if (c->st != P3_OK)
			return -1;
		c->s->nodes[id].desc_off = cdesc(c, v);
		return cfinish_node(c, id);
	}

	/* enum / const */
	if (p3s_jget(v, "enum") || p3s_jget(v, "const"))
	{
		const JVal *en = p3s_jget(v, "enum");
		const JVal *cn = p3s_jget(v, "const");
		const JVal *one[1];
		const JVal *const *vals;
		size_t		n;
		LitStr	   *strs;
		Buf			lb = {0};
		size_t	   *offs;

		if (en && cn)
			return cfail(c, P3_ERR_INVALID_ARG, "\"enum\" together with \"const\" is not supported at %s", c->path), -1;
		for (size_t i = 0; i < v->n; i++)
			if (strcmp(v->keys[i], en ? "enum" : "const") != 0 && strcmp(v->keys[i], "type") != 0 &&
				!is_annotation(v->keys[i]))
				return cfail(c, P3_ERR_INVALID_ARG, "keyword \"%s\" beside \"%s\" is not supported at %s",
							 v->keys[i], en ? "enum" : "const", c->path), -1;
		if (en)
		{
			if (en->t != J_ARR || en->n == 0)
				return cfail(c, P3_ERR_INVALID_ARG, "\"enum\" must be a non-empty array at %s", c->path), -1;
			vals = (const JVal *const *) en->items;
			n = en->n;
			for (size_t i = 0; i < n; i++)
				if (vals[i]->t == J_ARR || vals[i]->t == J_OBJ)
					return cfail(c, P3_ERR_INVALID_ARG, "\"enum\" values must be scalars at %s", c->path), -1;
		}
		else
		{
			one[0] = cn;
			vals = one;
			n = 1;
		}
		if ((int64_t) n > c->s->limits.max_states)
			return cfail(c, P3_ERR_INVALID_ARG, "schema needs more than %d automaton states (max_states) at %s",
						 (int) c->s->limits.max_states, c->path), -1;
		/* with a "type" too, every value must have one of its types */
		if (p3s_jget(v, "type"))
		{
			const JVal *ty = p3s_jget(v, "type");

			for (size_t i = 0; i < n; i++)
			{
				static const char *const names[] = {"null", "boolean", "boolean", "number", "string", "array", "object"};
				const char *have = names[vals[i]->t];
				int64_t		iv;
				bool		match = false;

				for (size_t k = 0; k < (ty->t == J_ARR ? ty->n : 1); k++)
				{
					const JVal *tk = ty->t == J_ARR ? ty->items[k] : ty;

					if (tk->t != J_STR)
						return cfail(c, P3_ERR_INVALID_ARG, "\"type\" must be a string or a list of strings at %s", c->path), -1;
					if (strcmp(tk->s, have) == 0 ||
						(strcmp(tk->s, "integer") == 0 && vals[i]->t == J_NUM && p3s_jnum_int64(vals[i], &iv)))
						match = true;
				}
				if (!match)
					return cfail(c, P3_ERR_INVALID_ARG, "\"%s\" value %zu does not have the \"type\" given at %s",
								 en ? "enum" : "const", i, c->path), -1;
			}
		}
		strs = malloc(n * sizeof(LitStr));
		offs = malloc((n + 1) * sizeof(size_t));
		if (strs == NULL || offs == NULL)
		{
			free(strs);
			free(offs);
			return cnomem(c), -1;
		}
		for (size_t i = 0; i < n; i++)
		{
			offs[i] = lb.len;
			p3s_buf_json_value(&lb, vals[i]);
		}
		offs[n] = lb.len;
		if (lb.oom)
			cnomem(c);
		else
			for (size_t i = 0; i < n; i++)
			{
				strs[i].p = lb.data + offs[i];
				strs[i].n = offs[i + 1] - offs[i];
			}
		id = c->st == P3_OK ? cliteral(c, strs, n) : -1;
		free(strs);
		free(offs);
		free(lb.data);
		if (id >= 0)
			c->s->nodes[id].desc_off = cdesc(c, v);
		return c->st == P3_OK ? id : -1;
	}

	/* type, or inferred from the keywords */
	type = p3s_jget(v, "type");
	if (type)
	{
		if (type->t == J_STR)
			types[n_types++] = type->s;
		else if (type->t == J_ARR && type->n > 0 && type->n <= 7)
		{
			for (size_t i = 0; i < type->n; i++)
			{
				if (type->items[i]->t != J_STR)
					return cfail(c, P3_ERR_INVALID_ARG, "\"type\" must be a string or a list of strings at %s", c->path), -1;
				for (int k = 0; k < n_types; k++)
					if (strcmp(types[k], type->items[i]->s) == 0)
						return cfail(c, P3_ERR_INVALID_ARG, "\"type\" lists \"%s\" twice at %s", types[k], c->path), -1;
				types[n_types++] = type->items[i]->s;
			}
		}
		else
			return cfail(c, P3_ERR_INVALID_ARG, "\"type\" must be a string or a list of strings at %s", c->path), -1;
	}
	else if (p3s_jget(v, "properties") || p3s_jget(v, "required") || p3s_jget(v, "additionalProperties"))
		types[n_types++] = "object";
	else if (p3s_jget(v, "items"))
		types[n_types++] = "array";
	else
		return cfail(c, P3_ERR_INVALID_ARG, "schema at %s has no \"type\" (nor enum, const, anyOf, oneOf, $ref)",
					 c->path[0] ? c->path : "$"), -1;
	for (int k = 0; k < n_types; k++)
	{
		static const char *const valid[] = {"object", "array", "string", "number", "integer", "boolean", "null", NULL};
		bool		ok = false;

		for (int i = 0; valid[i]; i++)
			if (strcmp(valid[i], types[k]) == 0)
				ok = true;
		if (!ok)
			return cfail(c, P3_ERR_INVALID_ARG, "unknown type \"%s\" at %s", types[k], c->path), -1;
	}
	for (size_t i = 0; i < v->n; i++)
	{
		bool		ok = is_annotation(v->keys[i]) || strcmp(v->keys[i], "type") == 0;

		for (int k = 0; k < n_types && !ok; k++)
			ok = keyword_applies(v->keys[i], types[k]);
		if (!ok)
		{
			if ((strcmp(v->keys[i], "minimum") == 0 || strcmp(v->keys[i], "maximum") == 0))
				return cfail(c, P3_ERR_INVALID_ARG, "keyword \"%s\" is only supported for integers, at %s",
							 v->keys[i], c->path), -1;
			return cfail(c, P3_ERR_INVALID_ARG, "keyword \"%s\" does not apply to type %s at %s",
						 v->keys[i], n_types == 1 ? types[0] : "list", c->path), -1;
		}
	}
	if (n_types == 1)
	{
		id = compile_type(c, v, types[0]);
		if (id >= 0)
			c->s->nodes[id].desc_off = cdesc(c, v);
		return c->st == P3_OK ? id : -1;
	}
	{
		int32_t		kids[8];

		for (int k = 0; k < n_types; k++)
		{
			kids[k] = compile_type(c, v, types[k]);
			if (kids[k] < 0)
				return -1;
		}
		id = cnew_node(c, K_ANYOF);
		if (id < 0)
			return -1;
		c->s->nodes[id].child_off = c->s->n_children;
		c->s->nodes[id].n_children = n_types;
		for (int k = 0; k < n_types; k++)
			if (cgrow(c, (void **) &c->s->children, &c->cap_children, c->s->n_children, sizeof(int32_t)))
				c->s->children[c->s->n_children++] = kids[k];
		if (c->st != P3_OK)
			return -1;
		c->s->nodes[id].desc_off = cdesc(c, v);
		return cfinish_node(c, id);
	}
}

static bool compute_min_docs(P3Schema *s);

P3SchemaLimits
p3_schema_default_limits(void)
{
	P3SchemaLimits l;

	l.max_states = P3_SCHEMA_DEFAULT_MAX_STATES;
	l.max_depth = P3_SCHEMA_DEFAULT_MAX_DEPTH;
	l.max_threads = P3_SCHEMA_DEFAULT_MAX_THREADS;
	return l;
}

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

void
p3_schema_free(P3Schema *s)
{
	if (s == NULL)
		return;
	if (s->cache)
	{
		for (int i = 0; i < MASK_CACHE_SLOTS; i++)
		{
			free(s->cache[i].key);
			free(s->cache[i].mask);
		}
		free(s->cache);
	}
	free(s->nodes);
	free(s->props);
	free(s->next_req);
	free(s->alts);
	free(s->children);
	free(s->pool);
	free(s->lits);
	free(s->lit_bytes);
	free(s->lit_targets);
	free(s->dfa_trans);
	free(s->dfa_accept);
	free(s->min_off);
	free(s->min_len);
	free(s->minpool);
	free(s);
}

P3Status
p3_schema_compile(const char *json, size_t len, const P3SchemaLimits *limits, P3Schema **out, P3Error *err)
{
	double		t0 = now_ms();
	Arena		arena = {0};
	P3Status	jst;
	Compiler	c;
	JVal	   *root;
	P3Schema   *s;
	size_t		bad;

	if (out)
		*out = NULL;
	if (json == NULL || out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "schema text and output must not be NULL");
	bad = p3s_utf8_check((const unsigned char *) json, len);
	if (bad < len)
		return p3_error(err, P3_ERR_INVALID_ARG, "schema is not valid UTF-8 (byte %zu)", bad);
	s = calloc(1, sizeof(P3Schema));
	if (s == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory compiling the schema");
	s->limits = limits ? *limits : p3_schema_default_limits();
	if (s->limits.max_states < 1 || s->limits.max_depth < 1 || s->limits.max_depth > P3_SCHEMA_MAX_MAX_DEPTH ||
		s->limits.max_threads < 1)
	{
		free(s);
		return p3_error(err, P3_ERR_INVALID_ARG, "schema limits out of range (max_states >= 1, 1 <= max_depth <= %d, max_threads >= 1)",
						P3_SCHEMA_MAX_MAX_DEPTH);
	}
	root = p3s_json_parse(json, len, &arena, err, &jst);
	if (root == NULL)
	{
		p3s_arena_free(&arena);
		free(s);
		return jst;
	}
	memset(&c, 0, sizeof(c));
	c.s = s;
	c.root = root;
	c.err = err;
	snprintf(c.path, sizeof(c.path), "$");
	c.path_len = 1;
	s->root = compile_schema(&c, root);
	if (c.st == P3_OK && c.pool.oom)
		cnomem(&c);
	if (c.st == P3_OK)
	{
		/* next required property index per property */
		s->next_req = malloc(((size_t) s->n_props + 1) * sizeof(int32_t));
		if (s->next_req == NULL)
			cnomem(&c);
		else
			for (int32_t i = 0; i < s->n_nodes; i++)
			{
				const Node *n = &s->nodes[i];
				int32_t		next = n->n_props;

				if (n->kind != K_OBJECT)
					continue;
				for (int32_t k = n->n_props - 1; k >= 0; k--)
				{
					if (s->props[n->prop_off + k].required)
						next = k;
					s->next_req[n->prop_off + k] = next;
				}
			}
	}
	free(c.refs);
	p3s_arena_free(&arena);
	s->pool = c.pool.data;
	s->pool_len = c.pool.len;
	if (c.st != P3_OK)
	{
		p3_schema_free(s);
		return c.st;
	}
	s->T = s->nodes[s->root].depth + 1;
	if (!compute_min_docs(s))
	{
		p3_schema_free(s);
		return p3_error(err, P3_ERR_NOMEM, "out of memory compiling the schema");
	}
	s->compile_ms = now_ms() - t0;
	*out = s;
	return P3_OK;
}

void
p3_schema_stats(const P3Schema *s, P3SchemaStats *st)
{
	memset(st, 0, sizeof(*st));
	if (s == NULL)
		return;
	st->n_nodes = s->n_nodes;
	st->n_states = s->n_states;
	st->depth = s->nodes[s->root].depth;
	st->compile_ms = s->compile_ms;
	st->mask_calls = s->mask_calls;
	st->mask_cache_hits = s->cache_hits;
}

/* ========================================================================
 * Matching: threads of frames (see the file header)
 * ======================================================================== */

typedef struct Frame
{
	uint16_t	node;
	uint8_t		phase;
	uint8_t		aux;
	uint32_t	a;
	uint64_t	b;
} Frame;

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

#define NUM_MAX_DIGITS 24
#define NUM_MAX_EXP_DIGITS 3

/* Output of a step: threads appended to a growable frame buffer. */
typedef struct Step
{
	const P3Schema *s;
	Frame	  **buf;			/* the owner's buffer (may be reallocated) */
	size_t	   *cap;			/* its capacity in frames */
	size_t		base;			/* first output thread at buf + base */
	uint32_t	n;				/* threads written */
	bool		overflow;		/* more than max_threads */
	bool		nomem;
} Step;

/* Add a thread to the output unless it is already there. */
static void
emit(Step *st, const Frame *th)
{
	size_t		T = (size_t) st->s->T;
	Frame	   *b = *st->buf;

	for (uint32_t i = 0; i < st->n; i++)
		if (memcmp(b + st->base + i * T, th, T * sizeof(Frame)) == 0)
			return;
	if (st->n >= (uint32_t) st->s->limits.max_threads)
	{
		st->overflow = true;
		return;
	}
	if (st->base + (st->n + 1) * T > *st->cap)
	{
		size_t		ncap = *st->cap * 2 + (st->n + 1) * T + 64;
		Frame	   *nb = realloc(*st->buf, ncap * sizeof(Frame));

		if (nb == NULL)
		{
			st->nomem = true;
			return;
		}
		*st->buf = nb;
		*st->cap = ncap;
		b = nb;
	}
	memcpy(b + st->base + st->n * T, th, T * sizeof(Frame));
	st->n++;
}

#define DEPTH(th) ((th)[0].a)

static void feed(Step *st, Frame *th, int c);

/*
 * Can an integer with this sign and magnitude prefix (digits >= 1) still
 * become a value within [lo, hi] (by adding zero or more digits)?
 */
static bool
int_viable(bool neg, uint64_t m, int digits, int64_t lo, int64_t hi)
{
	__int128	p = 1;

	for (int k = 0; digits + k <= 19; k++)
	{
		__int128	a = (__int128) m * p;
		__int128	b = a + p - 1;
		__int128	x,
					y;

		if (k > 0 && m == 0)
			break;				/* no leading zeros */
		if (neg)
			x = -b, y = -a;
		else
			x = a, y = b;
		if (x <= hi && y >= lo)
			return true;
		p *= 10;
	}
	return false;
}

static bool
int_in_range(bool neg, uint64_t m, int64_t lo, int64_t hi)
{
	__int128	v = neg ? -(__int128) m : (__int128) m;

	return v >= lo && v <= hi;
}

/* Whether the top frame could end here without another byte (number, literal). */
static bool
frame_endable(const P3Schema *s, const Frame *f)
{
	const Node *n = &s->nodes[f->node];

	switch (n->kind)
	{
		case K_NUMBER:
			return f->phase == N_ZERO || f->phase == N_INT || f->phase == N_FRAC || f->phase == N_EXP;
		case K_INTEGER:
			return (f->phase == I_ZERO) ||
				(f->phase == I_DIG && int_in_range(f->aux, f->b, n->imin, n->imax));
		case K_LITERAL:
			return s->lits[f->a].terminal;
		default:
			return false;
	}
}

/* Pop the top frame (the value is complete) and tell the parent. */
static void
pop(const P3Schema *s, Frame *th)
{
	uint32_t	d = DEPTH(th);
	Frame	   *p;

	memset(&th[d], 0, sizeof(Frame));
	DEPTH(th) = --d;
	if (d == 0)
		return;
	p = &th[d];
	if (s->nodes[p->node].kind == K_OBJECT)
	{
		p->phase = O_AFTER;
		p->a = (uint32_t) (p->b >> 32) + 1;
		p->b = 0;
	}
	else
	{
		p->phase = A_AFTER;
		p->a++;
	}
}

/* Push each alternative of node `node` and feed it c. */
static void
push_feed(Step *st, const Frame *th, int32_t node, int c)
{
	const P3Schema *s = st->s;
	const Node *n = &s->nodes[node];
	uint32_t	d = DEPTH(th);
	Frame		tmp[P3_SCHEMA_MAX_MAX_DEPTH + 1];

	for (int32_t k = 0; k < n->n_alts; k++)
	{
		int32_t		alt = s->alts[n->alt_off + k];
		Frame	   *f;

		memcpy(tmp, th, (size_t) s->T * sizeof(Frame));
		f = &tmp[d + 1];
		memset(f, 0, sizeof(*f));
		f->node = (uint16_t) alt;
		if (s->nodes[alt].kind == K_LITERAL)
			f->a = (uint32_t) s->nodes[alt].lit_root;
		DEPTH(tmp) = d + 1;
		feed(st, tmp, c);
	}
}

/* Feed byte c to the string frame f of thread th. */
static void
feed_string(Step *st, Frame *th, Frame *f, const Node *n, int c)
{
	const P3Schema *s = st->s;

	switch (f->phase)
	{
		case S_START:
			if (c != '"')
				return;
			f->phase = S_BODY;
			if (n->dfa_start >= 0)
				f->b = (uint64_t) n->dfa_start;
			emit(st, th);
			return;
		case S_BODY:
			if (c == '"')
			{
				if (f->a < n->min_len)
					return;
				if (n->dfa_start >= 0 && !s->dfa_accept[f->b])
					return;
				pop(s, th);
				emit(st, th);
				return;
			}
			if (n->dfa_start >= 0)
			{
				int32_t		t = s->dfa_trans[f->b * 256 + (uint64_t) c];

				if (t < 0)
					return;
				f->b = (uint64_t) t;
				emit(st, th);
				return;
			}
			if (c < 0x20)
				return;
			if (c < 0x80 || (c >= 0xC2 && c <= 0xF4))
			{
				if (f->a >= n->max_len)
					return;
				f->a++;
			}
			if (c == '\\')
				f->phase = S_ESC;
			else if (c < 0x80)
				;
			else if (c <= 0xC1)
				return;
			else if (c <= 0xDF)
				f->phase = S_U8, f->aux = 1;
			else if (c <= 0xEF)
				f->phase = S_U8, f->aux = (uint8_t) (2 | ((c == 0xE0 ? 1 : c == 0xED ? 2 : 0) << 2));
			else if (c <= 0xF4)
				f->phase = S_U8, f->aux = (uint8_t) (3 | ((c == 0xF0 ? 3 : c == 0xF4 ? 4 : 0) << 2));
			else
				return;
			emit(st, th);
			return;
		case S_U8:
			{
				int			code = f->aux >> 2;
				int			lo = code == 1 ? 0xA0 : code == 3 ? 0x90 : 0x80;
				int			hi = code == 2 ? 0x9F : code == 4 ? 0x8F : 0xBF;
				int			rem = f->aux & 3;

				if (c < lo || c > hi)
					return;
				rem--;
				f->aux = (uint8_t) rem;
				if (rem == 0)
					f->phase = S_BODY;
				emit(st, th);
				return;
			}
		case S_ESC:
			if (c == 'u')
			{
				f->phase = S_HEX;
				f->aux = 0;
				f->b = 0;
				emit(st, th);
				return;
			}
			if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' || c == 't')
			{
				f->phase = S_BODY;
				emit(st, th);
			}
			return;
		case S_HEX:
		case S_HEX2:
			{
				int			h = p3s_hexval(c);

				if (h < 0)
					return;
				f->b = f->b * 16 + (uint64_t) h;
				f->aux++;
				if (f->phase == S_HEX && f->aux == 2 && f->b >= 0xDC && f->b <= 0xDF)
					return;		/* a lone low surrogate */
				if (f->phase == S_HEX2 && f->aux == 1 && f->b != 0xD)
					return;
				if (f->phase == S_HEX2 && f->aux == 2 && (f->b < 0xDC || f->b > 0xDF))
					return;
				if (f->aux == 4)
				{
					if (f->phase == S_HEX && f->b >= 0xD800 && f->b <= 0xDBFF)
						f->phase = S_SUR_BS;
					else
						f->phase = S_BODY;
					f->aux = 0;
					f->b = 0;
				}
				emit(st, th);
				return;
			}
		case S_SUR_BS:
			if (c == '\\')
			{
				f->phase = S_SUR_U;
				emit(st, th);
			}
			return;
		case S_SUR_U:
			if (c == 'u')
			{
				f->phase = S_HEX2;
				f->aux = 0;
				f->b = 0;
				emit(st, th);
			}
			return;
	}
}

static void
feed_number(Step *st, Frame *th, Frame *f, int c)
{
	bool		digit = c >= '0' && c <= '9';

	switch (f->phase)
	{
		case N_START:
			if (c == '-')
				f->phase = N_MINUS;
			else if (c == '0')
				f->phase = N_ZERO;
			else if (digit)
				f->phase = N_INT, f->a = 1;
			else
				return;
			emit(st, th);
			return;
		case N_MINUS:
			if (c == '0')
				f->phase = N_ZERO;
			else if (digit)
				f->phase = N_INT, f->a = 1;
			else
				return;
			emit(st, th);
			return;
		case N_INT:
			if (digit)
			{
				if (f->a >= NUM_MAX_DIGITS)
					return;
				f->a++;
				emit(st, th);
				return;
			}
			/* FALLTHROUGH */
		case N_ZERO:
			if (c == '.')
				f->phase = N_DOT, f->a = 0;
			else if (c == 'e' || c == 'E')
				f->phase = N_E, f->a = 0;
			else
				return;
			emit(st, th);
			return;
		case N_DOT:
			if (!digit)
				return;
			f->phase = N_FRAC;
			f->a = 1;
			emit(st, th);
			return;
		case N_FRAC:
			if (digit)
			{
				if (f->a >= NUM_MAX_DIGITS)
					return;
				f->a++;
			}
			else if (c == 'e' || c == 'E')
				f->phase = N_E, f->a = 0;
			else
				return;
			emit(st, th);
			return;
		case N_E:
			if (c == '+' || c == '-')
				f->phase = N_ESIGN;
			else if (digit)
				f->phase = N_EXP, f->a = 1;
			else
				return;
			emit(st, th);
			return;
		case N_ESIGN:
			if (!digit)
				return;
			f->phase = N_EXP;
			f->a = 1;
			emit(st, th);
			return;
		case N_EXP:
			if (!digit || f->a >= NUM_MAX_EXP_DIGITS)
				return;
			f->a++;
			emit(st, th);
			return;
	}
}

static void
feed_integer(Step *st, Frame *th, Frame *f, const Node *n, int c)
{
	bool		digit = c >= '0' && c <= '9';
	uint64_t	d = (uint64_t) (c - '0');

	switch (f->phase)
	{
		case I_START:
			if (c == '-')
			{
				if (n->imin >= 0)
					return;
				f->phase = I_MINUS;
				f->aux = 1;
			}
			else if (c == '0')
			{
				if (!int_in_range(false, 0, n->imin, n->imax))
					return;
				f->phase = I_ZERO;
			}
			else if (digit)
			{
				if (!int_viable(false, d, 1, n->imin, n->imax))
					return;
				f->phase = I_DIG;
				f->a = 1;
				f->b = d;
			}
			else
				return;
			emit(st, th);
			return;
		case I_MINUS:
			if (!digit || c == '0' || !int_viable(true, d, 1, n->imin, n->imax))
				return;
			f->phase = I_DIG;
			f->a = 1;
			f->b = d;
			emit(st, th);
			return;
		case I_DIG:
			if (!digit || f->a >= 19 || !int_viable(f->aux, f->b * 10 + d, (int) f->a + 1, n->imin, n->imax))
				return;
			f->a++;
			f->b = f->b * 10 + d;
			emit(st, th);
			return;
		case I_ZERO:
			return;
	}
}

/*
 * Feed byte c to thread th (a scratch copy the callee may modify); every
 * successor goes to st.
 */
static void
feed(Step *st, Frame *th, int c)
{
	const P3Schema *s = st->s;
	uint32_t	d = DEPTH(th);
	Frame	   *f;
	const Node *n;

	if (d == 0)
		return;					/* the document is complete: nothing may follow */
	f = &th[d];
	n = &s->nodes[f->node];

	/* a value that may end here may also end before c: then c is its parent's */
	if (frame_endable(s, f) && d > 1)
	{
		Frame		tmp[P3_SCHEMA_MAX_MAX_DEPTH + 1];

		memcpy(tmp, th, (size_t) s->T * sizeof(Frame));
		pop(s, tmp);
		feed(st, tmp, c);
	}

	switch (n->kind)
	{
		case K_OBJECT:
			switch (f->phase)
			{
				case O_START:
					if (c != '{')
						return;
					f->phase = O_FIRST;
					f->a = 0;
					emit(st, th);
					return;
				case O_FIRST:
				case O_NEXT:
					if (c == '}' && f->phase == O_FIRST &&
						(n->n_props == 0 || s->next_req[n->prop_off] == n->n_props))
					{
						pop(s, th);
						emit(st, th);
						return;
					}
					if (c == '"' && f->a < (uint32_t) n->n_props)
					{
						int32_t		last = s->next_req[n->prop_off + (int32_t) f->a];
						Frame		tmp[P3_SCHEMA_MAX_MAX_DEPTH + 1];

						if (last >= n->n_props)
							last = n->n_props - 1;
						for (int32_t j = (int32_t) f->a; j <= last; j++)
						{
							memcpy(tmp, th, (size_t) s->T * sizeof(Frame));
							tmp[d].phase = O_KEY;
							tmp[d].b = ((uint64_t) j << 32) | 1;
							if (s->props[n->prop_off + j].key_len == 1)
								tmp[d].phase = O_VALUE;
							emit(st, tmp);
						}
					}
					return;
				case O_KEY:
					{
						const Prop *p = &s->props[n->prop_off + (int32_t) (f->b >> 32)];
						uint32_t	pos = (uint32_t) f->b;

						if ((unsigned char) s->pool[p->key_off + pos] != c)
							return;
						pos++;
						f->b = (f->b & ~(uint64_t) 0xFFFFFFFF) | pos;
						if (pos == p->key_len)
							f->phase = O_VALUE;
						emit(st, th);
						return;
					}
				case O_VALUE:
					push_feed(st, th, s->props[n->prop_off + (int32_t) (f->b >> 32)].child, c);
					return;
				case O_AFTER:
					if (c == ',' && f->a < (uint32_t) n->n_props)
					{
						f->phase = O_NEXT;
						emit(st, th);
					}
					else if (c == '}' && (f->a >= (uint32_t) n->n_props ||
										  s->next_req[n->prop_off + (int32_t) f->a] == n->n_props))
					{
						pop(s, th);
						emit(st, th);
					}
					return;
			}
			return;
		case K_ARRAY:
			switch (f->phase)
			{
				case A_START:
					if (c != '[')
						return;
					f->phase = A_FIRST;
					f->a = 0;
					emit(st, th);
					return;
				case A_FIRST:
					if (c == ']')
					{
						if (n->min_items == 0)
						{
							pop(s, th);
							emit(st, th);
						}
						return;
					}
					if (n->max_items == 0)
						return;
					f->phase = A_ITEM;
					push_feed(st, th, n->item, c);
					return;
				case A_NEXT:
					f->phase = A_ITEM;
					push_feed(st, th, n->item, c);
					return;
				case A_AFTER:
					if (c == ',' && f->a < n->max_items)
					{
						f->phase = A_NEXT;
						emit(st, th);
					}
					else if (c == ']' && f->a >= n->min_items)
					{
						pop(s, th);
						emit(st, th);
					}
					return;
			}
			return;
		case K_STRING:
			feed_string(st, th, f, n, c);
			return;
		case K_NUMBER:
			feed_number(st, th, f, c);
			return;
		case K_INTEGER:
			feed_integer(st, th, f, n, c);
			return;
		case K_LITERAL:
			{
				const LitNode *ln = &s->lits[f->a];
				const uint8_t *bytes = s->lit_bytes + ln->edge_off;
				int			lo = 0,
							hi = ln->n_edges - 1;

				/* edges are sorted by byte */
				while (lo <= hi)
				{
					int			mid = (lo + hi) / 2;

					if (bytes[mid] == c)
					{
						f->a = (uint32_t) s->lit_targets[ln->edge_off + (uint32_t) mid];
						/* a literal ends with its last byte unless it could go on */
						if (s->lits[f->a].n_edges == 0)
							pop(s, th);
						emit(st, th);
						return;
					}
					if (bytes[mid] < c)
						lo = mid + 1;
					else
						hi = mid - 1;
				}
				return;
			}
		case K_ANYOF:
			return;				/* never on a stack */
	}
}

/*
 * Map the threads at buf[in .. in + n_in * T) over byte c into threads
 * at buf[out ..); returns how many (0: dead).  *status gets an error for
 * overflow / no memory.
 */
static uint32_t
step_set(const P3Schema *s, Frame **buf, size_t *cap, size_t in, uint32_t n_in, size_t out, int c,
		 P3Status *status)
{
	Step		st;
	Frame		tmp[P3_SCHEMA_MAX_MAX_DEPTH + 1];
	size_t		T = (size_t) s->T;

	st.s = s;
	st.buf = buf;
	st.cap = cap;
	st.base = out;
	st.n = 0;
	st.overflow = false;
	st.nomem = false;
	for (uint32_t i = 0; i < n_in; i++)
	{
		memcpy(tmp, *buf + in + i * T, T * sizeof(Frame));
		feed(&st, tmp, c);
	}
	if (st.nomem)
		*status = P3_ERR_NOMEM;
	else if (st.overflow)
		*status = P3_ERR_INVALID_ARG;
	return st.n;
}

/* A literal frame whose node is terminal with no edges pops at once (see K_LITERAL); a thread's set
 * completeness: */
static bool
set_complete(const P3Schema *s, const Frame *buf, uint32_t n)
{
	size_t		T = (size_t) s->T;

	for (uint32_t i = 0; i < n; i++)
	{
		const Frame *th = buf + i * T;

		if (DEPTH(th) == 0)
			return true;
		if (DEPTH(th) == 1 && frame_endable(s, &th[1]))
			return true;
	}
	return false;
}

/* ========================================================================
 * The vocabulary trie
 * ======================================================================== */

struct P3VocabTrie
{
	uint64_t	serial;			/* unique per trie built, for the mask caches (addresses get reused) */
	int32_t		n_vocab;
	int32_t		n_nodes;		/* preorder, the root left out */
	uint8_t    *byte;			/* per node: its byte */
	uint16_t   *depth;			/* per node: 1 + depth of its parent */
	uint32_t   *end;			/* per node: index after its subtree */
	uint32_t   *tok_start;		/* n_nodes + 1: tokens ending at node i are toks[tok_start[i] .. tok_start[i + 1]) */
	int32_t    *toks;
	uint8_t    *free_sub;		/* per node: every token of the subtree is free */
	uint8_t    *sub_chars;		/* per node: most characters of a token in the subtree (capped at 255) */
	uint8_t    *tok_chars;		/* per entry of toks: the token's characters (capped at 255) */
	uint32_t   *free_mask;		/* the free tokens */
	int32_t		max_len;		/* longest token, bytes */
	int32_t    *eog;
	int32_t		n_eog;
	uint32_t   *piece_off;		/* n_vocab + 1 */
	char	   *pieces;
};

typedef struct PieceRef
{
	const char *p;
	uint32_t	n;
	int32_t		id;
} PieceRef;

static int
piece_cmp(const void *a, const void *b)
{
	const PieceRef *x = a,
			   *y = b;
	uint32_t	m = x->n < y->n ? x->n : y->n;
	int			r = memcmp(x->p, y->p, m);

	if (r)
		return r;
	if (x->n != y->n)
		return x->n < y->n ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* A token's bytes are free: complete UTF-8, no ", \ or control characters. */
static bool
piece_free(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) p[i];

		if (c < 0x20 || c == '"' || c == '\\')
			return false;
	}
	return p3s_utf8_check((const unsigned char *) p, n) == n;
}

void
p3_vocab_trie_free(P3VocabTrie *t)
{
	if (t == NULL)
		return;
	free(t->byte);
	free(t->depth);
	free(t->end);
	free(t->tok_start);
	free(t->toks);
	free(t->free_sub);
	free(t->sub_chars);
	free(t->tok_chars);
	free(t->free_mask);
	free(t->eog);
	free(t->piece_off);
	free(t->pieces);
	free(t);
}

int32_t
p3_vocab_trie_n_vocab(const P3VocabTrie *t)
{
	return t ? t->n_vocab : 0;
}

P3Status
p3_vocab_trie_new(const P3Tokenizer *tok, P3VocabTrie **out, P3Error *err)
{
	P3VocabTrie *t;
	int32_t		nv;
	size_t		total = 0;
	PieceRef   *refs = NULL;
	int32_t		n_refs = 0;
	size_t		cap_nodes;
	uint32_t   *path = NULL;	/* node index per depth */
	int32_t		path_len = 0;
	const PieceRef *prev = NULL;
	uint32_t   *final_node = NULL;

	if (out)
		*out = NULL;
	if (tok == NULL || out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "tokenizer and output must not be NULL");
	nv = p3_tokenizer_n_vocab(tok);
	t = calloc(1, sizeof(*t));
	if (t == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory building the vocabulary trie");
	t->n_vocab = nv;
	{
		static uint64_t trie_serial;

		t->serial = __atomic_add_fetch(&trie_serial, 1, __ATOMIC_RELAXED);
	}
	t->piece_off = malloc(((size_t) nv + 1) * sizeof(uint32_t));
	if (t->piece_off == NULL)
		goto nomem;
	for (int32_t i = 0; i < nv; i++)
		total += p3_token_to_piece(tok, i, false, NULL, 0);
	if (total > UINT32_MAX - 1)
		goto nomem;
	t->pieces = malloc(total + 1);
	refs = malloc(((size_t) nv + 1) * sizeof(PieceRef));
	t->free_mask = calloc(((size_t) nv + 31) / 32, sizeof(uint32_t));
	t->eog = malloc(((size_t) nv + 1) * sizeof(int32_t));
	if (!t->pieces || !refs || !t->free_mask || !t->eog)
		goto nomem;
	total = 0;
	for (int32_t i = 0; i < nv; i++)
	{
		size_t		n = p3_token_to_piece(tok, i, false, t->pieces + total, SIZE_MAX);

		t->piece_off[i] = (uint32_t) total;
		if (p3_tokenizer_is_eog(tok, i))
			t->eog[t->n_eog++] = i;
		if (n > 0)
		{
			refs[n_refs].p = t->pieces + total;
			refs[n_refs].n = (uint32_t) n;
			refs[n_refs].id = i;
			n_refs++;
			if ((int32_t) n > t->max_len)
				t->max_len = (int32_t) n;
			if (piece_free(t->pieces + total, n))
				t->free_mask[i / 32] |= 1u << (i % 32);
		}
		total += n;
	}
	t->piece_off[nv] = (uint32_t) total;
	qsort(refs, (size_t) n_refs, sizeof(PieceRef), piece_cmp);

	/* preorder trie: at most one node per byte of all pieces */
	cap_nodes = 1;
	for (int32_t i = 0; i < n_refs; i++)
		cap_nodes += refs[i].n;
	t->byte = malloc(cap_nodes);
	t->depth = malloc(cap_nodes * sizeof(uint16_t));
	t->end = malloc(cap_nodes * sizeof(uint32_t));
	t->tok_start = malloc((cap_nodes + 1) * sizeof(uint32_t));
	t->toks = malloc(((size_t) n_refs + 1) * sizeof(int32_t));
	t->free_sub = malloc(cap_nodes);
	t->sub_chars = malloc(cap_nodes);
	t->tok_chars = malloc((size_t) n_refs + 1);
	path = malloc(((size_t) t->max_len + 1) * sizeof(uint32_t));
	final_node = malloc(((size_t) n_refs + 1) * sizeof(uint32_t));
	if (!final_node ||
		!t->byte || !t->depth || !t->end || !t->tok_start || !t->toks || !t->free_sub || !t->sub_chars || !t->tok_chars || !path)
		goto nomem;
	if (t->max_len > 65535)
	{
		p3_vocab_trie_free(t);
		free(refs);
		free(path);
		free(final_node);
		return p3_error(err, P3_ERR_INVALID_ARG, "a token longer than 65535 bytes");
	}
	for (int32_t r = 0; r < n_refs; r++)
	{
		const PieceRef *p = &refs[r];
		int32_t		common = 0;

		if (prev)
			while ((uint32_t) common < prev->n && (uint32_t) common < p->n && prev->p[common] == p->p[common])
				common++;
		/* close the nodes below the common prefix */
		while (path_len > common)
		{
			t->end[path[path_len - 1]] = (uint32_t) t->n_nodes;
			path_len--;
		}
		while ((uint32_t) path_len < p->n)
		{
			int32_t		id = t->n_nodes++;

			t->byte[id] = (uint8_t) p->p[path_len];
			t->depth[id] = (uint16_t) (path_len + 1);
			path[path_len++] = (uint32_t) id;
		}
		/* the token ends at the deepest node (tokens are appended in node order) */
		t->toks[r] = p->id;
		final_node[r] = path[p->n - 1];
		prev = p;
	}
	while (path_len > 0)
	{
		t->end[path[path_len - 1]] = (uint32_t) t->n_nodes;
		path_len--;
	}
	/* tok_start[i]: the first token whose final node is >= i (final nodes grow with r) */
	{
		uint32_t	r = 0;

		for (int32_t i = 0; i <= t->n_nodes; i++)
		{
			while (r < (uint32_t) n_refs && final_node[r] < (uint32_t) i)
				r++;
			t->tok_start[i] = r;
		}
	}
	/* free subtrees, bottom-up (reverse preorder: children come after the parent) */
	for (int32_t i = t->n_nodes - 1; i >= 0; i--)
	{
		bool		all = true;
		uint32_t	chars = 0;

		for (uint32_t k = t->tok_start[i]; k < t->tok_start[i + 1]; k++)
		{
			int32_t		id = t->toks[k];
			uint32_t	nc = 0;

			if (!((t->free_mask[id / 32] >> (id % 32)) & 1))
				all = false;
			for (uint32_t b = t->piece_off[id]; b < t->piece_off[id + 1]; b++)
				if (((unsigned char) t->pieces[b] & 0xC0) != 0x80)
					nc++;
			t->tok_chars[k] = (uint8_t) (nc > 255 ? 255 : nc);
			if (nc > chars)
				chars = nc;
		}
		for (uint32_t ch = (uint32_t) i + 1; ch < t->end[i]; ch = t->end[ch])
		{
			if (!t->free_sub[ch])
				all = false;
			if (t->sub_chars[ch] > chars)
				chars = t->sub_chars[ch];
		}
		t->free_sub[i] = all;
		t->sub_chars[i] = (uint8_t) (chars > 255 ? 255 : chars);
	}
	free(refs);
	free(path);
	free(final_node);
	*out = t;
	return P3_OK;

nomem:
	free(refs);
	free(path);
	free(final_node);
	p3_vocab_trie_free(t);
	return p3_error(err, P3_ERR_NOMEM, "out of memory building the vocabulary trie");
}

/* ========================================================================
 * The matcher
 * ======================================================================== */

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

/* Make sure buf holds n frames. */
static bool
frames_reserve(Frame **buf, size_t *cap, size_t n)
{
	Frame	   *nb;

	if (n <= *cap)
		return true;
	nb = realloc(*buf, n * sizeof(Frame));
	if (nb == NULL)
		return false;
	*buf = nb;
	*cap = n;
	return true;
}

void
p3_schema_matcher_reset(P3SchemaMatcher *m)
{
	const P3Schema *s = m->s;
	size_t		T = (size_t) s->T;
	const Node *root = &s->nodes[s->root];

	/* one thread per alternative of the root, each a single frame in its start phase */
	m->n_cur = 0;
	for (int32_t k = 0; k < root->n_alts; k++)
	{
		Frame	   *th = m->cur + m->n_cur * T;
		int32_t		alt = s->alts[root->alt_off + k];

		memset(th, 0, T * sizeof(Frame));
		DEPTH(th) = 1;
		th[1].node = (uint16_t) alt;
		if (s->nodes[alt].kind == K_LITERAL)
			th[1].a = (uint32_t) s->nodes[alt].lit_root;
		m->n_cur++;
	}
}

P3Status
p3_schema_matcher_new(P3Schema *s, const P3VocabTrie *trie, P3SchemaMatcher **out, P3Error *err)
{
	P3SchemaMatcher *m;
	size_t		T;

	if (out)
		*out = NULL;
	if (s == NULL || out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "schema and output must not be NULL");
	T = (size_t) s->T;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory creating a schema matcher");
	m->s = s;
	m->trie = trie;
	m->cap_cur = ((size_t) s->nodes[s->root].n_alts + 4) * T;
	m->cur = malloc(m->cap_cur * sizeof(Frame));
	m->cap_scratch = 64 * T;
	m->scratch = malloc(m->cap_scratch * sizeof(Frame));
	if (m->cur == NULL || m->scratch == NULL)
	{
		p3_schema_matcher_free(m);
		return p3_error(err, P3_ERR_NOMEM, "out of memory creating a schema matcher");
	}
	p3_schema_matcher_reset(m);
	*out = m;
	return P3_OK;
}

void
p3_schema_matcher_free(P3SchemaMatcher *m)
{
	if (m == NULL)
		return;
	free(m->cur);
	free(m->scratch);
	free(m->level_n);
	free(m->level_off);
	free(m->key);
	free(m);
}

P3Status
p3_schema_matcher_copy(P3SchemaMatcher *dst, const P3SchemaMatcher *src, P3Error *err)
{
	size_t		n;

	if (dst == NULL || src == NULL || dst->s != src->s)
		return p3_error(err, P3_ERR_INVALID_ARG, "matchers to copy must share their schema");
	n = (size_t) src->n_cur * (size_t) src->s->T;
	if (!frames_reserve(&dst->cur, &dst->cap_cur, n))
		return p3_error(err, P3_ERR_NOMEM, "out of memory copying a schema matcher");
	memcpy(dst->cur, src->cur, n * sizeof(Frame));
	dst->n_cur = src->n_cur;
	return P3_OK;
}

P3Status
p3_schema_matcher_clone(const P3SchemaMatcher *m, P3SchemaMatcher **out, P3Error *err)
{
	P3Status	st = p3_schema_matcher_new(m->s, m->trie, out, err);

	if (st != P3_OK)
		return st;
	(*out)->tok = m->tok;
	st = p3_schema_matcher_copy(*out, m, err);
	if (st != P3_OK)
	{
		p3_schema_matcher_free(*out);
		*out = NULL;
	}
	return st;
}

/*
 * Run bytes over the current set into m->scratch; returns the number of
 * threads (at scratch[0..]), 0 if dead; *st is set on overflow / nomem.
 */
static uint32_t
run_bytes(const P3SchemaMatcher *mc, const uint8_t *bytes, size_t len, P3Status *st)
{
	P3SchemaMatcher *m = (P3SchemaMatcher *) mc;	/* scratch only */
	size_t		T = (size_t) m->s->T;
	uint32_t	n = m->n_cur;

	*st = P3_OK;
	if (!frames_reserve(&m->scratch, &m->cap_scratch, (size_t) n * T * 2 + T))
	{
		*st = P3_ERR_NOMEM;
		return 0;
	}
	memcpy(m->scratch, m->cur, (size_t) n * T * sizeof(Frame));
	for (size_t i = 0; i < len && n > 0; i++)
	{
		size_t		out = (size_t) n * T;

		n = step_set(m->s, &m->scratch, &m->cap_scratch, 0, n, out, bytes[i], st);
		if (*st != P3_OK)
			return 0;
		memmove(m->scratch, m->scratch + out, (size_t) n * T * sizeof(Frame));
	}
	return n;
}

P3Status
p3_schema_matcher_accept_bytes(P3SchemaMatcher *m, const void *bytes, size_t len, P3Error *err)
{
	P3Status	st;
	uint32_t	n;
	size_t		T = (size_t) m->s->T;

	if (len == 0)
		return P3_OK;
	n = run_bytes(m, bytes, len, &st);
	if (st == P3_ERR_NOMEM)
		return p3_error(err, P3_ERR_NOMEM, "out of memory matching the schema");
	if (st != P3_OK)
		return p3_error(err, P3_ERR_INVALID_ARG,
						"output is ambiguous beyond %d parses at once (max_threads)",
						(int) m->s->limits.max_threads);
	if (n == 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "output does not match the schema");
	if (!frames_reserve(&m->cur, &m->cap_cur, (size_t) n * T))
		return p3_error(err, P3_ERR_NOMEM, "out of memory matching the schema");
	memcpy(m->cur, m->scratch, (size_t) n * T * sizeof(Frame));
	m->n_cur = n;
	return P3_OK;
}

bool
p3_schema_matcher_allows(const P3SchemaMatcher *m, const void *bytes, size_t len)
{
	P3Status	st;

	if (len == 0)
		return true;
	return run_bytes(m, bytes, len, &st) > 0 && st == P3_OK;
}

bool
p3_schema_matcher_is_complete(const P3SchemaMatcher *m)
{
	return set_complete(m->s, m->cur, m->n_cur);
}

bool
p3_schema_matcher_can_continue(const P3SchemaMatcher *m)
{
	for (int c = 0; c < 256; c++)
	{
		uint8_t		b = (uint8_t) c;

		if (p3_schema_matcher_allows(m, &b, 1))
			return true;
	}
	return false;
}

size_t
p3_schema_matcher_forced(const P3SchemaMatcher *m, char *buf, size_t cap)
{
	P3SchemaMatcher *tmp;
	size_t		len = 0;

	if (p3_schema_matcher_clone(m, &tmp, NULL) != P3_OK)
		return 0;
	while (len < cap && !p3_schema_matcher_is_complete(tmp))
	{
		int			only = -1;
		int			count = 0;

		for (int c = 0; c < 256 && count < 2; c++)
		{
			uint8_t		b = (uint8_t) c;

			if (p3_schema_matcher_allows(tmp, &b, 1))
			{
				only = c;
				count++;
			}
		}
		if (count != 1)
			break;
		buf[len] = (char) only;
		if (p3_schema_matcher_accept_bytes(tmp, &buf[len], 1, NULL) != P3_OK)
			break;
		len++;
	}
	p3_schema_matcher_free(tmp);
	return len;
}

/* ---- masks ---- */

static uint64_t
hash_bytes(const uint8_t *p, size_t n)
{
	uint64_t	h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h ^ (h >> 29);
}

/* Clamp a counter into the class of values no token of <= L bytes can tell apart. */
static uint32_t
clamp_count(uint32_t x, uint32_t lo, uint32_t max, uint32_t L)
{
	uint32_t	hi;

	if (max == NO_LIMIT)
		hi = UINT32_MAX;
	else if (max > L + 1)
		hi = max - L - 1;
	else
		return x;
	if (lo <= hi && x >= lo && x <= hi)
		return lo;
	return x;
}

/* The cache key of the current state into m->key; returns its length. */
static size_t
make_key(P3SchemaMatcher *m, uint32_t L)
{
	const P3Schema *s = m->s;
	size_t		T = (size_t) s->T;
	size_t		n = (size_t) m->n_cur * T * sizeof(Frame);
	Frame	   *k;

	if (n > m->cap_key)
	{
		uint8_t    *nk = realloc(m->key, n);

		if (nk == NULL)
			return 0;
		m->key = nk;
		m->cap_key = n;
	}
	memcpy(m->key, m->cur, n);
	k = (Frame *) m->key;
	for (uint32_t i = 0; i < m->n_cur; i++)
	{
		Frame	   *th = k + i * T;

		for (uint32_t d = 1; d <= DEPTH(th); d++)
		{
			const Node *nd = &s->nodes[th[d].node];

			if (nd->kind == K_STRING && th[d].phase != S_START && nd->dfa_start < 0)
				th[d].a = clamp_count(th[d].a, nd->min_len, nd->max_len, L);
			else if (nd->kind == K_ARRAY && th[d].phase != A_START)
				th[d].a = clamp_count(th[d].a, nd->min_items, nd->max_items, L);
		}
	}
	return n;
}

/* The walk itself: mask (all words) of the current state. */
static P3Status
walk_mask(P3SchemaMatcher *m, const P3VocabTrie *t, uint32_t *mask, P3Error *err)
{
	const P3Schema *s = m->s;
	size_t		T = (size_t) s->T;
	size_t		words = ((size_t) t->n_vocab + 31) / 32;
	bool		fast = false;
	uint32_t	free_room = 0;	/* characters a free token may have (some thread in a string body) */
	bool		only_strings = m->n_cur > 0;	/* every thread in the body of a plain string */

	if (m->level_cap < t->max_len + 1)
	{
		uint32_t   *ln = realloc(m->level_n, ((size_t) t->max_len + 1) * sizeof(uint32_t));
		size_t	   *lo;

		if (ln == NULL)
			return p3_error(err, P3_ERR_NOMEM, "out of memory computing a token mask");
		m->level_n = ln;
		lo = realloc(m->level_off, ((size_t) t->max_len + 1) * sizeof(size_t));
		if (lo == NULL)
			return p3_error(err, P3_ERR_NOMEM, "out of memory computing a token mask");
		m->level_off = lo;
		m->level_cap = t->max_len + 1;
	}
	memset(mask, 0, words * sizeof(uint32_t));
	for (uint32_t i = 0; i < m->n_cur; i++)
	{
		const Frame *th = m->cur + i * T;
		const Frame *f = &th[DEPTH(th)];
		const Node *nd;

		if (DEPTH(th) == 0)
		{
			only_strings = false;
			continue;
		}
		nd = &s->nodes[f->node];
		if (!(nd->kind == K_STRING && f->phase == S_BODY && nd->dfa_start < 0))
			only_strings = false;
		if (nd->kind == K_STRING && f->phase == S_BODY && nd->dfa_start < 0)
		{
			uint32_t	room = nd->max_len == NO_LIMIT ? UINT32_MAX : nd->max_len - f->a;

			if (room >= (uint32_t) t->max_len)
				fast = true;
			if (room > free_room)
				free_room = room;
		}
	}
	if (fast)
		memcpy(mask, t->free_mask, words * sizeof(uint32_t));
	if (!frames_reserve(&m->scratch, &m->cap_scratch, (size_t) m->n_cur * T * 4))
		return p3_error(err, P3_ERR_NOMEM, "out of memory computing a token mask");
	memcpy(m->scratch, m->cur, (size_t) m->n_cur * T * sizeof(Frame));
	m->level_off[0] = 0;
	m->level_n[0] = m->n_cur;
	for (int32_t i = 0; i < t->n_nodes;)
	{
		uint32_t	d = t->depth[i];
		size_t		in = m->level_off[d - 1];
		uint32_t	n_in = m->level_n[d - 1];
		size_t		out = in + (size_t) n_in * T;
		P3Status	st = P3_OK;
		uint32_t	n;

		if (t->free_sub[i] && (fast || t->sub_chars[i] <= free_room || only_strings))
		{
			/*
			 * Every token below is free: allowed where it fits the string
			 * (with other kinds of threads about, only a subtree that fits
			 * whole is decided here), without stepping.
			 */
			if (!fast)
				for (uint32_t k = t->tok_start[i]; k < t->tok_start[t->end[i]]; k++)
					if (t->tok_chars[k] <= free_room)
						mask[t->toks[k] / 32] |= 1u << (t->toks[k] % 32);
			i = (int32_t) t->end[i];
			continue;
		}
		n = step_set(s, &m->scratch, &m->cap_scratch, in, n_in, out, t->byte[i], &st);
		if (st == P3_ERR_NOMEM)
			return p3_error(err, P3_ERR_NOMEM, "out of memory computing a token mask");
		if (n == 0 || st != P3_OK)
		{
			/* dead (or too ambiguous, which accept would refuse too) */
			i = (int32_t) t->end[i];
			continue;
		}
		m->level_off[d] = out;
		m->level_n[d] = n;
		for (uint32_t k = t->tok_start[i]; k < t->tok_start[i + 1]; k++)
			mask[t->toks[k] / 32] |= 1u << (t->toks[k] % 32);
		i++;
	}
	if (set_complete(s, m->cur, m->n_cur))
		for (int32_t k = 0; k < t->n_eog; k++)
			mask[t->eog[k] / 32] |= 1u << (t->eog[k] % 32);
	return P3_OK;
}

static void
cache_clear(P3Schema *s)
{
	if (s->cache == NULL)
		return;
	for (int i = 0; i < MASK_CACHE_SLOTS; i++)
	{
		free(s->cache[i].key);
		free(s->cache[i].mask);
		s->cache[i].key = NULL;
		s->cache[i].mask = NULL;
	}
	s->cache_used = 0;
}

P3Status
p3_schema_matcher_mask(P3SchemaMatcher *m, const P3VocabTrie *vocab, uint32_t *mask_bits, P3Error *err)
{
	P3Schema   *s = m->s;
	const P3VocabTrie *t = vocab ? vocab : m->trie;
	size_t		words;
	size_t		klen;
	uint64_t	h;
	uint32_t	slot;
	P3Status	st;

	if (t == NULL || mask_bits == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "a token mask needs a vocabulary trie and an output");
	words = ((size_t) t->n_vocab + 31) / 32;
	s->mask_calls++;
	if (s->cache_trie != t->serial)
	{
		cache_clear(s);
		s->cache_trie = t->serial;
	}
	if (s->cache == NULL)
	{
		s->cache = calloc(MASK_CACHE_SLOTS, sizeof(MaskCacheEntry));
		if (s->cache == NULL)
			return walk_mask(m, t, mask_bits, err);
	}
	klen = make_key(m, (uint32_t) t->max_len);
	if (klen == 0)
		return walk_mask(m, t, mask_bits, err);
	h = hash_bytes(m->key, klen);
	slot = (uint32_t) (h % MASK_CACHE_SLOTS);
	while (s->cache[slot].key)
	{
		MaskCacheEntry *e = &s->cache[slot];

		if (e->hash == h && e->key_len == klen && memcmp(e->key, m->key, klen) == 0)
		{
			memcpy(mask_bits, e->mask, words * sizeof(uint32_t));
			s->cache_hits++;
			return P3_OK;
		}
		slot = (slot + 1) % MASK_CACHE_SLOTS;
	}
	st = walk_mask(m, t, mask_bits, err);
	if (st != P3_OK)
		return st;
	if (s->cache_used >= MASK_CACHE_SLOTS / 2)
	{
		cache_clear(s);
		slot = (uint32_t) (h % MASK_CACHE_SLOTS);
	}
	{
		MaskCacheEntry *e = &s->cache[slot];

		e->key = malloc(klen);
		e->mask = malloc(words * sizeof(uint32_t));
		if (e->key == NULL || e->mask == NULL)
		{
			free(e->key);
			free(e->mask);
			e->key = NULL;
			e->mask = NULL;
			return P3_OK;		/* the mask is right; just not cached */
		}
		memcpy(e->key, m->key, klen);
		memcpy(e->mask, mask_bits, words * sizeof(uint32_t));
		e->key_len = (uint32_t) klen;
		e->hash = h;
		s->cache_used++;
	}
	return P3_OK;
}

/* ---- the decoder constraint ---- */

static P3Status
constraint_mask(void *state, uint32_t *mask, int32_t n_vocab, P3Error *err)
{
	P3SchemaMatcher *m = state;

	if (n_vocab != m->trie->n_vocab)
		return p3_error(err, P3_ERR_INVALID_ARG, "schema constraint built for %d tokens, the decoder has %d",
						(int) m->trie->n_vocab, (int) n_vocab);
	return p3_schema_matcher_mask(m, NULL, mask, err);
}

static P3Status
constraint_accept(void *state, int32_t token, P3Error *err)
{
	P3SchemaMatcher *m = state;
	const P3VocabTrie *t = m->trie;
	uint32_t	off,
				len;
	P3Error		e;

	if (token < 0 || token >= t->n_vocab)
		return p3_error(err, P3_ERR_INVALID_ARG, "token %d out of range", (int) token);
	off = t->piece_off[token];
	len = t->piece_off[token + 1] - off;
	if (len == 0)
	{
		if (p3_tokenizer_is_eog(m->tok, token) && p3_schema_matcher_is_complete(m))
			return P3_OK;
		return p3_error(err, P3_ERR_INVALID_ARG, "token %d has no text and is not allowed here", (int) token);
	}
	if (p3_schema_matcher_accept_bytes(m, t->pieces + off, len, &e) != P3_OK)
		return p3_error(err, e.status, "token %d does not continue the document: %s", (int) token, e.message);
	return P3_OK;
}

static bool
constraint_complete(void *state)
{
	P3SchemaMatcher *m = state;

	return p3_schema_matcher_is_complete(m) && !p3_schema_matcher_can_continue(m);
}

P3Status
p3_schema_constraint(P3SchemaMatcher *m, const P3Tokenizer *tok, P3Constraint *out, P3Error *err)
{
	if (m == NULL || tok == NULL || out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "matcher, tokenizer and output must not be NULL");
	if (m->trie == NULL || m->trie->n_vocab != p3_tokenizer_n_vocab(tok))
		return p3_error(err, P3_ERR_INVALID_ARG, "the matcher needs a vocabulary trie built from this tokenizer");
	m->tok = tok;
	out->state = m;
	out->mask = constraint_mask;
	out->accept = constraint_accept;
	out->complete = constraint_complete;
	return P3_OK;
}

/* ========================================================================
 * The schema as prompt text
 * ======================================================================== */

/* Collect the literals of trie node `id` (prefix in cur) into out, " | "-separated; at most *left. */
static void
describe_literals(const P3Schema *s, int32_t id, Buf *cur, Buf *out, int *left)
{
	const LitNode *ln = &s->lits[id];

	if (*left <= 0)
		return;
	if (ln->terminal)
	{
		if (out->len > 0)
			p3s_buf_puts(out, " | ");
		if (--*left == 0)
		{
			p3s_buf_puts(out, "...");
			return;
		}
		p3s_buf_put(out, cur->data, cur->len);
	}
	for (uint32_t k = 0; k < ln->n_edges && *left > 0; k++)
	{
		size_t		old = cur->len;
		char		b = (char) s->lit_bytes[ln->edge_off + k];

		p3s_buf_put(cur, &b, 1);
		describe_literals(s, s->lit_targets[ln->edge_off + k], cur, out, left);
		cur->len = old;
	}
}

static void
describe_node(const P3Schema *s, int32_t id, Buf *b)
{
	const Node *n = &s->nodes[id];
	char		tmp[96];

	switch (n->kind)
	{
		case K_OBJECT:
			p3s_buf_puts(b, "{");
			for (int32_t i = 0; i < n->n_props; i++)
			{
				const Prop *p = &s->props[n->prop_off + i];

				if (i)
					p3s_buf_puts(b, ", ");
				p3s_buf_put(b, s->pool + p->key_off, p->key_len - 1);
				p3s_buf_puts(b, p->required ? ": " : "?: ");
				describe_node(s, p->child, b);
			}
			p3s_buf_puts(b, "}");
			break;
		case K_ARRAY:
			p3s_buf_puts(b, "[");
			describe_node(s, n->item, b);
			p3s_buf_puts(b, "]");
			if (n->min_items > 0 || n->max_items != NO_LIMIT)
			{
				if (n->max_items == NO_LIMIT)
					snprintf(tmp, sizeof(tmp), " (at least %u items)", n->min_items);
				else
					snprintf(tmp, sizeof(tmp), " (%u to %u items)", n->min_items, n->max_items);
				p3s_buf_puts(b, tmp);
			}
			break;
		case K_STRING:
			p3s_buf_puts(b, "string");
			if (n->format)
			{
				p3s_buf_puts(b, " (");
				p3s_buf_puts(b, n->format);
				p3s_buf_puts(b, ")");
			}
			if (n->min_len > 0 || n->max_len != NO_LIMIT)
			{
				if (n->max_len == NO_LIMIT)
					snprintf(tmp, sizeof(tmp), " (at least %u characters)", n->min_len);
				else
					snprintf(tmp, sizeof(tmp), " (%u to %u characters)", n->min_len, n->max_len);
				p3s_buf_puts(b, tmp);
			}
			break;
		case K_NUMBER:
			p3s_buf_puts(b, "number");
			break;
		case K_INTEGER:
			p3s_buf_puts(b, "integer");
			if (n->imin != INT64_MIN || n->imax != INT64_MAX)
			{
				snprintf(tmp, sizeof(tmp), " (%lld to %lld)", (long long) n->imin, (long long) n->imax);
				p3s_buf_puts(b, tmp);
			}
			break;
		case K_LITERAL:
			{
				Buf			cur = {0};
				Buf			out = {0};
				int			left = 32;

				describe_literals(s, n->lit_root, &cur, &out, &left);
				if (out.data)
					p3s_buf_put(b, out.data, out.len);
				free(cur.data);
				free(out.data);
				break;
			}
		case K_ANYOF:
			for (int32_t k = 0; k < n->n_children; k++)
			{
				if (k)
					p3s_buf_puts(b, " | ");
				describe_node(s, s->children[n->child_off + k], b);
			}
			break;
	}
	if (n->desc_off >= 0)
	{
		p3s_buf_puts(b, " (");
		p3s_buf_puts(b, s->pool + n->desc_off);
		p3s_buf_puts(b, ")");
	}
}

P3Status
p3_schema_describe(const P3Schema *s, P3Text *out, P3Error *err)
{
	Buf			b = {0};
	P3Status	st;

	if (s == NULL || out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "schema and output must not be NULL");
	describe_node(s, s->root, &b);
	if (b.oom)
	{
		free(b.data);
		return p3_error(err, P3_ERR_NOMEM, "out of memory describing the schema");
	}
	st = p3_text_append(out, b.data ? b.data : "", b.len, err);
	free(b.data);
	return st;
}

/* ========================================================================
 * Shortest completions
 * ======================================================================== */

#define MIN_DOC_CAP (1u << 20)

/* Shortest bytes from DFA state `from` to an accepting state (BFS). */
static bool
dfa_shortest(const P3Schema *s, int32_t from, Buf *out)
{
	int32_t    *prev = malloc((size_t) s->n_dfa * sizeof(int32_t));
	uint8_t    *via = malloc((size_t) s->n_dfa);
	int32_t    *queue = malloc((size_t) s->n_dfa * sizeof(int32_t));
	int32_t		head = 0,
				tail = 0,
				found = -1;
	bool		ok = false;

	if (prev && via && queue)
	{
		for (int32_t i = 0; i < s->n_dfa; i++)
			prev[i] = -2;
		prev[from] = -1;
		queue[tail++] = from;
		while (head < tail && found < 0)
		{
			int32_t		u = queue[head++];

			if (s->dfa_accept[u])
			{
				found = u;
				break;
			}
			for (int c = 0; c < 256; c++)
			{
				int32_t		v = s->dfa_trans[(size_t) u * 256 + (size_t) c];

				if (v >= 0 && prev[v] == -2)
				{
					prev[v] = u;
					via[v] = (uint8_t) c;
					queue[tail++] = v;
				}
			}
		}
		if (found >= 0)
		{
			int32_t		n = 0;
			size_t		at = out->len;

			for (int32_t v = found; prev[v] >= 0; v = prev[v])
				n++;
			for (int32_t i = 0; i < n; i++)
				p3s_buf_put(out, "?", 1);
			if (!out->oom)
				for (int32_t v = found, i = n - 1; prev[v] >= 0; v = prev[v], i--)
					out->data[at + (size_t) i] = (char) via[v];
			ok = !out->oom;
		}
	}
	free(prev);
	free(via);
	free(queue);
	return ok;
}

/* Shortest bytes from literal trie node `from` to a terminal (BFS; trie ids grow from the root). */
static bool
lit_shortest(const P3Schema *s, int32_t from, Buf *out)
{
	int32_t    *prev = malloc((size_t) s->n_lits * sizeof(int32_t));
	uint8_t    *via = malloc((size_t) s->n_lits);
	int32_t    *queue = malloc((size_t) s->n_lits * sizeof(int32_t));
	int32_t		head = 0,
				tail = 0,
				found = -1;
	bool		ok = false;

	if (prev && via && queue)
	{
		prev[from] = -1;
		queue[tail++] = from;
		while (head < tail)
		{
			int32_t		u = queue[head++];
			const LitNode *ln = &s->lits[u];

			if (ln->terminal)
			{
				found = u;
				break;
			}
			for (uint32_t k = 0; k < ln->n_edges; k++)
			{
				int32_t		v = s->lit_targets[ln->edge_off + k];

				prev[v] = u;
				via[v] = s->lit_bytes[ln->edge_off + k];
				queue[tail++] = v;
			}
		}
		if (found >= 0)
		{
			int32_t		n = 0;
			size_t		at = out->len;

			for (int32_t v = found; v != from; v = prev[v])
				n++;
			for (int32_t i = 0; i < n; i++)
				p3s_buf_put(out, "?", 1);
			if (!out->oom)
				for (int32_t v = found, i = n - 1; v != from; v = prev[v], i--)
					out->data[at + (size_t) i] = (char) via[v];
			ok = !out->oom;
		}
	}
	free(prev);
	free(via);
	free(queue);
	return ok;
}

static void
buf_int(Buf *b, __int128 v)
{
	char		tmp[48];
	int			n = 0;
	bool		neg = v < 0;
	unsigned __int128 m = neg ? (unsigned __int128) (-v) : (unsigned __int128) v;

	do
	{
		tmp[n++] = (char) ('0' + (int) (m % 10));
		m /= 10;
	} while (m > 0);
	if (neg)
		p3s_buf_put(b, "-", 1);
	while (n > 0)
		p3s_buf_put(b, &tmp[--n], 1);
}

/* Append node's shortest document; false if it has none kept. */
static bool
put_min(const P3Schema *s, int32_t node, Buf *b)
{
	uint32_t	n = s->min_len[node];

	if (n == NO_LIMIT)
		return false;
	if ((const void *) b == s->min_building)
	{
		/* appending to the pool itself (compute_min_docs): grow first, then copy within */
		size_t		off = s->min_off[node];

		p3s_buf_put(b, "", 0);
		if (b->len + n + 1 > b->cap)
		{
			char	   *nd = realloc(b->data, (b->len + n + 1) * 2);

			if (nd == NULL)
			{
				b->oom = true;
				return false;
			}
			b->data = nd;
			b->cap = (b->len + n + 1) * 2;
		}
		memmove(b->data + b->len, b->data + off, n);
		b->len += n;
		b->data[b->len] = '\0';
		return !b->oom && b->len <= MIN_DOC_CAP;
	}
	else
		p3s_buf_put(b, s->minpool + s->min_off[node], n);
	return !b->oom && b->len <= MIN_DOC_CAP;
}

/* The required properties from index a on, each preceded by a comma when comma. */
static bool
put_required_from(const P3Schema *s, const Node *n, int32_t a, bool comma, Buf *b)
{
	for (int32_t k = a; k < n->n_props; k++)
	{
		const Prop *p = &s->props[n->prop_off + k];

		if (!p->required)
			continue;
		if (comma)
			p3s_buf_put(b, ",", 1);
		comma = true;
		p3s_buf_put(b, s->pool + p->key_off, p->key_len);
		if (!put_min(s, p->child, b))
			return false;
	}
	return true;
}

static bool
compute_min_docs(P3Schema *s)
{
	Buf			pool = {0};

	s->min_off = malloc(((size_t) s->n_nodes + 1) * sizeof(uint32_t));
	s->min_len = malloc(((size_t) s->n_nodes + 1) * sizeof(uint32_t));
	if (s->min_off == NULL || s->min_len == NULL)
		return false;
	/* children have smaller ids than their parents */
	for (int32_t id = 0; id < s->n_nodes; id++)
	{
		const Node *n = &s->nodes[id];
		size_t		start = pool.len;
		bool		ok = true;

		p3s_buf_put(&pool, "", 0);
		s->min_building = &pool;

		switch (n->kind)
		{
			case K_OBJECT:
				p3s_buf_put(&pool, "{", 1);
				ok = put_required_from(s, n, 0, false, &pool);
				p3s_buf_put(&pool, "}", 1);
				break;
			case K_ARRAY:
				p3s_buf_put(&pool, "[", 1);
				for (uint32_t i = 0; i < n->min_items && ok; i++)
				{
					if (i)
						p3s_buf_put(&pool, ",", 1);
					ok = put_min(s, n->item, &pool);
				}
				p3s_buf_put(&pool, "]", 1);
				break;
			case K_STRING:
				p3s_buf_put(&pool, "\"", 1);
				if (n->dfa_start >= 0)
					ok = dfa_shortest(s, n->dfa_start, &pool);
				else if (n->min_len > MIN_DOC_CAP)
					ok = false;
				else
					for (uint32_t i = 0; i < n->min_len; i++)
						p3s_buf_put(&pool, "a", 1);
				p3s_buf_put(&pool, "\"", 1);
				break;
			case K_NUMBER:
				p3s_buf_put(&pool, "0", 1);
				break;
			case K_INTEGER:
				buf_int(&pool, n->imin > 0 ? n->imin : n->imax < 0 ? n->imax : 0);
				break;
			case K_LITERAL:
				ok = lit_shortest(s, n->lit_root, &pool);
				break;
			case K_ANYOF:
				{
					int32_t		best = -1;

					for (int32_t k = 0; k < n->n_alts; k++)
					{
						int32_t		alt = s->alts[n->alt_off + k];

						if (s->min_len[alt] != NO_LIMIT && (best < 0 || s->min_len[alt] < s->min_len[best]))
							best = alt;
					}
					ok = best >= 0 && put_min(s, best, &pool);
					break;
				}
		}
		if (pool.oom)
		{
			free(pool.data);
			s->min_building = NULL;
			return false;
		}
		if (!ok || pool.len - start > MIN_DOC_CAP)
		{
			pool.len = start;
			s->min_off[id] = 0;
			s->min_len[id] = NO_LIMIT;
		}
		else
		{
			s->min_off[id] = (uint32_t) start;
			s->min_len[id] = (uint32_t) (pool.len - start);
		}
	}
	s->min_building = NULL;
	s->minpool = pool.data;
	return true;
}

/* Append the shortest completion of one thread (a scratch copy); false if none is known. */
static bool
complete_thread(const P3Schema *s, Frame *th, Buf *b)
{
	while (DEPTH(th) > 0 && !b->oom && b->len <= MIN_DOC_CAP)
	{
		Frame	   *f = &th[DEPTH(th)];
		const Node *n = &s->nodes[f->node];

		switch (n->kind)
		{
			case K_OBJECT:
				{
					int32_t		a = (int32_t) f->a;

					switch (f->phase)
					{
						case O_START:
							if (!put_min(s, f->node, b))
								return false;
							break;
						case O_FIRST:
							if (!put_required_from(s, n, 0, false, b))
								return false;
							p3s_buf_put(b, "}", 1);
							break;
						case O_NEXT:
							{
								/* a key must follow the comma: the next required one, or the next one */
								int32_t		j = s->next_req[n->prop_off + a];
								const Prop *p;

								if (j >= n->n_props)
									j = a;
								p = &s->props[n->prop_off + j];
								p3s_buf_put(b, s->pool + p->key_off, p->key_len);
								if (!put_min(s, p->child, b) || !put_required_from(s, n, j + 1, true, b))
									return false;
								p3s_buf_put(b, "}", 1);
								break;
							}
						case O_KEY:
						case O_VALUE:
							{
								int32_t		j = (int32_t) (f->b >> 32);
								uint32_t	pos = (uint32_t) f->b;
								const Prop *p = &s->props[n->prop_off + j];

								if (f->phase == O_KEY)
									p3s_buf_put(b, s->pool + p->key_off + pos, p->key_len - pos);
								if (!put_min(s, p->child, b) || !put_required_from(s, n, j + 1, true, b))
									return false;
								p3s_buf_put(b, "}", 1);
								break;
							}
						case O_AFTER:
							if (!put_required_from(s, n, a, true, b))
								return false;
							p3s_buf_put(b, "}", 1);
							break;
					}
					break;
				}
			case K_ARRAY:
				{
					uint32_t	count = f->a;

					switch (f->phase)
					{
						case A_START:
							if (!put_min(s, f->node, b))
								return false;
							break;
						case A_FIRST:
						case A_NEXT:
						case A_AFTER:
							if (f->phase == A_NEXT)
							{
								if (!put_min(s, n->item, b))
									return false;
								count++;
							}
							while (count < n->min_items)
							{
								if (count > 0 || f->phase != A_FIRST)
									p3s_buf_put(b, ",", 1);
								if (!put_min(s, n->item, b))
									return false;
								count++;
								if (b->len > MIN_DOC_CAP)
									return false;
							}
							p3s_buf_put(b, "]", 1);
							break;
						default:
							return false;
					}
					break;
				}
			case K_STRING:
				if (f->phase == S_START)
				{
					if (!put_min(s, f->node, b))
						return false;
					break;
				}
				if (n->dfa_start >= 0)
				{
					if (!dfa_shortest(s, (int32_t) f->b, b))
						return false;
				}
				else
				{
					switch (f->phase)
					{
						case S_U8:
							{
								int			code = f->aux >> 2;
								int			rem = f->aux & 3;
								char		first = (char) (code == 1 ? 0xA0 : code == 3 ? 0x90 : 0x80);

								p3s_buf_put(b, &first, 1);
								while (--rem > 0)
									p3s_buf_put(b, "\x80", 1);
								break;
							}
						case S_ESC:
							p3s_buf_put(b, "n", 1);
							break;
						case S_HEX:
							{
								uint64_t	v = f->b;

								for (int i = f->aux; i < 4; i++)
								{
									p3s_buf_put(b, "0", 1);
									v <<= 4;
								}
								if (v >= 0xD800 && v <= 0xDBFF)
									p3s_buf_puts(b, "\\udc00");
								break;
							}
						case S_SUR_BS:
							p3s_buf_puts(b, "\\udc00");
							break;
						case S_SUR_U:
							p3s_buf_puts(b, "udc00");
							break;
						case S_HEX2:
							p3s_buf_puts(b, &"dc00"[f->aux]);
							break;
						default:
							break;
					}
					for (uint32_t i = f->a; i < n->min_len; i++)
						p3s_buf_put(b, "a", 1);
				}
				p3s_buf_put(b, "\"", 1);
				break;
			case K_NUMBER:
				if (f->phase == N_START || f->phase == N_MINUS || f->phase == N_DOT || f->phase == N_E ||
					f->phase == N_ESIGN)
					p3s_buf_put(b, "0", 1);
				break;
			case K_INTEGER:
				switch (f->phase)
				{
					case I_START:
						if (!put_min(s, f->node, b))
							return false;
						break;
					case I_MINUS:
						buf_int(b, -(__int128) (n->imax < -1 ? n->imax : -1));
						break;
					case I_ZERO:
						break;
					case I_DIG:
						if (!int_in_range(f->aux, f->b, n->imin, n->imax))
						{
							__int128	p = 1;
							bool		done = false;

							for (int k = 1; (int) f->a + k <= 19 && !done; k++)
							{
								__int128	lo,
											hi,
											pick;

								p *= 10;
								lo = (__int128) f->b * p;
								hi = lo + p - 1;
								if (!f->aux)
								{
									if (hi < n->imin || lo > n->imax)
										continue;
									pick = lo > n->imin ? lo : n->imin;
									pick -= lo;
								}
								else
								{
									/* values -hi .. -lo; the one closest to zero */
									__int128	v = -lo < n->imax ? -lo : n->imax;

									if (v < n->imin || v < -hi)
										continue;
									pick = -v - lo;
								}
								/* the k digits of pick, zero-padded */
								{
									char		d[40];

									for (int i = k - 1; i >= 0; i--)
									{
										d[i] = (char) ('0' + (int) (pick % 10));
										pick /= 10;
									}
									p3s_buf_put(b, d, (size_t) k);
								}
								done = true;
							}
							if (!done)
								return false;
						}
						break;
				}
				break;
			case K_LITERAL:
				if (!lit_shortest(s, (int32_t) f->a, b))
					return false;
				break;
			case K_ANYOF:
				return false;
		}
		pop(s, th);
	}
	return !b->oom && b->len <= MIN_DOC_CAP;
}

P3Status
p3_schema_matcher_completion(const P3SchemaMatcher *m, P3Text *out, P3Error *err)
{
	const P3Schema *s = m->s;
	size_t		T = (size_t) s->T;
	Buf			best = {0};
	bool		have = false;
	Frame		tmp[P3_SCHEMA_MAX_MAX_DEPTH + 1];
	P3Status	st;

	if (out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "output must not be NULL");
	for (uint32_t i = 0; i < m->n_cur; i++)
	{
		Buf			b = {0};

		memcpy(tmp, m->cur + i * T, T * sizeof(Frame));
		if (complete_thread(s, tmp, &b) && (!have || b.len < best.len))
		{
			/* trust but verify: the completion must take the matcher to a complete document */
			P3SchemaMatcher *c = NULL;
			bool		valid = false;

			if (p3_schema_matcher_clone(m, &c, NULL) == P3_OK)
			{
				valid = (b.len == 0 || p3_schema_matcher_accept_bytes(c, b.data, b.len, NULL) == P3_OK) &&
					p3_schema_matcher_is_complete(c);
				p3_schema_matcher_free(c);
			}
			if (valid)
			{
				free(best.data);
				best = b;
				have = true;
				continue;
			}
		}
		free(b.data);
	}
	if (!have)
	{
		free(best.data);
		return p3_error(err, P3_ERR_INTERNAL, "no completion of the document is known from here");
	}
	st = p3_text_append(out, best.data ? best.data : "", best.len, err);
	free(best.data);
	return st;
}

