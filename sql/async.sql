--
-- async: phi3_fill_async queues rows with the user's transaction (nothing
-- is generated in it), reports its mistakes on the first row; the queue's
-- views, phi3_async_wait, phi3_async_retry and phi3_async_purge, and who
-- may use them.  This server has no phi3 in shared_preload_libraries, so
-- no worker runs: rows stay queued and a WARNING says so.  The workers
-- are tested in t/012_async.pl.
--
-- (a schema of its own: other tests leave tables behind)
CREATE SCHEMA async_test;
SET search_path = async_test, public;

CREATE TABLE products (id int PRIMARY KEY, name text, description text);
CREATE TRIGGER products_fill AFTER INSERT OR UPDATE ON products FOR EACH ROW
  EXECUTE FUNCTION phi3_fill_async('description', 'Describe {name} in one sentence.');

-- two rows queued by one statement: one WARNING; a row with a value is not queued
INSERT INTO products VALUES (1, 'Desk lamp', NULL), (2, 'Pen', NULL), (3, 'Mug', 'Given.');
-- nothing was generated in the transaction
SELECT id, description FROM products ORDER BY id;
SELECT table_name, column_name, key, state, attempts, last_error, outcome FROM phi3_queue_items ORDER BY id;

-- a rolled-back insert queues nothing
BEGIN;
INSERT INTO products VALUES (4, 'Chair', NULL);
SELECT count(*) AS queued_inside FROM phi3_queue_items;
ROLLBACK;
SELECT count(*) AS queued_after_rollback FROM phi3_queue_items;
-- so does a rolled-back savepoint
BEGIN;
SAVEPOINT s;
INSERT INTO products VALUES (5, 'Sofa', NULL);
ROLLBACK TO SAVEPOINT s;
INSERT INTO products VALUES (6, 'Rug', NULL);
COMMIT;
SELECT key FROM phi3_queue_items ORDER BY id;

-- an UPDATE that leaves the column NULL does not queue the row twice
UPDATE products SET name = 'Desk lamp, brass' WHERE id = 1;
SELECT count(*) AS items_of_row_1 FROM phi3_queue_items WHERE key = '{1}';
-- an UPDATE of a row whose column is set queues nothing
UPDATE products SET name = 'Big mug' WHERE id = 3;
SELECT count(*) AS items_of_row_3 FROM phi3_queue_items WHERE key = '{3}';

SELECT table_name, column_name, pending, running, done, failed, oldest_pending_age > '0'::interval AS has_age
FROM phi3_queue_status;

-- waiting: no worker runs, so it says so at once and returns false
SELECT phi3_async_wait(30);
-- an empty queue (of another table) needs no worker
CREATE TABLE empty_t (id int PRIMARY KEY, v text);
SELECT phi3_async_wait(0, 'empty_t');
-- not inside the transaction that queued, nor under a snapshot that cannot see the workers
BEGIN;
INSERT INTO products VALUES (7, 'Vase', NULL);
SELECT regress_error('SELECT phi3_async_wait(1)');
ROLLBACK;
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT regress_error('SELECT phi3_async_wait(1)');
ROLLBACK;
SELECT regress_error('SELECT phi3_async_wait(-1)');

-- composite keys, and a replica identity index instead of a primary key
CREATE TABLE pairs (a int, b text, note text, PRIMARY KEY (b, a));
CREATE TRIGGER pairs_fill AFTER INSERT ON pairs FOR EACH ROW
  EXECUTE FUNCTION phi3_fill_async('note', 'Note on {a} and {b}.');
INSERT INTO pairs VALUES (1, 'x,y "z"', NULL);
CREATE TABLE ident (code text NOT NULL, note text);
CREATE UNIQUE INDEX ident_code ON ident (code);
ALTER TABLE ident REPLICA IDENTITY USING INDEX ident_code;
CREATE TRIGGER ident_fill AFTER INSERT ON ident FOR EACH ROW
  EXECUTE FUNCTION phi3_fill_async('note', 'Note on {code}.');
