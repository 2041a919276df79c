/*
 * test_schema.c — the schema compiler, the byte automaton, token masks on
 * the real Phi-3 vocabulary, and the decoder constraint (phi3/schema.h).
 *
 * The automaton is checked against an independent validator written here
 * (a strict compact-JSON parser plus a schema check that interprets the
 * schema text itself): for every schema, hand-written valid and invalid
 * documents, then every one-byte mutation (deletion, insertion,
 * replacement) of the valid ones, must get the same verdict from both.
 * Masks are compared with a brute force over all 32,064 tokens on many
 * states; random walks over allowed tokens must end in documents the
 * validator accepts; mask times (mean, p99) are printed.  The property
 * test (test_property_decode) decodes random (document, schema) pairs with
 * a tiny random-weights model under the constraint and checks every
 * output with the same validator.
 */
#include "harness.h"

#include "phi3/decoder.h"
#include "phi3/gguf.h"
#include "phi3/model.h"
#include "phi3/schema.h"
#include "phi3/tokenizer.h"

#include <stdarg.h>
#include <stdbool.h>
#include <time.h>
#include <unistd.h>

static P3Tokenizer *tok;
static P3VocabTrie *trie;
static bool under_valgrind;

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e6 + (double) ts.tv_nsec / 1e3;
}

/* ========================================================================
 * The independent validator: a strict JSON parser (compact or not) and a
 * schema interpreter
 * ======================================================================== */

typedef enum
{
	V_NULL, V_BOOL, V_NUM, V_STR, V_ARR, V_OBJ
} VType;

typedef struct V
{
	VType		t;
	bool		b;
	const char *raw;			/* the value's text in the input */
	size_t		raw_len;
	bool		is_int;			/* number without fraction or exponent */
	int			int_digits;
	int			frac_digits;
	int			exp_digits;
	char	   *s;				/* decoded string / key */
	size_t		slen;
	size_t		nchars;
	bool		had_escape;
	struct V  **items;
	char	  **keys;
	size_t		n;
} V;

typedef struct VP
{
	const unsigned char *p;
	const unsigned char *end;
	bool		ws;				/* allow whitespace (schemas) */
	bool		bad;
	int			depth;
} VP;

static void
vfree(V *v)
{
	if (v == NULL)
		return;
	for (size_t i = 0; i < v->n; i++)
	{
		vfree(v->items[i]);
		if (v->keys)
			free(v->keys[i]);
	}
	free(v->items);
	free(v->keys);
	free(v->s);
	free(v);
}

static void
vws(VP *vp)
{
	if (vp->ws)
		while (vp->p < vp->end && (*vp->p == ' ' || *vp->p == '\n' || *vp->p == '\t' || *vp->p == '\r'))
			vp->p++;
}

