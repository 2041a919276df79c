/*
 * model.c — open a Phi-3 GGUF: hyper-parameters, validation against the
 * tensor shapes, weight views into the mapping, tokenizer.
 *
 * Nothing here trusts the file: every hyper-parameter is range-checked,
 * every tensor the forward pass will touch is looked up by name and its
 * shape and type compared with what the hyper-parameters imply, so the
 * forward pass can index weights without further checks.  Errors name the
 * key or tensor and the values found.
 *
 * The weight matrices are never copied.  Only 1-D f32 vectors (norm
 * weights, LongRoPE factors) stored in another float format, or not 4-byte
 * aligned in the file, get a private f32 copy (a few hundred KB at most).
 */
#include "phi3/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sanity bounds on hyper-parameters: far above any Phi model, far below overflow. */
#define MAX_EMBD		65536
#define MAX_LAYERS		1024
#define MAX_HEADS		1024
#define MAX_FF			(1 << 20)
#define MAX_CTX			(1 << 24)
#define MAX_VOCAB		(1 << 22)

/* Private allocations of a model (converted vectors), freed with it. */
typedef struct OwnedBuffers
{
	void	  **ptrs;
	int			n;
	int			cap;
} OwnedBuffers;

static void *
owned_alloc(P3Model *model, size_t bytes)
{
	OwnedBuffers *ob = model->owned;
	void	   *p;

	if (ob->n == ob->cap)
	{
		int			cap = ob->cap ? ob->cap * 2 : 16;
		void	  **grown = realloc(ob->ptrs, (size_t) cap * sizeof(void *));

		if (grown == NULL)
			return NULL;
		ob->ptrs = grown;
		ob->cap = cap;
	}
	p = malloc(bytes ? bytes : 1);
	if (p)
		ob->ptrs[ob->n++] = p;
	return p;
}

/*
 * Read the integer hyper-parameter "phi3.<suffix>" into *out, range-checked.
 * A missing key is an error when required, else takes dflt.
 */
static P3Status
get_int(const P3GGUF *g, const char *suffix, int64_t min, int64_t max, bool required,
		int32_t dflt, int32_t *out, P3Error *err)
{
	char		key[128];
	int64_t		v;
	P3Status	st;

	snprintf(key, sizeof(key), "phi3.%s", suffix);
	st = p3_gguf_get_i64(g, key, &v, err);
	if (st == P3_ERR_INVALID_ARG)
	{
		if (required)
			return p3_error(err, P3_ERR_FORMAT, "required metadata key \"%s\" is missing", key);
		*out = dflt;
		return P3_OK;
	}
	if (st != P3_OK)
		return st;
	if (v < min || v > max)
		return p3_error(err, P3_ERR_FORMAT, "metadata key \"%s\" has value %lld, expected %lld to %lld",
						key, (long long) v, (long long) min, (long long) max);
	*out = (int32_t) v;
	return P3_OK;
}

#define get_required(g, suffix, min, max, out, err) get_int(g, suffix, min, max, true, 0, out, err)
#define get_optional(g, suffix, min, max, dflt, out, err) get_int(g, suffix, min, max, false, dflt, out, err)

/* A float hyper-parameter "phi3.<suffix>", finite and in (min, max]; missing → dflt (NAN = required). */
static P3Status
get_float(const P3GGUF *g, const char *suffix, float min_excl, float max, float dflt,
		  float *out, P3Error *err)
{
	char		key[128];
	float		v;
	P3Status	st;

	snprintf(key, sizeof(key), "phi3.%s", suffix);
	st = p3_gguf_get_f32(g, key, &v, err);
	if (st == P3_ERR_INVALID_ARG)
	{
		if (isnan(dflt))
			return p3_error(err, P3_ERR_FORMAT, "required metadata key \"%s\" is missing", key);
		*out = dflt;
		return P3_OK;
	}
	if (st != P3_OK)
		return st;
	if (!isfinite(v) || v <= min_excl || v > max)
		return p3_error(err, P3_ERR_FORMAT, "metadata key \"%s\" has value %g, expected a number above %g and at most %g",
						key, (double) v, (double) min_excl, (double) max);
	*out = v;
	return P3_OK;
}

