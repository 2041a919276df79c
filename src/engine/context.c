/*
 * context.c — per-user engine state and the Phi-3 forward pass.
 *
 * Forward pass for a chunk of T tokens (spec section 3.4), shapes per token:
 *     x        = token_embd[token]                              (n_embd)
 *     per layer:
 *       xn     = rmsnorm(x) ⊙ attn_norm                         (n_embd)
 *       qkv    = W_qkv · xn        → Q (n_embd) | K (n_embd_kv) | V (n_embd_kv)
 *       Q, K   = NeoX RoPE at the token's position (LongRoPE factors if chosen)
 *       cache[pos] = K, V             (f16 or f32)
 *       attn_h = Σ_j softmax_j(Q_h · K_j,g / sqrt(head_dim)) V_j,g   j ≤ pos, g = kv head of h
 *                (f16 cache: Q_h / sqrt(head_dim) and the softmax rounded
 *                to f16 before their products, as llama.cpp's)
 *       x     += W_o · attn                                     (n_embd)
 *       xn     = rmsnorm(x) ⊙ ffn_norm
 *       gu     = W_up · xn         → gate (n_ff) | up (n_ff)
 *       x     += W_down · (silu(gate) ⊙ up)
 *     logits   = W_out · (rmsnorm(x) ⊙ output_norm)              (n_vocab)
 * Matrix products run once per layer over all T tokens (p3_matmul);
 * attention runs in parallel over (token, head) pairs.  Each output value
 * is computed by one worker in a fixed order, so results do not depend on
 * the thread count.
 *
 * KV cache: per sequence and layer, K and V arrays of cap positions ×
 * n_embd_kv values, each an anonymous mapping, stored in blocks of
 * KV_BLOCK positions, head-major inside a block (kv_at): the keys of one
 * head that attention reads one after the other lie together, one head's
 * block of 16 rows in one or two pages, where position-major rows (6 KiB
 * each for Phi-3-mini) put every key of a head in its own page and into a
 * few of the cache's sets.  Blocks of 16 KiB or more are one cache line
 * longer than their values, so a head's rows of successive blocks spread
 * over every set (small models' blocks are left unpadded).
 * cap grows in steps of
 * KV_GROW_STEP positions as the sequence grows (mremap, not a copy), never
 * beyond n_ctx, and p3_kv_trim shrinks it again, returning the memory.  A sequence also records its token ids and, per position,
 * whether the long LongRoPE factors rotated it, so callers can reuse a
 * prefix only when it was computed the same way.
 *
 * Errors leave every sequence as it was: lengths are committed only after
 * the whole batch succeeded; positions written by a failed call lie beyond
 * the committed length and are simply overwritten later.
 */
#include "phi3/context.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "phi3/kernels.h"
#include "phi3/kernels_dispatch.h"
#include "phi3/threadpool.h"

#define KV_BLOCK		16		/* positions per block of a KV array */
#define KV_GROW_STEP	256		/* a multiple of KV_BLOCK */
#define ATT_GROUP		32		/* queries of one head whose scores are computed together */
#define KV_TRIM_STEP	16		/* p3_kv_trim keeps whole multiples of this */
#define MAX_BATCH		4096

typedef struct P3Sequence
{
	int32_t		len;			/* committed positions */
	int32_t		cap;			/* positions allocated */
	int32_t		rope_len_hint;	/* p3_seq_set_rope_len */
	int32_t    *tokens;			/* (cap) token at each position */
	uint8_t    *is_long;		/* (cap) position rotated with the long factors */
	void	  **k;				/* (n_layer) each (cap / KV_BLOCK blocks, n_head_kv, KV_BLOCK, head_dim) of kv type, see kv_at */
	void	  **v;				/* (n_layer) the same */
} P3Sequence;

struct P3Context
{
	const P3Model *model;
	P3ContextParams params;
	const P3KernelSet *kernels;
	P3ThreadPool *pool;
	int			n_threads;
	size_t		kv_elem;		/* bytes per cached value */
	size_t		kv_head;		/* bytes of one head's row: head_dim values */
	size_t		kv_block;		/* bytes of a block: KV_BLOCK positions of every head (plus a line, see top) */

	P3AbortFn	abort_fn;
	void	   *abort_user;

	P3Sequence *seqs;			/* (n_seq) */

	/* scratch for one chunk of up to n_batch tokens */
	int32_t		n_qkv;			/* n_embd + 2 * n_embd_kv */
	float	   *x;				/* (n_batch, n_embd) residual stream */
	float	   *xn;				/* (n_batch, n_embd) normed block input */
	float	   *qkv;			/* (n_batch, n_qkv) */
	float	   *attn;			/* (n_batch, n_embd) attention output, heads concatenated */
	float	   *proj;			/* (n_batch, n_embd) output of W_o and W_down */
	float	   *gate_up;		/* (n_batch, 2 * n_ff) */
	float	   *act;			/* (n_batch, n_ff) silu(gate) ⊙ up */
	float	   *rope_cs;		/* (n_batch, n_rot) cos/sin pairs per token */
	float	   *att_scratch;	/* per thread: (ATT_GROUP, att_scores) scores, (ATT_GROUP, head_dim) scaled q, then
								 * (head_dim) output, (P3_GGML_VP_QUERIES, P3_GGML_VP_SLOTS, head_dim) V·p slots */
	size_t		att_scratch_floats;
	size_t		att_scores;		/* n_ctx rounded up to a whole block */
	float	   *mm_scratch;		/* (n_threads, mm_scratch_floats) decoded weight rows */
	size_t		mm_scratch_floats;
	void	   *act_q;			/* quantized activations of a chunk */
	size_t		act_q_bytes;
	size_t		scratch_bytes;	/* total of the above, for p3_context_memory */

	/* per-chunk bookkeeping */
	int32_t    *chunk_pos;		/* (n_batch) position of each token */
	int32_t    *chunk_seq;		/* (n_batch) sequence of each token */
	int32_t    *chunk_out;		/* (n_batch) indices of tokens whose logits are kept */
	int64_t    *eval_len;		/* (n_seq) each sequence's length during p3_eval */
	bool	   *eval_long;		/* (n_seq) whether p3_eval uses the long LongRoPE factors */

	/* outputs of the last p3_eval */
	float	   *logits;			/* (logits_cap, n_vocab) */
	int32_t		logits_cap;
	int32_t		n_outputs;
};

P3ContextParams
p3_context_default_params(void)
{
	P3ContextParams p;

	memset(&p, 0, sizeof(p));
	p.n_ctx = 2048;
	p.n_seq = 1;
	p.n_batch = 64;
	p.n_threads = 0;
	p.kv_type = P3_KV_F16;
	p.matmul = P3_MATMUL_AUTO;
	p.act = P3_ACT_Q8;
	return p;
}

/*
 * A 64-byte aligned allocation (whole cache lines, aligned SIMD loads) that
 * records its size in the scratch total; NULL on failure.  Freed with free().
 */
