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
'Extracts from doc a document of schema (JSON Schema, or the short form {"field": "pg type name", ...} with "type?" for nullable, "type[]" arrays, nested objects and ["a","b"] enums), decoded under the schema so that it always parses and matches it; an empty doc gives every field null';

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

-- ---------------------------------------------------------------------------
-- Enrichment in place, for ordinary and Citus-distributed tables
-- (README, "Scale out on Citus").  PL/pgSQL, SECURITY INVOKER: everything
-- runs as the caller, on the coordinator and on the worker nodes.
--
-- No argument is spliced into SQL as it is: the table comes as a regclass
-- and is written schema-qualified with %I; the target and every {column}
-- of the template must be columns of the table and are written with %I;
-- the template's text, the system prompt and the settings are literals
-- (%L).  The statement fills only rows whose target is NULL, so a rerun
-- continues where a failed or cancelled one stopped.
--
-- Citus rejects a VOLATILE function in the UPDATE of a distributed table,
-- so on such a table phi3_enrich runs the same UPDATE on every shard, on
-- the node that holds it, through Citus's master_run_on_worker (new
-- connections as the caller; each shard's UPDATE commits on its own).  The
-- shards go in rounds: every node works on one of its shards at a time
-- (the nodes in parallel), so a node never runs more than one generation
-- of this call at once.  Tables whose shards have several placements
-- (reference tables, citus.shard_replication_factor > 1) are refused:
-- writing one placement would make the copies differ.
-- ---------------------------------------------------------------------------

-- The UPDATE phi3_enrich runs: on tbl itself for an ordinary table, on
-- each shard (the same statement on the shard's name) for a distributed
-- one.  Checks the arguments as phi3_fill checks its own.
CREATE FUNCTION phi3_enrich_command(tbl regclass, target name, template text,
									system text DEFAULT NULL, max_tokens int DEFAULT NULL)
RETURNS text
LANGUAGE plpgsql STABLE
AS $phi3_enrich_command$
DECLARE
	rel record;
	att record;
	base oid;
	tok text;
	col name;
	literal text := '';
	parts text[] := '{}';
	temperature text := pg_catalog.current_setting('phi3.temperature', true);
	seed text := pg_catalog.current_setting('phi3.seed', true);
	answer text;
BEGIN
	IF tbl IS NULL OR target IS NULL OR template IS NULL THEN
		RAISE EXCEPTION 'phi3_enrich needs a table, a target column and a template'
			USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF max_tokens < 0 THEN
		RAISE EXCEPTION 'max_tokens must not be negative'
			USING ERRCODE = 'invalid_parameter_value', HINT = 'Pass NULL to use phi3.max_tokens.';
	END IF;
	SELECT c.relkind, n.nspname, c.relname INTO rel
	FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE c.oid = tbl;
	IF NOT FOUND OR rel.relkind NOT IN ('r', 'p') THEN
		RAISE EXCEPTION '"%" is not a table', tbl
			USING ERRCODE = 'wrong_object_type',
				  DETAIL = 'phi3_enrich fills a column of an ordinary or partitioned table.';
	END IF;

	-- the target: an existing, not generated column of a string type
	SELECT a.atttypid, a.atttypmod, a.attgenerated INTO att
	FROM pg_catalog.pg_attribute a
	WHERE a.attrelid = tbl AND a.attname = target AND a.attnum > 0 AND NOT a.attisdropped;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'column "%" of relation "%" does not exist', target, rel.relname
			USING ERRCODE = 'undefined_column', DETAIL = 'It is the target column of phi3_enrich.';
	END IF;
	base := att.atttypid;
	WHILE (SELECT t.typtype = 'd' FROM pg_catalog.pg_type t WHERE t.oid = base) LOOP
		SELECT t.typbasetype INTO base FROM pg_catalog.pg_type t WHERE t.oid = base;
	END LOOP;
	IF att.attgenerated <> '' THEN
		RAISE EXCEPTION 'column "%" of relation "%" is a generated column', target, rel.relname
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'phi3_enrich can only fill a column of type text, varchar or char.';
	END IF;
	IF base NOT IN ('text'::regtype, 'varchar'::regtype, 'bpchar'::regtype) THEN
		RAISE EXCEPTION 'column "%" of relation "%" is of type %', target, rel.relname,
			pg_catalog.format_type(att.atttypid, NULL)
			USING ERRCODE = 'datatype_mismatch',
				  DETAIL = 'phi3_enrich can only fill a column of type text, varchar or char.';
	END IF;

	-- the template, as phi3_fill reads it: {column} is the column's text
	-- (NULL gives ''), {{ and }} are literal braces
	FOR tok IN
		SELECT m.t[1] FROM pg_catalog.regexp_matches(template, '(\{\{|\}\}|\{[^{}]*\}?|\}|[^{}]+)', 'g')
			WITH ORDINALITY AS m(t, i) ORDER BY m.i
	LOOP
		IF tok = '{{' THEN
			literal := literal || '{';
		ELSIF tok = '}}' THEN
			literal := literal || '}';
		ELSIF tok = '}' THEN
			RAISE EXCEPTION 'single "}" in phi3_enrich template'
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Write {column} for a column''s value, {{ and }} for literal braces.';
		ELSIF pg_catalog.left(tok, 1) = '{' THEN
			IF pg_catalog.right(tok, 1) <> '}' OR tok = '{' THEN
				RAISE EXCEPTION 'unterminated placeholder in phi3_enrich template'
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Write {column} for a column''s value, {{ and }} for literal braces.';
			END IF;
			col := pg_catalog.substr(tok, 2, pg_catalog.length(tok) - 2);
			IF NOT EXISTS (SELECT FROM pg_catalog.pg_attribute a WHERE a.attrelid = tbl
						   AND a.attname = col AND a.attnum > 0 AND NOT a.attisdropped) THEN
				RAISE EXCEPTION 'column "%" of relation "%" does not exist', col, rel.relname
					USING ERRCODE = 'undefined_column',
						  DETAIL = 'It is used in the prompt template of phi3_enrich.';
			END IF;
			parts := parts || pg_catalog.format('%L', literal) || pg_catalog.format('%I', col);
			literal := '';
		ELSE
			literal := literal || tok;
		END IF;
	END LOOP;
	parts := parts || pg_catalog.format('%L', literal);

	-- the caller's answer settings travel as arguments (a worker's session
	-- does not inherit them); seed -1 (random) is the node's phi3.seed
	IF seed = '-1' THEN
		seed := NULL;
	END IF;
	answer := pg_catalog.format(
		'CAST(pg_catalog.btrim(@extschema@.phi3_generate(pg_catalog.concat(%s), %L, %L::int, %L::float8, %L::bigint), E'' \t\n\r\f'') AS %s)',
		pg_catalog.array_to_string(parts, ', '), system,
		coalesce(max_tokens::text, pg_catalog.current_setting('phi3.max_tokens', true)),
		temperature, seed, pg_catalog.format_type(att.atttypid, att.atttypmod));
	RETURN pg_catalog.format('UPDATE %I.%I SET %I = %s WHERE %I IS NULL',
							 rel.nspname, rel.relname, target, answer, target);
