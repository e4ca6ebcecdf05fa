"""SwinSTF: shapes, padding, shifted-window masks, relative positions, training, state dicts."""
from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.nn import functional as F

import xfusion  # noqa: F401  (registers the networks)
from xfusion.archs import swinstf_arch
from xfusion.archs.swinstf_arch import (
    SwinSTF,
    SwinSTFBlock,
    attention_mask,
    effective_window,
    make_window_plan,
    relative_position_index,
    window_partition,
)

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(embed_dim=16, depths=[2], num_heads=[2], window_size=[5, 4, 4], num_feat_up=16, drop_path_rate=0.0)


def small_net(seed: int = 0, **kwargs) -> SwinSTF:
    torch.manual_seed(seed)
    return SwinSTF(**{**SMALL, **kwargs}).eval()


def inputs(b: int = 2, h: int = 10, w: int = 14, k: int = 2, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    lq = torch.rand(b, 3, 1, h, w, generator=g)
    hq = torch.rand(b, k, 1, 4 * h, 4 * w, generator=g) if k else None
    return lq, hq


@pytest.fixture(autouse=True)
def _one_thread():
    # These networks are tiny: one thread is as fast, and OpenMP threads spin badly when other
    # processes hold the cores (20 training steps: 0.3 s alone, 37 s with 2 threads on a busy 2-core box).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# shapes, padding, options
@pytest.mark.parametrize('size', [(10, 14), (8, 16)])  # not window multiples / multiples
def test_output_shape_and_determinism(size):
    net = small_net()
    lq, hq = inputs(h=size[0], w=size[1])
    with torch.no_grad():
        out = net(lq, hq)
        again = net(lq, hq)
    assert out.shape == (2, 1, 4 * size[0], 4 * size[1])
    assert torch.isfinite(out).all()
    assert torch.equal(out, again)


def noisy_padding(monkeypatch, scale: float = 10.0) -> None:
    """Make pad_volume fill the padding with large noise instead of replicated values."""
    pad_volume = swinstf_arch.pad_volume

    def noisy(x: torch.Tensor, padded, mode: str = 'replicate') -> torch.Tensor:
        y = pad_volume(x, padded, 'constant')
        real = torch.zeros(y.shape[1:4], dtype=torch.bool)
        real[:x.shape[1], :x.shape[2], :x.shape[3]] = True
        return torch.where(real[None, ..., None], y, scale * torch.randn_like(y))

    monkeypatch.setattr(swinstf_arch, 'pad_volume', noisy)


@pytest.mark.parametrize('window_size', [[5, 4, 4], [2, 4, 4]])  # the second pads and shifts time too
def test_padding_does_not_leak(monkeypatch, window_size):
    """Padded tokens are masked as attention keys and the convs see the real volume only: what the
    padding holds cannot change the output. Control: without the key mask it does, a lot."""
    net = small_net(window_size=window_size)
    lq, hq = inputs(h=10, w=14)
    outs = {}
    with torch.no_grad():
        # at init (std 0.02) attention barely acts; larger weights give the control something to see
        for module in net.groups.modules():
            if isinstance(module, torch.nn.Linear):
                module.weight.mul_(10)
        for mode in ('replicate', 'reflect', 'constant'):
            net.pad_mode = mode
            outs[mode] = net(lq, hq)
        noisy_padding(monkeypatch)
        outs['noise'] = net(lq, hq)
        for mode in ('reflect', 'constant', 'noise'):
            assert torch.allclose(outs['replicate'], outs[mode], atol=1e-5), mode

        monkeypatch.setattr(swinstf_arch, 'MASK_VALUE', 0.0)  # masks become no-ops
        net._plans.clear()
        assert (net(lq, hq) - outs['replicate']).abs().max() > 1e-3


def test_batch_items_independent():
    """Window masks broadcast over the batch: each item's output equals its output alone."""
    net = small_net()
    lq, hq = inputs(b=2, h=10, w=14)
    with torch.no_grad():
        both = net(lq, hq)
        first = net(lq[:1], hq[:1])
    assert torch.allclose(both[:1], first, atol=1e-5)


def test_time_window_shorter_than_frames():
    """Wt=2 < T+K=5: time is padded (to 6) and shifted."""
    net = small_net(window_size=[2, 4, 4])
    plan = net.window_plan((5, 10, 14), torch.device('cpu'))
    assert plan.window == (2, 4, 4) and plan.shift == (1, 2, 2) and plan.padded == (6, 12, 16)
    lq, hq = inputs(h=10, w=14)
    with torch.no_grad():
        out = net(lq, hq)
    assert out.shape == (2, 1, 40, 56) and torch.isfinite(out).all()


def test_lr_only():
    net = small_net(num_frame_hi=0)
    lq, _ = inputs(h=10, w=14, k=0)
    with torch.no_grad():
        out = net(lq)
    assert out.shape == (2, 1, 40, 56)
    assert not hasattr(net, 'conv_first_hi')
    # T=3 < Wt=5: the time window is clamped to the frames and not shifted
    assert effective_window((3, 10, 14), (5, 4, 4)) == ((3, 4, 4), (0, 2, 2))


@pytest.mark.parametrize('hr_encoder', ['pool', 'unshuffle'])
@pytest.mark.parametrize('base', ['bilinear', 'bicubic', 'key_blend'])
def test_hr_encoders_and_bases(hr_encoder, base):
    net = small_net(hr_encoder=hr_encoder, base=base)
    lq, hq = inputs(h=10, w=14)
    weights = torch.tensor([[0.75, 0.25], [0.1, 0.9]])
    with torch.no_grad():
        out = net(lq, hq, weights)
    assert out.shape == (2, 1, 40, 56)
    assert torch.isfinite(out).all()
    if base == 'key_blend':
        # key weights steer the blend: a different weighting gives a different output
        with torch.no_grad():
            other = net(lq, hq, weights.flip(1))
        assert (out - other).abs().max() > 1e-3


def test_with_pcd():
    net = small_net(with_pcd=True, deformable_groups=2)
    lq, hq = inputs(b=1, h=10, w=14)  # not multiples of 4: padded for the pyramid, cropped back
    with torch.no_grad():
        out = net(lq, hq)
    assert out.shape == (1, 1, 40, 56)
    assert torch.isfinite(out).all()


def test_staged_forward_matches_forward():
    """The cacheable per-frame stages give the forward pass when put together by hand."""
    net = small_net()
    lq, hq = inputs(b=1)
    with torch.no_grad():
        lr = [net.encode(lq[:, i]) for i in range(3)]  # per LR frame: cacheable
        hr = [net.encode(hq[:, i], key=True) for i in range(2)]  # per key frame: cacheable
        out = net.reconstruct(net.fuse(torch.stack([f[0] for f in lr + hr], dim=1)), lq[:, 1], hq, None)
        assert torch.allclose(out, net(lq, hq), atol=1e-6)


def test_bad_inputs():
    net = small_net()
    lq, hq = inputs()
    with pytest.raises(ValueError):
        net(lq[:, :2], hq)
    with pytest.raises(ValueError):
        net(lq, None)
    with pytest.raises(ValueError):
        net(lq, hq[..., :-4])


# ----------------------------------------------------------------------------------------------
# windows and masks
def test_window_partition():
    x = torch.randn(2, 4, 8, 12, 3)
    windows = window_partition(x, (2, 4, 4))
    assert windows.shape == (2, 2 * 2 * 3, 32, 3)
    # windows in (t, y, x) row-major order, tokens too: window 1 is the block [0:2, 0:4, 4:8]
    assert torch.equal(windows[:, 0], x[:, :2, :4, :4].reshape(2, 32, 3))
    assert torch.equal(windows[:, 1], x[:, :2, :4, 4:8].reshape(2, 32, 3))
    assert torch.equal(windows[:, 3], x[:, :2, 4:8, :4].reshape(2, 32, 3))


def test_shifted_window_mask():
    """Tokens may attend iff they come from the same side of the cyclic-shift wrap in every
    dimension and the key is a real token; built here independently of the module's method."""
    size, window_size = (3, 6, 7), (2, 4, 4)
    window, shift = effective_window(size, window_size)
    assert window == (2, 4, 4) and shift == (1, 2, 2)
    padded = (4, 8, 8)
    allowed = attention_mask(padded, size, window, shift).numpy()
    n_win = [p // w for p, w in zip(padded, window)]
    assert allowed.shape == (int(np.prod(n_win)), 32, 32)

    for wi, win in enumerate(itertools.product(*[range(n) for n in n_win])):
        # shifted-volume coordinates of the window's tokens, (t, y, x) row-major
        pos = [tuple(wd * w + o for wd, w, o in zip(win, window, off))
               for off in itertools.product(*[range(w) for w in window])]
        orig = [tuple((p + s) % n for p, s, n in zip(q, shift, padded)) for q in pos]
        wrapped = [tuple(p + s >= n for p, s, n in zip(q, shift, padded)) for q in pos]
        real = [all(o < n for o, n in zip(q, size)) for q in orig]
        for i, j in itertools.product(range(len(pos)), repeat=2):
            expected = wrapped[i] == wrapped[j] and real[j]
            assert allowed[wi, i, j] == expected, (win, pos[i], pos[j])
            if expected:  # never across the wrap: original coordinates lie within one window
                assert all(abs(a - b) < w for a, b, w in zip(orig[i], orig[j], window))

    # the plan keeps masks only for windows that need them: none without shift and padding
    plan = make_window_plan((4, 8, 8), window_size)
    assert plan.plain.mask is None and plan.plain.num_clean == 8
    n_wrap = 2 * 2 * 2 - 1 * 1 * 1  # windows touching the wrap in t, y or x
    assert plan.shifted.num_clean == 8 - n_wrap and plan.shifted.mask.shape == (n_wrap, 32, 32)


def test_window_layout_gather():
    """The layout's single gather equals roll + window_partition (clean windows first), and inverts."""
    size, window = (3, 6, 7), (2, 4, 4)
    plan = make_window_plan(size, window)
    x = torch.randn(2, *plan.padded, 5)
    layout = plan.shifted
    gathered = x.reshape(2, -1, 5)[:, layout.order].view(2, -1, 32, 5)
    windows = window_partition(torch.roll(x, shifts=[-s for s in plan.shift], dims=(1, 2, 3)), window)
    allowed = attention_mask(plan.padded, size, window, plan.shift)
    needs = ~allowed.flatten(1).all(1)
    assert torch.equal(gathered, torch.cat([windows[:, ~needs], windows[:, needs]], dim=1))
    assert torch.equal(gathered.reshape(2, -1, 5)[:, layout.inverse].view(x.shape), x)
    assert torch.equal(layout.mask == 0, allowed[needs])


def test_shift_blocks_attention_across_the_wrap():
    """One shifted block: perturbing a token just past the wrap changes tokens of its own region
    in the window but none of the window's other regions (control: without the mask it does)."""
    torch.manual_seed(0)
    block = SwinSTFBlock(8, 2, (2, 4, 4), shifted=True).eval()
    plan = make_window_plan((2, 8, 8), (2, 4, 4))
    assert plan.shift == (0, 2, 2) and plan.plain.mask is None
    x = torch.randn(1, 2, 8, 8, 8)
    y = x.clone()
    # original (0, 0); rolled by -2 it sits in the last window's wrapped corner (a random vector:
    # LayerNorm would remove a constant one)
    y[0, 0, 0, 0] += 5.0 * torch.randn(8)
    # that window holds original rows/cols {6, 7} (not wrapped) and {0, 1} (wrapped)
    same = [(r, c) for r in (0, 1) for c in (0, 1) if (r, c) != (0, 0)]
    other = [(r, c) for r in (0, 1, 6, 7) for c in (0, 1, 6, 7) if not (r < 2 and c < 2)]
    with torch.no_grad():
        for masked in (True, False):
            p = plan if masked else plan._replace(shifted=plan.shifted._replace(mask=plan.shifted.mask * 0))
            diff = (block(x, p) - block(y, p)).abs().amax(dim=(0, 1, 4))  # (8, 8) over rows, cols
            assert all(diff[r, c] > 1e-4 for r, c in same)
            if masked:
                assert all(diff[r, c] < 1e-6 for r, c in other)  # exp(-100) of a masked key: nil
                assert diff[2:6].max() == 0 and diff[:, 2:6].max() == 0  # other windows untouched
            else:
                assert max(diff[r, c] for r, c in other) > 1e-4


def test_relative_position_index():
    window = (5, 4, 4)
    index = relative_position_index(window, window)
    n = 5 * 4 * 4
    table_size = (2 * 5 - 1) * (2 * 4 - 1) * (2 * 4 - 1)
    assert index.shape == (n, n)
    assert sorted(index.unique().tolist()) == list(range(table_size))  # every 3D offset, in range
    coords = torch.tensor(list(itertools.product(*[range(w) for w in window])))
    offsets = coords[:, None] - coords[None]  # (N, N, 3)
    # one index per offset, one offset per index
    pairs = {(int(i), tuple(o.tolist())) for i, o in zip(index.flatten(), offsets.reshape(-1, 3))}
    assert len({i for i, _ in pairs}) == len({o for _, o in pairs}) == len(pairs) == table_size
    # a clamped window indexes the same table by its true offsets
    small = relative_position_index((3, 4, 4), window)
    sub = torch.tensor([t * 16 + y * 4 + x for t in range(3) for y in range(4) for x in range(4)])
    assert torch.equal(small, index[sub][:, sub])

    net = small_net(depths=[2], num_heads=[2])
    table = net.groups[0].blocks[0].attn.relative_position_bias_table
    assert table.shape == (table_size, 2)
    assert 0.015 < table.std() < 0.025 and table.abs().max() < 0.2  # trunc_normal_(std=0.02)


# ----------------------------------------------------------------------------------------------
# training, checkpointing, state dicts, options
def smooth_batch(b: int = 2, h: int = 8, w: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    hr = F.interpolate(torch.rand(b, 5, 1, h, w, generator=g).flatten(0, 1), scale_factor=4, mode='bicubic',
                       align_corners=False).unflatten(0, (b, 5))
    lq = F.avg_pool2d(hr[:, :3].flatten(0, 1), 4).unflatten(0, (b, 3))
    return lq, hr[:, 3:], hr[:, 1]


def test_training_reduces_loss():
    net = small_net(embed_dim=16).train()
    lq, hq, gt = smooth_batch()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = F.l1_loss(net(lq, hq), gt)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.isfinite(losses).all()
    assert min(losses[-3:]) < 0.75 * losses[0], losses  # base-only (bilinear) error is the start


def test_checkpointing_same_gradients():
    lq, hq, gt = smooth_batch()
    grads = []
    for use_checkpoint in (False, True):
        net = small_net(use_checkpoint=use_checkpoint).train()
        F.l1_loss(net(lq, hq), gt).backward()
        grads.append(torch.cat([p.grad.flatten() for p in net.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_state_dict_round_trip(tmp_path):
    net = small_net(seed=0, base='key_blend')
    path = tmp_path / 'net_g.pth'
    torch.save({'params': net.state_dict()}, path)
    other = small_net(seed=1, base='key_blend')
    lq, hq = inputs()
    with torch.no_grad():
        assert not torch.allclose(other(lq, hq), net(lq, hq))
        other.load_state_dict(torch.load(path, weights_only=True)['params'], strict=True)
        assert torch.equal(other(lq, hq), net(lq, hq))


@pytest.mark.parametrize('name', ['pretrain_reds_swin.yml', 'finetune_xray_swin.yml',
                                  'demo/pretrain_reds_swin_demo.yml', 'demo/finetune_xray_swin_demo.yml'])
def test_option_files_build(name):
    from basicsr.utils.registry import ARCH_REGISTRY

    opt = yaml.safe_load((ROOT / 'options' / name).read_text())
    net_opt = dict(opt['network_g'])
    assert net_opt.pop('type') == 'SwinSTF'
    assert opt['train']['pixel_opt']['type'] == 'L1Loss'
    net = ARCH_REGISTRY.get('SwinSTF')(**net_opt)
    assert net.window_size == (5, 8, 8)
    if 'demo' in name:  # small enough to run here
        lq, hq = inputs(b=1, h=16, w=16)
        with torch.no_grad():
            assert net.eval()(lq, hq, torch.tensor([[0.5, 0.5]])).shape == (1, 1, 64, 64)
