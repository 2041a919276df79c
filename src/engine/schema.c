/*
 * schema.c — JSON Schema to a byte automaton, matching, token masks (see
 * phi3/schema.h; the files of the subsystem are listed in
 * schema_internal.h).  This file holds the public entry points that
 * belong to no phase: the default limits, freeing a schema, its
 * statistics, and the schema as prompt text.
 *
 * Recursion is bounded where it depends on the input: the JSON parser
 * (128 levels), the compiler (the JSON depth, and at most 64 links of a
 * chain of $ref), patterns (64 nested groups, 1024 bytes),
 * literal tries (4096 bytes per value), matching (max_depth).
 */
#include "schema_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

P3SchemaLimits
p3_schema_default_limits(void)
{
	P3SchemaLimits l;

	l.max_states = P3_SCHEMA_DEFAULT_MAX_STATES;
	l.max_depth = P3_SCHEMA_DEFAULT_MAX_DEPTH;
	l.max_threads = P3_SCHEMA_DEFAULT_MAX_THREADS;
	return l;
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
