#!/usr/bin/env bash
# The README's classification results, on the real MedMNIST files in ../shared/data/medmnist:
#   1. MedMNIST v2's protocol on PneumoniaMNIST: ResNet-18, 28 px, from scratch, 3 seeds (experiment=medmnist_benchmark)
#   2. transfer: BreastMNIST (ultrasound) at n_train 50 and all, initialised from the seed-0 PneumoniaMNIST
#      (X-ray) model's encoder vs from scratch, 3 seeds, same protocol; then the report with t-tests
# Usage: scripts/medmnist_transfer_study.sh [RUNS_ROOT] [REPORT_DIR]   (needs MEDTRANSFER_DATA_ROOT)
set -euo pipefail
cd "$(dirname "$0")/.."
export MEDTRANSFER_RUNS_ROOT="${1:-runs}" HF_HUB_OFFLINE=1 WANDB_MODE=offline NO_ALBUMENTATIONS_UPDATE=1
out="${2:-reports/medmnist_transfer}"
py=.venv/bin/python
common=(experiment=medmnist_benchmark encoder=r18 image_size=28 trainer=cpu logger=csv
        trainer.enable_progress_bar=false)
$py train.py -m "${common[@]}" seed=0,1,2
src=$(ls -d "$MEDTRANSFER_RUNS_ROOT"/medmnist_benchmark/enc-r18_*/seed0)
target=(dataset=breastmnist dataset.n_train=50,null seed=0,1,2 study=breast_transfer)
$py train.py -m "${common[@]}" "${target[@]}" pretrain=scratch
$py train.py -m "${common[@]}" "${target[@]}" pretrain=file "pretrain.path=$src/checkpoints/best.ckpt"
.venv/bin/medtransfer report "$MEDTRANSFER_RUNS_ROOT/breast_transfer" --out "$out" --rows n_train --cols pretrain \
    --baseline pretrain=scratch --metric auroc,accuracy
