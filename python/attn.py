"""libattn from Python: scaled dot-product and multi-head attention on NumPy arrays.

A single-file ctypes module over the installed C library (libattn.so.1): no
build step, no packaging. Copy it next to your code, or put this folder on
sys.path. It needs NumPy (Debian: python3-numpy).

    import numpy as np
    import attn

    q = np.array([[0.3367, 0.1288], [0.2345, 0.2303], [-1.1229, -0.1863]], np.float32)
    k = np.array([[2.2082, -0.6380], [0.4617, 0.2674], [0.5349, 0.8094]], np.float32)
    v = np.array([[1.1103, -1.6898], [-0.9890, 0.9580], [1.3221, 0.8172]], np.float32)
    out, weights = attn.sdpa(q[None], k[None], v[None], return_weights=True)
    print(out[0])   # [[0.5697 -0.1520] [0.5379 -0.0265] [0.2246 0.5556]]

Arrays go in as any NumPy array (converted to C-ordered float32 when they
are not already) and come out as new float32 arrays. Every failure raises
AttnError, which carries libattn's status (`.status`, an int, and
`.status_name`) and the message of attn_last_error() (`.message`), e.g.
"attn_sdpa_create: heads_q (6) is not a multiple of heads_kv (4)".

The library is found as $ATTN_LIBRARY if set, else as libattn.so.1 through
the dynamic loader (ldconfig's cache, LD_LIBRARY_PATH), which is where the
Debian package libattn1 and `meson install` into /usr/local put it.

Threads: each Python thread gets its own libattn context (threads and
scratch memory) unless you pass ctx=Context(...). ctypes releases the GIL
during the calls. libattn never changes the BLAS library's thread count:
run with OPENBLAS_NUM_THREADS=1 for speed (see docs/threading.md).
"""

import ctypes
import ctypes.util
import os
import threading

import numpy as np

__all__ = [
    "AttnError", "Context", "MultiheadAttention", "sdpa", "version", "version_number",
    "ATTN_OK", "ATTN_ERR_NULL_POINTER", "ATTN_ERR_INVALID_ARGUMENT", "ATTN_ERR_SHAPE_MISMATCH",
    "ATTN_ERR_SIZE_OVERFLOW", "ATTN_ERR_OUT_OF_MEMORY", "ATTN_ERR_UNSUPPORTED", "ATTN_ERR_STATE",
    "ATTN_ERR_COMMUNICATION",
]

# attn_status values (fixed forever; see attn.h).
ATTN_OK = 0
ATTN_ERR_NULL_POINTER = 1
ATTN_ERR_INVALID_ARGUMENT = 2
ATTN_ERR_SHAPE_MISMATCH = 3
ATTN_ERR_SIZE_OVERFLOW = 4
ATTN_ERR_OUT_OF_MEMORY = 5
ATTN_ERR_UNSUPPORTED = 6
ATTN_ERR_STATE = 7
ATTN_ERR_COMMUNICATION = 8

_STATUS_NAMES = {
    0: "ATTN_OK", 1: "ATTN_ERR_NULL_POINTER", 2: "ATTN_ERR_INVALID_ARGUMENT",
    3: "ATTN_ERR_SHAPE_MISMATCH", 4: "ATTN_ERR_SIZE_OVERFLOW", 5: "ATTN_ERR_OUT_OF_MEMORY",
    6: "ATTN_ERR_UNSUPPORTED", 7: "ATTN_ERR_STATE", 8: "ATTN_ERR_COMMUNICATION",
}

# attn_layout, attn_causal and attn_proj values.
_LAYOUTS = {"bhsd": 0, "bshd": 1}
_CAUSAL = {None: 0, False: 0, "none": 0, True: 1, "top_left": 1, "bottom_right": 2}
_PROJ = {"q": 0, "k": 1, "v": 2, "o": 3}


class AttnError(RuntimeError):
    """A failed libattn call: .status (int), .status_name, .message."""

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = _STATUS_NAMES.get(self.status, "unknown attn_status")
        self.message = message
        super().__init__(f"{message} ({self.status_name})")


# ---- the C library ----------------------------------------------------------