static int
vhex(int c)
{
	return (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 :
		(c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
}

/* Decode one UTF-8 character independently of the engine; length or 0. */
static int
vutf8(const unsigned char *s, size_t n, unsigned *cp)
{
	unsigned	c = s[0];
	int			len;
	unsigned	v;

	if (c < 0x80)
	{
		*cp = c;
		return 1;
	}
	if ((c & 0xE0) == 0xC0)
		len = 2, v = c & 0x1F;
	else if ((c & 0xF0) == 0xE0)
		len = 3, v = c & 0x0F;
	else if ((c & 0xF8) == 0xF0)
		len = 4, v = c & 0x07;
	else
		return 0;
	if ((size_t) len > n)
		return 0;
	for (int i = 1; i < len; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3F);
	}
	if ((len == 2 && v < 0x80) || (len == 3 && v < 0x800) || (len == 4 && v < 0x10000) ||
		v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
		return 0;
	*cp = v;
	return len;
}

static V  *vparse(VP *vp);

static char *
vparse_str(VP *vp, size_t *len, size_t *nchars, bool *had_escape)
{
	size_t		cap = 16,
				n = 0;
	char	   *out = malloc(cap);

	*nchars = 0;
	*had_escape = false;
	vp->p++;
	for (;;)
	{
		unsigned	cp;

		if (vp->p >= vp->end)
			goto bad;
		if (n + 8 > cap)
			out = realloc(out, cap *= 2);
		if (*vp->p == '"')
		{
			vp->p++;
			break;
		}
		if (*vp->p < 0x20)
			goto bad;
		if (*vp->p == '\\')
		{
			*had_escape = true;
			vp->p++;
			if (vp->p >= vp->end)
				goto bad;
			switch (*vp->p++)
			{
				case '"':
					out[n++] = '"';
					break;
				case '\\':
					out[n++] = '\\';
					break;
				case '/':
					out[n++] = '/';
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
						unsigned	u = 0;

						for (int i = 0; i < 4; i++)
						{
							if (vp->p >= vp->end || vhex(*vp->p) < 0)
								goto bad;
							u = u * 16 + (unsigned) vhex(*vp->p++);
						}
						if (u >= 0xDC00 && u <= 0xDFFF)
							goto bad;
						if (u >= 0xD800 && u <= 0xDBFF)
						{
							unsigned	lo = 0;

							if (vp->end - vp->p < 6 || vp->p[0] != '\\' || vp->p[1] != 'u')
								goto bad;
							vp->p += 2;
							for (int i = 0; i < 4; i++)
							{
								if (vhex(*vp->p) < 0)
									goto bad;
								lo = lo * 16 + (unsigned) vhex(*vp->p++);
							}
							if (lo < 0xDC00 || lo > 0xDFFF)
								goto bad;
							u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
						}
						/* store as UTF-8 */
						if (u < 0x80)
							out[n++] = (char) u;
						else if (u < 0x800)
						{
							out[n++] = (char) (0xC0 | (u >> 6));
							out[n++] = (char) (0x80 | (u & 0x3F));
						}
						else if (u < 0x10000)
						{
							out[n++] = (char) (0xE0 | (u >> 12));
							out[n++] = (char) (0x80 | ((u >> 6) & 0x3F));
							out[n++] = (char) (0x80 | (u & 0x3F));
						}
						else
						{
							out[n++] = (char) (0xF0 | (u >> 18));
							out[n++] = (char) (0x80 | ((u >> 12) & 0x3F));
							out[n++] = (char) (0x80 | ((u >> 6) & 0x3F));
							out[n++] = (char) (0x80 | (u & 0x3F));
						}
						break;
					}
				default:
					goto bad;
			}
			(*nchars)++;
			continue;
		}
		{
			int			l = vutf8(vp->p, (size_t) (vp->end - vp->p), &cp);

			if (l == 0)
				goto bad;
			memcpy(out + n, vp->p, (size_t) l);
			n += (size_t) l;
			vp->p += l;
			(*nchars)++;
		}
	}
	out[n] = '\0';
	*len = n;
	return out;
bad:
	free(out);
	vp->bad = true;
	return NULL;
}

static V  *
vparse(VP *vp)
{
	V		   *v;

	vws(vp);
	if (vp->p >= vp->end || vp->depth > 200)
	{
		vp->bad = true;
		return NULL;
	}
	v = calloc(1, sizeof(V));
	v->raw = (const char *) vp->p;
	if (*vp->p == '{' || *vp->p == '[')
	{
		bool		obj = *vp->p == '{';
		size_t		cap = 0;

		v->t = obj ? V_OBJ : V_ARR;
		vp->p++;
		vp->depth++;
		vws(vp);
		if (vp->p < vp->end && *vp->p == (obj ? '}' : ']'))
			vp->p++;
		else
			for (;;)
			{
				char	   *key = NULL;
				V		   *item;

				vws(vp);
				if (obj)
				{
					size_t		kl,
								nc;
					bool		esc;

					if (vp->p >= vp->end || *vp->p != '"')
						goto bad;
					key = vparse_str(vp, &kl, &nc, &esc);
					if (key == NULL)
						goto bad;
					for (size_t i = 0; i < v->n; i++)
						if (strcmp(v->keys[i], key) == 0)
						{
							free(key);
							goto bad;
						}
					vws(vp);
					if (vp->p >= vp->end || *vp->p != ':')
					{
						free(key);
						goto bad;
					}
					vp->p++;
				}
				item = vparse(vp);
				if (item == NULL)
				{
					free(key);
					goto bad;
				}
				if (v->n == cap)
				{
					cap = cap ? cap * 2 : 4;
					v->items = realloc(v->items, cap * sizeof(V *));
					if (obj)
						v->keys = realloc(v->keys, cap * sizeof(char *));
				}
				v->items[v->n] = item;
				if (obj)
					v->keys[v->n] = key;
				v->n++;
				vws(vp);
				if (vp->p < vp->end && *vp->p == ',')
				{
					vp->p++;
					continue;
				}
				if (vp->p < vp->end && *vp->p == (obj ? '}' : ']'))
				{
					vp->p++;
					break;
				}
				goto bad;
			}
		vp->depth--;
	}
	else if (*vp->p == '"')
	{
		v->t = V_STR;
		v->s = vparse_str(vp, &v->slen, &v->nchars, &v->had_escape);
		if (v->s == NULL)
			goto bad;
	}
	else if (vp->end - vp->p >= 4 && memcmp(vp->p, "true", 4) == 0)
		v->t = V_BOOL, v->b = true, vp->p += 4;
	else if (vp->end - vp->p >= 5 && memcmp(vp->p, "false", 5) == 0)
		v->t = V_BOOL, vp->p += 5;
	else if (vp->end - vp->p >= 4 && memcmp(vp->p, "null", 4) == 0)
		v->t = V_NULL, vp->p += 4;
	else
	{
		v->t = V_NUM;
		v->is_int = true;
		if (*vp->p == '-')
			vp->p++;
		if (vp->p < vp->end && *vp->p == '0')
			vp->p++, v->int_digits = 1;
		else if (vp->p < vp->end && *vp->p >= '1' && *vp->p <= '9')
			while (vp->p < vp->end && *vp->p >= '0' && *vp->p <= '9')
				vp->p++, v->int_digits++;
		else
			goto bad;
		if (vp->p < vp->end && *vp->p == '.')
		{
			v->is_int = false;
			vp->p++;
			while (vp->p < vp->end && *vp->p >= '0' && *vp->p <= '9')
				vp->p++, v->frac_digits++;
			if (v->frac_digits == 0)
				goto bad;
		}
		if (vp->p < vp->end && (*vp->p == 'e' || *vp->p == 'E'))
		{
			v->is_int = false;
			vp->p++;
			if (vp->p < vp->end && (*vp->p == '+' || *vp->p == '-'))
				vp->p++;
			while (vp->p < vp->end && *vp->p >= '0' && *vp->p <= '9')
				vp->p++, v->exp_digits++;
			if (v->exp_digits == 0)
				goto bad;
		}
	}
	v->raw_len = (size_t) ((const char *) vp->p - v->raw);
	return v;
bad:
	vp->bad = true;
	vfree(v);
	return NULL;
}

static V  *
vparse_text(const char *s, size_t n, bool ws)
{
	VP			vp = {(const unsigned char *) s, (const unsigned char *) s + n, ws, false, 0};
	V		   *v = vparse(&vp);

	vws(&vp);
	if (v && vp.p != vp.end)
	{
		vfree(v);
		return NULL;
	}
	return v;
}

static V  *
vget(const V *obj, const char *key)
{
	if (obj == NULL || obj->t != V_OBJ)
		return NULL;
	for (size_t i = 0; i < obj->n; i++)
		if (strcmp(obj->keys[i], key) == 0)
			return obj->items[i];
	return NULL;
}

static bool
digits_at(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

static int
two(const char *s)
{
	return (s[0] - '0') * 10 + (s[1] - '0');
}

static bool
check_date(const char *s, size_t n)
{
	return n == 10 && digits_at(s, 4) && s[4] == '-' && digits_at(s + 5, 2) && s[7] == '-' &&
		digits_at(s + 8, 2) && two(s + 5) >= 1 && two(s + 5) <= 12 && two(s + 8) >= 1 && two(s + 8) <= 31;
}

static bool
check_time(const char *s, size_t n)
{
	size_t		i = 8;

	if (n < 9 || !digits_at(s, 2) || s[2] != ':' || !digits_at(s + 3, 2) || s[5] != ':' || !digits_at(s + 6, 2))
		return false;
	if (two(s) > 23 || two(s + 3) > 59 || two(s + 6) > 60)
		return false;
	if (s[i] == '.')
	{
		size_t		k = 0;

		i++;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++, k++;
		if (k < 1 || k > 9)
			return false;
	}
	if (i < n && (s[i] == 'Z' || s[i] == 'z'))
		return i + 1 == n;
	if (i < n && (s[i] == '+' || s[i] == '-'))
		return n - i == 6 && digits_at(s + i + 1, 2) && s[i + 3] == ':' && digits_at(s + i + 4, 2) &&
			two(s + i + 1) <= 23 && two(s + i + 4) <= 59;
	return false;
}

static bool
check_format(const char *f, const char *s, size_t n)
{
	if (strcmp(f, "date") == 0)
		return check_date(s, n);
	if (strcmp(f, "time") == 0)
		return check_time(s, n);
	if (strcmp(f, "date-time") == 0)
		return n > 11 && check_date(s, 10) && (s[10] == 'T' || s[10] == 't') && check_time(s + 11, n - 11);
	if (strcmp(f, "uuid") == 0)
	{
		if (n != 36)
			return false;
		for (size_t i = 0; i < 36; i++)
		{
			if (i == 8 || i == 13 || i == 18 || i == 23)
			{
				if (s[i] != '-')
					return false;
			}
			else if (vhex(s[i]) < 0)
				return false;
		}
		return true;
	}
	return false;
}

/* The patterns the tests use, checked by hand (the reference has no regex engine). */
static bool
check_known_pattern(const char *pat, const char *s, size_t n)
{
	size_t		i = 0;

	if (strcmp(pat, "^[a-c]{1,3}(-[0-9]+)?$") == 0)
	{
		while (i < n && i < 3 && s[i] >= 'a' && s[i] <= 'c')
			i++;
		if (i == 0)
			return false;
		if (i == n)
			return true;
		if (s[i] != '-' || i + 1 == n)
			return false;
		for (i++; i < n; i++)
			if (s[i] < '0' || s[i] > '9')
				return false;
		return true;
	}
	if (strcmp(pat, "\\+?[0-9]{3,12}") == 0)
	{
		if (i < n && s[i] == '+')
			i++;
		if (n - i < 3 || n - i > 12)
			return false;
		for (; i < n; i++)
			if (s[i] < '0' || s[i] > '9')
				return false;
		return true;
	}
	if (strcmp(pat, "^-?(0|[1-9][0-9]{0,7})([.][0-9]{1,2})?$") == 0)
	{
		size_t		start;

		if (i < n && s[i] == '-')
			i++;
		start = i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == start || i - start > 8 || (s[start] == '0' && i - start > 1))
			return false;
		if (i == n)
			return true;
		if (s[i] != '.' || n - i - 1 < 1 || n - i - 1 > 2)
			return false;
		for (i++; i < n; i++)
			if (s[i] < '0' || s[i] > '9')
				return false;
		return true;
	}
	if (strncmp(pat, "^([1-9][0-9]{3}-((0[1-9]|1[0-2])", 32) == 0)
	{
		/* phi3_extract's date: a real Gregorian day of the years 1000 to 9999 */
		static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
		int			y,
					m,
					d;

		if (n != 10 || s[4] != '-' || s[7] != '-' || !digits_at(s, 4) || !digits_at(s + 5, 2) ||
			!digits_at(s + 8, 2))
			return false;
		y = atoi(s);
		m = two(s + 5);
		d = two(s + 8);
		if (y < 1000 || m < 1 || m > 12 || d < 1)
			return false;
		return d <= days[m - 1] + (m == 2 && y % 4 == 0 && (y % 100 != 0 || y % 400 == 0));
	}
	fprintf(stderr, "reference: unknown pattern %s\n", pat);
	return false;
}

/* Exact text equality of a value with an enum / const member (the automaton's literal rule). */
static void
vcompact(const V *v, char *buf, size_t *len, size_t cap);

static bool
vequal_literal(const V *doc, const V *lit)
{
	char		a[4096],
				b[4096];
	size_t		la = 0,
				lb = 0;

	vcompact(doc, a, &la, sizeof(a));
	vcompact(lit, b, &lb, sizeof(b));
	return la == lb && memcmp(a, b, la) == 0 && !(doc->t == V_STR && doc->had_escape && !lit->had_escape);
}

static void
vput(char *buf, size_t *len, size_t cap, const char *s, size_t n)
{
	if (*len + n < cap)
		memcpy(buf + *len, s, n);
	*len += n;
}

/* Compact serialization, strings with the minimal escaping (as the automaton emits literals). */
static void
vcompact(const V *v, char *buf, size_t *len, size_t cap)
{
	switch (v->t)
	{
		case V_NULL:
			vput(buf, len, cap, "null", 4);
			break;
		case V_BOOL:
			vput(buf, len, cap, v->b ? "true" : "false", v->b ? 4 : 5);
			break;
		case V_NUM:
			vput(buf, len, cap, v->raw, v->raw_len);
			break;
		case V_STR:
			vput(buf, len, cap, "\"", 1);
			for (size_t i = 0; i < v->slen; i++)
			{
				unsigned char c = (unsigned char) v->s[i];
				char		e[8];

				if (c == '"' || c == '\\')
				{
					e[0] = '\\';
					e[1] = (char) c;
					vput(buf, len, cap, e, 2);
				}
				else if (c < 0x20)
				{
					const char *m = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : c == '\b' ? "\\b" : c == '\f' ? "\\f" : NULL;

					if (m)
						vput(buf, len, cap, m, 2);
					else
					{
						snprintf(e, sizeof(e), "\\u%04x", c);
						vput(buf, len, cap, e, 6);
					}
				}
				else
					vput(buf, len, cap, (const char *) &v->s[i], 1);
			}
			vput(buf, len, cap, "\"", 1);
			break;
		case V_ARR:
		case V_OBJ:
			vput(buf, len, cap, v->t == V_ARR ? "[" : "{", 1);
			for (size_t i = 0; i < v->n; i++)
			{
				if (i)
					vput(buf, len, cap, ",", 1);
				if (v->t == V_OBJ)
				{
					V			k = {0};

					k.t = V_STR;
					k.s = v->keys[i];
					k.slen = strlen(v->keys[i]);
					vcompact(&k, buf, len, cap);
					vput(buf, len, cap, ":", 1);
				}
				vcompact(v->items[i], buf, len, cap);
			}
			vput(buf, len, cap, v->t == V_ARR ? "]" : "}", 1);
			break;
	}
}

static bool vvalid(const V *schema, const V *root, const V *doc);

static bool
vtype_ok(const char *t, const V *schema, const V *root, const V *doc)
{
	V		   *x;

	if (strcmp(t, "null") == 0)
		return doc->t == V_NULL;
	if (strcmp(t, "boolean") == 0)
		return doc->t == V_BOOL;
	if (strcmp(t, "number") == 0)
		return doc->t == V_NUM && doc->int_digits <= 24 && doc->frac_digits <= 24 && doc->exp_digits <= 3;
	if (strcmp(t, "integer") == 0)
	{
		long long	lo = INT64_MIN,
					hi = INT64_MAX;
		__int128	val = 0;
		bool		neg;

		if (doc->t != V_NUM || !doc->is_int || doc->int_digits > 19)
			return false;
		neg = doc->raw[0] == '-';
		if (neg && doc->raw_len == 2 && doc->raw[1] == '0')
			return false;		/* -0: refused by the automaton (canonical integers) */
		for (size_t i = neg ? 1 : 0; i < doc->raw_len; i++)
			val = val * 10 + (doc->raw[i] - '0');
		if (neg)
			val = -val;
		if ((x = vget(schema, "minimum")))
			lo = strtoll(x->raw, NULL, 10);
		if ((x = vget(schema, "maximum")))
			hi = strtoll(x->raw, NULL, 10);
		return val >= lo && val <= hi;
	}
	if (strcmp(t, "string") == 0)
	{
		if (doc->t != V_STR)
			return false;
		if ((x = vget(schema, "minLength")) && doc->nchars < (size_t) strtoll(x->raw, NULL, 10))
			return false;
		if ((x = vget(schema, "maxLength")) && doc->nchars > (size_t) strtoll(x->raw, NULL, 10))
			return false;
		if ((x = vget(schema, "format")))
			return !doc->had_escape && check_format(x->s, doc->s, doc->slen);
		if ((x = vget(schema, "pattern")))
			return !doc->had_escape && check_known_pattern(x->s, doc->s, doc->slen);
		return true;
	}
	if (strcmp(t, "array") == 0)
	{
		V		   *items = vget(schema, "items");

		if (doc->t != V_ARR)
			return false;
		if ((x = vget(schema, "minItems")) && doc->n < (size_t) strtoll(x->raw, NULL, 10))
			return false;
		if ((x = vget(schema, "maxItems")) && doc->n > (size_t) strtoll(x->raw, NULL, 10))
			return false;
		for (size_t i = 0; i < doc->n; i++)
			if (!vvalid(items, root, doc->items[i]))
				return false;
		return true;
	}
	if (strcmp(t, "object") == 0)
	{
		V		   *props = vget(schema, "properties");
		V		   *req = vget(schema, "required");
		size_t		pos = 0;

		if (doc->t != V_OBJ)
			return false;
		/* keys in the schema's order, each known */
		for (size_t i = 0; i < doc->n; i++)
		{
			bool		found = false;

			for (; props && pos < props->n; pos++)
				if (strcmp(props->keys[pos], doc->keys[i]) == 0)
				{
					found = true;
					break;
				}
			if (!found)
				return false;
			if (!vvalid(props->items[pos], root, doc->items[i]))
				return false;
			pos++;
		}
		for (size_t k = 0; req && k < req->n; k++)
			if (vget(doc, req->items[k]->s) == NULL)
				return false;
		return true;
	}
	return false;
}

/* The document satisfies the schema (as phi3/schema.h defines the supported subset). */
static bool
vvalid(const V *schema, const V *root, const V *doc)
{
	V		   *x;

	if ((x = vget(schema, "$ref")))
	{
		const char *r = x->s;
		V		   *defs = vget(root, strncmp(r, "#/$defs/", 8) == 0 ? "$defs" : "definitions");
		const char *name = strchr(r + 2, '/') + 1;

		return vvalid(vget(defs, name), root, doc);
	}
	if ((x = vget(schema, "anyOf")) || (x = vget(schema, "oneOf")))
	{
		for (size_t i = 0; i < x->n; i++)
			if (vvalid(x->items[i], root, doc))
				return true;
		return false;
	}
	if ((x = vget(schema, "enum")))
	{
		for (size_t i = 0; i < x->n; i++)
			if (vequal_literal(doc, x->items[i]))
				return true;
		return false;
	}
	if ((x = vget(schema, "const")))
		return vequal_literal(doc, x);
	x = vget(schema, "type");
	if (x == NULL)
		return vtype_ok(vget(schema, "items") ? "array" : "object", schema, root, doc);
	if (x->t == V_STR)
		return vtype_ok(x->s, schema, root, doc);
	for (size_t i = 0; i < x->n; i++)
		if (vtype_ok(x->items[i]->s, schema, root, doc))
			return true;
	return false;
}

/* The independent verdict on doc[0..n) for the schema text. */
static bool
reference_valid(const V *schema, const char *doc, size_t n)
{
	V		   *d = vparse_text(doc, n, false);
	bool		ok = d != NULL && vvalid(schema, schema, d);

	vfree(d);
	return ok;
}

/* ========================================================================
 * Helpers over the engine
 * ======================================================================== */

static P3Schema *
compile_ok(const char *json)
{
	P3Schema   *s = NULL;
	P3Error		err = {0};
	P3Status	st = p3_schema_compile(json, strlen(json), NULL, &s, &err);

	CHECK_MSG(st == P3_OK, "compile %s: %s", json, err.message);
	return s;
}

/* The automaton's verdict on a whole document. */
static bool
automaton_valid(P3Schema *s, const char *doc, size_t n)
{
	P3SchemaMatcher *m = NULL;
	bool		ok;

	if (p3_schema_matcher_new(s, NULL, &m, NULL) != P3_OK)
		return false;
	ok = p3_schema_matcher_accept_bytes(m, doc, n, NULL) == P3_OK && p3_schema_matcher_is_complete(m);
	p3_schema_matcher_free(m);
	return ok;
}

typedef struct SchemaCase
{
	const char *schema;
	const char *valid[12];
	const char *invalid[16];
} SchemaCase;

static const SchemaCase cases[] = {
	{
		"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":12},"
		"\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},\"email\":{\"type\":[\"string\",\"null\"]}},"
		"\"required\":[\"name\",\"age\"]}",
		{"{\"name\":\"Ann\",\"age\":42}", "{\"name\":\"\",\"age\":0,\"email\":null}",
			"{\"name\":\"J\\u00e9r\\u00f4me\",\"age\":150,\"email\":\"a@b\"}",
			"{\"name\":\"日本語\",\"age\":7,\"email\":\"\\\"q\\\" \\\\ \\n\"}",
		"{\"name\":\"\\ud83d\\ude00 😀\",\"age\":1}"},
		{"{\"age\":42,\"name\":\"Ann\"}", "{\"name\":\"Ann\"}", "{\"name\":\"Ann\",\"age\":151}",
			"{\"name\":\"Ann\",\"age\":-1}", "{\"name\":\"Ann\",\"age\":4.5}", "{\"name\":\"Ann\", \"age\":42}",
			"{\"name\":\"abcdefghijklm\",\"age\":1}", "{\"name\":\"Ann\",\"age\":42,\"x\":1}",
			"{\"name\":\"a\nb\",\"age\":1}", "{\"name\":\"\\ude00\",\"age\":1}", "{\"name\":\"\xc3\",\"age\":1}",
		"{\"name\":\"Ann\",\"age\":042}", "{\"name\":1,\"age\":1}", " {\"name\":\"Ann\",\"age\":42}"},
	},
	{
		"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"ab\":{\"type\":\"number\"},"
		"\"abc\":{\"enum\":[\"x\",\"xy\",1,12,null,true]}}}",
		{"{}", "{\"a\":true}", "{\"ab\":-0.5e+10}", "{\"abc\":\"xy\"}", "{\"a\":false,\"ab\":0,\"abc\":12}",
		"{\"abc\":1}", "{\"abc\":null}", "{\"ab\":1E3,\"abc\":true}"},
		{"{\"abc\":2}", "{\"abc\":\"x \"}", "{\"ab\":01}", "{\"ab\":1.}", "{\"ab\":.5}", "{\"a\":true,}",
		"{\"abc\":12,\"a\":true}", "{\"b\":1}", "{\"ab\":1e}"},
	},
	{
		"{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/item\"},\"minItems\":1,\"maxItems\":3,"
		"\"$defs\":{\"item\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"string\",\"format\":\"uuid\"},"
		"\"when\":{\"type\":\"string\",\"format\":\"date-time\"},\"day\":{\"type\":\"string\",\"format\":\"date\"},"
		"\"at\":{\"type\":\"string\",\"format\":\"time\"}},\"required\":[\"id\"]}}}",
		{"[{\"id\":\"123e4567-e89b-12d3-a456-426614174000\"}]",
			"[{\"id\":\"123E4567-E89B-12D3-A456-426614174000\",\"when\":\"2024-02-29T23:59:60.123Z\"},"
			"{\"id\":\"00000000-0000-0000-0000-000000000000\",\"day\":\"1999-12-31\",\"at\":\"08:30:00+02:00\"}]"},
		{"[]", "[{\"id\":\"123e4567-e89b-12d3-a456-42661417400\"}]",
			"[{\"id\":\"123e4567-e89b-12d3-a456-426614174000\",\"day\":\"1999-13-01\"}]",
			"[{\"id\":\"123e4567-e89b-12d3-a456-426614174000\",\"at\":\"24:00:00Z\"}]",
			"[{\"id\":\"123e4567-e89b-12d3-a456-426614174000\",\"at\":\"08:30:00\"}]",
			"[{\"id\":\"1\"},{\"id\":\"2\"},{\"id\":\"3\"},{\"id\":\"4\"}]"},
	},
	{
		"{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"circle\"},\"r\":{\"type\":\"number\"}},"
		"\"required\":[\"kind\",\"r\"]},{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"rect\"},"
		"\"w\":{\"type\":\"integer\"},\"h\":{\"type\":\"integer\"}},\"required\":[\"kind\",\"w\",\"h\"]},"
		"{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":-5,\"maximum\":5}},\"maxItems\":2}]}",
		{"{\"kind\":\"circle\",\"r\":2.5}", "{\"kind\":\"rect\",\"w\":3,\"h\":-4}", "[]", "[[],[-5,0,5]]", "[[1]]"},
		{"{\"kind\":\"circle\",\"w\":3,\"h\":4}", "{\"kind\":\"rect\",\"r\":1}", "[[6]]", "[[1],[2],[3]]",
		"[[-6]]", "[[-0]]", "{\"kind\":\"square\",\"r\":1}"},
	},
	{
		"{\"type\":\"object\",\"properties\":{\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\",\"minLength\":2,\"maxLength\":3}},"
		"\"big\":{\"type\":\"integer\"},\"neg\":{\"type\":\"integer\",\"maximum\":-10}},\"required\":[\"tags\"],"
		"\"additionalProperties\":false,\"description\":\"tagged\"}",
		{"{\"tags\":[]}", "{\"tags\":[\"ab\",\"abc\",\"é!\"],\"big\":9223372036854775807}",
		"{\"tags\":[\"\\t\\t\"],\"big\":-9223372036854775808,\"neg\":-10}", "{\"tags\":[],\"neg\":-123456}"},
		{"{\"tags\":[\"a\"]}", "{\"tags\":[\"abcd\"]}", "{\"tags\":[],\"big\":9223372036854775808}",
		"{\"tags\":[],\"neg\":-9}", "{\"tags\":[],\"neg\":0}", "{\"tags\":[\"ab\",]}"},
	},
	{
		"\"dummy\"", {NULL}, {NULL}
	},
};

