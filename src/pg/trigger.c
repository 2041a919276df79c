/*-------------------------------------------------------------------------
 *
 * trigger.c
 *	  phi3_fill(): a trigger that generates a column's value when it is NULL.
 *
 *     CREATE TRIGGER products_fill BEFORE INSERT OR UPDATE ON products
 *         FOR EACH ROW EXECUTE FUNCTION phi3_fill('description',
 *             'Write a one-sentence product description for {name} ({category}).'
 *             [, 'system prompt']);
 *
 * Arguments: the target column, a prompt template, and optionally a system
 * prompt.  In the template, {column} is replaced by that column's value of
 * the new row as text (NULL becomes the empty string); {{ and }} stand for
 * literal braces.  The prompt goes through the chat template like
 * phi3_generate with the session's settings (phi3.max_tokens,
 * phi3.temperature, phi3.seed, ...); the answer, trimmed of surrounding
 * whitespace, is stored in the target column -- only when that column is
 * NULL in the new row, so provided values are never overwritten.  The
 * column may be text, varchar or char, or a domain over them; for a length
 * limit such as varchar(80) the answer is cut to fit.
 *
 * The trigger is checked on every firing, before anything else, so a
 * mistake shows on the first row: it must be BEFORE, FOR EACH ROW, on
 * INSERT or UPDATE; the target must be an existing column of a string
 * type; every {column} must exist.
 *
 * The template rules, the target column's checks, the request and the
 * stored value (Phi3Fill*) are shared with phi3_fill_async (async_queue.c,
 * async_worker.c), which fills the column after commit instead.
 *
 * IDENTIFICATION
 *	  src/pg/trigger.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(phi3_fill);


/*
 * phi3_fill() trigger: fill the target column of NEW when it is NULL.
 */
Datum
phi3_fill(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Trigger    *trigger;
	Relation	rel;
	const char *relname;
	TupleDesc	tupdesc;
	HeapTuple	tuple;
	int			attnum;
	bool		isnull;
	char	   *prompt;
	Phi3GenRequest req;
	char	   *answer;
	char	   *answer_server;
	size_t		len;
	Datum		value;
	bool		value_isnull = false;
	int			column;

	Phi3StatsSetFunction(PHI3_STAT_FILL);
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("phi3_fill: not called by trigger manager")));
	if (!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("phi3_fill must be fired BEFORE, FOR EACH ROW")));
	if (!TRIGGER_FIRED_BY_INSERT(trigdata->tg_event) && !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("phi3_fill must be fired by INSERT or UPDATE")));

	trigger = trigdata->tg_trigger;
	rel = trigdata->tg_relation;
	relname = RelationGetRelationName(rel);
	tupdesc = RelationGetDescr(rel);
	tuple = TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event) ? trigdata->tg_newtuple : trigdata->tg_trigtuple;

	if (trigger->tgnargs != 2 && trigger->tgnargs != 3)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("phi3_fill needs 2 or 3 arguments, got %d", trigger->tgnargs),
				 errhint("Pass the target column, a prompt template with {column} placeholders, and optionally a system prompt.")));

	/* Check everything before deciding whether there is work to do */
	attnum = Phi3FillTargetColumn("phi3_fill", trigger->tgargs[0], tupdesc, relname);
	prompt = Phi3FillRenderTemplate("phi3_fill", trigger->tgargs[1], tuple, tupdesc, relname);

	(void) heap_getattr(tuple, attnum, tupdesc, &isnull);
	if (!isnull)
		return PointerGetDatum(tuple);

	Phi3FillRequestInit(&req, prompt, trigger->tgnargs == 3 ? trigger->tgargs[2] : NULL);

	answer = Phi3Generate(&req, &len);
	answer = Phi3TrimUtf8(answer, &len);
	answer_server = Phi3Utf8ToCString(answer, len);

	value = Phi3FillTargetValue(answer_server, TupleDescAttr(tupdesc, attnum - 1));
	column = attnum;
	tuple = heap_modify_tuple_by_cols(tuple, tupdesc, 1, &column, &value, &value_isnull);
	return PointerGetDatum(tuple);
}

/*
 * The request of one fill: the rendered prompt (server encoding) as the
 * user turn of the chat template, with the optional system prompt, under
 * the session's phi3.max_tokens and sampling settings.  Shared with the
 * asynchronous fill (async_worker.c), which renders the same template.
 */
