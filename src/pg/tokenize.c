/*-------------------------------------------------------------------------
 *
 * tokenize.c
 *	  phi3_tokenize, phi3_detokenize, phi3_token_count and phi3_model_info.
 *
 * The tokenizer functions need only the model (its tokenizer), never a
 * context, so they start no threads.  They tokenize text as plain text:
 * no BOS is added, and special-token text such as <|user|> is taken
 * literally; so phi3_token_count(doc) is what a document costs inside a
 * prompt.  phi3_detokenize drops the leading space SentencePiece adds to
 * the first piece, so phi3_detokenize(phi3_tokenize(t)) = t for ordinary
 * text, and renders control tokens (<s>, <|end|>, ...) as nothing.
 *
 * Inputs are bounded (PHI3_MAX_TOKENIZE_BYTES, PHI3_MAX_DETOKENIZE_TOKENS):
 * the engine's working memory lives outside PostgreSQL's accounting and a
 * single huge argument must not be able to exhaust the machine's memory.
 *
 * IDENTIFICATION
 *	  src/pg/tokenize.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "catalog/pg_type.h"
#include "phi3/quant.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

PG_FUNCTION_INFO_V1(phi3_tokenize);
PG_FUNCTION_INFO_V1(phi3_detokenize);
PG_FUNCTION_INFO_V1(phi3_token_count);
PG_FUNCTION_INFO_V1(phi3_model_info);

static P3Tokens *TokenizeText(text *t);
static void AppendKey(StringInfo buf, bool *first, const char *key);

/*
 * phi3_tokenize(text) returns int[]: the token ids of the text.
 */
Datum
phi3_tokenize(PG_FUNCTION_ARGS)
{
	P3Tokens   *tokens = TokenizeText(PG_GETARG_TEXT_PP(0));
	Datum	   *elems;
	ArrayType  *result;
	size_t		i;

	elems = palloc(sizeof(Datum) * Max(tokens->n, 1));
	for (i = 0; i < tokens->n; i++)
		elems[i] = Int32GetDatum(tokens->ids[i]);
	result = construct_array(elems, (int) tokens->n, INT4OID, sizeof(int32), true, TYPALIGN_INT);
	Phi3TokensFree(tokens);
	PG_RETURN_ARRAYTYPE_P(result);
}

/*
 * phi3_token_count(text) returns int: the number of tokens of the text.
 */
Datum
phi3_token_count(PG_FUNCTION_ARGS)
{
	P3Tokens   *tokens = TokenizeText(PG_GETARG_TEXT_PP(0));
	int32		n = (int32) tokens->n;

	Phi3TokensFree(tokens);
	PG_RETURN_INT32(n);
}

/*
 * phi3_detokenize(int[]) returns text: the text of token ids.
 */
Datum
phi3_detokenize(PG_FUNCTION_ARGS)
{
	ArrayType  *array = PG_GETARG_ARRAYTYPE_P(0);
	const P3Model *model;
	int32		n_vocab;
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	int32	   *ids;
	int			i;
	P3Text	   *out;
	P3Error		err;
	P3Status	st;
	text	   *result;

	if (ARR_NDIM(array) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("token array must be one-dimensional")));
	if (ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array)) > PHI3_MAX_DETOKENIZE_TOKENS)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("token array is too long to detokenize"),
				 errdetail("The array has %d elements; phi3_detokenize accepts at most %d.",
						   ArrayGetNItems(ARR_NDIM(array), ARR_DIMS(array)), PHI3_MAX_DETOKENIZE_TOKENS),
				 errhint("Split the array and concatenate the texts.")));
	deconstruct_array(array, INT4OID, sizeof(int32), true, TYPALIGN_INT, &elems, &nulls, &n);

	model = ModelCacheGetModel();
	n_vocab = p3_tokenizer_n_vocab(model->tokenizer);
	ids = palloc(sizeof(int32) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		if (nulls[i])
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("token array must not contain nulls")));
		ids[i] = DatumGetInt32(elems[i]);
		if (ids[i] < 0 || ids[i] >= n_vocab)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("token id %d is out of range", ids[i]),
					 errdetail("The model's token ids are 0 to %d.", n_vocab - 1)));
	}

	out = Phi3TextNew();
	p3_error_clear(&err);
	st = p3_detokenize(model->tokenizer, ids, (size_t) n, false, true, out, &err);
	if (st != P3_OK)
	{
		Phi3TextFree(out);
		Phi3ReportEngineError(&err, ModelCachePath());
	}
	result = Phi3Utf8ToText(out->data ? out->data : "", out->len);
	Phi3TextFree(out);
	PG_RETURN_TEXT_P(result);
}

/*
 * phi3_model_info() returns jsonb: facts about the model phi3.model names
 * and about this backend's engine context.
 */
