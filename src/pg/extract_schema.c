/*-------------------------------------------------------------------------
 *
 * extract_schema.c
 *	  What phi3_extract decodes under: its schema argument (JSON Schema or
 *	  the short form) or a composite type, turned into one JSON Schema,
 *	  compiled by the engine, and described for the prompt.
 *
 * A schema argument is taken as JSON Schema when it has a "$schema" key,
 * a "type" naming a JSON Schema type ("object", "string", ... or a list
 * of them), or a "$ref", "anyOf" or "oneOf"; it is passed to the engine as
 * it is.  Anything else is the short form, translated here:
 *
 *     {"field": TYPE, ...}     an object with exactly these keys, all
 *                              required, in jsonb's key order
 *     TYPE "name"              a PostgreSQL type name as in a cast
 *                              (parseTypeString): text, varchar(n),
 *                              numeric, integer, bigint, smallint, real,
 *                              double precision, boolean, date, time,
 *                              timestamp, timestamptz, uuid, an enum type,
 *                              a composite type, a domain over one of
 *                              them; "name[]" an array of it
 *     TYPE "name?"             the same or null ("?" last, after "[]")
 *     TYPE {...}               a nested object (or, if it looks like JSON
 *                              Schema, a JSON Schema for that field)
 *     TYPE ["a", "b", ...]     one of these strings; a null element
 *                              allows null
 *
 * A field named "type" whose type is "integer" or "boolean" makes the
 * object look like JSON Schema; write such a schema in JSON Schema.
 *
 * PostgreSQL types become JSON Schema types whose every value the type's
 * input function accepts: integers within the type's range, varchar(n) at
 * most n characters, date as YYYY-MM-DD naming a real day (leap years
 * included), time hh:mm:ss, timestamp YYYY-MM-DDThh:mm:ss, timestamptz
 * the same with Z or +hh:mm, uuid in its canonical form.  So a composite
 * type (phi3_extract(doc, NULL::t)) gives a document that
 * jsonb_populate_record turns into a row without a cast failing.  Its
 * columns are all required and non-null.
 *
 * Errors (before any token is generated): a short form that is not an
 * object, is empty, or has an unknown type (naming the field by its path,
 * e.g. $.address.city); JSON Schema the engine refuses (naming the keyword
 * and its path); a type that has no JSON form here.
 *
 * IDENTIFICATION
 *	  src/pg/extract_schema.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "access/htup_details.h"
#include "catalog/pg_enum.h"
#include "catalog/pg_type.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/catcache.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

/* Deepest nesting of short-form objects and of composite types */
#define SHORT_MAX_DEPTH		32

/* Every value date_in accepts as YYYY-MM-DD (years 1000-9999) */
#define DATE_PATTERN \
	"([1-9][0-9]{3}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)" \
	"|([1-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|[13579][26])00)-02-29)"
#define TIME_PATTERN	"([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
#define ZONE_PATTERN	"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"

#define SHORT_FORM_HINT "Map each field to a PostgreSQL type name, e.g. '{\"customer\": \"text\", \"amount\": \"numeric\", \"due\": \"date?\"}', or pass a JSON Schema."

struct Phi3ExtractSpec
{
	char	   *json;			/* the JSON Schema, UTF-8 */
	size_t		json_len;
	P3Schema   *compiled;
	char	   *described;		/* for the prompt, UTF-8 */
	Jsonb	   *blank;			/* the result for an empty document */
};

static bool LooksLikeJsonSchema(JsonbContainer *c);
static void CheckDepth(StringInfo path, int depth);
static void ShortObject(JsonbContainer *c, StringInfo out, StringInfo path, int depth);
static void ShortValue(JsonbValue *v, StringInfo out, StringInfo path, int depth);
static void ShortEnum(JsonbContainer *c, StringInfo out, StringInfo path);
static void ShortType(const char *name, StringInfo out, StringInfo path, int depth);
static void ShortTypeErrorContext(void *arg);
static void NumberSchema(Oid typid, int32 typmod, bool typed, StringInfo out);
static void TypeSchema(Oid typid, int32 typmod, bool typed, StringInfo out, StringInfo path, int depth);
static void CompositeSchema(Oid typid, bool typed, StringInfo out, StringInfo path, int depth);
static void EnumSchema(Oid typid, StringInfo out);
static void PatternSchema(StringInfo out, const char *pattern, const char *description);
static Jsonb *BlankResult(JsonbContainer *root, bool json_schema);
static Phi3ExtractSpec *SpecFrom(const char *json_server, Jsonb *blank);

