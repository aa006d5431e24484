# A transform tree buffer with tf2's lookup semantics, in pure Python (no rclpy, no tf2): where
# tf2_ros cannot be installed (the PyPI ROS wheels) the node fills it from /tf and /tf_static
# itself (sgn_ros.ros.tf_listener), and the frame assembler's pose lookups are unit-tested
# against it without DDS.
#
# Semantics follow tf2's BufferCore:
# * A transform (parent, child, stamp) is the pose of `child` in `parent` (TransformStamped:
#   header.frame_id = parent, child_frame_id = child). Each frame has one parent.
# * `lookup(target, source, t)` returns T_target_source, the 4x4 matrix that maps points given in
#   `source` into `target` (tf2's lookupTransform(target_frame, source_frame, time)).
# * Static transforms hold at every time; dynamic ones are interpolated between the two samples
#   around t (translation linearly, rotation by slerp). A request outside a link's samples is an
#   extrapolation: refused (tf2 refuses any), except within `extrapolation_tolerance_s` of the
#   nearest sample, which is then used as is (a camera stamped a few ms after the last /tf).
# * t = None is tf2's "time 0": the latest time at which every dynamic link of the chain has data.
# * Samples older than `cache_time_s` behind a link's newest sample are dropped (tf2: 10 s).
"""`TransformBuffer`: static + dynamic transforms, tree lookups with interpolation."""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ExtrapolationError",
    "NotConnectedError",
    "TransformBuffer",
    "TransformError",
    "UnknownFrameError",
]

#: deepest tree walked before the buffer calls the tree cyclic (tf2: MAX_GRAPH_DEPTH 1000)
MAX_DEPTH = 1000


class TransformError(ValueError):
    """A transform between two frames is not available; says which frames and why."""

    def __init__(self, target_frame: str, source_frame: str, reason: str) -> None:
        self.target_frame = target_frame
        self.source_frame = source_frame
        self.reason = reason
        super().__init__(f"no transform from '{source_frame}' to '{target_frame}': {reason}")


class UnknownFrameError(TransformError):
    """One of the frames has never been seen in a transform."""


class NotConnectedError(TransformError):
    """Both frames are known but lie in different trees (or the tree has a cycle)."""


class ExtrapolationError(TransformError):
    """The requested time lies outside the data of a link of the chain (stale or too new)."""


# ---------------------------------------------------------------------------------------------
# Minimal rotation math. TO BE REPLACED BY sgn_ros.geometry (quaternion <-> matrix, slerp) once
# that module lands; quaternions are ROS's (x, y, z, w).
# ---------------------------------------------------------------------------------------------
def _quat_normalise(q: np.ndarray, what: str) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64).reshape(4)
    n = float(np.linalg.norm(q))
    if not np.isfinite(n) or n < 1e-9:
        raise ValueError(f"{what}: invalid rotation quaternion {q.tolist()} (expected a non-zero (x, y, z, w))")
    return q / n


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def _matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """Rotation matrix -> (x, y, z, w), choosing the numerically stable branch."""
    m = R
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    return np.asarray(q) / np.linalg.norm(q)


