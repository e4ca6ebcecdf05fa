"""The classical estimates of ``xfusion.baselines`` in torch, batched, on the network's device: inputs of networks.

A network may start from what classical fusion knows (``bayes``: Bayesian MAP fusion after Xue,
Leung & Fung 2017; ``temporal``: STARFM-like temporal-change fusion; their equations are in
``xfusion/baselines/bayes.py`` and ``temporal.py``). These are the same estimators, written for
batches of tensors so that they run inside a network's forward pass; the numpy baselines stay
what the comparison uses. Two differences: local means replicate the border instead of
mirroring it, and everything runs in float32 (autocast is switched off here: covariances of
intensities near 0.5 do not survive bf16).

The LR camera is here too: ``lr_camera`` (its extra blur, then the 4x4 area average), ``fit_lr_camera`` (that
blur and what the model leaves unexplained, at the key frames) and ``project_onto_lr``, which pulls an output
back onto the LR frame recorded at its time (``xfusion.camera.CameraModel.project``, batched).

Shapes: ``y`` (B, 1, h, w) the LR frame at t; ``hq`` (B, 2, H, W) the key frames; ``lq_key`` (B, 2, h, w)
the LR frames at the key times; ``key_weights`` (B, 2) their temporal closeness.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

_IMMERKAER = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])
QUANTISATION_VARIANCE = 1.0 / (12 * 255 ** 2)  # the noise floor of 8-bit frames: a clean LR frame is not exact
PROJECT_THRESHOLD = 2.0  # LR residuals within 2 noise sd (3x3 neighbourhood) are noise (as CameraModel.project)
PROJECT_ITERATIONS = 6  # conjugate-gradient steps (the residual's smooth part converges in a few)
# the temporal estimate keeps the LR change only beyond TEMPORAL_SHRINK times the noise power of the two frames:
# at 1 (the Wiener gain) much of the noise of two frames stayed under heavy noise; 2 was measured over three
# training seeds on the validation families (docs/experiments.md, section 17)
TEMPORAL_SHRINK = 2.0


def box_mean(x: torch.Tensor, size: int) -> torch.Tensor:
    """Local mean over size x size windows (borders replicated) of (B, C, h, w)."""
    p = size // 2
    return F.avg_pool2d(F.pad(x, (p, p, p, p), mode='replicate'), size, stride=1)


def noise_variance(y: torch.Tensor, lq_key: torch.Tensor) -> torch.Tensor:
    """(B,) LR noise variance: the smaller of Immerkaer's robust estimate on y and the one from y's change
    since the key frames (as ``xfusion.baselines.bayes``); key frames equal to y are left out."""
    b = y.shape[0]
    resp = F.conv2d(y, _IMMERKAER.to(y)[None, None])
    spatial = (resp.abs().flatten(1).median(dim=1).values / 0.6745 / 6.0) ** 2
    diff = (y - lq_key).abs()  # (B, 2, h, w)
    same = diff.flatten(2).amax(dim=2) == 0  # (B, 2): the key frame is y itself
    diff = torch.where(same[:, :, None, None], torch.full_like(diff, float('nan')), diff)
    temporal = (diff.reshape(b, -1).nanmedian(dim=1).values / 0.6745 / 2 ** 0.5) ** 2
    return torch.where(torch.isnan(temporal), spatial, torch.minimum(spatial, temporal))


def bayes(y: torch.Tensor, hq: torch.Tensor, lq_key: torch.Tensor, key_weights: torch.Tensor,
          sigma_n2: torch.Tensor | None = None, window: int = 7, reg: float = 1e-3,
          var_floor: float = 1e-8) -> torch.Tensor:
    """(B, 1, H, W) MAP estimate at t (``xfusion.baselines.bayes.bayes``, batched)."""
    with torch.autocast(y.device.type, enabled=False):
        y, hq, lq_key, key_weights = (x.float() for x in (y, hq, lq_key, key_weights))
        scale = hq.shape[-1] // y.shape[-1]
        if sigma_n2 is None:
            sigma_n2 = noise_variance(y, lq_key)
        s2 = sigma_n2.float().reshape(-1, 1, 1, 1)
        u, v = lq_key[:, :1], lq_key[:, 1:]
        means = box_mean(torch.cat([u, v, y], 1), window)
        m_u, m_v, m_y = means[:, :1], means[:, 1:2], means[:, 2:]
        products = box_mean(torch.cat([u * u, u * v, v * v, u * y, v * y, y * y], 1), window)
        c_uu, c_uv, c_vv, c_uy, c_vy, c_yy = (products[:, i:i + 1] - p * q for i, (p, q) in enumerate(
            ((m_u, m_u), (m_u, m_v), (m_v, m_v), (m_u, m_y), (m_v, m_y), (m_y, m_y))))
        w0, w1 = key_weights[:, :1, None, None], key_weights[:, 1:, None, None]
        # ridge toward the temporal blend (w0, w1), as in the numpy baseline
        g00, g01, g11 = c_uu + reg, c_uv, c_vv + reg
        r0, r1 = c_uy + reg * w0, c_vy + reg * w1
        det = g00 * g11 - g01 * g01
        a = (g11 * r0 - g01 * r1) / det
        b = (g00 * r1 - g01 * r0) / det
        c = m_y - a * m_u - b * m_v
        res = c_yy - 2 * a * c_uy - 2 * b * c_vy + a * a * c_uu + 2 * a * b * c_uv + b * b * c_vv
        misfit = torch.clamp(res - s2 * (1 + a * a + b * b), min=var_floor)
        maps = F.interpolate(box_mean(torch.cat([a, b, c, misfit], 1), window), scale_factor=scale,
                             mode='bilinear', align_corners=False)
        mu = maps[:, :1] * hq[:, :1] + maps[:, 1:2] * hq[:, 1:] + maps[:, 2:3]
        var = maps[:, 3:]
        gain = (y - F.avg_pool2d(mu, scale)) / (F.avg_pool2d(var, scale) + s2)
        return mu + var * F.interpolate(gain, scale_factor=scale, mode='nearest')


def temporal(y: torch.Tensor, hq: torch.Tensor, lq_key: torch.Tensor, key_weights: torch.Tensor,
             window: int = 5, eps: float = 1e-3, sigma_n2: torch.Tensor | None = None) -> torch.Tensor:
    """(B, 1, H, W) STARFM-like estimate at t (``xfusion.baselines.temporal.temporal``, batched).

    ``sigma_n2`` (B,): the LR noise variance; when given, the LR change is shrunk first (by
    1 - 2 TEMPORAL_SHRINK sigma_n2 / its local power, as both frames are noisy), so that where nothing changed
    the estimate is the key frame, not the key frame plus the upsampled noise of two LR frames; and each key
    frame is weighted by its local RMS change beyond that noise, so that the key frame that still holds (where
    the other one is out of date) is the one taken, however noisy the LR frames."""
    with torch.autocast(y.device.type, enabled=False):
        y, hq, lq_key, key_weights = (x.float() for x in (y, hq, lq_key, key_weights))
        scale = hq.shape[-1] // y.shape[-1]
        diff = y - lq_key  # (B, 2, h, w): the LR change since each key frame
        # off: how far each key frame is from the LR frame here (beyond the noise, when it is known)
        if sigma_n2 is None:
            change, off = diff, box_mean(diff.abs(), window)
        else:
            noise = 2 * sigma_n2.float().reshape(-1, 1, 1, 1)  # the noise power of the two frames' difference
            power = box_mean(diff * diff, window) + 1e-12
            change = diff * (1 - TEMPORAL_SHRINK * noise / power).clamp(0, 1)
            off = (power - noise).clamp_min(0).sqrt()
        pred = hq + F.interpolate(change, scale_factor=scale, mode='bicubic', align_corners=False)
        weight = key_weights[:, :, None, None] / (off + eps)
        weight = F.interpolate(weight / weight.sum(dim=1, keepdim=True), scale_factor=scale, mode='bilinear',
                               align_corners=False)
        return (weight * pred).sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W) with one sigma per image (B,), in pixels (0: unchanged),
    borders replicated."""
    b, c = x.shape[:2]
    sigma = sigma.to(x).reshape(b, 1).clamp_min(1e-3)
    radius = max(1, int(torch.ceil(3 * sigma.max()).item()))
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)[None]
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)[:, None]  # (B*C, 1, k)
    y = x.reshape(1, b * c, *x.shape[-2:])
    y = F.conv2d(F.pad(y, (radius, radius, 0, 0), mode='replicate'), kernel[:, :, None, :], groups=b * c)
    y = F.conv2d(F.pad(y, (0, 0, radius, radius), mode='replicate'), kernel[:, :, :, None], groups=b * c)
    return y.reshape(x.shape)


