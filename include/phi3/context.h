/*
 * phi3/context.h — the per-user engine state: KV cache, scratch buffers,
 * compute threads, and the forward pass.
 *
 * A context holds up to n_seq independent sequences (one per row being
 * decoded together).  p3_eval runs the Phi-3 forward pass over a batch of
 * tokens that may come from several sequences: every token is appended to
 * its own sequence's KV cache at the next position, attends causally to
 * that sequence only, and may ask for its logits.  A batch longer than
 * n_batch is processed in chunks of n_batch tokens.  Matrix products run
 * once per chunk over all its tokens, so a long prompt is evaluated as
 * matrix-matrix products (prefill as GEMM) and several sequences decode in
 * one pass over the weights.
 *
 * The KV cache is never reserved for the whole context: each sequence's
 * cache grows in steps as positions are written, up to n_ctx positions
 * (a Phi-3-mini token costs 384 KiB in f16).  The context also remembers
 * the token ids it holds for each sequence, so p3_generate
 * (phi3/generate.h) can reuse a shared prompt prefix instead of
 * recomputing it.
 *
 * Cancellation: an abort callback set with p3_context_set_abort is polled
 * on the calling thread between chunks and between layers; when it returns
 * true, p3_eval returns P3_ERR_ABORTED.  After any error, including an
 * abort, every sequence is exactly as it was before the call.
 *
 * Not thread-safe: one caller at a time per context.
 */
#ifndef PHI3_CONTEXT_H
#define PHI3_CONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/kernels.h"		/* P3ActPrecision */
#include "phi3/model.h"
#include "phi3/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum P3KVType
{
	P3_KV_F16 = 0,				/* default, as llama.cpp */
	P3_KV_F32 = 1
} P3KVType;

/* How weight-times-activation products are computed. */
typedef enum P3MatmulMode
{
	P3_MATMUL_AUTO = 0,			/* fastest validated kernels for this CPU */
	P3_MATMUL_REFERENCE = 1,	/* scalar reference kernels only (tests, debugging) */
} P3MatmulMode;

typedef struct P3ContextParams
{
	int32_t		n_ctx;			/* max positions per sequence; 0 = the model's training context */
	int32_t		n_seq;			/* sequences held at once, >= 1 */
	int32_t		n_batch;		/* tokens per forward chunk */
	int32_t		n_threads;		/* compute threads including the caller; 0 = all CPUs
								 * (at most P3_MAX_THREADS) */
	P3KVType	kv_type;
	P3MatmulMode matmul;
	P3ActPrecision act;			/* phi3/kernels.h */
} P3ContextParams;

/* n_ctx 2048 (capped at the model's), n_seq 1, n_batch 64, all CPUs, f16 KV, AUTO, ACT_Q8 */
P3ContextParams p3_context_default_params(void);

typedef struct P3Context P3Context;

typedef bool (*P3AbortFn) (void *user);

/* Create a context (validates params; P3_ERR_INVALID_ARG names the bad one). */
P3Status	p3_context_new(const P3Model *model, const P3ContextParams *params,
						   P3Context **out, P3Error *err);
void		p3_context_free(P3Context *ctx);

const P3Model *p3_context_model(const P3Context *ctx);
const P3ContextParams *p3_context_params(const P3Context *ctx);

void		p3_context_set_abort(P3Context *ctx, P3AbortFn fn, void *user);

/*
 * Tokens to evaluate.  seq may be NULL (all tokens belong to sequence 0);
 * want_logits may be NULL (only the last token of the batch gets logits).
 * Within one sequence, tokens are appended in batch order.
 */
typedef struct P3Batch
{
	int32_t		n_tokens;
	const int32_t *tokens;		/* (n_tokens) token ids */
	const int32_t *seq;			/* (n_tokens) sequence ids, or NULL */
	const uint8_t *want_logits; /* (n_tokens) nonzero: keep this token's logits, or NULL */
} P3Batch;

/*
 * Run the forward pass.  Errors: P3_ERR_INVALID_ARG (token or sequence id
 * out of range, empty batch), P3_ERR_CONTEXT_FULL (a sequence would pass
 * n_ctx; the message gives the counts), P3_ERR_NOMEM (growing the cache),
 * P3_ERR_ABORTED.
 */
P3Status	p3_eval(P3Context *ctx, const P3Batch *batch, P3Error *err);

/* Logits of the last p3_eval: n_outputs rows of n_vocab floats, in batch order. */
int32_t		p3_n_outputs(const P3Context *ctx);
const float *p3_logits(const P3Context *ctx, int32_t i);

/*
 * LongRoPE: the factor list (short or long) for a sequence is chosen per
 * p3_eval call, as the model's reference implementation chooses it per
 * forward pass: long iff the sequence length seen by the pass exceeds
 * n_ctx_orig.  When a prompt is evaluated in several chunks, set the
 * prompt's full length first so every chunk makes the same choice as one
 * whole-prompt pass would.  Cleared by p3_kv_seq_clear.  No effect on
 * models without LongRoPE.
 */
void		p3_seq_set_rope_len(P3Context *ctx, int32_t seq, int32_t len);

/* Sequence bookkeeping */
int32_t		p3_kv_seq_len(const P3Context *ctx, int32_t seq);
const int32_t *p3_kv_seq_tokens(const P3Context *ctx, int32_t seq);	/* (seq_len) ids held */
/* Whether position pos of seq was written with the long LongRoPE factors. */
bool		p3_kv_seq_pos_is_long(const P3Context *ctx, int32_t seq, int32_t pos);
void		p3_kv_seq_clear(P3Context *ctx, int32_t seq);
/* Keep the first len positions (len <= current length). */
void		p3_kv_seq_truncate(P3Context *ctx, int32_t seq, int32_t len);
/* Make dst hold the first len positions of src (shared-prefix reuse across sequences). */
P3Status	p3_kv_seq_copy(P3Context *ctx, int32_t src, int32_t dst, int32_t len, P3Error *err);

/*
 * Shrink every sequence's KV cache to room for `keep` positions (rounded up
 * to a multiple of 16), dropping cached positions past keep; sequences
 * already that small are untouched.  The memory goes back to the system.
 * Call it between generations (a decoder's live sequences would lose
 * their positions).
 */
void		p3_kv_trim(P3Context *ctx, int32_t keep);

/* Bytes the KV cache holds now (all sequences). */
size_t		p3_kv_memory(const P3Context *ctx);

/* Bytes the context has allocated now (KV cache + scratch + logits). */
size_t		p3_context_memory(const P3Context *ctx);

/* Names of the kernels chosen for this CPU, e.g. "avx512-vnni" (for logs and model info). */
const char *p3_context_kernel_name(const P3Context *ctx);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_CONTEXT_H */
