--
-- demo: the trained demonstration model (models/phi3-demo-q8_0.gguf, see
-- tools/train/README.md) on new documents (not in the training data).
-- Each check below is a boolean column; the expected output holds the
-- answer, so a model or engine change that loses a right answer fails.
-- Right and asserted (t): the invoice's amount, currency, date and due
-- date; the ticket's amount and date; the kind of all four documents and
-- the ticket's team; every summary within the word limit, two of them
-- naming their key fact; the trigger's description naming the product
-- and its price; the file's honest name.  Wrong and pinned (f or a wrong
-- value), where the model invents a name instead of copying it (run 2
-- copies numbers and dates, not yet invented names): the customers, the
-- reporter, two summaries' names.
-- Outputs are greedy with the reference kernels (the database's setting).
--
\getenv model_dir PHI3_TEST_MODEL_DIR
\set demo :model_dir '/demo-q8_0.gguf'
SET phi3.model = :'demo';
SELECT phi3_model_info()->>'name' AS name,
       phi3_model_info()->>'description' LIKE 'A demonstration model%not Phi-3%' AS says_what_it_is;

CREATE TEMP TABLE docs (id int, body text);
INSERT INTO docs VALUES
(1, 'Kestrel Analytics issued invoice INV-55817 to Marlow Freight Ltd on 14 March 2025. It covers 12 units of standing desks and totals 7,320.00 EUR. Payment is due by 13 April 2025. The goods were shipped from Lyon.'),
(2, 'On 2 June 2025 the payment gateway was unavailable from 09:10 to 10:25 UTC after an expired TLS certificate. Severity: high. The platform team fixed it and restored the service. It was reported by Greta Lindqvist from the Oslo site. No data was lost.'),
(3, 'Omar Haas was charged twice for order 77120, placed on 5 May 2025. The order value is 249.90 GBP. Priority: medium. Status: open. The customer asks for an update.'),
(4, 'Met with Ingrid Walsh of Bluepeak Dairy on 9 October 2025 in Porto. They want our platform for 40 stores. Budget is about 52,000 USD for the first year. Main competitor is OrderFlow. Deal stage: negotiation.');

-- extraction (decoded under the schema): the invoice's facts
CREATE TEMP TABLE facts AS
SELECT phi3_extract(body, '{"customer":"text","amount":"numeric","currency":"text","date":"date","due_date":"date?"}') AS f
FROM docs WHERE id = 1;
SELECT f AS facts FROM facts;
SELECT f->>'customer' = 'Marlow Freight Ltd' AS customer_ok,
       (f->>'amount')::numeric = 7320.00 AS amount_ok,
       f->>'currency' = 'EUR' AS currency_ok,
       f->>'date' = '2025-03-14' AS date_ok,
       f->>'due_date' = '2025-04-13' AS due_ok
FROM facts;
-- an enum field and a person from the incident; a field the document lacks is null
SELECT phi3_extract(body, '{"priority":["low","medium","high","critical"],"reporter":"text","discount":"numeric?"}') AS facts
FROM docs WHERE id = 2;
-- into a typed row
CREATE TYPE demo_ticket AS (customer text, amount numeric, date date);
SELECT t.*, t.amount = 249.90 AS amount_ok, t.date = '2025-05-05' AS date_ok
FROM docs, LATERAL phi3_extract(body, NULL::demo_ticket) t WHERE id = 3;

-- classification: the kind of each document, and the ticket's team
SELECT id, phi3_classify(body, ARRAY['invoice', 'incident report', 'support ticket', 'sales note']) AS kind,
       phi3_classify(body, ARRAY['invoice', 'incident report', 'support ticket', 'sales note'])
         = (ARRAY['invoice', 'incident report', 'support ticket', 'sales note'])[id] AS right_kind
FROM docs ORDER BY id;
SELECT phi3_classify(body, ARRAY['billing', 'technical', 'shipping', 'account']) AS team
FROM docs WHERE id = 3;

-- summaries within the word limit that name who and how much / when
CREATE TEMP TABLE summaries AS SELECT id, phi3_summarize(body, 30) AS s FROM docs;
SELECT id, s AS summary,
       array_length(regexp_split_to_array(s, '\s+'), 1) <= 30 AS within_limit,
       CASE id WHEN 1 THEN s LIKE '%Marlow Freight Ltd%' AND s LIKE '%7,320.00 EUR%'
               WHEN 2 THEN s LIKE '%2 June 2025%'
               WHEN 3 THEN s LIKE '%Omar Haas%'
               WHEN 4 THEN s LIKE '%Bluepeak Dairy%' END AS names_key_facts
FROM summaries ORDER BY id;

-- a trigger fills a product description from the row: it names the product
CREATE TEMP TABLE products (id int, name text, category text, color text, price numeric, description text);
CREATE FUNCTION demo_describe() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	IF NEW.description IS NULL THEN
		NEW.description := phi3_describe(to_jsonb(NEW));
	END IF;
	RETURN NEW;
END $$;
CREATE TRIGGER products_describe BEFORE INSERT ON products FOR EACH ROW EXECUTE FUNCTION demo_describe();
INSERT INTO products VALUES (7, 'Cobalt Air 12', 'desk lamp', 'silver', 39.90, NULL);
SELECT description, description LIKE '%Cobalt Air 12%' AS names_product, description LIKE '%39.90%' AS names_price
FROM products;

DROP TYPE demo_ticket;
RESET phi3.model;