def _load():
    path = os.environ.get("ATTN_LIBRARY")
    if path:
        return ctypes.CDLL(path)
    try:
        return ctypes.CDLL("libattn.so.1")   # the soname: ABI major version 1
    except OSError:
        found = ctypes.util.find_library("attn")
        if found:
            return ctypes.CDLL(found)
        raise OSError("libattn.so.1 not found: install libattn1 (Debian), or set "
                      "LD_LIBRARY_PATH or ATTN_LIBRARY to the installed library") from None


_lib = _load()
_int, _i64, _f32, _p = ctypes.c_int, ctypes.c_int64, ctypes.c_float, ctypes.c_void_p
_pp = ctypes.POINTER(ctypes.c_void_p)


def _declare(name, restype, *argtypes):
    fn = getattr(_lib, name)
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


_version_number = _declare("attn_version_number", ctypes.c_uint)
_version_string = _declare("attn_version_string", ctypes.c_char_p)
_last_error = _declare("attn_last_error", ctypes.c_char_p)
_context_create = _declare("attn_context_create", _int, _pp)
_context_destroy = _declare("attn_context_destroy", None, _p)
_context_set_num_threads = _declare("attn_context_set_num_threads", _int, _p, _int)
_mask_create = _declare("attn_mask_create", _int, _pp)
_mask_destroy = _declare("attn_mask_destroy", None, _p)
_mask_set_kv_lengths = _declare("attn_mask_set_kv_lengths", _int, _p, _p, _i64, _i64, _int)
_mask_set_bool = _declare("attn_mask_set_bool", _int, _p, _p, _i64, _i64, _i64, _i64)
_mask_set_bias = _declare("attn_mask_set_bias", _int, _p, _p, _i64, _i64, _i64, _i64)
_sdpa_create = _declare("attn_sdpa_create", _int, _pp, _i64, _i64, _i64, _i64, _i64, _i64, _i64)
_sdpa_destroy = _declare("attn_sdpa_destroy", None, _p)
_sdpa_set_layout = _declare("attn_sdpa_set_layout", _int, _p, _int)
_sdpa_set_scale = _declare("attn_sdpa_set_scale", _int, _p, _f32)
_sdpa_set_causal = _declare("attn_sdpa_set_causal", _int, _p, _int)
_sdpa_forward = _declare("attn_sdpa_forward", _int, _p, _p, _p, _p, _p, _p, _p, _p, _p)
_mha_create = _declare("attn_mha_create", _int, _pp, _i64, _i64, _i64, _i64, _i64, _int)
_mha_destroy = _declare("attn_mha_destroy", None, _p)
_mha_set_weights = _declare("attn_mha_set_weights", _int, _p, _int, _p, _p)
_mha_set_causal = _declare("attn_mha_set_causal", _int, _p, _int)
_mha_forward = _declare("attn_mha_forward", _int, _p, _p, _i64, _i64, _i64, _p, _p, _p, _p, _p,
                        _p)


def _check(status):
    """Raises AttnError with attn_last_error() (this thread's) unless ATTN_OK."""
    if status != ATTN_OK:
        raise AttnError(status, _last_error().decode("utf-8", "replace"))


def _create(create, *args):
    handle = ctypes.c_void_p()
    _check(create(ctypes.byref(handle), *args))
    return handle


def _shape_error(message):
    return AttnError(ATTN_ERR_SHAPE_MISMATCH, message)


def _ptr(a):
    """The address of an array's data, or None (NULL) for None."""
    return None if a is None else a.ctypes.data


def _floats(x, name, ndims):
    a = np.ascontiguousarray(x, dtype=np.float32)
    if a.ndim not in ndims:
        raise _shape_error(f"{name} has {a.ndim} dimensions, expected "
                           + " or ".join(map(str, ndims)))
    return a


def version():
    """The runtime library's version, "MAJOR.MINOR.PATCH"."""
    return _version_string().decode()


def version_number():
    """The runtime library's version as MAJOR*10000 + MINOR*100 + PATCH."""
    return int(_version_number())


