#!/usr/bin/env bash
# CI for libattn's ecosystem (issue 7): the C++ wrapper, the Rust crate, the
# Python module, the HTML API reference and the Debian packages, each built
# and tested against an installed libattn. .ci/run calls it after the main
# build, from the repository root; it also runs alone (as root, on Debian 12):
#     bash .ci/ecosystem.sh
#
# One line per step, then "ecosystem: N passed, M failed"; the exit status is
# non-zero if any step failed. A failed step prints the end of its log.
# Everything is built in a temporary folder, except that the Debian packages
# are installed on the machine to be tested, and purged again at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C.UTF-8

tmp=$(mktemp -d)
prefix=$tmp/prefix
cleanup() {
    if [ -e "$tmp/debs-installed" ]; then
        apt-get purge -y -qq libattn1 libattn-dev attn-tools python3-attn >/dev/null 2>&1 ||
            true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

passed=0
failed=0
declare -A ok=()

# step NAME NEEDED-STEP|- FUNCTION: runs FUNCTION in a subshell with `set -e`
# and its output in a log, prints one line, and counts the step as failed
# without running it when the step it needs failed.
step() {
    local name=$1 needs=$2 fn=$3 log="$tmp/log.$3" start=$SECONDS detail="" rc
    if [ "$needs" != - ] && [ -z "${ok[$needs]:-}" ]; then
        echo "ecosystem: $name: FAILED (not run: needs $needs)"
        failed=$((failed + 1))
        return
    fi
    # Not in an `if`: there, bash would ignore set -e inside the function.
    (set -e; "$fn") >"$log" 2>&1
    rc=$?
    if [ "$rc" = 0 ]; then
        [ -s "$tmp/detail" ] && detail=", $(cat "$tmp/detail")"
        echo "ecosystem: $name: ok ($((SECONDS - start)) s$detail)"
        ok[$fn]=1
        passed=$((passed + 1))
    else
        echo "ecosystem: $name: FAILED ($((SECONDS - start)) s); end of its log:"
        tail -n 40 "$log" | sed 's/^/    /'
        failed=$((failed + 1))
    fi
    rm -f "$tmp/detail"
}
say() { echo "$*" >"$tmp/detail"; }

# ---- the steps ----------------------------------------------------------------

deps() {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends \
        meson ninja-build pkg-config gcc g++ libc6-dev python3 python3-numpy \
        libopenblas-dev libcmocka-dev libjson-c-dev \
        doxygen debhelper dpkg-dev fakeroot lintian cmake python3-venv dh-python
    # The machine image has rustup's cargo in ~/.cargo/bin; else Debian's.
    if ! command -v cargo >/dev/null && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
        export PATH="${HOME:-/root}/.cargo/bin:$PATH"
    fi
    if ! command -v cargo >/dev/null; then
        apt-get install -y -qq --no-install-recommends cargo
    fi
    cargo --version
}

install_prefix() {
    meson setup "$tmp/build-install" --prefix="$prefix" --libdir=lib -Dtests=false \
        -Dcmake_package=enabled
    meson install -C "$tmp/build-install" --quiet
    test -f "$prefix/include/attn.hpp"
    test -f "$prefix/lib/cmake/attn/attnConfig.cmake"
    test -f "$prefix/lib/cmake/attn/attnConfigVersion.cmake"
    PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs attn
    say "prefix $prefix"
}

with_prefix() { env PKG_CONFIG_PATH="$prefix/lib/pkgconfig" "$@"; }

cxx_example() {
    # shellcheck disable=SC2046
    c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror examples/cpp/wrapper_example.cpp \
        $(with_prefix pkg-config --cflags --libs attn) -Wl,-rpath,"$prefix/lib" \
        -o "$tmp/wrapper_example"
    "$tmp/wrapper_example" | tee "$tmp/cxx.txt"
    grep -q '^   0.5379 -0.0265$' "$tmp/cxx.txt"
    grep -q '^  0.1303 0.4630 0.4067$' "$tmp/cxx.txt"
    grep -q '^Padded means: 0.5000 5.5000$' "$tmp/cxx.txt"
    grep -q 'attn::error (status 3): attn::sdpa::forward: q has 5 elements' "$tmp/cxx.txt"
}

cxx_wrapper_test() {
    # tests/test_cxx_wrapper.cpp and its 1.1 part against the installed
    # attn.hpp (meson test also runs them in-tree).
    cc -std=c11 -c tests/test_util.c -I"$prefix/include" -o "$tmp/test_util.o"
    cc -std=c11 -c tests/reliability_util.c -I"$prefix/include" -o "$tmp/reliability_util.o"
    local t
    for t in test_cxx_wrapper test_cxx_wrapper_1_1; do
        # shellcheck disable=SC2046
        c++ -std=c++17 -Wall -Wextra -Wpedantic -Werror "tests/$t.cpp" "$tmp/test_util.o" \
            "$tmp/reliability_util.o" -Itests \
            $(with_prefix pkg-config --cflags --libs attn cmocka) -lm \
            -Wl,-rpath,"$prefix/lib" -o "$tmp/$t"
        "$tmp/$t" 2>&1 | tee -a "$tmp/cxxtest.txt"
    done
    say "$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\./\1/p' "$tmp/cxxtest.txt" |
        awk '{n += $1} END {print n}') tests passed"
}

