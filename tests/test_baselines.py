"""The classical baselines: exactness on static scenes, the Bayesian limits, a moving-object sanity check."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from xfusion.baselines import BASELINES, bayes, bayes_prior, bicubic, estimate_noise_var_temporal, key_copy, temporal
from xfusion.camera import area_average


def texture(size: int = 64, seed: int = 0) -> np.ndarray:
    """Fine random texture in [0.2, 0.8]: bicubic cannot recover it from the 4x average."""
    img = gaussian_filter(np.random.default_rng(seed).random((size, size)), 1.0)
    return 0.2 + 0.6 * (img - img.min()) / (img.max() - img.min())


def moving_object(seed: int = 0, noise_b0: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """HR (3, 64, 64) float32 at k0, t, k1: static texture with a bright disc moving right; LR = 4x4 average."""
    bg = texture(64, seed)
    yy, xx = np.mgrid[:64, :64]
    hr = np.repeat(bg[None], 3, axis=0)
    for i, x0 in enumerate((12, 30, 48)):
        hr[i][(yy - 32) ** 2 + (xx - x0) ** 2 <= 36] = 0.95
    lr = area_average(hr, 4)
    if noise_b0:
        lr = np.random.default_rng(seed + 100).poisson(lr * noise_b0) / noise_b0
    return hr.astype(np.float32), lr.astype(np.float32)


def call(method, hr: np.ndarray, lr: np.ndarray, weights=(0.5, 0.5), **kw) -> np.ndarray:
    """Target = frame 1, keys = frames 0 and 2, LR window = all three."""
    return method(lr, hr[[0, 2]], lr[[0, 2]], np.array(weights, dtype=np.float32), 1, **kw)


def psnr(pred: np.ndarray, gt: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((pred.astype(np.float64) - gt) ** 2)))


@pytest.mark.parametrize('weights', [(0.5, 0.5), (0.3, 0.7), (1.0, 0.0)])
@pytest.mark.parametrize('method,kw', [(temporal, {}), (temporal, {'similarity': False}), (bayes, {}),
                                       (bayes, {'sigma_n2': 0.0}), (bayes, {'sigma_n2': 1e-2})])
def test_static_scene_is_reproduced_exactly(method, kw, weights):
    x = texture(64, seed=1).astype(np.float32)
    hr = np.stack([x, x, x])
    lr = area_average(hr, 4)
    out = call(method, hr, lr, weights, **kw)
    assert np.abs(out - x).max() < 1e-5


def test_bayes_limits_prior_mean_and_observation():
    hr, lr = moving_object(seed=2, noise_b0=500)
    mu, v = call(bayes_prior, hr, lr)
    assert v.shape == mu.shape == hr.shape[1:] and v.min() > 0
    # no trust in the observation: the prior mean
    assert np.abs(call(bayes, hr, lr, sigma_n2=1e12) - mu).max() < 1e-5
    # a perfect observation: the estimate integrates exactly to the LR frame
    out = call(bayes, hr, lr, sigma_n2=0.0)
    assert np.abs(area_average(out.astype(np.float64), 4) - lr[1]).max() < 1e-5
    # the prior mean alone does not (the disc moved), so the limit is not trivial
    assert np.abs(area_average(mu, 4) - lr[1]).max() > 0.05


@pytest.mark.parametrize('name', sorted(BASELINES))
def test_output_shape_dtype_and_finite(name):
    rng = np.random.default_rng(3)
    lq = rng.random((3, 16, 12), dtype=np.float32)
    hq = rng.random((2, 64, 48), dtype=np.float32)
    lq_key = rng.random((2, 16, 12), dtype=np.float32)
    for weights in ((0.25, 0.75), (1.0, 0.0)):
        out = BASELINES[name](lq, hq, lq_key, np.array(weights, dtype=np.float32), 1)
        assert out.shape == (64, 48) and out.dtype == np.float32 and np.isfinite(out).all()
    # the test dataset's layout, with a channel axis, is accepted as well
    out = BASELINES[name](lq[:, None], hq[:, None], lq_key[:, None], np.array([0.5, 0.5]), 1)
    assert out.shape == (64, 48) and out.dtype == np.float32


def test_inputs_are_checked():
    lq, hq = np.zeros((3, 16, 16), np.float32), np.zeros((2, 60, 64), np.float32)
    with pytest.raises(ValueError, match='multiple'):
        temporal(lq, hq, lq[:2], np.array([0.5, 0.5]), 1)
    with pytest.raises(ValueError, match='two key frames'):
        bayes(lq, np.zeros((1, 64, 64), np.float32), lq[:2], np.array([0.5, 0.5]), 1)


def test_key_copy_picks_the_closer_key_and_bicubic_keeps_constants():
    hq = np.stack([np.zeros((32, 32)), np.ones((32, 32))]).astype(np.float32)
    lq = np.full((3, 8, 8), 0.37, dtype=np.float32)
    lq_key = area_average(hq, 4)
    assert (key_copy(lq, hq, lq_key, np.array([0.8, 0.2]), 1) == 0).all()
    assert (key_copy(lq, hq, lq_key, np.array([0.2, 0.8]), 1) == 1).all()
    assert (key_copy(lq, hq, lq_key, np.array([0.5, 0.5]), 1) == 0).all()  # ties go to k0
    out = bicubic(lq, hq, lq_key, np.array([0.5, 0.5]), 1)
    assert out.shape == (32, 32) and np.abs(out - 0.37).max() < 1e-6


def test_temporal_at_a_key_time_returns_that_key_frame():
    hr, lr = moving_object(seed=4)
    out = temporal(lr, hr[[0, 2]], lr[[0, 2]], np.array([1.0, 0.0]), 0)
    assert np.abs(out - hr[0]).max() < 1e-6


@pytest.mark.parametrize('noise_b0', [None, 1000.0])
def test_fusion_beats_bicubic_on_a_moving_object(noise_b0):
    hr, lr = moving_object(seed=5, noise_b0=noise_b0)
    scores = {name: psnr(call(method, hr, lr), hr[1]) for name, method in BASELINES.items()}
    assert scores['temporal'] > scores['bicubic'] + 1.0, scores
    assert scores['bayes'] > scores['bicubic'] + 1.0, scores
    # the disc moved, so copying a key frame is wrong there
    assert scores['bayes'] > scores['key_copy'], scores


def test_temporal_noise_estimate():
    x = np.repeat(texture(128, seed=6)[None], 3, axis=0)
    lr = area_average(x, 4) + np.random.default_rng(7).normal(0, 0.02, (3, 32, 32))
    lr[1, 10:14, 10:14] += 0.5  # something moved: the median ignores it
    assert estimate_noise_var_temporal(lr[1], lr[[0, 2]]) == pytest.approx(0.02 ** 2, rel=0.25)
    assert estimate_noise_var_temporal(lr[0], lr[[0, 0]]) is None  # t is the key time itself
