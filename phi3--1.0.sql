/* phi3--1.0.sql */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION phi3" to load this file. \quit

/*
 * Labels, chosen honestly:
 *
 * - The generating functions are VOLATILE: with a temperature above 0 they
 *   sample, and even when greedy they depend on phi3.model and the other
 *   settings.  They are PARALLEL RESTRICTED: a parallel worker would build
 *   its own engine context and compute threads on top of the leader's,
 *   oversubscribing the cores that phi3.threads assigns to a backend.  They
 *   carry a very high COST, so that the planner evaluates them last: with
 *   ORDER BY ... LIMIT n the model runs for the n rows returned, not for
 *   every row before the sort; and cheaper quals are checked first.
 * - Functions whose optional arguments default to NULL are not STRICT: a
 *   NULL optional argument means "use the setting"; a NULL main input
 *   gives NULL (checked in C).
 * - The tokenizer functions are STABLE (they depend on phi3.model), STRICT
 *   and PARALLEL SAFE (a worker maps the same file; no context, no threads).
 */

CREATE FUNCTION phi3_generate(prompt text, system text DEFAULT NULL,
							  max_tokens int DEFAULT NULL,
							  temperature float8 DEFAULT NULL,
							  seed bigint DEFAULT NULL,
							  json_schema jsonb DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'phi3_generate'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_generate(text, text, int, float8, bigint, jsonb) IS
'Answers prompt with the Phi-3 chat template (optional system message); max_tokens, temperature and seed default to phi3.max_tokens, phi3.temperature and phi3.seed; with json_schema the answer is a compact JSON document valid for that schema (decoded under it)';

CREATE FUNCTION phi3_complete(prompt text,
							  max_tokens int DEFAULT NULL,
							  temperature float8 DEFAULT NULL,
							  seed bigint DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'phi3_complete'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_complete(text, int, float8, bigint) IS
'Continues prompt as raw text, without the chat template; max_tokens, temperature and seed default to the phi3.* settings';

CREATE FUNCTION phi3_summarize(doc text, max_words int DEFAULT NULL,
							   focus text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'phi3_summarize'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_summarize(text, int, text) IS
'Summarizes doc in at most max_words words (default 60), optionally focusing on focus; an empty document gives an empty string';

CREATE FUNCTION phi3_extract(doc text, schema jsonb)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'phi3_extract'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_extract(text, jsonb) IS
'Extracts the fields of schema (an object of field name to "text", "numeric", "integer", "boolean" or "date") from doc; the result has exactly the schema''s keys, null where the model gave no valid value';

CREATE FUNCTION phi3_describe(item jsonb, style text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'phi3_describe'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_describe(jsonb, text) IS
'Writes a product description (or, with a style such as ''social media post'', a post) from the facts in item, e.g. phi3_describe(to_jsonb(p)); null fields are ignored';

-- Batch forms: many rows per pass over the weights (continuous batching
-- over phi3.batch_size rows).  Each element gives what the one-row function
-- gives for it (identical at temperature 0 or with a seed); NULL elements
-- give NULL; results keep the input array's shape.
CREATE FUNCTION phi3_generate_batch(prompts text[], system text DEFAULT NULL,
									max_tokens int DEFAULT NULL,
									temperature float8 DEFAULT NULL,
									seed bigint DEFAULT NULL)
RETURNS text[]
AS 'MODULE_PATHNAME', 'phi3_generate_batch'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_generate_batch(text[], text, int, float8, bigint) IS
'phi3_generate for every element of prompts, decoded phi3.batch_size at a time in one pass over the weights; element i of the result is what phi3_generate(prompts[i], ...) gives';

CREATE FUNCTION phi3_summarize_batch(docs text[], max_words int DEFAULT NULL,
									 focus text DEFAULT NULL)
RETURNS text[]
AS 'MODULE_PATHNAME', 'phi3_summarize_batch'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_summarize_batch(text[], int, text) IS
'phi3_summarize for every element of docs, decoded phi3.batch_size at a time; element i of the result is what phi3_summarize(docs[i], ...) gives';

CREATE FUNCTION phi3_describe_batch(items jsonb[], style text DEFAULT NULL)
RETURNS text[]
AS 'MODULE_PATHNAME', 'phi3_describe_batch'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_describe_batch(jsonb[], text) IS
'phi3_describe for every element of items, decoded phi3.batch_size at a time; element i of the result is what phi3_describe(items[i], style) gives';

CREATE FUNCTION phi3_extract_batch(docs text[], schema jsonb)
RETURNS jsonb[]
AS 'MODULE_PATHNAME', 'phi3_extract_batch'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_extract_batch(text[], jsonb) IS
'phi3_extract for every element of docs under one schema, decoded phi3.batch_size at a time; element i of the result is what phi3_extract(docs[i], schema) gives';

-- The set-returning forms over a query: run query (as the caller, read
-- only, through a cursor), which returns (key, input) rows, and give each
-- row's key and result in the query's order; key_type is a typed NULL of
-- the key's type.  The arguments are never spliced into SQL.
CREATE FUNCTION phi3_generate_rows(query text, key_type anyelement,
								   system text DEFAULT NULL,
								   max_tokens int DEFAULT NULL,
								   temperature float8 DEFAULT NULL,
								   seed bigint DEFAULT NULL)
RETURNS TABLE (key anyelement, answer text)
AS 'MODULE_PATHNAME', 'phi3_generate_rows'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000 ROWS 1000;

COMMENT ON FUNCTION phi3_generate_rows(text, anyelement, text, int, float8, bigint) IS
'Runs query, which must return (key, prompt text) rows, and returns (key, answer) for each row in the query''s order, phi3.batch_size rows decoded together; answer is what phi3_generate(prompt, system, ...) gives';

CREATE FUNCTION phi3_summarize_rows(query text, key_type anyelement,
									max_words int DEFAULT NULL,
									focus text DEFAULT NULL)
RETURNS TABLE (key anyelement, summary text)
AS 'MODULE_PATHNAME', 'phi3_summarize_rows'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000 ROWS 1000;

COMMENT ON FUNCTION phi3_summarize_rows(text, anyelement, int, text) IS
'Runs query, which must return (key, document text) rows, and returns (key, summary) for each row in the query''s order, phi3.batch_size rows decoded together; e.g. UPDATE reports r SET summary = s.summary FROM phi3_summarize_rows(''SELECT id, body FROM reports WHERE summary IS NULL'', NULL::int) s WHERE r.id = s.key';

CREATE FUNCTION phi3_describe_rows(query text, key_type anyelement,
								   style text DEFAULT NULL)
RETURNS TABLE (key anyelement, description text)
AS 'MODULE_PATHNAME', 'phi3_describe_rows'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000 ROWS 1000;

COMMENT ON FUNCTION phi3_describe_rows(text, anyelement, text) IS
'Runs query, which must return (key, item jsonb) rows, and returns (key, description) for each row in the query''s order, phi3.batch_size rows decoded together; e.g. phi3_describe_rows(''SELECT id, to_jsonb(p) - id FROM products p'', NULL::int)';

CREATE FUNCTION phi3_extract_rows(query text, key_type anyelement, schema jsonb)
RETURNS TABLE (key anyelement, facts jsonb)
AS 'MODULE_PATHNAME', 'phi3_extract_rows'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000 ROWS 1000;

COMMENT ON FUNCTION phi3_extract_rows(text, anyelement, jsonb) IS
'Runs query, which must return (key, document text) rows, and returns (key, facts) for each row in the query''s order, phi3.batch_size rows decoded together; facts is what phi3_extract(document, schema) gives';

CREATE FUNCTION phi3_tokenize(text)
RETURNS int[]
AS 'MODULE_PATHNAME', 'phi3_tokenize'
LANGUAGE C STABLE STRICT PARALLEL SAFE COST 1000;

COMMENT ON FUNCTION phi3_tokenize(text) IS
'Returns the token ids of a text as the model''s tokenizer splits it (no BOS; special-token text is taken literally)';

CREATE FUNCTION phi3_detokenize(int[])
RETURNS text
AS 'MODULE_PATHNAME', 'phi3_detokenize'
LANGUAGE C STABLE STRICT PARALLEL SAFE COST 1000;

COMMENT ON FUNCTION phi3_detokenize(int[]) IS
'Returns the text of token ids (control tokens give no text); the inverse of phi3_tokenize';

CREATE FUNCTION phi3_token_count(text)
RETURNS int
AS 'MODULE_PATHNAME', 'phi3_token_count'
LANGUAGE C STABLE STRICT PARALLEL SAFE COST 1000;

COMMENT ON FUNCTION phi3_token_count(text) IS
'Returns the number of tokens of a text (what it costs inside a prompt)';

-- VOLATILE: it reports this backend's engine state (context memory), which
-- changes from call to call.
CREATE FUNCTION phi3_model_info()
RETURNS jsonb
AS 'MODULE_PATHNAME', 'phi3_model_info'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION phi3_model_info() IS
'Describes the model phi3.model names (file, architecture, dimensions, tensor types) and this backend''s engine (kernels, context size, memory, whether the model was preloaded)';

CREATE FUNCTION phi3_fill()
RETURNS trigger
AS 'MODULE_PATHNAME', 'phi3_fill'
LANGUAGE C;

COMMENT ON FUNCTION phi3_fill() IS
'Trigger (BEFORE INSERT OR UPDATE, FOR EACH ROW): phi3_fill(''column'', ''prompt with {other_column} placeholders''[, ''system prompt'']) generates the column''s value when it is NULL';

-- Statistics (stats.c): collected in shared memory when phi3 is in
-- shared_preload_libraries; without it the views are empty and say why in
-- a NOTICE.
CREATE FUNCTION phi3_stats(OUT function text, OUT calls bigint, OUT rows bigint,
						   OUT prompt_tokens bigint, OUT reused_tokens bigint,
						   OUT generated_tokens bigint, OUT prefill_ms float8,
						   OUT decode_ms float8, OUT errors bigint, OUT cancels bigint,
						   OUT stats_reset timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'phi3_stats'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE VIEW phi3_stats AS SELECT * FROM phi3_stats();

COMMENT ON VIEW phi3_stats IS
'Per phi3 function since the last phi3_stats_reset(): generation loops run (calls: one per row for one-row functions, one per batch), rows generated, prompt tokens and those served from a cached or copied prefix, generated tokens, prefill and decode time (per row, summed), errors and cancels; needs shared_preload_libraries';

CREATE FUNCTION phi3_stats_reset()
RETURNS void
AS 'MODULE_PATHNAME', 'phi3_stats_reset'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

REVOKE ALL ON FUNCTION phi3_stats_reset() FROM PUBLIC;

COMMENT ON FUNCTION phi3_stats_reset() IS
'Zeroes the counters of phi3_stats (superuser, or roles granted EXECUTE)';

CREATE FUNCTION phi3_stat_activity(OUT pid int, OUT usesysid oid, OUT datid oid,
								   OUT function text, OUT phase text,
								   OUT rows_done bigint, OUT rows_total bigint,
								   OUT tokens bigint, OUT tokens_per_second float8,
								   OUT started timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'phi3_stat_activity'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

CREATE VIEW phi3_stat_activity AS SELECT * FROM phi3_stat_activity();

COMMENT ON VIEW phi3_stat_activity IS
'One row per process generating now: function, phase (prefill or decode), rows done of rows_total (null when not known), tokens generated so far, current tokens/s, start; other roles'' rows show only pid, role and database unless you have pg_read_all_stats; needs shared_preload_libraries';

-- readable by every role that may use the extension (other roles' details
-- are hidden in C, as pg_stat_activity hides them)
GRANT SELECT ON phi3_stats, phi3_stat_activity TO PUBLIC;

CREATE FUNCTION phi3_classify(doc text, labels text[], instruction text DEFAULT NULL)
RETURNS text
AS 'MODULE_PATHNAME', 'phi3_classify'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_classify(text, text[], text) IS
'Classifies doc as exactly one of labels (decoding under a schema that allows nothing else), optionally following instruction; labels must be distinct, non-empty and free of control characters';

-- Asynchronous fill (async_queue.c, async_worker.c): phi3_fill_async
-- queues rows in phi3_async_queue; background workers (with
-- shared_preload_libraries) fill them after commit.  Nobody but the
-- extension's owner has rights on the table: the trigger inserts as that
-- owner, the views show each role the items of the tables it may read, and
-- the functions act on the tables the caller owns.
CREATE TABLE phi3_async_queue (
	id bigserial PRIMARY KEY,
	relid oid NOT NULL,
	trigger_oid oid NOT NULL,
	column_name name NOT NULL,
	key text[] NOT NULL,
	state text NOT NULL DEFAULT 'pending'
		CHECK (state IN ('pending', 'running', 'done', 'failed')),
	attempts int NOT NULL DEFAULT 0,
	last_error text,
	retry_at timestamptz,
	outcome text,
	worker_pid int,
	enqueued_at timestamptz NOT NULL DEFAULT now(),
	updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX phi3_async_queue_pending ON phi3_async_queue (trigger_oid, id) WHERE state = 'pending';
CREATE INDEX phi3_async_queue_running ON phi3_async_queue (worker_pid) WHERE state = 'running';
-- a row is pending at most once per trigger
CREATE UNIQUE INDEX phi3_async_queue_once ON phi3_async_queue (trigger_oid, key) WHERE state = 'pending';

REVOKE ALL ON phi3_async_queue FROM PUBLIC;

COMMENT ON TABLE phi3_async_queue IS
'Rows queued by phi3_fill_async for the background workers: table, trigger, target column, the row''s key (primary key or replica identity columns, as text), state (pending, running, done, failed), attempts, last error, the time of the next attempt, outcome (filled, value set, row deleted); read it through phi3_queue_items and phi3_queue_status';

CREATE FUNCTION phi3_fill_async()
RETURNS trigger
AS 'MODULE_PATHNAME', 'phi3_fill_async'
LANGUAGE C;

COMMENT ON FUNCTION phi3_fill_async() IS
'Trigger (AFTER INSERT OR UPDATE, FOR EACH ROW): phi3_fill_async(''column'', ''prompt with {other_column} placeholders''[, ''system prompt'']) queues the row when the column is NULL; a background worker fills it after commit, as the table''s owner, and never over a value set meanwhile (needs shared_preload_libraries; the table needs a primary key or replica identity index)';

CREATE VIEW phi3_queue_items WITH (security_barrier) AS
SELECT q.id, q.relid, q.relid::regclass AS table_name, q.column_name, q.key, q.state,
	   q.attempts, q.last_error, q.retry_at, q.outcome, q.worker_pid, q.enqueued_at, q.updated_at
FROM phi3_async_queue q
WHERE pg_catalog.has_table_privilege(q.relid, 'SELECT')
   OR pg_catalog.pg_has_role('pg_read_all_stats', 'USAGE');

COMMENT ON VIEW phi3_queue_items IS
'The items of phi3_async_queue of the tables you may SELECT (all of them with pg_read_all_stats): key, state, attempts, last error, when a pending item that failed is tried again (retry_at), outcome';

CREATE VIEW phi3_queue_status AS
SELECT relid, table_name, column_name,
	   count(*) FILTER (WHERE state = 'pending') AS pending,
	   count(*) FILTER (WHERE state = 'running') AS running,
	   count(*) FILTER (WHERE state = 'done') AS done,
	   count(*) FILTER (WHERE state = 'failed') AS failed,
	   now() - min(enqueued_at) FILTER (WHERE state = 'pending') AS oldest_pending_age
FROM phi3_queue_items
GROUP BY relid, table_name, column_name;

COMMENT ON VIEW phi3_queue_status IS
'Per table and column queued by phi3_fill_async: items pending, running, done, failed, and the age of the oldest pending one (tables you may SELECT)';

GRANT SELECT ON phi3_queue_items, phi3_queue_status TO PUBLIC;

CREATE FUNCTION phi3_async_wait(timeout float8 DEFAULT 60, tbl regclass DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'phi3_async_wait'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION phi3_async_wait(float8, regclass) IS
'Waits up to timeout seconds until no queued row you may see (of tbl, or of every table) is pending or running; true when the queue drained, false on timeout or when no background worker runs (failed rows are not waited for)';

CREATE FUNCTION phi3_async_retry(tbl regclass DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'phi3_async_retry'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION phi3_async_retry(regclass) IS
'Queues the failed rows of tbl (or of every table you own) again with their attempts reset, and makes rows waiting for their next attempt due now; returns how many';

CREATE FUNCTION phi3_async_purge(tbl regclass DEFAULT NULL, states text[] DEFAULT '{done}')
RETURNS bigint
AS 'MODULE_PATHNAME', 'phi3_async_purge'
LANGUAGE C VOLATILE PARALLEL UNSAFE;

COMMENT ON FUNCTION phi3_async_purge(regclass, text[]) IS
'Deletes the queue items in the given states (pending, done, failed; not running) of tbl, or of every table you own; returns how many';

-- DROP TABLE / DROP TRIGGER leave no work behind: their items go with them
-- (the workers also drop items whose trigger is gone)
CREATE FUNCTION phi3_async_drop_cleanup()
RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	DELETE FROM @extschema@.phi3_async_queue q
	USING pg_event_trigger_dropped_objects() d
	WHERE (d.classid = 'pg_trigger'::regclass AND q.trigger_oid = d.objid)
	   OR (d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND q.relid = d.objid);
END
$$;

REVOKE ALL ON FUNCTION phi3_async_drop_cleanup() FROM PUBLIC;

COMMENT ON FUNCTION phi3_async_drop_cleanup() IS
'Event trigger (sql_drop): deletes the queue items of dropped tables and triggers';

CREATE EVENT TRIGGER phi3_async_drop_cleanup ON sql_drop
	EXECUTE FUNCTION phi3_async_drop_cleanup();
