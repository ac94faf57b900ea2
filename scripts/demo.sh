#!/usr/bin/env bash
# `make demo`: the whole pipeline on the built-in catalogue, on a CPU in a few minutes.
#   1. train EfficientNet-Lite0 briefly from its packaged ImageNet weights (experiment=demo)
#   2. build a FAISS index of the whole catalogue with the best checkpoint
#   3. evaluate retrieval with both relevance notions (same category / same product) and write the report
#      and result grids
# Everything lands in outputs/demo/{train,index,eval}; a rerun replaces it.
# Extra Hydra overrides for the training step can be passed: `make demo ARGS="trainer.max_epochs=2"`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${DEMO_OUT:-outputs/demo}

echo "==> [1/3] training (experiment=demo) -> $OUT/train"
rm -rf "$OUT/train"
"$BIN/imgsearch-train" experiment=demo hydra.run.dir="$OUT/train" "$@"

echo "==> [2/3] indexing the catalogue -> $OUT/index"
"$BIN/imgsearch-index" checkpoint=best run="$OUT/train" output_dir="$OUT/index" hydra.run.dir="$OUT/index_run"

echo "==> [3/3] evaluating retrieval -> $OUT/eval"
"$BIN/imgsearch-eval" checkpoint=best run="$OUT/train" output_dir="$OUT/eval" hydra.run.dir="$OUT/eval_run"

echo
cat "$OUT/eval/retrieval.md"
echo
echo "Report:        $OUT/eval/retrieval.json"
echo "Result grids:  $(ls "$OUT"/eval/retrieval_grid_*.png | tr '\n' ' ')"
echo "Search a photo: $BIN/imgsearch-search --index $OUT/index path/to/photo.jpg"
echo "Serve:          $BIN/imgsearch-serve index_dir=$OUT/index"
