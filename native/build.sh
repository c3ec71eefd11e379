#!/usr/bin/env bash
# Builds llama.cpp's shared libraries and tools at one pinned version, cached.
#
#   native/build.sh [--batch-invariant | --stock] [--cuda] [--cuda-arch ARCHS] [--libs-only] [--force]
#
# Default: llama.cpp's own kernels (its CMake defaults: GGML_NATIVE, llamafile's
# tinyBLAS), less any instruction set -march=native enables that this machine
# cannot execute (native/isa_probe.c decides, one line of output says what).
# --batch-invariant: also GGML_LLAMAFILE=OFF, so that a sequence's logits are
#   bit-identical whether it decodes alone or batched (slower prompts).
# --stock: the peer for benchmarks, built as users build llama.cpp (cmake with
#   its defaults and -DGGML_RPC=ON, plus only what this machine cannot run or
#   fetch); cached apart, linked as $SHIMMY_PY_CACHE/stock; the package never loads it.
#
# Source: the sdist of llama-cpp-python at the version pinned in
# shimmy_py/native/pin.py, from the package index, checked against its sha256, whose vendor/llama.cpp tree is built; or
# LLAMA_CPP_DIR=/path/to/llama.cpp to build an existing checkout instead.
# Output: $SHIMMY_PY_CACHE/<key>/install/{lib,bin,include,share}, and the symlink
# $SHIMMY_PY_CACHE/current pointing at it, which shimmy_py finds by itself.
# Stdout is that install path and nothing else; everything else goes to stderr.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The pin lives in one place, shimmy_py/native/pin.py, which the binding reads too.
PIN_FILE="$HERE/../shimmy_py/native/pin.py"
pin() { sed -n "s/^$1 = \"\(.*\)\"$/\1/p" "$PIN_FILE"; }
PIN_VERSION="$(pin LLAMA_CPP_PYTHON_VERSION)"
PIN_SHA256="$(pin SDIST_SHA256)"
[[ -n "$PIN_VERSION" && -n "$PIN_SHA256" ]] || { echo "native/build.sh: error: cannot read the pin from $PIN_FILE" >&2; exit 1; }

CACHE="${SHIMMY_PY_CACHE:-$HOME/.cache/shimmy_py}"
CUDA=0
CUDA_ARCH="${CMAKE_CUDA_ARCHITECTURES:-native}"
FORCE=0
LIBS_ONLY=0
MODE=default
JOBS="${JOBS:-$(nproc)}"

die() { echo "native/build.sh: error: $*" >&2; exit 1; }
say() { echo "native/build.sh: $*" >&2; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --cuda) CUDA=1 ;;
        --cuda-arch) shift; [[ $# -gt 0 ]] || die "--cuda-arch needs a value"; CUDA_ARCH="$1"; CUDA=1 ;;
        --force) FORCE=1 ;;
        --batch-invariant) MODE=batch-invariant ;;
        --stock) MODE=stock ;;
        --libs-only) LIBS_ONLY=1 ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) die "unknown option '$1' (try --help)" ;;
    esac
    shift
done

for tool in cmake ninja cc c++; do
    command -v "$tool" >/dev/null || die "'$tool' not found; install it (Debian: apt-get install cmake ninja-build build-essential)"
done

# --- source --------------------------------------------------------------------
if [[ -n "${LLAMA_CPP_DIR:-}" ]]; then
    SRC="$(cd "$LLAMA_CPP_DIR" && pwd)" || die "LLAMA_CPP_DIR=$LLAMA_CPP_DIR does not exist"
    [[ -f "$SRC/include/llama.h" ]] || die "LLAMA_CPP_DIR=$SRC has no include/llama.h"
    REV="$(git -C "$SRC" rev-parse --short HEAD 2>/dev/null || echo unversioned)"
    SOURCE_ID="checkout:$SRC@$REV"
    KEY_SRC="dir-$(echo "$SRC@$REV" | sha256sum | cut -c1-12)"
