/*
 * gguf_write.c — a small GGUF v3 writer (see phi3/gguf.h).
 *
 * Metadata values are encoded into their on-disk bytes when they are added
 * (so copy_kv can take arrays of strings verbatim from an opened file), and
 * kept in insertion order.  Tensors are kept in insertion order too; their
 * offsets are assigned at write time as ggml does: the running sum of the
 * tensor sizes, each padded to the alignment, with zero padding between
 * the tensor infos and the data section and after every tensor.
 *
 * Tensor data is either copied at add time or produced by a fill callback
 * at write time.  write_file streams: only one deferred tensor is in memory
 * at a time (one scratch buffer of the largest deferred size), so a
 * multi-gigabyte model never exists whole in memory.  The file is written
 * to "<path>.tmp", flushed with fsync and renamed over path; on any error
 * the temporary file is removed.
 *
 * The host is assumed little-endian, like GGUF (checked at compile time).
 */
#include "phi3/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "phi3/quant.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF writer assumes a little-endian host"
#endif

#define MAX_KEY_BYTES		65535
#define MAX_TENSOR_ELEMENTS	(UINT64_C(1) << 62)

/* One metadata entry: its key and the encoded bytes that follow the type. */
typedef struct WriterKV
{
	char	   *key;
	size_t		key_len;
	uint32_t	type;
	uint8_t    *payload;
	size_t		payload_len;
} WriterKV;

/* One tensor: its info, and either a copy of its bytes or a fill callback. */
typedef struct WriterTensor
{
	char		name[P3_GGUF_MAX_NAME + 1];
	uint32_t	type;
	uint32_t	n_dims;
	int64_t		ne[P3_GGUF_MAX_DIMS];
	uint64_t	nbytes;
	uint64_t	offset;			/* assigned by layout() */
	void	   *data;			/* owned copy, or NULL when deferred */
	P3GGUFFillFn fill;
	void	   *user;
} WriterTensor;

struct P3GGUFWriter
{
	WriterKV   *kv;
	size_t		n_kv;
	size_t		cap_kv;
	WriterTensor *tensors;
	size_t		n_tensors;
	size_t		cap_tensors;
	uint32_t	alignment;
};

/* A growable byte buffer for the header. */
typedef struct ByteBuf
{
	uint8_t    *data;
	size_t		len;
	size_t		cap;
	bool		failed;
} ByteBuf;

/* Append n bytes; on allocation failure remember it and drop the bytes. */
static void
buf_append(ByteBuf *b, const void *src, size_t n)
{
	if (b->failed)
		return;
	if (n > SIZE_MAX - b->len)
	{
		b->failed = true;
		return;
	}
	if (b->len + n > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 256;
		uint8_t    *p;

		while (cap < b->len + n)
		{
			if (cap > SIZE_MAX / 2)
			{
				cap = b->len + n;
				break;
			}
			cap *= 2;
		}
		p = realloc(b->data, cap);
		if (p == NULL)
		{
			b->failed = true;
			return;
		}
		b->data = p;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->data + b->len, src, n);
	b->len += n;
}

static void
buf_u32(ByteBuf *b, uint32_t v)
{
	buf_append(b, &v, 4);
}

static void
buf_u64(ByteBuf *b, uint64_t v)
{
	buf_append(b, &v, 8);
}

static void
buf_string(ByteBuf *b, const void *s, uint64_t len)
{
	buf_u64(b, len);
	buf_append(b, s, (size_t) len);
}

/* Round x up to a multiple of the power of two a; false on overflow. */
static bool
align_up(uint64_t x, uint32_t a, uint64_t *out)
{
	uint64_t	r = x % a;

	if (r == 0)
	{
		*out = x;
		return true;
	}
	return !__builtin_add_overflow(x, (uint64_t) (a - r), out);
}

/* Bytes of one element of a fixed-size metadata type (0 for string, array). */
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

