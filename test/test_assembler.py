# FrameAssembler with plain Python payloads (no DDS): stamp matching, the newest-complete policy,
# out-of-order input, time resets, temporal history by stamp with gaps, poses from odometry or a
# lookup (TF), and the message counts that /diagnostics reports (they must always add up).
"""Tests of sgn_ros.ros.assembler."""

from __future__ import annotations

import numpy as np
import pytest

from sgn_ros.ros.assembler import DROP_REASONS, FrameAssembler, Neighbour
from sgn_ros.ros.tf_buffer import TransformBuffer

MS = 1_000_000  # ns
S = 1000 * MS


class Msg:
    """A stand-in message: which topic and stamp it came from."""

    def __init__(self, key: str, stamp: int) -> None:
        self.key, self.stamp = key, stamp

    def __repr__(self) -> str:
        return f"Msg({self.key}, {self.stamp})"


def _asm(**kw) -> FrameAssembler:
    args = dict(reference="image", required=["info", "depth"], tolerance_s=0.02, reset_threshold_s=2.0)
    args.update(kw)
    return FrameAssembler(**args)


def _send(a: FrameAssembler, key: str, stamp: int):
    return a.add(key, stamp, Msg(key, stamp))


def _check_balanced(a: FrameAssembler) -> None:
    for key, c in a.counts().items():
        assert c.balanced(), (key, c)
        assert c.pending >= 0, (key, c)


def _pose(t_s: float) -> np.ndarray:
    """Grid pose in odom at time t: driving forward at 5 m/s while turning at 0.2 rad/s."""
    T = np.eye(4)
    yaw = 0.2 * t_s
    T[:2, :2] = [[np.cos(yaw), -np.sin(yaw)], [np.sin(yaw), np.cos(yaw)]]
    T[:3, 3] = [5 * t_s, 0.3 * t_s**2, 0.0]
    return T


def test_matching_within_tolerance() -> None:
    a = _asm()
    assert _send(a, "image", 1 * S) is None
    assert _send(a, "info", 1 * S + 5 * MS) is None
    assert _send(a, "depth", 1 * S - 21 * MS) is None  # 21 ms > 20 ms: not a partner
    f = _send(a, "depth", 1 * S - 20 * MS)  # exactly at the tolerance: a partner
    assert f is not None and f.stamp_ns == 1 * S
    assert {k: m.stamp for k, m in f.messages.items()} == {
        "image": 1 * S, "info": 1 * S + 5 * MS, "depth": 1 * S - 20 * MS,
    }
    c = a.counts()
    assert (c["image"].matched, c["info"].matched, c["depth"].matched) == (1, 1, 1)
    assert c["depth"].dropped["superseded"] == 1  # the -21 ms one: older than the match, never used
    _send(a, "depth", 1 * S + 25 * MS)
    assert a.counts()["depth"].pending == 1  # may still belong to the next image
    _check_balanced(a)


def test_nearest_partner_wins() -> None:
    a = _asm()
    _send(a, "info", 1 * S)
    _send(a, "depth", 1 * S - 15 * MS)
    _send(a, "depth", 1 * S + 4 * MS)
    f = _send(a, "image", 1 * S + 1 * MS)
    assert f.messages["depth"].stamp == 1 * S + 4 * MS
    c = a.counts()["depth"]
    assert c.matched == 1 and c.dropped["superseded"] == 1 and c.pending == 0  # the older one is useless now
    _check_balanced(a)


@pytest.mark.parametrize("order", [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)])
def test_any_arrival_order_completes_one_frame(order) -> None:
    a = _asm()
    keys = ["image", "info", "depth"]
    results = [_send(a, keys[i], 3 * S + i * MS) for i in order]
    assert [r is not None for r in results] == [False, False, True]
    taken = a.take()
    assert taken is not None and taken[0].stamp_ns == 3 * S and taken[1] == []
    assert a.take() is None
    _check_balanced(a)


def test_newest_complete_frame_wins_and_older_images_are_superseded() -> None:
    a = _asm()
    for i in range(3):  # images at 0.1, 0.2, 0.3 s; infos for all
        _send(a, "image", (i + 1) * 100 * MS)
        _send(a, "info", (i + 1) * 100 * MS)
    f = _send(a, "depth", 300 * MS)  # only the newest image's depth arrives
    assert f.stamp_ns == 300 * MS
    c = a.counts()
    assert c["image"].dropped["superseded"] == 2 and c["image"].matched == 1
    assert c["info"].dropped["superseded"] == 2
    # a late depth of an image already superseded is behind depth's last stamp
    _send(a, "depth", 200 * MS)
    assert a.counts()["depth"].dropped["out_of_order"] == 1  # behind depth's last stamp: out of order
    _check_balanced(a)


