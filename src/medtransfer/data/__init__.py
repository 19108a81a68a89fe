"""Data stage: dataset registry → split → decode-once cache → augmentation → Lightning DataModule.

Public API used by the training code::

    from medtransfer.data import SegDataModule, ClsDataModule, DATASETS, dataset_task, validate_dataset_cfg

`dataset_task(cfg)` ("segmentation" | "classification" | "segmentation3d") says which DataModule a dataset config needs;
`dataset_labels(cfg)` the label kind, names and output count of a classification one (nulls inferred).
Importing this package registers every dataset: the MedMNIST ones (`medmnist`), the chest X-ray sources
(`chest`), the generic folder ones (`cls_folders`) and the 3D volume ones (`volume_specs`) included.
"""

from medtransfer.data import chest, cls_folders, volume_specs  # noqa: F401  (register the folder and 3D datasets)
from medtransfer.data.augment import AUGMENTS, build_transform, register_augment
from medtransfer.data.classification import ClassificationSpec, ClsDataModule, register_classification
from medtransfer.data.config import (
    LabelInfo,
    dataset_labels,
    dataset_task,
    metrics_region,
    validate_dataset_cfg,
)
from medtransfer.data.datamodule import SegDataModule, collate
from medtransfer.data.datasets import DATASETS, DatasetSpec, Sample, register_dataset
from medtransfer.data.medmnist import inspect_npz, read_npz
from medtransfer.data.splits import Split, load_split

__all__ = [
    "AUGMENTS",
    "DATASETS",
    "ClassificationSpec",
    "ClsDataModule",
    "DatasetSpec",
    "LabelInfo",
    "Sample",
    "SegDataModule",
    "Split",
    "build_transform",
    "collate",
    "dataset_labels",
    "dataset_task",
    "inspect_npz",
    "load_split",
    "metrics_region",
    "read_npz",
    "register_augment",
    "register_classification",
    "register_dataset",
    "validate_dataset_cfg",
]
