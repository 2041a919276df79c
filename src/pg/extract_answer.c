/*-------------------------------------------------------------------------
 *
 * extract_answer.c
 *	  phi3_extract's schema, and the model's answer parsed and coerced to it.
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
 * says.  Answer keys match schema keys exactly, else ignoring ASCII case;
 * a later duplicate key wins, an exact match beats a case-insensitive one.
 * An answer without a parseable object (none, unfinished, invalid JSON,
 * nested deeper than EXTRACT_MAX_DEPTH) gives every field null.
 *
 * Encoding: everything compared or parsed here is UTF-8, everything
 * returned is in the server encoding.  The answer is UTF-8 (the engine's,
 * or a test's converted from the server encoding); the schema, a jsonb, is
 * in the server encoding, so its keys are converted to UTF-8 for matching
 * (and for the prompt) and the result uses the schema's own keys; text
 * values are converted back to the server encoding (encoding.c).
 *
 * \u escapes need care: PostgreSQL's JSON lexer turns \uXXXX into the
 * *server* encoding (pg_unicode_to_server), raising an error for a
 * character that encoding lacks (and for any non-ASCII escape in
 * SQL_ASCII), while the answer's other bytes stay UTF-8.  So before the
 * lexer sees the answer's object, each \u escape naming a non-ASCII
 * character (a surrogate pair for one beyond U+FFFF) is replaced by that
 * character's UTF-8 bytes (InlineUnicodeEscapes); the lexer is left only
 * ASCII escapes, the same byte in every encoding, and every key and value
 * it yields is UTF-8.  An escape thus means exactly the character it
 * names, as if the model had written the character itself:
 *
 *     - a text value with a character the server encoding lacks (U+20AC in
 *       LATIN1, say) gets "?" for it, as all generated text does; the call
 *       does not fail, and an escaped and a raw character give the same
 *       result (a null would hide the rest of a mostly good value, and
 *       differ from the raw character for no reason the user could see)
 *     - a key with such a character matches no schema key (the schema,
 *       in the server encoding, cannot have it): it is ignored
 *     - in SQL_ASCII the character's UTF-8 bytes are returned, as for
 *       generated text
 *
 * Escapes PostgreSQL's parser rejects (\u0000, which no text value can
 * hold, an unpaired surrogate, bad hex digits) are left for it to reject:
 * the answer is unparseable and every field null, as for any invalid JSON.
 *
 * This file depends on nothing but PostgreSQL and encoding.c: no settings,
 * no model, no _PG_init.  phi3.so links it for phi3_extract (extract.c);
 * the regression tests reach it through phi3_test_hooks.so (test/hooks),
 * which links it too, to check these rules on answers they write.
 *
 * IDENTIFICATION
 *	  src/pg/extract_answer.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include <errno.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/fmgrprotos.h"
#include "utils/json.h"
#include "utils/numeric.h"

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

/* One schema field */
typedef struct SchemaField
{
	char	   *key;			/* server encoding, as in the schema */
	int			key_len;
	char	   *key_utf8;		/* for matching the answer's keys */
	FieldType	type;
} SchemaField;

/* The parsed schema (opaque outside this file) */
struct Phi3ExtractSchema
{
	SchemaField *fields;
	int			n_fields;
};

/* What the answer said about one schema field */
typedef struct FieldAnswer
{
	int			match;			/* 0: none, 1: case-insensitive key, 2: exact key */
	bool		is_scalar;		/* the matched value is a scalar */
	JsonTokenType token_type;
	char	   *token;			/* UTF-8 scalar (de-escaped string), or NULL */
} FieldAnswer;

/* State of the JSON semantic actions */
typedef struct ParseState
{
	const Phi3ExtractSchema *schema;
	FieldAnswer *answers;		/* one per schema field */
	int			depth;			/* current nesting: 1 inside the top object */
	FieldAnswer *current;		/* field of the key being read at depth 1 */
} ParseState;

static void ParseAnswer(const Phi3ExtractSchema *schema, const char *answer, size_t len,
						FieldAnswer *answers);