/*
 * phi3.attention.sliding_window into hp->n_swa (0 when absent; an integer
 * of any width, negative values refused, large ones saturated): read, not
 * applied (see P3HParams).
 */
static P3Status
load_sliding_window(const P3GGUF *g, P3HParams *hp, P3Error *err)
{
	int64_t		v;
	P3Status	st = p3_gguf_get_i64(g, "phi3.attention.sliding_window", &v, err);

	hp->n_swa = 0;
	if (st == P3_ERR_INVALID_ARG)
		return P3_OK;
	if (st != P3_OK)
		return st;
	if (v < 0)
		return p3_error(err, P3_ERR_FORMAT,
						"metadata key \"phi3.attention.sliding_window\" has value %lld, expected 0 or more",
						(long long) v);
	hp->n_swa = v > INT32_MAX ? INT32_MAX : (int32_t) v;
	return P3_OK;
}

static P3Status
load_hparams(const P3GGUF *g, P3HParams *hp, P3Error *err)
{
	P3GGUFString arch;
	P3Status	st;

	st = p3_gguf_get_string(g, "general.architecture", &arch, err);
	if (st == P3_ERR_INVALID_ARG)
		return p3_error(err, P3_ERR_FORMAT, "required metadata key \"general.architecture\" is missing");
	if (st != P3_OK)
		return st;
	if (!p3_gguf_string_eq(arch, "phi3"))
		return p3_error_kind(err, P3_ERR_UNSUPPORTED, P3_KIND_ARCHITECTURE,
							 "model architecture \"%.*s\" is not supported (supported: phi3)",
							 (int) (arch.len > 64 ? 64 : arch.len), arch.ptr);

	memset(hp, 0, sizeof(*hp));
	if ((st = get_required(g, "context_length", 1, MAX_CTX, &hp->n_ctx_train, err)) ||
		(st = get_required(g, "embedding_length", 1, MAX_EMBD, &hp->n_embd, err)) ||
		(st = get_required(g, "block_count", 1, MAX_LAYERS, &hp->n_layer, err)) ||
		(st = get_required(g, "feed_forward_length", 1, MAX_FF, &hp->n_ff, err)) ||
		(st = get_required(g, "attention.head_count", 1, MAX_HEADS, &hp->n_head, err)) ||
		(st = get_optional(g, "attention.head_count_kv", 1, MAX_HEADS, hp->n_head, &hp->n_head_kv, err)) ||
		(st = get_optional(g, "rope.scaling.original_context_length", 1, MAX_CTX, hp->n_ctx_train,
						   &hp->n_ctx_orig, err)) ||
		(st = get_float(g, "attention.layer_norm_rms_epsilon", 0.0f, 1.0f, NAN, &hp->rms_eps, err)) ||
		(st = get_float(g, "rope.freq_base", 0.0f, 1e12f, 10000.0f, &hp->rope_freq_base, err)))
		return st;

	if (hp->n_embd % hp->n_head != 0)
		return p3_error(err, P3_ERR_FORMAT, "embedding length %d is not a multiple of the head count %d",
						hp->n_embd, hp->n_head);
	hp->head_dim = hp->n_embd / hp->n_head;
	if (hp->n_head % hp->n_head_kv != 0)
		return p3_error(err, P3_ERR_FORMAT, "head count %d is not a multiple of the key/value head count %d",
						hp->n_head, hp->n_head_kv);
	hp->n_embd_kv = hp->n_head_kv * hp->head_dim;
	if ((st = get_optional(g, "rope.dimension_count", 2, hp->head_dim, hp->head_dim, &hp->n_rot, err)))
		return st;
	if (hp->n_rot % 2 != 0)
		return p3_error(err, P3_ERR_FORMAT, "rope dimension count %d is odd", hp->n_rot);
	return load_sliding_window(g, hp, err);
}

