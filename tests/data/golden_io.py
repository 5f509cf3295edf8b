"""Shared helpers of the PyTorch golden-vector generators in tests/data/.

The five generators (gen_torch_vectors.py, gen_torch_backward_vectors.py,
gen_torch_mha_backward_vectors.py, gen_torch_layer_backward_vectors.py and
gen_torch_encoder_vectors.py) import this module; it is not run by itself. Each generator is run from the
source root as

    /usr/bin/python3 tests/data/<script>.py

(Debian's python3-torch 1.13 and python3-numpy); Python puts the script's own
folder, which holds this file, first on sys.path, so `import golden_io`
finds it.

What it provides:

  * the output folders: out_dir (a folder beside the scripts), replace_folder
    (an empty one, replacing the old set entirely), case_folder (one case's
    folder inside it), tree_size, and generate, the main loop that runs every
    case on one torch thread and bounds the set's size;
  * the files: write_bin (one tensor), write_masks (libattn's masks),
    write_case (case.json), error_fields (the check results as case.json
    records them);
  * seeding and draws: seed_all (torch and NumPy from one seed),
    float32_normal (normal draws rounded to float32 values);
  * nn.MultiheadAttention's masks in both sets that use it: mha_visibility
    (causal and right padding), keep_one_key (a key no random mask may
    hide), key_padding_mask (torch's form of right padding);
  * the checks made before anything is written: rel_error, check_errors,
    check_finite, dot_loss, check_restored and finite_differences.

File conventions. A generator writes tests/data/<set>/<case>/ holding

  <name>.bin  one tensor as raw little-endian values in C (row-major) order,
              no header: float32, float64, int64 or uint8;
  case.json   the case's configuration and, under "files" (and "masks"),
              which file holds which tensor, each an entry

                  {"file": "<name>.bin", "shape": [...], "dtype": "<dtype>"}

              with dtype a NumPy name ("float32", "float64", "int64",
              "uint8") and shape the tensor's dimensions ([] for a scalar);
              an entry may add "floor" (the floor of a gradient's error
              normalisation, see the backward generators). A mask entry adds
              "kind" ("kv_lengths", "bool" or "bias", stored as kv_lengths.bin,
              keep.bin and bias.bin) and, where the set uses it, "per_query".
              case.json is written by json.dump with indent 1 and a final
              newline, its keys in the order the generator builds them.

The C tests read these files. Regenerating a set with unchanged generators
reproduces it byte for byte (fixed seeds, one torch thread); a change here
touches all five sets, so regenerate each and check that `git status` shows
no change under tests/data/mha, sdpa_backward, mha_backward, layer_backward
and encoder unless one is meant.
"""
import json
import os
import shutil

import numpy as np
import torch

# The file that holds each kind of libattn mask.
MASK_FILES = {"kv_lengths": "kv_lengths", "bool": "keep", "bias": "bias"}


def out_dir(name):
    """The absolute path of tests/data/<name>/, the folder of one set of cases
    (beside this file and the generators)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), name)


def replace_folder(path):
    """Remove the folder `path` with everything in it, if it exists, and
    create it empty."""
    if os.path.isdir(path):
        shutil.rmtree(path)
    os.makedirs(path)


def case_folder(set_dir, name):
    """Create the folder of the case `name` inside `set_dir` (it must not exist
    yet) and return its path."""
    folder = os.path.join(set_dir, name)
    os.makedirs(folder)
    return folder


def tree_size(path):
    """The total size in bytes of the files below the folder `path`."""
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def generate(set_dir, max_bytes, *groups):
    """A generator's main loop: run torch on one thread, replace `set_dir`
    with an empty folder, then for each (make, configs) in `groups` call
    make(index, cfg) for every cfg with its index in its own list. Prints
    the number of cases and bytes written, fails (AssertionError) unless the
    set is below `max_bytes`, and returns the list of make's results."""
    torch.set_num_threads(1)
    replace_folder(set_dir)
    results = [make(i, cfg) for make, configs in groups for i, cfg in enumerate(configs)]
    total = tree_size(set_dir)
    print("%d cases, %d bytes in %s" % (len(results), total, set_dir))
    assert total < max_bytes
    return results


def write_bin(folder, name, array, dtype, floor=None):
    """Write `array`, converted to `dtype`, as raw little-endian values in C
    order to <folder>/<name>.bin; return its case.json entry {file, shape,
    dtype} (and floor, when given)."""
    data = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    data.tofile(os.path.join(folder, name + ".bin"))
    desc = {"file": name + ".bin", "shape": list(data.shape), "dtype": np.dtype(dtype).name}
    if floor is not None:
        desc["floor"] = floor
    return desc


