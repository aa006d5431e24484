"""Pictures of semantic voxel grids (bird's-eye view, camera view, labelled panels, PNG files)."""

from sgn_ros.viz.render import render_bev, render_perspective, save_png, side_by_side

__all__ = ["render_bev", "render_perspective", "save_png", "side_by_side"]
