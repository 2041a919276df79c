#!/usr/bin/python3
"""
phi3_ref.py -- an independent numpy reference of Phi-3 inference from a GGUF file.

Written from /work/shared/docs/phi3-spec.md (sections 1-3 and 7), not from the
C engine, so that the engine can be checked against it.  Everything is float32
(including the matmuls); only the RoPE angles are computed in float64 before
rounding cos/sin to float32.  Speed matters only for the tiny test models.

    phi3_ref.py -m MODEL --tokens "1 2 3" -n N --top-logits K
                [--kv-f16] [--act-q8] [--batch B] [--full-logits FILE.npy]

The prompt is evaluated in one forward pass (or in chunks of B tokens), then N
tokens are greedy-decoded, each in its own pass.  Output: one line per
evaluated position, "<pos> <id>:<logit> ...", the K highest logits, descending,
ties by smaller id, as bin/phi3-run --top-logits prints them.
"""

import argparse
import mmap
import struct
import sys

import numpy as np

F32 = np.float32

# --------------------------------------------------------------------------
# GGUF reader (spec section 1)
# --------------------------------------------------------------------------

# metadata value type code -> struct format of a scalar (spec 1.4)
GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f",
               7: "<B", 10: "<Q", 11: "<q", 12: "<d"}
GGUF_NUMPY = {0: "<u1", 1: "<i1", 2: "<u2", 3: "<i2", 4: "<u4", 5: "<i4",
              6: "<f4", 7: "<u1", 10: "<u8", 11: "<i8", 12: "<f8"}
GGUF_STRING, GGUF_ARRAY = 8, 9


class GGUFError(Exception):
    pass


