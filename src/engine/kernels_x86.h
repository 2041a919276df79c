/*
 * kernels_x86.h — private interface of the x86 kernel sets: what the
 * dispatcher (kernels_dispatch.c) calls, and what the x86 set builder
 * (kernels_x86.c) calls in the files holding each set's SIMD kernels.
 *
 * p3_kernels_avx2 / p3_kernels_avx512 are the sets' entries in the
 * dispatch table; they exist only on x86-64, and kernels_x86.c defines
 * them there.
 *
 * Each fill function overwrites the entries its set accelerates in a copy
 * of the reference set; the other entries stay the reference functions, so
 * every set is complete.  A fill function may only be called once the CPU
 * is known to support the set's instructions.  The two kernel files write
 * what they have in common once, in kernels_x86_common.h.
 */
#ifndef PHI3_KERNELS_X86_H
#define PHI3_KERNELS_X86_H

#include "phi3/kernels.h"

/* The "avx2" set if this CPU runs it (AVX2 + FMA + F16C), else NULL. */
const P3KernelSet *p3_kernels_avx2(void);

/* The "avx512" set if this CPU runs it (AVX-512 F/BW/VL/DQ + VNNI, and AVX2's), else NULL. */
const P3KernelSet *p3_kernels_avx512(void);

/* AVX2 + FMA + F16C */
void		p3_kernels_fill_avx2(P3KernelSet *set);

/* AVX-512 F/BW/VL/DQ + VNNI (plus AVX2, FMA, F16C) */
void		p3_kernels_fill_avx512(P3KernelSet *set);

/* the avx512 set's prefill GEMM (gemm_avx512.c), called by p3_kernels_fill_avx512 */
void		p3_gemm_fill_avx512(P3KernelSet *set);

#endif							/* PHI3_KERNELS_X86_H */
