"""Tests of sgn_ros.evaluation.export: submission files and the CodaLab zip layout."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from sgn_ros.cli import main as cli_main
from sgn_ros.data import kitti_io
from sgn_ros.evaluation.export import make_submission_zip, prediction_path, write_prediction
from sgn_ros.grid import DEFAULT_GRID
from sgn_ros.labels import load_label_set


def check_like_validate_submission(zip_path, dataset_root, sequences) -> None:
    """The checks semantic-kitti-api's validate_submission.py makes for the completion task."""
    with zipfile.ZipFile(zip_path) as z:
        infos = z.infolist()
    dirs = {i.filename for i in infos if i.filename.endswith("/")}
    files = {i.filename: i for i in infos if not i.filename.endswith("/")}
    files.pop("description.txt", None)
    assert "sequences/" in dirs
    needed = []
    for seq in sequences:
        assert f"sequences/{seq}/" in dirs and f"sequences/{seq}/predictions/" in dirs
        vdir = dataset_root / "sequences" / seq / "voxels"
        for vox in sorted(vdir.glob("*.bin")):
            name = f"sequences/{seq}/predictions/{vox.stem}.label"
            needed.append(name)
            n_voxels = 8 * vox.stat().st_size
            assert files[name].file_size == 2 * n_voxels
    assert sorted(needed) == sorted(files)


def test_write_prediction_round_trip(tmp_path) -> None:
    ls = load_label_set("semantickitti")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 20, DEFAULT_GRID.dims).astype(np.uint8)
    path = write_prediction(tmp_path, "8", 5, labels, ls)
    assert path == tmp_path / "sequences" / "08" / "predictions" / "000005.label"
    assert path == prediction_path(tmp_path, "08", "000005")
    raw = kitti_io.read_label(path, DEFAULT_GRID.dims)
    assert raw.dtype == np.dtype("<u2") and raw[labels == 1].max() == 10  # car -> raw 10
    np.testing.assert_array_equal(ls.to_train_ids(raw), labels)
    assert not list(path.parent.glob("*.tmp"))
    with pytest.raises(ValueError, match="training ids must be < 20"):
        write_prediction(tmp_path, "08", 0, np.full(DEFAULT_GRID.dims, 20, np.uint8), ls)


@pytest.fixture()
def test_split_tree(tmp_path):
    """Inputs voxels/*.bin of sequences 11 and 12 and a prediction for each."""
    ls = load_label_set("semantickitti")
    data = tmp_path / "data"
    preds = tmp_path / "preds"
    labels = np.zeros(DEFAULT_GRID.dims, np.uint8)
    for seq, frames in (("11", [0, 5, 10]), ("12", [0])):
        vdir = data / "sequences" / seq / "voxels"
        vdir.mkdir(parents=True)
        for f in frames:
            kitti_io.write_bitpacked(vdir / f"{f:06d}.bin", np.zeros(DEFAULT_GRID.dims, bool))
            write_prediction(preds, seq, f, labels, ls)
    return data, preds


def test_submission_zip_layout(test_split_tree, tmp_path) -> None:
    data, preds = test_split_tree
    out = make_submission_zip(preds, tmp_path / "sub.zip", data, ["11", "12"], description="SGN-S")
    check_like_validate_submission(out, data, ["11", "12"])
    with zipfile.ZipFile(out) as z:
        assert z.read("description.txt") == b"SGN-S"
        raw = np.frombuffer(z.read("sequences/11/predictions/000005.label"), "<u2")
    assert raw.size == DEFAULT_GRID.num_voxels
    # through the CLI, the split's sequences would be 11..21: name the missing ones
    with pytest.raises(FileNotFoundError, match="13"):
        cli_main(["--debug", "export", "--predictions", str(preds), "--zip", str(tmp_path / "b.zip"),
                  "--dataset", str(data), "--split", "test"])  # fmt: skip
    assert cli_main(["export", "--predictions", str(preds), "--zip", str(tmp_path / "c.zip")]) == 0
    check_like_validate_submission(tmp_path / "c.zip", data, ["11", "12"])


def test_submission_errors(test_split_tree, tmp_path) -> None:
    data, preds = test_split_tree
    missing = prediction_path(preds, "11", 10)
    missing.unlink()
    with pytest.raises(FileNotFoundError, match=r"11/predictions/000010\.label"):
        make_submission_zip(preds, tmp_path / "a.zip", data, ["11"])
    missing.write_bytes(b"\0" * 10)
    with pytest.raises(kitti_io.DataFormatError, match=r"000010\.label: expected 4194304 bytes .* got 10"):
        make_submission_zip(preds, tmp_path / "a.zip", data, ["11"])
    with pytest.raises(ValueError, match=r"\.zip"):
        make_submission_zip(preds, tmp_path / "a.tar", data, ["11"])
    assert not (tmp_path / "a.zip").exists()
