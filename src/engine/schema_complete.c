/*
 * schema_complete.c — shortest documents and shortest completions (see
 * schema_internal.h for the map).
 *
 * Each node's shortest document is computed when compiling
 * (p3s_compute_min_docs, called by p3_schema_compile; children before
 * parents: node ids grow bottom-up); from a matcher state, each thread's
 * open frames are closed innermost first (p3s_pop of schema_match.c), and
 * the shortest result that the automaton itself accepts is returned.
 */
#include "schema_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

bool
p3s_compute_min_docs(P3Schema *s)
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
						if (!p3s_int_in_range(f->aux, f->b, n->imin, n->imax))
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
		p3s_pop(s, th);
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
