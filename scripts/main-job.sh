#!/usr/bin/env bash
# The main job: train Caffe's LeNet on Fashion-MNIST with crema, then classify a few test images.
# Installs what is missing (scripts/setup.sh), builds in release mode, trains models/lenet
# (10000 iterations, test every 500), writes 8 test images as PNG and classifies them with `crema classify`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --bin crema
crema=target/release/crema
out=out/lenet
mkdir -p "$out"
rm -rf models/lenet/snapshots && mkdir -p models/lenet/snapshots

echo "== training models/lenet/solver.yaml (log: $out/train.jsonl)" >&2
start=$(date +%s.%N)
"$crema" train --solver models/lenet/solver.yaml --json | tee "$out/train.jsonl"
end=$(date +%s.%N)
seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')

echo "== test accuracy by iteration" >&2
grep '"TEST"' "$out/train.jsonl" |
  sed -E 's/.*"iter": ?([0-9]+).*"accuracy": ?([0-9.eE+-]+).*/\1 \2/' | tee "$out/accuracy.txt"
final=$(tail -n 1 "$out/accuracy.txt" | cut -d' ' -f2)

weights=models/lenet/snapshots/lenet_iter_10000.caffemodel
ds=/usr/share/datasets/fashion-mnist
rm -rf "$out/png"
"$crema" convert --idx-to-png "$ds/t10k-images-idx3-ubyte.gz" \
  --idx-labels "$ds/t10k-labels-idx1-ubyte.gz" --count 8 --out "$out/png"
echo "== top-2 of 8 Fashion-MNIST test images (file names carry the true label)" >&2
# deploy.yaml's Input layer carries the training transform (scale 1/256), so no --scale here.
"$crema" classify --model models/lenet/deploy.yaml --weights "$weights" \
  --labels models/lenet/labels.txt --top-k 2 "$out"/png/0*.png

echo "trained LeNet on Fashion-MNIST: 10000 iterations in ${seconds} s, final test accuracy ${final}"