END
$phi3_enrich_command$;

COMMENT ON FUNCTION phi3_enrich_command(regclass, name, text, text, int) IS
'The UPDATE that phi3_enrich runs on tbl (or on each of its shards): target := the trimmed phi3_generate answer to the template ({column} placeholders, as phi3_fill), where target IS NULL';

-- Fills target where it is NULL; returns the number of rows filled.  On a
-- Citus-distributed table the UPDATE runs on every shard, on its node (see
-- above); a failed shard is reported with its node after the round it was
-- in, and the shards done before it stay filled.
CREATE FUNCTION phi3_enrich(tbl regclass, target name, template text,
							system text DEFAULT NULL, max_tokens int DEFAULT NULL)
RETURNS bigint
LANGUAGE plpgsql VOLATILE
AS $phi3_enrich$
DECLARE
	command text := @extschema@.phi3_enrich_command(tbl, target, template, system, max_tokens);
	prefix text;
	shards record;
	r record;
	failure record;
	failed bool := false;
	distributed bool := false;
	filled bigint := 0;
BEGIN
	-- (Citus's catalogs through EXECUTE: without Citus they do not exist)
	IF pg_catalog.to_regclass('pg_catalog.pg_dist_partition') IS NOT NULL THEN
		EXECUTE 'SELECT EXISTS (SELECT FROM pg_catalog.pg_dist_partition WHERE logicalrelid = $1)'
			INTO distributed USING tbl;
	END IF;
	IF NOT distributed THEN
		EXECUTE command;
		GET DIAGNOSTICS filled = ROW_COUNT;
		RETURN filled;
	END IF;

	-- the shards commit over new connections: in a transaction that has
	-- done distributed work they would wait for its locks, and a rollback
	-- would not undo them
	IF (SELECT t.transaction_number <> 0 FROM pg_catalog.get_current_transaction_id() t) THEN
		RAISE EXCEPTION 'phi3_enrich cannot fill distributed table "%" in a transaction that has already used distributed tables', tbl
			USING ERRCODE = 'active_sql_transaction',
				  DETAIL = 'Each shard is filled over a new connection and commits on its own: it would wait for this transaction''s locks, and a rollback would not undo it.',
				  HINT = 'Call phi3_enrich in a transaction of its own (SET LOCAL before it is fine).';
	END IF;
	IF EXISTS (SELECT FROM pg_catalog.pg_dist_shard s JOIN pg_catalog.pg_dist_placement p USING (shardid)
			   WHERE s.logicalrelid = tbl GROUP BY s.shardid HAVING count(*) > 1) THEN
		RAISE EXCEPTION 'phi3_enrich cannot fill "%": its shards have several placements', tbl
			USING ERRCODE = 'feature_not_supported',
				  DETAIL = 'It is a reference table or was distributed with citus.shard_replication_factor above 1; writing one placement would make the copies differ.',
				  HINT = 'Fill a distributed table with one placement per shard, or a local table.';
	END IF;

	-- the shard's statement is the table's with the shard's name
	SELECT pg_catalog.format('UPDATE %I.%I', n.nspname, c.relname) INTO prefix
	FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
	WHERE c.oid = tbl;
	command := pg_catalog.substr(command, pg_catalog.length(prefix) + 1);

	-- round k: the k-th shard of every node, the nodes in parallel
	FOR shards IN
		WITH placed AS (
			SELECT s.shardid, n.nodename, n.nodeport,
				   pg_catalog.format('WITH filled AS (UPDATE %s%s RETURNING 1) SELECT pg_catalog.count(*) FROM filled',
									 pg_catalog.shard_name(s.logicalrelid, s.shardid, false), command) AS command,
				   row_number() OVER (PARTITION BY n.groupid ORDER BY s.shardid) AS round
			FROM pg_catalog.pg_dist_shard s
				 JOIN pg_catalog.pg_dist_placement p ON p.shardid = s.shardid
				 JOIN pg_catalog.pg_dist_node n ON n.groupid = p.groupid AND n.noderole = 'primary'
			WHERE s.logicalrelid = tbl)
		SELECT pg_catalog.array_agg(nodename ORDER BY shardid) AS nodenames,
			   pg_catalog.array_agg(nodeport ORDER BY shardid) AS nodeports,
			   pg_catalog.array_agg(shardid ORDER BY shardid) AS shardids,
			   pg_catalog.array_agg(placed.command ORDER BY shardid) AS commands
		FROM placed GROUP BY round ORDER BY round
	LOOP
		FOR r IN
			SELECT w.node_name, w.node_port, w.success, w.result, shards.shardids[w.i] AS shardid
			FROM pg_catalog.master_run_on_worker(shards.nodenames, shards.nodeports, shards.commands, true)
				 WITH ORDINALITY AS w(node_name, node_port, success, result, i)
		LOOP
			IF r.success THEN
				filled := filled + r.result::bigint;
			ELSIF NOT failed THEN
				failed := true;
				failure := r;
			END IF;
		END LOOP;
		IF failed THEN
			RAISE EXCEPTION 'phi3_enrich failed on shard % of "%" on node %:%',
				failure.shardid, tbl, failure.node_name, failure.node_port
				USING ERRCODE = 'external_routine_exception',
					  DETAIL = pg_catalog.format('The node reported: %s', failure.result),
					  HINT = pg_catalog.format('%s rows were filled before the error and stay filled: each shard commits on its own. Fix the cause and run phi3_enrich again; it fills only the rows still NULL.', filled);
		END IF;
	END LOOP;
	RETURN filled;
END
$phi3_enrich$;

COMMENT ON FUNCTION phi3_enrich(regclass, name, text, text, int) IS
'Fills target (text, varchar or char) where it is NULL with the trimmed phi3_generate answer to template ({column} placeholders as in phi3_fill), as the caller; on a Citus-distributed table on every shard on its own node, the nodes in parallel; returns the rows filled';

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

-- Structured output: phi3_extract with the schema as text (so that
-- phi3_extract(body, '{...}') resolves to a jsonb-returning form, not to
-- the anyelement one) and into a composite type.
CREATE FUNCTION phi3_extract(doc text, schema text)
RETURNS jsonb
AS 'MODULE_PATHNAME', 'phi3_extract_text'
LANGUAGE C VOLATILE STRICT PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_extract(text, text) IS
'phi3_extract(doc, schema::jsonb): the same, with the schema as text';

CREATE FUNCTION phi3_extract(doc text, target anyelement)
RETURNS anyelement
AS 'MODULE_PATHNAME', 'phi3_extract_typed'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000;

COMMENT ON FUNCTION phi3_extract(text, anyelement) IS
'Extracts from doc a row of target''s composite type (pass a typed null, e.g. NULL::invoice_facts): decoded under the JSON shape of its columns (domains, arrays, enums, nested composites), every column non-null and valid for its type; NULL doc gives NULL, an empty doc a row of nulls';

CREATE FUNCTION phi3_classify_scores(doc text, labels text[], instruction text DEFAULT NULL)
RETURNS TABLE (label text, probability float8)
AS 'MODULE_PATHNAME', 'phi3_classify_scores'
LANGUAGE C VOLATILE PARALLEL RESTRICTED COST 1000000 ROWS 4;

COMMENT ON FUNCTION phi3_classify_scores(text, text[], text) IS
'Every label with the model''s probability of answering it to phi3_classify''s prompt: each label''s tokens scored as a continuation (sum of token log-probabilities, no sampling), normalized over the labels so that they sum to 1; a NULL doc gives no rows';
