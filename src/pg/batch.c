/*-------------------------------------------------------------------------
 *
 * batch.c
 *	  Many rows per pass over the weights: the array forms of the
 *	  generating functions (phi3_generate_batch, phi3_summarize_batch,
 *	  phi3_describe_batch, phi3_extract_batch), the set-returning forms
 *	  over a query (phi3_generate_rows, phi3_summarize_rows,
 *	  phi3_describe_rows, phi3_extract_rows), and the continuous-batching
 *	  driver they share.
 *
 * The driver (Phi3RunBatch) keeps up to phi3.batch_size rows in the
 * backend's decoder at once.  It asks its source for the next row whenever
 * a slot is free, so a row that finishes (end token, max_tokens) makes room
 * for the next one at once, while the prompts of new rows are evaluated in
 * chunks interleaved with the decode steps of the running ones (the
 * decoder's step).  Rows that share the system prompt and instruction
 * evaluate that prefix once: the decoder copies its KV cache between
 * slots.  Results are handed to the sink in input order (a row that
 * finishes early waits for the rows before it), so each form returns its
 * rows in the order they came.
 *
 * Identity: every row is decoded exactly as a one-row call decodes it
 * (its own sampler and seed; per-token logits do not depend on the other
 * rows), so at temperature 0 or with a seed the result of every row is
 * byte-identical to the one-row function's, whatever the batch size, the
 * row order and the thread count.
 *
 * Errors: a row whose input cannot be used (too long with
 * phi3.input_overflow = error, say) fails the statement, and the error's
 * context line names the row ("batch row 5", or the key for the rows
 * form).  NULL inputs give NULL results without running the model; empty
 * documents give empty strings, as the one-row functions do.  Cancel,
 * statement_timeout and terminate stop the whole batch within one decoder
 * step (CHECK_FOR_INTERRUPTS() after every step).
 *
 * Memory: each row's request is built in a memory context of its own,
 * freed once its prompt is in the decoder; results are freed once the sink
 * took them.  The KV cache holds at most phi3.batch_size sequences of
 * phi3.context_size positions.
 *
 * IDENTIFICATION
 *	  src/pg/batch.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

PG_FUNCTION_INFO_V1(phi3_generate_batch);
PG_FUNCTION_INFO_V1(phi3_summarize_batch);
PG_FUNCTION_INFO_V1(phi3_describe_batch);
PG_FUNCTION_INFO_V1(phi3_extract_batch);
PG_FUNCTION_INFO_V1(phi3_generate_rows);
PG_FUNCTION_INFO_V1(phi3_summarize_rows);
PG_FUNCTION_INFO_V1(phi3_describe_rows);
PG_FUNCTION_INFO_V1(phi3_extract_rows);

/* A finished row waiting for the rows before it */
typedef struct DoneRow
{
	int64		index;
	Phi3RowResult kind;
	char	   *text;			/* UTF-8, in the driver's context */
	size_t		len;
} DoneRow;

typedef struct BatchState
{
	const Phi3BatchOps *ops;
	void	   *arg;
	MemoryContext cxt;			/* results waiting to be emitted */
	int64		next_index;		/* index the source gives next */
	int64		next_emit;		/* index the sink takes next */
	int64	   *slot_row;		/* (n_slots) row decoded in each slot, -1 if none */
	int32		n_slots;
	DoneRow    *done;			/* finished rows not yet emitted */
	int32		n_done;
	int32		cap_done;
	int64		error_row;		/* the row an error belongs to (error context) */
} BatchState;

static void BatchLoop(BatchState *bs, P3Decoder *dec);
static void CollectFinished(BatchState *bs, P3Decoder *dec);
static void AddRow(BatchState *bs, P3Decoder *dec, bool *exhausted);
static void Finish(BatchState *bs, int64 index, Phi3RowResult kind, const char *text, size_t len);
static void EmitReady(BatchState *bs);
static void BatchErrorContext(void *arg);

/*
 * The number of rows decoded together: phi3.batch_size, refused up front
 * when it exceeds the superuser's phi3.max_batch_size.
 */
