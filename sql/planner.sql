--
-- planner: the high COST makes PostgreSQL evaluate the model last: with
-- ORDER BY ... LIMIT the function is computed after the sort, so the Limit
-- stops it after the rows returned (the plan shows it in a Result between
-- Limit and Sort, or in a scan that the Limit stops); cheap quals are
-- checked before expensive ones; the PARALLEL RESTRICTED functions stay in
-- the leader.
--
CREATE TABLE docs (id int PRIMARY KEY, body text);
INSERT INTO docs SELECT g, 'Document number ' || g || ' about topic ' || (g % 7) FROM generate_series(1, 200) AS g;
ANALYZE docs;

EXPLAIN (VERBOSE, COSTS OFF)
SELECT id, phi3_summarize(body) FROM docs ORDER BY id LIMIT 10;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id, phi3_summarize(body) FROM docs ORDER BY body DESC LIMIT 3;

-- the moderate COST of the (STABLE) tokenizer functions is enough too
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id, phi3_token_count(body) FROM docs ORDER BY body DESC LIMIT 3;

-- count the calls (track_functions counts C functions too)
BEGIN;
SET LOCAL track_functions = 'all';
SET LOCAL phi3.max_tokens = 4;
SELECT id, phi3_summarize(body, 2) IS NOT NULL AS summarized FROM docs ORDER BY body DESC LIMIT 3;
SELECT funcname, calls FROM pg_stat_xact_user_functions WHERE funcname LIKE 'phi3_%' ORDER BY funcname;
COMMIT;

-- the cheap qual runs first, the model's qual last
EXPLAIN (VERBOSE, COSTS OFF)
SELECT id FROM docs WHERE phi3_generate(body, max_tokens => 1) <> '' AND id < 5 AND body LIKE '%topic 1%';

-- parallel plans: the tokenizer functions may run in workers; the
-- generating ones are evaluated in the leader, above the Gather
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT phi3_token_count(body) FROM docs WHERE phi3_token_count(body) > 3;
EXPLAIN (VERBOSE, COSTS OFF)
SELECT phi3_summarize(body) FROM docs WHERE phi3_token_count(body) > 3;
RESET ALL;
