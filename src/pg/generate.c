/*-------------------------------------------------------------------------
 *
 * generate.c
 *	  phi3_generate, phi3_complete, phi3_summarize, phi3_describe, and the
 *	  generation helper every generating function shares.
 *
 * A call resolves its options (NULL argument = the setting), converts its
 * text to UTF-8, builds the prompt (chat template or raw), makes sure the
 * prompt plus the answer fits the context (phi3.input_overflow), and adds
 * it to the backend's step-wise decoder (phi3/decoder.h) with prefix
 * reuse, so that consecutive rows sharing a system prompt and instruction
 * reuse its KV cache.  The glue drives the decoder's steps itself
 * (RunDecoder), with CHECK_FOR_INTERRUPTS() after every step.
 *
 * Determinism: every call builds a fresh sampler seeded from the seed
 * argument, else phi3.seed, else (phi3.seed = -1) a random seed.  With a
 * fixed seed, or with temperature 0 (greedy, the default), the same input
 * gives the same text in any backend, in any row order.
 *
 * Cancel: CHECK_FOR_INTERRUPTS() runs between decoder steps (one token,
 * or one prompt chunk); inside a step the engine polls the context's abort
 * callback (model_cache.c) between layers and returns P3_ERR_ABORTED,
 * turned into CHECK_FOR_INTERRUPTS() by errors.c.  CHECK_FOR_INTERRUPTS()
 * is never called from inside an engine callback: it would longjmp through
 * the engine's frames, leaving its state half-updated and its memory
 * leaked.  Between steps the engine holds nothing half-done.
 *
 * Memory: the engine's token lists and texts come from memory.c, so they
 * are freed with the call's memory context whatever path is taken; they
 * are also freed as soon as they are not needed.
 *
 * Empty inputs: phi3_generate and phi3_complete run the model on an empty
 * prompt (the chat template alone, or BOS).  phi3_summarize and
 * phi3_describe return an empty string for a document that is empty or
 * only whitespace (for describe: an item with no non-null field), without
 * running the model: there is nothing to summarize or describe.
 *
 * IDENTIFICATION
 *	  src/pg/generate.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include <math.h>

#include "common/pg_prng.h"
#include "miscadmin.h"
#include "parser/scansup.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

PG_FUNCTION_INFO_V1(phi3_generate);
PG_FUNCTION_INFO_V1(phi3_complete);
PG_FUNCTION_INFO_V1(phi3_summarize);
PG_FUNCTION_INFO_V1(phi3_describe);

static size_t PromptCountLimit(int32 n_ctx);
static bool BuildPrompt(const P3Tokenizer *tok, const Phi3GenRequest *req,
						const char *content, size_t content_len, size_t limit, P3Tokens *out);
static void TruncateContent(const P3Tokenizer *tok, const Phi3GenRequest *req, int32 n_ctx,
							size_t limit, bool counted, P3Tokens *prompt);
static size_t Utf8Prefix(const char *s, size_t n);
static void RunDecoder(const P3Tokens *prompt, const P3SeqParams *sp, P3SeqInfo *info);

/*
 * phi3_generate(prompt text, system text, max_tokens int, temperature
 * float8, seed bigint, json_schema jsonb) returns text: a chat-templated
 * completion; with json_schema, a compact JSON document valid for it.
 */
Datum
phi3_generate(PG_FUNCTION_ARGS)
{
	Phi3GenRequest req;
	char	   *result;
	size_t		len;

	Phi3StatsSetFunction(PHI3_STAT_GENERATE);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();

	Phi3ChatRequestInit(&req, PG_GETARG_TEXT_PP(0), PG_ARGISNULL(1) ? NULL : PG_GETARG_TEXT_PP(1));
	req.max_tokens = Phi3ResolveMaxTokens(PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2));
	req.sampling = Phi3ResolveSampling(PG_ARGISNULL(3), PG_ARGISNULL(3) ? 0 : PG_GETARG_FLOAT8(3),
									   PG_ARGISNULL(4), PG_ARGISNULL(4) ? 0 : PG_GETARG_INT64(4));

	if (PG_NARGS() > 5 && !PG_ARGISNULL(5))
	{
		Jsonb	   *schema = PG_GETARG_JSONB_P(5);
		char	   *text = JsonbToCString(NULL, &schema->root, VARSIZE(schema));
		size_t		utf8_len;
		char	   *utf8 = Phi3CStringToUtf8(text, strlen(text), &utf8_len);

		result = Phi3GenerateUnderSchema(&req, utf8, utf8_len, &len);
	}
	else
		result = Phi3Generate(&req, &len);
	PG_RETURN_TEXT_P(Phi3Utf8ToText(result, len));
}