/*
 * The spec of a schema argument: JSON Schema as it is, or the short form
 * translated.
 */
Phi3ExtractSpec *
Phi3ExtractSpecFromJsonb(Jsonb *schema)
{
	StringInfoData out;
	StringInfoData path;

	if (JB_ROOT_IS_SCALAR(schema) || !JB_ROOT_IS_OBJECT(schema))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema must be a JSON object"),
				 errhint(SHORT_FORM_HINT)));
	if (JB_ROOT_COUNT(schema) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema must not be empty"),
				 errhint(SHORT_FORM_HINT)));
	if (LooksLikeJsonSchema(&schema->root))
		return SpecFrom(JsonbToCString(NULL, &schema->root, VARSIZE(schema)),
						BlankResult(&schema->root, true));

	initStringInfo(&out);
	initStringInfo(&path);
	appendStringInfoChar(&path, '$');
	ShortObject(&schema->root, &out, &path, 0);
	return SpecFrom(out.data, BlankResult(&schema->root, false));
}

/*
 * The spec of a composite type: an object of its columns.
 */
Phi3ExtractSpec *
Phi3ExtractSpecFromType(Oid typid)
{
	StringInfoData out;
	StringInfoData path;
	StringInfoData blank;
	TupleDesc	desc;
	bool		first = true;

	if (!type_is_rowtype(typid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("target must be of a composite type, not %s", format_type_be(typid)),
				 errhint("Pass a null of a composite type, e.g. NULL::invoice_facts, or a schema as jsonb.")));
	initStringInfo(&out);
	initStringInfo(&path);
	appendStringInfoChar(&path, '$');
	CompositeSchema(typid, true, &out, &path, 0);

	initStringInfo(&blank);
	appendStringInfoChar(&blank, '{');
	desc = lookup_rowtype_tupdesc(typid, -1);
	for (int i = 0; i < desc->natts; i++)
	{
		if (TupleDescAttr(desc, i)->attisdropped)
			continue;
		if (!first)
			appendStringInfoChar(&blank, ',');
		first = false;
		escape_json(&blank, NameStr(TupleDescAttr(desc, i)->attname));
		appendStringInfoString(&blank, ":null");
	}
	ReleaseTupleDesc(desc);
	appendStringInfoChar(&blank, '}');
	return SpecFrom(out.data,
					DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(blank.data))));
}

/* The compiled schema (freed with the memory context it was made in) */
P3Schema *
Phi3ExtractSpecSchema(const Phi3ExtractSpec *spec)
{
	return spec->compiled;
}

/* The schema for the prompt (UTF-8) */
const char *
Phi3ExtractSpecDescription(const Phi3ExtractSpec *spec)
{
	return spec->described;
}

/* The JSON Schema decoded under (UTF-8) */
const char *
Phi3ExtractSpecJson(const Phi3ExtractSpec *spec, size_t *len)
{
	*len = spec->json_len;
	return spec->json;
}

/*
 * The result for an answer of the model (UTF-8, a complete document of
 * the schema), or for no answer (answer NULL: an empty document): every
 * top-level property null, or JSON null when the root is not an object.
 */
Jsonb *
Phi3ExtractSpecResult(const Phi3ExtractSpec *spec, const char *answer, size_t len)
{
	if (answer == NULL)
		return spec->blank;
	return Phi3JsonbFromAnswer(answer, len);
}

