/*
 * phi3/quant.h — tensor element types: block layouts, conversion between
 * f32 and every stored format, and the scalar reference dot products.
 *
 * Type codes are ggml's, as stored in GGUF tensor infos.  A row of n
 * elements of a block type is n / block_size consecutive blocks; n must be
 * a multiple of block_size.
 *
 * Everything in this header is the *reference*: plain scalar C, written
 * for clarity, bit-for-bit deterministic on every machine.  Fast kernels
 * (SIMD, VNNI, threads) live in phi3/kernels.h and are tested against these.
 *
 * Two ways to multiply a quantized weight row with an activation vector:
 *   - p3_dot_f32_ref: dequantize the weights to f32 and take an f32 dot
 *     product with f32 activations (the model's semantics, as in numpy).
 *   - p3_vec_dot_ref: quantize the activations once to the weight type's
 *     "vec_dot_type" (Q8_0, Q8_1 or Q8_K) and take an integer dot product
 *     per block, scaled in f32 — how llama.cpp computes on CPU; the form
 *     the integer SIMD kernels accelerate.
 * Float formats (F32, F16, BF16) have vec_dot_type F32 for our purposes:
 * the activations stay f32.
 */
#ifndef PHI3_QUANT_H
#define PHI3_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ggml type codes (GGUF tensor info "type").  Gaps are removed types. */
typedef enum P3Type
{
	P3_TYPE_F32 = 0,
	P3_TYPE_F16 = 1,
	P3_TYPE_Q4_0 = 2,
	P3_TYPE_Q4_1 = 3,
	P3_TYPE_Q5_0 = 6,
	P3_TYPE_Q5_1 = 7,
	P3_TYPE_Q8_0 = 8,
	P3_TYPE_Q8_1 = 9,
	P3_TYPE_Q2_K = 10,
	P3_TYPE_Q3_K = 11,
	P3_TYPE_Q4_K = 12,
	P3_TYPE_Q5_K = 13,
	P3_TYPE_Q6_K = 14,
	P3_TYPE_Q8_K = 15,
	P3_TYPE_IQ2_XXS = 16,
	P3_TYPE_IQ2_XS = 17,
	P3_TYPE_IQ3_XXS = 18,
	P3_TYPE_IQ1_S = 19,
	P3_TYPE_IQ4_NL = 20,
	P3_TYPE_IQ3_S = 21,
	P3_TYPE_IQ2_S = 22,
	P3_TYPE_IQ4_XS = 23,
	P3_TYPE_I8 = 24,
	P3_TYPE_I16 = 25,
	P3_TYPE_I32 = 26,
	P3_TYPE_I64 = 27,
	P3_TYPE_F64 = 28,
	P3_TYPE_IQ1_M = 29,
	P3_TYPE_BF16 = 30,
	P3_TYPE_TQ1_0 = 34,
	P3_TYPE_TQ2_0 = 35,
	P3_TYPE_MXFP4 = 39,
	P3_TYPE_COUNT = 40			/* one past the largest code we know */
} P3Type;

#define P3_QK_K 256				/* elements per K-quant super-block */

typedef struct P3TypeTraits
{
	const char *name;			/* ggml's name: "f32", "q4_K", ... */
	uint32_t	block_size;		/* elements per block (1 for float types) */
	uint32_t	type_size;		/* bytes per block */
	bool		weights_ok;		/* the engine can compute with weights of this type */
	P3Type		vec_dot_type;	/* activation format for p3_vec_dot_ref */
} P3TypeTraits;

/*
 * Traits of a type code, or NULL for a code that is not a ggml type at all.
 * Known-but-unsupported types (IQ2_XXS, ...) have traits with weights_ok =
 * false, so a GGUF containing them still validates and the model loader can
 * name the tensor and the type in its error.
 */
const P3TypeTraits *p3_type_traits(uint32_t type);

/* ggml's name of a type code, or "unknown" for a code with no traits. */
const char *p3_type_name(uint32_t type);

/*
 * Bytes of a row of n elements.  Returns false when the type is unknown or
 * n is not a multiple of the block size (or n < 0).
 */
bool		p3_row_bytes(uint32_t type, int64_t n, size_t *out);

/* ---- scalar conversions (IEEE binary16 with subnormals; bfloat16) ---- */
float		p3_fp16_to_fp32(uint16_t h);
uint16_t	p3_fp32_to_fp16(float f);		/* round to nearest even; inf/nan kept */
float		p3_bf16_to_fp32(uint16_t h);
uint16_t	p3_fp32_to_bf16(float f);		/* round to nearest even; nan stays a quiet nan */

/*
 * Dequantize a row of n elements of `type` (any type with weights_ok, plus
 * Q8_1 and Q8_K) to f32.  n must be a multiple of the block size.
 */
void		p3_dequantize_row_ref(uint32_t type, const void *src, float *dst, int64_t n);

/*
 * Quantize a row of n f32 values into `type` (every weights_ok type, plus
 * Q8_1 and Q8_K): the encoders a converter would use, deterministic.  For
 * Q8_0 / Q8_1 / Q8_K this is also the activation quantization used by
 * p3_vec_dot_ref.  n must be a multiple of the block size.
 */
void		p3_quantize_row_ref(uint32_t type, const float *src, void *dst, int64_t n);

/*
 * Quantize a row of activations to Q8_0, Q8_1 or Q8_K as llama.cpp's x86
 * CPU build does before its integer dot products (spec 2.4): Q8_0 / Q8_1
 * take the multiplier 127 / amax and round to nearest even (ggml's scalar
 * reference, p3_quantize_row_ref, takes 1 / d and roundf); Q8_K is
 * p3_quantize_row_ref's.  The reference kernel set's activation quantizer;
 * every fast set gives the same bits.  Other types: p3_quantize_row_ref.
 */
void		p3_quantize_act_row_ref(uint32_t type, const float *src, void *dst, int64_t n);

/*
 * f32 dot product of a weight row of `type` with f32 activations x:
 * sum_i dequant(w)[i] * x[i], accumulated in f32 in element order.
 */
float		p3_dot_f32_ref(uint32_t type, const void *w, const float *x, int64_t n);

/*
 * Dot product of a weight row of `type` with activations already quantized
 * to p3_type_traits(type)->vec_dot_type (by p3_quantize_act_row_ref or
 * p3_quantize_row_ref: any codes do): integer
 * sums per block, scaled in f32, as llama.cpp's generic CPU code does.
 * For F32 / F16 / BF16 weights `a` is an f32 vector.
 */
float		p3_vec_dot_ref(uint32_t type, const void *w, const void *a, int64_t n);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_QUANT_H */
