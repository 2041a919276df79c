/*
 * fuzz_model.c — libFuzzer harness for the model loader and what a loaded
 * model drives: p3_model_from_gguf, p3_context_new, p3_eval, p3_generate.
 *
 * Not part of the test suite.  `make fuzz` builds it into build/fuzz/ and
 * the seed corpus (tiny models from bin/phi3-mkmodel over a 372-token
 * vocabulary, test/fuzz/make_seeds.sh) into build/fuzz/corpus/fuzz_model:
 *
 *     build/fuzz/fuzz_model -max_len=1048576 -timeout=20 -rss_limit_mb=2048 \
 *         -malloc_limit_mb=512 build/fuzz/corpus/fuzz_model
 *
 * Inputs are whole GGUF files, but random byte flips in a model would
 * almost only hit weights.  A custom mutator therefore edits the file as
 * a structure: it parses the input, changes one thing, and writes the file
 * again with the engine's writer:
 *   - a metadata value (hyper-parameters, token ids, flags, strings) set
 *     to an edge value or another type; a key dropped or added;
 *   - one element of the tokenizer arrays (a token text duplicated,
 *     emptied, turned into a marker or a bad <0xXX>; a score NaN/inf; a
 *     type out of range), an array shortened, lengthened or retyped;
 *   - a tensor retyped, reshaped, renamed, dropped or duplicated, its data
 *     filled with NaN / inf / huge values at a block field; a 1-3 byte
 *     tensor inserted before it (misaligning what follows);
 *   - general.alignment changed;
 * and sometimes mutates the raw header bytes (tensor offsets, counts,
 * lengths) with libFuzzer's own mutator, keeping the data section.
 *
 * Every input must give a status: a rejected file an error with a message
 * (and no model), an accepted one a model whose weight views lie inside
 * the buffer with the row sizes their types imply.  On an accepted model
 * a context with small limits (n_ctx 8, n_batch 4, 1 thread) evaluates
 * a few tokens (the first and last ids included), is filled up to n_ctx
 * and must then refuse one more token without changing the sequence, and
 * p3_generate produces 2 tokens, whose text must be valid UTF-8, and the
 * same text again when it reuses the cached prompt (the last prompt token
 * evaluated alone must give the same logits bits as inside a chunk).  The
 * kernel set, KV type, activation precision and sampling are chosen from
 * a hash of the file's header.
 */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phi3/context.h"
#include "phi3/generate.h"
#include "phi3/gguf.h"
#include "phi3/model.h"
#include "phi3/quant.h"

#include "fuzz_util.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
size_t		LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed);
size_t		LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

#define FUZZ_N_CTX		8
#define FUZZ_N_BATCH	4

/* ------------------------------------------------------------------------
 * The target
 * ------------------------------------------------------------------------ */

/* True when [p, p + n) lies inside [buf, buf + size). */
static bool
inside(const void *p, uint64_t n, const uint8_t *buf, size_t size)
{
	const uint8_t *q = p;

	return q >= buf && q <= buf + size && n <= (uint64_t) (buf + size - q);
}

/* A bound weight: inside the file, of a computable type, rows as its type says. */
static void
check_weight(const P3Weight *w, int64_t n_in, int64_t n_out, const uint8_t *buf, size_t size)
{
	size_t		row;
	const P3TypeTraits *traits = p3_type_traits(w->type);

	REQUIRE(w->n_in == n_in && w->n_out == n_out);
	REQUIRE(traits != NULL && traits->weights_ok);
	REQUIRE(p3_row_bytes(w->type, w->n_in, &row) && row == w->row_bytes);
	REQUIRE(w->data != NULL && inside(w->data, (uint64_t) w->n_out * w->row_bytes, buf, size));
}

/* Read every element of a bound vector (ASan checks the range). */
static float
touch_vector(const float *v, int64_t n)
{
	float		sum = 0.0f;

	REQUIRE(v != NULL);
	for (int64_t i = 0; i < n; i++)
		sum += v[i];
	return sum;
}

/* The loader's promises about an accepted model. */
static void
check_model(const P3Model *m, const uint8_t *buf, size_t size)
{
	const P3HParams *hp = &m->hp;
	volatile float sink = 0.0f;

	REQUIRE(hp->n_embd >= 1 && hp->n_head >= 1 && hp->n_head_kv >= 1 && hp->n_layer >= 1);
	REQUIRE(hp->head_dim * hp->n_head == hp->n_embd);
	REQUIRE(hp->n_head % hp->n_head_kv == 0);
	REQUIRE(hp->n_embd_kv == hp->n_head_kv * hp->head_dim);
	REQUIRE(hp->n_rot >= 2 && hp->n_rot % 2 == 0 && hp->n_rot <= hp->head_dim);
	REQUIRE(hp->n_ctx_train >= 1 && hp->n_ctx_orig >= 1 && hp->n_ff >= 1);
	REQUIRE(isfinite(hp->rms_eps) && hp->rms_eps > 0.0f);
	REQUIRE(isfinite(hp->rope_freq_base) && hp->rope_freq_base > 0.0f);
	REQUIRE(isfinite(hp->rope_attn_factor) && hp->rope_attn_factor > 0.0f);
	REQUIRE(m->tokenizer != NULL && p3_tokenizer_n_vocab(m->tokenizer) == hp->n_vocab);
	REQUIRE(memchr(m->name, '\0', sizeof(m->name)) != NULL && fuzz_valid_utf8(m->name, strlen(m->name)));

	check_weight(&m->token_embd, hp->n_embd, hp->n_vocab, buf, size);
	check_weight(&m->output, hp->n_embd, hp->n_vocab, buf, size);
	sink += touch_vector(m->output_norm, hp->n_embd);
	if (hp->has_longrope)
	{
		sink += touch_vector(m->rope_factors_short, hp->n_rot / 2);
		sink += touch_vector(m->rope_factors_long, hp->n_rot / 2);
	}
	else
		REQUIRE(m->rope_factors_short == NULL && m->rope_factors_long == NULL);
	for (int32_t l = 0; l < hp->n_layer; l++)
	{
		const P3Layer *L = &m->layers[l];

		sink += touch_vector(L->attn_norm, hp->n_embd);
		sink += touch_vector(L->ffn_norm, hp->n_embd);
		if (L->fused_qkv)
			check_weight(&L->attn_qkv, hp->n_embd, (int64_t) hp->n_embd + 2 * (int64_t) hp->n_embd_kv, buf, size);
		else
		{
			check_weight(&L->attn_q, hp->n_embd, hp->n_embd, buf, size);
			check_weight(&L->attn_k, hp->n_embd, hp->n_embd_kv, buf, size);
			check_weight(&L->attn_v, hp->n_embd, hp->n_embd_kv, buf, size);
		}
		check_weight(&L->attn_output, hp->n_embd, hp->n_embd, buf, size);
		check_weight(&L->ffn_up, hp->n_embd, 2 * (int64_t) hp->n_ff, buf, size);
		check_weight(&L->ffn_down, hp->n_ff, hp->n_embd, buf, size);
	}
	(void) sink;
}

