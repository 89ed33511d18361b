#!/usr/bin/env bash
# One lease of a lent GPU, as one prepared script (a lease is minutes long): the device, the GPU
# path of the tests that run without the project's data readers (metrics, SSIM engine, diversity,
# the diffusion networks), the metrics engine against the reference loop, and the `paper` preset
# of diffst trained for MINUTES with its validation curve (benchmarks/gpu_paper.py).
#
# Needs the split bundle that `python benchmarks/gpu_paper.py --export .gpu/her2st.pkl` writes
# where the data is. Runs under the machine's own python3 and packages. Each part has its own time
# limit and the script goes on past a failed part; everything printed is also written under OUT.
# Usage: OUT=dir MINUTES=4.5 bash benchmarks/device_check.sh
set -u
OUT=${OUT:-device-out}
MINUTES=${MINUTES:-4.5}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import sys, torch, numpy; print(sys.version.split()[0], 'torch', torch.__version__, 'numpy', numpy.__version__)"
} 2>&1 | tee "$OUT/device.txt"
timeout 400 python3 benchmarks/gpu_paper.py --bundle .gpu/her2st.pkl --minutes "$MINUTES" \
  --every 500 --out "$OUT" 2>&1 | tee "$OUT/gpu_paper.txt"
timeout 90 python3 benchmarks/metrics_speed.py --repeat 1 2>&1 | tee "$OUT/metrics_speed.txt"
timeout 75 python3 -m pytest -q -p no:cacheprovider -m "not slow" tests/scoring/test_metrics.py \
  tests/scoring/test_ssim_engine.py tests/scoring/test_diversity.py \
  tests/methods/test_diffst_network.py tests/methods/test_diffst_schedule.py 2>&1 \
  | tail -n 15 | tee "$OUT/pytest.txt"
