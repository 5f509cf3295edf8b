#!/usr/bin/env python3
"""The dynamic symbols libattn exports are exactly the functions its public
header (attn.h and the parts it includes) declares with ATTN_API: nothing missing, nothing extra (no leaked
internal helper, no BLAS symbol).

usage: check_exports.py LIBRARY HEADER
"""
import os
import re
import subprocess
import sys


def exported(library):
    # nm -D --defined-only: the dynamic symbols the library itself defines.
    text = subprocess.run(["nm", "-D", "--defined-only", library], check=True,
                          capture_output=True, text=True).stdout
    names = set()
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[1] in "TtDdBbRrWwVvi":
            names.add(parts[2].split("@")[0])
    # The version node itself appears as an absolute symbol.
    return {n for n in names if not n.startswith("ATTN_")}


def declared(header):
    """The ATTN_API functions of header and of the headers it includes by
    "name" (attn.h's parts, beside it; attn_version.h, generated into the
    build directory, holds macros only)."""
    text = open(header, encoding="utf-8").read()
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    names = set(re.findall(r"ATTN_API\s[^;(]*?\b(attn_\w+)\s*\(", text))
    for part in re.findall(r'^#include "([^"]+)"', text, flags=re.M):
        if part == "attn_version.h":
            continue
        names |= declared(os.path.join(os.path.dirname(header), part))
    return names


def main():
    library, header = sys.argv[1], sys.argv[2]
    have, want = exported(library), declared(header)
    if not want:
        print("no ATTN_API declarations found in", header)
        return 1
    missing, extra = sorted(want - have), sorted(have - want)
    for name in missing:
        print("declared but not exported:", name)
    for name in extra:
        print("exported but not declared:", name)
    print(f"{len(want)} declared, {len(have)} exported")
    return 1 if missing or extra else 0


if __name__ == "__main__":
    sys.exit(main())
