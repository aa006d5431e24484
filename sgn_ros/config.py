# Configuration: typed, frozen dataclasses read from YAML.
#
# One base file (`config/sgn_base.yaml`, the reference SGN-S on SemanticKITTI), one small
# override file per variant (`sgn-t.yaml`, `sgn-s.yaml`, `sgn-l.yaml`), one per dataset
# (`config/datasets/*.yaml`). Unknown keys are errors: no option is silently ignored.
"""Typed SGN configuration loaded from YAML (base + variant + dataset overrides)."""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

from sgn_ros.grid import VoxelGrid

VARIANTS = ("sgn-t", "sgn-s", "sgn-l")
DATASETS = ("semantickitti", "kitti360")


@dataclass(frozen=True)
class ModelConfig:
    """Network hyper-parameters (defaults: the reference SGN-T/S)."""

    backbone: str = "resnet50"  # resnet50 | resnet18
    embed_dims: int = 128  # D: FPN output / lifted feature channels
    sdb_depth: int = 3  # anisotropic multi-path convs in the semantic diffusion block
    feature_stride: int = 16  # stride of the FPN level that FLoSP samples
    guidance: bool = True  # sparse voxel proposal guidance (the "one-stage guidance" model)
    guidance_channels: int = 8  # extra channels the proposal network hands to diffusion
    proposal_dims: tuple[int, ...] = (32, 48, 64, 80)  # 2D U-Net channels of the proposal net
    # The reference freezes the stem + layer1 and every BatchNorm of an ImageNet-initialised
    # ResNet. Training from scratch (no ImageNet file at hand) needs them to learn.
    encoder_frozen_stages: int = 1  # 0: nothing frozen; 1: stem + layer1 (reference)
    encoder_norm_eval: bool = True  # BatchNorms in eval mode with frozen affine (reference)


@dataclass(frozen=True)
class DataConfig:
    """Dataset, image and label settings (defaults: SemanticKITTI)."""

    dataset: str = "semantickitti"  # semantickitti | kitti360
    num_classes: int = 20
    label_config: str = "labels/semantic-kitti.yaml"  # relative to the config directory
    image_size: tuple[int, int] = (370, 1220)  # (H, W) after cropping, pixels
    # focal length (px) of the training images: `fit` scales other cameras to it, so objects keep
    # the pixel size the network learnt (SemanticKITTI 707-722, seq 00 and the synthetic world 718.856)
    reference_focal: float = 718.856
    temporal: tuple[int, ...] = ()  # relative indices of earlier frames (SGN-T, SGN-L: -12 -9 -6 -3)
    depth_model: str = "msnet3d"  # folder tag of pseudo-LiDAR: sequences_<tag>_lidar
    labels_tag: str = "labels"  # folder of preprocessed labels under dataset/
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    class_weights: tuple[float, ...] = ()
    eval_range: float | None = None  # metres ahead; None = the whole grid; 25.6 / 12.8 = near range only

    @property
    def num_frames(self) -> int:
        """Images per sample: the current frame plus the temporal ones."""
        return 1 + len(self.temporal)


@dataclass(frozen=True)
class TrainConfig:
    """The reference training recipe."""

    lr: float = 2e-4
    weight_decay: float = 0.01
    grad_clip: float = 35.0
    warmup_iters: int = 500
    warmup_ratio: float = 1.0 / 3.0
    min_lr_ratio: float = 1e-3
    epochs: int = 48
    batch_size: int = 1  # per process
    num_workers: int = 4
    amp: bool = False
    eval_interval: int = 1  # epochs
    checkpoint_interval_iters: int = 0  # 0: only at epoch ends
    seed: int = 0
    pretrained_backbone: str | None = None  # torchvision ResNet .pth file
    load_from: str | None = None  # fine-tune: initial weights from a (model-only or training) checkpoint
    max_iters_per_epoch: int = 0  # 0: the whole split (smoke tests use a few)
    log_interval: int = 50  # iterations between logged (rank-averaged) loss means, as mmcv's log_config


