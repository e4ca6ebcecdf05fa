r"""Bayesian MAP fusion after Xue, Leung & Fung (2017, Remote Sensing 9:1310).

Model (one target time t, HR frame x with N pixels, LR frame y with n = N / s^2 pixels, s = 4):

- Observation: the LR camera integrates s x s HR pixels, ``y = A x + e``, ``e ~ N(0, sigma_n^2 I)``,
  with A the s x s block average (row j of A holds 1/s^2 on the pixels of block j). No extra
  blur: with one, A A^T would no longer be diagonal and the closed form below would not hold.
- Prior: ``x ~ N(mu, C)``. The mean is a local linear combination of the key frames,
  ``mu = a * HR_k0 + b * HR_k1 + c``. The coefficients come from the LR camera, which sees all
  three times: around every LR pixel i, over a window W_i (``window`` x ``window`` LR pixels),
  ridge least squares of LR_t on (LR_k0, LR_k1, 1),

      min_{a,b,c} sum_{W_i} (y - a u - b v - c)^2 + |W_i| lam ((a - w0)^2 + (b - w1)^2),

  u = LR_k0, v = LR_k1, (w0, w1) the temporal-closeness weights, lam = ``reg``, c not penalised. With window
  means and covariances (mean_*, C_**) this is the 2x2 system

      [[C_uu + lam, C_uv], [C_uv, C_vv + lam]] [a, b]^T = [C_uy + lam w0, C_vy + lam w1]^T,
      c = mean_y - a mean_u - b mean_v,

  so flat windows (no information on a, b) fall back to the temporal blend w0 HR_k0 + w1 HR_k1
  plus a local offset. As in the guided filter, the coefficients of all windows covering a pixel
  are averaged, then interpolated bilinearly to the HR grid.
  The covariance is diagonal, ``C = diag(s^2 v(p))``: v is the window's mean squared fit residual
  of LR_t minus the noise it contains (that of y - a u - b v), ``max(res - sigma_n^2 (1 + a^2 + b^2),
  floor)``, averaged and interpolated like the coefficients. The factor s^2 keeps the model
  self-consistent: under a white prior the LR-domain variance of ``A (x - mu)`` is 1/s^2 of the
  HR-domain one.
- MAP estimate (the posterior mean of this linear-Gaussian model):

      x_hat = mu + C A^T (A C A^T + sigma_n^2 I)^{-1} (y - A mu).

  With A the block average and C diagonal, ``A C A^T = diag(mean_{p in j} v(p))`` and
  ``(C A^T)_{pj} = v(p)`` for p in block j (0 elsewhere), so the inverse is per LR pixel:

      x_hat(p) = mu(p) + v(p) (y_j - (A mu)_j) / (mean_{q in j} v(q) + sigma_n^2),   p in block j.

  sigma_n^2 -> infinity gives the prior mean; sigma_n^2 -> 0 gives A x_hat = y exactly (the LR
  residual is put back, spread over each block in proportion to the prior variance). Where the
  key frames explain LR_t (static background) v ~ 0 and x_hat ~ mu; where they do not (a moving
  object) the observation is trusted.

sigma_n^2 defaults to the smaller of two robust (median-based) estimates, both biased upward:
from the LR change since the key frames (too high where much moves) and from Immerkaer's mask on
LR_t (too high on fine texture). Cost: a dozen box filters on the LR grid and a few HR-size array
operations (~0.1 s for a 256 x 256 LR frame on a 2-core CPU).
"""
from __future__ import annotations

import numpy as np

from xfusion.baselines.common import box_mean, check_inputs, out_dtype, upsample
from xfusion.camera import area_average

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def estimate_noise_var(img: np.ndarray) -> float:
    """Noise variance of a 2-D image: robust (median) version of Immerkaer's (1996) estimator.

    The mask annihilates locally linear signal; for white noise its response has standard
    deviation 6 sigma (the mask's L2 norm), and the median ignores the sparse edge responses.
    """
    img = np.asarray(img, dtype=np.float64)
    if min(img.shape) < 3:
        return 0.0
    h, w = img.shape
    resp = sum(_IMMERKAER[i, j] * img[i:h - 2 + i, j:w - 2 + j] for i in range(3) for j in range(3))
    sigma = np.median(np.abs(resp)) / 0.6745 / 6.0
    return float(sigma ** 2)


def estimate_noise_var_temporal(y: np.ndarray, lq_key: np.ndarray) -> float | None:
    """Noise variance from the LR change since the key frames, robust to the parts that move.

    Where nothing moves ``LR_t - LR_k`` is the difference of two noise samples (variance
    2 sigma^2); the median ignores the moving minority. None when every key frame is LR_t itself.
    """
    diffs = [np.abs(y - k) for k in np.asarray(lq_key, dtype=np.float64) if not np.array_equal(k, y)]
    if not diffs:
        return None
    sigma = np.median(np.concatenate([d.ravel() for d in diffs])) / 0.6745 / np.sqrt(2.0)
    return float(sigma ** 2)


