--
-- overflow: an input that does not fit phi3.context_size is an error, or
-- with phi3.input_overflow = truncate its document is shortened (never the
-- instruction or the template) with a NOTICE.
--
SET phi3.context_size = 64;
\set long_doc 'Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega. Alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau upsilon phi chi psi omega.'
SELECT phi3_token_count(:'long_doc') AS doc_tokens;

-- error (the default)
SHOW phi3.input_overflow;
SELECT phi3_summarize(:'long_doc', 5);
SELECT regress_error($$SELECT phi3_complete(repeat('word ', 80), 4)$$);
-- what fits still works
SELECT phi3_complete('Alpha beta', 4);

-- truncate
SET phi3.input_overflow = truncate;
SELECT phi3_summarize(:'long_doc', 5);
SELECT phi3_complete(:'long_doc', 4);
SELECT phi3_generate(:'long_doc', 'Be brief.', 4);
-- the kept part is the start of the document: the same answer as a call with
-- the shortened document given directly
SELECT phi3_complete(:'long_doc', 4) = phi3_complete(phi3_detokenize((phi3_tokenize(:'long_doc'))[1:59]), 4) AS same_as_prefix;
-- an input that fits is not touched (no notice)
SELECT phi3_complete('Alpha beta', 4);
-- a document too long to count (more than 2 * context + 1024 tokens) is
-- only tokenized that far: a huge document costs no more than that
SELECT phi3_complete(repeat('word ', 3000), 4);
SELECT phi3_complete(repeat('word ', 3000), 4) = phi3_complete(phi3_detokenize((phi3_tokenize(repeat('word ', 3000)))[1:59]), 4) AS same_as_prefix;
-- when even the instruction and the answer do not fit, truncation cannot help
SELECT phi3_generate(:'long_doc', max_tokens => 60);
SELECT phi3_summarize(:'long_doc', 100);

-- phi3.max_context_size caps phi3.context_size
RESET phi3.input_overflow;
SELECT regress_error($$SELECT phi3_complete(repeat('word ', 3000), 4)$$);
SELECT regress_error($$SELECT phi3_generate('Hi', repeat('word ', 3000), 4)$$);
SET phi3.context_size = 4096;
SET phi3.max_context_size = 64;
SELECT phi3_summarize(:'long_doc', 5);
RESET ALL;
SELECT phi3_summarize(:'long_doc', 5) <> '' AS fits_again;