/*
 * phi3_complete(prompt text, max_tokens int, temperature float8, seed
 * bigint) returns text: a raw continuation, no chat template.
 */
Datum
phi3_complete(PG_FUNCTION_ARGS)
{
	Phi3GenRequest req;
	char	   *result;
	size_t		len;

	Phi3StatsSetFunction(PHI3_STAT_COMPLETE);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();

	memset(&req, 0, sizeof(req));
	req.chat = false;
	req.max_tokens = Phi3ResolveMaxTokens(PG_ARGISNULL(1), PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1));
	req.sampling = Phi3ResolveSampling(PG_ARGISNULL(2), PG_ARGISNULL(2) ? 0 : PG_GETARG_FLOAT8(2),
									   PG_ARGISNULL(3), PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3));
	req.content = Phi3TextToUtf8(PG_GETARG_TEXT_PP(0), &req.content_len);

	result = Phi3Generate(&req, &len);
	PG_RETURN_TEXT_P(Phi3Utf8ToText(result, len));
}

/*
 * phi3_summarize(doc text, max_words int, focus text) returns text.
 */
Datum
phi3_summarize(PG_FUNCTION_ARGS)
{
	Phi3GenRequest req;
	Phi3SummarizeOptions opts;
	char	   *result;
	size_t		len;

	Phi3StatsSetFunction(PHI3_STAT_SUMMARIZE);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();

	opts = Phi3SummarizeOptionsFrom(PG_ARGISNULL(1), PG_ARGISNULL(1) ? 0 : PG_GETARG_INT32(1),
									PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2));
	if (!Phi3SummarizeRequestInit(&req, PG_GETARG_TEXT_PP(0), &opts))
		PG_RETURN_TEXT_P(cstring_to_text(""));

	result = Phi3Generate(&req, &len);
	PG_RETURN_TEXT_P(Phi3TrimmedResult(result, len));
}

/*
 * phi3_describe(item jsonb, style text) returns text: a product
 * description (or, with a style such as 'social media post', a post) from
 * the facts in item, typically to_jsonb(row).  Fields that are null are
 * left out of the prompt.
 */
Datum
phi3_describe(PG_FUNCTION_ARGS)
{
	Phi3GenRequest req;
	char	   *style = NULL;
	char	   *result;
	size_t		len;

	Phi3StatsSetFunction(PHI3_STAT_DESCRIBE);
	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();

	if (!PG_ARGISNULL(1))
		style = Phi3DescribeStyle(PG_GETARG_TEXT_PP(1));
	if (!Phi3DescribeRequestInit(&req, PG_GETARG_DATUM(0), style))
		PG_RETURN_TEXT_P(cstring_to_text(""));

	result = Phi3Generate(&req, &len);
	PG_RETURN_TEXT_P(Phi3TrimmedResult(result, len));
}

/* ---- request builders, shared with the batch forms (batch.c) ---- */

/* A chat request: prompt as the user turn, an optional system turn. */
void
Phi3ChatRequestInit(Phi3GenRequest *req, text *prompt, text *system)
{
	memset(req, 0, sizeof(*req));
	req->chat = true;
	req->content = Phi3TextToUtf8(prompt, &req->content_len);
	if (system != NULL)
		req->system = Phi3TextToUtf8(system, &req->system_len);
}

