/*
 * fuzz_schema.c — libFuzzer harness for the schema compiler and the
 * automaton (phi3/schema.h), over the real Phi-3 vocabulary for masks.
 *
 * `make fuzz` builds it into build/fuzz/ (CI runs it a few seconds: make
 * fuzz-smoke); run it from the repository root (it loads
 * test/data/ggml-vocab-phi-3.gguf once, or $PHI3_FUZZ_VOCAB):
 *
 *     build/fuzz/fuzz_schema -max_len=8192 -timeout=20 build/fuzz/corpus/fuzz_schema
 *
 * Seeds (make_seeds.sh): every schema of test/engine/test_schema.c with its
 * valid and invalid documents (test_schema --write-seeds), 60 random
 * schemas, and the shape phi3_extract gives a composite type.
 *
 * Input: a schema text, a NUL byte, then document bytes.  For every input:
 *   1. compile with small limits (max_states 4096, max_depth 12,
 *      max_threads 32): P3_OK, or an error with a message; never a crash,
 *      whatever the schema (deep nesting, huge enums, hostile patterns,
 *      invalid UTF-8).
 *   2. if it compiled: feed the document byte by byte; a byte is accepted
 *      exactly when p3_schema_matcher_allows said so, and a refused byte
 *      changes nothing (it is skipped); along the way the forced bytes are
 *      accepted, and the shortest completion takes the matcher to a
 *      complete document.
 *   3. on the first 8 states: the token mask has the allowed token of each
 *      piece checked (every 97th token against allows), and is never empty
 *      before the document is complete.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "phi3/gguf.h"
#include "phi3/schema.h"
#include "phi3/tokenizer.h"

#include "fuzz_util.h"

int			LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int			LLVMFuzzerInitialize(int *argc, char ***argv);

static P3Tokenizer *vocab_tok;
static P3VocabTrie *vocab_trie;
static uint32_t *mask;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *path = getenv("PHI3_FUZZ_VOCAB");
	P3GGUF	   *g = NULL;
	P3Error		err = {0};

	(void) argc;
	(void) argv;
	if (path == NULL || !*path)
		path = "test/data/ggml-vocab-phi-3.gguf";
	if (p3_gguf_open(path, &g, &err) != P3_OK || p3_tokenizer_from_gguf(g, &vocab_tok, &err) != P3_OK ||
		p3_vocab_trie_new(vocab_tok, &vocab_trie, &err) != P3_OK)
	{
		fprintf(stderr, "fuzz_schema: cannot load %s: %s\n", path, err.message);
		exit(1);
	}
	p3_gguf_close(g);
	mask = malloc(((size_t) p3_tokenizer_n_vocab(vocab_tok) + 31) / 32 * sizeof(uint32_t));
	return 0;
}

/* The shortest completion completes the document. */
static void
check_completion(const P3SchemaMatcher *m)
{
	P3SchemaMatcher *c = NULL;
	P3Text		t = {0};
	P3Error		err = {0};
	P3Status	st = p3_schema_matcher_completion(m, &t, &err);

	if (st == P3_ERR_INTERNAL && strstr(err.message, "no completion"))
		return;					/* a minimum over 1 MB: allowed to give up */
	REQUIRE_STATUS(st, P3_OK, err);
	REQUIRE(p3_schema_matcher_clone(m, &c, &err) == P3_OK);
	REQUIRE(t.len == 0 || p3_schema_matcher_accept_bytes(c, t.data, t.len, &err) == P3_OK);
	REQUIRE(p3_schema_matcher_is_complete(c));
	p3_schema_matcher_free(c);
	p3_text_free(&t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, 0, size);
	size_t		slen = nul ? (size_t) (nul - data) : size;
	const uint8_t *doc = nul ? nul + 1 : data + size;
	size_t		dlen = (size_t) (data + size - doc);
	P3SchemaLimits lim = p3_schema_default_limits();
	P3Schema   *s = NULL;
	P3SchemaMatcher *m = NULL;
	P3Error		err = {0};
	P3Status	st;
	int32_t		nv = p3_tokenizer_n_vocab(vocab_tok);

	lim.max_states = 4096;
	lim.max_depth = 12;
	lim.max_threads = 32;
	st = p3_schema_compile((const char *) data, slen, &lim, &s, &err);
	if (st != P3_OK)
	{
		REQUIRE_ERROR(st, err);
		REQUIRE(s == NULL);
		return 0;
	}
	REQUIRE(p3_schema_matcher_new(s, vocab_trie, &m, &err) == P3_OK);
	for (size_t i = 0; i <= dlen; i++)
	{
		char		forced[64];
		size_t		nf;

		if (i < 8)
		{
			bool		any = false;

			REQUIRE(p3_schema_matcher_mask(m, NULL, mask, &err) == P3_OK);
			for (int32_t t = 0; t < nv; t++)
			{
				char		piece[64];
				size_t		n;
				bool		bit = (mask[t / 32] >> (t % 32)) & 1;

				any |= bit;
				if (t % 97 != 0)
					continue;
				n = p3_token_to_piece(vocab_tok, t, false, piece, sizeof(piece));
				if (n == 0)
					REQUIRE(bit == (p3_tokenizer_is_eog(vocab_tok, t) && p3_schema_matcher_is_complete(m)));
				else if (n <= sizeof(piece))
					REQUIRE(bit == p3_schema_matcher_allows(m, piece, n));
			}
			REQUIRE(any);
		}
		if (i % 16 == 0)
			check_completion(m);
		nf = p3_schema_matcher_forced(m, forced, sizeof(forced));
		REQUIRE(nf == 0 || p3_schema_matcher_allows(m, forced, nf));
		if (i == dlen)
			break;
		if (p3_schema_matcher_allows(m, &doc[i], 1))
			REQUIRE(p3_schema_matcher_accept_bytes(m, &doc[i], 1, &err) == P3_OK);
		else
		{
			st = p3_schema_matcher_accept_bytes(m, &doc[i], 1, &err);
			REQUIRE_ERROR(st, err);
		}
	}
	p3_schema_matcher_free(m);
	p3_schema_free(s);
	return 0;
}
