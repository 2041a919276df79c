--
-- batch_forms: the array forms and phi3_summarize_rows decode many rows
-- per pass over the weights (continuous batching over phi3.batch_size
-- slots); every row's result must be exactly what the one-row function
-- gives, whatever the batch size and the row order, with NULL in, NULL out.
--
SET phi3.max_tokens = 12;
CREATE TABLE batch_docs (id int PRIMARY KEY, body text);
INSERT INTO batch_docs VALUES
  (1, 'The quarterly report shows revenue up 12% on strong sales in Europe.'),
  (2, 'Short note.'),
  (3, NULL),
  (4, ''),
  (5, repeat('The warehouse in Lyon shipped late again because of the strike. ', 12)),
  (6, 'Customer ACME Corp paid invoice 4471 of 1,250.00 EUR on 2024-03-02.'),
  (7, 'The quarterly report shows revenue up 12% on strong sales in Europe.'),
  (8, '   ');

-- one-row results, for comparison
CREATE TEMP TABLE single AS
SELECT id, phi3_summarize(body, 20) AS summary,
       phi3_generate(body, 'Answer in one line.') AS answer,
       phi3_extract(body, '{"customer": "text", "amount": "numeric"}') AS facts
FROM batch_docs;

-- summarize: every batch size gives the one-row results, in the input's order
SET phi3.batch_size = 1;
SELECT bool_and(s.summary IS NOT DISTINCT FROM b.summary) AS batch_1_same
FROM single s JOIN (SELECT unnest(phi3_summarize_batch(array_agg(body ORDER BY id), 20)) AS summary,
                           unnest(array_agg(id ORDER BY id)) AS id FROM batch_docs) b USING (id);
SET phi3.batch_size = 3;
SELECT bool_and(s.summary IS NOT DISTINCT FROM b.summary) AS batch_3_same
FROM single s JOIN (SELECT unnest(phi3_summarize_batch(array_agg(body ORDER BY id), 20)) AS summary,
                           unnest(array_agg(id ORDER BY id)) AS id FROM batch_docs) b USING (id);
SET phi3.batch_size = 8;
-- reversed order, duplicates: still each row's own text
SELECT bool_and(s.summary IS NOT DISTINCT FROM b.summary) AS batch_8_reversed_same
FROM single s JOIN (SELECT unnest(phi3_summarize_batch(array_agg(body ORDER BY id DESC), 20)) AS summary,
                           unnest(array_agg(id ORDER BY id DESC)) AS id FROM batch_docs) b USING (id);
SELECT id, summary FROM single ORDER BY id;

-- NULL in, NULL out; empty or blank documents give '' without the model
SELECT phi3_summarize_batch(ARRAY[NULL, '', '  ']::text[]) AS nulls_and_blanks;
SELECT phi3_summarize_batch('{}'::text[]) AS empty_array, phi3_summarize_batch(NULL) IS NULL AS null_array;
-- the shape of the input is kept (two dimensions, lower bound 0)
SELECT array_dims(phi3_summarize_batch('[0:1][1:2]={{a,b},{c,NULL}}'::text[], 5)) AS dims,
       (phi3_summarize_batch('[0:1][1:2]={{a,b},{c,NULL}}'::text[], 5))[1][2] IS NULL AS null_kept;

-- generate, with a system prompt, and seeded sampling
SELECT bool_and(s.answer IS NOT DISTINCT FROM b.answer) AS generate_same
FROM single s JOIN (SELECT unnest(phi3_generate_batch(array_agg(body ORDER BY id), 'Answer in one line.')) AS answer,
                           unnest(array_agg(id ORDER BY id)) AS id FROM batch_docs) b USING (id);
SELECT phi3_generate_batch(ARRAY['Write a haiku.', 'Name a color.'], NULL, 8, 0.9, 42)
     = ARRAY[phi3_generate('Write a haiku.', NULL, 8, 0.9, 42), phi3_generate('Name a color.', NULL, 8, 0.9, 42)] AS seeded_same;

-- extract
SELECT bool_and(s.facts IS NOT DISTINCT FROM b.facts) AS extract_same
FROM single s JOIN (SELECT unnest(phi3_extract_batch(array_agg(body ORDER BY id), '{"customer": "text", "amount": "numeric"}')) AS facts,
                           unnest(array_agg(id ORDER BY id)) AS id FROM batch_docs) b USING (id);

-- describe
SELECT phi3_describe_batch(ARRAY['{"name": "Desk lamp", "price": 19.99}', NULL, '{"name": null}']::jsonb[], 'short')
     IS NOT DISTINCT FROM ARRAY[phi3_describe('{"name": "Desk lamp", "price": 19.99}', 'short'), NULL, phi3_describe('{"name": null}', 'short')] AS describe_same;

