#!/usr/bin/python3
"""
selftest.py -- checks that the numpy reference (phi3_ref.py) is consistent
with itself and with the spec, without the C engine:

  * GGUF reader round trip (every metadata type, arrays, alignment);
  * every vectorized dequantizer against a plain scalar loop that walks the
    block bytes in storage order (a second, differently organized reading of
    spec 2.3), on random blocks;
  * activation quantization (spec 2.4) properties;
  * RoPE properties: identity at position 0, norm preserving (times
    attn_factor), relative-position invariance, pass-through dims >= n_rot;
  * forward pass: one pass over the prompt == chunked == token by token with
    the KV cache; causality; GQA == MHA with duplicated K/V heads; split
    Q/K/V == fused; tied output == explicit copy; LongRoPE switching;
    --act-q8 and --kv-f16 change logits only slightly.

    /usr/bin/python3 test/reference/selftest.py     (exit status 0 = all passed)
"""

import os
import struct
import sys
import tempfile

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf_writer as gw        # noqa: E402
import phi3_ref as ref          # noqa: E402

F32 = np.float32
failures = []



# Two evaluations of the same function in another order (one pass vs token
# by token, GQA vs duplicated heads, ...) differ only by float32 summation
# order, which depends on the BLAS numpy links (OpenBLAS or the reference
# BLAS of a fresh Debian): about 1e-5 on logits of magnitude 10.  A real
# mistake moves logits by 1e-2 or more.
SAME_FUNCTION_TOL = 1e-4

def check(cond, what):
    print("%s  %s" % ("ok  " if cond else "FAIL", what))
    if not cond:
        failures.append(what)


# --------------------------------------------------------------------------
# Scalar dequantizers: walk each block in byte order, emitting values in
# output order, the way a straightforward C loop would.
# --------------------------------------------------------------------------

def h16(b, at):
    return F32(np.frombuffer(bytes(b[at:at + 2]), "<f2")[0])


def scalar_q4_0(b):
    d = h16(b, 0)
    return [d * F32((b[2 + j] & 15) - 8) for j in range(16)] + \
           [d * F32((b[2 + j] >> 4) - 8) for j in range(16)]


def scalar_q4_1(b):
    d, m = h16(b, 0), h16(b, 2)
    return [d * F32(b[4 + j] & 15) + m for j in range(16)] + \
           [d * F32(b[4 + j] >> 4) + m for j in range(16)]


def scalar_q5(b, has_min):
    d = h16(b, 0)
    m = h16(b, 2) if has_min else F32(0)
    at = 4 if has_min else 2
    qh = struct.unpack("<I", bytes(b[at:at + 4]))[0]
    qs = b[at + 4:at + 20]
    out = [0] * 32
    for j in range(16):
        lo = (qs[j] & 15) | (((qh >> j) & 1) << 4)
        hi = (qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)
        if has_min:
            out[j], out[j + 16] = d * F32(lo) + m, d * F32(hi) + m
        else:
            out[j], out[j + 16] = d * F32(lo - 16), d * F32(hi - 16)
    return out


def scalar_q8_0(b):
    d = h16(b, 0)
    return [d * F32(int(np.int8(np.uint8(b[2 + j])))) for j in range(32)]


def scalar_iq4_nl(b):
    d = h16(b, 0)
    t = ref.IQ4_TABLE
    return [d * t[b[2 + j] & 15] for j in range(16)] + [d * t[b[2 + j] >> 4] for j in range(16)]


def scalar_q2_k(b):
    scales, qs, d, dmin = b[0:16], b[16:80], h16(b, 80), h16(b, 82)
    out, g = [], 0
    for half in range(2):                       # 128 elements per 32 bytes of qs
        q = qs[32 * half:32 * half + 32]
        for shift in (0, 2, 4, 6):
            for part in range(2):               # two groups of 16 per shift
                dl = d * F32(scales[g] & 15)
                ml = dmin * F32(scales[g] >> 4)
                g += 1
                out += [dl * F32((q[16 * part + l] >> shift) & 3) - ml for l in range(16)]
    return out