def test_older_frame_completes_first_newer_one_stays_pending() -> None:
    a = _asm()
    for t in (100 * MS, 200 * MS):
        _send(a, "image", t)
        _send(a, "info", t)
    f = _send(a, "depth", 100 * MS)
    assert f.stamp_ns == 100 * MS
    assert a.counts()["image"].pending == 1
    f = _send(a, "depth", 200 * MS)
    assert f.stamp_ns == 200 * MS
    fc = a.frame_counts()
    assert fc["complete"] == 2 and fc["dropped"] == 1  # the first was replaced before anyone took it
    frame, _ = a.take()
    assert frame.stamp_ns == 200 * MS
    _check_balanced(a)


def test_missing_input_never_completes_and_is_evicted() -> None:
    a = _asm(buffer_size=4)
    events = []
    a._notify = lambda kind, text: events.append(kind)
    for i in range(10):
        assert _send(a, "image", i * 100 * MS) is None
        assert _send(a, "info", i * 100 * MS) is None
    c = a.counts()
    assert c["image"].pending == 4 and c["image"].dropped["evicted"] == 6
    assert c["depth"].received == 0
    assert a.frame_counts()["complete"] == 0 and a.take() is None
    assert "evicted" in events and "info" in a.last_problem
    _check_balanced(a)


def test_out_of_order_message_dropped() -> None:
    events = []
    a = _asm(notify=lambda kind, text: events.append((kind, text)))
    _send(a, "image", 1 * S)
    _send(a, "image", 1 * S - 500 * MS)  # half a second back: out of order, not a reset
    c = a.counts()["image"]
    assert c.dropped["out_of_order"] == 1 and c.pending == 1
    assert events and events[0][0] == "out_of_order" and "image" in events[0][1]
    assert a.frame_counts()["time_resets"] == 0
    _send(a, "image", 1 * S)  # the same stamp again is not out of order
    assert a.counts()["image"].dropped["out_of_order"] == 1
    _check_balanced(a)


def test_time_reset_clears_buffers_and_history() -> None:
    events = []
    a = _asm(temporal_offsets=(-2, -1), notify=lambda kind, text: events.append(kind))
    for i in range(5):
        for k in ("image", "info", "depth"):
            _send(a, k, 100 * S + i * 100 * MS)
    _send(a, "image", 100 * S + 500 * MS)  # waiting when the bag loops
    assert len(a.history()) == 3
    f = _send(a, "image", 1 * S)  # 99.5 s back: the bag started again
    assert f is None
    assert "time_reset" in events and a.frame_counts()["time_resets"] == 1
    assert a.history() == []
    c = a.counts()["image"]
    assert c.dropped["time_reset"] == 1 and c.pending == 1 and c.dropped["out_of_order"] == 0
    # the reset forgot every input's last stamp: info and depth stepping back too is no second
    # reset and no out-of-order input
    _send(a, "info", 1 * S)
    _send(a, "depth", 1 * S)
    assert a.frame_counts()["time_resets"] == 1
    assert a.take()[0].stamp_ns == 1 * S
    _check_balanced(a)


def test_same_frame_resent_keeps_one_history_entry() -> None:
    a = _asm(temporal_offsets=(-1,))
    for _ in range(2):
        for k in ("image", "info", "depth"):
            _send(a, k, 1 * S)
    assert [f.stamp_ns for f in a.history()] == [1 * S]
    assert a.frame_counts()["complete"] == 2
    _check_balanced(a)


def _drive(a: FrameAssembler, stamps: list[int], odom: bool = True) -> None:
    for t in stamps:
        if odom:
            a.add_odometry(t + 3 * MS, _pose((t + 3 * MS) / S))
        for k in ("image", "info", "depth"):
            _send(a, k, t + (1 * MS if k == "depth" else 0))


OFFSETS = (-12, -9, -6, -3)


def test_history_offsets_match_stamps_and_poses() -> None:
    a = _asm(temporal_offsets=OFFSETS)
    stamps = [10 * S + i * 100 * MS for i in range(20)]
    _drive(a, stamps)
    frame, neigh = a.take()
    assert frame.stamp_ns == stamps[-1]
    assert [n.offset for n in neigh] == list(OFFSETS)
    P_cur = _pose((stamps[-1] + 3 * MS) / S)
    for n, off in zip(neigh, OFFSETS):
        assert isinstance(n, Neighbour) and n.reason == ""
        assert n.frame.stamp_ns == stamps[-1 + off]
        P_past = _pose((stamps[-1 + off] + 3 * MS) / S)
        np.testing.assert_allclose(n.current_to_past, np.linalg.inv(P_past) @ P_cur, atol=1e-12)
        # a point of the current grid frame lands where the past frame sees it
        x = np.array([3.0, -1.0, 0.5, 1.0])
        np.testing.assert_allclose(P_past @ (n.current_to_past @ x), P_cur @ x, atol=1e-12)
    assert len(a.history()) == 13
    c = a.counts()["odom"]
    assert c.matched == 5 and c.balanced()


