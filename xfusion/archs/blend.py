"""The base image of a key-frame network: a per-pixel blend of *sources*, each right somewhere.

Every key-frame network adds its learned residual to a base that is a blend of images it can trust
in part: key frames (copied, or warped to t), classical estimates, the upsampled LR frame. The blend
weights are predicted on the LR grid from the network's features and from each source's
*disagreement* with the LR frame recorded at t (its 4x4 area average against that frame): a source
that contradicts what the LR camera saw is out of date there. At the start, before any training,
the weights follow the disagreement alone: a source's logit starts at its bias and drops by
``DISAGREEMENT_GAIN`` per unit of disagreement, so an untrained network is already a sensible fusion.

- ``SourceBlend``: a softmax over named sources (PropSTF's key frames warped to t, the two Bayesian
  estimates, the temporal one and the LR frame).
- ``KeyTrustBlend``: the window networks' ``key_blend``: the key frames mixed by temporal closeness and
  agreement, then trusted against the upsampled LR frame as far as the mix agrees with it.
- ``StillGate``: hands a pixel to the temporal source where nothing moved (PropSTF).

Constants (intensities in [0, 1]; how each was chosen):

- ``DISAGREEMENT_GAIN`` 40: a disagreement of 0.05 (a part that moved over a background 5% darker)
  lowers a logit by 2, about what separates a trusted source from a distrusted one; the training
  moves it from there.
- ``SOURCE_BIAS``: the Bayesian estimate first (3), so that PropSTF starts where classical fusion is
  (the best classical baseline on the validation sequences), the LR frame last (-2).
- ``KEY_TRUST_BIAS`` 3: the window networks trust agreeing key frames over the LR frame at the start.
- ``STILL_GATE_BIAS`` 4, ``STILL_GATE_CHANGE_GAIN`` 300, ``STILL_GATE_SHIFT_GAIN`` 8: the gate starts
  open (sigmoid(4) = 0.98) and closes where the LR frame changed beyond the noise by 0.013 or the whole
  frame moved by half an LR pixel since the key frame; measured on the validation sequences
  (docs/experiments.md, section 2).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SOURCES = ('key0', 'key1', 'bayes', 'bayes_warped', 'temporal', 'lr')  # what PropSTF's base blends
DISAGREEMENT_GAIN = 40.0
SOURCE_BIAS = {'bayes': 3.0, 'bayes_warped': 0.0, 'key0': -1.0, 'key1': -1.0, 'temporal': 0.0, 'lr': -2.0}
KEY_TRUST_BIAS = 3.0
STILL_GATE_BIAS, STILL_GATE_CHANGE_GAIN, STILL_GATE_SHIFT_GAIN = 4.0, 300.0, 8.0


def disagreement(images: torch.Tensor, lq: torch.Tensor, scale: int) -> torch.Tensor:
    """(B, S, h, w): for each of the images (B, S, C, sH, sW), the local mean of |its area average - the LR
    frame (B, C, h, w)|: high where the image contradicts what the LR camera recorded. The 3x3 mean
    smooths photon noise."""
    b, s = images.shape[:2]
    pooled = F.avg_pool2d(images.flatten(0, 1), scale).unflatten(0, (b, s))
    diff = (pooled - lq.unsqueeze(1)).abs().mean(dim=2)
    return F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=False)


def mix(weights: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """The images (B, S, C, H, W) mixed by per-pixel weights on the LR grid (B, S, h, w), upsampled bilinearly."""
    weights = F.interpolate(weights, size=images.shape[-2:], mode='bilinear', align_corners=False)
    return (weights.unsqueeze(2) * images).sum(dim=1)


def _initial_logits(num_feat: int, biases: list[float], gained: int) -> nn.Conv2d:
    """A 3x3 convolution from [features, disagreements] to one logit per output that starts at its bias and
    drops by DISAGREEMENT_GAIN per unit of the disagreement of the same index (the first ``gained`` outputs)."""
    conv = nn.Conv2d(num_feat + gained, len(biases), 3, 1, 1)
    nn.init.zeros_(conv.weight)
    with torch.no_grad():
        conv.bias.copy_(torch.tensor(biases))
        for i in range(gained):
            conv.weight[i, num_feat + i, 1, 1] = -DISAGREEMENT_GAIN
    return conv


class SourceBlend(nn.Module):
    """A softmax over the named ``sources`` (see the module docstring): ``forward(feat, images, lq)`` with
    feat (B, F, h, w), images (B, S, C, H, W) in the order of ``sources``, lq (B, C, h, w) -> the blend
    (B, C, H, W) and the disagreements (B, S, h, w)."""

    def __init__(self, num_feat: int, sources: tuple[str, ...]):
        super().__init__()
        self.sources = sources
        self.logits = _initial_logits(num_feat, [SOURCE_BIAS[s] for s in sources], len(sources))

    def forward(self, feat: torch.Tensor, images: torch.Tensor, lq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale = images.shape[-1] // lq.shape[-1]
        disagreements = disagreement(images, lq, scale)
        weights = torch.softmax(self.logits(torch.cat([feat, disagreements], 1)), dim=1)
        return mix(weights, images), disagreements


class KeyTrustBlend(nn.Module):
    """The window networks' ``key_blend``: K logits choose among the K key frames (with their temporal
    closeness ``key_weights`` as a prior), one more is the trust in that mix against the upsampled LR frame,
    lowered by the mix's own disagreement. At the start: copy the key frames that agree with the LR frame
    (the closer one in time first), and fall back to the LR frame where none agrees."""

    def __init__(self, num_feat: int, num_keys: int):
        super().__init__()
        self.logits = _initial_logits(num_feat, [0.0] * num_keys + [KEY_TRUST_BIAS], num_keys)

    def forward(self, feat: torch.Tensor, hq: torch.Tensor, up: torch.Tensor, lq: torch.Tensor,
                key_weights: torch.Tensor) -> torch.Tensor:
        """feat (B, F, h, w), key frames hq (B, K, C, H, W), the upsampled LR frame up (B, C, H, W), the LR
        frame lq (B, C, h, w), key_weights (B, K) -> (B, C, H, W)."""
        k = hq.shape[1]
        disagreements = disagreement(hq, lq, hq.shape[-1] // lq.shape[-1])
        logits = self.logits(torch.cat([feat, disagreements], 1))
        key_mix = torch.softmax(logits[:, :k] + key_weights.clamp_min(1e-6).log()[:, :, None, None], dim=1)
        mixed_disagreement = (key_mix * disagreements).sum(dim=1, keepdim=True)
        trust = torch.sigmoid(logits[:, k:] - DISAGREEMENT_GAIN * mixed_disagreement)
        return mix(torch.cat([key_mix * trust, 1 - trust], dim=1), torch.cat([hq, up.unsqueeze(1)], dim=1))


class StillGate(nn.Module):
    """Where nothing moved, the temporal source (the key frame plus the upsampled LR change: exact there).

    Every source but the warped key frames agrees with the LR frame by construction, so the disagreement
    cannot say where the temporal source is the one to take, and propagated features trained on scenes
    that mostly move favour the warped key frames also where the sample stands still (a warp off by a
    tenth of an LR pixel costs 10 dB there). The gate reads evidence only: the sources' disagreements, how
    much the LR frame changed since the key frames beyond the noise, and how far the whole frame moved."""

    def __init__(self, num_sources: int):
        super().__init__()
        self.conv = nn.Conv2d(num_sources + 1, 1, 3, 1, 1)
        nn.init.zeros_(self.conv.weight)
        with torch.no_grad():
            self.conv.bias.fill_(STILL_GATE_BIAS)
            self.conv.weight[0, num_sources, 1, 1] = -STILL_GATE_CHANGE_GAIN

    def forward(self, base: torch.Tensor, temporal: torch.Tensor, disagreements: torch.Tensor, change: torch.Tensor,
                moved: torch.Tensor) -> torch.Tensor:
        """base and temporal (B, C, H, W), disagreements (B, S, h, w), the LR change beyond the noise (B, 1, h, w),
        moved (B,) LR pixels since the nearer key frame -> base with the still pixels taken from temporal."""
        logit = self.conv(torch.cat([disagreements, change], 1)) - STILL_GATE_SHIFT_GAIN * moved[:, None, None, None]
        gate = F.interpolate(torch.sigmoid(logit), size=base.shape[-2:], mode='bilinear', align_corners=False)
        return gate * temporal + (1 - gate) * base
