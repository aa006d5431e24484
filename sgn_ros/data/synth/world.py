# Synthetic KITTI world, part 1: the procedural scene description.
#
# One seeded street scene that every other part of the synthetic data reads: the camera images
# (render.py), the depth maps and the voxel labels (voxelize.py) all query the SAME analytic
# primitives, so "what the images show is what the voxels hold". The street follows a road
# centre line of constant curvature (straight when the curvature is 0); all placement happens
# in road coordinates (s = arc length along the centre line, d = lateral offset, left positive)
# and is turned into world coordinates (x, y on the ground plane, z up, metres; the road surface
# is z = 0) by `RoadFrame`.
#
# Content: asphalt road with lane markings (raw id 60), optional parking strips, raised sidewalks
# with kerbs, terrain strips, building blocks with windows, fences in the gaps, trees (trunk +
# crown), poles and traffic signs, parked cars, moving cars (oncoming lane and a leader in the ego
# lane) and pedestrians. Objects are boxes, cylinders and ellipsoids with a local frame.
"""Procedural street scene (road coordinates, primitives, ego trajectory and KITTI calibration)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# --------------------------------------------------------------------------- constants
#: SemanticKITTI raw label ids used by the synthetic world (config/labels/semantic-kitti.yaml).
RAW = {
    "car": 10,
    "person": 30,
    "road": 40,
    "parking": 44,
    "sidewalk": 48,
    "building": 50,
    "fence": 51,
    "lane-marking": 60,
    "vegetation": 70,
    "trunk": 71,
    "terrain": 72,
    "pole": 80,
    "traffic-sign": 81,
    "moving-car": 252,
    "moving-person": 254,
}

LIDAR_HEIGHT = 1.73  # m, HDL-64E above the road surface (KITTI set-up)
KERB_HEIGHT = 0.15  # m, sidewalks and terrain are raised by this much above the road
LANE_WIDTH = 3.5  # m
EGO_LATERAL = -LANE_WIDTH / 2  # the ego vehicle drives in the right-hand lane

#: KITTI odometry (sequences 00-02) intrinsics for 1241 x 376 images.
KITTI_IMAGE_SIZE = (376, 1241)  # (H, W)
KITTI_FX = 718.856
KITTI_CX = 607.1928
KITTI_CY = 185.2157
CAM2_X = -0.06  # m, colour camera 2 centre in cam0 coordinates (x right)
STEREO_BASELINE = 0.54  # m, cam2 -> cam3 (colour pair)
GREY_BASELINE = 0.54  # m, cam0 -> cam1

# primitive kinds
BOX, CYLINDER, ELLIPSOID = 0, 1, 2

# materials (texture programs of render.py)
(M_ASPHALT, M_MARKING, M_PARKING, M_PAVING, M_GRASS, M_FACADE, M_PAINT, M_GLASS, M_TYRE, M_METAL, M_SIGN,
 M_BARK, M_LEAVES, M_FENCE, M_CLOTH) = range(15)

#: material of each ground raw id
GROUND_MATERIAL = {RAW["road"]: M_ASPHALT, RAW["lane-marking"]: M_MARKING, RAW["parking"]: M_PARKING,
                   RAW["sidewalk"]: M_PAVING, RAW["terrain"]: M_GRASS}


def rot_z(yaw: np.ndarray | float) -> np.ndarray:
    """Rotation matrices about +z: (..., 3, 3) for yaw (...,) radians."""
    yaw = np.asarray(yaw, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    z, o = np.zeros_like(c), np.ones_like(c)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def apply_linear(points: np.ndarray, mat: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
    """points (..., 3) -> points @ mat.T + offset, written as explicit column sums.

    Large (M, 3) @ (3, 3) products through BLAS are slow and, with a threaded BLAS on a busy
    machine, burn CPU in spinning threads; three fused multiply-adds per column are faster.
    """
    p = np.asarray(points)
    m = np.asarray(mat, dtype=p.dtype if p.dtype.kind == "f" else np.float64)
    out = np.stack([p[..., 0] * m[j, 0] + p[..., 1] * m[j, 1] + p[..., 2] * m[j, 2] for j in range(3)], axis=-1)
    if offset is not None:
        out += np.asarray(offset, dtype=out.dtype)
    return out


# --------------------------------------------------------------------------- road frame
@dataclass(frozen=True)
class RoadFrame:
    """Road coordinates (s along the centre line, d to the left) <-> world (x, y), metres.

    The centre line starts at the world origin heading +x and has constant `curvature` (1/m,
    positive turns left). Lines of constant d are concentric circles, so both directions of the
    mapping are closed-form and vectorised.
    """

    curvature: float = 0.0

    def to_world(self, s: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(s, d) -> (x, y, heading) with heading the tangent direction (radians)."""
        s, d = np.asarray(s, np.float64), np.asarray(d, np.float64)
        k = self.curvature
        if k == 0.0:
            return s.copy(), d.copy(), np.zeros_like(s)
        r = 1.0 / k
        th = s * k
        return (r - d) * np.sin(th), r - (r - d) * np.cos(th), th

    def to_road(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World (x, y) -> road (s, d)."""
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        k = self.curvature
        if k == 0.0:
            return x.copy(), y.copy()
        r = 1.0 / k
        sg = np.sign(r)
        dy = y - r
        rho = np.hypot(x, dy)
        d = r - sg * rho
        th = np.arctan2(sg * x, -sg * dy)
        return th * r, d


# --------------------------------------------------------------------------- primitives
@dataclass
class Primitives:
    """A set of analytic solids, each in its own local frame.

    kind (N,) BOX | CYLINDER (axis = local z) | ELLIPSOID; center (N, 3) world metres; rot (N, 3, 3)
    local -> world rotation; half (N, 3) half extents (box half sizes; cylinder (r, r, half
    height); ellipsoid radii); raw (N,) SemanticKITTI raw ids; color (N, 3) base RGB in [0, 1];
    material (N,) texture program; seed (N,) texture salt.
    """

    kind: np.ndarray
    center: np.ndarray
    rot: np.ndarray
    half: np.ndarray
    raw: np.ndarray
    color: np.ndarray
    material: np.ndarray
    seed: np.ndarray

    def __len__(self) -> int:
        return len(self.kind)

    @staticmethod
    def empty() -> Primitives:
        return Primitives(np.zeros(0, np.int8), np.zeros((0, 3)), np.zeros((0, 3, 3)), np.zeros((0, 3)),
                          np.zeros(0, np.uint16), np.zeros((0, 3)), np.zeros(0, np.int8), np.zeros(0, np.int64))

    @staticmethod
    def concat(parts: list[Primitives]) -> Primitives:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Primitives.empty()
        return Primitives(*(np.concatenate([getattr(p, f) for p in parts]) for f in _PRIM_FIELDS))

    def placed(self, position: np.ndarray, yaw: float) -> Primitives:
        """This set (given in an object frame) moved to world `position` (3,) turned by `yaw`."""
        r = rot_z(yaw)
        return Primitives(self.kind, self.center @ r.T + np.asarray(position), r @ self.rot, self.half,
                          self.raw, self.color, self.material, self.seed)

    def corners(self) -> np.ndarray:
        """(N, 8, 3) world corners of every primitive's local bounding box."""
        signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], np.float64)
        local = signs[None] * self.half[:, None, :]
        return np.einsum("nij,nkj->nki", self.rot, local) + self.center[:, None, :]

    def bounding_radius(self) -> np.ndarray:
        """(N,) radius of a sphere around `center` that holds the primitive (metres)."""
        return np.linalg.norm(self.half, axis=1)