P3Status
p3_gguf_writer_new(P3GGUFWriter **out, P3Error *err)
{
	P3GGUFWriter *w;

	if (out == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "p3_gguf_writer_new: out is NULL");
	w = calloc(1, sizeof(*w));
	*out = w;
	if (w == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory creating a GGUF writer");
	w->alignment = P3_GGUF_DEFAULT_ALIGNMENT;
	return P3_OK;
}

void
p3_gguf_writer_free(P3GGUFWriter *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < w->n_kv; i++)
	{
		free(w->kv[i].key);
		free(w->kv[i].payload);
	}
	for (size_t i = 0; i < w->n_tensors; i++)
		free(w->tensors[i].data);
	free(w->kv);
	free(w->tensors);
	free(w);
}

/* Index of a key, or -1. */
static ptrdiff_t
find_key(const P3GGUFWriter *w, const char *key, size_t len)
{
	for (size_t i = 0; i < w->n_kv; i++)
		if (w->kv[i].key_len == len && memcmp(w->kv[i].key, key, len) == 0)
			return (ptrdiff_t) i;
	return -1;
}

/*
 * Append a metadata entry whose value is already encoded; takes ownership
 * of payload (freed on failure too).
 */
static P3Status
add_encoded(P3GGUFWriter *w, const char *key, size_t len, uint32_t type,
			uint8_t *payload, size_t payload_len, P3Error *err)
{
	WriterKV   *kv;

	if (w == NULL || key == NULL)
	{
		free(payload);
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: writer or key is NULL");
	}
	if (len == 0 || len > MAX_KEY_BYTES)
	{
		free(payload);
		return p3_error(err, P3_ERR_INVALID_ARG,
						"GGUF writer: metadata key of %zu bytes (expected 1 to %d)",
						len, MAX_KEY_BYTES);
	}
	if (find_key(w, key, len) >= 0)
	{
		free(payload);
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: duplicate metadata key \"%.*s\"",
						(int) len, key);
	}
	if (w->n_kv == w->cap_kv)
	{
		size_t		cap = w->cap_kv ? w->cap_kv * 2 : 32;
		WriterKV   *p = realloc(w->kv, cap * sizeof(*p));

		if (p == NULL)
		{
			free(payload);
			return p3_error(err, P3_ERR_NOMEM, "out of memory adding metadata key \"%.*s\"",
							(int) len, key);
		}
		w->kv = p;
		w->cap_kv = cap;
	}
	kv = &w->kv[w->n_kv];
	kv->key = malloc(len);
	if (kv->key == NULL)
	{
		free(payload);
		return p3_error(err, P3_ERR_NOMEM, "out of memory adding metadata key \"%.*s\"",
						(int) len, key);
	}
	memcpy(kv->key, key, len);
	kv->key_len = len;
	kv->type = type;
	kv->payload = payload;
	kv->payload_len = payload_len;
	w->n_kv++;
	return P3_OK;
}

