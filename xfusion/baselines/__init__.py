"""Classical STF baselines, one signature for all::

    method(lq, hq, lq_key, key_weights, center) -> (H, W) HR estimate at the target time t

lq (T, h, w) LR window with lq[center] at t; hq (2, H, W) HR key frames k0 <= t <= k1;
lq_key (2, h, w) the LR frames at k0, k1; key_weights (2,) temporal closeness of k0, k1.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from xfusion.baselines.bayes import bayes, bayes_prior, estimate_noise_var, estimate_noise_var_temporal
from xfusion.baselines.bicubic import bicubic
from xfusion.baselines.key_copy import key_copy
from xfusion.baselines.temporal import temporal

BASELINES: dict[str, Callable[..., np.ndarray]] = {
    'bicubic': bicubic,
    'key_copy': key_copy,
    'temporal': temporal,
    'bayes': bayes,
}

__all__ = ['BASELINES', 'bayes', 'bayes_prior', 'bicubic', 'estimate_noise_var', 'estimate_noise_var_temporal',
           'key_copy', 'temporal']
