#!/usr/bin/env bash
# .ci/reliability.sh — the reliability checks of issue 6 (docs/reliability.md).
#
# Run from the repository root (.ci/run calls it). Installs what it needs,
# builds each configuration in its own directory (build-asan, build-vg,
# build-tsan, build-clang, build-fuzz; git-ignored by /build*/), runs every
# check, prints one plain line per check and a last line
#     reliability: N passed, M failed
# and exits non-zero if any check failed. A failed check's log is printed
# (its tail) just above its line.
#
# Environment: FUZZ_SECONDS (default 30: CI's 20 minutes) for fuzz-api,
# FUZZ_NPY_SECONDS (default 10: its coverage stops growing within seconds)
# for fuzz-npy; RELIABILITY_CHECKS,
# a space-separated subset of the check names below (default: all), e.g.
# RELIABILITY_CHECKS="asan alloc-failure" (later checks may need the builds
# of earlier ones: alloc-failure, size-overflow and numeric-edges use
# build-asan, determinism and abi use build-vg).
set -uo pipefail

root=$(pwd)
fuzz_seconds=${FUZZ_SECONDS:-30}
fuzz_npy_seconds=${FUZZ_NPY_SECONDS:-10}
logs="$root/build-reliability-logs"
rm -rf "$logs"
mkdir -p "$logs"
t_start=$(date +%s)

export DEBIAN_FRONTEND=noninteractive
packages="meson ninja-build pkg-config gcc g++ libc6-dev binutils python3 python3-numpy
          libopenblas-dev libcmocka-dev libjson-c-dev libxml2-utils librsvg2-bin
          clang libclang-rt-14-dev valgrind abigail-tools"
if ! apt-get install -y -qq --no-install-recommends $packages >/dev/null 2>&1; then
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq --no-install-recommends $packages >/dev/null ||
        { echo "reliability: cannot install $packages"; exit 1; }
fi

passed=0
failed=0
# check NAME FUNCTION: runs FUNCTION with its output in $logs/NAME.log; the
# function sets SUMMARY (figures) and returns 0 or 1.
check() {
    local name=$1 fn=$2 t0 rc
    if [ -n "${RELIABILITY_CHECKS:-}" ] && [[ " $RELIABILITY_CHECKS " != *" $name "* ]]; then
        return 0
    fi
    t0=$(date +%s)
    SUMMARY=""
    "$fn" >"$logs/$name.log" 2>&1
    rc=$?
    local secs=$(($(date +%s) - t0))
    if [ $rc -eq 0 ]; then
        passed=$((passed + 1))
        echo "$name: ok: $SUMMARY (${secs} s)"
    else
        failed=$((failed + 1))
        echo "---- $name: last lines of $logs/$name.log"
        tail -n 40 "$logs/$name.log" | sed 's/^/    /'
        echo "$name: FAILED: ${SUMMARY:-see $logs/$name.log} (${secs} s)"
    fi
}

# meson test's counts from a build dir's testlog.json: "ok/total".
meson_counts() {
    python3 - "$(ls -t "$1"/meson-logs/testlog*.json | head -1)" <<'PY'
import json, sys
rs = [json.loads(l)["result"] for l in open(sys.argv[1]) if l.strip()]
ok = sum(r in ("OK", "SKIP") for r in rs)
print("%d/%d" % (ok, len(rs)))
PY
}

# Sanitizer reports anywhere in a build's test log (also from programs the
# tests run, when the test printed their output).
sanitizer_reports() {
    grep -cE "runtime error:|ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|SUMMARY: UndefinedBehaviorSanitizer" \
        "$(ls -t "$1"/meson-logs/testlog*.txt | head -1)" || true
}

setup() { # setup DIR [meson options...]: configure once, then compile
    local dir=$1
    shift
    if [ ! -f "$dir/build.ninja" ]; then
        meson setup "$dir" "$@" || return 1
    fi
    meson compile -C "$dir"
}

