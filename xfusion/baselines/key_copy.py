"""The nearest HR key frame in time, copied (the 'nothing moves' baseline)."""
from __future__ import annotations

import numpy as np

from xfusion.baselines.common import check_inputs, nearest_key, out_dtype


def key_copy(lq: np.ndarray, hq: np.ndarray, lq_key: np.ndarray, key_weights: np.ndarray,
             center: int) -> np.ndarray:
    """Copy the key frame with the larger temporal-closeness weight (ties go to k0).

    Returns
    -------
    np.ndarray
        (H, W) copy of the nearest key frame, in the inputs' dtype.
    """
    lq, hq, lq_key, key_weights, _ = check_inputs(lq, hq, lq_key, key_weights)
    return hq[nearest_key(key_weights)].astype(out_dtype(lq, hq), copy=True)
