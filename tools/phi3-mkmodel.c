/*
 * phi3-mkmodel — write a Phi-3-architecture GGUF file with deterministic
 * pseudo-random weights.
 *
 *     phi3-mkmodel -o OUT.gguf [--type q4_k_m] [--embd 256] [--layers 2] ...
 *
 * The tokenizer metadata is copied from a vocabulary GGUF (by default the
 * real Phi-3 vocabulary), so the model has the real tokenizer; the weights
 * are random but shaped so that activations keep a sensible scale through
 * the layers and the logits are peaky.
 *
 * Determinism: every element of every tensor is a pure function of
 * (seed, tensor name, element index): a counter-based generator (the
 * splitmix64 finaliser applied to key + index * gamma).  Tensors therefore
 * do not depend on generation order, and rows can be produced by any
 * number of threads with an identical file as the result.  Quantized
 * tensors are encoded row by row with the reference quantizers
 * (p3_quantize_row_ref), as a converter would.
 *
 * Memory: tensors are added with p3_gguf_writer_add_tensor_deferred and
 * produced one at a time while the file is written, so a real-dimension
 * model (gigabytes) never sits in memory whole.
 *
 * Trained weights (--weights DIR): every tensor's values are read from
 * DIR/NAME.f32 (little-endian float32, rows of ne[0] values; the size
 * must match the tensor's shape exactly) instead of being generated, and
 * encoded to --type as above: the export path of tools/train/.
 *
 * Type mixes follow llama.cpp's llama_tensor_get_type for Phi-3 (spec
 * section 6): Q4_K_M puts output (or the tied token_embd) in Q6_K,
 * attn_qkv in Q5_K, ffn_down (and split attn_v) in Q6_K on the "more bits"
 * layers, everything else in Q4_K; Q5_K_M likewise with Q5_K as the base
 * and attn_qkv in Q6_K.  1-D tensors are always f32.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "phi3/gguf.h"
#include "phi3/quant.h"
#include "phi3/status.h"

#define PROGNAME			"phi3-mkmodel"
#define DEFAULT_VOCAB		"test/data/ggml-vocab-phi-3.gguf"
#define DEFAULT_NAME		"phi3-mkmodel test model"
#define DEFAULT_SCALE		4.0
#define MAX_THREADS			64
/* rows are split over threads only when a tensor has at least this many elements */
#define PARALLEL_MIN_ELEMS	(1 << 16)

/* llama_ftype values written to general.file_type */
#define FTYPE_ALL_F32		0
#define FTYPE_MOSTLY_F16	1
#define FTYPE_Q4_0			2
#define FTYPE_Q4_1			3
#define FTYPE_Q8_0			7
#define FTYPE_Q5_0			8
#define FTYPE_Q5_1			9
#define FTYPE_Q2_K			10
#define FTYPE_Q3_K_S		11
#define FTYPE_Q4_K_S		14
#define FTYPE_Q4_K_M		15
#define FTYPE_Q5_K_S		16
#define FTYPE_Q5_K_M		17
#define FTYPE_Q6_K			18
#define FTYPE_IQ4_NL		25
#define FTYPE_IQ4_XS		30
#define FTYPE_BF16			32

/* What --type selects: one type for every matrix, or a llama.cpp mix. */
typedef enum MixKind
{
	MIX_NONE,
	MIX_Q4_K_M,
	MIX_Q5_K_M
} MixKind;

typedef struct TypeChoice
{
	const char *name;			/* as given on the command line */
	uint32_t	type;			/* matrix type (base type of a mix) */
	MixKind		mix;
	uint32_t	ftype;			/* general.file_type */
} TypeChoice;

static const TypeChoice type_choices[] = {
	{"f32", P3_TYPE_F32, MIX_NONE, FTYPE_ALL_F32},
	{"f16", P3_TYPE_F16, MIX_NONE, FTYPE_MOSTLY_F16},
	{"bf16", P3_TYPE_BF16, MIX_NONE, FTYPE_BF16},
	{"q8_0", P3_TYPE_Q8_0, MIX_NONE, FTYPE_Q8_0},
	{"q4_0", P3_TYPE_Q4_0, MIX_NONE, FTYPE_Q4_0},
	{"q4_1", P3_TYPE_Q4_1, MIX_NONE, FTYPE_Q4_1},
	{"q5_0", P3_TYPE_Q5_0, MIX_NONE, FTYPE_Q5_0},
	{"q5_1", P3_TYPE_Q5_1, MIX_NONE, FTYPE_Q5_1},
	{"q2_k", P3_TYPE_Q2_K, MIX_NONE, FTYPE_Q2_K},
	{"q3_k", P3_TYPE_Q3_K, MIX_NONE, FTYPE_Q3_K_S},
	{"q4_k", P3_TYPE_Q4_K, MIX_NONE, FTYPE_Q4_K_S},
	{"q5_k", P3_TYPE_Q5_K, MIX_NONE, FTYPE_Q5_K_S},
	{"q6_k", P3_TYPE_Q6_K, MIX_NONE, FTYPE_Q6_K},
	{"iq4_nl", P3_TYPE_IQ4_NL, MIX_NONE, FTYPE_IQ4_NL},
	{"iq4_xs", P3_TYPE_IQ4_XS, MIX_NONE, FTYPE_IQ4_XS},
	{"q4_k_m", P3_TYPE_Q4_K, MIX_Q4_K_M, FTYPE_Q4_K_M},
	{"q5_k_m", P3_TYPE_Q5_K, MIX_Q5_K_M, FTYPE_Q5_K_M},
};
#define N_TYPE_CHOICES ((int) (sizeof(type_choices) / sizeof(type_choices[0])))