def bayes_prior(lq: np.ndarray, hq: np.ndarray, lq_key: np.ndarray, key_weights: np.ndarray, center: int,
                sigma_n2: float = 0.0, window: int = 7, reg: float = 1e-3,
                var_floor: float = 1e-8) -> tuple[np.ndarray, np.ndarray]:
    """The prior of :func:`bayes`: its mean ``mu`` and the LR-domain variance ``v`` of ``C = diag(s^2 v)``.

    Returns
    -------
    mu : np.ndarray
        (H, W) float64 prior mean ``a HR_k0 + b HR_k1 + c`` (independent of ``sigma_n2``).
    v : np.ndarray
        (H, W) float64 prior variance divided by s^2, >= ``var_floor``.
    """
    lq, hq, lq_key, key_weights, scale = check_inputs(lq, hq, lq_key, key_weights)
    y = lq[center].astype(np.float64)
    u, v = lq_key.astype(np.float64)
    m = {name: box_mean(arr, window) for name, arr in (('u', u), ('v', v), ('y', y))}
    cov = {name: box_mean(p * q, window) - m[name[0]] * m[name[1]]
           for name, p, q in (('uu', u, u), ('uv', u, v), ('vv', v, v), ('uy', u, y), ('vy', v, y), ('yy', y, y))}
    w0, w1 = key_weights
    # ridge toward the temporal blend (w0, w1): stable where LR_k0, LR_k1 are flat or identical
    g00, g01, g11 = cov['uu'] + reg, cov['uv'], cov['vv'] + reg
    r0, r1 = cov['uy'] + reg * w0, cov['vy'] + reg * w1
    det = g00 * g11 - g01 * g01  # >= reg * (reg + C_uu + C_vv) > 0
    a = (g11 * r0 - g01 * r1) / det
    b = (g00 * r1 - g01 * r0) / det
    c = m['y'] - a * m['u'] - b * m['v']
    res = (cov['yy'] - 2 * a * cov['uy'] - 2 * b * cov['vy'] + a * a * cov['uu'] + 2 * a * b * cov['uv']
           + b * b * cov['vv'])
    # the residual holds the noise of y - a u - b v (variance sigma^2 (1 + a^2 + b^2)); the rest is misfit
    misfit = np.maximum(res - sigma_n2 * (1 + a * a + b * b), var_floor)
    # average over the overlapping windows (guided-filter style), then go to the HR grid smoothly
    maps = np.stack([box_mean(x, window) for x in (a, b, c, misfit)])
    a_hr, b_hr, c_hr, v_hr = upsample(maps, scale, 'bilinear')
    hr = hq.astype(np.float64)
    return a_hr * hr[0] + b_hr * hr[1] + c_hr, v_hr


def bayes(lq: np.ndarray, hq: np.ndarray, lq_key: np.ndarray, key_weights: np.ndarray, center: int,
          sigma_n2: float | None = None, window: int = 7, reg: float = 1e-3, var_floor: float = 1e-8) -> np.ndarray:
    """MAP estimate of the HR frame at t under the model of the module docstring.

    Parameters
    ----------
    sigma_n2 : float or None
        LR observation noise variance (intensities in [0, 1]); None estimates it from the LR
        frames (the smaller of the temporal and the spatial estimate: both over-estimate, one
        where things move, the other on fine texture).
    window : int
        Side, in LR pixels, of the regression windows of the prior mean.
    reg : float
        Ridge weight pulling (a, b) toward the temporal weights, in squared-intensity units: windows
        whose LR variance is well below it use the temporal blend.
    var_floor : float
        Lower bound of the LR-domain prior variance, so ``sigma_n2 = 0`` still gives a defined gain.

    Returns
    -------
    np.ndarray
        (H, W) estimate, in the inputs' dtype.
    """
    lq, hq, lq_key, key_weights, scale = check_inputs(lq, hq, lq_key, key_weights)
    y = lq[center].astype(np.float64)
    if sigma_n2 is None:
        estimates = [estimate_noise_var(y), estimate_noise_var_temporal(y, lq_key)]
        sigma_n2 = min(e for e in estimates if e is not None)
    if sigma_n2 < 0:
        raise ValueError(f'sigma_n2 must be >= 0, got {sigma_n2}')
    mu, v = bayes_prior(lq, hq, lq_key, key_weights, center, sigma_n2=sigma_n2, window=window, reg=reg,
                        var_floor=var_floor)
    gain = (y - area_average(mu, scale)) / (area_average(v, scale) + sigma_n2)
    return (mu + v * upsample(gain, scale, 'nearest')).astype(out_dtype(lq, hq))
