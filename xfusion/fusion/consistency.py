"""LR consistency: each fused frame taken through the LR camera and compared with the LR frame recorded at its time.

The LR camera relative to the HR camera (extra blur, gain, offset, noise; ``xfusion.camera.fit_lr_camera``) is
fitted on the simultaneous frames at up to ``FIT_PAIRS`` key times. ``LRConsistency.frame`` gives, for a fused
frame, what is written (after ``--project``, in the HR camera's dtype) and the per-pixel map z of what is written;
``consistency.csv`` has a row per output frame (``frame,is_key,chi2,max_abs_z,key_change,bayes_rms,risk`` and
``chi2_unprojected`` with ``--project``).

Scores per frame, for three questions:

- ``chi2``: is the fused frame consistent with the LR frame of its time? The mean over LR pixels of z^2, z the
  residual over the noise sd expected there: about 1 where it is.
- ``key_change``: how much of the frame did the key frames not see? The share of LR pixels where *neither*
  bracketing key frame, taken through the camera, explains the LR frame recorded at t: the local chi2 (mean of z^2
  over 3x3 LR pixels) of each key frame against it above ``KEY_CHANGE_LEVEL``. It is the evidence that tells the
  network where key-frame content is gone, and it does not depend on the fused frame: a network that puts its
  output back onto the LR frame leaves chi2 near 1 wherever it could. The two rank frames by their true error
  differently well on different scenes (docs/results.md), so both are kept.
- ``risk``: which frames are most likely wrong? ``key_change`` times the mean square difference between the fused
  frame and the classical Bayesian fusion of the same LR frame and key frames (``bayes_rms``, its root, in
  [0, 1] units). Two estimates of the same trouble that fail differently: ``key_change`` counts the pixels the key
  frames did not see, however little detail they hold, and the difference from classical fusion weighs what the
  network did there, but also where it only removed noise differently; on the validation families their product
  ranks frames by their true error better than either (docs/experiments.md, section 19).
"""
from __future__ import annotations

import csv
import io
from collections.abc import Callable

import cv2
import numpy as np

from xfusion.baselines.bayes import bayes
from xfusion.camera import SCALE, CameraModel, fit_lr_camera
from xfusion.io.intensity import IntensityScale
from xfusion.schedule import key_weights

FIT_PAIRS = 8  # key frames the camera model is fitted on (spread over the sequence)
FIT_PIXELS = 8_000_000  # at most this many HR pixels in all, so that large frames fit in seconds
PROJECT_THRESHOLD = 2.0  # noise sd: --project leaves LR residuals whose neighbourhood is within this alone
KEY_CHANGE_LEVEL = 4.0  # local chi2 beyond which a key frame does not explain an LR pixel (a z of 2 on average)
COLUMNS = ['frame', 'is_key', 'chi2', 'max_abs_z', 'key_change', 'bayes_rms', 'risk', 'chi2_unprojected']
Z_LABEL = 'LR consistency z (red: LR brighter than fused, blue: darker)'