/* Compile, describe, keep. */
static Phi3ExtractSpec *
SpecFrom(const char *json_server, Jsonb *blank)
{
	Phi3ExtractSpec *spec = palloc0(sizeof(Phi3ExtractSpec));
	P3Text	   *text = Phi3TextNew();
	P3Error		err;

	spec->json = Phi3CStringToUtf8(json_server, strlen(json_server), &spec->json_len);
	spec->compiled = Phi3CompileSchema(spec->json, spec->json_len);
	p3_error_clear(&err);
	if (p3_schema_describe(spec->compiled, text, &err) != P3_OK)
		Phi3ReportEngineError(&err, NULL);
	spec->described = pnstrdup(text->data ? text->data : "", text->len);
	Phi3TextFree(text);
	spec->blank = blank;
	{
		P3SchemaStats st;

		p3_schema_stats(spec->compiled, &st);
		elog(DEBUG1, "phi3_extract: schema compiled in %.3f ms: %d nodes, %d automaton states, depth %d",
			 st.compile_ms, st.n_nodes, st.n_states, st.depth);
	}
	return spec;
}

/*
 * Whether an object of the schema argument is JSON Schema rather than the
 * short form (see the file comment).
 */
static bool
LooksLikeJsonSchema(JsonbContainer *c)
{
	static const char *const json_types[] = {"object", "array", "string", "number",
	"integer", "boolean", "null"};
	static const char *const keywords[] = {"$schema", "$ref", "anyOf", "oneOf"};
	JsonbValue *type;

	for (int i = 0; i < lengthof(keywords); i++)
		if (getKeyJsonValueFromContainer(c, keywords[i], strlen(keywords[i]), NULL) != NULL)
			return true;
	type = getKeyJsonValueFromContainer(c, "type", 4, NULL);
	if (type == NULL)
		return false;
	if (type->type == jbvBinary && JsonContainerIsArray(type->val.binary.data))
		return true;
	if (type->type != jbvString)
		return false;
	for (int i = 0; i < lengthof(json_types); i++)
		if (type->val.string.len == strlen(json_types[i]) &&
			memcmp(type->val.string.val, json_types[i], type->val.string.len) == 0)
			return true;
	return false;
}

/* The stack and the nesting limit, before a level of the short form or of a type's shape. */
static void
CheckDepth(StringInfo path, int depth)
{
	check_stack_depth();
	if (depth >= SHORT_MAX_DEPTH)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("schema nests too deeply"),
				 errdetail("Field %s is nested %d levels deep; the limit is %d.", path->data, depth,
						   SHORT_MAX_DEPTH)));
}

/* A short-form object: every field required, no other key. */
static void
ShortObject(JsonbContainer *c, StringInfo out, StringInfo path, int depth)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken tok;
	JsonbValue	v;
	StringInfoData required;
	int			path_len = path->len;
	int			n = 0;

	CheckDepth(path, depth);
	initStringInfo(&required);
	appendStringInfoString(out, "{\"type\":\"object\",\"properties\":{");
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		appendStringInfo(path, ".%s", key);
		if (n > 0)
		{
			appendStringInfoChar(out, ',');
			appendStringInfoChar(&required, ',');
		}
		escape_json(out, key);
		escape_json(&required, key);
		appendStringInfoChar(out, ':');
		tok = JsonbIteratorNext(&it, &v, true);
		Assert(tok == WJB_VALUE);
		ShortValue(&v, out, path, depth);
		path->len = path_len;
		path->data[path_len] = '\0';
		n++;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("object of field %s in schema must not be empty", path->data),
				 errhint(SHORT_FORM_HINT)));
	appendStringInfo(out, "},\"required\":[%s],\"additionalProperties\":false}", required.data);
}

/* A short-form field's type: a type name, a nested object or an enum. */
static void
ShortValue(JsonbValue *v, StringInfo out, StringInfo path, int depth)
{
	if (v->type == jbvString)
	{
		ShortType(pnstrdup(v->val.string.val, v->val.string.len), out, path, depth);
		return;
	}
	if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
	{
		if (LooksLikeJsonSchema(v->val.binary.data))
			appendStringInfoString(out, JsonbToCString(NULL, v->val.binary.data, v->val.binary.len));
		else
			ShortObject(v->val.binary.data, out, path, depth + 1);
		return;
	}
	if (v->type == jbvBinary && JsonContainerIsArray(v->val.binary.data))
	{
		ShortEnum(v->val.binary.data, out, path);
		return;
	}
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("type of field %s in schema must be a type name, an object or an array of labels",
					path->data),
			 errhint(SHORT_FORM_HINT)));
}

