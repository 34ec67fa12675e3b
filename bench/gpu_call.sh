#!/usr/bin/env bash
# The engine on a GPU, on a lent machine with no network (see llm_engine/README.md, "On a GPU").
# Prepare here, once: python bench/pack_mlx_cuda.py --sm 90 --out .gpu/site.tar.xz
# (.gpu/ is ignored via .git/info/exclude and carried with the call). Then, on the machine:
#     bash bench/gpu_call.sh [STAGE ...]     (results under $OUT, or bench/results/ without $OUT)
# Stages, each inside one 10-minute command (all four when none is named):
#   parity  tests/engine/test_parity.py on the GPU (MLX compiles kernels per shape on first use:
#           the first architecture alone took ~100 s on an H200)
#   paths   the four CUDA read paths compared on 4 layers
#   30b     Qwen3-30B-A3B whole (48 layers) with the fastest read path
#   235b    18 layers of Qwen3-235B-A22B's shapes (larger than the page cache it is left), cold
#   batch   Qwen3-30B-A3B whole, 4 sequences decoded together cold beside one sequence cold
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-bench/results}
WORK=${WORK:-/var/tmp/almanac-gpu}
STAGES=${*:-parity paths 30b 235b}
mkdir -p "$OUT" /tmp/site
if [ -f .gpu/site.tar.xz ] && [ ! -d /tmp/site/mlx ]; then
    tar xJf .gpu/site.tar.xz -C /tmp/site
fi
[ -d /tmp/site/mlx ] && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
python3 -c "import mlx.core as mx; assert mx.default_device().type == mx.gpu, 'MLX sees no GPU'" || exit 1

# The read path a stage uses: $ALMANAC_CUDA_READ when set, else the fastest warm decode of the
# "paths" stage, kept on the machine between calls.
fastest() {
    [ -n "${ALMANAC_CUDA_READ:-}" ] && { echo "$ALMANAC_CUDA_READ"; return; }
    python3 - "$WORK" <<'PY'
import json, sys
speed = {}
for path in ("host", "copy", "prefetch", "fault"):
    try:
        run = json.load(open(f"{sys.argv[1]}/read-path-{path}.json"))["rounds"][0]["almanac warm"]
        speed[path] = run["runs"]["1"]["decode_tok_s"]
    except (OSError, KeyError, ValueError):
        pass
print(max(speed, key=speed.get) if speed else "host")
PY
}

for stage in $STAGES; do
    case $stage in
    parity)
        timeout 540 python3 -m pytest -v -p no:cacheprovider tests/engine/test_parity.py \
            2>&1 | tee "$OUT/parity.log" | grep -E "PASSED|FAILED|Error|passed|failed"
        ;;
    paths)
        mkdir -p "$WORK"
        for path in host copy prefetch fault; do
            ALMANAC_CUDA_READ=$path timeout 100 python3 bench/engine_gpu.py --workdir "$WORK/l4" \
                --model qwen3-30b-a3b --layers 4 --prompts 1 --tokens 16 --rounds 1 \
                --configs resident,warm,cold --json "$WORK/read-path-$path.json" | tail -4
            cp "$WORK/read-path-$path.json" "$OUT/" 2>/dev/null
        done
        rm -rf "$WORK/l4"
        echo "fastest CUDA read path on 4 layers: $(fastest)"
        ;;
    30b)
        ALMANAC_CUDA_READ=$(fastest) timeout 570 python3 bench/engine_gpu.py --workdir "$WORK/30b" \
            --model qwen3-30b-a3b --prompts 1,1500 --tokens ${TOKENS:-24} --rounds ${ROUNDS:-2} --cache-gb 8 \
            --json "$OUT/engine_gpu-qwen3-30b-a3b.json"
        rm -rf "$WORK/30b"
        ;;
    235b)
        # 1.36 GB of experts a layer; 18 layers (~25 GB) leave room on a 64 GB disk for the MLX
        # source during conversion. Cold is the case that matters: every expert is dropped from
        # the page cache after it is read, as for a model far larger than RAM.
        ALMANAC_CUDA_READ=$(fastest) timeout 570 python3 bench/engine_gpu.py --workdir "$WORK/235b" \
            --model qwen3-235b-a22b --layers 18 --prompts 1,1500 --tokens 16 --rounds 1 --cache-gb 8 \
            --json "$OUT/engine_gpu-qwen3-235b-a22b-18l.json" | tail -14
        rm -rf "$WORK/235b"
        ;;
    batch)
        ALMANAC_CUDA_READ=$(fastest) timeout 570 python3 bench/engine_gpu.py --workdir "$WORK/30b" \
            --model qwen3-30b-a3b --prompts 32 --tokens ${TOKENS:-24} --rounds ${ROUNDS:-1} \
            --configs resident,cold,batch4 --json "$OUT/engine_gpu-qwen3-30b-a3b-batch.json" | tail -8
        rm -rf "$WORK/30b"
        ;;
    *) echo "unknown stage $stage (parity, paths, 30b, 235b, batch)"; exit 2 ;;
    esac
done