def lr_camera(hr: torch.Tensor, blur_sigma: torch.Tensor, scale: int) -> torch.Tensor:
    """What the LR camera records of HR frames (B, C, H, W): its extra blur (B,) in HR pixels, then the
    scale x scale area average (``xfusion.camera.lr_camera``, batched)."""
    return F.avg_pool2d(gaussian_blur(hr, blur_sigma), scale)


def project_onto_lr(hr: torch.Tensor, y: torch.Tensor, sigma_n2: torch.Tensor, blur_sigma: torch.Tensor,
                    threshold: float = PROJECT_THRESHOLD, iterations: int = PROJECT_ITERATIONS) -> torch.Tensor:
    """(B, 1, H, W) HR frames pulled back onto the LR frames y (B, 1, h, w) recorded at their times, within
    the noise (variance sigma_n2, (B,) or per LR pixel (B, 1, h, w)): ``xfusion.camera.CameraModel.project``,
    batched and differentiable, with the camera's gain 1 and its extra blur ``blur_sigma`` (B,) HR pixels.

    The residual's share beyond the noise (a local Wiener shrinkage: 0 where its 3x3 neighbourhood is
    within ``threshold`` noise sd) is put back with the smallest smooth correction, by conjugate gradients
    on the LR grid. Key-frame content that the LR frame contradicts (a ghost where a part has gone) is
    taken out as far as the LR camera resolves it; a frame consistent with it is left as it is."""
    with torch.autocast(y.device.type, enabled=False):
        hr, y = hr.float(), y.float()
        scale = hr.shape[-1] // y.shape[-1]
        spread = blur_sigma.clamp_min(1.0)  # no blocky corrections where the LR camera adds no blur

        def back(c):
            return gaussian_blur(F.interpolate(c, scale_factor=scale, mode='nearest'), spread)

        def forward(c):
            return lr_camera(back(c), blur_sigma, scale)

        r = y - lr_camera(hr, blur_sigma, scale)
        var = sigma_n2.float()
        var = (var if var.dim() == 4 else var.reshape(-1, 1, 1, 1)) + QUANTISATION_VARIANCE
        local = box_mean(r * r / var, 3)
        target = r * (1 - threshold ** 2 / local.clamp_min(1e-12)).clamp_min(0)
        c, res = torch.zeros_like(target), target
        direction, rho = res, (res * res).sum((1, 2, 3), keepdim=True)
        for _ in range(iterations):
            k_dir = forward(direction)
            alpha = rho / (direction * k_dir).sum((1, 2, 3), keepdim=True).clamp_min(1e-30)
            c, res = c + alpha * direction, res - alpha * k_dir
            rho_new = (res * res).sum((1, 2, 3), keepdim=True)
            direction, rho = res + rho_new / rho.clamp_min(1e-30) * direction, rho_new
        return hr + back(c)


def fit_lr_camera(key: torch.Tensor, lr_at_key: torch.Tensor, fit_blur) -> tuple[torch.Tensor, torch.Tensor]:
    """The LR camera model at the key frames (B, K, 1, H, W) and the LR frames recorded with them (B, K, 1, h, w):
    (B,) its extra blur, fitted on the first (``fit_blur(key, lr_at_key)``), and (B, K, 1, h, w) the local
    mean square of what the model leaves unexplained at each key frame (noise and the model's own error, at
    edges most): no correction of an output is trusted below it."""
    with torch.no_grad(), torch.autocast(key.device.type, enabled=False):
        key, lr_at_key = key.float(), lr_at_key.float()
        b, k = key.shape[:2]
        blur_sigma = fit_blur(key[:, 0], lr_at_key[:, 0])
        predicted = lr_camera(key.flatten(0, 1), blur_sigma.repeat_interleave(k), key.shape[-1] // lr_at_key.shape[-1])
        misfit = box_mean((lr_at_key.flatten(0, 1) - predicted) ** 2, 3)
        return blur_sigma, misfit.unflatten(0, (b, k))
