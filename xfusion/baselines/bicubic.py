"""Bicubic x4 upsampling of the LR frame at the target time (uses no HR key frame)."""
from __future__ import annotations

import numpy as np

from xfusion.baselines.common import check_inputs, out_dtype, upsample


def bicubic(lq: np.ndarray, hq: np.ndarray, lq_key: np.ndarray, key_weights: np.ndarray,
            center: int) -> np.ndarray:
    """Upsample ``lq[center]`` by the HR/LR scale.

    Uses ``torch.nn.functional.interpolate(mode='bicubic', align_corners=False)`` (kernel a = -0.75,
    as OpenCV's INTER_CUBIC); the result is not clipped, so it may overshoot [0, 1] at edges.

    Returns
    -------
    np.ndarray
        (H, W) estimate of the HR frame at t, in the inputs' dtype.
    """
    lq, hq, lq_key, key_weights, scale = check_inputs(lq, hq, lq_key, key_weights)
    return upsample(lq[center].astype(np.float64), scale, 'bicubic').astype(out_dtype(lq, hq))
