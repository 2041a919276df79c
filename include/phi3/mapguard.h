/*
 * phi3/mapguard.h — surviving a model file truncated under its mapping.
 *
 * The weights are a shared read-only mapping of the model file.  If the
 * file is truncated or rewritten in place while the engine reads it, a read
 * past the new end of file raises SIGBUS, which would kill the process.
 * The guard installs a SIGBUS handler (process-wide, once armed): a fault
 * inside the guarded range is answered by mapping a page of zeros at the
 * faulting address, so the read is retried and succeeds (the computation
 * finishes on garbage), and the fault is recorded for the caller to see
 * with p3_mapguard_take_fault() and discard the result.  A fault anywhere
 * else goes to the handler that was installed before the guard (called
 * with the same arguments if it was a function; if it was the default or
 * ignore, that disposition is restored and the faulting access, retried,
 * gets it), as if the guard were not there.
 *
 * p3_mapguard_disarm() stops guarding and puts back exactly the sigaction
 * that was in place when the guard was installed.  The engine's helper
 * threads leave SIGBUS unblocked so that their faults reach the handler
 * (phi3/threadpool.h).  Not for concurrent use: one caller per process.
 */
#ifndef PHI3_MAPGUARD_H
#define PHI3_MAPGUARD_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Guard [base, base + size).  Installs the handler when it is not yet
 * installed; false if sigaction fails (then nothing is guarded).
 */
bool		p3_mapguard_arm(const void *base, size_t size);

/* Stop guarding; restores the previous SIGBUS disposition exactly. */
void		p3_mapguard_disarm(void);

/* Whether a fault in the guarded range happened since the last call; clears it. */
bool		p3_mapguard_take_fault(void);

/* Whether the handler is installed now (for tests and diagnostics). */
bool		p3_mapguard_installed(void);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_MAPGUARD_H */
