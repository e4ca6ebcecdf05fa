"""Synthetic ultra-high-speed (UHS) x-ray sequences made by simple image-formation physics.

Stands in for real two-camera x-ray data (tests, the demo, a first look). Each sequence is a
sample (powder bed, porous or fibre-reinforced column) that is static, drifts slowly or (in some
sequences) translates as a whole, with a local fast event: ballistic particles or spatter, a
growing crack, a laser keyhole scanning a powder bed, a breaking liquid jet, a rotor or a flapping
part. Every frame goes through the same chain:

    projected thickness -> attenuation a = sum(mu * t) and phase phi = sum(k * delta * t)
    -> exit wave exp(-a / 2 - i phi) -> Fresnel propagation to the detector (near field)
    -> |wave|^2 times the flat field (beam profile, slowly drifting)
    -> detector PSF (Gaussian) and pixel integration: HR = 2x2 of the supersampled grid,
       LR = 8x8 (4x4 HR pixels) after a wider PSF -> Poisson noise per camera at b0 photons/pixel.

Layout: ``<out>/<seq>/HR/%08d.png``, ``<out>/<seq>/LR/%08d.png`` and ``<out>/<seq>/meta.json``.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import fft as sfft
from tqdm import tqdm

from xfusion.camera import SCALE, area_average, blur, poisson_noise
from xfusion.errors import InputError
from xfusion.io.frames import write_frame
from xfusion.io.intensity import IntensityScale

SS = 2  # supersampling of the HR grid: objects are evaluated at sub-pixel positions, so motion is smooth
PAD = 6  # HR pixels rendered around the field of view, so that propagation and blur see content at the borders
SUBFRAMES = 3  # instants averaged over the exposure of a motion-blurred frame
FLAT_UNIT = 0.8  # stored value (fraction of the dtype range) of intensity 1 = the flat field; fixed for all frames


@dataclass(frozen=True)
class Material:
    mu: float  # Beer-Lambert attenuation per HR pixel of thickness
    phase: float  # phase shift (rad) per HR pixel of thickness


def _log_uniform(rng: np.random.Generator, low: float, high: float, size=None):
    return np.exp(rng.uniform(math.log(low), math.log(high), size))


def _clean(value):
    """Meta values as plain JSON types (numpy scalars/arrays, tuples), floats rounded."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_clean(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return round(float(value), 4)
    return value


class Grid:
    """Sample-plane coordinates (HR pixels) of a supersampled grid: index (j, i) is at (y0 + j / SS, x0 + i / SS)."""

    def __init__(self, y0: float, x0: float, ny: int, nx: int):
        self.y0, self.x0, self.ny, self.nx = y0, x0, ny, nx

    @property
    def ys(self) -> np.ndarray:
        return (self.y0 + np.arange(self.ny) / SS)[:, None]

    @property
    def xs(self) -> np.ndarray:
        return (self.x0 + np.arange(self.nx) / SS)[None, :]

    def window(self, ymin: float, ymax: float, xmin: float, xmax: float):
        """The part of the grid covering a box: (slices, yy column, xx row), or None when outside."""
        j0, j1 = max(math.floor((ymin - self.y0) * SS), 0), min(math.ceil((ymax - self.y0) * SS) + 1, self.ny)
        i0, i1 = max(math.floor((xmin - self.x0) * SS), 0), min(math.ceil((xmax - self.x0) * SS) + 1, self.nx)
        if j0 >= j1 or i0 >= i1:
            return None
        yy = (self.y0 + np.arange(j0, j1) / SS)[:, None]
        xx = (self.x0 + np.arange(i0, i1) / SS)[None, :]
        return (slice(j0, j1), slice(i0, i1)), yy, xx


class Projection:
    """Projected attenuation (Beer-Lambert exponent) and phase of everything on a grid."""

    def __init__(self, grid: Grid):
        self.grid = grid
        self.a = np.zeros((grid.ny, grid.nx), np.float32)
        self.phi = np.zeros((grid.ny, grid.nx), np.float32)

    def add(self, where, thickness, mat: Material) -> None:
        self.a[where] += mat.mu * thickness
        self.phi[where] += mat.phase * thickness

    def ball(self, cy: float, cx: float, r: float, mat: Material, sign: float = 1.0) -> None:
        """A sphere (sign -1: a void in the surrounding material)."""
        win = self.grid.window(cy - r, cy + r, cx - r, cx + r)
        if win is not None:
            where, yy, xx = win
            self.add(where, sign * _chord((yy - cy) ** 2 + (xx - cx) ** 2, r), mat)


def _chord(d2, r: float):
    """Projected thickness of a sphere / cylinder of radius r at squared distance d2 from its axis."""
    return 2.0 * np.sqrt(np.maximum(r * r - d2, 0.0))


def _segment_distance(yy, xx, p, q):
    """Distance of grid points to the segment p-q, and the position along it (0..1)."""
    dy, dx = q[0] - p[0], q[1] - p[1]
    u = np.clip(((yy - p[0]) * dy + (xx - p[1]) * dx) / max(dy * dy + dx * dx, 1e-12), 0.0, 1.0)
    return np.hypot(yy - p[0] - u * dy, xx - p[1] - u * dx), u


def _texture(rng: np.random.Generator, shape: tuple[int, int], beta: float, fine: float) -> np.ndarray:
    """Zero-mean periodic multi-scale noise on the supersampled grid: a power law (spectral exponent beta)
    plus `fine` times a band at 2-4 HR pixels, the detail that only the HR camera resolves."""
    ny, nx = shape
    f = np.sqrt((np.fft.fftfreq(ny)[:, None] * SS) ** 2 + (np.fft.rfftfreq(nx)[None, :] * SS) ** 2)
    f[0, 0] = 1.0
    out = np.zeros(shape)
    for weight, amp in ((1.0, f ** (-beta / 2) * np.exp(-(f / 0.45) ** 4)),
                        (fine, np.exp(-((f - 0.3) / 0.12) ** 2))):
        amp[0, 0] = 0.0
        field = np.fft.irfft2(np.fft.rfft2(rng.normal(size=shape)) * amp, s=shape)
        out += weight * field / (field.std() + 1e-12)
    return out.astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# The static (or drifting / translating) sample, on a canvas larger than the field of view


