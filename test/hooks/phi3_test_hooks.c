/*-------------------------------------------------------------------------
 *
 * phi3_test_hooks.c
 *	  C functions that only the regression tests call, in a module of their
 *	  own: phi3_test_hooks.so.
 *
 * What phi3.so exports is part of the extension's interface, so test
 * entry points are not in it.  This module holds them instead:
 *
 *     phi3_extract_answer(answer text, schema jsonb) returns jsonb
 *         phi3_extract's parsing and coercion (src/pg/extract_answer.c)
 *         applied to a written answer instead of the model's, so that the
 *         tests can check the rules on any answer they like.
 *
 * The module links this file, extract_answer.o and encoding.o, which
 * depend on nothing but PostgreSQL: no engine, no settings, no model
 * cache.  It has its own PG_MODULE_MAGIC and no _PG_init, defines no GUC,
 * and exports only what PostgreSQL looks up in it (exports.map): loaded
 * in a session beside phi3.so, neither module's symbols can bind to the
 * other's copy of the shared code.
 *
 * `make` builds it into build/hooks; only `make install-test-hooks`
 * installs it (scripts/test.sh does, before pg_regress), never
 * `make install`.  A test declares what it needs, for the session only:
 *
 *     CREATE FUNCTION pg_temp.phi3_extract_answer(answer text, schema jsonb)
 *     RETURNS jsonb AS '$libdir/phi3_test_hooks', 'phi3_extract_answer'
 *     LANGUAGE C STRICT;
 *
 * IDENTIFICATION
 *	  test/hooks/phi3_test_hooks.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(phi3_extract_answer);

/*
 * phi3_extract_answer(answer text, schema jsonb) returns jsonb: what
 * phi3_extract returns when the model answers answer.
 */
Datum
phi3_extract_answer(PG_FUNCTION_ARGS)
{
	Phi3ExtractSchema *schema = Phi3ExtractParseSchema(PG_GETARG_JSONB_P(1));
	char	   *answer;
	size_t		len;

	answer = Phi3TextToUtf8(PG_GETARG_TEXT_PP(0), &len);
	PG_RETURN_JSONB_P(Phi3ExtractFromAnswer(schema, answer, len));
}
