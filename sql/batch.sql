--
-- batch: enrich a table with one UPDATE; every row gets a text, rows with
-- the same input get the same text (deterministic, whatever the row order
-- and the KV-cache reuse between rows), provided values stay.
--
SET phi3.max_tokens = 16;
CREATE TABLE products (id int PRIMARY KEY, name text, category text, price numeric, description text);
INSERT INTO products VALUES
  (1, 'Desk lamp', 'home', 19.99, NULL),
  (2, 'Fountain pen', 'office', 45.00, NULL),
  (3, 'Desk lamp', 'home', 19.99, NULL),
  (4, 'Hiking boots', 'outdoor', 129.00, 'Waterproof leather boots.'),
  (5, 'Fountain pen', 'office', 45.00, NULL),
  (6, 'Tea kettle', 'kitchen', 35.50, NULL),
  (7, 'Desk lamp', 'home', 19.99, NULL),
  (8, 'Yoga mat', 'sports', 25.00, NULL);

UPDATE products SET description = phi3_describe(to_jsonb(products) - 'id')
WHERE description IS NULL;

SELECT id, name, description FROM products ORDER BY id;
SELECT count(*) FILTER (WHERE description IS NULL OR description = '') AS rows_without_text FROM products;
SELECT name, count(*) AS n_rows, count(DISTINCT description) AS n_texts
FROM products GROUP BY name ORDER BY name;
-- each row's text is what a single call gives (other row order, no shared cache state)
SELECT bool_and(description = phi3_describe(to_jsonb(p) - 'id' - 'description')) AS same_as_single_calls
FROM (SELECT * FROM products WHERE id <> 4 ORDER BY id DESC) AS p;
SELECT description = 'Waterproof leather boots.' AS provided_kept FROM products WHERE id = 4;

-- with sampling and a fixed phi3.seed, equal inputs still get equal texts
SET phi3.temperature = 0.8;
SET phi3.seed = 1234;
UPDATE products SET description = phi3_generate('Write a slogan for ' || name || '.') WHERE id <> 4;
SELECT name, count(*) AS n_rows, count(DISTINCT description) AS n_texts
FROM products WHERE id <> 4 GROUP BY name ORDER BY name;
RESET phi3.temperature;
RESET phi3.seed;

-- a query over stored rows
SELECT id, phi3_summarize(description, 5) <> '' AS summarized FROM products WHERE id IN (4, 6) ORDER BY id;
