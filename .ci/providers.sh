#!/usr/bin/env bash
# CI: the other GEMM providers (meson -Dblas=, docs/threading.md "Which GEMM
# provider"). Installs Debian's BLIS and oneDNN, builds libattn with each in
# its own build directory and runs the test suite but the suite 'training';
# one summary line per provider. OpenBLAS, the default, is .ci/run's own build.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends libblis-dev libdnnl-dev >/dev/null

status=0
summaries=()
for provider in blis onednn; do
    dir=build-c-ci-$provider
    echo "== -Dblas=$provider"
    rm -rf "$dir"
    meson setup "$dir" -Dblas="$provider" -Dtests=true >/dev/null
    meson compile -C "$dir" >/dev/null
    # The suite 'training' (the demo, attn train: two minutes on the slower
    # providers) trains through the calls the other tests check here; the
    # suite 'browser' tests the explorer's script, which no provider changes;
    # the suite 'mpi' (libattn-mpi) calls the SDPA that the other tests check.
    meson test -C "$dir" --print-errorlogs --quiet --no-suite training --no-suite browser \
        --no-suite mpi || status=1
    blas=$("$dir/tools/attn" info | sed -n 's/^blas: //p')
    summary=$(python3 - "$dir/meson-logs/testlog.json" <<'PY'
import json, sys
results = [json.loads(line)["result"] for line in open(sys.argv[1]) if line.strip()]
ok = sum(r == "OK" for r in results)
skipped = sum(r == "SKIP" for r in results)
print(f"{ok} passed, {len(results) - ok - skipped} failed, {skipped} skipped")
PY
)
    summaries+=("providers: $provider ($blas): $summary")
    [ "$status" -ne 0 ] || rm -rf "$dir"
done
printf '%s\n' "${summaries[@]}"
exit "$status"