/* Valid docs accepted, invalid rejected, by both the automaton and the reference. */
static void
test_documents(void)
{
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
	{
		const SchemaCase *sc = &cases[c];
		P3Schema   *s;
		V		   *schema;

		if (sc->valid[0] == NULL)
			continue;
		s = compile_ok(sc->schema);
		schema = vparse_text(sc->schema, strlen(sc->schema), true);
		CHECK(schema != NULL);
		if (s == NULL || schema == NULL)
		{
			p3_schema_free(s);
			vfree(schema);
			continue;
		}
		for (int i = 0; sc->valid[i]; i++)
		{
			CHECK_MSG(reference_valid(schema, sc->valid[i], strlen(sc->valid[i])), "reference rejects %s", sc->valid[i]);
			CHECK_MSG(automaton_valid(s, sc->valid[i], strlen(sc->valid[i])), "schema %zu rejects %s", c, sc->valid[i]);
		}
		for (int i = 0; sc->invalid[i]; i++)
		{
			CHECK_MSG(!reference_valid(schema, sc->invalid[i], strlen(sc->invalid[i])), "reference accepts %s", sc->invalid[i]);
			CHECK_MSG(!automaton_valid(s, sc->invalid[i], strlen(sc->invalid[i])), "schema %zu accepts %s", c, sc->invalid[i]);
		}
		p3_schema_free(s);
		vfree(schema);
	}
}

/* Every one-byte deletion, insertion and replacement of the valid documents: same verdict as the reference. */
static void
test_mutations(void)
{
	static const char alphabet[] = "{}[],:\"\\ 0123456789-+.eEtruflsnabcxyzTZ\x01\x7f\xc3\xa9\xff";
	int			disagreements = 0;
	long		checked = 0;

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
	{
		const SchemaCase *sc = &cases[c];
		P3Schema   *s;
		V		   *schema;

		if (sc->valid[0] == NULL)
			continue;
		s = compile_ok(sc->schema);
		schema = vparse_text(sc->schema, strlen(sc->schema), true);
		if (s == NULL || schema == NULL)
		{
			p3_schema_free(s);
			vfree(schema);
			continue;
		}
		for (int i = 0; sc->valid[i]; i++)
		{
			const char *doc = sc->valid[i];
			size_t		n = strlen(doc);
			char	   *buf = malloc(n + 2);

			for (size_t pos = 0; pos <= n; pos++)
				for (int op = 0; op < 3; op++)
					for (size_t k = 0; k < (op == 0 ? 1 : sizeof(alphabet) - 1); k++)
					{
						size_t		m;
						bool		a,
									r;

						if (op != 1 && pos == n)
							continue;
						/* under valgrind, a quarter of them */
						if (under_valgrind && (pos + k + (size_t) op) % 4 != 0)
							continue;
						if (op == 0)	/* delete */
						{
							memcpy(buf, doc, pos);
							memcpy(buf + pos, doc + pos + 1, n - pos - 1);
							m = n - 1;
						}
						else if (op == 1)	/* insert */
						{
							memcpy(buf, doc, pos);
							buf[pos] = alphabet[k];
							memcpy(buf + pos + 1, doc + pos, n - pos);
							m = n + 1;
						}
						else	/* replace */
						{
							if (doc[pos] == alphabet[k])
								continue;
							memcpy(buf, doc, n);
							buf[pos] = alphabet[k];
							m = n;
						}
						a = automaton_valid(s, buf, m);
						r = reference_valid(schema, buf, m);
						checked++;
						if (a != r && disagreements++ < 10)
							CHECK_MSG(a == r, "schema %zu, %.*s: automaton %d, reference %d", c, (int) m, buf, a, r);
					}
			free(buf);
		}
		p3_schema_free(s);
		vfree(schema);
	}
	CHECK_EQ_INT(disagreements, 0);
	fprintf(stderr, "  %ld mutations checked\n", checked);
}

/* Every supported keyword compiles; unsupported ones name the keyword and the path. */
static void
test_compile_errors(void)
{
	static const char *const good[] = {
		"{\"type\":\"string\"}", "{\"type\":\"number\"}", "{\"type\":\"integer\",\"minimum\":1,\"maximum\":1}",
		"{\"type\":\"boolean\"}", "{\"type\":\"null\"}", "{\"type\":[\"string\",\"null\"],\"maxLength\":3}",
		"{\"enum\":[1,\"a\",null,true,2.5]}", "{\"type\":[\"integer\",\"null\"],\"enum\":[1,2.0,null]}", "{\"const\":{\"a\":[1,2]}}", "{\"oneOf\":[{\"type\":\"string\"},{\"type\":\"integer\"}]}",
		"{\"$schema\":\"https://json-schema.org/draft/2020-12/schema\",\"$id\":\"x\",\"title\":\"t\",\"$comment\":\"c\","
		"\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/definitions/a\",\"description\":\"d\"}},"
		"\"definitions\":{\"a\":{\"type\":\"string\",\"pattern\":\"^[a-z]+(-[a-z]+)*$\",\"examples\":[\"a\"],\"default\":\"a\"}}}",
		"{\"properties\":{}}", "{\"items\":{\"type\":\"string\"},\"minItems\":0,\"maxItems\":0}",
		"{\"type\":\"string\",\"format\":\"date\"}", "{\"type\":\"string\",\"format\":\"time\"}",
		"{\"type\":\"string\",\"format\":\"date-time\"}", "{\"type\":\"string\",\"format\":\"uuid\"}",
		"{\"type\":\"string\",\"pattern\":\"(a|bc){2,3}x?[^0-9]\\\\d*.\"}",
	};
	static const char *const bad[][2] = {
		{"{\"type\":\"object\",\"properties\":{\"items\":{\"type\":\"object\",\"patternProperties\":{}}}}",
		"unsupported keyword \"patternProperties\" at $.properties.items"},
		{"{\"type\":\"array\",\"items\":{\"type\":\"string\",\"contentEncoding\":\"x\"}}", "\"contentEncoding\" at $.items"},
		{"{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"integer\",\"exclusiveMinimum\":1}]}", "\"exclusiveMinimum\" at $.anyOf[1]"},
		{"{\"type\":\"object\",\"additionalProperties\":true}", "\"additionalProperties\" other than false"},
		{"{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}", "\"additionalProperties\" other than false"},
		{"{\"type\":\"number\",\"minimum\":1}", "\"minimum\" is only supported for integers"},
		{"{\"type\":\"string\",\"minimum\":1}", "\"minimum\" is only supported for integers"},
		{"{\"type\":\"string\",\"format\":\"email\"}", "unsupported format \"email\" at $"},
		{"{\"type\":\"array\"}", "array without \"items\""},
		{"{\"type\":\"strin\"}", "unknown type \"strin\""},
		{"{\"description\":\"x\"}", "has no \"type\""},
		{"{\"type\":\"object\",\"properties\":{\"a\":{\"$ref\":\"#/$defs/nope\"}}}", "names no definition"},
		{"{\"$ref\":\"#/$defs/a\",\"$defs\":{\"a\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/a\"}}}}", "recursive \"$ref\""},
		{"{\"$ref\":\"http://x/y\"}", "unsupported \"$ref\""},
		{"{\"type\":\"object\",\"required\":[\"a\"]}", "required property \"a\" is not in \"properties\""},
		{"{\"type\":\"string\",\"minLength\":3,\"maxLength\":2}", "\"minLength\" is greater than \"maxLength\""},
		{"{\"type\":\"integer\",\"minimum\":3,\"maximum\":2}", "\"minimum\" is greater than \"maximum\""},
		{"{\"type\":\"integer\",\"minimum\":1.5}", "\"minimum\" must be an int64 integer"},
		{"{\"enum\":[]}", "\"enum\" must be a non-empty array"},
		{"{\"enum\":[[1]]}", "\"enum\" values must be scalars"},
		{"{\"enum\":[1],\"minLength\":1}", "keyword \"minLength\" beside \"enum\""},
		{"{\"type\":\"string\",\"enum\":[\"a\",1]}", "\"enum\" value 1 does not have the \"type\" given at $"},
		{"{\"type\":\"integer\",\"const\":1.5}", "\"const\" value 0 does not have the \"type\""},
		{"{\"anyOf\":[{\"type\":\"string\"}],\"type\":\"string\"}", "keyword \"type\" beside \"anyOf\""},
		{"{\"type\":\"string\",\"pattern\":\"a(?=b)\"}", "lookaround"},
		{"{\"type\":\"string\",\"pattern\":\"(ab\"}", "unbalanced parenthesis"},
		{"{\"type\":\"string\",\"pattern\":\"[é]\"}", "non-ASCII character in a character class"},
		{"{\"type\":\"string\",\"pattern\":\"\\\"\"}", "pattern matches no string without escapes"},
		{"{\"type\":\"string\",\"format\":\"date\",\"maxLength\":3}", "together with \"format\""},
		{"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"string\",\"$defs\":{}}}}", "only supported at the root, found at $.properties.a"},
		{"true", "boolean schemas are not supported"},
		{"{\"type\":\"integer\",\"properties\":{}}", "keyword \"properties\" does not apply to type integer at $"},
		{"{\"type\":[\"string\",\"string\"]}", "lists \"string\" twice"},
		/* malformed JSON */
		{"{\"type\":\"string\"", "invalid schema JSON"},
		{"{\"type\":\"string\",}", "invalid schema JSON"},
		{"{\"type\":\"string\"} x", "trailing characters"},
		{"{\"type\":\"string\",\"type\":\"integer\"}", "duplicate member name"},
		{"{\"type\":\"str\\x\"}", "bad escape"},
		{"{\"type\":\"\\udc00\"}", "lone low surrogate"},
		{"", "invalid schema JSON"},
		{"{\"type\":\"string\",\"description\":\"\xc3\x28\"}", "not valid UTF-8 (byte 32)"},
		{"{\"type\":\"string\",\"description\":\"\xed\xa0\x80\"}", "not valid UTF-8"},
		{"{\"type\":\"string\",\"description\":\"\xc0\xaf\"}", "not valid UTF-8"},
	};

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
	{
		P3Schema   *s = compile_ok(good[i]);

		p3_schema_free(s);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
	{
		P3Schema   *s = NULL;
		P3Error		err = {0};
		P3Status	st = p3_schema_compile(bad[i][0], strlen(bad[i][0]), NULL, &s, &err);

		CHECK_MSG(st == P3_ERR_INVALID_ARG, "%s: status %d", bad[i][0], (int) st);
		CHECK_MSG(strstr(err.message, bad[i][1]) != NULL, "%s: message \"%s\" lacks \"%s\"", bad[i][0], err.message, bad[i][1]);
		CHECK(s == NULL);
	}
	/* NULL arguments */
	{
		P3Schema   *s = NULL;

		CHECK_STATUS(p3_schema_compile(NULL, 0, NULL, &s, NULL), P3_ERR_INVALID_ARG);
	}
}

/* Patterns: strings accepted and refused. */
static void
test_patterns(void)
{
	static const struct
	{
		const char *pattern;
		const char *yes[6];
		const char *no[6];
	}			pats[] = {
		{"^[a-z]+(-[a-z]+)*$", {"abc", "a-b-c", NULL}, {"", "a-", "-a", "A", "a--b", NULL}},
		{"(a|bc){2,3}x?", {"aa", "abc", "bcbcax", "aaa", NULL}, {"a", "aaaa", "x", "abcx x", NULL}},
		{"\\d{3}-\\d{4}", {"555-1234", NULL}, {"5551234", "55-1234", NULL}},
		{"[^0-9]\\w*", {"é", "_a1", "x", NULL}, {"1", "", "a-", NULL}},
		{".{2}", {"日本", "ab", NULL}, {"a", "abc", NULL}},
		{"[A-Z]{2}\\.?[0-9]+", {"AB1", "XY.22", NULL}, {"ab1", "AB.", NULL}},
	};

	for (size_t i = 0; i < sizeof(pats) / sizeof(pats[0]); i++)
	{
		char		json[512];
		char		doc[128];
		P3Schema   *s;
		size_t		o = 0;

		/* JSON-escape the backslashes */
		o += (size_t) snprintf(json, sizeof(json), "{\"type\":\"string\",\"pattern\":\"");
		for (const char *p = pats[i].pattern; *p; p++)
		{
			if (*p == '\\')
				json[o++] = '\\';
			json[o++] = *p;
		}
		snprintf(json + o, sizeof(json) - o, "\"}");
		s = compile_ok(json);
		if (s == NULL)
			continue;
		for (int k = 0; pats[i].yes[k]; k++)
		{
			snprintf(doc, sizeof(doc), "\"%s\"", pats[i].yes[k]);
			CHECK_MSG(automaton_valid(s, doc, strlen(doc)), "%s rejects %s", pats[i].pattern, doc);
		}
		for (int k = 0; pats[i].no[k]; k++)
		{
			snprintf(doc, sizeof(doc), "\"%s\"", pats[i].no[k]);
			CHECK_MSG(!automaton_valid(s, doc, strlen(doc)), "%s accepts %s", pats[i].pattern, doc);
		}
		p3_schema_free(s);
	}
}

/* Limits: depth, states, threads; each error names its figure. */
/*
 * A chain of definitions each naming the next by $ref: 60 links compile
 * (to a plain string), 65 and 20,000 are refused with the limit named,
 * not followed until the stack overflows.
 */
static void
test_ref_chain(void)
{
	static const int lengths[] = {60, 65, 20000};
	char	   *json = malloc(1 << 21);

	for (size_t k = 0; k < sizeof(lengths) / sizeof(lengths[0]); k++)
	{
		int			n = lengths[k];
		size_t		o = 0;
		P3Schema   *s = NULL;
		P3Error		err = {0};
		P3Status	st;

		o += (size_t) sprintf(json + o, "{\"$ref\":\"#/$defs/a0\",\"$defs\":{");
		for (int i = 0; i < n; i++)
			o += (size_t) sprintf(json + o, "\"a%d\":{\"$ref\":\"#/$defs/a%d\"},", i, i + 1);
		o += (size_t) sprintf(json + o, "\"a%d\":{\"type\":\"string\"}}}", n);
		st = p3_schema_compile(json, o, NULL, &s, &err);
		if (n <= 60)
		{
			CHECK_STATUS(st, P3_OK);
			if (s)
			{
				P3SchemaMatcher *m = NULL;

				CHECK_STATUS(p3_schema_matcher_new(s, NULL, &m, &err), P3_OK);
				CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "\"ok\"", 4, &err), P3_OK);
				CHECK(p3_schema_matcher_is_complete(m));
				p3_schema_matcher_free(m);
			}
		}
		else
		{
			CHECK_STATUS(st, P3_ERR_INVALID_ARG);
			CHECK_MSG(strstr(err.message, "longer than 64 definitions") != NULL, "%d links: %s", n, err.message);
		}
		p3_schema_free(s);
	}
	free(json);
}

