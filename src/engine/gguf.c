/*
 * gguf.c — the validating GGUF reader (see phi3/gguf.h).
 *
 * The parser walks the header, the metadata and the tensor infos once with
 * a bounds-checked cursor.  Every length, count and offset read from the
 * file is untrusted: before anything is dereferenced or allocated from it,
 * it is checked against the bytes that remain, with overflow-safe
 * arithmetic.  Counts are first checked for plausibility against the file
 * size (each metadata entry takes at least MIN_KV_BYTES, each tensor info at
 * least MIN_TENSOR_INFO_BYTES), and the arrays that hold the parsed entries
 * grow with what was actually parsed, so a lying count can neither make us
 * allocate gigabytes nor loop for long.
 *
 * After the walk, cross-entry rules are checked in O(n log n): duplicate
 * keys and tensor names (sorted pointer arrays) and overlapping tensor data
 * (tensors sorted by offset).  ggml additionally requires each tensor to
 * start exactly at the running sum of the padded sizes before it; we accept
 * any aligned, non-overlapping layout.
 *
 * Nothing from the file is copied except the tensor names (the header
 * promises NUL-terminated names); keys, strings, arrays and tensor data are
 * pointers into the mapping.
 */
#include "phi3/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "phi3/quant.h"

/* Fixed part of the header: magic, version, n_tensors, n_kv. */
#define HEADER_BYTES			24
/* Smallest metadata entry: u64 key length, 1 key byte, u32 type, 1 value byte. */
#define MIN_KV_BYTES			14
/* Smallest tensor info: u64 name length, 1 name byte, u32 n_dims, one u64 dim, u32 type, u64 offset. */
#define MIN_TENSOR_INFO_BYTES	33
#define MAX_KEY_BYTES			65535
/* Element counts must stay below 2^62 so that sizes in bytes stay representable. */
#define MAX_TENSOR_ELEMENTS		(UINT64_C(1) << 62)

/* A bounds-checked reading position in the image. */
typedef struct GGUFCursor
{
	const uint8_t *base;
	size_t		size;
	size_t		pos;
} GGUFCursor;