# make_wrapper DIR TEST_PREFIX SHIM_PREFIX PYTHON_PREFIX: writes DIR/rel-wrap, a
# `meson test --wrapper`. A test that is an ELF program runs as
# TEST_PREFIX PROGRAM ARGS. A test that is a Python script runs as
# PYTHON_PREFIX python SCRIPT ARGS, where every ELF program among ARGS (not a
# .so: the attn program of the CLI tests) is replaced by a shim that runs it
# as SHIM_PREFIX PROGRAM. So Valgrind checks the attn program rather than
# Python, and a Python that loads a sanitized libattn.so through ctypes
# (tests/test_python.py, given ATTN_LIBRARY) gets the sanitizer's runtime
# preloaded.
make_wrapper() {
    local dir="$root/$1"
    rm -rf "$dir/rel-shims"
    mkdir -p "$dir/rel-shims"
    cat >"$dir/rel-run" <<EOF
#!/bin/sh
exec $3 "\$@"
EOF
    cat >"$dir/rel-wrap" <<EOF
#!/bin/sh
# meson test --wrapper, written by .ci/reliability.sh (make_wrapper)
case "\$(basename "\$1")" in
python*)
    interp=\$1
    shift
    n=\$#
    while [ \$n -gt 0 ]; do
        a=\$1
        shift
        n=\$((n - 1))
        case "\$a" in
        *.so|*.so.*) ;;
        *)
            if [ -f "\$a" ] && [ -x "\$a" ] && [ "\$(head -c 4 "\$a" | tail -c 3)" = "ELF" ]; then
                shim="$dir/rel-shims/\$(basename "\$a")"
                # Written aside, then renamed: CLI tests run in parallel, and
                # a test that executes a shim while another test rewrites it
                # in place fails with ETXTBSY ("Text file busy").
                printf '#!/bin/sh\nexec %s %s "\$@"\n' "$dir/rel-run" "\$(readlink -f "\$a")" >"\$shim.\$\$"
                chmod +x "\$shim.\$\$"
                mv -f "\$shim.\$\$" "\$shim"
                a=\$shim
            fi ;;
        esac
        set -- "\$@" "\$a"
    done
    # PYTHON_PREFIX only for a script that loads libattn.so itself (it is
    # given ATTN_LIBRARY): a preloaded TSan runtime crashes the programs a
    # script starts (sh, nm) before they can drop it.
    [ -n "\${ATTN_LIBRARY:-}" ] && exec $4 "\$interp" "\$@"
    exec "\$interp" "\$@" ;;
*)
    exec $2 "\$@" ;;
esac
EOF
    chmod +x "$dir/rel-run" "$dir/rel-wrap"
}

# ---- 1. AddressSanitizer + UndefinedBehaviorSanitizer, whole suite ---------------
# exitcode 86: a report also fails the CLI tests, which check exit statuses of
# the attn program they run.
export ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:exitcode=86:strict_string_checks=1:detect_stack_use_after_return=1"
export UBSAN_OPTIONS="halt_on_error=1:exitcode=86:print_stacktrace=1"
asan() {
    # -Dmpi=disabled here and under Valgrind and TSan: the suite 'mpi' runs
    # once, in the plain build (Open MPI's own allocations would be reported).
    setup build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dmpi=disabled \
        -Dc_args=-fno-sanitize-recover=all -Dcpp_args=-fno-sanitize-recover=all || return 1
    # tests/meson.build preloads the ASan runtime for test_python by itself (so
    # that a plain meson test passes); the wrapper's settings, applied last,
    # are these strict ones all the same.
    make_wrapper build-asan "" "env -u LD_PRELOAD ASAN_OPTIONS=$ASAN_OPTIONS" \
        "env LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=$ASAN_OPTIONS:detect_leaks=0"
    # The suite 'browser' (the explorer's script in Chromium) runs in .ci/run
    # only: it runs no libattn code; test_cli_explore checks the page's writer.
    meson test -C build-asan --print-errorlogs --timeout-multiplier 3 --no-suite training \
        --no-suite browser --no-suite mpi --wrapper "$root/build-asan/rel-wrap"
    local rc=$? reports
    short_training "" build-asan || rc=1  # the suite training, shortened (see valgrind_suite)
    reports=$(sanitizer_reports build-asan)
    SUMMARY="$(meson_counts build-asan) tests passed under ASan+UBSan (-fno-sanitize-recover=all), $reports sanitizer reports"
    [ $rc -eq 0 ] && [ "$reports" -eq 0 ]
}

# ---- 2. allocation-failure injection (in the ASan build: LSan checks leaks) -------
alloc_failure() {
    build-asan/tests/test_alloc_failure || return 1
    build-asan/tests/test_alloc_failure_decode || return 1
    local line threads decode log="$logs/alloc-failure.log"
    line=$(grep -h "^alloc-failure: [0-9]* allocation points" "$log")
    threads=$(grep -h "pthread_create failures checked" "$log" | grep -o "[0-9]*$")
    decode=$(grep -ho "^alloc-failure (decoding): [0-9]* allocation points, [0-9]* injected" \
        "$log" | sed 's/^alloc-failure (decoding): //')
    SUMMARY="${line#alloc-failure: }; decoding calls: $decode failures;"
    SUMMARY="$SUMMARY $threads thread-creation failures; LSan: no leak"
}

