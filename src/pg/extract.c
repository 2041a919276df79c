/*-------------------------------------------------------------------------
 *
 * extract.c
 *	  phi3_extract(doc text, schema jsonb) returns jsonb.
 *
 * The schema is a non-empty JSON object mapping each field name to one of
 * the type names "text", "numeric", "integer", "boolean" and "date".  The
 * model is asked (prompts.c) for one JSON object with exactly these keys;
 * the first balanced {...} of its answer is parsed with PostgreSQL's
 * non-throwing JSON parser, and the result is built with exactly the
 * schema's keys, each value coerced to the declared type:
 *
 *     text     a string as is; a number or boolean as its text
 *     numeric  a JSON number, or a string holding one
 *     integer  a whole number (1, 1.0, "1") within bigint range
 *     boolean  true/false, or a string/number parse_bool accepts
 *              ("yes", "off", "1", ...)
 *     date     a string YYYY-MM-DD naming a real date (kept as that
 *              string, since JSON has no date type)
 *
 * A field the answer lacks, or whose value cannot be coerced, is JSON
 * null; so the result always has the schema's shape, whatever the model
 * says.  The values are only as good as the model's answer: the
 * schema-constrained decoder (the engine's mask hook) is what will make
 * them reliable, and is not used yet.
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

#include <errno.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

PG_FUNCTION_INFO_V1(phi3_extract);
PG_FUNCTION_INFO_V1(phi3_extract_answer);

/* Deepest nesting of the model's answer we are willing to parse */
#define EXTRACT_MAX_DEPTH		64
/* Longest number we coerce (digits and exponent are bounded too) */
#define EXTRACT_MAX_NUMBER_LEN	1000

typedef enum FieldType
{
	FIELD_TEXT,
	FIELD_NUMERIC,
	FIELD_INTEGER,
	FIELD_BOOLEAN,
	FIELD_DATE
} FieldType;

static const char *const field_type_names[] = {"text", "numeric", "integer", "boolean", "date"};

#define VALID_TYPES_DETAIL "Valid types are \"text\", \"numeric\", \"integer\", \"boolean\" and \"date\"."

/* One schema field and what the answer said about it */
typedef struct SchemaField
{
	char	   *key;			/* server encoding, as in the schema */
	int			key_len;
	char	   *key_utf8;		/* for matching the answer's keys */
	FieldType	type;
	int			match;			/* 0: none, 1: case-insensitive key, 2: exact key */
	bool		is_scalar;		/* the matched value is a scalar */
	JsonTokenType token_type;
	char	   *token;			/* UTF-8 scalar (de-escaped string), or NULL */
} SchemaField;

/* State of the JSON semantic actions */
typedef struct ParseState
{
	SchemaField *fields;
	int			n_fields;
	int			depth;			/* current nesting: 1 inside the top object */
	SchemaField *current;		/* field of the key being read at depth 1 */
} ParseState;

static SchemaField *ParseSchema(Jsonb *schema, int *n_fields);
static char *FieldList(SchemaField *fields, int n_fields);
static void ParseAnswer(const char *answer, size_t len, SchemaField *fields, int n_fields);
static bool FindObject(const char *s, size_t len, size_t *start, size_t *end);
static void OnObjectStart(void *state);
static void OnObjectEnd(void *state);
static void OnField(void *state, char *fname, bool isnull);
static void OnScalar(void *state, char *token, JsonTokenType tokentype);
static Jsonb *BuildResult(SchemaField *fields, int n_fields);
static bool CoerceField(SchemaField *field, JsonbValue *out);
static bool IsJsonNumber(const char *s);
static bool ParseInteger(const char *s, int64 *out);
static bool ParseDate(const char *s);

/*
 * phi3_extract(doc text, schema jsonb) returns jsonb.
 */
Datum
phi3_extract(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(1);
	SchemaField *fields;
	int			n_fields;
	Phi3GenRequest req;
	char	   *answer;
	size_t		len;

	fields = ParseSchema(schema, &n_fields);

	memset(&req, 0, sizeof(req));
	req.content = Phi3TextToUtf8(PG_GETARG_TEXT_PP(0), &req.content_len);
	if (!Phi3IsBlank(req.content, req.content_len))
	{
		req.chat = true;
		req.max_tokens = Phi3ResolveMaxTokens(true, 0);
		req.sampling = Phi3ResolveSampling(true, 0, true, 0);
		req.system = Phi3ExtractSystem();
		req.system_len = strlen(req.system);
		req.instruction = Phi3ExtractInstruction(FieldList(fields, n_fields));
		req.instruction_len = strlen(req.instruction);

		answer = Phi3Generate(&req, &len);
		ParseAnswer(answer, len, fields, n_fields);
	}

	PG_RETURN_JSONB_P(BuildResult(fields, n_fields));
}

