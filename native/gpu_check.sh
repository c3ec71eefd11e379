#!/usr/bin/env bash
# The GPU check: one prepared run for a machine with an NVIDIA GPU (sized for
# one H200 and 16 cores: about 10 minutes). CI never needs it.
#
#   native/gpu_check.sh [OUTDIR]       (CUDA_ARCH=90 by default: Hopper)
#
# A machine that cannot reach the package index takes what native/gpu_bundle.sh
# packs into .gpu/ (the llama.cpp source, the gguf wheel); carry .gpu there.
#
# 1. builds the CUDA libraries for that GPU only (no tools);
# 2. writes a DeepSeekMoE-16B-shaped synthetic model (32.8 GB F16, random weights);
# 3. records GPU memory (NVML, this process), tokens/s and time to first token
#    for the placements gpu, cpu-moe and fit, beside the model card's
#    30.1 GB / 26.8 tok/s / 426 ms and 2.3 GB / 6.5 tok/s / 1,643 ms.
# Its results go into docs/BENCHMARKS.md by hand, with the date and machine.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-${OUT:-$(mktemp -d)}}"
WORK="${WORK:-/tmp/shimmy_gpu_check}"
mkdir -p "$OUT" "$WORK"
log() { echo "gpu_check: $*" | tee -a "$OUT/gpu_check.log" >&2; }

command -v nvidia-smi >/dev/null || { log "no nvidia-smi: this is not a GPU machine"; exit 1; }
if [[ -f .gpu/llama.cpp.tar.xz && -z "${LLAMA_CPP_DIR:-}" ]]; then
    mkdir -p "$WORK/src" && tar -C "$WORK/src" -xJf .gpu/llama.cpp.tar.xz
    export LLAMA_CPP_DIR="$WORK/src/llama.cpp"
fi
if compgen -G ".gpu/wheels/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --target "$WORK/site" .gpu/wheels/*.whl
    export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.csv"

# The 32.8 GB model is written while CUDA compiles (about 100 MB/s from one
# core on a 2-core VM), when the vocabulary is at hand without the build.
MODEL="$WORK/deepseek-moe-16b-f16.gguf"
SYNTH_PID=""
synth() {
    local t0=$SECONDS
    python3 -m shimmy_py synth "$MODEL.part" --preset deepseek-moe-16b "$@" >>"$OUT/gpu_check.log" 2>&1 \
        && mv "$MODEL.part" "$MODEL" && log "synthetic model written in $((SECONDS - t0))s"
}
VOCAB="${LLAMA_CPP_DIR:-}/models/ggml-vocab-deepseek-llm.gguf"
if [[ ! -f "$MODEL" && -n "${LLAMA_CPP_DIR:-}" && -f "$VOCAB" ]]; then
    synth --vocab "$VOCAB" &
    SYNTH_PID=$!
fi

log "building the CUDA libraries (arch ${CUDA_ARCH:-90})"
SECONDS=0
native/build.sh --cuda --cuda-arch "${CUDA_ARCH:-90}" --libs-only 2>&1 | tail -5 | tee -a "$OUT/gpu_check.log"
log "build took ${SECONDS}s"

if [[ -n "$SYNTH_PID" ]]; then
    wait "$SYNTH_PID" || { log "writing the synthetic model failed (see gpu_check.log)"; exit 1; }
elif [[ ! -f "$MODEL" ]]; then
    synth || { log "writing the synthetic model failed (see gpu_check.log)"; exit 1; }
fi

python3 -m shimmy_py devices --json > "$OUT/devices.json"
SECONDS=0
python3 -m shimmy_py bench "$MODEL" --placements gpu,cpu-moe,fit=8GiB -p 512 -n 128 -r 2 \
    --threads "$(nproc)" --json > "$OUT/bench.json"
log "bench took ${SECONDS}s"
python3 - "$OUT/bench.json" <<'PY' | tee "$OUT/summary.md"
import json, sys
card = {"gpu": ("30.1 GB", 26.8, 426), "cpu-moe": ("2.3 GB", 6.5, 1643)}
print("| placement | VRAM (NVML) | decode tok/s | TTFT ms | model card (VRAM, tok/s, TTFT ms) |")
print("|---|---|---|---|---|")
for r in json.load(open(sys.argv[1])):
    vram = f"{r['vram_bytes'] / 1e9:.1f} GB" if r["vram_bytes"] is not None else "n/a"
    ref = card.get(r["placement"])
    ref = f"{ref[0]}, {ref[1]}, {ref[2]}" if ref else "-"
    print(f"| {r['placement']} | {vram} | {r['decode_tps']:.1f} | {r['ttft_s'] * 1000:.0f} | {ref} |")
PY
log "results in $OUT"