/* Byte size of one element of a fixed-size metadata type, 0 for STRING/ARRAY/invalid. */
static size_t
scalar_size(uint32_t type)
{
	switch (type)
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

/* Bytes left after the cursor. */
static inline size_t
cursor_left(const GGUFCursor *c)
{
	return c->size - c->pos;
}

/* Read n raw bytes (little-endian numbers are assembled by the callers). */
static inline bool
cursor_read(GGUFCursor *c, void *dst, size_t n)
{
	if (n > cursor_left(c))
		return false;
	memcpy(dst, c->base + c->pos, n);
	c->pos += n;
	return true;
}

/* Little-endian loads from unaligned memory. */
static inline uint16_t
load_u16(const uint8_t *p)
{
	return (uint16_t) (p[0] | (p[1] << 8));
}

static inline uint32_t
load_u32(const uint8_t *p)
{
	return (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
		((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
}

static inline uint64_t
load_u64(const uint8_t *p)
{
	return (uint64_t) load_u32(p) | ((uint64_t) load_u32(p + 4) << 32);
}

static inline bool
cursor_u32(GGUFCursor *c, uint32_t *out)
{
	uint8_t		b[4];

	if (!cursor_read(c, b, 4))
		return false;
	*out = load_u32(b);
	return true;
}

static inline bool
cursor_u64(GGUFCursor *c, uint64_t *out)
{
	uint8_t		b[8];

	if (!cursor_read(c, b, 8))
		return false;
	*out = load_u64(b);
	return true;
}

/* Read a GGUF string (u64 length + bytes) without copying it. */
static bool
cursor_string(GGUFCursor *c, P3GGUFString *out)
{
	uint64_t	len;
	size_t		save = c->pos;

	if (!cursor_u64(c, &len))
		return false;
	if (len > cursor_left(c))
	{
		c->pos = save;
		return false;
	}
	out->ptr = (const char *) (c->base + c->pos);
	out->len = len;
	c->pos += (size_t) len;
	return true;
}

/* Key length as an int for "%.*s" (keys are at most 65535 bytes). */
static inline int
key_len(P3GGUFString s)
{
	return s.len > MAX_KEY_BYTES ? MAX_KEY_BYTES : (int) s.len;
}

/* Decode a fixed-size scalar of a known type at p. */
static void
decode_scalar(uint32_t type, const uint8_t *p, P3GGUFValue *v)
{
	uint32_t	u32;
	uint64_t	u64;
	float		f32;
	double		f64;

	switch (type)
	{
		case P3_GGUF_UINT8:
		case P3_GGUF_BOOL:
			v->v.u64 = p[0];
			break;
		case P3_GGUF_INT8:
			v->v.i64 = (int8_t) p[0];
			break;
		case P3_GGUF_UINT16:
			v->v.u64 = load_u16(p);
			break;
		case P3_GGUF_INT16:
			v->v.i64 = (int16_t) load_u16(p);
			break;
		case P3_GGUF_UINT32:
			v->v.u64 = load_u32(p);
			break;
		case P3_GGUF_INT32:
			v->v.i64 = (int32_t) load_u32(p);
			break;
		case P3_GGUF_FLOAT32:
			u32 = load_u32(p);
			memcpy(&f32, &u32, 4);
			v->v.f64 = f32;
			break;
		case P3_GGUF_UINT64:
			v->v.u64 = load_u64(p);
			break;
		case P3_GGUF_INT64:
			v->v.i64 = (int64_t) load_u64(p);
			break;
		case P3_GGUF_FLOAT64:
			u64 = load_u64(p);
			memcpy(&f64, &u64, 8);
			v->v.f64 = f64;
			break;
		default:
			break;
	}
}

/* Parse the value of metadata entry `key` of type `type` at the cursor. */
static P3Status
parse_value(GGUFCursor *c, P3GGUFString key, uint32_t type,
			P3GGUFValue *v, P3Error *err)
{
	int			kl = key_len(key);

	if (type >= P3_GGUF_TYPE_COUNT)
		return p3_error(err, P3_ERR_FORMAT,
						"metadata key \"%.*s\" has invalid value type %u",
						kl, key.ptr, type);
	v->type = (P3GGUFType) type;

	if (type == P3_GGUF_STRING)
	{
		if (!cursor_string(c, &v->v.str))
			return p3_error(err, P3_ERR_FORMAT,
							"file is truncated in the string value of metadata key \"%.*s\"",
							kl, key.ptr);
		return P3_OK;
	}

	if (type == P3_GGUF_ARRAY)
	{
		uint32_t	elem_type;
		uint64_t	count;
		size_t		start;

		if (!cursor_u32(c, &elem_type) || !cursor_u64(c, &count))
			return p3_error(err, P3_ERR_FORMAT,
							"file is truncated in the array header of metadata key \"%.*s\"",
							kl, key.ptr);
		if (elem_type >= P3_GGUF_TYPE_COUNT)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key \"%.*s\": array has invalid element type %u",
							kl, key.ptr, elem_type);
		if (elem_type == P3_GGUF_ARRAY)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key \"%.*s\": arrays of arrays are not supported",
							kl, key.ptr);
		start = c->pos;
		v->v.arr.elem_type = (P3GGUFType) elem_type;
		v->v.arr.count = count;
		v->v.arr.data = c->base + start;

		if (elem_type == P3_GGUF_STRING)
		{
			/* each string takes at least its 8-byte length */
			if (count > cursor_left(c) / 8)
				return p3_error(err, P3_ERR_FORMAT,
								"metadata key \"%.*s\": array of %llu strings does not fit in the file",
								kl, key.ptr, (unsigned long long) count);
			for (uint64_t i = 0; i < count; i++)
			{
				P3GGUFString s;

				if (!cursor_string(c, &s))
					return p3_error(err, P3_ERR_FORMAT,
									"metadata key \"%.*s\": string %llu of %llu extends past end of file",
									kl, key.ptr, (unsigned long long) i,
									(unsigned long long) count);
			}
		}
		else
		{
			size_t		esize = scalar_size(elem_type);

			if (count > cursor_left(c) / esize)
				return p3_error(err, P3_ERR_FORMAT,
								"metadata key \"%.*s\": array of %llu %s values does not fit in the file",
								kl, key.ptr, (unsigned long long) count,
								p3_gguf_type_name(elem_type));
			if (elem_type == P3_GGUF_BOOL)
			{
				for (uint64_t i = 0; i < count; i++)
				{
					uint8_t		b = c->base[start + i];

					if (b > 1)
						return p3_error(err, P3_ERR_FORMAT,
										"metadata key \"%.*s\": bool element %llu has value %u (expected 0 or 1)",
										kl, key.ptr, (unsigned long long) i, b);
				}
			}
			c->pos += (size_t) (count * esize);
		}
		v->v.arr.nbytes = c->pos - start;
		return P3_OK;
	}

	/* fixed-size scalar */
	{
		size_t		esize = scalar_size(type);

		if (esize > cursor_left(c))
			return p3_error(err, P3_ERR_FORMAT,
							"file is truncated in the value of metadata key \"%.*s\"",
							kl, key.ptr);
		decode_scalar(type, c->base + c->pos, v);
		if (type == P3_GGUF_BOOL && v->v.u64 > 1)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key \"%.*s\": bool has value %llu (expected 0 or 1)",
							kl, key.ptr, (unsigned long long) v->v.u64);
		c->pos += esize;
	}
	return P3_OK;
}

/* Order keys by bytes, then length (for duplicate detection). */
static int
compare_kv_keys(const void *a, const void *b)
{
	const P3GGUFKV *ka = *(const P3GGUFKV *const *) a;
	const P3GGUFKV *kb = *(const P3GGUFKV *const *) b;
	uint64_t	n = ka->key.len < kb->key.len ? ka->key.len : kb->key.len;
	int			r = memcmp(ka->key.ptr, kb->key.ptr, (size_t) n);

	if (r != 0)
		return r;
	return (ka->key.len > kb->key.len) - (ka->key.len < kb->key.len);
}

static int
compare_tensor_names(const void *a, const void *b)
{
	const P3GGUFTensor *ta = *(const P3GGUFTensor *const *) a;
	const P3GGUFTensor *tb = *(const P3GGUFTensor *const *) b;

	return strcmp(ta->name, tb->name);
}

static int
compare_tensor_offsets(const void *a, const void *b)
{
	const P3GGUFTensor *ta = *(const P3GGUFTensor *const *) a;
	const P3GGUFTensor *tb = *(const P3GGUFTensor *const *) b;

	return (ta->offset > tb->offset) - (ta->offset < tb->offset);
}

/*
 * Grow *arr (of *cap elements of elem_size bytes) so it holds at least
 * need elements, never more than limit.  Doubling keeps the total work
 * linear; the limit is the (already plausibility-checked) declared count.
 */
static bool
grow_array(void **arr, uint64_t *cap, uint64_t need, uint64_t limit, size_t elem_size)
{
	uint64_t	new_cap;
	void	   *p;

	if (need <= *cap)
		return true;
	new_cap = *cap ? *cap * 2 : 16;
	if (new_cap > limit)
		new_cap = limit;
	if (new_cap < need)
		new_cap = need;
	if (new_cap > SIZE_MAX / elem_size)
		return false;
	p = realloc(*arr, (size_t) (new_cap * elem_size));
	if (p == NULL)
		return false;
	*arr = p;
	*cap = new_cap;
	return true;
}

/* Parse all metadata entries; fills g->kv and g->n_kv. */
static P3Status
parse_metadata(GGUFCursor *c, P3GGUF *g, uint64_t n_kv, P3Error *err)
{
	uint64_t	cap = 0;
	P3Status	st;

	for (uint64_t i = 0; i < n_kv; i++)
	{
		P3GGUFString key;
		uint64_t	len;
		uint32_t	type;
		P3GGUFKV   *kv;

		if (!grow_array((void **) &g->kv, &cap, i + 1, n_kv, sizeof(P3GGUFKV)))
			return p3_error(err, P3_ERR_NOMEM,
							"out of memory for %llu metadata entries",
							(unsigned long long) n_kv);
		if (!cursor_u64(c, &len))
			return p3_error(err, P3_ERR_FORMAT,
							"file is truncated in metadata key %llu", (unsigned long long) i);
		if (len == 0)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key %llu has an empty name", (unsigned long long) i);
		if (len > MAX_KEY_BYTES)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key %llu has a name of %llu bytes (at most %d)",
							(unsigned long long) i, (unsigned long long) len, MAX_KEY_BYTES);
		if (len > cursor_left(c))
			return p3_error(err, P3_ERR_FORMAT,
							"file is truncated in metadata key %llu", (unsigned long long) i);
		key.ptr = (const char *) (c->base + c->pos);
		key.len = len;
		c->pos += (size_t) len;
		if (!cursor_u32(c, &type))
			return p3_error(err, P3_ERR_FORMAT,
							"file is truncated in the type of metadata key \"%.*s\"",
							key_len(key), key.ptr);
		kv = &g->kv[i];
		kv->key = key;
		st = parse_value(c, key, type, &kv->value, err);
		if (st != P3_OK)
			return st;
		g->n_kv = i + 1;
	}
	return P3_OK;
}

