/*
 * test_mapguard.c — the SIGBUS guard over a truncated file mapping.
 *
 * A file of 4 pages is mapped and then truncated to 1 page, so that reading
 * its third page raises SIGBUS.  Checked:
 *   - inside the guarded range the read returns 0 and the fault is
 *     recorded once;
 *   - a fault outside it goes to the handler installed before the guard
 *     (SA_SIGINFO or plain), and is not recorded;
 *   - with the default disposition before, a fault outside kills the
 *     process with SIGBUS as it would without the guard (in a child);
 *   - disarming restores exactly the previous sigaction.
 * Skipped under valgrind, which does not give the handler the faulting
 * address of such a SIGBUS.
 */
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "phi3/mapguard.h"

static long page_size;
static volatile sig_atomic_t prior_calls = 0;
static volatile sig_atomic_t plain_calls = 0;

/* A truncated mapping: 4 pages mapped, 1 left in the file. */
static volatile const char *
truncated_mapping(void)
{
	char		path[] = "/tmp/phi3-mapguard-XXXXXX";
	int			fd = mkstemp(path);
	char	   *p;

	if (fd < 0 || ftruncate(fd, 4 * page_size) != 0)
	{
		perror("mapguard test file");
		exit(1);
	}
	p = mmap(NULL, 4 * page_size, PROT_READ, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED || ftruncate(fd, page_size) != 0)
	{
		perror("mapguard test mapping");
		exit(1);
	}
	close(fd);
	unlink(path);
	return p;
}

/* Makes the faulting read succeed by mapping a page of 0x5A bytes there. */
static void
fill_page(void *addr)
{
	void	   *page = (void *) ((uintptr_t) addr & ~((uintptr_t) page_size - 1));
	char	   *p = mmap(page, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

	if (p != MAP_FAILED)
		memset(p, 0x5A, page_size);
}

static void
prior_siginfo(int signo, siginfo_t *info, void *context)
{
	(void) signo;
	(void) context;
	prior_calls++;
	fill_page(info->si_addr);
}

static void *volatile plain_fault_addr;

static void
prior_plain(int signo)
{
	(void) signo;
	plain_calls++;
	fill_page((void *) plain_fault_addr);
}

static void
test_inside_and_outside(void)
{
	volatile const char *guarded = truncated_mapping();
	volatile const char *other = truncated_mapping();
	struct sigaction prior;
	struct sigaction now;

	memset(&prior, 0, sizeof(prior));
	prior.sa_sigaction = prior_siginfo;
	prior.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&prior.sa_mask);
	sigaddset(&prior.sa_mask, SIGUSR1);
	CHECK(sigaction(SIGBUS, &prior, NULL) == 0);

	CHECK(p3_mapguard_arm((const void *) guarded, 4 * (size_t) page_size));
	CHECK(p3_mapguard_installed());
	CHECK(!p3_mapguard_take_fault());
	CHECK_EQ_INT(guarded[0], 0);	/* in the file: no fault */
	CHECK(!p3_mapguard_take_fault());
	CHECK_EQ_INT(guarded[2 * page_size + 7], 0);	/* past the end: zero page */
	CHECK(p3_mapguard_take_fault());
	CHECK(!p3_mapguard_take_fault());
	CHECK_EQ_INT(prior_calls, 0);

	/* outside the guarded range: the prior handler answers */
	CHECK_EQ_INT(other[3 * page_size], 0x5A);
	CHECK_EQ_INT(prior_calls, 1);
	CHECK(!p3_mapguard_take_fault());

	/* arming again (another model) keeps the first prior handler */
	CHECK(p3_mapguard_arm((const void *) guarded, 4 * (size_t) page_size));
	p3_mapguard_disarm();
	CHECK(!p3_mapguard_installed());
	CHECK(sigaction(SIGBUS, NULL, &now) == 0);
	CHECK(now.sa_sigaction == prior_siginfo);
	CHECK((now.sa_flags & (SA_SIGINFO | SA_RESTART)) == (SA_SIGINFO | SA_RESTART));
	CHECK(sigismember(&now.sa_mask, SIGUSR1) == 1);
	p3_mapguard_disarm();		/* twice is harmless */

	/* a plain (non-SA_SIGINFO) prior handler is called too */
	{
		struct sigaction plain;

		memset(&plain, 0, sizeof(plain));
		plain.sa_handler = prior_plain;
		sigemptyset(&plain.sa_mask);
		CHECK(sigaction(SIGBUS, &plain, NULL) == 0);
		CHECK(p3_mapguard_arm((const void *) guarded, 4 * (size_t) page_size));
		plain_fault_addr = (void *) (other + page_size);
		CHECK_EQ_INT(other[page_size], 0x5A);
		CHECK_EQ_INT(plain_calls, 1);
		p3_mapguard_disarm();
		CHECK(sigaction(SIGBUS, NULL, &now) == 0);
		CHECK(now.sa_handler == prior_plain);
	}
	signal(SIGBUS, SIG_DFL);
}

/* With the default disposition before the guard, a fault outside still kills. */
static void
test_default_still_kills(void)
{
	pid_t		pid;
	int			status = 0;

	fflush(stderr);
	pid = fork();
	if (pid == 0)
	{
		volatile const char *guarded = truncated_mapping();
		volatile const char *other = truncated_mapping();
		volatile char sink;

		signal(SIGBUS, SIG_DFL);
		if (!p3_mapguard_arm((const void *) guarded, 4 * (size_t) page_size))
			_exit(3);
		sink = guarded[2 * page_size];	/* survives */
		if (!p3_mapguard_take_fault())
			_exit(4);
		sink = other[2 * page_size];	/* dies here */
		(void) sink;
		_exit(0);
	}
	CHECK(pid > 0);
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == SIGBUS,
			  "child status %d (exited %d)", status, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Valgrind does not report the faulting address of a SIGBUS on a truncated mapping. */
static bool
under_valgrind(void)
{
	const char *preload = getenv("LD_PRELOAD");

	return preload != NULL && strstr(preload, "vgpreload") != NULL;
}

int
main(void)
{
	page_size = sysconf(_SC_PAGESIZE);
	if (under_valgrind())
	{
		fprintf(stderr, "test_mapguard: skipped under valgrind (no fault addresses for SIGBUS)\n");
		return harness_finish();
	}
	RUN(test_inside_and_outside);
	RUN(test_default_still_kills);
	return harness_finish();
}