class Sample:
    """Static sample in sample coordinates on a canvas; `maps` are moved with the sample every frame."""

    def __init__(self, rng: np.random.Generator, kind: str, hr_size: tuple[int, int], margin: int):
        h, w = hr_size
        self.kind = kind
        self.grid = Grid(-PAD - margin - 0.5 + 0.5 / SS, -PAD - margin - 0.5 + 0.5 / SS,
                         (h + 2 * PAD + 2 * margin) * SS, (w + 2 * PAD + 2 * margin) * SS)
        proj = Projection(self.grid)
        ys, xs = self.grid.ys, self.grid.xs
        shape = (self.grid.ny, self.grid.nx)
        # windows of the sample cell / air path: a faint fine texture everywhere
        window = Material(0.002, 0.04)
        proj.add(np.s_[:, :], 15.0 * (1 + 0.12 * _texture(rng, shape, 2.5, 1.0)), window)
        self.maps: dict[str, np.ndarray] = {}
        self.params: dict = {'kind': kind}
        if kind == 'powder_bed':
            self._powder_bed(rng, proj, hr_size, shape, ys, xs)
        else:
            self._column(rng, proj, hr_size, shape, ys, xs)
        self.maps['a'], self.maps['phi'] = proj.a, proj.phi

    def _powder_bed(self, rng, proj, hr_size, shape, ys, xs) -> None:
        h, w = hr_size
        depth = rng.uniform(20, 35)  # substrate thickness along the beam: a few keyhole widths
        mu = rng.uniform(0.9, 1.4) / depth
        self.metal = Material(mu, mu * rng.uniform(4, 8))
        self.y_surf = rng.uniform(0.55, 0.72) * h
        rough = 0.4 * _texture(rng, (1, shape[1]), 3.0, 0.0)[0]
        # the surface, rough along the beam, projects to a ramp about a pixel wide (no phase jump of many radians)
        inside = np.clip((ys - self.y_surf - rough[None, :]) / 1.2 + 0.5, 0, 1)
        # density/grain texture, scaled to a given phase contrast (rad) rather than to the plate's large total phase
        grain = rng.uniform(0.05, 0.12) / self.metal.phase
        proj.add(np.s_[:, :], inside * (depth + grain * _texture(rng, shape, 2.0, 1.0)), self.metal)
        # small gas pores in the substrate
        area = self.grid.nx / SS * (self.grid.y0 + self.grid.ny / SS - self.y_surf)
        for _ in range(int(area * rng.uniform(0.004, 0.01))):
            y, x = rng.uniform(self.y_surf + 2, self.grid.y0 + self.grid.ny / SS), rng.uniform(xs[0, 0], xs[0, -1])
            proj.ball(y, x, _log_uniform(rng, 0.5, 2.2), self.metal, -1.0)
        # powder layer: overlapping spheres finer than 4 HR pixels, a separate map so that the laser can melt it
        powder = Projection(self.grid)
        self.powder_height = rng.uniform(6, 12)
        radii = _log_uniform(rng, 1.0, 3.2, int(self.grid.nx / SS * self.powder_height * rng.uniform(0.1, 0.2)))
        for r in radii:
            y = self.y_surf - rng.uniform(r, max(self.powder_height - r, r + 0.1))
            powder.ball(y, rng.uniform(xs[0, 0], xs[0, -1]), r, self.metal)
        self.maps['powder_a'], self.maps['powder_phi'] = powder.a, powder.phi
        self.params.update(surface_y=self.y_surf, substrate_attenuation=self.metal.mu * depth,
                           powder_height=self.powder_height, powder_particles=len(radii), metal=asdict(self.metal))

    def _column(self, rng, proj, hr_size, shape, ys, xs) -> None:
        """A cylindrical specimen with a vertical axis: its edge in the field of view, or covering all of it."""
        h, w = hr_size
        if rng.random() < 0.4:
            self.radius, self.center, self.edge = 4.0 * w, w / 2, None
        else:
            self.radius = rng.uniform(1.0, 2.5) * w
            side = rng.choice([-1, 1])  # -1: sample to the left of its edge
            self.edge = rng.uniform(0.12, 0.35) * w if side > 0 else rng.uniform(0.65, 0.88) * w
            self.center = self.edge + side * self.radius
        # a light material (polymer, foam, light alloy): weak absorption, phase contrast dominates
        self.matrix = Material(rng.uniform(0.4, 0.9) / (2 * self.radius), rng.uniform(0.04, 0.08))
        # projected thickness of the column, its edge smoothed by surface roughness along the beam (~1 px), which
        # also keeps the phase step at the edge resolvable on the grid
        chord = _chord((xs - self.center) ** 2, self.radius)
        chord = cv2.GaussianBlur(chord.astype(np.float32), (0, 0), sigmaX=0.7 * SS, sigmaY=0.01,
                                 borderType=cv2.BORDER_REPLICATE)
        grain = rng.uniform(0.05, 0.12) / self.matrix.phase
        proj.add(np.s_[:, :], chord + grain * self.inside(xs) * _texture(rng, shape, 2.2, 1.2), self.matrix)
        x_range = (max(xs[0, 0], self.center - self.radius), min(xs[0, -1], self.center + self.radius))
        y_range = (ys[0, 0], ys[-1, 0])
        area = (x_range[1] - x_range[0]) * (y_range[1] - y_range[0])
        # pores (voids) and, in a composite, fibres denser than the matrix, sized like the HR pixels
        n_pores = int(area * (rng.uniform(0.006, 0.02) if self.kind == 'porous' else rng.uniform(0.0, 0.002)))
        for _ in range(n_pores):
            proj.ball(rng.uniform(*y_range), rng.uniform(*x_range), _log_uniform(rng, 0.6, 4.5), self.matrix, -1.0)
        self.params.update(radius=self.radius, edge_x=self.edge, matrix=asdict(self.matrix), pores=n_pores)
        if self.kind == 'composite':
            fibre = Material(rng.uniform(0.02, 0.06), rng.uniform(0.1, 0.2))
            theta0, spread = rng.uniform(0, np.pi), rng.uniform(0.1, 0.6)
            n_fibres = int(area * rng.uniform(0.015, 0.03) / 4)
            for _ in range(n_fibres):
                r, length = rng.uniform(0.7, 2.0), rng.uniform(8, 40)
                theta = theta0 + rng.normal(0, spread)
                c = np.array([rng.uniform(*y_range), rng.uniform(*x_range)])
                half = 0.5 * length * np.array([math.sin(theta), math.cos(theta)])
                p, q = c - half, c + half
                win = self.grid.window(min(p[0], q[0]) - r, max(p[0], q[0]) + r, min(p[1], q[1]) - r,
                                       max(p[1], q[1]) + r)
                if win is not None:
                    where, yy, xx = win
                    d, _ = _segment_distance(yy, xx, p, q)
                    proj.add(where, _chord(d ** 2, r) * self.inside(xx), fibre)
            self.params.update(fibres=n_fibres, fibre_material=asdict(fibre), fibre_angle=theta0)

    def inside(self, xx):
        """Fraction of a pixel inside the column (1-D in x), antialiased."""
        return np.clip((self.radius - np.abs(xx - self.center)) * SS + 0.5, 0, 1)


# ---------------------------------------------------------------------------------------------------------------
# Fast events: each draws its projected thickness at time t on the frame grid (sample coordinates)