/* An array of strings (and null): one of them. */
static void
ShortEnum(JsonbContainer *c, StringInfo out, StringInfo path)
{
	JsonbIterator *it = JsonbIteratorInit(c);
	JsonbIteratorToken tok;
	JsonbValue	v;
	int			n_strings = 0;
	int			n = 0;

	appendStringInfoString(out, "{\"enum\":[");
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok != WJB_ELEM)
			continue;
		if (v.type != jbvString && v.type != jbvNull)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("labels of field %s in schema must be strings", path->data),
					 errdetail("Element %d is not a string.", n + 1),
					 errhint("Write the labels as an array of strings, e.g. [\"positive\", \"negative\"]; null allows null.")));
		if (n > 0)
			appendStringInfoChar(out, ',');
		if (v.type == jbvNull)
			appendStringInfoString(out, "null");
		else
		{
			escape_json(out, pnstrdup(v.val.string.val, v.val.string.len));
			n_strings++;
		}
		n++;
	}
	if (n_strings == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("labels of field %s in schema must not be empty", path->data),
				 errhint("Write the labels as an array of strings, e.g. [\"positive\", \"negative\"].")));
	appendStringInfoString(out, "]}");
}

/* Error context of parsing a field's type name: the field */
static void
ShortTypeErrorContext(void *arg)
{
	errcontext("type of field %s in schema", (const char *) arg);
}

/*
 * A type name, optionally ending in "?" (or null): the type's JSON Schema.
 */
static void
ShortType(const char *name, StringInfo out, StringInfo path, int depth)
{
	char	   *s = pstrdup(name);
	size_t		len = strlen(s);
	bool		nullable = false;
	Oid			typid = InvalidOid;
	int32		typmod = -1;

	while (len > 0 && isspace((unsigned char) s[len - 1]))
		s[--len] = '\0';
	if (len > 0 && s[len - 1] == '?')
	{
		nullable = true;
		s[--len] = '\0';
	}
	/* only what a type name can hold, so that parsing it raises no syntax error */
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char) s[i]) && strchr(" _(),[].\"", s[i]) == NULL &&
			!IS_HIGHBIT_SET(s[i]))
		{
			len = 0;
			break;
		}
	if (len > 0)
	{
		ErrorContextCallback errcb;

		errcb.callback = ShortTypeErrorContext;
		errcb.arg = path->data;
		errcb.previous = error_context_stack;
		error_context_stack = &errcb;
		(void) parseTypeString(s, &typid, &typmod, true);
		error_context_stack = errcb.previous;
	}
	if (!OidIsValid(typid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("unknown type \"%s\" for field %s in schema", name, path->data),
				 errdetail("A field's type is a PostgreSQL type name (text, varchar(n), numeric, integer, bigint, boolean, date, timestamp, timestamptz, uuid, ...), optionally with [] for an array and ? at the end to allow null."),
				 errhint(SHORT_FORM_HINT)));
	if (nullable)
		appendStringInfoString(out, "{\"anyOf\":[");
	TypeSchema(typid, typmod, false, out, path, depth);
	if (nullable)
		appendStringInfoString(out, ",{\"type\":\"null\"}]}");
}

/*
 * The JSON Schema of a PostgreSQL type: every value it allows is valid
 * input of the type.
 */
