"""PropSTF: key-frame propagation, a segment network (the protocol of ``stf_base``, kind 'segment').

It reads every LR frame of a segment and the key frames at their positions in it (two at the ends, one
at the ends of a sequence), and gives the HR frame of every position. What it does, in order:

1. **Motion.** The whole frame's translation is measured classically against the key frames
   (``global_motion``: the sample moving 2-4 px per frame is what a flow network trained for minutes does
   not learn), made sub-pixel against the HR key frames seen through the LR camera; a small flow network
   (``FlowEstimator``, SpyNet's coarse-to-fine layout, trained from scratch) starts there and estimates
   the local motion between consecutive LR frames, both ways. Composed step by step, the flows map every
   position to the key frame before it and to the one after it.
2. **Bidirectional propagation** (after BasicVSR): a forward branch runs from the first frame to the
   last, a backward branch the other way; at each step the hidden features of the previous step are
   warped along the flow and fused with the LR frame's features. At a key frame's position the branch
   takes the key frame's features instead (NeuriCam's key-frame injection), so key-frame content is
   carried to every position, and lost where the LR stream says it changed.
3. **A base that reuses key-frame content where it is still valid** (``blend.SourceBlend``): a per-pixel
   blend of the two key frames warped to t along the composed flows, the classical Bayesian estimate
   from the raw key frames and from the warped ones, the temporal-change estimate (its LR change
   Wiener-shrunk by the estimated noise: the key frame where only noise changed; of the two key frames,
   the one whose LR frame changed less beyond the noise) and the upsampled LR frame, predicted from the
   propagated features and from each source's disagreement with the LR frame at t. At the start it is the
   Bayesian estimate: the network begins where classical fusion is.
   A still gate (``blend.StillGate``) hands the pixels where nothing changed or moved to the temporal
   source. A learned residual is added.
4. **Consistency with the LR frame at t** (``classical.project_onto_lr``): what the output still
   contradicts in the LR frame recorded at its time, beyond the noise and beyond what the camera model
   leaves unexplained at the key frames, is put back, with the LR camera's blur fitted at the key frames.
   Key-frame content where the LR camera says it has gone (a ghost) does not survive this, as far as
   the LR camera resolves it.

Every choice was measured on the validation families over several training seeds (docs/experiments.md).
``PropVSR`` (``propvsr_arch.py``) is the LR-only variant: the same propagation without key frames.

``forward(lq, hq, key_pos, out_pos)``: ``lq`` (B, N, C, h, w) the segment's LR frames, ``hq`` (B, K, C,
4h, 4w) its key frames, ``key_pos`` (B, K) their positions in the segment, ``out_pos`` (B, M) the positions
wanted -> (B, M, C, 4h, 4w). ``propagate`` (once per segment) and ``decode`` (any positions, in
batches) are the two stages sequence inference uses, so memory grows with the segment, not the
sequence.
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
from xfusion.archs.blend import SOURCES, SourceBlend, StillGate
from xfusion.archs.global_motion import STILL_MARGIN, fit_lr_blur, refine_against_key, shifts_to_reference
from xfusion.archs.legacy import check_retired_options
from xfusion.archs.stf_base import STFNetwork


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
    # the LR camera at the key frames: (B,) its extra blur in HR pixels, and (B, K, 1, h, w) what that model
    # leaves unexplained at each key frame (``classical.fit_lr_camera``)
    lr_blur: torch.Tensor | None = None
    lr_misfit: torch.Tensor | None = None


def _gather(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """x (B, N, ...) at positions pos (B, M) -> (B, M, ...)."""
    return x[torch.arange(x.shape[0], device=x.device)[:, None], pos]


class PropagationNetwork(STFNetwork):
    """What PropSTF and its LR-only variant PropVSR share: the flow network, the two propagation branches,
    the per-position decoder and the x4 decoder; the subclasses give the motion the flows start from, the
    base image and the last step (``initial_motion``, ``base_image``, ``finish``)."""
    kind = 'segment'
    context = 0  # LR frames read beyond each end of a segment

    def __init__(self, num_in_ch: int, num_out_ch: int, num_feat: int, num_block: int, num_block_decode: int,
                 num_frame_hi: int, flow_feat: int, flow_levels: int, num_feat_up: int):
        super().__init__(num_frame=1, num_frame_hi=num_frame_hi, center_frame_idx=0)
        self.flow = FlowEstimator(flow_feat, flow_levels)
        self.feat_extract = ConvResidualBlocks(num_in_ch, num_feat, 1)
        self.forward_trunk = ConvResidualBlocks(2 * num_feat, num_feat, num_block)
        self.backward_trunk = ConvResidualBlocks(2 * num_feat, num_feat, num_block)
        self.fusion = nn.Conv2d(3 * num_feat, num_feat, 3, 1, 1)
        self.decoder = make_layer(ResidualBlockNoBN, num_block_decode, num_feat=num_feat)
        self.add_x4_decoder(num_feat, num_out_ch, num_feat_up)
        nn.init.zeros_(self.conv_last.weight)  # the residual starts at zero: the output starts as the base
        nn.init.zeros_(self.conv_last.bias)

    # ---- the segment protocol -------------------------------------------------------------------
    def forward(self, lq: torch.Tensor, hq: torch.Tensor | None = None, key_pos: torch.Tensor | None = None,
                out_pos: torch.Tensor | None = None, return_aux: bool = False, motion: tuple | None = None):
        """(B, N, C, h, w) LR frames of a segment + (B, K, C, 4h, 4w) key frames at key_pos (B, K) ->
        (B, M, C, 4h, 4w) frames at out_pos (B, M; every position when None).

        ``return_aux``: also what training losses read, {source name: (B, M, C, 4h, 4w) image, 'flows':
        (B, N-1, 2, h, w) the flow from each position to the one before, in LR pixels}. ``motion``: the
        whole-frame motion the flows start from, as ``PropSTF.global_steps`` gives it (measured when None), so
        that a measurement can give another one (the true motion of a synthetic sequence) in its place.
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
        """Clear errors for key frames that do not fit the segment (the LR-only variant reads none)."""

    def initial_motion(self, lq: torch.Tensor, hq: torch.Tensor | None,
                       key_pos: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The whole-frame motion the flows start from, as ``PropSTF.global_steps`` gives it; None: from zero."""
        return None

    def propagate(self, lq: torch.Tensor, hq: torch.Tensor | None, key_pos: torch.Tensor | None,
                  motion: tuple | None = None) -> SegmentState:
        """Features, flows and both propagation branches of a segment (see SegmentState); ``motion``: the
        whole-frame motion as ``initial_motion`` gives it, measured here when None."""
        self.check_segment(lq, hq, key_pos)
        b, n, c, h, w = lq.shape
        feats = self.feat_extract(lq.flatten(0, 1)).unflatten(0, (b, n))
        sample_motion = None
        if n > 1:  # flows between neighbours, both directions, all pairs at once
            cur, prev = lq[:, 1:].flatten(0, 1), lq[:, :-1].flatten(0, 1)
            motion = self.initial_motion(lq, hq, key_pos) if motion is None else motion
            init = None
            if motion is not None:
                *steps, sample_motion = motion
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

        def branch(order, flows, trunk, inject):
            hidden, flow_to_key, key_index = feats.new_zeros(b, feats.shape[2], h, w), None, no_key
            out_h, out_flow, out_key = [None] * n, [None] * n, [None] * n
            for step, i in enumerate(order):
                if step:
                    flow = flows[i].permute(0, 2, 3, 1)
                    hidden = flow_warp(hidden, flow, padding_mode='border')
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
        fwd, flow_prev, prev_key = branch(range(n), fwd_flows, self.forward_trunk, inject_f)
        bwd, flow_next, next_key = branch(range(n - 1, -1, -1), bwd_flows, self.backward_trunk, inject_b)
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
        base, sources, evidence = self.base_image(state, out_pos, lq_t, feat)
        out = self.finish(base + self.upsample_x4(feat), state, out_pos, lq_t, evidence).unflatten(0, (b, m))
        return (out, {k: v.unflatten(0, (b, m)) for k, v in sources.items()}) if return_sources else out

    def base_image(self, state: SegmentState, out_pos: torch.Tensor, lq_t: torch.Tensor,
                   feat: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
        """(BM, C, 4h, 4w) the image the residual is added to, {name: (BM, C, 4h, 4w)} the sources it was made
        from, and what ``finish`` reads."""
        raise NotImplementedError

    def finish(self, out: torch.Tensor, state: SegmentState, out_pos: torch.Tensor, lq_t: torch.Tensor,
               evidence: dict) -> torch.Tensor:
        """The last step on the output (BM, C, 4h, 4w); none by default."""
        return out


@ARCH_REGISTRY.register()
class PropSTF(PropagationNetwork):
    """Key-frame propagation network (see the module docstring).

    Args:
        num_in_ch, num_out_ch: image channels (1).
        num_feat: feature channels on the LR grid. num_block: residual blocks of each propagation step.
        num_block_decode: residual blocks of the per-position decoder.
        flow_feat, flow_levels: width and pyramid levels of the flow network.
        num_feat_up: channels of the x4 decoder at HR resolution.
        hr_encoder: 'unshuffle' | 'pool' (STFNetwork.add_hr_encoder).
        retired: options of earlier versions (``legacy.RETIRED_OPTIONS``), accepted at the value the network
            now always has.
    """

    def __init__(self,
                 num_in_ch: int = 1,
                 num_out_ch: int = 1,
                 num_feat: int = 32,
                 num_block: int = 2,
                 num_block_decode: int = 1,
                 flow_feat: int = 24,
                 flow_levels: int = 2,
                 num_feat_up: int = 16,
                 hr_encoder: str = 'unshuffle',
                 **retired):
        check_retired_options('PropSTF', retired)
        super().__init__(num_in_ch, num_out_ch, num_feat, num_block, num_block_decode, 2, flow_feat, flow_levels,
                         num_feat_up)
        self.sources = SOURCES
        self.add_hr_encoder(hr_encoder, num_in_ch, num_feat)
        self.forward_inject = nn.Conv2d(2 * num_feat, num_feat, 3, 1, 1)
        self.backward_inject = nn.Conv2d(2 * num_feat, num_feat, 3, 1, 1)
        self.blend = SourceBlend(num_feat, SOURCES)
        self.still_gate = StillGate(len(SOURCES))

    def check_segment(self, lq: torch.Tensor, hq: torch.Tensor | None, key_pos: torch.Tensor | None) -> None:
        b, n, _, h, w = lq.shape
        if hq is None or key_pos is None or hq.shape[1] == 0:
            raise ValueError('PropSTF needs hq and key_pos (at least one key frame)')
        if hq.shape[-2:] != (h * self.scale, w * self.scale):
            raise ValueError(f'key frames must be {self.scale}x the LR size {h}x{w}, got {tuple(hq.shape[-2:])}')
        if key_pos.shape != hq.shape[:2] or key_pos.min() < 0 or key_pos.max() >= n:
            raise ValueError(f'key_pos must give a position in 0..{n - 1} for each of the {hq.shape[1]} key frames')

    def initial_motion(self, lq, hq, key_pos):
        return self.global_steps(lq, hq, key_pos)

    def propagate(self, lq, hq, key_pos, motion=None):
        state = super().propagate(lq, hq, key_pos, motion)
        rows = torch.arange(lq.shape[0], device=lq.device)
        state.lr_blur, state.lr_misfit = classical.fit_lr_camera(hq, lq[rows[:, None], key_pos], fit_lr_blur)
        return state

    def global_steps(self, lq: torch.Tensor, hq: torch.Tensor,
                     key_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B*(N-1), 2) twice: the translation from each position to the one after it, and back, for the
        forward branch measured against the first key frame, for the backward branch against the last
        (at the LR camera's resolution: clean, unlike an LR frame), then refined against the HR key frame.
        Each frame is measured directly against the reference, not chained: the steps between neighbours
        are differences of these, so they sum to the shift between any two positions without
        accumulating each step's error. Third, (B, N): how far each position moved since the nearer key frame."""
        # one key frame (a sequence's end): both branches alike
        ends = (0,) if torch.equal(key_pos[:, 0], key_pos[:, -1]) else (0, -1)
        shifts = [refine_against_key(lq, hq[:, j], shifts_to_reference(lq, F.avg_pool2d(hq[:, j], self.scale),
                                                                       key_pos[:, j], STILL_MARGIN), key_pos[:, j])
                  for j in ends]
        forward, backward = shifts[0], shifts[-1]
        rows = torch.arange(lq.shape[0], device=lq.device)
        moved = torch.minimum((forward - forward[rows, key_pos[:, 0]][:, None]).norm(dim=2),
                              (backward - backward[rows, key_pos[:, -1]][:, None]).norm(dim=2))
        # warp(frame i, g[i+1] - g[i]) ~ frame i+1
        return ((forward[:, 1:] - forward[:, :-1]).flatten(0, 1), (backward[:, :-1] - backward[:, 1:]).flatten(0, 1),
                moved)

    @staticmethod
    def bracketing_keys(state: SegmentState, out_pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, M) twice: the key frame before each position and the one after (indices into the K key
        frames); where one is missing, the other one twice."""
        prev_key, next_key = _gather(state.prev_key, out_pos), _gather(state.next_key, out_pos)
        return torch.where(prev_key >= 0, prev_key, next_key), torch.where(next_key >= 0, next_key, prev_key)

    def base_image(self, state, out_pos, lq_t, feat):
        keys = self.bracketing_keys(state, out_pos)
        sources, change, sigma_n2 = self.source_images(state, out_pos, lq_t, keys)
        base, disagreements = self.blend(feat, torch.stack(list(sources.values()), 1), lq_t)
        moved = (_gather(state.sample_motion, out_pos).flatten() if state.sample_motion is not None
                 else lq_t.new_zeros(lq_t.shape[0]))
        base = self.still_gate(base, sources['temporal'], disagreements, change, moved)
        return base, sources, {'sigma_n2': sigma_n2, 'keys': keys}

    def source_images(self, state: SegmentState, out_pos: torch.Tensor, lq_t: torch.Tensor,
                      keys: tuple[torch.Tensor, torch.Tensor]) -> tuple[dict, torch.Tensor, torch.Tensor]:
        """The images the base blends, each (BM, C, 4h, 4w), from the key frames ``keys`` (``bracketing_keys``);
        for the still gate, the LR change since the key frames beyond the noise (``_unexplained_change``,
        (BM, 1, h, w)); (BM,) the LR noise variance."""
        b, m = out_pos.shape
        j0, j1 = keys
        has_prev, has_next = _gather(state.prev_key, out_pos) >= 0, _gather(state.next_key, out_pos) >= 0
        flow_prev, flow_next = _gather(state.flow_to_prev, out_pos), _gather(state.flow_to_next, out_pos)
        flow0 = torch.where(has_prev[..., None, None, None], flow_prev, flow_next).flatten(0, 1)
        flow1 = torch.where(has_next[..., None, None, None], flow_next, flow_prev).flatten(0, 1)
        hr0, hr1 = _gather(state.hq, j0).flatten(0, 1), _gather(state.hq, j1).flatten(0, 1)
        k0, k1 = _gather(state.key_pos, j0), _gather(state.key_pos, j1)  # (B, M) positions of the key frames
        span = (k1 - k0).clamp_min(1).float()
        w1 = torch.where(k1 > k0, (out_pos - k0).float() / span, torch.zeros_like(span)).clamp(0, 1)
        weights = torch.stack([1 - w1, w1], -1).flatten(0, 1)  # (BM, 2)
        lq_keys = torch.cat([_gather(state.lq, k0).flatten(0, 1), _gather(state.lq, k1).flatten(0, 1)], 1)
        sigma_n2 = classical.noise_variance(lq_t, lq_keys)  # from the recorded frames, for every classical source
        keys = torch.cat([hr0, hr1], 1)
        warped0, warped1 = _warp_hr(hr0, flow0, self.scale), _warp_hr(hr1, flow1, self.scale)
        warped = torch.cat([warped0, warped1], 1)
        sources = {
            'key0': warped0,
            'key1': warped1,
            'bayes': classical.bayes(lq_t, keys, lq_keys, weights, sigma_n2),
            'bayes_warped': classical.bayes(lq_t, warped, F.avg_pool2d(warped, self.scale), weights, sigma_n2),
            'temporal': classical.temporal(lq_t, keys, lq_keys, weights, sigma_n2=sigma_n2),
            'lr': F.interpolate(lq_t, scale_factor=self.scale, mode='bicubic', align_corners=False),
        }
        return sources, _unexplained_change(lq_t, lq_keys, sigma_n2), sigma_n2

    def finish(self, out, state, out_pos, lq_t, evidence):
        """Consistency with the LR frame at t (item 4 of the module docstring)."""
        j0, j1 = evidence['keys']
        misfit = torch.maximum(_gather(state.lr_misfit, j0), _gather(state.lr_misfit, j1)).flatten(0, 1)
        floor = torch.maximum(evidence['sigma_n2'].reshape(-1, 1, 1, 1), misfit)
        return classical.project_onto_lr(out, lq_t, floor, state.lr_blur.repeat_interleave(out_pos.shape[1]))


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
