/*
 * fuzz_gguf.c — libFuzzer harness for the GGUF reader and writer.
 *
 * Not part of the test suite.  Build and run (from the repository root):
 *
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -D_GNU_SOURCE -Iinclude \
 *         -o /tmp/fuzz_gguf test/fuzz/fuzz_gguf.c src/engine/gguf.c \
 *         src/engine/gguf_write.c src/engine/status.c src/engine/quant_types.c
 *     /tmp/fuzz_gguf -max_total_time=120 -max_len=65536 CORPUS_DIR
 *
 * Each input is parsed from an exact-size copy.  A rejected input must come
 * with a status and a message.  An accepted one must only point inside the
 * buffer; every getter and iterator is exercised on every key, every
 * tensor's first and last byte is read, and the file is rewritten with the
 * writer (copy_kv + every tensor) and parsed again: that must succeed and
 * give back the same metadata and tensor bytes.  Any violation traps.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "phi3/gguf.h"
#include "phi3/quant.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define REQUIRE(c) do { if (!(c)) __builtin_trap(); } while (0)

/* True when [p, p + n) lies inside [buf, buf + size). */
static int
inside(const void *p, uint64_t n, const uint8_t *buf, size_t size)
{
	const uint8_t *q = p;

	return q >= buf && q <= buf + size && n <= (uint64_t) (buf + size - q);
}

/* Exercise every lookup path on one key. */
static void
poke_key(const P3GGUF *g, const P3GGUFKV *kv, const uint8_t *buf, size_t size)
{
	char		key[256];
	uint32_t	u32;
	int64_t		i64;
	float		f32;
	bool		b;
	P3GGUFString s;
	const P3GGUFValue *arr;
	P3Error		err;
	volatile uint8_t sink = 0;

	REQUIRE(inside(kv->key.ptr, kv->key.len, buf, size));
	REQUIRE(kv->key.len >= 1);
	if (kv->key.len >= sizeof(key) || memchr(kv->key.ptr, '\0', kv->key.len) != NULL)
		return;
	memcpy(key, kv->key.ptr, kv->key.len);
	key[kv->key.len] = '\0';
	REQUIRE(p3_gguf_find_kv(g, key) == kv);

	(void) p3_gguf_get_u32(g, key, &u32, &err);
	(void) p3_gguf_get_i64(g, key, &i64, &err);
	(void) p3_gguf_get_f32(g, key, &f32, &err);
	(void) p3_gguf_get_bool(g, key, &b, &err);
	if (p3_gguf_get_string(g, key, &s, &err) == P3_OK)
		REQUIRE(inside(s.ptr, s.len, buf, size));
	for (uint32_t et = 0; et < P3_GGUF_TYPE_COUNT; et++)
	{
		if (p3_gguf_get_array(g, key, (P3GGUFType) et, &arr, &err) != P3_OK)
			continue;
		REQUIRE(arr == &kv->value);
		REQUIRE(inside(arr->v.arr.data, arr->v.arr.nbytes, buf, size));
		if (et == P3_GGUF_STRING)
		{
			const uint8_t *cur = arr->v.arr.data;

			for (uint64_t i = 0; i < arr->v.arr.count; i++)
			{
				P3GGUFString e = p3_gguf_next_string(&cur);

				REQUIRE(inside(e.ptr, e.len, buf, size));
				if (e.len)
					sink ^= (uint8_t) e.ptr[e.len - 1];
			}
			REQUIRE(cur == arr->v.arr.data + arr->v.arr.nbytes);
		}
		else if (arr->v.arr.count > 0)
		{
			(void) p3_gguf_array_f64(arr, 0);
			(void) p3_gguf_array_i64(arr, arr->v.arr.count - 1);
		}
	}
	(void) sink;
}

