/*
 * test_gguf.c — tests of the GGUF reader and writer (phi3/gguf.h).
 *
 * Round trips: an image with every metadata type and tensors of several
 * types is written (to memory and to a file), parsed back and compared
 * value by value.  The real Phi-3 vocabulary file is loaded and checked.
 *
 * Corruption: every prefix of a valid image that ends before its last
 * tensor's data, thousands of random byte flips, and hand-crafted headers
 * with hostile counts, lengths, types, dims, offsets and alignments must
 * all be rejected with an error status (or, for flips that land in tensor
 * data, parse to an object whose every pointer stays inside the buffer).
 * Each corrupted image is parsed from a malloc'ed buffer of exactly its
 * size, so an over-read shows up under valgrind and ASan.
 *
 * Run from the repository root (the vocabulary is found at
 * test/data/ggml-vocab-phi-3.gguf, or at $PHI3_VOCAB).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "phi3/gguf.h"
#include "phi3/quant.h"

#define DEFAULT_VOCAB "test/data/ggml-vocab-phi-3.gguf"

/* ------------------------------------------------------------------------
 * A raw byte builder for hand-crafted images
 * ------------------------------------------------------------------------ */
typedef struct Img
{
	uint8_t    *p;
	size_t		len;
	size_t		cap;
} Img;

