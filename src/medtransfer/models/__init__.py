"""Segmentation models (timm encoder adapters + smp decoders, FCN head, ViT feature pyramid) and
classifiers (the same encoder + a pooled linear head).

See README.md in this folder for the adapter choices (what runs where smp alone would fail).
"""

from medtransfer.models.classifier import ClassificationModel, build_classifier, check_classifier
from medtransfer.models.encoders import EncoderSpec, TimmEncoder, ViTPyramidNeck
from medtransfer.models.factory import (
    DecoderSpec,
    SegmentationModel,
    build_model,
    check_combination,
    count_parameters,
    segmentation_decoders,
)
from medtransfer.models.heads import FCNHead

__all__ = [
    "ClassificationModel",
    "DecoderSpec",
    "EncoderSpec",
    "FCNHead",
    "SegmentationModel",
    "TimmEncoder",
    "ViTPyramidNeck",
    "build_classifier",
    "build_model",
    "check_classifier",
    "check_combination",
    "count_parameters",
    "segmentation_decoders",
]