/* Rewrite g with the writer and check the copy parses to the same content. */
static void
round_trip(const P3GGUF *g)
{
	P3GGUFWriter *w = NULL;
	P3Error		err;
	uint8_t    *out = NULL;
	size_t		out_size = 0;
	P3GGUF	   *g2 = NULL;

	REQUIRE(p3_gguf_writer_new(&w, &err) == P3_OK);
	REQUIRE(p3_gguf_writer_copy_kv(w, g, "", &err) == P3_OK);
	for (uint64_t i = 0; i < g->n_tensors; i++)
	{
		const P3GGUFTensor *t = &g->tensors[i];

		REQUIRE(p3_gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, &err) == P3_OK);
	}
	REQUIRE(p3_gguf_writer_to_buffer(w, &out, &out_size, &err) == P3_OK);
	REQUIRE(p3_gguf_parse(out, out_size, &g2, &err) == P3_OK);
	REQUIRE(g2->n_kv == g->n_kv && g2->n_tensors == g->n_tensors);
	REQUIRE(g2->alignment == g->alignment);
	for (uint64_t i = 0; i < g->n_kv; i++)
	{
		const P3GGUFKV *a = &g->kv[i];
		const P3GGUFKV *b = &g2->kv[i];

		REQUIRE(a->key.len == b->key.len && memcmp(a->key.ptr, b->key.ptr, a->key.len) == 0);
		REQUIRE(a->value.type == b->value.type);
		if (a->value.type == P3_GGUF_ARRAY)
			REQUIRE(a->value.v.arr.elem_type == b->value.v.arr.elem_type &&
					a->value.v.arr.count == b->value.v.arr.count &&
					a->value.v.arr.nbytes == b->value.v.arr.nbytes &&
					memcmp(a->value.v.arr.data, b->value.v.arr.data, a->value.v.arr.nbytes) == 0);
		else if (a->value.type == P3_GGUF_STRING)
			REQUIRE(a->value.v.str.len == b->value.v.str.len &&
					memcmp(a->value.v.str.ptr, b->value.v.str.ptr, a->value.v.str.len) == 0);
		else if (a->value.type == P3_GGUF_FLOAT32 || a->value.type == P3_GGUF_FLOAT64)
			REQUIRE(memcmp(&a->value.v.f64, &b->value.v.f64, sizeof(double)) == 0 ||
					(a->value.v.f64 != a->value.v.f64 && b->value.v.f64 != b->value.v.f64));
		else
			REQUIRE(a->value.v.u64 == b->value.v.u64);
	}
	for (uint64_t i = 0; i < g->n_tensors; i++)
	{
		const P3GGUFTensor *a = &g->tensors[i];
		const P3GGUFTensor *b = &g2->tensors[i];

		REQUIRE(strcmp(a->name, b->name) == 0 && a->type == b->type && a->n_dims == b->n_dims);
		REQUIRE(memcmp(a->ne, b->ne, sizeof(a->ne)) == 0 && a->nbytes == b->nbytes);
		REQUIRE(memcmp(a->data, b->data, a->nbytes) == 0);
	}
	p3_gguf_close(g2);
	free(out);
	p3_gguf_writer_free(w);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t    *buf = malloc(size ? size : 1);
	P3GGUF	   *g = NULL;
	P3Error		err;
	P3Status	st;
	uint64_t	total = 0;

	memcpy(buf, data, size);
	memset(&err, 0, sizeof(err));
	st = p3_gguf_parse(buf, size, &g, &err);
	if (st != P3_OK)
	{
		REQUIRE(g == NULL);
		REQUIRE(err.status == st && err.message[0] != '\0');
		REQUIRE(st == P3_ERR_FORMAT || st == P3_ERR_UNSUPPORTED || st == P3_ERR_NOMEM);
		free(buf);
		return 0;
	}

	REQUIRE(g->data_offset <= size);
	REQUIRE(g->alignment && (g->alignment & (g->alignment - 1)) == 0);
	for (uint64_t i = 0; i < g->n_kv; i++)
		poke_key(g, &g->kv[i], buf, size);
	for (uint64_t i = 0; i < g->n_tensors; i++)
	{
		const P3GGUFTensor *t = &g->tensors[i];
		volatile uint8_t sink;
		size_t		row;

		REQUIRE(t->nbytes > 0 && inside(t->data, t->nbytes, buf, size));
		REQUIRE((const uint8_t *) t->data >= buf + g->data_offset);
		REQUIRE(t->offset % g->alignment == 0);
		REQUIRE(p3_row_bytes(t->type, t->ne[0], &row));
		REQUIRE(p3_gguf_find_tensor(g, t->name) == t);
		sink = ((const uint8_t *) t->data)[0];
		sink = ((const uint8_t *) t->data)[t->nbytes - 1];
		(void) sink;
		total += t->nbytes;
	}
	REQUIRE(total <= size);		/* no overlaps: the tensors cannot hold more than the file */
	round_trip(g);
	p3_gguf_close(g);
	free(buf);
	return 0;
}