else
    SOURCE_ID="llama-cpp-python==$PIN_VERSION"
    KEY_SRC="lcp-$PIN_VERSION"
    SDIST_DIR="$CACHE/sdist"
    SDIST="$SDIST_DIR/llama_cpp_python-$PIN_VERSION.tar.gz"
    SRC="$CACHE/src/llama_cpp_python-$PIN_VERSION/vendor/llama.cpp"
    if [[ ! -f "$SRC/include/llama.h" ]]; then
        mkdir -p "$SDIST_DIR" "$CACHE/src"
        if [[ ! -f "$SDIST" ]]; then
            say "downloading the llama-cpp-python==$PIN_VERSION sdist from the package index"
            python3 -m pip download --quiet --no-deps --no-binary :all: \
                "llama-cpp-python==$PIN_VERSION" -d "$SDIST_DIR" \
                || die "pip download of llama-cpp-python==$PIN_VERSION failed"
        fi
        GOT="$(sha256sum "$SDIST" | cut -d' ' -f1)"
        if [[ "$GOT" != "$PIN_SHA256" ]]; then
            rm -f "$SDIST"
            die "sha256 mismatch for $SDIST: expected $PIN_SHA256, got $GOT (file removed)"
        fi
        say "unpacking $SDIST"
        tar -xzf "$SDIST" -C "$CACHE/src"
    fi
fi

