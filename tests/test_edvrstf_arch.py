import json

import numpy as np
import pytest
import torch
from basicsr.archs import build_network

from helpers import DATA
from xfusion.archs.edvrstf_arch import EDVRSTF

SMALL = json.loads((DATA / 'small_layout.json').read_text())['config']


@pytest.mark.parametrize('fast_deform_conv', [False, True])
def test_original_checkpoint_loads_strictly_and_reproduces_its_output(fast_deform_conv):
    net = EDVRSTF(**SMALL, hr_encoder='pool', base='bilinear', fast_deform_conv=fast_deform_conv).eval()
    net.load_state_dict(torch.load(DATA / 'small_net_g.pth')['params'], strict=True)
    io = np.load(DATA / 'small_io.npz')
    with torch.no_grad():
        out = net(torch.from_numpy(io['lq']), torch.from_numpy(io['hq']))
    assert out.shape == io['out'].shape
    # float32 summed in another order (threads, SIMD width) differs by ~2e-6 of the output's scale (up to 5 here):
    # 1e-5 absolute failed with 2 threads on an AVX2 machine (1.01e-5); a wrong weight is off by 1e-1 and more
    assert np.abs(out.numpy() - io['out']).max() < 1e-5 * np.abs(io['out']).max()


def test_paper_size_layout_has_exactly_the_original_names_and_shapes():
    layout = json.loads((DATA / 'paper_size_layout.json').read_text())
    net = EDVRSTF(**layout['config'])
    shapes = {k: list(v.shape) for k, v in net.state_dict().items()}
    assert shapes == layout['state_dict_shapes']


def test_registered_and_built_from_options():
    net = build_network({'type': 'EDVRSTF', **SMALL})
    assert isinstance(net, EDVRSTF)


def small(**kwargs):
    cfg = dict(num_in_ch=1, num_out_ch=1, num_feat=8, num_frame=3, num_frame_hi=2, deformable_groups=2,
               num_extract_block=1, num_reconstruct_block=1)
    cfg.update(kwargs)
    torch.manual_seed(0)
    return EDVRSTF(**cfg).eval()


@pytest.mark.parametrize('hr_encoder', ['pool', 'unshuffle'])
@pytest.mark.parametrize('base', ['bilinear', 'bicubic', 'key_blend'])
def test_grayscale_output_for_every_encoder_and_base(hr_encoder, base):
    net = small(hr_encoder=hr_encoder, base=base)
    lq, hq = torch.rand(2, 3, 1, 8, 12), torch.rand(2, 2, 1, 32, 48)
    out = net(lq, hq, torch.tensor([[0.7, 0.3], [0.5, 0.5]]))
    assert out.shape == (2, 1, 32, 48)
    assert torch.isfinite(out).all()


def test_unshuffle_encoder_has_no_full_resolution_convs():
    pool, unshuffle = small(hr_encoder='pool'), small(hr_encoder='unshuffle')
    assert pool.conv_first_hi.in_channels == 1
    assert unshuffle.conv_first_hi.in_channels == 16 and not hasattr(unshuffle, 'conv2_hi')


def test_lr_only_baseline_has_no_hr_branch():
    net = small(num_frame_hi=0)
    assert not any(k.endswith('_hi.weight') for k in net.state_dict())
    assert net.fusion.feat_fusion.in_channels == 3 * 8
    assert net(torch.rand(1, 3, 1, 8, 8)).shape == (1, 1, 32, 32)


def test_key_blend_starts_from_the_closer_agreeing_key_frame():
    """Untrained, the base copies the key frames that agree with the LR frame, weighted by closeness."""
    net = small(base='key_blend')
    pattern = torch.rand(1, 1, 32, 32) * 0.5
    lq = torch.nn.functional.avg_pool2d(pattern, 4)  # the LR camera sees the scene of key frame 0
    feat = torch.zeros(1, 8, 8, 8)
    # both key frames agree with the LR frame: the closer one dominates
    hq = torch.stack([pattern, pattern + 0.01], dim=1)
    near_k1 = net.base_image(feat, lq, hq, torch.tensor([[0.1, 0.9]]))
    near_k0 = net.base_image(feat, lq, hq, torch.tensor([[0.9, 0.1]]))
    assert (near_k1 - pattern).mean() > 0.007 and (near_k0 - pattern).mean() < 0.003
    # key frame 1 is out of date (the scene changed): the base falls back to key frame 0 despite its weight
    hq = torch.stack([pattern, pattern + 0.3], dim=1)
    out = net.base_image(feat, lq, hq, torch.tensor([[0.1, 0.9]]))
    assert (out - pattern).abs().mean() < 0.02
    # neither agrees: the base is the upsampled LR frame
    hq = torch.stack([pattern + 0.3, pattern - 0.3], dim=1)
    out = net.base_image(feat, lq, hq, torch.tensor([[0.5, 0.5]]))
    up = torch.nn.functional.interpolate(lq, scale_factor=4, mode='bilinear', align_corners=False)
    assert (out - up).abs().mean() < 0.02


def test_bad_inputs_raise_clear_errors():
    net = small()
    with pytest.raises(ValueError, match='LR frames'):
        net(torch.rand(1, 2, 1, 8, 8), torch.rand(1, 2, 1, 32, 32))
    with pytest.raises(ValueError, match='multiples of 4'):
        net(torch.rand(1, 3, 1, 6, 8), torch.rand(1, 2, 1, 24, 32))
    with pytest.raises(ValueError, match='key frames'):
        net(torch.rand(1, 3, 1, 8, 8), None)
    with pytest.raises(ValueError, match='4x'):
        net(torch.rand(1, 3, 1, 8, 8), torch.rand(1, 2, 1, 16, 16))
    with pytest.raises(ValueError):
        small(hr_encoder='stride')
    with pytest.raises(ValueError):
        small(base='key_blend', num_frame_hi=0)
    with pytest.raises(ValueError):
        small(hr_in=True)
