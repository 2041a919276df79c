/*
 * phi3/model.h — a Phi-3 model: hyper-parameters, tokenizer and weight
 * views over the mapped GGUF file.
 *
 * Opening a model maps the file (phi3/gguf.h), reads the phi3.* metadata,
 * validates it against the tensor shapes, binds every weight matrix as a
 * view into the mapping (no copy, no repacking) and builds the tokenizer.
 * The only private memory is the small per-layer f32 vectors (norm weights,
 * rope factors) when a file stores them in F16/BF16 rather than F32.
 *
 * A P3Model is immutable after p3_model_open and may be shared by any
 * number of P3Contexts (phi3/context.h), which hold the per-sequence state.
 *
 * Architecture "phi3" (Phi-3-mini-4k / -128k, Phi-3.5-mini, and the GQA
 * siblings that share the graph).  Tensors, in GGUF dims order [ne0, ne1]:
 *     token_embd.weight        [n_embd, n_vocab]
 *     blk.N.attn_norm.weight   [n_embd]                      f32
 *     blk.N.attn_qkv.weight    [n_embd, n_embd + 2*n_embd_kv]  fused Q|K|V
 *       (or blk.N.attn_q/attn_k/attn_v.weight separately)
 *     blk.N.attn_output.weight [n_embd, n_embd]
 *     blk.N.ffn_norm.weight    [n_embd]                      f32
 *     blk.N.ffn_up.weight      [n_embd, 2*n_ff]              fused gate|up
 *     blk.N.ffn_down.weight    [n_ff, n_embd]
 *     output_norm.weight       [n_embd]
 *     output.weight            [n_embd, n_vocab]   (absent: tied to token_embd)
 *     rope_factors_short.weight, rope_factors_long.weight [n_rot/2]  (LongRoPE)
 */
#ifndef PHI3_MODEL_H
#define PHI3_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "phi3/gguf.h"
#include "phi3/kernels.h"		/* P3Weight */
#include "phi3/quant.h"
#include "phi3/status.h"
#include "phi3/tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct P3HParams
{
	int32_t		n_vocab;		/* rows of token_embd (32064) */
	int32_t		n_ctx_train;	/* phi3.context_length (4096 or 131072) */
	int32_t		n_ctx_orig;		/* phi3.rope.scaling.original_context_length (default n_ctx_train) */
	int32_t		n_embd;			/* hidden size (3072) */
	int32_t		n_layer;		/* 32 */
	int32_t		n_head;			/* query heads (32) */
	int32_t		n_head_kv;		/* key/value heads (32: no GQA in Phi-3-mini) */
	int32_t		head_dim;		/* n_embd / n_head (96) */
	int32_t		n_embd_kv;		/* n_head_kv * head_dim */
	int32_t		n_rot;			/* rotary dims per head (96), NeoX pairs (i, i + n_rot/2) */
	int32_t		n_ff;			/* FFN hidden size (8192) */
	float		rms_eps;		/* 1e-5 */
	float		rope_freq_base; /* 10000 */
	float		rope_attn_factor;	/* LongRoPE magnitude factor (1.190238 for 128k), else 1 */
	bool		has_longrope;	/* rope_factors_short/long present */
	/*
	 * phi3.attention.sliding_window (Phi-3-mini-4k 2047, 128k 262144; 0 when
	 * absent, values above INT32_MAX read as INT32_MAX): read and reported
	 * only.  No sliding window is applied, as llama.cpp applies none for
	 * phi3 (it disabled SWA for the architecture, PR 13676; spec 3.5).
	 */
	int32_t		n_swa;
} P3HParams;

typedef struct P3Layer
{
	const float *attn_norm;		/* (n_embd) */
	bool		fused_qkv;
	P3Weight	attn_qkv;		/* (n_embd -> n_embd + 2*n_embd_kv): Q rows, then K, then V */
	P3Weight	attn_q;			/* (n_embd -> n_embd), when not fused */
	P3Weight	attn_k;			/* (n_embd -> n_embd_kv) */
	P3Weight	attn_v;			/* (n_embd -> n_embd_kv) */
	P3Weight	attn_output;	/* (n_embd -> n_embd) */
	const float *ffn_norm;		/* (n_embd) */
	P3Weight	ffn_up;			/* (n_embd -> 2*n_ff): gate rows [0, n_ff), up rows [n_ff, 2*n_ff) */
	P3Weight	ffn_down;		/* (n_ff -> n_embd) */
} P3Layer;

typedef struct P3Model
{
	P3GGUF	   *gguf;			/* owns the mapping */
	P3Tokenizer *tokenizer;
	P3HParams	hp;
	char		name[128];		/* general.name as valid UTF-8 (bad bytes as '?', cut at a
								 * character to fit); may be empty */
	P3Weight	token_embd;		/* (n_embd, n_vocab): row t is token t's embedding */
	P3Weight	output;			/* (n_embd -> n_vocab); aliases token_embd when tied */
	bool		tied_output;
	const float *output_norm;	/* (n_embd) */
	const float *rope_factors_short;	/* (n_rot/2) or NULL */
	const float *rope_factors_long; /* (n_rot/2) or NULL */
	P3Layer    *layers;			/* (n_layer) */
	uint64_t	n_params;		/* elements in all weight tensors */
	uint64_t	weight_bytes;	/* bytes of tensor data in the file */
	uint32_t	type_counts[P3_TYPE_COUNT];	/* tensors per type */
	void	   *owned;			/* private f32 copies of non-f32 vectors (internal) */
} P3Model;

/*
 * Open and validate a model.  Errors: P3_ERR_IO (open/mmap, errno kept),
 * P3_ERR_FORMAT (not GGUF, corrupt, hyper-parameters inconsistent with
 * tensor shapes, missing tensor — the message names it),
 * P3_ERR_UNSUPPORTED (architecture other than phi3, a tensor type we cannot
 * compute — the message names the tensor and the type), P3_ERR_NOMEM.
 * err->kind says which I/O step or unsupported feature failed (status.h).
 */
P3Status	p3_model_open(const char *path, P3Model **out, P3Error *err);

/* As p3_model_open over an already opened GGUF; takes ownership of gguf even on failure. */
P3Status	p3_model_from_gguf(P3GGUF *gguf, P3Model **out, P3Error *err);

void		p3_model_free(P3Model *model);

/* KV-cache bytes one position costs in every layer (2 * n_layer * n_embd_kv * elem_size). */
size_t		p3_model_kv_bytes_per_token(const P3Model *model, bool f16);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_MODEL_H */