static void *
scratch_alloc(P3Context *ctx, size_t count, size_t size)
{
	size_t		bytes;
	void	   *p;

	if (__builtin_mul_overflow(count, size, &bytes) || bytes > SIZE_MAX - 64)
		return NULL;
	bytes = (bytes + 63) & ~(size_t) 63;
	p = aligned_alloc(64, bytes ? bytes : 64);
	if (p)
		ctx->scratch_bytes += bytes;
	return p;
}

/* Largest activation buffer any product of the model needs for n_batch tokens. */
static size_t
max_act_bytes(const P3Model *model, int32_t n_batch)
{
	size_t		best = 0;

#define CONSIDER(W) do { \
		size_t b_ = p3_matmul_act_bytes((W).type, (W).n_in, n_batch); \
		if (b_ > best) best = b_; \
	} while (0)

	CONSIDER(model->output);
	for (int32_t l = 0; l < model->hp.n_layer; l++)
	{
		const P3Layer *L = &model->layers[l];

		if (L->fused_qkv)
			CONSIDER(L->attn_qkv);
		else
		{
			CONSIDER(L->attn_q);
			CONSIDER(L->attn_k);
			CONSIDER(L->attn_v);
		}
		CONSIDER(L->attn_output);
		CONSIDER(L->ffn_up);
		CONSIDER(L->ffn_down);
	}
#undef CONSIDER
	return best;
}