static void
test_limits(void)
{
	char	   *json = malloc(1 << 20);
	size_t		o = 0;
	P3Schema   *s = NULL;
	P3Error		err = {0};
	P3SchemaLimits lim = p3_schema_default_limits();
	P3SchemaStats stats;

	CHECK_EQ_INT(lim.max_states, 65536);
	CHECK_EQ_INT(lim.max_depth, 32);
	CHECK_EQ_INT(lim.max_threads, 256);

	/* 40 nested arrays: over max_depth 32 */
	for (int i = 0; i < 40; i++)
		o += (size_t) sprintf(json + o, "{\"type\":\"array\",\"items\":");
	o += (size_t) sprintf(json + o, "{\"type\":\"integer\"}");
	for (int i = 0; i < 40; i++)
		json[o++] = '}';
	CHECK_STATUS(p3_schema_compile(json, o, NULL, &s, &err), P3_ERR_INVALID_ARG);
	CHECK_MSG(strstr(err.message, "over the limit of 32 (max_depth)") != NULL, "%s", err.message);
	/* and with max_depth 41 it compiles; a 41-deep document matches */
	lim.max_depth = 41;
	CHECK_STATUS(p3_schema_compile(json, o, &lim, &s, &err), P3_OK);
	if (s)
	{
		char		doc[128];

		p3_schema_stats(s, &stats);
		CHECK_EQ_INT(stats.depth, 41);
		memset(doc, '[', 40);
		doc[40] = '7';
		memset(doc + 41, ']', 40);
		CHECK(automaton_valid(s, doc, 81));
		CHECK(!automaton_valid(s, doc, 80));
		p3_schema_free(s);
		s = NULL;
	}
	/* schema JSON nested beyond the parser's 128 levels */
	o = 0;
	for (int i = 0; i < 200; i++)
		json[o++] = '[';
	for (int i = 0; i < 200; i++)
		json[o++] = ']';
	CHECK_STATUS(p3_schema_compile(json, o, NULL, &s, &err), P3_ERR_INVALID_ARG);
	CHECK_MSG(strstr(err.message, "deeper than 128") != NULL, "%s", err.message);

	/* a huge enum: 20,000 distinct 16-character values need more than 65536 states */
	o = (size_t) sprintf(json, "{\"enum\":[");
	for (int i = 0; i < 20000; i++)
		o += (size_t) sprintf(json + o, "%s\"%016llx\"", i ? "," : "", (unsigned long long) i * 0x9E3779B97F4A7C15ull);
	o += (size_t) sprintf(json + o, "]}");
	CHECK_STATUS(p3_schema_compile(json, o, NULL, &s, &err), P3_ERR_INVALID_ARG);
	CHECK_MSG(strstr(err.message, "more than 65536 automaton states (max_states)") != NULL, "%s", err.message);
	/* 2,000 of them fit, and match */
	o = (size_t) sprintf(json, "{\"enum\":[");
	for (int i = 0; i < 2000; i++)
		o += (size_t) sprintf(json + o, "%s\"value-%d\"", i ? "," : "", i);
	o += (size_t) sprintf(json + o, "]}");
	CHECK_STATUS(p3_schema_compile(json, o, NULL, &s, &err), P3_OK);
	if (s)
	{
		p3_schema_stats(s, &stats);
		fprintf(stderr, "  enum of 2000: %d states, compiled in %.2f ms\n", stats.n_states, stats.compile_ms);
		CHECK(automaton_valid(s, "\"value-1999\"", 12));
		CHECK(automaton_valid(s, "\"value-1\"", 9));
		CHECK(!automaton_valid(s, "\"value-2000\"", 12));
		CHECK(!automaton_valid(s, "\"value-\"", 8));
		p3_schema_free(s);
		s = NULL;
	}
	/* 70 nested groups in a pattern; a 2000-byte pattern; a 5000-byte enum value */
	o = (size_t) sprintf(json, "{\"type\":\"string\",\"pattern\":\"");
	for (int i = 0; i < 70; i++)
		json[o++] = '(';
	json[o++] = 'a';
	for (int i = 0; i < 70; i++)
		json[o++] = ')';
	o += (size_t) sprintf(json + o, "\"}");
	CHECK_STATUS(p3_schema_compile(json, o, NULL, &s, &err), P3_ERR_INVALID_ARG);
	CHECK_MSG(strstr(err.message, "groups nested too deeply") != NULL, "%s", err.message);
	o = (size_t) sprintf(json, "{\"type\":\"string\",\"pattern\":\"");
	for (int i = 0; i < 2000; i++)
		json[o++] = 'a';
	o += (size_t) sprintf(json + o, "\"}");
	CHECK_STATUS(p3_schema_compile(json, o, NULL, &s, &err), P3_ERR_INVALID_ARG);
	CHECK_MSG(strstr(err.message, "\"pattern\" longer than 1024 bytes at $") != NULL, "%s", err.message);
	o = (size_t) sprintf(json, "{\"const\":\"");
	for (int i = 0; i < 5000; i++)
		json[o++] = 'a';
	o += (size_t) sprintf(json + o, "\"}");
	CHECK_STATUS(p3_schema_compile(json, o, NULL, &s, &err), P3_ERR_INVALID_ARG);
	CHECK_MSG(strstr(err.message, "longer than 4096 bytes") != NULL, "%s", err.message);
	/* patterns whose DFA explodes: (a|b)*a(a|b){n} needs 2^(n+1) states */
	{
		const char *j = "{\"type\":\"string\",\"pattern\":\"(a|b)*a(a|b){8}\"}";
		P3SchemaLimits small = p3_schema_default_limits();

		small.max_states = 300;
		CHECK_STATUS(p3_schema_compile(j, strlen(j), &small, &s, &err), P3_ERR_INVALID_ARG);
		CHECK_MSG(strstr(err.message, "more than 300 automaton states (max_states)") != NULL, "%s", err.message);
		j = "{\"type\":\"string\",\"pattern\":\"(a|b)*a(a|b){12}\"}";
		if (!under_valgrind)	/* 4096 DFA states built before giving up: slow there */
		{
			CHECK_STATUS(p3_schema_compile(j, strlen(j), NULL, &s, &err), P3_ERR_INVALID_ARG);
			CHECK_MSG(strstr(err.message, "too many DFA states") != NULL, "%s", err.message);
		}
	}

	/* a pattern the fuzzer found slow to compile: now quick, compiled or refused */
	{
		const char *j = "{\"type\":\"string\",\"pattern\":\"^(a|bc){403}[0-9]+$\"}";
		double		t1 = now_us();
		P3Status	st = p3_schema_compile(j, strlen(j), NULL, &s, &err);

		fprintf(stderr, "  (a|bc){403}[0-9]+: %s in %.1f ms\n", st == P3_OK ? "compiled" : err.message, (now_us() - t1) / 1000.0);
		CHECK(st == P3_OK || st == P3_ERR_INVALID_ARG);
		if (s)
		{
			char		doc[1024];
			size_t		dn = 0;

			/* 403 repetitions, alternately "a" and "bc", then a digit */
			doc[dn++] = '"';
			for (int i = 0; i < 403; i++)
			{
				if (i % 2)
					doc[dn++] = 'a';
				else
				{
					doc[dn++] = 'b';
					doc[dn++] = 'c';
				}
			}
			doc[dn++] = '7';
			doc[dn++] = '"';
			CHECK(automaton_valid(s, doc, dn));
			/* the last "bc" broken into "b7": refused */
			doc[dn - 3] = '7';
			CHECK(!automaton_valid(s, doc, dn));
			p3_schema_free(s);
			s = NULL;
		}
		CHECK(now_us() - t1 < (under_valgrind ? 60e6 : 2e6));
	}

	/* a small max_states */
	lim = p3_schema_default_limits();
	lim.max_states = 10;
	{
		const char *j = "{\"type\":\"object\",\"properties\":{\"abcdefghij\":{\"type\":\"string\"}}}";

		CHECK_STATUS(p3_schema_compile(j, strlen(j), &lim, &s, &err), P3_ERR_INVALID_ARG);
	}
	CHECK_MSG(strstr(err.message, "more than 10 automaton states") != NULL, "%s", err.message);
	lim.max_depth = 0;
	CHECK_STATUS(p3_schema_compile("{\"type\":\"null\"}", 15, &lim, &s, &err), P3_ERR_INVALID_ARG);

	/* max_threads: 8 optional keys in a row, limit 4: refused when compiled */
	lim = p3_schema_default_limits();
	lim.max_threads = 4;
	o = (size_t) sprintf(json, "{\"type\":\"object\",\"properties\":{");
	for (int i = 0; i < 8; i++)
		o += (size_t) sprintf(json + o, "%s\"k%d\":{\"type\":\"null\"}", i ? "," : "", i);
	o += (size_t) sprintf(json + o, "}}");
	CHECK_STATUS(p3_schema_compile(json, o, &lim, &s, &err), P3_ERR_INVALID_ARG);
	CHECK_MSG(strstr(err.message, "more than 3 optional properties in a row (max_threads)") != NULL, "%s", err.message);
	/* 3 alternatives with a limit of 2: refused */
	lim.max_threads = 2;
	{
		const char *j = "{\"type\":[\"string\",\"null\",\"integer\"]}";

		CHECK_STATUS(p3_schema_compile(j, strlen(j), &lim, &s, &err), P3_ERR_INVALID_ARG);
		CHECK_MSG(strstr(err.message, "3 alternatives at $, over the limit of 2 parses at once (max_threads)") != NULL, "%s", err.message);
	}
	/* nested alternatives multiply at run time: "[1" has 3 parses */
	{
		const char *j = "{\"anyOf\":[{\"type\":\"array\",\"items\":{\"type\":[\"integer\",\"number\"]}},"
			"{\"type\":\"array\",\"items\":{\"type\":[\"number\",\"boolean\"]}}]}";
		P3SchemaMatcher *m = NULL;

		CHECK_STATUS(p3_schema_compile(j, strlen(j), &lim, &s, &err), P3_OK);
		if (s)
		{
			CHECK_STATUS(p3_schema_matcher_new(s, NULL, &m, &err), P3_OK);
			CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "[1", 2, &err), P3_ERR_INVALID_ARG);
			CHECK_MSG(strstr(err.message, "beyond 2 parses at once (max_threads)") != NULL, "%s", err.message);
			/* unchanged: another prefix still works */
			CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "[true]", 6, &err), P3_OK);
			CHECK(p3_schema_matcher_is_complete(m));
			p3_schema_matcher_free(m);
			p3_schema_free(s);
		}
	}
	free(json);
}

/* Matcher API: accept all-or-nothing, clone/copy, complete, forced bytes, describe. */
static void
test_matcher_api(void)
{
	P3Schema   *s = compile_ok("{\"type\":\"object\",\"properties\":{\"status\":{\"enum\":[\"open\",\"closed\"],"
							   "\"description\":\"ticket state\"},\"n\":{\"type\":\"integer\"},\"note\":{\"type\":\"string\"}},"
							   "\"required\":[\"status\",\"n\"]}");
	P3SchemaMatcher *m = NULL,
			   *c = NULL;
	P3Error		err = {0};
	char		buf[64];
	size_t		n;
	P3Text		text = {0};

	if (s == NULL)
		return;
	CHECK_STATUS(p3_schema_matcher_new(s, NULL, &m, &err), P3_OK);
	n = p3_schema_matcher_forced(m, buf, sizeof(buf));
	CHECK(n == 11 && memcmp(buf, "{\"status\":\"", 11) == 0);
	CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "{\"status\":\"c", 12, &err), P3_OK);
	n = p3_schema_matcher_forced(m, buf, sizeof(buf));
	CHECK(n == 11 && memcmp(buf, "losed\",\"n\":", 11) == 0);
	n = p3_schema_matcher_forced(m, buf, 3);
	CHECK(n == 3);
	/* a bad byte: error, state unchanged */
	CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "losed\",\"x", 9, &err), P3_ERR_INVALID_ARG);
	CHECK(p3_schema_matcher_allows(m, "losed\",\"n\":1", 12));
	CHECK_STATUS(p3_schema_matcher_clone(m, &c, &err), P3_OK);
	CHECK_STATUS(p3_schema_matcher_accept_bytes(c, "losed\",\"n\":12", 13, &err), P3_OK);
	CHECK(!p3_schema_matcher_is_complete(c));
	CHECK_STATUS(p3_schema_matcher_accept_bytes(c, "}", 1, &err), P3_OK);
	CHECK(p3_schema_matcher_is_complete(c));
	CHECK(!p3_schema_matcher_can_continue(c));
	CHECK(!p3_schema_matcher_allows(c, " ", 1));
	/* copy back: m is where it was */
	CHECK_STATUS(p3_schema_matcher_copy(c, m, &err), P3_OK);
	CHECK(!p3_schema_matcher_allows(c, "}", 1));
	CHECK(p3_schema_matcher_allows(c, "losed\",\"n\":-3,\"note\":\"\"}", 24));
	p3_schema_matcher_reset(c);
	CHECK(p3_schema_matcher_allows(c, "{", 1));
	CHECK(!p3_schema_matcher_is_complete(c));
	/* describe */
	CHECK_STATUS(p3_schema_describe(s, &text, &err), P3_OK);
	CHECK_MSG(text.data && strcmp(text.data, "{\"status\": \"closed\" | \"open\" (ticket state), \"n\": integer, \"note\"?: string}") == 0,
			  "%s", text.data ? text.data : "(null)");
	p3_text_free(&text);
	p3_schema_matcher_free(c);
	p3_schema_matcher_free(m);
	p3_schema_free(s);

	/* a root number stays open: complete but can continue */
	s = compile_ok("{\"type\":\"integer\",\"minimum\":10,\"maximum\":99}");
	if (s)
	{
		CHECK_STATUS(p3_schema_matcher_new(s, NULL, &m, &err), P3_OK);
		CHECK(!p3_schema_matcher_allows(m, "0", 1));
		CHECK(!p3_schema_matcher_allows(m, "-", 1));
		CHECK(!p3_schema_matcher_allows(m, "100", 3));
		CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "4", 1, &err), P3_OK);
		CHECK(!p3_schema_matcher_is_complete(m));
		CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "2", 1, &err), P3_OK);
		CHECK(p3_schema_matcher_is_complete(m));
		CHECK(!p3_schema_matcher_can_continue(m));
		p3_schema_matcher_free(m);
		p3_schema_free(s);
	}
	s = compile_ok("{\"type\":\"number\"}");
	if (s)
	{
		CHECK_STATUS(p3_schema_matcher_new(s, NULL, &m, &err), P3_OK);
		CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "12", 2, &err), P3_OK);
		CHECK(p3_schema_matcher_is_complete(m));
		CHECK(p3_schema_matcher_can_continue(m));
		p3_schema_matcher_free(m);
		p3_schema_free(s);
	}
}