static void
TypeSchema(Oid typid, int32 typmod, bool typed, StringInfo out, StringInfo path, int depth)
{
	Oid			base = getBaseTypeAndTypmod(typid, &typmod);
	Oid			elem = get_element_type(base);

	CheckDepth(path, depth);
	if (OidIsValid(elem))
	{
		appendStringInfoString(out, "{\"type\":\"array\",\"items\":");
		TypeSchema(elem, typmod, typed, out, path, depth + 1);
		appendStringInfoChar(out, '}');
		return;
	}
	if (type_is_rowtype(base))
	{
		CompositeSchema(base, typed, out, path, depth + 1);
		return;
	}
	if (type_is_enum(base))
	{
		EnumSchema(base, out);
		return;
	}
	switch (base)
	{
		case TEXTOID:
			appendStringInfoString(out, "{\"type\":\"string\"}");
			break;
		case VARCHAROID:
		case BPCHAROID:
			if (typmod > VARHDRSZ)
				appendStringInfo(out, "{\"type\":\"string\",\"maxLength\":%d}", typmod - VARHDRSZ);
			else
				appendStringInfoString(out, "{\"type\":\"string\"}");
			break;
		case INT2OID:
			appendStringInfoString(out, "{\"type\":\"integer\",\"minimum\":-32768,\"maximum\":32767}");
			break;
		case INT4OID:
			appendStringInfoString(out, "{\"type\":\"integer\",\"minimum\":-2147483648,\"maximum\":2147483647}");
			break;
		case INT8OID:
			appendStringInfoString(out, "{\"type\":\"integer\"}");
			break;
		case NUMERICOID:
		case FLOAT4OID:
		case FLOAT8OID:
			NumberSchema(base, typmod, typed, out);
			break;
		case BOOLOID:
			appendStringInfoString(out, "{\"type\":\"boolean\"}");
			break;
		case DATEOID:
			PatternSchema(out, DATE_PATTERN, "date YYYY-MM-DD");
			break;
		case TIMEOID:
			PatternSchema(out, TIME_PATTERN, "time hh:mm:ss");
			break;
		case TIMESTAMPOID:
			PatternSchema(out, DATE_PATTERN "T" TIME_PATTERN, "timestamp YYYY-MM-DDThh:mm:ss");
			break;
		case TIMESTAMPTZOID:
			PatternSchema(out, DATE_PATTERN "T" TIME_PATTERN ZONE_PATTERN,
						  "timestamp YYYY-MM-DDThh:mm:ssZ or with +hh:mm");
			break;
		case UUIDOID:
			appendStringInfoString(out, "{\"type\":\"string\",\"format\":\"uuid\"}");
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("type %s of field %s cannot be extracted", format_type_be(typid), path->data),
					 errdetail("Supported are text, varchar, char, smallint, integer, bigint, numeric, real, double precision, boolean, date, time, timestamp, timestamptz, uuid, enum and composite types, domains over them and arrays of them.")));
	}
}

/*
 * A number.  In a jsonb result any JSON number will do (jsonb holds it as
 * numeric), so it is a plain "number"; for a typed result (typed) it must
 * also fit the column: numeric(p,s) and the floats are decimal strings of
 * bounded size (jsonb_populate_record reads them with the type's input
 * function): at most p-s digits before the point and s after it, 15 and
 * 15 for double precision, 7 and 6 for real.  Plain numeric takes any
 * JSON number.
 */
static void
NumberSchema(Oid typid, int32 typmod, bool typed, StringInfo out)
{
	int			before;
	int			after;

	if (!typed || (typid == NUMERICOID && typmod < (int32) VARHDRSZ))
	{
		appendStringInfoString(out, "{\"type\":\"number\"}");
		return;
	}
	if (typid == NUMERICOID)
	{
		int			precision = ((typmod - VARHDRSZ) >> 16) & 0xffff;
		int			scale = (((typmod - VARHDRSZ) & 0x7ff) ^ 1024) - 1024;

		before = precision - Max(scale, 0);
		after = Max(Min(scale, precision), 0);
		if (scale < 0)
			before = 1;			/* rounds to tens or more: a digit always fits */
	}
	else
	{
		before = typid == FLOAT8OID ? 15 : 7;
		after = typid == FLOAT8OID ? 15 : 6;
	}
	appendStringInfoString(out, "{\"type\":\"string\",\"pattern\":\"^-?");
	if (before == 0)
		appendStringInfoChar(out, '0');
	else if (before == 1)
		appendStringInfoString(out, "[0-9]");
	else
		appendStringInfo(out, "(0|[1-9][0-9]{0,%d})", before - 1);
	if (after > 0)
		appendStringInfo(out, "([.][0-9]{1,%d})?", after);
	appendStringInfo(out, "$\",\"description\":\"a number, at most %d digits before the point and %d after\"}",
					 before, after);
}