# --- what this machine can execute ------------------------------------------------
# ggml builds with -march=native: every extension CPUID advertises. Each one is
# executed once in a child process; one that faults is turned off in the build.
ISA_OFF_NAMES=()
ISA_OFF_FLAGS=()
AMX_WHY=""
isa_decision() {
    local probe="$CACHE/isa_probe" amx_probe="$CACHE/amx_probe"
    mkdir -p "$CACHE"
    cc -O1 -march=native "$HERE/isa_probe.c" -o "$probe" 2>"$CACHE/isa_probe.log" \
        || { say "cannot compile native/isa_probe.c (see $CACHE/isa_probe.log): no extension probed"; return; }
    local name flags runs=()
    while read -r name flags; do
        if { ("$probe" "$name") >/dev/null 2>&1; } 2>/dev/null; then
            runs+=("$name")
        else
            ISA_OFF_NAMES+=("$name")
            read -ra f <<<"$flags"
            ISA_OFF_FLAGS+=("${f[@]}")
        fi
    done < <("$probe" --list)
    # AMX: ggml's own tile setup, compiled as ggml-cpu is (C++, -O3)
    local macros
    macros="$(c++ -march=native -dM -E -x c++ /dev/null 2>/dev/null || true)"
    if [[ "$macros" == *__AMX_TILE__* ]]; then
        if c++ -O3 -march=native "$HERE/amx_probe.cpp" -o "$amx_probe" 2>>"$CACHE/isa_probe.log" \
                && { ("$amx_probe" ggml) >/dev/null 2>&1; } 2>/dev/null; then
            runs+=(amx)
        else
            ISA_OFF_NAMES+=(amx)
            ISA_OFF_FLAGS+=(-mno-amx-tile -mno-amx-int8 -mno-amx-bf16)
            if [[ -x "$amx_probe" ]] && { ("$amx_probe" plain) >/dev/null 2>&1; } 2>/dev/null; then
                AMX_WHY="this machine runs AMX, but ggml's tile setup as $(c++ --version | head -1) builds it faults (SIGILL; native/amx_probe.cpp says why)"
            else
                AMX_WHY="this machine advertises AMX but cannot execute it"
            fi
        fi
    fi
    if [[ ${#ISA_OFF_NAMES[@]} -eq 0 ]]; then
        say "this CPU executes every extension -march=native enables (${runs[*]:-none}): nothing turned off"
    else
        say "executes ${runs[*]:-nothing}; turned off: ${ISA_OFF_NAMES[*]} (${ISA_OFF_FLAGS[*]})${AMX_WHY:+: $AMX_WHY}"
    fi
}
isa_decision

# --- options and cache key -----------------------------------------------------
if [[ $MODE == stock ]]; then
    # What a user types (cmake -B build -DGGML_RPC=ON), with the generator and
    # build type llama.cpp picks itself, plus only what this machine cannot do:
    # run the extensions above, or download the prebuilt web UI (no network).
    CMAKE_ARGS=(-DGGML_RPC=ON -DLLAMA_USE_PREBUILT_UI=OFF)
else
    CMAKE_ARGS=(
        -G Ninja
        -DCMAKE_BUILD_TYPE=Release
        -DBUILD_SHARED_LIBS=ON
        -DGGML_RPC=ON
        -DGGML_NATIVE=ON
    )
    if [[ $MODE == batch-invariant ]]; then
        # llamafile's tinyBLAS serves matrix products of 2+ columns and ggml's own
        # kernels those of one, so a sequence's logits would depend on how many
        # others share its batch. Off, every output element is the same dot product
        # whatever the batch: a greedy request gives the same text alone or batched.
        CMAKE_ARGS+=(-DGGML_LLAMAFILE=OFF)
    fi
fi
if [[ ${#ISA_OFF_FLAGS[@]} -gt 0 ]]; then
    CMAKE_ARGS+=("-DCMAKE_C_FLAGS=${ISA_OFF_FLAGS[*]}" "-DCMAKE_CXX_FLAGS=${ISA_OFF_FLAGS[*]}")
fi
if [[ $MODE != stock ]]; then
    CMAKE_ARGS+=(
        -DLLAMA_BUILD_TESTS=OFF
        -DLLAMA_BUILD_EXAMPLES=OFF
        -DLLAMA_BUILD_TOOLS=ON
        -DLLAMA_BUILD_SERVER=ON
        -DLLAMA_BUILD_UI=OFF
        -DLLAMA_USE_PREBUILT_UI=OFF
        -DLLAMA_OPENSSL=OFF
        -DCMAKE_INSTALL_RPATH='$ORIGIN/../lib'
        -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON
    )
fi
if [[ $CUDA == 1 ]]; then
    CMAKE_ARGS+=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCH")
fi
TOOLS=(llama-completion llama-bench llama-server ggml-rpc-server llama-quantize llama-perplexity)
[[ $LIBS_ONLY == 1 ]] && TOOLS=()
TARGETS=(llama ggml ggml-rpc "${TOOLS[@]}")
OPTS_ID="cuda=$CUDA arch=$CUDA_ARCH cpu=$(grep -m1 -o -w 'avx512f\|avx2' /proc/cpuinfo | tail -1 || echo generic)"
[[ $LIBS_ONLY == 1 ]] && OPTS_ID+=" libs-only"
[[ $MODE != default ]] && OPTS_ID+=" $MODE"
KEY="$KEY_SRC-$(echo "${CMAKE_ARGS[*]} $OPTS_ID" | sha256sum | cut -c1-10)"
OUT="$CACHE/$KEY"
INSTALL="$OUT/install"

# The struct layout probe: the binding checks its ctypes structs against its
# output. It runs on every call (it takes a second), so that a changed
# native/probe.c never meets a stale layout.json.
probe() {
    cc -std=c11 -I"$INSTALL/include" "$HERE/probe.c" -o "$OUT/probe" \
        || die "struct probe failed to compile against $INSTALL/include"
    "$OUT/probe" >"$INSTALL/lib/layout.json.tmp" || die "struct probe failed to run"
    mv "$INSTALL/lib/layout.json.tmp" "$INSTALL/lib/layout.json"
}

# $SHIMMY_PY_CACHE/MODE names the last build of each mode (benchmarks find
# the peer and the batch-invariant build there); `current`, what the package
# loads, follows the default and batch-invariant builds, never the stock one.
link() {
    ln -sfn "$INSTALL" "$CACHE/$MODE"
    [[ $MODE == stock ]] || ln -sfn "$INSTALL" "$CACHE/current"
}

# The tokenizers and real chat templates of the synthetic models
# (shimmy_py/gguf_io/synth.py, families.py), llama.cpp's DeepSeek tokenizer test
# vectors and its JSON-schema-to-grammar test cases (tests/test_schema_grammar.py).
share_vocabularies() {
    mkdir -p "$INSTALL/share/templates"
    local v
    for v in deepseek-llm qwen2 llama-spm llama-bpe; do
        cp "$SRC/models/ggml-vocab-$v.gguf" "$INSTALL/share/"
    done
    for v in openai-gpt-oss-120b GLM-4.6 deepseek-ai-DeepSeek-V3.1 Qwen-Qwen3-0.6B; do
        cp "$SRC/models/templates/$v.jinja" "$INSTALL/share/templates/"
    done
    cp "$SRC/models/ggml-vocab-deepseek-llm.gguf.inp" "$SRC/models/ggml-vocab-deepseek-llm.gguf.out" "$INSTALL/share/"
    cp "$SRC/tests/test-json-schema-to-grammar.cpp" "$INSTALL/share/"
}

# -ot patterns are checked as llama.cpp compiles them (std::regex), by a tiny
# program built with the same compiler: shimmy_py.native.install.std_regex_errors.
regex_checker() {
    [[ -x "$INSTALL/bin/regex_check" && "$INSTALL/bin/regex_check" -nt "$HERE/regex_check.cpp" ]] && return
    c++ -O2 -std=c++17 "$HERE/regex_check.cpp" -o "$INSTALL/bin/regex_check" \
        || die "native/regex_check.cpp failed to compile"
}

# The graph tap answers llama.cpp's per-node asks in C (shimmy_py/native/tap.py),
# compiled against this build's ggml.h.
tap_filter() {
    [[ -f "$INSTALL/lib/libshimmy_tap.so" && "$INSTALL/lib/libshimmy_tap.so" -nt "$HERE/tap_filter.c" ]] && return
    cc -O2 -std=c11 -shared -fPIC -I"$INSTALL/include" "$HERE/tap_filter.c" -o "$INSTALL/lib/libshimmy_tap.so" \
        || die "native/tap_filter.c failed to compile"
}

# What the package and the tests read about this build (install.build_info()).
write_version() {
    cat >"$INSTALL/lib/VERSION" <<INFO
source=$SOURCE_ID
options=$OPTS_ID
mode=$MODE
isa_off=${ISA_OFF_NAMES[*]}
cmake_args=${CMAKE_ARGS[*]}
INFO
}

# A tool added to TOOLS after a build was cached: built in the cached tree
# (the options, and so the key, are unchanged), then installed beside the others.
missing_tools() {
    local exe missing=()
    for exe in "${TOOLS[@]}"; do
        [[ -x "$INSTALL/bin/$exe" ]] || missing+=("$exe")
    done
    [[ ${#missing[@]} -eq 0 ]] && return
    say "building ${missing[*]} in the cached tree $OUT/build"
    cmake --build "$OUT/build" -j "$JOBS" --target "${missing[@]}" >&2 || die "cmake build of ${missing[*]} failed"
    find "$OUT/build/bin" -maxdepth 1 -name '*.so*' -exec cp -a {} "$INSTALL/lib/" \;
    for exe in "${missing[@]}"; do
        cp -a "$OUT/build/bin/$exe" "$INSTALL/bin/"
    done
}

if [[ $FORCE == 0 && -f "$INSTALL/BUILD_OK" ]]; then
    missing_tools
    [[ $MODE == stock ]] || { probe; regex_checker; tap_filter; share_vocabularies; }
    write_version
    link
    say "cached build: $INSTALL"
    echo "$INSTALL"
    exit 0
fi

# --- build ---------------------------------------------------------------------
say "building $SOURCE_ID ($OPTS_ID) in $OUT/build with $JOBS jobs"
rm -rf "$INSTALL"
mkdir -p "$OUT"
cmake -S "$SRC" -B "$OUT/build" "${CMAKE_ARGS[@]}" >"$OUT.cmake.log" 2>&1 \
    || { tail -40 "$OUT.cmake.log" >&2; die "cmake configure failed (log: $OUT.cmake.log)"; }
# The build's progress goes to stderr: stdout carries only the install path,
# which callers read with $(native/build.sh) (make test-invariant does).
cmake --build "$OUT/build" -j "$JOBS" --target "${TARGETS[@]}" >&2 \
    || die "cmake build failed"

mkdir -p "$INSTALL/lib" "$INSTALL/bin" "$INSTALL/include"
find "$OUT/build/bin" -maxdepth 1 -name '*.so*' -exec cp -a {} "$INSTALL/lib/" \;
for exe in "${TOOLS[@]}"; do
    cp -a "$OUT/build/bin/$exe" "$INSTALL/bin/"
done
cp "$SRC/include/llama.h" "$SRC"/ggml/include/*.h "$INSTALL/include/"
share_vocabularies

if [[ $MODE != stock ]]; then
    say "compiling the struct layout probe"
    probe
    regex_checker
    tap_filter
fi
write_version
touch "$INSTALL/BUILD_OK"
link
say "done: $INSTALL"
echo "$INSTALL"
