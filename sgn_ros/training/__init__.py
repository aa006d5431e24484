# Offline training and network evaluation of SGN (the reference recipe), single process or
# torchrun. Kept import-light: `sgn-ros train` imports the heavy parts when it runs.
"""Training: `Trainer` (trainer.py), schedule, checkpoints (network evaluation: sgn_ros.evaluation.network)."""

__all__ = ["Trainer", "WarmupCosineLR"]


def __getattr__(name: str):
    if name == "Trainer":
        from sgn_ros.training.trainer import Trainer

        return Trainer
    if name == "WarmupCosineLR":
        from sgn_ros.training.schedule import WarmupCosineLR

        return WarmupCosineLR
    raise AttributeError(f"module 'sgn_ros.training' has no attribute {name!r}")