class GGUF:
    """Header, metadata and tensor infos of a GGUF v2/v3 file; data via mmap."""

    def __init__(self, path):
        with open(path, "rb") as f:
            self.mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.off = 0
        if self._bytes(4) != b"GGUF":
            raise GGUFError("%s: not a GGUF file (bad magic)" % path)
        self.version = self._scalar("<I")
        if self.version not in (2, 3):
            raise GGUFError("unsupported GGUF version %d" % self.version)
        n_tensors = self._scalar("<Q")
        n_kv = self._scalar("<Q")
        self.meta = {}
        for _ in range(n_kv):
            key = self._string()
            if key in self.meta:
                raise GGUFError("duplicate metadata key %s" % key)
            self.meta[key] = self._value(self._scalar("<I"))
        self.tensors = {}           # name -> (dims [ne0, ne1, ...], type, offset)
        for _ in range(n_tensors):
            name = self._string()
            n_dims = self._scalar("<I")
            if n_dims > 4:
                raise GGUFError("tensor %s has %d dims" % (name, n_dims))
            dims = [self._scalar("<Q") for _ in range(n_dims)]
            ttype = self._scalar("<I")
            offset = self._scalar("<Q")
            self.tensors[name] = (dims, ttype, offset)
        align = self.meta.get("general.alignment", 32)
        if align <= 0 or align & (align - 1):
            raise GGUFError("general.alignment %d is not a power of two" % align)
        self.data_start = self.off + (align - self.off % align) % align
        for name, (dims, ttype, offset) in self.tensors.items():
            if ttype not in QTYPES:
                raise GGUFError("tensor %s has unsupported type %d" % (name, ttype))
            if offset % align:
                raise GGUFError("tensor %s offset %d is not aligned" % (name, offset))
            if self.data_start + offset + tensor_nbytes(dims, ttype) > len(self.mm):
                raise GGUFError("tensor %s runs past the end of the file" % name)

    def _bytes(self, n):
        if self.off + n > len(self.mm):
            raise GGUFError("file truncated at offset %d" % self.off)
        b = self.mm[self.off:self.off + n]
        self.off += n
        return b

    def _scalar(self, fmt):
        return struct.unpack(fmt, self._bytes(struct.calcsize(fmt)))[0]

    def _string(self):
        return self._bytes(self._scalar("<Q")).decode("utf-8", errors="replace")

    def _strings(self, count):
        """A string array, decoded on access (the 32064 vocabulary entries are rarely needed)."""
        spans = []
        for _ in range(count):
            n = self._scalar("<Q")
            spans.append((self.off, n))
            if self.off + n > len(self.mm):
                raise GGUFError("file truncated at offset %d" % self.off)
            self.off += n
        mm = self.mm
        return LazyStrings(lambda i: mm[spans[i][0]:sum(spans[i])].decode("utf-8", "replace"), count)

    def _value(self, vtype):
        if vtype in GGUF_SCALAR:
            v = self._scalar(GGUF_SCALAR[vtype])
            return bool(v) if vtype == 7 else v
        if vtype == GGUF_STRING:
            return self._string()
        if vtype == GGUF_ARRAY:
            etype = self._scalar("<I")
            count = self._scalar("<Q")
            if etype in GGUF_NUMPY:         # numeric arrays in one go
                dt = np.dtype(GGUF_NUMPY[etype])
                return np.frombuffer(self._bytes(count * dt.itemsize), dtype=dt)
            if etype == GGUF_STRING:
                return self._strings(count)
            raise GGUFError("metadata array of type %d not supported" % etype)
        raise GGUFError("unknown metadata value type %d" % vtype)

    def raw(self, name):
        """(dims, type, uint8 array of the tensor's bytes)."""
        dims, ttype, offset = self.tensors[name]
        start = self.data_start + offset
        return dims, ttype, np.frombuffer(self.mm, np.uint8, tensor_nbytes(dims, ttype), start)

    def tensor(self, name, rows=None):
        """Tensor as float32, shape (ne1, ne0) for matrices; rows selects ne1 indices."""
        dims, ttype, data = self.raw(name)
        ne0 = dims[0]
        nrows = int(np.prod(dims[1:], dtype=np.int64))
        elems, size, fn = QTYPES[ttype][1:4]
        if ne0 % elems:
            raise GGUFError("tensor %s: ne0 %d not a multiple of %d" % (name, ne0, elems))
        data = data.reshape(nrows, ne0 // elems * size)
        if rows is not None:
            data = data[np.asarray(rows)]
        out = fn(data.reshape(-1, size)).reshape(data.shape[0], ne0)
        return out if len(dims) > 1 else out.reshape(ne0)


class LazyStrings:
    """A read-only sequence of strings decoded by get(i) when accessed."""

    def __init__(self, get, count):
        self.get, self.count = get, count

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        if not -self.count <= i < self.count:
            raise IndexError(i)
        return self.get(i % self.count)

    def __eq__(self, other):
        return list(self) == list(other)


def tensor_nbytes(dims, ttype):
    n = int(np.prod(dims, dtype=np.int64))
    return n // QTYPES[ttype][1] * QTYPES[ttype][2]


# --------------------------------------------------------------------------
# Dequantization (spec 2.2, 2.3).  Each function takes the raw blocks as a
# uint8 array of shape (n_blocks, bytes_per_block) and returns float32
# (n_blocks, elems_per_block).  Products are evaluated left to right exactly
# as the spec writes them, in float32, so results match a correct scalar C
# dequantizer bit for bit.
# --------------------------------------------------------------------------

IQ4_TABLE = np.array([-127, -104, -83, -65, -49, -35, -22, -10,
                      1, 13, 25, 38, 53, 69, 89, 113], dtype=F32)


def f16(b, at):
    """The little-endian f16 at byte `at` of every block, as float32 (nb, 1)."""
    return np.ascontiguousarray(b[:, at:at + 2]).view("<f2").astype(F32)


def u32(b, at):
    return np.ascontiguousarray(b[:, at:at + 4]).view("<u4")


def nibbles(qs):
    """Low nibbles are elements 0..15, high nibbles 16..31 of a 32-element block."""
    return np.concatenate([qs & 15, qs >> 4], axis=1)


def deq_f32(b):
    return b.view("<f4").astype(F32)


def deq_f16(b):
    return b.view("<f2").astype(F32)


def deq_bf16(b):
    return (b.view("<u2").astype(np.uint32) << 16).view(F32)


def deq_q4_0(b):
    q = nibbles(b[:, 2:18]).astype(np.int16) - 8
    return f16(b, 0) * q.astype(F32)


def deq_q4_1(b):
    return f16(b, 0) * nibbles(b[:, 4:20]).astype(F32) + f16(b, 2)


def fifth_bits(qh):
    """Bit j of the u32 qh, for j = 0..31 (element j's 5th bit), shape (nb, 32)."""
    return ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.uint8)


