/*
 * schema_regex.c — patterns and formats: a regular expression -> Thompson
 * NFA -> DFA over the bytes of a string's content (see schema_internal.h
 * for the map).
 *
 * schema_compile.c calls p3s_regex_to_dfa for "pattern" and "format" and
 * copies the result into the schema's global DFA table, which
 * schema_match.c steps through inside strings.  Byte transitions exclude
 * ", \ and control characters (escapes never match); the DFA is built
 * over byte classes, bounded in states and in work, and states that cannot
 * reach acceptance are removed, so a pattern string never dead-ends
 * either.  Parsing recurses once per nested group, bounded at 64 groups
 * and 1024 bytes of pattern.
 */
#include "schema_internal.h"

#include <stdlib.h>
#include <string.h>

/* ========================================================================
 * Patterns: regular expression -> NFA -> DFA over the bytes of a string's
 * content (no escapes: ", \ and control characters never match)
 * ======================================================================== */

#define RE_MAX_NFA		4096
#define RE_MAX_REPEAT	1000

typedef enum RType
{
	R_EMPTY, R_SET, R_CAT, R_ALT, R_REP
} RType;

typedef struct RNode
{
	RType		t;
	uint8_t		set[32];		/* R_SET: ASCII / raw bytes */
	bool		nonascii;		/* R_SET: also any non-ASCII character */
	struct RNode *a;
	struct RNode *b;
	int			min;
	int			max;			/* -1: unbounded */
} RNode;

typedef struct RParser
{
	const unsigned char *p;
	const unsigned char *end;
	Arena	   *arena;
	const char *error;			/* what is wrong, static text */
	int			depth;
} RParser;

static RNode *
rnew(RParser *rp, RType t)
{
	RNode	   *n = p3s_arena_alloc(rp->arena, sizeof(RNode));

	if (n == NULL)
		rp->error = "out of memory";
	else
		n->t = t;
	return n;
}

static void
rset_add(uint8_t *set, int lo, int hi)
{
	for (int c = lo; c <= hi; c++)
		set[c >> 3] |= (uint8_t) (1u << (c & 7));
}

static bool
rset_has(const uint8_t *set, int c)
{
	return (set[c >> 3] >> (c & 7)) & 1;
}

static RNode *
rbin(RParser *rp, RType t, RNode *a, RNode *b)
{
	RNode	   *n;

	if (a == NULL || b == NULL)
		return NULL;
	n = rnew(rp, t);
	if (n)
	{
		n->a = a;
		n->b = b;
	}
	return n;
}

/* A class escape (\d \w \s and negations) into set; false if c is not one. */
static bool
rclass_escape(int c, uint8_t *set, bool *negated)
{
	uint8_t		s[32] = {0};

	switch (c)
	{
		case 'd':
		case 'D':
			rset_add(s, '0', '9');
			break;
		case 'w':
		case 'W':
			rset_add(s, '0', '9');
			rset_add(s, 'a', 'z');
			rset_add(s, 'A', 'Z');
			rset_add(s, '_', '_');
			break;
		case 's':
		case 'S':
			rset_add(s, ' ', ' ');
			rset_add(s, '\t', '\r');
			break;
		default:
			return false;
	}
	*negated = (c == 'D' || c == 'W' || c == 'S');
	memcpy(set, s, 32);
	return true;
}

/* The character an escape like \. \n stands for, or -1. */
static int
rescape_char(int c)
{
	switch (c)
	{
		case 'n':
			return '\n';
		case 't':
			return '\t';
		case 'r':
			return '\r';
		case 'f':
			return '\f';
		case 'v':
			return '\v';
		default:
			if (c < 0x80 && strchr("\\^$.|?*+()[]{}/-\"", c) != NULL)
				return c;
			return -1;
	}
}

static RNode *rparse_alt(RParser *rp);

/* Set of the complement of an ASCII set (plus every non-ASCII character). */
static void
rset_negate(RNode *n)
{
	for (int c = 0; c < 128; c++)
		if (rset_has(n->set, c))
			n->set[c >> 3] &= (uint8_t) ~(1u << (c & 7));
		else
			rset_add(n->set, c, c);
	n->nonascii = true;
}

