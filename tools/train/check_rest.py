"""
check_rest.py -- the ids outside the training corpus ("rest", see train.py)
never win at decode: checked on an exported GGUF file and its checkpoint.

    /usr/bin/python3 tools/train/check_rest.py --ckpt RUN/ckpt.pt --gguf models/phi3-demo-q8_0.gguf \
        --heldout DATA/heldout.jsonl [--n 200]

1. In the file: every id outside the corpus has the same output row (so
   they tie: one of them can only win if all of them do).
2. On held-out samples (teacher forcing): at how many answer positions
   the rest logit is at or above the best corpus id's logit, i.e. greedy
   decoding would emit an id outside the corpus (and, for information,
   over the prompt positions too).
   Printed as a count; the exit status is 1 if it is not zero.
"""

import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "test", "reference"))
import train as T            # noqa: E402
import phi3_ref as R         # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--n", type=int, default=200)
    a = ap.parse_args()
    ck = torch.load(a.ckpt, map_location="cpu")
    used = ck["used"]
    out = R.GGUF(a.gguf).tensor("output.weight")
    rest_ids = np.setdiff1d(np.arange(out.shape[0]), np.asarray(used))
    same = np.abs(out[rest_ids] - out[rest_ids[0]]).max()
    print("file: %d ids outside the corpus, max difference between their output rows %g" % (len(rest_ids), same))

    cfg = T.Cfg(**ck["cfg"])
    m = T.Model(cfg, len(used))
    m.load_state_dict(ck["state"])
    m.eval()
    cmap = {t: i for i, t in enumerate(used)}
    rest = len(used)
    held = [json.loads(l) for l in open(a.heldout)][:a.n]
    positions = wins = all_positions = all_wins = 0
    margin = []
    with torch.no_grad():
        for i in range(0, len(held), 16):
            chunk = held[i:i + 16]
            ids, tgt = T.make_batch(chunk, cmap, rest)
            lg = m.output(m.hidden(ids))          # raw logits: one rest id's logit, no log(#rest)
            for j, s in enumerate(chunk):
                a0, n = len(s["prompt"]) - 1, len(s["prompt"]) + len(s["answer_ids"]) - 1
                best = lg[j, :n, :-1].max(-1).values
                r = lg[j, :n, -1]
                positions += n - a0
                wins += int((r[a0:] >= best[a0:]).sum())
                all_positions += n
                all_wins += int((r >= best).sum())
                margin.append(float((best[a0:] - r[a0:]).min()))
    ok = wins == 0 and same == 0
    print("held-out: %d samples, %d answer positions; where an id outside the corpus would win: %d; "
          "smallest margin of the best corpus id over them: %.2f" % (len(held), positions, wins, min(margin)))
    print("(over all %d positions, the prompt's too: %d)" % (all_positions, all_wins))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
