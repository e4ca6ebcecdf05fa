import pytest
import torch
import torchvision

from xfusion.archs.deform_conv import SwitchableDCNv2Pack, modulated_deform_conv2d
from xfusion.archs.edvrstf_arch import EDVRSTF


def inputs(dtype, b=2, c=16, groups=4, h=9, w=11, scale=3.0):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, c, h, w, dtype=dtype, generator=g)
    offset = torch.randn(b, 2 * groups * 9, h, w, dtype=dtype, generator=g) * scale  # also samples outside
    mask = torch.rand(b, groups * 9, h, w, dtype=dtype, generator=g)
    weight = torch.randn(8, c, 3, 3, dtype=dtype, generator=g)
    bias = torch.randn(8, dtype=dtype, generator=g)
    return [t.requires_grad_() for t in (x, offset, mask, weight, bias)]


@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_outputs_and_gradients_match_torchvision(dtype, tol):
    x, offset, mask, weight, bias = args = inputs(dtype)
    ref = torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, padding=1)
    assert (out - ref).abs().max() < tol
    grad_out = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, args, grad_out)
    grads = torch.autograd.grad(out, args, grad_out)
    for name, a, b in zip(['x', 'offset', 'mask', 'weight', 'bias'], ref_grads, grads):
        scale = max(1.0, a.abs().max().item())
        assert (a - b).abs().max() / scale < tol, name


def test_dilation_and_integer_offsets():
    x, offset, mask, weight, bias = inputs(torch.float64, scale=0.0)
    offset = offset.detach().round()
    ref = torchvision.ops.deform_conv2d(x, offset, weight, bias, padding=2, dilation=2, mask=mask)
    out = modulated_deform_conv2d(x, offset, mask, weight, bias, padding=2, dilation=2)
    assert (out - ref).abs().max() < 1e-10


def test_network_uses_switchable_dcn_and_both_paths_agree():
    torch.manual_seed(0)
    net = EDVRSTF(num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1).eval()
    packs = [m for m in net.modules() if isinstance(m, SwitchableDCNv2Pack)]
    assert len(packs) == 4  # three pyramid levels + cascading
    lq, hq = torch.rand(1, 3, 1, 8, 12), torch.rand(1, 2, 1, 32, 48)
    with torch.no_grad():
        for m in packs:
            m.fast = True
        fast = net(lq, hq)
        for m in packs:
            m.fast = False
        slow = net(lq, hq)
    assert (fast - slow).abs().max() < 1e-5