static RNode *
rparse_class(RParser *rp)
{
	RNode	   *n = rnew(rp, R_SET);
	bool		neg = false;
	bool		first = true;

	if (n == NULL)
		return NULL;
	rp->p++;					/* [ */
	if (rp->p < rp->end && *rp->p == '^')
	{
		neg = true;
		rp->p++;
	}
	while (rp->p < rp->end && (*rp->p != ']' || first))
	{
		int			lo = *rp->p;

		first = false;
		if (lo >= 0x80)
		{
			rp->error = "non-ASCII character in a character class";
			return NULL;
		}
		rp->p++;
		if (lo == '\\')
		{
			uint8_t		s[32];
			bool		sneg;

			if (rp->p >= rp->end)
				break;
			if (rclass_escape(*rp->p, s, &sneg))
			{
				if (sneg)
				{
					rp->error = "negated class escape inside a character class";
					return NULL;
				}
				for (int i = 0; i < 32; i++)
					n->set[i] |= s[i];
				rp->p++;
				continue;
			}
			lo = rescape_char(*rp->p);
			if (lo < 0)
			{
				rp->error = "unsupported escape in a character class";
				return NULL;
			}
			rp->p++;
		}
		if (rp->end - rp->p >= 2 && rp->p[0] == '-' && rp->p[1] != ']')
		{
			int			hi = rp->p[1];

			rp->p += 2;
			if (hi == '\\')
			{
				if (rp->p >= rp->end || (hi = rescape_char(*rp->p)) < 0)
				{
					rp->error = "unsupported escape in a character class";
					return NULL;
				}
				rp->p++;
			}
			if (hi >= 0x80)
			{
				rp->error = "non-ASCII character in a character class";
				return NULL;
			}
			if (hi < lo)
			{
				rp->error = "character range out of order";
				return NULL;
			}
			rset_add(n->set, lo, hi);
		}
		else
			rset_add(n->set, lo, lo);
	}
	if (rp->p >= rp->end)
	{
		rp->error = "unterminated character class";
		return NULL;
	}
	rp->p++;					/* ] */
	if (neg)
		rset_negate(n);
	return n;
}

static RNode *
rparse_atom(RParser *rp)
{
	unsigned char c = *rp->p;
	RNode	   *n;

	if (c == '(')
	{
		rp->p++;
		if (rp->p < rp->end && *rp->p == '?')
		{
			if (rp->end - rp->p >= 2 && rp->p[1] == ':')
				rp->p += 2;
			else
			{
				rp->error = "lookaround or named group";
				return NULL;
			}
		}
		if (++rp->depth > 64)
		{
			rp->error = "groups nested too deeply";
			return NULL;
		}
		n = rparse_alt(rp);
		rp->depth--;
		if (n == NULL)
			return NULL;
		if (rp->p >= rp->end || *rp->p != ')')
		{
			rp->error = "unbalanced parenthesis";
			return NULL;
		}
		rp->p++;
		return n;
	}
	if (c == '[')
		return rparse_class(rp);
	if (c == '.')
	{
		rp->p++;
		n = rnew(rp, R_SET);
		if (n)
		{
			rset_add(n->set, 0, 127);
			n->set['\n' >> 3] &= (uint8_t) ~(1u << ('\n' & 7));
			n->nonascii = true;
		}
		return n;
	}
	if (c == '^' || c == '$')
	{
		rp->error = "anchor inside the pattern";
		return NULL;
	}
	if (c == '*' || c == '+' || c == '?' || c == '{' || c == ')' || c == '|')
	{
		rp->error = "misplaced operator";
		return NULL;
	}
	if (c == '\\')
	{
		int			e;
		bool		neg;

		rp->p++;
		if (rp->p >= rp->end)
		{
			rp->error = "trailing backslash";
			return NULL;
		}
		n = rnew(rp, R_SET);
		if (n == NULL)
			return NULL;
		if (rclass_escape(*rp->p, n->set, &neg))
		{
			rp->p++;
			if (neg)
				rset_negate(n);
			return n;
		}
		e = rescape_char(*rp->p);
		if (e < 0)
		{
			rp->error = "unsupported escape (backreferences, \\b, \\u are not supported)";
			return NULL;
		}
		rp->p++;
		rset_add(n->set, e, e);
		return n;
	}
	/* a literal character: its bytes in sequence */
	{
		int			l = p3s_utf8_char_len(rp->p, (size_t) (rp->end - rp->p));
		RNode	   *r = NULL;

		if (l == 0)
		{
			rp->error = "invalid UTF-8";
			return NULL;
		}
		for (int i = 0; i < l; i++)
		{
			n = rnew(rp, R_SET);
			if (n == NULL)
				return NULL;
			rset_add(n->set, rp->p[i], rp->p[i]);
			r = r ? rbin(rp, R_CAT, r, n) : n;
		}
		rp->p += l;
		return r;
	}
}

