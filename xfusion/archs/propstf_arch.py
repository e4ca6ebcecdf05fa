"""PropSTF: key-frame propagation, a segment network (the protocol of ``stf_base``, kind 'segment').

It reads every LR frame of a segment, the key frames at their positions in it (two at the ends, one
at the ends of a sequence, none for the LR-only variant), and gives the HR frame of every position.

1. **Motion from the LR stream.** At a very high frame rate the scene moves little between two LR
   frames, so a small flow network (``FlowEstimator``: SpyNet's coarse-to-fine layout, far smaller,
   trained here from scratch) estimates the flow between consecutive LR frames, in both directions.
   Composed step by step, the flows map every position to the key frame before it and to the one
   after it. With ``global_motion``, the flow starts at the translation of the whole frame, measured
   classically against the key frames (``global_motion.py``): the sample moving 2-4 px per frame
   is what a flow network trained for minutes does not learn. With ``refine_at_hr`` the shifts are
   refined against the HR key frames seen through the LR camera: a tenth of an LR pixel of error
   misplaces key-frame detail by 0.4 HR pixels.
2. **Bidirectional propagation** (after BasicVSR): a forward branch runs from the first frame to the
   last, a backward branch the other way; at each step the hidden features of the previous step are
   warped along the flow and fused with the LR frame's features. At a key frame's position the
   branch takes the key frame's features instead (NeuriCam's key-frame injection), so key-frame
   content is carried to every position, and lost where the LR stream says it changed.
3. **A base that reuses key-frame content where it is still valid.** Each position's output is a
   per-pixel blend of *sources* plus a learned residual: the two key frames warped to t along the
   composed flows (sharp wherever the motion is right and nothing was occluded), the classical
   Bayesian estimate from the raw key frames and from the warped ones, the temporal-change estimate,
   and the upsampled LR frame. The blend is predicted on the LR grid from the propagated features and
   from each source's disagreement with the LR frame at t (its 4x4 area average against the frame the
   LR camera recorded). At the start it is the Bayesian estimate: the network begins where classical
   fusion is, and learns where to do better.
4. **A still gate** (``still_gate``). Every source but the warped key frames agrees with the LR frame
   by construction, so the disagreement cannot say where the temporal source (the key frame plus the
   upsampled LR change: exact where nothing changed) is the one to take, and the propagated features,
   trained on scenes that mostly move, favour the warped key frames also where the sample stands still
   (there a warp off by a tenth of an LR pixel costs 10 dB). The gate reads evidence only (how much the
   LR frame changed since the key frames beyond the noise, the disagreements, how far the whole frame
   moved) and hands the pixel to the temporal source where nothing moved.

``forward(lq, hq, key_pos, out_pos)``: ``lq`` (B, N, C, h, w) the segment's LR frames, ``hq`` (B, K, C,
4h, 4w) its key frames, ``key_pos`` (B, K) their positions in the segment, ``out_pos`` (B, M) the positions
wanted -> (B, M, C, 4h, 4w). ``propagate`` (once per segment) and ``decode`` (any positions, in
batches) are the two stages sequence inference uses, so memory grows with the segment, not the
sequence. With ``num_frame_hi: 0`` it is the LR-only video super-resolution baseline.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from basicsr.archs.arch_util import ResidualBlockNoBN, flow_warp, make_layer
from basicsr.archs.basicvsr_arch import ConvResidualBlocks
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F

from xfusion.archs import classical
from xfusion.archs.deform_conv import deform_conv2d
from xfusion.archs.global_motion import refine_against_key, shifts_to_reference
from xfusion.archs.stf_base import STFNetwork

SOURCES = ('key0', 'key1', 'bayes', 'bayes_warped', 'temporal', 'lr')
SOURCE_BIAS = {'bayes': 3.0, 'bayes_warped': 0.0, 'key0': -1.0, 'key1': -1.0, 'temporal': 0.0, 'lr': -2.0}
DISAGREEMENT_GAIN = 40.0  # initial logit drop per unit of a source's disagreement with the LR frame
STILL_MARGIN = 0.1  # no motion unless a shift explains a frame >10% better (chosen on the validation sequences)
# still_gate: initial logit of the gate, and its drop per unit of LR change beyond the noise and per LR pixel
# of whole-frame motion since the nearer key frame
STILL_GATE_BIAS, STILL_GATE_CHANGE_GAIN, STILL_GATE_SHIFT_GAIN = 4.0, 300.0, 8.0


class FlowEstimator(nn.Module):
    """Flow between two LR frames, coarse to fine (SpyNet's layout with small convolutions, no pretrained
    weights): ``forward(ref, supp)`` -> (B, 2, h, w) flow in LR pixels such that ``flow_warp(supp, flow)``
    matches ``ref``. The frames are normalised by ref's mean and spread first (the changes between two
    frames are a few percent of their intensity), and the flow starts at zero (the last convolution of
    every level is zero)."""

    def __init__(self, num_feat: int = 24, levels: int = 2):
        super().__init__()
        self.levels = levels
        self.basic = nn.ModuleList()
        for _ in range(levels):
            module = nn.Sequential(nn.Conv2d(5, num_feat, 5, 1, 2), nn.LeakyReLU(0.1, inplace=True),
                                   nn.Conv2d(num_feat, num_feat, 5, 1, 2), nn.LeakyReLU(0.1, inplace=True),
                                   nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.LeakyReLU(0.1, inplace=True),
                                   nn.Conv2d(num_feat, 2, 3, 1, 1))
            nn.init.zeros_(module[-1].weight)
            nn.init.zeros_(module[-1].bias)
            self.basic.append(module)

    def forward(self, ref: torch.Tensor, supp: torch.Tensor, init: torch.Tensor | None = None) -> torch.Tensor:
        """``init`` (B, 2): a translation (x, y) the flow starts from (``global_motion``), else zero."""
        mean, std = ref.mean((1, 2, 3), keepdim=True), ref.std((1, 2, 3), keepdim=True) + 1e-3
        refs, supps = [(ref - mean) / std], [(supp - mean) / std]
        for _ in range(self.levels - 1):
            refs.insert(0, F.avg_pool2d(refs[0], 2, ceil_mode=True))
            supps.insert(0, F.avg_pool2d(supps[0], 2, ceil_mode=True))
        flow = ref.new_zeros(ref.shape[0], 2, *refs[0].shape[-2:])
        if init is not None:  # in pixels of the coarsest level
            flow = flow + init[:, :, None, None].to(flow) / 2 ** (self.levels - 1)
        for level, (r, s) in enumerate(zip(refs, supps)):
            if level:
                flow = 2 * F.interpolate(flow, size=r.shape[-2:], mode='bilinear', align_corners=False)
            warped = flow_warp(s, flow.permute(0, 2, 3, 1), padding_mode='border')
            flow = flow + self.basic[level](torch.cat([r, warped, r - warped, flow], 1))
        return flow


class FlowGuidedAlign(nn.Module):
    """BasicVSR++'s flow-guided deformable alignment, first order: the hidden features of the step before are
    sampled by a modulated deformable convolution whose offsets are the flow plus a learned residual (at most
    ``max_residue`` LR pixels), read from the flow-warped features, the frame's features and the flow.

    It starts as the flow warp itself (residual offsets zero, the kernel a centred identity scaled for the
    initial mask of 0.5): the learned offsets can then reach motion the flow network misses (fast local
    parts), per kernel tap and offset group."""

    def __init__(self, num_feat: int, groups: int = 4, max_residue: float = 5.0):
        super().__init__()
        self.groups, self.max_residue = groups, max_residue
        self.conv_offset = nn.Sequential(nn.Conv2d(2 * num_feat + 2, num_feat, 3, 1, 1), nn.LeakyReLU(0.1, True),
                                         nn.Conv2d(num_feat, num_feat, 3, 1, 1), nn.LeakyReLU(0.1, True),
                                         nn.Conv2d(num_feat, 3 * 9 * groups, 3, 1, 1))  # y, x, mask per tap
        nn.init.zeros_(self.conv_offset[-1].weight)
        nn.init.zeros_(self.conv_offset[-1].bias)
        self.weight = nn.Parameter(torch.zeros(num_feat, num_feat, 3, 3))
        self.bias = nn.Parameter(torch.zeros(num_feat))
        with torch.no_grad():
            self.weight[:, :, 1, 1] = 2 * torch.eye(num_feat)

    def forward(self, hidden: torch.Tensor, warped: torch.Tensor, feat: torch.Tensor,
                flow: torch.Tensor) -> torch.Tensor:
        """hidden (B, C, h, w) at the step before, warped: it warped along flow (B, 2, h, w), feat: this frame's."""
        o1, o2, mask = torch.chunk(self.conv_offset(torch.cat([warped, feat, flow], 1)), 3, dim=1)
        # torchvision's offsets are (y, x) per tap; the flow is (x, y)
        offset = self.max_residue * torch.tanh(torch.cat([o1, o2], 1)) + flow.flip(1).repeat(1, 9 * self.groups, 1, 1)
        return deform_conv2d(hidden, offset, torch.sigmoid(mask), self.weight, self.bias)


