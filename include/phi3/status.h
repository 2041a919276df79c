/*
 * phi3/status.h — status codes and error messages of the engine.
 *
 * Every fallible engine function returns a P3Status and, when the caller
 * passes a P3Error, writes one human-readable sentence into it that names
 * what was wrong (the file, the tensor, the offending value).  The engine
 * never prints, never exits, never aborts: the caller decides what to do.
 * The PostgreSQL glue maps each status to a SQLSTATE at one boundary
 * (src/pg/errors.c); the command-line tools print the message.
 *
 * The message is lowercase and has no trailing period, in PostgreSQL's
 * style, so that the glue can use it verbatim as an errdetail after
 * capitalising nothing.
 */
#ifndef PHI3_STATUS_H
#define PHI3_STATUS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum P3Status
{
	P3_OK = 0,
	P3_ERR_IO,				/* cannot open, stat, read or map a file (errno kept) */
	P3_ERR_FORMAT,			/* not a GGUF file, or a corrupt / inconsistent one */
	P3_ERR_UNSUPPORTED,		/* valid file, but an architecture / type we do not run */
	P3_ERR_NOMEM,			/* an allocation failed */
	P3_ERR_INVALID_ARG,		/* the caller passed something out of range */
	P3_ERR_CONTEXT_FULL,	/* the tokens do not fit in the context */
	P3_ERR_ABORTED,			/* the caller's abort callback asked us to stop */
	P3_ERR_INTERNAL			/* a broken invariant: a bug in the engine */
} P3Status;

#define P3_ERROR_MESSAGE_SIZE 512

typedef struct P3Error
{
	P3Status	status;
	int			sys_errno;		/* errno for P3_ERR_IO, else 0 */
	char		message[P3_ERROR_MESSAGE_SIZE];
} P3Error;

/* Short stable name of a status, e.g. "format error". */
const char *p3_status_name(P3Status status);

/*
 * Record an error: sets err->status and formats err->message (truncated to
 * fit).  err may be NULL.  Returns status, so callers can write
 *     return p3_error(err, P3_ERR_FORMAT, "bad magic %08x", magic);
 */
P3Status	p3_error(P3Error *err, P3Status status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* As p3_error, and keeps errno (call it right after the failing syscall). */
P3Status	p3_error_errno(P3Error *err, P3Status status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* Reset an error to P3_OK with an empty message.  err may be NULL. */
void		p3_error_clear(P3Error *err);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_STATUS_H */
