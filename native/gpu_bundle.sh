#!/usr/bin/env bash
# Packs what native/gpu_check.sh needs on a GPU machine that cannot reach the
# package index, into .gpu/ (ignored by git), small enough to carry there:
#   .gpu/llama.cpp.tar.xz  the pinned llama.cpp tree (vendor/llama.cpp of the sdist
#                          that native/build.sh unpacked), less docs/ and the test
#                          models, keeping the DeepSeek vocabulary the synthetic models use
#   .gpu/wheels/           wheels of the Python packages that machine lacks (gguf)
#
#   native/build.sh && native/gpu_bundle.sh
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${SHIMMY_PY_CACHE:-$HOME/.cache/shimmy_py}"
VERSION="$(sed -n 's/^LLAMA_CPP_PYTHON_VERSION = "\(.*\)"$/\1/p' shimmy_py/native/pin.py)"
PARENT="$CACHE/src/llama_cpp_python-$VERSION/vendor"
VOCAB="llama.cpp/models/ggml-vocab-deepseek-llm.gguf"   # and its tokenizer test vectors (.inp, .out)
[[ -f "$PARENT/$VOCAB" ]] || { echo "gpu_bundle: no $PARENT/llama.cpp: run native/build.sh first" >&2; exit 1; }

rm -rf .gpu
mkdir -p .gpu/wheels
tar -C "$PARENT" -cf .gpu/llama.cpp.tar --exclude=llama.cpp/docs --exclude='llama.cpp/models/*' llama.cpp
tar -C "$PARENT" -rf .gpu/llama.cpp.tar "$VOCAB" "$VOCAB.inp" "$VOCAB.out"
xz -T0 -6 .gpu/llama.cpp.tar

GGUF="$(python3 -c 'import importlib.metadata as m; print(m.version("gguf"))')"
python3 -m pip download --quiet --no-deps --only-binary=:all: -d .gpu/wheels "gguf==$GGUF"
du -sh .gpu .gpu/* >&2