/* Parse a decimal count at rp->p; -1 if none. */
static int
rparse_count(RParser *rp)
{
	int			v = 0;
	bool		any = false;

	while (rp->p < rp->end && *rp->p >= '0' && *rp->p <= '9')
	{
		v = v * 10 + (*rp->p - '0');
		if (v > RE_MAX_REPEAT)
		{
			rp->error = "repetition count over 1000";
			return -2;
		}
		any = true;
		rp->p++;
	}
	return any ? v : -1;
}

static RNode *
rparse_repeat(RParser *rp)
{
	RNode	   *a = rparse_atom(rp);

	while (a && rp->p < rp->end)
	{
		int			min,
					max;
		RNode	   *n;
		unsigned char c = *rp->p;

		if (c == '*')
			min = 0, max = -1;
		else if (c == '+')
			min = 1, max = -1;
		else if (c == '?')
			min = 0, max = 1;
		else if (c == '{')
		{
			rp->p++;
			min = rparse_count(rp);
			if (min < 0)
			{
				if (min == -1)
					rp->error = "bad repetition";
				return NULL;
			}
			max = min;
			if (rp->p < rp->end && *rp->p == ',')
			{
				rp->p++;
				max = rparse_count(rp);
				if (max == -2)
					return NULL;
				if (max >= 0 && max < min)
				{
					rp->error = "repetition {m,n} with n < m";
					return NULL;
				}
			}
			if (rp->p >= rp->end || *rp->p != '}')
			{
				rp->error = "bad repetition";
				return NULL;
			}
		}
		else
			break;
		rp->p++;
		/* a lazy quantifier matches the same strings */
		if (rp->p < rp->end && *rp->p == '?')
			rp->p++;
		n = rnew(rp, R_REP);
		if (n == NULL)
			return NULL;
		n->a = a;
		n->min = min;
		n->max = max;
		a = n;
	}
	return a;
}

static RNode *
rparse_cat(RParser *rp)
{
	RNode	   *r = rnew(rp, R_EMPTY);

	while (r && rp->p < rp->end && *rp->p != '|' && *rp->p != ')')
		r = rbin(rp, R_CAT, r, rparse_repeat(rp));
	return r;
}

static RNode *
rparse_alt(RParser *rp)
{
	RNode	   *r = rparse_cat(rp);

	while (r && rp->p < rp->end && *rp->p == '|')
	{
		rp->p++;
		r = rbin(rp, R_ALT, r, rparse_cat(rp));
	}
	return r;
}

/* NFA: states with epsilon edges and byte-set edges */
typedef struct NEdge
{
	int			from;
	int			to;
	int			set;			/* -1: epsilon; else index into sets */
} NEdge;

typedef struct Nfa
{
	int			n_states;
	NEdge	   *edges;
	int			n_edges;
	int			cap_edges;
	uint8_t    (*sets)[32];
	int			n_sets;
	int			cap_sets;
	const char *error;
} Nfa;

static int
nfa_state(Nfa *f)
{
	if (f->n_states >= RE_MAX_NFA)
	{
		if (f->error == NULL)
			f->error = "pattern too large (over 4096 NFA states)";
		return 0;
	}
	return f->n_states++;
}

