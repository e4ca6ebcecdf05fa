import numpy as np
import pytest
import torch
from basicsr.metrics import calculate_metric
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from xfusion.metrics import calculate_aad, calculate_psnr_stf, calculate_ssim_stf


def test_paper_convention_by_hand():
    gt = np.zeros((4, 4), np.float32)
    pred = np.zeros((4, 4), np.float32)
    pred[0, 0] = 10 / 255  # one pixel off by 10 grey levels
    mse = 100 / 16
    assert calculate_psnr_stf(pred, gt) == pytest.approx(10 * np.log10(255**2 / mse))
    assert calculate_aad(pred, gt) == pytest.approx(10 / 16)
    assert calculate_psnr_stf(gt, gt) == float('inf')


def test_paper_convention_rounds_to_uint8_first():
    gt = np.full((8, 8), 100 / 255, np.float32)
    pred = gt + 0.4 / 255  # rounds back to 100
    assert calculate_psnr_stf(pred, gt) == float('inf')
    assert calculate_aad(pred, gt) == 0.0
    assert calculate_psnr_stf(pred, gt, convention='float') < 100


def test_against_skimage():
    rng = np.random.default_rng(0)
    gt = rng.random((32, 40)).astype(np.float32)
    pred = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1).astype(np.float32)
    gt8, pred8 = np.round(gt * 255).astype(np.uint8), np.round(pred * 255).astype(np.uint8)
    assert calculate_psnr_stf(pred, gt) == pytest.approx(peak_signal_noise_ratio(gt8, pred8, data_range=255))
    assert calculate_ssim_stf(pred, gt) == pytest.approx(structural_similarity(gt8, pred8, data_range=255))
    assert calculate_aad(pred, gt) == pytest.approx(np.abs(gt8.astype(float) - pred8).mean())
    # float convention: [0, 1] with data range 1
    assert calculate_psnr_stf(pred, gt, convention='float') == pytest.approx(
        peak_signal_noise_ratio(gt.astype(float), pred.astype(float), data_range=1))
    assert calculate_ssim_stf(pred, gt, convention='float') == pytest.approx(
        structural_similarity(gt.astype(float), pred.astype(float), data_range=1))
    assert calculate_aad(pred, gt, convention='float') == pytest.approx(np.abs(gt - pred.astype(float)).mean(), 1e-6)


def test_inputs_uint16_tensor_crop_and_registry():
    rng = np.random.default_rng(1)
    gt16 = rng.integers(0, 65535, (16, 16), dtype=np.uint16)
    assert calculate_psnr_stf(gt16, gt16.astype(np.float64) / 65535, convention='float') == float('inf')
    t = torch.from_numpy(gt16.astype(np.float32) / 65535)[None]
    assert calculate_aad(t, gt16) == 0.0
    a = np.zeros((10, 10))
    b = a.copy()
    b[0, :] = 1  # only the border differs
    assert calculate_aad(a, b, crop_border=1) == 0.0
    value = calculate_metric({'img': a, 'img2': b}, {'type': 'calculate_aad', 'convention': 'float'})
    assert value == pytest.approx(0.1)
    with pytest.raises(ValueError):
        calculate_psnr_stf(a, b, convention='nope')
    with pytest.raises(ValueError):
        calculate_psnr_stf(a, b[:5])