rust_crates() {
    # rust/: the Cargo workspace of attn-sys (the raw declarations, linked
    # with pkg-config) and attn (the safe API), built in the tree against the
    # prefix. --locked keeps the committed Cargo.lock as it is; the target
    # folder is outside the tree. Zero warnings, in the code and in the docs.
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig" CARGO_TARGET_DIR="$tmp/rust-target"
    export RUSTFLAGS="-D warnings" RUSTDOCFLAGS="-D warnings"
    cd rust
    cargo --version
    cargo build --offline --locked --workspace --all-targets
    cargo test --offline --locked --workspace 2>&1 | tee "$tmp/cargo.txt"
    cargo doc --offline --locked --workspace --no-deps
    local extra=""
    if cargo clippy --version >/dev/null 2>&1; then
        cargo clippy --offline --locked --workspace --all-targets
        extra=", clippy clean"
    fi
    cargo run --offline --locked --quiet --example uva | tee "$tmp/uva.txt"
    grep -q '^   0.5379 -0.0265$' "$tmp/uva.txt"
    # Each example checks itself (exit status 1: the NW loss did not fall,
    # or the cached decoding is more than 1e-5 from the full forward).
    cargo run --offline --locked --quiet --example train_nw | tee "$tmp/train_nw.txt"
    cargo run --offline --locked --quiet --example decode | tee "$tmp/decode.txt"
    local tests nw diff
    tests=$(awk '/^test result:/ {n += $4} END {print n}' "$tmp/cargo.txt")
    nw=$(awk -F'[ ,]+' '/^epoch / {if (!first) first = $4; last = $4}
        /^learned w/ {w = $4} END {print "loss " first " -> " last ", w " w}' "$tmp/train_nw.txt")
    diff=$(awk '/^max difference/ {print $3}' "$tmp/decode.txt")
    say "$tests tests, docs$extra; train_nw $nw; decode max |diff| $diff"
}

cmake_consumer() {
    # examples/cmake: find_package(attn 1.1 REQUIRED) and attn::attn, for C
    # and C++, from the installed attnConfig.cmake.
    cmake -S examples/cmake -B "$tmp/cmake" -DCMAKE_PREFIX_PATH="$prefix"
    cmake --build "$tmp/cmake"
    "$tmp/cmake/attn_cmake_example" | tee "$tmp/cmake.txt"
    "$tmp/cmake/attn_cmake_example_c" | tee -a "$tmp/cmake.txt"
    test "$(grep -c '^   0.5379 -0.0265$' "$tmp/cmake.txt")" = 2
    # attnConfigVersion.cmake (SameMajorVersion): 1.0 and this version are
    # found, a newer minor or another major are not.
    local want
    mkdir -p "$tmp/cmake-version"
    for want in 1.0 1.1 1.99:no 2.0:no 0.9:no; do
        printf 'cmake_minimum_required(VERSION 3.13)\nproject(v NONE)\n%s\n' \
            "find_package(attn ${want%:no} REQUIRED)" >"$tmp/cmake-version/CMakeLists.txt"
        if cmake -S "$tmp/cmake-version" -B "$tmp/cmake-version/b-$want" \
            -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/cmake-version/$want.log" 2>&1; then
            [ "$want" = "${want%:no}" ] ||
                { echo "find_package(attn ${want%:no}) succeeded"; false; }
        else
            [ "$want" != "${want%:no}" ] || { cat "$tmp/cmake-version/$want.log"; false; }
            # Refused for its version, not for another reason.
            grep -q "requested version \"${want%:no}\"" \
                "$tmp/cmake-version/$want.log" || { cat "$tmp/cmake-version/$want.log"; false; }
        fi
    done
    say "cmake $(cmake --version | head -1 | awk '{print $3}'), C and C++;" \
        "1.0 and 1.1 found, 1.99, 2.0, 0.9 refused"
}

python_module() {
    # The module finds the library by its soname, libattn.so.1.
    LD_LIBRARY_PATH="$prefix/lib" /usr/bin/python3 tests/test_python.py 2>&1 | tee "$tmp/py.txt"
    say "$(grep -o 'Ran [0-9]* tests' "$tmp/py.txt")"
}

python_pip() {
    # python/ installed by pip into a virtual environment, offline: no index
    # (its build backend, python/attn_build.py, needs only the standard
    # library) and Debian's NumPy through --system-site-packages. Then
    # tests/test_python.py against that installed module (ATTN_TEST_MODULE=
    # installed refuses the tree's copy) and the prefix's libattn.so.1.
    /usr/bin/python3 -m venv --system-site-packages "$tmp/venv"
    "$tmp/venv/bin/pip" install --no-index --no-cache-dir "$root/python"
    "$tmp/venv/bin/pip" show attn
    # python/attn_build.py repeats the project's version: they must agree.
    # (pip's output is read whole: grep -q would end the pipe early, and
    # pipefail would count pip's SIGPIPE as a failure.)
    local version shown
    version=$(sed -n "s/^  version : '\([0-9.]*\)',$/\1/p" "$root/meson.build")
    shown=$("$tmp/venv/bin/pip" show attn)
    grep -qx "Version: $version" <<<"$shown" ||
        { echo "python/attn_build.py's version is not meson.build's ($version)"; false; }
    (cd "$tmp" && ATTN_TEST_MODULE=installed LD_LIBRARY_PATH="$prefix/lib" \
        "$tmp/venv/bin/python" "$root/tests/test_python.py") 2>&1 | tee "$tmp/pip.txt"
    grep -q "^test_python: attn .* from $tmp/venv/lib/python3[.0-9]*/site-packages/attn.py$" \
        "$tmp/pip.txt"
    say "attn $("$tmp/venv/bin/pip" show attn | sed -n 's/^Version: //p') by pip into a venv," \
        "$(grep -o 'Ran [0-9]* tests' "$tmp/pip.txt") against it"
}

binding_coverage() {
    # The functions of libattn.so.1 each binding calls (.ci/binding_coverage.py):
    # all but attn_set_error, which is for C code that reports through
    # attn_last_error().
    python3 .ci/binding_coverage.py | tee "$tmp/coverage.txt"
    say "$(sed 's/^\([^:]*\): \([0-9]*\/[0-9]*\) functions.*/\1 \2/' "$tmp/coverage.txt" |
        paste -sd, | sed 's/,/, /g')"
}

