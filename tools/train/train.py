"""
train.py -- train a small model of the phi3 architecture exactly as the
engine reads it (src/engine/model.c, test/reference/phi3_ref.py): token
embedding, per layer RMSNorm -> fused QKV -> NeoX RoPE -> causal attention
-> output projection, RMSNorm -> fused gate/up -> SwiGLU -> down, a final
RMSNorm and an untied output projection; no biases, eps 1e-5, rope base
10000 over the whole head.

    /usr/bin/python3 tools/train/train.py --data DIR --out DIR [--minutes M] [--seed S]

The output layer: the model is trained over the ids the corpus uses
(U, from train.jsonl) plus one shared row "rest" that stands for every
other id of the 32,064.  At export every id outside U gets that row, so
the softmax trained here, with log(#rest) added to the rest logit, is
exactly the full-vocabulary softmax of the exported file: the model has
been trained to put those ids below the answer, and (all sharing one row)
none of them can beat another.  Input embeddings of ids outside U are a
shared row too.

Loss on the answer tokens only (the prompt is context).  Curriculum: the
first quarter of the time budget uses documents with at most one filler
sentence.  The learning rate follows the elapsed fraction of the time
budget (warm-up, then cosine to 10%), so the run ends on time whatever the
machine's load.  A checkpoint (ckpt.pt) is written every --ckpt-minutes
and at the end; tools/train/export.py turns any checkpoint into GGUF.
Held-out metric every --eval-minutes: per task, the share of answers whose
every token is the argmax under teacher forcing (= greedy decode gives the
answer exactly) and the token accuracy.
"""

import argparse
import json
import math
import os
import random
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

N_VOCAB = 32064


class Cfg:
    def __init__(self, **kw):
        self.n_embd, self.n_layer, self.n_head, self.n_ff = 256, 4, 8, 768
        self.eps, self.rope_base = 1e-5, 10000.0
        self.__dict__.update(kw)


class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(T, hd, base):
    half = hd // 2
    i = torch.arange(half, dtype=torch.float64)
    theta = torch.arange(T, dtype=torch.float64)[:, None] * base ** (-2.0 * i / hd)
    return torch.cos(theta).float(), torch.sin(theta).float()


