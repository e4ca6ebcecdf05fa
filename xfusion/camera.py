"""The two-camera model: what the LR camera records of the scene the HR camera sees, and photon noise.

One home for it: the synthetic data, camera registration, the classical baselines, the training
sampler's noise and the evaluation's noise all call these.

- An LR pixel integrates a ``SCALE`` x ``SCALE`` block of HR pixels (its larger pixel), after the
  LR camera's optics have blurred the image a little more than the HR camera's (a Gaussian of
  ``blur`` HR pixels, relative to the HR camera): ``LR = area_average(blur(HR))``.
- Each camera counts photons: at ``b0`` photons per unit intensity (the flat field), a pixel of
  intensity x records Poisson(x * b0) / b0, whose variance is x / b0.

For a real experiment the LR camera is measured, not assumed: ``fit_lr_camera`` fits its extra blur, gain and
offset (and, unless b0 is given, its noise) on the simultaneous frames at the key times, and the resulting
``CameraModel`` says how consistent any HR frame is with the LR frame recorded at its time (``chi2``, the
per-pixel ``residual_map``) and pulls a frame back onto it within noise (``project``). ``xfusion fuse`` and
``xfusion check`` use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SCALE = 4  # HR pixels per LR pixel along each axis


def area_average(img: np.ndarray, factor: int = SCALE) -> np.ndarray:
    """Mean over non-overlapping factor x factor blocks of the last two axes (a trailing partial block is dropped)."""
    h, w = img.shape[-2] // factor, img.shape[-1] // factor
    blocks = img[..., :h * factor, :w * factor].reshape(*img.shape[:-2], h, factor, w, factor)
    return blocks.mean(axis=(-3, -1))


def blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a 2-D image (sigma in its pixels; 0 leaves it as it is), mirrored at the borders."""
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(np.ascontiguousarray(img, dtype=np.float32), (0, 0), sigma)


def lr_camera(hr: np.ndarray, blur_sigma: float = 0.0, factor: int = SCALE) -> np.ndarray:
    """The LR camera's frame of a scene whose HR frame is ``hr``: extra blur (HR pixels), then the area average."""
    return area_average(blur(hr, blur_sigma), factor)


def poisson_noise(img: np.ndarray, b0: float | None, rng=np.random, dtype=np.float32) -> np.ndarray:
    """Photon noise at b0 photons per unit intensity: x -> Poisson(x * b0) / b0; None or <= 0: unchanged.

    ``rng``: a numpy Generator, or by default numpy's global generator (which BasicSR seeds).
    """
    if b0 is None or b0 <= 0:
        return img
    return (rng.poisson(np.clip(img, 0, None) * b0) / b0).astype(dtype)


# ---- the LR camera relative to the HR camera, fitted on simultaneous frames; LR consistency -------------------

_FIT_BORDER = 2  # LR pixels left out of the fit at the frame's edges: the mirrored blur is wrong there
_MAX_BLUR = 4.0  # HR pixels: the widest extra LR blur the fit considers
_NOISE_BINS = 8  # intensity bins of the data-driven noise model
_PROJECT_ITERATIONS = 12  # conjugate-gradient steps of the projection (converges in a few on smooth residuals)


