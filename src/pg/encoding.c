/*-------------------------------------------------------------------------
 *
 * encoding.c
 *	  The encoding boundary: server encoding to the engine's UTF-8 and back.
 *
 * The engine works in UTF-8.  Arguments are converted from the server
 * encoding, results back to it.  A model can produce any character, so in
 * a database whose encoding cannot represent one (LATIN1 and CJK, say)
 * that character becomes "?" rather than failing the whole call.  In a
 * SQL_ASCII database the bytes are passed through unchanged (SQL_ASCII has
 * no notion of characters; the tokenizer takes any bytes, using byte
 * tokens where needed).
 *
 * Nothing here touches the engine or the glue's state (settings, model
 * cache): phi3_test_hooks.so links this file too (see test/hooks).
 *
 * IDENTIFICATION
 *	  src/pg/encoding.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "catalog/namespace.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

static char *Utf8ToServerLossy(const char *s, size_t len);

/*
 * Convert len bytes in the server encoding to UTF-8.  The result is
 * palloc'd and NUL-terminated; *out_len gets its length.
 */
char *
Phi3CStringToUtf8(const char *s, size_t len, size_t *out_len)
{
	char	   *converted;
	char	   *result;

	if (GetDatabaseEncoding() == PG_UTF8 || GetDatabaseEncoding() == PG_SQL_ASCII)
		converted = (char *) s;
	else
		converted = pg_server_to_any(s, (int) len, PG_UTF8);

	if (converted != s)
		len = strlen(converted);
	result = palloc(len + 1);
	memcpy(result, converted, len);
	result[len] = '\0';
	if (converted != s)
		pfree(converted);
	*out_len = len;
	return result;
}

/*
 * A text datum's content as UTF-8 (palloc'd, NUL-terminated).
 */
char *
Phi3TextToUtf8(text *t, size_t *len)
{
	return Phi3CStringToUtf8(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), len);
}

/*
 * Convert engine UTF-8 to a NUL-terminated string in the server encoding.
 * NUL bytes (a model can emit the byte token <0x00>) are dropped: no
 * PostgreSQL string can hold them.
 */
char *
Phi3Utf8ToCString(const char *s, size_t len)
{
	char	   *copy = palloc(len + 1);
	char	   *converted;
	size_t		i;
	size_t		n = 0;

	for (i = 0; i < len; i++)
		if (s[i] != '\0')
			copy[n++] = s[i];
	copy[n] = '\0';
	len = n;
	if (GetDatabaseEncoding() == PG_SQL_ASCII)
		return copy;
	if (GetDatabaseEncoding() == PG_UTF8)
	{
		/* nothing to convert; pg_any_to_server only verifies */
		converted = pg_any_to_server(copy, (int) len, PG_UTF8);
		if (converted != copy)
			pfree(copy);
		return converted;
	}
	converted = Utf8ToServerLossy(copy, len);
	pfree(copy);
	return converted;
}

/*
 * Convert UTF-8 to the (non-UTF-8) server encoding, replacing each
 * character the server encoding cannot represent with "?".
 */
static char *
Utf8ToServerLossy(const char *s, size_t len)
{
	int			server = GetDatabaseEncoding();
	Oid			proc = FindDefaultConversionProc(PG_UTF8, server);
	StringInfoData buf;
	unsigned char *dest;
	int			dest_len;
	size_t		pos = 0;

	if (!OidIsValid(proc))
		return pg_any_to_server(s, (int) len, PG_UTF8);	/* reports the error */
	if (len > (MaxAllocSize - 1) / MAX_CONVERSION_GROWTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("generated text is too long to convert")));

	dest_len = (int) (len * MAX_CONVERSION_GROWTH + 1);
	dest = palloc(dest_len);
	initStringInfo(&buf);
	while (pos < len)
	{
		int			done;

		done = pg_do_encoding_conversion_buf(proc, PG_UTF8, server,
											 (unsigned char *) s + pos, (int) (len - pos),
											 dest, dest_len, true);
		appendStringInfoString(&buf, (char *) dest);
		pos += done;
		if (pos < len)
		{
			/* an unconvertible character: replace it and go on */
			size_t		char_len = pg_utf_mblen((const unsigned char *) s + pos);

			appendStringInfoChar(&buf, '?');
			pos += Max(Min(char_len, len - pos), 1);
		}
	}
	pfree(dest);
	return buf.data;
}

/*
 * Convert engine UTF-8 to a text datum in the server encoding.
 */
text *
Phi3Utf8ToText(const char *s, size_t len)
{
	char	   *cstr = Phi3Utf8ToCString(s, len);
	text	   *result = cstring_to_text(cstr);

	pfree(cstr);
	return result;
}
