/*-------------------------------------------------------------------------
 *
 * prompts.c
 *	  The text of every prompt the task functions send to the model.
 *
 * Kept in one place so that they can be read, reviewed and documented
 * (README, "Prompts") together.  Each task is a system message plus an
 * instruction; the user turn is the instruction followed by the document,
 * and only the document is shortened when phi3.input_overflow = truncate.
 * Arguments spliced into instructions (focus, style, field names) are
 * UTF-8, as everything handed to the engine.
 *
 *   phi3_summarize
 *     system: You are a concise assistant that summarizes documents faithfully.
 *     user:   Summarize the following document in at most N words[, focusing
 *             on FOCUS]. Reply with the summary only.\n\nDOCUMENT
 *   phi3_describe
 *     system: You are a copywriter. You write accurate, appealing texts and
 *             never invent facts.
 *     user:   Write a [STYLE ]product description for the following item. Use
 *             only facts from the data. Reply with the description only.
 *             \n\nITEM (jsonb_pretty, null fields removed)
 *   phi3_extract
 *     system: You extract data from documents. You reply with a single JSON
 *             object and nothing else.
 *     user:   Extract the data of the following document as one compact
 *             JSON value of this shape: SHAPE. Use only facts from the
 *             document. Write dates as YYYY-MM-DD.\n\nDOCUMENT
 *     where SHAPE is the schema as the engine describes it, e.g.
 *     {"amount": number, "due": string (date YYYY-MM-DD) | null}; the
 *     answer is decoded under the schema (constrain.c)
 *
 * IDENTIFICATION
 *	  src/pg/prompts.c
 *
 *-------------------------------------------------------------------------
 */
#include "pg_phi3.h"

static const char summarize_system[] =
"You are a concise assistant that summarizes documents faithfully.";

static const char describe_system[] =
"You are a copywriter. You write accurate, appealing texts and never invent facts.";

static const char extract_system[] =
"You extract data from documents. You reply with a single JSON object and nothing else.";

/* System message of phi3_summarize */
const char *
Phi3SummarizeSystem(void)
{
	return summarize_system;
}

/*
 * Instruction of phi3_summarize; focus may be NULL or empty.
 */
char *
Phi3SummarizeInstruction(int max_words, const char *focus)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "Summarize the following document in at most %d words", max_words);
	if (focus != NULL && focus[0] != '\0')
		appendStringInfo(&buf, ", focusing on %s", focus);
	appendStringInfoString(&buf, ". Reply with the summary only.\n\n");
	return buf.data;
}

/* System message of phi3_describe */
const char *
Phi3DescribeSystem(void)
{
	return describe_system;
}

/*
 * Instruction of phi3_describe; style may be NULL or empty.
 */
char *
Phi3DescribeInstruction(const char *style)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "Write a ");
	if (style != NULL && style[0] != '\0')
		appendStringInfo(&buf, "%s ", style);
	appendStringInfoString(&buf, "product description for the following item. "
						   "Use only facts from the data. "
						   "Reply with the description only.\n\n");
	return buf.data;
}

/* System message of phi3_extract */
const char *
Phi3ExtractSystem(void)
{
	return extract_system;
}

/*
 * Instruction of phi3_extract; shape is the schema as the engine
 * describes it (p3_schema_describe: names, types, descriptions, enum
 * values; "?" after a key: optional).
 */
char *
Phi3ExtractInstruction(const char *shape)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "Extract the data of the following document as one compact JSON "
					 "value of this shape: %s. Use only facts from the document. "
					 "Write dates as YYYY-MM-DD.\n\n",
					 shape);
	return buf.data;
}

/* System message of phi3_classify */
const char *
Phi3ClassifySystem(void)
{
	return "You classify documents. You reply with exactly one of the given labels and nothing else.";
}

/*
 * Instruction of phi3_classify; label_list is the labels as a JSON list,
 * instruction the caller's (UTF-8) or NULL.
 */
char *
Phi3ClassifyInstruction(const char *label_list, const char *instruction)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfo(&buf, "Classify the following document. Answer with one of these labels, "
					 "as a JSON string: %s.", label_list);
	if (instruction != NULL && instruction[0] != '\0')
		appendStringInfo(&buf, " %s", instruction);
	appendStringInfoString(&buf, "\n\n");
	return buf.data;
}