void
Phi3FillRequestInit(Phi3GenRequest *req, const char *prompt, const char *system)
{
	memset(req, 0, sizeof(*req));
	req->chat = true;
	req->max_tokens = Phi3ResolveMaxTokens(true, 0);
	req->sampling = Phi3ResolveSampling(true, 0, true, 0);
	req->content = Phi3CStringToUtf8(prompt, strlen(prompt), &req->content_len);
	if (system != NULL)
		req->system = Phi3CStringToUtf8(system, strlen(system), &req->system_len);
}

/*
 * The attribute number of the target column; errors if it does not exist
 * or is not of a string type.  fname names the trigger function in the
 * messages (phi3_fill or phi3_fill_async).
 */
int
Phi3FillTargetColumn(const char *fname, const char *name, TupleDesc tupdesc, const char *relname)
{
	int			attnum = SPI_fnumber(tupdesc, name);
	Oid			base;
	Form_pg_attribute attr;

	if (attnum == SPI_ERROR_NOATTRIBUTE || attnum <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist", name, relname),
				 errdetail("It is the target column of trigger function %s.", fname)));
	attr = TupleDescAttr(tupdesc, attnum - 1);
	if (attr->attgenerated)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of relation \"%s\" is a generated column", name, relname),
				 errdetail("%s can only fill a column of type text, varchar or char.", fname)));
	base = getBaseType(attr->atttypid);
	if (base != TEXTOID && base != VARCHAROID && base != BPCHAROID)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("column \"%s\" of relation \"%s\" is of type %s", name, relname,
						format_type_be(attr->atttypid)),
				 errdetail("%s can only fill a column of type text, varchar or char.", fname)));
	return attnum;
}

/*
 * The datum to store: the text through the column type's input function
 * (so domain constraints are checked), cut first to a length limit -- the
 * column's, or for a domain over varchar(n) / char(n), the domain's.
 */
Datum
Phi3FillTargetValue(const char *value, Form_pg_attribute attr)
{
	Oid			typinput;
	Oid			typioparam;
	int32		typmod = attr->atttypmod;
	int32		limit_typmod = typmod;
	char	   *v = (char *) value;

	if (limit_typmod < 0)
		(void) getBaseTypeAndTypmod(attr->atttypid, &limit_typmod);
	if (limit_typmod >= VARHDRSZ)
	{
		int			max_chars = limit_typmod - VARHDRSZ;
		int			len = strlen(v);
		int			cut = pg_mbcharcliplen(v, len, max_chars);

		if (cut < len)
			v = pnstrdup(v, cut);
	}
	getTypeInputInfo(attr->atttypid, &typinput, &typioparam);
	return OidInputFunctionCall(typinput, v, typioparam, typmod);
}

/*
 * Render the template with the tuple's values.  Errors for an unknown
 * column, an unterminated placeholder or a lone brace.
 */
char *
Phi3FillRenderTemplate(const char *fname, const char *tmpl, HeapTuple tuple, TupleDesc tupdesc,
					   const char *relname)
{
	StringInfoData buf;
	const char *p = tmpl;

	initStringInfo(&buf);
	while (*p != '\0')
	{
		if (p[0] == '{' && p[1] == '{')
		{
			appendStringInfoChar(&buf, '{');
			p += 2;
		}
		else if (p[0] == '}' && p[1] == '}')
		{
			appendStringInfoChar(&buf, '}');
			p += 2;
		}
		else if (p[0] == '{')
		{
			const char *close = strchr(p + 1, '}');
			char	   *name;
			int			attnum;
			char	   *value;

			if (close == NULL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unterminated placeholder in %s template", fname),
						 errhint("Write {column} for a column's value, {{ and }} for literal braces.")));
			name = pnstrdup(p + 1, close - p - 1);
			attnum = SPI_fnumber(tupdesc, name);
			if (attnum == SPI_ERROR_NOATTRIBUTE || attnum <= 0)
				ereport(ERROR,
						(errcode(ERRCODE_UNDEFINED_COLUMN),
						 errmsg("column \"%s\" of relation \"%s\" does not exist", name, relname),
						 errdetail("It is used in the prompt template of trigger function %s.", fname)));
			value = SPI_getvalue(tuple, tupdesc, attnum);
			if (value != NULL)
				appendStringInfoString(&buf, value);
			p = close + 1;
		}
		else if (p[0] == '}')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("single \"}\" in %s template", fname),
					 errhint("Write {column} for a column's value, {{ and }} for literal braces.")));
		else
			appendStringInfoChar(&buf, *p++);
	}
	return buf.data;
}
