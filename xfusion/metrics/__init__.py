"""Metrics; importing this package registers them with BasicSR's METRIC_REGISTRY."""
from xfusion.metrics.stf_metrics import calculate_aad, calculate_psnr_stf, calculate_ssim_stf

__all__ = ['calculate_aad', 'calculate_psnr_stf', 'calculate_ssim_stf']