# ---- 3. size overflow ----------------------------------------------------------------
size_overflow() {
    build-asan/tests/test_size_overflow || return 1
    SUMMARY=$(grep -h "overflowing shapes refused" "$logs/size-overflow.log" | sed 's/^size-overflow: //')
}

# ---- 4. numerical edge cases and NaN confinement -----------------------------------
numeric_edges() {
    build-asan/tests/test_numeric_edges && build-asan/tests/test_nan_confinement || return 1
    SUMMARY="$(grep -h "^numeric-edges:" "$logs/numeric-edges.log" | grep -o "[0-9]* cases" |
        head -1 | sed 's/cases/edge cases/') and $(grep -h "^nan-confinement:" "$logs/numeric-edges.log" |
        grep -o "[0-9]* poisoned cases") (NaN/Inf in one row) agree with the float64 reference"
}

# short_training WRAPPER DIR: a two-step `attn train reverse` with --out (the
# training tool's whole path: data, model, encoder layer forward and
# backward, Adam, pictures, weights) and a one-epoch `attn train lm` with
# `attn generate` on three poems, under WRAPPER, for the runs that leave out
# the suite 'training'.
short_training() {
    local out="$root/$2/short-training" attn="$root/$2/tools/attn"
    rm -rf "$out" "$out-lm"
    $1 "$attn" train reverse --epochs 1 --train-size 256 --test-size 4 \
        --out "$out" >"$out.log" 2>&1 || { cat "$out.log"; return 1; }
    grep -q "^test accuracy: " "$out.log" && [ -s "$out/reverse-attention.npy" ] || return 1
    # The language model's whole path on three short poems: the corpus (its
    # last line without a newline), training, the checkpoint, generation with
    # and without the cache, the last layer's weights, a refused prompt.
    mkdir -p "$out-lm"
    printf '《一》\n作者：甲\n白日依山尽，黄河入海流。\n%%\n《二》\n作者：乙\n' >"$out-lm/poems"
    printf '床前明月光，疑是地上霜。\n%%\n《三》\n作者：丙\n春眠不觉晓，处处闻啼鸟。' \
        >>"$out-lm/poems"
    $1 "$attn" train lm --corpus "$out-lm/poems" --epochs 1 --context 32 --layers 2 \
        --out "$out-lm/model" >"$out.log" 2>&1 || { cat "$out.log"; return 1; }
    for cache in "" --no-cache; do
        $1 "$attn" generate --model "$out-lm/model" --prompt '《' --max-new 20 --greedy \
            --attention "$out-lm/attention.npy" $cache >"$out.log" 2>&1 ||
            { cat "$out.log"; return 1; }
    done
    if $1 "$attn" generate --model "$out-lm/model" --prompt '《龘' >"$out.log" 2>&1; then
        echo "short_training: a prompt with an unknown character was not refused"; return 1
    fi
    grep -q "not in the model's vocabulary" "$out.log" && [ -s "$out-lm/attention.npy" ]
}

