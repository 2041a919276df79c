/*-------------------------------------------------------------------------
 *
 * errors.c
 *	  The one place that turns engine errors into ereport.
 *
 * The engine returns a P3Status and fills a P3Error with one lowercase
 * sentence naming what was wrong.  Here each status becomes a SQLSTATE, a
 * primary message in PostgreSQL's style and the engine's sentence as the
 * detail:
 *
 *     P3_ERR_IO           ENOENT: UNDEFINED_FILE, EACCES/EPERM:
 *                         INSUFFICIENT_PRIVILEGE, else IO_ERROR
 *                         "could not open model file \"%s\": %m"
 *     P3_ERR_FORMAT       DATA_CORRUPTED "invalid model file \"%s\""
 *     P3_ERR_UNSUPPORTED  FEATURE_NOT_SUPPORTED
 *                         "model file \"%s\" is not supported"
 *     P3_ERR_CONTEXT_FULL PROGRAM_LIMIT_EXCEEDED "input is too long"
 *     P3_ERR_NOMEM        OUT_OF_MEMORY "out of memory"
 *     P3_ERR_INVALID_ARG  INVALID_PARAMETER_VALUE "invalid argument for the model"
 *     P3_ERR_ABORTED      CHECK_FOR_INTERRUPTS() raises the pending cancel
 *                         or timeout; if it returns, QUERY_CANCELED
 *     P3_ERR_INTERNAL     elog(ERROR), asking for a bug report
 *
 * The engine's sentence becomes the detail, as the message style guide
 * wants details: capitalized and ending with a period.  It is copied to a
 * local buffer before anything can longjmp, so the caller may pass a
 * P3Error that lives on its stack.
 *
 * What varies within a status is chosen from the P3Error's fields, never
 * from its sentence (which holds file names and strings from the file):
 *
 *     P3_ERR_IO           with an errno, %m in the primary message; the
 *                         sentence as detail unless the kind is
 *                         P3_KIND_FILE_OPEN (it would repeat the primary)
 *     P3_ERR_UNSUPPORTED  the hint naming supported quantizations only for
 *                         P3_KIND_TENSOR_TYPE
 *
 * IDENTIFICATION
 *	  src/pg/errors.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include <errno.h>

#include "miscadmin.h"

static int	IoErrorCode(int sys_errno);
static void AsSentence(char *message, size_t size);

/*
 * Report that phi3.model is empty, with a hint on how to set it.
 */
void
Phi3ReportModelNotSet(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("phi3.model is not set"),
			 errhint("Set phi3.model to the path of a Phi-3 GGUF file, e.g. "
					 "ALTER SYSTEM SET phi3.model = '/path/Phi-3-mini-4k-instruct-q4.gguf'; "
					 "SELECT pg_reload_conf();")));
	pg_unreachable();
}

/*
 * Report an input whose prompt and answer do not fit the context.  With
 * after_truncation, n_prompt is the prompt with its document removed
 * entirely (phi3.input_overflow = truncate could not make it fit).  With
 * more_than, the prompt was too long to count and has more than n_prompt
 * tokens.
 */
void
Phi3ReportInputTooLong(int32 n_prompt, bool more_than, int32 max_tokens, int32 n_ctx,
					   bool after_truncation)
{
	if (after_truncation)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("input is too long"),
				 more_than ?
				 errdetail("Without its document the prompt has more than %d tokens and %d tokens are reserved for the answer, but the context holds %d tokens.",
						   n_prompt, max_tokens, n_ctx) :
				 errdetail("Without its document the prompt has %d tokens and %d tokens are reserved for the answer, but the context holds %d tokens.",
						   n_prompt, max_tokens, n_ctx),
				 errhint("Raise phi3.context_size or lower max_tokens.")));
	else
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("input is too long"),
				 more_than ?
				 errdetail("The prompt has more than %d tokens and %d tokens are reserved for the answer, but the context holds %d tokens.",
						   n_prompt, max_tokens, n_ctx) :
				 errdetail("The prompt has %d tokens and %d tokens are reserved for the answer, but the context holds %d tokens.",
						   n_prompt, max_tokens, n_ctx),
				 errhint("Raise phi3.context_size, lower max_tokens, or set phi3.input_overflow = 'truncate'.")));
	pg_unreachable();
}

