# The SGN network package: image encoder + neck, FLoSP lifting, proposal network, guidance block,
# diffusion block and heads, plus checkpoint conversion. `build_model` is the one way in.
"""SGN model: `build_model(cfg_or_variant, dataset=None) -> SGN`."""

from __future__ import annotations

import os

from sgn_ros.config import SGNConfig, load_config

__all__ = ["build_model", "SGN"]


def build_model(cfg_or_variant: SGNConfig | str | os.PathLike[str] = "sgn-s", dataset: str | None = None):
    """Build an SGN network (randomly initialised; load weights with `checkpoint.load_model_weights`).

    Args:
        cfg_or_variant: an `SGNConfig`, a variant name (``sgn-t``, ``sgn-s``, ``sgn-l``) or a YAML path.
        dataset: ``semantickitti`` or ``kitti360`` when a variant / path is given (ignored with a
            config object, which already names its dataset; passing a different one is an error).
    """
    from sgn_ros.model.sgn import SGN

    if isinstance(cfg_or_variant, SGNConfig):
        if dataset is not None and dataset.lower() != cfg_or_variant.data.dataset:
            raise ValueError(
                f"build_model: dataset {dataset!r} contradicts the config's {cfg_or_variant.data.dataset!r}"
            )
        cfg = cfg_or_variant
    else:
        cfg = load_config(cfg_or_variant, dataset=dataset)
    return SGN(cfg)


def __getattr__(name: str):
    # Lazy: importing sgn_ros.model (e.g. for the CLI table) must not import spconv.
    if name == "SGN":
        from sgn_ros.model.sgn import SGN

        return SGN
    raise AttributeError(f"module 'sgn_ros.model' has no attribute {name!r}")