def write_masks(folder, masks):
    """Write libattn's masks, a list of (kind, per_query, array, dtype) with
    kind "kv_lengths" (int64), "bool" (the uint8 keep mask) or "bias"
    (float32), to the files MASK_FILES names; return their case.json entries
    {kind, per_query, file, shape, dtype}, per_query left out where it is
    None."""
    entries = []
    for kind, per_query, array, dtype in masks:
        entry = {"kind": kind}
        if per_query is not None:
            entry["per_query"] = per_query
        entry.update(write_bin(folder, MASK_FILES[kind], array, dtype))
        entries.append(entry)
    return entries


def write_case(folder, case):
    """Write the dict `case` to <folder>/case.json (indent 1, final newline)."""
    with open(os.path.join(folder, "case.json"), "w") as fh:
        json.dump(case, fh, indent=1)
        fh.write("\n")


def error_fields(errors):
    """{what: error} as case.json records it: {"<what>_max_rel_error": error}."""
    return dict(("%s_max_rel_error" % what, e) for what, e in errors.items())


def seed_all(seed):
    """Seed torch's global generator with `seed` and return a NumPy Generator
    seeded with it too (np.random.default_rng(seed))."""
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


def float32_normal(rng, shape, scale=1.0):
    """Normal draws of the NumPy Generator `rng` times `scale`, rounded to
    float32 (so that float32 and float64 users see the same values)."""
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def mha_visibility(cfg, B, Lq, Lkv):
    """bool [B, Lq, Lkv]: the keys each query may see under the case's
    top-left causal mask (when cfg["causal"] is set; key j <= query i) and
    right padding (cfg["kv_lengths"], one length in 1..Lkv per batch row,
    when present)."""
    kv_lengths = cfg.get("kv_lengths")
    vis = np.ones((B, Lq, Lkv), dtype=bool)
    if cfg.get("causal", False):
        vis &= np.tril(np.ones((Lq, Lkv), dtype=bool))[None]
    if kv_lengths is not None:
        assert len(kv_lengths) == B and min(kv_lengths) >= 1 and max(kv_lengths) <= Lkv
        vis &= (np.arange(Lkv)[None, :] < np.array(kv_lengths)[:, None])[:, None, :]
    return vis


def keep_one_key(vis, H, two_d, rng):
    """bool [B, H, Lq, Lkv] ([1, 1, Lq, Lkv] when `two_d`, the shape of a 2-D
    attn_mask): True at one key of each row, chosen at random (one draw
    rng.random of that shape) among the keys `vis` [B, Lq, Lkv] lets the row
    see (all batch rows, for two_d). A random mask that never hides these
    keys leaves no query row without a key."""
    B, Lq, Lkv = vis.shape
    vis4 = np.broadcast_to(vis[:, None], (B, H, Lq, Lkv))
    if two_d:
        vis4 = vis4.all(axis=(0, 1), keepdims=True)
    sure = np.argmax(np.where(vis4, rng.random(vis4.shape), -1.0), axis=-1)
    return np.arange(Lkv) == sure[..., None]


def key_padding_mask(Lkv, kv_lengths):
    """torch's key_padding_mask for right padding: bool [B, Lkv], True at the
    keys at positions >= the batch row's length; None if kv_lengths is None."""
    if kv_lengths is None:
        return None
    return torch.arange(Lkv)[None, :] >= torch.tensor(kv_lengths)[:, None]


def make_masks(cfg, B, H, Lq, Lkv, rng):
    """The masks of an MHA-shaped case (cfg["causal"], cfg["kv_lengths"],
    cfg["attn_mask"] in "bool2d", "bool3d", "float2d", "float3d"), a random
    mask drawn from `rng` (35% of the keys masked out, never one row's last
    visible key): allowed [B, H, Lq, Lkv] bool, bias_add (float64, same
    shape), torch's attn_mask (the causal triangle merged into a bool one) and
    key_padding_mask, and libattn's masks [(kind, per_query, array, dtype)]."""
    vis = mha_visibility(cfg, B, Lq, Lkv)  # allowed by causal and key padding
    allowed = np.repeat(vis[:, None], H, axis=1)  # [B, H, Lq, Lkv]
    bias_add = np.zeros(allowed.shape)
    causal, kv_lengths, kind = cfg.get("causal", False), cfg.get("kv_lengths"), cfg.get("attn_mask")
    masks = []
    if kv_lengths is not None:
        masks.append(("kv_lengths", 0, np.array(kv_lengths, dtype=np.int64), np.int64))
    attn_mask_t = None
    if kind is not None:
        shape = (1, 1, Lq, Lkv) if kind.endswith("2d") else (B, H, Lq, Lkv)
        guarantee = keep_one_key(vis, H, kind.endswith("2d"), rng)  # one visible key per row stays
        masked_out = (rng.random(shape) < 0.35) & ~guarantee
        allowed &= ~masked_out
        if kind.startswith("bool"):
            masks.append(("bool", 0, (~masked_out).astype(np.uint8), np.uint8))
            tm = torch.from_numpy(masked_out)
        else:
            fb = float32_normal(rng, shape, 1.5)
            fb[masked_out] = -np.inf
            masks.append(("bias", 0, fb, np.float32))
            bias_add = bias_add + np.where(masked_out, 0.0, fb.astype(np.float64))
            tm = torch.from_numpy(fb.astype(np.float64))
        attn_mask_t = tm.reshape(Lq, Lkv) if kind.endswith("2d") else tm.reshape(B * H, Lq, Lkv)
    if causal:  # torch gets the upper triangle, merged into a bool attn_mask
        upper = torch.triu(torch.ones(Lq, Lkv, dtype=torch.bool), diagonal=1)
        assert attn_mask_t is None or attn_mask_t.dtype == torch.bool
        attn_mask_t = upper if attn_mask_t is None else attn_mask_t | upper
    key_padding_t = key_padding_mask(Lkv, kv_lengths)
    assert allowed.any(axis=-1).all(), cfg["name"] + ": a query row sees no key"
    return allowed, bias_add, attn_mask_t, key_padding_t, masks


