#!/usr/bin/env bash
# The engine on a GPU, in one call of a lent machine with no network (see llm_engine/README.md,
# "On a GPU"). Prepare here, once: python bench/pack_mlx_cuda.py --sm 90 --out .gpu/site.tar.xz
# (.gpu/ is ignored via .git/info/exclude and carried with the call). Then run on the machine:
#     bash bench/gpu_call.sh            (results under $OUT, or bench/results/ without $OUT)
# Steps: MLX's CUDA backend from the carried archive; the parity tests on the GPU; the four
# CUDA read paths compared on 4 layers; Qwen3-30B-A3B whole with the fastest path; then the
# larger Qwen3-235B-A22B-shaped model (as many layers as the disk holds), cold.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
OUT=${OUT:-bench/results}
WORK=${WORK:-/var/tmp/almanac-gpu}
mkdir -p "$OUT" /tmp/site
if [ -f .gpu/site.tar.xz ]; then
    tar xJf .gpu/site.tar.xz -C /tmp/site && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
python3 -c "import mlx.core as mx; assert mx.default_device().type == mx.gpu, 'MLX sees no GPU'" || exit 1

timeout 300 python3 -m pytest -q -p no:cacheprovider tests/engine/test_parity.py 2>&1 | tail -15 > "$OUT/parity.log"
tail -2 "$OUT/parity.log"

for path in copy host prefetch fault; do
    ALMANAC_CUDA_READ=$path timeout 150 python3 bench/engine_gpu.py --workdir "$WORK/l4" \
        --model qwen3-30b-a3b --layers 4 --prompts 1 --tokens 16 --rounds 1 \
        --configs resident,warm,cold --json "$OUT/read-path-$path.json" | tail -4
done
best=$(python3 - "$OUT" <<'EOF'
import json, sys
speed = {}
for path in ("copy", "host", "prefetch", "fault"):
    try:
        run = json.load(open(f"{sys.argv[1]}/read-path-{path}.json"))["rounds"][0]["almanac warm"]
        speed[path] = run["runs"]["1"]["decode_tok_s"]
    except (OSError, KeyError, ValueError):
        pass
print(max(speed, key=speed.get) if speed else "copy")
EOF
)
echo "fastest CUDA read path on 4 layers: $best"
rm -rf "$WORK/l4"

ALMANAC_CUDA_READ=$best python3 bench/engine_gpu.py --workdir "$WORK" --model qwen3-30b-a3b \
    --prompts 1,1500 --tokens 24 --rounds 2 --cache-gb 8 --json "$OUT/engine_gpu-qwen3-30b-a3b.json" | tail -12
rm -rf "$WORK"
# Qwen3-235B-A22B's layers: 1.36 GB of experts each; 18 layers (~25 GB) leave room on a 64 GB
# disk for the MLX source during conversion. Cold is the case that matters: the page cache
# never holds it (every expert is dropped after it is read).
ALMANAC_CUDA_READ=$best python3 bench/engine_gpu.py --workdir "$WORK" --model qwen3-235b-a22b \
    --layers 18 --prompts 1,1500 --tokens 16 --rounds 1 --cache-gb 8 \
    --json "$OUT/engine_gpu-qwen3-235b-a22b-18l.json" | tail -12