/* Look up a tensor and check it is 2-D [ne0, ne1] of a computable type. */
static P3Status
bind_weight(P3Model *model, const char *name, int64_t ne0, int64_t ne1, bool optional,
			P3Weight *w, bool *found, P3Error *err)
{
	const P3GGUFTensor *t = p3_gguf_find_tensor(model->gguf, name);
	const P3TypeTraits *traits;

	if (found)
		*found = (t != NULL);
	if (t == NULL)
	{
		if (optional)
			return P3_OK;
		return p3_error(err, P3_ERR_FORMAT, "required tensor \"%s\" is missing", name);
	}
	if (t->n_dims != 2 || t->ne[0] != ne0 || t->ne[1] != ne1)
		return p3_error(err, P3_ERR_FORMAT,
						"tensor \"%s\" has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
						name, (long long) t->ne[0], (long long) t->ne[1], (long long) t->ne[2],
						(long long) t->ne[3], (long long) ne0, (long long) ne1);
	traits = p3_type_traits(t->type);
	if (traits == NULL || !traits->weights_ok)
		return p3_error_kind(err, P3_ERR_UNSUPPORTED, P3_KIND_TENSOR_TYPE,
							 "tensor \"%s\" has type %s, which this engine cannot compute with "
							 "(supported: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_K, q3_K, q4_K, q5_K, q6_K, iq4_nl, iq4_xs)",
							 name, p3_type_name(t->type));
	if (((uintptr_t) t->data % 4) != 0)
		return p3_error_kind(err, P3_ERR_UNSUPPORTED, P3_KIND_TENSOR_ALIGNMENT,
							 "tensor \"%s\" data is not 4-byte aligned in the file (general.alignment too small)",
							 name);
	w->name = t->name;
	w->type = t->type;
	w->n_in = ne0;
	w->n_out = ne1;
	if (!p3_row_bytes(t->type, ne0, &w->row_bytes))
		return p3_error(err, P3_ERR_FORMAT, "tensor \"%s\" has a row length %lld that does not fit its type %s",
						name, (long long) ne0, p3_type_name(t->type));
	w->data = t->data;
	return P3_OK;
}

/*
 * Bind a 1-D vector of n floats.  F32 data aligned to 4 bytes is used in
 * place; F16/BF16 (or unaligned F32) is converted into a private copy,
 * F16/BF16 at an odd address byte by byte.
 */
static P3Status
bind_vector(P3Model *model, const char *name, int64_t n, bool optional, const float **out, P3Error *err)
{
	const P3GGUFTensor *t = p3_gguf_find_tensor(model->gguf, name);
	float	   *copy;

	*out = NULL;
	if (t == NULL)
	{
		if (optional)
			return P3_OK;
		return p3_error(err, P3_ERR_FORMAT, "required tensor \"%s\" is missing", name);
	}
	if (t->ne[0] != n || t->ne[1] != 1 || t->ne[2] != 1 || t->ne[3] != 1)
		return p3_error(err, P3_ERR_FORMAT, "tensor \"%s\" has shape [%lld, %lld, %lld, %lld], expected [%lld]",
						name, (long long) t->ne[0], (long long) t->ne[1], (long long) t->ne[2],
						(long long) t->ne[3], (long long) n);
	if (t->type != P3_TYPE_F32 && t->type != P3_TYPE_F16 && t->type != P3_TYPE_BF16)
		return p3_error_kind(err, P3_ERR_UNSUPPORTED, P3_KIND_TENSOR_TYPE,
							 "tensor \"%s\" has type %s, expected f32, f16 or bf16",
							 name, p3_type_name(t->type));
	if (t->type == P3_TYPE_F32 && ((uintptr_t) t->data % 4) == 0)
	{
		*out = t->data;
		return P3_OK;
	}
	copy = owned_alloc(model, (size_t) n * sizeof(float));
	if (copy == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory converting tensor \"%s\"", name);
	if (t->type != P3_TYPE_F32 && ((uintptr_t) t->data % 2) != 0)
	{
		/* at an odd address (general.alignment 1): no uint16_t loads, read the bytes */
		const uint8_t *bytes = t->data;

		for (int64_t i = 0; i < n; i++)
		{
			uint16_t	h;

			memcpy(&h, bytes + 2 * i, sizeof(h));
			copy[i] = t->type == P3_TYPE_F16 ? p3_fp16_to_fp32(h) : p3_bf16_to_fp32(h);
		}
	}
	else
		p3_dequantize_row_ref(t->type, t->data, copy, n);
	*out = copy;
	return P3_OK;
}