/* {"type":"string","pattern":"^...$","description":...} */
static void
PatternSchema(StringInfo out, const char *pattern, const char *description)
{
	appendStringInfo(out, "{\"type\":\"string\",\"pattern\":\"^%s$\",\"description\":\"%s\"}",
					 pattern, description);
}

/* An object of the composite type's columns, each required. */
static void
CompositeSchema(Oid typid, bool typed, StringInfo out, StringInfo path, int depth)
{
	TupleDesc	desc = lookup_rowtype_tupdesc_copy(typid, -1);
	StringInfoData required;
	int			path_len = path->len;
	int			n = 0;

	initStringInfo(&required);
	appendStringInfoString(out, "{\"type\":\"object\",\"properties\":{");
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (n > 0)
		{
			appendStringInfoChar(out, ',');
			appendStringInfoChar(&required, ',');
		}
		escape_json(out, NameStr(att->attname));
		escape_json(&required, NameStr(att->attname));
		appendStringInfoChar(out, ':');
		appendStringInfo(path, ".%s", NameStr(att->attname));
		TypeSchema(att->atttypid, att->atttypmod, typed, out, path, depth);
		path->len = path_len;
		path->data[path_len] = '\0';
		n++;
	}
	if (n == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("composite type %s has no columns", format_type_be(typid))));
	appendStringInfo(out, "},\"required\":[%s],\"additionalProperties\":false}", required.data);
}

/* Sort enum members by their sort order */
static int
CompareEnumOrder(const void *a, const void *b)
{
	float4		x = (*(Form_pg_enum const *) a)->enumsortorder;
	float4		y = (*(Form_pg_enum const *) b)->enumsortorder;

	return x < y ? -1 : x > y;
}

/* {"enum": [the labels in their order]} */
static void
EnumSchema(Oid typid, StringInfo out)
{
	CatCList   *list = SearchSysCacheList1(ENUMTYPOIDNAME, ObjectIdGetDatum(typid));
	Form_pg_enum *members = palloc(sizeof(Form_pg_enum) * Max(list->n_members, 1));

	for (int i = 0; i < list->n_members; i++)
		members[i] = (Form_pg_enum) GETSTRUCT(&list->members[i]->tuple);
	qsort(members, list->n_members, sizeof(Form_pg_enum), CompareEnumOrder);
	appendStringInfoString(out, "{\"enum\":[");
	for (int i = 0; i < list->n_members; i++)
	{
		if (i > 0)
			appendStringInfoChar(out, ',');
		escape_json(out, NameStr(members[i]->enumlabel));
	}
	appendStringInfoString(out, "]}");
	if (list->n_members == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("enum type %s has no labels", format_type_be(typid))));
	ReleaseSysCacheList(list);
}

/*
 * The result for an empty document: the root object's properties (the
 * short form's fields, or JSON Schema's "properties") all null; JSON null
 * when there are none.
 */
static Jsonb *
BlankResult(JsonbContainer *root, bool json_schema)
{
	JsonbParseState *state = NULL;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	v;
	JsonbValue	null_value;
	JsonbContainer *fields = root;

	if (json_schema)
	{
		JsonbValue *props = getKeyJsonValueFromContainer(root, "properties", 10, NULL);

		if (props == NULL || props->type != jbvBinary || !JsonContainerIsObject(props->val.binary.data))
		{
			null_value.type = jbvNull;
			return JsonbValueToJsonb(&null_value);
		}
		fields = props->val.binary.data;
	}
	null_value.type = jbvNull;
	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	it = JsonbIteratorInit(fields);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			pushJsonbValue(&state, WJB_KEY, &v);
			pushJsonbValue(&state, WJB_VALUE, &null_value);
		}
	}
	return JsonbValueToJsonb(pushJsonbValue(&state, WJB_END_OBJECT, NULL));
}
