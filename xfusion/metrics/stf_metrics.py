"""PSNR, SSIM and AAD per output frame, in the two conventions of docs/design.md (metrics).

- ``convention='paper'`` (default, comparable with published numbers): both images rounded to
  uint8; PSNR with peak 255; SSIM = skimage's structural_similarity(data_range=255) with its
  default settings; AAD = mean |pred - gt| on the 0..255 scale.
- ``convention='float'`` (for 16-bit data): the same on [0, 1] floats with data range 1.

Images are 2-D (or H x W x 1) arrays or tensors. Floats are read as [0, 1] intensities;
uint8 and uint16 arrays are scaled by their dtype range first. No border is cropped unless
``crop_border`` is given.
"""
from __future__ import annotations

import numpy as np
import torch
from basicsr.utils.registry import METRIC_REGISTRY
from skimage.metrics import structural_similarity

CONVENTIONS = ('paper', 'float')


def to_unit_float(img) -> np.ndarray:
    """An image as a 2-D float64 array in [0, 1] (integer dtypes scaled by their range)."""
    if isinstance(img, torch.Tensor):
        img = img.detach().cpu().numpy()
    img = np.asarray(img)
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    elif img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 2:
        raise ValueError(f'metrics take single-channel images, got shape {img.shape}')
    if np.issubdtype(img.dtype, np.integer):
        return img.astype(np.float64) / np.iinfo(img.dtype).max
    return img.astype(np.float64)


def _prepare(img, img2, crop_border: int, convention: str) -> tuple[np.ndarray, np.ndarray, float]:
    if convention not in CONVENTIONS:
        raise ValueError(f'convention must be one of {CONVENTIONS}, got {convention!r}')
    a, b = to_unit_float(img), to_unit_float(img2)
    if a.shape != b.shape:
        raise ValueError(f'image shapes differ: {a.shape} vs {b.shape}')
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if convention == 'paper':
        a = np.round(np.clip(a, 0, 1) * 255.0)
        b = np.round(np.clip(b, 0, 1) * 255.0)
        return a, b, 255.0
    return a, b, 1.0


@METRIC_REGISTRY.register()
def calculate_psnr_stf(img, img2, crop_border: int = 0, convention: str = 'paper', **kwargs) -> float:
    """PSNR in dB (inf for identical images)."""
    a, b, peak = _prepare(img, img2, crop_border, convention)
    mse = np.mean((a - b) ** 2)
    return float('inf') if mse == 0 else float(10.0 * np.log10(peak**2 / mse))


@METRIC_REGISTRY.register()
def calculate_ssim_stf(img, img2, crop_border: int = 0, convention: str = 'paper', **kwargs) -> float:
    """SSIM by skimage.metrics.structural_similarity with default settings."""
    a, b, peak = _prepare(img, img2, crop_border, convention)
    return float(structural_similarity(a, b, data_range=peak))


@METRIC_REGISTRY.register()
def calculate_aad(img, img2, crop_border: int = 0, convention: str = 'paper', **kwargs) -> float:
    """Average absolute difference (0..255 scale for 'paper', 0..1 for 'float')."""
    a, b, _ = _prepare(img, img2, crop_border, convention)
    return float(np.mean(np.abs(a - b)))


FRAME_METRICS = {'psnr': calculate_psnr_stf, 'ssim': calculate_ssim_stf, 'aad': calculate_aad}


def frame_scores(pred, truth, convention: str = 'paper') -> dict[str, float]:
    """PSNR, SSIM and AAD of one output frame against its ground truth (the columns of metrics.csv)."""
    return {name: fn(pred, truth, convention=convention) for name, fn in FRAME_METRICS.items()}


def mean_and_spread(values: list[float], digits: int) -> str:
    """'mean ± std' over frames for the summary tables (an infinite PSNR, a copied key frame, is left out)."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return 'inf' if values else '-'
    return f'{np.mean(finite):.{digits}f} ± {np.std(finite):.{digits}f}'
