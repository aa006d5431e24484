# Synthetic KITTI world, part 2: ray casting and image rendering.
#
# Every pixel (or LiDAR beam) is a ray; rays are intersected analytically with the world's
# primitives (box slabs, cylinder and ellipsoid quadrics) and with the two-level ground (road at
# z = 0, sidewalks/terrain at the kerb height, kerb faces in between). Work is vectorised over
# rays; the only Python loop is over primitives, each restricted to the rectangle of the ray
# image its bounding volume can cover (pinhole projection of its box corners for cameras,
# bounding-sphere angles for the spherical LiDAR image), so a frame costs a fraction of a second.
#
# Colour comes from 3-D cell noise anchored to each primitive's local frame (or to the world for
# the ground): views of the same surface from the left and right cameras see the same texture,
# which is what stereo matching needs. Shading is Lambertian under the world's sun, so images
# are view-independent apart from geometry.
"""Ray casting against the synthetic world: camera images, depth, per-pixel labels, LiDAR scans."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sgn_ros.data.synth.world import (
    BOX,
    CYLINDER,
    ELLIPSOID,
    GROUND_MATERIAL,
    KERB_HEIGHT,
    KITTI_IMAGE_SIZE,
    M_ASPHALT,
    M_BARK,
    M_CLOTH,
    M_FACADE,
    M_FENCE,
    M_GLASS,
    M_GRASS,
    M_LEAVES,
    M_MARKING,
    M_METAL,
    M_PAINT,
    M_PARKING,
    M_PAVING,
    M_SIGN,
    M_TYRE,
    RAW,
    Primitives,
    SynthWorld,
    apply_linear,
    camera_center_cam0,
    kitti_calibration,
)

GROUND = -1  # hit index of the ground
NO_HIT = -2  # hit index of rays that escape (sky)
MAX_RANGE = 250.0  # m, rays travelling further see sky
_EPS = 1e-6

#: HDL-64E-like scan pattern: 64 rows from +2 to -24.8 degrees, 2048 columns over 360 degrees.
LIDAR_ROWS, LIDAR_COLS = 64, 2048
LIDAR_ELEVATION = (np.deg2rad(2.0), np.deg2rad(-24.8))
LIDAR_MAX_RANGE = 80.0  # m


@dataclass
class Hits:
    """Nearest intersection per ray of a (R, C) ray image.

    t: (R, C) ray parameter of the hit (z-depth for camera rays, metres along unit LiDAR rays),
    inf where nothing is hit; index: (R, C) int32 primitive index, GROUND or NO_HIT;
    normal: (R, C, 3) world unit normal; raw: (R, C) uint16 raw label id (0 = nothing);
    local / normal_local: (R, C, 3) float32 hit point and normal in the hit primitive's frame
    (world frame for the ground), kept only when the caster was asked for them (texturing).
    """

    t: np.ndarray
    index: np.ndarray
    normal: np.ndarray
    raw: np.ndarray
    local: np.ndarray | None = None
    normal_local: np.ndarray | None = None


# --------------------------------------------------------------------------- ray-primitive tests
def _local_rays(prims: Primitives, i: int, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray origin (3,) and directions (M, 3) in primitive i's local frame."""
    rot = prims.rot[i].astype(dirs.dtype)
    # explicit sums: (M, 3) @ (3, 3) through matmul is several times slower for tall-thin arrays
    local = dirs[:, 0:1] * rot[0] + dirs[:, 1:2] * rot[1] + dirs[:, 2:3] * rot[2]
    return ((origin - prims.center[i]) @ prims.rot[i]).astype(dirs.dtype), local


