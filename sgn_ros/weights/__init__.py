# Weights that ship inside the package: an SGN-L trained on the synthetic world only, so that
# `make demo` and a first `ros2 run` show a recognisable scene. They know nothing of real
# driving data: for KITTI / KITTI-360 use the released SGN checkpoints (README, "Checkpoints").
"""Bundled demo weights: which config names have them, and where they are."""

from __future__ import annotations

from pathlib import Path

#: config name -> file in this folder. Reproduce with `make demo-weights`.
BUNDLED: dict[str, str] = {"sgn-l-synth": "sgn-l-synth.pth"}

#: What users must be told whenever the bundled weights are in use.
SYNTHETIC_ONLY_NOTE = (
    "bundled weights: trained on the synthetic world only (sgn-ros synth); "
    "for real driving data load a released SGN checkpoint (sgn-ros convert-checkpoint)"
)


def bundled_checkpoint(config_name: str) -> Path | None:
    """The bundled weights file for `config_name`, or None when none ships (or it is absent)."""
    name = BUNDLED.get(config_name)
    if name is None:
        return None
    path = Path(__file__).resolve().parent / name
    return path if path.is_file() else None