/*
 * phi3_extract_answer(answer text, schema jsonb) returns jsonb: the
 * parsing and coercion half of phi3_extract, applied to a given answer
 * instead of the model's.  Not part of the extension's SQL API: the
 * regression tests declare it themselves (AS '$libdir/phi3') to check the
 * coercion rules on answers they write.
 */
Datum
phi3_extract_answer(PG_FUNCTION_ARGS)
{
	Jsonb	   *schema = PG_GETARG_JSONB_P(1);
	SchemaField *fields;
	int			n_fields;
	char	   *answer;
	size_t		len;

	fields = ParseSchema(schema, &n_fields);
	answer = Phi3TextToUtf8(PG_GETARG_TEXT_PP(0), &len);
	ParseAnswer(answer, len, fields, n_fields);
	PG_RETURN_JSONB_P(BuildResult(fields, n_fields));
}

/*
 * Check the schema and turn it into fields; errors for anything but a
 * non-empty object of known type names.
 */
static SchemaField *
ParseSchema(Jsonb *schema, int *n_fields)
{
	SchemaField *fields;
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;
	int			n = 0;
	int			count;
	char	   *key = NULL;
	int			key_len = 0;

	if (JB_ROOT_IS_SCALAR(schema) || !JB_ROOT_IS_OBJECT(schema))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema must be a JSON object"),
				 errhint("Map each field name to its type, e.g. '{\"name\": \"text\", \"price\": \"numeric\"}'.")));
	count = JB_ROOT_COUNT(schema);
	if (count == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("schema must not be empty"),
				 errhint("Map each field name to its type, e.g. '{\"name\": \"text\", \"price\": \"numeric\"}'.")));

	fields = palloc0(sizeof(SchemaField) * count);
	it = JsonbIteratorInit(&schema->root);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			key = pnstrdup(v.val.string.val, v.val.string.len);
			key_len = v.val.string.len;
		}
		else if (tok == WJB_VALUE)
		{
			char	   *type_name;
			int			t;
			size_t		utf8_len;

			if (v.type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("type of field \"%s\" in schema must be a string", key),
						 errdetail(VALID_TYPES_DETAIL)));
			type_name = pnstrdup(v.val.string.val, v.val.string.len);
			for (t = 0; t < lengthof(field_type_names); t++)
				if (strcmp(type_name, field_type_names[t]) == 0)
					break;
			if (t == lengthof(field_type_names))
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("unknown type \"%s\" for field \"%s\" in schema", type_name, key),
						 errdetail(VALID_TYPES_DETAIL)));
			Assert(n < count);
			fields[n].key = key;
			fields[n].key_len = key_len;
			fields[n].key_utf8 = Phi3CStringToUtf8(key, key_len, &utf8_len);
			fields[n].type = (FieldType) t;
			n++;
		}
	}
	*n_fields = n;
	return fields;
}

/*
 * The schema as the prompt lists it: "key" (type), "key" (type), ...
 * (UTF-8).
 */
static char *
FieldList(SchemaField *fields, int n_fields)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < n_fields; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, fields[i].key_utf8);
		appendStringInfo(&buf, " (%s)", field_type_names[fields[i].type]);
	}
	return buf.data;
}

/*
 * Find the first balanced {...} of the answer and record, for each schema
 * field, the value the object gives it.  An answer without a parseable
 * object leaves every field unmatched.
 */
static void
ParseAnswer(const char *answer, size_t len, SchemaField *fields, int n_fields)
{
	size_t		start;
	size_t		end;
	char	   *object;
	JsonLexContext *lex;
	JsonSemAction sem;
	ParseState	state;
	int			i;

	if (!FindObject(answer, len, &start, &end))
		return;

	object = pnstrdup(answer + start, end - start);
	lex = makeJsonLexContextCstringLen(object, (int) (end - start), PG_UTF8, true);

	memset(&state, 0, sizeof(state));
	state.fields = fields;
	state.n_fields = n_fields;
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &state;
	sem.object_start = OnObjectStart;
	sem.object_end = OnObjectEnd;
	sem.array_start = OnObjectStart;
	sem.array_end = OnObjectEnd;
	sem.object_field_start = OnField;
	sem.scalar = OnScalar;

	if (pg_parse_json(lex, &sem) != JSON_SUCCESS)
	{
		/* Invalid JSON: forget whatever the actions saw before the error */
		for (i = 0; i < n_fields; i++)
		{
			fields[i].match = 0;
			fields[i].token = NULL;
		}
	}
}

