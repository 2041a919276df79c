/*-------------------------------------------------------------------------
 *
 * constrain.c
 *	  Generation under a JSON Schema: compile the schema (phi3/schema.h),
 *	  decode with its automaton as the decoder's constraint, and make sure
 *	  the answer is a complete document.
 *
 * Used by phi3_generate's json_schema argument and by phi3_classify.  The
 * schema is compiled per call (typical schemas take well under a
 * millisecond); a schema the engine does not support is an error naming
 * the keyword and its JSON path, raised before any token is generated.
 * Object keys come out in the schema's "properties" order, which for a
 * jsonb argument is jsonb's own key order (shorter keys first, then
 * bytewise): jsonb does not keep the order they were written in.
 *
 * Termination: the constraint stops the sequence as soon as the document
 * is complete and nothing can follow.  When the token budget (or the
 * context) ends first, the answer is closed with the automaton's shortest
 * valid completion (strings and containers closed, required fields given
 * their shortest values), so the result always parses and matches the
 * schema; a NOTICE says it was completed.
 *
 * IDENTIFICATION
 *	  src/pg/constrain.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

/*
 * Generate req's answer under the schema json[0..len) (UTF-8); returns the
 * answer (UTF-8, palloc'd, NUL-terminated), a complete document of the
 * schema.
 */
char *
Phi3GenerateUnderSchema(const Phi3GenRequest *req, const char *json, size_t len, size_t *out_len)
{
	P3Schema   *schema = NULL;
	P3SchemaMatcher *volatile matcher = NULL;	/* read in PG_FINALLY */
	P3Constraint constraint;
	P3StopReason stop = P3_STOP_NONE;
	P3Error		err;
	char	   *answer = NULL;
	size_t		answer_len = 0;

	p3_error_clear(&err);
	if (p3_schema_compile(json, len, NULL, &schema, &err) != P3_OK)
		Phi3ReportSchemaError(&err);

	PG_TRY();
	{
		P3SchemaMatcher *m = NULL;
		P3Text	   *completion;

		if (p3_schema_matcher_new(schema, ModelCacheGetVocabTrie(), &m, &err) != P3_OK)
			Phi3ReportEngineError(&err, ModelCachePath());
		matcher = m;
		if (p3_schema_constraint(m, p3_context_model(ModelCacheGetContext())->tokenizer,
								 &constraint, &err) != P3_OK)
			Phi3ReportEngineError(&err, ModelCachePath());

		answer = Phi3GenerateConstrained(req, &constraint, &answer_len, &stop);

		/* the budget ran out first: close the document the shortest way */
		if (!p3_schema_matcher_is_complete(m))
		{
			completion = Phi3TextNew();
			if (p3_schema_matcher_completion(m, completion, &err) != P3_OK)
				Phi3ReportEngineError(&err, ModelCachePath());
			ereport(NOTICE,
					(errmsg("the answer was completed to match the schema"),
					 errdetail("Generation stopped (%s) after %zu bytes; %zu bytes were added to close the document.",
							   p3_stop_reason_name(stop), answer_len, completion->len),
					 errhint("Raise max_tokens to let the model finish the document itself.")));
			answer = repalloc(answer, answer_len + completion->len + 1);
			memcpy(answer + answer_len, completion->data, completion->len);
			answer_len += completion->len;
			answer[answer_len] = '\0';
			Phi3TextFree(completion);
		}
	}
	PG_FINALLY();
	{
		p3_schema_matcher_free(matcher);
		p3_schema_free(schema);
	}
	PG_END_TRY();

	*out_len = answer_len;
	return answer;
}
