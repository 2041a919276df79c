--
-- summarize: phi3_summarize over stored reports (the tiny model writes
-- nonsense, but deterministic nonsense: the outputs are pinned).
--
CREATE TABLE reports (id int PRIMARY KEY, body text);
INSERT INTO reports VALUES
  (1, 'The quarterly report shows that revenue grew by 12 percent while costs fell by 3 percent. The board approved a new budget for the data team.'),
  (2, 'Customer complaint: the delivery arrived two weeks late and the box was damaged. The customer asks for a refund of the shipping costs.'),
  (3, 'Maintenance log: pump 4 was replaced on Monday. Pressure readings are back to normal. Next inspection is due in six months.'),
  (4, NULL),
  (5, ''),
  (6, E'   \n\t  ');

SELECT id, phi3_summarize(body, 10) FROM reports WHERE id <= 3 ORDER BY id;
-- a focus changes the instruction, so the prompt and the answer
SELECT id, phi3_summarize(body, 10, 'costs') FROM reports WHERE id = 1;
-- the prompt (prompts.c) and the answer budget (ceil(1.6 * max_words) + 8
-- tokens) are exactly these: the same text as phi3_generate gives for them
SELECT phi3_summarize(body, 10) = btrim(phi3_generate(
         E'Summarize the following document in at most 10 words. Reply with the summary only.\n\n' || body,
         'You are a concise assistant that summarizes documents faithfully.', 24), E' \t\n\r\f') AS same_as_generate
FROM reports WHERE id = 1;
SELECT phi3_summarize(body, 10, 'costs') = btrim(phi3_generate(
         E'Summarize the following document in at most 10 words, focusing on costs. Reply with the summary only.\n\n' || body,
         'You are a concise assistant that summarizes documents faithfully.', 24), E' \t\n\r\f') AS focus_same_as_generate
FROM reports WHERE id = 1;
-- the default is 60 words, 104 tokens
SELECT phi3_summarize(body) = btrim(phi3_generate(
         E'Summarize the following document in at most 60 words. Reply with the summary only.\n\n' || body,
         'You are a concise assistant that summarizes documents faithfully.', 104), E' \t\n\r\f') AS default_same_as_generate
FROM reports WHERE id = 1;
-- the summary is trimmed
SELECT bool_and(s = btrim(s, E' \t\n\r')) AS trimmed
FROM (SELECT phi3_summarize(body, 10) AS s FROM reports WHERE id <= 3) AS t;

-- NULL document: NULL; empty or blank document: empty summary, no model run
SELECT id, phi3_summarize(body, 10) IS NULL AS is_null, phi3_summarize(body, 10) = '' AS is_empty
FROM reports WHERE id >= 4 ORDER BY id;
-- NULL options mean the defaults
SELECT phi3_summarize(body, NULL, NULL) = phi3_summarize(body, 60) AS null_options
FROM reports WHERE id = 2;
SELECT phi3_summarize(body, 10, '') = phi3_summarize(body, 10) AS empty_focus
FROM reports WHERE id = 2;

-- argument errors
SELECT phi3_summarize('text', 0);
SELECT phi3_summarize('text', 10001);
