"""PropVSR: the LR-only variant of PropSTF (the "LR-only deep model" baseline), a segment network.

The same bidirectional propagation over the LR frames (``propstf_arch.PropagationNetwork``) without key
frames: no HR encoder, no key-frame injection, and the upsampled LR frame as the base its residual is
added to. Its flows start from zero (no key frame to measure the whole frame's motion against), and it
reads ``context`` LR frames beyond each end of a segment, so that the frames near a segment's ends are
propagated from both sides too. It answers what the LR camera alone gives with the same network.

With ``self_ensemble`` inference (``xfusion.inference.SequenceInference``) runs it on the 8 flips and transposes of
the LR frames and averages the outputs turned back (training is unchanged): without key frames the network guesses
the detail the LR camera lost, and the average of its guesses from eight directions is the better guess
(docs/experiments.md, section 22).
"""
from __future__ import annotations

import torch
from basicsr.utils.registry import ARCH_REGISTRY
from torch.nn import functional as F

from xfusion.archs.propstf_arch import PropagationNetwork, SegmentState


@ARCH_REGISTRY.register()
class PropVSR(PropagationNetwork):
    """LR-only propagation network; the arguments are PropSTF's, without key frames, and ``context`` and
    ``self_ensemble`` (see the module docstring)."""

    def __init__(self,
                 num_in_ch: int = 1,
                 num_out_ch: int = 1,
                 num_feat: int = 32,
                 num_block: int = 2,
                 num_block_decode: int = 1,
                 context: int = 0,
                 flow_feat: int = 24,
                 flow_levels: int = 2,
                 num_feat_up: int = 16,
                 self_ensemble: bool = False):
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, num_block_decode, 0, flow_feat, flow_levels,
                         num_feat_up)
        self.context = context
        self.self_ensemble = self_ensemble

    def base_image(self, state: SegmentState, out_pos: torch.Tensor, lq_t: torch.Tensor,
                   feat: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
        up = F.interpolate(lq_t, scale_factor=self.scale, mode='bicubic', align_corners=False)
        return up, {'lr': up}, {}
