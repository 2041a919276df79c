/*-------------------------------------------------------------------------
 *
 * extract.c
 *	  phi3_extract(doc text, schema jsonb) returns jsonb, its text-schema
 *	  twin, and phi3_extract(doc text, target anyelement) returns
 *	  anyelement (a row of a composite type).
 *
 * The answer is decoded under the schema (extract_schema.c turns the
 * argument or the type into one JSON Schema; constrain.c decodes under
 * it): at every step only tokens that keep the answer a prefix of a valid
 * document can be sampled, and when max_tokens runs out first the document
 * is closed the shortest valid way.  So the answer always parses, has
 * every required field and fits the declared types, whatever the model;
 * how good the values are is still the model's business.  The prompt
 * (prompts.c) shows the schema compactly, before the document, so rows of
 * one statement share the prefix.
 *
 * The text-schema form exists for overload resolution: with only the
 * jsonb and anyelement forms, phi3_extract(body, '{...}') (an unknown
 * literal beside a text column) would resolve to the anyelement form.
 *
 * The typed form turns the document into a row with jsonb_populate_record
 * (domains, arrays, nested composites, typmods); every value the schema
 * allows is valid input for its column type, so no cast can fail (a
 * domain's CHECK constraint can still refuse a value: that is an error).
 *
 * An empty document (or only whitespace) gives every field null without
 * running the model (JSON null for a JSON Schema whose root is not an
 * object).  Schema errors are reported before anything else.  A call site
 * keeps the compiled schema of its last call (CachedSpec), so the rows of
 * one UPDATE compile it once and share the engine's mask cache.
 *
 * IDENTIFICATION
 *	  src/pg/extract.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/fmgrprotos.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(phi3_extract);
PG_FUNCTION_INFO_V1(phi3_extract_text);
PG_FUNCTION_INFO_V1(phi3_extract_typed);

/*
 * The spec of the last schema (or type) a call site used, kept in the
 * function's memory (fn_extra) so that the rows of one statement compile
 * it once and share its mask cache.  Its own context: replaced when the
 * schema changes, which frees the engine's schema.
 */
typedef struct SpecCache
{
	MemoryContext cxt;
	Jsonb	   *schema;			/* the schema it was made from, or NULL */
	Oid			typid;			/* or the type */
	Phi3ExtractSpec *spec;
} SpecCache;

static Phi3ExtractSpec *CachedSpec(FunctionCallInfo fcinfo, Jsonb *schema, Oid typid);
static Datum JsonbToRecord(Jsonb *doc, Oid typid);

/*
 * phi3_extract(doc text, schema jsonb) returns jsonb.
 */
Datum
phi3_extract(PG_FUNCTION_ARGS)
{
	Phi3ExtractSpec *spec = CachedSpec(fcinfo, PG_GETARG_JSONB_P(1), InvalidOid);

	PG_RETURN_JSONB_P(Phi3ExtractOne(PG_GETARG_TEXT_PP(0), spec));
}

/*
 * phi3_extract(doc text, schema text) returns jsonb: the schema as jsonb.
 */
Datum
phi3_extract_text(PG_FUNCTION_ARGS)
{
	Datum		schema = DirectFunctionCall1(jsonb_in, CStringGetDatum(text_to_cstring(PG_GETARG_TEXT_PP(1))));
	Phi3ExtractSpec *spec = CachedSpec(fcinfo, DatumGetJsonbP(schema), InvalidOid);

	PG_RETURN_JSONB_P(Phi3ExtractOne(PG_GETARG_TEXT_PP(0), spec));
}

/*
 * phi3_extract(doc text, target anyelement) returns anyelement: a row of
 * target's composite type (target's value is ignored; pass a typed null).
 * Not strict: a NULL doc gives NULL.
 */
Datum
phi3_extract_typed(PG_FUNCTION_ARGS)
{
	Oid			typid = get_fn_expr_argtype(fcinfo->flinfo, 1);
	Phi3ExtractSpec *spec;

	if (!OidIsValid(typid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not determine the type of target"),
				 errhint("Pass a typed null, e.g. NULL::invoice_facts.")));
	spec = CachedSpec(fcinfo, NULL, typid);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	PG_RETURN_DATUM(JsonbToRecord(Phi3ExtractOne(PG_GETARG_TEXT_PP(0), spec), typid));
}