_PRIM_FIELDS = ("kind", "center", "rot", "half", "raw", "color", "material", "seed")


class _Builder:
    """Collects primitives of one object in its object frame (x forward, y left, z up)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.items: list[tuple] = []

    def add(self, kind: int, center, half, raw: str, color, material: int, rot=None) -> None:
        rot = np.eye(3) if rot is None else np.asarray(rot, np.float64)
        self.items.append((kind, np.asarray(center, np.float64), rot, np.asarray(half, np.float64), RAW[raw],
                           np.asarray(color, np.float64), material, int(self.rng.integers(1, 2**31 - 1))))

    def build(self) -> Primitives:
        if not self.items:
            return Primitives.empty()
        cols = list(zip(*self.items))
        return Primitives(np.array(cols[0], np.int8), np.stack(cols[1]), np.stack(cols[2]), np.stack(cols[3]),
                          np.array(cols[4], np.uint16), np.stack(cols[5]), np.array(cols[6], np.int8),
                          np.array(cols[7], np.int64))


# --------------------------------------------------------------------------- object templates
_WHEEL_ROT = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])  # cylinder axis -> object y


def _car(rng: np.random.Generator, raw: str) -> Primitives:
    b = _Builder(rng)
    length, width = rng.uniform(3.9, 4.7), rng.uniform(1.7, 1.9)
    paint = rng.choice([[0.7, 0.1, 0.1], [0.1, 0.2, 0.6], [0.85, 0.85, 0.85], [0.15, 0.15, 0.15],
                        [0.55, 0.55, 0.6], [0.1, 0.45, 0.2], [0.8, 0.7, 0.2]]) * rng.uniform(0.85, 1.1)
    wheel_r = 0.32
    b.add(BOX, [0, 0, 0.72], [length / 2, width / 2, 0.36], raw, paint, M_PAINT)
    cab_len = length * rng.uniform(0.45, 0.55)
    b.add(BOX, [-0.15 * length / 2, 0, 1.31], [cab_len / 2, width / 2 - 0.08, 0.23], raw, paint, M_GLASS)
    for fx in (-1, 1):
        for fy in (-1, 1):
            b.add(CYLINDER, [fx * (length / 2 - 0.8), fy * (width / 2 - 0.1), wheel_r], [wheel_r, wheel_r, 0.11],
                  raw, [0.06, 0.06, 0.06], M_TYRE, rot=_WHEEL_ROT)
    return b.build()


def _person(rng: np.random.Generator, raw: str) -> Primitives:
    b = _Builder(rng)
    height = rng.uniform(1.6, 1.9)
    cloth = rng.uniform(0.1, 0.8, 3)
    b.add(CYLINDER, [0, 0, (height - 0.25) / 2], [0.22, 0.22, (height - 0.25) / 2], raw, cloth, M_CLOTH)
    b.add(ELLIPSOID, [0, 0, height - 0.12], [0.12, 0.12, 0.13], raw, [0.8, 0.6, 0.5], M_CLOTH)
    return b.build()


def _tree(rng: np.random.Generator) -> Primitives:
    b = _Builder(rng)
    trunk_h = rng.uniform(2.2, 3.5)
    trunk_r = rng.uniform(0.12, 0.25)
    b.add(CYLINDER, [0, 0, trunk_h / 2], [trunk_r, trunk_r, trunk_h / 2], "trunk",
          [0.35, 0.25, 0.15] * rng.uniform(0.8, 1.2, 3), M_BARK)
    cr = rng.uniform(1.5, 2.8)
    cz = rng.uniform(1.0, 1.6) * cr
    b.add(ELLIPSOID, [0, 0, trunk_h + 0.6 * cz], [cr, cr, cz], "vegetation",
          [0.18, 0.42, 0.12] * rng.uniform(0.75, 1.2, 3), M_LEAVES)
    return b.build()


def _pole(rng: np.random.Generator, with_sign: bool) -> Primitives:
    b = _Builder(rng)
    h = rng.uniform(2.6, 3.2) if with_sign else rng.uniform(5.0, 8.0)
    r = rng.uniform(0.05, 0.1)
    b.add(CYLINDER, [0, 0, h / 2], [r, r, h / 2], "pole", [0.55, 0.55, 0.58], M_METAL)
    if with_sign:
        face = rng.choice([[0.1, 0.25, 0.75], [0.8, 0.1, 0.1], [0.9, 0.75, 0.1]])
        b.add(BOX, [0, 0, h - 0.35], [0.04, 0.35, 0.35], "traffic-sign", face, M_SIGN)
    else:
        b.add(BOX, [0, 0.6, h - 0.05], [0.12, 0.7, 0.06], "pole", [0.5, 0.5, 0.52], M_METAL)
    return b.build()


def _building(rng: np.random.Generator, length: float, depth: float) -> Primitives:
    """Block with its front face at object y = 0 facing +y (towards the street), base at z = 0."""
    b = _Builder(rng)
    height = rng.uniform(5.0, 18.0)
    palette = [[0.75, 0.7, 0.6], [0.6, 0.35, 0.25], [0.85, 0.85, 0.8], [0.55, 0.55, 0.55], [0.8, 0.65, 0.45],
               [0.5, 0.55, 0.65], [0.7, 0.5, 0.45]]
    color = np.asarray(palette[int(rng.integers(len(palette)))]) * rng.uniform(0.85, 1.1)
    b.add(BOX, [0, -depth / 2, height / 2], [length / 2, depth / 2, height / 2], "building", color, M_FACADE)
    return b.build()


def _fence(rng: np.random.Generator, length: float) -> Primitives:
    b = _Builder(rng)
    h = rng.uniform(1.0, 1.8)
    color = rng.choice([[0.45, 0.32, 0.2], [0.35, 0.38, 0.35], [0.6, 0.6, 0.62]])
    b.add(BOX, [0, 0, h / 2], [length / 2, 0.05, h / 2], "fence", color, M_FENCE)
    return b.build()


def _bush(rng: np.random.Generator) -> Primitives:
    b = _Builder(rng)
    r = rng.uniform(0.6, 1.4)
    b.add(ELLIPSOID, [0, 0, 0.5 * r], [r * rng.uniform(1.0, 2.0), r, r * 0.9], "vegetation",
          [0.2, 0.45, 0.15] * rng.uniform(0.75, 1.2, 3), M_LEAVES)
    return b.build()


# --------------------------------------------------------------------------- street layout
@dataclass(frozen=True)
class SideLayout:
    """Cross-section of one side of the street (distances from the centre line, metres)."""

    road: float  # |d| of the road edge
    parking: float  # width of the parking strip at road level (0 = none)
    sidewalk: float
    terrain: float

    @property
    def kerb(self) -> float:
        return self.road + self.parking

    @property
    def facade(self) -> float:
        return self.kerb + self.sidewalk + self.terrain


@dataclass
class Actor:
    """A moving object following the road: template at (s0 + speed * t, d), heading along the road."""

    template: Primitives
    s0: float
    d: float
    speed: float  # m/s along +s (negative = driving towards -s)
    yaw_offset: float  # 0 = facing +s, pi = facing -s


@dataclass
class SynthWorld:
    """The whole synthetic scene and ego trajectory for one seed.

    Attributes:
        seed: the random seed (np.random.default_rng).
        frames: number of camera frames (10 Hz).
        road: the `RoadFrame` (curvature).
        sides: (right, left) `SideLayout`.
        static: static primitives (world frame).
        actors: moving objects.
        speed: ego speed, m/s.
        sun: (3,) unit vector towards the sun (world).
    """

    seed: int
    frames: int
    road: RoadFrame
    sides: tuple[SideLayout, SideLayout]
    static: Primitives
    actors: list[Actor]
    speed: float
    sun: np.ndarray
    dt: float = 0.1
    _cache: dict = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ generation
    @classmethod
    def generate(cls, seed: int, frames: int) -> SynthWorld:
        """Build the scene for `frames` frames of ego motion from `seed` (deterministic)."""
        if frames < 1:
            raise ValueError(f"SynthWorld.generate: frames must be >= 1, got {frames}")
        rng = np.random.default_rng(seed)
        curvature = float(rng.choice([0.0, 1.0]) * rng.uniform(-1 / 250, 1 / 250))
        speed = float(rng.uniform(6.0, 10.0))
        s_lo, s_hi = -60.0, speed * frames * 0.1 + 130.0
        # a long sequence must not drive round the circle: the scene spans < half a turn
        curvature = float(np.clip(curvature, -np.pi / (s_hi - s_lo + 250.0), np.pi / (s_hi - s_lo + 250.0)))
        road = RoadFrame(curvature)
        sides = []
        for _ in range(2):
            sides.append(SideLayout(road=LANE_WIDTH, parking=float(rng.choice([0.0, 2.3])),
                                    sidewalk=float(rng.uniform(2.0, 3.5)), terrain=float(rng.uniform(0.0, 4.0))))
        parts: list[Primitives] = []
        actors: list[Actor] = []
        for side_index, side in enumerate(sides):
            sign = 1.0 if side_index == 1 else -1.0
            parts += _populate_side(rng, road, side, sign, s_lo, s_hi)
        # moving traffic: oncoming cars in the left lane, maybe a leader in the ego lane
        s = s_lo + rng.uniform(0, 20)
        while s < s_hi + 150:
            actors.append(Actor(_car(rng, "moving-car"), s, LANE_WIDTH / 2, -float(rng.uniform(6, 12)), np.pi))
            s += rng.uniform(25, 70)
        if rng.random() < 0.6:
            actors.append(Actor(_car(rng, "moving-car"), float(rng.uniform(14, 24)), EGO_LATERAL, speed, 0.0))
        for side_index, side in enumerate(sides):
            sign = 1.0 if side_index == 1 else -1.0
            for _ in range(int(rng.integers(0, 3))):
                d = sign * (side.kerb + side.sidewalk * rng.uniform(0.45, 0.55))
                walk = float(rng.choice([0.0, 1.0]) * rng.uniform(-1.4, 1.4))
                raw = "moving-person" if walk else "person"
                actors.append(Actor(_person(rng, raw), float(rng.uniform(5, s_hi - 60)), d, walk, 0.0))
        az = rng.uniform(0, 2 * np.pi)
        el = rng.uniform(0.5, 1.1)
        sun = np.array([np.cos(az) * np.cos(el), np.sin(az) * np.cos(el), np.sin(el)])
        return cls(seed=seed, frames=frames, road=road, sides=(sides[0], sides[1]),
                   static=Primitives.concat(parts), actors=actors, speed=speed, sun=sun)

    # ------------------------------------------------------------------ scene queries
    def scene_at(self, t: float) -> Primitives:
        """All primitives (static + actors) at time `t` seconds (world frame)."""
        key = ("scene", round(float(t), 6))
        if key not in self._cache:
            parts = [self.static]
            for a in self.actors:
                s = a.s0 + a.speed * t
                x, y, th = self.road.to_world(np.array(s), np.array(a.d))
                parts.append(a.template.placed(np.array([float(x), float(y), 0.0]), float(th) + a.yaw_offset))
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[key] = Primitives.concat(parts)
        return self._cache[key]

    def frame_time(self, frame: int) -> float:
        return frame * self.dt

    def ground(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ground surface at world (x, y): height (metres, 0 or KERB_HEIGHT) and raw label id."""
        s, d = self.road.to_road(x, y)
        left = d >= 0
        a = np.abs(d)
        road_edge = np.where(left, self.sides[1].road, self.sides[0].road)
        kerb = np.where(left, self.sides[1].kerb, self.sides[0].kerb)
        walk_end = kerb + np.where(left, self.sides[1].sidewalk, self.sides[0].sidewalk)
        raw = np.full(a.shape, RAW["road"], np.uint16)
        marking = ((a > road_edge - 0.35) & (a < road_edge - 0.2)) | ((a < 0.08) & (np.mod(s, 9.0) < 3.0))
        raw[marking] = RAW["lane-marking"]
        raw[(a >= road_edge) & (a < kerb)] = RAW["parking"]
        raised = a >= kerb
        raw[raised & (a < walk_end)] = RAW["sidewalk"]
        raw[raised & (a >= walk_end)] = RAW["terrain"]
        return np.where(raised, KERB_HEIGHT, 0.0), raw

    def kerb_distance(self, d: np.ndarray) -> np.ndarray:
        """|d| of the kerb on the side of each lateral offset `d`."""
        return np.where(np.asarray(d) >= 0, self.sides[1].kerb, self.sides[0].kerb)

    # ------------------------------------------------------------------ ego trajectory and sensors
    def lidar_pose(self, frame: float) -> np.ndarray:
        """(4, 4) LiDAR -> world at (possibly fractional / negative) `frame`; LiDAR level, x forward."""
        return self.lidar_pose_at_s(self.speed * self.frame_time(frame))

    def lidar_pose_at_s(self, s: float) -> np.ndarray:
        """(4, 4) LiDAR -> world with the ego at arc length `s` of its lane."""
        x, y, th = self.road.to_world(np.array(s, np.float64), np.array(EGO_LATERAL))
        pose = np.eye(4)
        pose[:3, :3] = rot_z(float(th))
        pose[:3, 3] = (float(x), float(y), LIDAR_HEIGHT)
        return pose

    def calibration(self, image_size: tuple[int, int] = KITTI_IMAGE_SIZE) -> dict[str, np.ndarray]:
        """KITTI-style calib: P0..P3 (3, 4) relative to cam0 and Tr (4, 4) velodyne -> cam0.

        The intrinsics are KITTI seq 00's for 1241 x 376 and scale with `image_size` (H, W).
        """
        return kitti_calibration(image_size)

    def cam0_pose(self, frame: float) -> np.ndarray:
        """(4, 4) cam0 -> world."""
        tr = self.calibration()["Tr"]
        return self.lidar_pose(frame) @ np.linalg.inv(tr)

    def kitti_poses(self) -> np.ndarray:
        """(frames, 4, 4) poses.txt content: cam0 of frame i -> cam0 of frame 0."""
        first_inv = np.linalg.inv(self.cam0_pose(0))
        return np.stack([first_inv @ self.cam0_pose(i) for i in range(self.frames)])


