"""
eval_sql.py -- the quality of a model on held-out synthetic documents,
measured through the SQL functions themselves (phi3_extract with its
constrained decoding, phi3_classify, phi3_summarize, phi3_describe).

    PGHOST=... PGPORT=... PGUSER=postgres /usr/bin/python3 tools/train/eval_sql.py \
        --model /abs/path/model.gguf --heldout DATA/heldout.jsonl [--n 150] [--json OUT.json]

Needs a running server with the phi3 extension installed (the database
must allow CREATE EXTENSION) and the model file readable by the server.
Figures:
  extract    share of fields exactly right (numbers compared as numbers,
             strings and dates exactly, null must be null), and the share
             of documents with every field right
  classify   share of correct labels
  summarize  share of summaries that name the document's person or company
             AND its amount or date (exactly as the document writes them),
             and the share within the word limit
  describe   share of descriptions that name the product and its price
"""

import argparse
import json
import os
import subprocess
import sys
from decimal import Decimal, InvalidOperation


def psql(sql):
    p = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", os.environ.get("PGDATABASE", "postgres")],
                       input=sql.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit("psql failed: " + p.stderr.decode())
    return p.stdout.decode()


def q(s):
    """A dollar-quoted SQL literal."""
    tag = "$d$"
    assert tag not in s
    return tag + s + tag


def same(exp, got):
    """Is the extracted value right?  Numbers compare as numbers, the rest exactly."""
    if exp is None or got is None:
        return exp is None and got is None
    if isinstance(exp, bool) or isinstance(got, bool):
        return exp is got
    if isinstance(got, (int, Decimal)):
        try:
            return Decimal(str(exp)) == Decimal(got)
        except InvalidOperation:
            return False
    return exp == got


def row_json(row):
    """The product row as JSON, price and weight as numbers (numeric columns)."""
    return "{" + ", ".join("%s: %s" % (json.dumps(k), v if k in ("price", "weight_kg") else json.dumps(v))
                           for k, v in row.items()) + "}"


def run_task(rows, select):
    """rows: [(id, [SQL expressions of c1, c2, ...])]; returns {id: result of select over them}."""
    if not rows:
        return {}
    ncol = len(rows[0][1])
    values = ",\n".join("(%d, %s)" % (i, ", ".join(e)) for i, e in rows)
    cols = ", ".join("c%d" % (k + 1) for k in range(ncol))
    out = psql("SET phi3.model = %s;\nSELECT json_agg(json_build_object('id', id, 'out', %s) ORDER BY id)\n"
               "FROM (VALUES %s) AS t(id, %s);" % (q(MODEL), select, values, cols))
    return {r["id"]: r["out"] for r in json.loads(out.strip().splitlines()[-1], parse_float=Decimal)}


def main():
    global MODEL
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--n", type=int, default=150)
    ap.add_argument("--json")
    a = ap.parse_args()
    MODEL = os.path.abspath(a.model)
    psql("CREATE EXTENSION IF NOT EXISTS phi3;")
    by_task = {}
    for line in open(a.heldout):
        s = json.loads(line)
        by_task.setdefault(s["task"], [])
        if len(by_task[s["task"]]) < a.n:
            by_task[s["task"]].append(s)
    report = {"model": MODEL}

    ex = by_task.get("extract", [])
    # each row: the document and its short-form schema; the expression is evaluated per row
    res = run_task([(i, [q(s["doc"]), q(s["short_form"])]) for i, s in enumerate(ex)],
                   "phi3_extract(c1, c2::jsonb)")
    fields = right = docs_right = 0
    per_kind = {}
    for i, s in enumerate(ex):
        exp, got = s["meta"]["expected"], res.get(i) or {}
        ok_all = True
        for k, v in exp.items():
            ok = same(v, got.get(k))
            fields += 1
            right += ok
            ok_all &= ok
            pk = per_kind.setdefault("null" if v is None else "value", [0, 0])
            pk[0] += 1
            pk[1] += ok
        docs_right += ok_all
    report["extract"] = {"documents": len(ex), "fields": fields, "field_accuracy": right / max(fields, 1),
                         "document_accuracy": docs_right / max(len(ex), 1),
                         "accuracy_by_expected": {k: v[1] / v[0] for k, v in per_kind.items()}}

    cl = by_task.get("classify", [])
    res = run_task([(i, [q(s["doc"]),
                     q("{" + ",".join(json.dumps(l) for l in s["meta"]["labels"]) + "}") + "::text[]",
                     q(s["meta"]["instruction"]) if s["meta"]["instruction"] else "NULL::text"])
                    for i, s in enumerate(cl)], "phi3_classify(c1, c2, c3)")
    right = sum(res.get(i) == s["meta"]["expected"] for i, s in enumerate(cl))
    report["classify"] = {"documents": len(cl), "accuracy": right / max(len(cl), 1)}

    sm = by_task.get("summarize", [])
    res = run_task([(i, [q(s["doc"]), str(s["meta"]["max_words"]),
                     q(s["meta"]["focus"]) if s["meta"]["focus"] else "NULL::text"]) for i, s in enumerate(sm)],
                   "phi3_summarize(c1, c2, c3)")
    key = within = 0
    for i, s in enumerate(sm):
        out = res.get(i) or ""
        e = s["meta"]["entities"]
        who = any(e.get(k) and e[k] in out for k in ("customer", "company", "person"))
        what = any(e.get(k) and e[k] in out for k in ("amount", "date"))
        key += who and what
        within += len(out.split()) <= s["meta"]["max_words"]
    report["summarize"] = {"documents": len(sm), "key_entities": key / max(len(sm), 1),
                           "within_word_limit": within / max(len(sm), 1)}

    de = by_task.get("describe", [])
    res = run_task([(i, [q(row_json(s["meta"]["row"])) + "::jsonb",
                     q(s["meta"]["style"]) if s["meta"]["style"] else "NULL::text"]) for i, s in enumerate(de)],
                   "phi3_describe(c1, c2)")
    named = sum(s["meta"]["name"] in (res.get(i) or "") and s["meta"]["row"]["price"] in (res.get(i) or "")
                for i, s in enumerate(de))
    report["describe"] = {"items": len(de), "names_product_and_price": named / max(len(de), 1)}

    print(json.dumps(report, indent=2))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(report, f, indent=2)


if __name__ == "__main__":
    main()
