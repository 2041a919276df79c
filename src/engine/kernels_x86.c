/*
 * kernels_x86.c — the x86 SIMD kernel sets, built for this CPU.
 *
 * The kernels themselves are compiled for their instruction sets with
 * per-function target options (kernels_avx2.c, kernels_avx512.c, which
 * share kernels_x86_common.h), never with a global -march, so the engine
 * runs on any x86-64 CPU.  The first call asks the CPU (through libgcc's
 * cpuid data, which also checks that the OS saves the wider registers)
 * which sets it can run, and builds those sets from the reference set plus
 * the accelerated entries.  That one-time initialisation runs under
 * pthread_once, so it is race-free; afterwards the sets are read-only.
 *
 * p3_kernels_avx2 and p3_kernels_avx512 are entries of the dispatch table
 * (kernels_dispatch.c).  On other architectures this file is empty and the
 * table holds only the reference set.
 */
#if defined(__x86_64__)

#include <pthread.h>
#include <stdbool.h>

#include "kernels_x86.h"

static pthread_once_t x86_once = PTHREAD_ONCE_INIT;
static bool x86_has_avx2;
static bool x86_has_avx512;
static P3KernelSet x86_avx2_set;
static P3KernelSet x86_avx512_set;

/*
 * llama.cpp's AVX-512 builds run ggml's AVX2 vec_dot for these types (its
 * quants.c has no AVX-512 code for them): the avx512 set takes the avx2
 * set's single- and multi-token products, which sum in that order, so
 * Q8 activations give llama.cpp's bits (measured: the same logits on
 * generated files, where the 16-lane kernels differ in the last bit).  These
 * types have no prefill GEMM, so no GEMM = vec_dot rule is involved.
 */
static void
avx512_take_ggml_orders(P3KernelSet *avx512, const P3KernelSet *avx2)
{
	static const uint32_t types[] = {P3_TYPE_Q4_1, P3_TYPE_Q5_0, P3_TYPE_Q5_1, P3_TYPE_IQ4_XS};

	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
	{
		avx512->vec_dot[types[i]] = avx2->vec_dot[types[i]];
		avx512->vec_dot_ntok[types[i]] = avx2->vec_dot_ntok[types[i]];
	}
}

/* Ask the CPU once which sets it runs and build them. */
static void
x86_init(void)
{
	__builtin_cpu_init();
	x86_has_avx2 = __builtin_cpu_supports("avx2") &&
		__builtin_cpu_supports("fma") &&
		__builtin_cpu_supports("f16c");
	x86_has_avx512 = x86_has_avx2 &&
		__builtin_cpu_supports("avx512f") &&
		__builtin_cpu_supports("avx512bw") &&
		__builtin_cpu_supports("avx512vl") &&
		__builtin_cpu_supports("avx512dq") &&
		__builtin_cpu_supports("avx512vnni");

	if (x86_has_avx2)
	{
		x86_avx2_set = *p3_kernels_reference();
		p3_kernels_fill_avx2(&x86_avx2_set);
	}
	if (x86_has_avx512)
	{
		x86_avx512_set = *p3_kernels_reference();
		p3_kernels_fill_avx512(&x86_avx512_set);
		avx512_take_ggml_orders(&x86_avx512_set, &x86_avx2_set);
	}
}

/* The "avx2" set if this CPU runs it, else NULL. */
const P3KernelSet *
p3_kernels_avx2(void)
{
	pthread_once(&x86_once, x86_init);
	return x86_has_avx2 ? &x86_avx2_set : NULL;
}

/* The "avx512" set if this CPU runs it, else NULL. */
const P3KernelSet *
p3_kernels_avx512(void)
{
	pthread_once(&x86_once, x86_init);
	return x86_has_avx512 ? &x86_avx512_set : NULL;
}

#endif							/* __x86_64__ */
