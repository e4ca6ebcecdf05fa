"""Parts shared by the STF networks: the HR key-frame encoders and the output base image.

They are added to the network itself (not as a submodule) so that the parameter names stay
those of the original XFusion network (``conv_first_hi``, ``conv1_hi``, ``conv2_hi``).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

SCALE = 4
HR_ENCODERS = ('pool', 'unshuffle')
BASES = ('bilinear', 'bicubic', 'key_blend')


def add_hr_encoder(net: nn.Module, kind: str, num_in_ch: int, num_feat: int) -> None:
    """Give ``net`` the layers that bring HR key frames to the LR grid.

    'pool': conv, conv, maxpool, conv, maxpool at full resolution (the original XFusion layout);
    'unshuffle': 4x4 pixel-unshuffle, then two convs on the LR grid (about 30x fewer FLOPs).
    """
    if kind not in HR_ENCODERS:
        raise ValueError(f'hr_encoder must be one of {HR_ENCODERS}, got {kind!r}')
    if kind == 'pool':
        net.conv_first_hi = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        net.conv1_hi = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        net.max_pool1 = nn.MaxPool2d(3, stride=2, padding=1)
        net.conv2_hi = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        net.max_pool2 = nn.MaxPool2d(3, stride=2, padding=1)
    else:
        net.conv_first_hi = nn.Conv2d(num_in_ch * SCALE * SCALE, num_feat, 3, 1, 1)
        net.conv1_hi = nn.Conv2d(num_feat, num_feat, 3, 1, 1)


def encode_hr(net: nn.Module, kind: str, hq: torch.Tensor) -> torch.Tensor:
    """(N, C, 4h, 4w) key frames -> (N, F, h, w) features, with the layers of add_hr_encoder."""
    act = F.leaky_relu
    if kind == 'pool':
        y = act(net.conv_first_hi(hq), 0.1)
        y = net.max_pool1(act(net.conv1_hi(y), 0.1))
        return net.max_pool2(act(net.conv2_hi(y), 0.1))
    y = act(net.conv_first_hi(F.pixel_unshuffle(hq, SCALE)), 0.1)
    return act(net.conv1_hi(y), 0.1)


def add_base(net: nn.Module, kind: str, num_feat: int, num_frame_hi: int) -> None:
    """Check the base kind; 'key_blend' adds the layer that predicts the blend from fused features."""
    if kind not in BASES:
        raise ValueError(f'base must be one of {BASES}, got {kind!r}')
    if kind == 'key_blend':
        if num_frame_hi == 0:
            raise ValueError("base='key_blend' needs key frames (num_frame_hi > 0)")
        # One logit per source (K key frames + the upsampled LR frame) on the LR grid. Zero
        # weights and a bias favouring the key frames make "copy the key frames, weighted by
        # temporal closeness" the starting point rather than something to learn.
        net.blend_logits = nn.Conv2d(num_feat, num_frame_hi + 1, 3, 1, 1)
        nn.init.zeros_(net.blend_logits.weight)
        with torch.no_grad():
            net.blend_logits.bias.copy_(torch.tensor([2.0] * num_frame_hi + [0.0]))


def base_image(net: nn.Module, kind: str, feat: torch.Tensor, lq_center: torch.Tensor, hq: torch.Tensor | None,
               key_weights: torch.Tensor | None) -> torch.Tensor:
    """What the predicted residual is added to: the upsampled centre LR frame, or the key blend."""
    if kind == 'bicubic':
        return F.interpolate(lq_center, scale_factor=SCALE, mode='bicubic', align_corners=False)
    up = F.interpolate(lq_center, scale_factor=SCALE, mode='bilinear', align_corners=False)
    if kind == 'bilinear':
        return up
    # key_blend: softmax over [key frames..., LR]; the key frames' logits are shifted by
    # log(weight), so that a key frame far in time (weight -> 0) drops out.
    b, k = hq.shape[:2]
    if key_weights is None:
        key_weights = hq.new_full((b, k), 1.0 / k)
    shift = torch.cat([key_weights.clamp_min(1e-6).log(), key_weights.new_zeros(b, 1)], dim=1)
    mask = torch.softmax(net.blend_logits(feat) + shift[:, :, None, None], dim=1)
    mask = F.interpolate(mask, scale_factor=SCALE, mode='bilinear', align_corners=False)
    sources = torch.cat([hq, up.unsqueeze(1)], dim=1)  # (B, K+1, C, H, W)
    return (mask.unsqueeze(2) * sources).sum(dim=1)