class Context:
    """An attn_context: worker threads and scratch memory, for one thread at a
    time. num_threads 0 (the default) lets libattn choose (attn.h)."""

    def __init__(self, num_threads=0):
        self._handle = _create(_context_create)
        if num_threads:
            try:
                _check(_context_set_num_threads(self._handle, int(num_threads)))
            except AttnError:
                self.close()
                raise

    def close(self, _destroy=_context_destroy):
        """Stops the threads and frees the memory (also done when collected)."""
        if getattr(self, "_handle", None):
            _destroy(self._handle)
            self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


_local = threading.local()


def _context(ctx):
    if ctx is not None:
        return ctx._handle
    if getattr(_local, "ctx", None) is None:
        _local.ctx = Context()
    return _local.ctx._handle


class _Mask:
    """An attn_mask with the arrays it references (kept alive here)."""

    def __init__(self, batch, heads, len_q, len_kv, kv_lengths, keep, bias, to4d):
        self._handle = None
        self.arrays = []
        if kv_lengths is None and keep is None and bias is None:
            return
        self._handle = _create(_mask_create)
        if kv_lengths is not None:
            lengths = np.ascontiguousarray(kv_lengths, dtype=np.int64)
            if lengths.ndim == 1:
                per_query = 0
            elif lengths.ndim == 2:
                per_query = 1
            else:
                raise _shape_error("kv_lengths must be [batch] or [batch, len_q]")
            if lengths.shape != ((batch,) if per_query == 0 else (batch, len_q)):
                raise _shape_error(f"kv_lengths has shape {lengths.shape}, expected "
                                   f"({batch},) or ({batch}, {len_q})")
            self.arrays.append(lengths)
            _check(_mask_set_kv_lengths(self._handle, _ptr(lengths), batch, len_q, per_query))
        for array, dtype, setter in ((keep, np.uint8, _mask_set_bool),
                                     (bias, np.float32, _mask_set_bias)):
            if array is None:
                continue
            a = np.ascontiguousarray(to4d(np.asarray(array)), dtype=dtype)
            if a.shape[3] != len_kv:
                raise _shape_error(f"the mask's last dimension is {a.shape[3]}, "
                                   f"expected len_kv = {len_kv}")
            self.arrays.append(a)
            _check(setter(self._handle, _ptr(a), *a.shape))

    def __del__(self, _destroy=_mask_destroy):
        if self._handle:
            _destroy(self._handle)
            self._handle = None


def _mask_4d(ndim_in):
    """Turns a mask broadcastable (NumPy rules) to the weights' shape into the
    [mb, mh, mq, len_kv] of attn.h; for 3-D inputs the heads axis is added."""
    def to4d(m):
        if m.ndim == 0 or m.ndim > ndim_in:
            raise _shape_error(f"a mask has {m.ndim} dimensions, expected 1 to {ndim_in}")
        m = m.reshape((1,) * (ndim_in - m.ndim) + m.shape)
        return m[:, None] if ndim_in == 3 else m
    return to4d