class Particles:
    """Ballistic spheres: droplets or debris crossing the field of view, or spatter from a keyhole."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int], source=None,
                 rate: tuple[float, float] = (0.2, 0.7), speed: tuple[float, float] = (5, 25),
                 radius: tuple[float, float] = (0.8, 4.5)):
        h, w = hr_size
        self.kind = 'spatter' if source is not None else 'ballistic_particles'
        rate = rng.uniform(0.5, 1.5) if source is not None else rng.uniform(*rate)
        n = max(int(rng.poisson(rate * (frames + 15))), 3)
        self.t0 = rng.uniform(-15, frames, n)
        speed = rng.uniform(*speed, n)
        self.radius = _log_uniform(rng, radius[0], 3.5 if source is not None else radius[1], n)
        self.gravity = np.array([rng.uniform(0.0, 0.4), 0.0])
        if source is not None:
            # ejected upwards and backwards from the keyhole mouth
            angle = -np.pi / 2 - source.direction * rng.uniform(-0.3, 1.1, n)
            self.p0 = np.array([source.mouth(t) for t in self.t0])
        else:
            side = rng.integers(0, 4, n)
            y = np.where(side == 0, -5.0, np.where(side == 1, h + 5.0, rng.uniform(0, h, n)))
            x = np.where(side == 2, -5.0, np.where(side == 3, w + 5.0, rng.uniform(0, w, n)))
            self.p0 = np.stack([y, x], 1)
            target = np.stack([rng.uniform(0.2, 0.8, n) * h, rng.uniform(0.2, 0.8, n) * w], 1)
            angle = np.arctan2(target[:, 0] - y, target[:, 1] - x)
        self.velocity = speed[:, None] * np.stack([np.sin(angle), np.cos(angle)], 1)
        self.materials = [Material(rng.uniform(0.05, 0.12), rng.uniform(0.3, 0.5)),
                          Material(rng.uniform(0.005, 0.02), rng.uniform(0.15, 0.3))]
        self.which = rng.random(n) < (0.8 if source is not None else 0.5)
        self.params = dict(kind=self.kind, count=n, rate_per_frame=rate, speed_px_per_frame=[speed.min(), speed.max()],
                           radius_px=[self.radius.min(), self.radius.max()], gravity_px_per_frame2=self.gravity[0])

    def render(self, proj: Projection, t: int, maps: dict) -> None:
        dt = t - self.t0
        pos = self.p0 + self.velocity * dt[:, None] + 0.5 * self.gravity * dt[:, None] ** 2
        for k in np.flatnonzero(dt >= 0):
            proj.ball(pos[k, 0], pos[k, 1], self.radius[k], self.materials[0 if self.which[k] else 1])


class Crack:
    """A crack running from the sample edge (or the border of the view) at several pixels per frame, then opening."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int], sample: Sample, name: str,
                 start=None, direction=None, t_start=None, speed=None, length=None):
        h, w = hr_size
        self.name, self.kind, self.sample = name, 'crack', sample
        if start is None:
            if sample.edge is not None:
                start = np.array([rng.uniform(0.2, 0.8) * h, sample.edge])
                direction = 0.0 if sample.center > sample.edge else np.pi
            else:
                side = rng.integers(0, 4)
                start = np.array([[0, rng.uniform(0.2, 0.8) * w], [h, rng.uniform(0.2, 0.8) * w],
                                  [rng.uniform(0.2, 0.8) * h, 0], [rng.uniform(0.2, 0.8) * h, w]][side], float)
                direction = [np.pi / 2, -np.pi / 2, 0.0, np.pi][side]
            direction += rng.uniform(-0.5, 0.5)
        self.speed = speed if speed is not None else rng.uniform(4, 12)
        length = length if length is not None else rng.uniform(0.5, 0.9) * min(h, w)
        self.t_start = t_start if t_start is not None else rng.uniform(-0.1, 0.4) * frames
        # the path: a random walk of short steps that stays in the field of view
        points, theta = [np.asarray(start, float)], direction
        while len(points) * 2.0 < length:
            theta += rng.normal(0, 0.15)
            nxt = points[-1] + 2.0 * np.array([math.sin(theta), math.cos(theta)])
            if not (-1 <= nxt[0] <= h + 1 and -1 <= nxt[1] <= w + 1):
                break
            points.append(nxt)
        self.points = np.array(points)
        self.length = 2.0 * (len(points) - 1)
        self.width = rng.uniform(0.8, 2.5)
        mat = sample.matrix
        # crack extent along the beam (material missing); a few radians of phase at most, so that the step across
        # the crack stays resolvable on the supersampled grid
        self.depth = rng.uniform(1.0, 2.5) / mat.phase
        self.params = dict(kind='crack', tip_speed_px_per_frame=self.speed, start_frame=self.t_start,
                           length_px=self.length, max_opening_px=self.width, start_yx=start,
                           attenuation_loss=mat.mu * self.depth, phase_loss_rad=mat.phase * self.depth)
        # distance to the path and arc length of the nearest point, on the sample canvas (moved with the sample)
        grid = sample.grid
        dist = np.full((grid.ny, grid.nx), 1e3, np.float32)
        arc = np.zeros((grid.ny, grid.nx), np.float32)
        reach = self.width + 3
        for k in range(len(self.points) - 1):
            p, q = self.points[k], self.points[k + 1]
            win = grid.window(min(p[0], q[0]) - reach, max(p[0], q[0]) + reach, min(p[1], q[1]) - reach,
                              max(p[1], q[1]) + reach)
            if win is None:
                continue
            where, yy, xx = win
            d, u = _segment_distance(yy, xx, p, q)
            closer = d < dist[where]
            dist[where] = np.where(closer, d, dist[where])
            arc[where] = np.where(closer, 2.0 * (k + u), arc[where])
        sample.maps[f'{name}_d'], sample.maps[f'{name}_s'] = dist, arc

    def tip(self, t: float) -> float:
        return float(np.clip(self.speed * (t - self.t_start), 0, self.length))

    def render(self, proj: Projection, t: int, maps: dict) -> None:
        tip = self.tip(t)
        if tip <= 0:
            return
        d, s = maps[f'{self.name}_d'], maps[f'{self.name}_s']
        arrested = max(t - self.t_start - self.length / self.speed, 0.0)
        opening = self.width * (1 + 0.4 * min(arrested / 20, 1.0)) * np.sqrt(
            np.clip((tip - s) / (0.5 * self.length), 0, 1))
        # antialiased box profile whose integral across the crack is the opening, even below a pixel
        frac = np.clip(opening / 2 + 0.5 / SS - d, 0, np.minimum(opening, 1.0 / SS)) * SS
        frac *= np.clip((tip - s) * SS, 0, 1) * self.sample.inside(proj.grid.xs)
        proj.add(np.s_[:, :], -self.depth * frac, self.sample.matrix)