/* Read every logit of the last evaluation. */
static void
touch_logits(const P3Context *ctx, int32_t n_vocab, int32_t expect_outputs)
{
	volatile float sink = 0.0f;

	REQUIRE(p3_n_outputs(ctx) == expect_outputs);
	for (int32_t o = 0; o < expect_outputs; o++)
	{
		const float *lg = p3_logits(ctx, o);

		REQUIRE(lg != NULL);
		for (int32_t i = 0; i < n_vocab; i++)
			sink += lg[i];
	}
	REQUIRE(p3_logits(ctx, expect_outputs) == NULL);
	(void) sink;
}

/* Evaluate, fill the context, overflow it, generate. */
static void
run_model(const P3Model *m, unsigned choice)
{
	P3ContextParams cp = p3_context_default_params();
	P3Context  *ctx = NULL;
	P3Error		err;
	P3Status	st;
	P3Tokens	toks = {0};
	int32_t		n_vocab = m->hp.n_vocab;
	int32_t		n_ctx;
	static const char text[] = "Hello <|user|> w\xc3\xb6rld\n\xe2\x82\xac!";

	cp.n_ctx = m->hp.n_ctx_train < FUZZ_N_CTX ? m->hp.n_ctx_train : FUZZ_N_CTX;
	cp.n_batch = FUZZ_N_BATCH;
	cp.n_threads = 1;
	cp.kv_type = (choice & 1) ? P3_KV_F32 : P3_KV_F16;
	cp.matmul = (choice & 2) ? P3_MATMUL_REFERENCE : P3_MATMUL_AUTO;
	cp.act = (choice & 4) ? P3_ACT_F32 : P3_ACT_Q8;
	n_ctx = cp.n_ctx;
	memset(&err, 0, sizeof(err));
	st = p3_context_new(m, &cp, &ctx, &err);
	REQUIRE_STATUS(st, P3_OK, err);
	REQUIRE(ctx != NULL);

	st = p3_tokenize(m->tokenizer, text, sizeof(text) - 1, P3_TOKENIZE_SPECIAL | P3_TOKENIZE_ADD_BOS, &toks, &err);
	if (st != P3_OK)
	{
		/* a vocabulary without byte fallback may not cover the text */
		REQUIRE_ERROR(st, err);
		REQUIRE(st == P3_ERR_UNSUPPORTED);
		p3_tokens_free(&toks);
		REQUIRE(p3_tokens_push(&toks, 0, &err) == P3_OK);
	}
	if (toks.n == 0)
		REQUIRE(p3_tokens_push(&toks, 0, &err) == P3_OK);
	for (size_t i = 0; i < toks.n; i++)
		REQUIRE(toks.ids[i] >= 0 && toks.ids[i] < n_vocab);

	/* a few tokens: the first and the last id, and one of the text */
	{
		int32_t		ids[3] = {0, n_vocab - 1, toks.ids[0]};
		int32_t		n = n_ctx < 3 ? n_ctx : 3;
		P3Batch		b = {.n_tokens = n, .tokens = ids};

		st = p3_eval(ctx, &b, &err);
		REQUIRE_STATUS(st, P3_OK, err);
		REQUIRE(p3_kv_seq_len(ctx, 0) == n);
		touch_logits(ctx, n_vocab, 1);
	}
	/* fill the context with logits for every token, then one too many */
	{
		int32_t		n = n_ctx - p3_kv_seq_len(ctx, 0);
		int32_t		ids[FUZZ_N_CTX];
		uint8_t		want[FUZZ_N_CTX];
		P3Batch		b = {.tokens = ids, .want_logits = want};

		ids[0] = toks.ids[0];
		want[0] = 1;
		for (int32_t i = 0; i < n; i++)
		{
			ids[i] = toks.ids[(size_t) i % toks.n];
			want[i] = 1;
		}
		if (n > 0)
		{
			b.n_tokens = n;
			st = p3_eval(ctx, &b, &err);
			REQUIRE_STATUS(st, P3_OK, err);
			touch_logits(ctx, n_vocab, n);
		}
		REQUIRE(p3_kv_seq_len(ctx, 0) == n_ctx);
		b.n_tokens = 1;
		memset(&err, 0, sizeof(err));
		st = p3_eval(ctx, &b, &err);
		REQUIRE_STATUS(st, P3_ERR_CONTEXT_FULL, err);
		REQUIRE_ERROR(st, err);
		REQUIRE(p3_kv_seq_len(ctx, 0) == n_ctx);
	}
	/* generation: the prompt reuses part of the cache */
	{
		P3GenerateParams gp = p3_generate_default_params();
		P3Text		out = {0};
		P3GenerateStats stats;
		int32_t		n_prompt = (int32_t) toks.n;

		if (n_prompt > n_ctx - 2)
			n_prompt = n_ctx > 2 ? n_ctx - 2 : 1;
		gp.max_tokens = 2;
		gp.sampling.temperature = (choice & 8) ? 0.8f : 0.0f;
		gp.sampling.seed = choice;
		st = p3_generate(ctx, 0, toks.ids, n_prompt, &gp, &out, &stats, &err);
		REQUIRE_STATUS(st, P3_OK, err);
		REQUIRE(stats.n_generated >= 0 && stats.n_generated <= 2);
		REQUIRE(out.len == 0 || out.data != NULL);
		REQUIRE(fuzz_valid_utf8(out.data, out.len));
		REQUIRE(p3_kv_seq_len(ctx, 0) <= n_ctx);

		/*
		 * Again, now reusing the cached prompt prefix: the last prompt token
		 * is evaluated alone instead of inside a chunk, which must not change
		 * a bit of its logits (context.h), so the same seed gives the same text.
		 */
		{
			P3Text		again = {0};
			P3GenerateStats stats2;

			st = p3_generate(ctx, 0, toks.ids, n_prompt, &gp, &again, &stats2, &err);
			REQUIRE_STATUS(st, P3_OK, err);
			REQUIRE(stats2.n_generated == stats.n_generated && stats2.stop == stats.stop);
			REQUIRE(again.len == out.len && (out.len == 0 || memcmp(again.data, out.data, out.len) == 0));
			p3_text_free(&again);
		}
		p3_text_free(&out);
	}
	p3_tokens_free(&toks);
	p3_context_free(ctx);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *buf = aligned_alloc(64, (size + 64) & ~(size_t) 63);
	P3GGUF	   *g = NULL;
	P3Model    *m = NULL;
	P3Error		err;
	P3Status	st;
	unsigned	choice;

	REQUIRE(buf != NULL);
	memcpy(buf, data, size);
	memset(&err, 0, sizeof(err));
	st = p3_gguf_parse(buf, size, &g, &err);
	if (st != P3_OK)
	{
		REQUIRE(g == NULL);
		REQUIRE_ERROR(st, err);
		free(buf);
		return 0;
	}
	st = p3_model_from_gguf(g, &m, &err);
	if (st != P3_OK)
	{
		REQUIRE(m == NULL);
		REQUIRE_ERROR(st, err);
		REQUIRE(st == P3_ERR_FORMAT || st == P3_ERR_UNSUPPORTED || st == P3_ERR_NOMEM);
		free(buf);
		return 0;
	}
	check_model(m, buf, size);
	/* kernels, KV type, activations, sampling: from a hash of the header, which every mutation changes */
	choice = 2166136261u;
	for (size_t i = 0; i < m->gguf->data_offset; i++)
		choice = (choice ^ data[i]) * 16777619u;
	run_model(m, choice ^ (choice >> 16));
	p3_model_free(m);
	free(buf);
	return 0;
}

