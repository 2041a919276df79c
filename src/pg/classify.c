/*-------------------------------------------------------------------------
 *
 * classify.c
 *	  phi3_classify: one of the caller's labels, always, chosen by the
 *	  model under a schema that allows nothing else; phi3_classify_scores:
 *	  every label's probability, scored without sampling.
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
 * phi3_classify_scores uses the same prompt and scores each label's
 * answer as a continuation (p3_decoder_score), see its comment.
 *
 * IDENTIFICATION
 *	  src/pg/classify.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(phi3_classify);
PG_FUNCTION_INFO_V1(phi3_classify_scores);

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

static Labels ArgLabels(FunctionCallInfo fcinfo);
static Labels ReadLabels(ArrayType *arr);
static void ClassifyRequest(Phi3GenRequest *req, text *doc, const Labels *labels, text *instruction_arg);
static P3Tokens *LabelTokens(const P3Tokenizer *tok, const char *json);
static void ScoreLabels(const Labels *labels, const Phi3GenRequest *req, P3Tokens **conts,
						double *logprobs);
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
	char	   *answer;
	size_t		len;
	int			chosen = -1;

	Phi3StatsSetFunction(PHI3_STAT_CLASSIFY);
	labels = ArgLabels(fcinfo);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	if (labels.n == 1)
		PG_RETURN_DATUM(labels.original[0]);	/* nothing to choose */

	ClassifyRequest(&req, PG_GETARG_TEXT_PP(0), &labels, PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2));
	/* every allowed token adds at least one byte of the answer */
	req.max_tokens = (int32) Min(labels.max_json + 4, (size_t) phi3_max_tokens_limit);

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
 * phi3_classify_scores(doc text, labels text[], instruction text) returns
 * table (label text, probability float8): every label, in the order given,
 * with the model's probability of answering it.  No sampling: each label's
 * answer (its compact JSON string, canonical tokens) is scored as a
 * continuation of the classify prompt (p3_decoder_score: the sum of its
 * tokens' log-probabilities), and the probabilities are normalized over
 * the labels (a softmax of the sums), so they sum to 1.  Only the
 * canonical tokenization of each label is counted, not the other token
 * sequences that spell it.  A NULL doc gives no rows; one label gets 1.
 */
Datum
phi3_classify_scores(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Labels		labels;
	Phi3GenRequest req;
	P3Tokens  **conts;
	double	   *logprobs;
	double		max = -INFINITY;
	double		sum = 0.0;
	size_t		longest = 1;
	const P3Tokenizer *tok;

	Phi3StatsSetFunction(PHI3_STAT_CLASSIFY);
	labels = ArgLabels(fcinfo);
	InitMaterializedSRF(fcinfo, 0);
	if (PG_ARGISNULL(0))
		return (Datum) 0;

	logprobs = palloc0(sizeof(double) * labels.n);
	if (labels.n > 1)
	{
		ClassifyRequest(&req, PG_GETARG_TEXT_PP(0), &labels, PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2));
		tok = p3_context_model(ModelCacheGetContext())->tokenizer;
		conts = palloc(sizeof(P3Tokens *) * labels.n);
		for (int i = 0; i < labels.n; i++)
		{
			conts[i] = LabelTokens(tok, labels.json[i]);
			longest = Max(longest, conts[i]->n);
		}
		req.max_tokens = (int32) longest;
		ScoreLabels(&labels, &req, conts, logprobs);
		for (int i = 0; i < labels.n; i++)
			Phi3TokensFree(conts[i]);
	}
	for (int i = 0; i < labels.n; i++)
		max = Max(max, logprobs[i]);
	for (int i = 0; i < labels.n; i++)
		sum += exp(logprobs[i] - max);
	for (int i = 0; i < labels.n; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = labels.original[i];
		values[1] = Float8GetDatum(exp(logprobs[i] - max) / sum);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * The prompt of phi3_classify and phi3_classify_scores: the labels as a
 * JSON list and the optional instruction before the document.
 */
static void
ClassifyRequest(Phi3GenRequest *req, text *doc, const Labels *labels, text *instruction_arg)
{
	StringInfoData list;
	char	   *instruction = NULL;

	if (instruction_arg != NULL)
	{
		size_t		ilen;

		instruction = Phi3TextToUtf8(instruction_arg, &ilen);
		instruction = Phi3TrimUtf8(instruction, &ilen);
	}
	memset(req, 0, sizeof(*req));
	req->chat = true;
	req->content = Phi3TextToUtf8(doc, &req->content_len);
	req->sampling = Phi3ResolveSampling(true, 0, true, 0);
	req->system = Phi3ClassifySystem();
	req->system_len = strlen(req->system);
	initStringInfo(&list);
	appendStringInfoChar(&list, '[');
	for (int i = 0; i < labels->n; i++)
		appendStringInfo(&list, "%s%s", i ? ", " : "", labels->json[i]);
	appendStringInfoChar(&list, ']');
	req->instruction = Phi3ClassifyInstruction(list.data, instruction);
	req->instruction_len = strlen(req->instruction);
}

/*
 * The canonical tokens of a label's answer, json: the tokenizer's tokens
 * of it as the start of an answer, without SentencePiece's dummy space
 * (the schema automaton allows no space before the JSON): a first token
 * "\u2581X" becomes the token "X" (or X's byte tokens), a lone "\u2581"
 * is dropped.
 */
static P3Tokens *
LabelTokens(const P3Tokenizer *tok, const char *json)
{
	P3Tokens   *t = Phi3TokensNew();
	P3Tokens   *out = Phi3TokensNew();
	P3Error		err;
	size_t		len;
	const char *first;

	p3_error_clear(&err);
	if (p3_tokenize(tok, json, strlen(json), 0, t, &err) != P3_OK)
		Phi3ReportEngineError(&err, ModelCachePath());
	first = t->n > 0 ? p3_tokenizer_token_text(tok, t->ids[0], &len) : NULL;
	for (size_t i = 0; i < t->n; i++)
	{
		int32		id = t->ids[i];

		if (i == 0 && first != NULL && len >= 3 && memcmp(first, "\xE2\x96\x81", 3) == 0)
		{
			char	   *rest = pnstrdup(first + 3, len - 3);

			if (rest[0] == '\0')
				continue;
			id = p3_tokenizer_find(tok, rest);
			if (id < 0)
			{
				for (char *b = rest; *b; b++)
				{
					char		name[8];
					int32		bid;

					snprintf(name, sizeof(name), "<0x%02X>", (unsigned char) *b);
					if ((bid = p3_tokenizer_find(tok, name)) < 0)
						elog(ERROR, "phi3_classify_scores: no token for the byte 0x%02x", (unsigned char) *b);
					if (p3_tokens_push(out, bid, &err) != P3_OK)
						Phi3ReportEngineError(&err, ModelCachePath());
				}
				continue;
			}
		}
		if (p3_tokens_push(out, id, &err) != P3_OK)
			Phi3ReportEngineError(&err, ModelCachePath());
	}
	Phi3TokensFree(t);
	if (out->n == 0)
		elog(ERROR, "phi3_classify_scores: the label %s has no tokens", json);
	return out;
}

/* Score every label's tokens after req's prompt on the backend's decoder. */
static void
ScoreLabels(const Labels *labels, const Phi3GenRequest *req, P3Tokens **conts, double *logprobs)
{
	P3Tokens   *prompt;
	P3Decoder  *dec;
	const int32 **ids = palloc(sizeof(int32 *) * labels->n);
	int32	   *n_ids = palloc(sizeof(int32) * labels->n);
	P3Error		err;
	P3Status	st;

	CHECK_FOR_INTERRUPTS();
	prompt = Phi3BuildRequestPrompt(req);
	dec = ModelCacheGetDecoder();
	for (int i = 0; i < labels->n; i++)
	{
		ids[i] = conts[i]->ids;
		n_ids[i] = (int32) conts[i]->n;
	}
	p3_error_clear(&err);
	Phi3DecoderLoopBegin(1);
	PG_TRY();
	{
		st = p3_decoder_score(dec, prompt->ids, (int32) prompt->n, ids, n_ids, labels->n, logprobs, &err);
		ModelCacheCheckMappingFault();
		if (st != P3_OK)
			Phi3ReportEngineError(&err, ModelCachePath());
	}
	PG_CATCH();
	{
		Phi3DecoderLoopAbort();
		PG_RE_THROW();
	}
	PG_END_TRY();
	Phi3DecoderLoopEnd(false);
	Phi3TokensFree(prompt);
}

/*
 * The labels array, checked: not empty, no NULL, no empty string, no
 * duplicate.
 */
/* The labels argument (the second) of phi3_classify and phi3_classify_scores: never null. */
static Labels
ArgLabels(FunctionCallInfo fcinfo)
{
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("labels must not be null")));
	return ReadLabels(PG_GETARG_ARRAYTYPE_P(1));
}

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
