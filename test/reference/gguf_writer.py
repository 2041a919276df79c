"""
gguf_writer.py -- a tiny GGUF v3 writer and random Phi-3 test-model maker,
used only by the reference's self-tests (selftest.py).

The models are not what a converter would write: quantized tensors are
random block bytes whose f16 scale fields are set so that the dequantized
matrix has mean about 0 and std about 1/sqrt(n_in).  That is enough to
exercise every dequantizer and every shape option of the forward pass.
"""

import struct
import zlib

import numpy as np

import phi3_ref as ref

F32 = np.float32

# metadata value type of a Python value when not given explicitly
KV_UINT32, KV_INT32, KV_FLOAT32, KV_BOOL, KV_STRING, KV_ARRAY = 4, 5, 6, 7, 8, 9

# (offset, role) of each f16 scale field in a block: role "d" scales the
# quants, role "m" is the offset / min term
SCALE_FIELDS = {
    "q4_0": [(0, "d")], "q5_0": [(0, "d")], "q8_0": [(0, "d")], "iq4_nl": [(0, "d")],
    "q4_1": [(0, "d"), (2, "m")], "q5_1": [(0, "d"), (2, "m")],
    "q2_k": [(80, "d"), (82, "m")], "q3_k": [(108, "d")],
    "q4_k": [(0, "d"), (2, "m")], "q5_k": [(0, "d"), (2, "m")],
    "q6_k": [(208, "d")], "iq4_xs": [(0, "d")],
}
TYPE_CODE = {v[0]: k for k, v in ref.QTYPES.items()}