def test_history_gap_leaves_only_that_neighbour_missing() -> None:
    a = _asm(temporal_offsets=OFFSETS)
    stamps = [10 * S + i * 100 * MS for i in range(16)]
    lost = stamps[-1 - 6]
    _drive(a, [t for t in stamps if t != lost])
    frame, neigh = a.take()
    got = {n.offset: (n.frame.stamp_ns if n.frame else None) for n in neigh}
    assert got == {-12: stamps[-13], -9: stamps[-10], -6: None, -3: stamps[-4]}  # not shifted by the gap
    missing = [n for n in neigh if n.frame is None][0]
    assert "offset -6" in missing.reason and missing.current_to_past is None
    assert a.frame_counts()["neighbours_missing"] == 1


def test_history_too_short_and_explicit_period() -> None:
    a = _asm(temporal_offsets=OFFSETS)
    _drive(a, [10 * S])
    _, neigh = a.take()
    assert all(n.frame is None and "too short" in n.reason for n in neigh)
    # with the camera period given, a 2-frame history already serves offset -3 at 0.3 s back
    b = _asm(temporal_offsets=OFFSETS, frame_period_s=0.1)
    _drive(b, [10 * S, 10 * S + 300 * MS])
    _, neigh = b.take()
    assert [n.frame is not None for n in neigh] == [False, False, False, True]


def test_poses_from_lookup_when_no_odometry() -> None:
    """The TF path: poses of the grid frame in odom come from a TransformBuffer lookup."""
    tf = TransformBuffer()
    for i in range(0, 40):
        t = 10 * S + i * 50 * MS
        tf.set_transform_matrix("odom", "sgn_grid", t, _pose(t / S))
    events = []
    a = _asm(
        temporal_offsets=(-3,),
        pose_lookup=lambda stamp: tf.lookup("odom", "sgn_grid", stamp),
        notify=lambda kind, text: events.append((kind, text)),
    )
    stamps = [10 * S + i * 100 * MS for i in range(10)]  # the last (10.9 s) is after TF's data (<= 11.95 s)
    _drive(a, stamps, odom=False)
    frame, (n,) = a.take()
    assert n.frame.stamp_ns == stamps[-4]
    expected = np.linalg.inv(_pose(stamps[-4] / S)) @ _pose(stamps[-1] / S)
    np.testing.assert_allclose(n.current_to_past, expected, atol=1e-9)
    # a frame beyond the transforms: the neighbour is missing and the reason names both frames
    _drive(a, [13 * S + i * 100 * MS for i in range(4)], odom=False)
    frame, (n,) = a.take()
    assert n.frame is None and "'sgn_grid' to 'odom'" in n.reason
    assert events[-1][0] == "pose"
    assert a.counts()["odom"].received == 0


def test_counts_add_up_under_random_input() -> None:
    """Jittered, lossy, reordered streams with resets: every message is matched, dropped with a
    reason, or pending, at every step; every frame's messages lie within the tolerance."""
    rng = np.random.default_rng(0)
    keys = ("image", "info", "depth", "right")
    a = _asm(required=list(keys[1:]), buffer_size=5, temporal_offsets=(-6, -3))
    base = 50 * S
    frames = 0
    for step in range(600):
        if step in (200, 400):
            base -= 30 * S  # bag loop
        t = base + step * 100 * MS
        batch = [(k, t + int(rng.integers(-15, 16)) * MS) for k in keys if rng.random() > 0.15]
        rng.shuffle(batch)
        if rng.random() < 0.1 and batch:  # a late message from an older frame
            k, s = batch[0]
            batch.append((k, s - 300 * MS))
        for k, s in batch:
            f = _send(a, k, s)
            _check_balanced(a)
            if f is not None:
                frames += 1
                for m in f.messages.values():
                    assert abs(m.stamp - f.stamp_ns) <= 20 * MS
        if rng.random() < 0.5:
            a.take()
        if rng.random() < 0.05:
            a.reject("depth", "unreadable header stamp")
    c = a.counts()
    assert frames == a.frame_counts()["complete"] == c["image"].matched > 100
    assert a.frame_counts()["time_resets"] == 2
    for key in keys:
        assert c[key].received == c[key].matched + sum(c[key].dropped.values()) + c[key].pending
        assert set(c[key].dropped) == set(DROP_REASONS)
    assert c["image"].dropped["superseded"] > 0 and c["depth"].dropped["rejected"] > 0
    assert sum(c[k].dropped["out_of_order"] for k in keys) > 0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="distinct"):
        _asm(required=["image"])
    with pytest.raises(ValueError, match="reserved"):
        _asm(required=["odom"])
    with pytest.raises(ValueError, match="negative"):
        _asm(temporal_offsets=(3,))
    with pytest.raises(ValueError, match="reset_threshold_s"):
        _asm(reset_threshold_s=0.01)
    a = _asm()
    with pytest.raises(ValueError, match="unknown input 'lidar'"):
        a.add("lidar", 0, None)
    with pytest.raises(ValueError, match="4x4"):
        a.add_odometry(0, np.eye(3))
