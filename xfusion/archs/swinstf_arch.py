"""SwinSTF: video-Swin-transformer spatiotemporal fusion of an LR window and HR key frames.

LR frames (a conv) and HR key frames (an HR encoder of ``stf_base``, brought to the LR grid)
become one token volume (B, T+K, h, w, C) on the LR grid. Residual groups of 3D shifted-window
self-attention blocks (window over time, height, width; cyclic shift every other block, masked
so that no token attends across the wrap; 3D relative position bias) mix it; the centre LR time
step plus a 1x1 fusion of all frames is decoded x4 by two pixel-shuffle stages and added to the
base image of ``stf_base`` (the upsampled centre LR frame by default).

The token volume is padded (``pad_mode``, replicate by default) to window multiples, and padded
tokens are masked out as attention keys; the convolutions run on the cropped volume. So the
output does not depend on what the padding holds: any input size works, none is a special case.

What sequence inference can cache across sliding windows (``forward`` = ``encode`` + ``decode``):
- ``encode``: the per-frame embedding of an LR frame or a key frame, independent of the window
  -> cached per frame index by xfusion.inference.
- ``decode`` = ``align`` (``with_pcd`` only) + ``fuse`` + ``reconstruct``: these depend on the
  whole window (alignment to the centre frame, attention across all frames), so they run once
  per output frame.
- The window plan (attention masks, relative position index) depends only on the input size
  and is cached on the module.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
from basicsr.archs.edvr_arch import PCDAlignment
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint
from torchvision.ops import StochasticDepth

from xfusion.archs.deform_conv import use_fast_deform_conv
from xfusion.archs.stf_base import STFNetwork

Size3 = tuple[int, int, int]
MASK_VALUE = -100.0  # additive mask as in Swin: finite, so a fully masked (padded) row stays NaN-free


# ----------------------------------------------------------------------------------------------
# windows, masks, relative positions
def effective_window(size: Size3, window_size: Size3) -> tuple[Size3, Size3]:
    """Window and shift for a (D, H, W) volume: a window not smaller than the input is clamped to
    it and not shifted (as in Swin); otherwise the shift is half the window."""
    window, shift = [], []
    for n, w in zip(size, window_size):
        if n <= w:
            window.append(n)
            shift.append(0)
        else:
            window.append(w)
            shift.append(w // 2)
    return tuple(window), tuple(shift)


def window_partition(x: torch.Tensor, window: Size3) -> torch.Tensor:
    """(B, D, H, W, C) with D, H, W window multiples -> (B, nW, N, C), N = prod(window)."""
    b, d, h, w, c = x.shape
    wt, wh, ww = window
    x = x.reshape(b, d // wt, wt, h // wh, wh, w // ww, ww, c)
    return x.permute(0, 1, 3, 5, 2, 4, 6, 7).reshape(b, -1, wt * wh * ww, c)


def attention_mask(padded: Size3, size: Size3, window: Size3, shift: Size3,
                   device: torch.device | str | None = None) -> torch.Tensor:
    """Which token may attend to which, per window of the (cyclically shifted) padded volume.

    Returns a bool tensor (nW, N, N), True where query i may attend to key j: both come from the
    same region of the cyclic shift (never across the wrap) and key j is a real (not padded) token.
    Windows are in window_partition's order over the volume rolled by -shift.
    """
    labels = torch.zeros(padded, dtype=torch.long, device=device)
    valid = torch.ones(padded, dtype=torch.bool, device=device)
    for dim, (n, real, w, s) in enumerate(zip(padded, size, window, shift)):
        shape = [1, 1, 1]
        shape[dim] = n
        pos = torch.arange(n, device=device)
        # Swin's three slices [0, n-w), [n-w, n-s), [n-s, n): the last holds the wrapped tokens
        lab = (pos >= n - w).long() + (pos >= n - s).long() if s else torch.zeros_like(pos)
        labels = labels * 3 + lab.view(shape)
        # after torch.roll(-s) position p holds original position (p + s) mod n
        valid = valid & (torch.roll(pos < real, -s) if s else pos < real).view(shape)
    labels = window_partition(labels[None, ..., None], window)[0, :, :, 0]  # (nW, N)
    valid = window_partition(valid[None, ..., None], window)[0, :, :, 0]
    return (labels[:, :, None] == labels[:, None, :]) & valid[:, None, :]


def relative_position_index(window: Size3, max_window: Size3, device: torch.device | str | None = None) -> torch.Tensor:
    """(N, N) index into a bias table over 3D offsets of ``max_window``, for tokens of ``window``.

    The table has (2Wt-1)(2Wh-1)(2Ww-1) rows, one per offset (dt, dh, dw); a clamped (smaller)
    window indexes the same table by its true offsets.
    """
    coords = torch.stack(torch.meshgrid(*[torch.arange(w, device=device) for w in window], indexing='ij'))
    coords = coords.flatten(1)  # (3, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (3, N, N)
    mt, mh, mw = max_window
    rel = rel + torch.tensor([mt - 1, mh - 1, mw - 1], device=device).view(3, 1, 1)
    return (rel[0] * (2 * mh - 1) + rel[1]) * (2 * mw - 1) + rel[2]


class WindowLayout(NamedTuple):
    """How one kind of block (shifted or not) lays the padded volume out in windows.

    One gather by ``order`` does the cyclic roll, the window partition and puts the windows that
    need no mask first (they attend without any (N, N) mask being built); ``inverse`` undoes it.
    """
    order: torch.Tensor  # (P,) token gather index, P = padded D*H*W
    inverse: torch.Tensor  # (P,)
    num_clean: int  # windows, first in ``order``, that need no mask
    mask: torch.Tensor | None  # (nW - num_clean, N, N) additive, 0 or MASK_VALUE, for the others


class WindowPlan(NamedTuple):
    """Everything the attention blocks need for one input size; shared by all blocks."""
    size: Size3  # real (D, H, W)
    padded: Size3
    window: Size3
    shift: Size3
    rel_index: torch.Tensor  # (N, N) into the bias table
    plain: WindowLayout  # unshifted blocks (masks: padding only)
    shifted: WindowLayout  # shifted blocks (masks: padding and the wrap of the shift)


def window_layout(padded: Size3, size: Size3, window: Size3, shift: Size3,
                  device: torch.device | str | None = None) -> WindowLayout:
    """The WindowLayout of a padded volume whose real part is ``size``."""
    allowed = attention_mask(padded, size, window, shift, device)
    ids = torch.arange(math.prod(padded), device=device).view(padded)
    if any(shift):
        ids = torch.roll(ids, shifts=[-s for s in shift], dims=(0, 1, 2))
    ids = window_partition(ids[None, ..., None], window)[0, :, :, 0]  # (nW, N)
    needs = ~allowed.flatten(1).all(1)
    windows = torch.cat([(~needs).nonzero().flatten(), needs.nonzero().flatten()])
    order = ids[windows].flatten()
    mask = None
    if needs.any():
        mask = torch.zeros(allowed[needs].shape, device=device).masked_fill_(~allowed[needs], MASK_VALUE)
    return WindowLayout(order, torch.argsort(order), int((~needs).sum()), mask)


def make_window_plan(size: Size3, window_size: Size3, device: torch.device | str | None = None) -> WindowPlan:
    """The window plan for a real (D, H, W) token volume and the configured window size."""
    size = tuple(int(n) for n in size)
    window, shift = effective_window(size, tuple(window_size))
    padded = tuple(math.ceil(n / w) * w for n, w in zip(size, window))
    plain = window_layout(padded, size, window, (0, 0, 0), device)
    shifted = window_layout(padded, size, window, shift, device) if any(shift) else plain
    return WindowPlan(size, padded, window, shift, relative_position_index(window, tuple(window_size), device),
                      plain, shifted)


def pad_volume(x: torch.Tensor, padded: Size3, mode: str = 'replicate') -> torch.Tensor:
    """(B, D, H, W, C) -> (B, *padded, C), padded at the end of D, H, W."""
    pads = [p - n for p, n in zip(padded, x.shape[1:4])]
    if not any(pads):
        return x
    if mode == 'constant':
        return F.pad(x, (0, 0, 0, pads[2], 0, pads[1], 0, pads[0]))
    x = F.pad(x.permute(0, 4, 1, 2, 3), (0, pads[2], 0, pads[1], 0, pads[0]), mode=mode)
    return x.permute(0, 2, 3, 4, 1).contiguous()


# ----------------------------------------------------------------------------------------------
# transformer parts
class WindowAttention3D(nn.Module):
    """Multi-head self-attention inside 3D windows, with a relative position bias over 3D offsets."""

    def __init__(self, dim: int, num_heads: int, window_size: Size3, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'embed dim {dim} is not a multiple of num_heads {num_heads}')
        self.num_heads = num_heads
        self.window_size = tuple(window_size)
        wt, wh, ww = self.window_size
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * wt - 1) * (2 * wh - 1) * (2 * ww - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def _attend(self, x: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, nw, n, c = x.shape
        heads = self.num_heads
        q, k, v = self.qkv(x).view(b, nw, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
        if mask is None:
            # windows as the batch: the (heads, N, N) bias broadcasts, nothing (nW, N, N) is built
            shape = (b * nw, heads, n, c // heads)
            attn_mask = bias[None]
        else:
            # windows x heads as "heads": the per-window mask broadcasts over the batch
            shape = (b, nw * heads, n, c // heads)
            attn_mask = (mask[:, None] + bias[None]).reshape(1, nw * heads, n, n)
        out = F.scaled_dot_product_attention(q.reshape(shape), k.reshape(shape), v.reshape(shape),
                                             attn_mask=attn_mask.to(q.dtype))
        return self.proj(out.view(b, nw, heads, n, c // heads).transpose(2, 3).reshape(b, nw, n, c))

    def forward(self, x: torch.Tensor, rel_index: torch.Tensor, num_clean: int | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, nW, N, C) window tokens -> same. The first ``num_clean`` windows (all by default)
        attend freely, the others with ``mask`` (nW - num_clean, N, N), additive."""
        n = x.shape[2]
        num_clean = x.shape[1] if num_clean is None else num_clean
        bias = self.relative_position_bias_table[rel_index.reshape(-1)].view(n, n, -1).permute(2, 0, 1)
        if num_clean == x.shape[1]:
            return self._attend(x, bias, None)
        parts = [] if num_clean == 0 else [self._attend(x[:, :num_clean], bias, None)]
        parts.append(self._attend(x[:, num_clean:], bias, mask))
        return torch.cat(parts, dim=1)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinSTFBlock(nn.Module):
    """Pre-norm 3D (shifted-)window attention + MLP, each with a residual and DropPath."""

    def __init__(self, dim: int, num_heads: int, window_size: Size3, shifted: bool = False, mlp_ratio: float = 2.0,
                 qkv_bias: bool = True, drop_path: float = 0.0):
        super().__init__()
        self.shifted = shifted
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention3D(dim, num_heads, window_size, qkv_bias)
        self.drop_path = StochasticDepth(drop_path, mode='row')
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
        """(B, D, H, W, C) padded to plan.padded -> same."""
        layout = plan.shifted if self.shifted else plan.plain
        b, c = x.shape[0], x.shape[-1]
        y = self.norm1(x).reshape(b, -1, c).index_select(1, layout.order)  # rolled, in windows
        y = self.attn(y.view(b, -1, math.prod(plan.window), c), plan.rel_index, layout.num_clean, layout.mask)
        y = y.reshape(b, -1, c).index_select(1, layout.inverse).view(x.shape)
        x = x + self.drop_path(y)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ResidualGroup(nn.Module):
    """RSTB-like: attention blocks (every other one shifted), a per-frame 3x3 conv, a residual."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: Size3, mlp_ratio: float, qkv_bias: bool,
                 drop_path: list[float], use_checkpoint: bool = False):
        super().__init__()
        self.use_checkpoint = use_checkpoint
        self.pad_mode = 'replicate'
        self.blocks = nn.ModuleList([
            SwinSTFBlock(dim, num_heads, window_size, i % 2 == 1, mlp_ratio, qkv_bias, drop_path[i])
            for i in range(depth)])
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor, plan: WindowPlan) -> torch.Tensor:
        """(B, D, H, W, C) real size -> same."""
        d, h, w = plan.size
        y = pad_volume(x, plan.padded, self.pad_mode)
        for blk in self.blocks:
            if self.use_checkpoint and torch.is_grad_enabled():
                y = checkpoint(blk, y, plan, use_reentrant=False)
            else:
                y = blk(y, plan)
        # the conv sees the real volume only (zero border like every conv here), not the padding
        y = y[:, :d, :h, :w].permute(0, 1, 4, 2, 3).flatten(0, 1)
        y = self.conv(y).unflatten(0, (x.shape[0], d)).permute(0, 1, 3, 4, 2)
        return x + y


# ----------------------------------------------------------------------------------------------
@ARCH_REGISTRY.register()
class SwinSTF(STFNetwork):
    """STF network with video-Swin attention: LR frames (B, T, C, h, w) + key frames (B, K, C, 4h, 4w)
    -> HR frame (B, num_out_ch, 4h, 4w). Any h, w (padded internally to window multiples).

    Args:
        num_in_ch, num_out_ch: image channels.
        num_frame: LR frames T. num_frame_hi: key frames K (0: LR-only).
        embed_dim: token channels. depths / num_heads: blocks and heads of each residual group.
        window_size: [Wt, Wh, Ww] attention window (time, height, width); clamped to the input
            where larger. Wt >= T + K: every window spans all frames and time is not shifted.
        mlp_ratio, qkv_bias, drop_path_rate: as in Swin (drop path grows linearly over blocks).
        hr_encoder: 'pool' | 'unshuffle' (see STFNetwork.add_hr_encoder).
        base: 'bilinear' | 'bicubic' | 'key_blend' (see STFNetwork.base_image).
        with_pcd: align every frame to the centre LR frame with EDVR's PCD before attention.
        deformable_groups: PCD's (with_pcd only).
        center_frame_idx: index of the target LR frame (default: the middle one).
        use_checkpoint: recompute blocks in backward (torch.utils.checkpoint) to save memory.
        num_feat_up: channels of the x4 decoder.
    """

    def __init__(self,
                 num_in_ch: int = 1,
                 num_out_ch: int = 1,
                 num_frame: int = 3,
                 num_frame_hi: int = 2,
                 embed_dim: int = 96,
                 depths: list[int] | tuple[int, ...] = (6, 6, 6, 6),
                 num_heads: list[int] | tuple[int, ...] = (6, 6, 6, 6),
                 window_size: list[int] | tuple[int, ...] = (5, 8, 8),
                 mlp_ratio: float = 2.0,
                 qkv_bias: bool = True,
                 drop_path_rate: float = 0.1,
                 hr_encoder: str = 'pool',
                 base: str = 'bilinear',
                 with_pcd: bool = False,
                 deformable_groups: int = 8,
                 center_frame_idx: int | None = None,
                 use_checkpoint: bool = False,
                 num_feat_up: int = 64,
                 fast_deform_conv: bool | None = None):
        super().__init__(num_frame, num_frame_hi, center_frame_idx)
        if len(depths) != len(num_heads):
            raise ValueError(f'depths {list(depths)} and num_heads {list(num_heads)} differ in length')
        if len(window_size) != 3:
            raise ValueError(f'window_size must be [Wt, Wh, Ww], got {window_size}')
        self.window_size = tuple(int(w) for w in window_size)
        self.hr_encoder = hr_encoder
        self.with_pcd = with_pcd
        total_frames = num_frame + num_frame_hi

        # per-frame embedding
        self.conv_first = nn.Conv2d(num_in_ch, embed_dim, 3, 1, 1)
        if self.uses_keys:
            self.add_hr_encoder(hr_encoder, num_in_ch, embed_dim)
        if with_pcd:
            self.conv_l2_1 = nn.Conv2d(embed_dim, embed_dim, 3, 2, 1)
            self.conv_l2_2 = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
            self.conv_l3_1 = nn.Conv2d(embed_dim, embed_dim, 3, 2, 1)
            self.conv_l3_2 = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
            self.pcd_align = PCDAlignment(num_feat=embed_dim, deformable_groups=deformable_groups)

        # tokens: a learned embedding per frame slot (LR t-r..t+r, key frames) tells them apart even
        # when the time window does not span all frames
        self.frame_embed = nn.Parameter(torch.zeros(1, total_frames, 1, 1, embed_dim))
        nn.init.trunc_normal_(self.frame_embed, std=0.02)
        self.norm_embed = nn.LayerNorm(embed_dim)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(len(depths))]
        self.groups = nn.ModuleList([
            ResidualGroup(embed_dim, depth, heads, self.window_size, mlp_ratio, qkv_bias,
                          dpr[start:start + depth], use_checkpoint)
            for depth, heads, start in zip(depths, num_heads, starts)])
        self.norm = nn.LayerNorm(embed_dim)
        self.fusion = nn.Conv2d(total_frames * embed_dim, embed_dim, 1, 1)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)

        # x4 decoder
        self.conv_before_upsample = nn.Conv2d(embed_dim, num_feat_up, 3, 1, 1)
        self.add_x4_decoder(num_feat_up, num_out_ch, num_feat_up)
        self.add_base(base, embed_dim)

        for module in self.groups.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        if with_pcd:
            use_fast_deform_conv(self, fast_deform_conv)
        self._plans: dict = {}

    @property
    def pad_mode(self) -> str:
        """What padded tokens hold ('replicate', 'reflect', 'constant'); masked, so it does not change outputs."""
        return self.groups[0].pad_mode if len(self.groups) else 'replicate'

    @pad_mode.setter
    def pad_mode(self, mode: str) -> None:
        for group in self.groups:
            group.pad_mode = mode

    def window_plan(self, size: Size3, device: torch.device) -> WindowPlan:
        """The window plan for a (D, h, w) token volume, cached per size and device."""
        # inference-mode tensors must not reach autograd later, so they get their own entry
        key = (tuple(size), str(device), torch.is_inference_mode_enabled())
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= 8:
                self._plans.clear()
            plan = self._plans[key] = make_window_plan(size, self.window_size, device)
        return plan

    # The forward pass in two stages, as EDVRSTF's, for sequence inference (xfusion.inference):
    # encode (per frame: the convolutional embedding) is cached across sliding windows; decode
    # (PCD alignment, attention over the window, reconstruction) needs the whole window.
    def encode(self, frames: torch.Tensor, key: bool = False) -> tuple[torch.Tensor]:
        """(N, C, h, w) LR frames or (N, C, 4h, 4w) key frames -> ((N, F, h, w) embedding,)."""
        if key:
            return (self.encode_hr(frames),)
        return (self.lrelu(self.conv_first(frames)),)

    def decode(self, lr_feats: list[tuple[torch.Tensor]], key_feats: list[tuple[torch.Tensor]],
               lq_center: torch.Tensor, hq: torch.Tensor | None, key_weights: torch.Tensor | None) -> torch.Tensor:
        """Per-frame embeddings of the LR window and the key frames -> HR frame at the centre time."""
        feats = torch.stack([f[0] for f in lr_feats + key_feats], dim=1)
        if self.with_pcd:
            feats = self.align(feats)
        return self.reconstruct(self.fuse(feats), lq_center, hq, key_weights)

    def pyramid(self, feat_l1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, F, h, w) features, h and w multiples of 4 -> three pyramid levels (with_pcd only). Per frame."""
        feat_l2 = self.lrelu(self.conv_l2_2(self.lrelu(self.conv_l2_1(feat_l1))))
        feat_l3 = self.lrelu(self.conv_l3_2(self.lrelu(self.conv_l3_1(feat_l2))))
        return feat_l1, feat_l2, feat_l3

    def align(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, D, F, h, w) frame features -> the same, each PCD-aligned to the centre LR frame."""
        b, d, c, h, w = feats.shape
        ph, pw = -h % 4, -w % 4  # the pyramid halves twice
        x = feats.flatten(0, 1)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode='replicate')
        levels = [lvl.unflatten(0, (b, d)) for lvl in self.pyramid(x)]
        ref = [lvl[:, self.center_frame_idx] for lvl in levels]
        aligned = torch.stack([self.pcd_align([lvl[:, i] for lvl in levels], ref) for i in range(d)], dim=1)
        return aligned[..., :h, :w]

    def fuse(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, D, F, h, w) frame features (LR frames first, then key frames) -> (B, F, h, w) fused."""
        b, d, c, h, w = feats.shape
        x = self.norm_embed(feats.permute(0, 1, 3, 4, 2) + self.frame_embed)
        plan = self.window_plan((d, h, w), feats.device)
        for group in self.groups:
            x = group(x, plan)
        x = self.norm(x)
        centre = x[:, self.center_frame_idx].permute(0, 3, 1, 2)
        fused = self.fusion(x.permute(0, 1, 4, 2, 3).flatten(1, 2))
        return self.conv_after_body(centre + fused) + feats[:, self.center_frame_idx]

    def reconstruct(self, feat: torch.Tensor, lq_center: torch.Tensor, hq: torch.Tensor | None,
                    key_weights: torch.Tensor | None) -> torch.Tensor:
        """(B, F, h, w) fused features -> HR frame (residual + base)."""
        out = self.upsample_x4(self.lrelu(self.conv_before_upsample(feat)))
        return out + self.base_image(feat, lq_center, hq, key_weights)