/* phi3_summarize's options: max_words checked, focus trimmed (NULL: none). */
Phi3SummarizeOptions
Phi3SummarizeOptionsFrom(bool max_words_isnull, int32 max_words, text *focus)
{
	Phi3SummarizeOptions opts;

	opts.max_words = PHI3_DEFAULT_SUMMARY_WORDS;
	opts.focus = NULL;
	if (!max_words_isnull)
	{
		if (max_words < 1 || max_words > PHI3_MAX_SUMMARY_WORDS)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("max_words must be between 1 and %d", PHI3_MAX_SUMMARY_WORDS)));
		opts.max_words = max_words;
	}
	if (focus != NULL)
	{
		size_t		focus_len;
		char	   *f = Phi3TextToUtf8(focus, &focus_len);

		opts.focus = Phi3TrimUtf8(f, &focus_len);
	}
	return opts;
}

/*
 * The summary request for doc; false (nothing to summarize: the answer is
 * an empty string) when doc is empty or only whitespace.
 */
bool
Phi3SummarizeRequestInit(Phi3GenRequest *req, text *doc, const Phi3SummarizeOptions *opts)
{
	int64		max_tokens;

	memset(req, 0, sizeof(*req));
	req->content = Phi3TextToUtf8(doc, &req->content_len);
	if (Phi3IsBlank(req->content, req->content_len))
		return false;

	/* about 1.3 tokens per English word, with room to spare */
	max_tokens = (int64) ceil(opts->max_words * 1.6) + 8;
	req->chat = true;
	req->max_tokens = (int32) Min(max_tokens, (int64) phi3_max_tokens_limit);
	req->sampling = Phi3ResolveSampling(true, 0, true, 0);
	req->system = Phi3SummarizeSystem();
	req->system_len = strlen(req->system);
	req->instruction = Phi3SummarizeInstruction(opts->max_words, opts->focus);
	req->instruction_len = strlen(req->instruction);
	return true;
}

/* phi3_describe's style argument, trimmed UTF-8. */
char *
Phi3DescribeStyle(text *style)
{
	size_t		style_len;
	char	   *s = Phi3TextToUtf8(style, &style_len);

	return Phi3TrimUtf8(s, &style_len);
}

/*
 * The description request for the jsonb item (nulls stripped, shown
 * indented); false (the answer is an empty string) when it has no fact.
 */
bool
Phi3DescribeRequestInit(Phi3GenRequest *req, Datum item_datum, const char *style)
{
	Jsonb	   *item = DatumGetJsonbP(DirectFunctionCall1(jsonb_strip_nulls, item_datum));
	char	   *pretty;

	memset(req, 0, sizeof(*req));
	if (JB_ROOT_IS_SCALAR(item))
	{
		JsonbValue	scalar;

		if (!JsonbExtractScalar(&item->root, &scalar) || scalar.type == jbvNull)
			return false;
	}
	else if (JB_ROOT_COUNT(item) == 0)
		return false;

	pretty = JsonbToCStringIndent(NULL, &item->root, VARSIZE(item));
	req->content = Phi3CStringToUtf8(pretty, strlen(pretty), &req->content_len);
	req->chat = true;
	req->max_tokens = Phi3ResolveMaxTokens(true, 0);
	req->sampling = Phi3ResolveSampling(true, 0, true, 0);
	req->system = Phi3DescribeSystem();
	req->system_len = strlen(req->system);
	req->instruction = Phi3DescribeInstruction(style);
	req->instruction_len = strlen(req->instruction);
	return true;
}

/*
 * The number of tokens to generate: the argument, checked against
 * phi3.max_tokens_limit, or phi3.max_tokens (used up to the limit).
 */
int32
Phi3ResolveMaxTokens(bool isnull, int32 value)
{
	if (isnull)
		return Min(phi3_max_tokens, phi3_max_tokens_limit);
	if (value < 0 || value > phi3_max_tokens_limit)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_tokens must be between 0 and %d", phi3_max_tokens_limit),
				 errhint("The upper bound is phi3.max_tokens_limit, which only a superuser can raise.")));
	return value;
}

