# Shared test fixtures. `synthetic_root`: one small synthetic SemanticKITTI sequence, generated
# once per test session and prepared exactly as real data is (labels + pseudo-LiDAR through the
# `sgn-ros preprocess` code paths), so dataset, trainer and evaluation tests read real files.
# `from_install_tree`: Python code run in a process that imports sgn_ros from the colcon install
# tree alone, as `ros2 run` / `ros2 launch` do (the C extensions must be built there too).
# `sanitized`: a C extension rebuilt under AddressSanitizer and UndefinedBehaviorSanitizer and the
# tests of its callers run against it in a child process: the native passes index and write
# megabyte buffers by hand, so an overrun must fail a test rather than corrupt a robot's heap.
# Triton: without a GPU, the session imports it in its interpreter (TRITON_INTERPRET=1, set here
# before anything imports triton, which fixes the mode at import), so that the fused SGM kernel
# (sgn_ros.stereo.sgm_triton) runs on CPU tensors; a GPU session compiles it instead.
"""Session fixtures: a prepared synthetic SemanticKITTI tree; runs from the colcon install tree;
C extensions under the sanitizers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():  # an explicit TRITON_INTERPRET (e.g. 0 in a child process) wins
    os.environ.setdefault("TRITON_INTERPRET", "1")

#: the repository (the package and the install tree live below it)
ROOT = Path(__file__).resolve().parents[1]
#: frames of the synthetic sequence: voxel labels every 5th frame -> 4 samples (0, 5, 10, 15)
SYNTH_FRAMES = 16
SYNTH_SEED = 0
#: pseudo-LiDAR tag; the configs' default data.depth_model, so default configs read it as is
SYNTH_DEPTH_TAG = "msnet3d"


@pytest.fixture(scope="session", autouse=True)
def _limit_threads() -> None:
    """The test machine has 2 cores shared by many processes."""
    torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def from_install_tree() -> Callable[[str], tuple[str, str]]:
    """`run(code)` -> (the install tree's site-packages, stdout of `python -c code` run with that
    folder first on sys.path, without PYTHONPATH and outside the repository). Skips the test
    where there is no install tree (make ros-build makes it)."""
    sites = sorted((ROOT / "install" / "sgn_ros" / "lib").glob("python3*/site-packages"))
    if not sites:
        pytest.skip("no colcon install tree: make ros-build")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(code: str) -> tuple[str, str]:
        out = subprocess.run([sys.executable, "-c", "import sys; sys.path[:0] = [sys.argv[1]]; " + code,
                              str(sites[0])], env=env, cwd="/", capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return str(sites[0]), out.stdout

    return run


#: the sanitizers' options: stop at the first report of either (the child then fails); leaks are
#: not checked (CPython and torch keep memory on purpose until exit)
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=0:halt_on_error=1",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
_SANITIZER_FLAGS = ["-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=all", "-ffp-contract=off"]


def _compile(cc: str, source: Path, out: Path) -> None:
    """`source` -> the extension `out`, with the sanitizers."""
    built = subprocess.run([cc, *_SANITIZER_FLAGS, "-I", sysconfig.get_paths()["include"], str(source), "-o",
                            str(out)], capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, f"{source}: {built.stderr[-3000:]}"


@pytest.fixture(scope="session")
def sanitizer_runtime(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, str]]:
    """(C compiler, environment that preloads the ASan and UBSan runtimes). Skips where the
    compiler has no such runtimes. Proven to work first: a small extension that writes to memory
    it has freed must abort its process with an AddressSanitizer report."""
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        pytest.skip(f"no C compiler ({cc})")
    libs = []
    for name in ("libasan.so", "libubsan.so"):
        found = subprocess.run([cc, f"-print-file-name={name}"], capture_output=True, text=True).stdout.strip()
        if not os.path.isabs(found):
            pytest.skip(f"{cc} has no {name}")
        libs.append(found)
    env = {**os.environ, **SANITIZER_ENV, "LD_PRELOAD": " ".join(libs)}
    tmp = tmp_path_factory.mktemp("sanitizer_control")
    (tmp / "freed.c").write_text(
        "#include <Python.h>\n#include <stdlib.h>\n"
        "static PyObject *go(PyObject *s, PyObject *a) { volatile char *p = malloc(16); free((void *)p);"
        " p[8] = 1; Py_RETURN_NONE; }\n"
        "static PyMethodDef m[] = {{\"go\", go, METH_NOARGS, 0}, {0}};\n"
        "static struct PyModuleDef d = {PyModuleDef_HEAD_INIT, \"freed\", 0, -1, m};\n"
        "PyMODINIT_FUNC PyInit_freed(void) { return PyModule_Create(&d); }\n")
    _compile(cc, tmp / "freed.c", tmp / f"freed{sysconfig.get_config_var('EXT_SUFFIX')}")
    control = subprocess.run([sys.executable, "-c", "import freed; freed.go()"], cwd=tmp, env=env,
                             capture_output=True, text=True, timeout=120)
    assert control.returncode != 0 and "AddressSanitizer: heap-use-after-free" in control.stderr, (
        f"the sanitizers did not catch a write to freed memory: rc {control.returncode}\n{control.stderr[-2000:]}")
    return cc, env


@pytest.fixture
def sanitized(sanitizer_runtime: tuple[str, dict[str, str]], tmp_path: Path) -> Callable[[str, list[str]], str]:
    """`run(module, tests)`: the package copied to a temporary folder (links to its files) with the C
    extension `module` (e.g. ``sgn_ros.ros._cdr_fill``, source next to it as ``.c``) built there
    under ASan and UBSan; then pytest on `tests` (paths in test/) in a child that imports that
    copy, with the runtimes preloaded. Returns the child's output; fails on any report."""
    cc, env = sanitizer_runtime

    def run(module: str, tests: list[str]) -> str:
        copy = tmp_path / "sanitized"
        shutil.copytree(ROOT / "sgn_ros", copy / "sgn_ros", copy_function=os.symlink,
                        ignore=shutil.ignore_patterns("*.so", "__pycache__"))
        rel = Path(*module.split("."))
        _compile(cc, ROOT / rel.with_suffix(".c"), copy / f"{rel}{sysconfig.get_config_var('EXT_SUFFIX')}")
        # reports to files: the child's pytest captures the stderr of a test, and a process the
        # sanitizer stops takes that capture with it
        logs = tmp_path / "reports"
        logs.mkdir()
        child = {**env, "PYTHONPATH": str(copy) + os.pathsep + env.get("PYTHONPATH", ""),
                 **{k: f"{v}:log_path={logs / k.split('_')[0].lower()}" for k, v in SANITIZER_ENV.items()}}
        # run from the copy: `python -c` / `-m` put the working folder first on sys.path
        where = subprocess.run([sys.executable, "-c", f"import {module} as m; print(m.__file__)"], env=child,
                               cwd=copy, capture_output=True, text=True, timeout=120)
        assert where.returncode == 0 and where.stdout.strip().startswith(str(copy)), where.stdout + where.stderr
        out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-k",
                              "not sanitizers", *(str(ROOT / "test" / t) for t in tests)], env=child, cwd=copy,
                             capture_output=True, text=True, timeout=900)
        text = out.stdout + out.stderr
        reports = "".join(f.read_text(errors="replace") for f in sorted(logs.iterdir()))
        assert out.returncode == 0 and not reports, (
            f"{module} under ASan/UBSan: pytest exit {out.returncode}\n{reports[-6000:]}\n{text[-3000:]}")
        return text

    return run


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of a SemanticKITTI-layout tree (``root/dataset/...``) with sequence "00":

    image_2/image_3 (376 x 1241), calib.txt, poses.txt, times.txt, voxels/ every 5th frame
    (frames 0, 5, 10, 15), depth maps ``sequences/00/depth/*.npy`` from the renderer,
    preprocessed labels ``dataset/labels/00/NNNNNN_1_1.npy, _1_2.npy`` and pseudo-LiDAR
    ``dataset/sequences_msnet3d_lidar/sequences/00/NNNNNN.bin`` for every frame.
    Read-only for tests: copy it before changing anything.
    """
    from sgn_ros.data.preprocess import preprocess_depth_to_lidar, preprocess_labels
    from sgn_ros.data.synth import generate_sequence

    root = tmp_path_factory.mktemp("synthetic_kitti")
    seq_dir = Path(generate_sequence(root, sequence="00", frames=SYNTH_FRAMES, seed=SYNTH_SEED, depth=True))
    preprocess_labels(root, ["00"])
    depth_dir = str(seq_dir.parent / "{seq}" / "depth")
    preprocess_depth_to_lidar(root, SYNTH_DEPTH_TAG, depth_dir=depth_dir, sequences=["00"])
    return root