static bool FindObject(const char *s, size_t len, size_t *start, size_t *end);
static char *InlineUnicodeEscapes(const char *s, size_t len, size_t *out_len, bool replace_nul);
static int	UnicodeEscape(const char *s, size_t len, pg_wchar *cp);
static int	Hex4(const char *s);
static void OnObjectStart(void *state);
static void OnObjectEnd(void *state);
static void OnField(void *state, char *fname, bool isnull);
static void OnScalar(void *state, char *token, JsonTokenType tokentype);
static Jsonb *BuildResult(const Phi3ExtractSchema *schema, const FieldAnswer *answers);
static bool CoerceField(const SchemaField *field, const FieldAnswer *answer, JsonbValue *out);
static char *TrimSpace(char *s);
static bool IsJsonNumber(const char *s);
static bool ParseInteger(const char *s, int64 *out);
static bool ParseDate(const char *s);

/*
 * Check the schema and turn it into fields; errors for anything but a
 * non-empty object of known type names.
 */
Phi3ExtractSchema *
Phi3ExtractParseSchema(Jsonb *schema)
{
	Phi3ExtractSchema *result;
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

	result = palloc(sizeof(Phi3ExtractSchema));
	result->fields = fields;
	result->n_fields = n;
	return result;
}

/*
 * The schema as the prompt lists it: "key" (type), "key" (type), ...
 * (UTF-8).
 */
char *
Phi3ExtractFieldList(const Phi3ExtractSchema *schema)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < schema->n_fields; i++)
	{
		if (i > 0)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, schema->fields[i].key_utf8);
		appendStringInfo(&buf, " (%s)", field_type_names[schema->fields[i].type]);
	}
	return buf.data;
}

/*
 * The result for an answer (UTF-8, len bytes; NULL or empty when the model
 * did not run): exactly the schema's keys, coerced values or null.
 */
Jsonb *
Phi3ExtractFromAnswer(const Phi3ExtractSchema *schema, const char *answer, size_t len)
{
	FieldAnswer *answers = palloc0(sizeof(FieldAnswer) * schema->n_fields);

	if (answer != NULL && len > 0)
		ParseAnswer(schema, answer, len, answers);
	return BuildResult(schema, answers);
}

/*
 * A complete JSON document (UTF-8, as the schema automaton writes it) as
 * jsonb, with the encoding rules above: \u escapes of non-ASCII
 * characters mean the character (and a character the server encoding
 * lacks becomes "?"), and \u0000, which jsonb cannot hold, becomes
 * U+FFFD.  An invalid document is an error (it cannot come from the
 * automaton).
 */
Jsonb *
Phi3JsonbFromAnswer(const char *answer, size_t len)
{
	size_t		inlined_len;
	char	   *inlined = InlineUnicodeEscapes(answer, len, &inlined_len, true);
	char	   *server = Phi3Utf8ToCString(inlined, inlined_len);

	return DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(server)));
}

/*
 * Find the first balanced {...} of the answer and record, for each schema
 * field, the value the object gives it.  An answer without a parseable
 * object leaves every field unmatched.
 */
