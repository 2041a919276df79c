"""
export.py -- a checkpoint of train.py as a GGUF file, written by the
project's own writer (bin/phi3-mkmodel --weights, src/engine/gguf_write.c).

    /usr/bin/python3 tools/train/export.py --ckpt RUN/ckpt.pt --out models/phi3-demo-q8_0.gguf [--type q8_0]

The trainer's compact vocabulary is expanded to the 32,064 ids of the
Phi-3 vocabulary: ids the corpus uses get their trained rows, every other
id the shared "rest" row (input and output), which is what the trainer's
softmax assumed (see train.py).  The tensors are dumped as float32 files
named after the GGUF tensors, then phi3-mkmodel encodes them (q8_0, f16,
...) with the reference quantizers and copies the tokenizer from the real
vocabulary file.
"""

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
N_VOCAB = 32064
NAME = "phi3-demo (synthetic business documents)"
DESCRIPTION = ("A demonstration model of the phi3 architecture (about 20M parameters) trained from scratch "
               "in this repository (tools/train/) on generated synthetic business documents: invoices, "
               "incident reports, support tickets, sales notes and product records, with the prompts of the "
               "phi3 SQL functions. Good for the quick start and for tests; it is not Phi-3 and knows nothing "
               "else: real work needs Microsoft's Phi-3 Mini GGUF.")


def expand(rows, used):
    """(n_used + 1, d) -> (N_VOCAB, d): used ids their rows, the others the last (rest) row."""
    full = np.repeat(rows[-1:], N_VOCAB, axis=0)
    full[np.asarray(used)] = rows[:-1]
    return full


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--type", default="q8_0")
    ap.add_argument("--ctx", type=int, default=4096)
    a = ap.parse_args()
    ck = torch.load(a.ckpt, map_location="cpu")
    cfg, st, used = ck["cfg"], ck["state"], ck["used"]
    t = {k: v.float().numpy() for k, v in st.items()}
    tensors = {"token_embd.weight": expand(t["tok_embd.weight"], used),
               "output_norm.weight": t["output_norm.weight"],
               "output.weight": expand(t["output.weight"], used)}
    for l in range(cfg["n_layer"]):
        for n in ("attn_norm", "attn_qkv", "attn_output", "ffn_norm", "ffn_up", "ffn_down"):
            tensors["blk.%d.%s.weight" % (l, n)] = t["blocks.%d.%s.weight" % (l, n)]
    with tempfile.TemporaryDirectory() as d:
        for n, v in tensors.items():
            np.ascontiguousarray(v, dtype="<f4").tofile(os.path.join(d, n + ".f32"))
        cmd = [os.path.join(ROOT, "bin", "phi3-mkmodel"), "-q", "-o", a.out, "--weights", d,
               "--type", a.type, "--embd", str(cfg["n_embd"]), "--layers", str(cfg["n_layer"]),
               "--heads", str(cfg["n_head"]), "--ff", str(cfg["n_ff"]), "--ctx", str(a.ctx),
               "--vocab", os.path.join(ROOT, "test", "data", "ggml-vocab-phi-3.gguf"),
               "--name", NAME, "--description", DESCRIPTION, "--threads", "1"]
        subprocess.run(cmd, check=True)
    print("wrote %s (%d bytes) from %s, step %s" % (a.out, os.path.getsize(a.out), a.ckpt, ck.get("step")))


if __name__ == "__main__":
    sys.exit(main())
