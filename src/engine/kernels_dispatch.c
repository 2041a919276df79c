/*
 * kernels_dispatch.c — the kernel sets of this build and the choice among
 * them (see phi3/kernels_dispatch.h).
 *
 * kernel_sets lists every set, fastest first, each with a function that
 * returns it if this CPU runs it, else NULL.  The entries are plain
 * references to functions of the sets' files (kernels_ref.c,
 * kernels_x86.c, declared in phi3/kernels.h and kernels_x86.h): a set
 * whose object file is missing from the link is an undefined symbol, not
 * a silent fallback to the reference kernels.  Adding a set is one line
 * here, in order of preference.
 */
#include "phi3/kernels_dispatch.h"

#include <stdlib.h>
#include <string.h>

#include "kernels_x86.h"

typedef struct KernelSetEntry
{
	const char *name;			/* the set's name (P3KernelSet.name) */
	const P3KernelSet *(*get) (void);	/* the set if this CPU runs it, else NULL */
} KernelSetEntry;

static const KernelSetEntry kernel_sets[] = {
#if defined(__x86_64__)
	{"avx512", p3_kernels_avx512},
	{"avx2", p3_kernels_avx2},
#endif
	{"reference", p3_kernels_reference},
};

#define N_KERNEL_SETS ((int) (sizeof(kernel_sets) / sizeof(kernel_sets[0])))

/* The set called name if this CPU runs it, else NULL. */
const P3KernelSet *
p3_kernels_by_name(const char *name)
{
	if (name == NULL)
		return NULL;
	for (int i = 0; i < N_KERNEL_SETS; i++)
		if (strcmp(name, kernel_sets[i].name) == 0)
			return kernel_sets[i].get();
	return NULL;
}

/* PHI3_KERNELS's set if this CPU runs it, else the first of the table it runs. */
const P3KernelSet *
p3_kernels_best(void)
{
	const char *forced = getenv("PHI3_KERNELS");

	if (forced != NULL && forced[0] != '\0')
	{
		const P3KernelSet *k = p3_kernels_by_name(forced);

		if (k != NULL)
			return k;
	}
	/* the last entry, the reference set, runs everywhere */
	for (int i = 0; i < N_KERNEL_SETS; i++)
	{
		const P3KernelSet *k = kernel_sets[i].get();

		if (k != NULL)
			return k;
	}
	return p3_kernels_reference();
}