/*
 * Sampling parameters of one call: the temperature and seed arguments when
 * given, else the settings; the other knobs from the settings.
 */
P3SamplerParams
Phi3ResolveSampling(bool temperature_isnull, float8 temperature, bool seed_isnull, int64 seed)
{
	P3SamplerParams sp = p3_sampler_default_params();

	if (temperature_isnull)
		temperature = phi3_temperature;
	else if (isnan(temperature) || temperature < PHI3_MIN_TEMPERATURE ||
			 temperature > PHI3_MAX_TEMPERATURE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("temperature must be between %g and %g",
						PHI3_MIN_TEMPERATURE, PHI3_MAX_TEMPERATURE)));

	if (!seed_isnull && seed < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seed must not be negative"),
				 errhint("Pass NULL to use phi3.seed.")));

	sp.temperature = (float) temperature;
	sp.top_k = phi3_top_k;
	sp.top_p = (float) phi3_top_p;
	sp.min_p = (float) phi3_min_p;
	sp.repeat_penalty = (float) phi3_repeat_penalty;
	if (!seed_isnull)
		sp.seed = (uint64) seed;
	else if (phi3_seed >= 0)
		sp.seed = (uint64) phi3_seed;
	else
		sp.seed = pg_prng_uint64(&pg_global_prng_state);
	return sp;
}

/*
 * Run one generation (see Phi3GenRequest in pg_phi3.h) and return the
 * generated UTF-8 text, palloc'd and NUL-terminated.
 */
char *
Phi3Generate(const Phi3GenRequest *req, size_t *out_len)
{
	return Phi3GenerateConstrained(req, NULL, out_len, NULL);
}

/*
 * As Phi3Generate, with an optional constraint on the tokens (the
 * constraint's state must outlive the call); *stop, if not NULL, gets why
 * the generation stopped.
 */
char *
Phi3GenerateConstrained(const Phi3GenRequest *req, const P3Constraint *constraint,
						size_t *out_len, P3StopReason *stop)
{
	P3Tokens   *prompt;
	P3SeqParams sp;
	P3SeqInfo	info;
	char	   *result;

	/* A cancel that arrived between rows stops here, before any work */
	CHECK_FOR_INTERRUPTS();

	*out_len = 0;
	if (stop)
		*stop = P3_STOP_MAX_TOKENS;
	prompt = Phi3BuildRequestPrompt(req);
	if (req->max_tokens == 0)
	{
		Phi3TokensFree(prompt);
		return pstrdup("");
	}

	sp = Phi3RequestSeqParams(req);
	sp.constraint = constraint;
	RunDecoder(prompt, &sp, &info);
	if (stop)
		*stop = info.stats.stop;
	Phi3TokensFree(prompt);

	elog(DEBUG1, "phi3: prompt %d tokens (%d reused) in %.1f ms, %d tokens generated in %.1f ms",
		 info.stats.n_prompt, info.stats.n_prompt_reused, info.stats.prompt_ms,
		 info.stats.n_generated, info.stats.generate_ms);

	result = palloc(info.text_len + 1);
	if (info.text_len > 0)
		memcpy(result, info.text, info.text_len);
	result[info.text_len] = '\0';
	*out_len = info.text_len;
	return result;
}

/*
 * The prompt tokens of req for the backend's context: its template and
 * content tokenized, made to fit with room for max_tokens
 * (phi3.input_overflow: an error, or the content truncated with a NOTICE).
 */
P3Tokens *
Phi3BuildRequestPrompt(const Phi3GenRequest *req)
{
	P3Context  *ctx = ModelCacheGetContext();
	const P3Tokenizer *tok = p3_context_model(ctx)->tokenizer;
	int32		n_ctx = p3_context_params(ctx)->n_ctx;
	size_t		limit = PromptCountLimit(n_ctx);
	P3Tokens   *prompt = Phi3TokensNew();
	bool		counted;

	counted = BuildPrompt(tok, req, req->content, req->content_len, limit, prompt);
	if (!counted || (int64) prompt->n + req->max_tokens > n_ctx)
	{
		if (phi3_input_overflow != PHI3_OVERFLOW_TRUNCATE)
		{
			int32		n_prompt = (int32) (counted ? Min(prompt->n, limit) : limit);

			Phi3TokensFree(prompt);
			Phi3ReportInputTooLong(n_prompt, !counted, req->max_tokens, n_ctx, false);
		}
		TruncateContent(tok, req, n_ctx, limit, counted, prompt);
	}
	return prompt;
}