INSERT INTO ident VALUES ('A-1', NULL);
SELECT table_name, key FROM phi3_queue_items WHERE table_name IN ('pairs'::regclass, 'ident'::regclass) ORDER BY id;
-- date and time keys are queued in ISO style whatever the session's
-- DateStyle (the worker reads them back with its own)
CREATE TABLE readings (at timestamptz, day date, span interval, note text, PRIMARY KEY (at, day, span));
CREATE TRIGGER readings_fill AFTER INSERT ON readings FOR EACH ROW
  EXECUTE FUNCTION phi3_fill_async('note', 'Reading of {day}.');
SET datestyle = 'German, DMY';
SET intervalstyle = 'sql_standard';
SET timezone = 'Europe/Berlin';
INSERT INTO readings VALUES ('2024-03-01 12:30:00+00', '2024-03-02', '1 day 02:00:00', NULL);
SELECT key FROM phi3_queue_items WHERE table_name = 'readings'::regclass;
SHOW datestyle;
RESET datestyle;
RESET intervalstyle;
RESET timezone;
SELECT key[1]::timestamptz = '2024-03-01 12:30:00+00' AND key[2]::date = '2024-03-02'
       AND key[3]::interval = '1 day 02:00:00' AS same_key
FROM phi3_queue_items WHERE table_name = 'readings'::regclass;

