#!/usr/bin/env bash
# The whole GPU side in one call of a lent GPU machine that has the CUDA torch, pytest,
# hypothesis and pytest-benchmark but no internet: full-size data packed from the carried JPEG
# copy, then .ci/gpu_check.py (CUDA tier, CUDA benchmarks stored as this GPU's baseline, a short
# real-data training run), within DEADLINE seconds (default 420; DEVICE and EPOCHS of the
# training run: cuda, 30). The rehearsal of params.yaml runs too (REHEARSE=0 leaves it out); it
# needs dvc, installed here from wheels carried in .whl/ when the machine lacks it (README, "On
# a lent GPU"). What comes back, in at most
# five files under OUT: summary.md, summary.json, the benchmark baseline, and the logs
# (checkpoints left out).
#
#   bash .ci/gpu_lease.sh .gpu-data/cifar10-train-jpeg.tar.xz "$OUT"
set -euo pipefail
jpegs=${1:?usage: gpu_lease.sh JPEG_TAR_XZ OUT}
out=${2:?usage: gpu_lease.sh JPEG_TAR_XZ OUT}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONUNBUFFERED=1
python3 -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
# Python's tarfile, not tar(1): it needs no xz program, and its data filter refuses unsafe paths.
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="data")' \
    "$jpegs" "$work"
python3 -m resnet_repro pack "$work/train" "$work/full.tar.gz"
if [ "${REHEARSE:-1}" = 1 ] && ! command -v dvc >/dev/null && [ -d .whl ]; then
    python3 -m pip install -q --no-index --find-links .whl dvc || echo "dvc did not install"
fi
rehearse=--rehearse
[ "${REHEARSE:-1}" = 1 ] || rehearse=--no-rehearse
status=0
python3 .ci/gpu_check.py --out "$work/check" --archive "$work/full.tar.gz" \
    --deadline "${DEADLINE:-420}" --baselines-dir "$work/baselines" \
    --device "${DEVICE:-cuda}" --epochs "${EPOCHS:-30}" "$rehearse" || status=$?
cp "$work/check/summary.md" "$work/check/summary.json" "$out/"
cp "$work"/baselines/*.json "$out/" 2>/dev/null || echo "no benchmark baseline was written"
tar czf "$out/logs.tar.gz" -C "$work/check" --exclude='*.ckpt' .
exit "$status"
