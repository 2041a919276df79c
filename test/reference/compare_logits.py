#!/usr/bin/python3
"""
compare_logits.py -- compare two --top-logits outputs (engine vs reference).

    compare_logits.py ENGINE_FILE REFERENCE_FILE [--tol 1e-4] [--median-tol M]
                      [--n-prompt N] [--tie T] [--ref-full REF.npy] [--label S]

Each file has one line per evaluated position, "<pos> <id>:<logit> ...", the K
highest logits in descending order (bin/phi3-run --top-logits, phi3_ref.py).
Checks, in this order:
  1. same number of lines and the same positions 0, 1, 2, ...;
  2. with --n-prompt N: the greedy tokens (first id of lines N-1 .. end-1)
     are identical;
  3. on every line, the engine's top-1 id is the reference's, unless the
     reference's top-2 gap is below the tie threshold (default 2*tol) and the
     engine's choice is one of those near-tied ids;
  4. every id of the reference's top-K that the engine also lists differs by
     at most tol; an id listed by only one side must be within tol of the other
     side's lowest listed value (it fell just below the other's top-K).  With
     --ref-full (phi3_ref.py --full-logits), every id the engine lists is
     compared with the reference's exact value instead;
  5. with --median-tol M: the median of those differences is at most M (for
     f16 KV caches, whose rounding flips make rare larger differences but
     whose typical difference stays small unless the rounding is wrong).
Prints one line: "PASS max_abs_diff=... (...)" or "FAIL <reason>; max_abs_diff=...".
Exit status 0 on PASS, 1 on FAIL, 2 on bad usage or unreadable files.
"""

import argparse
import sys