def fit_camera(read_lr: Callable[[int], np.ndarray], read_hr_grid: Callable[[int], np.ndarray],
               key_times: list[int] | tuple[int, ...], lr_shape: tuple[int, int], mask: np.ndarray | None = None,
               b0: float | None = None, quantum: float = 0.0) -> CameraModel:
    """The LR camera relative to the HR camera (``fit_lr_camera``) from the simultaneous frames at up to
    ``FIT_PAIRS`` key times spread over the sequence; ``read_hr_grid(k)``: the key frame on the x4 grid."""
    h, w = lr_shape
    n = max(1, min(FIT_PAIRS, len(key_times), FIT_PIXELS // (SCALE * SCALE * h * w)))
    chosen = sorted({key_times[int(round(i))] for i in np.linspace(0, len(key_times) - 1, n)})
    return fit_lr_camera(np.stack([read_lr(k) for k in chosen]), np.stack([read_hr_grid(k) for k in chosen]),
                         mask, b0, quantum)


class LRConsistency:
    """Each fused frame against the LR frame of its time, through the fitted camera; ``rows`` for
    consistency.csv. ``project``: pull each frame back onto its LR frame within ``PROJECT_THRESHOLD`` noise sd."""

    def __init__(self, camera: CameraModel, scale: IntensityScale, project: bool = False):
        self.camera, self.scale, self.project = camera, scale, project
        self.rows: list[dict] = []
        self._predicted: dict[int, np.ndarray] = {}  # the bracketing key frames through the camera, by time

    def frame(self, t: int, is_key: bool, unit: np.ndarray, lr: np.ndarray, keys: dict[int, np.ndarray] | None = None,
              keys_lr: dict[int, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(unit, stored, z) of a fused frame in [0, 1] units: the frame after ``--project``, as it is written
        (the HR camera's dtype and range), and the LR-consistency map of what is written. ``keys``: the key frames
        that bracket t by their times, on the x4 grid (for ``key_change``); ``keys_lr``: the LR frames at those
        times (with ``keys``, for ``bayes_rms`` and ``risk``)."""
        row = {'frame': t, 'is_key': is_key}
        if keys:
            row['key_change'] = self.key_change(lr, keys)
        if self.project:
            row['chi2_unprojected'] = self.camera.chi2(unit, lr)
            unit = self.camera.project(unit, lr, PROJECT_THRESHOLD)
        stored = self.scale.from_unit(unit)
        written = self.scale.to_unit(stored)
        z = self.camera.residual_map(written, lr)  # of what is written
        row.update(chi2=float(np.mean(z ** 2)), max_abs_z=float(np.abs(z).max()))
        if keys and keys_lr:
            row['bayes_rms'] = self.bayes_rms(t, written, lr, keys, keys_lr)
            row['risk'] = row['key_change'] * row['bayes_rms'] ** 2
        self.rows.append(row)
        return unit, stored, z

    def key_change(self, lr: np.ndarray, keys: dict[int, np.ndarray]) -> float:
        """The share of LR pixels that none of the key frames (by their times) explains (see the module docstring).
        Each key frame is first matched to the LR frame's overall brightness (a least-squares gain and offset): the
        beam's flux changes from frame to frame, and with clean frames that alone would leave no pixel explained.
        A key frame is taken through the camera once for all the frames it brackets."""
        self._predicted = {k: self._predicted[k] if k in self._predicted else self.camera.predict(key)
                           for k, key in keys.items()}
        local = []
        for expected in self._predicted.values():
            gain, offset = np.polyfit(expected.ravel().astype(np.float64), lr.ravel().astype(np.float64), 1)
            expected = (gain * expected + offset).astype(np.float32)
            z2 = (lr - expected) ** 2 / self.camera.variance(expected)
            local.append(cv2.blur(z2, (3, 3), borderType=cv2.BORDER_REFLECT))
        return float((np.minimum.reduce(local) > KEY_CHANGE_LEVEL).mean())

    @staticmethod
    def bayes_rms(t: int, unit: np.ndarray, lr: np.ndarray, keys: dict[int, np.ndarray],
                  keys_lr: dict[int, np.ndarray]) -> float:
        """The RMS difference between a fused frame (unit) and the classical Bayesian fusion (``baselines.bayes``,
        its noise estimated from the frames) of the LR frame at t and the key frames that bracket t."""
        k0, k1 = min(keys), max(keys)
        classical = bayes(lr[None], np.stack([keys[k0], keys[k1]]), np.stack([keys_lr[k0], keys_lr[k1]]),
                          np.asarray(key_weights(t, k0, k1)), 0)
        return float(np.sqrt(np.mean((unit.astype(np.float64) - classical) ** 2)))

    def summary(self) -> dict:
        """The mean chi2 of the non-key and of the key frames (None where there are none)."""
        chi2 = np.array([r['chi2'] for r in self.rows])
        nonkey = np.array([not r['is_key'] for r in self.rows])
        return {'mean_chi2_non_key': float(chi2[nonkey].mean()) if nonkey.any() else None,
                'mean_chi2_key': float(chi2[~nonkey].mean()) if (~nonkey).any() else None}

    def csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction='ignore', lineterminator='\n')
        writer.writeheader()
        for row in self.rows:
            writer.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in row.items()})
        return buffer.getvalue()

    def series(self) -> dict[str, dict[int, float]]:
        """The per-frame chi2 for the report's timeline (and before ``--project``)."""
        series = {'chi2': {r['frame']: r['chi2'] for r in self.rows}}
        if self.project:
            series['chi2 before --project'] = {r['frame']: r['chi2_unprojected'] for r in self.rows}
        return series

    def markdown(self) -> str:
        """What consistency.csv means, for the report of ``fuse``."""
        rows = self.rows
        chi2 = np.array([r['chi2'] for r in rows])
        key = np.array([r['is_key'] for r in rows])
        worst = sorted(rows, key=lambda r: -r['chi2'])[:5]
        fit = self.camera.summary()
        project = f'on: residuals beyond {PROJECT_THRESHOLD:g} noise sd put back' if self.project else 'off'
        lines = [
            'Each fused frame F is taken through the camera model fitted at the key times, LR = gain x '
            'area_average(blur(F)) + offset, and compared with the LR frame recorded at its time. chi2 is the mean '
            'over LR pixels of the squared residual over the noise variance expected there: about 1 where the fused '
            'frame is as consistent with the LR camera as the recorded key frames are; much larger where the network '
            'invented or lost content that the LR camera resolves. The map (z = residual / noise sd) shows where. '
            'key_change is the share of LR pixels that neither bracketing key frame explains (their local chi2 '
            f'above {KEY_CHANGE_LEVEL:g}): what the network had to take from the LR camera alone. bayes_rms is the '
            'RMS difference between the fused frame and the classical Bayesian fusion of the same frames, and risk '
            'is key_change x bayes_rms^2: the frames with the highest risk are where to look first.',
            '', '| | value |', '|---|---|',
            f'| extra LR blur (HR pixels) | {fit["blur_sigma_hr_px"]:.3f} |',
            f'| gain, offset | {fit["gain"]:.4f}, {fit["offset"]:.5f} |',
            f'| noise | {fit["noise_source"]}; variance = {fit["noise_slope"]:.3g} x intensity + '
            f'{fit["noise_floor"]:.3g} |',
            f'| fit residual (RMS, key frames) | {fit["fit_residual_rms"]:.4g} |',
            f'| mean chi2, non-key frames | {chi2[~key].mean():.3g} |' if (~key).any()
            else '| mean chi2, non-key | - |',
            f'| mean chi2, key frames | {chi2[key].mean():.3g} |' if key.any() else '| mean chi2, key frames | - |',
            f'| --project | {project} |',
            '', '| least consistent frames | chi2 |', '|---|---|',
        ] + [f'| {r["frame"]} | {r["chi2"]:.3g} |' for r in worst]
        risky = sorted((r for r in rows if not r['is_key'] and 'risk' in r), key=lambda r: -r['risk'])
        if risky:
            lines += ['', '| frames to look at first | risk | key_change | bayes_rms |', '|---|---|---|---|']
            lines += [f'| {r["frame"]} | {r["risk"]:.3g} | {r["key_change"]:.3f} | {r["bayes_rms"]:.4f} |'
                      for r in risky[:5]]
        return '\n'.join(lines)
