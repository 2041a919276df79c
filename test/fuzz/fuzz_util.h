/*
 * fuzz_util.h — small helpers shared by the libFuzzer harnesses.
 *
 * REQUIRE prints the failed condition and traps (libFuzzer reports a crash
 * and saves the input); the UTF-8
 * check is strict (no overlongs, surrogates or code points past U+10FFFF),
 * the same rules the streaming detokenizer promises to follow; the byte
 * reader hands out input bytes and then zeros, so a harness can decode a
 * structure from any input without length checks of its own.
 */
#ifndef PHI3_FUZZ_UTIL_H
#define PHI3_FUZZ_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "phi3/status.h"

#define REQUIRE(c) \
	do { \
		if (!(c)) { \
			fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c); \
			__builtin_trap(); \
		} \
	} while (0)

/* An engine call returned `want`; else print what it said and trap. */
#define REQUIRE_STATUS(st, want, err) \
	do { \
		if ((st) != (want)) { \
			fprintf(stderr, "%s:%d: status %s, expected %s: %s\n", __FILE__, __LINE__, \
					p3_status_name(st), p3_status_name(want), (err).message); \
			__builtin_trap(); \
		} \
	} while (0)

/* A failed engine call: the status is an error, recorded in err with a message. */
#define REQUIRE_ERROR(st, err) \
	REQUIRE((st) != P3_OK && (err).status == (st) && (err).message[0] != '\0' && \
			memchr((err).message, '\0', sizeof((err).message)) != NULL)

/* Is s[0..n) valid UTF-8 (strict)? */
static inline bool
fuzz_valid_utf8(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	while (i < n)
	{
		unsigned char c = p[i];
		int			len;
		unsigned char lo = 0x80,
					hi = 0xbf;

		if (c < 0x80)
		{
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			len = 2;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4;
		else
			return false;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
		else if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
		if (n - i < (size_t) len || p[i + 1] < lo || p[i + 1] > hi)
			return false;
		for (int k = 2; k < len; k++)
			if (p[i + k] < 0x80 || p[i + k] > 0xbf)
				return false;
		i += (size_t) len;
	}
	return true;
}

/* Sequential reader over the fuzzer's input; past the end it yields zeros. */
typedef struct FuzzReader
{
	const uint8_t *p;
	size_t		n;
} FuzzReader;

static inline uint8_t
fuzz_u8(FuzzReader *r)
{
	uint8_t		b;

	if (r->n == 0)
		return 0;
	b = r->p[0];
	r->p++;
	r->n--;
	return b;
}

static inline uint16_t
fuzz_u16(FuzzReader *r)
{
	uint16_t	lo = fuzz_u8(r);

	return (uint16_t) (lo | (uint16_t) fuzz_u8(r) << 8);
}

static inline uint32_t
fuzz_u32(FuzzReader *r)
{
	uint32_t	lo = fuzz_u16(r);

	return lo | (uint32_t) fuzz_u16(r) << 16;
}

/* Take up to n bytes (fewer at the end); *got says how many. */
static inline const uint8_t *
fuzz_bytes(FuzzReader *r, size_t n, size_t *got)
{
	const uint8_t *p = r->p;

	if (n > r->n)
		n = r->n;
	r->p += n;
	r->n -= n;
	*got = n;
	return p;
}

#endif							/* PHI3_FUZZ_UTIL_H */
