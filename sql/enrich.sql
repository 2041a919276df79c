--
-- enrich: phi3_enrich fills a column in place where it is NULL, from a
-- template read as phi3_fill reads it, as the caller; on an ordinary table
-- (this database has no Citus: the distributed path is t/011_citus.pl) it
-- is one UPDATE in the caller's transaction.  Arguments are checked, and
-- none of them can change the statement (phi3_enrich_command shows it).
--
SET phi3.max_tokens = 8;
-- (the caller's phi3.max_tokens, phi3.temperature and phi3.seed are passed
-- on as arguments; load phi3 first, so that its settings exist here)
SELECT phi3_token_count('x') > 0 AS loaded;

CREATE TABLE tickets (id int PRIMARY KEY, title text, body text, summary text);
INSERT INTO tickets VALUES
  (1, 'Printer', 'The printer on floor 2 jams.', NULL),
  (2, 'VPN', 'VPN drops every hour.', 'Given by hand.'),
  (3, 'Mail', NULL, NULL);

-- the statement: target := the trimmed phi3_generate answer, only where NULL
SELECT phi3_enrich_command('tickets', 'summary', 'Summarize {title}: {body}', 'You are brief.');

-- two rows were NULL; the given one is kept; a NULL column renders as ''
SELECT phi3_enrich('tickets', 'summary', 'Summarize {title}: {body}', 'You are brief.');
SELECT id, summary = btrim(phi3_generate('Summarize ' || title || ': ' || coalesce(body, ''), 'You are brief.'), E' \t\n\r\f') AS same_as_generate,
       summary = 'Given by hand.' AS kept
FROM tickets ORDER BY id;
-- idempotent: nothing is NULL any more
SELECT phi3_enrich('tickets', 'summary', 'Summarize {title}: {body}', 'You are brief.');

-- the same values as a phi3_fill trigger with the same template
CREATE TABLE tickets_trig (id int PRIMARY KEY, title text, body text, summary text);
CREATE TRIGGER tickets_fill BEFORE INSERT ON tickets_trig FOR EACH ROW
  EXECUTE FUNCTION phi3_fill('summary', 'Summarize {title}: {body}', 'You are brief.');
INSERT INTO tickets_trig SELECT id, title, body, NULL FROM tickets WHERE id <> 2;
SELECT count(*) AS rows, count(*) FILTER (WHERE t.summary = g.summary) AS equal
FROM tickets t JOIN tickets_trig g USING (id);

-- max_tokens and the session's settings are passed to phi3_generate
UPDATE tickets SET summary = NULL;
SET phi3.max_tokens = 2;
SELECT phi3_enrich('tickets', 'summary', '{title}', max_tokens => 3);
SELECT bool_and(summary = btrim(phi3_generate(title, NULL, 3), E' \t\n\r\f')) AS three_tokens FROM tickets;
UPDATE tickets SET summary = NULL;
SELECT phi3_enrich('tickets', 'summary', '{title}');
SELECT bool_and(summary = btrim(phi3_generate(title, NULL, 2), E' \t\n\r\f')) AS setting_used FROM tickets;
SET phi3.max_tokens = 8;

-- varchar(n) and domains over it: the answer is cut to fit, as phi3_fill does
CREATE DOMAIN short_text AS varchar(7);
CREATE TABLE labels (id int, topic text, tag varchar(5), note short_text);
INSERT INTO labels VALUES (1, 'backups', NULL, NULL);
SELECT phi3_enrich('labels', 'tag', 'Tag for {topic}.'), phi3_enrich('labels', 'note', 'Note on {topic}.');
SELECT tag = left(btrim(phi3_generate('Tag for backups.'), E' \t\n\r\f'), 5) AS tag_cut,
       note = left(btrim(phi3_generate('Note on backups.'), E' \t\n\r\f'), 7) AS note_cut
FROM labels;

-- no argument can change the statement: odd identifiers are quoted, the
-- template and the system prompt are literals
CREATE TABLE "Odd ""names""" ("the id" int, "Body; DROP TABLE tickets; --" text, "sum""mary" text);
INSERT INTO "Odd ""names""" VALUES (1, 'x', NULL);
SELECT phi3_enrich_command('"Odd ""names"""', 'sum"mary', $t$'); DROP TABLE tickets; -- {Body; DROP TABLE tickets; --} $$ \' {{x}}$t$,
                           $s$'; DROP TABLE tickets; --$s$, 4);
SELECT phi3_enrich('"Odd ""names"""', 'sum"mary', $t$'); DROP TABLE tickets; -- {Body; DROP TABLE tickets; --} $$ \' {{x}}$t$,
                   $s$'; DROP TABLE tickets; --$s$, 4);
SELECT "sum""mary" = btrim(phi3_generate($t$'); DROP TABLE tickets; -- x $$ \' {x}$t$, $s$'; DROP TABLE tickets; --$s$, 4), E' \t\n\r\f') AS prompt_taken_literally
FROM "Odd ""names""";
SELECT count(*) AS tickets_still_there FROM tickets;

-- it runs as the caller: no UPDATE privilege, no enrichment
CREATE ROLE regress_enrich_reader;
GRANT SELECT ON tickets TO regress_enrich_reader;
UPDATE tickets SET summary = NULL WHERE id = 1;
SET ROLE regress_enrich_reader;
SELECT regress_error($$SELECT phi3_enrich('tickets', 'summary', '{title}')$$);
RESET ROLE;
DROP OWNED BY regress_enrich_reader;
DROP ROLE regress_enrich_reader;

-- inside the caller's transaction: a rollback undoes it
BEGIN;
SELECT phi3_enrich('tickets', 'summary', '{title}');
ROLLBACK;
SELECT summary IS NULL AS rolled_back FROM tickets WHERE id = 1;

-- mistakes, before anything runs
CREATE TABLE wrong (id int, n int, g text GENERATED ALWAYS AS ('x') STORED, dropped text, s text);
ALTER TABLE wrong DROP COLUMN dropped;
CREATE VIEW wrong_view AS SELECT * FROM wrong;
SELECT regress_error($$SELECT phi3_enrich(NULL, 's', 'x')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', NULL, 'x')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 's', NULL)$$);
SELECT regress_error($$SELECT phi3_enrich('wrong_view', 's', 'x')$$);
SELECT regress_error($$SELECT phi3_enrich('no_such_table', 's', 'x')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 'missing', 'x')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 'dropped', 'x')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 'n', 'x')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 'g', 'x')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 's', 'About {nme}')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 's', 'About {dropped}')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 's', 'About {}')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 's', 'About {id')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 's', 'About {')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 's', 'About } x')$$);
SELECT regress_error($$SELECT phi3_enrich('wrong', 's', 'About {id}', max_tokens => -1)$$);
-- an empty table: nothing to do, nothing run
SELECT phi3_enrich('wrong', 's', 'About {id}');

DROP TABLE tickets, tickets_trig, labels, "Odd ""names""", wrong CASCADE;
DROP DOMAIN short_text;
