"""`python eval.py ckpt=PATH [dataset=NAME]` — evaluate any checkpoint on any dataset."""
from medtransfer.train.cli import eval_main

if __name__ == "__main__":
    eval_main()
