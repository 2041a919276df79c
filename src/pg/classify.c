/*-------------------------------------------------------------------------
 *
 * classify.c
 *	  phi3_classify: one of the caller's labels, always, chosen by the
 *	  model under a schema that allows nothing else.
 *
 * The labels become the JSON Schema {"enum": [labels...]}, compiled by the
 * engine (phi3/schema.h) into an automaton over the answer's bytes; the
 * decoder samples only tokens that keep the answer a prefix of one of the
 * labels written as a JSON string, and stops as soon as a label is
 * complete and nothing can follow (P3_STOP_CONSTRAINT).  The answer is
 * then exactly the compact JSON of one label, which is mapped back to the
 * label as the caller wrote it.  The prompt lists the labels (as JSON) and
 * the optional instruction before the document, in the Phi-3 chat
 * template, so rows of one UPDATE share the prefix.
 *
 * Labels: a non-empty array without NULLs, empty strings, control
 * characters or duplicates (each an error before anything runs); a single
 * label is returned without running the model.  Greedy unless phi3.temperature
 * says otherwise, like the other task functions.
 *
 * IDENTIFICATION
 *	  src/pg/classify.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "catalog/pg_type.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(phi3_classify);

/* The labels of a call: UTF-8 text, and each as compact JSON */
typedef struct Labels
{
	int			n;
	char	  **utf8;
	size_t	   *utf8_len;
	char	  **json;			/* "label" with the schema automaton's escaping */
	size_t		max_json;
	Datum	   *original;		/* the caller's text datums, returned as they are */
} Labels;

static Labels ReadLabels(ArrayType *arr);
static char *JsonString(const char *s, size_t len);
static char *LabelSchema(const Labels *labels);

/*
 * phi3_classify(doc text, labels text[], instruction text) returns text:
 * exactly one of labels.
 */
Datum
phi3_classify(PG_FUNCTION_ARGS)
{
	Labels		labels;
	char	   *schema_json;
	Phi3GenRequest req;
	char	   *instruction = NULL;
	char	   *answer;
	size_t		len;
	int			chosen = -1;

	Phi3StatsSetFunction(PHI3_STAT_CLASSIFY);
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("labels must not be null")));
	labels = ReadLabels(PG_GETARG_ARRAYTYPE_P(1));
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (!PG_ARGISNULL(2))
	{
		size_t		ilen;

		instruction = Phi3TextToUtf8(PG_GETARG_TEXT_PP(2), &ilen);
		instruction = Phi3TrimUtf8(instruction, &ilen);
	}
	if (labels.n == 1)
		PG_RETURN_DATUM(labels.original[0]);	/* nothing to choose */

	memset(&req, 0, sizeof(req));
	req.chat = true;
	req.content = Phi3TextToUtf8(PG_GETARG_TEXT_PP(0), &req.content_len);
	/* every allowed token adds at least one byte of the answer */
	req.max_tokens = (int32) Min(labels.max_json + 4, (size_t) phi3_max_tokens_limit);
	req.sampling = Phi3ResolveSampling(true, 0, true, 0);
	req.system = Phi3ClassifySystem();
	req.system_len = strlen(req.system);
	{
		StringInfoData list;

		initStringInfo(&list);
		appendStringInfoChar(&list, '[');
		for (int i = 0; i < labels.n; i++)
			appendStringInfo(&list, "%s%s", i ? ", " : "", labels.json[i]);
		appendStringInfoChar(&list, ']');
		req.instruction = Phi3ClassifyInstruction(list.data, instruction);
		req.instruction_len = strlen(req.instruction);
	}

	/* the schema: only these labels, as JSON strings */
	schema_json = LabelSchema(&labels);
	answer = Phi3GenerateUnderSchema(&req, schema_json, strlen(schema_json), &len);

	for (int i = 0; i < labels.n && chosen < 0; i++)
		if (strlen(labels.json[i]) == len && memcmp(labels.json[i], answer, len) == 0)
			chosen = i;
	if (chosen < 0)
		elog(ERROR, "phi3_classify: the constrained answer \"%s\" is none of the labels; please report a bug",
			 answer);
	PG_RETURN_DATUM(labels.original[chosen]);
}

/*
 * The labels array, checked: not empty, no NULL, no empty string, no
 * duplicate.
 */
static Labels
ReadLabels(ArrayType *arr)
{
	Labels		l;
	bool	   *nulls;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	memset(&l, 0, sizeof(l));
	get_typlenbyvalalign(TEXTOID, &typlen, &typbyval, &typalign);
	deconstruct_array(arr, TEXTOID, typlen, typbyval, typalign, &l.original, &nulls, &l.n);
	if (l.n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("labels must not be empty"),
				 errhint("Pass the possible answers, e.g. ARRAY['positive', 'negative', 'neutral'].")));
	l.utf8 = palloc(sizeof(char *) * l.n);
	l.utf8_len = palloc(sizeof(size_t) * l.n);
	l.json = palloc(sizeof(char *) * l.n);
	for (int i = 0; i < l.n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("labels must not contain null"),
					 errdetail("Label %d is null.", i + 1)));
		l.utf8[i] = Phi3TextToUtf8(DatumGetTextPP(l.original[i]), &l.utf8_len[i]);
		if (l.utf8_len[i] == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("labels must not be empty strings"),
					 errdetail("Label %d is empty.", i + 1)));
		for (int j = 0; j < i; j++)
			if (l.utf8_len[j] == l.utf8_len[i] && memcmp(l.utf8[j], l.utf8[i], l.utf8_len[i]) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("labels must be distinct"),
						 errdetail("Labels %d and %d are both \"%s\".", j + 1, i + 1,
								   TextDatumGetCString(l.original[i]))));
		for (size_t k = 0; k < l.utf8_len[i]; k++)
			if ((unsigned char) l.utf8[i][k] < 0x20)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("labels must not contain control characters"),
						 errdetail("Label %d contains the character 0x%02x.", i + 1,
								   (unsigned char) l.utf8[i][k])));
		l.json[i] = JsonString(l.utf8[i], l.utf8_len[i]);
		l.max_json = Max(l.max_json, strlen(l.json[i]));
	}
	return l;
}

/*
 * s (no control characters) as a compact JSON string, escaped as the
 * schema automaton writes enum values: only " and \ (UTF-8 passes through).
 */
static char *
JsonString(const char *s, size_t len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '"');
	for (size_t i = 0; i < len; i++)
	{
		if (s[i] == '"' || s[i] == '\\')
			appendStringInfoChar(&buf, '\\');
		appendStringInfoChar(&buf, s[i]);
	}
	appendStringInfoChar(&buf, '"');
	return buf.data;
}

/* {"enum": [labels as JSON strings]} */
static char *
LabelSchema(const Labels *labels)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"enum\":[");
	for (int i = 0; i < labels->n; i++)
		appendStringInfo(&buf, "%s%s", i ? "," : "", labels->json[i]);
	appendStringInfoString(&buf, "]}");
	return buf.data;
}
