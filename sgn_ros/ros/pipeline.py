# A staged frame pipeline for sgn_node (no rclpy): decode -> infer -> publish, each stage in its
# own thread, so that the network runs frame t+1 while the encoders / publishers finish frame t and
# the decoder already prepares frame t+2. A camera node must keep pace with the camera, not queue
# behind it: stages are joined by 1-slot "newest wins" mailboxes. A newer item replaces an older
# one nobody has taken yet (the older one is counted as dropped at that stage), so memory is
# bounded (at most one waiting and one running item per stage) and latency never grows with a
# backlog. Each stage counts what it received, finished, dropped and failed, keeps its recent
# durations (p50 / p95 for /diagnostics) and reports exceptions through a callback while the
# pipeline keeps running. Stopping closes every mailbox, so idle stages leave at once; a stage
# busy in a long call (a network forward) cannot be interrupted, but it is a daemon thread, the
# others do not wait for it, and whatever it produces afterwards is discarded.
"""1-slot newest-wins staged pipeline with per-stage counters and timings."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Mailbox", "StageStats", "StagedPipeline", "SKIP", "NODE_STAGES", "node_pipeline"]

#: Returned by a stage callable: "this item ends here" (e.g. a frame the decoder cannot complete).
#: Counted as skipped, not as an output; nothing is forwarded. (None is a legal item.)
SKIP = object()
_CLOSED = object()


class Mailbox:
    """One slot. `put` replaces an unconsumed item (returns True when it did: a drop); `get`
    blocks until an item is there or the box is closed (then returns `_CLOSED`)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: Any = _CLOSED
        self._full = False
        self._closed = False

    def put(self, item: Any) -> bool:
        with self._cond:
            if self._closed:
                return False
            replaced = self._full
            self._item, self._full = item, True
            self._cond.notify()
            return replaced

    def get(self) -> Any:
        with self._cond:
            while not self._full and not self._closed:
                self._cond.wait()
            if self._closed:
                return _CLOSED
            item, self._item, self._full = self._item, _CLOSED, False
            return item

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._item, self._full = _CLOSED, False
            self._cond.notify_all()

    @property
    def pending(self) -> int:
        with self._cond:
            return int(self._full)


@dataclass
class StageStats:
    """A snapshot of one stage. received = started + dropped + waiting; started = out + skipped +
    failed + busy. p50/p95 over the last `window` calls, last_ms the latest call alone (a
    benchmark replaying slowly reads one frame's own stage times from it); NaN before the first."""

    name: str
    received: int
    started: int
    out: int
    skipped: int
    dropped: int
    failed: int
    busy: int
    waiting: int
    p50_ms: float
    p95_ms: float
    last_error: str
    last_ms: float = float("nan")

    def key_values(self) -> dict[str, str]:
        """/diagnostics key-values of this stage: ``stage.<name>.<counter>``."""
        p = f"stage.{self.name}."
        return {
            p + "in": str(self.started), p + "out": str(self.out), p + "skipped": str(self.skipped),
            p + "dropped": str(self.dropped), p + "failed": str(self.failed),
            p + "p50_ms": f"{self.p50_ms:.1f}", p + "p95_ms": f"{self.p95_ms:.1f}",
            p + "last_ms": f"{self.last_ms:.1f}",
            p + "last_error": self.last_error,
        }


class _Stage:
    def __init__(self, name: str, fn: Callable[[Any], Any], window: int) -> None:
        self.name, self.fn = name, fn
        self.inbox = Mailbox()
        self.lock = threading.Lock()
        self.received = self.started = self.out = self.skipped = self.dropped = self.failed = self.busy = 0
        self.last_error = ""
        self.durations: deque[float] = deque(maxlen=window)
        self.thread: threading.Thread | None = None

    def offer(self, item: Any) -> None:
        with self.lock:  # counted under the lock so that a snapshot always adds up
            self.received += 1
            if self.inbox.put(item):
                self.dropped += 1

    def snapshot(self) -> StageStats:
        with self.lock:
            d = np.asarray(self.durations, dtype=np.float64) * 1000.0
            p50, p95 = (np.percentile(d, [50, 95]) if d.size else (float("nan"),) * 2)
            return StageStats(
                self.name, self.received, self.started, self.out, self.skipped, self.dropped, self.failed,
                self.busy, self.received - self.started - self.dropped, float(p50), float(p95), self.last_error,
                float(d[-1]) if d.size else float("nan"),
            )


