#!/bin/sh
# abi/update.sh [BUILD_DIR] — (re)writes abi/libattn.so.1.abi, the ABI
# baseline that .ci/reliability.sh compares every build of libattn.so with
# (abidiff; any incompatible change fails CI, additions are reported).
#
# Run it from the repository root, on Debian 12 with gcc (abigail-tools),
# only when the ABI is meant to change:
#   - after adding functions, to make them part of the baseline (optional:
#     additions pass the check anyway);
#   - after an intended break, together with the soname bump it requires
#     (include/attn_version.h.in): the new file is then the baseline of the
#     new major version. Rename it after the new soname.
# BUILD_DIR defaults to build-abi (configured here as a default, debug-info
# build if missing).
set -eu
out=${1:-build-abi}
[ -f "$out/build.ninja" ] || meson setup "$out" -Dtests=false >/dev/null
meson compile -C "$out" src/attn:shared_library >/dev/null
lib=$(readlink -f "$out/src/libattn.so")  # the real file, libattn.so.MAJOR.MINOR.PATCH
abidw --headers-dir include --headers-dir "$out/include" --drop-private-types \
    --no-corpus-path --no-comp-dir-path --short-locs --out-file abi/libattn.so.1.abi "$lib"
echo "abi: wrote abi/libattn.so.1.abi from $lib"
