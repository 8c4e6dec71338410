#!/usr/bin/env bash
# A training-data view of ../shared/data that holds out whole sources for evaluation:
# keeps AlpacaEval, MMLU-Pro and the RouterBench *_train.csv files; leaves out arena_bench_v1 (open-ended
# chat graded by GPT-4) and the RouterBench *_test.csv files. Files are symlinked, nothing is copied.
#   bench/make_heldout_view.sh /tmp/heldout_data [../shared/data]
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [DATA_DIR]}
data=$(realpath "${2:-$(dirname "$0")/../../shared/data}")
rm -rf "$out"
mkdir -p "$out/preference" "$out/golden/routerbench"
cp -rs "$data/preference/alpaca_eval" "$out/preference/"
cp -rs "$data/golden/mmlu_pro" "$out/golden/"
for f in "$data"/golden/routerbench/*_train.csv; do ln -s "$f" "$out/golden/routerbench/"; done
echo "held-out training view in $out (from $data)"