@dataclass(frozen=True)
class SGNConfig:
    """Everything that defines one SGN model and how it is trained."""

    name: str = "sgn-s"
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    grid: VoxelGrid = field(default_factory=VoxelGrid)

    @property
    def num_classes(self) -> int:
        return self.data.num_classes

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (for checkpoints and logs)."""
        return _to_plain(dataclasses.asdict(self))


# --------------------------------------------------------------------------- locating files
def config_dir() -> Path:
    """The directory holding the package's YAML files.

    Looked up in order: ``$SGN_ROS_CONFIG_DIR``; ``config/`` beside the package (source
    checkout); ``share/sgn_ros/config`` under each ament prefix and under ``sys.prefix``
    (colcon / pip installs).
    """
    candidates: list[Path] = []
    if os.environ.get("SGN_ROS_CONFIG_DIR"):
        candidates.append(Path(os.environ["SGN_ROS_CONFIG_DIR"]))
    candidates.append(Path(__file__).resolve().parent.parent / "config")
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            candidates.append(Path(prefix) / "share" / "sgn_ros" / "config")
    candidates.append(Path(sys.prefix) / "share" / "sgn_ros" / "config")
    for c in candidates:
        if (c / "sgn_base.yaml").is_file():
            return c
    raise FileNotFoundError(
        "sgn_ros config directory not found (looked for sgn_base.yaml in: "
        + ", ".join(str(c) for c in candidates)
        + "); set SGN_ROS_CONFIG_DIR"
    )


def resolve_config_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A variant name (``sgn-t``) or a YAML path -> an existing YAML path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        if p.is_file():
            return p
        alt = config_dir() / p
        if alt.is_file():
            return alt
        raise FileNotFoundError(f"config file not found: {p}")
    name = str(name_or_path).lower()
    candidate = config_dir() / f"{name}.yaml"
    if not candidate.is_file():
        raise ValueError(f"unknown SGN variant {name_or_path!r}; expected one of {VARIANTS} or a .yaml path")
    return candidate


# --------------------------------------------------------------------------- loading
def load_config(
    variant_or_path: str | os.PathLike[str] = "sgn-s",
    dataset: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> SGNConfig:
    """Compose a config: base file(s), the dataset file, the variant file, then `overrides`.

    Args:
        variant_or_path: ``sgn-t`` / ``sgn-s`` / ``sgn-l`` or a YAML file; a file may name its
            parent with ``base: other.yaml`` (relative to itself).
        dataset: ``semantickitti`` or ``kitti360``; default: the file's ``data.dataset``.
        overrides: nested dict applied last (e.g. ``{"train": {"epochs": 2}}``).

    Raises:
        ValueError: unknown keys or values of the wrong type, naming the file and key.
    """
    path = resolve_config_path(variant_or_path)
    chain = _read_chain(path)  # root first
    merged: dict[str, Any] = {}
    for _, layer in chain:
        merged = _deep_merge(merged, layer)
    if overrides:
        merged = _deep_merge(merged, overrides)
    ds = (dataset or merged.get("data", {}).get("dataset") or "semantickitti").lower()
    if ds not in DATASETS:
        raise ValueError(f"unknown dataset {ds!r} (from {path}); expected one of {DATASETS}")
    ds_path = config_dir() / "datasets" / f"{ds}.yaml"
    ds_layer = _read_yaml(ds_path)
    # dataset layer sits right above the root base, below the variant and overrides
    layers = [chain[0], (ds_path, ds_layer), *chain[1:]]
    merged = {}
    for _, layer in layers:
        merged = _deep_merge(merged, layer)
    if overrides:
        merged = _deep_merge(merged, overrides)
    merged.setdefault("data", {})["dataset"] = ds
    return _build(SGNConfig, merged, where=str(path))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except FileNotFoundError:
        raise FileNotFoundError(f"config file not found: {path}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def _read_chain(path: Path, _seen: tuple[Path, ...] = ()) -> list[tuple[Path, dict[str, Any]]]:
    path = path.resolve()
    if path in _seen:
        raise ValueError(f"{path}: circular 'base:' chain {[str(p) for p in _seen]}")
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return [(path, data)]
    return [*_read_chain((path.parent / base), (*_seen, path)), (path, data)]


def _deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _build(cls: type, data: dict[str, Any], where: str, prefix: str = "") -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: '{prefix or cls.__name__}' must be a mapping, got {data!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(
            f"{where}: unknown key(s) {', '.join(prefix + k for k in unknown)}; "
            f"valid keys of '{prefix.rstrip('.') or 'top level'}': {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, where, prefix + name)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where}: invalid '{prefix.rstrip('.') or cls.__name__}': {e}") from e


def _coerce(tp: Any, value: Any, where: str, key: str) -> Any:
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, key + ".")
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: '{key}' must be a list, got {value!r}")
        item_t = args[0] if args else Any
        if len(args) == 2 and args[1] is Ellipsis or len(args) <= 1:
            return tuple(_coerce(item_t, v, where, key) for v in value)
        if len(value) != len(args):
            raise ValueError(f"{where}: '{key}' needs {len(args)} values, got {value!r}")
        return tuple(_coerce(t, v, where, key) for t, v in zip(args, value))
    if args and type(None) in args:  # Optional[X]
        if value is None:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(inner[0], value, where, key)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{where}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: '{key}' must be a string, got {value!r}")
        return value
    return value


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_plain(v) for v in obj]
    return obj


def config_from_dict(data: dict[str, Any], where: str = "checkpoint") -> SGNConfig:
    """Rebuild an `SGNConfig` from `SGNConfig.to_dict()` output (e.g. stored in a checkpoint)."""
    return _build(SGNConfig, data, where=where)