def deq_q5_0(b):
    q = (nibbles(b[:, 6:22]) | (fifth_bits(u32(b, 2)) << 4)).astype(np.int16) - 16
    return f16(b, 0) * q.astype(F32)


def deq_q5_1(b):
    q = nibbles(b[:, 8:24]) | (fifth_bits(u32(b, 4)) << 4)
    return f16(b, 0) * q.astype(F32) + f16(b, 2)


def deq_q8_0(b):
    return f16(b, 0) * b[:, 2:34].view(np.int8).astype(F32)


def deq_iq4_nl(b):
    return f16(b, 0) * IQ4_TABLE[nibbles(b[:, 2:18])]


# Element-index tables for the 256-element super-blocks: for each element
# i = 0..255, which byte holds its bits, the shift, and its scale group.
_I = np.arange(256)
_H, _R = _I // 128, _I % 128          # Q2_K / Q3_K / Q6_K halves
_S, _L = _R // 32, _R % 32
K2_QS = 32 * _H + _L                  # byte of qs
K2_SHIFT = (2 * _S).astype(np.uint8)  # 2-bit field
K2_GROUP = 8 * _H + 2 * _S + (_L >= 16)
K3_HBIT = (4 * _H + _S).astype(np.uint8)
_C, _R64 = _I // 64, _I % 64          # Q4_K / Q5_K chunks of 64
K4_QS = 32 * _C + _R64 % 32
K4_SHIFT = np.where(_R64 < 32, 0, 4).astype(np.uint8)
K4_SUB = 2 * _C + (_R64 >= 32)
K5_QH = _R64 % 32
K6_QL = 64 * _H + _L + np.where(_S % 2 == 1, 32, 0)
K6_QLSHIFT = np.where(_S < 2, 0, 4).astype(np.uint8)
K6_QH = 32 * _H + _L
XS_IB = _I // 32                      # IQ4_XS sub-blocks of 32
XS_QS = 16 * XS_IB + (_I % 32) % 16
XS_SHIFT = np.where(_I % 32 < 16, 0, 4).astype(np.uint8)


def deq_q2_k(b):
    scales, qs = b[:, 0:16], b[:, 16:80]
    dl = f16(b, 80) * (scales & 15).astype(F32)
    ml = f16(b, 82) * (scales >> 4).astype(F32)
    q = (qs[:, K2_QS] >> K2_SHIFT) & 3
    return dl[:, K2_GROUP] * q.astype(F32) - ml[:, K2_GROUP]