-- the set-returning form: the recipe for batch enrichment
ALTER TABLE batch_docs ADD COLUMN summary text;
UPDATE batch_docs d SET summary = s.summary
FROM phi3_summarize_rows('SELECT id, body FROM batch_docs WHERE summary IS NULL ORDER BY id', NULL::int, 20) AS s
WHERE d.id = s.key;
SELECT bool_and(d.summary IS NOT DISTINCT FROM s.summary) AS rows_same,
       count(*) FILTER (WHERE d.summary IS NULL) AS null_summaries
FROM batch_docs d JOIN single s USING (id);
-- rows come out in the query's order, keyed
SELECT key FROM phi3_summarize_rows('SELECT id, body FROM batch_docs ORDER BY id DESC LIMIT 4', NULL::int, 5);
-- the other rows forms give the one-row results too
SELECT bool_and(s.answer IS NOT DISTINCT FROM r.answer) AS generate_rows_same
FROM single s JOIN phi3_generate_rows('SELECT id, body FROM batch_docs', NULL::int, 'Answer in one line.') AS r
  ON r.key = s.id;
SELECT bool_and(s.facts IS NOT DISTINCT FROM r.facts) AS extract_rows_same
FROM single s JOIN phi3_extract_rows('SELECT id, body FROM batch_docs', NULL::int,
                                     '{"customer": "text", "amount": "numeric"}') AS r
  ON r.key = s.id;
SELECT r.key, r.description = phi3_describe(jsonb_build_object('name', 'Item ' || r.key), 'short') AS describe_rows_same
FROM phi3_describe_rows($$SELECT 'k' || i, jsonb_build_object('name', 'Item k' || i) FROM generate_series(1, 3) i$$,
                        NULL::text, 'short') AS r;
-- a query with no rows
SELECT count(*) FROM phi3_summarize_rows('SELECT id, body FROM batch_docs WHERE false', NULL::int);

-- errors: each before any generation, or naming the row
SELECT regress_error($$SELECT phi3_summarize_rows('SELECT id FROM batch_docs', NULL::int)$$);
SELECT regress_error($$SELECT phi3_summarize_rows('SELECT id, body FROM batch_docs', NULL::bigint)$$);
SELECT regress_error($$SELECT phi3_summarize_rows('SELECT id, id FROM batch_docs', NULL::int)$$);
SELECT regress_error($$SELECT phi3_summarize_rows('DELETE FROM batch_docs', NULL::int)$$);
SELECT regress_error($$SELECT phi3_summarize_rows('SELECT id, body FROM no_such_table', NULL::int)$$);
SELECT regress_error($$SELECT phi3_summarize_rows(NULL, NULL::int)$$);
SELECT regress_error($$SELECT phi3_describe_rows('SELECT id, body FROM batch_docs', NULL::int)$$);
SELECT regress_error($$SELECT phi3_extract_rows('SELECT id, body FROM batch_docs', NULL::int, NULL)$$);
SELECT regress_error($$SELECT phi3_summarize_rows('SELECT 1, 2', NULL)$$);
-- the query may not itself run the model (it would reset the batch under it)
SELECT regress_error($$SELECT * FROM phi3_summarize_rows('SELECT id, phi3_generate(body, NULL, 2) FROM batch_docs', NULL::int)$$);
-- and after that error the backend generates as before
SELECT phi3_summarize_batch(ARRAY[(SELECT body FROM batch_docs WHERE id = 1)], 20) = ARRAY[(SELECT summary FROM single WHERE id = 1)] AS still_same;
SELECT regress_error($$SELECT phi3_summarize_batch(ARRAY['x'], 0)$$);
SELECT regress_error($$SELECT phi3_generate_batch(ARRAY['x'], NULL, NULL, 5.0)$$);
SELECT count(*) AS rows_unchanged FROM batch_docs WHERE summary IS NOT NULL;
-- a row too long for the context names itself (the statement fails)
SET phi3.context_size = 64;
\set VERBOSITY default
SELECT phi3_summarize_batch(ARRAY['ok', repeat('too long ', 100), 'fine'], 5);
SELECT * FROM phi3_summarize_rows($$SELECT id, CASE WHEN id = 5 THEN body ELSE 'x' END FROM batch_docs ORDER BY id$$, NULL::int, 5);
RESET phi3.context_size;
-- phi3.batch_size may not exceed the superuser's phi3.max_batch_size
SET phi3.max_batch_size = 4;
SET phi3.batch_size = 8;
SELECT regress_error($$SELECT phi3_summarize_batch(ARRAY['x'])$$);
RESET phi3.max_batch_size;
RESET phi3.batch_size;
DROP TABLE batch_docs;