class StagedPipeline:
    """Stage threads joined by newest-wins mailboxes.

    Args:
        stages: (name, callable) in order; each callable takes the previous stage's output (the
            first takes what `submit` is given) and returns the next stage's input, or `SKIP`.
        on_error: called as on_error(stage_name, exception, item) from the failing stage's thread
            (exceptions inside it are swallowed: reporting must not stop the pipeline).
        window: how many recent durations per stage the p50 / p95 are computed over.
    """

    def __init__(
        self,
        stages: Sequence[tuple[str, Callable[[Any], Any]]],
        on_error: Callable[[str, BaseException, Any], None] | None = None,
        window: int = 200,
    ) -> None:
        if not stages:
            raise ValueError("StagedPipeline: give at least one (name, callable) stage")
        names = [n for n, _ in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"StagedPipeline: stage names must be unique, got {names}")
        for n, fn in stages:
            if not callable(fn):
                raise ValueError(f"StagedPipeline: stage {n!r} is not callable ({type(fn).__name__})")
        self._stages = [_Stage(n, fn, int(window)) for n, fn in stages]
        self._on_error = on_error
        self._running = False
        self._stopped = False

    @property
    def names(self) -> list[str]:
        return [s.name for s in self._stages]

    def start(self) -> StagedPipeline:
        if self._running or self._stopped:
            raise RuntimeError("StagedPipeline: start() once, before stop()")
        for i, st in enumerate(self._stages):
            nxt = self._stages[i + 1] if i + 1 < len(self._stages) else None
            st.thread = threading.Thread(target=self._run, args=(st, nxt), name=f"pipeline-{st.name}", daemon=True)
            st.thread.start()
        self._running = True
        return self

    def submit(self, item: Any) -> None:
        """Hand an item to the first stage (replacing one it has not started yet); never blocks."""
        if not self._running:
            raise RuntimeError("StagedPipeline: submit() needs a started, not stopped pipeline")
        self._stages[0].offer(item)

    def _run(self, st: _Stage, nxt: _Stage | None) -> None:
        while True:
            item = st.inbox.get()
            if item is _CLOSED:
                return
            with st.lock:
                st.started += 1
                st.busy = 1
            t0 = time.perf_counter()
            try:
                result = st.fn(item)
            except Exception as e:  # a stage's failure is counted and reported, never fatal
                with st.lock:
                    st.busy = 0
                    st.failed += 1
                    st.last_error = f"{type(e).__name__}: {e}"
                    st.durations.append(time.perf_counter() - t0)
                if self._on_error is not None:
                    try:
                        self._on_error(st.name, e, item)
                    except Exception:  # noqa: S110 - a broken reporter must not kill the stage
                        pass
                continue
            with st.lock:
                st.durations.append(time.perf_counter() - t0)
                if result is SKIP:
                    st.skipped += 1
                else:
                    st.out += 1
            if result is not SKIP and nxt is not None:
                nxt.offer(result)
            with st.lock:  # idle only once the result is handed on (`idle` is then exact)
                st.busy = 0

    def stop(self, timeout: float = 5.0) -> list[str]:
        """Close every mailbox and join the threads within `timeout` seconds in all.

        Returns the names of stages still busy in a call after the timeout (daemon threads: they
        end when that call returns, and their results are discarded). Idempotent.
        """
        self._running = False
        self._stopped = True
        for st in self._stages:
            st.inbox.close()
        deadline = time.monotonic() + max(0.0, timeout)
        left = []
        # idle stages first: they leave at once, and a busy one must not use up their share
        for st in sorted(self._stages, key=lambda s: s.busy):
            if st.thread is None:
                continue
            st.thread.join(max(0.0, deadline - time.monotonic()))
            if st.thread.is_alive():
                left.append(st.name)
        return [n for n in self.names if n in left]

    def idle(self) -> bool:
        """True when no stage is running or holding an item (everything submitted has been handled)."""
        return all(not s.busy and not s.waiting for s in self.stats())

    def stats(self) -> list[StageStats]:
        """Per-stage snapshots, in stage order."""
        return [st.snapshot() for st in self._stages]

    def key_values(self) -> dict[str, str]:
        """All stages' /diagnostics key-values (`StageStats.key_values`)."""
        out: dict[str, str] = {}
        for s in self.stats():
            out.update(s.key_values())
        return out


#: stage names of `node_pipeline`, hence its /diagnostics keys ``stage.<name>.p50_ms`` etc.
NODE_STAGES = ("decode", "infer", "publish")


def node_pipeline(
    decode: Callable[[Any], Any],
    infer: Callable[[Any], Any],
    publish: Callable[[Any, Any], Any],
    on_error: Callable[[str, BaseException, Any], None] | None = None,
    window: int = 200,
) -> StagedPipeline:
    """sgn_node's three stages: decode(frame) -> decoded, infer(decoded) -> prediction,
    publish(prediction, frame). The frame travels with its decoded input and its prediction, so
    that publish has the stamp / header; a stage returning `SKIP` ends that frame. Not started.
    """

    def run_decode(frame: Any) -> Any:
        decoded = decode(frame)
        return SKIP if decoded is SKIP else (frame, decoded)

    def run_infer(item: tuple[Any, Any]) -> Any:
        prediction = infer(item[1])
        return SKIP if prediction is SKIP else (item[0], prediction)

    def run_publish(item: tuple[Any, Any]) -> Any:
        return publish(item[1], item[0])

    return StagedPipeline(list(zip(NODE_STAGES, (run_decode, run_infer, run_publish))), on_error, window)