def q3_k_scales(sc):
    """The 16 signed 6-bit scales of Q3_K from the 12 packed bytes, as int."""
    j = np.arange(16)
    low4 = np.where(j < 8, sc[:, j % 8] & 15, sc[:, j % 8] >> 4)
    high2 = (sc[:, 8 + j % 4] >> (2 * (j // 4)).astype(np.uint8)) & 3
    return (low4 | (high2 << 4)).astype(np.int16) - 32


def deq_q3_k(b):
    hmask, qs, sc = b[:, 0:32], b[:, 32:96], b[:, 96:108]
    dl = f16(b, 108) * q3_k_scales(sc).astype(F32)
    low2 = ((qs[:, K2_QS] >> K2_SHIFT) & 3).astype(np.int16)
    high = (hmask[:, _L] >> K3_HBIT) & 1
    q = low2 - np.where(high == 1, 0, 4)
    return dl[:, K2_GROUP] * q.astype(F32)


def k4_scale_min(sc):
    """The 8 six-bit scales and mins packed in 12 bytes (Q4_K, Q5_K)."""
    j = np.arange(4)
    scale = np.concatenate([sc[:, j] & 63, (sc[:, j + 8] & 15) | ((sc[:, j] >> 6) << 4)], axis=1)
    mn = np.concatenate([sc[:, j + 4] & 63, (sc[:, j + 8] >> 4) | ((sc[:, j + 4] >> 6) << 4)], axis=1)
    return scale.astype(F32), mn.astype(F32)


def deq_q4_k(b):
    scale, mn = k4_scale_min(b[:, 4:16])
    dl, ml = f16(b, 0) * scale, f16(b, 2) * mn
    q = (b[:, 16:144][:, K4_QS] >> K4_SHIFT) & 15
    return dl[:, K4_SUB] * q.astype(F32) - ml[:, K4_SUB]


def deq_q5_k(b):
    scale, mn = k4_scale_min(b[:, 4:16])
    dl, ml = f16(b, 0) * scale, f16(b, 2) * mn
    qh, qs = b[:, 16:48], b[:, 48:176]
    high = (qh[:, K5_QH] >> K4_SUB.astype(np.uint8)) & 1
    q = ((qs[:, K4_QS] >> K4_SHIFT) & 15) | (high << 4)
    return dl[:, K4_SUB] * q.astype(F32) - ml[:, K4_SUB]


def deq_q6_k(b):
    ql, qh, sc = b[:, 0:128], b[:, 128:192], b[:, 192:208].view(np.int8)
    dl = f16(b, 208) * sc.astype(F32)
    nib = (ql[:, K6_QL] >> K6_QLSHIFT) & 15
    high2 = (qh[:, K6_QH] >> K2_SHIFT) & 3
    q = (nib | (high2 << 4)).astype(np.int16) - 32
    return dl[:, K2_GROUP] * q.astype(F32)


def deq_iq4_xs(b):
    scales_h = np.ascontiguousarray(b[:, 2:4]).view("<u2")
    scales_l = b[:, 4:8]
    ib = np.arange(8)
    low = (scales_l[:, ib // 2] >> (4 * (ib % 2)).astype(np.uint8)) & 15
    high = (scales_h >> (2 * ib).astype(np.uint16)) & 3
    ls = (low.astype(np.int16) | (high.astype(np.int16) << 4)) - 32
    dl = f16(b, 0) * ls.astype(F32)
    idx = (b[:, 8:136][:, XS_QS] >> XS_SHIFT) & 15
    return dl[:, XS_IB] * IQ4_TABLE[idx]


# ggml type code -> (name, elements per block, bytes per block, dequantizer,
#                    activation type used by --act-q8, None for F32)
QTYPES = {
    0: ("f32", 1, 4, deq_f32, None),
    1: ("f16", 1, 2, deq_f16, "f16"),
    30: ("bf16", 1, 2, deq_bf16, "bf16"),
    2: ("q4_0", 32, 18, deq_q4_0, "q8_0"),
    3: ("q4_1", 32, 20, deq_q4_1, "q8_1"),
    6: ("q5_0", 32, 22, deq_q5_0, "q8_0"),
    7: ("q5_1", 32, 24, deq_q5_1, "q8_1"),
    8: ("q8_0", 32, 34, deq_q8_0, "q8_0"),
    20: ("iq4_nl", 32, 18, deq_iq4_nl, "q8_0"),
    10: ("q2_k", 256, 84, deq_q2_k, "q8_k"),
    11: ("q3_k", 256, 110, deq_q3_k, "q8_k"),
    12: ("q4_k", 256, 144, deq_q4_k, "q8_k"),
    13: ("q5_k", 256, 176, deq_q5_k, "q8_k"),
    14: ("q6_k", 256, 210, deq_q6_k, "q8_k"),
    23: ("iq4_xs", 256, 136, deq_iq4_xs, "q8_k"),
}


# --------------------------------------------------------------------------
# llama.cpp's activation quantization (spec 2.4), as a quantize-dequantize
# round trip of each activation row.
# --------------------------------------------------------------------------

def act_q8_0(x):
    """Q8_0 as ggml's x86 quantize_row_q8_0: per 32 values d = amax/127 stored as f16,
    q = round-half-even(x * (127/amax)) (not 1/d, not roundf); returns d16*q."""
    return act_q8_1(x)[0]


def act_q8_1(x):
    """Q8_0 values, plus Q8_1's s = f16(sum(q) * d) per block (d unrounded), shape (T, n/32)."""
    b = x.reshape(x.shape[0], -1, 32)
    amax = np.abs(b).max(axis=2, keepdims=True)
    d = amax / F32(127)
    with np.errstate(divide="ignore"):
        mul = np.where(amax != 0, F32(127) / amax, F32(0)).astype(F32)
    q = np.rint(b * mul).astype(F32)                # float32 product, ties to even
    s = (q.sum(axis=2, keepdims=True) * d).astype(np.float16).astype(F32)
    return (d.astype(np.float16).astype(F32) * q).reshape(x.shape), s.reshape(x.shape[0], -1)


def to_f16(x):
    """float32 rounded to f16 (nearest even), as float32."""
    return x.astype(np.float16).astype(F32)


def to_bf16(x):
    """float32 rounded to bf16 (nearest even; finite values), as float32."""
    u = np.ascontiguousarray(x, dtype=F32).view(np.uint32).astype(np.uint64)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.astype(np.uint32).view(F32)


def act_q8_k(x):
    """Q8_K: per 256 values, iscale = -127/max (max: largest |x|, signed), q = rint, <= 127, d = 1/iscale."""
    b = x.reshape(x.shape[0], -1, 256)
    at = np.abs(b).argmax(axis=2)[..., None]
    mx = np.take_along_axis(b, at, axis=2)
    with np.errstate(divide="ignore"):
        iscale = np.where(mx != 0, F32(-127) / mx, F32(0)).astype(F32)
        d = np.where(mx != 0, F32(1) / iscale, F32(0)).astype(F32)
    q = np.minimum(np.rint(iscale * b), F32(127))
    return (d * q).reshape(x.shape)


# --act-q8 also rounds the activations of F16 / BF16 weights to their type
# (ggml converts src1 to the weight's vec_dot_type, spec 2.4).
ACT_QUANT = {"q8_0": act_q8_0, "q8_k": act_q8_k, "f16": to_f16, "bf16": to_bf16}


def split_min(gguf, name):
    """A Q4_1 / Q5_1 matrix as (d*q part (out, in), per-block m (out, in/32)).

    With Q8_1 activations llama.cpp computes each block's dot product as
    dx*dy*sum(qx*qy) + m*s, where s is the activation block's f16-rounded
    dy*sum(qy): so the min term must be taken with s, not with the
    dequantized activations.
    """
    dims, ttype, data = gguf.raw(name)
    blocks = data.reshape(-1, QTYPES[ttype][2]).copy()
    m = f16(blocks, 2).reshape(dims[1], dims[0] // 32)
    blocks[:, 2:4] = 0                      # m = +0: d*q + 0 is exactly d*q
    return QTYPES[ttype][3](blocks).reshape(dims[1], dims[0]), m


# --------------------------------------------------------------------------
# The Phi-3 model (spec 3)
# --------------------------------------------------------------------------

class Phi3:
    def __init__(self, gguf, act_q8=False, kv_f16=False):
        self.g = gguf
        self.act_q8 = act_q8
        self.kv_f16 = kv_f16
        m = gguf.meta
        arch = m.get("general.architecture", "phi3")

        def hp(key, default=None):
            v = m.get(arch + "." + key, default)
            if v is None:
                raise GGUFError("missing metadata key %s.%s" % (arch, key))
            return v

        # hyper-parameters with the defaults of spec 3.2
        self.n_embd = int(hp("embedding_length"))
        self.n_layer = int(hp("block_count"))
        self.n_ctx_train = int(hp("context_length"))
        self.n_ff = int(hp("feed_forward_length"))
        self.n_head = int(hp("attention.head_count"))
        self.n_head_kv = int(hp("attention.head_count_kv", self.n_head))
        self.eps = F32(hp("attention.layer_norm_rms_epsilon"))
        self.head_dim = self.n_embd // self.n_head
        self.n_rot = int(hp("rope.dimension_count", self.head_dim))
        self.freq_base = float(hp("rope.freq_base", 10000.0))
        self.n_ctx_orig = int(hp("rope.scaling.original_context_length", self.n_ctx_train))
        self.attn_factor = float(F32(hp("rope.scaling.attn_factor", 1.0)))
        if self.n_head % self.n_head_kv or self.n_rot % 2 or self.n_rot > self.head_dim:
            raise GGUFError("inconsistent head counts or rope dimension")

        # matrix name -> (float32 (out, in), vec_dot_type or None, the Q8_1 split or None)
        self.w = {}
        for name, (dims, ttype, _) in gguf.tensors.items():
            if len(dims) == 2 and (name != "token_embd.weight" or "output.weight" not in gguf.tensors):
                vdt = QTYPES[ttype][4]
                q81 = split_min(gguf, name) if act_q8 and vdt == "q8_1" else None
                self.w[name] = (gguf.tensor(name), vdt, q81)
        if "output.weight" not in self.w:           # tied output projection
            self.w["output.weight"] = self.w.pop("token_embd.weight")
        self.norm = {name: gguf.tensor(name) for name, (dims, _, _) in gguf.tensors.items()
                     if name.endswith("norm.weight")}
        ones = np.ones(self.n_rot // 2, dtype=F32)
        self.rope_short = gguf.tensor("rope_factors_short.weight") \
            if "rope_factors_short.weight" in gguf.tensors else ones
        self.rope_long = gguf.tensor("rope_factors_long.weight") \
            if "rope_factors_long.weight" in gguf.tensors else ones
        self.reset(0)

    def reset(self, capacity):
        kv = (capacity, self.n_head_kv, self.head_dim)
        self.k_cache = [np.zeros(kv, F32) for _ in range(self.n_layer)]
        self.v_cache = [np.zeros(kv, F32) for _ in range(self.n_layer)]
        self.n_past = 0

    def matmul(self, x, name):
        """x (T, in) times the weight W (out, in): (T, out), float32."""
        w, vec_dot_type, q81 = self.w[name]
        if not self.act_q8 or vec_dot_type is None:
            return x @ w.T
        if vec_dot_type == "q8_1":
            xq, s = act_q8_1(x)
            return xq @ q81[0].T + s @ q81[1].T
        return ACT_QUANT[vec_dot_type](x) @ w.T

    def rms_norm(self, x, name):
        if self.act_q8:
            # llama.cpp's arithmetic (ggml's rms_norm): the squares rounded to
            # float, summed in double
            sq = (x * x).astype(np.float64)
            ms = (np.sum(sq, axis=-1, keepdims=True) / x.shape[-1]).astype(F32)
        else:
            ms = np.mean(x * x, axis=-1, keepdims=True, dtype=F32)
        return (x * (F32(1) / np.sqrt(ms + self.eps))) * self.norm[name]

    def rope_ggml(self, x, pos, factors):
        """llama.cpp's RoPE (with --act-q8): ggml_rope_cache_init's float θ,
        θ_0 = pos, θ_{i+1} = θ_i * powf(base, -2 / n_rot), cos / sin of θ_i /
        factor_i rounded to float, times attn_factor in float; the rotation
        with the fused multiply-adds of ggml's x86 builds,
        x1' = fma(x1, cos, -(x2 sin)), x2' = fma(x1, sin, x2 cos) (a product
        in double plus a float, rounded once: fma's value but for rare
        double roundings)."""
        half = self.n_rot // 2
        scale = F32(np.float32(self.freq_base) ** F32(-2.0 / self.n_rot))
        theta = np.empty((len(pos), half), dtype=F32)
        theta[:, 0] = pos.astype(F32)
        for i in range(1, half):
            theta[:, i] = theta[:, i - 1] * scale
        t = (theta / factors.astype(F32)).astype(np.float64)
        cos = (np.cos(t).astype(F32) * F32(self.attn_factor))[:, None, :]
        sin = (np.sin(t).astype(F32) * F32(self.attn_factor))[:, None, :]
        x1, x2 = x[..., :half], x[..., half:self.n_rot]
        d = np.float64
        y1 = (x1.astype(d) * cos.astype(d) - (x2 * sin).astype(d)).astype(F32)
        y2 = (x1.astype(d) * sin.astype(d) + (x2 * cos).astype(d)).astype(F32)
        return np.concatenate([y1, y2, x[..., self.n_rot:]], axis=-1)

    def rope(self, x, pos, factors):
        """NeoX RoPE (spec 3.6/3.7) on x (T, heads, head_dim); dims >= n_rot pass through."""
        if self.act_q8:
            return self.rope_ggml(x, pos, factors)
        half = self.n_rot // 2
        i = np.arange(half, dtype=np.float64)
        theta = (pos[:, None].astype(np.float64) * self.freq_base ** (-2.0 * i / self.n_rot)
                 / factors.astype(np.float64))
        cos = (np.cos(theta) * self.attn_factor).astype(F32)[:, None, :]
        sin = (np.sin(theta) * self.attn_factor).astype(F32)[:, None, :]
        x1, x2 = x[..., :half], x[..., half:self.n_rot]
        return np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos, x[..., self.n_rot:]], axis=-1)

    def attention(self, layer, x, pos, factors):
        T, hd, nh, nkv = x.shape[0], self.head_dim, self.n_head, self.n_head_kv
        if "blk.%d.attn_qkv.weight" % layer in self.w:
            qkv = self.matmul(x, "blk.%d.attn_qkv.weight" % layer)
            q, k, v = np.split(qkv, [nh * hd, (nh + nkv) * hd], axis=1)
        else:
            q, k, v = (self.matmul(x, "blk.%d.attn_%s.weight" % (layer, n)) for n in "qkv")
        q = self.rope(q.reshape(T, nh, hd), pos, factors) * F32(1.0 / np.sqrt(hd))
        k = self.rope(k.reshape(T, nkv, hd), pos, factors)
        v = v.reshape(T, nkv, hd)
        if self.kv_f16:
            # llama.cpp's f16 cache: K, V stored as f16, and the other operand of
            # each product converted to f16 too (q after its scaling, spec 2.4)
            k, v, q = to_f16(k), to_f16(v), to_f16(q)
        self.k_cache[layer][pos] = k
        self.v_cache[layer][pos] = v
        n_kv = int(pos.max()) + 1
        group = nh // nkv                           # query head h uses kv head h // group
        keys = np.repeat(self.k_cache[layer][:n_kv].transpose(1, 0, 2), group, axis=0)
        vals = np.repeat(self.v_cache[layer][:n_kv].transpose(1, 0, 2), group, axis=0)
        scores = q.transpose(1, 0, 2) @ keys.transpose(0, 2, 1)      # (nh, T, n_kv)
        scores[:, np.arange(n_kv)[None, :] > pos[:, None]] = -np.inf  # causal mask
        e = np.exp(scores - scores.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
        if self.kv_f16:
            p = to_f16(p)
        out = (p @ vals).transpose(1, 0, 2).reshape(T, nh * hd)
        return self.matmul(out, "blk.%d.attn_output.weight" % layer)

    def ffn(self, layer, x):
        gu = self.matmul(x, "blk.%d.ffn_up.weight" % layer)
        gate, up = gu[:, :self.n_ff], gu[:, self.n_ff:]
        with np.errstate(over="ignore"):
            act = gate / (F32(1) + np.exp(-gate)) * up
        return self.matmul(act, "blk.%d.ffn_down.weight" % layer)

    def forward(self, tokens, rope_len=0):
        """Evaluate tokens at positions n_past.. ; returns logits (T, n_vocab).

        LongRoPE (spec 3.7): the long factors are used iff the sequence length
        seen by this pass, max(highest position + 1, rope_len), exceeds the
        original context length; cached keys keep the rotation they got.
        """
        pos = np.arange(self.n_past, self.n_past + len(tokens))
        seq_len = max(int(pos.max()) + 1, rope_len)
        factors = self.rope_long if seq_len > self.n_ctx_orig else self.rope_short
        h = self.g.tensor("token_embd.weight", rows=tokens)
        for layer in range(self.n_layer):
            x = self.rms_norm(h, "blk.%d.attn_norm.weight" % layer)
            h = h + self.attention(layer, x, pos, factors)
            x = self.rms_norm(h, "blk.%d.ffn_norm.weight" % layer)
            h = h + self.ffn(layer, x)
        self.n_past += len(tokens)
        return self.matmul(self.rms_norm(h, "output_norm.weight"), "output.weight")


def run(model, prompt, n_gen, batch=0):
    """Prompt in one pass (or chunks of `batch`), then n_gen greedy tokens; all logits rows."""
    model.reset(len(prompt) + n_gen)
    batch = batch or len(prompt)
    rows = [model.forward(prompt[i:i + batch], rope_len=len(prompt))
            for i in range(0, len(prompt), batch)]
    logits = np.concatenate(rows)
    out = [logits]
    for _ in range(n_gen):
        token = int(np.argmax(out[-1][-1]))         # first maximum: smaller id wins ties
        out.append(model.forward([token]))
    return np.concatenate(out)


def format_top(logits, k):
    lines = []
    for pos, row in enumerate(logits):
        k = min(k, len(row))
        kth = np.partition(row, len(row) - k)[len(row) - k]    # the k-th largest value
        cand = np.flatnonzero(row >= kth)
        top = cand[np.lexsort((cand, -row[cand]))][:k]          # descending, ties by smaller id
        lines.append("%d %s" % (pos, " ".join("%d:%.6f" % (i, row[i]) for i in top)))
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description="numpy reference of Phi-3 inference")
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--tokens", required=True, help='prompt token ids, e.g. "1 2 3"')
    ap.add_argument("-n", type=int, default=0, help="tokens to greedy-decode")
    ap.add_argument("--top-logits", type=int, default=10, metavar="K")
    ap.add_argument("--kv-f16", action="store_true", help="round K and V to f16 in the cache")
    ap.add_argument("--act-q8", action="store_true",
                    help="quantize activations to the weight's vec_dot_type before each matmul")
    ap.add_argument("--batch", type=int, default=0, help="prompt tokens per pass (default: all)")
    ap.add_argument("--full-logits", metavar="FILE", help="save all logits (npy)")
    a = ap.parse_args(argv)
    try:
        model = Phi3(GGUF(a.model), act_q8=a.act_q8, kv_f16=a.kv_f16)
        prompt = [int(t) for t in a.tokens.split()]
        n_vocab = model.w["output.weight"][0].shape[0]
        if not prompt or min(prompt) < 0 or max(prompt) >= n_vocab:
            raise GGUFError("prompt token ids must be in 0..%d" % (n_vocab - 1))
        logits = run(model, prompt, a.n, a.batch)
    except (GGUFError, OSError, ValueError) as e:
        sys.stderr.write("phi3_ref: %s\n" % e)
        return 1
    sys.stdout.write(format_top(logits, a.top_logits))
    if a.full_logits:
        np.save(a.full_logits, logits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