/*
 * Locate the first balanced {...} in s (braces inside JSON strings do not
 * count).  False if there is none, or it nests deeper than we parse.
 */
static bool
FindObject(const char *s, size_t len, size_t *start, size_t *end)
{
	const char *open = memchr(s, '{', len);
	size_t		i;
	int			depth = 0;
	bool		in_string = false;
	bool		escaped = false;

	if (open == NULL)
		return false;
	*start = open - s;
	for (i = *start; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (escaped)
				escaped = false;
			else if (c == '\\')
				escaped = true;
			else if (c == '"')
				in_string = false;
			continue;
		}
		if (c == '"')
			in_string = true;
		else if (c == '{' || c == '[')
		{
			if (++depth > EXTRACT_MAX_DEPTH)
				return false;
		}
		else if (c == '}' || c == ']')
		{
			if (--depth == 0)
			{
				*end = i + 1;
				return true;
			}
		}
	}
	return false;
}

/* Semantic action: an object or array starts */
static void
OnObjectStart(void *arg)
{
	ParseState *state = (ParseState *) arg;

	/* A container as a top-level field's value: not a scalar */
	if (state->depth == 1 && state->current != NULL)
	{
		state->current->is_scalar = false;
		state->current->token = NULL;
		state->current = NULL;
	}
	state->depth++;
}

/* Semantic action: an object or array ends */
static void
OnObjectEnd(void *arg)
{
	ParseState *state = (ParseState *) arg;

	state->depth--;
}

/* Semantic action: a key; at the top level, find its schema field */
static void
OnField(void *arg, char *fname, bool isnull)
{
	ParseState *state = (ParseState *) arg;
	SchemaField *best = NULL;
	int			best_match = 0;
	int			i;

	state->current = NULL;
	if (state->depth != 1)
		return;
	for (i = 0; i < state->n_fields; i++)
	{
		SchemaField *f = &state->fields[i];

		if (strcmp(f->key_utf8, fname) == 0)
		{
			best = f;
			best_match = 2;
			break;
		}
		if (best == NULL && pg_strcasecmp(f->key_utf8, fname) == 0)
		{
			best = f;
			best_match = 1;
		}
	}
	/* A later duplicate key wins, as in jsonb; an exact key beats a case-insensitive one */
	if (best != NULL && best_match >= best->match)
	{
		best->match = best_match;
		best->is_scalar = false;
		best->token = NULL;
		state->current = best;
	}
}

/* Semantic action: a scalar; record it if it is a top-level field's value */
static void
OnScalar(void *arg, char *token, JsonTokenType tokentype)
{
	ParseState *state = (ParseState *) arg;

	if (state->depth == 1 && state->current != NULL)
	{
		state->current->is_scalar = true;
		state->current->token_type = tokentype;
		state->current->token = token;
		state->current = NULL;
	}
}

/*
 * The result object: exactly the schema's keys, coerced values or null.
 */
static Jsonb *
BuildResult(SchemaField *fields, int n_fields)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;
	int			i;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < n_fields; i++)
	{
		JsonbValue	key;
		JsonbValue	value;

		key.type = jbvString;
		key.val.string.val = fields[i].key;
		key.val.string.len = fields[i].key_len;
		pushJsonbValue(&state, WJB_KEY, &key);

		if (!CoerceField(&fields[i], &value))
			value.type = jbvNull;
		pushJsonbValue(&state, WJB_VALUE, &value);
	}
	result = pushJsonbValue(&state, WJB_END_OBJECT, NULL);
	return JsonbValueToJsonb(result);
}

/*
 * Coerce a field's recorded value to its type; false when there is no
 * value, it is null, or it does not fit the type.
 */