-- mistakes show on the first row
CREATE TABLE nokey (id int, note text);
CREATE TRIGGER t AFTER INSERT ON nokey FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('note', 'x');
SELECT regress_error('INSERT INTO nokey VALUES (1, NULL)');
ALTER TABLE nokey REPLICA IDENTITY FULL;
SELECT regress_error('INSERT INTO nokey VALUES (1, NULL)');
DROP TABLE nokey;
CREATE TABLE bad (id int PRIMARY KEY, name text, n int, note text);
CREATE TRIGGER t BEFORE INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('note', 'x');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t AFTER INSERT ON bad FOR EACH STATEMENT EXECUTE FUNCTION phi3_fill_async('note', 'x');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t AFTER DELETE ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('note', 'x');
INSERT INTO bad VALUES (1, 'a', 1, 'x');
SELECT regress_error('DELETE FROM bad');
DROP TRIGGER t ON bad;
CREATE TRIGGER t AFTER INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('note');
SELECT regress_error('INSERT INTO bad VALUES (2, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t AFTER INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('missing', 'x');
SELECT regress_error('INSERT INTO bad VALUES (2, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t AFTER INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('n', 'x');
SELECT regress_error('INSERT INTO bad VALUES (2, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t AFTER INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('note', 'About {nope}.');
-- (the column has a value: the template is checked all the same)
SELECT regress_error('INSERT INTO bad VALUES (2, ''a'', 1, ''set'')');
DROP TRIGGER t ON bad;
CREATE TRIGGER t AFTER INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill_async('note', 'About {name');
SELECT regress_error('INSERT INTO bad VALUES (2, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
SELECT regress_error('SELECT phi3_fill_async()');
SELECT count(*) AS items_of_bad FROM phi3_queue_items WHERE table_name = 'bad'::regclass;

-- retry and purge: failed items (made here by hand: no worker runs) go
-- back to pending with their attempts reset
UPDATE phi3_async_queue SET state = 'failed', attempts = 3, last_error = 'boom' WHERE key = '{2}';
UPDATE phi3_async_queue SET state = 'done', outcome = 'filled' WHERE key = '{6}';
SELECT key, state, attempts, last_error FROM phi3_queue_items WHERE table_name = 'products'::regclass ORDER BY id;
SELECT phi3_async_retry('products');
SELECT key, state, attempts, last_error FROM phi3_queue_items WHERE key = '{2}';
SELECT phi3_async_retry();
SELECT phi3_async_purge('products');
SELECT key, state FROM phi3_queue_items WHERE table_name = 'products'::regclass ORDER BY id;
SELECT regress_error($$SELECT phi3_async_purge('products', '{running}')$$);
SELECT regress_error($$SELECT phi3_async_purge('products', '{later}')$$);
SELECT regress_error($$SELECT phi3_async_purge('products', '{NULL}')$$);
SELECT regress_error($$SELECT phi3_async_purge('products', NULL)$$);

-- privileges: a role sees the items of the tables it may read, retries and
-- purges those of the tables it owns, and cannot touch the queue itself
CREATE ROLE regress_phi3_async_owner;
CREATE ROLE regress_phi3_async_other;
GRANT USAGE, CREATE ON SCHEMA async_test TO regress_phi3_async_owner;
GRANT USAGE ON SCHEMA async_test TO regress_phi3_async_other;
SET ROLE regress_phi3_async_owner;
CREATE TABLE owned (id int PRIMARY KEY, body text, summary text);
CREATE TRIGGER owned_fill AFTER INSERT ON owned FOR EACH ROW
  EXECUTE FUNCTION phi3_fill_async('summary', 'Summarize: {body}');
INSERT INTO owned VALUES (1, 'first', NULL), (2, 'second', NULL);
SELECT table_name, key, state FROM phi3_queue_items ORDER BY id;
SELECT table_name, pending FROM phi3_queue_status;
SELECT regress_error('SELECT * FROM phi3_async_queue');
SELECT regress_error('DELETE FROM phi3_async_queue');
SELECT regress_error($$SELECT phi3_async_purge('products', '{pending}')$$);
-- the queue's statements run as its owner with search_path = pg_catalog:
-- an operator of the caller's schemas never runs with the owner's rights
RESET ROLE;
CREATE SCHEMA evil;
CREATE FUNCTION evil.oideq(oid, oid) RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
	RAISE NOTICE 'evil operator runs as %', current_user;
	RETURN $1 OPERATOR(pg_catalog.=) $2;
END $$;
CREATE OPERATOR evil.= (FUNCTION = evil.oideq, LEFTARG = oid, RIGHTARG = oid);
GRANT USAGE ON SCHEMA evil TO regress_phi3_async_owner;
UPDATE phi3_async_queue SET state = 'failed' WHERE relid = 'owned'::regclass;
SET ROLE regress_phi3_async_owner;
SET search_path = evil, pg_catalog, async_test, public;
SELECT 1::oid = 1::oid AS evil_is_first;
SELECT phi3_async_retry('owned') AS retried;
INSERT INTO owned VALUES (10, 'x', NULL);
DELETE FROM owned WHERE id = 10;
SET search_path = async_test, public;
RESET ROLE;
DROP SCHEMA evil CASCADE;
SET ROLE regress_phi3_async_owner;
SELECT phi3_async_purge(NULL, '{pending}') AS purged_own;
INSERT INTO owned VALUES (3, 'third', NULL);
SET ROLE regress_phi3_async_other;
SELECT count(*) AS other_sees FROM phi3_queue_items;
SELECT regress_error($$SELECT phi3_async_retry('owned')$$);
SELECT phi3_async_purge(NULL, '{pending,done,failed}') AS other_purged;
RESET ROLE;
GRANT SELECT ON owned TO regress_phi3_async_other;
SET ROLE regress_phi3_async_other;
SELECT table_name, key FROM phi3_queue_items;
RESET ROLE;
GRANT pg_read_all_stats TO regress_phi3_async_other;
SET ROLE regress_phi3_async_other;
SELECT count(*) > 1 AS sees_all FROM phi3_queue_items;
RESET ROLE;
SELECT table_name, key, state FROM phi3_queue_items ORDER BY id;

-- DROP TRIGGER and DROP TABLE take their items with them
DROP TRIGGER pairs_fill ON pairs;
DROP TABLE ident;
SELECT count(*) AS left_of_pairs FROM phi3_async_queue WHERE relid = 'pairs'::regclass;
SELECT table_name FROM phi3_queue_items ORDER BY id;
DROP TABLE owned;
SELECT count(*) AS items_left FROM phi3_async_queue WHERE relid NOT IN (SELECT oid FROM pg_class);

DROP TABLE products, pairs, bad, empty_t, readings;
SELECT count(*) AS queue_empty FROM phi3_async_queue;
DROP SCHEMA async_test;
DROP ROLE regress_phi3_async_owner;
DROP ROLE regress_phi3_async_other;
