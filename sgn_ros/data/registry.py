# The one table of datasets: name -> reader class and how its sequences are named. It replaces
# the two factories that existed (data.common.build_dataset, training.evaluate.make_dataset) and
# the f"{s:02d}" spelled out in evaluation and export, which is wrong for KITTI-360
# ("2013_05_28_drive_0006_sync"). Readers are named by "module:Class" and imported on first use,
# so this module imports no reader and a reader may use the table (no import cycle).
"""Dataset registry: `DATASET_SPECS`, `dataset_spec`, `build_dataset`, `split_sequences`."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sgn_ros.labels import LabelSet, normalize_split

if TYPE_CHECKING:
    from sgn_ros.config import SGNConfig
    from sgn_ros.data.common import SSCDataset

__all__ = ["DatasetSpec", "DATASET_SPECS", "dataset_spec", "spec_for_labels", "build_dataset", "split_sequences"]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset: `reader` ("module:Class"), the sequence naming, the label-set names it uses."""

    name: str
    reader: str
    sequence_name: Callable[[int], str]
    label_sets: tuple[str, ...]

    def reader_class(self) -> type[SSCDataset]:
        module, cls = self.reader.split(":")
        return getattr(importlib.import_module(module), cls)


def _kitti_sequence(number: int) -> str:
    return f"{int(number):02d}"


def _kitti360_sequence(number: int) -> str:
    return f"2013_05_28_drive_{int(number):04d}_sync"


DATASET_SPECS: dict[str, DatasetSpec] = {
    "semantickitti": DatasetSpec(
        "semantickitti", "sgn_ros.data.semantic_kitti:SemanticKittiDataset", _kitti_sequence,
        ("semantickitti", "semantic-kitti"),
    ),
    "kitti360": DatasetSpec(
        "kitti360", "sgn_ros.data.kitti360:Kitti360Dataset", _kitti360_sequence, ("kitti360", "kitti-360"),
    ),
}


def dataset_spec(name: str) -> DatasetSpec:
    """The spec of dataset `name`.

    Raises:
        ValueError: unknown name (the known ones listed).
    """
    spec = DATASET_SPECS.get(str(name).lower())
    if spec is None:
        raise ValueError(f"data.dataset: unknown dataset {name!r}; expected one of {sorted(DATASET_SPECS)}")
    return spec


def spec_for_labels(label_set: LabelSet) -> DatasetSpec:
    """The dataset a label set belongs to (by its file name); SemanticKITTI naming for other YAMLs,
    as the semantic-kitti-api tools assume."""
    for spec in DATASET_SPECS.values():
        if label_set.name.lower() in spec.label_sets:
            return spec
    return DATASET_SPECS["semantickitti"]


def split_sequences(label_set: LabelSet, split: str) -> list[str]:
    """Directory names of the sequences of `split` (train / val / valid / test) of a label set."""
    spec = spec_for_labels(label_set)
    return [spec.sequence_name(s) for s in label_set.splits[normalize_split(split)]]


def build_dataset(root: str | os.PathLike[str], cfg: SGNConfig, split: str, **kwargs: Any) -> SSCDataset:
    """The reader of cfg.data.dataset for `split` (kwargs: sequences, preprocess_root, load_points)."""
    return dataset_spec(cfg.data.dataset).reader_class()(root, cfg, split, **kwargs)
