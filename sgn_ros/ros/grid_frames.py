# Where sgn_node's voxel grid is: the pose of each sensor frame (camera, point cloud) in the grid
# frame, from TF or, as `camera_pose_source` allows, from a fallback parameter (logged whenever the
# source changes); the grid frame put into the TF tree (/tf_static), under a robot frame or, when
# the parameter pose is used, under the camera; and the projection the image features use, which
# is the reference's (KITTI's camera-0 pose with P2's intrinsics), not the true camera pose.
"""`GridFrames` (sensor poses in the grid frame, the grid in TF) and `reference_projection`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sgn_ros.geometry import camera_translation_from_P, invert_transform, make_transform

__all__ = ["FrameSkipped", "GridFrames", "POSE_SOURCES", "reference_projection"]

POSE_SOURCES = ("auto", "tf", "parameter")


class FrameSkipped(Exception):
    """A frame that cannot be processed for a reason that is not bad input (a missing or stale
    transform): the node counts it under `frames_<kind>` and logs it (throttled)."""

    def __init__(self, kind: str, text: str) -> None:
        super().__init__(text)
        self.kind = kind


def reference_projection(grid_to_camera: np.ndarray, P: Any) -> np.ndarray:
    """grid -> camera transform for the image features, from the camera's TRUE pose.

    The released checkpoints were trained with KITTI's P2 intrinsics and `Tr`, the pose of camera
    0, so image features were sampled as if the camera sat where camera 0 is. A rectified camera's
    P = K [I | t] says where that reference camera is (t = K^-1 P[:, 3], its origin in this
    camera's frame): moving the true pose by -t gives back the reference's projection. P all zero
    (not set) or without an offset (the usual ROS left camera) changes nothing."""
    P = np.asarray(P, dtype=np.float64).reshape(-1)
    if P.size != 12 or not np.any(P[[3, 7, 11]]):
        return np.asarray(grid_to_camera, dtype=np.float64)
    t = camera_translation_from_P(P.reshape(3, 4), "CameraInfo.p")
    return make_transform(translation=-t) @ grid_to_camera


class GridFrames:
    """Poses of sensor frames in the grid frame for one node.

    node: the rclpy node (TF subscriptions or tf2_ros' listener, the /tf_static publisher).
    grid_frame: frame_id of the outputs ('' = none: the fallback parameters are always used).
    grid_parent_frame, grid_pose: when the parent is set, the grid frame is latched under it at
        grid_pose (4x4) on /tf_static.
    mode: ``tf`` (TF only; a missing transform skips the frame), ``parameter`` (the fallback
        always) or ``auto`` (TF when it knows both frames, else the fallback).
    log: (text) -> None for INFO lines (which pose source is used).
    tf_kwargs: TFListener's cache_time_s, extrapolation_tolerance_s, reset_threshold_s.
    """

    def __init__(
        self,
        node: Any,
        grid_frame: str,
        grid_parent_frame: str,
        grid_pose: np.ndarray,
        mode: str,
        log: Callable[[str], None],
        **tf_kwargs: Any,
    ) -> None:
        from sgn_ros.ros.tf_listener import StaticTransformPublisher, TFListener

        if mode not in POSE_SOURCES:
            raise ValueError(f"camera_pose_source: must be one of {POSE_SOURCES}, got {mode!r}")
        self.grid_frame, self.parent, self.mode = grid_frame, grid_parent_frame, mode
        self._log = log
        self.tf = TFListener(node, **tf_kwargs)
        self._static = StaticTransformPublisher(node)
        self._attached: set[str] = set()
        self._said: dict[str, str] = {}
        if grid_parent_frame:
            self._static.send(grid_parent_frame, grid_frame, grid_pose)
            log(f"grid frame '{grid_frame}' published in TF under '{grid_parent_frame}'")

    def lookup(self, target: str, source: str, stamp_ns: int | None = None) -> np.ndarray:
        """T_target_source from TF; raises TransformError (ValueError) naming both frames."""
        return self.tf.lookup(target, source, stamp_ns)

    def to_grid(
        self, frame_id: str, stamp_ns: int, fallback: np.ndarray, what: str, param: str
    ) -> tuple[np.ndarray, bool]:
        """(pose of `frame_id` in the grid frame, whether it came from TF).

        what / param name the sensor ('camera', 'points') and its fallback parameter in the log.
        Raises FrameSkipped('no_transform') when TF must give the pose and cannot (unknown frames
        in mode tf; a stale or future stamp in modes tf and auto)."""
        from sgn_ros.ros.tf_buffer import NotConnectedError, TransformError, UnknownFrameError

        grid, mode = self.grid_frame, self.mode
        from_tf, T, why = False, fallback, "camera_pose_source is parameter"
        if not grid:
            why = "grid_frame is empty"
        elif mode != "parameter":
            if not frame_id:
                if mode == "tf":
                    raise FrameSkipped("no_transform", f"{what}: empty header frame_id, nothing to look up in TF")
                why = "the message has no frame_id"
            elif frame_id == grid:
                from_tf, T = True, np.eye(4)
            elif frame_id in self._attached:
                why = "TF had no such frames; the grid is attached to the camera by this node"
            else:
                try:
                    T, from_tf = self.tf.lookup(grid, frame_id, stamp_ns), True
                except (UnknownFrameError, NotConnectedError) as e:
                    if mode == "tf":
                        raise FrameSkipped("no_transform", f"no transform {grid} <- {frame_id} in TF ({e})") from None
                    why = f"TF has no transform {grid} <- {frame_id}"
                except TransformError as e:  # stale / future: the frames exist, the time does not
                    raise FrameSkipped("no_transform", f"transform {grid} <- {frame_id} not available at "
                                                       f"{stamp_ns / 1e9:.3f} s ({e})") from None
        said = "tf" if from_tf else f"parameter:{why}"
        if self._said.get(f"{what}:{frame_id}") != said:
            self._said[f"{what}:{frame_id}"] = said
            self._log(f"{what} pose: '{frame_id}' in '{grid}' from TF" if from_tf
                      else f"{what} pose: parameter {param} ({why})")
        if not from_tf and what == "camera" and grid and frame_id:
            self._attach(frame_id, T)
        return T, from_tf

    def _attach(self, camera_frame: str, camera_to_grid: np.ndarray) -> None:
        """Put the grid frame into TF under the camera's frame (the parameter pose), once, unless
        it is in the tree already (grid_parent_frame or another publisher)."""
        if camera_frame in self._attached or self.parent:
            return
        buf = getattr(self.tf, "buffer", None)
        if buf is not None and self.grid_frame in buf.frames():
            return
        self._attached.add(camera_frame)
        self._static.send(camera_frame, self.grid_frame, invert_transform(camera_to_grid))
        self._log(f"grid frame '{self.grid_frame}' published in TF under '{camera_frame}' (parameter camera_to_grid)")

    @property
    def backend(self) -> str:
        return self.tf.backend

    def close(self) -> None:
        self.tf.close()
