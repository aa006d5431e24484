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
    assert cfg.data.temporal == ((-12, -9, -6, -3) if variant == "sgn-t" else ())
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
