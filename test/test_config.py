"""Tests of the typed YAML configuration (sgn_ros.config)."""

import pytest

from sgn_ros.config import DATASETS, VARIANTS, config_from_dict, load_config


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dataset", DATASETS)
def test_all_variants_load_with_reference_defaults(variant, dataset):
    cfg = load_config(variant, dataset)
    assert cfg.name == variant
    assert cfg.data.dataset == dataset
    assert cfg.num_classes == (20 if dataset == "semantickitti" else 19)
    assert len(cfg.data.class_weights) == cfg.num_classes
    assert cfg.data.image_size == ((370, 1220) if dataset == "semantickitti" else (376, 1408))
    big = variant in ("sgn-t", "sgn-s")
    assert cfg.model.backbone == ("resnet50" if big else "resnet18")
    assert cfg.model.embed_dims == (128 if big else 64)
    assert cfg.model.sdb_depth == (3 if big else 1)
    # the released SGN-T and SGN-L configs are temporal; only SGN-S is single-frame
    assert cfg.data.temporal == (() if variant == "sgn-s" else (-12, -9, -6, -3))
    assert cfg.data.num_frames == (1 if variant == "sgn-s" else 5)
    assert cfg.train.lr == pytest.approx(2e-4) and cfg.train.epochs == 48 and cfg.train.grad_clip == 35.0


def test_reference_class_weights():
    cfg = load_config("sgn-s", "semantickitti")
    assert cfg.data.class_weights[0] == pytest.approx(0.446)
    assert cfg.data.class_weights[-1] == pytest.approx(0.786)


def test_overrides_and_round_trip():
    cfg = load_config("sgn-l", overrides={"train": {"epochs": 2}, "grid": {"dims": [64, 64, 8]}})
    assert cfg.train.epochs == 2 and cfg.grid.dims == (64, 64, 8)
    again = config_from_dict(cfg.to_dict())
    assert again == cfg


def test_unknown_key_is_named(tmp_path):
    from sgn_ros.config import config_dir

    p = tmp_path / "bad.yaml"
    p.write_text(f"base: {config_dir() / 'sgn_base.yaml'}\nmodel:\n  embed_dimz: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml.*model.embed_dimz"):
        load_config(p)


def test_wrong_type_is_named(tmp_path):
    from sgn_ros.config import config_dir

    p = tmp_path / "bad.yaml"
    p.write_text(f"base: {config_dir() / 'sgn_base.yaml'}\ntrain:\n  epochs: many\n")
    with pytest.raises(ValueError, match=r"train.epochs.*integer"):
        load_config(p)


def test_unknown_variant_and_dataset():
    with pytest.raises(ValueError, match="unknown SGN variant"):
        load_config("sgn-xl")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_config("sgn-s", "nuscenes")


@pytest.mark.parametrize("dataset", DATASETS)
def test_bundled_sgn_l_synth_is_single_frame(dataset):
    """The bundled weights were trained single-frame: their YAML and their stored config say so,
    while SGN-L as released (config/sgn-l.yaml) is temporal."""
    import torch

    from sgn_ros.weights import bundled_checkpoint

    assert load_config("sgn-l-synth", dataset).data.temporal == ()
    path = bundled_checkpoint("sgn-l-synth")
    assert path is not None
    stored = torch.load(path, map_location="cpu", weights_only=True)["config"]
    assert stored["name"] == "sgn-l-synth" and list(stored["data"]["temporal"]) == []
    assert config_from_dict(stored).data.num_frames == 1