/* Command-line options and the derived hyper-parameters. */
typedef struct Options
{
	const char *out;
	const char *vocab;
	const char *name;
	const char *description;	/* general.description, or NULL */
	const char *weights;		/* --weights DIR, or NULL: generated values */
	const TypeChoice *type;
	const TypeChoice *output_type;	/* --output-type, NULL: as --type decides */
	int64_t		embd;
	int64_t		layers;
	int64_t		heads;
	int64_t		kv_heads;		/* 0 = heads */
	int64_t		ff;
	int64_t		ctx;			/* 0 = default */
	int64_t		rot;			/* 0 = head_dim */
	int64_t		orig_ctx;		/* 0 = default */
	int64_t		swa;			/* attention.sliding_window; -1 = default, -2 = omit */
	uint64_t	seed;
	double		scale;
	bool		longrope;
	bool		split_qkv;
	bool		tied;
	bool		real_dims;
	bool		quiet;
	int			threads;
	/* derived */
	int64_t		head_dim;
	int64_t		n_embd_kv;
	int64_t		n_vocab;
} Options;

/* How a tensor's values are generated. */
typedef enum TensorKind
{
	KIND_MATRIX,				/* uniform, std = amplitude / sqrt(3) */
	KIND_NORM,					/* 1 + 0.1 * u */
	KIND_ROPE_SHORT,			/* non-decreasing in [1, 3) */
	KIND_ROPE_LONG				/* non-decreasing in [1, 64) */
} TensorKind;

/* One tensor of the plan; also the user data of its fill callback. */
typedef struct TensorPlan
{
	char		name[P3_GGUF_MAX_NAME + 1];
	uint32_t	type;
	uint32_t	n_dims;
	int64_t		ne[2];
	TensorKind	kind;
	float		amplitude;		/* KIND_MATRIX: values in [-amplitude, amplitude) */
	uint64_t	key;			/* RNG key from (seed, name) */
	const float *values;		/* --weights: the tensor's values (ne[0] * rows), else NULL */
	int			index;			/* for progress output */
	const Options *opt;
	int			n_total;
} TensorPlan;

/* Print a message and exit 1 (tools may exit; the engine may not). */
static void die(const char *fmt,...) __attribute__((format(printf, 1, 2), noreturn));