class Keyhole:
    """Laser powder-bed fusion: a fluctuating vapour keyhole scanning along the surface, melting the powder into a
    track, with a melt pool behind it and pores left in the solidified metal."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int], sample: Sample):
        h, w = hr_size
        self.kind, self.sample = 'keyhole', sample
        self.direction = float(rng.choice([-1, 1]))
        self.speed = float(np.clip(1.3 * w / frames, 2.5, 8.0) * rng.uniform(0.8, 1.2))
        # the laser is inside the view around the middle of the sequence
        x_mid = rng.uniform(0.35, 0.65) * w
        self.x0 = x_mid - self.direction * self.speed * frames / 2
        self.depth = rng.uniform(0.15, 0.3) * h
        self.width = rng.uniform(6, 12)
        self.tilt = rng.uniform(0.1, 0.4)
        self.period = rng.uniform(2.5, 7)
        self.phase = rng.uniform(0, 2 * np.pi, 2)
        self.pool = (rng.uniform(1.5, 3.0) * self.depth, rng.uniform(0.5, 0.8) * self.depth)
        self.bead = rng.uniform(1.5, 4.0)
        self.x_begin = self.x0 - self.direction * 30  # where the track started (before the sequence)
        n_pores = rng.poisson(frames / 15)
        self.pores = [(tp, self.x_at(tp) - self.direction * rng.uniform(2, 6),
                       sample.y_surf + self.depth * rng.uniform(0.6, 1.0), rng.uniform(1.0, 2.5))
                      for tp in rng.uniform(0, frames, n_pores)]
        self.params = dict(kind='keyhole', scan_speed_px_per_frame=self.speed, direction=self.direction,
                           depth_px=self.depth, width_px=self.width, oscillation_period_frames=self.period,
                           melt_pool_px=self.pool, pores=n_pores)

    def x_at(self, t: float) -> float:
        return self.x0 + self.direction * self.speed * t

    def depth_at(self, t: float) -> float:
        return self.depth * (1 + 0.25 * math.sin(2 * np.pi * t / self.period + self.phase[0])
                             + 0.12 * math.sin(2 * np.pi * t / (0.37 * self.period) + self.phase[1]))

    def mouth(self, t: float) -> np.ndarray:
        return np.array([self.sample.y_surf - 2.0, self.x_at(t)])

    def render(self, proj: Projection, t: int, maps: dict) -> None:
        metal, ys, xs, y0 = self.sample.metal, proj.grid.ys, proj.grid.xs, self.sample.y_surf
        xl, dk = self.x_at(t), self.depth_at(t)
        behind = self.direction * (xl - xs)  # > 0 where the laser has passed
        scanned = np.clip(behind * SS + 0.5, 0, 1) * np.clip(self.direction * (xs - self.x_begin) * SS + 0.5, 0, 1)
        # powder: melted behind the laser (and blown away just ahead of it)
        keep = 1 - np.clip((behind + self.width) / 3, 0, 1) * np.clip(self.direction * (xs - self.x_begin) + 1, 0, 1)
        proj.a += keep * maps['powder_a']
        proj.phi += keep * maps['powder_phi']
        # solidified track: a bead above the surface, rising behind the melt pool
        height = self.bead * np.clip(behind / self.pool[0], 0, 1) * (1 + 0.15 * np.sin(xs * 1.3))
        # (its top edge a ramp ~1 px wide, like the substrate surface: rough along the beam)
        bead = np.clip((ys - (y0 - height)) / 1.2 + 0.5, 0, 1) * np.clip((y0 + 0.5 - ys) * SS, 0, 1) * scanned
        proj.add(np.s_[:, :], 0.8 / metal.mu * bead, metal)  # as thick along the beam as the substrate
        # melt pool: liquid metal is ~8 % less dense than the solid
        win = proj.grid.window(y0, y0 + self.pool[1], xl - self.pool[0] - self.width, xl + self.pool[0] + self.width)
        if win is not None:
            where, yy, xx = win
            ahead = self.direction * (xx - xl)  # the pool ends just ahead of the keyhole, trails far behind it
            e = (ahead / np.where(ahead > 0, self.width, self.pool[0])) ** 2 + ((yy - y0) / self.pool[1]) ** 2
            proj.add(where, -0.08 * 2 * self.pool[1] * np.sqrt(np.maximum(1 - e, 0)), metal)
        # keyhole: a vapour cavity, narrowing with depth, its front wall inclined
        win = proj.grid.window(y0 - 1, y0 + dk * 1.05, xl - self.width - self.tilt * dk - 2, xl + self.width + 2)
        if win is not None:
            where, yy, xx = win
            depth = yy - y0
            axis = xl - self.direction * self.tilt * np.clip(depth, 0, None)
            half = 0.5 * self.width * np.sqrt(np.clip(1 - (depth / dk) ** 3, 0, 1)) * np.clip((depth + 1) * SS, 0, 1)
            proj.add(where, -_chord((xx - axis) ** 2, half), metal)
        for tp, x, y, r in self.pores:
            if t >= tp:
                proj.ball(y, x, r, metal, -1.0)


class Jet:
    """A liquid jet from a nozzle, its front advancing at the flow speed, breaking up into drops (Rayleigh-Plateau):
    the surface ripples travel with the liquid, so every pixel on the jet changes from frame to frame."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int]):
        h, w = hr_size
        self.kind = 'jet'
        side = rng.choice(['top', 'top', 'left', 'right'])
        if side == 'top':
            self.nozzle, angle = np.array([-PAD - 2.0, rng.uniform(0.2, 0.8) * w]), np.pi / 2
        else:
            x = -PAD - 2.0 if side == 'left' else w + PAD + 2.0
            self.nozzle, angle = np.array([rng.uniform(0.15, 0.6) * h, x]), 0.0 if side == 'left' else np.pi
        angle += rng.uniform(-0.35, 0.35)
        self.axis = np.array([math.sin(angle), math.cos(angle)])
        self.radius = rng.uniform(1.5, 4.5)
        self.wavelength = rng.uniform(8, 11) * self.radius
        self.speed = rng.uniform(5, max(0.45 * self.wavelength, 6))
        span = h + w
        self.t_start = rng.uniform(-span / self.speed, 0.4 * frames)
        amp0 = rng.uniform(0.02, 0.08)
        self.growth = rng.uniform(0.3, 0.9) * min(h, w) / math.log(1 / amp0)
        self.amp0, self.phase = amp0, rng.uniform(0, 2 * np.pi)
        self.material = (Material(rng.uniform(0.001, 0.003), rng.uniform(0.1, 0.2)) if rng.random() < 0.6
                         else Material(rng.uniform(0.04, 0.1), rng.uniform(0.15, 0.25)))
        self.params = dict(kind='jet', speed_px_per_frame=self.speed, radius_px=self.radius,
                           breakup_wavelength_px=self.wavelength, start_frame=self.t_start, side=side,
                           angle_rad=angle, material=asdict(self.material))

    def render(self, proj: Projection, t: int, maps: dict) -> None:
        front = self.speed * (t - self.t_start)
        if front <= 0:
            return
        s = (proj.grid.ys - self.nozzle[0]) * self.axis[0] + (proj.grid.xs - self.nozzle[1]) * self.axis[1]
        d = (proj.grid.ys - self.nozzle[0]) * self.axis[1] - (proj.grid.xs - self.nozzle[1]) * self.axis[0]
        amp = np.minimum(self.amp0 * np.exp(np.maximum(s, 0) / self.growth), 0.92)
        r = self.radius * (1 + amp * np.sin(2 * np.pi * (s - self.speed * t) / self.wavelength + self.phase))
        q = np.clip((front - s) / self.radius, 0, 1)  # rounded tip
        r = r * np.sqrt(q * (2 - q)) * (s > 0)
        proj.add(np.s_[:, :], 2 * np.sqrt(np.maximum(r ** 2 - d ** 2, 0)), self.material)