def _box_coefficients(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(gain, offset) of the least-squares fit y ~ gain * x + offset; gain 1 when x is flat."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    var = x.var()
    gain = float(((x - x.mean()) * (y - y.mean())).mean() / var) if var > 1e-12 else 1.0
    return gain, float(y.mean() - gain * x.mean())


@dataclass(frozen=True)
class CameraModel:
    """What the LR camera records of an HR frame on the x4 grid, and its noise:

    ``LR = gain * area_average(blur(HR, blur_sigma)) + offset + noise``, noise variance
    ``noise_slope * expected + noise_floor`` at a pixel whose expected LR intensity is ``expected``
    (Poisson at b0 photons per unit intensity: slope 1 / b0; the floor holds the quantisation of the
    stored values and, when estimated from the data, what the model leaves unexplained at any intensity).
    Intensities are the cameras' [0, 1] units. ``residual``: RMS of the fit at the key times.
    """
    blur_sigma: float = 0.0
    gain: float = 1.0
    offset: float = 0.0
    noise_slope: float = 0.0
    noise_floor: float = 1e-8
    noise_source: str = 'given'
    residual: float = 0.0
    pairs: int = 0

    def predict(self, hr: np.ndarray) -> np.ndarray:
        """The LR frame (h, w) this camera would record, noise-free, of an HR frame (4h, 4w)."""
        return (self.gain * lr_camera(hr, self.blur_sigma) + self.offset).astype(np.float32)

    def variance(self, expected: np.ndarray) -> np.ndarray:
        """Noise variance of LR pixels whose noise-free intensity is ``expected``."""
        return (self.noise_slope * np.clip(expected, 0, None) + self.noise_floor).astype(np.float32)

    def residual_map(self, hr: np.ndarray, lr: np.ndarray) -> np.ndarray:
        """z = (LR - predict(HR)) / noise sd per LR pixel: positive where the LR camera saw more than HR explains."""
        expected = self.predict(hr)
        return ((lr - expected) / np.sqrt(self.variance(expected))).astype(np.float32)

    def chi2(self, hr: np.ndarray, lr: np.ndarray, mask: np.ndarray | None = None) -> float:
        """Mean over LR pixels (of ``mask``) of the squared residual over the expected noise variance:
        about 1 when HR is consistent with the LR frame recorded at its time."""
        z2 = self.residual_map(hr, lr) ** 2
        return float(z2[mask].mean() if mask is not None else z2.mean())

    def project(self, hr: np.ndarray, lr: np.ndarray, threshold: float = 2.0) -> np.ndarray:
        """The HR frame pulled back onto the LR observation within noise.

        Which part of the LR residual is signal: a local Wiener shrinkage, each residual times
        max(0, 1 - threshold^2 / local chi2), local chi2 the mean of z^2 over its 3 x 3 LR neighbourhood; so
        residuals whose neighbourhood is within ``threshold`` noise sd are left alone (a consistent frame stays
        as it is) and those far beyond are put back in full. That part is put back into the HR frame with the
        smallest smooth correction: K c = target solved on the LR grid by conjugate gradients, K = the camera
        applied to the back-projection (nearest upsampling, then a blur), which is symmetric and positive; the
        back-projection of c is added. The result is clipped to [0, 1].
        """
        hr = np.asarray(hr, np.float32)
        expected = self.predict(hr)
        r = lr.astype(np.float32) - expected
        # local Wiener shrinkage: the share of each residual that its neighbourhood's chi2 says is signal, not
        # noise (0 where the 3 x 3 LR neighbourhood is within noise, -> 1 where it is far beyond)
        local = cv2.blur((r * r / self.variance(expected)).astype(np.float32), (3, 3), borderType=cv2.BORDER_REFLECT)
        target = r * np.maximum(0.0, 1.0 - threshold ** 2 / np.maximum(local, 1e-12))
        if not target.any() or abs(self.gain) < 1e-6:
            return hr
        spread = max(self.blur_sigma, 1.0)  # HR pixels: no blocky corrections when the LR camera adds no blur

        def back(c: np.ndarray) -> np.ndarray:
            up = np.repeat(np.repeat(c, SCALE, axis=-2), SCALE, axis=-1)
            return blur(up, spread) / self.gain

        def forward(c: np.ndarray) -> np.ndarray:
            return self.gain * lr_camera(back(c), self.blur_sigma)

        c = np.zeros_like(target)
        res = target - forward(c)
        direction, rho = res.copy(), float((res * res).sum())
        for _ in range(_PROJECT_ITERATIONS):
            k_dir = forward(direction)
            alpha = rho / max(float((direction * k_dir).sum()), 1e-30)
            c += alpha * direction
            res -= alpha * k_dir
            rho_new = float((res * res).sum())
            if rho_new < 1e-6 * float((target * target).sum()):
                break
            direction, rho = res + (rho_new / rho) * direction, rho_new
        pad = np.zeros_like(hr)
        h, w = c.shape
        pad[:h * SCALE, :w * SCALE] = back(c)
        return np.clip(hr + pad, 0, 1).astype(np.float32)

    def summary(self) -> dict:
        """JSON-ready fields, for sidecars and reports."""
        return {'blur_sigma_hr_px': round(self.blur_sigma, 4), 'gain': round(self.gain, 5),
                'offset': round(self.offset, 6), 'noise_slope': float(f'{self.noise_slope:.6g}'),
                'noise_floor': float(f'{self.noise_floor:.6g}'), 'noise_source': self.noise_source,
                'fit_residual_rms': float(f'{self.residual:.6g}'), 'key_pairs': self.pairs,
                'equivalent_b0': None if self.noise_slope <= 0 else float(f'{1 / self.noise_slope:.6g}')}


def fit_lr_camera(lr_frames: np.ndarray, hr_frames: np.ndarray, mask: np.ndarray | None = None,
                  b0: float | None = None, quantum: float = 0.0) -> CameraModel:
    """The LR camera relative to the HR camera, from simultaneous frames (the key times).

    ``lr_frames`` (N, h, w) and ``hr_frames`` (N, 4h, 4w) on the x4 grid (registered), [0, 1] units; ``mask``
    (h, w): the LR pixels the HR camera saw too (default all). The extra blur is the one whose closed-form
    gain and offset (as ``register`` fits them) leave the smallest residual, searched on a grid then refined.
    Noise: with ``b0`` (LR photons per unit intensity) the Poisson variance expected / b0; without, a line
    variance = slope * expected + floor fitted (non-negative) to the mean squared residual in intensity bins,
    so that the key frames themselves score chi2 about 1. ``quantum``: the step of the stored values in [0, 1]
    units (its uniform quantisation noise is the least floor).
    """
    from scipy import optimize

    lr = np.asarray(lr_frames, np.float32)
    hr = np.asarray(hr_frames, np.float32)
    if lr.ndim == 2:
        lr, hr = lr[None], hr[None]
    if lr.shape[0] == 0 or hr.shape[0] != lr.shape[0] or hr.shape[1:] != (lr.shape[1] * SCALE, lr.shape[2] * SCALE):
        raise ValueError(f'expected N LR frames (h, w) and N HR frames (4h, 4w), got {lr.shape} and {hr.shape}')
    keep = np.ones(lr.shape[1:], bool) if mask is None else np.asarray(mask, bool).copy()
    border = _FIT_BORDER if min(lr.shape[1:]) > 4 * _FIT_BORDER else 0
    if border:
        keep[:border], keep[-border:], keep[:, :border], keep[:, -border:] = False, False, False, False
    if keep.sum() < 4:
        keep = np.ones(lr.shape[1:], bool) if mask is None else np.asarray(mask, bool)
    y = lr[:, keep]

    def simulate(sigma: float) -> np.ndarray:
        return np.stack([lr_camera(frame, sigma) for frame in hr])[:, keep]

    def cost(sigma: float) -> float:
        x = simulate(sigma)
        gain, offset = _box_coefficients(x, y)
        return float(np.mean((gain * x + offset - y) ** 2))

    grid = np.linspace(0.0, _MAX_BLUR, 17)
    costs = [cost(s) for s in grid]
    best = int(np.argmin(costs))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    sigma = float(optimize.minimize_scalar(cost, bounds=(lo, hi), method='bounded', options={'xatol': 1e-3}).x)
    if costs[0] <= cost(sigma):  # no extra blur explains the data as well (a blur below ~0.3 px is invisible)
        sigma = 0.0
    x = simulate(sigma)
    gain, offset = _box_coefficients(x, y)
    expected = gain * x + offset
    res = y - expected
    floor = quantum ** 2 / 12 + 1e-10
    if b0 is not None:
        slope, source = 1.0 / b0, f'given: b0 = {b0:g}'
    else:
        slope, extra = _noise_line(expected.ravel(), res.ravel() ** 2)
        floor, source = max(extra, floor), 'estimated from the key frames'
    return CameraModel(sigma, gain, offset, slope, floor, source, float(np.sqrt(np.mean(res ** 2))), lr.shape[0])


def _noise_line(expected: np.ndarray, squared: np.ndarray) -> tuple[float, float]:
    """(slope, floor) >= 0 of mean squared residual ~ slope * expected + floor, by intensity bins (quantiles)."""
    from scipy import optimize

    edges = np.unique(np.quantile(expected, np.linspace(0, 1, _NOISE_BINS + 1)))
    if edges.size < 3:
        return 0.0, float(squared.mean())
    which = np.clip(np.searchsorted(edges, expected, side='right') - 1, 0, edges.size - 2)
    counts = np.bincount(which, minlength=edges.size - 1)
    used = counts > 0
    means = np.bincount(which, expected, minlength=edges.size - 1)[used] / counts[used]
    mse = np.bincount(which, squared, minlength=edges.size - 1)[used] / counts[used]
    weight = np.sqrt(counts[used])
    (slope, floor), _ = optimize.nnls(np.stack([means, np.ones_like(means)], 1) * weight[:, None], mse * weight)
    return float(slope), float(floor)


def hr_field_of_view(transform: dict, hr_shape: tuple[int, int], lr_shape: tuple[int, int]) -> np.ndarray:
    """The LR pixels that the HR camera saw too: those the field of view of an HR frame of ``hr_shape`` covers
    fully once a registration transform (``xfusion register``; HR pixel -> x4 grid) maps it onto the x4 grid."""
    matrix = np.asarray(transform['matrix'], np.float64)
    ones = np.ones(hr_shape, np.float32)
    grid = (lr_shape[0] * SCALE, lr_shape[1] * SCALE)
    covered = cv2.warpAffine(ones, matrix, (grid[1], grid[0]), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return area_average(covered) > 0.999
