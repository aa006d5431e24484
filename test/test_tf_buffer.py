# TransformBuffer against a slow obvious version: every link's pose is a known continuous function
# of time (constant linear and angular velocity, for which linear interpolation + slerp are exact),
# and the expected transform is the explicit matrix product along both chains to the root.
"""Tests of sgn_ros.ros.tf_buffer (tf2 lookup semantics, no ROS needed)."""

from __future__ import annotations

import numpy as np
import pytest

from sgn_ros.ros.tf_buffer import (
    ExtrapolationError,
    NotConnectedError,
    TransformBuffer,
    TransformError,
    UnknownFrameError,
    _matrix_to_quat,
    _quat_to_matrix,
)

S = 1_000_000_000  # ns per second


def _rot(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues' formula (independent of the buffer's quaternion code)."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


class _Motion:
    """Pose of a child in its parent: T(t) = [R0 Rot(axis, w t) | p0 + v t]."""

    def __init__(self, rng: np.random.Generator, moving: bool) -> None:
        self.R0 = _rot(rng.normal(size=3), rng.uniform(-np.pi, np.pi))
        self.p0 = rng.normal(size=3)
        self.v = rng.normal(size=3) if moving else np.zeros(3)
        self.axis = rng.normal(size=3)
        self.w = rng.uniform(-1.0, 1.0) if moving else 0.0

    def __call__(self, t: float) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = self.R0 @ _rot(self.axis, self.w * t)
        T[:3, 3] = self.p0 + self.v * t
        return T


# child -> (parent, static?) ; two trees: map ... and a separate one rooted at "elsewhere"
TREE = {
    "odom": ("map", False),
    "base_link": ("odom", False),
    "velodyne": ("base_link", True),
    "camera": ("base_link", True),
    "camera_optical": ("camera", True),
    "arm": ("base_link", False),
    "tool": ("arm", True),
    "marker": ("elsewhere", True),
}


def _world(motions: dict[str, _Motion], frame: str, t: float) -> np.ndarray:
    """Slow obvious version: pose of `frame` in its root, explicit product down the chain."""
    T = np.eye(4)
    while frame in TREE:
        T = motions[frame](t) @ T
        frame = TREE[frame][0]
    return T


@pytest.fixture
def filled() -> tuple[TransformBuffer, dict[str, _Motion]]:
    rng = np.random.default_rng(7)
    motions = {c: _Motion(rng, moving=not static) for c, (_, static) in TREE.items()}
    buf = TransformBuffer(cache_time_s=10.0)
    for child, (parent, static) in TREE.items():
        if static:
            buf.set_transform_matrix(parent, child, 0, motions[child](0.0), static=True)
    # dynamic links sampled at 10 Hz over 0..5 s, each with its own phase, inserted shuffled
    samples = []
    for k, (child, (parent, static)) in enumerate(TREE.items()):
        if not static:
            samples += [(parent, child, int((i * 0.1 + 0.013 * k) * S)) for i in range(51)]
    for j in rng.permutation(len(samples)):
        parent, child, stamp = samples[j]
        T = motions[child](stamp / S)
        assert buf.set_transform(parent, child, stamp, T[:3, 3], _matrix_to_quat(T[:3, :3]))
    return buf, motions


@pytest.mark.parametrize(
    "target,source",
    [
        ("base_link", "camera_optical"),  # static chain
        ("camera_optical", "base_link"),
        ("map", "camera_optical"),  # dynamic + static
        ("odom", "velodyne"),
        ("velodyne", "camera_optical"),  # siblings below a common parent
        ("tool", "camera_optical"),  # dynamic branch vs static branch
        ("camera_optical", "map"),
    ],
)
def test_lookup_matches_explicit_chain_product(filled, target: str, source: str) -> None:
    buf, motions = filled
    rng = np.random.default_rng(1)
    for t in rng.uniform(0.1, 4.9, size=20):
        stamp = int(t * S)
        expected = np.linalg.inv(_world(motions, target, stamp / S)) @ _world(motions, source, stamp / S)
        got = buf.lookup(target, source, stamp)
        np.testing.assert_allclose(got, expected, atol=1e-9)


