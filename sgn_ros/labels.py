# Label sets: class names, colours, raw-id <-> training-id maps and splits of a dataset.
# Read once from the dataset YAML (semantic-kitti-api / SSCBench format) and shared by the
# datasets, the evaluation, the exporters and the ROS conversions.
"""Dataset label definitions (names, RGB colours, learning maps, splits)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

from sgn_ros.config import config_dir

IGNORE_LABEL = 255  # training id of invalid / unknown voxels (and "no prediction" in messages)


@dataclass(frozen=True)
class LabelSet:
    """One dataset's label definition.

    Attributes:
        names: class names indexed by training id (0 = empty / unlabeled).
        colors_rgb: (C, 3) uint8 colours per training id (RGB; the YAML stores BGR).
        learning_map: (K,) uint8 lookup table raw id -> training id (K > max raw id).
        learning_map_inv: (C,) uint16 training id -> raw id.
        splits: split name ('train', 'valid', 'test') -> sequence numbers.
    """

    name: str
    names: tuple[str, ...]
    colors_rgb: np.ndarray
    learning_map: np.ndarray
    learning_map_inv: np.ndarray
    splits: dict[str, tuple[int, ...]]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def to_train_ids(self, raw: np.ndarray) -> np.ndarray:
        """Raw label ids (any int array) -> uint8 training ids; unknown raw ids -> 255."""
        raw = np.asarray(raw)
        out = np.full(raw.shape, IGNORE_LABEL, dtype=np.uint8)
        ok = (raw >= 0) & (raw < len(self.learning_map))
        out[ok] = self.learning_map[raw[ok]]
        return out

    def to_raw_ids(self, train_ids: np.ndarray) -> np.ndarray:
        """Training ids (uint8, < num_classes) -> uint16 raw ids (submission format)."""
        t = np.asarray(train_ids)
        if t.size and int(t.max()) >= self.num_classes:
            raise ValueError(f"{self.name}: training ids must be < {self.num_classes}, got max {int(t.max())}")
        return self.learning_map_inv[t]


def _split_key(name: str) -> str:
    return {"val": "valid", "validation": "valid"}.get(name, name)


def normalize_split(split: str) -> str:
    """'val' / 'validation' -> 'valid' (the label YAML's key); train / valid / test unchanged.

    Raises:
        ValueError: any other name.
    """
    key = _split_key(split)
    if key not in ("train", "valid", "test"):
        raise ValueError(f"unknown split {split!r}; expected train, val (valid) or test")
    return key


@lru_cache(maxsize=8)
def load_label_set(path_or_dataset: str) -> LabelSet:
    """Read a label YAML (``semantickitti``, ``kitti360`` or a path)."""
    table = {"semantickitti": "labels/semantic-kitti.yaml", "kitti360": "labels/kitti360.yaml"}
    rel = table.get(path_or_dataset, path_or_dataset)
    path = Path(rel)
    if not path.is_absolute() and not path.is_file():
        path = config_dir() / rel
    if not path.is_file():
        raise FileNotFoundError(f"label config not found: {path}")
    with open(path, encoding="utf-8") as f:
        y = yaml.safe_load(f)
    for key in ("labels", "color_map", "learning_map", "learning_map_inv", "split"):
        if key not in y:
            raise ValueError(f"{path}: missing key '{key}'")
    inv = {int(k): int(v) for k, v in y["learning_map_inv"].items()}
    num_classes = max(inv) + 1
    names = tuple(str(y["labels"][inv[c]]) for c in range(num_classes))
    colors = np.array([y["color_map"][inv[c]][::-1] for c in range(num_classes)], dtype=np.uint8)
    lmap = {int(k): int(v) for k, v in y["learning_map"].items()}
    lut = np.full(max(lmap) + 1, IGNORE_LABEL, dtype=np.uint8)
    for k, v in lmap.items():
        lut[k] = v
    lut_inv = np.array([inv[c] for c in range(num_classes)], dtype=np.uint16)
    splits = {_split_key(k): tuple(int(s) for s in v) for k, v in y["split"].items()}
    return LabelSet(
        name=path.stem,
        names=names,
        colors_rgb=colors,
        learning_map=lut,
        learning_map_inv=lut_inv,
        splits=splits,
    )
