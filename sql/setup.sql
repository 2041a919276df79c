--
-- setup: create the extension and point the regression database at the
-- test models (made by "make test-models" in $PHI3_TEST_MODEL_DIR).
--
CREATE EXTENSION phi3;
\dx+ phi3

-- Every later test file runs in a new session of this database and gets
-- the tiny f32 model from the database's settings.
\getenv model_dir PHI3_TEST_MODEL_DIR
SELECT current_database() AS dbname \gset
\set model :model_dir '/tiny-f32.gguf'
ALTER DATABASE :"dbname" SET phi3.model = :'model';
-- the portable scalar kernels give the same numbers on every CPU, so the
-- pinned outputs hold on any machine (generate also checks phi3.kernels = auto)
ALTER DATABASE :"dbname" SET phi3.kernels = 'reference';
ALTER DATABASE :"dbname" SET regress.model_dir = :'model_dir';

-- regress_error(query) runs a query and returns its error as one line,
-- "SQLSTATE: message [DETAIL: ...] [HINT: ...]", with the model directory
-- shown as $DIR, so that expected files do not depend on where the models
-- are; 'no error' if it succeeds.
CREATE FUNCTION regress_error(query text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	state text;
	msg text;
	detail text;
	hint text;
BEGIN
	EXECUTE query;
	RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT;
	RETURN replace(state || ': ' || msg
				   || coalesce(' DETAIL: ' || nullif(detail, ''), '')
				   || coalesce(' HINT: ' || nullif(hint, ''), ''),
				   current_setting('regress.model_dir'), '$DIR');
END
$$;

-- The setting reaches new sessions (test files run in new sessions)
\c
SELECT current_setting('phi3.model') = current_setting('regress.model_dir') || '/tiny-f32.gguf' AS model_set;
SELECT regress_error('SELECT 1/0');