def test_lookup_is_consistent(filled) -> None:
    buf, _ = filled
    t = int(2.345 * S)
    a = buf.lookup("map", "camera_optical", t)
    b = buf.lookup("camera_optical", "map", t)
    np.testing.assert_allclose(a @ b, np.eye(4), atol=1e-12)
    via = buf.lookup("map", "base_link", t) @ buf.lookup("base_link", "camera_optical", t)
    np.testing.assert_allclose(a, via, atol=1e-12)
    np.testing.assert_array_equal(buf.lookup("odom", "odom", t), np.eye(4))
    np.testing.assert_array_equal(buf.lookup("nowhere", "nowhere", t), np.eye(4))  # as tf2


def test_static_chain_holds_at_any_time(filled) -> None:
    buf, motions = filled
    expected = np.linalg.inv(motions["camera"](0) @ motions["camera_optical"](0))
    for t in (0, 10**15, None):
        np.testing.assert_allclose(buf.lookup("camera_optical", "base_link", t), expected, atol=1e-12)


def test_latest_common_time(filled) -> None:
    buf, motions = filled
    # newest samples: odom 5.0 s, base_link 5.013 s (arm 5.065 s is not on the chain) -> 5.0 s
    got = buf.lookup("map", "velodyne", None)
    t = 5.0
    expected = _world(motions, "velodyne", t)
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert buf.latest_stamp("base_link") == int((50 * 0.1 + 0.013) * S)
    assert buf.latest_stamp("velodyne") is None


def test_errors_name_both_frames_and_the_reason(filled) -> None:
    buf, _ = filled
    with pytest.raises(UnknownFrameError, match="'ghost'.*does not exist") as e:
        buf.lookup("map", "ghost", 0)
    assert isinstance(e.value, ValueError) and isinstance(e.value, TransformError)
    assert "'ghost' to 'map'" in str(e.value)
    assert (e.value.target_frame, e.value.source_frame) == ("map", "ghost")
    with pytest.raises(NotConnectedError, match="different trees.*'elsewhere'.*'map'"):
        buf.lookup("marker", "camera_optical", int(1 * S))
    with pytest.raises(UnknownFrameError, match="empty"):
        buf.lookup("", "map")


def test_extrapolation_refused_beyond_tolerance(filled) -> None:
    buf, _ = filled
    late = int(5.5 * S)
    with pytest.raises(ExtrapolationError, match="after the newest transform 'map' -> 'odom'") as e:
        buf.lookup("map", "base_link", late)
    assert "'base_link' to 'map'" in str(e.value)
    with pytest.raises(ExtrapolationError, match="before the oldest"):
        buf.lookup("map", "base_link", 0)  # odom's data starts at 0 s, base_link's at 0.013 s
    assert not buf.can_transform("map", "base_link", late)
    assert buf.can_transform("map", "base_link", int(2 * S))


def test_extrapolation_within_tolerance_uses_nearest_sample() -> None:
    buf = TransformBuffer(extrapolation_tolerance_s=0.05)
    buf.set_transform("odom", "base", 1 * S, [1, 0, 0], [0, 0, 0, 1])
    buf.set_transform("odom", "base", 2 * S, [2, 0, 0], [0, 0, 0, 1])
    assert buf.lookup("odom", "base", 2 * S + 40_000_000)[0, 3] == 2.0
    assert buf.lookup("odom", "base", 1 * S - 40_000_000)[0, 3] == 1.0
    with pytest.raises(ExtrapolationError):
        buf.lookup("odom", "base", 2 * S + 60_000_000)
    # one sample only: usable within the tolerance of its stamp (tf2 without tolerance: exact stamp only)
    one = TransformBuffer()
    one.set_transform("odom", "base", 1 * S, [1, 0, 0], [0, 0, 0, 1])
    assert one.lookup("odom", "base", 1 * S)[0, 3] == 1.0
    with pytest.raises(ExtrapolationError):
        one.lookup("odom", "base", 1 * S + 1)


