"""`python eval.py ckpt=PATH [dataset=NAME] [split=NAME]` — evaluate a checkpoint on any dataset of its task.

Segmentation: per-image Dice/IoU/HD95 at native size. Classification: the labels the model and the dataset
share, matched by name (e.g. a ChestX-ray14 model on CheXpert's five labels). Writes
<run dir>/eval/<dataset>-<split>/{per_image.csv,summary.json}; see medtransfer.train.evaluate.
"""
from medtransfer.train.cli import eval_main

if __name__ == "__main__":
    eval_main()
