"""Register the HR camera onto the x4-upsampled LR grid.

The two cameras of an experiment see the same sample on different pixel grids. Fusion needs every HR-camera
frame resampled onto the x4 grid of the LR camera (4h x 4w for an h x w LR frame). This module estimates the map
between the two cameras from simultaneous frames, a similarity (scale, rotation, shift) or an affine map (a scale
per axis and shear as well: cameras whose pixels are not square to the same degree), either of them after a
left-right mirror (two cameras looking at one scintillator through different optics), stores it as JSON and warps
HR frames with it.

Conventions (those of ``cv2.warpAffine``): pixel (row i, column j) has its centre at (x=j, y=i), so an image of
width w covers x in [-0.5, w - 0.5]. LR pixel (x, y) covers the 4 x 4 block of x4-grid pixels whose centres are
4x .. 4x + 3, i.e. its centre lies at x4-grid coordinate 4x + 1.5 (the half-pixel convention of ``cv2.resize``).
``matrix`` maps HR-camera pixel centres (x, y, 1) to x4-grid coordinates; it is the identity when the HR frame
is exactly the x4 grid image. ``scale`` is x4-grid pixels per HR pixel (1.0: HR pixels are exactly 4x finer
than LR pixels), ``rotation_deg`` is atan2(m10, m00) (with y pointing down, positive turns the HR image
clockwise on the grid) and ``shift_xy`` is the matrix's last column: where HR pixel (0, 0) lands on the grid.

Method: (1) coarse candidates: Fourier-Mellin on an x2 working grid (phase correlation of log-polar, high-pass
filtered log magnitude spectra of windowed images; both rotations of its 180-degree ambiguity, plus the plain
s = 1, theta = 0 guess, each completed by a phase-correlation shift) and SIFT matches + RANSAC
(cv2.estimateAffinePartial2D) between the upsampled LR frame and the HR frame blurred to LR resolution;
(2) each distinct candidate is refined on blurred images and the one that explains the LR frame best wins;
(3) final least-squares refinement of (scale, rotation, tx, ty) on the LR grid: the warped HR frame is 4x4 area
averaged (the LR camera's pixel model) and compared with the LR frame, with an intensity gain and offset fitted
in closed form, so cameras of different sensitivity register as well. Steps (1) to (3) run on the HR frame as it
is and mirrored left-right; the better fit wins. (4) the affine map, refined from that similarity, is kept where
the Bayesian information criterion prefers it (``estimate_transform``). A fit whose residual is far above what
the frames' noise leaves, or whose fields of view overlap too little, is marked failed (``FIT_LIMITS``).
Typical accuracy on a 64 x 64 LR frame of a textured scene with noise: ~0.05 % in scale, ~0.03 degree, ~0.1
x4-grid pixel.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage, optimize

from xfusion.baselines.bayes import estimate_noise_var
from xfusion.camera import SCALE, area_average
from xfusion.errors import InputError

REQUIRED_KEYS = ('matrix', 'scale', 'rotation_deg', 'shift_xy', 'residual', 'output_shape')
TRANSFORM_MODELS = ('similarity', 'affine', 'auto')
# a fit that explains the frame pair: the HR field of view covers this much of the LR frame, and the residual is
# within this many times what the noise of the two frames leaves (a right fit leaves about 1; a wrong one, or a
# camera the model cannot describe, leaves the scene's contrast)
FIT_LIMITS = {'overlap': 0.25, 'residual_over_noise': 2.0}
PERIODIC_LEVEL = 0.05  # share of a frame's power in one frequency that makes it periodic (a grid target)
PERIODS = 8  # ... when the frequency repeats at least this many times across the frame
_PRE_BLUR = 1.0  # HR pixels, see _Model
_MIN_OVERLAP = 0.1  # least fraction of LR pixels the HR field of view must cover
_FD_STEP = 0.5  # finite-difference step, grid pixels: well above the 1/32-pixel quantisation of cv2 warps


# --------------------------------------------------------------------------------------------- small helpers


def _as_frame(images: np.ndarray, name: str) -> np.ndarray:
    """A 2-D float32 frame; a stack (N, h, w) is averaged (several frames beat the noise down)."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 3:
        if arr.shape[0] == 0:
            raise InputError(f'{name}: empty stack of frames')
        arr = arr.mean(axis=0)
    if arr.ndim != 2:
        raise InputError(f'{name}: expected a 2-D frame or an (N, height, width) stack, got shape {arr.shape}')
    if not np.all(np.isfinite(arr)):
        raise InputError(f'{name}: frame has NaN or infinite values')
    return np.ascontiguousarray(arr)


