#!/usr/bin/env python3
"""How much of libattn's C API each binding reaches: the functions of
debian/libattn1.symbols (libattn.so.1's ABI, which tests/check_exports.py
and dpkg-gensymbols hold equal to the header's) that the binding's code calls,
comments left out. Prints one line per binding and exits 1 if one misses a
function other than those it leaves out on purpose (ALLOWED).

usage: binding_coverage.py [ROOT]   (ROOT: the repository, default: ..)
"""
import os
import re
import sys

ROOT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..")

# attn_set_error is for C code that reports its own errors through
# attn_last_error(); each binding has its own error type instead.
ALLOWED = {"attn_set_error"}


def read(*parts):
    with open(os.path.join(ROOT, *parts), encoding="utf-8") as f:
        return f.read()


def without_c_comments(text):
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def without_python_comments(text):
    text = re.sub(r'"""(?:.|\n)*?"""', " ", text)
    return re.sub(r"#[^\n]*", " ", text)


def cxx(text):
    # A call, or a destroy function given to detail::handle<T, Destroy>.
    code = without_c_comments(text)
    return set(re.findall(r"\b(attn_[a-z0-9_]+)\s*\(", code)) | \
        set(re.findall(r"\b(attn_[a-z0-9_]+_destroy)\s*>", code))


def python(text):
    # The module binds each C function once, as name = _declare("attn_...",
    # ...), and calls it through that name: a function counts when its name is
    # used again past the binding.
    code = without_python_comments(text)
    used = set()
    for name, function in re.findall(r'\b(\w+)\s*=\s*_declare\(\s*"(attn_[a-z0-9_]+)"', code):
        if len(re.findall(r"\b%s\b" % re.escape(name), code)) > 1:
            used.add(function)
    return used


def rust_sys(text):
    return set(re.findall(r"\bpub fn (attn_[a-z0-9_]+)\s*\(", without_c_comments(text)))


def rust_safe(texts):
    used = set()
    for text in texts:
        used |= set(re.findall(r"\bsys::(attn_[a-z0-9_]+)\s*\(", without_c_comments(text)))
    return used


def main():
    exported = set(re.findall(r"^ (attn_[a-z0-9_]+)@", read("debian", "libattn1.symbols"),
                              re.M))
    rust_src = os.path.join(ROOT, "rust", "attn", "src")
    bindings = [
        ("C++ (include/attn.hpp)", cxx(read("include", "attn.hpp"))),
        ("Python (python/attn.py)", python(read("python", "attn.py"))),
        ("Rust attn-sys (declarations)", rust_sys(read("rust", "attn-sys", "src", "lib.rs"))),
        ("Rust attn (safe API)",
         rust_safe(read("rust", "attn", "src", f) for f in sorted(os.listdir(rust_src))
                   if f.endswith(".rs"))),
    ]
    status = 0
    for name, used in bindings:
        covered = used & exported
        missing = sorted(exported - used)
        unknown = sorted(used - exported)
        line = f"{name}: {len(covered)}/{len(exported)} functions"
        if missing:
            line += f"; not covered: {', '.join(missing)}"
        if unknown:
            line += f"; not exported: {', '.join(unknown)}"
        print(line)
        if set(missing) - ALLOWED or unknown:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
