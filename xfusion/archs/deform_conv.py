"""Modulated deformable convolution (DCNv2) that is fast on CPU.

torchvision's ``deform_conv2d`` is exact but slow on CPU, its backward most of all (about
70 % of a training iteration, measured). The same operation written as bilinear sampling
(``grid_sample``) of every kernel tap followed by one matrix product is exact too (the same
formula, differentiated by autograd) and several times faster on CPU. On CUDA, torchvision's
kernel is used. BasicSR's ``DCNv2Pack`` modules are switched in place, so parameter names and
checkpoints are unchanged.
"""
from __future__ import annotations

import torch
import torchvision
from basicsr.archs.arch_util import DCNv2Pack
from torch import nn
from torch.nn import functional as F


def modulated_deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                            bias: torch.Tensor | None, padding: int = 1, dilation: int = 1) -> torch.Tensor:
    """torchvision.ops.deform_conv2d (stride 1, one weight group) by grid_sample + matmul.

    Offsets follow torchvision: channel 2*(g*K + k) is the y shift and 2*(g*K + k) + 1 the x
    shift of kernel tap k in offset group g; ``mask`` has one channel per (g, k).
    """
    b, c, h, w = x.shape
    c_out, _, kh, kw = weight.shape
    taps = kh * kw
    groups = offset.shape[1] // (2 * taps)
    h_out, w_out = offset.shape[-2:]
    if h < 2 or w < 2:  # grid_sample's pixel normalisation needs two pixels a side
        return torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=padding, dilation=dilation, mask=mask)

    # sampling positions (y, x) of every tap at every output pixel, in input pixels
    dtype, device = x.dtype, x.device
    ky, kx = torch.meshgrid(torch.arange(kh, device=device, dtype=dtype) * dilation,
                            torch.arange(kw, device=device, dtype=dtype) * dilation, indexing='ij')
    oy = torch.arange(h_out, device=device, dtype=dtype) - padding
    ox = torch.arange(w_out, device=device, dtype=dtype) - padding
    off = offset.view(b, groups, taps, 2, h_out, w_out)
    pos_y = off[:, :, :, 0] + (ky.reshape(taps, 1, 1) + oy.view(1, h_out, 1))
    pos_x = off[:, :, :, 1] + (kx.reshape(taps, 1, 1) + ox.view(1, 1, w_out))
    # grid_sample (align_corners=True, zero padding) reads pixel p at -1 + 2p/(size-1)
    grid = torch.stack([pos_x * (2.0 / (w - 1)) - 1.0, pos_y * (2.0 / (h - 1)) - 1.0], dim=-1)
    grid = grid.view(b * groups, taps * h_out, w_out, 2)

    sampled = F.grid_sample(x.reshape(b * groups, c // groups, h, w), grid, mode='bilinear',
                            padding_mode='zeros', align_corners=True)  # (B*G, C/G, K*h, w)
    sampled = sampled.view(b, groups, c // groups, taps, h_out, w_out)
    sampled = sampled * mask.view(b, groups, 1, taps, h_out, w_out)
    columns = sampled.reshape(b, c * taps, h_out * w_out)  # channel-major, tap-minor like weight
    out = torch.matmul(weight.reshape(c_out, c * taps), columns).view(b, c_out, h_out, w_out)
    if bias is not None:
        out = out + bias.view(1, -1, 1, 1)
    return out


def deform_conv2d(x: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor,
                  bias: torch.Tensor | None, padding: int = 1, dilation: int = 1,
                  fast: bool | None = None) -> torch.Tensor:
    """Modulated deformable convolution (stride 1, one weight group) by the path for x's device: grid_sample
    on CPU, torchvision's kernel on CUDA; ``fast`` True / False forces grid_sample / torchvision."""
    if (not x.is_cuda) if fast is None else fast:
        return modulated_deform_conv2d(x, offset, mask, weight, bias, padding, dilation)
    return torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=padding, dilation=dilation, mask=mask)


class SwitchableDCNv2Pack(DCNv2Pack):
    """BasicSR's DCNv2Pack whose sampling runs by grid_sample on CPU and by torchvision on CUDA.

    ``fast`` = None picks per device (grid_sample on CPU), True / False forces grid_sample /
    torchvision.
    """
    fast: bool | None = None

    def forward(self, x: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        o1, o2, mask = torch.chunk(self.conv_offset(feat), 3, dim=1)
        offset = torch.cat((o1, o2), dim=1)
        mask = torch.sigmoid(mask)
        # BasicSR's DCNv2Pack (stride 1, one weight group, square padding) is all the fast path covers
        if self.stride in (1, (1, 1)) and self.groups == 1 and isinstance(self.padding, int) \
                and isinstance(self.dilation, int):
            return deform_conv2d(x, offset, mask, self.weight, self.bias, self.padding, self.dilation, self.fast)
        return torchvision.ops.deform_conv2d(x, offset, self.weight, self.bias, self.stride, self.padding,
                                             self.dilation, mask)


def use_fast_deform_conv(net: nn.Module, fast: bool | None = None) -> nn.Module:
    """Switch every DCNv2Pack in ``net`` to SwitchableDCNv2Pack (same parameters) with mode ``fast``."""
    for module in net.modules():
        if isinstance(module, DCNv2Pack):
            # Same attributes and parameters, only forward differs: re-classing keeps state dicts identical.
            module.__class__ = SwitchableDCNv2Pack
            module.fast = fast
    return net