static void
die(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: ", PROGNAME);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void
usage(FILE *f)
{
	fprintf(f,
			"usage: " PROGNAME " -o OUT.gguf [options]\n"
			"  --vocab PATH     GGUF to copy tokenizer.* from (default " DEFAULT_VOCAB ", or $PHI3_VOCAB)\n"
			"  --embd N         n_embd (default 64)           --layers N    n_layer (default 2)\n"
			"  --heads N        n_head (default 4)            --kv-heads N  n_head_kv (default = heads)\n"
			"  --ff N           n_ff (default 128)            --ctx N       context_length (default 4096)\n"
			"  --rot N          rope.dimension_count (default head_dim)\n"
			"  --type T         f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k q4_k q5_k q6_k iq4_nl iq4_xs\n"
			"                   or a mix: q4_k_m q5_k_m (default f32)\n"
			"  --seed S         (default 1)\n"
			"  --longrope       128k-style LongRoPE (context 131072, rope factor tensors)\n"
			"  --orig-ctx N     rope.scaling.original_context_length (default 4096 with --longrope)\n"
			"  --split-qkv      separate attn_q/attn_k/attn_v instead of attn_qkv\n"
			"  --output-type T  type of output.weight (or of the tied token_embd), for example q6_k for\n"
			"                   a Q4_0 file as llama-quantize writes it (default: as --type decides)\n"
			"  --tied           omit output.weight\n"
			"  --real-dims      Phi-3-mini dimensions (3072, 32 layers, 32 heads, ff 8192)\n"
			"  --name S         general.name (default \"" DEFAULT_NAME "\")\n"
			"  --description S  general.description\n"
			"  --weights DIR    read each tensor from DIR/NAME.f32 (float32) instead of generating it\n"
			"  --scale F        output projection scale (default %.1f: logits std about 4)\n"
			"  --threads N      worker threads (default: online CPUs); the file does not depend on it\n"
			"  --sliding-window N  attention.sliding_window (default as the converters: 2047 for context\n"
			"                   4096, 262144 for 131072, else the context; read, never applied)\n"
			"  --no-sliding-window  omit the key (as the April-May 2024 files)\n"
			"  -q, --quiet      no progress on stderr\n",
			DEFAULT_SCALE);
}

/* ------------------------------------------------------------------------
 * Deterministic values
 * ------------------------------------------------------------------------ */

/* The splitmix64 finaliser: a bijective 64-bit mix. */
static inline uint64_t
mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

/* RNG key of a tensor: FNV-1a of its name, mixed with the seed. */
static uint64_t
tensor_key(uint64_t seed, const char *name)
{
	uint64_t	h = UINT64_C(0xCBF29CE484222325);

	for (const unsigned char *p = (const unsigned char *) name; *p; p++)
		h = (h ^ *p) * UINT64_C(0x100000001B3);
	return mix64(mix64(seed) ^ h);
}

/* Element i of the stream with this key: uniform in [-1, 1), exact in f32. */
static inline float
stream_uniform(uint64_t key, uint64_t i)
{
	uint64_t	u = mix64(key + (i + 1) * UINT64_C(0x9E3779B97F4A7C15));

	return (float) ((int32_t) (u >> 40) - (1 << 23)) * (1.0f / (float) (1 << 23));
}

/* Uniform in [0, 1) from the same stream. */
static inline double
stream_unit(uint64_t key, uint64_t i)
{
	return (double) (mix64(key + (i + 1) * UINT64_C(0x9E3779B97F4A7C15)) >> 11) / 9007199254740992.0;
}

/* Values of row r (ne[0] elements) of a tensor. */
static void
generate_row(const TensorPlan *t, int64_t r, float *out)
{
	int64_t		n = t->ne[0];
	uint64_t	base = (uint64_t) r * (uint64_t) n;

	if (t->values != NULL)
	{
		memcpy(out, t->values + base, (size_t) n * sizeof(float));
		return;
	}
	switch (t->kind)
	{
		case KIND_MATRIX:
			for (int64_t c = 0; c < n; c++)
				out[c] = t->amplitude * stream_uniform(t->key, base + (uint64_t) c);
			break;
		case KIND_NORM:
			for (int64_t c = 0; c < n; c++)
				out[c] = 1.0f + 0.1f * stream_uniform(t->key, base + (uint64_t) c);
			break;
		case KIND_ROPE_SHORT:
		case KIND_ROPE_LONG:
			{
				/* 1 + span * (i + u_i) / n: strictly increasing, in [1, 1 + span) */
				float		hi = t->kind == KIND_ROPE_SHORT ? 3.0f : 64.0f;
				double		span = (double) hi - 1.0;

				for (int64_t c = 0; c < n; c++)
				{
					double		v = 1.0 + span * ((double) c + stream_unit(t->key, (uint64_t) c)) / (double) n;
					float		f = (float) v;

					if (f >= hi)
						f = nextafterf(hi, 0.0f);
					out[c] = f;
				}
				break;
			}
	}
}

/* ------------------------------------------------------------------------
 * Filling a tensor (possibly with several threads)
 * ------------------------------------------------------------------------ */

typedef struct FillJob
{
	const TensorPlan *t;
	uint8_t    *dst;
	size_t		row_bytes;
	int64_t		row_begin;
	int64_t		row_end;
	bool		failed;
} FillJob;

/* Produce rows [row_begin, row_end) of a tensor into dst. */
static void *
fill_rows(void *arg)
{
	FillJob    *job = arg;
	const TensorPlan *t = job->t;
	int64_t		n = t->ne[0];
	float	   *row = malloc((size_t) n * sizeof(float));

	if (row == NULL)
	{
		job->failed = true;
		return NULL;
	}
	for (int64_t r = job->row_begin; r < job->row_end; r++)
	{
		uint8_t    *out = job->dst + (size_t) r * job->row_bytes;

		generate_row(t, r, row);
		switch (t->type)
		{
			case P3_TYPE_F32:
				memcpy(out, row, (size_t) n * sizeof(float));
				break;
			case P3_TYPE_F16:
				for (int64_t c = 0; c < n; c++)
				{
					uint16_t	h = p3_fp32_to_fp16(row[c]);

					memcpy(out + 2 * c, &h, 2);
				}
				break;
			case P3_TYPE_BF16:
				for (int64_t c = 0; c < n; c++)
				{
					uint16_t	h = p3_fp32_to_bf16(row[c]);

					memcpy(out + 2 * c, &h, 2);
				}
				break;
			default:
				p3_quantize_row_ref(t->type, row, out, n);
				break;
		}
	}
	free(row);
	return NULL;
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec + (double) ts.tv_nsec * 1e-9;
}

/* --weights: read DIR/NAME.f32 into t->values; its size must be the tensor's. */
static P3Status
load_values(TensorPlan *t, int64_t rows, P3Error *err)
{
	char		path[4096];
	size_t		n = (size_t) rows * (size_t) t->ne[0];
	float	   *v;
	FILE	   *f;
	struct stat sb;

	if (snprintf(path, sizeof(path), "%s/%s.f32", t->opt->weights, t->name) >= (int) sizeof(path))
		return p3_error(err, P3_ERR_INVALID_ARG, "weights path for \"%s\" is too long", t->name);
	if (stat(path, &sb) != 0)
		return p3_error(err, P3_ERR_IO, "cannot read \"%s\": %s", path, strerror(errno));
	if ((size_t) sb.st_size != n * sizeof(float))
		return p3_error(err, P3_ERR_FORMAT, "\"%s\" has %lld bytes, expected %zu (%lld x %lld float32)",
						path, (long long) sb.st_size, n * sizeof(float), (long long) rows, (long long) t->ne[0]);
	v = malloc(n * sizeof(float));
	if (v == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory reading \"%s\"", path);
	f = fopen(path, "rb");
	if (f == NULL || fread(v, sizeof(float), n, f) != n)
	{
		if (f)
			fclose(f);
		free(v);
		return p3_error(err, P3_ERR_IO, "cannot read \"%s\"", path);
	}
	fclose(f);
	for (size_t i = 0; i < n; i++)
		if (!isfinite(v[i]))
		{
			free(v);
			return p3_error(err, P3_ERR_FORMAT, "\"%s\" has a non-finite value at %zu", path, i);
		}
	t->values = v;
	return P3_OK;
}

/* P3GGUFFillFn: generate one tensor into the writer's buffer. */
static P3Status
fill_tensor(void *user, const char *name, void *dst, size_t nbytes, P3Error *err)
{
	const TensorPlan *t = user;
	int64_t		rows = t->n_dims == 2 ? t->ne[1] : 1;
	size_t		row_bytes;
	int			nthreads = t->opt->threads;
	FillJob		jobs[MAX_THREADS];
	pthread_t	tids[MAX_THREADS];
	bool		started[MAX_THREADS] = {false};
	bool		failed = false;
	double		t0 = now_seconds();
	P3Status	st;

	if (!p3_row_bytes(t->type, t->ne[0], &row_bytes) || row_bytes * (size_t) rows != nbytes)
		return p3_error(err, P3_ERR_INTERNAL, "tensor \"%s\": unexpected size %zu", name, nbytes);

	if (t->opt->weights != NULL && (st = load_values((TensorPlan *) t, rows, err)) != P3_OK)
		return st;
	if ((int64_t) rows * t->ne[0] < PARALLEL_MIN_ELEMS || rows < 2)
		nthreads = 1;
	if (nthreads > rows)
		nthreads = (int) rows;

	/* a fixed contiguous split: each row is independent, so the bytes do not depend on it */
	for (int k = 0; k < nthreads; k++)
	{
		jobs[k].t = t;
		jobs[k].dst = dst;
		jobs[k].row_bytes = row_bytes;
		jobs[k].row_begin = rows * k / nthreads;
		jobs[k].row_end = rows * (k + 1) / nthreads;
		jobs[k].failed = false;
	}
	for (int k = 1; k < nthreads; k++)
		started[k] = pthread_create(&tids[k], NULL, fill_rows, &jobs[k]) == 0;
	fill_rows(&jobs[0]);
	for (int k = 1; k < nthreads; k++)
	{
		if (started[k])
			pthread_join(tids[k], NULL);
		else
			fill_rows(&jobs[k]);	/* could not start a thread: do it here */
	}
	for (int k = 0; k < nthreads; k++)
		failed |= jobs[k].failed;
	free((void *) t->values);
	((TensorPlan *) t)->values = NULL;
	if (failed)
		return p3_error(err, P3_ERR_NOMEM, "out of memory generating tensor \"%s\"", name);

	if (!t->opt->quiet)
	{
		if (t->n_dims == 2)
			fprintf(stderr, "[%3d/%d] %-32s %-6s [%lld, %lld] %.2fs\n", t->index + 1, t->n_total,
					name, p3_type_name(t->type), (long long) t->ne[0], (long long) t->ne[1],
					now_seconds() - t0);
		else
			fprintf(stderr, "[%3d/%d] %-32s %-6s [%lld]\n", t->index + 1, t->n_total,
					name, p3_type_name(t->type), (long long) t->ne[0]);
	}
	return P3_OK;
}

/* ------------------------------------------------------------------------
 * The plan: which tensors, with which shapes and types
 * ------------------------------------------------------------------------ */

/* llama.cpp's "more bits" layers of the K-quant mixes. */
static bool
use_more_bits(int64_t layer, int64_t n_layers)
{
	return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

typedef enum MatrixRole
{
	ROLE_TOKEN_EMBD,
	ROLE_OUTPUT,
	ROLE_ATTN_QKV,
	ROLE_ATTN_Q,
	ROLE_ATTN_K,
	ROLE_ATTN_V,
	ROLE_ATTN_OUTPUT,
	ROLE_FFN_UP,
	ROLE_FFN_DOWN
} MatrixRole;

/* The type of a 2-D matrix under the chosen --type (see the file comment). */
static uint32_t
matrix_type(const Options *o, MatrixRole role, int64_t layer)
{
	const TypeChoice *tc = o->type;

	if (o->output_type != NULL && (role == ROLE_OUTPUT || (role == ROLE_TOKEN_EMBD && o->tied)))
		return o->output_type->type;
	if (tc->mix == MIX_NONE)
		return tc->type;
	switch (role)
	{
		case ROLE_OUTPUT:
			return P3_TYPE_Q6_K;
		case ROLE_TOKEN_EMBD:
			/* with tied embeddings llama.cpp quantizes token_embd as the output */
			return o->tied ? P3_TYPE_Q6_K : tc->type;
		case ROLE_ATTN_QKV:
			return tc->mix == MIX_Q4_K_M ? P3_TYPE_Q5_K : P3_TYPE_Q6_K;
		case ROLE_ATTN_V:
		case ROLE_FFN_DOWN:
			return use_more_bits(layer, o->layers) ? P3_TYPE_Q6_K : tc->type;
		default:
			return tc->type;
	}
}

/* Append a tensor to the plan. */
static void
plan_add(TensorPlan *plan, int *n, const Options *o, const char *name, uint32_t type,
		 uint32_t n_dims, int64_t ne0, int64_t ne1, TensorKind kind, double std)
{
	TensorPlan *t = &plan[*n];

	memset(t, 0, sizeof(*t));
	if (snprintf(t->name, sizeof(t->name), "%s", name) >= (int) sizeof(t->name))
		die("tensor name \"%s\" is too long", name);
	t->type = n_dims == 1 ? P3_TYPE_F32 : type;
	t->n_dims = n_dims;
	t->ne[0] = ne0;
	t->ne[1] = n_dims == 2 ? ne1 : 1;
	t->kind = kind;
	t->amplitude = (float) (std * sqrt(3.0));
	t->key = tensor_key(o->seed, name);
	t->index = *n;
	t->opt = o;
	(*n)++;
}

/* Build the list of tensors, in file order.  Returns the count. */
static int
build_plan(const Options *o, TensorPlan *plan)
{
	int			n = 0;
	double		inv_embd = 1.0 / sqrt((double) o->embd);
	double		inv_ff = 1.0 / sqrt((double) o->ff);
	char		name[P3_GGUF_MAX_NAME + 1];

	plan_add(plan, &n, o, "token_embd.weight", matrix_type(o, ROLE_TOKEN_EMBD, 0), 2,
			 o->embd, o->n_vocab, KIND_MATRIX, o->tied ? o->scale * inv_embd : inv_embd);
	if (o->longrope)
	{
		plan_add(plan, &n, o, "rope_factors_long.weight", P3_TYPE_F32, 1, o->rot / 2, 1, KIND_ROPE_LONG, 0);
		plan_add(plan, &n, o, "rope_factors_short.weight", P3_TYPE_F32, 1, o->rot / 2, 1, KIND_ROPE_SHORT, 0);
	}
	for (int64_t l = 0; l < o->layers; l++)
	{
#define LNAME(suffix) (snprintf(name, sizeof(name), "blk.%lld." suffix, (long long) l), name)
		plan_add(plan, &n, o, LNAME("attn_norm.weight"), P3_TYPE_F32, 1, o->embd, 1, KIND_NORM, 0);
		if (o->split_qkv)
		{
			plan_add(plan, &n, o, LNAME("attn_q.weight"), matrix_type(o, ROLE_ATTN_Q, l), 2,
					 o->embd, o->embd, KIND_MATRIX, inv_embd);
			plan_add(plan, &n, o, LNAME("attn_k.weight"), matrix_type(o, ROLE_ATTN_K, l), 2,
					 o->embd, o->n_embd_kv, KIND_MATRIX, inv_embd);
			plan_add(plan, &n, o, LNAME("attn_v.weight"), matrix_type(o, ROLE_ATTN_V, l), 2,
					 o->embd, o->n_embd_kv, KIND_MATRIX, inv_embd);
		}
		else
			plan_add(plan, &n, o, LNAME("attn_qkv.weight"), matrix_type(o, ROLE_ATTN_QKV, l), 2,
					 o->embd, o->embd + 2 * o->n_embd_kv, KIND_MATRIX, inv_embd);
		plan_add(plan, &n, o, LNAME("attn_output.weight"), matrix_type(o, ROLE_ATTN_OUTPUT, l), 2,
				 o->embd, o->embd, KIND_MATRIX, inv_embd);
		plan_add(plan, &n, o, LNAME("ffn_norm.weight"), P3_TYPE_F32, 1, o->embd, 1, KIND_NORM, 0);
		plan_add(plan, &n, o, LNAME("ffn_up.weight"), matrix_type(o, ROLE_FFN_UP, l), 2,
				 o->embd, 2 * o->ff, KIND_MATRIX, inv_embd);
		plan_add(plan, &n, o, LNAME("ffn_down.weight"), matrix_type(o, ROLE_FFN_DOWN, l), 2,
				 o->ff, o->embd, KIND_MATRIX, inv_ff);
#undef LNAME
	}
	plan_add(plan, &n, o, "output_norm.weight", P3_TYPE_F32, 1, o->embd, 1, KIND_NORM, 0);
	if (!o->tied)
		plan_add(plan, &n, o, "output.weight", matrix_type(o, ROLE_OUTPUT, 0), 2,
				 o->embd, o->n_vocab, KIND_MATRIX, o->scale * inv_embd);
	for (int i = 0; i < n; i++)
		plan[i].n_total = n;
	return n;
}

/* ------------------------------------------------------------------------
 * Command line
 * ------------------------------------------------------------------------ */

/* Parse a positive integer option in [lo, hi]. */
static int64_t
parse_int(const char *opt, const char *s, int64_t lo, int64_t hi)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		die("invalid value \"%s\" for %s (expected an integer from %lld to %lld)",
			s, opt, (long long) lo, (long long) hi);
	return v;
}

/*
 * The default vocabulary is test/data/... relative to the repository
 * root: found from the current directory when run from the root, else from
 * the executable's location (<root>/bin/phi3-mkmodel).
 */
static const char *
default_vocab(void)
{
	static char path[4096];
	char		exe[4096];
	ssize_t		n;
	char	   *slash;

	if (access(DEFAULT_VOCAB, R_OK) == 0)
		return DEFAULT_VOCAB;
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n <= 0)
		return DEFAULT_VOCAB;
	exe[n] = '\0';
	/* strip "/phi3-mkmodel" and then "/bin" to get the repository root */
	for (int k = 0; k < 2; k++)
	{
		slash = strrchr(exe, '/');
		if (slash == NULL)
			return DEFAULT_VOCAB;
		*slash = '\0';
	}
	if (snprintf(path, sizeof(path), "%s/%s", exe, DEFAULT_VOCAB) >= (int) sizeof(path) ||
		access(path, R_OK) != 0)
		return DEFAULT_VOCAB;
	return path;
}

