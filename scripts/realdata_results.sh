#!/usr/bin/env bash
# Reproduces docs/results.md: EfficientNet-Lite0 fine-tuned vs its ImageNet features without training
# (backbone frozen, only a linear head trained for the accuracy figure) vs raw pixels (linear SVM), on the
# real photos of ../shared/realdata/fashion-product-images-small. Category-level retrieval (one image per
# product): queries = test split, gallery = train + val.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${RESULTS_OUT:-outputs/results}
EPOCHS=${EPOCHS:-3}

train() {  # name, overrides...
  local name=$1; shift
  rm -rf "$OUT/$name"
  "$BIN/imgsearch-train" hydra.run.dir="$OUT/$name" trainer.max_epochs="$EPOCHS" "$@"
}
evaluate() {  # name, overrides...
  local name=$1; shift
  local ckpt
  ckpt=$("$BIN/python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["best_checkpoint"])' "$OUT/$name/metrics.json")
  "$BIN/imgsearch-eval" checkpoint="$ckpt" relevance=[label] output_dir="$OUT/$name/eval" \
    hydra.run.dir="$OUT/$name/eval_run" "$@"
}

train finetune experiment=fashion_small_lite0 model.finetune=last_n
evaluate finetune
train imagenet experiment=fashion_small_lite0 model.finetune=head
evaluate imagenet
# the source study's baseline as configured in conf/model/svm.yaml (lr 5e-4, L2 1e-3, hinge loss)
train pixels data=fashion_small model=svm task_name=fashion_small_svm
evaluate pixels 'compare.embedding=[features,probs]'