api_reference() {
    meson setup "$tmp/build-docs" -Dtests=false
    meson compile -C "$tmp/build-docs" docs
    local log="$tmp/build-docs/docs/doxygen-warnings.log"
    test -f "$tmp/build-docs/docs/html/index.html"
    test -f "$log"
    cat "$log"
    local n
    n=$(grep -c 'warning' "$log" || true)
    say "doxygen $(doxygen --version), $n warnings"
    [ "$n" = 0 ]
}

deb_build() {
    # dpkg-buildpackage writes into the parent folder: build in a copy.
    mkdir -p "$tmp/deb/attn"
    local f
    for f in * .ci; do
        case $f in build*) ;; *) cp -a "$f" "$tmp/deb/attn/" ;; esac
    done
    rm -rf "$tmp/deb/attn/rust/target"   # if cargo ran in the tree
    cd "$tmp/deb/attn"
    DEB_BUILD_OPTIONS=nocheck DEB_BUILD_PROFILES=nocheck dpkg-buildpackage -us -uc -b
    cd ..
    ls -l ./*.deb ./*.changes
    local d names=""
    for d in ./*.deb; do
        case $d in *-dbgsym_*) ;; *) names="$names ${d#./}" ;; esac
    done
    say "${names# }"
}

deb_install() {
    cd "$tmp/deb"
    touch "$tmp/debs-installed"   # purged again at exit
    apt-get install -y -qq ./libattn1_*.deb ./libattn-dev_*.deb ./attn-tools_*.deb \
        ./python3-attn_*.deb
    dpkg -s libattn1 libattn-dev attn-tools python3-attn | grep -E '^(Package|Version|Status)'
    # Built against the packages: pkg-config from /usr, the library from the
    # loader's default path (no rpath, no LD_LIBRARY_PATH).
    env -u PKG_CONFIG_PATH pkg-config --modversion attn
    # shellcheck disable=SC2046
    cc -std=c11 -Wall -Wextra -Werror "$root/examples/c/seed_example.c" \
        $(env -u PKG_CONFIG_PATH pkg-config --cflags --libs attn) -o "$tmp/seed_example_deb"
    "$tmp/seed_example_deb" | tee "$tmp/deb_c.txt"
    grep -q '0.5379, -0.0265' "$tmp/deb_c.txt"
    # shellcheck disable=SC2046
    c++ -std=c++17 -Wall -Wextra -Werror "$root/examples/cpp/wrapper_example.cpp" \
        $(env -u PKG_CONFIG_PATH pkg-config --cflags --libs attn) -o "$tmp/wrapper_deb"
    "$tmp/wrapper_deb" | grep -q '^   0.5379 -0.0265$'
    # The CMake package from /usr: found with no CMAKE_PREFIX_PATH.
    cmake -S "$root/examples/cmake" -B "$tmp/cmake-deb"
    cmake --build "$tmp/cmake-deb"
    "$tmp/cmake-deb/attn_cmake_example" | grep -q '^   0.5379 -0.0265$'
    # python3-attn: the module from /usr/lib/python3/dist-packages and the
    # library from the loader's default path, with no environment variable.
    (cd "$tmp" && env -u LD_LIBRARY_PATH -u ATTN_LIBRARY -u PYTHONPATH /usr/bin/python3 -c \
        "import attn; print('python:', attn.version(), attn.__file__)") | tee "$tmp/deb_py.txt"
    grep -q '^python: .* /usr/lib/python3/dist-packages/attn.py$' "$tmp/deb_py.txt"
    (cd "$tmp" && env -u LD_LIBRARY_PATH -u ATTN_LIBRARY -u PYTHONPATH ATTN_TEST_MODULE=installed \
        /usr/bin/python3 "$root/tests/test_python.py") 2>&1 | tail -3
    attn --help >/dev/null
    test -f /usr/share/man/man1/attn.1.gz
    ldd "$(command -v attn)" | grep 'libattn.so.1 => /lib\|libattn.so.1 => /usr/lib'
    say "seed_example.c, wrapper_example.cpp, examples/cmake, python3-attn" \
        "(test_python.py) and attn against /usr"
}

deb_lintian() {
    cd "$tmp/deb"
    local status=0 e w i
    lintian --fail-on error --display-info ./*.changes >"$tmp/lintian.txt" 2>&1 || status=$?
    cat "$tmp/lintian.txt"
    e=$(grep -c '^E: ' "$tmp/lintian.txt" || true)
    w=$(grep -c '^W: ' "$tmp/lintian.txt" || true)
    i=$(grep -c '^I: ' "$tmp/lintian.txt" || true)
    say "$e errors, $w warnings, $i infos: $(grep -E '^(E|W): ' "$tmp/lintian.txt" \
        | awk '{print $3}' | sort | uniq -c | awk '{print $2 " x" $1}' | tr '\n' ' ' | sed 's/ $//')"
    [ "$status" = 0 ] && [ "$e" = 0 ]
}

total=$SECONDS
step "dependencies (apt)" - deps
# deps may have put ~/.cargo/bin on PATH inside its own subshell: repeat here.
if ! command -v cargo >/dev/null && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
    export PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
step "install into a temporary prefix" deps install_prefix
step "C++ example (examples/cpp/wrapper_example.cpp, pkg-config)" install_prefix cxx_example
step "C++ wrapper tests (tests/test_cxx_wrapper*.cpp, installed attn.hpp)" install_prefix \
    cxx_wrapper_test
step "Rust crates (rust/: attn-sys and attn; tests, docs, examples)" install_prefix rust_crates
step "CMake consumer (examples/cmake: find_package(attn 1.1), attn::attn)" install_prefix \
    cmake_consumer
step "Python module (tests/test_python.py against NumPy)" install_prefix python_module
step "Python module by pip (venv, --no-index; tests/test_python.py)" install_prefix python_pip
step "Bindings' coverage of the C API (.ci/binding_coverage.py)" deps binding_coverage
step "API reference (meson compile docs, Doxygen warnings)" deps api_reference
step "Debian packages (dpkg-buildpackage -us -uc -b, nocheck)" deps deb_build
step "Debian packages installed, examples built with pkg-config" deb_build deb_install
step "lintian" deb_build deb_lintian
echo "ecosystem: took $((SECONDS - total)) s"
echo "ecosystem: $passed passed, $failed failed"
[ "$failed" = 0 ]
