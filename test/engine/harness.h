/*
 * harness.h — the few macros the engine unit tests share.
 *
 * Each test program is a main() calling test functions; CHECK records a
 * failure with its location and carries on, so one run shows every broken
 * case.  The program exits 1 if anything failed.  Usage:
 *
 *     static void test_something(void) { CHECK(x == 1); CHECK_EQ_INT(a, b); }
 *     int main(void) { RUN(test_something); return harness_finish(); }
 */
#ifndef PHI3_TEST_HARNESS_H
#define PHI3_TEST_HARNESS_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int	harness_failures = 0;
static int	harness_checks = 0;
static const char *harness_current = "";

#define CHECK(cond) \
	do { \
		harness_checks++; \
		if (!(cond)) { \
			harness_failures++; \
			fprintf(stderr, "%s:%d: %s: CHECK failed: %s\n", __FILE__, __LINE__, harness_current, #cond); \
		} \
	} while (0)

#define CHECK_MSG(cond, ...) \
	do { \
		harness_checks++; \
		if (!(cond)) { \
			harness_failures++; \
			fprintf(stderr, "%s:%d: %s: CHECK failed: %s: ", __FILE__, __LINE__, harness_current, #cond); \
			fprintf(stderr, __VA_ARGS__); \
			fputc('\n', stderr); \
		} \
	} while (0)

#define CHECK_EQ_INT(a, b) \
	do { \
		long long _a = (long long) (a), _b = (long long) (b); \
		harness_checks++; \
		if (_a != _b) { \
			harness_failures++; \
			fprintf(stderr, "%s:%d: %s: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, harness_current, #a, #b, _a, _b); \
		} \
	} while (0)

#define CHECK_NEAR(a, b, tol) \
	do { \
		double _a = (double) (a), _b = (double) (b), _t = (double) (tol); \
		harness_checks++; \
		if (!(fabs(_a - _b) <= _t)) { \
			harness_failures++; \
			fprintf(stderr, "%s:%d: %s: |%s - %s| <= %g failed: %.9g vs %.9g\n", __FILE__, __LINE__, harness_current, #a, #b, _t, _a, _b); \
		} \
	} while (0)

#define CHECK_STATUS(expr, expected) \
	do { \
		int _s = (int) (expr); \
		harness_checks++; \
		if (_s != (int) (expected)) { \
			harness_failures++; \
			fprintf(stderr, "%s:%d: %s: %s returned %d, expected %d\n", __FILE__, __LINE__, harness_current, #expr, _s, (int) (expected)); \
		} \
	} while (0)

#define RUN(fn) \
	do { \
		int _before = harness_failures; \
		harness_current = #fn; \
		fn(); \
		fprintf(stderr, "%s %s\n", harness_failures == _before ? "ok  " : "FAIL", #fn); \
	} while (0)

static inline int
harness_finish(void)
{
	fprintf(stderr, "%d checks, %d failures\n", harness_checks, harness_failures);
	return harness_failures ? 1 : 0;
}

/* Deterministic pseudo-random numbers for tests (splitmix64). */
static inline uint64_t
harness_rand(uint64_t *state)
{
	uint64_t	z = (*state += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

/* Uniform float in [-1, 1). */
static inline float
harness_randf(uint64_t *state)
{
	return (float) ((double) (harness_rand(state) >> 40) / (double) (1ull << 24) * 2.0 - 1.0);
}

#endif							/* PHI3_TEST_HARNESS_H */