static void
nfa_edge(Nfa *f, int from, int to, const uint8_t *set)
{
	if (f->error)
		return;
	if (f->n_edges == f->cap_edges)
	{
		int			ncap = f->cap_edges ? f->cap_edges * 2 : 64;
		NEdge	   *ne = realloc(f->edges, (size_t) ncap * sizeof(NEdge));

		if (ne == NULL)
		{
			f->error = "out of memory";
			return;
		}
		f->edges = ne;
		f->cap_edges = ncap;
	}
	f->edges[f->n_edges].from = from;
	f->edges[f->n_edges].to = to;
	f->edges[f->n_edges].set = -1;
	if (set)
	{
		if (f->n_sets == f->cap_sets)
		{
			int			ncap = f->cap_sets ? f->cap_sets * 2 : 64;
			uint8_t    (*ns)[32] = realloc(f->sets, (size_t) ncap * 32);

			if (ns == NULL)
			{
				f->error = "out of memory";
				return;
			}
			f->sets = ns;
			f->cap_sets = ncap;
		}
		memcpy(f->sets[f->n_sets], set, 32);
		f->edges[f->n_edges].set = f->n_sets++;
	}
	f->n_edges++;
}

/* Edge from -> new state over the byte range [lo, hi]; returns the new state. */
static int
nfa_range(Nfa *f, int from, int lo, int hi)
{
	uint8_t		s[32] = {0};
	int			t = nfa_state(f);

	rset_add(s, lo, hi);
	nfa_edge(f, from, t, s);
	return t;
}

/* Any non-ASCII UTF-8 character from `from` to `to`. */
static void
nfa_nonascii(Nfa *f, int from, int to)
{
	int			x,
				y;

	x = nfa_range(f, from, 0xC2, 0xDF);
	nfa_edge(f, nfa_range(f, x, 0x80, 0xBF), to, NULL);
	x = nfa_range(f, from, 0xE0, 0xE0);
	y = nfa_range(f, x, 0xA0, 0xBF);
	nfa_edge(f, nfa_range(f, y, 0x80, 0xBF), to, NULL);
	x = nfa_range(f, from, 0xE1, 0xEC);
	y = nfa_range(f, x, 0x80, 0xBF);
	nfa_edge(f, nfa_range(f, y, 0x80, 0xBF), to, NULL);
	x = nfa_range(f, from, 0xED, 0xED);
	y = nfa_range(f, x, 0x80, 0x9F);
	nfa_edge(f, nfa_range(f, y, 0x80, 0xBF), to, NULL);
	x = nfa_range(f, from, 0xEE, 0xEF);
	y = nfa_range(f, x, 0x80, 0xBF);
	nfa_edge(f, nfa_range(f, y, 0x80, 0xBF), to, NULL);
	x = nfa_range(f, from, 0xF0, 0xF0);
	y = nfa_range(f, nfa_range(f, x, 0x90, 0xBF), 0x80, 0xBF);
	nfa_edge(f, nfa_range(f, y, 0x80, 0xBF), to, NULL);
	x = nfa_range(f, from, 0xF1, 0xF3);
	y = nfa_range(f, nfa_range(f, x, 0x80, 0xBF), 0x80, 0xBF);
	nfa_edge(f, nfa_range(f, y, 0x80, 0xBF), to, NULL);
	x = nfa_range(f, from, 0xF4, 0xF4);
	y = nfa_range(f, nfa_range(f, x, 0x80, 0x8F), 0x80, 0xBF);
	nfa_edge(f, nfa_range(f, y, 0x80, 0xBF), to, NULL);
}

/* Emit r starting at state `from`; returns its end state. */
static int
nfa_emit(Nfa *f, const RNode *r, int from)
{
	int			t,
				x,
				y;

	if (f->error)
		return 0;
	switch (r->t)
	{
		case R_EMPTY:
			return from;
		case R_SET:
			t = nfa_state(f);
			nfa_edge(f, from, t, r->set);
			if (r->nonascii)
				nfa_nonascii(f, from, t);
			return t;
		case R_CAT:
			return nfa_emit(f, r->b, nfa_emit(f, r->a, from));
		case R_ALT:
			/* fresh entry states keep loops of one branch out of the other */
			x = nfa_state(f);
			y = nfa_state(f);
			nfa_edge(f, from, x, NULL);
			nfa_edge(f, from, y, NULL);
			x = nfa_emit(f, r->a, x);
			y = nfa_emit(f, r->b, y);
			t = nfa_state(f);
			nfa_edge(f, x, t, NULL);
			nfa_edge(f, y, t, NULL);
			return t;
		case R_REP:
			{
				int			cur = from;

				for (int i = 0; i < r->min && !f->error; i++)
				{
					x = nfa_state(f);
					nfa_edge(f, cur, x, NULL);
					cur = nfa_emit(f, r->a, x);
				}
				if (r->max < 0)
				{
					x = nfa_state(f);
					nfa_edge(f, cur, x, NULL);
					y = nfa_emit(f, r->a, x);
					nfa_edge(f, y, x, NULL);
					t = nfa_state(f);
					nfa_edge(f, x, t, NULL);
					return t;
				}
				t = nfa_state(f);
				for (int i = r->min; i < r->max && !f->error; i++)
				{
					nfa_edge(f, cur, t, NULL);
					x = nfa_state(f);
					nfa_edge(f, cur, x, NULL);
					cur = nfa_emit(f, r->a, x);
				}
				nfa_edge(f, cur, t, NULL);
				return t;
			}
	}
	return from;
}