/* Reject duplicate metadata keys (sort pointers, compare neighbours). */
static P3Status
check_duplicate_keys(const P3GGUF *g, P3Error *err)
{
	const P3GGUFKV **sorted;
	P3Status	st = P3_OK;

	if (g->n_kv < 2)
		return P3_OK;
	sorted = malloc((size_t) g->n_kv * sizeof(*sorted));
	if (sorted == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory checking %llu metadata keys",
						(unsigned long long) g->n_kv);
	for (uint64_t i = 0; i < g->n_kv; i++)
		sorted[i] = &g->kv[i];
	qsort(sorted, (size_t) g->n_kv, sizeof(*sorted), compare_kv_keys);
	for (uint64_t i = 1; i < g->n_kv; i++)
	{
		if (compare_kv_keys(&sorted[i - 1], &sorted[i]) == 0)
		{
			st = p3_error(err, P3_ERR_FORMAT, "duplicate metadata key \"%.*s\"",
						  key_len(sorted[i]->key), sorted[i]->key.ptr);
			break;
		}
	}
	free(sorted);
	return st;
}

/* Find general.alignment, check it, and store it in g->alignment. */
static P3Status
parse_alignment(P3GGUF *g, P3Error *err)
{
	const P3GGUFKV *kv = p3_gguf_find_kv(g, "general.alignment");
	uint64_t	a;

	g->alignment = P3_GGUF_DEFAULT_ALIGNMENT;
	if (kv == NULL)
		return P3_OK;
	if (kv->value.type != P3_GGUF_UINT32)
		return p3_error(err, P3_ERR_FORMAT,
						"metadata key \"general.alignment\" has type %s, expected uint32",
						p3_gguf_type_name(kv->value.type));
	a = kv->value.v.u64;
	if (a == 0 || (a & (a - 1)) != 0)
		return p3_error(err, P3_ERR_FORMAT,
						"general.alignment is %llu, expected a nonzero power of two",
						(unsigned long long) a);
	g->alignment = (uint32_t) a;
	return P3_OK;
}