static P3Status
bind_layers(P3Model *model, P3Error *err)
{
	const P3HParams *hp = &model->hp;
	char		name[96];
	P3Status	st;

	model->layers = calloc((size_t) hp->n_layer, sizeof(P3Layer));
	if (model->layers == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory allocating %d layers", hp->n_layer);

	for (int32_t l = 0; l < hp->n_layer; l++)
	{
		P3Layer    *L = &model->layers[l];
		bool		fused;

#define NAME(suffix) (snprintf(name, sizeof(name), "blk.%d." suffix, (int) l), name)
		if ((st = bind_vector(model, NAME("attn_norm.weight"), hp->n_embd, false, &L->attn_norm, err)) ||
			(st = bind_vector(model, NAME("ffn_norm.weight"), hp->n_embd, false, &L->ffn_norm, err)) ||
			(st = bind_weight(model, NAME("attn_qkv.weight"), hp->n_embd,
							  (int64_t) hp->n_embd + 2 * (int64_t) hp->n_embd_kv, true,
							  &L->attn_qkv, &fused, err)))
			return st;
		L->fused_qkv = fused;
		if (!fused)
		{
			if ((st = bind_weight(model, NAME("attn_q.weight"), hp->n_embd, hp->n_embd, false, &L->attn_q, NULL, err)) ||
				(st = bind_weight(model, NAME("attn_k.weight"), hp->n_embd, hp->n_embd_kv, false, &L->attn_k, NULL, err)) ||
				(st = bind_weight(model, NAME("attn_v.weight"), hp->n_embd, hp->n_embd_kv, false, &L->attn_v, NULL, err)))
			{
				if (p3_gguf_find_tensor(model->gguf, NAME("attn_q.weight")) == NULL)
					return p3_error(err, P3_ERR_FORMAT,
									"layer %d has neither \"blk.%d.attn_qkv.weight\" nor \"blk.%d.attn_q.weight\"",
									(int) l, (int) l, (int) l);
				return st;
			}
		}
		if ((st = bind_weight(model, NAME("attn_output.weight"), hp->n_embd, hp->n_embd, false, &L->attn_output, NULL, err)) ||
			(st = bind_weight(model, NAME("ffn_up.weight"), hp->n_embd, 2 * (int64_t) hp->n_ff, false, &L->ffn_up, NULL, err)) ||
			(st = bind_weight(model, NAME("ffn_down.weight"), hp->n_ff, hp->n_embd, false, &L->ffn_down, NULL, err)))
			return st;
#undef NAME
	}
	return P3_OK;
}

/* LongRoPE: both factor lists or neither; attn_factor from metadata or the reference formula. */
static P3Status
bind_rope_factors(P3Model *model, P3Error *err)
{
	P3HParams  *hp = &model->hp;
	int64_t		n = hp->n_rot / 2;
	P3Status	st;
	float		attn_factor;

	if ((st = bind_vector(model, "rope_factors_short.weight", n, true, &model->rope_factors_short, err)) ||
		(st = bind_vector(model, "rope_factors_long.weight", n, true, &model->rope_factors_long, err)))
		return st;
	if ((model->rope_factors_short == NULL) != (model->rope_factors_long == NULL))
		return p3_error(err, P3_ERR_FORMAT,
						"tensor \"%s\" is present but \"%s\" is missing",
						model->rope_factors_short ? "rope_factors_short.weight" : "rope_factors_long.weight",
						model->rope_factors_short ? "rope_factors_long.weight" : "rope_factors_short.weight");
	hp->has_longrope = (model->rope_factors_short != NULL);
	for (int64_t i = 0; hp->has_longrope && i < n; i++)
	{
		if (!isfinite(model->rope_factors_short[i]) || model->rope_factors_short[i] <= 0.0f ||
			!isfinite(model->rope_factors_long[i]) || model->rope_factors_long[i] <= 0.0f)
			return p3_error(err, P3_ERR_FORMAT, "rope factor %lld is not a positive number", (long long) i);
	}

	/*
	 * The magnitude factor multiplies cos and sin.  Converters store it as
	 * phi3.rope.scaling.attn_factor; when a LongRoPE file lacks it, use the
	 * reference formula sqrt(1 + ln(scale) / ln(original context)).
	 */
	st = p3_gguf_get_f32(model->gguf, "phi3.rope.scaling.attn_factor", &attn_factor, err);
	if (st == P3_OK)
	{
		if (!isfinite(attn_factor) || attn_factor <= 0.0f || attn_factor > 100.0f)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key \"phi3.rope.scaling.attn_factor\" has value %g, expected a positive number",
							(double) attn_factor);
		hp->rope_attn_factor = attn_factor;
	}
	else if (st == P3_ERR_INVALID_ARG)
	{
		double		scale = (double) hp->n_ctx_train / (double) hp->n_ctx_orig;

		hp->rope_attn_factor = 1.0f;
		if (hp->has_longrope && scale > 1.0 && hp->n_ctx_orig > 1)
			hp->rope_attn_factor = (float) sqrt(1.0 + log(scale) / log((double) hp->n_ctx_orig));
	}
	else
		return st;
	return P3_OK;
}

