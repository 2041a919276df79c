/*
 * kernels_x86.h — private interface between the x86 kernel dispatcher
 * (kernels_x86.c) and the files holding the SIMD kernels of each set.
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

/* AVX2 + FMA + F16C */
void		p3_kernels_fill_avx2(P3KernelSet *set);

/* AVX-512 F/BW/VL/DQ + VNNI (plus AVX2, FMA, F16C) */
void		p3_kernels_fill_avx512(P3KernelSet *set);

#endif							/* PHI3_KERNELS_X86_H */