int32
Phi3CheckedBatchSize(void)
{
	if (phi3_batch_size > phi3_max_batch_size)
		ereport(ERROR,
				(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
				 errmsg("phi3.batch_size is larger than phi3.max_batch_size"),
				 errdetail("phi3.batch_size is %d and phi3.max_batch_size is %d; each row decoded together may hold up to phi3.context_size positions of KV cache.",
						   phi3_batch_size, phi3_max_batch_size),
				 errhint("Lower phi3.batch_size, or ask a superuser to raise phi3.max_batch_size.")));
	return phi3_batch_size;
}

/*
 * Run every row of the source through the decoder, phi3.batch_size at a
 * time, and hand the results to the sink in input order.
 */
void
Phi3RunBatch(const Phi3BatchOps *ops, void *arg)
{
	BatchState	bs;
	P3Decoder  *dec;
	ErrorContextCallback errcb;

	(void) Phi3CheckedBatchSize();
	CHECK_FOR_INTERRUPTS();
	dec = ModelCacheGetDecoder();

	memset(&bs, 0, sizeof(bs));
	bs.ops = ops;
	bs.arg = arg;
	bs.cxt = AllocSetContextCreate(CurrentMemoryContext, "phi3 batch", ALLOCSET_DEFAULT_SIZES);
	bs.n_slots = p3_context_params(p3_decoder_context(dec))->n_seq;
	bs.slot_row = MemoryContextAlloc(bs.cxt, sizeof(int64) * bs.n_slots);
	for (int32 i = 0; i < bs.n_slots; i++)
		bs.slot_row[i] = -1;
	bs.error_row = -1;

	errcb.callback = BatchErrorContext;
	errcb.arg = &bs;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	ModelCacheDecoderBusy(true);
	PG_TRY();
	{
		BatchLoop(&bs, dec);
	}
	PG_FINALLY();
	{
		ModelCacheDecoderBusy(false);
	}
	PG_END_TRY();

	error_context_stack = errcb.previous;
	MemoryContextDelete(bs.cxt);
}

/*
 * Fill free slots from the source, step, collect finished rows, until the
 * source is exhausted and every row was emitted.
 */
static void
BatchLoop(BatchState *bs, P3Decoder *dec)
{
	bool		exhausted = false;

	for (;;)
	{
		P3Error		err;
		P3Status	st;

		while (!exhausted && p3_decoder_n_free(dec) > 0)
			AddRow(bs, dec, &exhausted);
		EmitReady(bs);
		if (p3_decoder_n_live(dec) == 0)
		{
			if (exhausted)
				break;
			continue;
		}

		p3_error_clear(&err);
		st = p3_decoder_step(dec, &err);
		ModelCacheCheckMappingFault();
		if (st != P3_OK)
			Phi3ReportEngineError(&err, ModelCachePath());
		CollectFinished(bs, dec);
		CHECK_FOR_INTERRUPTS();
	}
	EmitReady(bs);
}

/* Take the results of the rows that finished in the last step and free their slots. */
static void
CollectFinished(BatchState *bs, P3Decoder *dec)
{
	for (int32 s = 0; s < bs->n_slots; s++)
	{
		P3SeqInfo	info;

		if (bs->slot_row[s] < 0 || !p3_decoder_seq_info(dec, s, &info) ||
			info.phase != P3_SEQ_DONE)
			continue;
		if (info.stats.stop == P3_STOP_ERROR)
		{
			bs->error_row = bs->slot_row[s];
			Phi3ReportEngineError(info.error, ModelCachePath());
		}
		Finish(bs, bs->slot_row[s], PHI3_ROW_TEXT, info.text, info.text_len);
		bs->slot_row[s] = -1;
		p3_decoder_remove(dec, s);
	}
}

/*
 * Ask the source for the next row and start it: into a free slot of the
 * decoder, or straight to the results when it needs no generation.
 */