/* Parse one tensor info (index i) into t; offsets are checked later. */
static P3Status
parse_tensor_info(GGUFCursor *c, uint64_t i, P3GGUFTensor *t, P3Error *err)
{
	P3GGUFString name;
	uint64_t	count = 1;
	const P3TypeTraits *traits;

	memset(t, 0, sizeof(*t));
	if (!cursor_string(c, &name))
	{
		uint64_t	len;
		GGUFCursor	peek = *c;

		/* distinguish a lying length from a plain truncation for the message */
		if (cursor_u64(&peek, &len) && len > P3_GGUF_MAX_NAME)
			return p3_error(err, P3_ERR_FORMAT,
							"tensor info %llu has a name of %llu bytes (at most %d)",
							(unsigned long long) i, (unsigned long long) len, P3_GGUF_MAX_NAME);
		return p3_error(err, P3_ERR_FORMAT,
						"file is truncated in tensor info %llu", (unsigned long long) i);
	}
	if (name.len == 0)
		return p3_error(err, P3_ERR_FORMAT,
						"tensor info %llu has an empty name", (unsigned long long) i);
	if (name.len > P3_GGUF_MAX_NAME)
		return p3_error(err, P3_ERR_FORMAT,
						"tensor info %llu has a name of %llu bytes (at most %d): \"%.*s\"",
						(unsigned long long) i, (unsigned long long) name.len,
						P3_GGUF_MAX_NAME, P3_GGUF_MAX_NAME, name.ptr);
	if (memchr(name.ptr, '\0', (size_t) name.len) != NULL)
		return p3_error(err, P3_ERR_FORMAT,
						"tensor info %llu has a name containing a NUL byte",
						(unsigned long long) i);
	memcpy(t->name, name.ptr, (size_t) name.len);
	t->name[name.len] = '\0';

	if (!cursor_u32(c, &t->n_dims))
		return p3_error(err, P3_ERR_FORMAT,
						"file is truncated in tensor info %llu (\"%s\")",
						(unsigned long long) i, t->name);
	if (t->n_dims < 1 || t->n_dims > P3_GGUF_MAX_DIMS)
		return p3_error(err, P3_ERR_FORMAT,
						"tensor \"%s\" has %u dimensions (expected 1 to %d)",
						t->name, t->n_dims, P3_GGUF_MAX_DIMS);
	for (int d = 0; d < P3_GGUF_MAX_DIMS; d++)
		t->ne[d] = 1;
	for (uint32_t d = 0; d < t->n_dims; d++)
	{
		uint64_t	dim;

		if (!cursor_u64(c, &dim))
			return p3_error(err, P3_ERR_FORMAT,
							"file is truncated in tensor info %llu (\"%s\")",
							(unsigned long long) i, t->name);
		if (dim == 0 || dim >= MAX_TENSOR_ELEMENTS)
			return p3_error(err, P3_ERR_FORMAT,
							"tensor \"%s\" has invalid dimension %u = %llu",
							t->name, d, (unsigned long long) dim);
		if (__builtin_mul_overflow(count, dim, &count) || count >= MAX_TENSOR_ELEMENTS)
			return p3_error(err, P3_ERR_FORMAT,
							"tensor \"%s\" has too many elements (dimension %u = %llu overflows the count)",
							t->name, d, (unsigned long long) dim);
		t->ne[d] = (int64_t) dim;
	}
	if (!cursor_u32(c, &t->type) || !cursor_u64(c, &t->offset))
		return p3_error(err, P3_ERR_FORMAT,
						"file is truncated in tensor info %llu (\"%s\")",
						(unsigned long long) i, t->name);

	traits = p3_type_traits(t->type);
	if (traits == NULL)
		return p3_error_kind(err, P3_ERR_UNSUPPORTED, P3_KIND_TENSOR_TYPE,
							 "tensor \"%s\" has unknown type %u", t->name, t->type);
	if (t->ne[0] % traits->block_size != 0)
		return p3_error(err, P3_ERR_FORMAT,
						"tensor \"%s\": row length %lld is not a multiple of the %s block size %u",
						t->name, (long long) t->ne[0], traits->name, traits->block_size);
	{
		uint64_t	nbytes;

		/* bytes = blocks per row * block bytes * rows; every product checked */
		if (__builtin_mul_overflow((uint64_t) t->ne[0] / traits->block_size,
								   (uint64_t) traits->type_size, &nbytes))
			return p3_error(err, P3_ERR_FORMAT, "tensor \"%s\" is too large", t->name);
		for (int d = 1; d < P3_GGUF_MAX_DIMS; d++)
			if (__builtin_mul_overflow(nbytes, (uint64_t) t->ne[d], &nbytes))
				return p3_error(err, P3_ERR_FORMAT, "tensor \"%s\" is too large", t->name);
		t->nbytes = nbytes;
	}
	return P3_OK;
}

/* Parse all tensor infos; fills g->tensors and g->n_tensors. */
static P3Status
parse_tensor_infos(GGUFCursor *c, P3GGUF *g, uint64_t n_tensors, P3Error *err)
{
	uint64_t	cap = 0;
	P3Status	st;

	for (uint64_t i = 0; i < n_tensors; i++)
	{
		if (!grow_array((void **) &g->tensors, &cap, i + 1, n_tensors, sizeof(P3GGUFTensor)))
			return p3_error(err, P3_ERR_NOMEM, "out of memory for %llu tensor infos",
							(unsigned long long) n_tensors);
		st = parse_tensor_info(c, i, &g->tensors[i], err);
		if (st != P3_OK)
			return st;
		g->n_tensors = i + 1;
	}
	return P3_OK;
}

/*
 * Check the tensor data ranges: alignment, inside the file, unique names,
 * no overlap.  Sets each tensor's data pointer.
 */