def kitti_calibration(image_size: tuple[int, int] = KITTI_IMAGE_SIZE) -> dict[str, np.ndarray]:
    """The synthetic rig's calib.txt content for images of `image_size` (H, W).

    P_i = K [I | t_i] with t_i = -(camera centre in cam0): cam1 (grey right) at x = +0.54 m,
    cam2 (colour left) at x = -0.06 m, cam3 (colour right) at x = +0.48 m, so the colour stereo
    baseline is 0.54 m and P3[0, 3] - P2[0, 3] = -fx * 0.54. Tr: x_cam = -y_lidar,
    y_cam = -z_lidar, z_cam = x_lidar, cam0 0.27 m ahead of and 0.08 m below the LiDAR.
    """
    h, w = int(image_size[0]), int(image_size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"image_size must be positive (H, W), got {image_size}")
    sx, sy = w / KITTI_IMAGE_SIZE[1], h / KITTI_IMAGE_SIZE[0]
    k = np.array([[KITTI_FX * sx, 0, KITTI_CX * sx], [0, KITTI_FX * sy, KITTI_CY * sy], [0, 0, 1.0]])
    out = {}
    for name, cx in (("P0", 0.0), ("P1", GREY_BASELINE), ("P2", CAM2_X), ("P3", CAM2_X + STEREO_BASELINE)):
        out[name] = k @ np.hstack([np.eye(3), np.array([[-cx], [0.0], [0.0]])])
    r = np.array([[0, -1.0, 0], [0, 0, -1.0], [1.0, 0, 0]])
    tr = np.eye(4)
    tr[:3, :3] = r
    tr[:3, 3] = -r @ np.array([0.27, 0.0, -0.08])
    out["Tr"] = tr
    return out


