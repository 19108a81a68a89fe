"""Data stage: dataset registry → split → decode-once cache → augmentation → Lightning DataModule.

Public API used by the training code::

    from medtransfer.data import SegDataModule, DATASETS, validate_dataset_cfg, AUGMENTS
"""

from medtransfer.data.augment import AUGMENTS, build_transform, register_augment
from medtransfer.data.config import metrics_region, validate_dataset_cfg
from medtransfer.data.datamodule import SegDataModule, collate
from medtransfer.data.datasets import DATASETS, DatasetSpec, Sample, register_dataset
from medtransfer.data.splits import Split, load_split

__all__ = [
    "AUGMENTS",
    "DATASETS",
    "DatasetSpec",
    "Sample",
    "SegDataModule",
    "Split",
    "build_transform",
    "collate",
    "load_split",
    "metrics_region",
    "register_augment",
    "register_dataset",
    "validate_dataset_cfg",
]