static P3Status
check_tensor_data(P3GGUF *g, P3Error *err)
{
	P3GGUFTensor **sorted;
	P3Status	st = P3_OK;
	uint64_t	n = g->n_tensors;

	for (uint64_t i = 0; i < n; i++)
	{
		P3GGUFTensor *t = &g->tensors[i];
		uint64_t	start;
		uint64_t	end;

		if (t->offset % g->alignment != 0)
			return p3_error(err, P3_ERR_FORMAT,
							"tensor \"%s\": offset %llu is not a multiple of the alignment %u",
							t->name, (unsigned long long) t->offset, g->alignment);
		if (__builtin_add_overflow(g->data_offset, t->offset, &start) ||
			__builtin_add_overflow(start, t->nbytes, &end) ||
			end > g->size)
			return p3_error(err, P3_ERR_FORMAT,
							"tensor \"%s\" extends past end of file (offset %llu in the data section at %llu, size %llu, file %zu)",
							t->name, (unsigned long long) t->offset,
							(unsigned long long) g->data_offset,
							(unsigned long long) t->nbytes, g->size);
		t->data = g->base + start;
	}
	if (n < 2)
		return P3_OK;

	sorted = malloc((size_t) n * sizeof(*sorted));
	if (sorted == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory checking %llu tensors",
						(unsigned long long) n);
	for (uint64_t i = 0; i < n; i++)
		sorted[i] = &g->tensors[i];

	qsort(sorted, (size_t) n, sizeof(*sorted), compare_tensor_names);
	for (uint64_t i = 1; i < n; i++)
	{
		if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
		{
			st = p3_error(err, P3_ERR_FORMAT, "duplicate tensor name \"%s\"", sorted[i]->name);
			goto done;
		}
	}

	qsort(sorted, (size_t) n, sizeof(*sorted), compare_tensor_offsets);
	for (uint64_t i = 1; i < n; i++)
	{
		const P3GGUFTensor *a = sorted[i - 1];
		const P3GGUFTensor *b = sorted[i];

		/* a->offset + a->nbytes cannot overflow: both were checked above */
		if (a->offset + a->nbytes > b->offset)
		{
			st = p3_error(err, P3_ERR_FORMAT,
						  "tensors \"%s\" and \"%s\" overlap (data bytes %llu..%llu and %llu..%llu)",
						  a->name, b->name,
						  (unsigned long long) a->offset,
						  (unsigned long long) (a->offset + a->nbytes),
						  (unsigned long long) b->offset,
						  (unsigned long long) (b->offset + b->nbytes));
			goto done;
		}
	}
done:
	free(sorted);
	return st;
}

/*
 * Validate an image and fill g.  display names the file in the messages
 * that concern the file as a whole (NULL for an in-memory image).
 */
static P3Status
parse_image(P3GGUF *g, const char *display, P3Error *err)
{
	GGUFCursor	c = {g->base, g->size, 0};
	uint32_t	magic;
	uint64_t	n_tensors;
	uint64_t	n_kv;
	uint64_t	left;
	uint64_t	aligned;
	P3Status	st;

	if (g->size < 4)
	{
		if (display)
			return p3_error(err, P3_ERR_FORMAT,
							"\"%s\" is not a GGUF file (%zu bytes, too short for a header)",
							display, g->size);
		return p3_error(err, P3_ERR_FORMAT,
						"not a GGUF file (%zu bytes, too short for a header)", g->size);
	}
	cursor_u32(&c, &magic);
	if (magic != P3_GGUF_MAGIC)
	{
		if (display)
			return p3_error(err, P3_ERR_FORMAT,
							"\"%s\" is not a GGUF file (magic 0x%08x; expected \"GGUF\")",
							display, magic);
		return p3_error(err, P3_ERR_FORMAT,
						"not a GGUF file (magic 0x%08x; expected \"GGUF\")", magic);
	}
	if (!cursor_u32(&c, &g->version))
		return p3_error(err, P3_ERR_FORMAT, "file is truncated in the header (%zu bytes)", g->size);
	if (g->version != 2 && g->version != 3)
	{
		if ((g->version & 0xFFFF) == 0)
			return p3_error(err, P3_ERR_FORMAT,
							"unsupported GGUF version 0x%08x (a big-endian file?); expected 2 or 3",
							g->version);
		return p3_error(err, P3_ERR_FORMAT,
						"unsupported GGUF version %u (expected 2 or 3)", g->version);
	}
	if (!cursor_u64(&c, &n_tensors) || !cursor_u64(&c, &n_kv))
		return p3_error(err, P3_ERR_FORMAT, "file is truncated in the header (%zu bytes)", g->size);

	/* plausibility of the counts before anything is allocated from them */
	left = cursor_left(&c);
	if (n_kv > left / MIN_KV_BYTES)
		return p3_error(err, P3_ERR_FORMAT,
						"metadata count %llu does not fit in the file (%zu bytes)",
						(unsigned long long) n_kv, g->size);
	if (n_tensors > (left - n_kv * MIN_KV_BYTES) / MIN_TENSOR_INFO_BYTES)
		return p3_error(err, P3_ERR_FORMAT,
						"tensor count %llu does not fit in the file (%zu bytes)",
						(unsigned long long) n_tensors, g->size);

	st = parse_metadata(&c, g, n_kv, err);
	if (st != P3_OK)
		return st;
	st = check_duplicate_keys(g, err);
	if (st != P3_OK)
		return st;
	st = parse_alignment(g, err);
	if (st != P3_OK)
		return st;
	st = parse_tensor_infos(&c, g, n_tensors, err);
	if (st != P3_OK)
		return st;

	/*
	 * The data section starts at the next multiple of the alignment.  ggml
	 * only seeks there when there are tensors, and vocab-only files may end
	 * right after the metadata, so the padding is optional without tensors.
	 */
	aligned = c.pos;
	if (c.pos % g->alignment != 0)
		aligned = c.pos + (g->alignment - c.pos % g->alignment);	/* c.pos < 2^63, no overflow */
	if (aligned > g->size)
	{
		if (n_tensors > 0)
			return p3_error(err, P3_ERR_FORMAT,
							"file is truncated before the tensor data (data section at %llu, file %zu)",
							(unsigned long long) aligned, g->size);
		aligned = c.pos;
	}
	g->data_offset = aligned;
	return check_tensor_data(g, err);
}


