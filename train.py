"""`python train.py [overrides]` — see README. Thin: the package does the work."""
from medtransfer.train.cli import train_main

if __name__ == "__main__":
    train_main()