def _h3(matrix: np.ndarray) -> np.ndarray:
    """2x3 affine -> 3x3 homogeneous, for composing maps."""
    out = np.eye(3)
    out[:2] = matrix
    return out


def _resize_map(factor: float) -> np.ndarray:
    """3x3 map from source to destination pixel centres of cv2.resize by ``factor``."""
    return np.array([[factor, 0, 0.5 * factor - 0.5], [0, factor, 0.5 * factor - 0.5], [0, 0, 1]])


def _similarity(scale: float, theta: float, centre_src: np.ndarray, centre_dst: np.ndarray) -> np.ndarray:
    """3x3 similarity that scales/rotates about ``centre_src`` and puts it at ``centre_dst``."""
    c, s = scale * math.cos(theta), scale * math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    out = np.eye(3)
    out[:2, :2] = rot
    out[:2, 2] = np.asarray(centre_dst, float) - rot @ np.asarray(centre_src, float)
    return out


def _mirror(shape: tuple[int, ...]) -> np.ndarray:
    """3x3 map of a left-right mirror of a frame of this shape (pixel x -> width - 1 - x)."""
    return np.array([[-1.0, 0.0, shape[1] - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])


def _centre(shape: tuple[int, ...]) -> np.ndarray:
    return np.array([(shape[1] - 1) / 2, (shape[0] - 1) / 2])


def _upsample(lr: np.ndarray, factor: int) -> np.ndarray:
    h, w = lr.shape
    return cv2.resize(lr, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC)


def describe(matrix: np.ndarray) -> tuple[float, float, list[float]]:
    """(scale, rotation_deg, shift_xy) of a 2x3 similarity matrix."""
    m = np.asarray(matrix, float)
    return (float(math.hypot(m[0, 0], m[1, 0])), float(math.degrees(math.atan2(m[1, 0], m[0, 0]))),
            [float(m[0, 2]), float(m[1, 2])])


# --------------------------------------------------------------------------------------------- coarse step


def _hann(shape: tuple[int, int]) -> np.ndarray:
    return np.outer(np.hanning(shape[0]), np.hanning(shape[1])).astype(np.float32)


def _log_polar_spectrum(img: np.ndarray, n: int, radii: np.ndarray, angles: np.ndarray) -> np.ndarray:
    """High-pass filtered log magnitude spectrum of the windowed image, sampled on a log-polar grid."""
    win = (img - img.mean()) * _hann(img.shape)
    mag = np.fft.fftshift(np.abs(np.fft.fft2(win, s=(n, n))))
    # Reddy & Chatterji high-pass: flattens the 1/f fall-off so that texture, not the DC lobe, drives the match
    f = np.fft.fftshift(np.fft.fftfreq(n))
    x = np.outer(np.cos(np.pi * f), np.cos(np.pi * f))
    mag = np.log1p(mag * (1.0 - x) * (2.0 - x) / (mag.mean() + 1e-12))  # log: no few strong peaks dominate
    c = n // 2  # fftshift puts zero frequency at index n // 2
    rr, aa = np.meshgrid(radii, angles)
    coords = np.array([c + rr * np.sin(aa), c + rr * np.cos(aa)])  # (row, col)
    return ndimage.map_coordinates(mag, coords, order=1).astype(np.float32)


def _phase_correlate(a: np.ndarray, b: np.ndarray, window: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """Shift (dx, dy) with b(x) ~ a(x - d), and the peak response (cv2.phaseCorrelate)."""
    a = np.ascontiguousarray(a, np.float32)
    b = np.ascontiguousarray(b, np.float32)
    (dx, dy), response = cv2.phaseCorrelate(a, b, window) if window is not None else cv2.phaseCorrelate(a, b)
    return np.array([dx, dy]), float(response)


def _scale_rotation(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Scale and rotation (mod pi) of the similarity that maps b's pixels onto a's (Fourier-Mellin)."""
    # 4x zero padding: a finely sampled spectrum, else the square DFT lattice pulls the angle to 0 / 90 degrees
    n = 4 * int(max(a.shape + b.shape))
    # useful radii: above the window's DC lobe, up to the LR Nyquist (n / 4 on the x2 working grid)
    r_min, r_max = 0.02 * n, 0.25 * n
    n_r, n_a = 192, 360
    radii = np.exp(np.linspace(math.log(r_min), math.log(r_max), n_r))
    angles = np.linspace(0.0, math.pi, n_a, endpoint=False)  # magnitude spectra are point symmetric
    lp_a = _log_polar_spectrum(a, n, radii, angles)
    lp_b = _log_polar_spectrum(b, n, radii, angles)
    window = np.repeat(np.hanning(n_r)[None].astype(np.float32), n_a, axis=0)  # the angle axis is periodic
    (d_r, d_a), _ = _phase_correlate(lp_a, lp_b, window)
    log_step = math.log(r_max / r_min) / (n_r - 1)
    # signs checked on synthetic pairs: b's spectrum is a's stretched by s and turned by -theta
    return math.exp(d_r * log_step), -d_a * math.pi / n_a


def _with_shift(a: np.ndarray, b: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """``sim`` (b pixel -> a pixel) completed by the shift that phase correlation finds between a and warped b."""
    warped = cv2.warpAffine(b, sim[:2], (a.shape[1], a.shape[0]), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=float(b.mean()))
    shift, _ = _phase_correlate(a, warped, _hann(a.shape))
    move = np.eye(3)
    move[:2, 2] = -shift  # warped(x) ~ a(x - shift)
    return move @ sim


def _fourier_candidates(lr: np.ndarray, hr: np.ndarray) -> list[np.ndarray]:
    """HR pixel -> x4-grid maps from Fourier-Mellin: both rotations of its 180-degree ambiguity, and s=1, theta=0.

    Works on an x2 working grid, which keeps every LR frequency with 4x fewer pixels than the x4 grid.
    """
    a = _upsample(lr, SCALE // 2)
    to_grid = _resize_map(2)  # working-grid pixel -> x4-grid pixel
    s0 = 1.0
    for _ in range(3):
        # HR on the working grid at the current scale guess, blurred towards the LR resolution
        z = s0 / 2
        size = (max(8, round(hr.shape[1] * z)), max(8, round(hr.shape[0] * z)))
        b = cv2.resize(hr, size, interpolation=cv2.INTER_AREA if z < 1 else cv2.INTER_CUBIC)
        b = cv2.GaussianBlur(b, (0, 0), 0.7)
        zx, zy = size[0] / hr.shape[1], size[1] / hr.shape[0]
        hr_to_b = np.array([[zx, 0, 0.5 * zx - 0.5], [0, zy, 0.5 * zy - 0.5], [0, 0, 1]])
        scale, theta = _scale_rotation(a, b)
        if abs(math.log(scale)) < 0.1:
            break
        s0 *= scale  # far off: redo with HR resampled near the right scale, so that blur and band match
    out = []
    for s, rot in ((scale, theta), (scale, theta + math.pi), (1.0 / s0, 0.0)):
        sim = _with_shift(a, b, _similarity(s, rot, _centre(b.shape), _centre(a.shape)))
        out.append(to_grid @ sim @ hr_to_b)
    return out


def _to_uint8(img: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) * (255.0 / max(hi - lo, 1e-12)), 0, 255).astype(np.uint8)


def _feature_candidate(lr: np.ndarray, hr: np.ndarray) -> np.ndarray | None:
    """HR pixel -> x4-grid map from SIFT matches + RANSAC (any rotation and scale); None if too few matches."""
    detector = cv2.SIFT_create() if hasattr(cv2, 'SIFT_create') else cv2.AKAZE_create()
    a = _upsample(lr, SCALE)
    b = cv2.GaussianBlur(hr, (0, 0), 1.5)  # about the LR pixel blur, so both cameras show the same blobs
    ka, da = detector.detectAndCompute(_to_uint8(a), None)
    kb, db = detector.detectAndCompute(_to_uint8(b), None)
    if da is None or db is None or len(ka) < 3 or len(kb) < 3:
        return None
    norm = cv2.NORM_L2 if da.dtype == np.float32 else cv2.NORM_HAMMING
    pairs = cv2.BFMatcher(norm).knnMatch(db, da, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]  # Lowe's ratio test
    if len(good) < 6:
        return None
    src = np.float32([kb[g.queryIdx].pt for g in good])
    dst = np.float32([ka[g.trainIdx].pt for g in good])
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=4.0)
    if matrix is None or inliers is None or int(inliers.sum()) < 6:
        return None
    return _h3(matrix)


# --------------------------------------------------------------------------------------------- refinement


class _Model:
    """LR-grid residual of a transform, for least squares: a similarity (4 parameters: log-scale, angle, centre),
    optionally after a left-right mirror of the HR frame, or a general affine map (6 parameters: the 2x2 part and
    the centre, which mirrors too). Every parameter is in x4-grid pixels of displacement."""

    def __init__(self, lr: np.ndarray, hr: np.ndarray, kind: str = 'similarity', mirrored: bool = False):
        # a light blur of the HR frame before warping: interpolation would otherwise smooth its noise by an amount
        # that depends on the sub-pixel phase, which biases the fit away from pixel-aligned transforms
        self.lr, self.hr = lr, cv2.GaussianBlur(hr, (0, 0), _PRE_BLUR)
        self.kind = kind
        self.grid = (lr.shape[0] * SCALE, lr.shape[1] * SCALE)
        self.c_hr = _centre(hr.shape)
        # half the grid diagonal: log-scale and angle in units of the displacement (grid pixels) they cause at
        # the grid's corners, so that all parameters are pixels and one finite-difference step suits all
        self.radius = 0.5 * math.hypot(*self.grid)
        self.mirror = _mirror(hr.shape) if mirrored and kind == 'similarity' else np.eye(3)
        self.mask = np.ones(lr.shape, bool)
        self.sigma = 0.0

    def to_params(self, m3: np.ndarray) -> np.ndarray:
        m3 = m3 @ np.linalg.inv(self.mirror)
        centre = m3[:2, :2] @ self.c_hr + m3[:2, 2]
        if self.kind == 'affine':
            return np.array([*(m3[:2, :2].ravel() * self.radius), centre[0], centre[1]])
        scale, rot, _ = describe(m3[:2])
        return np.array([math.log(scale) * self.radius, math.radians(rot) * self.radius, centre[0], centre[1]])

    def to_matrix(self, p: np.ndarray) -> np.ndarray:
        if self.kind == 'affine':
            out = np.eye(3)
            out[:2, :2] = p[:4].reshape(2, 2) / self.radius
            out[:2, 2] = p[4:6] - out[:2, :2] @ self.c_hr
            return out
        scale = math.exp(p[0] / self.radius)
        return _similarity(scale, p[1] / self.radius, self.c_hr, p[2:4]) @ self.mirror

    def simulate(self, m3: np.ndarray, image: np.ndarray | None = None, border: int = cv2.BORDER_REPLICATE,
                 ) -> np.ndarray:
        """What the LR camera would see of the (warped) HR frame: the 4x4 area average on the grid."""
        src = self.hr if image is None else image
        warped = cv2.warpAffine(src, m3[:2], (self.grid[1], self.grid[0]), flags=cv2.INTER_LINEAR,
                                borderMode=border, borderValue=0.0)
        return area_average(warped)

    def coverage(self, m3: np.ndarray, erode: int) -> np.ndarray:
        """LR pixels that the HR field of view covers fully, shrunk by ``erode`` pixels for safety."""
        ones = np.ones(self.hr.shape, np.float32)
        cover = self.simulate(m3, ones, cv2.BORDER_CONSTANT) > 0.999
        if erode > 0:
            cover = ndimage.binary_erosion(cover, iterations=erode)
        return cover

    def fit(self, sim: np.ndarray) -> tuple[np.ndarray, float, float]:
        """Residual lr - (gain * sim + offset) on the mask; gain and offset by linear least squares."""
        lr = self.lr
        if self.sigma > 0:
            sim = cv2.GaussianBlur(sim, (0, 0), self.sigma)
            lr = cv2.GaussianBlur(lr, (0, 0), self.sigma)
        x, y = sim[self.mask].astype(np.float64), lr[self.mask].astype(np.float64)
        var = x.var()
        gain = float(((x - x.mean()) * (y - y.mean())).mean() / var) if var > 1e-12 else 0.0
        offset = float(y.mean() - gain * x.mean())
        return gain * x + offset - y, gain, offset

    def residuals(self, p: np.ndarray) -> np.ndarray:
        return self.fit(self.simulate(self.to_matrix(p)))[0]

    def jacobian(self, p: np.ndarray) -> np.ndarray:
        # central differences; the step also smooths over the quantisation of cv2 warps (less bias than 0.05)
        cols = []
        for i in range(p.size):
            step = np.zeros_like(p)
            step[i] = _FD_STEP
            cols.append((self.residuals(p + step) - self.residuals(p - step)) / (2 * _FD_STEP))
        return np.stack(cols, axis=1)


def _refine(model: _Model, m3: np.ndarray, sigmas: tuple[float, ...], xtol: float = 1e-6,
            ) -> tuple[np.ndarray, float]:
    """Least-squares refinement, blurred first (wider basin), then sharper; returns (map, unexplained fraction).

    The fraction is the residual variance over the LR variance on the covered pixels at the last blur, so that
    candidates compare fairly; inf when the HR field of view covers too little of the LR frame.
    """
    p = model.to_params(m3)
    for sigma in sigmas:
        model.sigma = sigma
        model.mask = model.coverage(model.to_matrix(p), erode=2)
        if model.mask.mean() < _MIN_OVERLAP:
            return model.to_matrix(p), math.inf
        p = optimize.least_squares(model.residuals, p, jac=model.jacobian, method='lm', xtol=xtol, ftol=1e-10,
                                   max_nfev=100).x
    res = model.residuals(p)
    lr = cv2.GaussianBlur(model.lr, (0, 0), model.sigma) if model.sigma > 0 else model.lr
    return model.to_matrix(p), float(np.mean(res ** 2) / (lr[model.mask].var() + 1e-20))


def _same(m1: np.ndarray, m2: np.ndarray, shape: tuple[int, ...]) -> bool:
    """True when two maps put the HR corners within 2 grid pixels of each other (no need to refine both)."""
    h, w = shape
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], float).T
    return bool(np.abs((m1 - m2)[:2] @ corners).max() < 2.0)


# --------------------------------------------------------------------------------------------- public API


def decompose(matrix) -> dict:
    """What a 2x3 map does: ``mirrored`` (the HR frame is flipped left-right first), ``rotation_deg``,
    ``scale_xy`` (x4-grid pixels per HR pixel along the HR frame's x and y), ``shear`` (of x by y, after the
    scales), ``scale`` (their geometric mean) and ``shift_xy``: A = R(rotation) [[sx, shear sy], [0, sy]] M,
    M the mirror or the identity."""
    m = np.asarray(matrix, float)
    a = m[:, :2].copy()
    mirrored = bool(np.linalg.det(a) < 0)
    if mirrored:
        a[:, 0] = -a[:, 0]  # undo the mirror of the HR frame's x axis
    theta = math.atan2(a[1, 0], a[0, 0])
    c, s = math.cos(theta), math.sin(theta)
    upper = np.array([[c, s], [-s, c]]) @ a  # R(-theta) A: upper triangular
    sx, sy = float(upper[0, 0]), float(upper[1, 1])
    return {'mirrored': mirrored, 'rotation_deg': math.degrees(theta), 'scale_xy': [sx, sy],
            'shear': float(upper[0, 1] / sy), 'scale': math.sqrt(abs(sx * sy)),
            'shift_xy': [float(m[0, 2]), float(m[1, 2])]}


def _coarse(lr: np.ndarray, hr: np.ndarray, mirrored: bool) -> tuple[float, np.ndarray | None]:
    """The best similarity (after a left-right mirror of the HR frame, if ``mirrored``) from the coarse
    candidates, refined on blurred frames: (unexplained fraction, map)."""
    flip = _mirror(hr.shape) if mirrored else np.eye(3)
    seen = hr[:, ::-1] if mirrored else hr
    # the coarse step wants comparable contrast; the refinement fits gain and offset itself
    lr_n = (lr - lr.mean()) / (lr.std() + 1e-12)
    seen_n = (seen - seen.mean()) / (seen.std() + 1e-12)
    candidates = [c @ flip for c in _fourier_candidates(lr_n, np.ascontiguousarray(seen_n))]
    feature = _feature_candidate(lr, np.ascontiguousarray(seen))
    if feature is not None:
        candidates.insert(0, feature @ flip)
    model = _Model(lr, hr, 'similarity', mirrored)
    best = (math.inf, None)
    tried: list[np.ndarray] = []
    for cand in candidates:  # several starts: any one of the coarse methods may fail on a given scene
        if any(_same(cand, other, hr.shape) for other in tried):
            continue
        tried.append(cand)
        m3, score = _refine(model, cand, (2.0,), xtol=1e-4)  # 1e-4 relative: ~0.01 pixel
        if score < best[0]:
            best = (score, m3)
    return best


def _rss(lr: np.ndarray, hr: np.ndarray, maps: list[np.ndarray]) -> tuple[list[float], int]:
    """Residual sums of squares of several maps on the LR pixels all of them cover, and that pixel count."""
    model = _Model(lr, hr, 'affine')
    mask = np.logical_and.reduce([model.coverage(m3, erode=0) for m3 in maps])
    model.mask = mask
    return [float(np.sum(model.fit(model.simulate(m3))[0] ** 2)) for m3 in maps], int(mask.sum())


def repeat_of(frame: np.ndarray, level: float = PERIODIC_LEVEL) -> tuple[float, float] | None:
    """The period (dx, dy), in pixels, of a frame that repeats itself in two directions (as a grid target does),
    or None. Read from the power spectrum: single frequencies that each hold more than ``level`` of the power (a
    3x3 neighbourhood: the window spreads a peak) and repeat at least ``PERIODS`` times across the frame (a
    smooth scene's few broad undulations are not a period), two of them not parallel. Stripes that repeat one way
    only (a monochromator's, on the flat field) do not make a fit ambiguous: the sample pins it along them."""
    img = (frame - frame.mean()) * _hann(frame.shape)
    power = np.fft.fftshift(np.abs(np.fft.fft2(img)) ** 2)
    h, w = power.shape
    ky, kx = np.meshgrid((np.arange(h) - h // 2) / h, (np.arange(w) - w // 2) / w, indexing='ij')
    periods = np.hypot(ky * h, kx * w)  # how many times a frequency repeats across the frame
    power[periods < 3] = 0  # the mean and the window's own lobe
    share = ndimage.uniform_filter(power, 3) * 9 / max(power.sum(), 1e-30)
    strong = (share == ndimage.maximum_filter(share, size=5)) & (share > level) & (ky >= 0) & (periods >= PERIODS)
    peaks = sorted(zip(kx[strong], ky[strong], share[strong]), key=lambda p: -p[2])
    for i, (ax, ay, _) in enumerate(peaks):
        for bx, by, _ in peaks[i + 1:]:
            if abs(ax * by - ay * bx) > 0.5 * math.hypot(ax, ay) * math.hypot(bx, by):  # two directions: a grid
                k2 = ax * ax + ay * ay
                return float(ax / k2), float(ay / k2)
    return None


def estimate_transform(lr: np.ndarray, hr: np.ndarray, transform_model: str = 'auto',
                       near: dict | None = None) -> dict:
    """The map from HR-camera pixels onto the x4-upsampled LR grid, from simultaneous frames.

    ``lr`` (h, w) and ``hr`` (H, W, any size) are float intensities (e.g. [0, 1]); stacks (N, h, w) / (N, H, W)
    are averaged first. ``transform_model``: ``similarity`` (one scale, a rotation, a shift; the HR frame may be
    mirrored), ``affine`` (a scale per axis, shear and mirroring too) or ``auto``: the affine map where it
    explains the frames better than the similarity by more than its two extra parameters explain noise, by the
    Bayesian information criterion n ln(RSS_similarity / RSS_affine) > 2 ln n over the n LR pixels both cover.
    A mirrored camera is found by trying the HR frame mirrored left-right as well; the better fit wins.
    ``near``: a transform found on other frames of the same cameras (the sample's): the fit starts from it and
    searches only around it, so that a periodic target (a grid), which fits as well one period off, is pinned
    to the right period; it decides the mirror too.

    Returns a JSON-ready dict: ``matrix`` (2x3, HR pixel (x, y, 1) -> x4-grid pixel), ``model``, ``mirrored``,
    ``scale`` (geometric mean), ``scale_xy``, ``shear``, ``rotation_deg``, ``shift_xy`` (``decompose``; see the
    module docstring for the conventions), ``output_shape`` [4h, 4w], ``residual``: RMS of LR - (gain *
    A(warped HR) + offset) over the LR pixels the HR field of view covers, where A is the 4x4 area average (the LR
    pixel; the HR frame gets a 1-pixel Gaussian blur first) and gain/offset are the least-squares intensity match
    (``intensity_gain`` / ``intensity_offset``), in the units of the input; ``residual_similarity`` and
    ``residual_affine`` where both were fitted; ``noise`` (the RMS the noise of the two frames alone would leave,
    estimated from them); ``overlap`` (the fraction of LR pixels the HR field of view covers); and ``fit``: ``ok``,
    or why no model explains the frame pair (``FIT_LIMITS``). InputError on bad input or when nothing overlaps.
    """
    if transform_model not in TRANSFORM_MODELS:
        raise InputError(f'--transform-model: {transform_model!r} is not one of {", ".join(TRANSFORM_MODELS)}')
    lr = _as_frame(lr, 'lr')
    hr = _as_frame(hr, 'hr')
    if min(lr.shape) < 8 or min(hr.shape) < 16:
        raise InputError(f'frames too small to register: lr {lr.shape}, hr {hr.shape}')
    if near is not None:
        start = _h3(_check_matrix(near.get('matrix'), 'near'))
        mirrored = bool(np.linalg.det(start[:2, :2]) < 0)
    else:
        fits = [(*_coarse(lr, hr, mirrored), mirrored) for mirrored in (False, True)]
        _, start, mirrored = min(fits, key=lambda f: f[0])
    if start is None:
        raise InputError(f'could not register: the HR frame ({hr.shape[1]}x{hr.shape[0]}) does not overlap the '
                         f'LR frame ({lr.shape[1]}x{lr.shape[0]}) at any candidate transform')
    similarity, _ = _refine(_Model(lr, hr, 'similarity', mirrored), start, (1.0, 0.0))
    extra = {}
    m3, chosen = similarity, 'similarity'
    if transform_model != 'similarity':
        affine, _ = _refine(_Model(lr, hr, 'affine'), similarity, (1.0, 0.0))
        (rss_s, rss_a), n = _rss(lr, hr, [similarity, affine])
        extra = {'residual_similarity': math.sqrt(rss_s / max(n, 1)), 'residual_affine': math.sqrt(rss_a / max(n, 1))}
        better = n * math.log(max(rss_s, 1e-30) / max(rss_a, 1e-30)) > 2 * math.log(max(n, 2))
        if transform_model == 'affine' or better:
            m3, chosen = affine, 'affine'
    model = _Model(lr, hr, chosen)
    model.mask = model.coverage(m3, erode=0)
    res, gain, offset = model.fit(model.simulate(m3))
    residual = float(np.sqrt(np.mean(res ** 2)))
    # what the noise of the two frames alone leaves: the LR frame's, and the HR frame's through the 4x4 average
    noise = math.sqrt(estimate_noise_var(lr) + gain ** 2 * estimate_noise_var(hr) / SCALE ** 2)
    overlap = float(model.mask.mean())
    return {
        'matrix': [[float(v) for v in row] for row in m3[:2]],
        **decompose(m3[:2]),
        'model': chosen,
        'residual': residual,
        **extra,
        'noise': noise,
        'output_shape': [int(model.grid[0]), int(model.grid[1])],
        'intensity_gain': gain,
        'intensity_offset': offset,
        'overlap': overlap,
        'fit': fit_verdict(residual, noise, overlap),
        'repeats_every_lr_px': repeat_of(lr),
        'started_near': near is not None,
    }


def fit_verdict(residual: float, noise: float, overlap: float) -> str:
    """``ok``, or why the fit does not explain the frame pair (``FIT_LIMITS``)."""
    if overlap < FIT_LIMITS['overlap']:
        return (f'failed: the HR field of view covers {overlap:.0%} of the LR frame (less than '
                f'{FIT_LIMITS["overlap"]:.0%})')
    if residual > FIT_LIMITS['residual_over_noise'] * noise:
        return (f'failed: residual {residual:.4g} is {residual / max(noise, 1e-12):.1f} times what the noise of the '
                f'frames leaves ({noise:.3g}; at most {FIT_LIMITS["residual_over_noise"]:g})')
    return 'ok'


def warp_to_lr_grid(hr: np.ndarray, transform: dict, output_shape: tuple[int, int] | None = None) -> np.ndarray:
    """HR-camera frame(s) (H, W) or (N, H, W) resampled onto the x4 LR grid with ``transform['matrix']``.

    Bicubic, border replicate, float32 out in the units of the input (no rescaling; [0, 1] stays [0, 1]);
    values are clipped to the input's range so cubic overshoot cannot leave it. ``output_shape`` defaults to
    ``transform['output_shape']``.
    """
    matrix = _check_matrix(transform.get('matrix'), 'transform')
    shape = output_shape if output_shape is not None else transform.get('output_shape')
    shape = _check_shape(shape, 'transform')
    arr = np.asarray(hr, dtype=np.float32)
    if arr.ndim == 3:
        return np.stack([warp_to_lr_grid(frame, transform, shape) for frame in arr])
    if arr.ndim != 2:
        raise InputError(f'expected a 2-D HR frame or an (N, H, W) stack, got shape {arr.shape}')
    out = cv2.warpAffine(arr, matrix, (shape[1], shape[0]), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    return np.clip(out, arr.min(), arr.max()).astype(np.float32)


def _check_matrix(value, where: str) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        m = None
    if m is None or m.shape != (2, 3) or not np.all(np.isfinite(m)):
        raise InputError(f'{where}: key "matrix" must be a 2x3 list of finite numbers, got {value!r}')
    if abs(np.linalg.det(m[:, :2])) < 1e-9:
        raise InputError(f'{where}: key "matrix" is singular: {value!r}')
    return m


def _check_shape(value, where: str) -> tuple[int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)):
        raise InputError(f'{where}: key "output_shape" must be [height, width] (positive integers), got {value!r}')
    return int(value[0]), int(value[1])


def validate_transform(transform: dict, where: str = 'transform') -> dict:
    """Check the keys and values of a transform dict; InputError naming ``where`` and the bad key."""
    if not isinstance(transform, dict):
        raise InputError(f'{where}: expected a JSON object with keys {", ".join(REQUIRED_KEYS)}')
    for key in REQUIRED_KEYS:
        if key not in transform:
            raise InputError(f'{where}: missing key "{key}" (a transform needs {", ".join(REQUIRED_KEYS)})')
    _check_matrix(transform['matrix'], where)
    _check_shape(transform['output_shape'], where)
    for key in ('scale', 'rotation_deg', 'residual'):
        value = transform[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InputError(f'{where}: key "{key}" must be a finite number, got {value!r}')
    if transform['scale'] <= 0:
        raise InputError(f'{where}: key "scale" must be positive, got {transform["scale"]!r}')
    shift = transform['shift_xy']
    if (not isinstance(shift, (list, tuple)) or len(shift) != 2
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in shift)):
        raise InputError(f'{where}: key "shift_xy" must be [tx, ty] (finite numbers), got {shift!r}')
    return transform


def save_transform(transform: dict, path: str | Path) -> None:
    """Write a transform as JSON (validated first, so a bad dict never reaches the disk)."""
    path = Path(path)
    validate_transform(transform, str(path))
    text = json.dumps(transform, indent=2) + '\n'
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def load_transform(path: str | Path) -> dict:
    """Read and validate a transform JSON; InputError naming the file and the missing or bad key."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f'{path}: transform file not found')
    try:
        transform = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f'{path}: not valid JSON ({error})') from error
    return validate_transform(transform, str(path))
