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
import time
from collections.abc import Callable, Mapping
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
    env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
    env.update(dds_environment(REPO_ROOT, env)[0])
    if sys.prefix != sys.base_prefix:  # a venv holding the ROS 2 wheels is an ament prefix
        prefixes = [p for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
        if sys.prefix not in prefixes:
            env["AMENT_PREFIX_PATH"] = os.pathsep.join([sys.prefix, *prefixes])
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if (REPO_ROOT / "sgn_ros").is_dir() and (not paths or paths[0] != str(REPO_ROOT)):
        env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *[p for p in paths if p != str(REPO_ROOT)]])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


class RosSession:
    """A private rclpy context with one node and a single-threaded executor, for tests and tools.

    Why: the tests, the demo, replay and the benchmarks talk to node processes on a domain of their
    own (`ros_environment`'s random ROS_DOMAIN_ID) without touching rclpy's global default context,
    which may be initialised by someone else in this process, or on another domain. Context, node,
    executor and their teardown in the right order are written here once.

    Args:
        name: the node's name.
        domain_id: DDS domain; None = rclpy's default (this process's ROS_DOMAIN_ID).
        args: command line for `rclpy.init` (e.g. ``["x", "--ros-args", "--params-file", F]``).
        **node_options: passed on to `rclpy.create_node` (e.g.
            ``automatically_declare_parameters_from_overrides=True``).

    Use as ``with RosSession("probe", domain_id) as s: ...`` or call `close()` (idempotent; also
    safe when start-up failed half-way, which `__init__` does itself before re-raising).
    """

    def __init__(self, name: str, domain_id: int | None = None, args: list[str] | None = None,
                 **node_options: Any) -> None:
        import rclpy
        import rclpy.context
        import rclpy.executors

        self.context = rclpy.context.Context()
        self.node: Any = None
        self.executor: Any = None
        self._closed = False
        try:
            rclpy.init(args=args, context=self.context, domain_id=None if domain_id is None else int(domain_id))
            self.node = rclpy.create_node(name, context=self.context, **node_options)
            self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
            self.executor.add_node(self.node)
        except BaseException:
            self.close()
            raise

    def spin_once(self, timeout: float = 0.1) -> None:
        """Run at most one ready callback, waiting up to `timeout` s for one."""
        self.executor.spin_once(timeout_sec=timeout)

    def spin_until(self, cond: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
        """Spin until `cond()` is true or `timeout` s passed; the last value of `cond()`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return True
            self.executor.spin_once(timeout_sec=step)
        return bool(cond())

    def close(self) -> None:
        """Executor, node, then the context; a second call does nothing."""
        import rclpy

        if self._closed:
            return
        self._closed = True
        if self.executor is not None:
            self.executor.shutdown()
        if self.node is not None:
            self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)

    def __enter__(self) -> RosSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: rmw implementations that read a Fast DDS XML profile ("": the default rmw, Fast DDS)
FASTDDS_RMWS = ("", "rmw_fastrtps_cpp", "rmw_fastrtps_dynamic_cpp")


def dds_environment(share: Path, environ: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """(environment to add, a line saying what) for this package's ROS processes (those of
    sgn.launch.py and `ros_environment`; sgn_node checks its own at start-up): the package's Fast
    DDS profile (`share`/config/fastdds_profile.xml: fast discovery and a 32 MiB shared-memory
    segment, without which each multi-megabyte image or output goes out in 64 KiB fragments, 3x
    slower) when the rmw is Fast DDS and the user has not chosen a profile of their own."""
    profile = share / "config" / "fastdds_profile.xml"
    rmw = environ.get("RMW_IMPLEMENTATION", "")
    if environ.get("FASTDDS_DEFAULT_PROFILES_FILE"):
        return {}, f"Fast DDS profile from FASTDDS_DEFAULT_PROFILES_FILE: {environ['FASTDDS_DEFAULT_PROFILES_FILE']}"
    if rmw not in FASTDDS_RMWS or not profile.is_file():
        return {}, f"RMW_IMPLEMENTATION={rmw}: no Fast DDS profile set"
    return {"FASTDDS_DEFAULT_PROFILES_FILE": str(profile)}, f"Fast DDS profile {profile} (shared-memory transport)"


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
