/*
 * mapguard.c — the SIGBUS guard over a model file's mapping (see
 * phi3/mapguard.h).
 *
 * State read by the signal handler is volatile and written only outside
 * it (arm, disarm) or as a single sig_atomic_t flag (the fault).  The
 * handler does only async-signal-safe work: mmap of one zero page over the
 * faulting page, or a hand-over to the previous disposition.
 */
#include "phi3/mapguard.h"

#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static const char *volatile guard_base = NULL;
static volatile size_t guard_size = 0;
static volatile sig_atomic_t guard_faulted = 0;
static uintptr_t guard_page = 4096;
static bool guard_on = false;
static struct sigaction guard_prev;	/* what was installed before the guard */

/*
 * A fault outside the guarded range: hand it to what was there before.  A
 * function handler is called as the kernel would have called it; for the
 * default action or "ignore", that disposition is put back and the
 * faulting access, retried on return, gets it (a synchronous SIGBUS cannot
 * really be ignored: the kernel then applies the default).
 */
static void
pass_on(int signo, siginfo_t *info, void *context)
{
	if ((guard_prev.sa_flags & SA_SIGINFO) && guard_prev.sa_sigaction != NULL)
	{
		guard_prev.sa_sigaction(signo, info, context);
		return;
	}
	if (guard_prev.sa_handler != SIG_DFL && guard_prev.sa_handler != SIG_IGN &&
		guard_prev.sa_handler != NULL)
	{
		guard_prev.sa_handler(signo);
		return;
	}
	sigaction(signo, &guard_prev, NULL);
	guard_on = false;
}

static void
guard_handler(int signo, siginfo_t *info, void *context)
{
	uintptr_t	addr = (uintptr_t) info->si_addr;
	uintptr_t	base = (uintptr_t) guard_base;

	if (base != 0 && addr >= base && addr - base < guard_size)
	{
		void	   *page = (void *) (addr & ~(guard_page - 1));

		if (mmap(page, guard_page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED)
		{
			guard_faulted = 1;
			return;
		}
	}
	pass_on(signo, info, context);
}

bool
p3_mapguard_arm(const void *base, size_t size)
{
	if (!guard_on)
	{
		struct sigaction sa;
		long		page = sysconf(_SC_PAGESIZE);

		if (page > 0)
			guard_page = (uintptr_t) page;
		memset(&sa, 0, sizeof(sa));
		sa.sa_sigaction = guard_handler;
		sa.sa_flags = SA_SIGINFO;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGBUS, &sa, &guard_prev) != 0)
			return false;
		guard_on = true;
	}
	guard_size = size;
	guard_base = base;
	return true;
}

void
p3_mapguard_disarm(void)
{
	guard_base = NULL;
	guard_size = 0;
	if (guard_on)
	{
		sigaction(SIGBUS, &guard_prev, NULL);
		guard_on = false;
	}
}

bool
p3_mapguard_take_fault(void)
{
	if (!guard_faulted)
		return false;
	guard_faulted = 0;
	return true;
}

bool
p3_mapguard_installed(void)
{
	return guard_on;
}
