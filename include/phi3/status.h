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
 *
 * The message is for people.  What a program needs in order to react is in
 * the fields: the status, errno for file errors, and for the statuses whose
 * handling depends on what exactly failed (P3_ERR_IO, P3_ERR_UNSUPPORTED)
 * a kind, set where the error is raised.  A caller never looks inside the
 * message (a file name or an architecture string in it is data from the
 * file, and could say anything).
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

/*
 * What exactly failed, for P3_ERR_IO and P3_ERR_UNSUPPORTED; P3_KIND_NONE
 * for every other status, and for errors raised with p3_error().
 */
typedef enum P3ErrorKind
{
	P3_KIND_NONE = 0,			/* no finer classification */

	/* P3_ERR_IO (sys_errno says why, when there is an errno) */
	P3_KIND_FILE_OPEN,			/* open() failed, or the path is not a regular file */
	P3_KIND_FILE_STAT,			/* fstat() of the open file failed */
	P3_KIND_FILE_TOO_LARGE,		/* the file is larger than the address space can map */
	P3_KIND_FILE_MAP,			/* mmap() failed */
	P3_KIND_FILE_CREATE,		/* the writer could not create its temporary file */
	P3_KIND_FILE_WRITE,			/* the writer's write, fsync or close failed */
	P3_KIND_FILE_RENAME,		/* the writer could not rename the finished file into place */

	/* P3_ERR_UNSUPPORTED */
	P3_KIND_ARCHITECTURE,		/* general.architecture is not one the engine runs */
	P3_KIND_TENSOR_TYPE,		/* a tensor type unknown to the engine, or one it cannot use there */
	P3_KIND_TENSOR_ALIGNMENT,	/* tensor data too badly aligned in the file to compute with */
	P3_KIND_TOKENIZER_MODEL,	/* tokenizer.ggml.model is not one the engine implements */
	P3_KIND_MISSING_TOKEN		/* the vocabulary lacks a token the engine needs (a byte, a chat marker) */
} P3ErrorKind;

#define P3_ERROR_MESSAGE_SIZE 512

typedef struct P3Error
{
	P3Status	status;
	P3ErrorKind kind;			/* what failed, for P3_ERR_IO / P3_ERR_UNSUPPORTED */
	int			sys_errno;		/* errno for P3_ERR_IO, else 0 */
	char		message[P3_ERROR_MESSAGE_SIZE];
} P3Error;

/* Short stable name of a status, e.g. "format error". */
const char *p3_status_name(P3Status status);

/*
 * Record an error: sets err->status (err->kind = P3_KIND_NONE) and formats
 * err->message (truncated to fit).  err may be NULL.  Returns status, so
 * callers can write
 *     return p3_error(err, P3_ERR_FORMAT, "bad magic %08x", magic);
 */
P3Status	p3_error(P3Error *err, P3Status status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* As p3_error, and keeps errno (call it right after the failing syscall). */
P3Status	p3_error_errno(P3Error *err, P3Status status, const char *fmt,...)
			__attribute__((format(printf, 3, 4)));

/* As p3_error and p3_error_errno, recording what failed in err->kind. */
P3Status	p3_error_kind(P3Error *err, P3Status status, P3ErrorKind kind, const char *fmt,...)
			__attribute__((format(printf, 4, 5)));
P3Status	p3_error_errno_kind(P3Error *err, P3Status status, P3ErrorKind kind, const char *fmt,...)
			__attribute__((format(printf, 4, 5)));

/* Reset an error to P3_OK, P3_KIND_NONE, no errno, an empty message.  err may be NULL. */
void		p3_error_clear(P3Error *err);

#ifdef __cplusplus
}
#endif

#endif							/* PHI3_STATUS_H */