/*
 * Copy a file string into dst (cap bytes with the NUL) as valid UTF-8: each
 * byte that does not start a well-formed character (no overlong forms,
 * surrogates or code points past U+10FFFF) becomes '?', and the copy stops
 * before a character that would not fit whole.  Callers can then hand the
 * name to anything that checks its encoding (a UTF-8 database).
 */
static void
copy_utf8(char *dst, size_t cap, const char *src, size_t len)
{
	const unsigned char *s = (const unsigned char *) src;
	size_t		i = 0;
	size_t		n = 0;

	while (i < len)
	{
		unsigned char c = s[i];
		size_t		clen = c < 0x80 ? 1 : (c >= 0xc2 && c <= 0xdf) ? 2 :
			(c >= 0xe0 && c <= 0xef) ? 3 : (c >= 0xf0 && c <= 0xf4) ? 4 : 0;
		bool		ok = clen > 0 && clen <= len - i;

		for (size_t k = 1; ok && k < clen; k++)
		{
			unsigned char lo = 0x80,
						hi = 0xbf;

			if (k == 1 && c == 0xe0)
				lo = 0xa0;		/* no overlong */
			else if (k == 1 && c == 0xed)
				hi = 0x9f;		/* no surrogate */
			else if (k == 1 && c == 0xf0)
				lo = 0x90;		/* no overlong */
			else if (k == 1 && c == 0xf4)
				hi = 0x8f;		/* not past U+10FFFF */
			ok = s[i + k] >= lo && s[i + k] <= hi;
		}
		if (!ok)
			clen = 1;
		if (n + clen >= cap)
			break;
		if (ok)
			memcpy(dst + n, s + i, clen);
		else
			dst[n] = '?';
		n += clen;
		i += clen;
	}
	dst[n] = '\0';
}