def test_interpolation_takes_shorter_arc_and_midpoint() -> None:
    buf = TransformBuffer()
    q0 = np.array([0, 0, np.sin(0.4), np.cos(0.4)])  # yaw 0.8 rad
    q1 = -np.array([0, 0, np.sin(0.6), np.cos(0.6)])  # yaw 1.2 rad, given with the opposite sign
    buf.set_transform("a", "b", 0, [0, 0, 0], q0)
    buf.set_transform("a", "b", 2 * S, [2, 4, 6], q1)
    T = buf.lookup("a", "b", 1 * S)
    np.testing.assert_allclose(T[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(T[:3, :3], _rot([0, 0, 1], 1.0), atol=1e-12)


def test_cache_length_drops_old_samples() -> None:
    buf = TransformBuffer(cache_time_s=1.0)
    for i in range(30):  # 0 .. 2.9 s at 10 Hz
        buf.set_transform("odom", "base", i * S // 10, [i, 0, 0], [0, 0, 0, 1])
    with pytest.raises(ExtrapolationError, match="before the oldest"):
        buf.lookup("odom", "base", int(1.5 * S))
    assert buf.lookup("odom", "base", int(2.0 * S))[0, 3] == pytest.approx(20)
    assert not buf.set_transform("odom", "base", int(0.5 * S), [0, 0, 0], [0, 0, 0, 1])  # too old: dropped
    assert buf.set_transform("odom", "base", int(2.95 * S), [0, 0, 0], [0, 0, 0, 1])  # late but in the cache


def test_same_stamp_replaces_and_reparenting() -> None:
    buf = TransformBuffer()
    buf.set_transform("odom", "base", S, [1, 0, 0], [0, 0, 0, 1])
    buf.set_transform("odom", "base", S, [3, 0, 0], [0, 0, 0, 1])
    assert buf.lookup("odom", "base", S)[0, 3] == 3.0
    buf.set_transform("map", "base", S, [5, 0, 0], [0, 0, 0, 1])  # a new parent replaces the link
    assert buf.parent("base") == "map"
    assert buf.lookup("map", "base", S)[0, 3] == 5.0
    assert buf.frames() == {"map", "base"}  # odom no longer named by any transform


def test_clear_keeps_static_transforms() -> None:
    buf = TransformBuffer()
    buf.set_transform("base", "cam", 0, [0, 0, 1], [0, 0, 0, 1], static=True)
    buf.set_transform("odom", "base", S, [1, 0, 0], [0, 0, 0, 1])
    buf.clear()
    assert buf.lookup("base", "cam", 123)[2, 3] == 1.0
    with pytest.raises(UnknownFrameError):
        buf.lookup("odom", "cam", S)
    buf.clear(keep_static=False)
    assert buf.frames() == set()


def test_bad_input_is_refused() -> None:
    buf = TransformBuffer()
    with pytest.raises(ValueError, match="quaternion"):
        buf.set_transform("a", "b", 0, [0, 0, 0], [0, 0, 0, 0])
    with pytest.raises(ValueError, match="non-finite"):
        buf.set_transform("a", "b", 0, [np.nan, 0, 0], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="own parent"):
        buf.set_transform("a", "a", 0, [0, 0, 0], [0, 0, 0, 1])
    with pytest.raises(ValueError, match="cache_time_s"):
        TransformBuffer(cache_time_s=0)
    buf.set_transform("/a", "/b", 0, [0, 0, 0], [0, 0, 0, 1], static=True)  # tf2 strips a leading '/'
    assert buf.can_transform("a", "b")


def test_cycle_is_reported() -> None:
    buf = TransformBuffer()
    buf.set_transform("a", "b", 0, [0, 0, 0], [0, 0, 0, 1], static=True)
    buf.set_transform("b", "c", 0, [0, 0, 0], [0, 0, 0, 1], static=True)
    buf.set_transform("c", "a", 0, [0, 0, 0], [0, 0, 0, 1], static=True)
    buf.set_transform("x", "y", 0, [0, 0, 0], [0, 0, 0, 1], static=True)
    with pytest.raises(NotConnectedError, match="cycle"):
        buf.lookup("y", "a")


def test_quaternion_helpers_round_trip() -> None:
    rng = np.random.default_rng(3)
    for _ in range(200):
        R = _rot(rng.normal(size=3), rng.uniform(-np.pi, np.pi))
        np.testing.assert_allclose(_quat_to_matrix(_matrix_to_quat(R)), R, atol=1e-12)
    for angle in (np.pi, -np.pi + 1e-9):  # the branches away from a positive trace
        for axis in np.eye(3):
            R = _rot(axis, angle)
            np.testing.assert_allclose(_quat_to_matrix(_matrix_to_quat(R)), R, atol=1e-9)
