"""The two-camera model: what the LR camera records of the scene the HR camera sees, and photon noise.

One home for it: the synthetic data, camera registration, the classical baselines, the training
sampler's noise and the evaluation's noise all call these.

- An LR pixel integrates a ``SCALE`` x ``SCALE`` block of HR pixels (its larger pixel), after the
  LR camera's optics have blurred the image a little more than the HR camera's (a Gaussian of
  ``blur`` HR pixels, relative to the HR camera): ``LR = area_average(blur(HR))``.
- Each camera counts photons: at ``b0`` photons per unit intensity (the flat field), a pixel of
  intensity x records Poisson(x * b0) / b0, whose variance is x / b0.
"""
from __future__ import annotations

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
