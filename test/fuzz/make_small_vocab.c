/*
 * make_small_vocab.c — write a small Phi-3 vocabulary GGUF for the fuzzing
 * seeds (test/fuzz/make_seeds.sh).
 *
 *     make_small_vocab REAL_VOCAB.gguf N_NORMAL OUT.gguf
 *
 * The real vocabulary has 32064 tokens, so every model made from it carries
 * a 32064-row embedding and a ~700 KB token array: far too much for a
 * fuzzer to mutate usefully.  This keeps a consistent subset of it:
 *   ids 0..258       <unk>, <s>, </s> and the 256 byte tokens <0x00>..<0xFF>
 *   the next N_NORMAL tokens (the most frequent merges: "▁t", "er", "in", ...)
 *   the control tokens 32000..32010 (<|endoftext|>, <|assistant|>, <|end|>,
 *   <|user|>, ...) and two UNKNOWN-type [PADnnnnn] fillers
 * with their scores and types, and every other tokenizer.* key with token
 * ids remapped to the new numbering.  SentencePiece merges only ever form
 * tokens of the vocabulary, so any subset is a working vocabulary.
 *
 * A tool, not engine code: it may exit on errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phi3/gguf.h"

#define N_BASE		259			/* <unk>, <s>, </s>, 256 byte tokens */
#define FIRST_HIGH	32000		/* <|endoftext|> */
#define LAST_HIGH	32012		/* <|user|> is 32010, then two fillers */

/* Print the engine's message and exit. */
static void
check(P3Status st, const P3Error *err, const char *what)
{
	if (st != P3_OK)
	{
		fprintf(stderr, "make_small_vocab: %s: %s\n", what, err->message);
		exit(1);
	}
}

/* The new id of old id `id`, or -1 if it is not kept. */
static int64_t
remap(int64_t id, int64_t n_normal)
{
	if (id >= 0 && id < N_BASE + n_normal)
		return id;
	if (id >= FIRST_HIGH && id <= LAST_HIGH)
		return N_BASE + n_normal + (id - FIRST_HIGH);
	return -1;
}

int
main(int argc, char **argv)
{
	P3GGUF	   *src;
	P3GGUFWriter *w;
	P3Error		err;
	const P3GGUFValue *tokens;
	const P3GGUFValue *scores;
	const P3GGUFValue *types;
	int64_t		n_normal;
	int64_t		n_keep;
	const char **texts;
	uint64_t   *lens;
	float	   *new_scores;
	int32_t    *new_types;
	int64_t		k = 0;

	if (argc != 4 || (n_normal = atoll(argv[2])) < 0 || n_normal > FIRST_HIGH - N_BASE)
	{
		fprintf(stderr, "usage: make_small_vocab REAL_VOCAB.gguf N_NORMAL OUT.gguf\n");
		return 2;
	}
	check(p3_gguf_open(argv[1], &src, &err), &err, argv[1]);
	check(p3_gguf_get_array(src, "tokenizer.ggml.tokens", P3_GGUF_STRING, &tokens, &err), &err, "tokens");
	check(p3_gguf_get_array(src, "tokenizer.ggml.scores", P3_GGUF_FLOAT32, &scores, &err), &err, "scores");
	check(p3_gguf_get_array(src, "tokenizer.ggml.token_type", P3_GGUF_INT32, &types, &err), &err, "types");
	if (tokens->v.arr.count <= LAST_HIGH)
	{
		fprintf(stderr, "make_small_vocab: %s has only %llu tokens\n", argv[1],
				(unsigned long long) tokens->v.arr.count);
		return 1;
	}

	n_keep = N_BASE + n_normal + (LAST_HIGH - FIRST_HIGH + 1);
	texts = malloc((size_t) n_keep * sizeof(*texts));
	lens = malloc((size_t) n_keep * sizeof(*lens));
	new_scores = malloc((size_t) n_keep * sizeof(*new_scores));
	new_types = malloc((size_t) n_keep * sizeof(*new_types));
	if (!texts || !lens || !new_scores || !new_types)
	{
		fprintf(stderr, "make_small_vocab: out of memory\n");
		return 1;
	}
	{
		const uint8_t *cur = tokens->v.arr.data;

		for (uint64_t id = 0; id < tokens->v.arr.count; id++)
		{
			P3GGUFString s = p3_gguf_next_string(&cur);

			if (remap((int64_t) id, n_normal) < 0)
				continue;
			texts[k] = s.ptr;
			lens[k] = s.len;
			new_scores[k] = (float) p3_gguf_array_f64(scores, id);
			new_types[k] = (int32_t) p3_gguf_array_i64(types, id);
			k++;
		}
	}

	check(p3_gguf_writer_new(&w, &err), &err, "writer");
	for (uint64_t i = 0; i < src->n_kv; i++)
	{
		const P3GGUFKV *kv = &src->kv[i];
		char		key[256];

		if (kv->key.len >= sizeof(key))
			continue;
		memcpy(key, kv->key.ptr, kv->key.len);
		key[kv->key.len] = '\0';
		if (strncmp(key, "tokenizer.", 10) != 0)
			continue;
		if (strcmp(key, "tokenizer.ggml.tokens") == 0)
			check(p3_gguf_writer_add_string_array(w, key, texts, lens, (uint64_t) n_keep, &err), &err, key);
		else if (strcmp(key, "tokenizer.ggml.scores") == 0)
			check(p3_gguf_writer_add_array(w, key, P3_GGUF_FLOAT32, new_scores, (uint64_t) n_keep, &err), &err, key);
		else if (strcmp(key, "tokenizer.ggml.token_type") == 0)
			check(p3_gguf_writer_add_array(w, key, P3_GGUF_INT32, new_types, (uint64_t) n_keep, &err), &err, key);
		else if (strlen(key) > 9 && strcmp(key + strlen(key) - 9, "_token_id") == 0)
		{
			int64_t		old;
			int64_t		id;

			check(p3_gguf_get_i64(src, key, &old, &err), &err, key);
			if ((id = remap(old, n_normal)) < 0)
				continue;
			check(p3_gguf_writer_add_u32(w, key, (uint32_t) id, &err), &err, key);
		}
		else
			check(p3_gguf_writer_add_value(w, key, &kv->value, &err), &err, key);
	}
	check(p3_gguf_writer_write_file(w, argv[3], &err), &err, argv[3]);
	p3_gguf_writer_free(w);
	p3_gguf_close(src);
	free(texts);
	free(lens);
	free(new_scores);
	free(new_types);
	return 0;
}