/* Shortest completions from chosen prefixes. */
static void
test_completion(void)
{
	static const char *const cases3[][3] = {
		{"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":2},\"age\":{\"type\":\"integer\",\"minimum\":18},"
			"\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"blue\",\"red\"]},\"minItems\":2}},\"required\":[\"name\",\"age\",\"tags\"]}",
		"", "{\"name\":\"aa\",\"age\":18,\"tags\":[\"red\",\"red\"]}"},
		{NULL, "{\"name\":\"A", "a\",\"age\":18,\"tags\":[\"red\",\"red\"]}"},
		{NULL, "{\"name\":\"\\u", "0000a\",\"age\":18,\"tags\":[\"red\",\"red\"]}"},
		{NULL, "{\"name\":\"\\ud8", "00\\udc00a\",\"age\":18,\"tags\":[\"red\",\"red\"]}"},
		{NULL, "{\"name\":\"\xe6\x97", "\x80" "a\",\"age\":18,\"tags\":[\"red\",\"red\"]}"},
		{NULL, "{\"name\":\"abc\",\"age\":1", "8,\"tags\":[\"red\",\"red\"]}"},
		{NULL, "{\"name\":\"abc\",\"age\":19,\"tags\":[\"bl", "ue\",\"red\"]}"},
		{NULL, "{\"name\":\"abc\",\"age\":19,\"tags\":[\"blue\",\"red\",", "\"red\"]}"},
		{"{\"type\":\"integer\",\"minimum\":-500,\"maximum\":-120}", "-1", "20"},
		{NULL, "-", "120"},
		{NULL, "-3", "00"},
		{"{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"null\"},\"b\":{\"type\":\"string\",\"format\":\"date\"}}}", "{\"a\":null,", "\"b\":\"0000-01-01\"}"},
		{NULL, "{\"b\":\"2024-1", "0-01\"}"},
		{NULL, "{}", ""},
		{"{\"type\":\"number\"}", "-1.5e", "0"},
	};
	P3Schema   *s = NULL;

	for (size_t i = 0; i < sizeof(cases3) / sizeof(cases3[0]); i++)
	{
		P3SchemaMatcher *m = NULL;
		P3Error		err = {0};
		P3Text		t = {0};

		if (cases3[i][0])
		{
			p3_schema_free(s);
			s = compile_ok(cases3[i][0]);
		}
		if (s == NULL)
			continue;
		CHECK_STATUS(p3_schema_matcher_new(s, NULL, &m, &err), P3_OK);
		CHECK_STATUS(p3_schema_matcher_accept_bytes(m, cases3[i][1], strlen(cases3[i][1]), &err), P3_OK);
		CHECK_STATUS(p3_schema_matcher_completion(m, &t, &err), P3_OK);
		CHECK_MSG(strcmp(t.data ? t.data : "", cases3[i][2]) == 0, "after %s: %s, expected %s",
				  cases3[i][1], t.data ? t.data : "", cases3[i][2]);
		p3_text_free(&t);
		p3_schema_matcher_free(m);
	}
	p3_schema_free(s);
}

/* ========================================================================
 * Masks on the real vocabulary
 * ======================================================================== */

static const char *const mask_schemas[] = {
	"{\"type\":\"object\",\"properties\":{\"customer\":{\"type\":\"string\",\"description\":\"who pays\"},"
	"\"amount\":{\"type\":\"number\"},\"date\":{\"type\":\"string\",\"format\":\"date\"},"
	"\"paid\":{\"type\":\"boolean\"}},\"required\":[\"customer\",\"amount\",\"date\"]}",
	"{\"type\":\"object\",\"properties\":{\"sentiment\":{\"enum\":[\"positive\",\"negative\",\"neutral\"]},"
	"\"score\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":10},\"tags\":{\"type\":\"array\",\"items\":"
	"{\"type\":\"string\",\"maxLength\":20},\"maxItems\":4}},\"required\":[\"sentiment\",\"score\",\"tags\"]}",
	"{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":40},"
	"\"address\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"zip\":{\"type\":[\"string\",\"null\"]}},"
	"\"required\":[\"city\"]},\"id\":{\"type\":\"string\",\"format\":\"uuid\"},\"phones\":{\"type\":\"array\",\"items\":"
	"{\"type\":\"string\",\"pattern\":\"\\\\+?[0-9]{3,12}\"}}},\"required\":[\"name\",\"address\"]}",
	"{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"circle\"},\"r\":{\"type\":\"number\"}},"
	"\"required\":[\"kind\",\"r\"]},{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":-50,\"maximum\":50},\"minItems\":1}]}",
	/* a short string beside enum values that are longer: tokens the string cannot take, the enum can */
	"{\"type\":\"array\",\"items\":{\"anyOf\":[{\"enum\":[\"abc\",\"abcdef\",\"Hello world\"]},{\"type\":\"string\",\"maxLength\":2}]},\"maxItems\":6}",
	/* the shape phi3_extract gives a composite type (src/pg/extract_schema.c): real dates, bounded numerics */
	"{\"type\":\"object\",\"properties\":{\"customer\":{\"type\":\"string\"},\"amount\":{\"type\":\"string\","
	"\"pattern\":\"^-?(0|[1-9][0-9]{0,7})([.][0-9]{1,2})?$\"},\"due\":{\"anyOf\":[{\"type\":\"string\",\"pattern\":"
	"\"^([1-9][0-9]{3}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
	"|([1-9][0-9](0[48]|[2468][048]|[13579][26])|([2468][048]|[13579][26])00)-02-29)$\"},{\"type\":\"null\"}]},"
	"\"n\":{\"type\":\"integer\",\"minimum\":-2147483648,\"maximum\":2147483647}},"
	"\"required\":[\"customer\",\"amount\",\"due\",\"n\"],\"additionalProperties\":false}",
};

static uint32_t *
brute_mask(P3SchemaMatcher *m, int32_t nv)
{
	uint32_t   *mask = calloc(((size_t) nv + 31) / 32, sizeof(uint32_t));
	char		piece[256];

	for (int32_t i = 0; i < nv; i++)
	{
		size_t		n = p3_token_to_piece(tok, i, false, piece, sizeof(piece));
		bool		ok;

		if (n == 0)
			ok = p3_tokenizer_is_eog(tok, i) && p3_schema_matcher_is_complete(m);
		else
			ok = n <= sizeof(piece) && p3_schema_matcher_allows(m, piece, n);
		if (ok)
			mask[i / 32] |= 1u << (i % 32);
	}
	return mask;
}

/* Pick an allowed token at random, biased towards tokens that close things so that walks end. */
static int32_t
pick_token(const uint32_t *mask, int32_t nv, uint64_t *rng, bool closing)
{
	int32_t		n_allowed = 0;
	int32_t		pick;
	char		piece[64];

	for (int32_t i = 0; i < nv; i++)
		if ((mask[i / 32] >> (i % 32)) & 1)
			n_allowed++;
	if (n_allowed == 0)
		return -1;
	if (closing)
	{
		/* prefer a token with a closing character, or an end-of-generation token */
		int32_t		n_close = 0;

		for (int32_t i = 0; i < nv; i++)
			if ((mask[i / 32] >> (i % 32)) & 1)
			{
				size_t		n = p3_token_to_piece(tok, i, false, piece, sizeof(piece));

				if ((n == 0) || (n <= sizeof(piece) && (memchr(piece, '"', n) || memchr(piece, '}', n) || memchr(piece, ']', n))))
					n_close++;
			}
		if (n_close > 0)
		{
			pick = (int32_t) (harness_rand(rng) % (uint64_t) n_close);
			for (int32_t i = 0; i < nv; i++)
				if ((mask[i / 32] >> (i % 32)) & 1)
				{
					size_t		n = p3_token_to_piece(tok, i, false, piece, sizeof(piece));

					if ((n == 0) || (n <= sizeof(piece) && (memchr(piece, '"', n) || memchr(piece, '}', n) || memchr(piece, ']', n))))
						if (pick-- == 0)
							return i;
				}
		}
	}
	pick = (int32_t) (harness_rand(rng) % (uint64_t) n_allowed);
	for (int32_t i = 0; i < nv; i++)
		if ((mask[i / 32] >> (i % 32)) & 1)
			if (pick-- == 0)
				return i;
	return -1;
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return x < y ? -1 : x > y;
}

/*
 * Random walks: at each state the mask must equal the brute force (on the
 * first states of each walk, or every state of the first walk); the final
 * document must satisfy the reference validator.  Mask times are recorded.
 */
static void
test_masks_and_walks(void)
{
	int32_t		nv = p3_tokenizer_n_vocab(tok);
	size_t		words = ((size_t) nv + 31) / 32;
	uint32_t   *mask = malloc(words * sizeof(uint32_t));
	uint64_t	rng = 12345;
	int			walks = under_valgrind ? 2 : 40;
	int			brute_states = under_valgrind ? 3 : 60;
	double	   *times = malloc(sizeof(double) * 200000);
	size_t		n_times = 0;
	int			completed = 0,
				total = 0,
				brute_checked = 0;
	double		cold_sum = 0;
	int			cold_n = 0;
	int			completions = 0;

	for (size_t sc = 0; sc < sizeof(mask_schemas) / sizeof(mask_schemas[0]); sc++)
	{
		P3Schema   *s = compile_ok(mask_schemas[sc]);
		V		   *schema = vparse_text(mask_schemas[sc], strlen(mask_schemas[sc]), true);
		P3SchemaStats stats;

		if (s == NULL || schema == NULL)
		{
			p3_schema_free(s);
			vfree(schema);
			continue;
		}
		p3_schema_stats(s, &stats);
		fprintf(stderr, "  schema %zu: %d nodes, %d states, depth %d, compiled in %.3f ms\n",
				sc, stats.n_nodes, stats.n_states, stats.depth, stats.compile_ms);
		for (int w = 0; w < walks; w++)
		{
			P3SchemaMatcher *m = NULL;
			P3Error		err = {0};
			char		doc[8192];
			size_t		len = 0;
			bool		done = false;

			total++;
			CHECK_STATUS(p3_schema_matcher_new(s, trie, &m, &err), P3_OK);
			if (m == NULL)
				break;
			for (int step = 0; step < 400 && !done; step++)
			{
				double		t0 = now_us(),
							dt;
				int32_t		t;
				char		piece[256];
				size_t		n;
				bool		was_cached;
				P3SchemaStats before;

				p3_schema_stats(s, &before);
				CHECK_STATUS(p3_schema_matcher_mask(m, NULL, mask, &err), P3_OK);
				dt = now_us() - t0;
				p3_schema_stats(s, &stats);
				was_cached = stats.mask_cache_hits > before.mask_cache_hits;
				if (n_times < 200000)
					times[n_times++] = dt;
				if (!was_cached)
				{
					cold_sum += dt;
					cold_n++;
				}
				if (brute_checked < brute_states * (int) (sc + 1) && (w == 0 || step < 3))
				{
					uint32_t   *ref = brute_mask(m, nv);
					int			diff = 0;

					for (size_t k = 0; k < words; k++)
						if (ref[k] != mask[k])
							diff++;
					CHECK_MSG(diff == 0, "schema %zu, after \"%.*s\": mask differs from brute force in %d words",
							  sc, (int) len, doc, diff);
					free(ref);
					brute_checked++;
				}
				if (step % 5 == 0 || step < 4)
				{
					/* the shortest completion closes the document validly from here */
					P3Text		comp = {0};
					char		full[16384];

					CHECK_STATUS(p3_schema_matcher_completion(m, &comp, &err), P3_OK);
					if (comp.len + len < sizeof(full))
					{
						memcpy(full, doc, len);
						if (comp.len)
							memcpy(full + len, comp.data, comp.len);
						CHECK_MSG(reference_valid(schema, full, len + comp.len), "schema %zu: completion of %.*s is %s",
								  sc, (int) len, doc, comp.data ? comp.data : "");
						completions++;
					}
					p3_text_free(&comp);
				}
				t = pick_token(mask, nv, &rng, step > 20 && (harness_rand(&rng) % 3 == 0));
				CHECK_MSG(t >= 0, "schema %zu: empty mask after \"%.*s\"", sc, (int) len, doc);
				if (t < 0)
					break;
				n = p3_token_to_piece(tok, t, false, piece, sizeof(piece));
				if (n == 0)
				{
					/* an end-of-generation token: allowed only when complete */
					CHECK(p3_tokenizer_is_eog(tok, t) && p3_schema_matcher_is_complete(m));
					done = true;
					break;
				}
				CHECK_STATUS(p3_schema_matcher_accept_bytes(m, piece, n, &err), P3_OK);
				if (len + n < sizeof(doc))
				{
					memcpy(doc + len, piece, n);
					len += n;
				}
				if (p3_schema_matcher_is_complete(m) && !p3_schema_matcher_can_continue(m))
					done = true;
			}
			if (done)
			{
				completed++;
				CHECK_MSG(reference_valid(schema, doc, len), "schema %zu: walk produced invalid %.*s", sc, (int) len, doc);
				if (w < 2)
					fprintf(stderr, "    walk: %.*s\n", (int) (len > 300 ? 300 : len), doc);
			}
			p3_schema_matcher_free(m);
		}
		p3_schema_stats(s, &stats);
		fprintf(stderr, "    %lld masks, %lld from the cache\n", (long long) stats.mask_calls, (long long) stats.mask_cache_hits);
		p3_schema_free(s);
		vfree(schema);
	}
	CHECK(brute_checked > 0);
	CHECK_MSG(completed * 10 >= total * 7, "only %d of %d walks completed", completed, total);
	if (n_times > 0)
	{
		double		sum = 0;

		for (size_t i = 0; i < n_times; i++)
			sum += times[i];
		qsort(times, n_times, sizeof(double), cmp_double);
		fprintf(stderr, "  masks: %zu, mean %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us; uncached: %d, mean %.1f us%s\n",
				n_times, sum / (double) n_times, times[n_times / 2], times[(size_t) ((double) n_times * 0.99)],
				times[n_times - 1], cold_n, cold_n ? cold_sum / cold_n : 0.0, under_valgrind ? " (valgrind)" : "");
		fprintf(stderr, "  walks: %d of %d complete, %d masks checked against brute force, %d completions checked\n",
				completed, total, brute_checked, completions);
	}
	free(times);
	free(mask);
}

/*
 * Cached masks of counted states: strings with minLength / maxLength and
 * arrays with minItems / maxItems share cache entries across counts that
 * no token can tell apart.  Walk long documents byte by byte (the mask at
 * every position, many of them from the cache) against the brute force.
 */