def _slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """Spherical interpolation along the shorter arc (q and -q are the same rotation)."""
    d = float(np.dot(q0, q1))
    if d < 0.0:
        q1, d = -q1, -d
    theta = float(np.arccos(min(d, 1.0)))
    if theta < 1e-6:  # nearly equal: normalised linear interpolation is exact to O(theta^3)
        q = q0 + s * (q1 - q0)
        return q / np.linalg.norm(q)
    return (np.sin((1 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)


def _to_matrix(t: np.ndarray, q: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = _quat_to_matrix(q)
    T[:3, 3] = t
    return T


def _inverse(T: np.ndarray) -> np.ndarray:
    inv = np.eye(4)
    R = T[:3, :3]
    inv[:3, :3] = R.T
    inv[:3, 3] = -R.T @ T[:3, 3]
    return inv


# --------------------------------------------------------------------------------------- buffer
@dataclass
class _Link:
    """The samples of one child -> parent link (time-sorted); a static link has one, stamp ignored."""

    parent: str
    static: bool
    stamps: list[int] = field(default_factory=list)
    translations: list[np.ndarray] = field(default_factory=list)
    rotations: list[np.ndarray] = field(default_factory=list)


class TransformBuffer:
    """Static and dynamic transforms of one tree; thread-safe (listener callbacks write while an
    inference thread looks up).

    cache_time_s: how far behind a link's newest sample its samples are kept (tf2: 10 s).
    extrapolation_tolerance_s: a request at most this far outside a link's samples uses the
    nearest sample instead of failing (tf2 itself allows none; 0 keeps tf2's behaviour).
    """

    def __init__(self, cache_time_s: float = 10.0, extrapolation_tolerance_s: float = 0.0) -> None:
        if not cache_time_s > 0:
            raise ValueError(f"TransformBuffer: cache_time_s must be > 0, got {cache_time_s}")
        if not extrapolation_tolerance_s >= 0:
            raise ValueError(
                f"TransformBuffer: extrapolation_tolerance_s must be >= 0, got {extrapolation_tolerance_s}"
            )
        self.cache_ns = int(round(cache_time_s * 1e9))
        self.tolerance_ns = int(round(extrapolation_tolerance_s * 1e9))
        self._links: dict[str, _Link] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ writing
    def set_transform(
        self,
        parent: str,
        child: str,
        stamp_ns: int,
        translation: np.ndarray | list[float],
        rotation_xyzw: np.ndarray | list[float],
        static: bool = False,
    ) -> bool:
        """Add the pose of `child` in `parent` at `stamp_ns`. Returns False when a dynamic sample
        is older than the link's cache (dropped, as tf2 drops TF_OLD_DATA). A new parent for a
        child, or a change between static and dynamic, replaces the child's link (tf2 re-parents).
        """
        parent, child = str(parent).lstrip("/"), str(child).lstrip("/")  # tf2 ignores a leading '/'
        if not parent or not child:
            raise ValueError(f"set_transform: empty frame id (parent {parent!r}, child {child!r})")
        if parent == child:
            raise ValueError(f"set_transform: frame '{child}' cannot be its own parent")
        t = np.asarray(translation, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(t)):
            raise ValueError(f"set_transform {parent} -> {child}: non-finite translation {t.tolist()}")
        q = _quat_normalise(rotation_xyzw, f"set_transform {parent} -> {child}")
        stamp = int(stamp_ns)
        with self._lock:
            link = self._links.get(child)
            if link is None or link.parent != parent or link.static != static:
                link = self._links[child] = _Link(parent, static)
            if static:
                link.stamps, link.translations, link.rotations = [stamp], [t], [q]
                return True
            if link.stamps and stamp < link.stamps[-1] - self.cache_ns:
                return False
            i = bisect.bisect_left(link.stamps, stamp)
            if i < len(link.stamps) and link.stamps[i] == stamp:  # same stamp again: the newer one wins
                link.translations[i], link.rotations[i] = t, q
            else:
                link.stamps.insert(i, stamp)
                link.translations.insert(i, t)
                link.rotations.insert(i, q)
            drop = bisect.bisect_left(link.stamps, link.stamps[-1] - self.cache_ns)
            if drop:
                del link.stamps[:drop], link.translations[:drop], link.rotations[:drop]
        return True

    def set_transform_matrix(self, parent: str, child: str, stamp_ns: int, T: np.ndarray, static: bool = False) -> bool:
        """`set_transform` from a 4x4 pose of `child` in `parent`."""
        T = np.asarray(T, dtype=np.float64)
        if T.shape != (4, 4):
            raise ValueError(f"set_transform_matrix {parent} -> {child}: expected a 4x4 matrix, got {T.shape}")
        return self.set_transform(parent, child, stamp_ns, T[:3, 3], _matrix_to_quat(T[:3, :3]), static)

    def clear(self, keep_static: bool = True) -> None:
        """Forget dynamic transforms (time jumped back: bag loop, simulation reset); static ones stay
        unless keep_static is False (tf2's Buffer.clear() drops all; its listener re-receives the
        latched /tf_static, which a reset of our own must not lose)."""
        with self._lock:
            if keep_static:
                self._links = {c: link for c, link in self._links.items() if link.static}
            else:
                self._links.clear()

    # ------------------------------------------------------------------ reading
    def frames(self) -> set[str]:
        """Every frame named in a transform (as child or parent)."""
        with self._lock:
            return set(self._links) | {link.parent for link in self._links.values()}

    def parent(self, frame: str) -> str | None:
        """The parent of `frame`, None for a root or unknown frame."""
        with self._lock:
            link = self._links.get(frame.lstrip("/"))
            return link.parent if link else None

    def latest_stamp(self, frame: str) -> int | None:
        """Newest sample of `frame`'s link to its parent (None: static, root or unknown)."""
        with self._lock:
            link = self._links.get(frame.lstrip("/"))
            return link.stamps[-1] if link and not link.static and link.stamps else None

    def can_transform(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> bool:
        try:
            self.lookup(target_frame, source_frame, stamp_ns)
        except TransformError:
            return False
        return True

    def lookup(self, target_frame: str, source_frame: str, stamp_ns: int | None = None) -> np.ndarray:
        """T_target_source (4x4 float64) at `stamp_ns` (None: the latest common time).

        Raises UnknownFrameError, NotConnectedError or ExtrapolationError (all ValueErrors) naming
        both frames and the reason."""
        target, source = target_frame.lstrip("/"), source_frame.lstrip("/")
        if not target or not source:
            raise UnknownFrameError(target, source, "empty frame id")
        if target == source:  # as tf2: identity, whether or not the frame is in the tree
            return np.eye(4)
        with self._lock:
            known = set(self._links) | {link.parent for link in self._links.values()}
            for f in (target, source):
                if f not in known:
                    raise UnknownFrameError(target, source, f"frame '{f}' does not exist in the tree")
            up_s = self._chain(target, source, source)
            up_t = self._chain(target, source, target)
            anc_t = {f: i for i, f in enumerate(up_t)}
            common = next((i for i, f in enumerate(up_s) if f in anc_t), None)
            if common is None:
                raise NotConnectedError(
                    target, source, f"they lie in different trees (roots '{up_t[-1]}' and '{up_s[-1]}')"
                )
            path_s = up_s[:common]  # frames whose link is walked from the source up
            path_t = up_t[: anc_t[up_s[common]]]
            stamp = self._latest_common(target, source, path_s + path_t) if stamp_ns is None else int(stamp_ns)
            T_anc_src = np.eye(4)
            for f in reversed(path_s):
                T_anc_src = T_anc_src @ self._sample(target, source, f, self._links[f], stamp)
            T_anc_tgt = np.eye(4)
            for f in reversed(path_t):
                T_anc_tgt = T_anc_tgt @ self._sample(target, source, f, self._links[f], stamp)
        return _inverse(T_anc_tgt) @ T_anc_src

    # ------------------------------------------------------------------ internals (lock held)
    def _chain(self, target: str, source: str, frame: str) -> list[str]:
        """frame, its parent, ... up to the root."""
        chain = [frame]
        while frame in self._links:
            frame = self._links[frame].parent
            chain.append(frame)
            if len(chain) > MAX_DEPTH:
                raise NotConnectedError(target, source, f"the tree above '{chain[0]}' has a cycle")
        return chain

    def _latest_common(self, target: str, source: str, path: list[str]) -> int:
        dynamic = [(f, self._links[f]) for f in path if not self._links[f].static]
        if not dynamic:
            return 0
        newest = min(link.stamps[-1] for _, link in dynamic)
        oldest = max(link.stamps[0] for _, link in dynamic)
        if newest < oldest:
            raise ExtrapolationError(
                target, source, f"the chain's links have no common time (data of '{dynamic[0][0]}' and others "
                f"do not overlap: latest common {newest / 1e9:.6f} s < oldest {oldest / 1e9:.6f} s)"
            )
        return newest

    def _sample(self, target: str, source: str, child: str, link: _Link, stamp: int) -> np.ndarray:
        """Pose of `child` in its parent at `stamp`, interpolated."""
        if link.static:
            return _to_matrix(link.translations[0], link.rotations[0])
        stamps = link.stamps
        first, last = stamps[0], stamps[-1]
        if stamp < first - self.tolerance_ns or stamp > last + self.tolerance_ns:
            when = "before the oldest" if stamp < first else "after the newest"
            raise ExtrapolationError(
                target, source,
                f"{stamp / 1e9:.6f} s is {abs(stamp - (first if stamp < first else last)) / 1e9:.3f} s {when} "
                f"transform '{link.parent}' -> '{child}' (data {first / 1e9:.6f} .. {last / 1e9:.6f} s; stale or "
                f"not yet received)",
            )
        if stamp <= first:
            return _to_matrix(link.translations[0], link.rotations[0])
        if stamp >= last:
            return _to_matrix(link.translations[-1], link.rotations[-1])
        i = bisect.bisect_right(stamps, stamp)  # stamps[i-1] <= stamp < stamps[i]
        s = (stamp - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        t = (1 - s) * link.translations[i - 1] + s * link.translations[i]
        return _to_matrix(t, _slerp(link.rotations[i - 1], link.rotations[i], s))
