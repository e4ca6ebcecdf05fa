"""Temporal-change fusion in the spirit of STARFM (Gao et al. 2006).

Each key frame k gives a prediction by adding the LR camera's change since k, upsampled::

    pred_k = HR_k + up(LR_t - LR_k)          (up = bicubic, align_corners=False)

and the output is the per-pixel blend ``sum_k W_k pred_k / sum_k W_k``. ``W_k`` is the key's
temporal closeness ``w_k`` times, optionally (``similarity=True``), a local spectral-similarity
weight as in STARFM, ``1 / (mean_window |LR_t - LR_k| + eps)``, computed on the LR grid and
upsampled bilinearly: where one key frame looks locally like the target time (the moving
object has not reached that area yet, or has left it), that key frame dominates.
"""
from __future__ import annotations

import numpy as np

from xfusion.baselines.common import box_mean, check_inputs, out_dtype, upsample


def temporal(lq: np.ndarray, hq: np.ndarray, lq_key: np.ndarray, key_weights: np.ndarray, center: int,
             similarity: bool = True, window: int = 5, eps: float = 1e-3) -> np.ndarray:
    """STARFM-like fusion of the two key frames with the LR change since each.

    Parameters
    ----------
    similarity : bool
        Also weight each key by its local LR similarity to the target time (default on).
    window : int
        Side, in LR pixels, of the window of the similarity weight.
    eps : float
        Added to the mean absolute LR difference, so identical windows get a finite weight and
        the temporal weights decide between keys that both match.

    Returns
    -------
    np.ndarray
        (H, W) estimate of the HR frame at t, in the inputs' dtype.
    """
    lq, hq, lq_key, key_weights, scale = check_inputs(lq, hq, lq_key, key_weights)
    y = lq[center].astype(np.float64)
    diff = y[None] - lq_key.astype(np.float64)  # (2, h, w): LR change since each key
    pred = hq.astype(np.float64) + upsample(diff, scale, 'bicubic')
    weight = np.broadcast_to(key_weights[:, None, None], diff.shape).astype(np.float64)
    if similarity:
        weight = weight / (box_mean(np.abs(diff), (1, window, window)) + eps)
    weight = weight / weight.sum(axis=0, keepdims=True)  # temporal weights sum to 1, so the sum is > 0
    weight = upsample(weight, scale, 'bilinear')
    return (weight * pred).sum(axis=0).astype(out_dtype(lq, hq))
