/*
 * schema_match.c — matching bytes against the compiled schema, and the
 * matcher object (see schema_internal.h for the map).
 *
 * A parse ("thread") is a stack of Frames, one per open node: node id,
 * phase, and two counters (characters, items, the current key and
 * position, an integer's magnitude, a trie or DFA state).  A thread has a
 * fixed size T = depth + 1 frames (frame 0's `a` holds the stack depth;
 * unused frames are zero, so threads compare with memcmp).  The matcher's
 * state is a set of threads (nondeterminism: anyOf alternatives, optional
 * keys sharing a prefix, a number or literal that may end or go on).  One
 * byte maps a set to the set of successors (deduplicated); empty = dead.
 * Each node only admits bytes after which a completion still exists, so a
 * live set always has a completion.
 *
 * p3s_step_set is the one step that schema_mask.c also uses to walk the
 * vocabulary trie; schema_complete.c closes threads with p3s_pop.  Matching
 * recurses only while one byte pushes or pops frames of a thread, so its
 * depth is bounded by max_depth.
 */
#include "schema_internal.h"

#include <stdlib.h>
#include <string.h>

/* ========================================================================
 * Matching: threads of frames (see the top of this file)
 * ======================================================================== */

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

/* Whether the integer with this sign and magnitude lies in [lo, hi]. */
bool
p3s_int_in_range(bool neg, uint64_t m, int64_t lo, int64_t hi)
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
				(f->phase == I_DIG && p3s_int_in_range(f->aux, f->b, n->imin, n->imax));
		case K_LITERAL:
			return s->lits[f->a].terminal;
		default:
			return false;
	}
}

/* Pop the top frame (the value is complete) and tell the parent. */
void
p3s_pop(const P3Schema *s, Frame *th)
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
				p3s_pop(s, th);
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
				if (!p3s_int_in_range(false, 0, n->imin, n->imax))
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
		p3s_pop(s, tmp);
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
						p3s_pop(s, th);
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
						p3s_pop(s, th);
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
							p3s_pop(s, th);
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
						p3s_pop(s, th);
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
							p3s_pop(s, th);
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
uint32_t
p3s_step_set(const P3Schema *s, Frame **buf, size_t *cap, size_t in, uint32_t n_in,
			 size_t out, int c, P3Status *status)
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
bool
p3s_set_complete(const P3Schema *s, const Frame *buf, uint32_t n)
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
 * The matcher
 * ======================================================================== */

/* Make sure buf holds n frames. */
bool
p3s_frames_reserve(Frame **buf, size_t *cap, size_t n)
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
	if (!p3s_frames_reserve(&dst->cur, &dst->cap_cur, n))
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
	if (!p3s_frames_reserve(&m->scratch, &m->cap_scratch, (size_t) n * T * 2 + T))
	{
		*st = P3_ERR_NOMEM;
		return 0;
	}
	memcpy(m->scratch, m->cur, (size_t) n * T * sizeof(Frame));
	for (size_t i = 0; i < len && n > 0; i++)
	{
		size_t		out = (size_t) n * T;

		n = p3s_step_set(m->s, &m->scratch, &m->cap_scratch, 0, n, out, bytes[i], st);
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
	if (!p3s_frames_reserve(&m->cur, &m->cap_cur, (size_t) n * T))
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
	return p3s_set_complete(m->s, m->cur, m->n_cur);
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
