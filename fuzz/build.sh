#!/bin/sh
# fuzz/build.sh [BUILD_DIR] — builds the libFuzzer targets with clang:
# libattn and the .npy reader instrumented for coverage, ASan and UBSan
# (every UBSan report fatal), linked into BUILD_DIR/fuzz_api and
# BUILD_DIR/fuzz_npy. Run from the repository root; needs clang and
# libclang-rt-14-dev (Debian), meson, ninja, OpenBLAS.
#
# Run a target:  BUILD_DIR/fuzz_api -max_total_time=60 NEW_CORPUS fuzz/corpus/api
set -eu
out=${1:-build-fuzz}
san='-fsanitize=address,undefined -fno-sanitize-recover=all'
if [ ! -f "$out/build.ninja" ]; then
    # -Dopenmp=disabled: the targets link libattn.a by hand, without an
    # OpenMP runtime; OpenMP only matters with an OpenMP-threaded BLAS.
    CC=clang CXX=clang++ meson setup "$out" -Dtests=false -Ddefault_library=static \
        -Dopenmp=disabled -Db_sanitize=address,undefined -Db_lundef=false \
        -Dc_args="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all" \
        -Dcpp_args="-fno-sanitize-recover=all" >/dev/null
fi
ninja -C "$out" src/libattn.a tools/libattn_npy.a >/dev/null
cflags="-std=c11 -g -O1 -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L $san -fsanitize=fuzzer"
clang $cflags -Iinclude -I"$out/include" fuzz/fuzz_api.c fuzz/fuzz_common.c fuzz/fuzz_ref.c \
    fuzz/fuzz_kv_cache.c \
    "$out/src/libattn.a" -lopenblas -lmvec -lm -lpthread -o "$out/fuzz_api"
clang $cflags -Itools fuzz/fuzz_npy.c "$out/tools/libattn_npy.a" -lm -o "$out/fuzz_npy"
echo "fuzz: built $out/fuzz_api and $out/fuzz_npy"