/*
 * The file's read-only shared mapping, at an address aligned to 2 MiB (a
 * huge page) and with MADV_HUGEPAGE: where the page cache holds the file in
 * huge folios (Linux reads it so for a MADV_HUGEPAGE mapping when it is not
 * cached yet), each 2 MiB is then mapped by one page-table entry instead of
 * 512.  That is about 1,200 entries for a 2.4 GB model instead of 590,000:
 * a new backend's first pass over the weights faults 1,200 times, not
 * 37,000, and every decode step stops paying a TLB miss per 4 KiB read.
 * Without huge folios it is an ordinary mapping; the alignment costs 2 MiB
 * of address space, reserved and given back at once.
 */
#define MAP_HUGE_ALIGN ((size_t) 2 << 20)

static void *
map_file(int fd, size_t size)
{
	size_t		span = size + MAP_HUGE_ALIGN;
	uint8_t    *reserve = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uint8_t    *at;
	void	   *map;

	if (reserve == MAP_FAILED || size > SIZE_MAX - MAP_HUGE_ALIGN)
		return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	at = (uint8_t *) (((uintptr_t) reserve + MAP_HUGE_ALIGN - 1) & ~(uintptr_t) (MAP_HUGE_ALIGN - 1));
	map = mmap(at, size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
	if (map == MAP_FAILED)
	{
		munmap(reserve, span);
		return mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
	}
	/* give back the reservation around the mapping */
	if (at > reserve)
		munmap(reserve, (size_t) (at - reserve));
	{
		long		pg = sysconf(_SC_PAGESIZE);
		size_t		page = pg > 0 ? (size_t) pg : 4096;
		uint8_t    *end = at + (size + page - 1) / page * page;

		if (end < reserve + span)
			munmap(end, (size_t) (reserve + span - end));
	}
#ifdef MADV_HUGEPAGE
	(void) madvise(map, size, MADV_HUGEPAGE);
#endif
	return map;
}

/* Free everything a P3GGUF owns except the mapping. */
static void
free_arrays(P3GGUF *g)
{
	free(g->kv);
	free(g->tensors);
	free(g->path);
}

P3Status
p3_gguf_parse(const void *buf, size_t size, P3GGUF **out, P3Error *err)
{
	P3GGUF	   *g;
	P3Status	st;

	if (out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "p3_gguf_parse: out is NULL");
	*out = NULL;
	if (buf == NULL && size > 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "p3_gguf_parse: buffer is NULL");
	g = calloc(1, sizeof(*g));
	if (g == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory");
	g->base = buf;
	g->size = size;
	st = parse_image(g, NULL, err);
	if (st != P3_OK)
	{
		free_arrays(g);
		free(g);
		return st;
	}
	*out = g;
	return P3_OK;
}

P3Status
p3_gguf_open(const char *path, P3GGUF **out, P3Error *err)
{
	P3GGUF	   *g;
	struct stat sb;
	int			fd;
	void	   *map;
	P3Status	st;

	if (out == NULL || path == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "p3_gguf_open: path or out is NULL");
	*out = NULL;

	/* O_NONBLOCK: opening a FIFO must not hang; it is rejected below */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return p3_error_errno_kind(err, P3_ERR_IO, P3_KIND_FILE_OPEN, "could not open model file \"%s\"", path);
	if (fstat(fd, &sb) != 0)
	{
		st = p3_error_errno_kind(err, P3_ERR_IO, P3_KIND_FILE_STAT, "could not stat model file \"%s\"", path);
		close(fd);
		return st;
	}
	if (!S_ISREG(sb.st_mode))
	{
		errno = S_ISDIR(sb.st_mode) ? EISDIR : EINVAL;
		st = p3_error_errno_kind(err, P3_ERR_IO, P3_KIND_FILE_OPEN,
								 "could not open model file \"%s\" (not a regular file)", path);
		close(fd);
		return st;
	}
	if (sb.st_size == 0)
	{
		close(fd);
		return p3_error(err, P3_ERR_FORMAT, "\"%s\" is not a GGUF file (it is empty)", path);
	}
	if ((uint64_t) sb.st_size > (uint64_t) SIZE_MAX)
	{
		close(fd);
		return p3_error_kind(err, P3_ERR_IO, P3_KIND_FILE_TOO_LARGE,
							 "model file \"%s\" is too large to map (%lld bytes)",
							 path, (long long) sb.st_size);
	}

	map = map_file(fd, (size_t) sb.st_size);
	if (map == MAP_FAILED)
	{
		st = p3_error_errno_kind(err, P3_ERR_IO, P3_KIND_FILE_MAP, "could not map model file \"%s\"", path);
		close(fd);
		return st;
	}
	close(fd);					/* the mapping keeps the file referenced */

	g = calloc(1, sizeof(*g));
	if (g == NULL || (g->path = strdup(path)) == NULL)
	{
		free(g);
		munmap(map, (size_t) sb.st_size);
		return p3_error(err, P3_ERR_NOMEM, "out of memory opening \"%s\"", path);
	}
	g->base = map;
	g->size = (size_t) sb.st_size;
	g->mapped = true;
	g->st_dev = sb.st_dev;
	g->st_ino = sb.st_ino;
	g->st_mtime_ns = (int64_t) sb.st_mtim.tv_sec * 1000000000 + sb.st_mtim.tv_nsec;

	st = parse_image(g, path, err);
	if (st != P3_OK)
	{
		p3_gguf_close(g);
		return st;
	}
	*out = g;
	return P3_OK;
}

void
p3_gguf_close(P3GGUF *gguf)
{
	if (gguf == NULL)
		return;
	if (gguf->mapped && gguf->base != NULL)
		munmap((void *) gguf->base, gguf->size);
	free_arrays(gguf);
	free(gguf);
}

/* ------------------------------------------------------------------------
 * Lookups and typed getters
 * ------------------------------------------------------------------------ */

bool
p3_gguf_string_eq(P3GGUFString s, const char *cstr)
{
	size_t		n = strlen(cstr);

	return s.len == n && memcmp(s.ptr, cstr, n) == 0;
}

const P3GGUFKV *
p3_gguf_find_kv(const P3GGUF *gguf, const char *key)
{
	if (gguf == NULL || key == NULL)
		return NULL;
	for (uint64_t i = 0; i < gguf->n_kv; i++)
		if (p3_gguf_string_eq(gguf->kv[i].key, key))
			return &gguf->kv[i];
	return NULL;
}

const P3GGUFTensor *
p3_gguf_find_tensor(const P3GGUF *gguf, const char *name)
{
	if (gguf == NULL || name == NULL)
		return NULL;
	for (uint64_t i = 0; i < gguf->n_tensors; i++)
		if (strcmp(gguf->tensors[i].name, name) == 0)
			return &gguf->tensors[i];
	return NULL;
}

const char *
p3_gguf_type_name(uint32_t type)
{
	static const char *const names[P3_GGUF_TYPE_COUNT] = {
		"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
		"bool", "string", "array", "uint64", "int64", "float64"
	};

	return type < P3_GGUF_TYPE_COUNT ? names[type] : "invalid";
}

/* True for the eight integer types (not bool). */
static bool
is_integer_type(P3GGUFType t)
{
	switch (t)
	{
		case P3_GGUF_UINT8:
		case P3_GGUF_UINT16:
		case P3_GGUF_UINT32:
		case P3_GGUF_UINT64:
		case P3_GGUF_INT8:
		case P3_GGUF_INT16:
		case P3_GGUF_INT32:
		case P3_GGUF_INT64:
			return true;
		default:
			return false;
	}
}

static bool
is_signed_type(P3GGUFType t)
{
	return t == P3_GGUF_INT8 || t == P3_GGUF_INT16 || t == P3_GGUF_INT32 || t == P3_GGUF_INT64;
}

/* Describe a value's type for messages: "uint32" or "array of float32". */
static const char *
describe_type(const P3GGUFValue *v, char *buf, size_t size)
{
	if (v->type == P3_GGUF_ARRAY)
	{
		snprintf(buf, size, "array of %s", p3_gguf_type_name(v->v.arr.elem_type));
		return buf;
	}
	return p3_gguf_type_name(v->type);
}

/* Error for a key whose type does not match what the caller asked for. */
static P3Status
wrong_type(const P3GGUFKV *kv, const char *expected, P3Error *err)
{
	char		buf[48];

	return p3_error(err, P3_ERR_FORMAT, "metadata key \"%.*s\" has type %s, expected %s",
					key_len(kv->key), kv->key.ptr,
					describe_type(&kv->value, buf, sizeof(buf)), expected);
}

/* Fetch an integer value as signed/unsigned; *neg tells which half it is in. */
static P3Status
get_integer(const P3GGUF *gguf, const char *key, const P3GGUFKV **kvp, P3Error *err)
{
	const P3GGUFKV *kv = p3_gguf_find_kv(gguf, key);

	if (kv == NULL)
		return P3_ERR_INVALID_ARG;
	*kvp = kv;
	if (!is_integer_type(kv->value.type))
		return wrong_type(kv, "an integer", err);
	return P3_OK;
}

P3Status
p3_gguf_get_u32(const P3GGUF *gguf, const char *key, uint32_t *out, P3Error *err)
{
	const P3GGUFKV *kv = NULL;
	P3Status	st = get_integer(gguf, key, &kv, err);

	if (st != P3_OK)
		return st;
	if (is_signed_type(kv->value.type))
	{
		if (kv->value.v.i64 < 0 || kv->value.v.i64 > (int64_t) UINT32_MAX)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key \"%s\" has value %lld, which does not fit in uint32",
							key, (long long) kv->value.v.i64);
		*out = (uint32_t) kv->value.v.i64;
	}
	else
	{
		if (kv->value.v.u64 > UINT32_MAX)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key \"%s\" has value %llu, which does not fit in uint32",
							key, (unsigned long long) kv->value.v.u64);
		*out = (uint32_t) kv->value.v.u64;
	}
	return P3_OK;
}

