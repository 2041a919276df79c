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

/* Memory context reset callback: free a compiled schema. */
static void
FreeSchemaCallback(void *arg)
{
	p3_schema_free((P3Schema *) arg);
}

/*
 * Compile the JSON Schema json[0..len) (UTF-8); an error naming what is
 * wrong (unsupported keyword and its path, a limit) otherwise.  The schema
 * is freed with the current memory context (also when an error unwinds
 * it), so it may live as long as the call that uses it.
 */
P3Schema *
Phi3CompileSchema(const char *json, size_t len)
{
	P3Schema   *schema = NULL;
	MemoryContextCallback *cb;
	P3Error		err;

	p3_error_clear(&err);
	cb = palloc(sizeof(MemoryContextCallback));
	if (p3_schema_compile(json, len, NULL, &schema, &err) != P3_OK)
		Phi3ReportSchemaError(&err);
	cb->func = FreeSchemaCallback;
	cb->arg = schema;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, cb);
	return schema;
}

/*
 * The shortest completion that closes m's document (empty when it is
 * complete), palloc'd and NUL-terminated; its length goes to *len.
 */
char *
Phi3SchemaCompletion(const P3SchemaMatcher *m, size_t *len)
{
	P3Text	   *completion = Phi3TextNew();
	P3Error		err;
	char	   *result;

	p3_error_clear(&err);
	if (p3_schema_matcher_completion(m, completion, &err) != P3_OK)
		Phi3ReportEngineError(&err, ModelCachePath());
	result = pnstrdup(completion->data ? completion->data : "", completion->len);
	*len = completion->len;
	Phi3TextFree(completion);
	return result;
}

/*
 * Generate req's answer under the schema json[0..len) (UTF-8); returns the
 * answer (UTF-8, palloc'd, NUL-terminated), a complete document of the
 * schema.
 */
char *
Phi3GenerateUnderSchema(const Phi3GenRequest *req, const char *json, size_t len, size_t *out_len)
{
	return Phi3GenerateUnderCompiled(req, Phi3CompileSchema(json, len), out_len);
}

/*
 * As Phi3GenerateUnderSchema, with a schema already compiled (by
 * Phi3CompileSchema: it stays the caller's).
 */
char *
Phi3GenerateUnderCompiled(const Phi3GenRequest *req, P3Schema *schema, size_t *out_len)
{
	P3SchemaMatcher *volatile matcher = NULL;	/* read in PG_FINALLY */
	P3Constraint constraint;
	P3StopReason stop = P3_STOP_NONE;
	P3Error		err;
	char	   *answer = NULL;
	size_t		answer_len = 0;

	p3_error_clear(&err);
	PG_TRY();
	{
		P3SchemaMatcher *m = NULL;

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
			size_t		clen;
			char	   *completion = Phi3SchemaCompletion(m, &clen);

			ereport(NOTICE,
					(errmsg("the answer was completed to match the schema"),
					 errdetail("Generation stopped (%s) after %zu bytes; %zu bytes were added to close the document.",
							   p3_stop_reason_name(stop), answer_len, clen),
					 errhint("Raise max_tokens to let the model finish the document itself.")));
			answer = repalloc(answer, answer_len + clen + 1);
			memcpy(answer + answer_len, completion, clen);
			answer_len += clen;
			answer[answer_len] = '\0';
		}
	}
	PG_FINALLY();
	{
		p3_schema_matcher_free(matcher);
	}
	PG_END_TRY();

	*out_len = answer_len;
	return answer;
}