static void
test_mask_cache_counts(void)
{
	static const char *const schema_text =
		"{\"type\":\"object\",\"properties\":{\"s\":{\"type\":\"string\",\"minLength\":3,\"maxLength\":70},"
		"\"a\":{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9},\"minItems\":2,\"maxItems\":45}},"
		"\"required\":[\"s\",\"a\"]}";
	P3Schema   *s = compile_ok(schema_text);
	int32_t		nv = p3_tokenizer_n_vocab(tok);
	size_t		words = ((size_t) nv + 31) / 32;
	uint32_t   *mask = malloc(words * sizeof(uint32_t));
	char		doc[512];
	size_t		n = 0;
	P3SchemaMatcher *m = NULL;
	P3Error		err = {0};
	int			step = under_valgrind ? 23 : 1;
	int			checked = 0;

	if (s == NULL)
		return;
	n += (size_t) snprintf(doc + n, sizeof(doc) - n, "{\"s\":\"");
	for (int i = 0; i < 70; i++)
		doc[n++] = (char) ('a' + i % 26);
	n += (size_t) snprintf(doc + n, sizeof(doc) - n, "\",\"a\":[");
	for (int i = 0; i < 45; i++)
		n += (size_t) snprintf(doc + n, sizeof(doc) - n, "%s%d", i ? "," : "", i % 10);
	n += (size_t) snprintf(doc + n, sizeof(doc) - n, "]}");
	/* twice: the second pass is served from the cache */
	for (int pass = 0; pass < 2; pass++)
	{
		CHECK_STATUS(p3_schema_matcher_new(s, trie, &m, &err), P3_OK);
		for (size_t i = 0; i <= n && m; i++)
		{
			if ((int) i % step == 0)
			{
				uint32_t   *ref;

				CHECK_STATUS(p3_schema_matcher_mask(m, NULL, mask, &err), P3_OK);
				ref = brute_mask(m, nv);
				CHECK_MSG(memcmp(ref, mask, words * sizeof(uint32_t)) == 0, "pass %d: mask differs after %.*s",
						  pass, (int) i, doc);
				free(ref);
				checked++;
			}
			if (i < n)
				CHECK_STATUS(p3_schema_matcher_accept_bytes(m, &doc[i], 1, &err), P3_OK);
		}
		if (m)
			CHECK(p3_schema_matcher_is_complete(m));
		p3_schema_matcher_free(m);
		m = NULL;
	}
	{
		P3SchemaStats st;

		p3_schema_stats(s, &st);
		fprintf(stderr, "  %d masks checked, %lld of %lld from the cache\n", checked,
				(long long) st.mask_cache_hits, (long long) st.mask_calls);
		CHECK(st.mask_cache_hits * 2 >= st.mask_calls);
	}
	free(mask);
	p3_schema_free(s);
}

/*
 * Mask times on model-like token sequences: valid documents tokenized the
 * way the model would write them (canonical SentencePiece tokens), masks
 * computed at every position, first on a fresh schema (cold cache), then
 * again (warm).  Each sampled token must be in its mask.
 */
static const char *const realistic_docs[][4] = {
	{"{\"customer\":\"ACME Corporation Ltd.\",\"amount\":1249.5,\"date\":\"2024-03-15\",\"paid\":false}",
		"{\"customer\":\"Jean-Pierre Dupont, Café de la Gare\",\"amount\":87,\"date\":\"2023-12-01\"}",
	"{\"customer\":\"東京システム株式会社\",\"amount\":0.99,\"date\":\"2025-01-31\",\"paid\":true}", NULL},
	{"{\"sentiment\":\"positive\",\"score\":8,\"tags\":[\"fast delivery\",\"friendly\"]}",
		"{\"sentiment\":\"negative\",\"score\":2,\"tags\":[\"broken\",\"late\",\"refund\"]}",
	"{\"sentiment\":\"neutral\",\"score\":5,\"tags\":[]}", NULL},
	{"{\"name\":\"Maria Garcia\",\"address\":{\"city\":\"Barcelona\",\"zip\":\"08001\"},"
		"\"id\":\"550e8400-e29b-41d4-a716-446655440000\",\"phones\":[\"+34600123456\"]}",
	"{\"name\":\"Bob\",\"address\":{\"city\":\"New York\",\"zip\":null}}", NULL, NULL},
	{"{\"kind\":\"circle\",\"r\":2.75}", "[1,-2,30,4,5,-50]", NULL, NULL},
	{"[\"abc\",\"x\",\"abcdef\",\"\",\"Hello world\"]", "[]", NULL, NULL},
	{"{\"customer\":\"ACME Corp\",\"amount\":\"1249.50\",\"due\":\"2024-02-29\",\"n\":17}",
	"{\"customer\":\"Globex\",\"amount\":\"-3\",\"due\":null,\"n\":0}", NULL, NULL},
};

static void
test_realistic_masks(void)
{
	int32_t		nv = p3_tokenizer_n_vocab(tok);
	uint32_t   *mask = malloc(((size_t) nv + 31) / 32 * sizeof(uint32_t));
	double		times[2][4096];
	size_t		n_times[2] = {0, 0};

	for (size_t sc = 0; sc < sizeof(mask_schemas) / sizeof(mask_schemas[0]); sc++)
	{
		P3Schema   *s = compile_ok(mask_schemas[sc]);

		if (s == NULL)
			continue;
		for (int pass = 0; pass < 2; pass++)
			for (int d = 0; realistic_docs[sc][d]; d++)
			{
				const char *doc = realistic_docs[sc][d];
				P3Tokens	toks = {0};
				P3SchemaMatcher *m = NULL;
				P3Error		err = {0};

				CHECK_STATUS(p3_tokenize(tok, doc, strlen(doc), 0, &toks, &err), P3_OK);
				CHECK_STATUS(p3_schema_matcher_new(s, trie, &m, &err), P3_OK);
				for (size_t i = 0; i < toks.n && m; i++)
				{
					char		piece[256];
					size_t		n = p3_token_to_piece(tok, toks.ids[i], false, piece, sizeof(piece));
					double		t0;
					char	   *p = piece;
					int32_t		id = toks.ids[i];

					/* the dummy-prefix space of the first token is not part of the output */
					if (i == 0 && n > 0 && piece[0] == ' ')
					{
						p++;
						n--;
						piece[n + 1] = '\0';
						id = p3_tokenizer_find(tok, p);
						if (n == 0)
							continue;
					}
					t0 = now_us();
					CHECK_STATUS(p3_schema_matcher_mask(m, NULL, mask, &err), P3_OK);
					if (n_times[pass] < 4096)
						times[pass][n_times[pass]++] = now_us() - t0;
					if (id >= 0)
						CHECK_MSG((mask[id / 32] >> (id % 32)) & 1, "schema %zu: token \"%.*s\" of %s not in its mask",
								  sc, (int) n, p, doc);
					CHECK_STATUS(p3_schema_matcher_accept_bytes(m, p, n, &err), P3_OK);
				}
				if (m)
					CHECK_MSG(p3_schema_matcher_is_complete(m), "%s", doc);
				p3_schema_matcher_free(m);
				p3_tokens_free(&toks);
			}
		p3_schema_free(s);
	}
	for (int pass = 0; pass < 2; pass++)
	{
		double		sum = 0;
		size_t		n = n_times[pass];

		if (n == 0)
			continue;
		for (size_t i = 0; i < n; i++)
			sum += times[pass][i];
		qsort(times[pass], n, sizeof(double), cmp_double);
		fprintf(stderr, "  model-like tokens, %s cache: %zu masks, mean %.1f us, p50 %.1f us, p99 %.1f us, max %.1f us%s\n",
				pass ? "warm" : "cold", n, sum / (double) n, times[pass][n / 2],
				times[pass][(size_t) ((double) n * 0.99)], times[pass][n - 1], under_valgrind ? " (valgrind)" : "");
	}
	free(mask);
}

/* ---- random schemas over the whole supported subset ---- */

typedef struct Gen
{
	char	   *buf;
	size_t		len;
	size_t		cap;
	uint64_t	rng;
	int			n_defs;
	char		defs[4][2048];
} Gen;

