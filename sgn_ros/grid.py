# Voxel grid: the one description of the scene-completion volume.
#
# Every module that needs the volume (datasets, label preprocessing, FLoSP projection, the
# proposal voxelisation, the output head, the ROS conversions) derives its numbers from a
# `VoxelGrid`; nobody writes 51.2 or (0, -25.6, -2) again.
"""The frozen voxel-grid description shared by data, model and ROS node."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass(frozen=True)
class VoxelGrid:
    """An axis-aligned voxel volume in the LiDAR (velodyne) frame.

    Axes follow KITTI's LiDAR frame: x forward, y left, z up; arrays indexed ``[x, y, z]``
    (C order), as SemanticKITTI stores its voxel labels.

    Attributes:
        origin: metres, the corner of voxel (0, 0, 0) (its minimum x, y, z).
        voxel_size: metres, edge length of a cubic voxel.
        dims: number of voxels along x, y, z.
        scales: downsampling factors the network uses (1 = full resolution).
    """

    origin: tuple[float, float, float] = (0.0, -25.6, -2.0)
    voxel_size: float = 0.2
    dims: tuple[int, int, int] = (256, 256, 32)
    scales: tuple[int, ...] = field(default=(1, 2))

    def __post_init__(self) -> None:
        if len(self.origin) != 3 or len(self.dims) != 3:
            raise ValueError(f"VoxelGrid: origin and dims need 3 values, got {self.origin}, {self.dims}")
        if self.voxel_size <= 0:
            raise ValueError(f"VoxelGrid: voxel_size must be > 0 m, got {self.voxel_size}")
        if any(d <= 0 for d in self.dims):
            raise ValueError(f"VoxelGrid: dims must be positive, got {self.dims}")
        for s in self.scales:
            if any(d % s for d in self.dims):
                raise ValueError(f"VoxelGrid: scale {s} does not divide dims {self.dims}")
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "dims", tuple(int(v) for v in self.dims))
        object.__setattr__(self, "scales", tuple(int(v) for v in self.scales))

    # ----------------------------------------------------------------- derived numbers
    @property
    def extent(self) -> tuple[float, float, float]:
        """Size of the volume in metres along x, y, z."""
        return tuple(d * self.voxel_size for d in self.dims)  # type: ignore[return-value]

    @property
    def upper(self) -> tuple[float, float, float]:
        """The corner opposite `origin` (metres)."""
        return tuple(o + e for o, e in zip(self.origin, self.extent))  # type: ignore[return-value]

    @property
    def num_voxels(self) -> int:
        return self.dims[0] * self.dims[1] * self.dims[2]

    @property
    def point_cloud_range(self) -> tuple[float, ...]:
        """(xmin, ymin, zmin, xmax, ymax, zmax) in metres, mmdetection3d's convention."""
        return (*self.origin, *self.upper)

    def scaled(self, factor: int) -> VoxelGrid:
        """The same volume at 1/`factor` resolution (e.g. 2 -> 0.4 m voxels, 128x128x16)."""
        if factor < 1 or any(d % factor for d in self.dims):
            raise ValueError(f"VoxelGrid.scaled: factor {factor} does not divide dims {self.dims}")
        return replace(
            self,
            voxel_size=self.voxel_size * factor,
            dims=tuple(d // factor for d in self.dims),
            scales=(1,),
        )

    def voxel_centers(self) -> np.ndarray:
        """Centres of all voxels, metres, shape (X, Y, Z, 3), float64, C order."""
        return self.index_to_center(np.indices(self.dims).reshape(3, -1).T).reshape(*self.dims, 3)

    def index_to_center(self, indices: np.ndarray) -> np.ndarray:
        """Centres (N, 3) float64, metres, of the voxels with integer indices (N, 3) (no bounds check)."""
        from sgn_ros.geometry.voxels import voxel_centres

        ijk = np.asarray(indices)
        if ijk.ndim != 2 or ijk.shape[1] != 3:
            raise ValueError(f"VoxelGrid.index_to_center: expected (N, 3) indices, got shape {ijk.shape}")
        return voxel_centres(self, ijk)

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Boolean mask (N,) of points (N, >=3, metres) inside the half-open volume."""
        from sgn_ros.geometry.voxels import points_in_grid

        return points_in_grid(np.asarray(points), self)

    def point_to_index(self, points: np.ndarray) -> np.ndarray:
        """Integer voxel indices (N, 3) of points (N, >=3) in metres (no bounds check)."""
        p = np.asarray(points, dtype=np.float64)[:, :3]
        return np.floor((p - np.asarray(self.origin)) / self.voxel_size).astype(np.int64)


#: The SemanticKITTI / SSCBench-KITTI-360 volume: 51.2 m ahead, 25.6 m each side, 6.4 m high.
DEFAULT_GRID = VoxelGrid()