static void
ParseAnswer(const Phi3ExtractSchema *schema, const char *answer, size_t len, FieldAnswer *answers)
{
	size_t		start;
	size_t		end;
	char	   *object;
	size_t		object_len;
	JsonLexContext *lex;
	JsonSemAction sem;
	ParseState	state;

	if (!FindObject(answer, len, &start, &end))
		return;

	/* non-ASCII escapes as UTF-8 bytes, so that the lexer yields UTF-8 only */
	object = InlineUnicodeEscapes(answer + start, end - start, &object_len, false);
	lex = makeJsonLexContextCstringLen(object, (int) object_len, PG_UTF8, true);

	memset(&state, 0, sizeof(state));
	state.schema = schema;
	state.answers = answers;
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
		memset(answers, 0, sizeof(FieldAnswer) * schema->n_fields);
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

/*
 * Copy the JSON text s[0..len) with each \u escape inside a string that
 * names a non-ASCII character (a surrogate pair for one beyond U+FFFF)
 * replaced by the character's UTF-8 bytes; palloc'd and NUL-terminated,
 * *out_len gets its length (never more than len).  Every other escape,
 * including a malformed one, is copied as it is, for the JSON parser to
 * take or reject; so is everything outside strings.  With replace_nul,
 * \u0000 becomes U+FFFD.
 */
static char *
InlineUnicodeEscapes(const char *s, size_t len, size_t *out_len, bool replace_nul)
{
	char	   *out = palloc(len + 1);
	size_t		i = 0;
	size_t		n = 0;
	bool		in_string = false;

	while (i < len)
	{
		pg_wchar	cp;
		int			consumed;

		if (s[i] == '"')
			in_string = !in_string;
		else if (in_string && s[i] == '\\' && i + 1 < len)
		{
			consumed = s[i + 1] == 'u' ? UnicodeEscape(s + i, len - i, &cp) : 0;
			if (consumed > 0 && cp == 0 && replace_nul)
				cp = 0xFFFD;
			if (consumed > 0 && cp >= 0x80)
			{
				/* at most 4 bytes for the 6 or 12 of the escape */
				unicode_to_utf8(cp, (unsigned char *) out + n);
				n += pg_utf_mblen((unsigned char *) out + n);
				i += consumed;
				continue;
			}
			/* keep the backslash with the character it escapes (\\, \") */
			out[n++] = s[i++];
		}
		out[n++] = s[i++];
	}
	out[n] = '\0';
	*out_len = n;
	return out;
}

/*
 * The code point of the \uXXXX escape at s (len bytes available), or of
 * the surrogate pair \uD8XX\uDCXX there; returns the bytes it takes (6 or
 * 12), or 0 if there is no well-formed escape of a valid code point (bad
 * hex digits, an unpaired surrogate).
 */
static int
UnicodeEscape(const char *s, size_t len, pg_wchar *cp)
{
	int			first;
	int			second;

	if (len < 6 || s[0] != '\\' || s[1] != 'u' || (first = Hex4(s + 2)) < 0)
		return 0;
	if (is_utf16_surrogate_second(first))
		return 0;
	if (!is_utf16_surrogate_first(first))
	{
		*cp = (pg_wchar) first;
		return 6;
	}
	if (len < 12 || s[6] != '\\' || s[7] != 'u' || (second = Hex4(s + 8)) < 0 ||
		!is_utf16_surrogate_second(second))
		return 0;
	*cp = surrogate_pair_to_codepoint(first, second);
	return 12;
}

/* The value of the 4 hex digits at s, or -1 if they are not 4 hex digits */
static int
Hex4(const char *s)
{
	int			value = 0;
	int			i;

	for (i = 0; i < 4; i++)
	{
		char		c = s[i];
		int			digit;

		if (c >= '0' && c <= '9')
			digit = c - '0';
		else if (c >= 'a' && c <= 'f')
			digit = c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			digit = c - 'A' + 10;
		else
			return -1;
		value = value * 16 + digit;
	}
	return value;
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
	const Phi3ExtractSchema *schema = state->schema;
	FieldAnswer *best = NULL;
	int			best_match = 0;
	int			i;

	state->current = NULL;
	if (state->depth != 1)
		return;
	for (i = 0; i < schema->n_fields; i++)
	{
		const char *key = schema->fields[i].key_utf8;

		if (strcmp(key, fname) == 0)
		{
			best = &state->answers[i];
			best_match = 2;
			break;
		}
		if (best == NULL && pg_strcasecmp(key, fname) == 0)
		{
			best = &state->answers[i];
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
BuildResult(const Phi3ExtractSchema *schema, const FieldAnswer *answers)
{
	JsonbParseState *state = NULL;
	JsonbValue *result;
	int			i;

	pushJsonbValue(&state, WJB_BEGIN_OBJECT, NULL);
	for (i = 0; i < schema->n_fields; i++)
	{
		JsonbValue	key;
		JsonbValue	value;

		key.type = jbvString;
		key.val.string.val = schema->fields[i].key;
		key.val.string.len = schema->fields[i].key_len;
		pushJsonbValue(&state, WJB_KEY, &key);

		if (!CoerceField(&schema->fields[i], &answers[i], &value))
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
CoerceField(const SchemaField *field, const FieldAnswer *answer, JsonbValue *out)
{
	const char *token = answer->token;
	JsonTokenType tt = answer->token_type;
	char	   *trimmed;
	int64		i64;
	bool		b;

	if (answer->match == 0 || !answer->is_scalar || token == NULL || tt == JSON_TOKEN_NULL)
		return false;

	trimmed = TrimSpace(pstrdup(token));

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
 * Trim the whitespace of PostgreSQL's scanner (space, tab, newline, CR,
 * form feed) at both ends of a NUL-terminated string, in place; returns
 * the start.  (Phi3TrimUtf8 does the same for the generating functions;
 * this file keeps its own so that it links without generate.c.)
 */
static char *
TrimSpace(char *s)
{
	size_t		len = strlen(s);

	while (len > 0 && scanner_isspace(s[len - 1]))
		len--;
	s[len] = '\0';
	while (scanner_isspace(*s))
		s++;
	return s;
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