class Rotor:
    """A small rotor: rods rotating about an axis along the beam, tips moving several pixels per frame."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int]):
        h, w = hr_size
        self.kind = 'rotor'
        self.length = rng.uniform(0.12, 0.25) * min(h, w)
        self.center = np.array([rng.uniform(self.length + 2, h - self.length - 2),
                                rng.uniform(self.length + 2, w - self.length - 2)])
        self.blades = int(rng.integers(2, 5))
        self.rod = rng.uniform(1.2, 3.0)
        tip_speed = rng.uniform(5, 18)
        self.omega = float(rng.choice([-1, 1]) * min(tip_speed / self.length, 0.45 * np.pi / self.blades))
        self.alpha = rng.uniform(-0.005, 0.005)
        self.angle0 = rng.uniform(0, 2 * np.pi)
        self.material = Material(rng.uniform(0.03, 0.08), rng.uniform(0.2, 0.4))
        self.params = dict(kind='rotor', blades=self.blades, length_px=self.length, center_yx=self.center,
                           omega_rad_per_frame=self.omega, tip_speed_px_per_frame=abs(self.omega) * self.length)

    def render(self, proj: Projection, t: int, maps: dict) -> None:
        c, reach = self.center, self.length + self.rod
        win = proj.grid.window(c[0] - reach, c[0] + reach, c[1] - reach, c[1] + reach)
        if win is None:
            return
        where, yy, xx = win
        angle = self.angle0 + self.omega * t + 0.5 * self.alpha * t * t
        dist = None
        for k in range(self.blades):
            phi = angle + 2 * np.pi * k / self.blades
            d, _ = _segment_distance(yy, xx, c, c + self.length * np.array([math.sin(phi), math.cos(phi)]))
            dist = d if dist is None else np.minimum(dist, d)
        thick = _chord(dist ** 2, self.rod) + _chord((yy - c[0]) ** 2 + (xx - c[1]) ** 2, 2.2 * self.rod)
        proj.add(where, thick, self.material)


class Flap:
    """A flexible flap clamped at one end, flapping with a travelling bending wave."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int]):
        h, w = hr_size
        self.kind = 'flap'
        self.length = rng.uniform(0.3, 0.5) * min(h, w)
        side = int(rng.integers(0, 4))
        self.pivot = np.array([[0, rng.uniform(0.3, 0.7) * w], [h, rng.uniform(0.3, 0.7) * w],
                               [rng.uniform(0.3, 0.7) * h, 0], [rng.uniform(0.3, 0.7) * h, w]][side], float)
        self.base = [np.pi / 2, -np.pi / 2, 0.0, np.pi][side] + rng.uniform(-0.3, 0.3)
        self.amplitude = rng.uniform(0.3, 0.7)
        self.period = rng.uniform(6, 16)
        self.wave = rng.uniform(0, 2)
        self.phase = rng.uniform(0, 2 * np.pi)
        self.thickness = rng.uniform(0.8, 2.2)
        self.material = Material(rng.uniform(0.01, 0.06), rng.uniform(0.1, 0.25))
        self.params = dict(kind='flap', length_px=self.length, pivot_yx=self.pivot, amplitude_rad=self.amplitude,
                           period_frames=self.period,
                           tip_speed_px_per_frame=self.length * self.amplitude * 2 * np.pi / self.period)

    def render(self, proj: Projection, t: int, maps: dict) -> None:
        n = 12
        s = np.arange(1, n + 1) / n
        bend = self.base + self.amplitude * s * np.sin(2 * np.pi * t / self.period + self.phase - self.wave * s)
        step = self.length / n * np.stack([np.sin(bend), np.cos(bend)], 1)
        pts = np.vstack([self.pivot, self.pivot + np.cumsum(step, 0)])
        r = self.thickness
        win = proj.grid.window(pts[:, 0].min() - r, pts[:, 0].max() + r, pts[:, 1].min() - r, pts[:, 1].max() + r)
        if win is None:
            return
        where, yy, xx = win
        dist = np.min([_segment_distance(yy, xx, pts[k], pts[k + 1])[0] for k in range(n)], axis=0)
        proj.add(where, _chord(dist ** 2, r), self.material)
        proj.ball(self.pivot[0], self.pivot[1], 2.5 * r, Material(0.06, 0.2))  # the clamp pin


