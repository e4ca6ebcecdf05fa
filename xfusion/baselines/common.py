"""Shared helpers of the classical baselines: input checks, resampling, local means."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import uniform_filter


def check_inputs(lq: np.ndarray, hq: np.ndarray, lq_key: np.ndarray,
                 key_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Validate and squeeze the baseline inputs; return (lq, hq, lq_key, key_weights, scale).

    A singleton channel axis, as the test dataset returns it ((T,1,h,w), (2,1,H,W)), is dropped.
    """
    lq, hq, lq_key = (_squeeze_channel(np.asarray(a), name) for a, name in
                      ((lq, 'lq'), (hq, 'hq'), (lq_key, 'lq_key')))
    key_weights = np.asarray(key_weights, dtype=np.float64).reshape(-1)
    if hq.shape[0] != 2 or lq_key.shape[0] != 2 or key_weights.shape != (2,):
        raise ValueError(f'expected two key frames, got hq {hq.shape}, lq_key {lq_key.shape}, '
                         f'key_weights {key_weights.shape}')
    h, w = lq.shape[1:]
    if lq_key.shape[1:] != (h, w):
        raise ValueError(f'lq_key frames {lq_key.shape[1:]} differ from the LR window frames {(h, w)}')
    scale = hq.shape[1] // h
    if scale < 1 or hq.shape[1:] != (scale * h, scale * w):
        raise ValueError(f'HR key frames {hq.shape[1:]} are not an integer multiple of the LR frames {(h, w)}')
    return lq, hq, lq_key, key_weights, scale


def _squeeze_channel(a: np.ndarray, name: str) -> np.ndarray:
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3:
        raise ValueError(f'{name} must be (N, h, w) (or (N, 1, h, w)), got shape {a.shape}')
    return a


def out_dtype(*arrays: np.ndarray) -> np.dtype:
    """The inputs' floating dtype (float32 for integer inputs)."""
    dtype = np.result_type(*arrays)
    return dtype if np.issubdtype(dtype, np.floating) else np.dtype(np.float32)


def upsample(img: np.ndarray, scale: int, mode: str = 'bicubic') -> np.ndarray:
    """Resize a 2-D array (or a stack (N, h, w)) by an integer factor with torch's interpolate.

    ``bicubic`` / ``bilinear`` use ``align_corners=False`` (pixel-area-centred grids, as cv2.resize,
    torch's bicubic kernel has a = -0.75 like OpenCV's); ``nearest`` replicates each pixel.
    """
    if mode == 'nearest':
        # exact block replication, no interpolation grid to worry about
        return np.repeat(np.repeat(img, scale, axis=-2), scale, axis=-1)
    x = torch.from_numpy(np.ascontiguousarray(img))
    squeeze = x.ndim == 2
    x = x[None, None] if squeeze else x[:, None]
    y = F.interpolate(x, scale_factor=scale, mode=mode, align_corners=False)
    y = y[0, 0] if squeeze else y[:, 0]
    return y.numpy()


def box_mean(img: np.ndarray, size: int) -> np.ndarray:
    """Local mean over size x size windows (mirror-reflected at the borders)."""
    return uniform_filter(img, size=size, mode='reflect')


def nearest_key(key_weights: np.ndarray) -> int:
    """Index of the key frame closer in time (the larger weight; ties go to k0)."""
    return 0 if key_weights[0] >= key_weights[1] else 1
