/*
 * schema_json.c — the text side of the schema subsystem: an arena, UTF-8
 * checks, the JSON DOM parser for schema documents, and a growable byte
 * buffer that writes JSON back (see schema_internal.h for the map).
 *
 * The schema text is checked as UTF-8 (p3s_utf8_check) and parsed into a
 * small DOM (JVal), arena-allocated and freed at the end of the compile
 * (schema_compile.c walks it).  The parser recurses once per nested array
 * or object, bounded at 128 levels.  Buf collects the compiled string
 * pool, descriptions and shortest documents; it records running out of
 * memory (oom) instead of failing each call.
 */
#include "schema_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ========================================================================
 * Arena (the DOM and compile scratch)
 * ======================================================================== */

/* Allocate n zeroed bytes from the arena; NULL when out of memory. */
void *
p3s_arena_alloc(Arena *a, size_t n)
{
	ArenaBlock *b = a->head;

	n = (n + 15) & ~(size_t) 15;
	if (b == NULL || b->cap - b->used < n)
	{
		size_t		cap = n > 65536 ? n : 65536;

		b = malloc(sizeof(ArenaBlock) + cap);
		if (b == NULL)
			return NULL;
		b->next = a->head;
		b->used = 0;
		b->cap = cap;
		a->head = b;
	}
	{
		void	   *p = (char *) b->data + b->used;

		b->used += n;
		memset(p, 0, n);
		return p;
	}
}

void
p3s_arena_free(Arena *a)
{
	while (a->head)
	{
		ArenaBlock *n = a->head->next;

		free(a->head);
		a->head = n;
	}
}

/* ========================================================================
 * UTF-8
 * ======================================================================== */

/*
 * Length of the valid UTF-8 character at s[0..n) (1..4), or 0 if invalid
 * (overlong, surrogate, above U+10FFFF, truncated).
 */
int
p3s_utf8_char_len(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF)
	{
		unsigned char lo = c == 0xE0 ? 0xA0 : 0x80;
		unsigned char hi = c == 0xED ? 0x9F : 0xBF;

		return (n >= 3 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80) ? 3 : 0;
	}
	if (c >= 0xF0 && c <= 0xF4)
	{
		unsigned char lo = c == 0xF0 ? 0x90 : 0x80;
		unsigned char hi = c == 0xF4 ? 0x8F : 0xBF;

		return (n >= 4 && s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 &&
				(s[3] & 0xC0) == 0x80) ? 4 : 0;
	}
	return 0;
}

/* Offset of the first invalid UTF-8 byte, or n if all valid. */
size_t
p3s_utf8_check(const unsigned char *s, size_t n)
{
	size_t		i = 0;

	while (i < n)
	{
		int			l = p3s_utf8_char_len(s + i, n - i);

		if (l == 0)
			return i;
		i += (size_t) l;
	}
	return n;
}

