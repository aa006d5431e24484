#!/usr/bin/env bash
# The GPU checks of issue #13, as ONE prepared command for the device tool (a machine lent to some
# tasks only, 15 minutes of device time in all). Prepare here first: bash scripts/device_bundle.sh,
# then call the device tool's run with
#   command: bash scripts/device_check.sh   carry: [".device"]   timeout_s: 590
# (the steps' limits add up to 575 s). Here, `DEVICE_CHECK_NO_BUNDLE=1 PY=.venv/bin/python bash
# scripts/device_check.sh` runs the same steps on the CPU venv (the CUDA ones fail fast): a check
# of the script itself.
# It installs the bundle into /tmp/site, runs the CUDA tests, then the benchmarks that need no ROS
# (the ROS wheels, ~265 MB, cannot travel: the node-over-DDS rate stays a CPU-side measurement),
# each with its own time limit so that a slow step cannot eat the others' time, and writes every
# log and table to $OUT (they come back to the session).
#   1. the test files holding CUDA checks (predictor, SGM and its Triton scan (bit for bit against
#      the torch scan on the GPU), stereo pair, losses, sparse blocks, MSNet, runtime, errors):
#      skipped here, run there
#   2. bench/model_latency.py: sgn-l-synth (SGN-L with the bundled trained weights: a trained seed
#      count) and SGN-T (random weights), fp32 and fp16 (the predict() <= 20 ms and <= 40 ms
#      targets); then sgn-l-synth fp16 with compile_dense default / reduce-overhead (eager: above)
#      (torch.compile of the dense parts, + CUDA graphs): whether compiling measurably helps;
#      bench/model_profile.py: sgn-l-synth fp16 under torch.profiler (device busy share, launches
#      and waits per forward, time per stage, top kernels): where the ~40 ms go
#   3. bench/pipeline_rate.py --device cuda: predictor + encoders as three pipeline stages at
#      20 Hz, points and stereo (sgm on the GPU): the rate the host stages sustain beside the GPU
#   4. bench/stereo_sgm.py --device cuda (SGM time with the Triton and the torch scan, launches per
#      pair, depth accuracy against SGBM) and
#      bench/stereo.py (MSNet-3D per pair on CUDA, float32 / float16)
# Before them the C extension sgn_ros.ros._cdr_fill (the outputs' native passes) is built in place
# where the machine has a compiler and the Python headers; else the encoders take the NumPy
# passes (the same bytes, slower), and native.log says so.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT" /tmp/site
export PYTHONUNBUFFERED=1 PYTHONPATH="/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
step() {  # step NAME SECONDS CMD...: run with a limit, log to $OUT/NAME.log, never stop the script
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/summary.txt"
  local t0=$SECONDS
  timeout -k 5 "$limit" "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   rc=$rc in $((SECONDS - t0)) s; last lines:" | tee -a "$OUT/summary.txt"
  tail -n 25 "$OUT/$name.log" | tee -a "$OUT/summary.txt"
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; "$PY" -V; } \
  > "$OUT/machine.txt" 2>&1
if [ "${DEVICE_CHECK_NO_BUNDLE:-0}" = "1" ]; then
  echo "device_check: DEVICE_CHECK_NO_BUNDLE=1: using $PY as it is" | tee -a "$OUT/summary.txt"
elif [ ! -f .device/site.tar.xz ]; then
  echo "device_check: .device/site.tar.xz missing: run scripts/device_bundle.sh here and carry .device" \
    | tee -a "$OUT/summary.txt"
  exit 2
else
  tar -xJf .device/site.tar.xz -C /tmp/site || exit 2
fi
step native 20 bash -c "\"$PY\" setup.py -q build_ext --inplace; \"$PY\" -c \"from sgn_ros.ros import wire; \
print('native passes:', wire.NATIVE)\""
step imports 25 "$PY" -c "import torch, spconv.pytorch as sp; from sgn_ros.model.spconv_compat import setup_spconv; \
print(torch.__version__, torch.cuda.get_device_name(0), sp.__name__); setup_spconv(torch.device('cuda'))"
# the test files with CUDA checks (whole files: their CPU tests too, seconds); files that need
# the ROS wheels or rosbags are not collected
step tests_cuda 140 "$PY" -m pytest -q -p no:cacheprovider -rs test/test_predictor.py test/test_sgm.py \
  test/test_sgm_triton.py test/test_stereo_pair.py test/test_losses.py test/test_sparse_blocks.py test/test_msnet.py \
  test/test_runtime.py test/test_errors.py
step model_latency 85 "$PY" bench/model_latency.py --variants sgn-l-synth sgn-t --devices cuda --runs 5 \
  --out "$OUT/model_latency.md"
step model_profile 30 "$PY" bench/model_profile.py --device cuda --fp16 --runs 5 --out "$OUT/model_profile.md"
step pipeline_points 45 "$PY" bench/pipeline_rate.py --config full --device cuda --fp16 --frames 60 --rate 20
step pipeline_stereo 50 "$PY" bench/pipeline_rate.py --config full --device cuda --fp16 --frames 60 --rate 20 \
  --depth-source stereo --stereo-method sgm
step stereo_sgm 45 "$PY" bench/stereo_sgm.py --device cuda --repeats 5
step model_latency_compiled 100 "$PY" bench/model_latency.py --variants sgn-l-synth --devices cuda --dtypes fp16 \
  --compile default reduce-overhead --runs 5 --out "$OUT/model_latency_compiled.md"
step stereo_msnet 35 "$PY" bench/stereo.py --methods msnet3d --repeats 5
echo "device_check: done; logs in $OUT" | tee -a "$OUT/summary.txt"
