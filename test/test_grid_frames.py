# reference_projection against the obvious version: KITTI's P2 = K [I | t] projects camera-0
# coordinates; the reference samples image features with K and camera 0's pose (Tr), so from the
# true camera-2 pose the projection must give back camera 0's pose. GridFrames itself runs in
# sgn_node over DDS (test_node.py: TF, parameter fallback, the grid frame in /tf_static).
"""Tests of sgn_ros.ros.grid_frames.reference_projection."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built: run scripts/build_ros.sh")

from sgn_ros.geometry import apply_transform, invert_transform, make_transform, xyz_rpy_to_matrix  # noqa: E402
from sgn_ros.ros.grid_frames import reference_projection  # noqa: E402

K = np.array([[721.5, 0.0, 609.6], [0.0, 721.5, 172.9], [0.0, 0.0, 1.0]])


def test_reference_projection_gives_back_camera_0() -> None:
    rng = np.random.default_rng(0)
    t = np.array([0.0599, -0.0003, 0.0027])  # KITTI's image_2 relative to camera 0
    P = np.hstack([K, (K @ t)[:, None]])
    tr = xyz_rpy_to_matrix([0.27, 0.0, -0.08, -np.pi / 2, 0.0, -np.pi / 2])  # grid -> camera 0 (Tr)
    true = make_transform(translation=t) @ tr  # grid -> camera 2
    got = reference_projection(true, P.reshape(-1))
    np.testing.assert_allclose(got, tr, atol=1e-12)
    # the obvious version: P applied to camera-0 coordinates projects like K on the true camera
    X = rng.uniform([5, -10, -1], [40, 10, 2], (50, 3))
    cam0 = apply_transform(tr, X)
    uv_p = (P @ np.hstack([cam0, np.ones((50, 1))]).T).T
    uv_k = (K @ apply_transform(true, X).T).T
    np.testing.assert_allclose(uv_p[:, :2] / uv_p[:, 2:], uv_k[:, :2] / uv_k[:, 2:], atol=1e-9)


def test_no_offset_or_unset_P_keeps_the_pose() -> None:
    T = invert_transform(xyz_rpy_to_matrix([0.3, 0.1, 1.2, -np.pi / 2, 0.0, -np.pi / 2]))
    np.testing.assert_array_equal(reference_projection(T, np.hstack([K, np.zeros((3, 1))]).reshape(-1)), T)
    np.testing.assert_array_equal(reference_projection(T, [0.0] * 12), T)
    with pytest.raises(ValueError, match="CameraInfo.p"):
        reference_projection(T, np.hstack([np.zeros((3, 3)), np.ones((3, 1))]).reshape(-1))
