/*
 * status.c — error recording for the engine (see phi3/status.h).
 */
#include "phi3/status.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *
p3_status_name(P3Status status)
{
	switch (status)
	{
		case P3_OK:
			return "ok";
		case P3_ERR_IO:
			return "i/o error";
		case P3_ERR_FORMAT:
			return "format error";
		case P3_ERR_UNSUPPORTED:
			return "unsupported";
		case P3_ERR_NOMEM:
			return "out of memory";
		case P3_ERR_INVALID_ARG:
			return "invalid argument";
		case P3_ERR_CONTEXT_FULL:
			return "context full";
		case P3_ERR_ABORTED:
			return "aborted";
		case P3_ERR_INTERNAL:
			return "internal error";
	}
	return "unknown status";
}

/* Fill err (not NULL) from a format; no errno. */
static void
error_vformat(P3Error *err, P3Status status, P3ErrorKind kind, const char *fmt, va_list ap)
{
	err->status = status;
	err->kind = kind;
	err->sys_errno = 0;
	vsnprintf(err->message, sizeof(err->message), fmt, ap);
}

/* As error_vformat, keeping saved_errno and appending its text to the message. */
static void
error_errno_vformat(P3Error *err, P3Status status, P3ErrorKind kind, int saved_errno,
					const char *fmt, va_list ap)
{
	size_t		used;
	char		sysbuf[128];
	const char *sysmsg;

	error_vformat(err, status, kind, fmt, ap);
	err->sys_errno = saved_errno;

	/* GNU strerror_r returns the message, which may not be sysbuf */
	sysmsg = strerror_r(saved_errno, sysbuf, sizeof(sysbuf));
	used = strlen(err->message);
	if (used < sizeof(err->message))
		snprintf(err->message + used, sizeof(err->message) - used, ": %s", sysmsg);
}

/* Record an error (phi3/status.h). */
P3Status
p3_error(P3Error *err, P3Status status, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL)
		return status;
	va_start(ap, fmt);
	error_vformat(err, status, P3_KIND_NONE, fmt, ap);
	va_end(ap);
	return status;
}

/* Record an error and what failed. */
P3Status
p3_error_kind(P3Error *err, P3Status status, P3ErrorKind kind, const char *fmt,...)
{
	va_list		ap;

	if (err == NULL)
		return status;
	va_start(ap, fmt);
	error_vformat(err, status, kind, fmt, ap);
	va_end(ap);
	return status;
}

/* Record an error with the current errno. */
P3Status
p3_error_errno(P3Error *err, P3Status status, const char *fmt,...)
{
	int			saved_errno = errno;
	va_list		ap;

	if (err == NULL)
		return status;
	va_start(ap, fmt);
	error_errno_vformat(err, status, P3_KIND_NONE, saved_errno, fmt, ap);
	va_end(ap);
	return status;
}

/* Record an error with the current errno and what failed. */
P3Status
p3_error_errno_kind(P3Error *err, P3Status status, P3ErrorKind kind, const char *fmt,...)
{
	int			saved_errno = errno;
	va_list		ap;

	if (err == NULL)
		return status;
	va_start(ap, fmt);
	error_errno_vformat(err, status, kind, saved_errno, fmt, ap);
	va_end(ap);
	return status;
}

/* Reset an error to "no error". */
void
p3_error_clear(P3Error *err)
{
	if (err == NULL)
		return;
	err->status = P3_OK;
	err->kind = P3_KIND_NONE;
	err->sys_errno = 0;
	err->message[0] = '\0';
}