def camera_center_cam0(calib: dict[str, np.ndarray], name: str) -> np.ndarray:
    """(3,) centre of camera `name` ('P2', 'P3', ...) in cam0 coordinates (P = K [I | -c])."""
    p = calib[name]
    k = p[:, :3]
    return -np.linalg.solve(k, p[:, 3])


def _populate_side(rng: np.random.Generator, road: RoadFrame, side: SideLayout, sign: float,
                   s_lo: float, s_hi: float) -> list[Primitives]:
    """Buildings, fences, trees, poles, signs, bushes and parked cars along one side (sign +1 = left)."""
    parts: list[Primitives] = []

    def put(template: Primitives, s: float, d: float, yaw_offset: float = 0.0) -> None:
        x, y, th = road.to_world(np.array(s), np.array(d))
        parts.append(template.placed(np.array([float(x), float(y), 0.0]), float(th) + yaw_offset))

    facing = np.pi if sign > 0 else 0.0  # object +y towards the street
    # buildings with gaps (fences / bushes in the gaps)
    s = s_lo
    while s < s_hi:
        if rng.random() < 0.25:
            gap = float(rng.uniform(4, 12))
            put(_fence(rng, gap), s + gap / 2, sign * (side.facade + 0.3), facing)
            if rng.random() < 0.7:
                put(_bush(rng), s + gap / 2, sign * (side.facade + 2.5), facing)
            s += gap
            continue
        length = float(rng.uniform(8, 25))
        sag = length**2 * abs(road.curvature) / 8 + 0.05
        setback = float(rng.choice([0.0, 0.0, rng.uniform(0.5, 3.0)]))
        put(_building(rng, length, float(rng.uniform(8, 14))), s + length / 2, sign * (side.facade + sag + setback),
            facing)
        s += length + float(rng.uniform(0.0, 1.5))
    # trees on the terrain strip (or at the sidewalk's back edge)
    s = s_lo + rng.uniform(0, 8)
    while s < s_hi:
        if side.terrain > 1.2:
            d = side.kerb + side.sidewalk + side.terrain / 2
        else:
            d = side.kerb + side.sidewalk - 0.35
        if rng.random() < 0.75:
            put(_tree(rng), s, sign * d)
        s += rng.uniform(7, 16)
    # poles and traffic signs near the kerb
    s = s_lo + rng.uniform(0, 10)
    while s < s_hi:
        with_sign = bool(rng.random() < 0.4)
        put(_pole(rng, with_sign), s, sign * (side.kerb + 0.35), facing if not with_sign else 0.0)
        s += rng.uniform(12, 28)
    # parked cars on the parking strip, or half on the sidewalk otherwise (rare)
    if side.parking > 0:
        s = s_lo + rng.uniform(0, 6)
        while s < s_hi:
            if rng.random() < 0.7:
                put(_car(rng, "car"), s, sign * (side.road + side.parking / 2), float(rng.choice([0.0, np.pi])))
            s += rng.uniform(5.5, 9.0)
    return parts