/* Encode and append a value given as a P3GGUFValue; key need not be NUL-terminated. */
static P3Status
add_value(P3GGUFWriter *w, const char *key, size_t len, const P3GGUFValue *v, P3Error *err)
{
	ByteBuf		b = {0};
	bool		is_alignment;
	P3Status	st;

	if (w == NULL || key == NULL || v == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: writer, key or value is NULL");
	if ((uint32_t) v->type >= P3_GGUF_TYPE_COUNT)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: metadata key \"%.*s\": invalid type %u",
						(int) (len > MAX_KEY_BYTES ? MAX_KEY_BYTES : len), key, (unsigned) v->type);

	/* general.alignment decides the layout: only a valid u32 is accepted */
	is_alignment = len == strlen("general.alignment") &&
		memcmp(key, "general.alignment", len) == 0;
	if (is_alignment)
	{
		if (v->type != P3_GGUF_UINT32 || v->v.u64 == 0 || v->v.u64 > UINT32_MAX ||
			(v->v.u64 & (v->v.u64 - 1)) != 0)
			return p3_error(err, P3_ERR_INVALID_ARG,
							"GGUF writer: general.alignment must be a uint32 power of two");
	}

	switch (v->type)
	{
		case P3_GGUF_UINT8:
		case P3_GGUF_UINT16:
		case P3_GGUF_UINT32:
		case P3_GGUF_UINT64:
		case P3_GGUF_BOOL:
			{
				size_t		n = scalar_size(v->type);
				uint64_t	u = v->v.u64;

				if ((n < 8 && u >> (8 * n) != 0) || (v->type == P3_GGUF_BOOL && u > 1))
					return p3_error(err, P3_ERR_INVALID_ARG,
									"GGUF writer: value %llu does not fit in %s",
									(unsigned long long) u, p3_gguf_type_name(v->type));
				buf_append(&b, &u, n);	/* little-endian: the low bytes come first */
				break;
			}
		case P3_GGUF_INT8:
		case P3_GGUF_INT16:
		case P3_GGUF_INT32:
		case P3_GGUF_INT64:
			{
				size_t		n = scalar_size(v->type);
				int64_t		i = v->v.i64;

				if (n < 8 && (i < -(INT64_C(1) << (8 * n - 1)) || i >= (INT64_C(1) << (8 * n - 1))))
					return p3_error(err, P3_ERR_INVALID_ARG,
									"GGUF writer: value %lld does not fit in %s",
									(long long) i, p3_gguf_type_name(v->type));
				buf_append(&b, &i, n);
				break;
			}
		case P3_GGUF_FLOAT32:
			{
				float		f = (float) v->v.f64;

				buf_append(&b, &f, 4);
				break;
			}
		case P3_GGUF_FLOAT64:
			buf_append(&b, &v->v.f64, 8);
			break;
		case P3_GGUF_STRING:
			if (v->v.str.ptr == NULL && v->v.str.len > 0)
				return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: string value is NULL");
			buf_string(&b, v->v.str.ptr, v->v.str.len);
			break;
		case P3_GGUF_ARRAY:
			{
				uint32_t	et = v->v.arr.elem_type;

				if (et >= P3_GGUF_TYPE_COUNT || et == P3_GGUF_ARRAY)
					return p3_error(err, P3_ERR_INVALID_ARG,
									"GGUF writer: invalid array element type %u", et);
				if (v->v.arr.data == NULL && v->v.arr.nbytes > 0)
					return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: array data is NULL");
				if (et == P3_GGUF_STRING)
				{
					/* the packed strings must exactly span nbytes */
					uint64_t	pos = 0;

					for (uint64_t i = 0; i < v->v.arr.count; i++)
					{
						uint64_t	slen;

						if (v->v.arr.nbytes - pos < 8)
							return p3_error(err, P3_ERR_INVALID_ARG,
											"GGUF writer: packed string array is too short");
						memcpy(&slen, v->v.arr.data + pos, 8);
						pos += 8;
						if (slen > v->v.arr.nbytes - pos)
							return p3_error(err, P3_ERR_INVALID_ARG,
											"GGUF writer: packed string array is too short");
						pos += slen;
					}
					if (pos != v->v.arr.nbytes)
						return p3_error(err, P3_ERR_INVALID_ARG,
										"GGUF writer: packed string array has %llu extra bytes",
										(unsigned long long) (v->v.arr.nbytes - pos));
				}
				else
				{
					uint64_t	expect;

					if (__builtin_mul_overflow(v->v.arr.count, (uint64_t) scalar_size(et), &expect) ||
						expect != v->v.arr.nbytes)
						return p3_error(err, P3_ERR_INVALID_ARG,
										"GGUF writer: array of %llu %s values cannot span %llu bytes",
										(unsigned long long) v->v.arr.count, p3_gguf_type_name(et),
										(unsigned long long) v->v.arr.nbytes);
					if (et == P3_GGUF_BOOL)
						for (uint64_t i = 0; i < v->v.arr.count; i++)
							if (v->v.arr.data[i] > 1)
								return p3_error(err, P3_ERR_INVALID_ARG,
												"GGUF writer: bool array element %llu is %u",
												(unsigned long long) i, v->v.arr.data[i]);
				}
				if (v->v.arr.nbytes > SIZE_MAX - 12)
					return p3_error(err, P3_ERR_NOMEM, "GGUF writer: array too large");
				buf_u32(&b, et);
				buf_u64(&b, v->v.arr.count);
				buf_append(&b, v->v.arr.data, (size_t) v->v.arr.nbytes);
				break;
			}
		default:
			break;
	}
	if (b.failed)
	{
		free(b.data);
		return p3_error(err, P3_ERR_NOMEM, "out of memory encoding metadata key \"%.*s\"",
						(int) (len > MAX_KEY_BYTES ? MAX_KEY_BYTES : len), key);
	}
	st = add_encoded(w, key, len, v->type, b.data, b.len, err);
	if (st != P3_OK)
		return st;
	if (is_alignment)
		w->alignment = (uint32_t) v->v.u64;
	return P3_OK;
}

