"""Metrics; importing this package registers them with BasicSR's METRIC_REGISTRY."""
from xfusion.metrics.stf_metrics import (
    FRAME_METRICS,
    calculate_aad,
    calculate_psnr_stf,
    calculate_ssim_stf,
    frame_scores,
    mean_and_spread,
)

__all__ = ['FRAME_METRICS', 'calculate_aad', 'calculate_psnr_stf', 'calculate_ssim_stf', 'frame_scores',
           'mean_and_spread']
