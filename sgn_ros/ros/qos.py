# QoS profiles of sgn_ros's topics from plain parameter values (strings and ints in YAML), with
# errors that name the parameter. Shared by sgn_node and the replay nodes.
"""QoS profile construction from node parameters."""

from __future__ import annotations

from typing import Any

RELIABILITIES = ("reliable", "best_effort")
DURABILITIES = ("volatile", "transient_local")


def make_qos(reliability: str, depth: int, durability: str = "volatile", what: str = "qos") -> Any:
    """A KEEP_LAST QoSProfile.

    Args:
        reliability: ``reliable`` or ``best_effort``. Sensor inputs default to best_effort, which
            matches publishers of either kind; outputs to reliable.
        depth: history depth (>= 1).
        durability: ``volatile`` or ``transient_local`` (latched).
        what: parameter name used in error messages.

    Raises:
        ValueError: unknown reliability / durability or depth < 1.
    """
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    rel = str(reliability).lower()
    if rel not in RELIABILITIES:
        raise ValueError(f"{what}: reliability must be one of {RELIABILITIES}, got {reliability!r}")
    dur = str(durability).lower()
    if dur not in DURABILITIES:
        raise ValueError(f"{what}: durability must be one of {DURABILITIES}, got {durability!r}")
    if int(depth) < 1:
        raise ValueError(f"{what}: depth must be >= 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=ReliabilityPolicy.RELIABLE if rel == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        durability=DurabilityPolicy.VOLATILE if dur == "volatile" else DurabilityPolicy.TRANSIENT_LOCAL,
    )


def subscription_qos_for(offered: list[tuple[str, str]]) -> tuple[str, str]:
    """(reliability, durability) a subscriber should request to match every publisher, as
    ``ros2 bag record`` chooses it: reliable only if all publishers offer reliable, transient_local
    only if all offer transient_local; with no publisher, reliable + volatile.

    WHY: a reliable subscription never matches a best-effort publisher (nothing arrives, and
    nothing says so), and a volatile one misses a latched /tf_static. Asking for the weakest
    policy any publisher offers matches all of them and keeps what all of them give.

    Args:
        offered: (reliability, durability) of each publisher, strings as in `make_qos`
            (e.g. from rclpy's ``get_publishers_info_by_topic``, lower-cased policy names).

    Raises:
        ValueError: an unknown policy name.
    """
    rels, durs = set(), set()
    for rel, dur in offered:
        rel, dur = str(rel).lower(), str(dur).lower()
        if rel not in RELIABILITIES or dur not in DURABILITIES:
            raise ValueError(f"offered QoS ({rel!r}, {dur!r}): expected reliability in {RELIABILITIES}, "
                             f"durability in {DURABILITIES}")
        rels.add(rel)
        durs.add(dur)
    reliability = "best_effort" if "best_effort" in rels else "reliable"
    durability = "transient_local" if durs == {"transient_local"} else "volatile"
    return reliability, durability


def did_you_mean(topic: str, available: list[str], n: int = 3) -> list[str]:
    """Up to `n` of `available` topics that look like `topic`, best first (for a warning such as
    "no publisher on /kitti/camera/image; did you mean /kitti/camera_color_left/image_raw?").

    Topics are compared on their last two name parts first (``image_raw`` vs ``image``), then as
    whole names, so a different prefix (``/kitti/`` vs ``/sensors/``) does not hide a match.
    """
    import difflib

    def tail(t: str) -> str:
        return "/".join(t.strip("/").split("/")[-2:])

    scored = []
    for cand in dict.fromkeys(available):
        if cand == topic:
            continue
        whole = difflib.SequenceMatcher(None, topic, cand).ratio()
        end = difflib.SequenceMatcher(None, tail(topic), tail(cand)).ratio()
        score = max(whole, 0.5 * whole + 0.5 * end)
        if score >= 0.5:
            scored.append((score, cand))
    return [c for _, c in sorted(scored, key=lambda s: (-s[0], s[1]))[:n]]