def parse(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                continue
            try:
                pos = int(fields[0])
                pairs = [(int(i), float(v)) for i, v in (p.split(":") for p in fields[1:])]
            except ValueError:
                raise ValueError("%s:%d: malformed line %r" % (path, n, line.strip()[:60]))
            if not pairs:
                raise ValueError("%s:%d: no logits on the line" % (path, n))
            rows.append((pos, pairs))
    return rows


def compare(eng, ref, tol, tie, n_prompt, median_tol=None, full=None):
    """Returns (failure reason or None, max and median abs diff over compared ids, their count)."""
    reason, diffs = compare_lines(eng, ref, tol, tie, n_prompt, full)
    maxdiff = max(diffs) if diffs else 0.0
    median = sorted(diffs)[len(diffs) // 2] if diffs else 0.0
    if reason is None and median_tol is not None and median > median_tol:
        reason = "median abs diff %.3g > %g" % (median, median_tol)
    return reason, maxdiff, median, len(diffs)


def compare_lines(eng, ref, tol, tie, n_prompt, full=None):
    """Returns (failure reason or None, list of abs diffs over the compared ids).

    Compared ids: those both lists hold; with the reference's full logits
    (full[pos][id]), every id the engine lists.
    """
    diffs = []
    if len(eng) != len(ref):
        return "engine has %d lines, reference %d" % (len(eng), len(ref)), diffs
    if full is not None and len(full) != len(ref):
        return "reference full logits have %d rows, its top-K output %d lines" % (len(full), len(ref)), diffs
    for i, ((pe, _), (pr, _)) in enumerate(zip(eng, ref)):
        if pe != i or pr != i:
            return "line %d: positions %d (engine) and %d (reference), expected %d" % (i + 1, pe, pr, i), diffs
    # differences first, so the reported max is over every comparable line
    reason = None
    for pos, ((_, e), (_, r)) in enumerate(zip(eng, ref)):
        ev, rv = dict(e), dict(r)
        if full is not None:        # exact: the reference's value of every id the engine lists
            if any(not 0 <= tok < len(full[pos]) for tok, _ in e):
                return "pos %d: the engine lists an id outside 0..%d" % (pos, len(full[pos]) - 1), diffs
            rv = {tok: float(full[pos][tok]) for tok, _ in e}
            for tok, val in e:
                d = abs(val - rv[tok])
                diffs.append(d)
                if d > tol and reason is None:
                    reason = "pos %d id %d: engine %.6f reference %.6f (diff %.3g > tol %g)" % (
                        pos, tok, val, rv[tok], d, tol)
        for tok, val in r:
            if tok in ev:
                if full is not None:
                    continue
                d = abs(ev[tok] - val)
                diffs.append(d)
                if d > tol and reason is None:
                    reason = "pos %d id %d: engine %.6f reference %.6f (diff %.3g > tol %g)" % (
                        pos, tok, ev[tok], val, d, tol)
            elif len(e) >= len(r) and val > e[-1][1] + tol and reason is None:
                reason = "pos %d id %d (reference %.6f) missing from the engine's top-%d (lowest %.6f)" % (
                    pos, tok, val, len(e), e[-1][1])
        for tok, val in e:
            if tok not in rv and len(r) >= len(e) and val > r[-1][1] + tol and reason is None:
                reason = "pos %d id %d (engine %.6f) missing from the reference's top-%d (lowest %.6f)" % (
                    pos, tok, val, len(r), r[-1][1])
    if n_prompt is not None:
        if not 1 <= n_prompt <= len(ref):
            return "--n-prompt %d out of range 1..%d" % (n_prompt, len(ref)), diffs
        for pos in range(n_prompt - 1, len(ref) - 1):
            te, tr = eng[pos][1][0][0], ref[pos][1][0][0]
            if te != tr:
                r = ref[pos][1]
                gap = r[0][1] - r[1][1] if len(r) > 1 else float("inf")
                return ("greedy sequence differs at generated token %d (pos %d): engine %d, reference %d "
                        "(reference top-2 gap %.3g)" % (pos - n_prompt + 1, pos, te, tr, gap)), diffs
    for pos, ((_, e), (_, r)) in enumerate(zip(eng, ref)):
        if e[0][0] != r[0][0]:
            near = [tok for tok, val in r if val >= r[0][1] - tie]
            if e[0][0] not in near or len(near) < 2:
                return "pos %d: top-1 engine %d, reference %d (reference gap %.3g >= tie %g)" % (
                    pos, e[0][0], r[0][0], r[0][1] - r[1][1] if len(r) > 1 else 0, tie), diffs
    return reason, diffs


def main(argv=None):
    ap = argparse.ArgumentParser(description="compare engine and reference --top-logits outputs")
    ap.add_argument("engine")
    ap.add_argument("reference")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs logit difference (default 1e-4)")
    ap.add_argument("--median-tol", type=float, default=None, help="max median abs difference")
    ap.add_argument("--tie", type=float, default=None, help="top-2 gap below which top-1 may differ (2*tol)")
    ap.add_argument("--n-prompt", type=int, default=None, help="prompt length: check the greedy tokens")
    ap.add_argument("--ref-full", metavar="NPY",
                    help="the reference's full logits (phi3_ref.py --full-logits): compare every id the engine lists")
    ap.add_argument("--label", default="", help="prefix of the output line")
    a = ap.parse_args(argv)
    label = a.label + ": " if a.label else ""
    try:
        eng, ref = parse(a.engine), parse(a.reference)
        full = None
        if a.ref_full:
            import numpy                # only needed here
            full = numpy.load(a.ref_full)
    except (OSError, ValueError) as e:
        print("%sFAIL %s" % (label, e))
        return 2
    if not ref:
        print("%sFAIL reference output is empty" % label)
        return 1
    tie = 2 * a.tol if a.tie is None else a.tie
    reason, maxdiff, median, count = compare(eng, ref, a.tol, tie, a.n_prompt, a.median_tol, full)
    if reason:
        print("%sFAIL %s; max_abs_diff=%.3g over %d common ids" % (label, reason, maxdiff, count))
        return 1
    extra = "" if a.median_tol is None else ", median %.3g <= %g" % (median, a.median_tol)
    if a.n_prompt is not None:      # how close the greedy choices came to a tie
        gaps = [r[0][1] - r[1][1] for _, r in ref[a.n_prompt - 1:-1] if len(r) > 1]
        extra += ", min greedy gap %.3g" % min(gaps) if gaps else ""
    print("%sPASS max_abs_diff=%.3g (tol %g%s, %d positions)" % (label, maxdiff, a.tol, extra, len(ref)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
