--
-- classify: phi3_classify always answers exactly one of the labels, chosen
-- by the model under a schema that allows nothing else (on a random-weights
-- model too, which knows nothing); the same input gives the same label;
-- bad label lists are errors before anything runs.
--
\getenv model_dir PHI3_TEST_MODEL_DIR
\set tiny_q4_k :model_dir '/tiny-q4_k.gguf'
CREATE TEMP TABLE tickets (id int, body text);
INSERT INTO tickets VALUES
  (1, 'The invoice was paid twice, please refund the second payment.'),
  (2, 'Great service, the technician fixed everything in an hour.'),
  (3, 'The app crashes when I open the settings page.'),
  (4, 'When will my order arrive?'),
  (5, '');
SELECT id, phi3_classify(body, ARRAY['billing', 'praise', 'bug report', 'shipping']) AS label
FROM tickets ORDER BY id;
SELECT bool_and(phi3_classify(body, ARRAY['billing', 'praise', 'bug report', 'shipping'])
                = ANY (ARRAY['billing', 'praise', 'bug report', 'shipping'])) AS always_a_label,
       count(DISTINCT phi3_classify(body, ARRAY['billing', 'praise', 'bug report', 'shipping'])) >= 1 AS some_label
FROM tickets;
-- deterministic: the same call twice gives the same label
SELECT phi3_classify(body, ARRAY['yes', 'no', 'maybe']) = phi3_classify(body, ARRAY['yes', 'no', 'maybe']) AS same
FROM tickets WHERE id = 1;
-- labels that share prefixes, need escaping, or are not ASCII come back exactly as written
SELECT phi3_classify('Le colis est arrivé.', ARRAY['livré', 'livré en retard', 'perdu "quelque part"', 'back\slash'])
       = ANY (ARRAY['livré', 'livré en retard', 'perdu "quelque part"', 'back\slash']) AS exact_label;
SELECT phi3_classify(body, ARRAY['a', 'ab', 'abc'], 'Choose the best label.') IN ('a', 'ab', 'abc') AS prefix_labels
FROM tickets WHERE id = 2;
-- one label: no choice to make; a NULL document gives NULL
SELECT phi3_classify('anything', ARRAY['only']) AS single, phi3_classify(NULL, ARRAY['a', 'b']) IS NULL AS null_doc;
-- errors
SELECT regress_error($$SELECT phi3_classify('x', ARRAY[]::text[])$$);
SELECT regress_error($$SELECT phi3_classify('x', NULL)$$);
SELECT regress_error($$SELECT phi3_classify('x', ARRAY['a', NULL])$$);
SELECT regress_error($$SELECT phi3_classify('x', ARRAY['a', ''])$$);
SELECT regress_error($$SELECT phi3_classify('x', ARRAY['a', 'b', 'a'])$$);
SELECT regress_error($$SELECT phi3_classify('x', ARRAY['a', E'b\nc'])$$);
-- on a quantized model too
SET phi3.model = :'tiny_q4_k';
SELECT phi3_classify(body, ARRAY['billing', 'praise', 'bug report', 'shipping'])
       = ANY (ARRAY['billing', 'praise', 'bug report', 'shipping']) AS q4_k_label
FROM tickets WHERE id = 3;
RESET phi3.model;

-- phi3_classify_scores: every label with its probability, from the
-- model's token log-probabilities (no sampling); they sum to 1
CREATE TEMP TABLE scores AS
SELECT t.id, s.label, s.probability
FROM tickets t, phi3_classify_scores(t.body, ARRAY['billing', 'praise', 'bug report', 'shipping']) AS s;
SELECT id, count(*) AS n_labels, abs(sum(probability) - 1) < 1e-6 AS sums_to_1,
       bool_and(probability BETWEEN 0 AND 1) AS in_range
FROM scores GROUP BY id ORDER BY id;
-- labels in the order given
SELECT array_agg(label) AS labels FROM phi3_classify_scores('x', ARRAY['b', 'a', 'c']);
-- deterministic (the prompt lists the labels, so their order is part of it)
SELECT (SELECT array_agg(probability) FROM phi3_classify_scores('Where is my parcel?', ARRAY['shipping', 'praise']))
     = (SELECT array_agg(probability) FROM phi3_classify_scores('Where is my parcel?', ARRAY['shipping', 'praise'])) AS deterministic;
-- the label phi3_classify picks is the most probable one for labels of one token each
SELECT (SELECT label FROM phi3_classify_scores(body, ARRAY['a', 'b', 'c']) ORDER BY probability DESC LIMIT 1)
       = phi3_classify(body, ARRAY['a', 'b', 'c']) AS argmax_is_classify
FROM tickets WHERE id = 1;
-- one label: probability 1 without the model; NULL document: no rows
SELECT * FROM phi3_classify_scores('x', ARRAY['only']);
SELECT count(*) AS null_doc_rows FROM phi3_classify_scores(NULL, ARRAY['a', 'b']);
-- errors, as phi3_classify's
SELECT regress_error($$SELECT * FROM phi3_classify_scores('x', ARRAY[]::text[])$$);
SELECT regress_error($$SELECT * FROM phi3_classify_scores('x', NULL)$$);
SELECT regress_error($$SELECT * FROM phi3_classify_scores('x', ARRAY['a', 'a'])$$);
