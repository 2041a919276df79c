/*
 * schema_mask.c — the vocabulary trie, token masks, the mask cache and
 * the decoder constraint (see schema_internal.h for the map).
 *
 * The vocabulary trie is stored in preorder with subtree ends; the walk
 * keeps one state set per depth in a scratch buffer (stepping with
 * p3s_step_set of schema_match.c) and skips the subtree of any node whose
 * set is empty.  Two shortcuts: (1) the masks of the states seen are
 * cached in the schema, keyed by the state's bytes with the counters of
 * strings and arrays clamped to the range in which no token (at most L
 * bytes) can tell them apart; (2) when a thread is in the body of an
 * unconstrained string (or one with more than L characters left), every
 * "free" token (complete UTF-8 without ", \ or control characters) is
 * allowed at once and subtrees holding only free tokens are not walked;
 * within a length-bounded string, free tokens are decided by their
 * character count.
 */
#include "schema_internal.h"

#include <stdlib.h>
#include <string.h>

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
	if (!p3s_frames_reserve(&m->scratch, &m->cap_scratch, (size_t) m->n_cur * T * 4))
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
		n = p3s_step_set(s, &m->scratch, &m->cap_scratch, in, n_in, out, t->byte[i], &st);
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
	if (p3s_set_complete(s, m->cur, m->n_cur))
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

/* ---- jump-forward tokens ---- */

/*
 * The longest token whose bytes are a prefix of b[0..n) (its length in
 * *len), a normal token before a byte token of the same bytes; -1 if
 * none.  Walks the trie: the children of a node are the nodes after it,
 * siblings linked by the end of their subtrees.
 */
static int32_t
trie_longest(const P3VocabTrie *t, const P3Tokenizer *tok, const uint8_t *b, size_t n, size_t *len)
{
	uint32_t	lo = 0;
	uint32_t	hi = (uint32_t) t->n_nodes;
	int32_t		best = -1;

	*len = 0;
	for (size_t k = 0; k < n; k++)
	{
		uint32_t	j = lo;

		while (j < hi && t->byte[j] != b[k])
			j = t->end[j];
		if (j >= hi)
			break;
		for (uint32_t e = t->tok_start[j]; e < t->tok_start[j + 1]; e++)
		{
			int32_t		id = t->toks[e];

			if (best < 0 || *len < k + 1 ||
				(tok && p3_tokenizer_token_type(tok, best) == P3_TOKEN_BYTE &&
				 p3_tokenizer_token_type(tok, id) != P3_TOKEN_BYTE))
			{
				best = id;
				*len = k + 1;
			}
		}
		lo = j + 1;
		hi = t->end[j];
	}
	return best;
}

int32_t
p3_schema_matcher_forced_tokens(const P3SchemaMatcher *m, int32_t *tokens, int32_t cap)
{
	char		buf[256];
	size_t		n;
	size_t		pos = 0;
	int32_t		count = 0;

	if (m == NULL || m->trie == NULL || cap <= 0)
		return 0;
	n = p3_schema_matcher_forced(m, buf, sizeof(buf));
	while (pos < n && count <= cap)
	{
		size_t		len;
		int32_t		id = trie_longest(m->trie, m->tok, (const uint8_t *) buf + pos, n - pos, &len);

		if (id < 0)
			break;
		if (pos + len == n)
			break;				/* the run's last token: left to sampling (token healing) */
		if (count == cap)
			break;
		tokens[count++] = id;
		pos += len;
	}
	return count;
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

static int32_t
constraint_forced(void *state, int32_t *tokens, int32_t cap)
{
	return p3_schema_matcher_forced_tokens((const P3SchemaMatcher *) state, tokens, cap);
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
	out->forced = constraint_forced;
	return P3_OK;
}