/* The decoder's parameters for req: greedy or seeded sampling, prefix reuse. */
P3SeqParams
Phi3RequestSeqParams(const Phi3GenRequest *req)
{
	P3SeqParams sp = p3_seq_default_params();

	sp.max_tokens = req->max_tokens;
	sp.sampling = req->sampling;
	sp.stop_at_eog = true;
	sp.reuse_prefix = true;
	/* SentencePiece's dummy space starts a chat answer; a raw continuation keeps it */
	sp.strip_leading_space = req->chat;
	return sp;
}

/*
 * A generation loop over the backend's decoder starts (RunDecoder,
 * Phi3RunBatch): the decoder is busy, and the loop is counted in the
 * statistics.  It ends with Phi3DecoderLoopEnd, or with
 * Phi3DecoderLoopAbort from the loop's PG_CATCH.
 */
void
Phi3DecoderLoopBegin(int64 rows_total)
{
	ModelCacheDecoderBusy(true);
	Phi3StatsLoopBegin(rows_total);
}

/* The loop ended normally; failed: a row stopped with an engine error. */
void
Phi3DecoderLoopEnd(bool failed)
{
	ModelCacheDecoderBusy(false);
	Phi3StatsLoopEnd(failed, false);
}

/* The loop is left by an error being raised (call from PG_CATCH). */
void
Phi3DecoderLoopAbort(void)
{
	ModelCacheDecoderBusy(false);
	Phi3StatsLoopEnd(true, geterrcode() == ERRCODE_QUERY_CANCELED);
}

/*
 * Generate for one prompt on the backend's decoder, driving its steps
 * here so that PostgreSQL's interrupt handling runs between them: a
 * cancel, statement_timeout, terminate, a lost client connection
 * (client_connection_check_interval) or a barrier is served after every
 * token, as anywhere else in the server, and not only through the
 * engine's abort poll.  The poll stays, for long prompt chunks: it makes
 * a step return P3_ERR_ABORTED, which errors.c turns into the pending
 * interrupt.  On return *info describes the finished sequence; its text
 * stays valid until the decoder is used again.  Any error leaves the
 * sequence in the decoder, which the next call resets.
 */