def sdpa(q, k, v, *, kv_lengths=None, keep=None, bias=None, causal=None, scale=None,
         layout="bhsd", return_weights=False, return_lse=False, ctx=None):
    """Scaled dot-product attention, attn_sdpa_forward.

    q [B, Hq, Lq, D], k [B, Hkv, Lkv, D], v [B, Hkv, Lkv, Dv] (layout "bhsd",
    the default), or [B, L, H, D] each with layout="bshd"; or 3-D [B, L, D]
    (one head). Hq must be a multiple of Hkv (grouped-query attention).

    kv_lengths: int [B] (valid keys per batch row) or [B, Lq] (per query).
    keep: bool mask, True = attend; bias: float mask added to the scaled
    logits; both broadcast (NumPy rules) to the weights' shape
    [B, Hq, Lq, Lkv] ([B, Lq, Lkv] for 3-D inputs), with a last dimension of
    exactly Lkv. causal: None, "top_left" (or True, PyTorch's is_causal) or
    "bottom_right". scale: default 1/sqrt(D).

    Returns out (the shape of q with D replaced by Dv); with return_weights
    and/or return_lse, a tuple (out, weights, lse) of those asked for. weights
    is [B, Hq, Lq, Lkv], lse [B, Hq, Lq] (without the head axis for 3-D
    inputs). A query that sees no key gets zeros and lse -inf.
    """
    q, k, v = (_floats(x, n, (3, 4)) for x, n in ((q, "q"), (k, "k"), (v, "v")))
    if not q.ndim == k.ndim == v.ndim:
        raise _shape_error("q, k and v must have the same number of dimensions")
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be 'bhsd' or 'bshd', not {layout!r}")
    if causal not in _CAUSAL:
        raise ValueError(f"causal must be None, True, 'top_left' or 'bottom_right', "
                         f"not {causal!r}")
    three_d = q.ndim == 3
    if three_d:
        q4, k4, v4 = q[:, None], k[:, None], v[:, None]   # one head
    elif layout == "bshd":
        q4, k4, v4 = (x.transpose(0, 2, 1, 3) for x in (q, k, v))   # shape only: no copy passed
    else:
        q4, k4, v4 = q, k, v
    batch, heads_q, len_q, dim_qk = q4.shape
    _, heads_kv, len_kv, dim_v = v4.shape
    if k4.shape != (batch, heads_kv, len_kv, dim_qk) or v4.shape[0] != batch:
        raise _shape_error(f"q {q.shape}, k {k.shape} and v {v.shape} do not fit together")

    op = _create(_sdpa_create, batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v)
    try:
        if layout == "bshd" and not three_d:
            _check(_sdpa_set_layout(op, _LAYOUTS["bshd"]))
        if scale is not None:
            _check(_sdpa_set_scale(op, float(scale)))
        _check(_sdpa_set_causal(op, _CAUSAL[causal]))
        mask = _Mask(batch, heads_q, len_q, len_kv, kv_lengths, keep, bias, _mask_4d(q.ndim))
        out = np.empty(q.shape[:-1] + (dim_v,), np.float32)   # in the layout of q
        weights = np.empty((batch, heads_q, len_q, len_kv), np.float32) if return_weights else None
        lse = np.empty((batch, heads_q, len_q), np.float32) if return_lse else None
        _check(_sdpa_forward(_context(ctx), op, _ptr(q), _ptr(k), _ptr(v), mask._handle,
                             _ptr(out), _ptr(weights), _ptr(lse)))
    finally:
        _sdpa_destroy(op)
    if three_d:
        weights = None if weights is None else weights[:, 0]
        lse = None if lse is None else lse[:, 0]
    extras = [x for x, wanted in ((weights, return_weights), (lse, return_lse)) if wanted]
    return (out, *extras) if extras else out