P3Status
p3_gguf_get_i64(const P3GGUF *gguf, const char *key, int64_t *out, P3Error *err)
{
	const P3GGUFKV *kv = NULL;
	P3Status	st = get_integer(gguf, key, &kv, err);

	if (st != P3_OK)
		return st;
	if (is_signed_type(kv->value.type))
		*out = kv->value.v.i64;
	else
	{
		if (kv->value.v.u64 > (uint64_t) INT64_MAX)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key \"%s\" has value %llu, which does not fit in int64",
							key, (unsigned long long) kv->value.v.u64);
		*out = (int64_t) kv->value.v.u64;
	}
	return P3_OK;
}

P3Status
p3_gguf_get_f32(const P3GGUF *gguf, const char *key, float *out, P3Error *err)
{
	const P3GGUFKV *kv = p3_gguf_find_kv(gguf, key);
	double		v;

	if (kv == NULL)
		return P3_ERR_INVALID_ARG;
	if (kv->value.type != P3_GGUF_FLOAT32 && kv->value.type != P3_GGUF_FLOAT64)
		return wrong_type(kv, "a float", err);
	v = kv->value.v.f64;
	if (v > FLT_MAX || v < -FLT_MAX)
	{
		/* infinities pass through; finite values beyond float do not fit */
		if (v - v == 0.0)
			return p3_error(err, P3_ERR_FORMAT,
							"metadata key \"%s\" has value %g, which does not fit in float32",
							key, v);
	}
	*out = (float) v;
	return P3_OK;
}