static void
gput(Gen *g, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
gput(Gen *g, const char *fmt,...)
{
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(g->buf + g->len, g->cap - g->len, fmt, ap);
	va_end(ap);
	if (n > 0 && g->len + (size_t) n < g->cap)
		g->len += (size_t) n;
}

static int
grand(Gen *g, int n)
{
	return (int) (harness_rand(&g->rng) % (uint64_t) n);
}

static void gen_schema(Gen *g, int depth, bool container);

static void
gen_scalar(Gen *g)
{
	static const char *const words[] = {"\"red\"", "\"green\"", "\"blue sky\"", "\"é\"", "\"a\\\"b\"", "\"\"",
	"0", "1", "12", "-7", "2.5", "true", "false", "null"};

	gput(g, "%s", words[grand(g, (int) (sizeof(words) / sizeof(words[0])))]);
}

static void
gen_schema(Gen *g, int depth, bool container)
{
	int			k = container ? 9 + grand(g, 4) : grand(g, depth > 0 ? 14 : 9);

	switch (k)
	{
		case 0:
			{
				int			f = grand(g, 7);

				if (f < 4)
				{
					static const char *const fmts[] = {"date", "time", "date-time", "uuid"};

					gput(g, "{\"type\":\"string\",\"format\":\"%s\"}", fmts[f]);
				}
				else if (f == 4)
					gput(g, "{\"type\":\"string\",\"pattern\":\"^[a-c]{1,3}(-[0-9]+)?$\"}");
				else
				{
					int			mn = grand(g, 3);

					gput(g, "{\"type\":\"string\",\"minLength\":%d,\"maxLength\":%d}", mn, mn + grand(g, 8));
				}
				break;
			}
		case 1:
			gput(g, "{\"type\":\"string\",\"description\":\"free text\"}");
			break;
		case 2:
			{
				int			lo = grand(g, 200) - 100;

				if (grand(g, 2))
					gput(g, "{\"type\":\"integer\",\"minimum\":%d,\"maximum\":%d}", lo, lo + grand(g, 300));
				else
					gput(g, "{\"type\":\"integer\"}");
				break;
			}
		case 3:
			gput(g, "{\"type\":\"number\"}");
			break;
		case 4:
			gput(g, "{\"type\":\"%s\"}", grand(g, 2) ? "boolean" : "null");
			break;
		case 5:
		case 6:
			{
				int			n = 1 + grand(g, 4);

				gput(g, "{\"enum\":[");
				for (int i = 0; i < n; i++)
				{
					if (i)
						gput(g, ",");
					gen_scalar(g);
				}
				gput(g, "]}");
				break;
			}
		case 7:
			gput(g, "{\"const\":");
			gen_scalar(g);
			gput(g, "}");
			break;
		case 8:
			gput(g, "{\"type\":[\"%s\",\"null\"]}", grand(g, 2) ? "string" : "integer");
			break;
		case 9:
		case 10:
			{
				static const char *const names[] = {"id", "name", "n", "note", "tags", "x", "xy", "date"};
				int			n = grand(g, 5);
				int			used[8] = {0};
				int			picked[5];
				int			np = 0;

				for (int i = 0; i < n; i++)
				{
					int			j = grand(g, 8);

					if (!used[j])
					{
						used[j] = 1;
						picked[np++] = j;
					}
				}
				gput(g, "{\"type\":\"object\",\"properties\":{");
				for (int i = 0; i < np; i++)
				{
					gput(g, "%s\"%s\":", i ? "," : "", names[picked[i]]);
					gen_schema(g, depth - 1, false);
				}
				gput(g, "},\"required\":[");
				for (int i = 0, first = 1; i < np; i++)
					if (grand(g, 2))
					{
						gput(g, "%s\"%s\"", first ? "" : ",", names[picked[i]]);
						first = 0;
					}
				gput(g, "]}");
				break;
			}
		case 11:
			{
				int			mn = grand(g, 3);

				gput(g, "{\"type\":\"array\",\"items\":");
				gen_schema(g, depth - 1, false);
				if (grand(g, 2))
					gput(g, ",\"minItems\":%d,\"maxItems\":%d}", mn, mn + grand(g, 4));
				else
					gput(g, "}");
				break;
			}
		case 12:
			{
				int			n = 2 + grand(g, 2);

				gput(g, "{\"anyOf\":[");
				for (int i = 0; i < n; i++)
				{
					if (i)
						gput(g, ",");
					gen_schema(g, depth - 1, false);
				}
				gput(g, "]}");
				break;
			}
		case 13:
			if (g->n_defs < 4)
			{
				/* a definition, generated into its own buffer, referenced here */
				Gen			sub = *g;
				int			id = g->n_defs++;

				sub.buf = g->defs[id];
				sub.len = 0;
				sub.cap = sizeof(g->defs[id]);
				sub.n_defs = 4;	/* no nested definitions */
				gen_schema(&sub, depth - 1, false);
				g->rng = sub.rng;
				if (sub.len + 1 >= sub.cap)
					snprintf(g->defs[id], sizeof(g->defs[id]), "{\"type\":\"null\"}");
				gput(g, "{\"$ref\":\"#/$defs/d%d\"}", id);
			}
			else
				gput(g, "{\"type\":\"boolean\"}");
			break;
	}
}

/*
 * Hundreds of random schemas: each compiles; random walks over allowed
 * tokens end (by themselves or by the shortest completion) in documents
 * the reference validator accepts; the first mask of some of them equals
 * the brute force.
 */
/* Random schema number sc (seeded by seed) with its definitions, as JSON text in text[0..cap). */
static void
random_schema_text(int sc, uint64_t seed, char *text, size_t cap)
{
	Gen			g = {0};
	char		body[1 << 14];
	size_t		o;

	g.buf = body;
	g.cap = sizeof(body);
	g.rng = seed + (uint64_t) sc * 7919;
	gen_schema(&g, 3, sc % 4 != 0);	/* mostly a container at the root */
	o = (size_t) snprintf(text, cap, "%.*s", (int) (g.len - 1), body);
	if (g.n_defs > 0)
	{
		o += (size_t) snprintf(text + o, cap - o, "%s\"$defs\":{", g.len > 2 ? "," : "");
		for (int d = 0; d < g.n_defs; d++)
			o += (size_t) snprintf(text + o, cap - o, "%s\"d%d\":%s", d ? "," : "", d, g.defs[d]);
		o += (size_t) snprintf(text + o, cap - o, "}");
	}
	snprintf(text + o, cap - o, "}");
}

static void
test_random_schemas(void)
{
	int			n_schemas = under_valgrind ? 6 : 300;
	int32_t		nv = p3_tokenizer_n_vocab(tok);
	size_t		words = ((size_t) nv + 31) / 32;
	uint32_t   *mask = malloc(words * sizeof(uint32_t));
	char	   *text = malloc(1 << 16);
	int			completed = 0,
				closed = 0,
				mutations = 0;
	uint64_t	rng = 777;

	for (int sc = 0; sc < n_schemas; sc++)
	{
		P3Schema   *s = NULL;
		V		   *schema;
		P3Error		err = {0};
		P3Status	st;
		P3SchemaMatcher *m = NULL;
		char		doc[8192];
		size_t		len = 0;
		bool		done = false;

		random_schema_text(sc, rng, text, 1 << 16);
		st = p3_schema_compile(text, strlen(text), NULL, &s, &err);
		CHECK_MSG(st == P3_OK, "random schema %d: %s: %s", sc, text, err.message);
		schema = vparse_text(text, strlen(text), true);
		CHECK(schema != NULL);
		if (st != P3_OK || schema == NULL)
		{
			p3_schema_free(s);
			vfree(schema);
			continue;
		}
		CHECK_STATUS(p3_schema_matcher_new(s, trie, &m, &err), P3_OK);
		for (int step = 0; step < 60 && m && !done; step++)
		{
			int32_t		t;
			char		piece[256];
			size_t		n;

			CHECK_STATUS(p3_schema_matcher_mask(m, NULL, mask, &err), P3_OK);
			if (step == 0 && sc % 10 == 0)
			{
				uint32_t   *ref = brute_mask(m, nv);

				CHECK_MSG(memcmp(ref, mask, words * sizeof(uint32_t)) == 0, "random schema %d: first mask differs: %s", sc, text);
				free(ref);
			}
			t = pick_token(mask, nv, &rng, step > 10 && (harness_rand(&rng) % 2 == 0));
			CHECK_MSG(t >= 0, "random schema %d: empty mask after %.*s: %s", sc, (int) len, doc, text);
			if (t < 0)
				break;
			n = p3_token_to_piece(tok, t, false, piece, sizeof(piece));
			if (n == 0)
			{
				done = true;
				break;
			}
			CHECK_STATUS(p3_schema_matcher_accept_bytes(m, piece, n, &err), P3_OK);
			if (len + n < sizeof(doc))
			{
				memcpy(doc + len, piece, n);
				len += n;
			}
			if (p3_schema_matcher_is_complete(m) && !p3_schema_matcher_can_continue(m))
				done = true;
		}
		if (m && !done)
		{
			/* the budget ran out: close the document the shortest way */
			P3Text		comp = {0};

			CHECK_STATUS(p3_schema_matcher_completion(m, &comp, &err), P3_OK);
			if (comp.len && len + comp.len < sizeof(doc))
			{
				memcpy(doc + len, comp.data, comp.len);
				len += comp.len;
			}
			p3_text_free(&comp);
			closed++;
		}
		else
			completed++;
		CHECK_MSG(reference_valid(schema, doc, len), "random schema %d: %s\n  produced invalid %.*s", sc, text, (int) len, doc);
		/* random one-byte mutations of the document: the automaton and the reference agree */
		for (int k = 0; k < (under_valgrind ? 5 : 40) && len > 0; k++)
		{
			static const char alphabet[] = "{}[],:\"\\ 0123456789-.eEtrufalsnbcxyzTZ\x01\xc3\xa9";
			char		mut[8200];
			size_t		pos = (size_t) (harness_rand(&rng) % len);
			char		c = alphabet[harness_rand(&rng) % (sizeof(alphabet) - 1)];
			int			op = (int) (harness_rand(&rng) % 3);
			size_t		ml;
			bool		a,
						r;

			memcpy(mut, doc, pos);
			if (op == 0)
			{
				memcpy(mut + pos, doc + pos + 1, len - pos - 1);
				ml = len - 1;
			}
			else if (op == 1)
			{
				mut[pos] = c;
				memcpy(mut + pos + 1, doc + pos, len - pos);
				ml = len + 1;
			}
			else
			{
				memcpy(mut + pos, doc + pos, len - pos);
				mut[pos] = c;
				ml = len;
			}
			a = automaton_valid(s, mut, ml);
			r = reference_valid(schema, mut, ml);
			CHECK_MSG(a == r, "random schema %d: %s\n  %.*s: automaton %d, reference %d", sc, text, (int) ml, mut, a, r);
			mutations++;
		}
		p3_schema_matcher_free(m);
		p3_schema_free(s);
		vfree(schema);
	}
	fprintf(stderr, "  %d random schemas: %d walks ended by themselves, %d closed by the shortest completion, %d mutations\n",
			n_schemas, completed, closed, mutations);
	free(mask);
	free(text);
}

/* The constraint: mask / accept / complete as the decoder calls them. */
static void
test_constraint(void)
{
	P3Schema   *s = compile_ok("{\"type\":\"object\",\"properties\":{\"ok\":{\"type\":\"boolean\"}},\"required\":[\"ok\"]}");
	P3SchemaMatcher *m = NULL;
	P3Constraint c;
	P3Error		err = {0};
	int32_t		nv = p3_tokenizer_n_vocab(tok);
	uint32_t   *mask = malloc(((size_t) nv + 31) / 32 * sizeof(uint32_t));
	int32_t		eos = p3_tokenizer_eos(tok);
	int32_t		brace = p3_tokenizer_find(tok, "{");
	int32_t		x = p3_tokenizer_find(tok, "x");

	if (s == NULL)
		return;
	CHECK_STATUS(p3_schema_matcher_new(s, NULL, &m, &err), P3_OK);
	CHECK_STATUS(p3_schema_constraint(m, tok, &c, &err), P3_ERR_INVALID_ARG);	/* no trie */
	p3_schema_matcher_free(m);
	CHECK_STATUS(p3_schema_matcher_new(s, trie, &m, &err), P3_OK);
	CHECK_STATUS(p3_schema_constraint(m, tok, &c, &err), P3_OK);
	CHECK(brace >= 0 && x >= 0 && eos >= 0);
	memset(mask, 0xFF, ((size_t) nv + 31) / 32 * sizeof(uint32_t));
	CHECK_STATUS(c.mask(c.state, mask, nv, &err), P3_OK);
	CHECK((mask[brace / 32] >> (brace % 32)) & 1);
	CHECK(!((mask[x / 32] >> (x % 32)) & 1));
	CHECK(!((mask[eos / 32] >> (eos % 32)) & 1));
	CHECK_STATUS(c.mask(c.state, mask, nv - 1, &err), P3_ERR_INVALID_ARG);
	CHECK_STATUS(c.accept(c.state, x, &err), P3_ERR_INVALID_ARG);
	CHECK_MSG(strstr(err.message, "does not continue the document") != NULL, "%s", err.message);
	CHECK_STATUS(c.accept(c.state, eos, &err), P3_ERR_INVALID_ARG);
	CHECK_STATUS(c.accept(c.state, nv, &err), P3_ERR_INVALID_ARG);
	CHECK_STATUS(c.accept(c.state, brace, &err), P3_OK);
	CHECK(!c.complete(c.state));
	CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "\"ok\":tru", 8, &err), P3_OK);
	CHECK_STATUS(c.accept(c.state, p3_tokenizer_find(tok, "e"), &err), P3_OK);
	CHECK(!c.complete(c.state));
	CHECK_STATUS(c.accept(c.state, p3_tokenizer_find(tok, "}"), &err), P3_OK);
	CHECK(c.complete(c.state));
	CHECK_STATUS(c.mask(c.state, mask, nv, &err), P3_OK);
	CHECK((mask[eos / 32] >> (eos % 32)) & 1);
	CHECK(!((mask[brace / 32] >> (brace % 32)) & 1));
	CHECK_STATUS(c.accept(c.state, eos, &err), P3_OK);
	free(mask);
	p3_schema_matcher_free(m);
	p3_schema_free(s);
}

/* A second, small vocabulary (longer tokens than it has depth for, a control EOS) with the same schema and matcher. */
static void
test_small_vocab(void)
{
	static const char *const texts[] = {"<unk>", "</s>", "{", "}", "\"a\":", "1", "{\"a\":1}", "{\"a\":12345678901234567890}", "2"};
	static const int32_t types[] = {P3_TOKEN_UNKNOWN, P3_TOKEN_CONTROL, 1, 1, 1, 1, 1, 1, 1};
	P3TokenizerVocab v = {0};
	P3Tokenizer *small = NULL;
	P3VocabTrie *st = NULL;
	P3Schema   *s = compile_ok("{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\"}}}");
	P3SchemaMatcher *m = NULL;
	P3Error		err = {0};
	uint32_t	bits[1];
	uint32_t   *big = malloc(((size_t) p3_tokenizer_n_vocab(tok) + 31) / 32 * sizeof(uint32_t));

	v.n_tokens = 9;
	v.texts = texts;
	v.types = types;
	v.bos_id = -1;
	v.eos_id = 1;
	v.unk_id = 0;
	CHECK_STATUS(p3_tokenizer_from_vocab(&v, &small, &err), P3_OK);
	CHECK_STATUS(p3_vocab_trie_new(small, &st, &err), P3_OK);
	if (s == NULL || st == NULL)
		goto out;
	CHECK_EQ_INT(p3_vocab_trie_n_vocab(st), 9);
	CHECK_STATUS(p3_schema_matcher_new(s, st, &m, &err), P3_OK);
	/* first with the big trie, then the small one: the cache follows the trie */
	CHECK_STATUS(p3_schema_matcher_mask(m, trie, big, &err), P3_OK);
	CHECK_STATUS(p3_schema_matcher_mask(m, NULL, bits, &err), P3_OK);
	CHECK_EQ_INT(bits[0], (1u << 2) | (1u << 6));	/* not token 7: 20 digits do not fit int64 */
	CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "{", 1, &err), P3_OK);
	CHECK_STATUS(p3_schema_matcher_mask(m, st, bits, &err), P3_OK);
	CHECK_EQ_INT(bits[0], (1u << 3) | (1u << 4));
	CHECK_STATUS(p3_schema_matcher_accept_bytes(m, "}", 1, &err), P3_OK);
	CHECK_STATUS(p3_schema_matcher_mask(m, st, bits, &err), P3_OK);
	CHECK_EQ_INT(bits[0], 1u << 1);		/* only the EOS */
	CHECK_STATUS(p3_schema_matcher_mask(m, trie, big, &err), P3_OK);
out:
	free(big);
	p3_schema_matcher_free(m);
	p3_schema_free(s);
	p3_vocab_trie_free(st);
	p3_tokenizer_free(small);
}

/* Through the decoder on a tiny random-weight model: every output is a valid document. */
static void
test_decoder_tiny_model(void)
{
	const char *dir = getenv("PHI3_TEST_MODELS");
	char		path[1024];
	P3Model    *model = NULL;
	P3Context  *ctx = NULL;
	P3Decoder  *d = NULL;
	P3ContextParams cp = p3_context_default_params();
	P3Error		err = {0};
	const char *schema_text = mask_schemas[1];
	P3Schema   *s;
	V		   *schema;
	P3VocabTrie *mtrie = NULL;
	int			runs = under_valgrind ? 1 : 6;

	snprintf(path, sizeof(path), "%s/tiny-f32.gguf", dir ? dir : "build/engine-models");
	if (access(path, R_OK) != 0)
	{
		fprintf(stderr, "  (no %s: skipped)\n", path);
		return;
	}
	CHECK_STATUS(p3_model_open(path, &model, &err), P3_OK);
	if (model == NULL)
		return;
	cp.n_ctx = 512;
	cp.n_seq = 2;
	cp.n_threads = 1;
	CHECK_STATUS(p3_context_new(model, &cp, &ctx, &err), P3_OK);
	CHECK_STATUS(p3_decoder_new(ctx, 0, &d, &err), P3_OK);
	CHECK_STATUS(p3_vocab_trie_new(model->tokenizer, &mtrie, &err), P3_OK);
	s = compile_ok(schema_text);
	schema = vparse_text(schema_text, strlen(schema_text), true);
	for (int r = 0; r < runs && d && s && mtrie; r++)
	{
		P3SchemaMatcher *m = NULL;
		P3Constraint c;
		P3SeqParams sp = p3_seq_default_params();
		int32_t		prompt[4] = {1, 100 + r, 200, 300};
		int32_t		seq;
		P3SeqInfo	info;

		CHECK_STATUS(p3_schema_matcher_new(s, mtrie, &m, &err), P3_OK);
		CHECK_STATUS(p3_schema_constraint(m, model->tokenizer, &c, &err), P3_OK);
		sp.constraint = &c;
		sp.max_tokens = 200;
		sp.strip_leading_space = false;
		sp.sampling.seed = (uint64_t) r + 1;
		sp.sampling.temperature = 1.0f;
		CHECK_STATUS(p3_decoder_add(d, prompt, 4, &sp, &seq, &err), P3_OK);
		while (p3_decoder_n_live(d) > 0)
			if (p3_decoder_step(d, &err) != P3_OK)
				break;
		CHECK(p3_decoder_seq_info(d, seq, &info));
		if (info.stats.stop == P3_STOP_CONSTRAINT || info.stats.stop == P3_STOP_EOG)
			CHECK_MSG(reference_valid(schema, info.text, info.text_len), "decoder produced %s", info.text);
		else
			CHECK_MSG(info.stats.stop == P3_STOP_MAX_TOKENS, "stop %s: %s", p3_stop_reason_name(info.stats.stop),
					  info.error ? info.error->message : "");
		if (r == 0)
			fprintf(stderr, "  decoder (%s, %d tokens): %s\n", p3_stop_reason_name(info.stats.stop),
					info.stats.n_generated, info.text);
		p3_decoder_remove(d, seq);
		p3_schema_matcher_free(m);
	}
	vfree(schema);
	p3_schema_free(s);
	p3_vocab_trie_free(mtrie);
	p3_decoder_free(d);
	p3_context_free(ctx);
	p3_model_free(model);
}

/*
 * The property test: random (document, schema) pairs decoded by a tiny
 * random-weights model (the worst case: it knows nothing) under the
 * schema, several rows at once in one decoder (each with its own
 * matcher), sampled at temperature 1 from a random "document" prompt;
 * every output, closed by the shortest completion when max_tokens ran out,
 * parses and is valid for its schema by the reference validator (not the
 * automaton).  PHI3_PROPERTY_CASES sets the number of pairs (default 240;
 * 8 under valgrind).
 */