static void
img_bytes(Img *b, const void *src, size_t n)
{
	if (b->len + n > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;

		while (cap < b->len + n)
			cap *= 2;
		b->p = realloc(b->p, cap);
		if (b->p == NULL)
		{
			fprintf(stderr, "out of memory\n");
			exit(2);
		}
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

static void
img_u8(Img *b, uint8_t v)
{
	img_bytes(b, &v, 1);
}

static void
img_u32(Img *b, uint32_t v)
{
	img_bytes(b, &v, 4);
}

static void
img_u64(Img *b, uint64_t v)
{
	img_bytes(b, &v, 8);
}

static void
img_str(Img *b, const char *s)
{
	img_u64(b, strlen(s));
	img_bytes(b, s, strlen(s));
}

static void
img_header(Img *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
	img_u32(b, P3_GGUF_MAGIC);
	img_u32(b, version);
	img_u64(b, n_tensors);
	img_u64(b, n_kv);
}

/* A key followed by its value type (the caller appends the value). */
static void
img_key(Img *b, const char *key, uint32_t type)
{
	img_str(b, key);
	img_u32(b, type);
}

static void
img_tensor(Img *b, const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type, uint64_t offset)
{
	img_str(b, name);
	img_u32(b, n_dims);
	for (uint32_t d = 0; d < n_dims; d++)
		img_u64(b, dims[d]);
	img_u32(b, type);
	img_u64(b, offset);
}

/* Zero-pad to the alignment, then append n zero bytes of tensor data. */
static void
img_data(Img *b, uint32_t alignment, size_t n)
{
	uint8_t		z = 0;

	while (b->len % alignment)
		img_bytes(b, &z, 1);
	for (size_t i = 0; i < n; i++)
		img_bytes(b, &z, 1);
}

/* Parse a copy of buf in an exact-size allocation; returns the status. */
static P3Status
parse_exact(const uint8_t *buf, size_t len, P3Error *err)
{
	uint8_t    *copy = malloc(len ? len : 1);
	P3GGUF	   *g = (P3GGUF *) (uintptr_t) 1;
	P3Status	st;

	memcpy(copy, buf, len);
	st = p3_gguf_parse(copy, len, &g, err);
	if (st == P3_OK)
		p3_gguf_close(g);
	else
		CHECK(g == NULL);
	free(copy);
	return st;
}

/*
 * Expect the image to fail with status st, error kind kind and a message
 * containing needle (if not NULL).
 */
static void
expect_fail(const Img *img, P3Status st, P3ErrorKind kind, const char *needle, int line)
{
	P3Error		e = {0};
	P3Status	got = parse_exact(img->p, img->len, &e);

	CHECK_MSG(got == st, "line %d: status %d, expected %d (%s)", line, (int) got, (int) st, e.message);
	CHECK_MSG(e.status == st, "line %d: err->status %d", line, (int) e.status);
	CHECK_MSG(e.kind == kind, "line %d: err->kind %d, expected %d (%s)", line, (int) e.kind, (int) kind,
			  e.message);
	if (needle != NULL)
		CHECK_MSG(strstr(e.message, needle) != NULL, "line %d: message \"%s\" lacks \"%s\"",
				  line, e.message, needle);
}

/* Expect the image to parse. */
static void
expect_ok(const Img *img, int line)
{
	P3Error		e = {0};
	P3Status	got = parse_exact(img->p, img->len, &e);

	CHECK_MSG(got == P3_OK, "line %d: unexpected error: %s", line, e.message);
}

/* Most failures have no finer kind (P3_ERR_FORMAT, ...) */
#define EXPECT_FAIL(img, st, needle) expect_fail((img), (st), P3_KIND_NONE, (needle), __LINE__)
#define EXPECT_FAIL_KIND(img, st, kind, needle) expect_fail((img), (st), (kind), (needle), __LINE__)
#define EXPECT_OK(img) expect_ok((img), __LINE__)

/* ------------------------------------------------------------------------
 * The reference image: every metadata type and several tensor types
 * ------------------------------------------------------------------------ */
typedef struct TensorSpec
{
	const char *name;
	uint32_t	type;
	uint32_t	n_dims;
	int64_t		ne[4];
} TensorSpec;

static const TensorSpec ref_tensors[] = {
	{"a.f32", P3_TYPE_F32, 2, {7, 3, 1, 1}},
	{"b.f16", P3_TYPE_F16, 1, {5, 1, 1, 1}},
	{"c.q8_0", P3_TYPE_Q8_0, 2, {64, 2, 1, 1}},
	{"d.q4_K", P3_TYPE_Q4_K, 2, {256, 3, 1, 1}},
	{"e.bf16.four_dims", P3_TYPE_BF16, 4, {3, 2, 2, 2}},
	{"f.iq4_xs", P3_TYPE_IQ4_XS, 1, {256, 1, 1, 1}},
	{"g.q6_K.deferred", P3_TYPE_Q6_K, 2, {256, 2, 1, 1}},
};
#define N_REF_TENSORS ((int) (sizeof(ref_tensors) / sizeof(ref_tensors[0])))

static const uint32_t ref_arr_u32[] = {1, 2, 3, 4000000000u};
static const float ref_arr_f32[] = {0.5f, -1.25f, 3.0e38f, 0.0f, -0.0f};
static const int8_t ref_arr_i8[] = {-128, 0, 127};
static const uint8_t ref_arr_bool[] = {1, 0, 1, 1};
static const double ref_arr_f64[] = {1e300, -2.5};
static const char *const ref_strs[] = {"alpha", "", "\xe2\x96\x81gamma", "with\0nul"};
static const uint64_t ref_str_lens[] = {5, 0, 8, 8};

/* Bytes of the reference tensor i (deterministic, depends on i only). */
static void
ref_tensor_bytes(int i, uint8_t *dst, size_t n)
{
	uint64_t	s = 1000 + (uint64_t) i;

	for (size_t k = 0; k < n; k++)
		dst[k] = (uint8_t) harness_rand(&s);
}

static size_t
ref_tensor_nbytes(int i)
{
	const TensorSpec *t = &ref_tensors[i];
	size_t		row = 0;

	CHECK(p3_row_bytes(t->type, t->ne[0], &row));
	return row * (size_t) (t->ne[1] * t->ne[2] * t->ne[3]);
}

static int	fill_calls;

/* Fill callback of the deferred reference tensor. */
static P3Status
ref_fill(void *user, const char *name, void *dst, size_t nbytes, P3Error *err)
{
	int			i = *(const int *) user;

	fill_calls++;
	CHECK(strcmp(name, ref_tensors[i].name) == 0);
	CHECK_EQ_INT(nbytes, ref_tensor_nbytes(i));
	ref_tensor_bytes(i, dst, nbytes);
	return P3_OK;
}

static P3Status
failing_fill(void *user, const char *name, void *dst, size_t nbytes, P3Error *err)
{
	return p3_error(err, P3_ERR_ABORTED, "fill of \"%s\" refused", name);
}

/* Build the reference writer with the given alignment (0 = default). */
static P3GGUFWriter *
make_ref_writer(uint32_t alignment)
{
	static const int deferred_index = N_REF_TENSORS - 1;
	P3GGUFWriter *w = NULL;
	P3Error		e = {0};
	P3GGUFValue v;

	CHECK_STATUS(p3_gguf_writer_new(&w, &e), P3_OK);
	if (w == NULL)
		exit(2);
	CHECK_STATUS(p3_gguf_writer_add_string(w, "general.architecture", "phi3", &e), P3_OK);
	if (alignment)
		CHECK_STATUS(p3_gguf_writer_set_alignment(w, alignment, &e), P3_OK);

	memset(&v, 0, sizeof(v));
	v.type = P3_GGUF_UINT8;
	v.v.u64 = 200;
	CHECK_STATUS(p3_gguf_writer_add_value(w, "t.u8", &v, &e), P3_OK);
	v.type = P3_GGUF_INT8;
	v.v.i64 = -100;
	CHECK_STATUS(p3_gguf_writer_add_value(w, "t.i8", &v, &e), P3_OK);
	v.type = P3_GGUF_UINT16;
	v.v.u64 = 60000;
	CHECK_STATUS(p3_gguf_writer_add_value(w, "t.u16", &v, &e), P3_OK);
	v.type = P3_GGUF_INT16;
	v.v.i64 = -30000;
	CHECK_STATUS(p3_gguf_writer_add_value(w, "t.i16", &v, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_u32(w, "t.u32", 4000000000u, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_i32(w, "t.i32", -2000000000, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_f32(w, "t.f32", 1.5f, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_bool(w, "t.bool", true, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_bool(w, "t.bool_false", false, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_string(w, "t.str", "h\xc3\xa9llo", &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_string(w, "t.empty_str", "", &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_u64(w, "t.u64", UINT64_C(9223372036854775813), &e), P3_OK);
	v.type = P3_GGUF_INT64;
	v.v.i64 = -INT64_C(4611686018427387907);
	CHECK_STATUS(p3_gguf_writer_add_value(w, "t.i64", &v, &e), P3_OK);
	v.type = P3_GGUF_FLOAT64;
	v.v.f64 = 3.141592653589793;
	CHECK_STATUS(p3_gguf_writer_add_value(w, "t.f64", &v, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_array(w, "t.arr_u32", P3_GGUF_UINT32, ref_arr_u32, 4, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_array(w, "t.arr_f32", P3_GGUF_FLOAT32, ref_arr_f32, 5, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_array(w, "t.arr_i8", P3_GGUF_INT8, ref_arr_i8, 3, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_array(w, "t.arr_bool", P3_GGUF_BOOL, ref_arr_bool, 4, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_array(w, "t.arr_f64", P3_GGUF_FLOAT64, ref_arr_f64, 2, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_array(w, "t.arr_empty", P3_GGUF_UINT32, NULL, 0, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_string_array(w, "t.arr_str", ref_strs, ref_str_lens, 4, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_string_array(w, "t.arr_str_nul", ref_strs, NULL, 3, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_string_array(w, "t.arr_str_empty", NULL, NULL, 0, &e), P3_OK);

	for (int i = 0; i < N_REF_TENSORS; i++)
	{
		const TensorSpec *t = &ref_tensors[i];

		if (i == deferred_index)
		{
			CHECK_STATUS(p3_gguf_writer_add_tensor_deferred(w, t->name, t->type, t->n_dims, t->ne,
															ref_fill, (void *) &deferred_index, &e), P3_OK);
		}
		else
		{
			size_t		n = ref_tensor_nbytes(i);
			uint8_t    *data = malloc(n);

			ref_tensor_bytes(i, data, n);
			CHECK_STATUS(p3_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, data, &e), P3_OK);
			free(data);
		}
	}
	return w;
}

/* Check that a parsed reference image holds exactly what make_ref_writer wrote. */
static void
check_ref_image(const P3GGUF *g, uint32_t alignment)
{
	P3Error		e = {0};
	const P3GGUFKV *kv;
	const P3GGUFValue *arr;
	P3GGUFString s;
	uint32_t	u32;
	int64_t		i64;
	float		f32;
	bool		b;
	uint64_t	expect_offset = 0;

	CHECK_EQ_INT(g->version, 3);
	CHECK_EQ_INT(g->alignment, alignment);
	CHECK_EQ_INT(g->n_kv, alignment != P3_GGUF_DEFAULT_ALIGNMENT ? 25 : 24);
	CHECK(g->data_offset % alignment == 0);

	/* keys come back in insertion order */
	CHECK(p3_gguf_string_eq(g->kv[0].key, "general.architecture"));
	CHECK(p3_gguf_string_eq(g->kv[g->n_kv - 1].key, "t.arr_str_empty"));

	CHECK_STATUS(p3_gguf_get_string(g, "general.architecture", &s, &e), P3_OK);
	CHECK(p3_gguf_string_eq(s, "phi3"));

	kv = p3_gguf_find_kv(g, "t.u8");
	CHECK(kv && kv->value.type == P3_GGUF_UINT8 && kv->value.v.u64 == 200);
	kv = p3_gguf_find_kv(g, "t.i8");
	CHECK(kv && kv->value.type == P3_GGUF_INT8 && kv->value.v.i64 == -100);
	kv = p3_gguf_find_kv(g, "t.u16");
	CHECK(kv && kv->value.type == P3_GGUF_UINT16 && kv->value.v.u64 == 60000);
	kv = p3_gguf_find_kv(g, "t.i16");
	CHECK(kv && kv->value.type == P3_GGUF_INT16 && kv->value.v.i64 == -30000);
	kv = p3_gguf_find_kv(g, "t.u32");
	CHECK(kv && kv->value.type == P3_GGUF_UINT32 && kv->value.v.u64 == 4000000000u);
	kv = p3_gguf_find_kv(g, "t.i32");
	CHECK(kv && kv->value.type == P3_GGUF_INT32 && kv->value.v.i64 == -2000000000);
	kv = p3_gguf_find_kv(g, "t.f32");
	CHECK(kv && kv->value.type == P3_GGUF_FLOAT32 && kv->value.v.f64 == 1.5);
	kv = p3_gguf_find_kv(g, "t.u64");
	CHECK(kv && kv->value.type == P3_GGUF_UINT64 && kv->value.v.u64 == UINT64_C(9223372036854775813));
	kv = p3_gguf_find_kv(g, "t.i64");
	CHECK(kv && kv->value.type == P3_GGUF_INT64 && kv->value.v.i64 == -INT64_C(4611686018427387907));
	kv = p3_gguf_find_kv(g, "t.f64");
	CHECK(kv && kv->value.type == P3_GGUF_FLOAT64 && kv->value.v.f64 == 3.141592653589793);

	CHECK_STATUS(p3_gguf_get_u32(g, "t.u32", &u32, &e), P3_OK);
	CHECK_EQ_INT(u32, 4000000000u);
	CHECK_STATUS(p3_gguf_get_u32(g, "t.u8", &u32, &e), P3_OK);
	CHECK_EQ_INT(u32, 200);
	CHECK_STATUS(p3_gguf_get_i64(g, "t.i32", &i64, &e), P3_OK);
	CHECK_EQ_INT(i64, -2000000000);
	CHECK_STATUS(p3_gguf_get_i64(g, "t.i8", &i64, &e), P3_OK);
	CHECK_EQ_INT(i64, -100);
	CHECK_STATUS(p3_gguf_get_i64(g, "t.u16", &i64, &e), P3_OK);
	CHECK_EQ_INT(i64, 60000);
	CHECK_STATUS(p3_gguf_get_f32(g, "t.f32", &f32, &e), P3_OK);
	CHECK(f32 == 1.5f);
	CHECK_STATUS(p3_gguf_get_f32(g, "t.f64", &f32, &e), P3_OK);
	CHECK(f32 == (float) 3.141592653589793);
	CHECK_STATUS(p3_gguf_get_bool(g, "t.bool", &b, &e), P3_OK);
	CHECK(b == true);
	CHECK_STATUS(p3_gguf_get_bool(g, "t.bool_false", &b, &e), P3_OK);
	CHECK(b == false);
	CHECK_STATUS(p3_gguf_get_string(g, "t.str", &s, &e), P3_OK);
	CHECK(p3_gguf_string_eq(s, "h\xc3\xa9llo"));
	CHECK_STATUS(p3_gguf_get_string(g, "t.empty_str", &s, &e), P3_OK);
	CHECK_EQ_INT(s.len, 0);

	CHECK_STATUS(p3_gguf_get_array(g, "t.arr_u32", P3_GGUF_UINT32, &arr, &e), P3_OK);
	CHECK_EQ_INT(arr->v.arr.count, 4);
	CHECK_EQ_INT(arr->v.arr.nbytes, 16);
	for (int i = 0; i < 4; i++)
	{
		CHECK_EQ_INT(p3_gguf_array_i64(arr, i), ref_arr_u32[i]);
		CHECK(p3_gguf_array_f64(arr, i) == (double) ref_arr_u32[i]);
	}
	CHECK_STATUS(p3_gguf_get_array(g, "t.arr_f32", P3_GGUF_FLOAT32, &arr, &e), P3_OK);
	CHECK_EQ_INT(arr->v.arr.count, 5);
	for (int i = 0; i < 5; i++)
		CHECK(p3_gguf_array_f64(arr, i) == (double) ref_arr_f32[i]);
	CHECK_EQ_INT(p3_gguf_array_i64(arr, 1), -1);	/* truncation toward zero */
	CHECK_STATUS(p3_gguf_get_array(g, "t.arr_i8", P3_GGUF_INT8, &arr, &e), P3_OK);
	for (int i = 0; i < 3; i++)
		CHECK_EQ_INT(p3_gguf_array_i64(arr, i), ref_arr_i8[i]);
	CHECK_STATUS(p3_gguf_get_array(g, "t.arr_bool", P3_GGUF_BOOL, &arr, &e), P3_OK);
	for (int i = 0; i < 4; i++)
		CHECK_EQ_INT(p3_gguf_array_i64(arr, i), ref_arr_bool[i]);
	CHECK_STATUS(p3_gguf_get_array(g, "t.arr_f64", P3_GGUF_FLOAT64, &arr, &e), P3_OK);
	CHECK(p3_gguf_array_f64(arr, 0) == 1e300 && p3_gguf_array_f64(arr, 1) == -2.5);
	CHECK_STATUS(p3_gguf_get_array(g, "t.arr_empty", P3_GGUF_UINT32, &arr, &e), P3_OK);
	CHECK_EQ_INT(arr->v.arr.count, 0);
	CHECK_EQ_INT(arr->v.arr.nbytes, 0);
	CHECK_STATUS(p3_gguf_get_array(g, "t.arr_str_empty", P3_GGUF_STRING, &arr, &e), P3_OK);
	CHECK_EQ_INT(arr->v.arr.count, 0);

	CHECK_STATUS(p3_gguf_get_array(g, "t.arr_str", P3_GGUF_STRING, &arr, &e), P3_OK);
	CHECK_EQ_INT(arr->v.arr.count, 4);
	{
		const uint8_t *cur = arr->v.arr.data;

		for (int i = 0; i < 4; i++)
		{
			P3GGUFString str = p3_gguf_next_string(&cur);

			CHECK_EQ_INT(str.len, ref_str_lens[i]);
			CHECK(memcmp(str.ptr, ref_strs[i], ref_str_lens[i]) == 0);
		}
		CHECK(cur == arr->v.arr.data + arr->v.arr.nbytes);
	}
	CHECK_STATUS(p3_gguf_get_array(g, "t.arr_str_nul", P3_GGUF_STRING, &arr, &e), P3_OK);
	{
		const uint8_t *cur = arr->v.arr.data;

		for (int i = 0; i < 3; i++)
			CHECK(p3_gguf_string_eq(p3_gguf_next_string(&cur), ref_strs[i]));
	}

	/* tensors: insertion order, ggml layout, exact bytes */
	CHECK_EQ_INT(g->n_tensors, N_REF_TENSORS);
	for (int i = 0; i < N_REF_TENSORS && (uint64_t) i < g->n_tensors; i++)
	{
		const TensorSpec *spec = &ref_tensors[i];
		const P3GGUFTensor *t = &g->tensors[i];
		size_t		n = ref_tensor_nbytes(i);
		uint8_t    *expect = malloc(n);

		CHECK(strcmp(t->name, spec->name) == 0);
		CHECK(p3_gguf_find_tensor(g, spec->name) == t);
		CHECK_EQ_INT(t->n_dims, spec->n_dims);
		for (int d = 0; d < 4; d++)
			CHECK_EQ_INT(t->ne[d], spec->ne[d]);
		CHECK_EQ_INT(t->type, spec->type);
		CHECK_EQ_INT(t->nbytes, n);
		CHECK_EQ_INT(t->offset, expect_offset);
		CHECK(t->offset % alignment == 0);
		CHECK(t->data == g->base + g->data_offset + t->offset);
		CHECK(((uintptr_t) t->data - (uintptr_t) g->base) % alignment == 0);
		ref_tensor_bytes(i, expect, n);
		CHECK(memcmp(t->data, expect, n) == 0);
		free(expect);
		expect_offset += (n + alignment - 1) / alignment * alignment;
	}
	CHECK_EQ_INT(g->size, g->data_offset + expect_offset);
	CHECK(p3_gguf_find_tensor(g, "missing") == NULL);
	CHECK(p3_gguf_find_kv(g, "missing") == NULL);
}

static void
test_round_trip_buffer(void)
{
	uint32_t	alignments[] = {0, 64, 1, 4096};

	for (int a = 0; a < 4; a++)
	{
		P3GGUFWriter *w = make_ref_writer(alignments[a]);
		uint8_t    *buf = NULL;
		uint8_t    *buf2 = NULL;
		size_t		size = 0;
		size_t		size2 = 0;
		P3GGUF	   *g = NULL;
		P3Error		e = {0};
		uint32_t	align = alignments[a] ? alignments[a] : P3_GGUF_DEFAULT_ALIGNMENT;

		fill_calls = 0;
		CHECK_STATUS(p3_gguf_writer_to_buffer(w, &buf, &size, &e), P3_OK);
		CHECK_EQ_INT(fill_calls, 1);
		/* a second serialisation is byte-identical (fill is called again) */
		CHECK_STATUS(p3_gguf_writer_to_buffer(w, &buf2, &size2, &e), P3_OK);
		CHECK_EQ_INT(fill_calls, 2);
		CHECK(size == size2 && memcmp(buf, buf2, size) == 0);
		free(buf2);

		CHECK_STATUS(p3_gguf_parse(buf, size, &g, &e), P3_OK);
		if (g)
		{
			CHECK(!g->mapped && g->path == NULL);
			check_ref_image(g, align);
			if (alignments[a])
			{
				uint32_t	v = 0;

				CHECK_STATUS(p3_gguf_get_u32(g, "general.alignment", &v, &e), P3_OK);
				CHECK_EQ_INT(v, align);
			}
		}

		/* copy_kv of everything reproduces every entry, type and bytes */
		if (g)
		{
			P3GGUFWriter *w2 = NULL;
			uint8_t    *buf3 = NULL;
			size_t		size3 = 0;
			P3GGUF	   *g3 = NULL;

			CHECK_STATUS(p3_gguf_writer_new(&w2, &e), P3_OK);
			CHECK_STATUS(p3_gguf_writer_copy_kv(w2, g, "", &e), P3_OK);
			CHECK_STATUS(p3_gguf_writer_to_buffer(w2, &buf3, &size3, &e), P3_OK);
			CHECK_STATUS(p3_gguf_parse(buf3, size3, &g3, &e), P3_OK);
			if (g3)
			{
				CHECK_EQ_INT(g3->n_kv, g->n_kv);
				CHECK_EQ_INT(g3->n_tensors, 0);
				CHECK_EQ_INT(g3->alignment, align);
				for (uint64_t i = 0; i < g->n_kv && i < g3->n_kv; i++)
				{
					const P3GGUFValue *x = &g->kv[i].value;
					const P3GGUFValue *y = &g3->kv[i].value;

					CHECK(g3->kv[i].key.len == g->kv[i].key.len &&
						  memcmp(g3->kv[i].key.ptr, g->kv[i].key.ptr, g->kv[i].key.len) == 0);
					CHECK_EQ_INT(y->type, x->type);
					if (x->type == P3_GGUF_ARRAY)
						CHECK(y->v.arr.elem_type == x->v.arr.elem_type &&
							  y->v.arr.count == x->v.arr.count &&
							  y->v.arr.nbytes == x->v.arr.nbytes &&
							  memcmp(y->v.arr.data, x->v.arr.data, x->v.arr.nbytes) == 0);
					else if (x->type == P3_GGUF_STRING)
						CHECK(y->v.str.len == x->v.str.len &&
							  memcmp(y->v.str.ptr, x->v.str.ptr, x->v.str.len) == 0);
					else
						CHECK(memcmp(&y->v, &x->v, sizeof(x->v.u64)) == 0);
				}
			}
			/* a prefix selects: "t.arr_" has 9 entries */
			p3_gguf_close(g3);
			free(buf3);
			p3_gguf_writer_free(w2);
			w2 = NULL;
			g3 = NULL;
			CHECK_STATUS(p3_gguf_writer_new(&w2, &e), P3_OK);
			CHECK_STATUS(p3_gguf_writer_copy_kv(w2, g, "t.arr_", &e), P3_OK);
			CHECK_STATUS(p3_gguf_writer_to_buffer(w2, &buf3, &size3, &e), P3_OK);
			CHECK_STATUS(p3_gguf_parse(buf3, size3, &g3, &e), P3_OK);
			if (g3)
				CHECK_EQ_INT(g3->n_kv, 9);
			p3_gguf_close(g3);
			free(buf3);
			p3_gguf_writer_free(w2);
		}
		p3_gguf_close(g);
		free(buf);
		p3_gguf_writer_free(w);
	}
}

static char tmpdir[64];

static void
make_tmpdir(void)
{
	strcpy(tmpdir, "/tmp/test_gguf_XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
	{
		perror("mkdtemp");
		exit(2);
	}
}

static void
test_round_trip_file(void)
{
	P3GGUFWriter *w = make_ref_writer(0);
	char		path[128];
	char		tmp[160];
	uint8_t    *buf = NULL;
	size_t		size = 0;
	P3GGUF	   *g = NULL;
	P3Error		e = {0};
	struct stat sb;

	snprintf(path, sizeof(path), "%s/ref.gguf", tmpdir);
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	CHECK_STATUS(p3_gguf_writer_write_file(w, path, &e), P3_OK);
	CHECK(access(tmp, F_OK) != 0);	/* renamed away */
	CHECK_STATUS(p3_gguf_writer_to_buffer(w, &buf, &size, &e), P3_OK);

	CHECK_STATUS(p3_gguf_open(path, &g, &e), P3_OK);
	if (g)
	{
		CHECK(g->mapped);
		CHECK(g->path != NULL && strcmp(g->path, path) == 0);
		CHECK(stat(path, &sb) == 0);
		CHECK(g->st_dev == sb.st_dev && g->st_ino == sb.st_ino);
		CHECK_EQ_INT(g->st_mtime_ns, (int64_t) sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec);
		CHECK_EQ_INT(g->size, size);
		CHECK(g->size == size && memcmp(g->base, buf, size) == 0);	/* file == buffer */
		check_ref_image(g, P3_GGUF_DEFAULT_ALIGNMENT);
	}
	p3_gguf_close(g);
	free(buf);

	/* a failing fill aborts the write and leaves neither file nor tmp */
	{
		P3GGUFWriter *w2 = NULL;
		char		path2[128];
		char		tmp2[160];
		int64_t		ne[1] = {32};
		P3Status	st;

		snprintf(path2, sizeof(path2), "%s/fail.gguf", tmpdir);
		snprintf(tmp2, sizeof(tmp2), "%s.tmp", path2);
		CHECK_STATUS(p3_gguf_writer_new(&w2, &e), P3_OK);
		CHECK_STATUS(p3_gguf_writer_add_tensor_deferred(w2, "x", P3_TYPE_F32, 1, ne, failing_fill, NULL, &e), P3_OK);
		st = p3_gguf_writer_write_file(w2, path2, &e);
		CHECK_STATUS(st, P3_ERR_ABORTED);
		CHECK(strstr(e.message, "refused") != NULL);
		CHECK(access(path2, F_OK) != 0);
		CHECK(access(tmp2, F_OK) != 0);
		st = p3_gguf_writer_to_buffer(w2, &buf, &size, &e);
		CHECK_STATUS(st, P3_ERR_ABORTED);
		CHECK(buf == NULL);
		/* unwritable directory: an i/o error, nothing left behind */
		CHECK_STATUS(p3_gguf_writer_write_file(w2, "/nonexistent-dir/x.gguf", &e), P3_ERR_IO);
		CHECK_EQ_INT(e.kind, P3_KIND_FILE_CREATE);
		CHECK_EQ_INT(e.sys_errno, ENOENT);
		p3_gguf_writer_free(w2);
	}
	unlink(path);
	p3_gguf_writer_free(w);
}

/* Opening things that are not GGUF files. */
static void
test_open_errors(void)
{
	P3GGUF	   *g = (P3GGUF *) (uintptr_t) 1;
	P3Error		e = {0};
	char		path[128];
	FILE	   *f;

	CHECK_STATUS(p3_gguf_open("/nonexistent/model.gguf", &g, &e), P3_ERR_IO);
	CHECK(g == NULL);
	CHECK(strstr(e.message, "could not open model file \"/nonexistent/model.gguf\"") != NULL);
	CHECK(strstr(e.message, "No such file or directory") != NULL);
	CHECK_EQ_INT(e.sys_errno, ENOENT);
	CHECK_EQ_INT(e.kind, P3_KIND_FILE_OPEN);

	/* not a regular file: an open failure too (the glue reports both alike) */
	CHECK_STATUS(p3_gguf_open(tmpdir, &g, &e), P3_ERR_IO);
	CHECK(strstr(e.message, tmpdir) != NULL);
	CHECK_EQ_INT(e.sys_errno, EISDIR);
	CHECK_EQ_INT(e.kind, P3_KIND_FILE_OPEN);

	/* the next error into the same P3Error has no kind and no errno left over */
	snprintf(path, sizeof(path), "%s/empty.gguf", tmpdir);
	f = fopen(path, "wb");
	fclose(f);
	CHECK_STATUS(p3_gguf_open(path, &g, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, path) != NULL && strstr(e.message, "empty") != NULL);
	CHECK_EQ_INT(e.kind, P3_KIND_NONE);
	CHECK_EQ_INT(e.sys_errno, 0);
	unlink(path);

	/* p3_error_clear resets every field */
	CHECK_STATUS(p3_gguf_open("/nonexistent/model.gguf", &g, &e), P3_ERR_IO);
	p3_error_clear(&e);
	CHECK_EQ_INT(e.status, P3_OK);
	CHECK_EQ_INT(e.kind, P3_KIND_NONE);
	CHECK_EQ_INT(e.sys_errno, 0);
	CHECK(e.message[0] == '\0');

	snprintf(path, sizeof(path), "%s/text.gguf", tmpdir);
	f = fopen(path, "wb");
	fputs("hello world, this is not a model\n", f);
	fclose(f);
	CHECK_STATUS(p3_gguf_open(path, &g, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, path) != NULL);
	CHECK(strstr(e.message, "is not a GGUF file (magic 0x6c6c6568; expected \"GGUF\")") != NULL);
	unlink(path);

	/* a FIFO must be refused, not block */
	snprintf(path, sizeof(path), "%s/fifo.gguf", tmpdir);
	if (mkfifo(path, 0600) == 0)
	{
		CHECK_STATUS(p3_gguf_open(path, &g, &e), P3_ERR_IO);
		CHECK(strstr(e.message, "not a regular file") != NULL);
		CHECK_EQ_INT(e.kind, P3_KIND_FILE_OPEN);
		unlink(path);
	}

	CHECK_STATUS(p3_gguf_open(NULL, &g, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_parse(NULL, 0, &g, &e), P3_ERR_FORMAT);
	p3_gguf_close(NULL);
}

/* Getters: absent keys leave err alone, wrong types name the key and type. */
static void
test_getters(void)
{
	P3GGUFWriter *w = NULL;
	uint8_t    *buf = NULL;
	size_t		size = 0;
	P3GGUF	   *g = NULL;
	P3Error		e = {0};
	P3GGUFValue v = {0};
	uint32_t	u32 = 7;
	int64_t		i64 = 7;
	float		f32 = 7;
	bool		b = false;
	P3GGUFString s;
	const P3GGUFValue *arr = NULL;
	static const int32_t ints[] = {1, -2};

	CHECK_STATUS(p3_gguf_writer_new(&w, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_string(w, "k.str", "x", &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_i32(w, "k.neg", -1, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_u64(w, "k.big", UINT64_C(1) << 40, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_u64(w, "k.huge", UINT64_MAX, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_u64(w, "k.small64", 12345, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_bool(w, "k.bool", true, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_array(w, "k.ints", P3_GGUF_INT32, ints, 2, &e), P3_OK);
	v.type = P3_GGUF_FLOAT64;
	v.v.f64 = 1e300;
	CHECK_STATUS(p3_gguf_writer_add_value(w, "k.f64big", &v, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_to_buffer(w, &buf, &size, &e), P3_OK);
	CHECK_STATUS(p3_gguf_parse(buf, size, &g, &e), P3_OK);
	if (g == NULL)
		goto out;

	/* absent: P3_ERR_INVALID_ARG and err untouched */
	strcpy(e.message, "sentinel");
	e.status = P3_ERR_INTERNAL;
	CHECK_STATUS(p3_gguf_get_u32(g, "nope", &u32, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_get_i64(g, "nope", &i64, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_get_f32(g, "nope", &f32, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_get_bool(g, "nope", &b, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_get_string(g, "nope", &s, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_get_array(g, "nope", P3_GGUF_INT32, &arr, &e), P3_ERR_INVALID_ARG);
	CHECK(strcmp(e.message, "sentinel") == 0 && e.status == P3_ERR_INTERNAL);
	CHECK(u32 == 7 && i64 == 7 && f32 == 7);

	/* integer widths convert when the value fits */
	CHECK_STATUS(p3_gguf_get_u32(g, "k.small64", &u32, &e), P3_OK);
	CHECK_EQ_INT(u32, 12345);
	CHECK_STATUS(p3_gguf_get_i64(g, "k.big", &i64, &e), P3_OK);
	CHECK_EQ_INT(i64, INT64_C(1) << 40);
	CHECK_STATUS(p3_gguf_get_i64(g, "k.neg", &i64, &e), P3_OK);
	CHECK_EQ_INT(i64, -1);

	/* does not fit */
	CHECK_STATUS(p3_gguf_get_u32(g, "k.big", &u32, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, "\"k.big\"") != NULL && strstr(e.message, "1099511627776") != NULL);
	CHECK_STATUS(p3_gguf_get_u32(g, "k.neg", &u32, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, "\"k.neg\"") != NULL && strstr(e.message, "-1") != NULL);
	CHECK_STATUS(p3_gguf_get_i64(g, "k.huge", &i64, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, "\"k.huge\"") != NULL);
	CHECK_STATUS(p3_gguf_get_f32(g, "k.f64big", &f32, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, "\"k.f64big\"") != NULL);

	/* wrong types name the key and the type found */
	CHECK_STATUS(p3_gguf_get_u32(g, "k.str", &u32, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, "\"k.str\"") != NULL && strstr(e.message, "string") != NULL);
	CHECK_STATUS(p3_gguf_get_u32(g, "k.bool", &u32, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, "bool") != NULL);
	CHECK_STATUS(p3_gguf_get_f32(g, "k.neg", &f32, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, "\"k.neg\"") != NULL && strstr(e.message, "int32") != NULL);
	CHECK_STATUS(p3_gguf_get_bool(g, "k.neg", &b, &e), P3_ERR_FORMAT);
	CHECK_STATUS(p3_gguf_get_string(g, "k.bool", &s, &e), P3_ERR_FORMAT);
	CHECK_STATUS(p3_gguf_get_array(g, "k.ints", P3_GGUF_FLOAT32, &arr, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, "array of int32") != NULL && strstr(e.message, "array of float32") != NULL);
	CHECK_STATUS(p3_gguf_get_array(g, "k.str", P3_GGUF_STRING, &arr, &e), P3_ERR_FORMAT);
	CHECK_STATUS(p3_gguf_get_array(g, "k.ints", P3_GGUF_INT32, &arr, &e), P3_OK);
	CHECK_EQ_INT(p3_gguf_array_i64(arr, 1), -2);
	CHECK(p3_gguf_array_f64(arr, 1) == -2.0);

	CHECK(strcmp(p3_gguf_type_name(P3_GGUF_UINT32), "uint32") == 0);
	CHECK(strcmp(p3_gguf_type_name(P3_GGUF_ARRAY), "array") == 0);
	CHECK(strcmp(p3_gguf_type_name(13), "invalid") == 0);
	CHECK(strcmp(p3_gguf_type_name(0xFFFFFFFFu), "invalid") == 0);
out:
	p3_gguf_close(g);
	free(buf);
	p3_gguf_writer_free(w);
}

/* Misuse of the writer is refused with P3_ERR_INVALID_ARG. */
static void
test_writer_misuse(void)
{
	P3GGUFWriter *w = NULL;
	P3Error		e = {0};
	int64_t		ne[5] = {32, 2, 1, 1, 1};
	int64_t		bad[2] = {48, 1};
	int64_t		zero[2] = {32, 0};
	uint8_t		data[4096] = {0};
	char		longname[80];
	P3GGUFValue v = {0};
	uint8_t		badbool[2] = {0, 2};

	CHECK_STATUS(p3_gguf_writer_new(&w, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_u32(w, "a", 1, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_u32(w, "a", 2, &e), P3_ERR_INVALID_ARG);
	CHECK(strstr(e.message, "duplicate metadata key \"a\"") != NULL);
	CHECK_STATUS(p3_gguf_writer_add_string(w, "", "x", &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_set_alignment(w, 48, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_set_alignment(w, 0, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_add_u64(w, "general.alignment", 64, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_add_array(w, "arr", P3_GGUF_STRING, data, 1, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_add_array(w, "arr", P3_GGUF_BOOL, badbool, 2, &e), P3_ERR_INVALID_ARG);
	v.type = P3_GGUF_UINT8;
	v.v.u64 = 256;
	CHECK_STATUS(p3_gguf_writer_add_value(w, "u8", &v, &e), P3_ERR_INVALID_ARG);
	v.type = P3_GGUF_INT16;
	v.v.i64 = -32769;
	CHECK_STATUS(p3_gguf_writer_add_value(w, "i16", &v, &e), P3_ERR_INVALID_ARG);
	v.type = 13;
	CHECK_STATUS(p3_gguf_writer_add_value(w, "bad", &v, &e), P3_ERR_INVALID_ARG);

	CHECK_STATUS(p3_gguf_writer_add_tensor(w, "t", P3_TYPE_Q8_0, 2, ne, data, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, "t", P3_TYPE_Q8_0, 2, ne, data, &e), P3_ERR_INVALID_ARG);
	CHECK(strstr(e.message, "duplicate tensor name \"t\"") != NULL);
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, "u", P3_TYPE_Q8_0, 2, bad, data, &e), P3_ERR_INVALID_ARG);
	CHECK(strstr(e.message, "block size") != NULL);
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, "u", P3_TYPE_F32, 2, zero, data, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, "u", P3_TYPE_F32, 0, ne, data, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, "u", P3_TYPE_F32, 5, ne, data, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, "u", 999, 1, ne, data, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, "u", P3_TYPE_F32, 1, ne, NULL, &e), P3_ERR_INVALID_ARG);
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, "", P3_TYPE_F32, 1, ne, data, &e), P3_ERR_INVALID_ARG);
	memset(longname, 'n', 64);
	longname[64] = '\0';
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, longname, P3_TYPE_F32, 1, ne, data, &e), P3_ERR_INVALID_ARG);
	longname[63] = '\0';
	CHECK_STATUS(p3_gguf_writer_add_tensor(w, longname, P3_TYPE_F32, 1, ne, data, &e), P3_OK);
	CHECK_STATUS(p3_gguf_writer_add_tensor_deferred(w, "d", P3_TYPE_F32, 1, ne, NULL, NULL, &e), P3_ERR_INVALID_ARG);
	p3_gguf_writer_free(w);
	p3_gguf_writer_free(NULL);
}

/* The real Phi-3 vocabulary file: metadata only, 0 tensors. */
static void
test_vocab_file(void)
{
	const char *path = getenv("PHI3_VOCAB") ? getenv("PHI3_VOCAB") : DEFAULT_VOCAB;
	P3GGUF	   *g = NULL;
	P3Error		e = {0};
	P3GGUFString s;
	uint32_t	u32;
	bool		b;
	const P3GGUFValue *tokens = NULL;
	const P3GGUFValue *scores = NULL;
	const P3GGUFValue *types = NULL;

	CHECK_STATUS(p3_gguf_open(path, &g, &e), P3_OK);
	if (g == NULL)
	{
		fprintf(stderr, "cannot open %s: %s (run from the repo root or set PHI3_VOCAB)\n", path, e.message);
		return;
	}
	CHECK_EQ_INT(g->n_tensors, 0);
	CHECK_EQ_INT(g->version, 3);
	CHECK(g->data_offset <= g->size);
	CHECK_STATUS(p3_gguf_get_string(g, "general.architecture", &s, &e), P3_OK);
	CHECK(p3_gguf_string_eq(s, "phi3"));
	CHECK_STATUS(p3_gguf_get_string(g, "tokenizer.ggml.model", &s, &e), P3_OK);
	CHECK(p3_gguf_string_eq(s, "llama"));
	CHECK_STATUS(p3_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u32, &e), P3_OK);
	CHECK_EQ_INT(u32, 1);
	CHECK_STATUS(p3_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u32, &e), P3_OK);
	CHECK_EQ_INT(u32, 32000);
	CHECK_STATUS(p3_gguf_get_u32(g, "phi3.embedding_length", &u32, &e), P3_OK);
	CHECK_EQ_INT(u32, 3072);
	CHECK_STATUS(p3_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b, &e), P3_OK);
	CHECK(b);
	CHECK_STATUS(p3_gguf_get_array(g, "tokenizer.ggml.tokens", P3_GGUF_STRING, &tokens, &e), P3_OK);
	CHECK_STATUS(p3_gguf_get_array(g, "tokenizer.ggml.scores", P3_GGUF_FLOAT32, &scores, &e), P3_OK);
	CHECK_STATUS(p3_gguf_get_array(g, "tokenizer.ggml.token_type", P3_GGUF_INT32, &types, &e), P3_OK);
	if (tokens && scores && types)
	{
		const uint8_t *cur = tokens->v.arr.data;

		CHECK_EQ_INT(tokens->v.arr.count, 32064);
		CHECK_EQ_INT(scores->v.arr.count, 32064);
		CHECK_EQ_INT(types->v.arr.count, 32064);
		for (uint64_t i = 0; i < tokens->v.arr.count; i++)
		{
			P3GGUFString t = p3_gguf_next_string(&cur);

			if (i == 0)
				CHECK(p3_gguf_string_eq(t, "<unk>"));
			if (i == 1)
				CHECK(p3_gguf_string_eq(t, "<s>"));
			if (i == 13)
				CHECK(p3_gguf_string_eq(t, "<0x0A>"));
			if (i == 32007)
				CHECK(p3_gguf_string_eq(t, "<|end|>"));
		}
		CHECK(cur == tokens->v.arr.data + tokens->v.arr.nbytes);
		CHECK_EQ_INT(p3_gguf_array_i64(types, 13), 6);	/* BYTE */
		CHECK_EQ_INT(p3_gguf_array_i64(types, 1), 3);	/* CONTROL */
	}

	/* copy_kv("tokenizer.") carries the vocabulary over byte for byte */
	{
		P3GGUFWriter *w = NULL;
		uint8_t    *buf = NULL;
		size_t		size = 0;
		P3GGUF	   *g2 = NULL;
		const P3GGUFValue *tokens2 = NULL;

		CHECK_STATUS(p3_gguf_writer_new(&w, &e), P3_OK);
		CHECK_STATUS(p3_gguf_writer_copy_kv(w, g, "tokenizer.", &e), P3_OK);
		CHECK_STATUS(p3_gguf_writer_to_buffer(w, &buf, &size, &e), P3_OK);
		CHECK_STATUS(p3_gguf_parse(buf, size, &g2, &e), P3_OK);
		if (g2)
		{
			CHECK_EQ_INT(g2->n_kv, 12);
			CHECK(p3_gguf_find_kv(g2, "general.architecture") == NULL);
			CHECK_STATUS(p3_gguf_get_array(g2, "tokenizer.ggml.tokens", P3_GGUF_STRING, &tokens2, &e), P3_OK);
			if (tokens && tokens2)
				CHECK(tokens2->v.arr.nbytes == tokens->v.arr.nbytes &&
					  memcmp(tokens2->v.arr.data, tokens->v.arr.data, tokens->v.arr.nbytes) == 0);
			CHECK_STATUS(p3_gguf_get_string(g2, "tokenizer.chat_template", &s, &e), P3_OK);
		}
		p3_gguf_close(g2);
		free(buf);
		p3_gguf_writer_free(w);
	}
	p3_gguf_close(g);
}

/* ------------------------------------------------------------------------
 * Corruption
 * ------------------------------------------------------------------------ */

/* Build the reference image (default alignment) into *buf. */
static void
ref_image(uint8_t **buf, size_t *size)
{
	P3GGUFWriter *w = make_ref_writer(0);
	P3Error		e = {0};

	CHECK_STATUS(p3_gguf_writer_to_buffer(w, buf, size, &e), P3_OK);
	p3_gguf_writer_free(w);
	if (*buf == NULL)
		exit(2);
}

/*
 * Check that a successfully parsed (possibly corrupted) image only points
 * inside its buffer and that its iterators stay in bounds.
 */
static void
check_in_bounds(const P3GGUF *g, const uint8_t *buf, size_t size)
{
	const uint8_t *end = buf + size;

	CHECK(g->data_offset <= size);
	CHECK(g->alignment != 0 && (g->alignment & (g->alignment - 1)) == 0);
	for (uint64_t i = 0; i < g->n_kv; i++)
	{
		const P3GGUFKV *kv = &g->kv[i];

		CHECK((const uint8_t *) kv->key.ptr >= buf && kv->key.len > 0 &&
			  kv->key.len <= (uint64_t) (end - (const uint8_t *) kv->key.ptr));
		CHECK(kv->value.type < P3_GGUF_TYPE_COUNT);
		if (kv->value.type == P3_GGUF_STRING)
			CHECK((const uint8_t *) kv->value.v.str.ptr >= buf &&
				  kv->value.v.str.len <= (uint64_t) (end - (const uint8_t *) kv->value.v.str.ptr));
		if (kv->value.type == P3_GGUF_BOOL)
			CHECK(kv->value.v.u64 <= 1);
		if (kv->value.type == P3_GGUF_ARRAY)
		{
			const P3GGUFValue *a = &kv->value;

			CHECK(a->v.arr.elem_type < P3_GGUF_TYPE_COUNT && a->v.arr.elem_type != P3_GGUF_ARRAY);
			CHECK(a->v.arr.data >= buf && a->v.arr.nbytes <= (uint64_t) (end - a->v.arr.data));
			if (a->v.arr.elem_type == P3_GGUF_STRING)
			{
				const uint8_t *cur = a->v.arr.data;

				for (uint64_t k = 0; k < a->v.arr.count; k++)
				{
					P3GGUFString s = p3_gguf_next_string(&cur);

					if (!((const uint8_t *) s.ptr <= end && s.len <= (uint64_t) (end - (const uint8_t *) s.ptr)))
					{
						CHECK(!"string array element out of bounds");
						break;
					}
				}
				CHECK(cur == a->v.arr.data + a->v.arr.nbytes);
			}
			else if (a->v.arr.count > 0)
			{
				/* touch the last element */
				(void) p3_gguf_array_f64(a, a->v.arr.count - 1);
			}
		}
	}
	for (uint64_t i = 0; i < g->n_tensors; i++)
	{
		const P3GGUFTensor *t = &g->tensors[i];
		const uint8_t *d = t->data;
		size_t		row;

		CHECK(strlen(t->name) >= 1 && strlen(t->name) <= P3_GGUF_MAX_NAME);
		CHECK(t->n_dims >= 1 && t->n_dims <= P3_GGUF_MAX_DIMS);
		CHECK(p3_type_traits(t->type) != NULL);
		CHECK(p3_row_bytes(t->type, t->ne[0], &row));
		CHECK(d >= buf + g->data_offset && t->nbytes <= (uint64_t) (end - d));
		CHECK(t->offset % g->alignment == 0);
		CHECK(p3_gguf_find_tensor(g, t->name) == t);
	}
}

/* Every prefix that cuts the header, the infos or any tensor's data fails. */
static void
test_truncation(void)
{
	uint8_t    *buf;
	size_t		size;
	P3GGUF	   *g = NULL;
	P3Error		e = {0};
	uint64_t	data_end = 0;
	uint64_t	rng = 42;
	int			fails = 0;

	ref_image(&buf, &size);
	CHECK_STATUS(p3_gguf_parse(buf, size, &g, &e), P3_OK);
	if (g == NULL)
		return;
	for (uint64_t i = 0; i < g->n_tensors; i++)
		if (g->tensors[i].offset + g->tensors[i].nbytes > data_end)
			data_end = g->tensors[i].offset + g->tensors[i].nbytes;
	data_end += g->data_offset;

	/* every byte offset through the end of the header and the first data bytes */
	for (size_t len = 0; len <= g->data_offset + 64 && len < size; len++)
	{
		P3Status	st = parse_exact(buf, len, &e);

		CHECK_MSG(st == P3_ERR_FORMAT, "prefix of %zu bytes: status %d", len, (int) st);
		fails += st != P3_OK;
	}
	/* a few hundred random cuts inside the data */
	for (int k = 0; k < 300; k++)
	{
		size_t		len = g->data_offset + harness_rand(&rng) % (data_end - g->data_offset);
		P3Status	st = parse_exact(buf, len, &e);

		CHECK_MSG(st == P3_ERR_FORMAT, "prefix of %zu bytes: status %d", len, (int) st);
	}
	/* the message names the tensor that no longer fits */
	CHECK_STATUS(parse_exact(buf, data_end - 1, &e), P3_ERR_FORMAT);
	CHECK(strstr(e.message, "extends past end of file") != NULL);
	CHECK(strstr(e.message, "\"g.q6_K.deferred\"") != NULL);
	CHECK_STATUS(parse_exact(buf, 100, &e), P3_ERR_FORMAT);
	CHECK_MSG(strstr(e.message, "metadata count 24 does not fit in the file (100 bytes)") != NULL, "%s", e.message);
	CHECK_STATUS(parse_exact(buf, g->data_offset - 1, &e), P3_ERR_FORMAT);
	CHECK_MSG(strstr(e.message, "truncated") != NULL, "%s", e.message);

	/* cutting only the final padding is harmless */
	CHECK_STATUS(parse_exact(buf, data_end, &e), P3_OK);
	CHECK(fails > 0);
	p3_gguf_close(g);
	free(buf);
}

/* Thousands of random byte flips never crash and never yield out-of-bounds views. */
static void
test_random_flips(void)
{
	uint8_t    *buf;
	size_t		size;
	uint8_t    *copy;
	P3GGUF	   *g0 = NULL;
	P3Error		e = {0};
	uint64_t	rng = 1234;
	int			n_ok = 0;
	int			n_err = 0;

	ref_image(&buf, &size);
	CHECK_STATUS(p3_gguf_parse(buf, size, &g0, &e), P3_OK);
	if (g0 == NULL)
		return;
	copy = malloc(size);
	for (int iter = 0; iter < 10000; iter++)
	{
		int			nflips = 1 + (int) (harness_rand(&rng) % 4);
		P3GGUF	   *g = NULL;
		P3Status	st;

		memcpy(copy, buf, size);
		for (int f = 0; f < nflips; f++)
		{
			/* three flips in four land in the header, where they matter */
			size_t		pos = (harness_rand(&rng) % 4 != 0)
				? harness_rand(&rng) % g0->data_offset
				: harness_rand(&rng) % size;
			uint64_t	r = harness_rand(&rng);

			switch (r % 3)
			{
				case 0:
					copy[pos] ^= (uint8_t) (1u << ((r >> 8) % 8));
					break;
				case 1:
					copy[pos] = (uint8_t) (r >> 8);
					break;
				default:
					copy[pos] = (r >> 8) & 1 ? 0xFF : 0x00;
					break;
			}
		}
		st = p3_gguf_parse(copy, size, &g, &e);
		if (st == P3_OK)
		{
			n_ok++;
			check_in_bounds(g, copy, size);
			p3_gguf_close(g);
		}
		else
		{
			n_err++;
			CHECK(g == NULL);
			CHECK_MSG(st == P3_ERR_FORMAT || st == P3_ERR_UNSUPPORTED, "status %d: %s", (int) st, e.message);
			CHECK(e.message[0] != '\0');
		}
	}
	/* both outcomes must occur, or the flips are not exercising anything */
	CHECK(n_ok > 100);
	CHECK(n_err > 1000);
	free(copy);
	p3_gguf_close(g0);
	free(buf);
}

/* A valid one-tensor image: one metadata key and tensor "w" [dims] of type at offset. */
static void
one_tensor_image(Img *b, uint32_t n_dims, const uint64_t *dims, uint32_t type, uint64_t offset, size_t data_bytes)
{
	b->len = 0;
	img_header(b, 3, 1, 1);
	img_key(b, "general.architecture", P3_GGUF_STRING);
	img_str(b, "phi3");
	img_tensor(b, "w", n_dims, dims, type, offset);
	img_data(b, 32, data_bytes);
}

/* Hand-crafted hostile headers. */
static void
test_crafted_header(void)
{
	Img			b = {0};
	static const uint64_t huge[] = {
		UINT64_C(1) << 32, UINT64_C(1) << 62, UINT64_C(1) << 63, UINT64_MAX, UINT64_MAX / 14
	};

	/* positive control for the builder */
	img_header(&b, 3, 0, 1);
	img_key(&b, "k", P3_GGUF_UINT32);
	img_u32(&b, 5);
	EXPECT_OK(&b);

	/* magic and version */
	b.len = 0;
	img_u32(&b, 0x46554748);
	img_u32(&b, 3);
	img_u64(&b, 0);
	img_u64(&b, 0);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "magic 0x46554748");
	for (uint32_t v = 0; v < 6; v++)
	{
		b.len = 0;
		img_header(&b, v, 0, 0);
		if (v == 2 || v == 3)
			EXPECT_OK(&b);
		else
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "version");
	}
	b.len = 0;
	img_header(&b, 0x03000000, 0, 0);	/* big-endian v3 */
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "version");

	/* huge counts */
	for (int i = 0; i < 5; i++)
	{
		b.len = 0;
		img_header(&b, 3, 0, huge[i]);
		img_key(&b, "k", P3_GGUF_UINT32);
		img_u32(&b, 5);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "metadata count");
		b.len = 0;
		img_header(&b, 3, huge[i], 1);
		img_key(&b, "k", P3_GGUF_UINT32);
		img_u32(&b, 5);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "tensor count");
	}
	/* a count that fits the size bound but not the content */
	b.len = 0;
	img_header(&b, 3, 0, 3);
	img_key(&b, "k", P3_GGUF_UINT32);
	img_u32(&b, 5);
	img_data(&b, 1, 64);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, NULL);

	/* key lengths */
	{
		uint64_t	lens[] = {0, 65536, UINT64_MAX, UINT64_C(1) << 63, 1000};

		for (int i = 0; i < 5; i++)
		{
			b.len = 0;
			img_header(&b, 3, 0, 1);
			img_u64(&b, lens[i]);
			img_bytes(&b, "keykeykey", 9);
			img_u32(&b, P3_GGUF_UINT8);
			img_u8(&b, 0);
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "metadata key 0");
		}
	}

	/* value lengths, types, arrays */
	{
		uint64_t	lens[] = {UINT64_MAX, UINT64_C(1) << 63, 100};

		for (int i = 0; i < 3; i++)
		{
			b.len = 0;
			img_header(&b, 3, 0, 1);
			img_key(&b, "s", P3_GGUF_STRING);
			img_u64(&b, lens[i]);
			img_bytes(&b, "abcdefgh", 8);
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "\"s\"");
		}
	}
	{
		uint32_t	types[] = {13, 0xFFFFFFFFu, 0x80000000u};

		for (int i = 0; i < 3; i++)
		{
			b.len = 0;
			img_header(&b, 3, 0, 1);
			img_key(&b, "badtype", types[i]);
			img_u64(&b, 0);
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "\"badtype\" has invalid value type");
		}
	}
	{
		uint64_t	counts[] = {UINT64_C(1) << 62, UINT64_MAX, UINT64_MAX / 4 + 1, 1000};

		for (int i = 0; i < 4; i++)
		{
			b.len = 0;
			img_header(&b, 3, 0, 1);
			img_key(&b, "nums", P3_GGUF_ARRAY);
			img_u32(&b, P3_GGUF_UINT32);
			img_u64(&b, counts[i]);
			img_u64(&b, 0);
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "does not fit in the file");
		}
	}
	b.len = 0;
	img_header(&b, 3, 0, 1);
	img_key(&b, "tokenizer.ggml.tokens", P3_GGUF_ARRAY);
	img_u32(&b, P3_GGUF_STRING);
	img_u64(&b, 4000000000u);
	img_str(&b, "a");
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "metadata key \"tokenizer.ggml.tokens\": array of 4000000000 strings does not fit in the file");
	/* a string inside an array that runs past the end */
	b.len = 0;
	img_header(&b, 3, 0, 1);
	img_key(&b, "strs", P3_GGUF_ARRAY);
	img_u32(&b, P3_GGUF_STRING);
	img_u64(&b, 3);
	img_str(&b, "a");
	img_str(&b, "b");
	img_u64(&b, 1000);
	img_bytes(&b, "cc", 2);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "string 2 of 3");
	/* arrays of arrays and bad element types */
	{
		uint32_t	ets[] = {P3_GGUF_ARRAY, 13, 0xFFFFFFFFu};

		for (int i = 0; i < 3; i++)
		{
			b.len = 0;
			img_header(&b, 3, 0, 1);
			img_key(&b, "nested", P3_GGUF_ARRAY);
			img_u32(&b, ets[i]);
			img_u64(&b, 1);
			img_u32(&b, P3_GGUF_UINT8);
			img_u64(&b, 1);
			img_u8(&b, 1);
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "\"nested\"");
		}
	}
	/* booleans must be 0 or 1 */
	for (int v = 0; v < 4; v++)
	{
		b.len = 0;
		img_header(&b, 3, 0, 1);
		img_key(&b, "flag", P3_GGUF_BOOL);
		img_u8(&b, (uint8_t) (v == 3 ? 255 : v));
		if (v <= 1)
			EXPECT_OK(&b);
		else
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "\"flag\"");
	}
	b.len = 0;
	img_header(&b, 3, 0, 1);
	img_key(&b, "flags", P3_GGUF_ARRAY);
	img_u32(&b, P3_GGUF_BOOL);
	img_u64(&b, 3);
	img_u8(&b, 1);
	img_u8(&b, 0);
	img_u8(&b, 2);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "bool element 2");
	/* truncated scalar */
	b.len = 0;
	img_header(&b, 3, 0, 1);
	img_key(&b, "x64", P3_GGUF_UINT64);
	img_u32(&b, 1);
	img_u32(&b, 1);
	img_u32(&b, 1);
	b.len -= 5;
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "\"x64\"");

	/* duplicate keys, also among many (sorted detection) */
	b.len = 0;
	img_header(&b, 3, 0, 2);
	img_key(&b, "dup.key", P3_GGUF_UINT8);
	img_u8(&b, 1);
	img_key(&b, "dup.key", P3_GGUF_UINT16);
	img_u32(&b, 2);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "duplicate metadata key \"dup.key\"");
	/* keys that share a prefix are different */
	b.len = 0;
	img_header(&b, 3, 0, 2);
	img_key(&b, "dup.key", P3_GGUF_UINT8);
	img_u8(&b, 1);
	img_key(&b, "dup.key2", P3_GGUF_UINT8);
	img_u8(&b, 1);
	EXPECT_OK(&b);

	free(b.p);
}

/* Alignment key checks. */
static void
test_crafted_alignment(void)
{
	Img			b = {0};
	uint32_t	values[] = {32, 64, 1, 48, 0, 3, 0x80000001u};

	for (int i = 0; i < 7; i++)
	{
		b.len = 0;
		img_header(&b, 3, 0, 1);
		img_key(&b, "general.alignment", P3_GGUF_UINT32);
		img_u32(&b, values[i]);
		if (i < 3)
			EXPECT_OK(&b);
		else
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "general.alignment");
	}
	b.len = 0;
	img_header(&b, 3, 0, 1);
	img_key(&b, "general.alignment", P3_GGUF_UINT64);
	img_u64(&b, 32);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "expected uint32");
	b.len = 0;
	img_header(&b, 3, 0, 1);
	img_key(&b, "general.alignment", P3_GGUF_INT32);
	img_u32(&b, 32);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "expected uint32");

	/* with alignment 64, an offset of 32 is misaligned */
	{
		uint64_t	dims[1] = {8};

		b.len = 0;
		img_header(&b, 3, 1, 1);
		img_key(&b, "general.alignment", P3_GGUF_UINT32);
		img_u32(&b, 64);
		img_tensor(&b, "t", 1, dims, P3_TYPE_F32, 64);
		img_data(&b, 64, 128);
		EXPECT_OK(&b);
		b.len = 0;
		img_header(&b, 3, 1, 1);
		img_key(&b, "general.alignment", P3_GGUF_UINT32);
		img_u32(&b, 64);
		img_tensor(&b, "t", 1, dims, P3_TYPE_F32, 32);
		img_data(&b, 64, 128);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "not a multiple of the alignment 64");
	}
	free(b.p);
}

/* Tensor info checks. */
static void
test_crafted_tensors(void)
{
	Img			b = {0};
	uint64_t	d1[1] = {8};
	uint64_t	d2[2] = {32, 4};

	/* positive controls */
	one_tensor_image(&b, 1, d1, P3_TYPE_F32, 0, 32);
	EXPECT_OK(&b);
	one_tensor_image(&b, 2, d2, P3_TYPE_Q8_0, 0, 4 * 34);
	EXPECT_OK(&b);
	{
		uint64_t	d4[4] = {2, 3, 4, 5};

		one_tensor_image(&b, 4, d4, P3_TYPE_F16, 0, 240);
		EXPECT_OK(&b);
	}

	/* n_dims 0 and 5 */
	{
		uint64_t	d5[5] = {1, 1, 1, 1, 1};

		one_tensor_image(&b, 0, d5, P3_TYPE_F32, 0, 64);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "\"w\" has 0 dimensions");
		one_tensor_image(&b, 5, d5, P3_TYPE_F32, 0, 64);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "\"w\" has 5 dimensions");
		b.len = 0;
		img_header(&b, 3, 1, 0);
		img_str(&b, "w");
		img_u32(&b, 0xFFFFFFFFu);
		img_data(&b, 1, 64);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "\"w\" has 4294967295 dimensions");
	}
	/* bad dims: zero, huge, overflowing products */
	{
		uint64_t	cases[][4] = {
			{0, 1, 1, 1},
			{UINT64_C(1) << 63, 1, 1, 1},
			{UINT64_MAX, 1, 1, 1},
			{UINT64_C(1) << 32, UINT64_C(1) << 32, 1, 1},
			{UINT64_C(1) << 31, UINT64_C(1) << 31, 1, 1},	/* 2^62: at the limit */
			{UINT64_C(1) << 20, UINT64_C(1) << 20, UINT64_C(1) << 20, UINT64_C(1) << 20},
			{UINT64_C(3), UINT64_C(6148914691236517206), 1, 1},	/* product wraps 2^64 */
			{8, 1, 0, 1},
		};

		for (int i = 0; i < 8; i++)
		{
			one_tensor_image(&b, 4, cases[i], P3_TYPE_F32, 0, 64);
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "\"w\"");
		}
	}
	/* a huge element count that is still < 2^62 runs past the end of the file */
	{
		uint64_t	d[2] = {UINT64_C(1) << 30, UINT64_C(1) << 30};

		one_tensor_image(&b, 2, d, P3_TYPE_F64, 0, 64);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "tensor \"w\" extends past end of file");
	}
	/* unknown type: unsupported, naming tensor and code */
	{
		uint32_t	types[] = {999, 4, 31, 40, 0xFFFFFFFFu};

		for (int i = 0; i < 5; i++)
		{
			char		needle[64];

			one_tensor_image(&b, 1, d1, types[i], 0, 64);
			snprintf(needle, sizeof(needle), "tensor \"w\" has unknown type %u", types[i]);
			EXPECT_FAIL_KIND(&b, P3_ERR_UNSUPPORTED, P3_KIND_TENSOR_TYPE, needle);
		}
	}
	/* ne0 not a multiple of the block size */
	{
		uint64_t	d[2] = {48, 2};

		one_tensor_image(&b, 2, d, P3_TYPE_Q4_0, 0, 256);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "block size 32");
		d[0] = 128;
		one_tensor_image(&b, 2, d, P3_TYPE_Q4_K, 0, 512);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "q4_K block size 256");
	}
	/* misaligned offset */
	one_tensor_image(&b, 1, d1, P3_TYPE_F32, 16, 64);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "offset 16 is not a multiple of the alignment 32");
	/* out of range offsets, including ones whose sum wraps */
	{
		uint64_t	offs[] = {32, UINT64_MAX - 31, UINT64_C(1) << 63};

		for (int i = 0; i < 3; i++)
		{
			one_tensor_image(&b, 1, d1, P3_TYPE_F32, offs[i], 32);
			EXPECT_FAIL(&b, P3_ERR_FORMAT, "tensor \"w\" extends past end of file");
		}
	}
	/* data section missing entirely (no padding after the infos) */
	b.len = 0;
	img_header(&b, 3, 1, 0);
	img_tensor(&b, "w", 1, d1, P3_TYPE_F32, 0);
	if (b.len % 32 == 0)
		img_u8(&b, 0);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, NULL);

	/* names: empty, 63 ok, 64 too long, embedded NUL, duplicate */
	{
		char		name[70];

		memset(name, 'x', sizeof(name));
		name[63] = '\0';
		b.len = 0;
		img_header(&b, 3, 1, 0);
		img_tensor(&b, name, 1, d1, P3_TYPE_F32, 0);
		img_data(&b, 32, 32);
		EXPECT_OK(&b);
		name[63] = 'x';
		name[64] = '\0';
		b.len = 0;
		img_header(&b, 3, 1, 0);
		img_tensor(&b, name, 1, d1, P3_TYPE_F32, 0);
		img_data(&b, 32, 32);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "name of 64 bytes");
		b.len = 0;
		img_header(&b, 3, 1, 0);
		img_tensor(&b, "", 1, d1, P3_TYPE_F32, 0);
		img_data(&b, 32, 32);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "empty name");
		b.len = 0;
		img_header(&b, 3, 1, 0);
		img_u64(&b, 3);
		img_bytes(&b, "a\0b", 3);
		img_u32(&b, 1);
		img_u64(&b, 8);
		img_u32(&b, P3_TYPE_F32);
		img_u64(&b, 0);
		img_data(&b, 32, 32);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "NUL");
		b.len = 0;
		img_header(&b, 3, 1, 0);
		img_u64(&b, UINT64_MAX);
		img_data(&b, 1, 64);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "tensor info 0");
	}

	/* two tensors: adjacent ok, overlapping rejected, duplicate names rejected */
	b.len = 0;
	img_header(&b, 3, 2, 0);
	img_tensor(&b, "output.weight", 1, d1, P3_TYPE_F32, 0);
	img_tensor(&b, "second", 1, d1, P3_TYPE_F32, 32);
	img_data(&b, 32, 64);
	EXPECT_OK(&b);
	b.len = 0;
	img_header(&b, 3, 2, 0);
	img_tensor(&b, "second", 1, d1, P3_TYPE_F32, 64);	/* any order of offsets is fine */
	img_tensor(&b, "output.weight", 1, d1, P3_TYPE_F32, 0);
	img_data(&b, 32, 96);
	EXPECT_OK(&b);
	{
		uint64_t	d16[1] = {16};

		b.len = 0;
		img_header(&b, 3, 2, 0);
		img_tensor(&b, "output.weight", 1, d16, P3_TYPE_F32, 0);
		img_tensor(&b, "second", 1, d1, P3_TYPE_F32, 32);
		img_data(&b, 32, 96);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "overlap");
		b.len = 0;
		img_header(&b, 3, 2, 0);
		img_tensor(&b, "output.weight", 1, d1, P3_TYPE_F32, 0);
		img_tensor(&b, "second", 1, d1, P3_TYPE_F32, 0);
		img_data(&b, 32, 96);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "overlap");
	}
	b.len = 0;
	img_header(&b, 3, 2, 0);
	img_tensor(&b, "output.weight", 1, d1, P3_TYPE_F32, 0);
	img_tensor(&b, "output.weight", 1, d1, P3_TYPE_F32, 32);
	img_data(&b, 32, 64);
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "duplicate tensor name \"output.weight\"");

	/* truncated in the infos: message names the index */
	b.len = 0;
	img_header(&b, 3, 13, 1);
	img_key(&b, "pad", P3_GGUF_STRING);
	img_str(&b, "padding so that the count of 13 tensor infos is plausible......");
	for (int i = 0; i < 12; i++)
	{
		char		nm[16];

		snprintf(nm, sizeof(nm), "t%d", i);
		img_tensor(&b, nm, 1, d1, P3_TYPE_F32, (uint64_t) i * 32);
	}
	{
		size_t		infos_end = b.len;

		img_tensor(&b, "t12", 1, d1, P3_TYPE_F32, 12 * 32);
		b.len = infos_end + 14;	/* cut inside tensor info 12 */
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "file is truncated in tensor info 12");
	}
	free(b.p);
}