P3Status
p3_gguf_get_bool(const P3GGUF *gguf, const char *key, bool *out, P3Error *err)
{
	const P3GGUFKV *kv = p3_gguf_find_kv(gguf, key);

	if (kv == NULL)
		return P3_ERR_INVALID_ARG;
	if (kv->value.type != P3_GGUF_BOOL)
		return wrong_type(kv, "bool", err);
	*out = kv->value.v.u64 != 0;
	return P3_OK;
}

P3Status
p3_gguf_get_string(const P3GGUF *gguf, const char *key, P3GGUFString *out, P3Error *err)
{
	const P3GGUFKV *kv = p3_gguf_find_kv(gguf, key);

	if (kv == NULL)
		return P3_ERR_INVALID_ARG;
	if (kv->value.type != P3_GGUF_STRING)
		return wrong_type(kv, "string", err);
	*out = kv->value.v.str;
	return P3_OK;
}

P3Status
p3_gguf_get_array(const P3GGUF *gguf, const char *key, P3GGUFType elem_type,
				  const P3GGUFValue **out, P3Error *err)
{
	const P3GGUFKV *kv = p3_gguf_find_kv(gguf, key);
	char		expected[48];

	if (kv == NULL)
		return P3_ERR_INVALID_ARG;
	if (kv->value.type != P3_GGUF_ARRAY || kv->value.v.arr.elem_type != elem_type)
	{
		snprintf(expected, sizeof(expected), "array of %s", p3_gguf_type_name(elem_type));
		return wrong_type(kv, expected, err);
	}
	*out = &kv->value;
	return P3_OK;
}

P3GGUFString
p3_gguf_next_string(const uint8_t **cursor)
{
	P3GGUFString s;

	s.len = load_u64(*cursor);
	s.ptr = (const char *) (*cursor + 8);
	*cursor += 8 + s.len;
	return s;
}

double
p3_gguf_array_f64(const P3GGUFValue *arr, uint64_t i)
{
	P3GGUFValue v;
	size_t		esize;

	if (arr == NULL || arr->type != P3_GGUF_ARRAY || i >= arr->v.arr.count)
		return 0.0;
	esize = scalar_size(arr->v.arr.elem_type);
	if (esize == 0)
		return 0.0;
	decode_scalar(arr->v.arr.elem_type, arr->v.arr.data + i * esize, &v);
	if (arr->v.arr.elem_type == P3_GGUF_FLOAT32 || arr->v.arr.elem_type == P3_GGUF_FLOAT64)
		return v.v.f64;
	if (is_signed_type(arr->v.arr.elem_type))
		return (double) v.v.i64;
	return (double) v.v.u64;
}

int64_t
p3_gguf_array_i64(const P3GGUFValue *arr, uint64_t i)
{
	P3GGUFValue v;
	size_t		esize;

	if (arr == NULL || arr->type != P3_GGUF_ARRAY || i >= arr->v.arr.count)
		return 0;
	esize = scalar_size(arr->v.arr.elem_type);
	if (esize == 0)
		return 0;
	decode_scalar(arr->v.arr.elem_type, arr->v.arr.data + i * esize, &v);
	if (arr->v.arr.elem_type == P3_GGUF_FLOAT32 || arr->v.arr.elem_type == P3_GGUF_FLOAT64)
	{
		double		d = v.v.f64;

		/* truncate toward zero, saturating (and NaN -> 0) so the cast is defined */
		if (!(d == d))
			return 0;
		if (d >= 9223372036854775807.0)
			return INT64_MAX;
		if (d <= -9223372036854775808.0)
			return INT64_MIN;
		return (int64_t) d;
	}
	if (is_signed_type(arr->v.arr.elem_type))
		return v.v.i64;
	return (int64_t) v.v.u64;	/* u64 above INT64_MAX wraps, as documented by the cast */
}