/*
 * The spec of schema (or, when it is NULL, of the type typid), from the
 * call site's cache when it is the one used last.
 */
static Phi3ExtractSpec *
CachedSpec(FunctionCallInfo fcinfo, Jsonb *schema, Oid typid)
{
	SpecCache  *c = fcinfo->flinfo->fn_extra;
	MemoryContext cxt;
	MemoryContext old;
	Phi3ExtractSpec *spec;

	if (c != NULL && c->spec != NULL &&
		(schema ? c->schema != NULL && VARSIZE(c->schema) == VARSIZE(schema) &&
		 memcmp(c->schema, schema, VARSIZE(schema)) == 0
		 : c->schema == NULL && c->typid == typid))
		return c->spec;
	if (c == NULL)
		c = fcinfo->flinfo->fn_extra = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(SpecCache));

	/* a new context; the old one (and its engine schema) goes once this one compiled */
	cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt, "phi3 extract schema", ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	spec = schema ? Phi3ExtractSpecFromJsonb(schema) : Phi3ExtractSpecFromType(typid);
	MemoryContextSwitchTo(old);
	if (c->cxt)
		MemoryContextDelete(c->cxt);
	c->cxt = cxt;
	c->schema = schema ? MemoryContextAlloc(cxt, VARSIZE(schema)) : NULL;
	if (schema)
		memcpy(c->schema, schema, VARSIZE(schema));
	c->typid = typid;
	c->spec = spec;
	return spec;
}

/*
 * Extract doc under spec: the answer decoded under its schema, or the
 * blank result for an empty document (a copy: spec may be cached).  Shared with phi3_extract_typed.
 */
Jsonb *
Phi3ExtractOne(text *doc, const Phi3ExtractSpec *spec)
{
	Phi3GenRequest req;
	char	   *answer;
	size_t		len = 0;

	Phi3StatsSetFunction(PHI3_STAT_EXTRACT);
	if (!Phi3ExtractRequestInit(&req, doc, spec))
	{
		Jsonb	   *blank = Phi3ExtractSpecResult(spec, NULL, 0);
		Jsonb	   *copy = palloc(VARSIZE(blank));

		memcpy(copy, blank, VARSIZE(blank));
		return copy;
	}
	answer = Phi3GenerateUnderCompiled(&req, req.schema, &len);
	return Phi3ExtractSpecResult(spec, answer, len);
}

/*
 * The extraction request for doc under spec; false (no generation: every
 * field null) when doc is empty or only whitespace.  Shared with the
 * batch forms (batch.c), which decode under req->schema too.
 */
bool
Phi3ExtractRequestInit(Phi3GenRequest *req, text *doc, const Phi3ExtractSpec *spec)
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
	req->instruction = Phi3ExtractInstruction(Phi3ExtractSpecDescription(spec));
	req->instruction_len = strlen(req->instruction);
	req->schema = Phi3ExtractSpecSchema(spec);
	return true;
}

/*
 * jsonb_populate_record(NULL::typid, doc): called through fmgr with an
 * expression that says the first argument's type, as the polymorphic
 * function reads it from there.
 */
static Datum
JsonbToRecord(Jsonb *doc, Oid typid)
{
	LOCAL_FCINFO(fcinfo, 2);
	FmgrInfo	flinfo;
	Datum		result;

	fmgr_info(F_JSONB_POPULATE_RECORD, &flinfo);
	flinfo.fn_expr = (Node *) makeFuncExpr(F_JSONB_POPULATE_RECORD, typid,
										   list_make2(makeNullConst(typid, -1, InvalidOid),
													  makeNullConst(JSONBOID, -1, InvalidOid)),
										   InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	InitFunctionCallInfoData(*fcinfo, &flinfo, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = (Datum) 0;
	fcinfo->args[0].isnull = true;
	fcinfo->args[1].value = JsonbPGetDatum(doc);
	fcinfo->args[1].isnull = false;
	result = FunctionCallInvoke(fcinfo);
	if (fcinfo->isnull)
		elog(ERROR, "jsonb_populate_record returned null");
	return result;
}