# ---- 5. Valgrind memcheck, whole suite -------------------------------------------------
# C test programs run under valgrind directly. The CLI tests are Python
# scripts that run the attn program: the wrapper runs Python natively and
# hands the script a shim that runs attn under valgrind. test_exports (Python
# reading the .so) runs natively. ATTN_TEST_QUICK=1 cuts the iterations of
# test_concurrency and test_determinism (valgrind serializes threads, ~50x
# slower); they run in full in every other build. test_alloc_failure (suite
# 'alloc-failure', 106 s of Valgrind's time) is left out: the check
# alloc-failure runs it under ASan and LSan, which see its leaks and stray
# writes, and the ASan and TSan runs of the whole suite run it again (what
# only Valgrind sees, reads of uninitialized memory, it no longer checks on
# those failure paths). The suite 'training' (the
# CLI tests that train: the demo, attn train) is left out — seconds of
# training become many minutes — and short_training (a two-step `attn train
# reverse`, a one-epoch `attn train lm` on three poems and `attn generate`)
# runs under valgrind instead.
valgrind_suite() {
    setup build-vg -Dmpi=disabled || return 1
    local vglogs="$root/build-vg/valgrind-logs"
    rm -rf "$vglogs"
    mkdir -p "$vglogs"
    local vg="valgrind --leak-check=full --errors-for-leak-kinds=definite,indirect,possible --show-leak-kinds=definite,indirect,possible --log-file=$vglogs/%p.log"
    make_wrapper build-vg "$vg --error-exitcode=1" "$vg --error-exitcode=99" ""
    ATTN_TEST_QUICK=1 meson test -C build-vg --print-errorlogs --timeout-multiplier 20 \
        --no-suite training --no-suite browser --no-suite mpi --no-suite alloc-failure \
        --wrapper "$root/build-vg/rel-wrap"
    local rc=$?
    short_training "$vg --error-exitcode=1" build-vg || rc=1
    local procs errors lost
    procs=$(ls "$vglogs" | wc -l)
    errors=$(cat "$vglogs"/*.log 2>/dev/null | grep -o "ERROR SUMMARY: [0-9]*" | awk '{s += $3} END {print s + 0}')
    lost=$(cat "$vglogs"/*.log 2>/dev/null | grep -E "(definitely|indirectly|possibly) lost:" |
        awk '{gsub(",", "", $4); s += $4} END {print s + 0}')
    SUMMARY="$(meson_counts build-vg) tests passed under Valgrind memcheck, $procs processes checked, $errors errors, $lost bytes leaked"
    [ $rc -eq 0 ] && [ "$errors" -eq 0 ] && [ "$lost" -eq 0 ] && [ "$procs" -gt 0 ]
}

# ---- 6. ThreadSanitizer: the concurrency test, then the whole suite --------------------
# --param=tsan-instrument-func-entry-exit=0: GCC's TSan instruments the ifunc
# resolvers of src/softmax.c's target_clones, which run before TSan is set up
# and crash the program at load; without entry/exit hooks they don't (memory
# accesses stay instrumented, reports keep one frame). OPENBLAS_NUM_THREADS=1:
# OpenBLAS's own thread pool synchronizes in uninstrumented code, which TSan
# reports as races (false positives); libattn's threads are all checked.
tsan() {
    setup build-tsan -Db_sanitize=thread -Db_lundef=false -Dmpi=disabled \
        -Dc_args=--param=tsan-instrument-func-entry-exit=0 \
        -Dcpp_args=--param=tsan-instrument-func-entry-exit=0 || return 1
    export TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1"
    OPENBLAS_NUM_THREADS=1 build-tsan/tests/test_concurrency || return 1
    make_wrapper build-tsan "" "env -u LD_PRELOAD" "env LD_PRELOAD=$(gcc -print-file-name=libtsan.so)"
    # The whole suite with ATTN_TEST_QUICK=1, as under Valgrind: fewer
    # iterations and rows, and 2 threads where a test would go up to 4. TSan
    # reports a race between two threads from the order of one run's
    # accesses, not from repetition; test_concurrency ran in full (8 threads)
    # just above.
    ATTN_TEST_QUICK=1 OPENBLAS_NUM_THREADS=1 \
        meson test -C build-tsan --print-errorlogs --timeout-multiplier 10 \
        --no-suite training --no-suite browser --no-suite mpi --wrapper "$root/build-tsan/rel-wrap"
    local rc=$? reports
    OPENBLAS_NUM_THREADS=1 short_training \
        "env LD_PRELOAD=$(gcc -print-file-name=libtsan.so)" build-tsan || rc=1
    reports=$(sanitizer_reports build-tsan)
    SUMMARY="$(grep -ho "[0-9]* threads x [0-9]* iterations x [0-9]* ops" "$logs/tsan.log" | head -1), $(grep -ho "[0-9]* results, all bitwise equal" "$logs/tsan.log" | head -1) to the single-threaded ones; whole suite $(meson_counts build-tsan) under TSan; $reports reports"
    [ $rc -eq 0 ] && [ "$reports" -eq 0 ]
}

# ---- 7. determinism, run after run ------------------------------------------------------
determinism() {
    local d1 d2
    build-vg/tests/test_determinism >"$logs/determinism-1.txt" 2>&1 || { cat "$logs/determinism-1.txt"; return 1; }
    build-vg/tests/test_determinism >"$logs/determinism-2.txt" 2>&1 || { cat "$logs/determinism-2.txt"; return 1; }
    d1=$(grep -h "determinism digest" "$logs/determinism-1.txt")
    d2=$(grep -h "determinism digest" "$logs/determinism-2.txt")
    echo "$d1"
    echo "$d2"
    SUMMARY="$(grep -h "^determinism: [0-9]* runs" "$logs/determinism-1.txt" | sed 's/^determinism: //' | sed 's/, all bitwise.*//'), bitwise equal; two processes: same digest ${d1##* }"
    [ -n "$d1" ] && [ "$d1" = "$d2" ]
}

# ---- 8. clang: the whole suite built with the other compiler -----------------------------
# The suite 'training' (the CLI's demo and attn train, 40 s) is left out:
# the C tests already exercise clang's build of every training call. The
# suite 'mpi' too (its data-parallel training is 15 s): clang still compiles
# libattn-mpi, its tests and example (-Dmpi is auto).
clang_suite() {
    CC=clang CXX=clang++ setup build-clang || return 1
    meson test -C build-clang --print-errorlogs --no-suite training --no-suite browser \
        --no-suite mpi
    local rc=$?
    SUMMARY="$(meson_counts build-clang) tests passed with libattn built by clang"
    [ $rc -eq 0 ]
}

# ---- 9. ABI: abidiff against the committed baseline --------------------------------------
abi() {
    local lib rc
    lib=$(readlink -f build-vg/src/libattn.so)
    abidiff abi/libattn.so.1.abi "$lib" --hd2 include --hd2 build-vg/include \
        --drop-private-types --no-corpus-path >"$logs/abidiff.txt" 2>&1
    rc=$?
    cat "$logs/abidiff.txt"
    local bad added
    bad=$(grep -oE "[0-9]+ (Removed|Changed)" "$logs/abidiff.txt" | awk '$1 > 0' | wc -l)
    added=$(grep -oE "[0-9]+ Added function" "$logs/abidiff.txt" | head -1 | awk '{print $1 + 0}')
    local names
    names=$(grep -oE "\[A\] 'function [^(]*" "$logs/abidiff.txt" | awk '{print $NF}' | paste -sd, -)
    SUMMARY="$(basename "$lib") vs abi/libattn.so.1.abi: abidiff exit $rc, ${added:-0} functions added${names:+ ($names)}, $bad kinds of removed or changed entities"
    [ $((rc & 11)) -eq 0 ] && [ "$bad" -eq 0 ]
}

# ---- 10. fuzzing -------------------------------------------------------------------------
fuzz_build() {
    sh fuzz/build.sh build-fuzz
}
# fuzz_run TARGET SECONDS: on a scratch copy of the committed corpus.
fuzz_run() {
    local t=$1 secs=$2 work="$root/build-fuzz/corpus-$1"
    rm -rf "$work" "$root/build-fuzz/artifacts-$t"
    mkdir -p "$work" "$root/build-fuzz/artifacts-$t"
    OPENBLAS_NUM_THREADS=1 ASAN_OPTIONS="detect_leaks=1:halt_on_error=1" \
        "build-fuzz/fuzz_$t" -max_total_time="$secs" -timeout=30 -rss_limit_mb=4096 \
        -print_final_stats=1 -artifact_prefix="$root/build-fuzz/artifacts-$t/" \
        "$work" "fuzz/corpus/$t"
    local rc=$?
    local done execs
    done=$(grep -h "DONE" "$logs/fuzz-$t.log" | tail -1 | grep -oE "cov: [0-9]+ ft: [0-9]+")
    execs=$(grep -h "average_exec_per_sec" "$logs/fuzz-$t.log" | grep -oE "[0-9]+$")
    local runs
    runs=$(grep -h "number_of_executed_units" "$logs/fuzz-$t.log" | grep -oE "[0-9]+$")
    if [ $rc -ne 0 ]; then
        SUMMARY="failed after ${runs:-?} executions: $(grep -hE "runtime error|ERROR: [A-Za-z]+Sanitizer|^fuzz_$t:|deadly signal|timeout" \
            "$logs/fuzz-$t.log" | head -1); the input is in build-fuzz/artifacts-$t/"
        return 1
    fi
    SUMMARY="$runs executions in ${secs} s ($execs/s), $done, corpus $(ls "fuzz/corpus/$t" | wc -l) committed + $(ls "$work" | wc -l) new, no crash"
}
fuzz_api() { fuzz_run api "$fuzz_seconds"; }
fuzz_npy() { fuzz_run npy "$fuzz_npy_seconds"; }

echo "== reliability checks (docs/reliability.md)"
check asan asan
check alloc-failure alloc_failure
check size-overflow size_overflow
check numeric-edges numeric_edges
check valgrind valgrind_suite
check tsan tsan
check determinism determinism
check clang clang_suite
check abi abi
if [ -n "${RELIABILITY_CHECKS:-}" ] && [[ " $RELIABILITY_CHECKS " != *" fuzz-"* ]]; then
    :
elif fuzz_build >"$logs/fuzz-build.log" 2>&1; then
    check fuzz-api fuzz_api
    check fuzz-npy fuzz_npy
else
    tail -n 40 "$logs/fuzz-build.log"
    echo "fuzz: FAILED: fuzz/build.sh"
    failed=$((failed + 2))
fi
echo "reliability: total time $(($(date +%s) - t_start)) s"
echo "reliability: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