static void
test_property_decode(void)
{
	const char *dir = getenv("PHI3_TEST_MODELS");
	const char *cases_env = getenv("PHI3_PROPERTY_CASES");
	int			n_cases = cases_env && *cases_env ? atoi(cases_env) : (under_valgrind ? 8 : 240);
	char		path[1024];
	P3Model    *model = NULL;
	P3Context  *ctx = NULL;
	P3Decoder  *d = NULL;
	P3ContextParams cp = p3_context_default_params();
	P3VocabTrie *mtrie = NULL;
	P3Error		err = {0};
	enum
	{
		N_SLOTS = 4
	};
	struct
	{
		int			sc;
		P3Schema   *s;
		P3SchemaMatcher *m;
		V		   *schema;
		char	   *text;
	}			slot[N_SLOTS];
	char	   *text = malloc(1 << 16);
	int			next = 0,
				done = 0,
				closed = 0,
				tokens = 0,
				forced = 0,
				passes = 0;
	uint64_t	rng = 4242;
	double		t0 = now_us();

	memset(slot, 0, sizeof(slot));
	snprintf(path, sizeof(path), "%s/tiny-f32.gguf", dir ? dir : "build/engine-models");
	if (access(path, R_OK) != 0)
	{
		fprintf(stderr, "  (no %s: skipped)\n", path);
		free(text);
		return;
	}
	CHECK_STATUS(p3_model_open(path, &model, &err), P3_OK);
	if (model == NULL)
		return;
	cp.n_ctx = 256;
	cp.n_seq = N_SLOTS;
	cp.n_threads = 1;
	CHECK_STATUS(p3_context_new(model, &cp, &ctx, &err), P3_OK);
	CHECK_STATUS(p3_decoder_new(ctx, 0, &d, &err), P3_OK);
	CHECK_STATUS(p3_vocab_trie_new(model->tokenizer, &mtrie, &err), P3_OK);
	while (d && mtrie && done < n_cases)
	{
		/* fill free slots with new pairs */
		while (next < n_cases && p3_decoder_n_free(d) > 0)
		{
			P3Constraint c;
			P3SeqParams sp = p3_seq_default_params();
			int32_t		prompt[24];
			int32_t		n_prompt = 4 + (int32_t) (harness_rand(&rng) % 20);
			int32_t		seq;
			P3Schema   *s = NULL;
			P3SchemaMatcher *m = NULL;

			random_schema_text(next, 99, text, 1 << 16);
			if (p3_schema_compile(text, strlen(text), NULL, &s, &err) != P3_OK)
			{
				CHECK_MSG(false, "property case %d does not compile: %s: %s", next, text, err.message);
				next++;
				done++;
				continue;
			}
			CHECK_STATUS(p3_schema_matcher_new(s, mtrie, &m, &err), P3_OK);
			CHECK_STATUS(p3_schema_constraint(m, model->tokenizer, &c, &err), P3_OK);
			for (int32_t i = 0; i < n_prompt; i++)
				prompt[i] = 3 + (int32_t) (harness_rand(&rng) % (uint64_t) (model->hp.n_vocab - 3));
			sp.constraint = &c;
			sp.max_tokens = 8 + (int32_t) (harness_rand(&rng) % 48);
			sp.strip_leading_space = false;
			sp.sampling.seed = (uint64_t) next + 1;
			sp.sampling.temperature = (next % 3 == 0) ? 0.0f : 1.0f;
			CHECK_STATUS(p3_decoder_add(d, prompt, n_prompt, &sp, &seq, &err), P3_OK);
			slot[seq].sc = next;
			slot[seq].s = s;
			slot[seq].m = m;
			slot[seq].text = strdup(text);	/* the parsed schema points into its text */
			slot[seq].schema = vparse_text(slot[seq].text, strlen(text), true);
			next++;
		}
		if (p3_decoder_n_live(d) == 0)
			continue;
		if (p3_decoder_step(d, &err) != P3_OK)
		{
			CHECK_MSG(false, "step: %s", err.message);
			break;
		}
		/* collect finished rows and check them */
		for (int32_t q = 0; q < N_SLOTS; q++)
		{
			P3SeqInfo	info;
			P3Text		out = {0};

			if (slot[q].m == NULL || !p3_decoder_seq_info(d, q, &info) || info.phase != P3_SEQ_DONE)
				continue;
			CHECK_MSG(info.stats.stop != P3_STOP_ERROR, "property case %d: %s", slot[q].sc,
					  info.error ? info.error->message : "");
			p3_text_append(&out, info.text, info.text_len, &err);
			if (!p3_schema_matcher_is_complete(slot[q].m))
			{
				CHECK_STATUS(p3_schema_matcher_completion(slot[q].m, &out, &err), P3_OK);
				closed++;
			}
			CHECK_MSG(slot[q].schema && reference_valid(slot[q].schema, out.data ? out.data : "", out.len),
					  "property case %d: %s\n  decoded %.*s", slot[q].sc, slot[q].text, (int) out.len,
					  out.data ? out.data : "");
			tokens += info.stats.n_generated;
			forced += info.stats.n_forced;
			passes += info.stats.n_passes;
			p3_text_free(&out);
			p3_decoder_remove(d, q);
			p3_schema_matcher_free(slot[q].m);
			p3_schema_free(slot[q].s);
			vfree(slot[q].schema);
			free(slot[q].text);
			memset(&slot[q], 0, sizeof(slot[q]));
			done++;
		}
	}
	fprintf(stderr, "  %d (document, schema) pairs decoded, %d closed by the completion, %d tokens (%d forced) in %d passes, %.1f s\n",
			done, closed, tokens, forced, passes, (now_us() - t0) / 1e6);
	free(text);
	p3_vocab_trie_free(mtrie);
	p3_decoder_free(d);
	p3_context_free(ctx);
	p3_model_free(model);
}


/*
 * Jump-forward tokens: the forced bytes split by longest match, without
 * the run's last token; the tokens are accepted in turn and their bytes
 * are a strict prefix of the forced bytes; what is left of the run is
 * left to the mask, which allows tokens that finish it and cross into what
 * follows (token healing).
 */
static void
test_forced_tokens(void)
{
	/* "positiv" is forced, then e" or ity": tokens such as "ive" finish the run and cross it */
	P3Schema   *s = compile_ok("{\"type\":\"object\",\"properties\":{\"mood\":{\"enum\":[\"positive\",\"positivity\"]}},"
							   "\"required\":[\"mood\"]}");
	P3SchemaMatcher *m = NULL;
	P3Error		err = {0};
	char		forced[256];
	size_t		nf;
	int32_t		ids[64];
	int32_t		n;
	size_t		off = 0;
	int32_t		nv = p3_tokenizer_n_vocab(tok);
	uint32_t   *mask = malloc(((size_t) nv + 31) / 32 * sizeof(uint32_t));
	int			crossing = 0;

	if (s == NULL)
		return;
	CHECK_STATUS(p3_schema_matcher_new(s, trie, &m, &err), P3_OK);
	nf = p3_schema_matcher_forced(m, forced, sizeof(forced));
	n = p3_schema_matcher_forced_tokens(m, ids, 64);
	CHECK_MSG(nf > 0 && n > 0, "forced %zu bytes, %d tokens", nf, (int) n);
	CHECK_EQ_INT(p3_schema_matcher_forced_tokens(m, ids, 1), n > 0 ? 1 : 0);	/* cap */
	for (int32_t i = 0; i < n; i++)
	{
		char		piece[64];
		size_t		len = p3_token_to_piece(tok, ids[i], false, piece, sizeof(piece));

		CHECK(len > 0 && off + len < nf && memcmp(piece, forced + off, len) == 0);
		CHECK_STATUS(p3_schema_matcher_accept_bytes(m, piece, len, &err), P3_OK);
		off += len;
	}
	CHECK_MSG(off < nf, "the run's last token is left: %zu of %zu bytes forced", off, nf);
	/* the rest of the run, then free choice: the mask has tokens that finish it and go on */
	CHECK_STATUS(p3_schema_matcher_mask(m, NULL, mask, &err), P3_OK);
	for (int32_t t = 0; t < nv; t++)
	{
		char		piece[64];
		size_t		len;

		if (!((mask[t / 32] >> (t % 32)) & 1))
			continue;
		len = p3_token_to_piece(tok, t, false, piece, sizeof(piece));
		CHECK(len > 0);
		if (len <= nf - off)
			CHECK(memcmp(piece, forced + off, len) == 0);
		else
		{
			CHECK(memcmp(piece, forced + off, nf - off) == 0);
			crossing++;
		}
	}
	fprintf(stderr, "  forced %.*s: %d tokens, %zu bytes left to the mask, %d tokens cross the boundary\n",
			(int) nf, forced, (int) n, nf - off, crossing);
	CHECK(crossing > 0);
	/* a free choice now: nothing forced */
	CHECK_STATUS(p3_schema_matcher_accept_bytes(m, forced + off, nf - off, &err), P3_OK);
	CHECK_EQ_INT(p3_schema_matcher_forced_tokens(m, ids, 64), 0);
	p3_schema_matcher_free(m);
	p3_schema_free(s);
	free(mask);
}


/*
 * phi3_extract's date pattern (src/pg/extract_schema.c, DATE_PATTERN)
 * accepts exactly the real days of the years 1000-9999: every month and
 * day 00-39 of years around the leap-year rules, checked against the
 * calendar arithmetic of the reference; and its bounded numeric pattern.
 */
static void
test_extract_patterns(void)
{
	const char *date_schema = mask_schemas[sizeof(mask_schemas) / sizeof(mask_schemas[0]) - 1];
	static const int years[] = {999, 1000, 1582, 1600, 1700, 1900, 1996, 2000, 2023, 2024, 2100, 2400, 9996, 9999};
	static const char *const amounts[] = {"0", "-0", "7", "12345678", "123456789", "01", "1.5", "1.55", "1.555",
	"-3.", ".5", "1e5", "-12.07", ""};
	P3Schema   *s;
	V		   *schema;
	int			checked = 0,
				valid = 0;
	char		doc[128];

	/* the due field alone: {"type":"string","pattern":...} from the shape */
	{
		const char *p = strstr(date_schema, "\"due\":{\"anyOf\":[");
		const char *e = p ? strstr(p, "},{\"type\":\"null\"}") : NULL;
		char		one[1024];

		CHECK(p != NULL && e != NULL);
		if (p == NULL || e == NULL)
			return;
		p += strlen("\"due\":{\"anyOf\":[");
		snprintf(one, sizeof(one), "%.*s}", (int) (e - p), p);
		s = compile_ok(one);
		schema = vparse_text(one, strlen(one), true);
		if (s == NULL || schema == NULL)
			return;
		for (size_t yi = 0; yi < sizeof(years) / sizeof(years[0]); yi++)
			for (int m = 0; m <= 13; m++)
				for (int d = 0; d <= 39; d++)
				{
					size_t		n = (size_t) snprintf(doc, sizeof(doc), "\"%04d-%02d-%02d\"", years[yi], m, d);
					bool		a = automaton_valid(s, doc, n);
					bool		r = reference_valid(schema, doc, n);

					CHECK_MSG(a == r, "date %s: automaton %d, reference %d", doc, a, r);
					checked++;
					valid += r;
				}
		p3_schema_free(s);
		vfree(schema);
	}
	/* the whole shape on the amounts */
	s = compile_ok(date_schema);
	schema = vparse_text(date_schema, strlen(date_schema), true);
	for (size_t k = 0; s && schema && k < sizeof(amounts) / sizeof(amounts[0]); k++)
	{
		size_t		n = (size_t) snprintf(doc, sizeof(doc), "{\"customer\":\"x\",\"amount\":\"%s\",\"due\":\"2024-02-29\",\"n\":1}",
										  amounts[k]);
		bool		a = automaton_valid(s, doc, n);

		CHECK_MSG(a == reference_valid(schema, doc, n), "amount %s: automaton %d", amounts[k], a);
		checked++;
	}
	p3_schema_free(s);
	vfree(schema);
	fprintf(stderr, "  %d documents checked, %d real dates\n", checked, valid);
}

/* One fuzz_schema seed: schema, NUL, document. */
static void
write_seed(const char *dir, const char *name, int i, const char *schema, const char *doc)
{
	char		path[1024];
	FILE	   *f;

	snprintf(path, sizeof(path), "%s/%s-%03d", dir, name, i);
	if ((f = fopen(path, "wb")) == NULL)
	{
		fprintf(stderr, "cannot write %s\n", path);
		exit(1);
	}
	fwrite(schema, 1, strlen(schema), f);
	fputc('\0', f);
	fwrite(doc, 1, strlen(doc), f);
	fclose(f);
}

/*
 * test_schema --write-seeds DIR: the schemas of these tests as seeds of
 * the fuzz_schema harness (test/fuzz/make_seeds.sh): every hand-written
 * case with each of its valid and invalid documents, the mask schemas,
 * and 60 random schemas.
 */
static int
write_seeds(const char *dir)
{
	int			n = 0;
	char	   *text = malloc(1 << 16);

	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
	{
		write_seed(dir, "case", n++, cases[c].schema, "");
		for (int v = 0; v < 12 && cases[c].valid[v]; v++)
			write_seed(dir, "case", n++, cases[c].schema, cases[c].valid[v]);
		for (int v = 0; v < 16 && cases[c].invalid[v]; v++)
			write_seed(dir, "case", n++, cases[c].schema, cases[c].invalid[v]);
	}
	for (size_t k = 0; k < sizeof(mask_schemas) / sizeof(mask_schemas[0]); k++)
		write_seed(dir, "mask", (int) k, mask_schemas[k], "");
	for (int k = 0; k < 60; k++)
	{
		random_schema_text(k, 777, text, 1 << 16);
		write_seed(dir, "random", k, text, "");
	}
	free(text);
	fprintf(stderr, "test_schema: %d seeds in %s\n", n + (int) (sizeof(mask_schemas) / sizeof(mask_schemas[0])) + 60, dir);
	return 0;
}

int
main(int argc, char **argv)
{
	const char *pre = getenv("LD_PRELOAD");
	const char *vocab = getenv("PHI3_VOCAB");
	P3GGUF	   *g = NULL;
	P3Error		err = {0};
	double		t0;

	under_valgrind = pre && strstr(pre, "vgpreload");
	if (argc == 3 && strcmp(argv[1], "--write-seeds") == 0)
		return write_seeds(argv[2]);
	if (vocab == NULL || !*vocab)
		vocab = "test/data/ggml-vocab-phi-3.gguf";
	if (p3_gguf_open(vocab, &g, &err) != P3_OK || p3_tokenizer_from_gguf(g, &tok, &err) != P3_OK)
	{
		fprintf(stderr, "cannot load the vocabulary %s: %s\n", vocab, err.message);
		return 1;
	}
	p3_gguf_close(g);
	t0 = now_us();
	if (p3_vocab_trie_new(tok, &trie, &err) != P3_OK)
	{
		fprintf(stderr, "trie: %s\n", err.message);
		return 1;
	}
	fprintf(stderr, "vocabulary trie built in %.1f ms\n", (now_us() - t0) / 1000.0);

	RUN(test_compile_errors);
	RUN(test_documents);
	RUN(test_mutations);
	RUN(test_patterns);
	RUN(test_limits);
	RUN(test_ref_chain);
	RUN(test_matcher_api);
	RUN(test_constraint);
	RUN(test_completion);
	RUN(test_masks_and_walks);
	RUN(test_realistic_masks);
	RUN(test_mask_cache_counts);
	RUN(test_random_schemas);
	RUN(test_small_vocab);
	RUN(test_decoder_tiny_model);
	RUN(test_property_decode);
	RUN(test_forced_tokens);
	RUN(test_extract_patterns);

	p3_vocab_trie_free(trie);
	p3_tokenizer_free(tok);
	return harness_finish();
}
