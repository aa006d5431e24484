"""StagedPipeline (sgn_ros.ros.pipeline): overlap, newest-wins drops, counters, stop while busy, errors.

Ordering is asserted with events (a stage waits for another to be inside its call), never with
timing thresholds; the timeouts only turn a deadlock into a failure.
"""

from __future__ import annotations

import threading
import time

import pytest

from sgn_ros.ros.pipeline import SKIP, Mailbox, StagedPipeline

WAIT = 20.0  # seconds: only reached when the behaviour under test is broken


def _wait_for(cond, timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.002)
    return cond()


def _feed_one_by_one(pipe: StagedPipeline, items) -> None:
    """Submit each item once the pipeline is idle again (no drops), then stop it."""
    try:
        for i in items:
            pipe.submit(i)
            assert _wait_for(pipe.idle)
    finally:
        assert pipe.stop() == []


def test_mailbox_newest_wins_and_close() -> None:
    box = Mailbox()
    assert box.put(1) is False
    assert box.put(2) is True  # replaced 1
    assert box.pending == 1
    assert box.get() == 2
    got = []
    t = threading.Thread(target=lambda: got.append(box.get()))
    t.start()
    box.close()
    t.join(WAIT)
    assert not t.is_alive() and got and got[0] is not None and got[0] != 2
    assert box.put(3) is False and box.pending == 0  # closed: discarded


def test_stage_one_of_next_frame_overlaps_stage_two() -> None:
    first_started = {1: threading.Event()}
    second_started = {0: threading.Event()}
    saw = {}

    def first(i):
        if i == 1:
            first_started[1].set()
            saw["second_running_while_first_of_1"] = second_started[0].wait(WAIT)
        return i

    def second(i):
        if i == 0:
            second_started[0].set()
            saw["first_of_1_running_while_second_of_0"] = first_started[1].wait(WAIT)
        return i

    done = []
    pipe = StagedPipeline([("a", first), ("b", second), ("c", done.append)]).start()
    try:
        pipe.submit(0)
        assert _wait_for(lambda: second_started[0].is_set())
        pipe.submit(1)
        assert _wait_for(lambda: 1 in done)
    finally:
        assert pipe.stop() == []
    assert saw == {"second_running_while_first_of_1": True, "first_of_1_running_while_second_of_0": True}
    # b finishes 0 and 1 back to back: c may take both or see 0 replaced by 1 (newest wins)
    c = pipe.stats()[2]
    assert done[-1] == 1 and c.received == 2 and c.started + c.dropped == 2 and len(done) == c.started


def test_newest_wins_drops_are_counted_and_counters_add_up() -> None:
    gate, inside = threading.Event(), threading.Event()
    outputs = []

    def slow(i):
        inside.set()
        gate.wait(WAIT)
        return i * 10

    pipe = StagedPipeline([("slow", slow), ("sink", outputs.append)]).start()
    try:
        pipe.submit(0)
        assert inside.wait(WAIT)
        for i in (1, 2, 3):  # 1 and 2 are replaced before `slow` is free again
            pipe.submit(i)
        s = pipe.stats()[0]
        assert (s.received, s.started, s.dropped, s.waiting, s.busy) == (4, 1, 2, 1, 1)
        gate.set()
        assert _wait_for(lambda: 30 in outputs)
    finally:
        assert pipe.stop() == []
    slow_s, sink_s = pipe.stats()
    assert (slow_s.received, slow_s.started, slow_s.out, slow_s.dropped, slow_s.failed) == (4, 2, 2, 2, 0)
    assert slow_s.received == slow_s.started + slow_s.dropped + slow_s.waiting
    # 0 and 30 come back to back: the sink takes both, or 30 replaced 0 (a drop there)
    assert sink_s.received == slow_s.out == sink_s.started + sink_s.dropped
    assert outputs[-1] == 30 and len(outputs) == sink_s.out
    assert slow_s.p50_ms >= 0 and slow_s.p95_ms >= slow_s.p50_ms
    kv = pipe.key_values()
    assert kv["stage.slow.dropped"] == "2" and kv["stage.sink.in"] == str(len(outputs)) and "stage.slow.p95_ms" in kv
    assert float(kv["stage.slow.last_ms"]) == pytest.approx(slow_s.last_ms, abs=0.05) and slow_s.last_ms >= 0


def test_skip_forwards_nothing() -> None:
    outputs = []
    pipe = StagedPipeline([("filter", lambda i: SKIP if i % 2 else i), ("sink", outputs.append)]).start()
    _feed_one_by_one(pipe, range(4))
    f = pipe.stats()[0]
    assert (f.out, f.skipped) == (2, 2) and outputs == [0, 2]


def test_stop_while_a_stage_is_busy_does_not_wait_for_it() -> None:
    release, inside = threading.Event(), threading.Event()
    after = []

    def stuck(i):
        inside.set()
        release.wait(WAIT)  # a long network call
        return i

    pipe = StagedPipeline([("decode", lambda i: i), ("infer", stuck), ("publish", after.append)]).start()
    threads = {t.name: t for t in threading.enumerate() if t.name.startswith("pipeline-")}
    try:
        pipe.submit(1)
        assert inside.wait(WAIT)
        left = pipe.stop(timeout=0.5)
        assert left == ["infer"]
        assert not threads["pipeline-decode"].is_alive() and not threads["pipeline-publish"].is_alive()
        with pytest.raises(RuntimeError):
            pipe.submit(2)
    finally:
        release.set()
    threads["pipeline-infer"].join(WAIT)
    assert not threads["pipeline-infer"].is_alive()
    assert after == []  # the late result is discarded: publish had stopped
    assert pipe.stop() == []  # idempotent


def test_exceptions_are_counted_reported_and_the_pipeline_keeps_running() -> None:
    errors = []
    outputs = []

    def picky(i):
        if i == 1:
            raise ValueError(f"bad frame {i}")
        return i

    def broken_reporter(name, exc, item):
        errors.append((name, str(exc), item))
        raise RuntimeError("reporter fails too")

    pipe = StagedPipeline([("infer", picky), ("sink", outputs.append)], on_error=broken_reporter).start()
    _feed_one_by_one(pipe, range(3))
    s = pipe.stats()[0]
    assert (s.started, s.out, s.failed) == (3, 2, 1)
    assert s.last_error == "ValueError: bad frame 1"
    assert errors == [("infer", "bad frame 1", 1)]
    assert outputs == [0, 2]


def test_bad_construction() -> None:
    with pytest.raises(ValueError, match="at least one"):
        StagedPipeline([])
    with pytest.raises(ValueError, match="unique"):
        StagedPipeline([("a", str), ("a", str)])
    with pytest.raises(ValueError, match="not callable"):
        StagedPipeline([("a", 3)])


def test_node_pipeline_carries_the_frame_to_publish() -> None:
    from sgn_ros.ros.pipeline import NODE_STAGES, node_pipeline

    published = []
    pipe = node_pipeline(
        decode=lambda frame: SKIP if frame["stamp"] == 2 else frame["stamp"] * 10,
        infer=lambda decoded: decoded + 1,
        publish=lambda prediction, frame: published.append((frame["stamp"], prediction)),
    ).start()
    _feed_one_by_one(pipe, [{"stamp": s} for s in (1, 2, 3)])
    assert published == [(1, 11), (3, 31)]
    assert pipe.names == list(NODE_STAGES)
    assert pipe.key_values()["stage.decode.skipped"] == "1"