/* Append the UTF-8 encoding of code point cp to buf; returns bytes written. */
static int
utf8_put(char *buf, uint32_t cp)
{
	if (cp < 0x80)
	{
		buf[0] = (char) cp;
		return 1;
	}
	if (cp < 0x800)
	{
		buf[0] = (char) (0xC0 | (cp >> 6));
		buf[1] = (char) (0x80 | (cp & 0x3F));
		return 2;
	}
	if (cp < 0x10000)
	{
		buf[0] = (char) (0xE0 | (cp >> 12));
		buf[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		buf[2] = (char) (0x80 | (cp & 0x3F));
		return 3;
	}
	buf[0] = (char) (0xF0 | (cp >> 18));
	buf[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
	buf[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
	buf[3] = (char) (0x80 | (cp & 0x3F));
	return 4;
}

/* ========================================================================
 * JSON DOM parser (for the schema text)
 * ======================================================================== */

#define JSON_MAX_NESTING 128

typedef struct JParser
{
	const unsigned char *p;
	const unsigned char *end;
	const unsigned char *start;
	Arena	   *arena;
	P3Error    *err;
	P3Status	st;
	int			depth;
} JParser;

static P3Status
jfail(JParser *jp, const char *what)
{
	if (jp->st == P3_OK)
		jp->st = p3_error(jp->err, P3_ERR_INVALID_ARG, "invalid schema JSON at byte %zu: %s",
						  (size_t) (jp->p - jp->start), what);
	return jp->st;
}

static void
jskip_ws(JParser *jp)
{
	while (jp->p < jp->end && (*jp->p == ' ' || *jp->p == '\t' || *jp->p == '\n' || *jp->p == '\r'))
		jp->p++;
}

int
p3s_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Parse a string at jp->p (on the opening quote) into a decoded arena copy. */
static char *
jparse_string(JParser *jp, size_t *len)
{
	const unsigned char *q;
	char	   *out;
	size_t		n = 0;

	jp->p++;
	/* decoded length <= raw length */
	for (q = jp->p; q < jp->end && *q != '"'; q++)
		if (*q == '\\' && q + 1 < jp->end)
			q++;
	out = p3s_arena_alloc(jp->arena, (size_t) (q - jp->p) + 1);
	if (out == NULL)
	{
		jp->st = p3_error(jp->err, P3_ERR_NOMEM, "out of memory parsing the schema");
		return NULL;
	}
	while (jp->p < jp->end && *jp->p != '"')
	{
		unsigned char c = *jp->p;

		if (c < 0x20)
		{
			jfail(jp, "control character in a string");
			return NULL;
		}
		if (c != '\\')
		{
			out[n++] = (char) c;
			jp->p++;
			continue;
		}
		jp->p++;
		if (jp->p >= jp->end)
			break;
		c = *jp->p++;
		switch (c)
		{
			case '"':
			case '\\':
			case '/':
				out[n++] = (char) c;
				break;
			case 'b':
				out[n++] = '\b';
				break;
			case 'f':
				out[n++] = '\f';
				break;
			case 'n':
				out[n++] = '\n';
				break;
			case 'r':
				out[n++] = '\r';
				break;
			case 't':
				out[n++] = '\t';
				break;
			case 'u':
				{
					uint32_t	cp = 0;

					for (int i = 0; i < 4; i++)
					{
						int			h = jp->p < jp->end ? p3s_hexval(*jp->p) : -1;

						if (h < 0)
						{
							jfail(jp, "bad \\u escape");
							return NULL;
						}
						cp = cp * 16 + (uint32_t) h;
						jp->p++;
					}
					if (cp >= 0xDC00 && cp <= 0xDFFF)
					{
						jfail(jp, "lone low surrogate in a \\u escape");
						return NULL;
					}
					if (cp >= 0xD800 && cp <= 0xDBFF)
					{
						uint32_t	lo = 0;

						if (jp->end - jp->p < 6 || jp->p[0] != '\\' || jp->p[1] != 'u')
						{
							jfail(jp, "high surrogate without a low one in a \\u escape");
							return NULL;
						}
						jp->p += 2;
						for (int i = 0; i < 4; i++)
						{
							int			h = p3s_hexval(*jp->p);

							if (h < 0)
							{
								jfail(jp, "bad \\u escape");
								return NULL;
							}
							lo = lo * 16 + (uint32_t) h;
							jp->p++;
						}
						if (lo < 0xDC00 || lo > 0xDFFF)
						{
							jfail(jp, "high surrogate without a low one in a \\u escape");
							return NULL;
						}
						cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
					}
					/* a surrogate pair (12 raw bytes) decodes to 4 bytes: fits */
					n += (size_t) utf8_put(out + n, cp);
					break;
				}
			default:
				jfail(jp, "bad escape in a string");
				return NULL;
		}
	}
	if (jp->p >= jp->end)
	{
		jfail(jp, "unterminated string");
		return NULL;
	}
	jp->p++;
	out[n] = '\0';
	*len = n;
	return out;
}

static JVal *jparse_value(JParser *jp);

static JVal *
jnew(JParser *jp, JType t)
{
	JVal	   *v = p3s_arena_alloc(jp->arena, sizeof(JVal));

	if (v == NULL)
		jp->st = p3_error(jp->err, P3_ERR_NOMEM, "out of memory parsing the schema");
	else
		v->t = t;
	return v;
}

/* Grow a JVal's item (and key) arrays to hold at least n + 1. */
static bool
jgrow(JParser *jp, JVal *v, size_t *cap, bool keys)
{
	size_t		ncap;
	JVal	  **ni;

	if (v->n < *cap)
		return true;
	ncap = *cap ? *cap * 2 : 8;
	ni = p3s_arena_alloc(jp->arena, ncap * sizeof(JVal *));
	if (ni == NULL)
		goto nomem;
	if (v->n)
		memcpy(ni, v->items, v->n * sizeof(JVal *));
	v->items = ni;
	if (keys)
	{
		char	  **nk = p3s_arena_alloc(jp->arena, ncap * sizeof(char *));
		size_t	   *nl = p3s_arena_alloc(jp->arena, ncap * sizeof(size_t));

		if (nk == NULL || nl == NULL)
			goto nomem;
		if (v->n)
		{
			memcpy(nk, v->keys, v->n * sizeof(char *));
			memcpy(nl, v->klens, v->n * sizeof(size_t));
		}
		v->keys = nk;
		v->klens = nl;
	}
	*cap = ncap;
	return true;
nomem:
	jp->st = p3_error(jp->err, P3_ERR_NOMEM, "out of memory parsing the schema");
	return false;
}

static JVal *
jparse_value(JParser *jp)
{
	JVal	   *v;

	jskip_ws(jp);
	if (jp->p >= jp->end)
	{
		jfail(jp, "unexpected end");
		return NULL;
	}
	switch (*jp->p)
	{
		case '{':
		case '[':
			{
				bool		obj = *jp->p == '{';
				size_t		cap = 0;

				if (++jp->depth > JSON_MAX_NESTING)
				{
					jp->st = p3_error(jp->err, P3_ERR_INVALID_ARG,
									  "schema JSON nested deeper than %d levels", JSON_MAX_NESTING);
					return NULL;
				}
				jp->p++;
				v = jnew(jp, obj ? J_OBJ : J_ARR);
				if (v == NULL)
					return NULL;
				jskip_ws(jp);
				if (jp->p < jp->end && *jp->p == (obj ? '}' : ']'))
				{
					jp->p++;
					jp->depth--;
					return v;
				}
				for (;;)
				{
					char	   *key = NULL;
					size_t		klen = 0;
					JVal	   *item;

					jskip_ws(jp);
					if (obj)
					{
						if (jp->p >= jp->end || *jp->p != '"')
						{
							jfail(jp, "expected a member name");
							return NULL;
						}
						key = jparse_string(jp, &klen);
						if (key == NULL)
							return NULL;
						for (size_t i = 0; i < v->n; i++)
							if (v->klens[i] == klen && memcmp(v->keys[i], key, klen) == 0)
							{
								jfail(jp, "duplicate member name");
								return NULL;
							}
						jskip_ws(jp);
						if (jp->p >= jp->end || *jp->p != ':')
						{
							jfail(jp, "expected ':'");
							return NULL;
						}
						jp->p++;
					}
					item = jparse_value(jp);
					if (item == NULL)
						return NULL;
					if (!jgrow(jp, v, &cap, obj))
						return NULL;
					v->items[v->n] = item;
					if (obj)
					{
						v->keys[v->n] = key;
						v->klens[v->n] = klen;
					}
					v->n++;
					jskip_ws(jp);
					if (jp->p < jp->end && *jp->p == ',')
					{
						jp->p++;
						continue;
					}
					if (jp->p < jp->end && *jp->p == (obj ? '}' : ']'))
					{
						jp->p++;
						jp->depth--;
						return v;
					}
					jfail(jp, obj ? "expected ',' or '}'" : "expected ',' or ']'");
					return NULL;
				}
			}
		case '"':
			v = jnew(jp, J_STR);
			if (v == NULL)
				return NULL;
			v->s = jparse_string(jp, &v->slen);
			return v->s ? v : NULL;
		case 't':
			if (jp->end - jp->p >= 4 && memcmp(jp->p, "true", 4) == 0)
			{
				jp->p += 4;
				return jnew(jp, J_TRUE);
			}
			break;
		case 'f':
			if (jp->end - jp->p >= 5 && memcmp(jp->p, "false", 5) == 0)
			{
				jp->p += 5;
				return jnew(jp, J_FALSE);
			}
			break;
		case 'n':
			if (jp->end - jp->p >= 4 && memcmp(jp->p, "null", 4) == 0)
			{
				jp->p += 4;
				return jnew(jp, J_NULL);
			}
			break;
		default:
			{
				const unsigned char *s = jp->p;

				if (*jp->p == '-')
					jp->p++;
				if (jp->p < jp->end && *jp->p == '0')
					jp->p++;
				else if (jp->p < jp->end && *jp->p >= '1' && *jp->p <= '9')
					while (jp->p < jp->end && *jp->p >= '0' && *jp->p <= '9')
						jp->p++;
				else
					break;
				if (jp->p < jp->end && *jp->p == '.')
				{
					jp->p++;
					if (jp->p >= jp->end || *jp->p < '0' || *jp->p > '9')
						break;
					while (jp->p < jp->end && *jp->p >= '0' && *jp->p <= '9')
						jp->p++;
				}
				if (jp->p < jp->end && (*jp->p == 'e' || *jp->p == 'E'))
				{
					jp->p++;
					if (jp->p < jp->end && (*jp->p == '+' || *jp->p == '-'))
						jp->p++;
					if (jp->p >= jp->end || *jp->p < '0' || *jp->p > '9')
						break;
					while (jp->p < jp->end && *jp->p >= '0' && *jp->p <= '9')
						jp->p++;
				}
				v = jnew(jp, J_NUM);
				if (v == NULL)
					return NULL;
				v->slen = (size_t) (jp->p - s);
				v->s = p3s_arena_alloc(jp->arena, v->slen + 1);
				if (v->s == NULL)
				{
					jp->st = p3_error(jp->err, P3_ERR_NOMEM, "out of memory parsing the schema");
					return NULL;
				}
				memcpy(v->s, s, v->slen);
				return v;
			}
	}
	jfail(jp, "unexpected character");
	return NULL;
}

/* Member value of an object by name, or NULL. */
JVal *
p3s_jget(const JVal *obj, const char *name)
{
	size_t		l = strlen(name);

	for (size_t i = 0; i < obj->n; i++)
		if (obj->klens[i] == l && memcmp(obj->keys[i], name, l) == 0)
			return obj->items[i];
	return NULL;
}

/* An integral JSON number as int64; false if not integral or out of range. */
bool
p3s_jnum_int64(const JVal *v, int64_t *out)
{
	const char *s = v->s;
	bool		neg = false;
	unsigned __int128 m = 0;
	size_t		i = 0;

	if (v->t != J_NUM)
		return false;
	if (s[i] == '-')
	{
		neg = true;
		i++;
	}
	for (; i < v->slen && s[i] >= '0' && s[i] <= '9'; i++)
	{
		m = m * 10 + (unsigned) (s[i] - '0');
		if (m > ((unsigned __int128) 1 << 63))
			return false;
	}
	if (i < v->slen && s[i] == '.')
	{
		for (i++; i < v->slen && s[i] >= '0' && s[i] <= '9'; i++)
			if (s[i] != '0')
				return false;
	}
	if (i < v->slen)
		return false;			/* exponents: not worth it */
	if (!neg && m > (unsigned __int128) INT64_MAX)
		return false;
	*out = neg ? (int64_t) (-(__int128) m) : (int64_t) m;
	return true;
}

/*
 * Parse the whole of json[0..len) (valid UTF-8) into a DOM in arena.
 * Returns NULL on failure, with *st and err set.
 */
JVal *
p3s_json_parse(const char *json, size_t len, Arena *arena, P3Error *err, P3Status *st)
{
	JParser		jp = {0};
	JVal	   *root;

	jp.p = jp.start = (const unsigned char *) json;
	jp.end = jp.p + len;
	jp.arena = arena;
	jp.err = err;
	root = jparse_value(&jp);
	if (root)
	{
		jskip_ws(&jp);
		if (jp.p != jp.end)
		{
			jfail(&jp, "trailing characters after the schema");
			root = NULL;
		}
	}
	if (root == NULL && jp.st == P3_OK)
		jfail(&jp, "invalid JSON");
	*st = jp.st;
	return root;
}

/* ========================================================================
 * Growable byte buffer (compile output, descriptions)
 * ======================================================================== */

void
p3s_buf_put(Buf *b, const void *p, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap)
	{
		size_t		ncap = b->cap ? b->cap * 2 : 256;
		char	   *nd;

		while (ncap < b->len + n + 1)
			ncap *= 2;
		nd = realloc(b->data, ncap);
		if (nd == NULL)
		{
			b->oom = true;
			return;
		}
		b->data = nd;
		b->cap = ncap;
	}
	memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
p3s_buf_puts(Buf *b, const char *s)
{
	p3s_buf_put(b, s, strlen(s));
}

/* Append s[0..n) as a JSON string with the minimal escaping. */
void
p3s_buf_json_string(Buf *b, const char *s, size_t n)
{
	p3s_buf_put(b, "\"", 1);
	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) s[i];
		char		esc[8];

		switch (c)
		{
			case '"':
				p3s_buf_put(b, "\\\"", 2);
				break;
			case '\\':
				p3s_buf_put(b, "\\\\", 2);
				break;
			case '\n':
				p3s_buf_put(b, "\\n", 2);
				break;
			case '\r':
				p3s_buf_put(b, "\\r", 2);
				break;
			case '\t':
				p3s_buf_put(b, "\\t", 2);
				break;
			case '\b':
				p3s_buf_put(b, "\\b", 2);
				break;
			case '\f':
				p3s_buf_put(b, "\\f", 2);
				break;
			default:
				if (c < 0x20)
				{
					snprintf(esc, sizeof(esc), "\\u%04x", c);
					p3s_buf_put(b, esc, 6);
				}
				else
					p3s_buf_put(b, &s[i], 1);
		}
	}
	p3s_buf_put(b, "\"", 1);
}

/* Append a JSON value compactly. */
void
p3s_buf_json_value(Buf *b, const JVal *v)
{
	switch (v->t)
	{
		case J_NULL:
			p3s_buf_puts(b, "null");
			break;
		case J_TRUE:
			p3s_buf_puts(b, "true");
			break;
		case J_FALSE:
			p3s_buf_puts(b, "false");
			break;
		case J_NUM:
			p3s_buf_put(b, v->s, v->slen);
			break;
		case J_STR:
			p3s_buf_json_string(b, v->s, v->slen);
			break;
		case J_ARR:
			p3s_buf_put(b, "[", 1);
			for (size_t i = 0; i < v->n; i++)
			{
				if (i)
					p3s_buf_put(b, ",", 1);
				p3s_buf_json_value(b, v->items[i]);
			}
			p3s_buf_put(b, "]", 1);
			break;
		case J_OBJ:
			p3s_buf_put(b, "{", 1);
			for (size_t i = 0; i < v->n; i++)
			{
				if (i)
					p3s_buf_put(b, ",", 1);
				p3s_buf_json_string(b, v->keys[i], v->klens[i]);
				p3s_buf_put(b, ":", 1);
				p3s_buf_json_value(b, v->items[i]);
			}
			p3s_buf_put(b, "}", 1);
			break;
	}
}
