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
