/*
 * schema_compile.c — JSON Schema (the DOM of schema_json.c) to the nodes
 * of the automaton (see schema_internal.h for the map), and
 * p3_schema_compile, the whole pipeline.
 *
 * Each schema object becomes a Node:
 *   K_OBJECT   properties in order: key bytes `"name":` (pool), child node,
 *              required flag; next_req[i] = first required index >= i
 *   K_ARRAY    item node, min / max items
 *   K_STRING   min / max characters, or a DFA (format, pattern; built by
 *              schema_regex.c)
 *   K_NUMBER   the JSON number grammar
 *   K_INTEGER  int64 bounds
 *   K_LITERAL  a trie of byte strings (enum, const, true/false, null)
 *   K_ANYOF    alternatives; never on a stack: pushing a node pushes each of
 *              its flattened concrete alternatives (alts) as its own parse
 * $ref targets are compiled once and shared; reference cycles are refused,
 * so the node graph is a DAG and its depth (longest chain of nested
 * objects / arrays) is known at compile time and bounded by max_depth.
 * Node ids grow bottom-up (children before parents), which
 * schema_complete.c relies on for the shortest documents computed at the
 * end of the compile.  The limits (max_states, max_depth, max_threads) are
 * checked here, so that matching never meets a state it cannot hold.
 *
 * Recursion follows the JSON depth (bounded by the parser), in literal
 * tries the bytes of one value (at most 4096), and a chain of definitions
 * each naming the next by $ref once per link: at most
 * SCHEMA_MAX_REF_CHAIN links (over 1.3 KB of stack each), longer chains
 * are refused.
 */
#include "schema_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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
		if (c->ref_depth >= SCHEMA_MAX_REF_CHAIN)
			return cfail(c, P3_ERR_INVALID_ARG,
						 "chain of \"$ref\" at %s is longer than %d definitions",
						 c->path, SCHEMA_MAX_REF_CHAIN), -1;
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
			c->ref_depth++;
			id = compile_schema(c, target);
			c->ref_depth--;
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

static double
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
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
	if (!p3s_compute_min_docs(s))
	{
		p3_schema_free(s);
		return p3_error(err, P3_ERR_NOMEM, "out of memory compiling the schema");
	}
	s->compile_ms = now_ms() - t0;
	*out = s;
	return P3_OK;
}
