/*
 * bench_peak.h — the f32 multiply-add peak loop shared by the benchmarks
 * (bench_kernels --only peak, bench_f32gemm): 12 independent chains of
 * 512-bit vfmadd per thread, so neither latency nor memory limits it.
 */
#ifndef PHI3_BENCH_PEAK_H
#define PHI3_BENCH_PEAK_H

#if defined(__x86_64__)
#include <immintrin.h>

/* iters rounds of 12 vfmadd (12 * 16 multiply-adds each); returns a sum to keep alive */
__attribute__((target("avx512f")))
static float
fma_peak_loop(long iters)
{
	__m512		acc[12];
	__m512		a = _mm512_set1_ps(0.9999999f),
				b = _mm512_set1_ps(1e-7f);

#pragma GCC unroll 12
	for (int k = 0; k < 12; k++)
		acc[k] = _mm512_set1_ps((float) k);
	for (long i = 0; i < iters; i++)
	{
#pragma GCC unroll 12
		for (int k = 0; k < 12; k++)
			acc[k] = _mm512_fmadd_ps(acc[k], a, b);
		/* keep a and b in registers, not folded as constants */
		__asm__ volatile("" : "+v"(a), "+v"(b));
	}
#pragma GCC unroll 12
	for (int k = 1; k < 12; k++)
		acc[0] = _mm512_add_ps(acc[0], acc[k]);
	return _mm512_reduce_add_ps(acc[0]);
}
#endif

#endif							/* PHI3_BENCH_PEAK_H */