def rope(x, cos, sin):
    """NeoX: rotate (x[:half], x[half:]) pairs; x (B, H, T, hd)."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.attn_norm = RMSNorm(c.n_embd, c.eps)
        self.attn_qkv = nn.Linear(c.n_embd, 3 * c.n_embd, bias=False)
        self.attn_output = nn.Linear(c.n_embd, c.n_embd, bias=False)
        self.ffn_norm = RMSNorm(c.n_embd, c.eps)
        self.ffn_up = nn.Linear(c.n_embd, 2 * c.n_ff, bias=False)   # gate rows, then up rows
        self.ffn_down = nn.Linear(c.n_ff, c.n_embd, bias=False)

    def forward(self, h, cos, sin, mask):
        B, T, D = h.shape
        H, hd = self.c.n_head, D // self.c.n_head
        q, k, v = self.attn_qkv(self.attn_norm(h)).split(D, dim=-1)
        q = rope(q.view(B, T, H, hd).transpose(1, 2), cos, sin)
        k = rope(k.view(B, T, H, hd).transpose(1, 2), cos, sin)
        v = v.view(B, T, H, hd).transpose(1, 2)
        att = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd)) + mask
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D)
        h = h + self.attn_output(y)
        gate, up = self.ffn_up(self.ffn_norm(h)).split(self.c.n_ff, dim=-1)
        return h + self.ffn_down(F.silu(gate) * up)


class Model(nn.Module):
    def __init__(self, c, n_used):
        super().__init__()
        self.c = c
        self.n_used = n_used                     # compact ids 0..n_used-1; n_used = "rest"
        self.tok_embd = nn.Embedding(n_used + 1, c.n_embd)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.n_layer))
        self.output_norm = RMSNorm(c.n_embd, c.eps)
        self.output = nn.Linear(c.n_embd, n_used + 1, bias=False)
        self.rest_bias = math.log(N_VOCAB - n_used)
        for n, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * c.n_layer) if n.endswith(("attn_output.weight", "ffn_down.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def hidden(self, ids):
        B, T = ids.shape
        cos, sin = rope_tables(T, self.c.n_embd // self.c.n_head, self.c.rope_base)
        mask = torch.full((T, T), float("-inf")).triu(1)
        h = self.tok_embd(ids)
        for b in self.blocks:
            h = b(h, cos, sin, mask)
        return self.output_norm(h)

    def logits(self, h):
        lg = self.output(h)
        return torch.cat([lg[..., :-1], lg[..., -1:] + self.rest_bias], dim=-1)


def load(path, max_len):
    out = []
    with open(path) as f:
        for line in f:
            s = json.loads(line)
            if len(s["prompt"]) + len(s["answer_ids"]) <= max_len:
                out.append(s)
    return out


def make_batch(samples, cmap, rest):
    """ids (B, T) compact; targets (B, T) compact or -100 (loss on answers only)."""
    seqs = [s["prompt"] + s["answer_ids"] for s in samples]
    T = max(len(q) for q in seqs) - 1
    ids = torch.full((len(seqs), T), rest, dtype=torch.long)
    tgt = torch.full((len(seqs), T), -100, dtype=torch.long)
    for i, (s, q) in enumerate(zip(samples, seqs)):
        c = [cmap.get(t, rest) for t in q]
        ids[i, :len(c) - 1] = torch.tensor(c[:-1])
        a0 = len(s["prompt"]) - 1
        tgt[i, a0:len(c) - 1] = torch.tensor(c[len(s["prompt"]):])
    return ids, tgt


def loss_of(model, ids, tgt):
    h = model.hidden(ids)
    sel = tgt >= 0
    lg = model.logits(h[sel])
    return F.cross_entropy(lg, tgt[sel]), lg, tgt[sel]


@torch.no_grad()
def evaluate(model, held, cmap, rest, bs=16):
    model.eval()
    stats = {}
    for i in range(0, len(held), bs):
        chunk = held[i:i + bs]
        ids, tgt = make_batch(chunk, cmap, rest)
        h = model.hidden(ids)
        for j, s in enumerate(chunk):
            sel = tgt[j] >= 0
            pred = model.logits(h[j][sel]).argmax(-1)
            ok = (pred == tgt[j][sel])
            st = stats.setdefault(s["task"], [0, 0, 0, 0])
            st[0] += 1
            st[1] += int(ok.all())
            st[2] += int(ok.sum())
            st[3] += int(ok.numel())
    model.train()
    return {k: (v[1] / v[0], v[2] / v[3], v[0]) for k, v in stats.items()}


def remap_state(state, old_used, used):
    """A checkpoint's weights for a (larger) corpus: ids both corpora use keep
    their rows; an id new to this corpus starts from the old "rest" row, which
    is the row it had in the file exported from the checkpoint.  So resuming
    on more data starts from exactly the model that was exported."""
    if old_used == used:
        return state
    old = {t: i for i, t in enumerate(old_used)}
    rows = torch.tensor([old.get(t, len(old_used)) for t in used] + [len(old_used)])
    state = dict(state)
    for k in ("tok_embd.weight", "output.weight"):
        state[k] = state[k][rows].clone()
    return state


def save(model, cfg, used, opt_step, path, extra):
    tmp = path + ".tmp"
    torch.save({"cfg": cfg.__dict__, "used": used, "state": model.state_dict(), "step": opt_step,
                "extra": extra}, tmp)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=45)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--batch-tokens", type=int, default=4000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--max-len", type=int, default=320)
    ap.add_argument("--embd", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--ff", type=int, default=768)
    ap.add_argument("--ckpt-minutes", type=float, default=4)
    ap.add_argument("--eval-minutes", type=float, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--resume", help="continue from this checkpoint (weights; a fresh optimizer, warm-up 20 steps)")
    ap.add_argument("--no-curriculum", action="store_true")
    a = ap.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    rng = random.Random(a.seed)
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "train.log"), "a")

    def say(msg):
        line = "%s %s" % (time.strftime("%H:%M:%S"), msg)
        print(line, flush=True)
        log.write(line + "\n")
        log.flush()

    train = load(os.path.join(a.data, "train.jsonl"), a.max_len)
    held = load(os.path.join(a.data, "heldout.jsonl"), a.max_len)
    rng.shuffle(held)
    held = held[:240]
    used = sorted({t for s in train for t in s["prompt"] + s["answer_ids"]})
    cmap = {t: i for i, t in enumerate(used)}
    rest = len(used)
    cfg = Cfg(n_embd=a.embd, n_layer=a.layers, n_head=a.heads, n_ff=a.ff)
    warmup = 100
    if a.resume:
        ck = torch.load(a.resume, map_location="cpu")
        cfg = Cfg(**ck["cfg"])
        warmup = 20
    model = Model(cfg, len(used))
    if a.resume:
        model.load_state_dict(remap_state(ck["state"], ck["used"], used))
        say("resumed from %s (step %s); %d ids new to this corpus start from the rest row"
            % (a.resume, ck["step"], len(set(used) - set(ck["used"]))))
    n_params = sum(p.numel() for p in model.parameters())
    full = n_params + 2 * (N_VOCAB - len(used) - 1) * cfg.n_embd
    say("data: %d train, %d held-out samples; %d ids used; %d trained parameters, %d in the exported file"
        % (len(train), len(held), len(used), n_params, full))
    say("config: %s; args %s" % (json.dumps(cfg.__dict__), json.dumps(vars(a))))

    rng.shuffle(train)
    train.sort(key=lambda s: len(s["prompt"]) + len(s["answer_ids"]))
    easy = [s for s in train if s["meta"].get("filler", 0) <= 1]
    decay = [p for n, p in model.named_parameters() if p.dim() == 2]
    nodecay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05}, {"params": nodecay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95))
    budget = a.minutes * 60
    t0 = time.time()
    last_ckpt = last_eval = t0
    step, tokens, seen = 0, 0, 0
    ema = None
    while True:
        el = time.time() - t0
        frac = el / budget
        if frac >= 1 or (a.max_steps and step >= a.max_steps):
            break
        lr = a.lr * (min(1.0, step / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0)))))
        for g in opt.param_groups:
            g["lr"] = lr
        pool = easy if frac < 0.25 and not a.no_curriculum else train
        # a batch of similar lengths (little padding): a run of the length-sorted pool from a random start
        batch, n_tok = [], 0
        i = rng.randrange(len(pool))
        while n_tok < a.batch_tokens and i < len(pool):
            batch.append(pool[i])
            n_tok += len(pool[i]["prompt"]) + len(pool[i]["answer_ids"])
            i += 1
        ids, tgt = make_batch(batch, cmap, rest)
        loss, _, _ = loss_of(model, ids, tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        tokens += ids.numel()
        seen += len(batch)
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 20 == 0:
            say("step %d  loss %.4f (ema %.4f)  lr %.2e  samples %d  tokens %d  %.0f tok/s  %.1f min"
                % (step, loss.item(), ema, lr, seen, tokens, tokens / (time.time() - t0), el / 60))
        now = time.time()
        if now - last_eval > a.eval_minutes * 60:
            ev = evaluate(model, held, cmap, rest)
            say("eval step %d: " % step + "  ".join("%s exact %.3f tok %.3f (n=%d)" % (k, *v) for k, v in sorted(ev.items())))
            last_eval = now
        if now - last_ckpt > a.ckpt_minutes * 60:
            save(model, cfg, used, step, os.path.join(a.out, "ckpt.pt"), {"samples": seen, "tokens": tokens})
            say("checkpoint at step %d" % step)
            last_ckpt = now
    ev = evaluate(model, held, cmap, rest)
    say("final eval step %d: " % step + "  ".join("%s exact %.3f tok %.3f (n=%d)" % (k, *v) for k, v in sorted(ev.items())))
    save(model, cfg, used, step, os.path.join(a.out, "ckpt.pt"), {"samples": seen, "tokens": tokens})
    say("done: %d steps, %d samples, %d tokens, %.1f min" % (step, seen, tokens, (time.time() - t0) / 60))


if __name__ == "__main__":
    main()
