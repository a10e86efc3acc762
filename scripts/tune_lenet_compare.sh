#!/usr/bin/env bash
# Bayesian against random search on LeNet / Fashion-MNIST (README "Hyperparameter search"):
# for each seed, one `crema tune` of each method over models/lenet/space.yaml, then one plot of
# the best-so-far curves with each method's mean. Environment: SEEDS (default "1 2 3"), TRIALS
# (20), ITERS (500 per trial), OUT (runs/tune_compare), CREMA (target/release/crema).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/tune_compare}
crema=${CREMA:-target/release/crema}
mkdir -p "$out"
# The shipped solver with a fixed initialization seed, so that trials differ only by their values.
{
  sed "s|^net: net.yaml|net: $PWD/models/lenet/net.yaml|" models/lenet/solver.yaml
  echo "random_seed: 1"
} >"$out/solver.yaml"
for seed in ${SEEDS:-1 2 3}; do
  for method in bayes random; do
    "$crema" tune --solver "$out/solver.yaml" --space models/lenet/space.yaml \
      --trials "${TRIALS:-20}" --budget-iters "${ITERS:-500}" --method "$method" \
      --seed "$seed" --out "$out/$method-$seed"
  done
done
"$crema" plot "$out"/bayes-*/trials.jsonl "$out"/random-*/trials.jsonl --out "$out/compare.png" --json