/* Many entries: duplicate detection must not be quadratic, and must work. */
static void
test_many_entries(void)
{
	Img			b = {0};
	const int	n = 100000;
	char		key[32];

	img_header(&b, 3, 0, (uint64_t) n);
	for (int i = 0; i < n; i++)
	{
		snprintf(key, sizeof(key), "key.%d", (i * 7919) % n);
		img_key(&b, key, P3_GGUF_UINT8);
		img_u8(&b, (uint8_t) i);
	}
	EXPECT_OK(&b);
	/* make the last key a duplicate of the first */
	b.len = 0;
	img_header(&b, 3, 0, (uint64_t) n);
	for (int i = 0; i < n; i++)
	{
		snprintf(key, sizeof(key), "key.%d", i == n - 1 ? 0 : i);
		img_key(&b, key, P3_GGUF_UINT8);
		img_u8(&b, (uint8_t) i);
	}
	EXPECT_FAIL(&b, P3_ERR_FORMAT, "duplicate metadata key \"key.0\"");

	/* many tensors with a duplicate name at the end */
	{
		const int	nt = 5000;
		uint64_t	d1[1] = {8};

		b.len = 0;
		img_header(&b, 3, (uint64_t) nt, 0);
		for (int i = 0; i < nt; i++)
		{
			snprintf(key, sizeof(key), "blk.%d.w", i == nt - 1 ? 17 : i);
			img_tensor(&b, key, 1, d1, P3_TYPE_F32, (uint64_t) i * 32);
		}
		img_data(&b, 32, (size_t) nt * 32);
		EXPECT_FAIL(&b, P3_ERR_FORMAT, "duplicate tensor name \"blk.17.w\"");
	}
	free(b.p);
}

int
main(void)
{
	make_tmpdir();
	RUN(test_round_trip_buffer);
	RUN(test_round_trip_file);
	RUN(test_open_errors);
	RUN(test_getters);
	RUN(test_writer_misuse);
	RUN(test_vocab_file);
	RUN(test_truncation);
	RUN(test_random_flips);
	RUN(test_crafted_header);
	RUN(test_crafted_alignment);
	RUN(test_crafted_tensors);
	RUN(test_many_entries);
	rmdir(tmpdir);
	return harness_finish();
}