def fd_sample(rng, samples):
    """finite_differences's indices: a tensor's largest gradient element and
    `samples` random ones (drawn from rng), in increasing order."""
    def indices(n, grad):
        picks = {int(np.argmax(np.abs(grad)))}
        picks.update(int(i) for i in rng.choice(n, size=min(samples, n), replace=False))
        return np.array(sorted(picks))
    return indices


def rel_error(got, ref, floor=0.0):
    """max |got - ref| / (|ref| + max(max|ref| over the tensor, floor)), in
    float64; 0 if the two are equal."""
    got, ref = np.asarray(got, np.float64), np.asarray(ref, np.float64)
    diff = np.abs(got - ref)
    if not np.any(diff):
        return 0.0
    return float(np.max(diff / (np.abs(ref) + max(np.max(np.abs(ref)), floor))))


def check_errors(name, against, errors, tol):
    """Fail (AssertionError) unless every error in the dict `errors` {what:
    error} is <= tol; `against` names the reference ("the NumPy formula")."""
    for what, e in errors.items():
        if not e <= tol:
            raise AssertionError("%s: torch's %s differs from %s: %.3g > %g"
                                 % (name, what, against, e, tol))


def check_finite(name, arrays):
    """Fail (AssertionError) if any of the NumPy arrays holds a NaN or an
    infinity."""
    for t in arrays:
        assert np.all(np.isfinite(t)), name + ": torch gave a non-finite value"


def dot_loss(forward, d_out):
    """The loss L = sum(forward() * d_out), whose gradients out.backward(d_out)
    gives, as a function of no arguments returning a Python float (computed
    without autograd), for finite differences."""
    def loss():
        with torch.no_grad():
            return float((forward() * d_out).sum())
    return loss


def check_restored(name, loss, out, d_out):
    """Fail (AssertionError) unless loss() is again exactly sum(out * d_out),
    i.e. finite differences restored every element they moved."""
    assert loss() == float((out.detach() * d_out).sum()), name + ": a leaf was not restored"


def finite_differences(loss, tensors, grads, floors, step, indices=None):
    """Central finite differences (loss(t + step) - loss(t - step)) / (2 step)
    of the elements of each torch tensor in `tensors` (changed in place and
    restored; call under torch.no_grad()), compared with the matching NumPy
    gradient in `grads`. Every element is checked unless `indices` is given:
    indices(n, flat_grad) then returns the flat indices to check of a tensor
    of n elements. Returns the worst |fd - g| / (|g| + max(max|g|, floor))
    of each tensor (0 where fd equals g) and the number of elements
    checked."""
    worst, count = [], 0
    for t, g, floor in zip(tensors, grads, floors):
        flat_t, flat_g = t.view(-1), np.asarray(g).reshape(-1)
        norm = max(float(np.max(np.abs(flat_g))), floor)
        w = 0.0
        picks = range(flat_t.numel()) if indices is None else indices(flat_t.numel(), flat_g)
        for i in picks:
            keep = flat_t[i].item()
            flat_t[i] = keep + step
            up = loss()
            flat_t[i] = keep - step
            down = loss()
            flat_t[i] = keep
            fd = (up - down) / (2 * step)
            err = abs(fd - flat_g[i])
            w = max(w, err / (abs(flat_g[i]) + norm) if err > 0 else 0.0)
            count += 1
        worst.append(w)
    return worst, count
