# Starting and stopping ROS 2 node processes the way a user would, for `sgn-ros demo` and the
# tests: each node is its own Python process talking over DDS. The environment keeps DDS on this
# machine (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST), on a private domain (random ROS_DOMAIN_ID),
# with the project's Fast DDS profile (fast discovery; a 32 MiB shared-memory segment for the
# multi-megabyte images and voxel messages), and makes the sources of this checkout importable
# by the children.
"""ROS 2 child processes: environment, start with parameters, stop with SIGINT."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

REPO_ROOT = Path(__file__).resolve().parents[2]


def ros_environment(domain_id: int | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for ROS 2 processes of this project on a private, local DDS domain.

    Args:
        domain_id: ROS_DOMAIN_ID; None = random in [1, 200] (keeps concurrent runs apart).
        base: starting environment (default: this process's).
    """
    env = dict(os.environ if base is None else base)
    env["ROS_DOMAIN_ID"] = str(random.randint(1, 200) if domain_id is None else int(domain_id))
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated twin of the line above; they must not disagree
    profile = REPO_ROOT / "config" / "fastdds_profile.xml"
    if profile.is_file():
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    if sys.prefix != sys.base_prefix:  # a venv holding the ROS 2 wheels is an ament prefix
        prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        if sys.prefix not in prefixes:
            env["AMENT_PREFIX_PATH"] = os.pathsep.join([sys.prefix, *prefixes])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if (REPO_ROOT / "sgn_ros").is_dir() and (not paths or paths[0] != str(REPO_ROOT)):
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *[p for p in paths if p != str(REPO_ROOT)]])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _param_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_param_value(v) for v in value) + "]"
    if isinstance(value, str) and value == "":
        return "''"
    return str(value)


def ros_args(params: Mapping[str, Any] | None = None, params_files: list[str | Path] = (),
             remaps: Mapping[str, str] | None = None) -> list[str]:
    """``--ros-args`` command-line tail: ``--params-file F``..., ``-p k:=v``..., ``-r a:=b``..."""
    out = ["--ros-args"]
    for f in params_files:
        out += ["--params-file", str(f)]
    for k, v in (params or {}).items():
        out += ["-p", f"{k}:={_param_value(v)}"]
    for a, b in (remaps or {}).items():
        out += ["-r", f"{a}:={b}"]
    return out


def start_node(module: str, env: Mapping[str, str], params: Mapping[str, Any] | None = None,
               params_files: list[str | Path] = (), remaps: Mapping[str, str] | None = None,
               log: IO[bytes] | None = None) -> subprocess.Popen:
    """Start ``python -m <module> --ros-args ...`` (a node module with a `main()`) as a child."""
    cmd = [sys.executable, "-m", module, *ros_args(params, params_files, remaps)]
    return subprocess.Popen(cmd, env=dict(env), stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT (what Ctrl-C and `ros2 launch` send), then SIGKILL after `timeout` s; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return int(proc.returncode)