/*
 * Report an engine error.  model_path names the file for the statuses that
 * concern the model file; it may be NULL otherwise.
 */
void
Phi3ReportEngineError(const P3Error *err, const char *model_path)
{
	char		message[P3_ERROR_MESSAGE_SIZE];
	P3Status	status = err->status;
	P3ErrorKind kind = err->kind;
	int			sys_errno = err->sys_errno;
	const char *path = model_path ? model_path : "";

	strlcpy(message, err->message, sizeof(message));
	AsSentence(message, sizeof(message));

	switch (status)
	{
		case P3_ERR_IO:
			if (sys_errno != 0)
			{
				/* errno into the message; the engine's sentence only if it adds something */
				errno = sys_errno;
				ereport(ERROR,
						(errcode(IoErrorCode(sys_errno)),
						 errmsg("could not open model file \"%s\": %m", path),
						 kind != P3_KIND_FILE_OPEN ? errdetail("%s", message) : 0));
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_IO_ERROR),
						 errmsg("could not open model file \"%s\"", path),
						 errdetail("%s", message)));
			break;
		case P3_ERR_FORMAT:
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("invalid model file \"%s\"", path),
					 errdetail("%s", message)));
			break;
		case P3_ERR_UNSUPPORTED:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("model file \"%s\" is not supported", path),
					 errdetail("%s", message),
					 kind == P3_KIND_TENSOR_TYPE ?
					 errhint("Use a GGUF file quantized with a supported type, e.g. Q4_K_M, Q8_0 or F16.") : 0));
			break;
		case P3_ERR_CONTEXT_FULL:
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("input is too long"),
					 errdetail("%s", message),
					 errhint("Raise phi3.context_size, lower max_tokens, or set phi3.input_overflow = 'truncate'.")));
			break;
		case P3_ERR_NOMEM:
			ereport(ERROR,
					(errcode(ERRCODE_OUT_OF_MEMORY),
					 errmsg("out of memory"),
					 errdetail("%s", message)));
			break;
		case P3_ERR_INVALID_ARG:
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid argument for the model"),
					 errdetail("%s", message)));
			break;
		case P3_ERR_ABORTED:

			/*
			 * The engine stopped because our abort callback saw a pending
			 * cancel or termination: let PostgreSQL raise it with its own
			 * message ("canceling statement due to statement timeout", ...).
			 * If interrupts are held off, never continue silently.
			 */
			CHECK_FOR_INTERRUPTS();
			ereport(ERROR,
					(errcode(ERRCODE_QUERY_CANCELED),
					 errmsg("canceling generation")));
			break;
		case P3_OK:
		case P3_ERR_INTERNAL:
		default:
			elog(ERROR, "phi3 engine failure (%s): %s; please report a bug",
				 p3_status_name(status), message);
			break;
	}
	pg_unreachable();
}

/*
 * Report a JSON schema the engine refused (p3_schema_compile): the
 * engine's sentence names the keyword and its JSON path.
 */
void
Phi3ReportSchemaError(const P3Error *err)
{
	char		message[P3_ERROR_MESSAGE_SIZE];

	strlcpy(message, err->message, sizeof(message));
	AsSentence(message, sizeof(message));
	ereport(ERROR,
			(errcode(err->status == P3_ERR_NOMEM ? ERRCODE_OUT_OF_MEMORY : ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid or unsupported JSON schema"),
			 errdetail("%s", message),
			 errhint("See the README for the supported subset of JSON Schema.")));
	pg_unreachable();
}

/*
 * Turn the engine's lowercase clause into a detail sentence in place:
 * capitalize the first letter and end with a period.
 */
static void
AsSentence(char *message, size_t size)
{
	size_t		len = strlen(message);

	if (len == 0)
		return;
	if (message[0] >= 'a' && message[0] <= 'z')
		message[0] = message[0] - 'a' + 'A';
	if (message[len - 1] != '.' && len + 1 < size)
	{
		message[len] = '.';
		message[len + 1] = '\0';
	}
}

/*
 * SQLSTATE of a failed open(), as errcode_for_file_access() would choose it.
 */
static int
IoErrorCode(int sys_errno)
{
	switch (sys_errno)
	{
		case ENOENT:
		case ENOTDIR:
			return ERRCODE_UNDEFINED_FILE;
		case EACCES:
		case EPERM:
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		default:
			return ERRCODE_IO_ERROR;
	}
}