static void
AddRow(BatchState *bs, P3Decoder *dec, bool *exhausted)
{
	MemoryContext row_cxt = AllocSetContextCreate(CurrentMemoryContext, "phi3 batch row",
												  ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(row_cxt);
	Phi3GenRequest req;
	Phi3RowResult kind;
	int64		index = bs->next_index;

	memset(&req, 0, sizeof(req));
	bs->error_row = index;
	if (!bs->ops->next(bs->arg, index, &req, &kind))
		*exhausted = true;
	else
	{
		bs->next_index++;
		if (kind == PHI3_ROW_TEXT && req.max_tokens == 0)
			kind = PHI3_ROW_EMPTY;
		if (kind != PHI3_ROW_TEXT)
			Finish(bs, index, kind, "", 0);
		else
		{
			P3Tokens   *prompt = Phi3BuildRequestPrompt(&req);
			P3SeqParams sp = Phi3RequestSeqParams(&req);
			P3Error		err;
			int32		seq;

			p3_error_clear(&err);
			if (p3_decoder_add(dec, prompt->ids, (int32) prompt->n, &sp, &seq, &err) != P3_OK)
				Phi3ReportEngineError(&err, ModelCachePath());
			bs->slot_row[seq] = index;
			Phi3TokensFree(prompt);
		}
	}
	bs->error_row = -1;
	MemoryContextSwitchTo(old);
	MemoryContextDelete(row_cxt);
}

/* Keep the result of row index until the rows before it are emitted. */
static void
Finish(BatchState *bs, int64 index, Phi3RowResult kind, const char *text, size_t len)
{
	DoneRow    *d;

	if (bs->n_done == bs->cap_done)
	{
		int32		cap = bs->cap_done ? bs->cap_done * 2 : 16;

		bs->done = bs->done ? repalloc(bs->done, sizeof(DoneRow) * cap)
			: MemoryContextAlloc(bs->cxt, sizeof(DoneRow) * cap);
		bs->cap_done = cap;
	}
	d = &bs->done[bs->n_done++];
	d->index = index;
	d->kind = kind;
	d->len = len;
	d->text = MemoryContextAlloc(bs->cxt, len + 1);
	if (len > 0)
		memcpy(d->text, text, len);
	d->text[len] = '\0';
}

/* Hand the sink every finished row whose turn it is. */
static void
EmitReady(BatchState *bs)
{
	bool		found = true;

	while (found)
	{
		found = false;
		for (int32 i = 0; i < bs->n_done; i++)
		{
			DoneRow		d = bs->done[i];

			if (d.index != bs->next_emit)
				continue;
			bs->done[i] = bs->done[--bs->n_done];
			bs->error_row = d.index;
			bs->ops->emit(bs->arg, d.index, d.kind, d.text, d.len);
			bs->error_row = -1;
			pfree(d.text);
			bs->next_emit++;
			found = true;
			break;
		}
	}
}

static void
BatchErrorContext(void *arg)
{
	BatchState *bs = (BatchState *) arg;

	if (bs->error_row < 0)
		return;
	if (bs->ops->describe_row)
		bs->ops->describe_row(bs->arg, bs->error_row);
	else
		errcontext("batch row %lld", (long long) bs->error_row + 1);
}

/* ---- what each form asks and returns ---- */

enum
{
	FORM_GENERATE,
	FORM_SUMMARIZE,
	FORM_DESCRIBE,
	FORM_EXTRACT
};

/* A form and its options (the arguments after the rows) */
typedef struct RowForm
{
	int			form;
	text	   *system;
	int32		max_tokens;
	bool		temperature_isnull;
	float8		temperature;
	bool		seed_isnull;
	int64		seed;
	Phi3SummarizeOptions summarize;
	char	   *style;
	Phi3ExtractSchema *schema;
} RowForm;

/*
 * Read the form's options from the arguments starting at argument `first`:
 *   generate   system, max_tokens, temperature, seed
 *   summarize  max_words, focus
 *   describe   style
 *   extract    schema (required)
 * Every option is checked here, before any row.
 */
static void
FormOptions(RowForm *f, FunctionCallInfo fcinfo, int form, int first)
{
	memset(f, 0, sizeof(*f));
	f->form = form;
	switch (form)
	{
		case FORM_GENERATE:
			f->system = PG_ARGISNULL(first) ? NULL : PG_GETARG_TEXT_PP(first);
			f->max_tokens = Phi3ResolveMaxTokens(PG_ARGISNULL(first + 1),
												 PG_ARGISNULL(first + 1) ? 0 : PG_GETARG_INT32(first + 1));
			f->temperature_isnull = PG_ARGISNULL(first + 2);
			f->temperature = f->temperature_isnull ? 0 : PG_GETARG_FLOAT8(first + 2);
			f->seed_isnull = PG_ARGISNULL(first + 3);
			f->seed = f->seed_isnull ? 0 : PG_GETARG_INT64(first + 3);
			(void) Phi3ResolveSampling(f->temperature_isnull, f->temperature, f->seed_isnull, f->seed);
			break;
		case FORM_SUMMARIZE:
			f->summarize = Phi3SummarizeOptionsFrom(PG_ARGISNULL(first),
													PG_ARGISNULL(first) ? 0 : PG_GETARG_INT32(first),
													PG_ARGISNULL(first + 1) ? NULL : PG_GETARG_TEXT_PP(first + 1));
			break;
		case FORM_DESCRIBE:
			f->style = PG_ARGISNULL(first) ? NULL : Phi3DescribeStyle(PG_GETARG_TEXT_PP(first));
			break;
		case FORM_EXTRACT:
			if (PG_ARGISNULL(first))
				ereport(ERROR,
						(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
						 errmsg("schema must not be null")));
			f->schema = Phi3ExtractParseSchema(PG_GETARG_JSONB_P(first));
			break;
	}
}

/* The request of one row's input (not NULL): as the one-row function builds it. */
static void
FormRequest(const RowForm *f, Datum input, Phi3GenRequest *req, Phi3RowResult *kind)
{
	*kind = PHI3_ROW_TEXT;
	switch (f->form)
	{
		case FORM_GENERATE:
			Phi3ChatRequestInit(req, DatumGetTextPP(input), f->system);
			req->max_tokens = f->max_tokens;
			req->sampling = Phi3ResolveSampling(f->temperature_isnull, f->temperature,
												f->seed_isnull, f->seed);
			break;
		case FORM_SUMMARIZE:
			if (!Phi3SummarizeRequestInit(req, DatumGetTextPP(input), &f->summarize))
				*kind = PHI3_ROW_EMPTY;
			break;
		case FORM_DESCRIBE:
			if (!Phi3DescribeRequestInit(req, input, f->style))
				*kind = PHI3_ROW_EMPTY;
			break;
		case FORM_EXTRACT:
			if (!Phi3ExtractRequestInit(req, DatumGetTextPP(input), f->schema))
				*kind = PHI3_ROW_EMPTY;
			break;
	}
}

/* The result datum of a row (kind is not PHI3_ROW_NULL), as the one-row function returns it. */
static Datum
FormResult(const RowForm *f, Phi3RowResult kind, const char *text, size_t len)
{
	if (f->form == FORM_EXTRACT)
		return JsonbPGetDatum(Phi3ExtractFromAnswer(f->schema, kind == PHI3_ROW_TEXT ? text : NULL, len));
	if (f->form == FORM_GENERATE)
		return PointerGetDatum(Phi3Utf8ToText(text, len));
	return PointerGetDatum(Phi3TrimmedResult(pnstrdup(text, len), len));
}

/* The input type of a form (text, or jsonb for describe) and its result type. */
static Oid
FormInputType(int form)
{
	return form == FORM_DESCRIBE ? JSONBOID : TEXTOID;
}

static Oid
FormResultType(int form)
{
	return form == FORM_EXTRACT ? JSONBOID : TEXTOID;
}

/* ---- the array forms ---- */

/* An array argument and its elements, and the results in the same shape */
typedef struct ArrayRows
{
	Datum	   *elems;
	bool	   *nulls;
	int			n;
	Datum	   *out;
	bool	   *out_nulls;
	RowForm		f;
} ArrayRows;

static bool
ArrayNext(void *arg, int64 index, Phi3GenRequest *req, Phi3RowResult *kind)
{
	ArrayRows  *a = (ArrayRows *) arg;

	if (index >= a->n)
		return false;
	if (a->nulls[index])
		*kind = PHI3_ROW_NULL;
	else
		FormRequest(&a->f, a->elems[index], req, kind);
	return true;
}

static void
ArrayEmit(void *arg, int64 index, Phi3RowResult kind, const char *text, size_t len)
{
	ArrayRows  *a = (ArrayRows *) arg;

	a->out_nulls[index] = (kind == PHI3_ROW_NULL);
	a->out[index] = kind == PHI3_ROW_NULL ? (Datum) 0 : FormResult(&a->f, kind, text, len);
}

/*
 * The array form of a task function: every element of argument 0 through
 * the batch, the result array in the input's shape (NULL for NULL).
 */
static Datum
ArrayForm(FunctionCallInfo fcinfo, int form)
{
	static const Phi3BatchOps ops = {ArrayNext, ArrayEmit, NULL};
	Oid			in_type = FormInputType(form);
	Oid			out_type = FormResultType(form);
	ArrayRows	a;
	ArrayType  *in;
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (PG_ARGISNULL(0))
		PG_RETURN_NULL();
	memset(&a, 0, sizeof(a));
	FormOptions(&a.f, fcinfo, form, 1);
	in = PG_GETARG_ARRAYTYPE_P(0);
	get_typlenbyvalalign(in_type, &typlen, &typbyval, &typalign);
	deconstruct_array(in, in_type, typlen, typbyval, typalign, &a.elems, &a.nulls, &a.n);
	if (a.n == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(out_type));
	a.out = palloc0(sizeof(Datum) * a.n);
	a.out_nulls = palloc0(sizeof(bool) * a.n);

	Phi3RunBatch(&ops, &a);

	get_typlenbyvalalign(out_type, &typlen, &typbyval, &typalign);
	PG_RETURN_ARRAYTYPE_P(construct_md_array(a.out, a.out_nulls, ARR_NDIM(in), ARR_DIMS(in),
											 ARR_LBOUND(in), out_type, typlen, typbyval, typalign));
}

/* phi3_generate_batch(prompts text[], system text, max_tokens int, temperature float8, seed bigint) */
Datum
phi3_generate_batch(PG_FUNCTION_ARGS)
{
	return ArrayForm(fcinfo, FORM_GENERATE);
}

/* phi3_summarize_batch(docs text[], max_words int, focus text) returns text[] */
Datum
phi3_summarize_batch(PG_FUNCTION_ARGS)
{
	return ArrayForm(fcinfo, FORM_SUMMARIZE);
}

/* phi3_describe_batch(items jsonb[], style text) returns text[] */
Datum
phi3_describe_batch(PG_FUNCTION_ARGS)
{
	return ArrayForm(fcinfo, FORM_DESCRIBE);
}

/* phi3_extract_batch(docs text[], schema jsonb) returns jsonb[] */
Datum
phi3_extract_batch(PG_FUNCTION_ARGS)
{
	return ArrayForm(fcinfo, FORM_EXTRACT);
}

/* ---- the set-returning forms over a query ---- */

/*
 * phi3_summarize_rows(query text, key_type anyelement, max_words, focus),
 * phi3_generate_rows(query, key_type, system, max_tokens, temperature, seed),
 * phi3_describe_rows(query, key_type, style) and
 * phi3_extract_rows(query, key_type, schema) return table (key anyelement,
 * result).
 *
 * The query runs as the caller (SPI, read-only, through a cursor fetched
 * phi3.batch_size rows at a time) and must return two columns: the key, of
 * key_type's type, and the input (text; jsonb for describe).  Nothing of
 * the arguments is ever spliced into SQL.  One row comes out per query
 * row, in the query's order, with its key and result (NULL for a NULL
 * input), into a tuplestore (which spills to disk past work_mem).
 */
typedef struct QueryRows
{
	Portal		portal;
	Oid			key_type;
	SPITupleTable *tuptable;	/* rows fetched and not yet used */
	uint64		pos;
	uint64		n;
	bool		eof;
	/* keys of the rows read and not yet emitted: keys[0] is row keys_base */
	Datum	   *keys;
	bool	   *key_nulls;
	int64		keys_base;
	int32		keys_cap;
	int16		key_typlen;
	bool		key_byval;
	RowForm		f;
	Tuplestorestate *store;
	TupleDesc	out_desc;
	MemoryContext store_cxt;	/* the keys live here */
	MemoryContext emit_cxt;		/* one result row, reset after it is stored */
	int32		fetch;
} QueryRows;

/* The key slot of row index, the window grown as needed. */
static Datum *
QueryKeySlot(QueryRows *q, int64 index, bool **isnull)
{
	int64		off = index - q->keys_base;

	if (off >= q->keys_cap)
	{
		int32		cap = q->keys_cap * 2;

		q->keys = repalloc(q->keys, sizeof(Datum) * cap);
		q->key_nulls = repalloc(q->key_nulls, sizeof(bool) * cap);
		q->keys_cap = cap;
	}
	*isnull = &q->key_nulls[off];
	return &q->keys[off];
}

static bool
QueryNext(void *arg, int64 index, Phi3GenRequest *req, Phi3RowResult *kind)
{
	QueryRows  *q = (QueryRows *) arg;
	HeapTuple	tup;
	bool		input_null;
	bool	   *key_null;
	Datum	   *key;
	Datum		input;
	MemoryContext old;

	if (q->pos >= q->n)
	{
		if (q->eof)
			return false;
		if (q->tuptable)
			SPI_freetuptable(q->tuptable);
		SPI_cursor_fetch(q->portal, true, q->fetch);
		q->tuptable = SPI_tuptable;
		q->n = SPI_processed;
		q->pos = 0;
		if (q->n == 0)
		{
			q->eof = true;
			return false;
		}
	}
	tup = q->tuptable->vals[q->pos++];

	/* the key, copied where it outlives the fetched rows */
	key = QueryKeySlot(q, index, &key_null);
	old = MemoryContextSwitchTo(q->store_cxt);
	*key = SPI_getbinval(tup, q->tuptable->tupdesc, 1, key_null);
	if (!*key_null)
		*key = datumCopy(*key, q->key_byval, q->key_typlen);
	MemoryContextSwitchTo(old);

	input = SPI_getbinval(tup, q->tuptable->tupdesc, 2, &input_null);
	if (input_null)
		*kind = PHI3_ROW_NULL;
	else
		FormRequest(&q->f, input, req, kind);
	return true;
}

static void
QueryEmit(void *arg, int64 index, Phi3RowResult kind, const char *text, size_t len)
{
	QueryRows  *q = (QueryRows *) arg;
	Datum		values[2];
	bool		nulls[2];
	bool	   *key_null;
	Datum	   *key = QueryKeySlot(q, index, &key_null);

	MemoryContext old = MemoryContextSwitchTo(q->emit_cxt);

	values[0] = *key;
	nulls[0] = *key_null;
	nulls[1] = (kind == PHI3_ROW_NULL);
	values[1] = nulls[1] ? (Datum) 0 : FormResult(&q->f, kind, text, len);
	tuplestore_putvalues(q->store, q->out_desc, values, nulls);
	MemoryContextSwitchTo(old);
	MemoryContextReset(q->emit_cxt);

	/* rows are emitted in order: drop this key from the front of the window */
	if (!*key_null && !q->key_byval)
		pfree(DatumGetPointer(*key));
	memmove(q->keys, q->keys + 1, sizeof(Datum) * (q->keys_cap - 1));
	memmove(q->key_nulls, q->key_nulls + 1, sizeof(bool) * (q->keys_cap - 1));
	q->keys_base++;
}

/* Error context: the query row and its key. */
static void
QueryDescribeRow(void *arg, int64 index)
{
	QueryRows  *q = (QueryRows *) arg;
	int64		off = index - q->keys_base;

	if (off >= 0 && off < q->keys_cap && index < q->keys_base + q->keys_cap && !q->key_nulls[off])
	{
		Oid			out;
		bool		varlena;

		getTypeOutputInfo(q->key_type, &out, &varlena);
		errcontext("query row %lld, key %s", (long long) index + 1,
				   OidOutputFunctionCall(out, q->keys[off]));
	}
	else
		errcontext("query row %lld", (long long) index + 1);
}

/* Open the caller's query as a read-only cursor and check its two columns. */
static Portal
OpenQueryCursor(text *query_text, Oid key_type, int form)
{
	char	   *query = text_to_cstring(query_text);
	SPIPlanPtr	plan = SPI_prepare(query, 0, NULL);
	Portal		portal;
	TupleDesc	desc;
	Oid			input_type;

	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	if (!SPI_is_cursor_plan(plan))
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("query must be a single SELECT that returns rows"),
				 errhint("Pass a query such as 'SELECT id, body FROM reports WHERE summary IS NULL'.")));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	desc = portal->tupDesc;
	if (desc->natts != 2)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("query must return two columns, the key and the input"),
				 errdetail("The query returns %d columns.", desc->natts)));
	if (TupleDescAttr(desc, 0)->atttypid != key_type)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the query's key column has type %s but key_type is %s",
						format_type_be(TupleDescAttr(desc, 0)->atttypid), format_type_be(key_type)),
				 errhint("Pass key_type as a null of the key's type, e.g. NULL::%s.",
						 format_type_be(TupleDescAttr(desc, 0)->atttypid))));
	input_type = TupleDescAttr(desc, 1)->atttypid;
	if (input_type != FormInputType(form) &&
		!(FormInputType(form) == TEXTOID && input_type == VARCHAROID))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the query's input column has type %s, not %s",
						format_type_be(input_type), format_type_be(FormInputType(form))),
				 errhint("Cast it in the query, e.g. SELECT id, body::%s FROM ...",
						 format_type_be(FormInputType(form)))));
	pfree(query);
	return portal;
}

