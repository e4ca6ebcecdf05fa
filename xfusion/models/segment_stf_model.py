"""SegmentSTFModel: trains the segment networks (PropSTF, PropVSR) with the losses that teach their flows."""
from __future__ import annotations

from collections import OrderedDict

import torch
from basicsr.losses import build_loss
from basicsr.utils.registry import MODEL_REGISTRY
from torch.nn import functional as F

from xfusion.models.stf_model import STFModel


@MODEL_REGISTRY.register()
class SegmentSTFModel(STFModel):
    """Feeds a segment network the segment ``lq`` (B,N,C,h,w), its key frames ``hq`` with their positions
    ``key_pos`` (B,K), the HR frames of every position ``gt`` (B,N,C,H,W) and the positions ``out_pos``
    (B,M) the loss compares at; validation, checkpoints and learning-rate multiples are STFModel's.

    Besides the pixel loss at the supervised positions, two losses teach the flow network directly, both at
    the LR camera's resolution (4x4 area averages of the HR frames: at HR the photometric error of a fine
    texture has a minimum at every texture period):

    - ``train.warp_opt``: the key frames warped to the supervised positions against the truth there;
    - ``train.flow_opt``: each frame of the segment warped from the one before along the network's flow.
    """

    def init_training_settings(self):
        super().init_training_settings()
        train_opt = self.opt['train']
        self.cri_warp = build_loss(train_opt['warp_opt']).to(self.device) if train_opt.get('warp_opt') else None
        self.cri_flow = build_loss(train_opt['flow_opt']).to(self.device) if train_opt.get('flow_opt') else None

    def feed_data(self, data: dict) -> None:
        super().feed_data(data)
        self.key_pos = data['key_pos'].to(self.device) if 'key_pos' in data else None
        self.out_pos = data['out_pos'].to(self.device) if 'out_pos' in data else None
        if self.out_pos is not None and 'period' in data:  # a batch of segments: no step beyond its longest gap
            length = int(data['period'].max()) + 1
            self.lq, self.gt = self.lq[:, :length], self.gt[:, :length]

    def forward_for_loss(self) -> tuple[torch.Tensor, OrderedDict]:
        net = self.get_bare_model(self.net_g)
        all_frames = self.gt
        self.gt = all_frames[torch.arange(all_frames.shape[0], device=all_frames.device)[:, None], self.out_pos]
        output, aux = self.net_g(self.lq, self.hq, self.key_pos, self.out_pos, return_aux=True)
        losses = OrderedDict()
        scale = net.scale
        if self.cri_warp is not None and any(k in aux for k in ('key0', 'key1')):
            target = F.avg_pool2d(self.gt.flatten(0, 1), scale)
            losses['l_warp'] = sum(self.cri_warp(F.avg_pool2d(aux[k].flatten(0, 1), scale), target)
                                   for k in ('key0', 'key1') if k in aux)
        if self.cri_flow is not None and aux['flows'] is not None:
            frames = F.avg_pool2d(all_frames.flatten(0, 1), scale).unflatten(0, all_frames.shape[:2])
            warped = net.warp_lr(frames[:, :-1].flatten(0, 1), aux['flows'].flatten(0, 1))
            losses['l_flow'] = self.cri_flow(warped, frames[:, 1:].flatten(0, 1))
        return output, losses