def gguf_string(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def gguf_value(vtype, value):
    if vtype == KV_STRING:
        return gguf_string(value)
    if vtype == KV_ARRAY:
        etype, items = value
        out = struct.pack("<IQ", etype, len(items))
        return out + b"".join(gguf_value(etype, v) for v in items)
    return struct.pack(ref.GGUF_SCALAR[vtype], value)


def write_gguf(path, meta, tensors, alignment=32):
    """meta: list of (key, vtype, value); tensors: list of (name, dims, type code, bytes)."""
    meta = list(meta) + [("general.alignment", KV_UINT32, alignment)]
    out = [b"GGUF", struct.pack("<IQQ", 3, len(tensors), len(meta))]
    for key, vtype, value in meta:
        out += [gguf_string(key), struct.pack("<I", vtype), gguf_value(vtype, value)]
    offset = 0
    for name, dims, ttype, data in tensors:
        out += [gguf_string(name), struct.pack("<I", len(dims)),
                struct.pack("<%dQ" % len(dims), *dims), struct.pack("<IQ", ttype, offset)]
        offset += len(data) + (alignment - len(data) % alignment) % alignment
    head = b"".join(out)
    head += b"\0" * ((alignment - len(head) % alignment) % alignment)
    with open(path, "wb") as f:
        f.write(head)
        for _, _, _, data in tensors:
            f.write(data)
            f.write(b"\0" * ((alignment - len(data) % alignment) % alignment))


def random_blocks(rng, tname, n_rows, n_in, scale=1.0):
    """Random bytes of a quantized (n_rows, n_in) matrix with sane scale fields."""
    _, elems, size, deq, _ = ref.QTYPES[TYPE_CODE[tname]]
    blocks = rng.integers(0, 256, size=(n_rows * n_in // elems, size), dtype=np.uint8)
    fields = SCALE_FIELDS[tname]

    def with_scales(dval, mval, jitter):
        b = blocks.copy()
        for off, role in fields:
            v = (dval if role == "d" else mval) * jitter
            b[:, off:off + 2] = v.astype(np.float16).view(np.uint8).reshape(-1, 2)
        return b

    ones = np.ones(len(blocks), F32)
    mu_d = deq(with_scales(1, 0, ones)).mean()
    mu_m = deq(with_scales(0, 1, ones)).mean() if any(r == "m" for _, r in fields) else 0
    m = -mu_d / mu_m if mu_m else 0
    std = deq(with_scales(1, m, ones)).std()
    s = scale / (std * np.sqrt(n_in))
    jitter = rng.uniform(0.5, 1.5, len(blocks)).astype(F32)
    return with_scales(s, m * s, jitter).tobytes()


def matrix_bytes(rng, tname, n_rows, n_in, values=None, scale=1.0):
    """A (n_rows, n_in) weight matrix in type tname: given float values or random."""
    if tname in SCALE_FIELDS and values is None:
        return random_blocks(rng, tname, n_rows, n_in, scale)
    if values is None:
        values = (rng.standard_normal((n_rows, n_in)) * scale / np.sqrt(n_in)).astype(F32)
    if tname == "f32":
        return values.astype("<f4").tobytes()
    if tname == "f16":
        return values.astype("<f2").tobytes()
    if tname == "bf16":
        bits = values.astype(F32).view(np.uint32)
        rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16       # nearest even
        return rounded.astype("<u2").tobytes()
    raise ValueError(tname)


def make_model(path, embd=64, layers=2, heads=4, kv_heads=None, ff=128, vocab=512,
               rot=None, wtype="f32", split_qkv=False, tied=False, longrope=False,
               orig_ctx=None, ctx=4096, seed=1, out_scale=3.0, override=None):
    """Write a random Phi-3 model; override maps tensor name -> float32 matrix (out, in)."""
    def rng_for(name):        # each tensor has its own stream: overrides shift nothing else
        return np.random.default_rng([seed, zlib.crc32(name.encode())])

    kv_heads = kv_heads or heads
    hd = embd // heads
    rot = rot or hd
    override = override or {}   # name -> float32 (out, in) values, stored as f32 if quantized
    meta = [("general.architecture", KV_STRING, "phi3"),
            ("general.name", KV_STRING, "reference self-test model"),
            ("phi3.context_length", KV_UINT32, ctx),
            ("phi3.embedding_length", KV_UINT32, embd),
            ("phi3.block_count", KV_UINT32, layers),
            ("phi3.feed_forward_length", KV_UINT32, ff),
            ("phi3.attention.head_count", KV_UINT32, heads),
            ("phi3.attention.head_count_kv", KV_UINT32, kv_heads),
            ("phi3.attention.layer_norm_rms_epsilon", KV_FLOAT32, 1e-5),
            ("phi3.rope.dimension_count", KV_UINT32, rot),
            ("phi3.rope.freq_base", KV_FLOAT32, 10000.0)]
    tensors = []

    def add_matrix(name, n_in, n_out, scale=1.0):
        values = override.get(name)
        tname = "f32" if values is not None and wtype in SCALE_FIELDS else wtype
        data = matrix_bytes(rng_for(name), tname, n_out, n_in, values, scale)
        tensors.append((name, [n_in, n_out], TYPE_CODE[tname], data))

    def add_vector(name, lo, hi, n, sort=False):
        values = rng_for(name).uniform(lo, hi, n)
        values = np.sort(values) if sort else values
        tensors.append((name, [n], 0, values.astype("<f4").tobytes()))

    add_matrix("token_embd.weight", embd, vocab)
    for i in range(layers):
        add_vector("blk.%d.attn_norm.weight" % i, 0.9, 1.1, embd)
        if split_qkv:
            add_matrix("blk.%d.attn_q.weight" % i, embd, heads * hd)
            add_matrix("blk.%d.attn_k.weight" % i, embd, kv_heads * hd)
            add_matrix("blk.%d.attn_v.weight" % i, embd, kv_heads * hd)
        else:
            add_matrix("blk.%d.attn_qkv.weight" % i, embd, (heads + 2 * kv_heads) * hd)
        add_matrix("blk.%d.attn_output.weight" % i, heads * hd, embd)
        add_vector("blk.%d.ffn_norm.weight" % i, 0.9, 1.1, embd)
        add_matrix("blk.%d.ffn_up.weight" % i, embd, 2 * ff)
        add_matrix("blk.%d.ffn_down.weight" % i, ff, embd)
    add_vector("output_norm.weight", 0.9, 1.1, embd)
    if not tied:
        add_matrix("output.weight", embd, vocab, out_scale)
    if longrope:
        orig = orig_ctx or 4096
        meta += [("phi3.rope.scaling.original_context_length", KV_UINT32, orig),
                 ("phi3.rope.scaling.attn_factor", KV_FLOAT32,
                  float(np.sqrt(1 + np.log(ctx / orig) / np.log(orig))))]
        add_vector("rope_factors_short.weight", 1, 3, rot // 2, sort=True)
        add_vector("rope_factors_long.weight", 1, 64, rot // 2, sort=True)
    write_gguf(path, meta, tensors)
    return tensors