@dataclass
class SegmentState:
    """What ``propagate`` computes once per segment and ``decode`` reads for any positions.

    Per position (B, N, ...): LR frames and features, the two branches' features, the composed flow
    to the previous / next key frame and which key frame that is (an index into the K key frames,
    -1 where there is none); per step (B, N-1, 2, h, w): the flow from each position to the one before.
    """
    lq: torch.Tensor
    hq: torch.Tensor | None
    key_pos: torch.Tensor
    feats: torch.Tensor
    forward_feats: torch.Tensor
    backward_feats: torch.Tensor
    flow_to_prev: torch.Tensor
    flow_to_next: torch.Tensor
    prev_key: torch.Tensor
    next_key: torch.Tensor
    step_flows: torch.Tensor | None
    sample_motion: torch.Tensor | None = None  # (B, N) LR pixels the whole frame moved since the nearer key frame


def _gather(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """x (B, N, ...) at positions pos (B, M) -> (B, M, ...)."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], pos]


@ARCH_REGISTRY.register()
class PropSTF(STFNetwork):
    """Key-frame propagation network (see the module docstring).

    Args:
        num_in_ch, num_out_ch: image channels (1).
        num_feat: feature channels on the LR grid. num_block: residual blocks of each propagation step.
        num_block_decode: residual blocks of the per-position decoder.
        num_frame_hi: 2 (key frames) or 0 (the LR-only variant: no key frames, the upsampled LR frame as base).
        flow_feat, flow_levels: width and pyramid levels of the flow network.
        num_feat_up: channels of the x4 decoder at HR resolution.
        hr_encoder: 'unshuffle' | 'pool' (STFNetwork.add_hr_encoder).
        sources: what the base blends (a subset of SOURCES; the LR-only variant uses 'lr' alone).
        context: LR frames read beyond each end of a segment (they help the LR-only variant).
        global_motion: start the flows between neighbours at the translation of the whole frame, measured
            classically (``global_motion.shifts_to_reference``); the flow network learns the local motion on top.
        denoised_temporal: the temporal source's LR change Wiener-shrunk by the estimated LR noise
            (``classical.temporal(sigma_n2=...)``): under shot noise it is the key frame where nothing moved.
        still_gate: the temporal source where neither the LR frame changed nor the sample moved (item 4 of
            the module docstring); with ``global_motion``, the gate also reads the whole frame's motion.
        refine_at_hr: with ``global_motion``, each frame's shift made sub-pixel against the HR key frame itself
            (``global_motion.refine_against_key``) rather than against its 4x4 average.
        deform_align: each propagation step aligns the hidden features by flow-guided deformable convolution
            (``FlowGuidedAlign``, after BasicVSR++) instead of the flow warp alone.
    """
    kind = 'segment'

    def __init__(self,
                 num_in_ch: int = 1,
                 num_out_ch: int = 1,
                 num_feat: int = 32,
                 num_block: int = 2,
                 num_block_decode: int = 1,
                 num_frame_hi: int = 2,
                 flow_feat: int = 24,
                 flow_levels: int = 2,
                 num_feat_up: int = 16,
                 hr_encoder: str = 'unshuffle',
                 sources: list[str] | tuple[str, ...] = SOURCES,
                 context: int = 0,
                 global_motion: bool = False,
                 denoised_temporal: bool = False,
                 still_gate: bool = False,
                 refine_at_hr: bool = False,
                 deform_align: bool = False):
        super().__init__(num_frame=1, num_frame_hi=num_frame_hi, center_frame_idx=0)
        if num_frame_hi not in (0, 2):
            raise ValueError(f'num_frame_hi must be 2 (key frames at both ends) or 0 (LR-only), got {num_frame_hi}')
        self.sources = tuple(sources) if self.uses_keys else ('lr',)
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise ValueError(f'sources must be a non-empty subset of {SOURCES}, got {list(sources)}')
        self.context = context
        self.global_motion = global_motion
        self.refine_at_hr = refine_at_hr
        self.denoised_temporal = denoised_temporal
        if still_gate and 'temporal' not in self.sources:
            raise ValueError('still_gate hands pixels to the temporal source: it needs temporal among the sources')
        self.use_still_gate = still_gate
        self.flow = FlowEstimator(flow_feat, flow_levels)
        self.feat_extract = ConvResidualBlocks(num_in_ch, num_feat, 1)
        if self.uses_keys:
            self.add_hr_encoder(hr_encoder, num_in_ch, num_feat)
            self.forward_inject = nn.Conv2d(2 * num_feat, num_feat, 3, 1, 1)
            self.backward_inject = nn.Conv2d(2 * num_feat, num_feat, 3, 1, 1)
        self.deform_align = deform_align
        if deform_align:
            self.forward_align, self.backward_align = FlowGuidedAlign(num_feat), FlowGuidedAlign(num_feat)
        self.forward_trunk = ConvResidualBlocks(2 * num_feat, num_feat, num_block)
        self.backward_trunk = ConvResidualBlocks(2 * num_feat, num_feat, num_block)
        self.fusion = nn.Conv2d(3 * num_feat, num_feat, 3, 1, 1)
        self.decoder = make_layer(ResidualBlockNoBN, num_block_decode, num_feat=num_feat)
        self.add_x4_decoder(num_feat, num_out_ch, num_feat_up)
        nn.init.zeros_(self.conv_last.weight)  # the residual starts at zero: the output starts as the base
        nn.init.zeros_(self.conv_last.bias)
        if len(self.sources) > 1:
            n = len(self.sources)
            self.blend_logits = nn.Conv2d(num_feat + n, n, 3, 1, 1)
            nn.init.zeros_(self.blend_logits.weight)
            with torch.no_grad():
                self.blend_logits.bias.copy_(torch.tensor([SOURCE_BIAS[s] for s in self.sources]))
                for i in range(n):
                    self.blend_logits.weight[i, num_feat + i, 1, 1] = -DISAGREEMENT_GAIN
        if still_gate:  # reads the sources' disagreements and the LR change
            n = len(self.sources)
            self.still_gate = nn.Conv2d(n + 1, 1, 3, 1, 1)
            nn.init.zeros_(self.still_gate.weight)
            with torch.no_grad():
                self.still_gate.bias.fill_(STILL_GATE_BIAS)
                self.still_gate.weight[0, n, 1, 1] = -STILL_GATE_CHANGE_GAIN

    # ---- the segment protocol -------------------------------------------------------------------
    def forward(self, lq: torch.Tensor, hq: torch.Tensor | None = None, key_pos: torch.Tensor | None = None,
                out_pos: torch.Tensor | None = None, return_aux: bool = False, motion: tuple | None = None):
        """(B, N, C, h, w) LR frames of a segment + (B, K, C, 4h, 4w) key frames at key_pos (B, K) ->
        (B, M, C, 4h, 4w) frames at out_pos (B, M; every position when None).

        ``return_aux``: also what training losses read, {source name: (B, M, C, 4h, 4w) image, 'flows':
        (B, N-1, 2, h, w) the flow from each position to the one before, in LR pixels}. ``motion``: the
        whole-frame motion the flows start from, as ``global_steps`` gives it (measured when None), so that a
        measurement can give another one (the true motion of a synthetic sequence) in its place.
        """
        if out_pos is None:
            out_pos = torch.arange(lq.shape[1], device=lq.device).expand(lq.shape[0], -1)
        state = self.propagate(lq, hq, key_pos, motion)
        if not return_aux:
            return self.decode(state, out_pos)
        out, sources = self.decode(state, out_pos, return_sources=True)
        return out, {**sources, 'flows': state.step_flows}

    @staticmethod
    def warp_lr(img: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Warp LR-grid images (N, C, h, w) by flows (N, 2, h, w) in LR pixels, as the network warps its features."""
        return flow_warp(img, flow.permute(0, 2, 3, 1), padding_mode='border')

    def check_segment(self, lq: torch.Tensor, hq: torch.Tensor | None, key_pos: torch.Tensor | None) -> None:
        b, n, _, h, w = lq.shape
        if self.uses_keys:
            if hq is None or key_pos is None or hq.shape[1] == 0:
                raise ValueError('PropSTF with key frames needs hq and key_pos (at least one key frame)')
            if hq.shape[-2:] != (h * self.scale, w * self.scale):
                raise ValueError(f'key frames must be {self.scale}x the LR size {h}x{w}, got {tuple(hq.shape[-2:])}')
            if key_pos.shape != hq.shape[:2] or key_pos.min() < 0 or key_pos.max() >= n:
                raise ValueError(f'key_pos must give a position in 0..{n - 1} for each of the {hq.shape[1]} key frames')

    def global_steps(self, lq: torch.Tensor, hq: torch.Tensor | None,
                     key_pos: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B*(N-1), 2) twice: the translation from each position to the one after it, and back, for the
        forward branch measured against the first key frame, for the backward branch against the last
        (at the LR camera's resolution: clean, unlike an LR frame); the first LR frame without key frames.
        Each frame is measured directly against the reference, not chained: the steps between neighbours
        are differences of these, so they sum to the shift between any two positions without
        accumulating each step's error. Third, (B, N): how far each position moved since the nearer key frame."""
        if self.uses_keys:
            # one key frame (a sequence's end): both branches alike
            ends = (0,) if torch.equal(key_pos[:, 0], key_pos[:, -1]) else (0, -1)
            shifts = [shifts_to_reference(lq, F.avg_pool2d(hq[:, j], self.scale), key_pos[:, j], STILL_MARGIN)
                      for j in ends]
            if self.refine_at_hr:
                shifts = [refine_against_key(lq, hq[:, j], s, key_pos[:, j]) for j, s in zip(ends, shifts)]
            forward, backward = shifts[0], shifts[-1]
        else:
            forward = backward = shifts_to_reference(lq, lq[:, 0], lq.new_zeros(lq.shape[0], dtype=torch.long),
                                                     STILL_MARGIN)
        rows = torch.arange(lq.shape[0], device=lq.device)
        ref0 = key_pos[:, 0] if self.uses_keys else torch.zeros_like(rows)
        ref1 = key_pos[:, -1] if self.uses_keys else ref0
        moved = torch.minimum((forward - forward[rows, ref0][:, None]).norm(dim=2),
                              (backward - backward[rows, ref1][:, None]).norm(dim=2))
        # warp(frame i, g[i+1] - g[i]) ~ frame i+1
        return ((forward[:, 1:] - forward[:, :-1]).flatten(0, 1), (backward[:, :-1] - backward[:, 1:]).flatten(0, 1),
                moved)

    def propagate(self, lq: torch.Tensor, hq: torch.Tensor | None, key_pos: torch.Tensor | None,
                  motion: tuple | None = None) -> SegmentState:
        """Features, flows and both propagation branches of a segment (see SegmentState); ``motion``: the
        whole-frame motion as ``global_steps`` gives it, measured here when None."""
        self.check_segment(lq, hq, key_pos)
        b, n, c, h, w = lq.shape
        feats = self.feat_extract(lq.flatten(0, 1)).unflatten(0, (b, n))
        sample_motion = None
        if n > 1:  # flows between neighbours, both directions, all pairs at once
            cur, prev = lq[:, 1:].flatten(0, 1), lq[:, :-1].flatten(0, 1)
            init = None
            if self.global_motion:
                *steps, sample_motion = self.global_steps(lq, hq, key_pos) if motion is None else motion
                init = torch.cat(steps)
            # one call for both directions: position i+1 -> i, then i -> i+1
            to_prev, to_next = self.flow(torch.cat([cur, prev]), torch.cat([prev, cur]), init).chunk(2)
            to_prev, to_next = to_prev.unflatten(0, (b, n - 1)), to_next.unflatten(0, (b, n - 1))
        if self.uses_keys:
            k = hq.shape[1]
            key_feats = self.encode_hr(hq.flatten(0, 1)).unflatten(0, (b, k))
            at = key_pos[:, :, None] == torch.arange(n, device=lq.device)  # (B, K, N): key j at position i
        no_key = torch.full((b,), -1, dtype=torch.long, device=lq.device)

        frame_feats = feats.unbind(1)  # one unbind, not a select per step: its backward is one stack, not N

        def branch(order, flows, trunk, inject, align):
            hidden, flow_to_key, key_index = feats.new_zeros(b, feats.shape[2], h, w), None, no_key
            out_h, out_flow, out_key = [None] * n, [None] * n, [None] * n
            for step, i in enumerate(order):
                if step:
                    flow = flows[i].permute(0, 2, 3, 1)
                    warped = flow_warp(hidden, flow, padding_mode='border')
                    hidden = warped if align is None else align(hidden, warped, frame_feats[i], flows[i])
                    flow_to_key = flows[i] + flow_warp(flow_to_key, flow, padding_mode='border')
                else:
                    flow_to_key = lq.new_zeros(b, 2, h, w)
                if self.uses_keys:  # a key frame here: the branch restarts from it
                    here = at[:, :, i]  # (B, K)
                    has = here.any(dim=1)
                    if has.any():
                        which = here.float().argmax(dim=1)  # the (first) key frame at this position
                        key_feat = key_feats[torch.arange(b, device=lq.device), which]
                        injected = inject(torch.cat([key_feat, frame_feats[i]], 1))
                        hidden = torch.where(has[:, None, None, None], injected, hidden)
                        flow_to_key = torch.where(has[:, None, None, None], torch.zeros_like(flow_to_key),
                                                  flow_to_key)
                        key_index = torch.where(has, which, key_index)
                hidden = trunk(torch.cat([hidden, frame_feats[i]], 1))
                out_h[i], out_flow[i], out_key[i] = hidden, flow_to_key, key_index
            return torch.stack(out_h, 1), torch.stack(out_flow, 1), torch.stack(out_key, 1)

        to_prev, to_next = (to_prev.unbind(1), to_next.unbind(1)) if n > 1 else ((), ())
        fwd_flows = {i: to_prev[i - 1] for i in range(1, n)}  # for position i: flow i -> i-1
        bwd_flows = {i: to_next[i] for i in range(n - 1)}  # for position i: flow i -> i+1
        inject_f = self.forward_inject if self.uses_keys else None
        inject_b = self.backward_inject if self.uses_keys else None
        align_f = self.forward_align if self.deform_align else None
        align_b = self.backward_align if self.deform_align else None
        fwd, flow_prev, prev_key = branch(range(n), fwd_flows, self.forward_trunk, inject_f, align_f)
        bwd, flow_next, next_key = branch(range(n - 1, -1, -1), bwd_flows, self.backward_trunk, inject_b, align_b)
        step_flows = torch.stack(to_prev, 1) if n > 1 else None
        return SegmentState(lq, hq, key_pos, feats, fwd, bwd, flow_prev, flow_next, prev_key, next_key, step_flows,
                            sample_motion)

    def decode(self, state: SegmentState, out_pos: torch.Tensor, return_sources: bool = False):
        """The HR frames at out_pos (B, M) of a propagated segment -> (B, M, C, 4h, 4w)."""
        b, m = out_pos.shape
        lq_t = _gather(state.lq, out_pos).flatten(0, 1)  # (BM, C, h, w)
        x = torch.cat([_gather(state.forward_feats, out_pos), _gather(state.backward_feats, out_pos),
                       _gather(state.feats, out_pos)], 2).flatten(0, 1)
        feat = self.decoder(self.lrelu(self.fusion(x)))
        sources, change = self.source_images(state, out_pos, lq_t)
        if len(sources) == 1:
            base = next(iter(sources.values()))
        else:
            stacked = torch.stack(list(sources.values()), 1)  # (BM, S, C, H, W)
            disagreement = torch.cat([_disagreement(img, lq_t, self.scale) for img in sources.values()], 1)
            weights = torch.softmax(self.blend_logits(torch.cat([feat, disagreement], 1)), dim=1)
            weights = F.interpolate(weights, scale_factor=self.scale, mode='bilinear', align_corners=False)
            base = (weights.unsqueeze(2) * stacked).sum(dim=1)
            if self.use_still_gate:
                logit = self.still_gate(torch.cat([disagreement, change], 1))
                if state.sample_motion is not None:
                    moved = _gather(state.sample_motion, out_pos).flatten()
                    logit = logit - STILL_GATE_SHIFT_GAIN * moved[:, None, None, None]
                gate = F.interpolate(torch.sigmoid(logit), scale_factor=self.scale, mode='bilinear',
                                     align_corners=False)
                base = gate * sources['temporal'] + (1 - gate) * base
        out = (base + self.upsample_x4(feat)).unflatten(0, (b, m))
        return (out, {k: v.unflatten(0, (b, m)) for k, v in sources.items()}) if return_sources else out

    def source_images(self, state: SegmentState, out_pos: torch.Tensor,
                      lq_t: torch.Tensor) -> tuple[dict, torch.Tensor | None]:
        """The images the base blends, each (BM, C, 4h, 4w), and for the still gate the LR change since
        the key frames (``_unexplained_change``; None without the gate)."""
        up = F.interpolate(lq_t, scale_factor=self.scale, mode='bicubic', align_corners=False)
        if not self.uses_keys:
            return {'lr': up}, None
        b, m = out_pos.shape
        prev_key, next_key = _gather(state.prev_key, out_pos), _gather(state.next_key, out_pos)  # (B, M)
        has_prev, has_next = prev_key >= 0, next_key >= 0
        j0 = torch.where(has_prev, prev_key, next_key)  # a missing key frame: the other one twice
        j1 = torch.where(has_next, next_key, prev_key)
        flow_prev, flow_next = _gather(state.flow_to_prev, out_pos), _gather(state.flow_to_next, out_pos)
        flow0 = torch.where(has_prev[..., None, None, None], flow_prev, flow_next).flatten(0, 1)
        flow1 = torch.where(has_next[..., None, None, None], flow_next, flow_prev).flatten(0, 1)
        hr0, hr1 = _gather(state.hq, j0).flatten(0, 1), _gather(state.hq, j1).flatten(0, 1)
        k0, k1 = _gather(state.key_pos, j0), _gather(state.key_pos, j1)  # (B, M) positions of the key frames
        span = (k1 - k0).clamp_min(1).float()
        w1 = torch.where(k1 > k0, (out_pos - k0).float() / span, torch.zeros_like(span)).clamp(0, 1)
        weights = torch.stack([1 - w1, w1], -1).flatten(0, 1)  # (BM, 2)
        lq_keys = torch.cat([_gather(state.lq, k0).flatten(0, 1), _gather(state.lq, k1).flatten(0, 1)], 1)
        sigma_n2 = classical.noise_variance(lq_t, lq_keys)  # from the recorded frames, for both Bayesian sources
        out = {}
        if set(self.sources) & {'key0', 'key1', 'bayes_warped'}:
            warped0, warped1 = _warp_hr(hr0, flow0, self.scale), _warp_hr(hr1, flow1, self.scale)
        for name in self.sources:
            if name == 'key0':
                out[name] = warped0
            elif name == 'key1':
                out[name] = warped1
            elif name == 'bayes':
                out[name] = classical.bayes(lq_t, torch.cat([hr0, hr1], 1), lq_keys, weights, sigma_n2)
            elif name == 'bayes_warped':
                warped = torch.cat([warped0, warped1], 1)
                out[name] = classical.bayes(lq_t, warped, F.avg_pool2d(warped, self.scale), weights, sigma_n2)
            elif name == 'temporal':
                out[name] = classical.temporal(lq_t, torch.cat([hr0, hr1], 1), lq_keys, weights,
                                               sigma_n2=sigma_n2 if self.denoised_temporal else None)
            else:
                out[name] = up
        change = _unexplained_change(lq_t, lq_keys, sigma_n2) if self.use_still_gate else None
        return {name: out[name] for name in self.sources}, change


def _warp_hr(img: torch.Tensor, flow_lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Warp an HR image (N, C, H, W) with an LR-grid flow (N, 2, h, w), in LR pixels."""
    flow = scale * F.interpolate(flow_lr, scale_factor=scale, mode='bilinear', align_corners=False)
    return flow_warp(img, flow.permute(0, 2, 3, 1), interp_mode='bicubic', padding_mode='border')


def _unexplained_change(lq: torch.Tensor, lq_keys: torch.Tensor, sigma_n2: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w): the local RMS change of the LR frame since the key frame it changed least from, with
    the smooth part (the beam's drift, which the temporal source gets right) and the two LR frames' noise
    (2 sigma_n2) taken out: about 0 where nothing moved, at any noise level."""
    change = lq - lq_keys
    change = change - classical.box_mean(change, 5)
    power = classical.box_mean(change ** 2, 3) - 2 * sigma_n2.reshape(-1, 1, 1, 1)
    return power.clamp_min(0).amin(dim=1, keepdim=True).sqrt()


def _disagreement(img: torch.Tensor, lq: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, 1, h, w): local mean |area average of img - LR frame|, high where img contradicts the LR camera."""
    diff = (F.avg_pool2d(img, scale) - lq).abs().mean(dim=1, keepdim=True)
    return F.avg_pool2d(diff, 3, stride=1, padding=1, count_include_pad=False)
