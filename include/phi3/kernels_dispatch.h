/*
 * phi3/kernels_dispatch.h — which kernel set (phi3/kernels.h) runs on this
 * CPU.
 *
 * The sets of a build are a fixed table in kernels_dispatch.c, fastest
 * first: on x86-64 "avx512" (AVX-512 F/BW/VL/DQ + VNNI), "avx2" (AVX2 +
 * FMA + F16C), then "reference" (portable scalar code, every CPU).  Every
 * member of the table is an ordinary function defined in its set's file,
 * so a build that lacks one fails to link instead of quietly running
 * slower kernels.
 *
 * p3_kernels_best() returns the first set of the table this CPU runs,
 * unless the environment variable PHI3_KERNELS names a set ("reference",
 * "avx2" or "avx512"): then that set is used, so the whole engine can be
 * pinned to one set (tests, CI machines, debugging).  A name this CPU
 * cannot run, or an unknown name, is ignored.  The CPU is asked once
 * (thread-safe); afterwards the sets are read-only.
 */
#ifndef PHI3_KERNELS_DISPATCH_H
#define PHI3_KERNELS_DISPATCH_H

#include "phi3/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The fastest set this CPU supports, or PHI3_KERNELS's. */
const P3KernelSet *p3_kernels_best(void);
/* The set of that name ("reference", "avx2", "avx512") if this CPU runs it, else NULL. */
const P3KernelSet *p3_kernels_by_name(const char *name);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_KERNELS_DISPATCH_H */
