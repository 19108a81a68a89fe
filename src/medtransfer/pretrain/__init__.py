"""Pretraining sources: which weights initialise the encoder, fetched once, loaded with exact key accounting."""

from medtransfer.pretrain.finetune import apply_finetune
from medtransfer.pretrain.load import check_pretrain, load_pretrained, normalisation, resolve_normalisation

__all__ = ["apply_finetune", "check_pretrain", "load_pretrained", "normalisation", "resolve_normalisation"]