class MultiheadAttention:
    """A multi-head attention layer with torch.nn.MultiheadAttention's numbers
    (attn_mha): embed_dim, num_heads, num_kv_heads (default num_heads; fewer is
    grouped-query attention), kdim and vdim (default embed_dim), bias.

    Set the weights with load_state_dict (a PyTorch state_dict converted to
    NumPy arrays) or set_weights, then call the layer on [B, L, E] arrays
    (batch_first=True), or [L, E] unbatched.
    """

    def __init__(self, embed_dim, num_heads, num_kv_heads=None, kdim=None, vdim=None,
                 bias=True):
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.num_kv_heads = int(num_kv_heads or num_heads)
        self.kdim, self.vdim = int(kdim or embed_dim), int(vdim or embed_dim)
        self.bias = bool(bias)
        self._handle = None
        self._handle = _create(_mha_create, self.embed_dim, self.num_heads, self.num_kv_heads,
                               self.kdim, self.vdim, int(self.bias))

    def set_weights(self, which, weight, bias=None):
        """Copies one projection, which in "q", "k", "v", "o": weight
        [out_features, in_features] as nn.Linear.weight, bias [out_features]."""
        if which not in _PROJ:
            raise ValueError(f"which must be one of 'q', 'k', 'v', 'o', not {which!r}")
        rows = self.embed_dim if which in "qo" else (
            self.embed_dim // self.num_heads * self.num_kv_heads)
        cols = {"q": self.embed_dim, "k": self.kdim, "v": self.vdim, "o": self.embed_dim}[which]
        w = np.ascontiguousarray(weight, dtype=np.float32)
        if w.shape != (rows, cols):
            raise _shape_error(f"the {which} weight has shape {w.shape}, expected {(rows, cols)}")
        b = None
        if bias is not None:
            b = np.ascontiguousarray(bias, dtype=np.float32)
            if b.shape != (rows,):
                raise _shape_error(f"the {which} bias has shape {b.shape}, expected ({rows},)")
        _check(_mha_set_weights(self._handle, _PROJ[which], _ptr(w), _ptr(b)))

    def load_state_dict(self, state):
        """Sets all four projections from nn.MultiheadAttention's state_dict
        (values as NumPy arrays): in_proj_weight (or q_proj_weight,
        k_proj_weight, v_proj_weight), in_proj_bias, out_proj.weight,
        out_proj.bias."""
        e = self.embed_dim
        kv = e // self.num_heads * self.num_kv_heads
        ib = state.get("in_proj_bias")
        bq, bk, bv = (None, None, None) if ib is None else (ib[:e], ib[e:e + kv], ib[e + kv:])
        if "in_proj_weight" in state:
            w = np.asarray(state["in_proj_weight"])
            wq, wk, wv = w[:e], w[e:e + kv], w[e + kv:]
        else:
            wq, wk, wv = (state[n] for n in ("q_proj_weight", "k_proj_weight", "v_proj_weight"))
        self.set_weights("q", wq, bq)
        self.set_weights("k", wk, bk)
        self.set_weights("v", wv, bv)
        self.set_weights("o", state["out_proj.weight"], state.get("out_proj.bias"))

    def set_causal(self, causal):
        """None, "top_left" (or True) or "bottom_right" (attn_mha_set_causal)."""
        if causal not in _CAUSAL:
            raise ValueError(f"causal must be None, True, 'top_left' or 'bottom_right', "
                             f"not {causal!r}")
        _check(_mha_set_causal(self._handle, _CAUSAL[causal]))

    def __call__(self, query, key=None, value=None, *, kv_lengths=None, keep=None, bias=None,
                 return_weights=False, ctx=None):
        """attn_mha_forward. query [B, L, E], key [B, S, kdim] (default:
        query), value [B, S, vdim] (default: key); 2-D arrays are one
        unbatched sequence. kv_lengths [B] or [B, L]; keep (True = attend,
        the NOT of PyTorch's bool masks) and bias broadcast to
        [B, num_heads, L, S]. Returns out [B, L, E], or (out, weights) with
        weights [B, num_heads, L, S] (PyTorch's average_attn_weights=False)."""
        key = query if key is None else key
        value = key if value is None else value
        x, kx, vx = (_floats(a, n, (2, 3)) for a, n in ((query, "query"), (key, "key"),
                                                         (value, "value")))
        unbatched = x.ndim == 2
        if not x.ndim == kx.ndim == vx.ndim:
            raise _shape_error("query, key and value must have the same number of dimensions")
        if unbatched:
            x, kx, vx = x[None], kx[None], vx[None]
        batch, len_q, _ = x.shape
        len_kv = kx.shape[1]
        if (x.shape[2] != self.embed_dim or kx.shape != (batch, len_kv, self.kdim)
                or vx.shape != (batch, len_kv, self.vdim)):
            raise _shape_error(f"query {x.shape}, key {kx.shape} and value {vx.shape} do not "
                               f"fit embed_dim {self.embed_dim}, kdim {self.kdim}, "
                               f"vdim {self.vdim}")
        mask = _Mask(batch, self.num_heads, len_q, len_kv, kv_lengths, keep, bias, _mask_4d(4))
        out = np.empty((batch, len_q, self.embed_dim), np.float32)
        weights = (np.empty((batch, self.num_heads, len_q, len_kv), np.float32)
                   if return_weights else None)
        _check(_mha_forward(_context(ctx), self._handle, batch, len_q, len_kv, _ptr(x),
                            _ptr(kx), _ptr(vx), mask._handle, _ptr(out), _ptr(weights)))
        if unbatched:
            out = out[0]
            weights = None if weights is None else weights[0]
        return (out, weights) if return_weights else out

    def close(self, _destroy=_mha_destroy):
        """Frees the layer (also done when collected)."""
        if getattr(self, "_handle", None):
            _destroy(self._handle)
            self._handle = None

    def __del__(self):
        self.close()