/* Hash of a bitset of w words. */
static size_t
hash_bits(const uint64_t *bits, int w)
{
	uint64_t	h = 0x9E3779B97F4A7C15ull;

	for (int i = 0; i < w; i++)
	{
		h ^= bits[i];
		h *= 0xBF58476D1CE4E5B9ull;
		h ^= h >> 31;
	}
	return (size_t) h;
}

/*
 * Compile a pattern (or a format's pattern) to a DFA whose byte
 * transitions exclude ", \ and control characters and whose states all
 * reach an accepting state.  Returns the static reason on failure.
 */
const char *
p3s_regex_to_dfa(const char *pattern, size_t plen, int max_states, Dfa *out)
{
	Arena		arena = {0};
	RParser		rp = {0};
	Nfa			f = {0};
	RNode	   *r;
	int			start,
				final;
	int			W;
	int		   *eps_off = NULL,
			   *eps_to = NULL,
			   *set_off = NULL,
			   *set_edge = NULL;
	uint64_t   *sets = NULL;	/* DFA state -> NFA state bitset */
	int			cap = 0,
				n = 0;
	int32_t    *trans = NULL;
	bool	   *acc = NULL;
	int		   *stack = NULL;
	const char *error = NULL;

	memset(out, 0, sizeof(*out));
	rp.p = (const unsigned char *) pattern;
	rp.end = rp.p + plen;
	rp.arena = &arena;
	if (rp.p < rp.end && *rp.p == '^')
		rp.p++;
	if (rp.end > rp.p && rp.end[-1] == '$' && !(rp.end - rp.p >= 2 && rp.end[-2] == '\\'))
		rp.end--;
	r = rparse_alt(&rp);
	if (r && rp.p < rp.end)
		rp.error = "unbalanced parenthesis";
	if (r == NULL || rp.error)
	{
		error = rp.error ? rp.error : "invalid pattern";
		goto done;
	}
	start = nfa_state(&f);
	final = nfa_emit(&f, r, start);
	if (f.error)
	{
		error = f.error;
		goto done;
	}
	/* adjacency: epsilon edges and set edges per state (counting sort) */
	eps_off = calloc((size_t) f.n_states + 1, sizeof(int));
	set_off = calloc((size_t) f.n_states + 1, sizeof(int));
	eps_to = malloc(((size_t) f.n_edges + 1) * sizeof(int));
	set_edge = malloc(((size_t) f.n_edges + 1) * sizeof(int));
	stack = malloc(((size_t) f.n_states + 1) * sizeof(int));
	if (!eps_off || !set_off || !eps_to || !set_edge || !stack)
	{
		error = "out of memory";
		goto done;
	}
	for (int i = 0; i < f.n_edges; i++)
		(f.edges[i].set < 0 ? eps_off : set_off)[f.edges[i].from + 1]++;
	for (int i = 0; i < f.n_states; i++)
	{
		eps_off[i + 1] += eps_off[i];
		set_off[i + 1] += set_off[i];
	}
	{
		int		   *ep = calloc((size_t) f.n_states, sizeof(int));
		int		   *sp = calloc((size_t) f.n_states, sizeof(int));

		if (!ep || !sp)
		{
			free(ep);
			free(sp);
			error = "out of memory";
			goto done;
		}
		for (int i = 0; i < f.n_edges; i++)
		{
			int			s = f.edges[i].from;

			if (f.edges[i].set < 0)
				eps_to[eps_off[s] + ep[s]++] = f.edges[i].to;
			else
				set_edge[set_off[s] + sp[s]++] = i;
		}
		free(ep);
		free(sp);
	}
	W = (f.n_states + 63) / 64;

	/*
	 * Subset construction over byte classes (bytes no NFA edge tells
	 * apart), with hashed DFA states and a work budget: a hostile pattern
	 * is refused in bounded time rather than compiled for minutes.
	 */
	{
		uint8_t		cls[256];
		int			rep[256];
		int			n_cls = 1;
		uint64_t   *cur = calloc((size_t) W, sizeof(uint64_t));
		uint64_t   *nxt = calloc((size_t) W, sizeof(uint64_t));
		int		   *members = malloc(((size_t) f.n_states + 1) * sizeof(int));
		int32_t    *htab = NULL;
		size_t		hcap = 0;
		int64_t		work = 0;
		const int64_t work_limit = 50 * 1000 * 1000;

		if (!cur || !nxt || !members)
		{
			free(cur);
			free(nxt);
			free(members);
			error = "out of memory";
			goto done;
		}
		/* partition refinement of the bytes by every edge set */
		memset(cls, 0, sizeof(cls));
		for (int e = 0; e < f.n_edges; e++)
		{
			int			map_in[256],
						map_out[256];
			int			next = 0;
			uint8_t		ncls[256];

			if (f.edges[e].set < 0)
				continue;
			for (int k = 0; k < n_cls; k++)
				map_in[k] = map_out[k] = -1;
			for (int c = 0; c < 256; c++)
			{
				int		   *m = rset_has(f.sets[f.edges[e].set], c) ? map_in : map_out;

				if (m[cls[c]] < 0)
					m[cls[c]] = next++;
				ncls[c] = (uint8_t) m[cls[c]];
			}
			memcpy(cls, ncls, sizeof(cls));
			n_cls = next;
			work += 256;
		}
		for (int c = 255; c >= 0; c--)
			rep[cls[c]] = c;

#define CLOSURE(bits) \
		do { \
			int _sp = 0; \
			for (int _w = 0; _w < W; _w++) \
				for (uint64_t _x = (bits)[_w]; _x; _x &= _x - 1) \
					stack[_sp++] = _w * 64 + __builtin_ctzll(_x); \
			while (_sp > 0) \
			{ \
				int _u = stack[--_sp]; \
				for (int _k = eps_off[_u]; _k < eps_off[_u + 1]; _k++) \
				{ \
					int _v = eps_to[_k]; \
					work++; \
					if (!((bits)[_v / 64] >> (_v % 64) & 1)) \
					{ \
						(bits)[_v / 64] |= 1ull << (_v % 64); \
						stack[_sp++] = _v; \
					} \
				} \
			} \
		} while (0)

		cur[start / 64] |= 1ull << (start % 64);
		CLOSURE(cur);
		cap = 16;
		hcap = 64;
		sets = malloc((size_t) cap * (size_t) W * sizeof(uint64_t));
		trans = malloc((size_t) cap * 256 * sizeof(int32_t));
		acc = malloc((size_t) cap * sizeof(bool));
		htab = malloc(hcap * sizeof(int32_t));
		if (!sets || !trans || !acc || !htab)
		{
			free(cur);
			free(nxt);
			free(members);
			free(htab);
			error = "out of memory";
			goto done;
		}
		for (size_t i = 0; i < hcap; i++)
			htab[i] = -1;
		memcpy(sets, cur, (size_t) W * sizeof(uint64_t));
		htab[hash_bits(cur, W) & (hcap - 1)] = 0;
		n = 1;
		for (int d = 0; d < n && !error; d++)
		{
			int			n_members = 0;

			acc[d] = (sets[(size_t) d * W + final / 64] >> (final % 64)) & 1;
			for (int w = 0; w < W; w++)
				for (uint64_t x = sets[(size_t) d * W + w]; x; x &= x - 1)
					members[n_members++] = w * 64 + __builtin_ctzll(x);
			for (int c = 0; c < 256; c++)
				trans[(size_t) d * 256 + c] = -1;
			for (int k = 0; k < n_cls && !error; k++)
			{
				bool		any = false;
				int			found = -1;
				int			c0 = rep[k];
				size_t		h;

				memset(nxt, 0, (size_t) W * sizeof(uint64_t));
				for (int i = 0; i < n_members; i++)
				{
					int			st = members[i];

					for (int e = set_off[st]; e < set_off[st + 1]; e++)
					{
						const NEdge *ed = &f.edges[set_edge[e]];

						if (rset_has(f.sets[ed->set], c0))
						{
							nxt[ed->to / 64] |= 1ull << (ed->to % 64);
							any = true;
						}
					}
				}
				work += n_members + W;
				if (!any)
					continue;
				CLOSURE(nxt);
				if (work > work_limit)
				{
					error = "pattern too complex to compile";
					break;
				}
				h = hash_bits(nxt, W) & (hcap - 1);
				while (htab[h] >= 0)
				{
					if (memcmp(sets + (size_t) htab[h] * W, nxt, (size_t) W * sizeof(uint64_t)) == 0)
					{
						found = htab[h];
						break;
					}
					h = (h + 1) & (hcap - 1);
				}
				if (found < 0)
				{
					if (n >= max_states || n >= RE_MAX_DFA)
					{
						error = "pattern needs too many DFA states";
						break;
					}
					if (n == cap)
					{
						uint64_t   *ns;
						int32_t    *nt;
						bool	   *na;

						cap *= 2;
						ns = realloc(sets, (size_t) cap * (size_t) W * sizeof(uint64_t));
						if (ns)
							sets = ns;
						nt = realloc(trans, (size_t) cap * 256 * sizeof(int32_t));
						if (nt)
							trans = nt;
						na = realloc(acc, (size_t) cap * sizeof(bool));
						if (na)
							acc = na;
						if (!ns || !nt || !na)
						{
							error = "out of memory";
							break;
						}
					}
					memcpy(sets + (size_t) n * W, nxt, (size_t) W * sizeof(uint64_t));
					found = n++;
					htab[h] = found;
					if ((size_t) n * 2 > hcap)
					{
						/* rehash */
						size_t		ncap = hcap * 2;
						int32_t    *nh = malloc(ncap * sizeof(int32_t));

						if (nh == NULL)
						{
							error = "out of memory";
							break;
						}
						for (size_t i = 0; i < ncap; i++)
							nh[i] = -1;
						for (int e = 0; e < n; e++)
						{
							size_t		hh = hash_bits(sets + (size_t) e * W, W) & (ncap - 1);

							while (nh[hh] >= 0)
								hh = (hh + 1) & (ncap - 1);
							nh[hh] = e;
						}
						free(htab);
						htab = nh;
						hcap = ncap;
					}
				}
				for (int c = 0; c < 256; c++)
					if (cls[c] == k && c >= 0x20 && c != '"' && c != '\\')
						trans[(size_t) d * 256 + c] = found;
			}
		}
#undef CLOSURE
		free(cur);
		free(nxt);
		free(members);
		free(htab);
		if (error)
			goto done;
	}

	/* keep only states from which an accepting state is reachable */
	{
		bool	   *live = calloc((size_t) n, sizeof(bool));
		bool		changed = true;

		if (live == NULL)
		{
			error = "out of memory";
			goto done;
		}
		for (int d = 0; d < n; d++)
			live[d] = acc[d];
		while (changed)
		{
			changed = false;
			for (int d = 0; d < n; d++)
				if (!live[d])
					for (int c = 0; c < 256; c++)
					{
						int32_t		t = trans[(size_t) d * 256 + c];

						if (t >= 0 && live[t])
						{
							live[d] = true;
							changed = true;
							break;
						}
					}
		}
		for (int d = 0; d < n; d++)
			for (int c = 0; c < 256; c++)
			{
				int32_t		t = trans[(size_t) d * 256 + c];

				if (t >= 0 && !live[t])
					trans[(size_t) d * 256 + c] = -1;
			}
		if (!live[0])
			error = "pattern matches no string without escapes";
		free(live);
	}
	if (!error)
	{
		out->n = n;
		out->trans = trans;
		out->accept = acc;
		trans = NULL;
		acc = NULL;
	}

done:
	free(eps_off);
	free(eps_to);
	free(set_off);
	free(set_edge);
	free(stack);
	free(sets);
	free(trans);
	free(acc);
	free(f.edges);
	free(f.sets);
	p3s_arena_free(&arena);
	return error;
}