static void
RunDecoder(const P3Tokens *prompt, const P3SeqParams *sp, P3SeqInfo *info)
{
	P3Decoder  *dec = ModelCacheGetDecoder();
	int32		seq;
	P3Error		err;

	p3_error_clear(&err);
	if (p3_decoder_add(dec, prompt->ids, (int32) prompt->n, sp, &seq, &err) != P3_OK)
		Phi3ReportEngineError(&err, ModelCachePath());
	Phi3DecoderLoopBegin(1);
	PG_TRY();
	{
		for (;;)
		{
			P3Status	st = p3_decoder_step(dec, &err);

			ModelCacheCheckMappingFault();
			if (st != P3_OK)
				Phi3ReportEngineError(&err, ModelCachePath());
			p3_decoder_seq_info(dec, seq, info);
			if (info->phase == P3_SEQ_DONE)
				break;
			Phi3StatsStep(info->stats.n_generated, info->phase == P3_SEQ_DECODE);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_CATCH();
	{
		Phi3DecoderLoopAbort();
		PG_RE_THROW();
	}
	PG_END_TRY();
	Phi3StatsRowDone(&info->stats);
	Phi3DecoderLoopEnd(info->stats.stop == P3_STOP_ERROR);
	if (info->stats.stop == P3_STOP_ERROR)
		Phi3ReportEngineError(info->error, ModelCachePath());
}

/*
 * The most prompt tokens worth counting for a context of n_ctx: a prompt
 * past the context fails or is truncated anyway, and beyond this it is
 * only known to have "more than" this many tokens.  Below it, error
 * messages give the exact count; above it, a huge document (up to 1 GB of
 * text) costs the tokenizer time and memory for this many tokens only,
 * not about 30 bytes of scratch per byte of text, which could get the
 * backend killed by the kernel's out-of-memory killer.
 */
static size_t
PromptCountLimit(int32 n_ctx)
{
	return (size_t) n_ctx * 2 + 1024;
}

/*
 * Tokenize the prompt of req with the given content into *out (cleared
 * first).  False, with *out empty, if it has more than limit tokens.
 */
static bool
BuildPrompt(const P3Tokenizer *tok, const Phi3GenRequest *req,
			const char *content, size_t content_len, size_t limit, P3Tokens *out)
{
	size_t		user_len = req->instruction_len + content_len;
	char	   *user = palloc(user_len + 1);
	P3Error		err;
	P3Status	st;

	if (req->instruction_len > 0)
		memcpy(user, req->instruction, req->instruction_len);
	if (content_len > 0)
		memcpy(user + req->instruction_len, content, content_len);
	user[user_len] = '\0';

	Phi3TokensFree(out);
	p3_error_clear(&err);
	if (req->chat)
	{
		P3ChatMessage messages[2];
		int			n = 0;

		if (req->system != NULL && req->system_len > 0)
		{
			messages[n].role = P3_ROLE_SYSTEM;
			messages[n].content = req->system;
			messages[n].len = req->system_len;
			n++;
		}
		messages[n].role = P3_ROLE_USER;
		messages[n].content = user;
		messages[n].len = user_len;
		n++;
		st = p3_chat_tokenize_bounded(tok, messages, n, true, limit, out, &err);
	}
	else
	{
		unsigned	flags = p3_tokenizer_add_bos(tok) ? P3_TOKENIZE_ADD_BOS : 0;

		st = p3_tokenize_bounded(tok, user, user_len, flags, limit, out, &err);
		/* An empty raw prompt starts from BOS: an unconditional continuation */
		if (st == P3_OK && out->n == 0)
		{
			int32		bos = p3_tokenizer_bos(tok);

			if (bos < 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("prompt must not be empty"),
						 errdetail("The model's vocabulary has no BOS token to start from.")));
			st = p3_tokens_push(out, bos, &err);
		}
	}
	pfree(user);
	if (st == P3_ERR_CONTEXT_FULL)
		return false;
	if (st != P3_OK)
		Phi3ReportEngineError(&err, ModelCachePath());
	return true;
}

/*
 * Shorten req's content until the prompt plus max_tokens fits n_ctx
 * (phi3.input_overflow = truncate): drop tokens from the end of the
 * content, never from the instruction or the template, and rebuild the
 * prompt in *prompt.  counted says whether *prompt holds the whole prompt
 * (false: it had more than limit tokens).  Emits a NOTICE with the counts.
 */
static void
TruncateContent(const P3Tokenizer *tok, const Phi3GenRequest *req, int32 n_ctx,
				size_t limit, bool counted, P3Tokens *prompt)
{
	P3Tokens   *content_tokens = Phi3TokensNew();
	P3Text	   *kept_text = Phi3TextNew();
	char	   *kept = NULL;
	size_t		cut = req->content_len;
	bool		cut_short = false;
	int64		n_content;
	int64		keep;
	P3Error		err;
	P3Status	st;

	/*
	 * The content's own tokens.  A content with more than limit tokens is
	 * first cut to a prefix that has at most that many (halving it): only
	 * its start can be kept anyway.
	 */
	p3_error_clear(&err);
	for (;;)
	{
		st = p3_tokenize_bounded(tok, req->content, cut, 0, limit, content_tokens, &err);
		if (st != P3_ERR_CONTEXT_FULL)
			break;
		cut = Utf8Prefix(req->content, cut / 2);
		cut_short = true;
	}
	if (st != P3_OK)
		Phi3ReportEngineError(&err, ModelCachePath());
	n_content = (int64) content_tokens->n;
	if (counted && !cut_short)
		keep = n_content - ((int64) prompt->n + req->max_tokens - n_ctx);
	else
	{
		/* no count of the whole prompt: start from the room the rest of it leaves */
		if (!BuildPrompt(tok, req, "", 0, limit, prompt))
			Phi3ReportInputTooLong((int32) limit, true, req->max_tokens, n_ctx, true);
		keep = Min(n_content, (int64) n_ctx - req->max_tokens - (int64) prompt->n);
	}

	for (;;)
	{
		if (keep < 1)
		{
			/* Not even one token of the content fits */
			bool		rest_counted;

			Phi3TokensFree(content_tokens);
			Phi3TextFree(kept_text);
			rest_counted = BuildPrompt(tok, req, "", 0, limit, prompt);
			Phi3ReportInputTooLong((int32) (rest_counted ? Min(prompt->n, limit) : limit),
								   !rest_counted, req->max_tokens, n_ctx, true);
		}

		Phi3TextFree(kept_text);
		st = p3_detokenize(tok, content_tokens->ids, (size_t) keep, false, true, kept_text, &err);
		if (st != P3_OK)
			Phi3ReportEngineError(&err, ModelCachePath());
		if (kept != NULL)
			pfree(kept);
		kept = pnstrdup(kept_text->data ? kept_text->data : "", kept_text->len);

		if (!BuildPrompt(tok, req, kept, kept_text->len, limit, prompt))
			keep = 0;			/* cannot happen: the rest of the prompt fits */
		else if ((int64) prompt->n + req->max_tokens <= n_ctx)
			break;
		else
		{
			/* Merges at the cut can change the count: drop the excess and retry */
			keep -= (int64) prompt->n + req->max_tokens - n_ctx;
		}
	}

	if (cut_short)
		ereport(NOTICE,
				(errmsg("input truncated to fit the context"),
				 errdetail("Kept %lld of more than %lld tokens of the input; the prompt has %d tokens and %d tokens are reserved for the answer in a context of %d tokens.",
						   (long long) keep, (long long) limit, (int) prompt->n,
						   req->max_tokens, n_ctx)));
	else
		ereport(NOTICE,
				(errmsg("input truncated to fit the context"),
				 errdetail("Kept %lld of %lld tokens of the input; the prompt has %d tokens and %d tokens are reserved for the answer in a context of %d tokens.",
						   (long long) keep, (long long) n_content, (int) prompt->n,
						   req->max_tokens, n_ctx)));

	Phi3TokensFree(content_tokens);
	Phi3TextFree(kept_text);
	pfree(kept);
}

/*
 * The largest n' <= n such that s[0..n') does not end inside a UTF-8
 * character (s has more than n bytes).
 */
static size_t
Utf8Prefix(const char *s, size_t n)
{
	while (n > 0 && ((unsigned char) s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/*
 * Whether s[0..len) is empty or only whitespace.
 */
bool
Phi3IsBlank(const char *s, size_t len)
{
	size_t		i;

	for (i = 0; i < len; i++)
		if (!scanner_isspace(s[i]))
			return false;
	return true;
}

/*
 * Trim ASCII whitespace at both ends of s[0..*len) in place; returns the
 * start and updates *len.  s must be NUL-terminated at *len.
 */
char *
Phi3TrimUtf8(char *s, size_t *len)
{
	size_t		start = 0;
	size_t		end = *len;

	while (start < end && scanner_isspace(s[start]))
		start++;
	while (end > start && scanner_isspace(s[end - 1]))
		end--;
	s[end] = '\0';
	*len = end - start;
	return s + start;
}

/* A generated UTF-8 text, trimmed, as a text datum */
text *
Phi3TrimmedResult(char *s, size_t len)
{
	char	   *trimmed = Phi3TrimUtf8(s, &len);

	return Phi3Utf8ToText(trimmed, len);
}