/* A rows form: the options start at argument 2. */
static Datum
RowsForm(FunctionCallInfo fcinfo, int form)
{
	static const Phi3BatchOps ops = {QueryNext, QueryEmit, QueryDescribeRow};
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			key_type = get_fn_expr_argtype(fcinfo->flinfo, 1);
	QueryRows	q;
	int			ret;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("query must not be null")));
	if (!OidIsValid(key_type))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not determine the type of key_type"),
				 errhint("Pass a typed null, e.g. NULL::integer.")));

	memset(&q, 0, sizeof(q));
	FormOptions(&q.f, fcinfo, form, 2);
	q.fetch = Max(Phi3CheckedBatchSize(), 1);
	InitMaterializedSRF(fcinfo, 0);
	q.store = rsinfo->setResult;
	q.out_desc = rsinfo->setDesc;
	q.store_cxt = rsinfo->econtext->ecxt_per_query_memory;
	q.key_type = key_type;
	get_typlenbyval(key_type, &q.key_typlen, &q.key_byval);
	q.keys_cap = 64;
	q.keys = MemoryContextAlloc(q.store_cxt, sizeof(Datum) * q.keys_cap);
	q.key_nulls = MemoryContextAlloc(q.store_cxt, sizeof(bool) * q.keys_cap);
	q.emit_cxt = AllocSetContextCreate(CurrentMemoryContext, "phi3 rows result", ALLOCSET_DEFAULT_SIZES);

	if ((ret = SPI_connect()) != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed: %s", SPI_result_code_string(ret));
	q.portal = OpenQueryCursor(PG_GETARG_TEXT_PP(0), key_type, form);

	Phi3RunBatch(&ops, &q);

	SPI_cursor_close(q.portal);
	SPI_finish();
	MemoryContextDelete(q.emit_cxt);
	return (Datum) 0;
}

Datum
phi3_generate_rows(PG_FUNCTION_ARGS)
{
	return RowsForm(fcinfo, FORM_GENERATE);
}

Datum
phi3_summarize_rows(PG_FUNCTION_ARGS)
{
	return RowsForm(fcinfo, FORM_SUMMARIZE);
}

Datum
phi3_describe_rows(PG_FUNCTION_ARGS)
{
	return RowsForm(fcinfo, FORM_DESCRIBE);
}

Datum
phi3_extract_rows(PG_FUNCTION_ARGS)
{
	return RowsForm(fcinfo, FORM_EXTRACT);
}
