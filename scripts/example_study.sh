#!/usr/bin/env bash
# The README's example report: a paper-003-style transfer study on the real data, small enough for a CPU.
#   1. source model: R18 U-Net trained on CVC-ClinicDB (64 px, 10 epochs)
#   2. target: Kvasir-SEG with 100 training images, initialised from the source encoder vs from scratch, 2 seeds
#   3. out-of-distribution check of each target model on CVC-ClinicDB, then the report
# Usage: scripts/example_study.sh [RUNS_ROOT] [REPORT_DIR]   (needs MEDTRANSFER_DATA_ROOT with both datasets)
set -euo pipefail
cd "$(dirname "$0")/.."
export MEDTRANSFER_RUNS_ROOT="${1:-runs}" HF_HUB_OFFLINE=1 WANDB_MODE=offline NO_ALBUMENTATIONS_UPDATE=1
out="${2:-reports/example}"
py=.venv/bin/python
common=(experiment=paper003_transfer_vs_scratch image_size=64 batch_size=16 optimizer.lr=0.001 logger=csv)
$py train.py "${common[@]}" dataset=cvc_clinicdb trainer.max_epochs=10 study=example_source
src=$(ls -d "$MEDTRANSFER_RUNS_ROOT"/example_source/*/seed0)
target=(dataset=kvasir_seg dataset.n_train=100 trainer.max_epochs=8 study=example seed=0,1)
$py train.py -m "${common[@]}" "${target[@]}" pretrain=scratch
$py train.py -m "${common[@]}" "${target[@]}" pretrain=file "pretrain.path=$src/checkpoints/best.ckpt"
for run in "$MEDTRANSFER_RUNS_ROOT"/example/*/seed*; do
  $py eval.py "ckpt=$run" dataset=cvc_clinicdb dataset.image_size=64 > /dev/null
done
.venv/bin/medtransfer report "$MEDTRANSFER_RUNS_ROOT/example" --out "$out" --rows pretrain --baseline pretrain=scratch