/* The --type / --output-type choice named s (dies on an unknown name). */
static const TypeChoice *
find_type_choice(const char *opt, const char *s)
{
	for (int i = 0; i < N_TYPE_CHOICES; i++)
		if (strcasecmp(s, type_choices[i].name) == 0)
			return &type_choices[i];
	die("unknown %s \"%s\" (expected f32 f16 bf16 q8_0 q4_0 q4_1 q5_0 q5_1 q2_k q3_k "
		"q4_k q5_k q6_k iq4_nl iq4_xs q4_k_m q5_k_m)", opt, s);
	return NULL;
}

enum
{
	OPT_VOCAB = 256, OPT_EMBD, OPT_LAYERS, OPT_HEADS, OPT_KV_HEADS, OPT_FF, OPT_CTX,
	OPT_ROT, OPT_TYPE, OPT_SEED, OPT_LONGROPE, OPT_ORIG_CTX, OPT_SPLIT_QKV, OPT_TIED,
	OPT_REAL_DIMS, OPT_NAME, OPT_SCALE, OPT_THREADS, OPT_SWA, OPT_NO_SWA, OPT_OUTPUT_TYPE,
	OPT_DESCRIPTION, OPT_WEIGHTS
};

static void
parse_options(int argc, char **argv, Options *o)
{
	static const struct option longopts[] = {
		{"out", required_argument, NULL, 'o'},
		{"vocab", required_argument, NULL, OPT_VOCAB},
		{"embd", required_argument, NULL, OPT_EMBD},
		{"layers", required_argument, NULL, OPT_LAYERS},
		{"heads", required_argument, NULL, OPT_HEADS},
		{"kv-heads", required_argument, NULL, OPT_KV_HEADS},
		{"ff", required_argument, NULL, OPT_FF},
		{"ctx", required_argument, NULL, OPT_CTX},
		{"rot", required_argument, NULL, OPT_ROT},
		{"type", required_argument, NULL, OPT_TYPE},
		{"output-type", required_argument, NULL, OPT_OUTPUT_TYPE},
		{"seed", required_argument, NULL, OPT_SEED},
		{"longrope", no_argument, NULL, OPT_LONGROPE},
		{"orig-ctx", required_argument, NULL, OPT_ORIG_CTX},
		{"split-qkv", no_argument, NULL, OPT_SPLIT_QKV},
		{"tied", no_argument, NULL, OPT_TIED},
		{"real-dims", no_argument, NULL, OPT_REAL_DIMS},
		{"name", required_argument, NULL, OPT_NAME},
		{"description", required_argument, NULL, OPT_DESCRIPTION},
		{"weights", required_argument, NULL, OPT_WEIGHTS},
		{"scale", required_argument, NULL, OPT_SCALE},
		{"threads", required_argument, NULL, OPT_THREADS},
		{"sliding-window", required_argument, NULL, OPT_SWA},
		{"no-sliding-window", no_argument, NULL, OPT_NO_SWA},
		{"quiet", no_argument, NULL, 'q'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	/* explicit dimension options win over --real-dims, whatever their order */
	int64_t		embd = 0,
				layers = 0,
				heads = 0,
				ff = 0;
	int			c;
	long		ncpu;

	memset(o, 0, sizeof(*o));
	o->type = &type_choices[0];
	o->seed = 1;
	o->scale = DEFAULT_SCALE;
	o->name = DEFAULT_NAME;
	o->swa = -1;

	while ((c = getopt_long(argc, argv, "o:qh", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case 'o':
				o->out = optarg;
				break;
			case 'q':
				o->quiet = true;
				break;
			case 'h':
				usage(stdout);
				exit(0);
			case OPT_VOCAB:
				o->vocab = optarg;
				break;
			case OPT_EMBD:
				embd = parse_int("--embd", optarg, 1, 1 << 20);
				break;
			case OPT_LAYERS:
				layers = parse_int("--layers", optarg, 1, 4096);
				break;
			case OPT_HEADS:
				heads = parse_int("--heads", optarg, 1, 1 << 16);
				break;
			case OPT_KV_HEADS:
				o->kv_heads = parse_int("--kv-heads", optarg, 1, 1 << 16);
				break;
			case OPT_FF:
				ff = parse_int("--ff", optarg, 1, 1 << 22);
				break;
			case OPT_CTX:
				o->ctx = parse_int("--ctx", optarg, 1, UINT32_MAX);
				break;
			case OPT_ROT:
				o->rot = parse_int("--rot", optarg, 2, 1 << 16);
				break;
			case OPT_ORIG_CTX:
				o->orig_ctx = parse_int("--orig-ctx", optarg, 2, UINT32_MAX);
				break;
			case OPT_TYPE:
				o->type = find_type_choice("--type", optarg);
				break;
			case OPT_OUTPUT_TYPE:
				o->output_type = find_type_choice("--output-type", optarg);
				if (o->output_type->mix != MIX_NONE)
					die("--output-type takes one type, not the mix \"%s\"", optarg);
				break;
			case OPT_SEED:
				{
					char	   *end;

					errno = 0;
					o->seed = strtoull(optarg, &end, 0);
					if (errno != 0 || end == optarg || *end != '\0' || optarg[0] == '-')
						die("invalid value \"%s\" for --seed", optarg);
					break;
				}
			case OPT_LONGROPE:
				o->longrope = true;
				break;
			case OPT_SPLIT_QKV:
				o->split_qkv = true;
				break;
			case OPT_TIED:
				o->tied = true;
				break;
			case OPT_REAL_DIMS:
				o->real_dims = true;
				break;
			case OPT_NAME:
				o->name = optarg;
				break;
			case OPT_DESCRIPTION:
				o->description = optarg;
				break;
			case OPT_WEIGHTS:
				o->weights = optarg;
				break;
			case OPT_SCALE:
				{
					char	   *end;

					errno = 0;
					o->scale = strtod(optarg, &end);
					if (errno != 0 || end == optarg || *end != '\0' || !isfinite(o->scale))
						die("invalid value \"%s\" for --scale", optarg);
					break;
				}
			case OPT_THREADS:
				o->threads = (int) parse_int("--threads", optarg, 1, MAX_THREADS);
				break;
			case OPT_SWA:
				o->swa = parse_int("--sliding-window", optarg, 0, UINT32_MAX);
				break;
			case OPT_NO_SWA:
				o->swa = -2;
				break;
			default:
				usage(stderr);
				exit(1);
		}
	}
	if (optind < argc)
		die("unexpected argument \"%s\"", argv[optind]);
	if (o->out == NULL)
	{
		usage(stderr);
		die("no output file given (-o OUT.gguf)");
	}

	/* dimensions: explicit options, else --real-dims, else the small defaults */
	o->embd = embd ? embd : o->real_dims ? 3072 : 64;
	o->layers = layers ? layers : o->real_dims ? 32 : 2;
	o->heads = heads ? heads : o->real_dims ? 32 : 4;
	o->ff = ff ? ff : o->real_dims ? 8192 : 128;
	if (o->kv_heads == 0)
		o->kv_heads = o->heads;
	if (o->ctx == 0)
		o->ctx = o->longrope ? 131072 : 4096;
	if (o->orig_ctx == 0)
		o->orig_ctx = o->longrope ? 4096 : o->ctx;
	/* as the converters write it: Phi-3-mini-4k 2047, 128k 262144, else the context */
	if (o->swa == -1)
		o->swa = o->ctx == 4096 ? 2047 : o->ctx == 131072 ? 262144 : o->ctx;

	if (o->embd % o->heads != 0)
		die("--embd %lld is not a multiple of --heads %lld", (long long) o->embd, (long long) o->heads);
	if (o->heads % o->kv_heads != 0)
		die("--heads %lld is not a multiple of --kv-heads %lld", (long long) o->heads, (long long) o->kv_heads);
	o->head_dim = o->embd / o->heads;
	o->n_embd_kv = o->kv_heads * o->head_dim;
	if (o->rot == 0)
		o->rot = o->head_dim;
	if (o->rot % 2 != 0 || o->rot > o->head_dim)
		die("--rot %lld must be even and at most the head dimension %lld",
			(long long) o->rot, (long long) o->head_dim);
	if (o->head_dim < 2)
		die("head dimension %lld is too small (--embd / --heads must be at least 2)", (long long) o->head_dim);

	/* block types need the row lengths (embd, ff) to be multiples of their block size */
	{
		uint32_t	bs = p3_type_traits(o->type->type)->block_size;

		if (o->type->mix != MIX_NONE)
			bs = P3_QK_K;
		if (o->embd % bs != 0 || o->ff % bs != 0)
			die("--type %s needs --embd and --ff to be multiples of %u (got %lld and %lld)",
				o->type->name, bs, (long long) o->embd, (long long) o->ff);
	}

	if (o->threads == 0)
	{
		ncpu = sysconf(_SC_NPROCESSORS_ONLN);
		o->threads = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (int) ncpu;
	}
	if (o->vocab == NULL)
		o->vocab = getenv("PHI3_VOCAB") && getenv("PHI3_VOCAB")[0] ? getenv("PHI3_VOCAB") : default_vocab();
}

/* Die with the engine's message if st is an error. */
static void
check(P3Status st, const P3Error *err, const char *what)
{
	if (st != P3_OK)
		die("%s: %s", what, err->message);
}

int
main(int argc, char **argv)
{
	Options		o;
	P3GGUF	   *vocab = NULL;
	P3GGUFWriter *w = NULL;
	P3Error		err = {0};
	const P3GGUFValue *tokens = NULL;
	TensorPlan *plan;
	int			n_tensors;
	int			max_tensors;
	bool		quantized = false;
	int			histogram[P3_TYPE_COUNT] = {0};
	double		t0 = now_seconds();
	struct stat sb;

	parse_options(argc, argv, &o);

	if (p3_gguf_open(o.vocab, &vocab, &err) != P3_OK)
		die("cannot read the vocabulary: %s (give --vocab PATH or set PHI3_VOCAB)", err.message);
	if (p3_gguf_get_array(vocab, "tokenizer.ggml.tokens", P3_GGUF_STRING, &tokens, &err) != P3_OK)
		die("vocabulary file \"%s\" has no usable tokenizer.ggml.tokens array", o.vocab);
	if (tokens->v.arr.count < 1 || tokens->v.arr.count > INT32_MAX)
		die("vocabulary file \"%s\" has %llu tokens", o.vocab, (unsigned long long) tokens->v.arr.count);
	o.n_vocab = (int64_t) tokens->v.arr.count;

	max_tensors = 4 + 9 * (int) o.layers;
	plan = calloc((size_t) max_tensors, sizeof(*plan));
	if (plan == NULL)
		die("out of memory");
	n_tensors = build_plan(&o, plan);
	for (int i = 0; i < n_tensors; i++)
	{
		histogram[plan[i].type]++;
		if (plan[i].type != P3_TYPE_F32 && plan[i].type != P3_TYPE_F16 && plan[i].type != P3_TYPE_BF16)
			quantized = true;
	}

	check(p3_gguf_writer_new(&w, &err), &err, "writer");
	check(p3_gguf_writer_add_string(w, "general.architecture", "phi3", &err), &err, "metadata");
	check(p3_gguf_writer_add_string(w, "general.name", o.name, &err), &err, "metadata");
	if (o.description != NULL)
		check(p3_gguf_writer_add_string(w, "general.description", o.description, &err), &err, "metadata");
	check(p3_gguf_writer_add_u32(w, "general.file_type", o.type->ftype, &err), &err, "metadata");
	if (quantized)
		check(p3_gguf_writer_add_u32(w, "general.quantization_version", 2, &err), &err, "metadata");
	check(p3_gguf_writer_set_alignment(w, P3_GGUF_DEFAULT_ALIGNMENT, &err), &err, "metadata");
	check(p3_gguf_writer_add_u32(w, "phi3.context_length", (uint32_t) o.ctx, &err), &err, "metadata");
	check(p3_gguf_writer_add_u32(w, "phi3.embedding_length", (uint32_t) o.embd, &err), &err, "metadata");
	check(p3_gguf_writer_add_u32(w, "phi3.block_count", (uint32_t) o.layers, &err), &err, "metadata");
	check(p3_gguf_writer_add_u32(w, "phi3.feed_forward_length", (uint32_t) o.ff, &err), &err, "metadata");
	check(p3_gguf_writer_add_u32(w, "phi3.attention.head_count", (uint32_t) o.heads, &err), &err, "metadata");
	check(p3_gguf_writer_add_u32(w, "phi3.attention.head_count_kv", (uint32_t) o.kv_heads, &err), &err, "metadata");
	check(p3_gguf_writer_add_f32(w, "phi3.attention.layer_norm_rms_epsilon", 1e-5f, &err), &err, "metadata");
	check(p3_gguf_writer_add_u32(w, "phi3.rope.dimension_count", (uint32_t) o.rot, &err), &err, "metadata");
	check(p3_gguf_writer_add_f32(w, "phi3.rope.freq_base", 10000.0f, &err), &err, "metadata");
	check(p3_gguf_writer_add_u32(w, "phi3.rope.scaling.original_context_length", (uint32_t) o.orig_ctx, &err),
		  &err, "metadata");
	if (o.swa >= 0)				/* llama.cpp refuses small models without it */
		check(p3_gguf_writer_add_u32(w, "phi3.attention.sliding_window", (uint32_t) o.swa, &err), &err,
			  "metadata");
	if (o.longrope)
	{
		double		scale = (double) o.ctx / (double) o.orig_ctx;
		double		attn_factor = scale > 1.0 ? sqrt(1.0 + log(scale) / log((double) o.orig_ctx)) : 1.0;

		check(p3_gguf_writer_add_f32(w, "phi3.rope.scaling.attn_factor", (float) attn_factor, &err),
			  &err, "metadata");
	}
	check(p3_gguf_writer_copy_kv(w, vocab, "tokenizer.", &err), &err, "copying the tokenizer metadata");

	for (int i = 0; i < n_tensors; i++)
		check(p3_gguf_writer_add_tensor_deferred(w, plan[i].name, plan[i].type, plan[i].n_dims, plan[i].ne,
												 fill_tensor, &plan[i], &err), &err, "adding a tensor");

	if (!o.quiet)
		fprintf(stderr, "%s: writing \"%s\": %s, embd %lld, layers %lld, heads %lld/%lld, ff %lld, vocab %lld, %d threads\n",
				PROGNAME, o.out, o.type->name, (long long) o.embd, (long long) o.layers,
				(long long) o.heads, (long long) o.kv_heads, (long long) o.ff, (long long) o.n_vocab, o.threads);
	check(p3_gguf_writer_write_file(w, o.out, &err), &err, "writing the model");

	if (!o.quiet)
	{
		fprintf(stderr, "%s: wrote \"%s\": %d tensors, %lld bytes, %.1f s\n", PROGNAME, o.out, n_tensors,
				stat(o.out, &sb) == 0 ? (long long) sb.st_size : -1LL, now_seconds() - t0);
		fprintf(stderr, "%s: tensor types:", PROGNAME);
		for (int ty = 0, first = 1; ty < P3_TYPE_COUNT; ty++)
			if (histogram[ty] > 0)
			{
				fprintf(stderr, "%s %s %d", first ? "" : ",", p3_type_name((uint32_t) ty), histogram[ty]);
				first = 0;
			}
		fputc('\n', stderr);
	}

	p3_gguf_writer_free(w);
	p3_gguf_close(vocab);
	free(plan);
	return 0;
}
