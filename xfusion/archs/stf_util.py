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
KEY_DISAGREEMENT_GAIN = 40.0  # logit drop per unit of disagreement at LR resolution (intensities in [0, 1])
KEY_TRUST_BIAS = 3.0  # initial trust logit of agreeing key frames against the LR frame


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


def check_stf_inputs(net: nn.Module, lq: torch.Tensor, hq: torch.Tensor | None, lr_multiple: int = 1) -> None:
    """Clear errors for inputs that do not fit the network: frame counts and the 4x size relation."""
    b, t, c, h, w = lq.shape
    if t != net.num_frame:
        raise ValueError(f'expected {net.num_frame} LR frames, got {t}')
    if h % lr_multiple or w % lr_multiple:
        raise ValueError(f'LR height and width must be multiples of {lr_multiple}, got {h}x{w}')
    if net.num_frame_hi > 0:
        if hq is None or hq.shape[1] != net.num_frame_hi:
            raise ValueError(f'expected {net.num_frame_hi} HR key frames, got {None if hq is None else hq.shape[1]}')
        if hq.shape[-2:] != (h * SCALE, w * SCALE):
            raise ValueError(f'key frames must be {SCALE}x the LR size {h}x{w}, got {tuple(hq.shape[-2:])}')


def upsample_x4(net: nn.Module, feat: torch.Tensor) -> torch.Tensor:
    """The x4 decoder both families share: two conv + pixel-shuffle x2 stages, then conv_hr, conv_last."""
    out = net.lrelu(net.pixel_shuffle(net.upconv1(feat)))
    out = net.lrelu(net.pixel_shuffle(net.upconv2(out)))
    return net.conv_last(net.lrelu(net.conv_hr(out)))


def stf_forward(net: nn.Module, lq: torch.Tensor, hq: torch.Tensor | None, key_weights: torch.Tensor | None,
                lr_multiple: int = 1) -> torch.Tensor:
    """forward = encode every frame, then decode the window: the same for every STF network."""
    check_stf_inputs(net, lq, hq, lr_multiple)
    b = lq.shape[0]
    lr_feats = split_frames(net.encode(lq.flatten(0, 1)), b)
    key_feats = split_frames(net.encode(hq.flatten(0, 1), key=True), b) if net.num_frame_hi > 0 else []
    return net.decode(lr_feats, key_feats, lq[:, net.center_frame_idx], hq, key_weights)


def split_frames(feats: tuple[torch.Tensor, ...], b: int) -> list[tuple[torch.Tensor, ...]]:
    """Per-frame features of (B*N, ...) tensors -> a list of N per-frame tuples of (B, ...) tensors."""
    levels = [level.unflatten(0, (b, -1)) for level in feats]
    return [tuple(level[:, i] for level in levels) for i in range(levels[0].shape[1])]


def add_base(net: nn.Module, kind: str, num_feat: int, num_frame_hi: int) -> None:
    """Check the base kind; 'key_blend' adds the layer that predicts the blend."""
    if kind not in BASES:
        raise ValueError(f'base must be one of {BASES}, got {kind!r}')
    if kind == 'key_blend':
        if num_frame_hi == 0:
            raise ValueError("base='key_blend' needs key frames (num_frame_hi > 0)")
        # On the LR grid, from the fused features and each key frame's disagreement with the current
        # LR frame: K logits choosing among the key frames and one logit of trust in the chosen key
        # frames against the upsampled LR frame. The start: copy the key frames that agree with the
        # LR frame (the closer one in time first), fall back to the LR frame where none agrees.
        net.blend_logits = nn.Conv2d(num_feat + num_frame_hi, num_frame_hi + 1, 3, 1, 1)
        nn.init.zeros_(net.blend_logits.weight)
        with torch.no_grad():
            net.blend_logits.bias.copy_(torch.tensor([0.0] * num_frame_hi + [KEY_TRUST_BIAS]))
            for k in range(num_frame_hi):
                net.blend_logits.weight[k, num_feat + k, 1, 1] = -KEY_DISAGREEMENT_GAIN


def key_disagreement(lq_center: torch.Tensor, hq: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w): local mean |LR frame - key frame at LR resolution|, high where the key frame is out of date."""
    b, k = hq.shape[:2]
    keys_lr = F.avg_pool2d(hq.flatten(0, 1), SCALE).unflatten(0, (b, k))
    diff = (keys_lr - lq_center.unsqueeze(1)).abs().mean(dim=2)
    return F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=False)  # smooths photon noise


def base_image(net: nn.Module, kind: str, feat: torch.Tensor, lq_center: torch.Tensor, hq: torch.Tensor | None,
               key_weights: torch.Tensor | None) -> torch.Tensor:
    """What the predicted residual is added to: the upsampled centre LR frame, or the key blend."""
    if kind == 'bicubic':
        return F.interpolate(lq_center, scale_factor=SCALE, mode='bicubic', align_corners=False)
    up = F.interpolate(lq_center, scale_factor=SCALE, mode='bilinear', align_corners=False)
    if kind == 'bilinear':
        return up
    # key_blend: the key frames mixed by temporal closeness and agreement, then trusted against the
    # LR frame as far as the mix agrees with it
    b, k = hq.shape[:2]
    if key_weights is None:
        key_weights = hq.new_full((b, k), 1.0 / k)
    disagreement = key_disagreement(lq_center, hq)
    logits = net.blend_logits(torch.cat([feat, disagreement], 1))
    key_mix = torch.softmax(logits[:, :k] + key_weights.clamp_min(1e-6).log()[:, :, None, None], dim=1)
    mixed_disagreement = (key_mix * disagreement).sum(dim=1, keepdim=True)
    trust = torch.sigmoid(logits[:, k:] - KEY_DISAGREEMENT_GAIN * mixed_disagreement)
    mask = torch.cat([key_mix * trust, 1 - trust], dim=1)
    mask = F.interpolate(mask, scale_factor=SCALE, mode='bilinear', align_corners=False)
    sources = torch.cat([hq, up.unsqueeze(1)], dim=1)  # (B, K+1, C, H, W)
    return (mask.unsqueeze(2) * sources).sum(dim=1)