Datum
phi3_model_info(PG_FUNCTION_ARGS)
{
	P3Context  *ctx = ModelCacheGetContext();
	const P3Model *model = p3_context_model(ctx);
	const P3ContextParams *params = p3_context_params(ctx);
	const P3HParams *hp = &model->hp;
	P3GGUFString arch;
	P3GGUFString desc;
	P3Error		err;
	StringInfoData buf;
	bool		first = true;
	bool		first_type = true;
	int			t;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');

	AppendKey(&buf, &first, "path");
	escape_json(&buf, ModelCachePath());
	AppendKey(&buf, &first, "file_size");
	appendStringInfo(&buf, "%llu", (unsigned long long) model->gguf->size);
	AppendKey(&buf, &first, "architecture");
	p3_error_clear(&err);
	if (p3_gguf_get_string(model->gguf, "general.architecture", &arch, &err) == P3_OK)
		escape_json(&buf, Phi3Utf8ToCString(arch.ptr, (size_t) arch.len));
	else
		appendStringInfoString(&buf, "null");
	AppendKey(&buf, &first, "name");
	escape_json(&buf, Phi3Utf8ToCString(model->name, strnlen(model->name, sizeof(model->name))));
	/* general.description: what the file says it is (the demo model says it is no Phi-3) */
	AppendKey(&buf, &first, "description");
	p3_error_clear(&err);
	if (p3_gguf_get_string(model->gguf, "general.description", &desc, &err) == P3_OK)
		escape_json(&buf, Phi3Utf8ToCString(desc.ptr, (size_t) desc.len));
	else
		appendStringInfoString(&buf, "null");
	AppendKey(&buf, &first, "n_vocab");
	appendStringInfo(&buf, "%d", hp->n_vocab);
	AppendKey(&buf, &first, "n_ctx_train");
	appendStringInfo(&buf, "%d", hp->n_ctx_train);
	AppendKey(&buf, &first, "n_embd");
	appendStringInfo(&buf, "%d", hp->n_embd);
	AppendKey(&buf, &first, "n_layer");
	appendStringInfo(&buf, "%d", hp->n_layer);
	AppendKey(&buf, &first, "n_head");
	appendStringInfo(&buf, "%d", hp->n_head);
	AppendKey(&buf, &first, "n_head_kv");
	appendStringInfo(&buf, "%d", hp->n_head_kv);
	AppendKey(&buf, &first, "n_ff");
	appendStringInfo(&buf, "%d", hp->n_ff);
	AppendKey(&buf, &first, "n_rot");
	appendStringInfo(&buf, "%d", hp->n_rot);
	AppendKey(&buf, &first, "rope_freq_base");
	appendStringInfoString(&buf, float8out_internal((float8) hp->rope_freq_base));
	AppendKey(&buf, &first, "longrope");
	appendStringInfoString(&buf, hp->has_longrope ? "true" : "false");
	AppendKey(&buf, &first, "n_params");
	appendStringInfo(&buf, "%llu", (unsigned long long) model->n_params);
	AppendKey(&buf, &first, "weight_bytes");
	appendStringInfo(&buf, "%llu", (unsigned long long) model->weight_bytes);

	AppendKey(&buf, &first, "tensor_types");
	appendStringInfoChar(&buf, '{');
	for (t = 0; t < P3_TYPE_COUNT; t++)
	{
		if (model->type_counts[t] == 0)
			continue;
		AppendKey(&buf, &first_type, p3_type_name((uint32) t));
		appendStringInfo(&buf, "%u", model->type_counts[t]);
	}
	appendStringInfoChar(&buf, '}');

	AppendKey(&buf, &first, "weights_mapped");
	appendStringInfoString(&buf, model->gguf->mapped ? "true" : "false");
	AppendKey(&buf, &first, "preloaded");
	appendStringInfoString(&buf, ModelCacheIsPreloaded() ? "true" : "false");
	AppendKey(&buf, &first, "kernel");
	escape_json(&buf, p3_context_kernel_name(ctx));
	AppendKey(&buf, &first, "context_size");
	appendStringInfo(&buf, "%d", params->n_ctx);
	AppendKey(&buf, &first, "threads");
	appendStringInfo(&buf, "%d", params->n_threads);
	AppendKey(&buf, &first, "context_memory");
	appendStringInfo(&buf, "%llu", (unsigned long long) p3_context_memory(ctx));
	AppendKey(&buf, &first, "kv_cache_memory");
	appendStringInfo(&buf, "%llu", (unsigned long long) p3_kv_memory(ctx));
	AppendKey(&buf, &first, "kv_keep_tokens");
	appendStringInfo(&buf, "%d", phi3_kv_keep_tokens);
	appendStringInfoChar(&buf, '}');

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}

/*
 * Tokenize a text datum as plain text (no BOS, special-token text taken
 * literally).
 */
static P3Tokens *
TokenizeText(text *t)
{
	const P3Model *model;
	P3Tokens   *tokens;
	char	   *utf8;
	size_t		len;
	P3Error		err;

	utf8 = Phi3TextToUtf8(t, &len);
	if (len > PHI3_MAX_TOKENIZE_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("text is too long to tokenize"),
				 errdetail("The text has %zu bytes; the tokenizer functions accept at most %d bytes.",
						   len, PHI3_MAX_TOKENIZE_BYTES),
				 errhint("Split the text and add up the counts.")));
	model = ModelCacheGetModel();
	tokens = Phi3TokensNew();
	p3_error_clear(&err);
	if (p3_tokenize(model->tokenizer, utf8, len, 0, tokens, &err) != P3_OK)
	{
		Phi3TokensFree(tokens);
		Phi3ReportEngineError(&err, ModelCachePath());
	}
	pfree(utf8);
	return tokens;
}

/* Append "key": to a JSON object being built, with a comma if needed */
static void
AppendKey(StringInfo buf, bool *first, const char *key)
{
	if (!*first)
		appendStringInfoString(buf, ", ");
	*first = false;
	escape_json(buf, key);
	appendStringInfoString(buf, ": ");
}