class Wing:
    """An insect-like wing: a thin membrane stiffened by veins, hinged at a body and flapping through a large angle,
    so that between two key frames it sweeps across the view (what it covered is uncovered, and the other way)."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int]):
        h, w = hr_size
        self.kind = 'wing'
        self.length = rng.uniform(0.35, 0.6) * min(h, w)
        self.chord = rng.uniform(0.2, 0.35) * self.length
        self.pivot = np.array([rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w])
        self.base = rng.uniform(0, 2 * np.pi)
        self.amplitude = rng.uniform(0.7, 1.4)  # radians either side of the mean: a sweep of 80 to 160 degrees
        self.period = rng.uniform(10, 40)
        self.phase = rng.uniform(0, 2 * np.pi)
        self.twist = rng.uniform(0.0, 0.3)  # the second harmonic of the stroke: up- and downstroke differ
        self.membrane = Material(rng.uniform(0.004, 0.015), rng.uniform(0.08, 0.2))
        self.vein = Material(rng.uniform(0.02, 0.06), rng.uniform(0.2, 0.35))
        self.veins = [(rng.uniform(-0.35, 0.35), rng.uniform(0.6, 1.0)) for _ in range(int(rng.integers(3, 6)))]
        self.body = rng.uniform(3, 6)
        self.params = dict(kind='wing', length_px=self.length, chord_px=self.chord, pivot_yx=self.pivot,
                           amplitude_rad=self.amplitude, period_frames=self.period,
                           tip_speed_px_per_frame=self.length * self.amplitude * 2 * np.pi / self.period)

    def angle(self, t: float) -> float:
        stroke = 2 * np.pi * t / self.period + self.phase
        return self.base + self.amplitude * math.sin(stroke) + self.twist * math.sin(2 * stroke)

    def render(self, proj: Projection, t: int, maps: dict) -> None:
        reach = self.length + self.chord
        c = self.pivot
        win = proj.grid.window(c[0] - reach, c[0] + reach, c[1] - reach, c[1] + reach)
        if win is None:
            return
        where, yy, xx = win
        a = self.angle(t)
        along = (yy - c[0]) * math.sin(a) + (xx - c[1]) * math.cos(a)  # wing coordinates: along its span
        across = (yy - c[0]) * math.cos(a) - (xx - c[1]) * math.sin(a)  # and across it
        # the outline: an ellipse over the span, widest past its middle, its edge antialiased
        u = along / self.length
        half = self.chord * np.sqrt(np.clip(u * (1.15 - u), 0, None)) / 0.575
        inside = np.clip((half - np.abs(across)) * SS + 0.5, 0, 1) * (u > 0) * (u < 1.15)
        thickness = 2.0 * inside
        for slope, reach_u in self.veins:  # veins fan out from the hinge
            tip = self.length * reach_u * np.array([math.sin(a) + slope * math.cos(a),
                                                    math.cos(a) - slope * math.sin(a)])
            d, _ = _segment_distance(yy, xx, c, c + tip)
            thickness = thickness + _chord(d ** 2, 0.8) * (inside > 0)
        proj.add(where, thickness * 4.0, self.membrane)
        proj.add(where, _chord(np.maximum((yy - c[0]) ** 2 + (xx - c[1]) ** 2, 0), self.body), self.vein)


class Bubbles:
    """Cavitation bubbles in the liquid a porous sample is soaked in: each nucleates, grows to its largest radius
    and collapses within a few frames, rising a little, so that content appears and is gone between two key
    frames. A bubble is liquid missing along the beam (the liquid's own thickness is part of the flat field)."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int]):
        h, w = hr_size
        self.kind = 'bubbles'
        n = max(int(rng.poisson(rng.uniform(0.3, 0.8) * frames)), 3)
        self.t0 = rng.uniform(-5, frames, n)
        self.life = rng.uniform(3, 14, n)  # frames from nucleation to collapse
        self.radius = _log_uniform(rng, 2.0, 0.08 * min(h, w) + 2.5, n)
        self.center = np.stack([rng.uniform(0.1, 0.9, n) * h, rng.uniform(0.1, 0.9, n) * w], 1)
        self.rise = rng.uniform(0.0, 1.5, n)  # px/frame
        self.liquid = Material(rng.uniform(0.01, 0.03), rng.uniform(0.15, 0.3))  # what a bubble displaces
        self.params = dict(kind='bubbles', count=n, lifetime_frames=[self.life.min(), self.life.max()],
                           max_radius_px=[self.radius.min(), self.radius.max()], liquid=asdict(self.liquid))

    def render(self, proj: Projection, t: int, maps: dict) -> None:
        age = (t - self.t0) / self.life
        for k in np.flatnonzero((age > 0) & (age < 1)):
            r = self.radius[k] * math.sin(math.pi * age[k]) ** 0.6  # fast growth, a violent collapse
            y = self.center[k, 0] - self.rise[k] * (t - self.t0[k])
            proj.ball(y, self.center[k, 1], r, self.liquid, -1.0)


# ---------------------------------------------------------------------------------------------------------------
# Scene families: what a sequence holds and how it moves


@dataclass(frozen=True)
class Plan:
    """What a scene holds: its background sample, how the whole sample moves ('translating', 'oscillating' or
    'drift': static or a slow thermal drift), and the fast events (made once the sample is there)."""
    background: str
    motion: str
    events: Callable[[Scene, np.random.Generator], list]


def _mixed(rng: np.random.Generator) -> Plan:
    """The generator's own mix: one growing feature, maybe a moving part, maybe particles; any sample motion."""
    growth = str(rng.choice(['crack', 'keyhole', 'jet']))
    moving = str(rng.choice(['rotor', 'flap', 'none'], p=[0.4, 0.35, 0.25]))
    particles = growth == 'keyhole' or rng.random() < 0.7 or moving == 'none'
    if growth == 'keyhole':
        background = 'powder_bed'
    elif growth == 'crack':
        background = str(rng.choice(['porous', 'composite']))
    else:
        background = str(rng.choice(['powder_bed', 'porous', 'composite']))
    # the whole sample translating at 2-4 px/frame (reversing now and then, so that it stays in view), or
    # oscillating, or a slow thermal drift
    motion = str(rng.choice(['translating', 'oscillating', 'drift'], p=[0.25, 0.2, 0.55]))

    def events(scene: Scene, rng: np.random.Generator) -> list:
        made = _growth(scene, rng, growth)
        if moving == 'rotor':
            made.append(Rotor(rng, scene.frames, scene.hr_size))
        elif moving == 'flap':
            made.append(Flap(rng, scene.frames, scene.hr_size))
        if particles:
            made.append(Particles(rng, scene.frames, scene.hr_size, made[0] if growth == 'keyhole' else None))
        return made
    return Plan(background, motion, events)


def _growth(scene: Scene, rng: np.random.Generator, growth: str) -> list:
    """A growing feature: a crack (branching now and then), a laser keyhole or a liquid jet."""
    frames, hr_size, sample = scene.frames, scene.hr_size, scene.sample
    if growth == 'crack':
        crack = Crack(rng, frames, hr_size, sample, 'crack0')
        made = [crack]
        if rng.random() < 0.4 and len(crack.points) > 6:
            k = int(rng.integers(len(crack.points) // 3, 2 * len(crack.points) // 3))
            step = crack.points[k + 1] - crack.points[k]
            turn = math.atan2(step[0], step[1]) + rng.choice([-1, 1]) * rng.uniform(0.4, 0.9)
            made.append(Crack(rng, frames, hr_size, sample, 'crack1', start=crack.points[k], direction=turn,
                              t_start=crack.t_start + 2.0 * k / crack.speed + rng.uniform(0, 3),
                              speed=crack.speed * rng.uniform(0.6, 1.0),
                              length=rng.uniform(0.3, 0.5) * min(hr_size)))
        return made
    if growth == 'keyhole':
        return [Keyhole(rng, frames, hr_size, sample)]
    return [Jet(rng, frames, hr_size)]


def _keyhole_with_spatter(scene: Scene, rng: np.random.Generator) -> list:
    keyhole = _growth(scene, rng, 'keyhole')[0]
    return [keyhole, Particles(rng, scene.frames, scene.hr_size, keyhole)]


def _family(background: tuple[str, ...], motion: tuple[str, ...], events) -> Callable[[np.random.Generator], Plan]:
    """A family: its sample and sample motion drawn from these, and its events."""
    def plan(rng: np.random.Generator) -> Plan:
        return Plan(str(rng.choice(background)), str(rng.choice(motion)), events)
    return plan


COLUMNS = ('porous', 'composite')
SAMPLES = ('powder_bed', 'porous', 'composite')
FAMILIES: dict[str, Callable[[np.random.Generator], Plan]] = {
    # the whole sample translates (turning now and then) or oscillates by 1.5-4 px per frame, debris crossing
    'drifting_sample': _family(SAMPLES, ('translating', 'oscillating'), lambda scene, rng: [
        Particles(rng, scene.frames, scene.hr_size, rate=(0.05, 0.3))]),
    # a crack running through a column at 4-12 px per frame, branching now and then
    'crack': _family(COLUMNS, ('drift',), lambda scene, rng: _growth(scene, rng, 'crack')),
    # a liquid jet entering the view and breaking into drops that fly on
    'jet': _family(SAMPLES, ('drift',), lambda scene, rng: _growth(scene, rng, 'jet')),
    # rods rotating about an axis along the beam, tips at 5-18 px per frame
    'rotor': _family(SAMPLES, ('drift',), lambda scene, rng: [Rotor(rng, scene.frames, scene.hr_size)]),
    # a laser keyhole scanning a powder bed: the melt pool, the track it leaves, spatter
    'keyhole': _family(('powder_bed',), ('drift',), lambda scene, rng: _keyhole_with_spatter(scene, rng)),
    # fragments that enter, cross the view at 8-30 px per frame and leave
    'debris': _family(SAMPLES, ('drift',), lambda scene, rng: [
        Particles(rng, scene.frames, scene.hr_size, rate=(0.8, 2.0), speed=(8, 30), radius=(1.0, 6.0))]),
    # a thin wing flapping through 80-160 degrees over a textured sample
    'wing': _family(COLUMNS, ('drift',), lambda scene, rng: [Wing(rng, scene.frames, scene.hr_size)]),
    # cavitation bubbles that nucleate, grow and collapse within a few frames
    'bubbles': _family(COLUMNS, ('drift',), lambda scene, rng: [
        Bubbles(rng, scene.frames, scene.hr_size)]),
}
# Which family serves what. Training covers the kinds of motion a network must follow (a sample moving as a whole,
# growth, fluid breakup, rigid rotation); validation, where designs and recipes are chosen, holds processes of other
# physics that mix them (a scanning melt pool with spatter; fast debris that appear and leave); the test families,
# used for nothing but the final table, are the hardest for key-frame fusion: a thin structure that sweeps far
# between two key frames, and content that appears and vanishes between them.
ROLES = {'train': ('drifting_sample', 'crack', 'jet', 'rotor'), 'val': ('keyhole', 'debris'),
         'test': ('wing', 'bubbles')}


def families_of(names: str | list[str] | None) -> list[str | None]:
    """``'wing,crack'``, a role (``'test'``) or a list of them -> family names; None: the generator's own mix."""
    if names is None:
        return [None]
    items = names.split(',') if isinstance(names, str) else list(names)
    out: list[str | None] = []
    for item in (i.strip() for i in items if i.strip()):
        if item in ROLES:
            out.extend(ROLES[item])
        elif item in FAMILIES or item == 'mixed':
            out.append(None if item == 'mixed' else item)
        else:
            raise InputError(f'--families: unknown family {item!r}; the families are {", ".join(FAMILIES)} '
                             f'(or a role: {", ".join(ROLES)}; or mixed)')
    if not out:
        raise InputError('--families: give at least one family')
    return out


# ---------------------------------------------------------------------------------------------------------------
# Beam, optics and detectors


class Beam:
    """Flat field: a vertical beam profile with fine stripes (monochromator), drifting slowly, and a slowly varying
    source intensity; lab-fixed, so it does not move with the sample."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int]):
        h, w = hr_size
        self.center, self.sigma = rng.uniform(0.2, 0.8) * h, rng.uniform(1.0, 2.0) * h
        self.stripes = [(rng.uniform(0.003, 0.02), rng.uniform(4, 40), rng.uniform(0, 2 * np.pi)) for _ in range(4)]
        self.gradient = rng.uniform(-0.06, 0.06)
        self.drift = rng.uniform(-0.02, 0.02)  # px/frame
        self.vibration = (rng.uniform(0, 0.2), rng.uniform(5, 30))
        self.source = 0.006 * np.cumsum(rng.normal(0, 1, frames)) / math.sqrt(frames)
        self.width = w
        ys = np.arange(h, dtype=float)
        self.norm = 1.0
        self.norm = 1.0 / float(self.profile_y(ys, 0).mean())  # the mean flat field is intensity 1
        self.params = dict(drift_px_per_frame=self.drift, vibration_px=self.vibration[0],
                           horizontal_gradient=self.gradient, source_fluctuation=float(np.abs(self.source).max()))

    def profile_y(self, y, t: int):
        y = y - self.drift * t - self.vibration[0] * math.sin(2 * np.pi * t / self.vibration[1])
        prof = np.exp(-0.5 * ((y - self.center) / self.sigma) ** 2)
        for amp, period, phase in self.stripes:
            prof = prof * (1 + amp * np.sin(2 * np.pi * y / period + phase))
        return self.norm * prof

    def field(self, ys_lab, xs_lab, t: int) -> np.ndarray:
        return ((1 + self.source[t]) * self.profile_y(ys_lab, t)
                * (1 + self.gradient * (xs_lab / self.width - 0.5))).astype(np.float32)


class Scene:
    """One sequence: sample, events, global motion, beam and optics; `frame(t)` gives the clean HR and LR intensity."""

    def __init__(self, rng: np.random.Generator, frames: int, hr_size: tuple[int, int], family: str | None = None):
        h, w = hr_size
        self.hr_size, self.frames, self.family = hr_size, frames, family or 'mixed'
        plan = FAMILIES[family](rng) if family else _mixed(rng)
        kind = plan.motion
        self.global_motion = kind != 'drift'
        angle = rng.uniform(0, 2 * np.pi)
        self.direction = np.array([math.sin(angle), math.cos(angle)])
        if kind == 'translating':
            self.speed, self.turn = rng.uniform(2.0, 4.0), rng.uniform(10, 25)  # px/frame, frames between turns
            motion = dict(kind=kind, peak_speed_px_per_frame=self.speed, frames_between_turns=self.turn,
                          angle_rad=angle)
        elif kind == 'oscillating':
            speed, self.period, self.phase = rng.uniform(1.5, 4.0), rng.uniform(30, 70), rng.uniform(0, 2 * np.pi)
            self.amplitude = speed * self.period / (2 * np.pi)
            motion = dict(kind=kind, peak_speed_px_per_frame=speed, period_frames=self.period,
                          amplitude_px=self.amplitude, angle_rad=angle)
        else:
            self.velocity = rng.normal(0, 0.01, 2) * (rng.random() < 0.5)  # half static, half a slow drift
            motion = dict(kind=kind, drift_px_per_frame=self.velocity)
        self.motion_kind = kind
        self.motion_params = motion
        # motion blur: half the sequences integrate over part of the frame interval (both cameras alike)
        self.exposure = float(rng.uniform(0.3, 0.9)) if rng.random() < 0.5 else 0.0
        self.offset = np.stack([self.offset_at(t) for t in np.arange(-0.5, frames, 0.25)])  # for the margin
        margin = int(math.ceil(np.abs(self.offset).max())) + 2
        self.margin = margin
        self.sample = Sample(rng, plan.background, hr_size, margin)
        self.events: list = plan.events(self, rng)
        self.beam = Beam(rng, frames, hr_size)
        # optics: Fresnel fringe scale sqrt(lambda * z) and the two cameras' PSFs, in HR pixels
        self.fresnel = rng.uniform(1.3, 2.4)
        self.psf_hr, self.psf_lr = rng.uniform(0.5, 0.8), rng.uniform(1.2, 2.0)
        ny, nx = (h + 2 * PAD) * SS, (w + 2 * PAD) * SS
        # DCT-domain Fresnel transfer function (mirror boundaries, no wrap-around between opposite borders)
        fy, fx = np.arange(ny)[:, None] / (2 * ny), np.arange(nx)[None, :] / (2 * nx)  # cycles per sample
        self.transfer = np.exp(-1j * np.pi * (self.fresnel * SS) ** 2 * (fy ** 2 + fx ** 2)).astype(np.complex64)

    def offset_at(self, t: float) -> np.ndarray:
        """(dy, dx) displacement of the sample at time t (frames, may be fractional)."""
        if self.motion_kind == 'translating':  # a triangle wave: constant speed, turning every self.turn frames
            phase = (t / self.turn) % 2.0
            return self.speed * self.turn * (phase if phase <= 1 else 2 - phase) * self.direction
        if self.motion_kind == 'oscillating':
            return self.amplitude * (math.sin(2 * np.pi * t / self.period + self.phase) - math.sin(self.phase)) \
                * self.direction
        return t * self.velocity

    def exposure_instants(self, t: int) -> list[float]:
        """The instants frame t integrates over (t itself without motion blur)."""
        if self.exposure == 0:
            return [t]
        return [t + self.exposure * (k / (SUBFRAMES - 1) - 0.5) for k in range(SUBFRAMES)]

    def mean_offset(self, t: int) -> np.ndarray:
        """(dy, dx): the sample's displacement in frame t, averaged over its exposure."""
        return np.mean([self.offset_at(s) for s in self.exposure_instants(t)], axis=0)

    def frame(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Clean (HR, LR) intensity of frame t, integrated over the exposure (SUBFRAMES instants) when there is one."""
        frames = [self._instant(s, t) for s in self.exposure_instants(t)]
        return tuple(np.mean([f[i] for f in frames], axis=0) for i in range(2))

    def _instant(self, t: float, frame: int) -> tuple[np.ndarray, np.ndarray]:
        h, w = self.hr_size
        oy, ox = self.offset_at(t)
        grid = Grid(-PAD - 0.5 + 0.5 / SS + oy, -PAD - 0.5 + 0.5 / SS + ox, (h + 2 * PAD) * SS, (w + 2 * PAD) * SS)
        # the sample (and everything fixed to it) moved by the offset: a sub-pixel translation of the canvas
        shift = np.float32([[1, 0, (self.margin + ox) * SS], [0, 1, (self.margin + oy) * SS]])
        maps = {}
        for name, img in self.sample.maps.items():
            interp = cv2.INTER_LINEAR if name.endswith(('_d', '_s')) else cv2.INTER_CUBIC
            maps[name] = cv2.warpAffine(img, shift, (grid.nx, grid.ny), flags=interp | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_REFLECT)
        proj = Projection(grid)
        proj.a += maps['a']
        proj.phi += maps['phi']
        if 'powder_a' in maps and not any(isinstance(e, Keyhole) for e in self.events):
            proj.a += maps['powder_a']
            proj.phi += maps['powder_phi']
        for event in self.events:
            event.render(proj, t, maps)
        # exit wave -> near-field propagation -> intensity, times the (lab-fixed) flat field
        wave = np.exp(-0.5 * proj.a - 1j * proj.phi).astype(np.complex64)
        wave = sfft.idctn(sfft.dctn(wave, norm='ortho') * self.transfer, norm='ortho')
        intensity = (wave.real ** 2 + wave.imag ** 2).astype(np.float32)
        intensity *= self.beam.field(grid.ys - oy, grid.xs - ox, frame)
        # detectors: PSF, then pixel integration; the LR camera has the wider PSF and 4x4 larger pixels
        crop = np.s_[PAD * SS:(PAD + h) * SS, PAD * SS:(PAD + w) * SS]
        hr = area_average(blur(intensity, self.psf_hr * SS)[crop], SS)
        lr = area_average(blur(intensity, self.psf_lr * SS)[crop], SS * SCALE)
        return hr, lr

    def meta(self) -> dict:
        return dict(family=self.family, background=self.sample.params, motions=[e.params for e in self.events],
                    motion_kinds=[e.kind for e in self.events], global_motion=self.global_motion,
                    sample_motion=self.motion_params, exposure_fraction=self.exposure, beam=self.beam.params,
                    optics=dict(supersampling=SS, fresnel_length_px=self.fresnel, psf_sigma_hr_px=self.psf_hr,
                                psf_sigma_lr_camera_in_hr_px=self.psf_lr))


def true_sample_motion(meta: dict) -> np.ndarray:
    """(frames, 2): the sample's displacement (dy, dx) in HR pixels at each frame of a sequence written by
    ``synth_xray``, remade from the seed and index in its meta.json (the truth a motion estimate is measured
    against); of a motion-blurred frame, its mean over the exposure. Raises InputError when this version of
    the generator makes another scene from them."""
    try:
        frames, hr_size = int(meta['frames']), tuple(meta['hr_size'])
        family = meta.get('family', 'mixed')
        scene = Scene(np.random.default_rng([int(meta['seed']), int(meta['index'])]), frames, hr_size,
                      None if family == 'mixed' else family)
        recorded = meta['sample_motion']
    except KeyError as missing:
        raise InputError(f'meta.json has no {missing}: not a sequence of xfusion synth xray') from None
    if _clean(scene.motion_params) != recorded:
        raise InputError(f"{meta.get('sequence', 'sequence')}: this generator remakes another sample motion "
                         f'from its seed and index ({_clean(scene.motion_params)} against {recorded})')
    return np.stack([scene.mean_offset(t) for t in range(frames)])


def synth_xray(out: str | Path, sequences: int = 4, frames: int = 30, hr_size: tuple[int, int] = (128, 128),
               b0: float = 1e3, seed: int = 0, bit_depth: int = 16, families: str | list[str] | None = None) -> Path:
    """Write ``sequences`` synthetic UHS x-ray sequences ``seq_000``, ... in the x-ray layout under ``out``.

    Deterministic per (seed, sequence index, family). ``b0`` is the photon count per pixel of the flat field
    (Poisson noise, independent per camera); ``b0 <= 0`` writes noise-free frames. ``families``: names of
    ``FAMILIES`` or roles of ``ROLES`` (``'test'``), the sequences taking them in turn; None: the generator's own
    mix of events.
    """
    cycle = families_of(families)
    h, w = (int(v) for v in hr_size)
    if h <= 0 or w <= 0 or h % (SCALE * 4) or w % (SCALE * 4):
        raise InputError(f'hr size must be positive multiples of {SCALE * 4} (LR a multiple of 4), got {h}x{w}')
    if frames < 2:
        raise InputError(f'a sequence needs at least 2 frames, got {frames}')
    if bit_depth not in (8, 16):
        raise InputError(f'bit depth must be 8 or 16, got {bit_depth}')
    if sequences < 1:
        raise InputError(f'need at least 1 sequence, got {sequences}')
    out = Path(out)
    scale = IntensityScale.for_dtype(np.uint16 if bit_depth == 16 else np.uint8)
    for i in tqdm(range(sequences), desc='synth xray', unit='seq'):
        name = f'seq_{i:03d}'
        scene = Scene(np.random.default_rng([seed, i]), frames, (h, w), cycle[i % len(cycle)])
        noise_rng = np.random.default_rng([seed, i, 1])  # separate stream: the clean content does not depend on b0
        for camera in ('HR', 'LR'):  # stale frames of an earlier, longer run would break the frame count
            for old in (out / name / camera).glob('[0-9]*.png'):
                old.unlink()
        clipped = 0.0
        for t in range(frames):
            for camera, clean in zip(('HR', 'LR'), scene.frame(t)):
                unit = FLAT_UNIT * poisson_noise(clean, b0, noise_rng, dtype=np.float64)
                clipped += float((unit > 1).mean()) / (2 * frames)
                write_frame(out / name / camera / f'{t:08d}.png', scale.from_unit(np.clip(unit, 0, 1)))
        meta = dict(sequence=name, index=i, seed=seed, b0=b0, noise='poisson' if b0 > 0 else 'none',
                    bit_depth=bit_depth, frames=frames, scale=SCALE, hr_size=[h, w], lr_size=[h // SCALE, w // SCALE],
                    intensity_scale=dict(flat_field_unit=FLAT_UNIT, dtype_max=scale.high,
                                         stored='round(clip(flat_field_unit * I, 0, 1) * dtype_max)',
                                         clipped_fraction=clipped),
                    **scene.meta())
        (out / name / 'meta.json').write_text(json.dumps(_clean(meta), indent=1) + '\n')
    return out
