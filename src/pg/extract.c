/*-------------------------------------------------------------------------
 *
 * extract.c
 *	  phi3_extract(doc text, schema jsonb) returns jsonb.
 *
 * The schema maps each field name to a type; the model is asked (prompts.c)
 * for one JSON object with exactly these keys, and its answer is parsed and
 * each value coerced to its field's type.  The schema's rules, the parsing
 * and the coercion are in extract_answer.c; this file runs the model.  The
 * result always has the schema's shape, whatever the model says; the values
 * are only as good as the model's answer: the schema-constrained decoder
 * (the engine's mask hook) is what will make them reliable, and is not used
 * yet.
 *
 * An empty document (or only whitespace) gives every field null without
 * running the model.  Schema errors are reported before anything else.
 *
 * IDENTIFICATION
 *	  src/pg/extract.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

PG_FUNCTION_INFO_V1(phi3_extract);

/*
 * phi3_extract(doc text, schema jsonb) returns jsonb.
 */
Datum
phi3_extract(PG_FUNCTION_ARGS)
{
	Phi3ExtractSchema *schema = Phi3ExtractParseSchema(PG_GETARG_JSONB_P(1));
	Phi3GenRequest req;
	char	   *answer = NULL;
	size_t		len = 0;

	Phi3StatsSetFunction(PHI3_STAT_EXTRACT);
	if (Phi3ExtractRequestInit(&req, PG_GETARG_TEXT_PP(0), schema))
		answer = Phi3Generate(&req, &len);

	PG_RETURN_JSONB_P(Phi3ExtractFromAnswer(schema, answer, len));
}

/*
 * The extraction request for doc under schema; false (no generation: every
 * field null) when doc is empty or only whitespace.  Shared with
 * phi3_extract_batch (batch.c).
 */
bool
Phi3ExtractRequestInit(Phi3GenRequest *req, text *doc, const Phi3ExtractSchema *schema)
{
	memset(req, 0, sizeof(*req));
	req->content = Phi3TextToUtf8(doc, &req->content_len);
	if (Phi3IsBlank(req->content, req->content_len))
		return false;
	req->chat = true;
	req->max_tokens = Phi3ResolveMaxTokens(true, 0);
	req->sampling = Phi3ResolveSampling(true, 0, true, 0);
	req->system = Phi3ExtractSystem();
	req->system_len = strlen(req->system);
	req->instruction = Phi3ExtractInstruction(Phi3ExtractFieldList(schema));
	req->instruction_len = strlen(req->instruction);
	return true;
}
