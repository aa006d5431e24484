#!/usr/bin/env bash
# Packs what the GPU checks (scripts/device_check.sh) need beyond the device image into
# .device/site.tar.xz. The device machine (an H200 with Python 3.12, torch 2.11+cu130, numpy,
# OpenCV, pytest ...; /work/.library/device/KINDS.md) has no spconv and cannot fetch packages, and
# one device call carries at most 64 MiB with the working tree (~11 MB). spconv-cu126 2.3.8 is a
# 70 MB wheel and cumm-cu126 27 MB: unpacked and xz'd together they are ~40 MB, so one call
# carries everything (`carry: [".device"]`). spconv-cu126 brings its own CUDA 12.6 runtime, which
# the 580 driver runs beside torch's CUDA 13 (as on the H100 of an earlier round).
# Run here, in the repository root: bash scripts/device_bundle.sh   (~1 min; needs PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
out=.device
rm -rf "$out/wheels" "$out/site"
mkdir -p "$out/wheels" "$out/site"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$out/wheels" spconv-cu126==2.3.8 cumm-cu126==0.7.11 pccm==0.4.16 ccimport==0.4.4 fire==0.7.1 \
  lark termcolor
for w in "$out"/wheels/*.whl; do
  python3 -m zipfile -e "$w" "$out/site"
done
tar -C "$out/site" -cf - . | xz -6 -T0 > "$out/site.tar.xz.part"
mv "$out/site.tar.xz.part" "$out/site.tar.xz"
rm -rf "$out/wheels" "$out/site"
size=$(stat -c %s "$out/site.tar.xz")
echo "device_bundle: $out/site.tar.xz $((size / 1048576)) MiB (spconv-cu126 2.3.8, cumm-cu126 0.7.11 and deps, Python 3.12)"
