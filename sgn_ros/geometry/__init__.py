# The geometry layer of sgn_ros: the one place where rigid transforms, quaternions, camera
# models (intrinsics, the camera offset and stereo baseline from a projection matrix P, fitting
# an image to the network with its K), voxel centres / points-in-grid and depth -> points are
# written. Pure functions on NumPy arrays (and torch tensors where the network needs them on a
# device); no ROS, no model, no dataset imports: every other layer may import this one.
"""Geometry layer: SE(3) and quaternions, pinhole cameras, voxel centres, depth back-projection."""

from sgn_ros.geometry.camera import (
    FitPlan,
    camera_offset_from_P,
    camera_translation_from_P,
    check_intrinsics,
    crop_or_pad,
    fit_image,
    fit_intrinsics,
    resize_image,
    stereo_baseline_from_P,
)
from sgn_ros.geometry.depth import depth_to_points
from sgn_ros.geometry.transforms import (
    apply_transform,
    check_transform,
    invert_transform,
    make_transform,
    matrix_to_quaternion,
    quaternion_to_matrix,
    xyz_rpy_to_matrix,
)
from sgn_ros.geometry.voxels import points_in_grid, voxel_centres

__all__ = [
    "apply_transform",
    "camera_offset_from_P",
    "camera_translation_from_P",
    "check_intrinsics",
    "check_transform",
    "crop_or_pad",
    "depth_to_points",
    "FitPlan",
    "fit_image",
    "fit_intrinsics",
    "invert_transform",
    "make_transform",
    "matrix_to_quaternion",
    "points_in_grid",
    "quaternion_to_matrix",
    "resize_image",
    "stereo_baseline_from_P",
    "voxel_centres",
    "xyz_rpy_to_matrix",
]