def intersect_primitive(prims: Primitives, i: int, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Ray parameter t (M,) of the nearest entry of rays origin + t * dirs (M, 3) into primitive
    `i` (inf = miss). Rays starting inside a primitive do not hit it."""
    return _intersect_cols(prims, i, origin, np.ascontiguousarray(np.asarray(dirs).T))


def _intersect_cols(prims: Primitives, i: int, origin: np.ndarray, d3: np.ndarray) -> np.ndarray:
    """`intersect_primitive` on directions stored as rows (3, M): every operation then runs on
    contiguous 1-D arrays, which is what makes the per-primitive loop cheap."""
    rot = prims.rot[i]
    o = (origin - prims.center[i]) @ rot
    dt = d3.dtype
    dx, dy, dz = (d3[0] * dt.type(rot[0, j]) + d3[1] * dt.type(rot[1, j]) + d3[2] * dt.type(rot[2, j])
                  for j in range(3))
    h = prims.half[i]
    kind = int(prims.kind[i])
    inf = np.inf
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if kind == BOX:
            tn = tf = None
            for dj, oj, hj in ((dx, o[0], h[0]), (dy, o[1], h[1]), (dz, o[2], h[2])):
                inv = 1.0 / dj
                ta = (-hj - oj) * inv
                tb = (hj - oj) * inv
                lo = np.minimum(ta, tb)
                hi = np.maximum(ta, tb)
                tn = lo if tn is None else np.maximum(tn, lo)
                tf = hi if tf is None else np.minimum(tf, hi)
            return np.where((tn <= tf) & (tn > _EPS), tn, inf)
        if kind == CYLINDER:
            r, hz = h[0], h[2]
            a = dx * dx + dy * dy
            b = 2.0 * (o[0] * dx + o[1] * dy)
            cc = o[0] ** 2 + o[1] ** 2 - r * r
            disc = b * b - 4.0 * a * cc
            ts = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
            zs = o[2] + ts * dz
            t_side = np.where((disc >= 0) & (a > 0) & (ts > _EPS) & (np.abs(zs) <= hz), ts, inf)
            if abs(o[2]) <= hz:
                return t_side
            tc = ((hz if o[2] > 0 else -hz) - o[2]) / dz
            xc, yc = o[0] + tc * dx, o[1] + tc * dy
            t_cap = np.where((tc > _EPS) & (xc * xc + yc * yc <= r * r), tc, inf)
            return np.minimum(t_side, t_cap)
        if kind == ELLIPSOID:
            q = o / h
            ex, ey, ez = dx / h[0], dy / h[1], dz / h[2]
            cc = q @ q - 1.0
            if cc <= 0:
                return np.full(dx.shape, inf, dt)
            a = ex * ex + ey * ey + ez * ez
            b = 2.0 * (ex * q[0] + ey * q[1] + ez * q[2])
            disc = b * b - 4.0 * a * cc
            ts = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2.0 * a)
            return np.where((disc >= 0) & (ts > _EPS), ts, inf)
    raise ValueError(f"primitive {i}: unknown kind {kind}")


def surface_normal(prims: Primitives, i: int, origin: np.ndarray, dirs: np.ndarray, t: np.ndarray) -> np.ndarray:
    """World unit normals (M, 3) of primitive `i` at the hit points origin + t * dirs (finite t)."""
    return _surface(prims, i, origin, dirs, t)[0]


def _surface(prims: Primitives, i: int, origin: np.ndarray, dirs: np.ndarray,
             t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World normals, local hit points and local normals (each (M, 3)) of primitive `i`."""
    o, d = _local_rays(prims, i, origin, dirs)
    p = (o + t[:, None] * d).astype(np.float64)
    h = prims.half[i]
    kind = int(prims.kind[i])
    n = np.zeros_like(p)
    rows = np.arange(len(p))
    if kind == BOX:
        axis = np.abs(p / h).argmax(axis=1)
        n[rows, axis] = np.sign(p[rows, axis])
    elif kind == CYLINDER:
        radial = np.hypot(p[:, 0], p[:, 1]) / h[0]
        cap = np.abs(p[:, 2]) / h[2] > radial
        n[:, 0] = np.where(cap, 0.0, p[:, 0])
        n[:, 1] = np.where(cap, 0.0, p[:, 1])
        n[:, 2] = np.where(cap, np.sign(p[:, 2]), 0.0)
    else:
        n = p / (h * h)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    return apply_linear(n, prims.rot[i]), p, n


def cast_ground(world: SynthWorld, origin: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                                   np.ndarray]:
    """Rays (M, 3) against the two-level ground: t (M,) (inf = miss), raw ids (M,), normals (M, 3).

    A ray is tested against the raised plane (z = kerb height) first; if it lands on road-level
    ground there it continues to z = 0; if that point is on raised ground, the ray crossed the
    kerb face in between (found by interpolating |d| between the two points).
    """
    oz = float(origin[2])
    if oz <= KERB_HEIGHT:
        raise ValueError(f"cast_ground: ray origin z = {oz:.3f} m must be above the kerb ({KERB_HEIGHT} m)")
    dz = dirs[:, 2]
    down = dz < -1e-9
    safe = np.where(down, dz, -1.0)
    t_hi = (KERB_HEIGHT - oz) / safe
    t_lo = (0.0 - oz) / safe
    p_hi = origin[:2] + t_hi[:, None] * dirs[:, :2]
    p_lo = origin[:2] + t_lo[:, None] * dirs[:, :2]
    h_hi, raw_hi = world.ground(p_hi[:, 0], p_hi[:, 1])
    h_lo, raw_lo = world.ground(p_lo[:, 0], p_lo[:, 1])
    on_hi = h_hi > 0
    on_lo = ~on_hi & (h_lo == 0)
    kerb = ~on_hi & ~on_lo
    t = np.where(on_hi, t_hi, t_lo)
    raw = np.where(on_hi, raw_hi, raw_lo)
    normal = np.zeros((len(dirs), 3))
    normal[:, 2] = 1.0
    if kerb.any():
        _, d_hi = world.road.to_road(p_hi[kerb, 0], p_hi[kerb, 1])
        _, d_lo = world.road.to_road(p_lo[kerb, 0], p_lo[kerb, 1])
        a_hi, a_lo = np.abs(d_hi), np.abs(d_lo)
        k = world.kerb_distance(d_lo)
        frac = np.clip((k - a_hi) / np.where(np.abs(a_lo - a_hi) > 1e-9, a_lo - a_hi, 1e-9), 0.0, 1.0)
        t[kerb] = t_hi[kerb] + frac * (t_lo[kerb] - t_hi[kerb])
        raw[kerb] = RAW["sidewalk"]
        horiz = -dirs[kerb, :2]
        normal[kerb, :2] = horiz / np.maximum(np.linalg.norm(horiz, axis=1, keepdims=True), 1e-12)
        normal[kerb, 2] = 0.0
    dist = t * np.linalg.norm(dirs, axis=1)
    t = np.where(down & (dist < MAX_RANGE), t, np.inf)
    return t, raw.astype(np.uint16), normal


def cast(world: SynthWorld, prims: Primitives, origin: np.ndarray, dirs: np.ndarray,
         rects: list[list[tuple[int, int, int, int]]], nearest: np.ndarray, ground: bool = True,
         with_local: bool = False) -> Hits:
    """Nearest hits of the ray image origin + t * dirs (R, C, 3).

    `rects[i]` lists the (r0, r1, c0, c1) ray-image rectangles primitive i may cover and
    `nearest[i]` is a lower bound of t over primitive i: primitives are visited near to far and
    only rays whose current hit is farther than that bound are tested (occlusion culling).
    `with_local` also keeps the local hit points and normals that texturing needs.
    """
    rows, cols = dirs.shape[:2]
    # float32 rays stored as (3, R, C) rows: contiguous gathers, half the memory traffic
    d3 = np.ascontiguousarray(np.moveaxis(dirs, 2, 0), dtype=np.float32)
    best_t = np.full((rows, cols), np.inf, np.float32)
    best_i = np.full((rows, cols), NO_HIT, np.int32)
    normal = np.zeros((rows, cols, 3))
    raw = np.zeros((rows, cols), np.uint16)
    local = np.zeros((rows, cols, 3), np.float32) if with_local else None
    nloc = np.zeros((rows, cols, 3), np.float32) if with_local else None
    if ground:  # first, so that the ground occludes what lies beyond it
        tg, rg, ng = cast_ground(world, origin, dirs.reshape(-1, 3))
        g = np.isfinite(tg).reshape(rows, cols)
        best_t[g], best_i[g] = tg.reshape(rows, cols)[g], GROUND
        raw[g], normal[g] = rg.reshape(rows, cols)[g], ng.reshape(rows, cols, 3)[g]
    for i in np.argsort(nearest, kind="stable"):
        for r0, r1, c0, c1 in rects[i]:
            cand = best_t[r0:r1, c0:c1] > nearest[i]
            n_cand = int(np.count_nonzero(cand))
            if not n_cand:
                continue
            if n_cand > 0.7 * cand.size:  # mostly candidates: test the rectangle densely, no gathers
                t = _intersect_cols(prims, int(i), origin, d3[:, r0:r1, c0:c1].reshape(3, -1))
                t = t.reshape(r1 - r0, c1 - c0)
                closer = t < best_t[r0:r1, c0:c1]
                if not closer.any():
                    continue
                rr, cc = np.nonzero(closer)
                t = t[rr, cc]
                rr += r0
                cc += c0
            else:
                rr, cc = np.nonzero(cand)
                rr += r0
                cc += c0
                t = _intersect_cols(prims, int(i), origin, d3[:, rr, cc])
            closer = t < best_t[rr, cc]
            if closer.any():
                rr, cc, t = rr[closer], cc[closer], t[closer]
                best_t[rr, cc] = t
                best_i[rr, cc] = i
                raw[rr, cc] = prims.raw[i]
                n_w, p_l, n_l = _surface(prims, int(i), origin, d3[:, rr, cc].T, t)
                normal[rr, cc] = n_w
                if with_local:
                    local[rr, cc] = p_l
                    nloc[rr, cc] = n_l
    # rays beyond the range limit see sky
    far = best_t * np.sqrt(d3[0] * d3[0] + d3[1] * d3[1] + d3[2] * d3[2]) > MAX_RANGE
    best_t[far], best_i[far], raw[far] = np.inf, NO_HIT, 0
    if with_local:
        g = best_i == GROUND  # the ground is textured in world coordinates
        local[g] = origin + best_t[g][:, None] * dirs[g]
        nloc[g] = normal[g]
    return Hits(best_t, best_i, normal, raw, local, nloc)


# --------------------------------------------------------------------------- culling
def pinhole_rects(prims: Primitives, k: np.ndarray, cam_to_world: np.ndarray,
                  size: tuple[int, int]) -> tuple[list[list[tuple[int, int, int, int]]], np.ndarray]:
    """Image rectangles (r0, r1, c0, c1) each primitive can cover in a pinhole camera, and the
    smallest z-depth (N,) of each primitive's bounding box (a lower bound of its hits' t)."""
    h, w = size
    if not len(prims):
        return [], np.zeros(0)
    corners = (prims.corners() - cam_to_world[:3, 3]) @ cam_to_world[:3, :3]  # (N, 8, 3) camera frame
    z = corners[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uvw = corners @ k.T
        u = uvw[..., 0] / z
        v = uvw[..., 1] / z
    out: list[list[tuple[int, int, int, int]]] = []
    near = 1e-3
    for i in range(len(prims)):
        if z[i].max() < near:
            out.append([])
        elif z[i].min() < near:
            out.append([(0, h, 0, w)])
        else:
            c0, c1 = max(0, int(np.floor(u[i].min()))), min(w, int(np.ceil(u[i].max())) + 1)
            r0, r1 = max(0, int(np.floor(v[i].min()))), min(h, int(np.ceil(v[i].max())) + 1)
            out.append([(r0, r1, c0, c1)] if (c1 > c0 and r1 > r0) else [])
    return out, np.maximum(z.min(axis=1), 0.0)


def spherical_rects(prims: Primitives, lidar_to_world: np.ndarray, rows: int, cols: int,
                    elevation: tuple[float, float]) -> tuple[list[list[tuple[int, int, int, int]]], np.ndarray]:
    """Range-image rectangles each primitive's bounding sphere can cover (azimuth wraps), and
    the nearest range (N,) of each bounding sphere."""
    el_top, el_bot = elevation
    d_el = (el_top - el_bot) / (rows - 1)
    d_az = 2 * np.pi / cols
    v = (prims.center - lidar_to_world[:3, 3]) @ lidar_to_world[:3, :3]
    rad = prims.bounding_radius() * 1.01 + 0.01
    dist = np.linalg.norm(v, axis=1)
    dxy = np.hypot(v[:, 0], v[:, 1])
    out: list[list[tuple[int, int, int, int]]] = []
    for i in range(len(prims)):
        if dist[i] <= rad[i]:
            out.append([(0, rows, 0, cols)])
            continue
        el_c = np.arcsin(v[i, 2] / dist[i])
        ang = np.arcsin(rad[i] / dist[i])
        r0 = max(0, int(np.floor((el_top - (el_c + ang)) / d_el)))
        r1 = min(rows, int(np.ceil((el_top - (el_c - ang)) / d_el)) + 1)
        if r1 <= r0:
            out.append([])
            continue
        if dxy[i] <= rad[i]:
            out.append([(r0, r1, 0, cols)])
            continue
        az_c = np.arctan2(v[i, 1], v[i, 0])
        half = np.arcsin(rad[i] / dxy[i])
        c0 = int(np.floor((az_c - half) / d_az))
        c1 = int(np.ceil((az_c + half) / d_az)) + 1
        boxes = []
        for shift in (-cols, 0, cols):
            a, b = max(0, c0 + shift), min(cols, c1 + shift)
            if b > a:
                boxes.append((r0, r1, a, b))
        out.append(boxes)
    return out, np.maximum(dist - rad, 0.0)


# --------------------------------------------------------------------------- texture and shading
def cell_noise(p: np.ndarray, cell: float, salt: np.ndarray | int) -> np.ndarray:
    """Value in [0, 1) per 3-D lattice cell of size `cell` (metres) around points p (M, 3)."""
    q = np.floor(p * (1.0 / cell)).astype(np.int64).astype(np.uint32)  # wraps modulo 2**32
    hsh = (q[:, 0] * np.uint32(73856093)) ^ (q[:, 1] * np.uint32(19349663)) ^ (q[:, 2] * np.uint32(83492791))
    hsh ^= np.asarray(salt).astype(np.uint32)
    hsh = (hsh ^ (hsh >> np.uint32(13))) * np.uint32(1274126177)
    hsh = (hsh ^ (hsh >> np.uint32(16))) * np.uint32(2246822519)
    hsh ^= hsh >> np.uint32(15)
    return (hsh >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


#: texture amplitudes per material: (fine 3 cm, medium 12 cm, coarse 60 cm) noise octaves
_AMPLITUDE = {
    M_ASPHALT: (0.45, 0.25, 0.12), M_MARKING: (0.15, 0.1, 0.05), M_PARKING: (0.4, 0.25, 0.1),
    M_PAVING: (0.3, 0.15, 0.15), M_GRASS: (0.55, 0.45, 0.3), M_FACADE: (0.3, 0.2, 0.12),
    M_PAINT: (0.15, 0.08, 0.05), M_GLASS: (0.2, 0.1, 0.1), M_TYRE: (0.35, 0.2, 0.1), M_METAL: (0.3, 0.12, 0.05),
    M_SIGN: (0.15, 0.05, 0.05), M_BARK: (0.55, 0.3, 0.2), M_LEAVES: (0.7, 0.55, 0.35), M_FENCE: (0.35, 0.2, 0.1),
    M_CLOTH: (0.35, 0.2, 0.1),
}
_AMP_TABLE = np.array([_AMPLITUDE[m] for m in range(len(_AMPLITUDE))])
_GROUND_COLOR = {RAW["road"]: (0.3, 0.3, 0.32), RAW["lane-marking"]: (0.9, 0.9, 0.86),
                 RAW["parking"]: (0.42, 0.39, 0.36), RAW["sidewalk"]: (0.62, 0.6, 0.56),
                 RAW["terrain"]: (0.36, 0.42, 0.2)}


def shade(world: SynthWorld, prims: Primitives, hits: Hits, origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Colour (R, C, 3) float in [0, 1] of every ray: textured, Lambert-shaded surfaces and sky."""
    rows, cols = hits.t.shape
    out = np.empty((rows, cols, 3))
    # sky: brighter towards the horizon
    dn = dirs / np.linalg.norm(dirs, axis=2, keepdims=True)
    up = np.clip(dn[..., 2] * 3.0, 0.0, 1.0)[..., None]
    out[:] = (1 - up) * np.array([0.8, 0.86, 0.93]) + up * np.array([0.42, 0.58, 0.85])
    sel = hits.index != NO_HIT
    if not sel.any():
        return out
    idx = hits.index[sel]
    d = dirs[sel]
    n = hits.normal[sel]
    local = hits.local[sel]
    n_loc = hits.normal_local[sel]
    obj = idx >= 0
    oi = idx[obj]
    material = np.empty(len(idx), np.int64)
    color = np.empty((len(idx), 3))
    salt = np.full(len(idx), world.seed * 7919 + 17, np.int64)
    material[obj] = prims.material[oi]
    color[obj] = prims.color[oi]
    salt[obj] = prims.seed[oi]
    graw = hits.raw[sel][~obj]
    gmat = np.zeros(len(graw), np.int64)
    gcol = np.zeros((len(graw), 3))
    for raw_id, m in GROUND_MATERIAL.items():
        gmat[graw == raw_id] = m
        gcol[graw == raw_id] = _GROUND_COLOR[raw_id]
    material[~obj], color[~obj] = gmat, gcol
    amp = _AMP_TABLE[material]
    tex = 1.0
    for k, cell in enumerate((0.03, 0.12, 0.6)):
        tex = tex + amp[:, k] * (cell_noise(local + 0.37, cell, salt + k) - 0.5) * 2.0
    color = color * tex[:, None]
    # material-specific patterns
    m = material == M_PAVING
    if m.any():
        g = (np.mod(local[m, 0], 0.5) < 0.035) | (np.mod(local[m, 1], 0.5) < 0.035)
        color[m] *= np.where(g, 0.6, 1.0)[:, None]
    m = material == M_FACADE
    if m.any():
        hz = np.zeros(len(idx))
        hz[obj] = prims.half[oi, 2]
        u = local[m, 0] + local[m, 1]
        v = local[m, 2] + hz[m]
        win = ((np.mod(u, 3.2) > 0.9) & (np.mod(u, 3.2) < 2.3) & (np.mod(v, 3.1) > 1.0) & (np.mod(v, 3.1) < 2.4)
               & (v < 2 * hz[m] - 0.6) & (np.abs(n_loc[m, 2]) < 0.5))
        glass = np.array([0.16, 0.2, 0.27]) * (0.8 + 0.4 * cell_noise(local[m], 0.4, 5)[:, None])
        color[m] = np.where(win[:, None], glass, color[m])
    m = material == M_GLASS
    if m.any():
        glass = np.array([0.08, 0.1, 0.13]) * (0.8 + 0.4 * cell_noise(local[m], 0.05, 9)[:, None])
        color[m] = np.where((n_loc[m, 2] > 0.5)[:, None], color[m], glass)
    m = material == M_FENCE
    if m.any():
        color[m] *= np.where(np.mod(local[m, 0], 0.16) < 0.11, 1.0, 0.45)[:, None]
    m = material == M_SIGN
    if m.any():
        band = np.abs(local[m, 2]) < 0.08
        color[m] = np.where(band[:, None], np.array([0.92, 0.92, 0.9]), color[m])
    # Lambert shading with a two-sided normal
    flip = np.einsum("mi,mi->m", n, d) > 0
    n = np.where(flip[:, None], -n, n)
    lam = np.clip(n[:, 0] * world.sun[0] + n[:, 1] * world.sun[1] + n[:, 2] * world.sun[2], 0.0, 1.0)
    out[sel] = color * (0.45 + 0.65 * lam)[:, None]
    return np.clip(out, 0.0, 1.0)


# --------------------------------------------------------------------------- sensors
@dataclass
class CameraRender:
    """One rendered camera view: rgb (H, W, 3) uint8; depth (H, W) float32 z-depth in metres
    (0 = sky); raw (H, W) uint16 raw label id of the surface each pixel shows (0 = sky); index
    (H, W) int32 primitive index (GROUND / NO_HIT)."""

    rgb: np.ndarray
    depth: np.ndarray
    raw: np.ndarray
    index: np.ndarray


def pixel_rays(k: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) camera-frame rays K^-1 [u, v, 1] of integer pixel centres (z component 1)."""
    h, w = size
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pix = np.stack([u, v, np.ones_like(u)], axis=-1)
    return apply_linear(pix, np.linalg.inv(k))


def render_camera(world: SynthWorld, prims: Primitives, k: np.ndarray, cam_to_world: np.ndarray,
                  size: tuple[int, int]) -> CameraRender:
    """Render a pinhole camera (intrinsics `k`, pose `cam_to_world` (4, 4), size (H, W))."""
    rays = pixel_rays(k, size)
    dirs = apply_linear(rays, cam_to_world[:3, :3])
    origin = cam_to_world[:3, 3].astype(np.float64)
    rects, nearest = pinhole_rects(prims, k, cam_to_world, size)
    hits = cast(world, prims, origin, dirs, rects, nearest, with_local=True)
    rgb = (shade(world, prims, hits, origin, dirs) * 255.0 + 0.5).astype(np.uint8)
    depth = np.where(np.isfinite(hits.t), hits.t, 0.0).astype(np.float32)
    return CameraRender(rgb=rgb, depth=depth, raw=hits.raw, index=hits.index)


def lidar_directions(rows: int = LIDAR_ROWS, cols: int = LIDAR_COLS,
                     elevation: tuple[float, float] = LIDAR_ELEVATION) -> np.ndarray:
    """(rows, cols, 3) unit beam directions in the LiDAR frame (row 0 = highest beam, column j at
    azimuth 2 pi j / cols counter-clockwise from +x)."""
    el = np.linspace(elevation[0], elevation[1], rows)
    az = np.arange(cols) * (2 * np.pi / cols)
    el, az = np.meshgrid(el, az, indexing="ij")
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def lidar_scan(world: SynthWorld, prims: Primitives, lidar_to_world: np.ndarray, ground: bool = True,
               rows: int = LIDAR_ROWS, cols: int = LIDAR_COLS, max_range: float = LIDAR_MAX_RANGE,
               elevation: tuple[float, float] = LIDAR_ELEVATION) -> Hits:
    """Range image (rows, cols) of a LiDAR at `lidar_to_world`; `t` is the range in metres.
    Rows span `elevation` (top, bottom) radians."""
    local = lidar_directions(rows, cols, elevation)
    dirs = apply_linear(local, lidar_to_world[:3, :3])
    origin = lidar_to_world[:3, 3].astype(np.float64)
    rects, nearest = spherical_rects(prims, lidar_to_world, rows, cols, elevation)
    hits = cast(world, prims, origin, dirs, rects, nearest, ground=ground)
    far = hits.t > max_range
    hits.t[far], hits.index[far], hits.raw[far] = np.inf, NO_HIT, 0
    return hits


def camera_to_world(world: SynthWorld, frame: int, camera: str = "P2",
                    image_size: tuple[int, int] = KITTI_IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Intrinsics K (3, 3) and pose (4, 4) camera -> world of KITTI camera `camera` at `frame`."""
    calib = kitti_calibration(image_size)
    if camera not in ("P0", "P1", "P2", "P3"):
        raise ValueError(f"camera must be one of P0..P3, got {camera!r}")
    pose = world.cam0_pose(frame).copy()
    pose[:3, 3] += pose[:3, :3] @ camera_center_cam0(calib, camera)
    return calib[camera][:, :3], pose


def render_view(world: SynthWorld, frame: int, camera: str = "P2",
                image_size: tuple[int, int] = KITTI_IMAGE_SIZE) -> CameraRender:
    """Render KITTI camera `camera` ('P2' = image_2, 'P3' = image_3) of `frame`."""
    k, pose = camera_to_world(world, frame, camera, image_size)
    return render_camera(world, world.scene_at(world.frame_time(frame)), k, pose, image_size)