static bool
CoerceField(SchemaField *field, JsonbValue *out)
{
	const char *token = field->token;
	JsonTokenType tt = field->token_type;
	char	   *trimmed;
	size_t		len;
	int64		i64;
	bool		b;

	if (field->match == 0 || !field->is_scalar || token == NULL || tt == JSON_TOKEN_NULL)
		return false;

	len = strlen(token);
	trimmed = Phi3TrimUtf8(pstrdup(token), &len);

	switch (field->type)
	{
		case FIELD_TEXT:
			out->type = jbvString;
			out->val.string.val = Phi3Utf8ToCString(token, strlen(token));
			out->val.string.len = strlen(out->val.string.val);
			return true;

		case FIELD_NUMERIC:
			if ((tt != JSON_TOKEN_NUMBER && tt != JSON_TOKEN_STRING) || !IsJsonNumber(trimmed))
				return false;
			out->type = jbvNumeric;
			out->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																   CStringGetDatum(trimmed),
																   ObjectIdGetDatum(InvalidOid),
																   Int32GetDatum(-1)));
			return true;

		case FIELD_INTEGER:
			if ((tt != JSON_TOKEN_NUMBER && tt != JSON_TOKEN_STRING) || !ParseInteger(trimmed, &i64))
				return false;
			out->type = jbvNumeric;
			out->val.numeric = int64_to_numeric(i64);
			return true;

		case FIELD_BOOLEAN:
			if (tt == JSON_TOKEN_TRUE || tt == JSON_TOKEN_FALSE)
				b = (tt == JSON_TOKEN_TRUE);
			else if (!parse_bool(trimmed, &b))
				return false;
			out->type = jbvBool;
			out->val.boolean = b;
			return true;

		case FIELD_DATE:
			if (tt != JSON_TOKEN_STRING || !ParseDate(trimmed))
				return false;
			out->type = jbvString;
			out->val.string.val = trimmed;
			out->val.string.len = strlen(trimmed);
			return true;
	}
	return false;				/* keep compiler quiet */
}

/*
 * Whether s is a JSON number of bounded size: -?(0|[1-9][0-9]*)(.[0-9]+)?
 * ([eE][+-]?[0-9]+)?, at most EXTRACT_MAX_NUMBER_LEN characters, exponent
 * of at most 4 digits.  Such a string is always valid numeric input.
 */
static bool
IsJsonNumber(const char *s)
{
	const char *p = s;
	int			exp_digits = 0;

	if (strlen(s) == 0 || strlen(s) > EXTRACT_MAX_NUMBER_LEN)
		return false;
	if (*p == '-')
		p++;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (*p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (*p == '.')
	{
		p++;
		if (!(*p >= '0' && *p <= '9'))
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'e' || *p == 'E')
	{
		p++;
		if (*p == '+' || *p == '-')
			p++;
		while (*p >= '0' && *p <= '9')
		{
			p++;
			exp_digits++;
		}
		if (exp_digits == 0 || exp_digits > 4)
			return false;
	}
	return *p == '\0';
}

/*
 * Parse a whole number: -?[0-9]+ optionally followed by a fraction of
 * zeros ("42", "-7", "3.00"), within bigint range.
 */
static bool
ParseInteger(const char *s, int64 *out)
{
	const char *p = s;
	char	   *digits_end;
	char	   *copy;
	long long	v;

	if (*p == '-')
		p++;
	if (!(*p >= '0' && *p <= '9'))
		return false;
	while (*p >= '0' && *p <= '9')
		p++;
	digits_end = (char *) p;
	if (*p == '.')
	{
		p++;
		while (*p == '0')
			p++;
	}
	if (*p != '\0')
		return false;

	copy = pnstrdup(s, digits_end - s);
	errno = 0;
	v = strtoll(copy, NULL, 10);
	if (errno == ERANGE)
		return false;
	*out = (int64) v;
	return true;
}

/*
 * Whether s is YYYY-MM-DD naming a real date (year 0001 to 9999).
 */
static bool
ParseDate(const char *s)
{
	int			y;
	int			m;
	int			d;
	int			i;

	if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
		return false;
	for (i = 0; i < 10; i++)
		if (i != 4 && i != 7 && !(s[i] >= '0' && s[i] <= '9'))
			return false;
	y = atoi(s);
	m = atoi(s + 5);
	d = atoi(s + 8);
	if (y < 1 || m < 1 || m > 12 || d < 1)
		return false;
	return d <= day_tab[isleap(y) ? 1 : 0][m - 1];
}
