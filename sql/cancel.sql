--
-- cancel: statement_timeout stops a long generation (the engine polls the
-- pending cancel between layers and tokens), and the session stays usable
-- with a working engine.  Timing proofs (stopped within one token) and
-- pg_cancel_backend from another session are in the TAP tests.
--
-- 4000 tokens take many seconds on the tiny model (it does not stop early)
SET phi3.context_size = 4096;
SET statement_timeout = '300ms';
SELECT length(phi3_complete('Once upon a time', 4000));
RESET statement_timeout;
-- the session, the model and the aborted context still work, and give the
-- same texts as in the generate test
SELECT phi3_complete('Once upon a time', 8);
SELECT phi3_generate('Hello', max_tokens => 8);
