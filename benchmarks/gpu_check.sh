#!/usr/bin/env bash
# The GPU check (issue 19): one command, under 5 minutes on a CUDA machine.
#
#   benchmarks/gpu_check.sh            # on a CUDA machine: the real check
#   benchmarks/gpu_check.sh --dry-run  # anywhere: a CPU smoke run of the same steps (seconds)
#
# On CUDA it runs
#   1. the tests marked `gpu` (pytest -m gpu; they are skipped without a device),
#   2. benchmarks/bench_speed.py on cuda in float32 and in bfloat16 (plain timm/torchvision
#      forward, skhyper's forward, transform at 2048 pixels/image, folded predict; peak memory
#      from torch.cuda.max_memory_allocated), default backbone at 256/512/1024 plus VGG16 and
#      ResNet-50 at 512,
#   3. benchmarks/bench_predict.py on cuda (256..2048, no 4096 subprocess),
# and writes benchmarks/results/speed_cuda.json, speed_cuda_bfloat16.json, predict_cuda.json.
# Without a CUDA device, or with --dry-run, it runs every step on the CPU at toy sizes (one
# repeat, 64 px), only to show that the scripts work, and exits 0: it must not fail in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}
PY=${PYTHON:-python}

dry=0
[[ "${1:-}" == "--dry-run" ]] && dry=1
cuda=$($PY -c "import torch; print(int(torch.cuda.is_available()))")
if [[ $cuda == 0 && $dry == 0 ]]; then
    echo "gpu_check: no CUDA device here; running the CPU dry run instead"
    dry=1
fi

start=$(date +%s)
if [[ $dry == 1 ]]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    echo "== gpu tests (skipped: no device) =="
    $PY -m pytest -m gpu -q -p no:cacheprovider tests/test_extraction.py \
        tests/test_api_contract.py | tail -n 1
    for dtype in float32 bfloat16; do
        echo "== bench_speed, cpu $dtype, toy size =="
        $PY benchmarks/bench_speed.py --device cpu --dtype "$dtype" --repeats 1 \
            --cases efficientnet_lite0:64:1 --fit-images 2 --tag "dryrun" \
            --out-dir "$tmp"
    done
    echo "== bench_predict, cpu, toy size =="
    $PY benchmarks/bench_predict.py --device cpu --quick --sizes 64 --skip-4096 \
        --output "$tmp/predict_dryrun.json"
    echo "gpu_check dry run passed in $(( $(date +%s) - start )) s (no GPU figures)"
    exit 0
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
echo "== gpu tests =="
$PY -m pytest -m gpu -q -p no:cacheprovider tests
for dtype in float32 bfloat16; do
    echo "== bench_speed, cuda $dtype =="
    $PY benchmarks/bench_speed.py --device cuda --dtype "$dtype" --repeats 5
done
echo "== bench_predict, cuda =="
$PY benchmarks/bench_predict.py --device cuda --skip-4096 --repeats 5
echo "gpu_check done in $(( $(date +%s) - start )) s; figures in benchmarks/results/*cuda*.json"
