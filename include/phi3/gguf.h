/*
 * phi3/gguf.h — a read-only, validating view of a GGUF file.
 *
 * The file is mapped PROT_READ / MAP_SHARED, so every process that maps it
 * shares one physical copy through the page cache, and a forked child
 * (a PostgreSQL backend forked by a postmaster that preloaded us) inherits
 * the mapping.  Nothing from the file is copied: keys, strings and tensor
 * data are pointers into the mapping.
 *
 * p3_gguf_open / p3_gguf_parse validate the whole structure before
 * returning, with overflow-safe arithmetic against the file size: magic,
 * version (2 or 3), counts, key and string lengths, value types, array
 * element types and counts, tensor name length and uniqueness, dims,
 * tensor types, block-size divisibility, alignment, and that every tensor's
 * byte range lies inside the data section.  After a successful open, every
 * pointer in P3GGUF, P3GGUFKV and P3GGUFTensor can be dereferenced within
 * its stated length without further checks.  Any defect yields
 * P3_ERR_FORMAT (or P3_ERR_UNSUPPORTED for a tensor type the engine does
 * not know) and a message naming the defect, e.g.
 *     tensor "blk.3.ffn_down.weight" extends past end of file
 *     (offset 123, size 456, file 400)
 *
 * GGUF layout (little-endian, packed):
 *     "GGUF" u32 version  u64 n_tensors  u64 n_kv
 *     n_kv × { string key, u32 value_type, value }
 *     n_tensors × { string name, u32 n_dims, u64 dims[n_dims], u32 type, u64 offset }
 *     zero padding to general.alignment (default 32)
 *     tensor data; tensor i at data_offset + offset_i
 * A string is a u64 length followed by that many bytes, no terminator.
 */
#ifndef PHI3_GGUF_H
#define PHI3_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "phi3/status.h"