/* NUL-terminated key helper. */
static P3Status
add_value_c(P3GGUFWriter *w, const char *key, const P3GGUFValue *v, P3Error *err)
{
	if (key == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: key is NULL");
	return add_value(w, key, strlen(key), v, err);
}

P3Status
p3_gguf_writer_add_value(P3GGUFWriter *w, const char *key, const P3GGUFValue *value, P3Error *err)
{
	return add_value_c(w, key, value, err);
}

P3Status
p3_gguf_writer_set_alignment(P3GGUFWriter *w, uint32_t alignment, P3Error *err)
{
	ptrdiff_t	i;

	if (w == NULL || alignment == 0 || (alignment & (alignment - 1)) != 0)
		return p3_error(err, P3_ERR_INVALID_ARG,
						"GGUF writer: alignment %u is not a power of two", alignment);
	i = find_key(w, "general.alignment", strlen("general.alignment"));
	if (i >= 0)
	{
		/* the entry was added by us or validated as a u32: update in place */
		memcpy(w->kv[i].payload, &alignment, 4);
		w->alignment = alignment;
		return P3_OK;
	}
	return p3_gguf_writer_add_u32(w, "general.alignment", alignment, err);
}

P3Status
p3_gguf_writer_add_u32(P3GGUFWriter *w, const char *key, uint32_t v, P3Error *err)
{
	P3GGUFValue val = {.type = P3_GGUF_UINT32, .v.u64 = v};

	return add_value_c(w, key, &val, err);
}

P3Status
p3_gguf_writer_add_i32(P3GGUFWriter *w, const char *key, int32_t v, P3Error *err)
{
	P3GGUFValue val = {.type = P3_GGUF_INT32, .v.i64 = v};

	return add_value_c(w, key, &val, err);
}

P3Status
p3_gguf_writer_add_u64(P3GGUFWriter *w, const char *key, uint64_t v, P3Error *err)
{
	P3GGUFValue val = {.type = P3_GGUF_UINT64, .v.u64 = v};

	return add_value_c(w, key, &val, err);
}

P3Status
p3_gguf_writer_add_f32(P3GGUFWriter *w, const char *key, float v, P3Error *err)
{
	P3GGUFValue val = {.type = P3_GGUF_FLOAT32, .v.f64 = v};

	return add_value_c(w, key, &val, err);
}

P3Status
p3_gguf_writer_add_bool(P3GGUFWriter *w, const char *key, bool v, P3Error *err)
{
	P3GGUFValue val = {.type = P3_GGUF_BOOL, .v.u64 = v ? 1 : 0};

	return add_value_c(w, key, &val, err);
}

P3Status
p3_gguf_writer_add_string(P3GGUFWriter *w, const char *key, const char *v, P3Error *err)
{
	P3GGUFValue val = {.type = P3_GGUF_STRING};

	if (v == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: string value is NULL");
	val.v.str.ptr = v;
	val.v.str.len = strlen(v);
	return add_value_c(w, key, &val, err);
}

P3Status
p3_gguf_writer_add_array(P3GGUFWriter *w, const char *key, P3GGUFType elem_type,
						 const void *data, uint64_t count, P3Error *err)
{
	P3GGUFValue val = {.type = P3_GGUF_ARRAY};
	size_t		esize = scalar_size(elem_type);

	if (esize == 0)
		return p3_error(err, P3_ERR_INVALID_ARG,
						"GGUF writer: array element type %s is not a scalar type",
						p3_gguf_type_name(elem_type));
	if (count > SIZE_MAX / esize)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: array of %llu elements is too large",
						(unsigned long long) count);
	val.v.arr.elem_type = elem_type;
	val.v.arr.count = count;
	val.v.arr.data = data;
	val.v.arr.nbytes = count * esize;
	return add_value_c(w, key, &val, err);
}

P3Status
p3_gguf_writer_add_string_array(P3GGUFWriter *w, const char *key, const char *const *strs,
								const uint64_t *lens, uint64_t count, P3Error *err)
{
	ByteBuf		b = {0};
	P3Status	st;

	if (strs == NULL && count > 0)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: string array is NULL");
	if (key == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: key is NULL");
	buf_u32(&b, P3_GGUF_STRING);
	buf_u64(&b, count);
	for (uint64_t i = 0; i < count && !b.failed; i++)
	{
		uint64_t	len = lens ? lens[i] : (strs[i] ? strlen(strs[i]) : 0);

		if (strs[i] == NULL && len > 0)
		{
			free(b.data);
			return p3_error(err, P3_ERR_INVALID_ARG,
							"GGUF writer: string %llu of array \"%s\" is NULL",
							(unsigned long long) i, key);
		}
		buf_string(&b, strs[i], len);
	}
	if (b.failed)
	{
		free(b.data);
		return p3_error(err, P3_ERR_NOMEM, "out of memory encoding string array \"%s\"", key);
	}
	st = add_encoded(w, key, strlen(key), P3_GGUF_ARRAY, b.data, b.len, err);
	return st;
}

P3Status
p3_gguf_writer_copy_kv(P3GGUFWriter *w, const P3GGUF *src, const char *prefix, P3Error *err)
{
	size_t		plen;

	if (w == NULL || src == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: writer or source is NULL");
	plen = prefix ? strlen(prefix) : 0;
	for (uint64_t i = 0; i < src->n_kv; i++)
	{
		const P3GGUFKV *kv = &src->kv[i];
		P3Status	st;

		if (kv->key.len < plen || memcmp(kv->key.ptr, prefix, plen) != 0)
			continue;
		st = add_value(w, kv->key.ptr, (size_t) kv->key.len, &kv->value, err);
		if (st != P3_OK)
			return st;
	}
	return P3_OK;
}

/* Validate a tensor's name and shape and append its info; *out is the new entry. */
static P3Status
add_tensor_info(P3GGUFWriter *w, const char *name, uint32_t type, uint32_t n_dims,
				const int64_t *ne, WriterTensor **out, P3Error *err)
{
	const P3TypeTraits *traits;
	size_t		name_len;
	uint64_t	count = 1;
	uint64_t	nbytes;
	size_t		row;
	WriterTensor *t;

	if (w == NULL || name == NULL || ne == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: writer, name or dims is NULL");
	name_len = strlen(name);
	if (name_len == 0 || name_len > P3_GGUF_MAX_NAME)
		return p3_error(err, P3_ERR_INVALID_ARG,
						"GGUF writer: tensor name \"%s\" has %zu bytes (expected 1 to %d)",
						name, name_len, P3_GGUF_MAX_NAME);
	for (size_t i = 0; i < w->n_tensors; i++)
		if (strcmp(w->tensors[i].name, name) == 0)
			return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: duplicate tensor name \"%s\"", name);
	traits = p3_type_traits(type);
	if (traits == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: tensor \"%s\" has unknown type %u",
						name, type);
	if (n_dims < 1 || n_dims > P3_GGUF_MAX_DIMS)
		return p3_error(err, P3_ERR_INVALID_ARG,
						"GGUF writer: tensor \"%s\" has %u dimensions (expected 1 to %d)",
						name, n_dims, P3_GGUF_MAX_DIMS);
	for (uint32_t d = 0; d < n_dims; d++)
		if (ne[d] < 1 || __builtin_mul_overflow(count, (uint64_t) ne[d], &count) ||
			count >= MAX_TENSOR_ELEMENTS)
			return p3_error(err, P3_ERR_INVALID_ARG,
							"GGUF writer: tensor \"%s\" has invalid dimension %u = %lld",
							name, d, (long long) ne[d]);
	if (!p3_row_bytes(type, ne[0], &row))
		return p3_error(err, P3_ERR_INVALID_ARG,
						"GGUF writer: tensor \"%s\": row length %lld is not a multiple of the %s block size %u",
						name, (long long) ne[0], traits->name, traits->block_size);
	nbytes = row;
	for (uint32_t d = 1; d < n_dims; d++)
		if (__builtin_mul_overflow(nbytes, (uint64_t) ne[d], &nbytes))
			return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: tensor \"%s\" is too large", name);
	if (nbytes > SIZE_MAX / 2)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: tensor \"%s\" is too large", name);

	if (w->n_tensors == w->cap_tensors)
	{
		size_t		cap = w->cap_tensors ? w->cap_tensors * 2 : 32;
		WriterTensor *p = realloc(w->tensors, cap * sizeof(*p));

		if (p == NULL)
			return p3_error(err, P3_ERR_NOMEM, "out of memory adding tensor \"%s\"", name);
		w->tensors = p;
		w->cap_tensors = cap;
	}
	t = &w->tensors[w->n_tensors];
	memset(t, 0, sizeof(*t));
	memcpy(t->name, name, name_len + 1);
	t->type = type;
	t->n_dims = n_dims;
	for (int d = 0; d < P3_GGUF_MAX_DIMS; d++)
		t->ne[d] = d < (int) n_dims ? ne[d] : 1;
	t->nbytes = nbytes;
	*out = t;
	return P3_OK;
}

P3Status
p3_gguf_writer_add_tensor(P3GGUFWriter *w, const char *name, uint32_t type,
						  uint32_t n_dims, const int64_t *ne, const void *data, P3Error *err)
{
	WriterTensor *t;
	P3Status	st;

	if (data == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: tensor \"%s\" has no data",
						name ? name : "(null)");
	st = add_tensor_info(w, name, type, n_dims, ne, &t, err);
	if (st != P3_OK)
		return st;
	t->data = malloc((size_t) t->nbytes);
	if (t->data == NULL)
		return p3_error(err, P3_ERR_NOMEM, "out of memory copying tensor \"%s\" (%llu bytes)",
						name, (unsigned long long) t->nbytes);
	memcpy(t->data, data, (size_t) t->nbytes);
	w->n_tensors++;
	return P3_OK;
}

P3Status
p3_gguf_writer_add_tensor_deferred(P3GGUFWriter *w, const char *name, uint32_t type,
								   uint32_t n_dims, const int64_t *ne,
								   P3GGUFFillFn fill, void *user, P3Error *err)
{
	WriterTensor *t;
	P3Status	st;

	if (fill == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: tensor \"%s\" has no fill function",
						name ? name : "(null)");
	st = add_tensor_info(w, name, type, n_dims, ne, &t, err);
	if (st != P3_OK)
		return st;
	t->fill = fill;
	t->user = user;
	w->n_tensors++;
	return P3_OK;
}

/*
 * Assign tensor offsets and serialise everything before the data section.
 * On success *hdr holds the header (caller frees), *data_offset is where the
 * data starts and *total the file size.
 */
static P3Status
layout(P3GGUFWriter *w, ByteBuf *hdr, uint64_t *data_offset, uint64_t *total, P3Error *err)
{
	uint64_t	off = 0;

	memset(hdr, 0, sizeof(*hdr));
	for (size_t i = 0; i < w->n_tensors; i++)
	{
		WriterTensor *t = &w->tensors[i];

		t->offset = off;
		if (__builtin_add_overflow(off, t->nbytes, &off) || !align_up(off, w->alignment, &off))
			return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: tensor data too large");
	}

	buf_u32(hdr, P3_GGUF_MAGIC);
	buf_u32(hdr, 3);
	buf_u64(hdr, w->n_tensors);
	buf_u64(hdr, w->n_kv);
	for (size_t i = 0; i < w->n_kv; i++)
	{
		buf_string(hdr, w->kv[i].key, w->kv[i].key_len);
		buf_u32(hdr, w->kv[i].type);
		buf_append(hdr, w->kv[i].payload, w->kv[i].payload_len);
	}
	for (size_t i = 0; i < w->n_tensors; i++)
	{
		const WriterTensor *t = &w->tensors[i];

		buf_string(hdr, t->name, strlen(t->name));
		buf_u32(hdr, t->n_dims);
		for (uint32_t d = 0; d < t->n_dims; d++)
			buf_u64(hdr, (uint64_t) t->ne[d]);
		buf_u32(hdr, t->type);
		buf_u64(hdr, t->offset);
	}
	if (hdr->failed)
	{
		free(hdr->data);
		hdr->data = NULL;
		return p3_error(err, P3_ERR_NOMEM, "out of memory serialising the GGUF header");
	}
	if (!align_up(hdr->len, w->alignment, data_offset) ||
		__builtin_add_overflow(*data_offset, off, total))
	{
		free(hdr->data);
		hdr->data = NULL;
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: file too large");
	}
	return P3_OK;
}

/* Call a deferred tensor's fill function on dst (zeroed first). */
static P3Status
fill_tensor(const WriterTensor *t, void *dst, P3Error *err)
{
	P3Status	st;

	memset(dst, 0, (size_t) t->nbytes);
	p3_error_clear(err);
	st = t->fill(t->user, t->name, dst, (size_t) t->nbytes, err);
	if (st != P3_OK && err != NULL && err->status == P3_OK)
		p3_error(err, st, "filling tensor \"%s\" failed", t->name);
	return st;
}

P3Status
p3_gguf_writer_to_buffer(P3GGUFWriter *w, uint8_t **buf, size_t *size, P3Error *err)
{
	ByteBuf		hdr;
	uint64_t	data_offset;
	uint64_t	total;
	uint8_t    *out;
	P3Status	st;

	if (w == NULL || buf == NULL || size == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: NULL argument to to_buffer");
	*buf = NULL;
	*size = 0;
	st = layout(w, &hdr, &data_offset, &total, err);
	if (st != P3_OK)
		return st;
	if (total > SIZE_MAX)
	{
		free(hdr.data);
		return p3_error(err, P3_ERR_NOMEM, "GGUF image of %llu bytes does not fit in memory",
						(unsigned long long) total);
	}
	out = calloc(1, total ? (size_t) total : 1);
	if (out == NULL)
	{
		free(hdr.data);
		return p3_error(err, P3_ERR_NOMEM, "out of memory for a GGUF image of %llu bytes",
						(unsigned long long) total);
	}
	memcpy(out, hdr.data, hdr.len);
	free(hdr.data);
	for (size_t i = 0; i < w->n_tensors; i++)
	{
		const WriterTensor *t = &w->tensors[i];
		uint8_t    *dst = out + data_offset + t->offset;

		if (t->data)
			memcpy(dst, t->data, (size_t) t->nbytes);
		else if ((st = fill_tensor(t, dst, err)) != P3_OK)
		{
			free(out);
			return st;
		}
	}
	*buf = out;
	*size = (size_t) total;
	return P3_OK;
}

/* write() all of src, retrying on EINTR and short writes. */
static bool
write_all(int fd, const void *src, size_t n)
{
	const uint8_t *p = src;

	while (n > 0)
	{
		ssize_t		r = write(fd, p, n > (1u << 30) ? (1u << 30) : n);

		if (r < 0)
		{
			if (errno == EINTR)
				continue;
			return false;
		}
		if (r == 0)
		{
			errno = EIO;
			return false;
		}
		p += r;
		n -= (size_t) r;
	}
	return true;
}

/* Write n zero bytes (n < alignment). */
static bool
write_zeros(int fd, uint64_t n)
{
	static const uint8_t zeros[4096];

	while (n > 0)
	{
		size_t		k = n > sizeof(zeros) ? sizeof(zeros) : (size_t) n;

		if (!write_all(fd, zeros, k))
			return false;
		n -= k;
	}
	return true;
}

P3Status
p3_gguf_writer_write_file(P3GGUFWriter *w, const char *path, P3Error *err)
{
	ByteBuf		hdr;
	uint64_t	data_offset;
	uint64_t	total;
	uint64_t	pos;
	uint64_t	scratch_size = 0;
	uint8_t    *scratch = NULL;
	char	   *tmp;
	int			fd;
	P3Status	st;

	if (w == NULL || path == NULL)
		return p3_error(err, P3_ERR_INVALID_ARG, "GGUF writer: NULL argument to write_file");
	st = layout(w, &hdr, &data_offset, &total, err);
	if (st != P3_OK)
		return st;

	for (size_t i = 0; i < w->n_tensors; i++)
		if (w->tensors[i].data == NULL && w->tensors[i].nbytes > scratch_size)
			scratch_size = w->tensors[i].nbytes;
	if (scratch_size > 0 && (scratch = malloc((size_t) scratch_size)) == NULL)
	{
		free(hdr.data);
		return p3_error(err, P3_ERR_NOMEM, "out of memory for a tensor buffer of %llu bytes",
						(unsigned long long) scratch_size);
	}

	tmp = malloc(strlen(path) + 5);
	if (tmp == NULL)
	{
		free(hdr.data);
		free(scratch);
		return p3_error(err, P3_ERR_NOMEM, "out of memory");
	}
	sprintf(tmp, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
	{
		st = p3_error_errno_kind(err, P3_ERR_IO, P3_KIND_FILE_CREATE, "could not create file \"%s\"", tmp);
		free(tmp);
		free(hdr.data);
		free(scratch);
		return st;
	}

	if (!write_all(fd, hdr.data, hdr.len) || !write_zeros(fd, data_offset - hdr.len))
		goto write_error;
	pos = 0;
	for (size_t i = 0; i < w->n_tensors; i++)
	{
		const WriterTensor *t = &w->tensors[i];
		const void *src = t->data;

		if (src == NULL)
		{
			if ((st = fill_tensor(t, scratch, err)) != P3_OK)
				goto fail;
			src = scratch;
		}
		if (!write_zeros(fd, t->offset - pos) || !write_all(fd, src, (size_t) t->nbytes))
			goto write_error;
		pos = t->offset + t->nbytes;
	}
	/* pad the last tensor too, as ggml does */
	if (!write_zeros(fd, total - data_offset - pos))
		goto write_error;
	if (fsync(fd) != 0)
		goto write_error;
	if (close(fd) != 0)
	{
		fd = -1;
		goto write_error;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
	{
		st = p3_error_errno_kind(err, P3_ERR_IO, P3_KIND_FILE_RENAME, "could not rename \"%s\" to \"%s\"",
								 tmp, path);
		goto fail;
	}
	free(tmp);
	free(hdr.data);
	free(scratch);
	return P3_OK;

write_error:
	st = p3_error_errno_kind(err, P3_ERR_IO, P3_KIND_FILE_WRITE, "could not write file \"%s\"", tmp);
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	free(hdr.data);
	free(scratch);
	return st;
}