def scalar_q3_k(b):
    hmask, qs, sc, d = b[0:32], b[32:96], b[96:108], h16(b, 108)
    # rebuild the 16 scales through a 128-bit view: 16 low nibbles, then 16 high pairs
    low = [sc[j] & 15 for j in range(8)] + [sc[j] >> 4 for j in range(8)]
    high = [(sc[8 + (j % 4)] >> (2 * (j // 4))) & 3 for j in range(16)]
    scales = [(low[j] | (high[j] << 4)) - 32 for j in range(16)]
    out, g, bit = [], 0, 0
    for half in range(2):
        q = qs[32 * half:32 * half + 32]
        for shift in (0, 2, 4, 6):
            for part in range(2):
                dl = d * F32(scales[g])
                g += 1
                for l in range(16 * part, 16 * part + 16):
                    v = ((q[l] >> shift) & 3) - (0 if hmask[l] & (1 << bit) else 4)
                    out.append(dl * F32(v))
            bit += 1
    return out


def scale_min_k4(j, s):
    if j < 4:
        return s[j] & 63, s[j + 4] & 63
    return (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4)


def scalar_q45_k(b, five):
    d, dmin, sc = h16(b, 0), h16(b, 2), b[4:16]
    qh = b[16:48] if five else None
    qs = b[48:176] if five else b[16:144]
    out = []
    for c in range(4):                          # 64 elements per 32 bytes of qs
        for part in range(2):                   # low nibbles, then high nibbles
            sub = 2 * c + part
            s, m = scale_min_k4(sub, sc)
            dl, ml = d * F32(s), dmin * F32(m)
            for l in range(32):
                q = (qs[32 * c + l] >> (4 * part)) & 15
                if five and qh[l] & (1 << sub):
                    q += 16
                out.append(dl * F32(q) - ml)
    return out


def scalar_q6_k(b):
    ql, qh, d = b[0:128], b[128:192], h16(b, 208)
    sc = b[192:208].view(np.int8)
    out = [None] * 256
    for half in range(2):
        for l in range(32):
            qlb, qhb = ql[64 * half + l], ql[64 * half + l + 32]
            h = qh[32 * half + l]
            qv = [(qlb & 15) | ((h & 3) << 4), (qhb & 15) | (((h >> 2) & 3) << 4),
                  (qlb >> 4) | (((h >> 4) & 3) << 4), (qhb >> 4) | (((h >> 6) & 3) << 4)]
            for k in range(4):
                s = sc[8 * half + 2 * k + l // 16]
                out[128 * half + 32 * k + l] = d * F32(s) * F32(int(qv[k]) - 32)
    return out


def scalar_iq4_xs(b):
    d = h16(b, 0)
    sh = struct.unpack("<H", bytes(b[2:4]))[0]
    sl, qs, t = b[4:8], b[8:136], ref.IQ4_TABLE
    out = []
    for ib in range(8):
        ls = ((sl[ib // 2] >> (4 * (ib % 2))) & 15) | (((sh >> (2 * ib)) & 3) << 4)
        dl = d * F32(ls - 32)
        q = qs[16 * ib:16 * ib + 16]
        out += [dl * t[x & 15] for x in q] + [dl * t[x >> 4] for x in q]
    return out


SCALAR = {
    "q4_0": scalar_q4_0, "q4_1": scalar_q4_1, "q5_0": lambda b: scalar_q5(b, False),
    "q5_1": lambda b: scalar_q5(b, True), "q8_0": scalar_q8_0, "iq4_nl": scalar_iq4_nl,
    "q2_k": scalar_q2_k, "q3_k": scalar_q3_k, "q4_k": lambda b: scalar_q45_k(b, False),
    "q5_k": lambda b: scalar_q45_k(b, True), "q6_k": scalar_q6_k, "iq4_xs": scalar_iq4_xs,
}


def test_dequant(rng):
    for tname, fn in SCALAR.items():
        _, elems, size, deq, _ = ref.QTYPES[gw.TYPE_CODE[tname]]
        blocks = rng.integers(0, 256, (6, size), dtype=np.uint8)
        for off, _ in gw.SCALE_FIELDS[tname]:   # finite, varied f16 scales (incl. subnormal, negative)
            vals = np.array([0.5, -0.03, 1.5e-6, 7.0, 0.0, 1e-3], dtype=np.float16)
            blocks[:, off:off + 2] = vals.view(np.uint8).reshape(-1, 2)
        got = deq(blocks)
        want = np.array([fn(b) for b in blocks], dtype=F32)
        check(got.shape == (6, elems) and np.array_equal(got.view(np.uint32), want.view(np.uint32)),
              "dequant %s: vectorized == scalar, bit for bit" % tname)
    x = rng.standard_normal(64).astype(F32)
    check(np.array_equal(ref.deq_f16(x.astype("<f2").view(np.uint8).reshape(-1, 2)).ravel(),
                         x.astype(np.float16).astype(F32)), "dequant f16")
    bf = (x.view(np.uint32) >> 16).astype("<u2")
    check(np.array_equal(ref.deq_bf16(bf.view(np.uint8).reshape(-1, 2)).ravel(),
                         (bf.astype(np.uint32) << 16).view(F32)), "dequant bf16")
    # known values: a Q4_0 block with d = 2 and nibbles lo = 3, hi = 12
    b = np.zeros((1, 18), np.uint8)
    b[0, 0:2] = np.array([2.0], np.float16).view(np.uint8)
    b[0, 2:] = 3 | (12 << 4)
    check(list(ref.deq_q4_0(b)[0]) == [-10.0] * 16 + [8.0] * 16, "dequant q4_0 known values")


def test_act_quant(rng):
    x = rng.standard_normal((3, 512)).astype(F32) * 2
    for name, fn, block in (("q8_0", ref.act_q8_0, 32), ("q8_k", ref.act_q8_k, 256)):
        y = fn(x)
        err = np.abs(y - x).reshape(3, -1, block).max(axis=2)
        amax = np.abs(x).reshape(3, -1, block).max(axis=2)
        check(y.dtype == F32 and np.all(err <= amax / 127 * 0.51 + amax * 1e-3),
              "act %s: error <= half a step" % name)
        d = amax / F32(127)
        d = d.astype(np.float16).astype(F32) if block == 32 else d   # Q8_0 stores d as f16
        steps = y.reshape(3, -1, block) / d[..., None]
        check(np.all(np.abs(steps - np.round(steps)) < 1e-2), "act %s: values on the 127-step grid" % name)
        check(np.all(fn(np.zeros((1, 512), F32)) == 0), "act %s: zeros stay zeros" % name)
    # Q8_K: the extreme element maps to -127 exactly, keeping its sign
    v = np.zeros((1, 256), F32)
    v[0, 5], v[0, 9] = 3.0, -1.0
    y = ref.act_q8_k(v)
    check(y[0, 5] == F32(1) / (F32(-127) / F32(3)) * F32(-127), "act q8_k: max element")
    # Q8_0 (ggml's x86 rule) rounds ties to even: amax 127 makes the multiplier 1
    v = np.zeros((1, 32), F32)
    v[0, :6] = [127.0, 0.5, 1.5, 2.5, -0.5, -2.5]
    y = ref.act_q8_0(v)
    check(list(y[0, :6]) == [127.0, 0.0, 2.0, 2.0, 0.0, -2.0], "act q8_0: ties to even")
    # ... and multiplies by 127/amax, not 1/d: here x*(127/amax) = 1.4999999 but x/d = 1.5
    v = np.zeros((1, 32), F32)
    v[0, 0], v[0, 1] = np.array([0x3f80000f, 0x3c41831c], np.uint32).view(F32)
    d16 = F32(np.float16(v[0, 0] / F32(127)))
    check(ref.act_q8_0(v)[0, 1] == d16, "act q8_0: multiplier 127/amax (code 1, not 2)")
    # Q8_K ties to even too (max -127: iscale 1)
    v = np.zeros((1, 256), F32)
    v[0, :4] = [-127.0, 2.5, 3.5, -0.5]
    check(list(ref.act_q8_k(v)[0, :4]) == [-127.0, 2.0, 4.0, 0.0], "act q8_k: ties to even")
    # f16 / bf16 activation rounding (F16 / BF16 weights): nearest even
    one = np.array([1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8], F32)
    check(list(ref.to_f16(one[:2])) == [1.0, 1.0 + 2.0 ** -9], "act f16: nearest even")
    check(list(ref.to_bf16(one[2:])) == [1.0, 1.0 + 2.0 ** -6], "act bf16: nearest even")


def q8_block(xb):
    """llama.cpp's Q8_0/Q8_1 quantization of 32 values: (f16 d, q, f16 s)."""
    amax = F32(np.max(np.abs(xb)))
    d = F32(amax / F32(127))
    mul = F32(127) / amax if amax else F32(0)     # ggml's x86 rule: 127/amax, ties to even
    q = [int(np.rint(F32(v * mul))) for v in xb]
    return h16(np.array([d], np.float16).view(np.uint8), 0), q, \
        F32(np.float16(F32(sum(q)) * d))


def q8_k_block(xb):
    """llama.cpp's Q8_K quantization of 256 values: (d, q, bsums)."""
    mx = xb[np.argmax(np.abs(xb))]
    iscale = F32(-127) / mx
    q = [min(127, int(np.rint(iscale * v))) for v in xb]
    return F32(1) / iscale, q, [sum(q[16 * g:16 * g + 16]) for g in range(16)]


def llama_dot(tname, wrow, x):
    """One output of a quantized matmul, the way llama.cpp's vec_dot computes it (spec 2.4)."""
    _, elems, size, _, _ = ref.QTYPES[gw.TYPE_CODE[tname]]
    total = F32(0)
    for b, blk in enumerate(wrow.reshape(-1, size)):
        xb = x[elems * b:elems * (b + 1)]
        if tname == "q4_0":
            dy, qy, _ = q8_block(xb)
            qx = [(v & 15) - 8 for v in blk[2:18]] + [(v >> 4) - 8 for v in blk[2:18]]
            total += (h16(blk, 0) * dy) * F32(sum(a * c for a, c in zip(qx, qy)))
        elif tname == "q4_1":
            dy, qy, sy = q8_block(xb)
            qx = [v & 15 for v in blk[4:20]] + [v >> 4 for v in blk[4:20]]
            total += (h16(blk, 0) * dy) * F32(sum(a * c for a, c in zip(qx, qy))) + h16(blk, 2) * sy
        elif tname == "q4_k":
            dy, qy, bsums = q8_k_block(xb)
            sc = blk[4:16]
            qs = blk[16:144]
            sumi, summ = 0, 0
            for sub in range(8):
                scale, mn = scale_min_k4(sub, sc)
                c, shift = sub // 2, 4 * (sub % 2)
                qx = [(qs[32 * c + l] >> shift) & 15 for l in range(32)]
                sumi += scale * sum(a * q for a, q in zip(qx, qy[32 * sub:32 * sub + 32]))
                summ += mn * (bsums[2 * sub] + bsums[2 * sub + 1])
            total += (h16(blk, 0) * dy) * F32(sumi) - (h16(blk, 2) * dy) * F32(summ)
    return total


def test_vec_dot(tmp):
    """--act-q8 matmuls == llama.cpp's integer block dot products (up to f32 rounding)."""
    rng = np.random.default_rng(11)
    for tname, n in (("q4_0", 64), ("q4_1", 64), ("q4_k", 256)):
        path = os.path.join(tmp, "dot_%s.gguf" % tname)
        gw.make_model(path, embd=n, heads=2, ff=n, vocab=8, layers=1, wtype=tname)
        model = ref.Phi3(ref.GGUF(path), act_q8=True)
        name = "blk.0.ffn_up.weight"
        raw = model.g.raw(name)[2].reshape(2 * n, -1)
        x = (rng.standard_normal((1, n)) * 3).astype(F32)
        got = model.matmul(x, name)[0]
        want = np.array([llama_dot(tname, raw[o], x[0]) for o in range(2 * n)])
        scale = np.abs(model.w[name][0]) @ np.abs(x[0])
        err = np.max(np.abs(got - want) / scale)
        check(err < 1e-6, "act-q8 %s matmul == llama.cpp block dot (rel err %.1e)" % (tname, err))
        if tname == "q4_1":     # the f16-rounded s really matters
            plain = (ref.act_q8_0(x) @ model.w[name][0].T)[0]
            check(np.max(np.abs(plain - want) / scale) > 1e-6,
                  "act-q8 q4_1: taking the min term with the dequantized activations differs")


def test_gguf_roundtrip(tmp):
    path = os.path.join(tmp, "meta.gguf")
    meta = [("a.u8", 0, 200), ("a.i8", 1, -5), ("a.u16", 2, 60000), ("a.i16", 3, -300),
            ("a.u32", 4, 4000000000), ("a.i32", 5, -7), ("a.f32", 6, 0.25), ("a.bool", 7, 1),
            ("a.str", 8, "héllo"), ("a.u64", 10, 2 ** 40), ("a.i64", 11, -2 ** 40),
            ("a.f64", 12, 0.1), ("a.arr_s", 9, (8, ["x", "", "yz"])),
            ("a.arr_i", 9, (5, [1, -2, 3])), ("a.arr_f", 9, (6, [1.5, 2.5]))]
    data = np.arange(96, dtype="<f4").tobytes()
    gw.write_gguf(path, meta, [("t1", [3], 0, np.arange(3, dtype="<f4").tobytes()),
                               ("t2", [32, 3], 0, data)], alignment=64)
    g = ref.GGUF(path)
    m = g.meta
    ok = (m["a.u8"] == 200 and m["a.i8"] == -5 and m["a.u16"] == 60000 and m["a.i16"] == -300
          and m["a.u32"] == 4000000000 and m["a.i32"] == -7 and m["a.f32"] == 0.25
          and m["a.bool"] is True and m["a.str"] == "héllo" and m["a.u64"] == 2 ** 40
          and m["a.i64"] == -2 ** 40 and m["a.f64"] == 0.1 and m["a.arr_s"] == ["x", "", "yz"]
          and list(m["a.arr_i"]) == [1, -2, 3] and list(m["a.arr_f"]) == [1.5, 2.5])
    check(ok, "gguf: metadata of every type round-trips")
    check(g.data_start % 64 == 0 and g.tensors["t2"][2] == 64, "gguf: alignment 64 honoured")
    check(np.array_equal(g.tensor("t2"), np.arange(96, dtype=F32).reshape(3, 32))
          and np.array_equal(g.tensor("t2", rows=[2, 0]), np.arange(96, dtype=F32).reshape(3, 32)[[2, 0]]),
          "gguf: tensor data and row selection")
    with open(path, "r+b") as f:
        f.write(b"GGUX")
    try:
        ref.GGUF(path)
        check(False, "gguf: bad magic rejected")
    except ref.GGUFError:
        check(True, "gguf: bad magic rejected")


def test_rope(tmp):
    path = os.path.join(tmp, "rope.gguf")
    gw.make_model(path, embd=64, heads=2, rot=16, vocab=64)     # head_dim 32, n_rot 16
    m = ref.Phi3(ref.GGUF(path))
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 2, 32)).astype(F32)
    y0 = m.rope(x, np.zeros(5, int), m.rope_short)
    check(np.array_equal(y0, x), "rope: position 0 is the identity")
    y = m.rope(x, np.arange(5), m.rope_short)
    check(np.array_equal(y[..., 16:], x[..., 16:]), "rope: dims >= n_rot pass through")
    pair = lambda v: np.hypot(v[..., :8], v[..., 8:16])         # noqa: E731
    check(np.allclose(pair(y), pair(x), rtol=1e-5), "rope: NeoX pairs (i, i + n_rot/2) keep their norm")
    q, k = x[:1], x[1:2]
    dots = [np.sum(m.rope(q, np.array([p + 3]), m.rope_short) * m.rope(k, np.array([p]), m.rope_short))
            for p in (0, 7, 40)]
    check(np.allclose(dots, dots[0], rtol=1e-4), "rope: q.k depends only on the relative position")
    m.attn_factor = 1.5
    check(np.allclose(pair(m.rope(x, np.arange(5), m.rope_short)), 1.5 * pair(x), rtol=1e-5),
          "rope: attn_factor scales cos and sin")


def logits_of(path, prompt, n_gen=0, batch=0, **kw):
    return ref.run(ref.Phi3(ref.GGUF(path), **kw), prompt, n_gen, batch)


def maxdiff(a, b):
    return float(np.max(np.abs(a - b)))


def test_forward(tmp):
    rng = np.random.default_rng(5)
    prompt = [int(t) for t in rng.integers(0, 512, 12)]
    configs = {
        "f32": {}, "gqa": {"kv_heads": 2}, "split": {"split_qkv": True}, "tied": {"tied": True},
        "rot16": {"heads": 2, "rot": 16}, "f16": {"wtype": "f16"}, "bf16": {"wtype": "bf16"},
        "q4_0": {"wtype": "q4_0"}, "q5_1": {"wtype": "q5_1"}, "iq4_nl": {"wtype": "iq4_nl"},
        "q3_k": {"wtype": "q3_k", "embd": 256, "ff": 256},
        "q6_k": {"wtype": "q6_k", "embd": 256, "ff": 256},
        "longrope": {"longrope": True, "orig_ctx": 8, "ctx": 131072},
    }
    for name, cfg in configs.items():
        path = os.path.join(tmp, name + ".gguf")
        gw.make_model(path, **cfg)
        one = logits_of(path, prompt, 4)
        for batch in (1, 5):
            d = maxdiff(one, logits_of(path, prompt, 4, batch=batch))
            check(d < SAME_FUNCTION_TOL, "forward %s: one pass == batch %d (max diff %.2e)" % (name, batch, d))
        if name != "longrope":      # (there a shorter prompt legitimately picks other factors)
            d = maxdiff(one[:7], logits_of(path, prompt[:7]))
            check(d < SAME_FUNCTION_TOL, "forward %s: causal (prefix logits unchanged, %.2e)" % (name, d))
        check(np.all(np.isfinite(one)) and one.std() > 0.3, "forward %s: logits finite, not flat" % name)
        # (prompt rows only: a changed greedy choice would change everything after it)
        if cfg.get("wtype", "f32")[0] in "qi":
            d = maxdiff(one[:12], logits_of(path, prompt, act_q8=True))
            check(1e-6 < d < 0.5, "forward %s: --act-q8 changes logits slightly (%.2e)" % (name, d))
        d = maxdiff(one[:12], logits_of(path, prompt, kv_f16=True))
        check(1e-7 < d < 0.05, "forward %s: --kv-f16 changes logits slightly (%.2e)" % (name, d))

    # GQA == MHA whose K/V heads are duplicated: query head h reads kv head h // group
    gqa = ref.Phi3(ref.GGUF(os.path.join(tmp, "gqa.gguf")))
    hd, override = gqa.head_dim, {}
    for i in range(gqa.n_layer):
        w = gqa.w["blk.%d.attn_qkv.weight" % i][0]
        q, k, v = w[:4 * hd], w[4 * hd:6 * hd], w[6 * hd:]
        dup = lambda t: np.repeat(t.reshape(2, hd, -1), 2, axis=0).reshape(4 * hd, -1)  # noqa: E731
        override["blk.%d.attn_qkv.weight" % i] = np.concatenate([q, dup(k), dup(v)])
    path = os.path.join(tmp, "gqa_as_mha.gguf")
    gw.make_model(path, override=override)
    d = maxdiff(logits_of(path, prompt, 4), logits_of(os.path.join(tmp, "gqa.gguf"), prompt, 4))
    check(d < SAME_FUNCTION_TOL, "forward gqa: == MHA with duplicated kv heads (%.2e)" % d)

    # separate Q/K/V == the same rows fused; explicit output == tied
    split = ref.Phi3(ref.GGUF(os.path.join(tmp, "split.gguf")))
    override = {}
    for i in range(split.n_layer):
        override["blk.%d.attn_qkv.weight" % i] = np.concatenate(
            [split.w["blk.%d.attn_%s.weight" % (i, n)][0] for n in "qkv"])
    path = os.path.join(tmp, "split_as_fused.gguf")
    gw.make_model(path, split_qkv=False, override=override)
    d = maxdiff(logits_of(path, prompt, 4), logits_of(os.path.join(tmp, "split.gguf"), prompt, 4))
    check(d < SAME_FUNCTION_TOL, "forward split q/k/v == fused (%.2e)" % d)
    tied = ref.GGUF(os.path.join(tmp, "tied.gguf"))
    check("output.weight" not in tied.tensors, "forward tied: model has no output.weight")
    path = os.path.join(tmp, "untied.gguf")
    gw.make_model(path, override={"output.weight": tied.tensor("token_embd.weight")})
    d = maxdiff(logits_of(path, prompt, 4), logits_of(os.path.join(tmp, "tied.gguf"), prompt, 4))
    check(d < SAME_FUNCTION_TOL, "forward tied == explicit copy of token_embd (%.2e)" % d)

    # LongRoPE (orig_ctx 8): a 6-token prompt + 6 generated crosses into long at position 8
    path = os.path.join(tmp, "longrope.gguf")
    p6 = prompt[:6]
    gen = logits_of(path, p6, 6)
    toks = p6 + [int(np.argmax(r)) for r in gen[5:11]]
    whole = logits_of(path, toks)                                  # 12 tokens: all long
    short = logits_of(path, toks[:8])                              # 8 tokens: all short
    check(maxdiff(gen[:8], short) < SAME_FUNCTION_TOL, "longrope: positions < orig use the short factors")
    check(maxdiff(gen[8:], whole[8:12]) > 1e-3,
          "longrope: after crossing, cached keys keep the short rotation (differs from all-long)")
    m = ref.Phi3(ref.GGUF(path))
    m.rope_long = m.rope_short
    gen = ref.run(m, p6, 6)
    d = maxdiff(gen, ref.run(m, p6 + [int(np.argmax(r)) for r in gen[5:11]], 0))
    check(d < SAME_FUNCTION_TOL, "longrope: with equal lists the switch is invisible (%.2e)" % d)
    n = len(toks)
    check(maxdiff(logits_of(path, toks, batch=3), whole) < SAME_FUNCTION_TOL,
          "longrope: chunked prompt uses the prompt length for the choice (== one pass, n=%d)" % n)


def test_compare():
    """compare_logits.py passes equal outputs and fails each kind of disagreement."""
    import compare_logits as cl
    ref = [(0, [(5, 3.0), (7, 2.0), (1, 1.0)]), (1, [(2, 4.0), (5, 3.5), (7, 0.5)]),
           (2, [(9, 2.0), (2, 1.99999), (3, 1.0)])]
    full = np.zeros((3, 10), F32)
    for pos, row in ref:
        for tok, val in row:
            full[pos, tok] = val

    def verdict(eng, **kw):
        return cl.compare(eng, ref, kw.pop("tol", 1e-4), 2e-4, kw.pop("n_prompt", 1), **kw)[0]

    check(verdict(ref) is None and verdict(ref, full=full) is None, "compare: identical outputs pass")
    bumped = [ref[0], (1, [(2, 4.0002), (5, 3.5), (7, 0.5)]), ref[2]]
    check(verdict(bumped) is not None and verdict(bumped, tol=1e-3) is None, "compare: tolerance applies")
    swapped = [ref[0], (1, [(5, 3.5), (2, 3.4), (7, 0.5)]), ref[2]]
    check(verdict(swapped, tol=1.0) is not None, "compare: a changed greedy token fails")
    tie = [ref[0], ref[1], (2, [(2, 2.0), (9, 1.99999), (3, 1.0)])]
    check(verdict(tie) is None, "compare: top-1 may flip on a near tie of the last line")
    check(verdict(ref[:2]) is not None, "compare: a missing line fails")
    missing = [(0, [(5, 3.0), (7, 2.0), (8, 1.5)]), ref[1], ref[2]]
    check(verdict(missing) is not None, "compare: an id above the other side's top-K fails")
    check(verdict(missing, full=full) is not None, "compare: full logits expose a wrong value of a listed id")
    shifted = [(pos, [(tok, val + 5e-5) for tok, val in row]) for pos, row in ref]
    check(cl.compare(shifted, ref, 1e-4, 2e-4, 1, 6e-5)[0] is None and
          cl.compare(shifted, ref, 1e-4, 2e-4, 1, 4e-5)[0] is not None,
          "compare: median tolerance applies")


def main():
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        test_gguf_roundtrip(tmp)
        test_dequant(rng)
        test_act_quant(rng)
        test_vec_dot(tmp)
        test_rope(tmp)
        test_forward(tmp)
    test_compare()
    print("selftest: %s" % ("FAILED: %d" % len(failures) if failures else "all passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
