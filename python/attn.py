"""libattn from Python: attention, its gradients and the layers built on it, on NumPy arrays.

A single-file ctypes module over the installed C library (libattn.so.1): no
build step. Install it with pip (python/README.md) or the Debian package
python3-attn, or copy it next to your code. It needs NumPy (Debian:
python3-numpy).

    import numpy as np
    import attn

    q = np.array([[0.3367, 0.1288], [0.2345, 0.2303], [-1.1229, -0.1863]], np.float32)
    k = np.array([[2.2082, -0.6380], [0.4617, 0.2674], [0.5349, 0.8094]], np.float32)
    v = np.array([[1.1103, -1.6898], [-0.9890, 0.9580], [1.3221, 0.8172]], np.float32)
    out, weights = attn.sdpa(q[None], k[None], v[None], return_weights=True)
    print(out[0])   # [[0.5697 -0.1520] [0.5379 -0.0265] [0.2246 0.5556]]

What is here, by C header (include/attn.h and its parts; each docstring
names the C function it calls, whose comment is the full contract):
  attn.h           sdpa() and Sdpa, Mask, MultiheadAttention, AdditiveAttention,
                   nadaraya_watson(), positional_encoding(), Context,
                   runtime_info(), version(), status_string()
  attn_training.h  Sdpa.backward and dropout, Activations, forward_train and
                   backward of the layers, get_params/set_params,
                   nadaraya_watson_backward()
  attn_encoder.h   EncoderLayer, layer_norm(), layer_norm_backward()
  attn_modifiers.h set_window, set_softcap, set_alibi, clear_alibi (Sdpa, MHA)
  attn_rope.h      Rope, MultiheadAttention.set_rope
  attn_decoding.h  KVCache, forward_cached (Sdpa, MHA, EncoderLayer),
                   merge_partials()
attn_set_error is not wrapped: it sets libattn's per-thread error text for C
code built on libattn; Python code reports with exceptions instead.

Arrays go in as any NumPy array of real numbers (converted to C-ordered
float32, int64 for lengths and positions, when they are not already) and
come out as new arrays: libattn never writes into the caller's arrays. Every
failure raises AttnError, which carries libattn's status (`.status`, an int,
and `.status_name`) and a message (`.message`) naming the C function, e.g.
"attn_sdpa_create: heads_q (6) is not a multiple of heads_kv (4)". Shapes
and dtypes are checked here before any C call (ATTN_ERR_SHAPE_MISMATCH,
ATTN_ERR_INVALID_ARGUMENT); the library's own failures carry the text of
attn_last_error(). A wrong option string (layout, causal, ...) is a
ValueError.

Objects (Context, Mask, Sdpa, MultiheadAttention, AdditiveAttention,
EncoderLayer, Activations, Rope, KVCache) own one libattn handle each: close()
or a `with` block frees it at once, garbage collection otherwise. Where a
libattn handle references caller memory (a mask's arrays; the mask a training
forward keeps for the backward), the Python object holds that memory.

The library is found as $ATTN_LIBRARY if set, else as libattn.so.1 through
the dynamic loader (ldconfig's cache, LD_LIBRARY_PATH), which is where the
Debian package libattn1 and `meson install` into /usr/local put it. With a
libattn 1.0, the 1.1 calls raise AttnError(ATTN_ERR_UNSUPPORTED).

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
    "AttnError", "Context", "Mask", "Sdpa", "MultiheadAttention", "AdditiveAttention",
    "EncoderLayer", "Activations", "Rope", "KVCache",
    "sdpa", "nadaraya_watson", "nadaraya_watson_backward", "positional_encoding",
    "layer_norm", "layer_norm_backward", "merge_partials", "runtime_info",
    "version", "version_number", "status_string",
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

# The values of attn_layout, attn_causal, attn_proj, attn_activation,
# attn_rope_style and attn_mha_property.
_LAYOUTS = {"bhsd": 0, "bshd": 1}
_CAUSAL = {None: 0, False: 0, "none": 0, True: 1, "top_left": 1, "bottom_right": 2}
_PROJ = {"q": 0, "k": 1, "v": 2, "o": 3}
_ACTIVATIONS = {"relu": 0, "gelu": 1}
_ROPE_STYLES = {"half": 0, "interleaved": 1}
_MHA_PROPERTIES = {
    "embed_dim": 0, "num_heads": 1, "num_kv_heads": 2, "head_dim": 3, "kdim": 4, "vdim": 5,
    "bias": 6, "causal": 7, "has_modifiers": 8, "has_rope": 9, "has_dropout": 10,
}


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
_int, _i64, _u64, _f32 = ctypes.c_int, ctypes.c_int64, ctypes.c_uint64, ctypes.c_float
_size = ctypes.c_size_t
_pp = ctypes.POINTER(ctypes.c_void_p)


_DECLARED = []   # the C functions this module calls, in order (tests/test_python.py)


def _declare(name, restype, *argtypes):
    _DECLARED.append(name)
    try:
        fn = getattr(_lib, name)
    except AttributeError:   # a 1.1 call on a libattn 1.0
        def missing(*args):
            raise AttnError(ATTN_ERR_UNSUPPORTED, f"{name}: not exported by this libattn.so.1 "
                            f"({version()}); it came with libattn 1.1")
        return missing
    fn.restype, fn.argtypes = restype, list(argtypes)
    return fn


_P = ctypes.c_void_p   # a pointer argument (array, handle or NULL)
_S = _int              # every call that can fail returns an attn_status (an int)

# attn.h: basics, masks, SDPA, MHA, additive, Nadaraya–Watson, positional, runtime info.
_version_number = _declare("attn_version_number", ctypes.c_uint)
_version_string = _declare("attn_version_string", ctypes.c_char_p)
_status_string = _declare("attn_status_string", ctypes.c_char_p, _int)
_last_error = _declare("attn_last_error", ctypes.c_char_p)
_context_create = _declare("attn_context_create", _S, _pp)
_context_destroy = _declare("attn_context_destroy", None, _P)
_context_set_num_threads = _declare("attn_context_set_num_threads", _S, _P, _int)
_mask_create = _declare("attn_mask_create", _S, _pp)
_mask_destroy = _declare("attn_mask_destroy", None, _P)
_mask_clear = _declare("attn_mask_clear", _S, _P)
_mask_set_kv_lengths = _declare("attn_mask_set_kv_lengths", _S, _P, _P, _i64, _i64, _int)
_mask_set_bool = _declare("attn_mask_set_bool", _S, _P, _P, _i64, _i64, _i64, _i64)
_mask_set_bias = _declare("attn_mask_set_bias", _S, _P, _P, _i64, _i64, _i64, _i64)
_sdpa_create = _declare("attn_sdpa_create", _S, _pp, _i64, _i64, _i64, _i64, _i64, _i64, _i64)
_sdpa_destroy = _declare("attn_sdpa_destroy", None, _P)
_sdpa_set_layout = _declare("attn_sdpa_set_layout", _S, _P, _int)
_sdpa_set_scale = _declare("attn_sdpa_set_scale", _S, _P, _f32)
_sdpa_set_causal = _declare("attn_sdpa_set_causal", _S, _P, _int)
_sdpa_forward = _declare("attn_sdpa_forward", _S, _P, _P, _P, _P, _P, _P, _P, _P, _P)
_mha_create = _declare("attn_mha_create", _S, _pp, _i64, _i64, _i64, _i64, _i64, _int)
_mha_destroy = _declare("attn_mha_destroy", None, _P)
_mha_set_weights = _declare("attn_mha_set_weights", _S, _P, _int, _P, _P)
_mha_set_causal = _declare("attn_mha_set_causal", _S, _P, _int)
_mha_get_property = _declare("attn_mha_get_property", _S, _P, _int, _P)
_mha_forward = _declare("attn_mha_forward", _S, _P, _P, _i64, _i64, _i64, _P, _P, _P, _P, _P,
                        _P)
_additive_create = _declare("attn_additive_create", _S, _pp, _i64, _i64, _i64)
_additive_destroy = _declare("attn_additive_destroy", None, _P)
_additive_set_weights = _declare("attn_additive_set_weights", _S, _P, _P, _P, _P)
_additive_forward = _declare("attn_additive_forward", _S, _P, _P, _i64, _i64, _i64, _i64, _P,
                             _P, _P, _P, _P, _P)
_nadaraya_watson = _declare("attn_nadaraya_watson", _S, _P, _i64, _i64, _P, _P, _P, _f32, _P,
                            _P)
_positional_encoding = _declare("attn_positional_encoding", _S, _P, _i64, _i64, _i64, _f32)
_runtime_info = _declare("attn_runtime_info", _size, ctypes.c_char_p, _size)

# attn_training.h: gradients, activations, flat parameters, dropout.
_sdpa_set_dropout = _declare("attn_sdpa_set_dropout", _S, _P, _f32, _u64)
_dropout_keep_mask = _declare("attn_dropout_keep_mask", _S, _P, _P)
_sdpa_backward = _declare("attn_sdpa_backward", _S, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P, _P,
                          _P)
_activations_create = _declare("attn_activations_create", _S, _pp)
_activations_destroy = _declare("attn_activations_destroy", None, _P)
_mha_param_count = _declare("attn_mha_param_count", _S, _P, _P)
_mha_get_params = _declare("attn_mha_get_params", _S, _P, _P)
_mha_set_params = _declare("attn_mha_set_params", _S, _P, _P)
_mha_set_dropout = _declare("attn_mha_set_dropout", _S, _P, _f32, _u64)
_mha_forward_train = _declare("attn_mha_forward_train", _S, _P, _P, _i64, _i64, _i64, _P, _P,
                              _P, _P, _P, _P, _P)
_mha_backward = _declare("attn_mha_backward", _S, _P, _P, _P, _P, _P, _P, _P, _P)
_additive_param_count = _declare("attn_additive_param_count", _S, _P, _P)
_additive_get_params = _declare("attn_additive_get_params", _S, _P, _P)
_additive_set_params = _declare("attn_additive_set_params", _S, _P, _P)
_additive_forward_train = _declare("attn_additive_forward_train", _S, _P, _P, _i64, _i64, _i64,
                                   _i64, _P, _P, _P, _P, _P, _P, _P)
_additive_backward = _declare("attn_additive_backward", _S, _P, _P, _P, _P, _P, _P, _P, _P)
_nadaraya_watson_backward = _declare("attn_nadaraya_watson_backward", _S, _P, _i64, _i64, _P,
                                     _P, _P, _f32, _P, _P, _P, _P, _P)

# attn_encoder.h: the encoder layer and layer normalisation.
_encoder_create = _declare("attn_encoder_layer_create", _S, _pp, _i64, _i64, _i64, _int, _int,
                           _f32)
_encoder_destroy = _declare("attn_encoder_layer_destroy", None, _P)
_encoder_set_causal = _declare("attn_encoder_layer_set_causal", _S, _P, _int)
_encoder_set_dropout = _declare("attn_encoder_layer_set_dropout", _S, _P, _f32, _u64)
_encoder_param_count = _declare("attn_encoder_layer_param_count", _S, _P, _P)
_encoder_get_params = _declare("attn_encoder_layer_get_params", _S, _P, _P)
_encoder_set_params = _declare("attn_encoder_layer_set_params", _S, _P, _P)
_encoder_forward = _declare("attn_encoder_layer_forward", _S, _P, _P, _i64, _i64, _P, _P, _P, _P)
_encoder_backward = _declare("attn_encoder_layer_backward", _S, _P, _P, _P, _P, _P, _P)
_layer_norm = _declare("attn_layer_norm", _S, _i64, _i64, _P, _P, _P, _f32, _P)
_layer_norm_backward = _declare("attn_layer_norm_backward", _S, _i64, _i64, _P, _P, _f32, _P,
                                _P, _P, _P)

# attn_modifiers.h: sliding window, softcap, ALiBi.
_sdpa_set_window = _declare("attn_sdpa_set_window", _S, _P, _i64, _i64)
_sdpa_set_softcap = _declare("attn_sdpa_set_softcap", _S, _P, _f32)
_sdpa_set_alibi = _declare("attn_sdpa_set_alibi", _S, _P, _P)
_sdpa_clear_alibi = _declare("attn_sdpa_clear_alibi", _S, _P)
_mha_set_window = _declare("attn_mha_set_window", _S, _P, _i64, _i64)
_mha_set_softcap = _declare("attn_mha_set_softcap", _S, _P, _f32)
_mha_set_alibi = _declare("attn_mha_set_alibi", _S, _P, _P)
_mha_clear_alibi = _declare("attn_mha_clear_alibi", _S, _P)

# attn_rope.h: rotary position embedding.
_rope_create = _declare("attn_rope_create", _S, _pp, _i64, _i64, _f32, _int)
_rope_destroy = _declare("attn_rope_destroy", None, _P)
_rope_set_linear_scaling = _declare("attn_rope_set_linear_scaling", _S, _P, _f32)
_rope_set_llama3_scaling = _declare("attn_rope_set_llama3_scaling", _S, _P, _f32, _f32, _f32,
                                    _i64)
_rope_set_inv_freq = _declare("attn_rope_set_inv_freq", _S, _P, _P)
_rope_set_tables = _declare("attn_rope_set_tables", _S, _P, _P, _P, _i64)
_rope_apply = _declare("attn_rope_apply", _S, _P, _P, _int, _i64, _i64, _i64, _P, _P, _i64, _int)
_mha_set_rope = _declare("attn_mha_set_rope", _S, _P, _P)

# attn_decoding.h: the paged KV cache, cached attention, merging partial results.
_kv_cache_create = _declare("attn_kv_cache_create", _S, _pp, _i64, _i64, _i64, _i64, _i64)
_kv_cache_destroy = _declare("attn_kv_cache_destroy", None, _P)
_kv_cache_seq_open = _declare("attn_kv_cache_seq_open", _S, _P, _P)
_kv_cache_seq_close = _declare("attn_kv_cache_seq_close", _S, _P, _i64)
_kv_cache_seq_fork = _declare("attn_kv_cache_seq_fork", _S, _P, _i64, _P)
_kv_cache_seq_truncate = _declare("attn_kv_cache_seq_truncate", _S, _P, _i64, _i64)
_kv_cache_seq_len = _declare("attn_kv_cache_seq_len", _S, _P, _i64, _P)
_kv_cache_append = _declare("attn_kv_cache_append", _S, _P, _i64, _i64, _P, _P)
_kv_cache_read = _declare("attn_kv_cache_read", _S, _P, _i64, _i64, _i64, _P, _P)
_sdpa_forward_cached = _declare("attn_sdpa_forward_cached", _S, _P, _P, _P, _i64, _P, _P, _P,
                                _P, _P)
_mha_forward_cached = _declare("attn_mha_forward_cached", _S, _P, _P, _P, _i64, _P, _P, _P, _P)
_encoder_forward_cached = _declare("attn_encoder_layer_forward_cached", _S, _P, _P, _P, _i64, _P,
                                   _P, _P, _P)
_merge_partials = _declare("attn_merge_partials", _S, _i64, _i64, _i64, _pp, _pp, _P, _P)


# ---- helpers -----------------------------------------------------------------

def _check(status):
    """Raises AttnError with attn_last_error() (this thread's) unless ATTN_OK."""
    if status != ATTN_OK:
        raise AttnError(status, _last_error().decode("utf-8", "replace"))


def _create(create, *args):
    handle = ctypes.c_void_p()
    _check(create(ctypes.byref(handle), *args))
    return handle


def _shape_error(fn, message):
    return AttnError(ATTN_ERR_SHAPE_MISMATCH, f"{fn}: {message}")


def _invalid(fn, message):
    return AttnError(ATTN_ERR_INVALID_ARGUMENT, f"{fn}: {message}")


def _ptr(a):
    """The address of an array's data, or None (NULL) for None."""
    return None if a is None else a.ctypes.data


def _array(x, fn, name, dtype, kinds, what):
    a = np.asarray(x)
    if a.dtype.kind not in kinds:
        raise _invalid(fn, f"{name} has dtype {a.dtype}, expected {what}")
    return np.require(a, dtype, ["C_CONTIGUOUS", "ALIGNED"])


def _floats(x, fn, name, shape=None, ndims=None):
    """x as a C-ordered float32 array: real numbers only; of exactly `shape`
    (None entries match any size) or of a number of dimensions in `ndims`."""
    a = _array(x, fn, name, np.float32, "biuf", "real numbers (float32)")
    _expect(a, fn, name, shape, ndims)
    return a


def _ints(x, fn, name, shape=None, ndims=None):
    """x as a C-ordered int64 array (integers only), checked as _floats."""
    a = _array(x, fn, name, np.int64, "iu", "integers (int64)")
    _expect(a, fn, name, shape, ndims)
    return a


def _expect(a, fn, name, shape=None, ndims=None):
    if ndims is not None and a.ndim not in ndims:
        raise _shape_error(fn, f"{name} has {a.ndim} dimensions, expected "
                           + " or ".join(map(str, ndims)))
    if shape is not None and (a.ndim != len(shape) or any(
            want is not None and got != want for got, want in zip(a.shape, shape))):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + \
            ("," if len(shape) == 1 else "") + ")"
        raise _shape_error(fn, f"{name} has shape {a.shape}, expected {want}")


def _count(fn, name, value, minimum=0):
    """An int size >= minimum (checked before arrays of that size are made)."""
    n = int(value)
    if n < minimum:
        raise _invalid(fn, f"{name} ({n}) is below {minimum}")
    return n


def _seed(fn, seed):
    s = int(seed)
    if not 0 <= s < 2 ** 64:
        raise _invalid(fn, f"seed ({s}) is not in [0, 2^64)")
    return s


def _option(table, value, what):
    if value not in table:
        names = ", ".join(repr(k) for k in table if k is not None and not isinstance(k, bool))
        raise ValueError(f"{what} must be one of {names}, not {value!r}")
    return table[value]


def _causal(value):
    if value not in _CAUSAL:
        raise ValueError(f"causal must be None, True, 'top_left' or 'bottom_right', "
                         f"not {value!r}")
    return _CAUSAL[value]


def version():
    """The runtime library's version, "MAJOR.MINOR.PATCH"."""
    return _version_string().decode()


def version_number():
    """The runtime library's version as MAJOR*10000 + MINOR*100 + PATCH."""
    return int(_version_number())


def status_string(status):
    """attn_status_string: a short English name of an attn_status value,
    e.g. "ATTN_ERR_SHAPE_MISMATCH: ..." (also for values outside the enum)."""
    return _status_string(int(status)).decode("utf-8", "replace")


def runtime_info():
    """attn_runtime_info: what this process's libattn runs on, as "key: value"
    lines (version, blas, blas_kernel, blas_threads, blas_threading,
    blas_copy, cpu, threads, schedule, advice; more keys may come)."""
    size = _runtime_info(None, 0) + 1
    while True:
        buf = ctypes.create_string_buffer(size)
        n = _runtime_info(buf, size)
        if n < size:
            return buf.value.decode("utf-8", "replace")
        size = n + 1   # the text grew between the calls (the BLAS copy loaded)


def _read_only(array):
    """The array, made read-only: libattn reads it until the mask changes."""
    array.flags.writeable = False
    return array


class _Owner:
    """One libattn handle, freed by close(), at the end of a `with` block, or
    when collected. _free is the attn_*_destroy function (a class attribute,
    so that __del__ still finds it while the interpreter exits)."""

    _handle = None
    _free = None
    # Attributes that size the buffers handed to libattn, or that hold arrays
    # libattn references: each is bound once, by __init__ (the class's own
    # setters rebind them with _rebind). Rebinding one from outside would let
    # libattn write past a buffer or read freed memory: AttributeError.
    _fixed = frozenset()

    def __setattr__(self, name, value):
        if name in self._fixed and name in self.__dict__:
            raise AttributeError(f"{type(self).__name__}.{name} is read-only: it describes "
                                 "the libattn object")
        object.__setattr__(self, name, value)

    def _rebind(self, name, value):
        object.__setattr__(self, name, value)

    def close(self):
        """Frees the libattn object now (also done when collected); idempotent."""
        handle, self._handle = self._handle, None
        if handle:
            self._free(handle)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        self.close()


class Context(_Owner):
    """An attn_context: worker threads and scratch memory, for one thread at a
    time. num_threads 0 (the default) lets libattn choose (attn.h)."""

    _free = _context_destroy

    def __init__(self, num_threads=0):
        self._handle = _create(_context_create)
        if num_threads:
            try:
                _check(_context_set_num_threads(self._handle, int(num_threads)))
            except AttnError:
                self.close()
                raise


_local = threading.local()


def _context(ctx):
    if ctx is not None:
        return ctx._handle
    if getattr(_local, "ctx", None) is None:
        _local.ctx = Context()
    return _local.ctx._handle


# ---- masks ---------------------------------------------------------------------

def _mask_4d(ndim_in):
    """Turns a mask broadcastable (NumPy rules) to the weights' shape into the
    [mb, mh, mq, len_kv] of attn.h; for 3-D inputs the heads axis is added."""
    def to4d(m, fn):
        if m.ndim == 0 or m.ndim > ndim_in:
            raise _shape_error(fn, f"a mask has {m.ndim} dimensions, expected 1 to {ndim_in}")
        m = m.reshape((1,) * (ndim_in - m.ndim) + m.shape)
        return m[:, None] if ndim_in == 3 else m
    return to4d


class Mask(_Owner):
    """An attn_mask: which keys each query may attend. Every kind set applies
    (a key is attended only if all allow it):

    kv_lengths  int [batch] (valid keys per batch row) or [batch, len_q] (per
                query): attn_mask_set_kv_lengths, D2L's valid_lens
    keep        bool (or integer, nonzero = attend) [mb, mh, mq, len_kv]:
                attn_mask_set_bool, the NOT of PyTorch's nn.MultiheadAttention
                bool masks
    bias        float [mb, mh, mq, len_kv] added to the scaled logits
                (-inf masks the key): attn_mask_set_bias

    keep and bias broadcast as NumPy does: mb is 1 or batch, mh 1 or heads, mq
    1 or len_q, and fewer than 4 dimensions get leading 1s; the last
    dimension is exactly len_kv. The Mask holds copies of the arrays (libattn
    references them); setting a kind again replaces it. The calls that take
    mask= check its shapes against their own before libattn runs."""

    _free = _mask_destroy
    _fixed = frozenset({"kv_lengths", "keep", "bias"})

    def __init__(self, kv_lengths=None, keep=None, bias=None):
        fn = "attn_mask_create"
        lengths, keep, bias = self._convert(fn, kv_lengths, keep, bias, _mask_4d(4))
        for name in self._fixed:
            self._rebind(name, None)
        self._handle = _create(_mask_create)
        self._set(lengths, keep, bias)

    @staticmethod
    def _convert(fn, kv_lengths, keep, bias, to4d):
        lengths = None
        if kv_lengths is not None:
            lengths = np.array(_ints(kv_lengths, fn, "kv_lengths", ndims=(1, 2)))
        if keep is not None:
            a = np.asarray(keep)
            if a.dtype.kind not in "biu":
                raise _invalid(fn, f"keep has dtype {a.dtype}, expected bool (True = attend)")
            keep = np.ascontiguousarray(to4d(a != 0, fn), dtype=np.uint8)
        if bias is not None:
            bias = np.array(to4d(_floats(bias, fn, "bias"), fn), dtype=np.float32, order="C")
        return lengths, keep, bias

    def _set(self, lengths, keep, bias):
        if lengths is not None:
            per_query = lengths.ndim - 1
            _check(_mask_set_kv_lengths(self._handle, _ptr(lengths), lengths.shape[0],
                                        lengths.shape[1] if per_query else 0, per_query))
            self._rebind("kv_lengths", _read_only(lengths))
        if keep is not None:
            _check(_mask_set_bool(self._handle, _ptr(keep), *keep.shape))
            self._rebind("keep", _read_only(keep))
        if bias is not None:
            _check(_mask_set_bias(self._handle, _ptr(bias), *bias.shape))
            self._rebind("bias", _read_only(bias))

    def set_kv_lengths(self, kv_lengths):
        """attn_mask_set_kv_lengths: int [batch] or [batch, len_q] (copied)."""
        self._set(*self._convert("attn_mask_set_kv_lengths", kv_lengths, None, None, None))

    def set_keep(self, keep):
        """attn_mask_set_bool: bool [mb, mh, mq, len_kv], True = attend (copied)."""
        self._set(*self._convert("attn_mask_set_bool", None, keep, None, _mask_4d(4)))

    def set_bias(self, bias):
        """attn_mask_set_bias: float [mb, mh, mq, len_kv] (copied)."""
        self._set(*self._convert("attn_mask_set_bias", None, None, bias, _mask_4d(4)))

    def clear(self):
        """attn_mask_clear: removes every kind (nothing masked)."""
        _check(_mask_clear(self._handle))
        for name in self._fixed:
            self._rebind(name, None)

    @staticmethod
    def _check_arrays(fn, dims, lengths, keep, bias):
        batch, heads, len_q, len_kv = dims
        if lengths is not None and lengths.shape not in ((batch,), (batch, len_q)):
            raise _shape_error(fn, f"the mask's kv_lengths has shape {lengths.shape}, "
                               f"expected ({batch},) or ({batch}, {len_q})")
        for name, a in (("keep", keep), ("bias", bias)):
            if a is not None and not (a.shape[0] in (1, batch) and a.shape[1] in (1, heads)
                                      and a.shape[2] in (1, len_q) and a.shape[3] == len_kv):
                raise _shape_error(fn, f"the mask's {name} has shape {a.shape}, expected "
                                   f"({batch} or 1, {heads} or 1, {len_q} or 1, {len_kv})")

    def _check(self, fn, dims):
        if not self._handle:
            raise AttnError(ATTN_ERR_NULL_POINTER, f"{fn}: the mask is closed")
        self._check_arrays(fn, dims, self.kv_lengths, self.keep, self.bias)


def _mask_for(fn, dims, mask, kv_lengths, keep, bias, to4d=None):
    """The Mask of a call: `mask`, or one made from the keyword arrays (checked
    before any C call), or None. dims = (batch, heads, len_q, len_kv)."""
    given = kv_lengths is not None or keep is not None or bias is not None
    if mask is not None:
        if not isinstance(mask, Mask):
            raise TypeError(f"{fn}: mask must be an attn.Mask, not {type(mask).__name__}")
        if given:
            raise ValueError("pass either mask= or kv_lengths=, keep=, bias=, not both")
        mask._check(fn, dims)
        return mask
    if not given:
        return None
    arrays = Mask._convert(fn, kv_lengths, keep, bias, to4d or _mask_4d(4))
    Mask._check_arrays(fn, dims, *arrays)
    m = Mask()
    m._set(*arrays)
    return m


def _handle(obj):
    return None if obj is None else obj._handle


# ---- scaled dot-product attention ------------------------------------------------

class Sdpa(_Owner):
    """An attn_sdpa operation for fixed shapes (attn_sdpa_create):

        q   [batch, heads_q,  len_q,  dim_qk]   ([batch, len_q, heads_q, dim_qk]
        k   [batch, heads_kv, len_kv, dim_qk]    and so on with layout="bshd")
        v   [batch, heads_kv, len_kv, dim_v]
        out [batch, heads_q,  len_q,  dim_v]    (the layout of q)

    heads_q a multiple of heads_kv (grouped-query attention); dim_v defaults
    to dim_qk. layout "bhsd" or "bshd"; scale default 1/sqrt(dim_qk); causal
    None, "top_left" (True) or "bottom_right". The score modifiers
    (set_window, set_softcap, set_alibi) and dropout (set_dropout) apply to
    forward, backward and, except dropout, forward_cached. For
    forward_cached only heads_q, heads_kv, dim_qk, dim_v and the scale and
    modifiers count: pass 0 for batch, len_q and len_kv."""

    _free = _sdpa_destroy
    _fixed = frozenset({"batch", "heads_q", "heads_kv", "len_q", "len_kv", "dim_qk", "dim_v",
                        "layout"})

    def __init__(self, batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v=None, *,
                 layout="bhsd", scale=None, causal=None):
        dim_v = dim_qk if dim_v is None else dim_v
        self.batch, self.heads_q, self.heads_kv = int(batch), int(heads_q), int(heads_kv)
        self.len_q, self.len_kv = int(len_q), int(len_kv)
        self.dim_qk, self.dim_v = int(dim_qk), int(dim_v)
        self._rebind("layout", "bhsd")
        layout_value = _option(_LAYOUTS, layout, "layout")
        causal_value = _causal(causal)
        self._handle = _create(_sdpa_create, self.batch, self.heads_q, self.heads_kv,
                               self.len_q, self.len_kv, self.dim_qk, self.dim_v)
        try:
            _check(_sdpa_set_layout(self._handle, layout_value))
            self._rebind("layout", layout)
            if scale is not None:
                self.set_scale(scale)
            _check(_sdpa_set_causal(self._handle, causal_value))
        except AttnError:
            self.close()
            raise

    def set_layout(self, layout):
        """attn_sdpa_set_layout: "bhsd" or "bshd" for q, k, v and out."""
        _check(_sdpa_set_layout(self._handle, _option(_LAYOUTS, layout, "layout")))
        self._rebind("layout", layout)

    def set_scale(self, scale):
        """attn_sdpa_set_scale: the factor on q·k (finite)."""
        _check(_sdpa_set_scale(self._handle, float(scale)))

    def set_causal(self, causal):
        """attn_sdpa_set_causal: None, "top_left" (or True) or "bottom_right"."""
        _check(_sdpa_set_causal(self._handle, _causal(causal)))

    def set_dropout(self, p, seed=0):
        """attn_sdpa_set_dropout: drop each attention weight with probability p
        in [0, 1) and scale the others by 1/(1 - p), in forward and backward;
        the keep decisions are a pure function of (seed, b, h, i, j) (Philox
        4x32-10): pass a new seed per training step. p = 0 turns it off."""
        _check(_sdpa_set_dropout(self._handle, float(p), _seed("attn_sdpa_set_dropout", seed)))

    def dropout_keep_mask(self):
        """attn_dropout_keep_mask: bool [batch, heads_q, len_q, len_kv] (always
        this order), True where dropout keeps the weight; all True when p = 0."""
        keep = np.empty((self.batch, self.heads_q, self.len_q, self.len_kv), np.uint8)
        _check(_dropout_keep_mask(self._handle, _ptr(keep)))
        return keep.view(np.bool_)

    def set_window(self, left=-1, right=-1):
        """attn_sdpa_set_window: key j is visible to the query at aligned
        position p only if p - left <= j <= p + right; -1 leaves a side
        unbounded; (-1, -1) is no window."""
        _check(_sdpa_set_window(self._handle, int(left), int(right)))

    def set_softcap(self, cap):
        """attn_sdpa_set_softcap: logits s -> cap·tanh(s/cap) after the scale;
        0 turns it off."""
        _check(_sdpa_set_softcap(self._handle, float(cap)))

    def set_alibi(self, slopes=None):
        """attn_sdpa_set_alibi: head h's logits get -slopes[h]·|p - j|; slopes
        float [heads_q] (copied by libattn), or None for Press et al.'s."""
        s = None if slopes is None else _floats(slopes, "attn_sdpa_set_alibi", "slopes",
                                                (self.heads_q,))
        _check(_sdpa_set_alibi(self._handle, _ptr(s)))

    def clear_alibi(self):
        """attn_sdpa_clear_alibi: ALiBi off (the default)."""
        _check(_sdpa_clear_alibi(self._handle))

    def _shape(self, heads, seq, dim):
        b = self.batch
        return (b, heads, seq, dim) if self.layout == "bhsd" else (b, seq, heads, dim)

    def _inputs(self, fn, q, k, v):
        return (_floats(q, fn, "q", self._shape(self.heads_q, self.len_q, self.dim_qk)),
                _floats(k, fn, "k", self._shape(self.heads_kv, self.len_kv, self.dim_qk)),
                _floats(v, fn, "v", self._shape(self.heads_kv, self.len_kv, self.dim_v)))

    def _dims(self):
        return (self.batch, self.heads_q, self.len_q, self.len_kv)

    def forward(self, q, k, v, *, mask=None, kv_lengths=None, keep=None, bias=None,
                return_weights=False, return_lse=False, ctx=None):
        """attn_sdpa_forward. q, k, v in the op's shapes and layout; mask a
        Mask, or kv_lengths, keep and bias as Mask takes them (heads is
        heads_q). Returns out (the layout of q); with return_weights and/or
        return_lse, a tuple (out, weights, lse) of those asked for: weights
        [batch, heads_q, len_q, len_kv] (after dropout, when set), lse
        [batch, heads_q, len_q] (always this order; -inf for a row that sees
        no key, whose out is zeros)."""
        fn = "attn_sdpa_forward"
        q, k, v = self._inputs(fn, q, k, v)
        mask = _mask_for(fn, self._dims(), mask, kv_lengths, keep, bias)
        out = np.empty(self._shape(self.heads_q, self.len_q, self.dim_v), np.float32)
        weights = np.empty(self._dims(), np.float32) if return_weights else None
        lse = np.empty(self._dims()[:3], np.float32) if return_lse else None
        _check(_sdpa_forward(_context(ctx), self._handle, _ptr(q), _ptr(k), _ptr(v),
                             _handle(mask), _ptr(out), _ptr(weights), _ptr(lse)))
        extras = [x for x, wanted in ((weights, return_weights), (lse, return_lse)) if wanted]
        return (out, *extras) if extras else out

    def backward(self, q, k, v, out, lse, d_out, *, mask=None, kv_lengths=None, keep=None,
                 bias=None, grads="qkv", ctx=None):
        """attn_sdpa_backward (FlashAttention-2's backward): the gradients of
        forward for d_out = dL/d(out), given the forward's q, k, v, mask (the
        same values), out and lse (forward(..., return_lse=True)). out and
        d_out have out's shape, lse [batch, heads_q, len_q]. grads names the
        gradients to compute ("q", "k", "v" or any combination). Returns
        (d_q, d_k, d_v) in the shapes of q, k, v (None for those not asked);
        with grouped-query heads, d_k and d_v sum over each group's heads."""
        fn = "attn_sdpa_backward"
        if not set(grads) <= set("qkv"):
            raise ValueError(f"grads must be a combination of 'q', 'k' and 'v', not {grads!r}")
        q, k, v = self._inputs(fn, q, k, v)
        out_shape = self._shape(self.heads_q, self.len_q, self.dim_v)
        out = _floats(out, fn, "out", out_shape)
        lse = _floats(lse, fn, "lse", self._dims()[:3])
        d_out = _floats(d_out, fn, "d_out", out_shape)
        mask = _mask_for(fn, self._dims(), mask, kv_lengths, keep, bias)
        d_q, d_k, d_v = (np.empty(x.shape, np.float32) if name in grads else None
                         for x, name in ((q, "q"), (k, "k"), (v, "v")))
        _check(_sdpa_backward(_context(ctx), self._handle, _ptr(q), _ptr(k), _ptr(v),
                              _handle(mask), _ptr(out), _ptr(lse), _ptr(d_out), _ptr(d_q),
                              _ptr(d_k), _ptr(d_v)))
        return d_q, d_k, d_v

    def forward_cached(self, cache, seqs, cu_q, q, *, return_lse=False, ctx=None):
        """attn_sdpa_forward_cached: the new queries of the sequences `seqs`
        (ints; append their keys and values to `cache` first) against every
        cached token of their sequence, causal bottom-right per sequence.
        q [total_q, heads_q, dim_qk]: sequence s owns rows cu_q[s] ..
        cu_q[s+1] - 1, cu_q int [len(seqs) + 1] from 0 (None: one sequence
        owns every row). Returns out [total_q, heads_q, dim_v], or (out, lse)
        with lse [total_q, heads_q]. The op's batch, lengths, layout, causal
        setting and dropout are not used."""
        fn = "attn_sdpa_forward_cached"
        seqs, cu_q, total_q = _cached_rows(fn, seqs, cu_q, q)
        q = _floats(q, fn, "q", (total_q, self.heads_q, self.dim_qk))
        _cache_dims(fn, cache, self.heads_kv, self.dim_qk, self.dim_v, "op's")
        out = np.empty((total_q, self.heads_q, self.dim_v), np.float32)
        lse = np.empty((total_q, self.heads_q), np.float32) if return_lse else None
        _check(_sdpa_forward_cached(_context(ctx), self._handle, cache._handle, len(seqs),
                                    _ptr(seqs), _ptr(cu_q), _ptr(q), _ptr(out), _ptr(lse)))
        return (out, lse) if return_lse else out


def sdpa(q, k, v, *, kv_lengths=None, keep=None, bias=None, causal=None, scale=None,
         layout="bhsd", return_weights=False, return_lse=False, ctx=None):
    """Scaled dot-product attention, attn_sdpa_forward, for one call (Sdpa
    makes an op to reuse, with dropout, modifiers and the backward).

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
    fn = "attn_sdpa_forward"
    q, k, v = (_floats(x, fn, n, ndims=(3, 4)) for x, n in ((q, "q"), (k, "k"), (v, "v")))
    if not q.ndim == k.ndim == v.ndim:
        raise _shape_error(fn, "q, k and v must have the same number of dimensions")
    _option(_LAYOUTS, layout, "layout")
    _causal(causal)
    three_d = q.ndim == 3
    if three_d:
        q, k, v = q[:, None], k[:, None], v[:, None]   # one head: [B, 1, L, D], no copy
        layout = "bhsd"
    shape4 = [x if layout == "bhsd" else x.transpose(0, 2, 1, 3) for x in (q, k, v)]
    batch, heads_q, len_q, dim_qk = shape4[0].shape
    _, heads_kv, len_kv, dim_v = shape4[2].shape
    if shape4[1].shape != (batch, heads_kv, len_kv, dim_qk) or shape4[2].shape[0] != batch:
        raise _shape_error(fn, f"q {q.shape}, k {k.shape} and v {v.shape} do not fit "
                           f"together")
    mask = _mask_for(fn, (batch, heads_q, len_q, len_kv), None, kv_lengths, keep, bias,
                     _mask_4d(3 if three_d else 4))
    with Sdpa(batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v, layout=layout,
              scale=scale, causal=causal) as op:
        results = op.forward(q, k, v, mask=mask, return_weights=return_weights,
                             return_lse=return_lse, ctx=ctx)
    if not three_d:
        return results
    results = results if isinstance(results, tuple) else (results,)
    squeezed = tuple(x[:, 0] for x in results)   # the heads axis of out, weights and lse
    return squeezed if len(squeezed) > 1 else squeezed[0]


# ---- training: activations ---------------------------------------------------------

class Activations(_Owner):
    """An attn_activations: what a layer's training forward (forward_train)
    keeps for its backward, for one forward/backward pair at a time (the next
    training forward overwrites it); it keeps its memory from step to step.
    It also holds the Mask that forward used, which the backward reads
    again (do not change that Mask in between)."""

    _free = _activations_destroy

    def __init__(self):
        self._handle = _create(_activations_create)
        self._forget()

    def _forget(self):
        self._layer = self._mask = None
        self._rows = ()
        self._tied = (False, False)

    def _filled(self, fn, layer):
        """The rows the layer's last training forward saw, checked before the
        backward's outputs are sized from them."""
        if self._layer is not layer:
            raise AttnError(ATTN_ERR_STATE, f"{fn}: act holds no training forward of this "
                            f"layer (call forward_train first)")
        if self._mask is not None and not self._mask._handle:
            raise AttnError(ATTN_ERR_STATE, f"{fn}: the mask of the training forward was "
                            f"closed")
        return self._rows


def _act_handle(fn, act):
    if not isinstance(act, Activations):
        raise TypeError(f"{fn}: act must be an attn.Activations, not {type(act).__name__}")
    return act._handle


# ---- the multi-head attention layer --------------------------------------------------

class MultiheadAttention(_Owner):
    """A multi-head attention layer with torch.nn.MultiheadAttention's numbers
    (attn_mha): embed_dim, num_heads, num_kv_heads (default num_heads; fewer is
    grouped-query attention), kdim and vdim (default embed_dim), bias.
    head_dim = embed_dim / num_heads.

    Set the weights with load_state_dict (a PyTorch state_dict converted to
    NumPy arrays), set_weights or set_params, then call the layer on
    [B, L, E] arrays (batch_first=True), or [L, E] unbatched. Training:
    forward_train, backward, get_params/set_params (the flat vector in the
    order of nn.MultiheadAttention's named_parameters()).
    """

    _free = _mha_destroy
    _fixed = frozenset({"embed_dim", "num_heads", "num_kv_heads", "kdim", "vdim", "bias",
                        "head_dim", "param_count"})

    def __init__(self, embed_dim, num_heads, num_kv_heads=None, kdim=None, vdim=None,
                 bias=True):
        self.embed_dim, self.num_heads = int(embed_dim), int(num_heads)
        self.num_kv_heads = int(num_kv_heads or num_heads)
        self.kdim, self.vdim = int(kdim or embed_dim), int(vdim or embed_dim)
        self.bias = bool(bias)
        self._handle = _create(_mha_create, self.embed_dim, self.num_heads, self.num_kv_heads,
                               self.kdim, self.vdim, int(self.bias))
        self.head_dim = self.embed_dim // self.num_heads
        count = ctypes.c_int64()
        _check(_mha_param_count(self._handle, ctypes.byref(count)))
        self.param_count = count.value

    def set_weights(self, which, weight, bias=None):
        """Copies one projection, which in "q", "k", "v", "o": weight
        [out_features, in_features] as nn.Linear.weight, bias [out_features]."""
        fn = "attn_mha_set_weights"
        if which not in _PROJ:
            raise ValueError(f"which must be one of 'q', 'k', 'v', 'o', not {which!r}")
        rows = self.embed_dim if which in "qo" else self.head_dim * self.num_kv_heads
        cols = {"q": self.embed_dim, "k": self.kdim, "v": self.vdim, "o": self.embed_dim}[which]
        w = _floats(weight, fn, f"the {which} weight", (rows, cols))
        b = None if bias is None else _floats(bias, fn, f"the {which} bias", (rows,))
        _check(_mha_set_weights(self._handle, _PROJ[which], _ptr(w), _ptr(b)))

    def load_state_dict(self, state):
        """Sets all four projections from nn.MultiheadAttention's state_dict
        (values as NumPy arrays): in_proj_weight (or q_proj_weight,
        k_proj_weight, v_proj_weight), in_proj_bias, out_proj.weight,
        out_proj.bias."""
        e = self.embed_dim
        kv = self.head_dim * self.num_kv_heads
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

    def get_params(self):
        """attn_mha_get_params: float32 [param_count], in the order of
        nn.MultiheadAttention's named_parameters(): Wq [E, E], Wk [Hkv·hd,
        kdim], Wv [Hkv·hd, vdim] (in_proj_weight's row blocks), bq, bk, bv
        (in_proj_bias; with bias only), Wo [E, E], bo [E] (with bias only)."""
        params = np.empty(self.param_count, np.float32)
        _check(_mha_get_params(self._handle, _ptr(params)))
        return params

    def set_params(self, params):
        """attn_mha_set_params: all four projections from params
        [param_count] (get_params' order); earlier activations become stale."""
        p = _floats(params, "attn_mha_set_params", "params", (self.param_count,))
        _check(_mha_set_params(self._handle, _ptr(p)))

    def get_property(self, what):
        """attn_mha_get_property: an int; what in "embed_dim", "num_heads",
        "num_kv_heads", "head_dim", "kdim", "vdim", "bias", "causal" (the
        attn_causal value), "has_modifiers", "has_rope", "has_dropout"."""
        value = ctypes.c_int64()
        _check(_mha_get_property(self._handle, _option(_MHA_PROPERTIES, what, "what"),
                                 ctypes.byref(value)))
        return value.value

    def set_causal(self, causal):
        """None, "top_left" (or True) or "bottom_right" (attn_mha_set_causal)."""
        _check(_mha_set_causal(self._handle, _causal(causal)))

    def set_dropout(self, p, seed=0):
        """attn_mha_set_dropout: dropout p in [0, 1) on the attention weights of
        forward_train (and so backward), as nn.MultiheadAttention in training
        mode, with masks from seed as Sdpa.set_dropout; never in __call__."""
        _check(_mha_set_dropout(self._handle, float(p), _seed("attn_mha_set_dropout", seed)))

    def set_window(self, left=-1, right=-1):
        """attn_mha_set_window: Sdpa.set_window for the layer's attention."""
        _check(_mha_set_window(self._handle, int(left), int(right)))

    def set_softcap(self, cap):
        """attn_mha_set_softcap: Sdpa.set_softcap for the layer's attention."""
        _check(_mha_set_softcap(self._handle, float(cap)))

    def set_alibi(self, slopes=None):
        """attn_mha_set_alibi: slopes float [num_heads] (copied), or None for
        Press et al.'s."""
        s = None if slopes is None else _floats(slopes, "attn_mha_set_alibi", "slopes",
                                                (self.num_heads,))
        _check(_mha_set_alibi(self._handle, _ptr(s)))

    def clear_alibi(self):
        """attn_mha_clear_alibi: ALiBi off."""
        _check(_mha_clear_alibi(self._handle))

    def set_rope(self, rope):
        """attn_mha_set_rope: the layer keeps a copy of rope (a Rope of
        head_dim features) and rotates the projected queries and keys before
        the attention; None removes it."""
        if rope is not None and rope.head_dim != self.head_dim:
            raise _shape_error("attn_mha_set_rope", f"the rope's head_dim ({rope.head_dim}) "
                               f"is not embed_dim / num_heads ({self.head_dim})")
        _check(_mha_set_rope(self._handle, _handle(rope)))

    def _inputs(self, fn, query, key, value):
        """The three inputs as [B, L, features] float32 arrays, whether the
        call was unbatched, and which were tied: (key is query, value is
        key) when key and value were left None."""
        tied = (key is None, value is None)
        key = query if key is None else key
        value = key if value is None else value
        x, kx, vx = (_floats(a, fn, n, ndims=(2, 3)) for a, n in ((query, "query"),
                                                                  (key, "key"),
                                                                  (value, "value")))
        if not x.ndim == kx.ndim == vx.ndim:
            raise _shape_error(fn, "query, key and value must have the same number of "
                               "dimensions")
        unbatched = x.ndim == 2
        if unbatched:
            x, kx, vx = x[None], kx[None], vx[None]
        batch, len_q, _ = x.shape
        len_kv = kx.shape[1]
        if (x.shape[2] != self.embed_dim or kx.shape != (batch, len_kv, self.kdim)
                or vx.shape != (batch, len_kv, self.vdim)):
            raise _shape_error(fn, f"query {x.shape}, key {kx.shape} and value {vx.shape} do "
                               f"not fit embed_dim {self.embed_dim}, kdim {self.kdim}, "
                               f"vdim {self.vdim}")
        return x, kx, vx, unbatched, tied

    def _forward(self, fn, act, query, key, value, mask, kv_lengths, keep, bias,
                 return_weights, ctx):
        x, kx, vx, unbatched, tied = self._inputs(fn, query, key, value)
        batch, len_q, len_kv = x.shape[0], x.shape[1], kx.shape[1]
        mask = _mask_for(fn, (batch, self.num_heads, len_q, len_kv), mask, kv_lengths, keep,
                         bias)
        out = np.empty((batch, len_q, self.embed_dim), np.float32)
        weights = (np.empty((batch, self.num_heads, len_q, len_kv), np.float32)
                   if return_weights else None)
        args = (_context(ctx), self._handle, batch, len_q, len_kv, _ptr(x), _ptr(kx), _ptr(vx),
                _handle(mask), _ptr(out), _ptr(weights))
        if act is None:
            _check(_mha_forward(*args))
        else:
            handle = _act_handle(fn, act)
            act._forget()
            _check(_mha_forward_train(*args, handle))
            act._layer, act._mask = self, mask
            act._rows, act._tied = (batch, len_q, len_kv, unbatched), tied
        if unbatched:
            out = out[0]
            weights = None if weights is None else weights[0]
        return (out, weights) if return_weights else out

    def __call__(self, query, key=None, value=None, *, mask=None, kv_lengths=None, keep=None,
                 bias=None, return_weights=False, ctx=None):
        """attn_mha_forward. query [B, L, E], key [B, S, kdim] (default:
        query), value [B, S, vdim] (default: key); 2-D arrays are one
        unbatched sequence. mask a Mask, or kv_lengths [B] or [B, L], keep
        (True = attend, the NOT of PyTorch's bool masks) and bias broadcast to
        [B, num_heads, L, S]. Returns out [B, L, E], or (out, weights) with
        weights [B, num_heads, L, S] (PyTorch's average_attn_weights=False).
        Dropout is never applied here (inference)."""
        return self._forward("attn_mha_forward", None, query, key, value, mask, kv_lengths,
                             keep, bias, return_weights, ctx)

    def forward_train(self, act, query, key=None, value=None, *, mask=None, kv_lengths=None,
                      keep=None, bias=None, return_weights=False, ctx=None):
        """attn_mha_forward_train: __call__'s out (and weights, after dropout
        when set), and fills act (an Activations) for backward. act keeps the
        mask until its next training forward."""
        return self._forward("attn_mha_forward_train", act, query, key, value, mask,
                             kv_lengths, keep, bias, return_weights, ctx)

    def backward(self, act, d_out, *, inputs=True, params=True, ctx=None):
        """attn_mha_backward: the gradients of the last forward_train that
        filled act, for d_out = dL/d(out) (out's shape). Returns (d_query,
        d_key, d_value, d_params): the inputs' gradients in their shapes (when
        inputs), d_params [param_count] in get_params' order (when params),
        None otherwise. Where key or value was left None in forward_train
        (self-attention), its gradient is added into the input it was taken
        from (d_query, or d_key for value) and returned as None."""
        fn = "attn_mha_backward"
        handle = _act_handle(fn, act)
        batch, len_q, len_kv, unbatched = act._filled(fn, self)
        shape = (len_q, self.embed_dim) if unbatched else (batch, len_q, self.embed_dim)
        d_out = _floats(d_out, fn, "d_out", shape)
        d_query = d_key = d_value = d_params = None
        if inputs:
            d_query = np.empty((batch, len_q, self.embed_dim), np.float32)
            d_key = d_query if act._tied[0] else np.empty((batch, len_kv, self.kdim),
                                                          np.float32)
            d_value = d_key if act._tied[1] else np.empty((batch, len_kv, self.vdim),
                                                          np.float32)
        if params:
            d_params = np.empty(self.param_count, np.float32)
        _check(_mha_backward(_context(ctx), self._handle, handle, _ptr(d_out), _ptr(d_query),
                             _ptr(d_key), _ptr(d_value), _ptr(d_params)))
        if inputs:
            d_value = None if act._tied[1] else d_value
            d_key = None if act._tied[0] else d_key
            if unbatched:
                d_query, d_key, d_value = (None if g is None else g[0]
                                           for g in (d_query, d_key, d_value))
        return d_query, d_key, d_value, d_params

    def forward_cached(self, cache, seqs, cu_q, query, *, ctx=None):
        """attn_mha_forward_cached: one decoding step of self-attention
        (kdim = vdim = embed_dim) over a KVCache made with heads_kv =
        num_kv_heads and dim_qk = dim_v = head_dim: projects query [total_q,
        embed_dim] (the new tokens of the sequences seqs, rows as cu_q says;
        see Sdpa.forward_cached), rotates with the layer's rope at the
        positions after the cached ones, appends the new keys and values to
        the cache and attends causally. Returns out [total_q, embed_dim]."""
        fn = "attn_mha_forward_cached"
        seqs, cu_q, total_q = _cached_rows(fn, seqs, cu_q, query)
        x = _floats(query, fn, "query", (total_q, self.embed_dim))
        _cache_dims(fn, cache, self.num_kv_heads, self.head_dim, self.head_dim, "layer's")
        out = np.empty((total_q, self.embed_dim), np.float32)
        _check(_mha_forward_cached(_context(ctx), self._handle, cache._handle, len(seqs),
                                   _ptr(seqs), _ptr(cu_q), _ptr(x), _ptr(out)))
        return out


# ---- additive attention and Nadaraya–Watson ---------------------------------------------

class AdditiveAttention(_Owner):
    """Additive (Bahdanau) attention, attn_additive (D2L §10.3.2):
    score(q, k) = w_vᵀ tanh(W_q q + W_k k), out = masked softmax · values.
    query_dim, key_dim, hidden >= 1; set the weights with set_weights or
    set_params. Masks apply with one head (no causal setting)."""

    _free = _additive_destroy
    _fixed = frozenset({"query_dim", "key_dim", "hidden", "param_count"})

    def __init__(self, query_dim, key_dim, hidden):
        self.query_dim, self.key_dim, self.hidden = int(query_dim), int(key_dim), int(hidden)
        self._handle = _create(_additive_create, self.query_dim, self.key_dim, self.hidden)
        count = ctypes.c_int64()
        _check(_additive_param_count(self._handle, ctypes.byref(count)))
        self.param_count = count.value

    def set_weights(self, w_q, w_k, w_v):
        """attn_additive_set_weights (copied): w_q [hidden, query_dim], w_k
        [hidden, key_dim] (as nn.Linear(..., hidden, bias=False).weight),
        w_v [hidden]."""
        fn = "attn_additive_set_weights"
        w_q = _floats(w_q, fn, "w_q", (self.hidden, self.query_dim))
        w_k = _floats(w_k, fn, "w_k", (self.hidden, self.key_dim))
        w_v = _floats(w_v, fn, "w_v", (self.hidden,))
        _check(_additive_set_weights(self._handle, _ptr(w_q), _ptr(w_k), _ptr(w_v)))

    def get_params(self):
        """attn_additive_get_params: float32 [param_count] = W_q, W_k, w_v
        flattened in set_weights' order (not D2L's state_dict order)."""
        params = np.empty(self.param_count, np.float32)
        _check(_additive_get_params(self._handle, _ptr(params)))
        return params

    def set_params(self, params):
        """attn_additive_set_params: params [param_count] in get_params' order."""
        p = _floats(params, "attn_additive_set_params", "params", (self.param_count,))
        _check(_additive_set_params(self._handle, _ptr(p)))

    def _forward(self, fn, act, queries, keys, values, mask, kv_lengths, keep, bias,
                 return_weights, ctx):
        tied = values is None
        q = _floats(queries, fn, "queries", (None, None, self.query_dim))
        batch, len_q = q.shape[:2]
        k = _floats(keys, fn, "keys", (batch, None, self.key_dim))
        len_kv = k.shape[1]
        v = k if tied else _floats(values, fn, "values", (batch, len_kv, None))
        dim_v = v.shape[2]
        mask = _mask_for(fn, (batch, 1, len_q, len_kv), mask, kv_lengths, keep, bias,
                         _mask_4d(3))
        out = np.empty((batch, len_q, dim_v), np.float32)
        weights = np.empty((batch, len_q, len_kv), np.float32) if return_weights else None
        args = (_context(ctx), self._handle, batch, len_q, len_kv, dim_v, _ptr(q), _ptr(k),
                _ptr(v), _handle(mask), _ptr(out), _ptr(weights))
        if act is None:
            _check(_additive_forward(*args))
        else:
            handle = _act_handle(fn, act)
            act._forget()
            _check(_additive_forward_train(*args, handle))
            act._layer, act._mask = self, mask
            act._rows, act._tied = (batch, len_q, len_kv, dim_v), (False, tied)
        return (out, weights) if return_weights else out

    def __call__(self, queries, keys, values=None, *, mask=None, kv_lengths=None, keep=None,
                 bias=None, return_weights=False, ctx=None):
        """attn_additive_forward. queries [B, Lq, query_dim], keys [B, Lkv,
        key_dim], values [B, Lkv, dim_v] (default: keys); mask a Mask, or
        kv_lengths [B] or [B, Lq], keep and bias broadcast to [B, Lq, Lkv].
        Returns out [B, Lq, dim_v], or (out, weights [B, Lq, Lkv])."""
        return self._forward("attn_additive_forward", None, queries, keys, values, mask,
                             kv_lengths, keep, bias, return_weights, ctx)

    def forward_train(self, act, queries, keys, values=None, *, mask=None, kv_lengths=None,
                      keep=None, bias=None, return_weights=False, ctx=None):
        """attn_additive_forward_train: __call__'s results, and fills act."""
        return self._forward("attn_additive_forward_train", act, queries, keys, values, mask,
                             kv_lengths, keep, bias, return_weights, ctx)

    def backward(self, act, d_out, *, inputs=True, params=True, ctx=None):
        """attn_additive_backward: (d_queries, d_keys, d_values, d_params) of
        the last forward_train that filled act, for d_out [B, Lq, dim_v];
        None for those not asked. When values was left None (keys are the
        values), d_keys holds both gradients' sum and d_values is None."""
        fn = "attn_additive_backward"
        handle = _act_handle(fn, act)
        batch, len_q, len_kv, dim_v = act._filled(fn, self)
        d_out = _floats(d_out, fn, "d_out", (batch, len_q, dim_v))
        d_queries = d_keys = d_values = d_params = None
        if inputs:
            d_queries = np.empty((batch, len_q, self.query_dim), np.float32)
            d_keys = np.empty((batch, len_kv, self.key_dim), np.float32)
            d_values = d_keys if act._tied[1] else np.empty((batch, len_kv, dim_v), np.float32)
        if params:
            d_params = np.empty(self.param_count, np.float32)
        _check(_additive_backward(_context(ctx), self._handle, handle, _ptr(d_out),
                                  _ptr(d_queries), _ptr(d_keys), _ptr(d_values),
                                  _ptr(d_params)))
        if inputs and act._tied[1]:
            d_values = None
        return d_queries, d_keys, d_values, d_params


def nadaraya_watson(queries, keys, values, w=1.0, *, return_weights=False, ctx=None):
    """attn_nadaraya_watson (D2L §10.2): f(x) = Σ_i softmax_i(-((x - x_i)·w)²/2)
    · y_i. queries [n_queries], keys and values [n_keys]; w the kernel width
    factor (1: non-parametric). Returns out [n_queries], or (out, weights
    [n_queries, n_keys])."""
    fn = "attn_nadaraya_watson"
    x = _floats(queries, fn, "queries", (None,))
    k = _floats(keys, fn, "keys", (None,))
    y = _floats(values, fn, "values", k.shape)
    out = np.empty(x.shape, np.float32)
    weights = np.empty((x.size, k.size), np.float32) if return_weights else None
    _check(_nadaraya_watson(_context(ctx), x.size, k.size, _ptr(x), _ptr(k), _ptr(y), float(w),
                            _ptr(out), _ptr(weights)))
    return (out, weights) if return_weights else out


def nadaraya_watson_backward(queries, keys, values, d_out, w=1.0, *, ctx=None):
    """attn_nadaraya_watson_backward: for d_out = dL/d(out) [n_queries],
    returns (d_queries [n_queries], d_keys [n_keys], d_values [n_keys], d_w)
    with d_w a float: the gradient of the kernel width of D2L §10.2.4."""
    fn = "attn_nadaraya_watson_backward"
    x = _floats(queries, fn, "queries", (None,))
    k = _floats(keys, fn, "keys", (None,))
    y = _floats(values, fn, "values", k.shape)
    d_out = _floats(d_out, fn, "d_out", x.shape)
    d_x, d_k, d_y = np.empty(x.shape, np.float32), np.empty(k.shape, np.float32), \
        np.empty(k.shape, np.float32)
    d_w = ctypes.c_float()
    _check(_nadaraya_watson_backward(_context(ctx), x.size, k.size, _ptr(x), _ptr(k), _ptr(y),
                                     float(w), _ptr(d_out), _ptr(d_x), _ptr(d_k), _ptr(d_y),
                                     ctypes.byref(d_w)))
    return d_x, d_k, d_y, d_w.value


def positional_encoding(length, dim, start=0, base=10000.0):
    """attn_positional_encoding: the sinusoidal encoding [length, dim] (dim
    even) of positions start .. start + length - 1: P[p, 2i] = sin(pos /
    base^(2i/dim)), P[p, 2i+1] = cos(...)."""
    fn = "attn_positional_encoding"
    out = np.empty((_count(fn, "len", length), _count(fn, "dim", dim, 1)), np.float32)
    _check(_positional_encoding(_ptr(out), out.shape[0], out.shape[1], int(start), float(base)))
    return out


# ---- the encoder layer and layer normalisation -------------------------------------------

class EncoderLayer(_Owner):
    """A Transformer encoder layer with the numbers of PyTorch 1.13's
    nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout,
    activation, layer_norm_eps, batch_first=True, norm_first)
    (attn_encoder_layer_create): activation "relu" or "gelu" (exact erf),
    norm_first False (post-norm) or True (pre-norm). No dropout until
    set_dropout (PyTorch's default is 0.1), no causal mask until set_causal.
    Set the parameters with set_params (named_parameters() order)."""

    _free = _encoder_destroy
    _fixed = frozenset({"d_model", "nhead", "dim_feedforward", "param_count"})

    def __init__(self, d_model, nhead, dim_feedforward=2048, activation="relu",
                 norm_first=False, layer_norm_eps=1e-5):
        self.d_model, self.nhead = int(d_model), int(nhead)
        self.dim_feedforward = int(dim_feedforward)
        self.activation, self.norm_first = activation, bool(norm_first)
        self._handle = _create(_encoder_create, self.d_model, self.nhead, self.dim_feedforward,
                               _option(_ACTIVATIONS, activation, "activation"),
                               int(self.norm_first), float(layer_norm_eps))
        count = ctypes.c_int64()
        _check(_encoder_param_count(self._handle, ctypes.byref(count)))
        self.param_count = count.value

    def set_causal(self, causal):
        """attn_encoder_layer_set_causal: "top_left" (True) is PyTorch's
        generate_square_subsequent_mask; None turns it off."""
        _check(_encoder_set_causal(self._handle, _causal(causal)))

    def set_dropout(self, p, seed=0):
        """attn_encoder_layer_set_dropout: p in [0, 1) on the attention
        weights, after the activation and on each block's output, in
        forward_train only; masks from seed (attn_encoder.h gives the draws)."""
        _check(_encoder_set_dropout(self._handle, float(p),
                                    _seed("attn_encoder_layer_set_dropout", seed)))

    def get_params(self):
        """attn_encoder_layer_get_params: float32 [param_count] in
        nn.TransformerEncoderLayer's named_parameters() order:
        self_attn.in_proj_weight [3d, d], self_attn.in_proj_bias [3d],
        self_attn.out_proj.weight [d, d], .bias [d], linear1.weight [ff, d],
        .bias [ff], linear2.weight [d, ff], .bias [d], norm1.weight, .bias,
        norm2.weight, .bias [d]."""
        params = np.empty(self.param_count, np.float32)
        _check(_encoder_get_params(self._handle, _ptr(params)))
        return params

    def set_params(self, params):
        """attn_encoder_layer_set_params: params [param_count] in get_params'
        order."""
        p = _floats(params, "attn_encoder_layer_set_params", "params", (self.param_count,))
        _check(_encoder_set_params(self._handle, _ptr(p)))

    def _forward(self, fn, act, src, mask, kv_lengths, keep, bias, ctx):
        x = _floats(src, fn, "src", (None, None, self.d_model))
        batch, length = x.shape[:2]
        mask = _mask_for(fn, (batch, self.nhead, length, length), mask, kv_lengths, keep,
                         bias)
        out = np.empty(x.shape, np.float32)
        handle = None if act is None else _act_handle(fn, act)
        if act is not None:
            act._forget()
        _check(_encoder_forward(_context(ctx), self._handle, batch, length, _ptr(x),
                                _handle(mask), _ptr(out), handle))
        if act is not None:
            act._layer, act._mask, act._rows = self, mask, (batch, length)
        return out

    def __call__(self, src, *, mask=None, kv_lengths=None, keep=None, bias=None, ctx=None):
        """attn_encoder_layer_forward for inference (no dropout): src [batch,
        len, d_model] -> out of the same shape. mask a Mask, or kv_lengths
        (PyTorch's src_key_padding_mask of right-padded sequences: the
        lengths), keep (the NOT of a bool src_mask) and bias (a float
        src_mask) broadcast to [batch, nhead, len, len]."""
        return self._forward("attn_encoder_layer_forward", None, src, mask, kv_lengths, keep,
                             bias, ctx)

    def forward_train(self, act, src, *, mask=None, kv_lengths=None, keep=None, bias=None,
                      ctx=None):
        """attn_encoder_layer_forward with act: the training forward (dropout
        as set); act keeps what backward needs, and the mask."""
        return self._forward("attn_encoder_layer_forward", act, src, mask, kv_lengths, keep,
                             bias, ctx)

    def backward(self, act, d_out, *, inputs=True, params=True, ctx=None):
        """attn_encoder_layer_backward: (d_src [batch, len, d_model], d_params
        [param_count]) of the last forward_train that filled act, for d_out of
        out's shape; None for those not asked."""
        fn = "attn_encoder_layer_backward"
        handle = _act_handle(fn, act)
        batch, length = act._filled(fn, self)
        d_out = _floats(d_out, fn, "d_out", (batch, length, self.d_model))
        d_src = np.empty(d_out.shape, np.float32) if inputs else None
        d_params = np.empty(self.param_count, np.float32) if params else None
        _check(_encoder_backward(_context(ctx), self._handle, handle, _ptr(d_out), _ptr(d_src),
                                 _ptr(d_params)))
        return d_src, d_params

    def forward_cached(self, cache, seqs, cu_q, src, *, ctx=None):
        """attn_encoder_layer_forward_cached: the causal layer (set_causal
        first) on the new tokens src [total_q, d_model] of the sequences
        seqs (rows as cu_q says; see Sdpa.forward_cached), attending to the
        cached tokens, whose keys and values it appends to cache (one KVCache
        per layer, heads_kv = nhead, dim_qk = dim_v = d_model / nhead).
        Returns out [total_q, d_model]."""
        fn = "attn_encoder_layer_forward_cached"
        seqs, cu_q, total_q = _cached_rows(fn, seqs, cu_q, src)
        x = _floats(src, fn, "src", (total_q, self.d_model))
        head_dim = self.d_model // self.nhead
        _cache_dims(fn, cache, self.nhead, head_dim, head_dim, "layer's")
        out = np.empty(x.shape, np.float32)
        _check(_encoder_forward_cached(_context(ctx), self._handle, cache._handle, len(seqs),
                                       _ptr(seqs), _ptr(cu_q), _ptr(x), _ptr(out)))
        return out


def _layer_norm_args(fn, x, weight):
    x = _floats(x, fn, "x")
    if x.ndim < 1:
        raise _shape_error(fn, "x has no dimensions, expected [..., features]")
    features = x.shape[-1]
    weight = _floats(weight, fn, "weight", (features,))
    return x, weight, x.size // features if features else 0, features


def layer_norm(x, weight, bias, eps=1e-5):
    """attn_layer_norm (torch.nn.LayerNorm over the last dimension): x
    [..., features], weight and bias [features] -> y of x's shape,
    (x - mean) / sqrt(var + eps) · weight + bias, biased variance."""
    fn = "attn_layer_norm"
    x, weight, rows, features = _layer_norm_args(fn, x, weight)
    bias = _floats(bias, fn, "bias", (features,))
    y = np.empty(x.shape, np.float32)
    _check(_layer_norm(rows, features, _ptr(x), _ptr(weight), _ptr(bias), float(eps), _ptr(y)))
    return y


def layer_norm_backward(x, weight, d_y, eps=1e-5):
    """attn_layer_norm_backward: for the same x, weight, eps and d_y =
    dL/dy (x's shape), returns (d_x [x's shape], d_weight [features],
    d_bias [features])."""
    fn = "attn_layer_norm_backward"
    x, weight, rows, features = _layer_norm_args(fn, x, weight)
    d_y = _floats(d_y, fn, "d_y", x.shape)
    d_x = np.empty(x.shape, np.float32)
    d_weight, d_bias = np.empty(features, np.float32), np.empty(features, np.float32)
    _check(_layer_norm_backward(rows, features, _ptr(x), _ptr(weight), float(eps), _ptr(d_y),
                                _ptr(d_x), _ptr(d_weight), _ptr(d_bias)))
    return d_x, d_weight, d_bias


# ---- rotary position embedding --------------------------------------------------------

class Rope(_Owner):
    """A rotary position embedding, attn_rope (RoFormer §3.4.2): the first
    rotary_dim (even; default head_dim) features of each head of head_dim
    are rotated in pairs by θ = position · inv_freq[i], inv_freq[i] =
    base^(-2i/rotary_dim). style "half" (pairs (x[i], x[i + rotary_dim/2]):
    GPT-NeoX, Llama, HF rotate_half) or "interleaved" (pairs (x[2i],
    x[2i+1]): GPT-J). The frequencies come from the last source set: base,
    set_linear_scaling, set_llama3_scaling, set_inv_freq or set_tables
    (libattn copies the arrays)."""

    _free = _rope_destroy
    _fixed = frozenset({"head_dim", "rotary_dim"})

    def __init__(self, head_dim, rotary_dim=None, base=10000.0, style="half"):
        self.head_dim = int(head_dim)
        self.rotary_dim = self.head_dim if rotary_dim is None else int(rotary_dim)
        self._handle = _create(_rope_create, self.head_dim, self.rotary_dim, float(base),
                               _option(_ROPE_STYLES, style, "style"))

    def set_linear_scaling(self, factor):
        """attn_rope_set_linear_scaling: θ = (p / factor) · inv_freq."""
        _check(_rope_set_linear_scaling(self._handle, float(factor)))

    def set_llama3_scaling(self, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0,
                           original_max_positions=8192):
        """attn_rope_set_llama3_scaling (HF rope_type "llama3"; Llama 3.1's
        defaults)."""
        _check(_rope_set_llama3_scaling(self._handle, float(factor), float(low_freq_factor),
                                        float(high_freq_factor), int(original_max_positions)))

    def set_inv_freq(self, inv_freq):
        """attn_rope_set_inv_freq: the caller's frequencies, float
        [rotary_dim / 2] (copied)."""
        f = _floats(inv_freq, "attn_rope_set_inv_freq", "inv_freq", (self.rotary_dim // 2,))
        _check(_rope_set_inv_freq(self._handle, _ptr(f)))

    def set_tables(self, cos, sin):
        """attn_rope_set_tables: cos and sin [n_positions, rotary_dim / 2]
        (ONNX's cos_cache and sin_cache; copied); positions must then be in
        [0, n_positions)."""
        fn = "attn_rope_set_tables"
        c = _floats(cos, fn, "cos", (None, self.rotary_dim // 2))
        s = _floats(sin, fn, "sin", c.shape)
        _check(_rope_set_tables(self._handle, _ptr(c), _ptr(s), c.shape[0]))

    def apply(self, x, positions=None, *, start=0, layout="bhsd", inverse=False, ctx=None):
        """attn_rope_apply on a copy of x: x [batch, heads, seq, head_dim]
        (layout "bhsd") or [batch, seq, heads, head_dim] ("bshd"); positions
        int [batch, seq], or None for start, start + 1, ... in every batch
        row. inverse rotates by -θ (the backward: d_x = apply(d_y,
        inverse=True)). Returns the rotated array."""
        fn = "attn_rope_apply"
        layout_value = _option(_LAYOUTS, layout, "layout")
        y = np.array(_floats(x, fn, "x", (None, None, None, self.head_dim)), order="C")
        batch, heads, seq = (y.shape[0], y.shape[1], y.shape[2]) if layout == "bhsd" else \
            (y.shape[0], y.shape[2], y.shape[1])
        pos = None if positions is None else _ints(positions, fn, "positions", (batch, seq))
        _check(_rope_apply(_context(ctx), self._handle, layout_value, batch, heads, seq, _ptr(y),
                           _ptr(pos), int(start), int(bool(inverse))))
        return y


# ---- decoding: the paged KV cache and merging partial results ------------------------------

class KVCache(_Owner):
    """A paged KV cache, attn_kv_cache: num_pages pages of page_size tokens,
    each token heads_kv heads of keys [dim_qk] and values [dim_v], shared by
    the sequences opened in it (allocated once here). Sequences are small
    ints (seq_open, seq_fork); fork shares pages copy-on-write."""

    _free = _kv_cache_destroy
    _fixed = frozenset({"heads_kv", "dim_qk", "dim_v", "page_size", "num_pages"})

    def __init__(self, heads_kv, dim_qk, dim_v, page_size, num_pages):
        self.heads_kv, self.dim_qk, self.dim_v = int(heads_kv), int(dim_qk), int(dim_v)
        self.page_size, self.num_pages = int(page_size), int(num_pages)
        self._handle = _create(_kv_cache_create, self.heads_kv, self.dim_qk, self.dim_v,
                               self.page_size, self.num_pages)

    def seq_open(self):
        """attn_kv_cache_seq_open: a new empty sequence; returns its id."""
        seq = ctypes.c_int64()
        _check(_kv_cache_seq_open(self._handle, ctypes.byref(seq)))
        return seq.value

    def seq_close(self, seq):
        """attn_kv_cache_seq_close: gives back the pages only seq held."""
        _check(_kv_cache_seq_close(self._handle, int(seq)))

    def seq_fork(self, seq):
        """attn_kv_cache_seq_fork: a new sequence with seq's tokens (pages
        shared until one of them appends); returns its id."""
        dst = ctypes.c_int64()
        _check(_kv_cache_seq_fork(self._handle, int(seq), ctypes.byref(dst)))
        return dst.value

    def seq_truncate(self, seq, length):
        """attn_kv_cache_seq_truncate: keeps the first length tokens of seq."""
        _check(_kv_cache_seq_truncate(self._handle, int(seq), int(length)))

    def seq_len(self, seq):
        """attn_kv_cache_seq_len: the number of tokens of seq."""
        n = ctypes.c_int64()
        _check(_kv_cache_seq_len(self._handle, int(seq), ctypes.byref(n)))
        return n.value

    def append(self, seq, k, v):
        """attn_kv_cache_append: copies n new tokens to seq: k [n, heads_kv,
        dim_qk] and v [n, heads_kv, dim_v] (token-major). ATTN_ERR_STATE when
        the free pages do not suffice (nothing appended)."""
        fn = "attn_kv_cache_append"
        k = _floats(k, fn, "k", (None, self.heads_kv, self.dim_qk))
        v = _floats(v, fn, "v", (k.shape[0], self.heads_kv, self.dim_v))
        _check(_kv_cache_append(self._handle, int(seq), k.shape[0], _ptr(k), _ptr(v)))

    def read(self, seq, start=0, n=None, *, keys=True, values=True):
        """attn_kv_cache_read: tokens start .. start + n - 1 of seq (n None:
        to its end) as (k [n, heads_kv, dim_qk], v [n, heads_kv, dim_v]);
        None for keys or values not asked."""
        fn = "attn_kv_cache_read"
        n = self.seq_len(seq) - int(start) if n is None else n
        n = _count(fn, "n", n)
        k = np.empty((n, self.heads_kv, self.dim_qk), np.float32) if keys else None
        v = np.empty((n, self.heads_kv, self.dim_v), np.float32) if values else None
        _check(_kv_cache_read(self._handle, int(seq), int(start), n, _ptr(k), _ptr(v)))
        return k, v



def _cache_dims(fn, cache, heads_kv, dim_qk, dim_v, whose):
    if not isinstance(cache, KVCache):
        raise TypeError(f"{fn}: cache must be an attn.KVCache, not {type(cache).__name__}")
    if (cache.heads_kv, cache.dim_qk, cache.dim_v) != (heads_kv, dim_qk, dim_v):
        raise _shape_error(fn, f"the cache's heads_kv, dim_qk, dim_v ({cache.heads_kv}, "
                           f"{cache.dim_qk}, {cache.dim_v}) are not the {whose} "
                           f"({heads_kv}, {dim_qk}, {dim_v})")


def _cached_rows(fn, seqs, cu_q, rows):
    """seqs and cu_q as int64 arrays, and total_q = cu_q[-1], checked against
    the rows of the new tokens' array."""
    seqs = _ints(np.atleast_1d(seqs), fn, "seqs", (None,))
    n_rows = np.shape(rows)[0] if np.ndim(rows) else 0
    if cu_q is None:
        if seqs.size != 1:
            raise _shape_error(fn, f"cu_q may be None for one sequence only, not {seqs.size}")
        cu_q = (0, n_rows)
    cu_q = _ints(cu_q, fn, "cu_q", (seqs.size + 1,))
    if cu_q[0] != 0 or np.any(np.diff(cu_q) < 0):
        raise _invalid(fn, f"cu_q {cu_q.tolist()} does not start at 0 and never decrease")
    return seqs, cu_q, int(cu_q[-1])


def merge_partials(outs, lses):
    """attn_merge_partials: exact attention over the union of disjoint key
    sets from each part's out [..., dim_v] and lse [...] for the same
    queries (the lse of Sdpa.forward's return_lse): lse = log Σ_p
    exp(lse_p), out = Σ_p exp(lse_p - lse)·out_p. A part whose lse is -inf
    contributes nothing. Returns (out, lse) in the parts' shapes."""
    fn = "attn_merge_partials"
    if len(outs) != len(lses) or not outs:
        raise _shape_error(fn, f"{len(outs)} outs and {len(lses)} lses: expected the same "
                           f"number, at least 1")
    outs = [_floats(o, fn, f"outs[{i}]") for i, o in enumerate(outs)]
    shape = outs[0].shape
    if not shape:
        raise _shape_error(fn, "outs[0] has no dimensions, expected [..., dim_v]")
    outs = [_floats(o, fn, f"outs[{i}]", shape) for i, o in enumerate(outs)]
    lses = [_floats(s, fn, f"lses[{i}]", shape[:-1]) for i, s in enumerate(lses)]
    dim_v, rows = shape[-1], int(np.prod(shape[:-1]))
    out_ptrs = (ctypes.c_void_p * len(outs))(*(o.ctypes.data for o in outs))
    lse_ptrs = (ctypes.c_void_p * len(lses))(*(s.ctypes.data for s in lses))
    out = np.empty(shape, np.float32)
    lse = np.empty(shape[:-1], np.float32)
    _check(_merge_partials(len(outs), rows, dim_v, out_ptrs, lse_ptrs, _ptr(out), _ptr(lse)))
    return out, lse