/* ------------------------------------------------------------------------
 * The structure-aware mutator
 * ------------------------------------------------------------------------ */

typedef struct Rng
{
	uint64_t	s;
} Rng;

/* splitmix64 */
static uint64_t
rnd(Rng *r)
{
	uint64_t	z = (r->s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static uint64_t
below(Rng *r, uint64_t n)
{
	return n ? rnd(r) % n : 0;
}

/* An integer a fuzzer would not guess: bounds, off-by-ones, neighbours of v. */
static int64_t
edge_int(Rng *r, int64_t v)
{
	static const int64_t table[] = {
		0, 1, 2, 3, 4, 7, 8, 16, 31, 32, 63, 64, 96, 255, 256, 1023, 1024, 4096, 65535, 65536,
		(1 << 20), (1 << 22), (1 << 24), INT32_MAX, (int64_t) INT32_MAX + 1, UINT32_MAX,
		-1, -2, INT32_MIN, INT64_MAX, INT64_MIN
	};

	/* wrapping arithmetic: v may be anything the file held */
	switch (below(r, 5))
	{
		case 0:
			return (int64_t) ((uint64_t) v + 1);
		case 1:
			return (int64_t) ((uint64_t) v - 1);
		case 2:
			return below(r, 2) ? (int64_t) ((uint64_t) v * 2) : v / 2;
		case 3:
			return (int64_t) below(r, 40);
		default:
			return table[below(r, sizeof(table) / sizeof(table[0]))];
	}
}

/* A float edge value. */
static double
edge_float(Rng *r, double v)
{
	static const double table[] = {
		0.0, -0.0, 1.0, -1.0, 1e-5, 1e-45, 1e-38, 0.5, 2.0, 10000.0, 1e12, 1e13, 1e30, 3.4e38,
		100.0, 100.5, INFINITY, -INFINITY, NAN, 131072.0, 4096.0
	};

	switch (below(r, 3))
	{
		case 0:
			return v * (double) (below(r, 7) + 1) / 4.0;
		case 1:
			return -v;
		default:
			return table[below(r, sizeof(table) / sizeof(table[0]))];
	}
}

/* Keys the loader reads, for added entries. */
static const char *const known_keys[] = {
	"general.architecture", "general.alignment", "general.name",
	"phi3.context_length", "phi3.embedding_length", "phi3.block_count", "phi3.feed_forward_length",
	"phi3.attention.head_count", "phi3.attention.head_count_kv",
	"phi3.rope.scaling.original_context_length", "phi3.attention.layer_norm_rms_epsilon",
	"phi3.rope.freq_base", "phi3.rope.dimension_count", "phi3.rope.scaling.attn_factor",
	"tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
	"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.unknown_token_id",
	"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_space_prefix",
};
#define N_KNOWN_KEYS ((int) (sizeof(known_keys) / sizeof(known_keys[0])))

/* Tensor names the loader looks up, for renames and duplicates. */
static const char *const known_tensors[] = {
	"token_embd.weight", "output.weight", "output_norm.weight",
	"rope_factors_short.weight", "rope_factors_long.weight",
	"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight", "blk.0.attn_qkv.weight",
	"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight",
	"blk.0.attn_output.weight", "blk.0.ffn_up.weight", "blk.0.ffn_down.weight",
	"blk.1.attn_norm.weight", "blk.1.attn_qkv.weight", "blk.1.ffn_down.weight",
};
#define N_KNOWN_TENSORS ((int) (sizeof(known_tensors) / sizeof(known_tensors[0])))

/* Scalar value types and their element sizes in arrays. */
static size_t
scalar_size(P3GGUFType t)
{
	switch (t)
	{
		case P3_GGUF_UINT8:
		case P3_GGUF_INT8:
		case P3_GGUF_BOOL:
			return 1;
		case P3_GGUF_UINT16:
		case P3_GGUF_INT16:
			return 2;
		case P3_GGUF_UINT32:
		case P3_GGUF_INT32:
		case P3_GGUF_FLOAT32:
			return 4;
		case P3_GGUF_UINT64:
		case P3_GGUF_INT64:
		case P3_GGUF_FLOAT64:
			return 8;
		default:
			return 0;
	}
}

/* Store x (as an integer or a float, by type) into a packed array element. */
static void
put_scalar(uint8_t *dst, P3GGUFType t, int64_t iv, double fv)
{
	switch (t)
	{
		case P3_GGUF_FLOAT32:
			{
				float		f = (float) fv;

				memcpy(dst, &f, 4);
				break;
			}
		case P3_GGUF_FLOAT64:
			memcpy(dst, &fv, 8);
			break;
		default:
			/* little-endian truncation, as a converter with the wrong width would write */
			memcpy(dst, &iv, scalar_size(t));
			break;
	}
}

/* A random scalar value of a random scalar type. */
static P3GGUFValue
random_scalar(Rng *r)
{
	static const P3GGUFType types[] = {
		P3_GGUF_UINT8, P3_GGUF_INT8, P3_GGUF_UINT16, P3_GGUF_INT16, P3_GGUF_UINT32, P3_GGUF_INT32,
		P3_GGUF_FLOAT32, P3_GGUF_BOOL, P3_GGUF_UINT64, P3_GGUF_INT64, P3_GGUF_FLOAT64
	};
	P3GGUFValue v;

	memset(&v, 0, sizeof(v));
	v.type = types[below(r, sizeof(types) / sizeof(types[0]))];
	switch (v.type)
	{
		case P3_GGUF_FLOAT32:
		case P3_GGUF_FLOAT64:
			v.v.f64 = edge_float(r, 1.0);
			break;
		case P3_GGUF_BOOL:
			v.v.u64 = below(r, 2);
			break;
		case P3_GGUF_INT8:
		case P3_GGUF_INT16:
		case P3_GGUF_INT32:
		case P3_GGUF_INT64:
			v.v.i64 = edge_int(r, 8);
			if (v.type == P3_GGUF_INT8)
				v.v.i64 = (int8_t) v.v.i64;
			else if (v.type == P3_GGUF_INT16)
				v.v.i64 = (int16_t) v.v.i64;
			else if (v.type == P3_GGUF_INT32)
				v.v.i64 = (int32_t) v.v.i64;
			break;
		default:
			{
				int64_t		x = edge_int(r, 8);

				v.v.u64 = x < 0 ? 0 - (uint64_t) x : (uint64_t) x;
				if (v.type == P3_GGUF_UINT8)
					v.v.u64 &= 0xff;
				else if (v.type == P3_GGUF_UINT16)
					v.v.u64 &= 0xffff;
				else if (v.type == P3_GGUF_UINT32)
					v.v.u64 &= 0xffffffffu;
				break;
			}
	}
	return v;
}

/* A text that tests the tokenizer's assumptions. */
static void
random_token_text(Rng *r, const P3GGUFString *all, uint64_t n_all, char *buf, size_t cap, P3GGUFString *out)
{
	static const char *const texts[] = {
		"", "<|end|>", "<|user|>", "<|assistant|>", "<s>", "</s>", "<unk>", "<0x41>", "<0xZZ>", "<0x",
		"\xe2\x96\x81", "\xe2\x96\x81\xe2\x96\x81", "\xff", "\xe2\x96", "[PAD1]", "<|", "|>", " ", "\n",
		"<|endoftext|>"
	};
	uint64_t	k = below(r, 4);

	if (k == 0 && n_all > 0)
	{
		*out = all[below(r, n_all)];	/* a duplicate */
		return;
	}
	if (k == 1)
	{
		size_t		n = (size_t) below(r, cap);

		for (size_t i = 0; i < n; i++)
			buf[i] = (char) rnd(r);
		out->ptr = buf;
		out->len = n;
		return;
	}
	out->ptr = texts[below(r, sizeof(texts) / sizeof(texts[0]))];
	out->len = strlen(out->ptr);
}

/* How a rewritten tensor gets its bytes. */
typedef struct TensorFill
{
	const uint8_t *src;
	size_t		src_len;
	uint32_t	type;
	int			special;		/* 0: copy; else 1 + index into the special patterns */
	size_t		field;			/* byte offset of the patched field in each block */
} TensorFill;

/* Copy the source (cyclically, for a grown tensor), then patch a field of every block. */
static P3Status
fill_tensor(void *user, const char *name, void *dst, size_t nbytes, P3Error *err)
{
	const TensorFill *f = user;
	uint8_t    *d = dst;
	const P3TypeTraits *traits = p3_type_traits(f->type);
	size_t		stride = traits ? traits->type_size : 4;

	if (f->src_len == 0)
		memset(d, 0, nbytes);
	else
		for (size_t off = 0; off < nbytes; off += f->src_len)
			memcpy(d + off, f->src, nbytes - off < f->src_len ? nbytes - off : f->src_len);
	if (f->special)
	{
		/* f32 NaN, +inf, -inf, huge, denormal; f16 NaN, inf, max, denormal; bf16 NaN */
		static const uint32_t pat32[] = {0x7fc00000u, 0x7f800000u, 0xff800000u, 0x7f7fffffu, 0x00000001u};
		static const uint16_t pat16[] = {0x7e00, 0x7c00, 0x7bff, 0x0001, 0x7fc0, 0xfc00};
		bool		four = f->type == P3_TYPE_F32;
		size_t		w = four ? 4 : 2;
		int			k = f->special - 1;

		if (stride < w)
			stride = w;
		for (size_t off = f->field % stride; off + w <= nbytes; off += stride)
		{
			if (four)
				memcpy(d + off, &pat32[k % 5], 4);
			else
				memcpy(d + off, &pat16[k % 6], 2);
		}
	}
	return P3_OK;
}

enum MutationKind
{
	MUT_KV_VALUE,
	MUT_KV_DROP,
	MUT_KV_ADD,
	MUT_ARRAY_ELEMENT,
	MUT_ARRAY_SHAPE,
	MUT_TENSOR_TYPE,
	MUT_TENSOR_SHAPE,
	MUT_TENSOR_NAME,
	MUT_TENSOR_DROP,
	MUT_TENSOR_DUP,
	MUT_TENSOR_DATA,
	MUT_ALIGNMENT,
	MUT_TENSOR_PAD,
	MUT_COUNT
};

/* Everything one rewrite changes. */
typedef struct Plan
{
	int			kind;
	uint64_t	kv;				/* the entry changed (value, drop, array edits) */
	uint64_t	tensor;			/* the tensor changed */
	P3GGUFValue value;			/* MUT_KV_VALUE / MUT_KV_ADD: the new value */
	const char *add_key;
	uint8_t    *array_bytes;	/* rebuilt numeric array (owned) */
	P3GGUFString *strings;		/* rebuilt string array (owned) */
	uint64_t	n_strings;
	uint32_t	new_type;
	uint32_t	new_n_dims;
	int64_t		new_ne[P3_GGUF_MAX_DIMS];
	char		new_name[P3_GGUF_MAX_NAME + 1];
	int			special;
	size_t		field;
	uint32_t	alignment;
	char		text_buf[256];
} Plan;

/* Decide a change to the value of entry kv. */
static bool
plan_value(Rng *r, const P3GGUFKV *kv, Plan *p)
{
	const P3GGUFValue *v = &kv->value;

	p->value = *v;
	if (below(r, 6) == 0)
	{
		p->value = random_scalar(r);	/* another type altogether */
		return true;
	}
	switch (v->type)
	{
		case P3_GGUF_FLOAT32:
		case P3_GGUF_FLOAT64:
			p->value.v.f64 = edge_float(r, v->v.f64);
			return true;
		case P3_GGUF_BOOL:
			p->value.v.u64 = !v->v.u64;
			return true;
		case P3_GGUF_STRING:
			{
				static const char *const strs[] = {"phi3", "llama", "", "phi2", "gpt2", "Phi3"};

				uint64_t	k = below(r, 3);

				if (k == 0)
				{
					p->value.v.str.ptr = strs[below(r, sizeof(strs) / sizeof(strs[0]))];
					p->value.v.str.len = strlen(p->value.v.str.ptr);
				}
				else if (k == 1)
					p->value.v.str.len = below(r, v->v.str.len + 1);
				else
				{
					/* UTF-8-ish bytes, long enough to be cut (general.name keeps 127) */
					static const char *const parts[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
						"\xff", "\xc3", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe0\x80\x80", " ", ""};
					size_t		n = 0;
					size_t		want = (size_t) below(r, sizeof(p->text_buf) - 4);

					while (n < want)
					{
						const char *part = parts[below(r, sizeof(parts) / sizeof(parts[0]))];
						size_t		pl = strlen(part);

						memcpy(p->text_buf + n, part, pl);
						n += pl;
						if (pl == 0)
							p->text_buf[n++] = '\0';
					}
					p->value.v.str.ptr = p->text_buf;
					p->value.v.str.len = n;
				}
				return true;
			}
		case P3_GGUF_ARRAY:
			return false;
		case P3_GGUF_INT8:
		case P3_GGUF_INT16:
		case P3_GGUF_INT32:
		case P3_GGUF_INT64:
			p->value.v.i64 = edge_int(r, v->v.i64);
			return true;
		default:
			{
				int64_t		x = edge_int(r, (int64_t) v->v.u64);

				/* keep the type when it fits, else widen so the writer takes it */
				if (x < 0)
				{
					p->value.type = P3_GGUF_INT64;
					p->value.v.i64 = x;
				}
				else
				{
					p->value.v.u64 = (uint64_t) x;
					if ((v->type == P3_GGUF_UINT8 && x > 0xff) || (v->type == P3_GGUF_UINT16 && x > 0xffff) ||
						(v->type == P3_GGUF_UINT32 && x > 0xffffffffll))
						p->value.type = P3_GGUF_UINT64;
				}
				return true;
			}
	}
}

/* Decide a change to one element (or the shape) of array entry kv. */
static bool
plan_array(Rng *r, const P3GGUFKV *kv, bool shape, Plan *p)
{
	const P3GGUFValue *v = &kv->value;
	uint64_t	n = v->v.arr.count;

	if (v->type != P3_GGUF_ARRAY)
		return false;
	p->value = *v;
	if (v->v.arr.elem_type == P3_GGUF_STRING)
	{
		const uint8_t *cur = v->v.arr.data;
		uint64_t	n_new = n;

		if (shape)
			n_new = below(r, 2) ? n + 1 : (n ? n - 1 : 0);
		p->strings = malloc((n_new + 1) * sizeof(P3GGUFString));
		if (p->strings == NULL)
			return false;
		for (uint64_t i = 0; i < n; i++)
		{
			P3GGUFString s = p3_gguf_next_string(&cur);

			if (i < n_new)
				p->strings[i] = s;
		}
		if (n_new > n)
			random_token_text(r, p->strings, n, p->text_buf, sizeof(p->text_buf), &p->strings[n]);
		if (!shape && n > 0)
		{
			uint64_t	i = below(r, n);

			/* the low ids (unk, bos, eos, bytes) and the markers at the end matter most */
			if (below(r, 2))
				i = below(r, 2) ? below(r, n < 8 ? n : 8) : n - 1 - below(r, n < 16 ? n : 16);
			random_token_text(r, p->strings, n, p->text_buf, sizeof(p->text_buf), &p->strings[i]);
		}
		p->n_strings = n_new;
		return true;
	}
	else
	{
		P3GGUFType	et = v->v.arr.elem_type;
		size_t		es = scalar_size(et);
		uint64_t	n_new = n;

		if (es == 0)
			return false;
		if (shape)
		{
			uint64_t	k = below(r, 3);

			if (k == 0)
				n_new = n + 1;
			else if (k == 1)
				n_new = n ? n - 1 : 0;
			else
			{
				/* retype: every element converted */
				static const P3GGUFType ts[] = {
					P3_GGUF_UINT8, P3_GGUF_INT8, P3_GGUF_UINT16, P3_GGUF_INT16, P3_GGUF_UINT32,
					P3_GGUF_INT32, P3_GGUF_FLOAT32, P3_GGUF_BOOL, P3_GGUF_UINT64, P3_GGUF_INT64,
					P3_GGUF_FLOAT64
				};

				et = ts[below(r, sizeof(ts) / sizeof(ts[0]))];
				es = scalar_size(et);
			}
		}
		p->array_bytes = calloc(n_new + 1, es);
		if (p->array_bytes == NULL)
			return false;
		for (uint64_t i = 0; i < n_new && i < n; i++)
		{
			if (et == v->v.arr.elem_type)
				memcpy(p->array_bytes + i * es, v->v.arr.data + i * es, es);
			else
				put_scalar(p->array_bytes + i * es, et, p3_gguf_array_i64(v, i), p3_gguf_array_f64(v, i));
		}
		if (et == P3_GGUF_BOOL)
			for (uint64_t i = 0; i < n_new; i++)
				p->array_bytes[i] &= 1;
		if (!shape && n > 0)
		{
			uint64_t	i = below(r, 2) ? below(r, n < 8 ? n : 8) : below(r, n);

			if (et == P3_GGUF_BOOL)
				p->array_bytes[i] = (uint8_t) below(r, 2);
			else
				put_scalar(p->array_bytes + i * es, et, edge_int(r, p3_gguf_array_i64(v, i)),
						   edge_float(r, p3_gguf_array_f64(v, i)));
		}
		p->value.v.arr.elem_type = et;
		p->value.v.arr.count = n_new;
		p->value.v.arr.data = p->array_bytes;
		p->value.v.arr.nbytes = n_new * es;
		return true;
	}
}

/* Decide a new shape for tensor t. */
static void
plan_shape(Rng *r, const P3GGUFTensor *t, Plan *p)
{
	p->new_n_dims = t->n_dims;
	memcpy(p->new_ne, t->ne, sizeof(p->new_ne));
	switch (below(r, 4))
	{
		case 0:
			p->new_n_dims = 1 + (uint32_t) below(r, P3_GGUF_MAX_DIMS);
			for (uint32_t d = p->new_n_dims; d < P3_GGUF_MAX_DIMS; d++)
				p->new_ne[d] = 1;
			break;
		case 1:
			{
				int64_t		t0 = p->new_ne[0];

				p->new_ne[0] = p->new_ne[1];
				p->new_ne[1] = t0;
				break;
			}
		default:
			{
				uint32_t	d = (uint32_t) below(r, t->n_dims);
				int64_t		x = edge_int(r, t->ne[d]);

				/* keep the file small: no dimension past 4096 elements of growth */
				if (x >= 1 && x <= t->ne[d] + 4096)
					p->new_ne[d] = x;
				else
					p->new_ne[d] = t->ne[d] + 1;
				break;
			}
	}
}

/* Choose one mutation for g; false if none applies. */
static bool
plan_mutation(Rng *r, const P3GGUF *g, Plan *p)
{
	memset(p, 0, sizeof(*p));
	p->kind = (int) below(r, MUT_COUNT);
	p->kv = g->n_kv ? below(r, g->n_kv) : 0;
	p->tensor = g->n_tensors ? below(r, g->n_tensors) : 0;
	switch (p->kind)
	{
		case MUT_KV_VALUE:
			return g->n_kv > 0 && plan_value(r, &g->kv[p->kv], p);
		case MUT_KV_DROP:
			return g->n_kv > 0;
		case MUT_KV_ADD:
			p->add_key = known_keys[below(r, N_KNOWN_KEYS)];
			p->value = random_scalar(r);
			return true;
		case MUT_ARRAY_ELEMENT:
		case MUT_ARRAY_SHAPE:
			{
				/* prefer the tokenizer arrays */
				uint64_t	found = 0;

				for (uint64_t i = 0; i < g->n_kv; i++)
					if (g->kv[i].value.type == P3_GGUF_ARRAY && below(r, ++found) == 0)
						p->kv = i;
				return found > 0 && plan_array(r, &g->kv[p->kv], p->kind == MUT_ARRAY_SHAPE, p);
			}
		case MUT_TENSOR_TYPE:
			{
				static const uint32_t types[] = {
					P3_TYPE_F32, P3_TYPE_F16, P3_TYPE_BF16, P3_TYPE_Q8_0, P3_TYPE_Q4_0, P3_TYPE_Q4_1,
					P3_TYPE_Q5_0, P3_TYPE_Q5_1, P3_TYPE_Q2_K, P3_TYPE_Q3_K, P3_TYPE_Q4_K, P3_TYPE_Q5_K,
					P3_TYPE_Q6_K, P3_TYPE_IQ4_NL, P3_TYPE_IQ4_XS, P3_TYPE_Q8_1, P3_TYPE_Q8_K,
					P3_TYPE_IQ2_XXS, P3_TYPE_I8, P3_TYPE_I32, P3_TYPE_F64, P3_TYPE_TQ1_0, P3_TYPE_MXFP4
				};

				if (g->n_tensors == 0)
					return false;
				p->new_type = types[below(r, sizeof(types) / sizeof(types[0]))];
				return true;
			}
		case MUT_TENSOR_SHAPE:
			if (g->n_tensors == 0)
				return false;
			plan_shape(r, &g->tensors[p->tensor], p);
			return true;
		case MUT_TENSOR_NAME:
		case MUT_TENSOR_DUP:
			if (g->n_tensors == 0)
				return false;
			snprintf(p->new_name, sizeof(p->new_name), "%s", known_tensors[below(r, N_KNOWN_TENSORS)]);
			return true;
		case MUT_TENSOR_DROP:
			return g->n_tensors > 0;
		case MUT_TENSOR_DATA:
			if (g->n_tensors == 0)
				return false;
			p->special = 1 + (int) below(r, 6);
			p->field = (size_t) below(r, 256) & ~(size_t) 1;
			return true;
		case MUT_ALIGNMENT:
			p->alignment = 1u << below(r, 9);
			return true;
		case MUT_TENSOR_PAD:
			/* an odd-sized tensor before this one: with a small alignment, what follows is misaligned */
			if (g->n_tensors == 0)
				return false;
			p->new_ne[0] = 1 + (int64_t) below(r, 3);
			snprintf(p->new_name, sizeof(p->new_name), "fuzz.pad.%u", (unsigned) below(r, 1000));
			return true;
	}
	return false;
}

/* Copy kv[i] into the writer as it is, or as the plan changes it. */
static P3Status
write_kv(P3GGUFWriter *w, const P3GGUF *g, uint64_t i, const Plan *p, uint32_t *alignment, P3Error *err)
{
	const P3GGUFKV *kv = &g->kv[i];
	char		key[256];
	P3GGUFValue v = kv->value;

	if (kv->key.len >= sizeof(key) || memchr(kv->key.ptr, '\0', kv->key.len))
		return P3_ERR_INVALID_ARG;
	memcpy(key, kv->key.ptr, kv->key.len);
	key[kv->key.len] = '\0';
	if (i == p->kv)
	{
		if (p->kind == MUT_KV_DROP)
			return P3_OK;
		if (p->kind == MUT_KV_VALUE ||
			((p->kind == MUT_ARRAY_ELEMENT || p->kind == MUT_ARRAY_SHAPE) && p->array_bytes))
			v = p->value;
		else if ((p->kind == MUT_ARRAY_ELEMENT || p->kind == MUT_ARRAY_SHAPE) && p->strings)
		{
			const char **strs = malloc((p->n_strings + 1) * sizeof(char *));
			uint64_t   *lens = malloc((p->n_strings + 1) * sizeof(uint64_t));
			P3Status	st = P3_ERR_NOMEM;

			if (strs && lens)
			{
				for (uint64_t k = 0; k < p->n_strings; k++)
				{
					strs[k] = p->strings[k].ptr;
					lens[k] = p->strings[k].len;
				}
				st = p3_gguf_writer_add_string_array(w, key, strs, lens, p->n_strings, err);
			}
			free(strs);
			free(lens);
			return st;
		}
	}
	/* the writer lays the data out with general.alignment: set it, do not copy it */
	if (strcmp(key, "general.alignment") == 0 && v.type == P3_GGUF_UINT32 &&
		v.v.u64 != 0 && (v.v.u64 & (v.v.u64 - 1)) == 0)
	{
		*alignment = (uint32_t) v.v.u64;
		return P3_OK;
	}
	return p3_gguf_writer_add_value(w, key, &v, err);
}

/* Bytes of a tensor of this type and shape, or UINT64_MAX if it cannot be written. */
static uint64_t
tensor_bytes(uint32_t type, uint32_t n_dims, const int64_t *ne)
{
	size_t		row;
	uint64_t	total;

	if (n_dims < 1 || n_dims > P3_GGUF_MAX_DIMS || !p3_row_bytes(type, ne[0], &row))
		return UINT64_MAX;
	total = row;
	for (uint32_t d = 1; d < n_dims; d++)
		if (ne[d] < 1 || __builtin_mul_overflow(total, (uint64_t) ne[d], &total))
			return UINT64_MAX;
	return total;
}

/*
 * Rewrite g with the plan applied; the new file in *out (malloc'ed).  A
 * file that would exceed max_size is not built at all (repeated reshapes
 * could otherwise ask the writer for gigabytes).
 */
static bool
rewrite(const P3GGUF *g, const Plan *p, size_t max_size, uint8_t **out, size_t *out_size)
{
	P3GGUFWriter *w = NULL;
	P3Error		err;
	TensorFill *fills = NULL;
	uint32_t	alignment = 0;
	uint64_t	data_bytes = 0;
	bool		ok = false;

	if (p3_gguf_writer_new(&w, &err) != P3_OK)
		return false;
	fills = calloc(g->n_tensors + 1, sizeof(TensorFill));
	if (fills == NULL)
		goto done;
	for (uint64_t i = 0; i < g->n_kv; i++)
		if (write_kv(w, g, i, p, &alignment, &err) != P3_OK)
			goto done;
	if (p->kind == MUT_KV_ADD && p3_gguf_writer_add_value(w, p->add_key, &p->value, &err) != P3_OK)
		goto done;
	if (p->kind == MUT_ALIGNMENT)
		alignment = p->alignment;
	if (alignment && p3_gguf_writer_set_alignment(w, alignment, &err) != P3_OK)
		goto done;
	/* every tensor is padded to the alignment: a huge one (2^31 is valid) means a huge file */
	data_bytes = alignment ? alignment : P3_GGUF_DEFAULT_ALIGNMENT;
	if (data_bytes > max_size)
		goto done;

	for (uint64_t i = 0; i < g->n_tensors; i++)
	{
		const P3GGUFTensor *t = &g->tensors[i];
		TensorFill *f = &fills[i];
		const char *name = t->name;
		uint32_t	type = t->type;
		uint32_t	n_dims = t->n_dims;
		const int64_t *ne = t->ne;
		bool		mine = (i == p->tensor);

		f->src = t->data;
		f->src_len = (size_t) t->nbytes;
		if (mine && p->kind == MUT_TENSOR_DROP)
			continue;
		if (mine && p->kind == MUT_TENSOR_PAD)
		{
			static const uint8_t pad_bytes[3] = {1, 2, 3};
			static const TensorFill pad_fill = {pad_bytes, sizeof(pad_bytes), P3_TYPE_I8, 0, 0};
			int64_t		pad_ne[P3_GGUF_MAX_DIMS] = {p->new_ne[0], 1, 1, 1};

			if (p3_gguf_writer_add_tensor_deferred(w, p->new_name, P3_TYPE_I8, 1, pad_ne, fill_tensor,
												   (void *) &pad_fill, &err) != P3_OK)
				goto done;
		}
		if (mine && p->kind == MUT_TENSOR_TYPE)
			type = p->new_type;
		if (mine && p->kind == MUT_TENSOR_SHAPE)
		{
			n_dims = p->new_n_dims;
			ne = p->new_ne;
		}
		if (mine && p->kind == MUT_TENSOR_NAME)
			name = p->new_name;
		if (mine && p->kind == MUT_TENSOR_DATA)
		{
			f->special = p->special;
			f->field = p->field;
		}
		f->type = type;
		{
			uint64_t	tb = tensor_bytes(type, n_dims, ne);

			if (tb > max_size)
				goto done;
			data_bytes += (tb + (alignment ? alignment : P3_GGUF_DEFAULT_ALIGNMENT)) *
				(mine && p->kind == MUT_TENSOR_DUP ? 2 : 1);
			if (data_bytes > max_size)
				goto done;
		}
		if (p3_gguf_writer_add_tensor_deferred(w, name, type, n_dims, ne, fill_tensor, f, &err) != P3_OK)
			goto done;
		if (mine && p->kind == MUT_TENSOR_DUP &&
			p3_gguf_writer_add_tensor_deferred(w, p->new_name, type, n_dims, ne, fill_tensor, f, &err) != P3_OK)
			goto done;
	}
	ok = p3_gguf_writer_to_buffer(w, out, out_size, &err) == P3_OK;

done:
	p3_gguf_writer_free(w);
	free(fills);
	return ok;
}

/* Let libFuzzer's byte mutator loose on the header, keeping the data section. */
static size_t
mutate_header(uint8_t *data, size_t size, size_t max_size, size_t header)
{
	size_t		tail = size - header;
	uint8_t    *saved = malloc(tail + 1);
	size_t		n;

	if (saved == NULL || max_size < size)
	{
		free(saved);
		return LLVMFuzzerMutate(data, size, max_size);
	}
	memcpy(saved, data + header, tail);
	n = LLVMFuzzerMutate(data, header, max_size - tail);
	memcpy(data + n, saved, tail);
	free(saved);
	return n + tail;
}

size_t
LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed)
{
	Rng			r = {seed * 0x9E3779B97F4A7C15ull + 1};
	P3GGUF	   *g = NULL;
	P3Error		err;
	Plan		p;
	uint8_t    *out = NULL;
	size_t		out_size = 0;
	size_t		result;

	if (p3_gguf_parse(data, size, &g, &err) != P3_OK)
		return LLVMFuzzerMutate(data, size, max_size);
	if (below(&r, 8) == 0)
	{
		size_t		header = (size_t) g->data_offset;

		p3_gguf_close(g);
		return mutate_header(data, size, max_size, header);
	}
	for (int attempt = 0; attempt < 8; attempt++)
	{
		bool		planned = plan_mutation(&r, g, &p);

		if (planned && rewrite(g, &p, max_size, &out, &out_size) && out_size <= max_size)
		{
			free(p.array_bytes);
			free(p.strings);
			break;
		}
		free(p.array_bytes);
		free(p.strings);
		free(out);
		out = NULL;
	}
	p3_gguf_close(g);
	if (out == NULL)
		return LLVMFuzzerMutate(data, size, max_size);
	memcpy(data, out, out_size);
	result = out_size;
	free(out);
	return result;
}