/* Totals for model info: parameters, bytes, tensors per type. */
static void
count_tensors(P3Model *model)
{
	const P3GGUF *g = model->gguf;

	for (uint64_t i = 0; i < g->n_tensors; i++)
	{
		const P3GGUFTensor *t = &g->tensors[i];

		model->n_params += (uint64_t) (t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
		model->weight_bytes += t->nbytes;
		if (t->type < P3_TYPE_COUNT)
			model->type_counts[t->type]++;
	}
}

P3Status
p3_model_from_gguf(P3GGUF *gguf, P3Model **out, P3Error *err)
{
	P3Model    *model;
	P3Status	st;
	P3GGUFString name;
	bool		has_output;

	*out = NULL;
	model = calloc(1, sizeof(P3Model));
	if (model == NULL)
	{
		p3_gguf_close(gguf);
		return p3_error(err, P3_ERR_NOMEM, "out of memory allocating the model");
	}
	model->gguf = gguf;
	model->owned = calloc(1, sizeof(OwnedBuffers));
	if (model->owned == NULL)
	{
		p3_model_free(model);
		return p3_error(err, P3_ERR_NOMEM, "out of memory allocating the model");
	}

	if ((st = load_hparams(gguf, &model->hp, err)))
		goto fail;
	if (p3_gguf_get_string(gguf, "general.name", &name, NULL) == P3_OK)
		copy_utf8(model->name, sizeof(model->name), name.ptr, (size_t) name.len);

	/* token_embd fixes n_vocab; the tokenizer must agree with it */
	{
		const P3GGUFTensor *te = p3_gguf_find_tensor(gguf, "token_embd.weight");

		if (te == NULL)
		{
			st = p3_error(err, P3_ERR_FORMAT, "required tensor \"token_embd.weight\" is missing");
			goto fail;
		}
		if (te->ne[1] < 1 || te->ne[1] > MAX_VOCAB)
		{
			st = p3_error(err, P3_ERR_FORMAT, "tensor \"token_embd.weight\" has %lld rows, expected 1 to %d",
						  (long long) te->ne[1], MAX_VOCAB);
			goto fail;
		}
		model->hp.n_vocab = (int32_t) te->ne[1];
	}
	if ((st = bind_weight(model, "token_embd.weight", model->hp.n_embd, model->hp.n_vocab, false,
						  &model->token_embd, NULL, err)) ||
		(st = bind_weight(model, "output.weight", model->hp.n_embd, model->hp.n_vocab, true,
						  &model->output, &has_output, err)) ||
		(st = bind_vector(model, "output_norm.weight", model->hp.n_embd, false, &model->output_norm, err)) ||
		(st = bind_layers(model, err)) ||
		(st = bind_rope_factors(model, err)))
		goto fail;
	if (!has_output)
	{
		model->output = model->token_embd;
		model->tied_output = true;
	}

	if ((st = p3_tokenizer_from_gguf(gguf, &model->tokenizer, err)))
		goto fail;
	if (p3_tokenizer_n_vocab(model->tokenizer) != model->hp.n_vocab)
	{
		st = p3_error(err, P3_ERR_FORMAT,
					  "the tokenizer has %d tokens but \"token_embd.weight\" has %d rows",
					  (int) p3_tokenizer_n_vocab(model->tokenizer), (int) model->hp.n_vocab);
		goto fail;
	}

	count_tensors(model);
	*out = model;
	return P3_OK;

fail:
	p3_model_free(model);
	return st;
}

P3Status
p3_model_open(const char *path, P3Model **out, P3Error *err)
{
	P3GGUF	   *gguf;
	P3Status	st;

	*out = NULL;
	if ((st = p3_gguf_open(path, &gguf, err)))
		return st;
	return p3_model_from_gguf(gguf, out, err);
}

void
p3_model_free(P3Model *model)
{
	OwnedBuffers *ob;

	if (model == NULL)
		return;
	ob = model->owned;
	if (ob)
	{
		for (int i = 0; i < ob->n; i++)
			free(ob->ptrs[i]);
		free(ob->ptrs);
		free(ob);
	}
	p3_tokenizer_free(model->tokenizer);
	free(model->layers);
	p3_gguf_close(model->gguf);
	free(model);
}

size_t
p3_model_kv_bytes_per_token(const P3Model *model, bool f16)
{
	return 2 * (size_t) model->hp.n_layer * (size_t) model->hp.n_embd_kv * (f16 ? 2 : 4);
}
