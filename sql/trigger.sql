--
-- trigger: phi3_fill fills a NULL column on INSERT and UPDATE from a
-- prompt template, leaves provided values alone, and reports mistakes
-- on the first row.
--
SET phi3.max_tokens = 12;

CREATE TABLE items (id int PRIMARY KEY, name text, category text, description text);
CREATE TRIGGER items_fill BEFORE INSERT OR UPDATE ON items FOR EACH ROW
  EXECUTE FUNCTION phi3_fill('description', 'Write a one-sentence product description for {name} ({category}).');

INSERT INTO items VALUES (1, 'Desk lamp', 'home', NULL), (2, 'Fountain pen', 'office', 'Written by hand.');
INSERT INTO items (id, name, category) VALUES (3, 'Stapler', 'office');
SELECT id, description FROM items ORDER BY id;
-- the text is phi3_generate's answer to the rendered template, trimmed
SELECT id, description = btrim(phi3_generate('Write a one-sentence product description for ' || name || ' (' || category || ').'), E' \t\n\r\f') AS same_as_generate
FROM items WHERE id IN (1, 3) ORDER BY id;

-- UPDATE: a NULL description is filled from the new row's values ...
UPDATE items SET description = NULL, name = 'Ink pen' WHERE id = 2;
SELECT description = btrim(phi3_generate('Write a one-sentence product description for Ink pen (office).'), E' \t\n\r\f') AS filled_from_new_row
FROM items WHERE id = 2;
-- ... and a present one is kept
UPDATE items SET category = 'study' WHERE id = 1 RETURNING description = (SELECT description FROM items WHERE id = 1) AS kept;
UPDATE items SET description = 'Manual text.' WHERE id = 3;
SELECT description FROM items WHERE id = 3;

-- a system prompt as third argument; braces escaped; a NULL column renders as ''
CREATE TABLE notes (id int, topic text, body varchar(24));
CREATE TRIGGER notes_fill BEFORE INSERT ON notes FOR EACH ROW
  EXECUTE FUNCTION phi3_fill('body', 'Note about {{topic}}: {topic}.', 'You write short notes.');
INSERT INTO notes VALUES (1, 'backups', NULL), (2, NULL, NULL);
-- varchar(24): the answer is cut to fit
SELECT id, length(body) <= 24 AS fits, body = left(btrim(phi3_generate(CASE id WHEN 1 THEN 'Note about {topic}: backups.' ELSE 'Note about {topic}: .' END, 'You write short notes.'), E' \t\n\r\f'), 24) AS same_as_generate
FROM notes ORDER BY id;

-- a domain over varchar(n) or char(n): the answer is cut to the domain's
-- length, as for the plain type
CREATE DOMAIN short_note AS varchar(10);
CREATE DOMAIN fixed_note AS char(6);
CREATE TABLE dnotes (id int, topic text, body short_note, tag fixed_note);
CREATE TRIGGER dnotes_body BEFORE INSERT ON dnotes FOR EACH ROW
  EXECUTE FUNCTION phi3_fill('body', 'Note about {topic}.');
CREATE TRIGGER dnotes_tag BEFORE INSERT ON dnotes FOR EACH ROW
  EXECUTE FUNCTION phi3_fill('tag', 'Tag for {topic}.');
INSERT INTO dnotes VALUES (1, 'backups', NULL, NULL);
SELECT length(body) AS body_length, body = left(btrim(phi3_generate('Note about backups.'), E' \t\n\r\f'), 10) AS body_same_as_generate,
       length(tag) AS tag_length, tag = left(btrim(phi3_generate('Tag for backups.'), E' \t\n\r\f'), 6)::char(6) AS tag_same_as_generate
FROM dnotes;

-- mistakes, reported when the trigger fires (a row is inserted)
CREATE TABLE bad (id int, name text, n int, description text);
CREATE TRIGGER t BEFORE INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill('missing', 'x');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t BEFORE INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill('n', 'x');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t BEFORE INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill('description', 'About {nme}');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
-- checked even when the column is provided
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, ''given'')');
DROP TRIGGER t ON bad;
CREATE TRIGGER t BEFORE INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill('description', 'About {name');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t BEFORE INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill('description', 'About name}');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t BEFORE INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill('description');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t AFTER INSERT ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill('description', 'x');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t BEFORE INSERT ON bad FOR EACH STATEMENT EXECUTE FUNCTION phi3_fill('description', 'x');
SELECT regress_error('INSERT INTO bad VALUES (1, ''a'', 1, NULL)');
DROP TRIGGER t ON bad;
CREATE TRIGGER t BEFORE DELETE ON bad FOR EACH ROW EXECUTE FUNCTION phi3_fill('description', 'x');
INSERT INTO bad VALUES (1, 'a', 1, NULL);
SELECT regress_error('DELETE FROM bad');
DROP TRIGGER t ON bad;
-- called as a plain function
SELECT phi3_fill();
SELECT count(*) AS rows_left_by_errors FROM bad;