#ifdef __cplusplus
extern "C" {
#endif

#define P3_GGUF_MAGIC			0x46554747u		/* "GGUF" read as little-endian u32 */
#define P3_GGUF_DEFAULT_ALIGNMENT 32
#define P3_GGUF_MAX_DIMS		4
#define P3_GGUF_MAX_NAME		63		/* tensor name bytes, excluding the NUL */

/* Metadata value types, as stored on disk. */
typedef enum P3GGUFType
{
	P3_GGUF_UINT8 = 0,
	P3_GGUF_INT8 = 1,
	P3_GGUF_UINT16 = 2,
	P3_GGUF_INT16 = 3,
	P3_GGUF_UINT32 = 4,
	P3_GGUF_INT32 = 5,
	P3_GGUF_FLOAT32 = 6,
	P3_GGUF_BOOL = 7,
	P3_GGUF_STRING = 8,
	P3_GGUF_ARRAY = 9,
	P3_GGUF_UINT64 = 10,
	P3_GGUF_INT64 = 11,
	P3_GGUF_FLOAT64 = 12,
	P3_GGUF_TYPE_COUNT
} P3GGUFType;

/* A string inside the file: NOT NUL-terminated. */
typedef struct P3GGUFString
{
	const char *ptr;
	uint64_t	len;
} P3GGUFString;

/*
 * One metadata value.  Scalars are decoded; for arrays, `data` points at
 * the packed elements in the file (for arrays of strings, at the first
 * element's u64 length) and `count` is the number of elements.  Arrays of
 * arrays are rejected at parse time.
 */
typedef struct P3GGUFValue
{
	P3GGUFType	type;
	union
	{
		uint64_t	u64;		/* UINT8/16/32/64 (zero-extended), BOOL (0/1) */
		int64_t		i64;		/* INT8/16/32/64 (sign-extended) */
		double		f64;		/* FLOAT32/64 */
		P3GGUFString str;		/* STRING */
		struct
		{
			P3GGUFType	elem_type;
			uint64_t	count;
			const uint8_t *data;	/* packed elements */
			uint64_t	nbytes;		/* bytes spanned by the elements */
		}			arr;		/* ARRAY */
	}			v;
} P3GGUFValue;

typedef struct P3GGUFKV
{
	P3GGUFString key;
	P3GGUFValue value;
} P3GGUFKV;

typedef struct P3GGUFTensor
{
	char		name[P3_GGUF_MAX_NAME + 1];	/* NUL-terminated copy */
	uint32_t	n_dims;
	int64_t		ne[P3_GGUF_MAX_DIMS];	/* ne[0] = row length (contiguous); unused dims = 1 */
	uint32_t	type;			/* ggml type code (see phi3/quant.h) */
	uint64_t	offset;			/* from the start of the data section */
	uint64_t	nbytes;			/* exact byte size of the data */
	const void *data;			/* = base + data_offset + offset, validated */
} P3GGUFTensor;

typedef struct P3GGUF
{
	const uint8_t *base;		/* start of the file bytes (mapping or caller buffer) */
	size_t		size;			/* file size in bytes */
	bool		mapped;			/* true when base is our own mmap */
	uint32_t	version;
	uint32_t	alignment;
	uint64_t	data_offset;	/* start of the tensor data section */
	uint64_t	n_kv;
	P3GGUFKV   *kv;				/* n_kv entries, in file order */
	uint64_t	n_tensors;
	P3GGUFTensor *tensors;		/* n_tensors entries, in file order */
	/* identity of the mapped file, to notice that it was replaced */
	dev_t		st_dev;
	ino_t		st_ino;
	int64_t		st_mtime_ns;
	char	   *path;			/* copy of the path given to p3_gguf_open, or NULL */
} P3GGUF;

/*
 * Map and validate a GGUF file.  On success *out owns the mapping; release
 * it with p3_gguf_close.  On failure *out is NULL and err says why
 * (P3_ERR_IO with errno for open/stat/mmap failures, err->kind saying
 * which: P3_KIND_FILE_OPEN, _STAT, _MAP, _TOO_LARGE).
 */
P3Status	p3_gguf_open(const char *path, P3GGUF **out, P3Error *err);

/*
 * Validate a GGUF image already in memory (tests, fuzzing).  The buffer is
 * not copied and must outlive the returned object.
 */
P3Status	p3_gguf_parse(const void *buf, size_t size, P3GGUF **out, P3Error *err);

/* Unmap (if mapped) and free.  NULL is allowed. */
void		p3_gguf_close(P3GGUF *gguf);

/* Lookups by exact name; NULL when absent. */
const P3GGUFKV *p3_gguf_find_kv(const P3GGUF *gguf, const char *key);
const P3GGUFTensor *p3_gguf_find_tensor(const P3GGUF *gguf, const char *name);

/* Name of a metadata value type ("uint32", "array", ...; "invalid" if out of range). */
const char *p3_gguf_type_name(uint32_t type);

/*
 * Typed getters.  Each returns P3_OK and sets *out when the key exists with
 * a compatible type, P3_ERR_FORMAT with a message naming the key and the
 * type found when the type is wrong or the value does not fit, and
 * P3_ERR_INVALID_ARG *without touching err* when the key is absent, so a
 * caller can apply a default:
 *     st = p3_gguf_get_u32(g, "phi3.rope.dimension_count", &n_rot, err);
 *     if (st == P3_ERR_INVALID_ARG) n_rot = head_dim; else if (st) return st;
 * Integer getters accept any integer type whose value fits (GGUF writers
 * disagree on u32 vs u64 vs i32); the float getter accepts FLOAT32/64.
 */
P3Status	p3_gguf_get_u32(const P3GGUF *gguf, const char *key, uint32_t *out, P3Error *err);
P3Status	p3_gguf_get_i64(const P3GGUF *gguf, const char *key, int64_t *out, P3Error *err);
P3Status	p3_gguf_get_f32(const P3GGUF *gguf, const char *key, float *out, P3Error *err);
P3Status	p3_gguf_get_bool(const P3GGUF *gguf, const char *key, bool *out, P3Error *err);
P3Status	p3_gguf_get_string(const P3GGUF *gguf, const char *key, P3GGUFString *out, P3Error *err);
/* An array of elem_type (any count); *out points at the value. */
P3Status	p3_gguf_get_array(const P3GGUF *gguf, const char *key, P3GGUFType elem_type,
							  const P3GGUFValue **out, P3Error *err);

/*
 * Iterate over an array of strings that p3_gguf_parse validated:
 *     const uint8_t *cur = arr->v.arr.data;
 *     for (i = 0; i < arr->v.arr.count; i++) { P3GGUFString s = p3_gguf_next_string(&cur); ... }
 */
P3GGUFString p3_gguf_next_string(const uint8_t **cursor);

/* Element i of a validated numeric array (FLOAT32/INT32/UINT32/...), converted. */
double		p3_gguf_array_f64(const P3GGUFValue *arr, uint64_t i);
int64_t		p3_gguf_array_i64(const P3GGUFValue *arr, uint64_t i);

/* Compare a file string with a C string. */
bool		p3_gguf_string_eq(P3GGUFString s, const char *cstr);

/* ------------------------------------------------------------------------
 * Writer: builds a GGUF v3 file in memory, then writes it.  Used by
 * phi3-mkmodel and the tests (corrupted-file tests start from a valid image).
 * All functions return P3_ERR_NOMEM on allocation failure and
 * P3_ERR_INVALID_ARG on misuse (duplicate key or tensor, bad dims).
 * Tensor data is copied in at add time and laid out with the alignment.
 * ------------------------------------------------------------------------ */
typedef struct P3GGUFWriter P3GGUFWriter;

P3Status	p3_gguf_writer_new(P3GGUFWriter **out, P3Error *err);
void		p3_gguf_writer_free(P3GGUFWriter *w);
P3Status	p3_gguf_writer_set_alignment(P3GGUFWriter *w, uint32_t alignment, P3Error *err);	/* also writes general.alignment */
P3Status	p3_gguf_writer_add_u32(P3GGUFWriter *w, const char *key, uint32_t v, P3Error *err);
P3Status	p3_gguf_writer_add_i32(P3GGUFWriter *w, const char *key, int32_t v, P3Error *err);
P3Status	p3_gguf_writer_add_u64(P3GGUFWriter *w, const char *key, uint64_t v, P3Error *err);
P3Status	p3_gguf_writer_add_f32(P3GGUFWriter *w, const char *key, float v, P3Error *err);
P3Status	p3_gguf_writer_add_bool(P3GGUFWriter *w, const char *key, bool v, P3Error *err);
P3Status	p3_gguf_writer_add_string(P3GGUFWriter *w, const char *key, const char *v, P3Error *err);
/* Arrays of numbers: elem_type is a scalar type; data holds count packed little-endian elements. */
P3Status	p3_gguf_writer_add_array(P3GGUFWriter *w, const char *key, P3GGUFType elem_type,
									 const void *data, uint64_t count, P3Error *err);
/* Arrays of strings: strs[i] with byte length lens[i] (lens NULL: NUL-terminated). */
P3Status	p3_gguf_writer_add_string_array(P3GGUFWriter *w, const char *key, const char *const *strs,
											const uint64_t *lens, uint64_t count, P3Error *err);
/*
 * Any metadata value, e.g. the scalar types without a helper above (uint8,
 * int8, uint16, int16, int64, float64): scalars are taken from v.u64 /
 * v.i64 / v.f64 according to value->type (P3_ERR_INVALID_ARG if the value
 * does not fit the type), strings from v.str, arrays from v.arr with the
 * elements packed as in a file (what p3_gguf_parse returns; arrays of
 * strings as u64 length + bytes each).
 */
P3Status	p3_gguf_writer_add_value(P3GGUFWriter *w, const char *key, const P3GGUFValue *value,
									 P3Error *err);
/* Copy every metadata entry of src whose key starts with prefix ("" = all). */
P3Status	p3_gguf_writer_copy_kv(P3GGUFWriter *w, const P3GGUF *src, const char *prefix, P3Error *err);
/* Add a tensor; data is nbytes = row_size(type, ne[0]) * ne[1] * ne[2] * ne[3] bytes. */
P3Status	p3_gguf_writer_add_tensor(P3GGUFWriter *w, const char *name, uint32_t type,
									  uint32_t n_dims, const int64_t *ne, const void *data, P3Error *err);
/*
 * Add a tensor whose bytes are produced at write time (a real-dimension
 * model is gigabytes; it is never held in memory whole).  fill is called
 * once, during to_buffer / write_file, with a buffer of exactly the
 * tensor's byte size; it returns P3_OK or an error that aborts the write.
 */
typedef P3Status (*P3GGUFFillFn) (void *user, const char *name, void *dst, size_t nbytes, P3Error *err);
P3Status	p3_gguf_writer_add_tensor_deferred(P3GGUFWriter *w, const char *name, uint32_t type,
											   uint32_t n_dims, const int64_t *ne,
											   P3GGUFFillFn fill, void *user, P3Error *err);
/* Serialise to a malloc'ed buffer (caller frees) ... */
P3Status	p3_gguf_writer_to_buffer(P3GGUFWriter *w, uint8_t **buf, size_t *size, P3Error *err);
/* ... or to a file (written to path.tmp, then renamed). */
P3Status	p3_gguf_writer_write_file(P3GGUFWriter *w, const char *path, P3Error *err);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_GGUF_H */
