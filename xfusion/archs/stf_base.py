"""The STF network protocol: what training, validation, inference, ``fuse``, ``evaluate`` and ``bench``
rely on, written down once. Every network family subclasses ``STFNetwork``.

A network is one of two kinds (``kind``):

- ``'window'`` networks (EDVRSTF, SwinSTF) fuse one time step from a sliding window: the LR frames
  t - r, t, t + r (``num_frame`` of them, the target at ``center_frame_idx``) and the two key frames
  that bracket t (``num_frame_hi`` = 2, or 0 for an LR-only network), with their temporal-closeness
  ``key_weights``. They come in two stages so that sequence inference can encode every frame once:
  ``encode(frames, key)`` -> per-frame features, ``decode(LR features, key features, ...)`` -> the
  HR frame; ``forward`` is the two together.
- ``'segment'`` networks fuse every time step of a segment at once: all LR frames between two key
  frames (and ``context`` frames around it), with the key frames at their positions in it.

Every network has ``scale`` (HR pixels per LR pixel, 4) and ``lr_multiple`` (LR height and width
must be multiples of it; callers pad). The parts the families share are methods here, not
submodules, so that parameter names stay those of the original XFusion network
(``conv_first_hi``, ``conv1_hi``, ``conv2_hi``, ``upconv1``, ...) and its checkpoints load strictly:
an HR key-frame encoder to the LR grid, an x4 pixel-shuffle decoder, and the base image the
predicted residual is added to.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from xfusion.archs.blend import KeyTrustBlend
from xfusion.archs.legacy import rename_parameters
from xfusion.camera import SCALE
from xfusion.errors import InputError

HR_ENCODERS = ('pool', 'unshuffle')
BASES = ('bilinear', 'bicubic', 'key_blend')

Features = tuple[torch.Tensor, ...]  # one frame's features (e.g. the levels of a pyramid)


class STFNetwork(nn.Module):
    """Base of the STF networks (see the module docstring for the protocol)."""
    kind: ClassVar[str] = 'window'
    scale: ClassVar[int] = SCALE
    lr_multiple: ClassVar[int] = 1

    def __init__(self, num_frame: int = 3, num_frame_hi: int = 2, center_frame_idx: int | None = None):
        super().__init__()
        if num_frame < 1 or num_frame_hi < 0:
            raise ValueError(f'num_frame must be >= 1 and num_frame_hi >= 0, got {num_frame}, {num_frame_hi}')
        self.num_frame = num_frame
        self.num_frame_hi = num_frame_hi
        self.center_frame_idx = num_frame // 2 if center_frame_idx is None else center_frame_idx
        self.lrelu = nn.LeakyReLU(negative_slope=0.1, inplace=True)
        # checkpoints of earlier versions name some parameters differently (xfusion.archs.legacy)
        self._register_load_state_dict_pre_hook(lambda state, prefix, *_: rename_parameters(state, prefix))

    @property
    def uses_keys(self) -> bool:
        """False for the LR-only networks (no HR branch at all)."""
        return self.num_frame_hi > 0

    # ---- the window protocol ----------------------------------------------------------------
    def encode(self, frames: torch.Tensor, key: bool = False) -> Features:
        """(N, C, h, w) LR frames, or (N, C, 4h, 4w) key frames -> their features, one tuple of (N, ...) tensors."""
        raise NotImplementedError

    def decode(self, lr_feats: list[Features], key_feats: list[Features], lq_center: torch.Tensor,
               hq: torch.Tensor | None, key_weights: torch.Tensor | None) -> torch.Tensor:
        """Features of the window's LR frames and key frames (each (B, ...)) -> (B, C_out, 4h, 4w) frame at t."""
        raise NotImplementedError

    def forward(self, lq: torch.Tensor, hq: torch.Tensor | None = None,
                key_weights: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, C, h, w) LR window + (B, K, C, 4h, 4w) key frames -> (B, C_out, 4h, 4w): encode, then decode."""
        self.check_inputs(lq, hq)
        b = lq.shape[0]
        lr_feats = split_frames(self.encode(lq.flatten(0, 1)), b)
        key_feats = split_frames(self.encode(hq.flatten(0, 1), key=True), b) if self.uses_keys else []
        return self.decode(lr_feats, key_feats, lq[:, self.center_frame_idx], hq, key_weights)

    def check_inputs(self, lq: torch.Tensor, hq: torch.Tensor | None) -> None:
        """Clear errors for inputs that do not fit the network: frame counts, the LR size multiple, the scale."""
        _, t, _, h, w = lq.shape
        if t != self.num_frame:
            raise InputError(f'expected {self.num_frame} LR frames, got {t}')
        if h % self.lr_multiple or w % self.lr_multiple:
            raise InputError(f'LR height and width must be multiples of {self.lr_multiple}, got {h}x{w}')
        if self.uses_keys:
            if hq is None or hq.shape[1] != self.num_frame_hi:
                got = None if hq is None else hq.shape[1]
                raise InputError(f'expected {self.num_frame_hi} HR key frames, got {got}')
            if hq.shape[-2:] != (h * self.scale, w * self.scale):
                raise InputError(f'key frames must be {self.scale}x the LR size {h}x{w}, got {tuple(hq.shape[-2:])}')

    # ---- HR key frames -> the LR grid -----------------------------------------------------------
    def add_hr_encoder(self, kind: str, num_in_ch: int, num_feat: int) -> None:
        """The layers that bring key frames to the LR grid.

        'pool': conv, conv, maxpool, conv, maxpool at full resolution (the original XFusion layout);
        'unshuffle': 4x4 pixel-unshuffle, then two convs on the LR grid (about 30x fewer FLOPs).
        """
        if kind not in HR_ENCODERS:
            raise ValueError(f'hr_encoder must be one of {HR_ENCODERS}, got {kind!r}')
        self.hr_encoder = kind
        if kind == 'pool':
            self.conv_first_hi = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
            self.conv1_hi = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.max_pool1 = nn.MaxPool2d(3, stride=2, padding=1)
            self.conv2_hi = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
            self.max_pool2 = nn.MaxPool2d(3, stride=2, padding=1)
        else:
            self.conv_first_hi = nn.Conv2d(num_in_ch * self.scale ** 2, num_feat, 3, 1, 1)
            self.conv1_hi = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

    def encode_hr(self, hq: torch.Tensor) -> torch.Tensor:
        """(N, C, 4h, 4w) key frames -> (N, F, h, w) features, with the layers of add_hr_encoder."""
        act = F.leaky_relu
        if self.hr_encoder == 'pool':
            y = act(self.conv_first_hi(hq), 0.1)
            y = self.max_pool1(act(self.conv1_hi(y), 0.1))
            return self.max_pool2(act(self.conv2_hi(y), 0.1))
        y = act(self.conv_first_hi(F.pixel_unshuffle(hq, self.scale)), 0.1)
        return act(self.conv1_hi(y), 0.1)

    # ---- LR-grid features -> HR frame -----------------------------------------------------------
    def add_x4_decoder(self, num_feat: int, num_out_ch: int, num_feat_up: int = 64) -> None:
        """Two conv + pixel-shuffle x2 stages (num_feat -> num_feat_up channels), then conv_hr and conv_last."""
        self.upconv1 = nn.Conv2d(num_feat, num_feat * 4, 3, 1, 1)
        self.upconv2 = nn.Conv2d(num_feat, num_feat_up * 4, 3, 1, 1)
        self.pixel_shuffle = nn.PixelShuffle(2)
        self.conv_hr = nn.Conv2d(num_feat_up, num_feat_up, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat_up, num_out_ch, 3, 1, 1)

    def upsample_x4(self, feat: torch.Tensor) -> torch.Tensor:
        out = self.lrelu(self.pixel_shuffle(self.upconv1(feat)))
        out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        return self.conv_last(self.lrelu(self.conv_hr(out)))

    def add_base(self, kind: str, num_feat: int) -> None:
        """What the predicted residual is added to; 'key_blend' adds the layer that predicts the blend."""
        if kind not in BASES:
            raise ValueError(f'base must be one of {BASES}, got {kind!r}')
        self.base = kind
        if kind == 'key_blend':
            if not self.uses_keys:
                raise ValueError("base='key_blend' needs key frames (num_frame_hi > 0)")
            self.blend = KeyTrustBlend(num_feat, self.num_frame_hi)

    def base_image(self, feat: torch.Tensor, lq_center: torch.Tensor, hq: torch.Tensor | None,
                   key_weights: torch.Tensor | None) -> torch.Tensor:
        """The upsampled centre LR frame ('bilinear', 'bicubic'), or the key blend ('key_blend')."""
        if self.base == 'bicubic':
            return F.interpolate(lq_center, scale_factor=self.scale, mode='bicubic', align_corners=False)
        up = F.interpolate(lq_center, scale_factor=self.scale, mode='bilinear', align_corners=False)
        if self.base == 'bilinear':
            return up
        if key_weights is None:
            key_weights = hq.new_full(hq.shape[:2], 1.0 / hq.shape[1])
        return self.blend(feat, hq, up, lq_center, key_weights)


def split_frames(feats: Features, b: int) -> list[Features]:
    """Per-frame features of (B*N, ...) tensors -> a list of N per-frame tuples of (B, ...) tensors."""
    levels = [level.unflatten(0, (b, -1)) for level in feats]
    return [tuple(level[:, i] for level in levels) for i in range(levels[0].shape[1])]
