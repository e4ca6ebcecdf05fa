"""EDVRSTF: EDVR-style spatiotemporal fusion of an LR window and two HR key frames.

The layout with ``hr_encoder='pool'`` and ``base='bilinear'`` is the original XFusion network:
its checkpoints load unchanged (same parameter names and shapes) and give the same output.
"""
from __future__ import annotations

import torch
from basicsr.archs.arch_util import ResidualBlockNoBN, make_layer
from basicsr.archs.edvr_arch import PCDAlignment, TSAFusion
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from xfusion.archs.deform_conv import use_fast_deform_conv
from xfusion.archs.stf_base import Features, STFNetwork


@ARCH_REGISTRY.register()
class EDVRSTF(STFNetwork):
    """STF network: LR frames (B, T, C, h, w) + HR key frames (B, K, C, 4h, 4w) -> HR frame.

    Args:
        num_in_ch, num_out_ch: image channels (1 for x-ray and gray REDS).
        num_feat: feature channels. num_frame: LR frames T. num_frame_hi: key frames K
            (0 gives the LR-only video-SR baseline, with no HR branch at all).
        deformable_groups, num_extract_block, num_reconstruct_block: as in EDVR.
        center_frame_idx: index of the target LR frame (default: the middle one).
        with_tsa: TSA fusion (else a 1x1 conv over the stacked aligned features).
        hr_encoder: how key frames reach the LR grid. 'pool' = conv, conv, maxpool, conv,
            maxpool at full resolution (the original layout); 'unshuffle' = 4x4
            pixel-unshuffle then two convs on the LR grid (about 30x fewer FLOPs).
        base: what the predicted residual is added to. 'bilinear' / 'bicubic': the upsampled
            centre LR frame. 'key_blend': a per-pixel blend, predicted from the fused features,
            of the key frames (weighted by temporal closeness) and the upsampled LR frame.
        hr_in, with_predeblur: accepted so that original XFusion option files load; only
            their default (False) exists.
    """
    lr_multiple = 4  # the feature pyramid halves the LR grid twice

    def __init__(self,
                 num_in_ch: int = 1,
                 num_out_ch: int = 1,
                 num_feat: int = 64,
                 num_frame: int = 3,
                 num_frame_hi: int = 2,
                 deformable_groups: int = 8,
                 num_extract_block: int = 5,
                 num_reconstruct_block: int = 10,
                 center_frame_idx: int | None = None,
                 with_tsa: bool = True,
                 hr_encoder: str = 'pool',
                 base: str = 'bilinear',
                 hr_in: bool = False,
                 with_predeblur: bool = False,
                 fast_deform_conv: bool | None = None):
        super().__init__(num_frame, num_frame_hi, center_frame_idx)
        if hr_in or with_predeblur:
            raise ValueError('EDVRSTF supports only hr_in=False and with_predeblur=False '
                             '(the options of the original XFusion network)')
        self.with_tsa = with_tsa
        self.hr_encoder = hr_encoder

        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        if self.uses_keys:
            self.add_hr_encoder(hr_encoder, num_in_ch, num_feat)

        # pyramid features, shared by LR and HR-derived frames
        self.feature_extraction = make_layer(ResidualBlockNoBN, num_extract_block, num_feat=num_feat)
        self.conv_l2_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l2_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_l3_1 = nn.Conv2d(num_feat, num_feat, 3, 2, 1)
        self.conv_l3_2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)

        self.pcd_align = PCDAlignment(num_feat=num_feat, deformable_groups=deformable_groups)
        total_frames = num_frame + num_frame_hi
        if with_tsa:
            self.fusion = TSAFusion(num_feat=num_feat, num_frame=total_frames, center_frame_idx=self.center_frame_idx)
        else:
            self.fusion = nn.Conv2d(total_frames * num_feat, num_feat, 1, 1)

        self.reconstruction = make_layer(ResidualBlockNoBN, num_reconstruct_block, num_feat=num_feat)
        self.add_x4_decoder(num_feat, num_out_ch)
        self.add_base(base, num_feat)
        use_fast_deform_conv(self, fast_deform_conv)

    # The forward pass in two stages (the window protocol of stf_base), so that sequence inference
    # computes each frame's features once and reuses them in every window the frame appears in.
    def encode(self, frames: torch.Tensor, key: bool = False) -> Features:
        """(N, C, h, w) LR frames, or (N, C, 4h, 4w) key frames -> their (L1, L2, L3) pyramid on the LR grid."""
        feat = self.encode_hr(frames) if key else self.lrelu(self.conv_first(frames))
        feat_l1 = self.feature_extraction(feat)
        feat_l2 = self.lrelu(self.conv_l2_2(self.lrelu(self.conv_l2_1(feat_l1))))
        feat_l3 = self.lrelu(self.conv_l3_2(self.lrelu(self.conv_l3_1(feat_l2))))
        return feat_l1, feat_l2, feat_l3

    def decode(self, lr_feats: list[Features], key_feats: list[Features], lq_center: torch.Tensor,
               hq: torch.Tensor | None, key_weights: torch.Tensor | None) -> torch.Tensor:
        """Per-frame pyramids of the LR window and the key frames -> HR frame at the centre time.

        PCD-aligns every frame to the centre LR frame, fuses (TSA), reconstructs, adds the base.
        """
        pyramids = lr_feats + key_feats
        ref = list(pyramids[self.center_frame_idx])
        aligned = torch.stack([self.pcd_align(list(p), ref) for p in pyramids], dim=1)
        if not self.with_tsa:
            aligned = aligned.flatten(1, 2)
        feat = self.fusion(aligned)
        out = self.upsample_x4(self.reconstruction(feat))
        return out + self.base_image(feat, lq_center, hq, key_weights)