P3Status
p3_context_new(const P3Model *model, const P3ContextParams *params,
			   P3Context **out, P3Error *err)
{
	const P3HParams *hp = &model->hp;
	P3ContextParams p = *params;
	P3Context  *ctx;
	P3Status	st;
	int64_t		max_n_in;
	int32_t		B;

	*out = NULL;
	if (p.n_ctx == 0)
		p.n_ctx = hp->n_ctx_train;
	if (p.n_ctx < 1 || p.n_ctx > hp->n_ctx_train)
		return p3_error(err, P3_ERR_INVALID_ARG,
						"context size %d is out of range (1 to %d, the model's training context)",
						(int) p.n_ctx, (int) hp->n_ctx_train);
	if (p.n_seq < 1 || p.n_seq > 1024)
		return p3_error(err, P3_ERR_INVALID_ARG, "sequence count %d is out of range (1 to 1024)", (int) p.n_seq);
	if (p.n_batch < 1 || p.n_batch > MAX_BATCH)
		return p3_error(err, P3_ERR_INVALID_ARG, "batch size %d is out of range (1 to %d)", (int) p.n_batch, MAX_BATCH);
	if (p.n_threads < 0 || p.n_threads > P3_MAX_THREADS)
		return p3_error(err, P3_ERR_INVALID_ARG, "thread count %d is out of range (0 to %d)",
						(int) p.n_threads, P3_MAX_THREADS);
	if (p.kv_type != P3_KV_F16 && p.kv_type != P3_KV_F32)
		return p3_error(err, P3_ERR_INVALID_ARG, "unknown KV cache type %d", (int) p.kv_type);
	if (p.matmul != P3_MATMUL_AUTO && p.matmul != P3_MATMUL_REFERENCE)
		return p3_error(err, P3_ERR_INVALID_ARG, "unknown matmul mode %d", (int) p.matmul);
	if (p.act != P3_ACT_F32 && p.act != P3_ACT_Q8)
		return p3_error(err, P3_ERR_INVALID_ARG, "unknown activation precision %d", (int) p.act);
	if (p.n_batch > p.n_ctx)
		p.n_batch = p.n_ctx;
	if (p.n_threads == 0)
		p.n_threads = p3_cpu_count() < P3_MAX_THREADS ? p3_cpu_count() : P3_MAX_THREADS;

	ctx = calloc(1, sizeof(P3Context));
	if (ctx == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory allocating a context");
	ctx->model = model;
	ctx->params = p;
	ctx->n_threads = p.n_threads;
	ctx->kernels = p.matmul == P3_MATMUL_REFERENCE ? p3_kernels_reference() : p3_kernels_best();
	ctx->kv_elem = p.kv_type == P3_KV_F16 ? 2 : 4;
	ctx->kv_head = (size_t) hp->head_dim * ctx->kv_elem;
	ctx->kv_block = (size_t) KV_BLOCK * (size_t) hp->n_head_kv * ctx->kv_head;
	if (ctx->kv_block >= 16384)
		ctx->kv_block += 64;	/* one line more: a head's rows of successive blocks spread over every set */
	ctx->n_qkv = hp->n_embd + 2 * hp->n_embd_kv;
	B = p.n_batch;

	ctx->seqs = calloc((size_t) p.n_seq, sizeof(P3Sequence));
	if (ctx->seqs == NULL)
		goto nomem;
	for (int32_t s = 0; s < p.n_seq; s++)
	{
		ctx->seqs[s].k = calloc((size_t) hp->n_layer, sizeof(void *));
		ctx->seqs[s].v = calloc((size_t) hp->n_layer, sizeof(void *));
		if (ctx->seqs[s].k == NULL || ctx->seqs[s].v == NULL)
			goto nomem;
	}

	max_n_in = hp->n_ff > hp->n_embd ? hp->n_ff : hp->n_embd;
	ctx->mm_scratch_floats = p3_matmul_scratch_per_thread(max_n_in);
	ctx->att_scores = ((size_t) p.n_ctx + KV_BLOCK - 1) / KV_BLOCK * KV_BLOCK;
	ctx->att_scratch_floats = ATT_GROUP * (ctx->att_scores + (size_t) hp->head_dim) +
		(1 + P3_GGML_VP_QUERIES * P3_GGML_VP_SLOTS) * (size_t) hp->head_dim + 16;
	ctx->act_q_bytes = max_act_bytes(model, B);

	ctx->x = scratch_alloc(ctx, (size_t) B * hp->n_embd, sizeof(float));
	ctx->xn = scratch_alloc(ctx, (size_t) B * hp->n_embd, sizeof(float));
	ctx->qkv = scratch_alloc(ctx, (size_t) B * ctx->n_qkv, sizeof(float));
	ctx->attn = scratch_alloc(ctx, (size_t) B * hp->n_embd, sizeof(float));
	ctx->proj = scratch_alloc(ctx, (size_t) B * hp->n_embd, sizeof(float));
	ctx->gate_up = scratch_alloc(ctx, (size_t) B * 2 * hp->n_ff, sizeof(float));
	ctx->act = scratch_alloc(ctx, (size_t) B * hp->n_ff, sizeof(float));
	ctx->rope_cs = scratch_alloc(ctx, (size_t) B * hp->n_rot, sizeof(float));
	ctx->att_scratch = scratch_alloc(ctx, (size_t) ctx->n_threads * ctx->att_scratch_floats, sizeof(float));
	ctx->mm_scratch = scratch_alloc(ctx, (size_t) ctx->n_threads * ctx->mm_scratch_floats, sizeof(float));
	ctx->act_q = scratch_alloc(ctx, ctx->act_q_bytes, 1);
	ctx->chunk_pos = scratch_alloc(ctx, (size_t) B, sizeof(int32_t));
	ctx->chunk_seq = scratch_alloc(ctx, (size_t) B, sizeof(int32_t));
	ctx->chunk_out = scratch_alloc(ctx, (size_t) B, sizeof(int32_t));
	ctx->eval_len = scratch_alloc(ctx, (size_t) p.n_seq, sizeof(int64_t));
	ctx->eval_long = scratch_alloc(ctx, (size_t) p.n_seq, sizeof(bool));
	if (!ctx->x || !ctx->xn || !ctx->qkv || !ctx->attn || !ctx->proj || !ctx->gate_up ||
		!ctx->act || !ctx->rope_cs || !ctx->att_scratch || !ctx->mm_scratch || !ctx->act_q ||
		!ctx->chunk_pos || !ctx->chunk_seq || !ctx->chunk_out || !ctx->eval_len || !ctx->eval_long)
		goto nomem;

	if ((st = p3_threadpool_new(ctx->n_threads, &ctx->pool, err)))
	{
		p3_context_free(ctx);
		return st;
	}
	*out = ctx;
	return P3_OK;

nomem:
	p3_context_free(ctx);
	return p3_error(err, P3_ERR_NOMEM, "out of memory allocating the context's buffers (batch %d, context %d)",
					(int) p.n_batch, (int) p.n_ctx);
}

/*
 * KV arrays are anonymous mappings, resized with mremap: growth of a large
 * block moves no data, and shrinking (p3_kv_trim) returns the memory to
 * the system at once, where malloc could keep it in its heap.  Sizes are
 * whole pages of `bytes`; NULL for an empty array.
 */
static size_t
kv_map_size(size_t bytes)
{
	static size_t page = 0;

	if (page == 0)
	{
		long		p = sysconf(_SC_PAGESIZE);

		page = p > 0 ? (size_t) p : 4096;
	}
	return (bytes + page - 1) / page * page;
}

/* bytes of a KV array of cap positions (whole blocks) */
static size_t
kv_bytes(const P3Context *ctx, int32_t cap)
{
	return (size_t) ((cap + KV_BLOCK - 1) / KV_BLOCK) * ctx->kv_block;
}

/* the row of KV head g at position j in a layer's K or V array */
static inline uint8_t *
kv_at(const P3Context *ctx, void *arr, int32_t j, int32_t g)
{
	return (uint8_t *) arr + (size_t) (j / KV_BLOCK) * ctx->kv_block +
		((size_t) g * KV_BLOCK + (size_t) (j % KV_BLOCK)) * ctx->kv_head;
}

/* Resize a KV array from old_bytes to new_bytes (either may be 0); NULL with *ok false on failure. */
static void *
kv_resize(void *old, size_t old_bytes, size_t new_bytes, bool *ok)
{
	size_t		from = kv_map_size(old_bytes);
	size_t		to = kv_map_size(new_bytes);
	void	   *p;

	*ok = true;
	if (from == to)
		return old;
	if (to == 0)
	{
		munmap(old, from);
		return NULL;
	}
	if (old == NULL)
		p = mmap(NULL, to, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	else
		p = mremap(old, from, to, MREMAP_MAYMOVE);
	if (p == MAP_FAILED)
	{
		*ok = false;
		return old;
	}
	return p;
}

static void
free_sequence(const P3Context *ctx, P3Sequence *s)
{
	int32_t		n_layer = ctx->model->hp.n_layer;
	bool		ok;

	if (s->k)
		for (int32_t l = 0; l < n_layer; l++)
			(void) kv_resize(s->k[l], kv_bytes(ctx, s->cap), 0, &ok);
	if (s->v)
		for (int32_t l = 0; l < n_layer; l++)
			(void) kv_resize(s->v[l], kv_bytes(ctx, s->cap), 0, &ok);
	free(s->k);
	free(s->v);
	free(s->tokens);
	free(s->is_long);
	memset(s, 0, sizeof(*s));
}

void
p3_context_free(P3Context *ctx)
{
	if (ctx == NULL)
		return;
	p3_threadpool_free(ctx->pool);
	if (ctx->seqs)
		for (int32_t s = 0; s < ctx->params.n_seq; s++)
			free_sequence(ctx, &ctx->seqs[s]);
	free(ctx->seqs);
	free(ctx->x);
	free(ctx->xn);
	free(ctx->qkv);
	free(ctx->attn);
	free(ctx->proj);
	free(ctx->gate_up);
	free(ctx->act);
	free(ctx->rope_cs);
	free(ctx->att_scratch);
	free(ctx->mm_scratch);
	free(ctx->act_q);
	free(ctx->chunk_pos);
	free(ctx->chunk_seq);
	free(ctx->chunk_out);
	free(ctx->eval_len);
	free(ctx->eval_long);
	free(ctx->logits);
	free(ctx);
}

const P3Model *
p3_context_model(const P3Context *ctx)
{
	return ctx->model;
}

const P3ContextParams *
p3_context_params(const P3Context *ctx)
{
	return &ctx->params;
}

void
p3_context_set_abort(P3Context *ctx, P3AbortFn fn, void *user)
{
	ctx->abort_fn = fn;
	ctx->abort_user = user;
}

const char *
p3_context_kernel_name(const P3Context *ctx)
{
	return ctx->kernels->name;
}

/* ---- sequences and the KV cache ---- */

/* Resize the K and V arrays of layers [0, n_layer) back from `from` to `to` bytes. */
static void
undo_resize(P3Sequence *s, int32_t n_layer, size_t from, size_t to)
{
	bool		ok;

	for (int32_t l = 0; l < n_layer; l++)
	{
		s->k[l] = kv_resize(s->k[l], from, to, &ok);
		s->v[l] = kv_resize(s->v[l], from, to, &ok);
	}
}

/*
 * Give sequence s room for exactly cap positions (cap >= its length; the
 * contents up to the length are kept).  On failure nothing changed.
 */
static bool
seq_set_cap(P3Context *ctx, P3Sequence *s, int32_t cap)
{
	const P3HParams *hp = &ctx->model->hp;
	size_t		old_bytes = kv_bytes(ctx, s->cap);
	size_t		new_bytes = kv_bytes(ctx, cap);
	int32_t		done = 0;
	bool		ok = true;

	if (cap == s->cap)
		return true;
	/* each layer's K and V arrays; on a failure, put back those already resized */
	for (; done < hp->n_layer; done++)
	{
		void	   *k = kv_resize(s->k[done], old_bytes, new_bytes, &ok);
		void	   *v;

		if (!ok)
			break;
		v = kv_resize(s->v[done], old_bytes, new_bytes, &ok);
		if (!ok)
		{
			s->k[done] = kv_resize(k, new_bytes, old_bytes, &ok);
			ok = false;
			break;
		}
		s->k[done] = k;
		s->v[done] = v;
	}
	if (!ok)
	{
		undo_resize(s, done, new_bytes, old_bytes);
		return false;
	}
	if (cap == 0)
	{
		free(s->tokens);
		free(s->is_long);
		s->tokens = NULL;
		s->is_long = NULL;
	}
	else
	{
		int32_t    *tokens = realloc(s->tokens, (size_t) cap * sizeof(int32_t));
		uint8_t    *is_long;

		if (tokens != NULL)
			s->tokens = tokens;
		is_long = tokens ? realloc(s->is_long, (size_t) cap) : NULL;
		if (is_long != NULL)
			s->is_long = is_long;
		if (tokens == NULL || is_long == NULL)
		{
			/* the id arrays only fail when growing: undo the KV growth */
			undo_resize(s, hp->n_layer, new_bytes, old_bytes);
			return false;
		}
	}
	s->cap = cap;
	return true;
}

/* Make room for `need` positions in sequence s (keeps its contents). */
static P3Status
seq_reserve(P3Context *ctx, P3Sequence *s, int32_t need, P3Error *err)
{
	const P3HParams *hp = &ctx->model->hp;
	int32_t		cap;

	if (need <= s->cap)
		return P3_OK;
	cap = ((need + KV_GROW_STEP - 1) / KV_GROW_STEP) * KV_GROW_STEP;
	if (cap > ctx->params.n_ctx)
		cap = ctx->params.n_ctx;
	if (!seq_set_cap(ctx, s, cap))
		return p3_error(err, P3_ERR_NOMEM, "out of memory growing the KV cache to %d positions (%zu bytes)",
						(int) cap, kv_bytes(ctx, cap) * 2 * (size_t) hp->n_layer);
	return P3_OK;
}

void
p3_kv_trim(P3Context *ctx, int32_t keep)
{
	int32_t		cap;

	if (keep < 0)
		keep = 0;
	cap = (keep + KV_TRIM_STEP - 1) / KV_TRIM_STEP * KV_TRIM_STEP;
	if (cap > ctx->params.n_ctx)
		cap = ctx->params.n_ctx;
	for (int32_t i = 0; i < ctx->params.n_seq; i++)
	{
		P3Sequence *s = &ctx->seqs[i];

		if (s->cap <= cap)
			continue;
		if (s->len > keep)
			s->len = keep;
		(void) seq_set_cap(ctx, s, cap);	/* shrinking cannot fail; if it did, nothing changed */
	}
}

size_t
p3_kv_memory(const P3Context *ctx)
{
	const P3HParams *hp = &ctx->model->hp;
	size_t		total = 0;

	for (int32_t s = 0; s < ctx->params.n_seq; s++)
		total += 2 * (size_t) hp->n_layer * kv_map_size(kv_bytes(ctx, ctx->seqs[s].cap)) +
			(size_t) ctx->seqs[s].cap * (sizeof(int32_t) + 1);
	return total;
}

static bool
seq_ok(const P3Context *ctx, int32_t seq)
{
	return seq >= 0 && seq < ctx->params.n_seq;
}

int32_t
p3_kv_seq_len(const P3Context *ctx, int32_t seq)
{
	return seq_ok(ctx, seq) ? ctx->seqs[seq].len : 0;
}

const int32_t *
p3_kv_seq_tokens(const P3Context *ctx, int32_t seq)
{
	return seq_ok(ctx, seq) ? ctx->seqs[seq].tokens : NULL;
}

bool
p3_kv_seq_pos_is_long(const P3Context *ctx, int32_t seq, int32_t pos)
{
	if (!seq_ok(ctx, seq) || pos < 0 || pos >= ctx->seqs[seq].len)
		return false;
	return ctx->seqs[seq].is_long[pos] != 0;
}

void
p3_kv_seq_clear(P3Context *ctx, int32_t seq)
{
	if (!seq_ok(ctx, seq))
		return;
	ctx->seqs[seq].len = 0;
	ctx->seqs[seq].rope_len_hint = 0;
}

void
p3_kv_seq_truncate(P3Context *ctx, int32_t seq, int32_t len)
{
	if (!seq_ok(ctx, seq) || len < 0)
		return;
	if (len < ctx->seqs[seq].len)
		ctx->seqs[seq].len = len;
}

void
p3_seq_set_rope_len(P3Context *ctx, int32_t seq, int32_t len)
{
	if (seq_ok(ctx, seq))
		ctx->seqs[seq].rope_len_hint = len > 0 ? len : 0;
}

/* positions 0 .. len - 1 of a K or V array: whole blocks, then each head's rows of the last one */
static void
kv_copy(const P3Context *ctx, void *dst, void *src, int32_t len)
{
	int32_t		full = len / KV_BLOCK * KV_BLOCK;

	memcpy(dst, src, (size_t) (full / KV_BLOCK) * ctx->kv_block);
	if (len > full)
		for (int32_t g = 0; g < ctx->model->hp.n_head_kv; g++)
			memcpy(kv_at(ctx, dst, full, g), kv_at(ctx, src, full, g), (size_t) (len - full) * ctx->kv_head);
}

P3Status
p3_kv_seq_copy(P3Context *ctx, int32_t src, int32_t dst, int32_t len, P3Error *err)
{
	const P3HParams *hp = &ctx->model->hp;
	P3Sequence *s;
	P3Sequence *d;
	P3Status	st;

	if (!seq_ok(ctx, src) || !seq_ok(ctx, dst))
		return p3_error(err, P3_ERR_INVALID_ARG, "sequence id out of range (%d, %d; context has %d)",
						(int) src, (int) dst, (int) ctx->params.n_seq);
	s = &ctx->seqs[src];
	d = &ctx->seqs[dst];
	if (len < 0 || len > s->len)
		return p3_error(err, P3_ERR_INVALID_ARG, "cannot copy %d positions of a sequence of %d",
						(int) len, (int) s->len);
	if (src == dst)
	{
		d->len = len;
		return P3_OK;
	}
	if ((st = seq_reserve(ctx, d, len, err)))
		return st;
	if (len > 0)
	{
		memcpy(d->tokens, s->tokens, (size_t) len * sizeof(int32_t));
		memcpy(d->is_long, s->is_long, (size_t) len);
		for (int32_t l = 0; l < hp->n_layer; l++)
		{
			kv_copy(ctx, d->k[l], s->k[l], len);
			kv_copy(ctx, d->v[l], s->v[l], len);
		}
	}
	d->len = len;
	return P3_OK;
}

size_t
p3_context_memory(const P3Context *ctx)
{
	const P3HParams *hp = &ctx->model->hp;

	return sizeof(*ctx) + ctx->scratch_bytes + p3_kv_memory(ctx) +
		(size_t) ctx->logits_cap * (size_t) hp->n_vocab * sizeof(float);
}

int32_t
p3_n_outputs(const P3Context *ctx)
{
	return ctx->n_outputs;
}

const float *
p3_logits(const P3Context *ctx, int32_t i)
{
	if (i < 0 || i >= ctx->n_outputs)
		return NULL;
	return ctx->logits + (size_t) i * (size_t) ctx->model->hp.n_vocab;
}

/* ---- forward pass ---- */

/* y = x · W[row_begin:row_end]ᵀ for the chunk's n tokens. */
static void
matmul(P3Context *ctx, const P3Weight *w, const float *x, int64_t ldx, int32_t n,
	   float *y, int64_t ldy)
{
	P3MatmulArgs a;

	a.kernels = ctx->kernels;
	a.act = ctx->params.act;
	a.w = w;
	a.row_begin = 0;
	a.row_end = w->n_out;
	a.x = x;
	a.ldx = ldx;
	a.n_tok = n;
	a.y = y;
	a.ldy = ldy;
	a.act_buf = ctx->act_q;
	a.thread_scratch = ctx->mm_scratch;
	a.thread_scratch_floats = ctx->mm_scratch_floats;
	p3_matmul(ctx->pool, &a);
}

typedef struct AttentionJob
{
	P3Context  *ctx;
	int32_t		layer;
	int32_t		n;				/* tokens in the chunk */
} AttentionJob;

/* llama.cpp's arithmetic (rope, norms, softmax, SiLU as ggml computes them) with Q8 activations */
static inline bool
ggml_numerics(const P3Context *ctx)
{
	return ctx->params.act == P3_ACT_Q8;
}

static void
rmsnorm(const P3Context *ctx, float *out, const float *x, const float *w, int64_t n, float eps)
{
	if (ggml_numerics(ctx))
		p3_rmsnorm_ggml(out, x, w, n, eps);
	else
		p3_rmsnorm(out, x, w, n, eps);
}

/* x[0 .. n) rounded to f16 (nearest even) in place, with the set's converters */
static void
round_f16_inplace(const P3KernelSet *k, float *x, int64_t n)
{
	uint16_t	buf[256];

	for (int64_t i = 0; i < n; i += 256)
	{
		int64_t		c = n - i < 256 ? n - i : 256;

		k->quantize[P3_TYPE_F16] (x + i, buf, c);
		k->dequant[P3_TYPE_F16] (buf, x + i, c);
	}
}

/*
 * The scores of nq queries of one head against the nb keys of one block of
 * the cache (rows kb + j * kv_head), query i's into sc + i * att_scores, in
 * the operands and order attention_task describes: q16 (nq rows of
 * head_dim) is q * scale (rounded to f16 for the f16 cache), q (rows
 * n_qkv apart) itself for the f32 dot.  nb keys for every query: a query
 * whose position is before some of them gets scores it does not use.
 */
static void
block_scores(const P3Context *ctx, const float *q, const float *q16, int32_t nq, const uint8_t *kb, int32_t nb,
			 float *sc)
{
	const P3KernelSet *k = ctx->kernels;
	int32_t		hd = ctx->model->hp.head_dim;
	float		scale = 1.0f / sqrtf((float) hd);	/* as attention_task's */
	bool		ggml = ggml_numerics(ctx);

	if (ctx->kv_elem == 2 && ggml)
	{
		k->ggml_dot_f16_keys(q16, (size_t) hd, nq, kb, ctx->kv_head, nb, hd, sc, ctx->att_scores);
		return;
	}
	for (int32_t i = 0; i < nq; i++)
		for (int32_t j = 0; j < nb; j++)
		{
			const uint8_t *kr = kb + (size_t) j * ctx->kv_head;
			const float *qi = q + (size_t) i * ctx->n_qkv;
			const float *q16i = q16 + (size_t) i * hd;
			float	   *out = sc + (size_t) i * ctx->att_scores + j;

			if (ctx->kv_elem == 2)
				*out = k->dot_f32_f16(q16i, (const uint16_t *) (const void *) kr, hd);
			else if (ggml)		/* ggml multiplies k by q already scaled */
				*out = k->ggml_dot_f32(q16i, (const float *) (const void *) kr, hd);
			else
				*out = k->dot_f32_f32(qi, (const float *) (const void *) kr, hd) * scale;
		}
}

/*
 * Positions j0 .. j0 + nb - 1 of V · p, one block of the cache (rows vb +
 * j * kv_head, probabilities p): into ggml's slots, or into the float
 * accumulator position by position (acc: the one or the other, zeroed).
 */
static void
block_vp(const P3Context *ctx, const float *p, const uint8_t *vb, int32_t j0, int32_t nb, float *acc)
{
	const P3KernelSet *k = ctx->kernels;
	int32_t		hd = ctx->model->hp.head_dim;

	if (ggml_numerics(ctx))
	{
		(ctx->kv_elem == 2 ? k->ggml_vp_f16_acc : k->ggml_vp_f32_acc) (acc, p, vb, ctx->kv_head, j0, nb, hd);
		return;
	}
	for (int32_t j = 0; j < nb; j++)
	{
		const void *vr = vb + (size_t) j * ctx->kv_head;

		if (ctx->kv_elem == 4)
			k->axpy_f32(acc, p[j], vr, hd);
		else
			k->axpy_f16(acc, p[j], vr, hd);
	}
}

/*
 * Causal attention of (token, head) pairs.
 * Scores and the output accumulate in f32, reading K and V rows in the
 * cache's type (f16 or f32) directly.
 *
 * With the f16 cache the products take llama.cpp's operands (its default
 * f16 cache without flash attention, spec 2.4): ggml multiplies the f16 K
 * by q converted to f16 (q already scaled by 1 / sqrt(head_dim): phi3's
 * graph scales q before the product), and the f16 V by the softmax
 * probabilities converted to f16.  The f32 cache keeps exact f32 operands:
 * score = (q · k) * scale, probabilities unrounded.
 *
 * With Q8 activations (llama.cpp's arithmetic) the softmax is ggml's
 * (ggml_v_expf, its sums), and both products sum in ggml_vec_dot_f16's /
 * _f32's order (the set's ggml_dot_f16 / ggml_vp_f16, ggml_dot_f32 /
 * ggml_vp_f32; V·p as over ggml's transposed V; with the f32 cache q is
 * scaled before its product, as ggml does); with f32 activations libm's
 * expf and the set's float dots, V·p position by position.
 *
 * attention_group does nq successive tokens i0 .. i0 + nq - 1 of one
 * sequence for head h: the scores of all of them a block of keys at a
 * time (the block read once), then each one's softmax and V·p.
 */
static void
attention_group(P3Context *ctx, int32_t layer, int ith, int32_t h, int32_t i0, int32_t nq)
{
	const P3HParams *hp = &ctx->model->hp;
	const P3KernelSet *k = ctx->kernels;
	int32_t		hd = hp->head_dim;
	int32_t		g = h / (hp->n_head / hp->n_head_kv);
	float		scale = 1.0f / sqrtf((float) hd);
	float	   *scores = ctx->att_scratch + (size_t) ith * ctx->att_scratch_floats;	/* (nq, att_scores) */
	float	   *q16 = scores + ATT_GROUP * ctx->att_scores;	/* (nq, head_dim) q * scale, f16-rounded for f16 */
	float	   *acc = q16 + ATT_GROUP * (size_t) hd;	/* (head_dim) output accumulator */
	float	   *slots = acc + hd;	/* (P3_GGML_VP_QUERIES, P3_GGML_VP_SLOTS, head_dim) ggml_vp_f16's accumulators */
	bool		ggml = ggml_numerics(ctx);
	const P3Sequence *s = &ctx->seqs[ctx->chunk_seq[i0]];
	const float *q = ctx->qkv + (size_t) i0 * ctx->n_qkv + (size_t) h * hd;	/* query t at q + t * n_qkv */
	float	   *out0 = ctx->attn + (size_t) i0 * hp->n_embd + (size_t) h * hd;	/* token t's at out0 + t * n_embd */
	int32_t		npos[ATT_GROUP];
	int32_t		maxpos = 0;

	/* q as the products take it (see above) */
	for (int32_t t = 0; t < nq; t++)
	{
		float	   *qt = q16 + (size_t) t * hd;

		if (ggml || ctx->kv_elem == 2)
			for (int32_t d = 0; d < hd; d++)
				qt[d] = q[(size_t) t * ctx->n_qkv + d] * scale;
		if (ctx->kv_elem == 2)
			round_f16_inplace(k, qt, hd);
		npos[t] = ctx->chunk_pos[i0 + t] + 1;
		if (npos[t] > maxpos)
			maxpos = npos[t];
	}

	/* scores, a block of the cache at a time for all nq queries */
	for (int32_t j0 = 0; j0 < maxpos; j0 += KV_BLOCK)
		block_scores(ctx, q, q16, nq, kv_at(ctx, s->k[layer], j0, g), maxpos - j0 < KV_BLOCK ? maxpos - j0 : KV_BLOCK,
					 scores + j0);

	for (int32_t t = 0; t < nq; t++)
	{
		float	   *sc = scores + (size_t) t * ctx->att_scores;

		if (ggml)
			k->ggml_softmax(sc, npos[t]);
		else
			p3_softmax(sc, npos[t]);
		if (ctx->kv_elem == 2)
			round_f16_inplace(k, sc, npos[t]);
	}

	/* output = V · p: llama.cpp's f16 case for all the tokens at once, else a token and a block at a time */
	if (ggml && ctx->kv_elem == 2)
	{
		k->ggml_vp_f16_blocks(out0, (size_t) hp->n_embd, scores, ctx->att_scores, npos, nq, kv_at(ctx, s->v[layer], 0, g),
							  KV_BLOCK, ctx->kv_block, ctx->kv_head, hd, slots);
		return;
	}
	for (int32_t t = 0; t < nq; t++)
	{
		float	   *sc = scores + (size_t) t * ctx->att_scores;
		float	   *out = out0 + (size_t) t * hp->n_embd;

		if (ggml)
			memset(slots, 0, (size_t) P3_GGML_VP_SLOTS * (size_t) hd * sizeof(float));
		else
			memset(acc, 0, (size_t) hd * sizeof(float));
		for (int32_t j0 = 0; j0 < npos[t]; j0 += KV_BLOCK)
			block_vp(ctx, sc + j0, kv_at(ctx, s->v[layer], j0, g), j0, npos[t] - j0 < KV_BLOCK ? npos[t] - j0 : KV_BLOCK,
					 ggml ? slots : acc);
		if (ggml)
			k->ggml_vp_finish(out, slots, hd);
		else
			memcpy(out, acc, (size_t) hd * sizeof(float));
	}
}

/* Worker: its share of the (token, head) pairs, in groups (attention_group) */
static void
attention_task(void *arg, int ith, int nth)
{
	const AttentionJob *job = arg;
	P3Context  *ctx = job->ctx;
	int64_t		p0,
				p1,
				m;

	/*
	 * Pairs head-major: a worker takes all the chunk's tokens of a head
	 * before the next head, so a head's K and V rows (a prompt chunk's
	 * tokens share them) stay in its cache instead of being read again
	 * from memory for every token of a long prompt; and it takes up to
	 * ATT_GROUP successive tokens of a sequence at once, whose scores
	 * read each block of keys once for all of them.
	 */
	p3_split_range((int64_t) job->n * ctx->model->hp.n_head, ith, nth, &p0, &p1);
	for (int64_t pair = p0; pair < p1; pair += m)
	{
		int32_t		i = (int32_t) (pair % job->n);
		int32_t		h = (int32_t) (pair / job->n);

		for (m = 1; m < ATT_GROUP && pair + m < p1 && i + m < job->n &&
			 ctx->chunk_seq[i + m] == ctx->chunk_seq[i]; m++)
			;
		attention_group(ctx, job->layer, ith, h, i, (int32_t) m);
	}
}

static bool
should_abort(P3Context *ctx)
{
	return ctx->abort_fn != NULL && ctx->abort_fn(ctx->abort_user);
}

/*
 * The element-wise work between the products, split over the pool by
 * tokens (the SwiGLU by element ranges, so a single token is split too).
 * Every element is computed by one worker with the same operations as on
 * one thread, so the results do not depend on the thread count.
 */
typedef enum RowsOp
{
	ROWS_ATTN_NORM,				/* xn = rmsnorm(x) · attn_norm */
	ROWS_ROPE_STORE,			/* RoPE of q and k, k and v into the KV cache */
	ROWS_ADD_FFN_NORM,			/* x += proj; xn = rmsnorm(x) · ffn_norm */
	ROWS_SWIGLU,				/* act = silu(gate) · up */
	ROWS_ADD					/* x += proj */
} RowsOp;

typedef struct RowsJob
{
	P3Context  *ctx;
	const P3Layer *L;
	int32_t		layer;
	int32_t		n;				/* tokens in the chunk */
	RowsOp		op;
} RowsJob;

/* RoPE of token i's q and k heads, then its k and v rows into its sequence's cache at layer l */
static void
rope_store(P3Context *ctx, int32_t l, int32_t i)
{
	const P3HParams *hp = &ctx->model->hp;
	int32_t		hd = hp->head_dim;
	float	   *q = ctx->qkv + (size_t) i * ctx->n_qkv;
	float	   *kk = q + hp->n_embd;
	float	   *vv = kk + hp->n_embd_kv;
	const float *cs = ctx->rope_cs + (size_t) i * hp->n_rot;
	P3Sequence *s = &ctx->seqs[ctx->chunk_seq[i]];
	int32_t		pos = ctx->chunk_pos[i];

	void		(*rope) (float *, int32_t, const float *) = ggml_numerics(ctx) ? p3_rope_neox_ggml : p3_rope_neox;

	for (int32_t h = 0; h < hp->n_head; h++)
		rope(q + (size_t) h * hd, hp->n_rot, cs);
	for (int32_t h = 0; h < hp->n_head_kv; h++)
		rope(kk + (size_t) h * hd, hp->n_rot, cs);
	for (int32_t g = 0; g < hp->n_head_kv; g++)
	{
		uint8_t    *kdst = kv_at(ctx, s->k[l], pos, g);
		uint8_t    *vdst = kv_at(ctx, s->v[l], pos, g);

		if (ctx->kv_elem == 2)
		{
			ctx->kernels->quantize[P3_TYPE_F16](kk + (size_t) g * hd, kdst, hd);
			ctx->kernels->quantize[P3_TYPE_F16](vv + (size_t) g * hd, vdst, hd);
		}
		else
		{
			memcpy(kdst, kk + (size_t) g * hd, ctx->kv_head);
			memcpy(vdst, vv + (size_t) g * hd, ctx->kv_head);
		}
	}
}

/*
 * SwiGLU pieces: each token's n_ff elements cut every SWIGLU_PIECE (a
 * multiple of every set's vector width, so a piece's vector loop covers
 * the elements a whole-row call would, and the row's tail stays in its
 * last piece).
 */
#define SWIGLU_PIECE 64

/* act = silu(gate) · up for pieces [u0, u1) of the chunk's (n, n_ff), row by row */
static void
swiglu_range(P3Context *ctx, int64_t u0, int64_t u1)
{
	int64_t		n_ff = ctx->model->hp.n_ff;
	int64_t		per_row = (n_ff + SWIGLU_PIECE - 1) / SWIGLU_PIECE;

	for (int64_t u = u0; u < u1;)
	{
		int64_t		i = u / per_row;
		int64_t		b0 = u - i * per_row;
		int64_t		b1 = u1 - i * per_row < per_row ? u1 - i * per_row : per_row;
		int64_t		j0 = b0 * SWIGLU_PIECE;
		int64_t		j1 = b1 * SWIGLU_PIECE < n_ff ? b1 * SWIGLU_PIECE : n_ff;
		const float *gate = ctx->gate_up + (size_t) i * 2 * n_ff;
		const float *up = gate + n_ff;
		float	   *act = ctx->act + (size_t) i * n_ff;

		if (ggml_numerics(ctx))
			ctx->kernels->ggml_swiglu(act + j0, gate + j0, up + j0, j1 - j0);
		else
			for (int64_t j = j0; j < j1; j++)
				act[j] = p3_silu(gate[j]) * up[j];
		u = i * per_row + b1;
	}
}

/* Worker: its share of the job's tokens (or elements) */
static void
rows_task(void *arg, int ith, int nth)
{
	const RowsJob *job = arg;
	P3Context  *ctx = job->ctx;
	const P3HParams *hp = &ctx->model->hp;
	int32_t		E = hp->n_embd;
	int64_t		t0,
				t1;

	if (job->op == ROWS_SWIGLU)
	{
		p3_split_range((int64_t) job->n * ((hp->n_ff + SWIGLU_PIECE - 1) / SWIGLU_PIECE), ith, nth, &t0, &t1);
		swiglu_range(ctx, t0, t1);
		return;
	}
	p3_split_range(job->n, ith, nth, &t0, &t1);
	for (int64_t i = t0; i < t1; i++)
	{
		float	   *x = ctx->x + (size_t) i * E;
		float	   *xn = ctx->xn + (size_t) i * E;
		const float *proj = ctx->proj + (size_t) i * E;

		switch (job->op)
		{
			case ROWS_ATTN_NORM:
				rmsnorm(ctx, xn, x, job->L->attn_norm, E, hp->rms_eps);
				break;
			case ROWS_ROPE_STORE:
				rope_store(ctx, job->layer, (int32_t) i);
				break;
			case ROWS_ADD_FFN_NORM:
				for (int32_t e = 0; e < E; e++)
					x[e] += proj[e];
				rmsnorm(ctx, xn, x, job->L->ffn_norm, E, hp->rms_eps);
				break;
			case ROWS_ADD:
				for (int32_t e = 0; e < E; e++)
					x[e] += proj[e];
				break;
			case ROWS_SWIGLU:
				break;
		}
	}
}

/* op over the chunk's n tokens of layer l, on the pool */
static void
rows(P3Context *ctx, int32_t l, int32_t n, RowsOp op)
{
	RowsJob		job = {ctx, &ctx->model->layers[l], l, n, op};

	/* a single token's per-token work (decode) is not worth waking the pool for */
	if (n == 1 && op != ROWS_SWIGLU)
		rows_task(&job, 0, 1);
	else
		p3_threadpool_run(ctx->pool, rows_task, &job);
}

/* One layer over the chunk's n tokens (positions and sequences in chunk_pos/chunk_seq). */
static void
forward_layer(P3Context *ctx, int32_t l, int32_t n)
{
	const P3Model *model = ctx->model;
	const P3HParams *hp = &model->hp;
	const P3Layer *L = &model->layers[l];
	int32_t		E = hp->n_embd;
	AttentionJob job;

	/* attention block */
	rows(ctx, l, n, ROWS_ATTN_NORM);
	if (L->fused_qkv)
		matmul(ctx, &L->attn_qkv, ctx->xn, E, n, ctx->qkv, ctx->n_qkv);
	else
	{
		matmul(ctx, &L->attn_q, ctx->xn, E, n, ctx->qkv, ctx->n_qkv);
		matmul(ctx, &L->attn_k, ctx->xn, E, n, ctx->qkv + E, ctx->n_qkv);
		matmul(ctx, &L->attn_v, ctx->xn, E, n, ctx->qkv + E + hp->n_embd_kv, ctx->n_qkv);
	}
	rows(ctx, l, n, ROWS_ROPE_STORE);
	job.ctx = ctx;
	job.layer = l;
	job.n = n;
	p3_threadpool_run(ctx->pool, attention_task, &job);
	matmul(ctx, &L->attn_output, ctx->attn, E, n, ctx->proj, E);

	/* feed-forward block */
	rows(ctx, l, n, ROWS_ADD_FFN_NORM);
	matmul(ctx, &L->ffn_up, ctx->xn, E, n, ctx->gate_up, 2 * (int64_t) hp->n_ff);
	rows(ctx, l, n, ROWS_SWIGLU);
	matmul(ctx, &L->ffn_down, ctx->act, hp->n_ff, n, ctx->proj, E);
	rows(ctx, l, n, ROWS_ADD);
}

/*
 * Run the chunk tokens[0..n) whose positions and sequences are already in
 * chunk_pos / chunk_seq; keep logits of the n_out tokens listed in
 * chunk_out, written from logits row out_base on.
 */
static P3Status
forward_chunk(P3Context *ctx, const int32_t *tokens, int32_t n, const bool *seq_long,
			  int32_t n_out, int32_t out_base, P3Error *err)
{
	const P3Model *model = ctx->model;
	const P3HParams *hp = &model->hp;
	int32_t		E = hp->n_embd;

	for (int32_t i = 0; i < n; i++)
	{
		P3Sequence *s = &ctx->seqs[ctx->chunk_seq[i]];
		bool		is_long = seq_long[ctx->chunk_seq[i]];
		const float *factors = NULL;

		ctx->kernels->dequant[model->token_embd.type](model->token_embd.data +
													  (size_t) tokens[i] * model->token_embd.row_bytes,
													  ctx->x + (size_t) i * E, E);
		if (hp->has_longrope)
			factors = is_long ? model->rope_factors_long : model->rope_factors_short;
		(ggml_numerics(ctx) ? p3_rope_table_ggml : p3_rope_table) (ctx->rope_cs + (size_t) i * hp->n_rot,
																	 ctx->chunk_pos[i], hp->n_rot,
																	 hp->rope_freq_base, factors,
																	 hp->rope_attn_factor);
		s->tokens[ctx->chunk_pos[i]] = tokens[i];
		s->is_long[ctx->chunk_pos[i]] = is_long ? 1 : 0;
	}

	for (int32_t l = 0; l < hp->n_layer; l++)
	{
		if (should_abort(ctx))
			return p3_error(err, P3_ERR_ABORTED, "evaluation was aborted by the caller");
		forward_layer(ctx, l, n);
	}

	if (n_out > 0)
	{
		/* gather the kept tokens' normed states into xn, then one product */
		for (int32_t o = 0; o < n_out; o++)
			rmsnorm(ctx, ctx->xn + (size_t) o * E, ctx->x + (size_t) ctx->chunk_out[o] * E,
					   model->output_norm, E, hp->rms_eps);
		matmul(ctx, &model->output, ctx->xn, E, n_out,
			   ctx->logits + (size_t) out_base * hp->n_vocab, hp->n_vocab);
	}
	return P3_OK;
}

/* The sequence of batch token i (sequence 0 when the batch gives none). */
static inline int32_t
batch_seq(const P3Batch *batch, int32_t i)
{
	return batch->seq ? batch->seq[i] : 0;
}

/* Whether batch token i keeps its logits (only the last one when the batch does not say). */
static inline bool
batch_wants_logits(const P3Batch *batch, int32_t i)
{
	return batch->want_logits ? batch->want_logits[i] != 0 : i == batch->n_tokens - 1;
}

P3Status
p3_eval(P3Context *ctx, const P3Batch *batch, P3Error *err)
{
	const P3HParams *hp = &ctx->model->hp;
	int32_t		n = batch->n_tokens;
	int32_t		n_seq = ctx->params.n_seq;
	int64_t    *new_len = ctx->eval_len;	/* int64: len + n may pass INT32_MAX */
	bool	   *seq_long = ctx->eval_long;
	int32_t		n_out = 0;
	int32_t		out_done = 0;
	P3Status	st;

	ctx->n_outputs = 0;
	if (n < 1)
		return p3_error(err, P3_ERR_INVALID_ARG, "batch has no tokens");
	/* a batch larger than every sequence's room cannot fit: say so before reading it */
	if ((int64_t) n > (int64_t) n_seq * ctx->params.n_ctx)
		return p3_error(err, P3_ERR_CONTEXT_FULL, "batch of %d tokens is larger than the context (%d sequences of %d positions)",
						(int) n, (int) n_seq, (int) ctx->params.n_ctx);
	for (int32_t i = 0; i < n; i++)
	{
		int32_t		s = batch_seq(batch, i);

		if (batch->tokens[i] < 0 || batch->tokens[i] >= hp->n_vocab)
			return p3_error(err, P3_ERR_INVALID_ARG, "token id %d at batch index %d is out of range (0 to %d)",
							(int) batch->tokens[i], (int) i, (int) hp->n_vocab - 1);
		if (s < 0 || s >= n_seq)
			return p3_error(err, P3_ERR_INVALID_ARG, "sequence id %d at batch index %d is out of range (0 to %d)",
							(int) s, (int) i, (int) n_seq - 1);
		if (batch_wants_logits(batch, i))
			n_out++;
	}

	for (int32_t s = 0; s < n_seq; s++)
		new_len[s] = ctx->seqs[s].len;
	for (int32_t i = 0; i < n; i++)
		new_len[batch_seq(batch, i)]++;

	for (int32_t s = 0; s < n_seq; s++)
	{
		P3Sequence *seq = &ctx->seqs[s];
		int32_t		seen;

		if (new_len[s] > ctx->params.n_ctx)
			return p3_error(err, P3_ERR_CONTEXT_FULL,
							"sequence %d would hold %lld positions (%d cached + %lld new) but the context holds %d",
							(int) s, (long long) new_len[s], (int) seq->len, (long long) (new_len[s] - seq->len),
							(int) ctx->params.n_ctx);
		if (new_len[s] > seq->len && (st = seq_reserve(ctx, seq, (int32_t) new_len[s], err)))
			return st;
		/* LongRoPE: the length this pass sees (or the caller's hint) decides the factor list */
		seen = new_len[s] > seq->rope_len_hint ? (int32_t) new_len[s] : seq->rope_len_hint;
		seq_long[s] = hp->has_longrope && seen > hp->n_ctx_orig;
	}

	if (n_out > ctx->logits_cap)
	{
		float	   *grown = realloc(ctx->logits, (size_t) n_out * (size_t) hp->n_vocab * sizeof(float));

		if (grown == NULL)
			return p3_error(err, P3_ERR_NOMEM, "out of memory allocating logits for %d positions", (int) n_out);
		ctx->logits = grown;
		ctx->logits_cap = n_out;
	}

	/* positions: restart the per-sequence counters at the committed lengths */
	for (int32_t s = 0; s < n_seq; s++)
		new_len[s] = ctx->seqs[s].len;

	for (int32_t start = 0; start < n; start += ctx->params.n_batch)
	{
		int32_t		m = n - start < ctx->params.n_batch ? n - start : ctx->params.n_batch;
		int32_t		m_out = 0;

		if (should_abort(ctx))
			return p3_error(err, P3_ERR_ABORTED, "evaluation was aborted by the caller");
		for (int32_t i = 0; i < m; i++)
		{
			int32_t		bi = start + i;
			int32_t		s = batch_seq(batch, bi);

			ctx->chunk_seq[i] = s;
			ctx->chunk_pos[i] = (int32_t) new_len[s]++;
			if (batch_wants_logits(batch, bi))
				ctx->chunk_out[m_out++] = i;
		}
		if ((st = forward_chunk(ctx, batch->tokens + start, m, seq_long, m_out, out_done, err)))
			return st;
		out_done += m_out;
	}

	/* commit */
	for (int32_t s = 0; s < n_seq; s++)
		ctx->seqs[s].len = (int32_t) new_len[s];
	ctx->n_outputs = n_out;
	return P3_OK;
}
