import numpy as np
import pytest
import torch

from xfusion.archs.edvrstf_arch import EDVRSTF
from xfusion.archs.stf_base import STFNetwork
from xfusion.archs.swinstf_arch import SwinSTF
from xfusion.inference import SequenceInference, supports_cache
from xfusion.schedule import FrameSource, KeySchedule


def small_net(**kwargs):
    torch.manual_seed(0)
    cfg = dict(num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1)
    cfg.update(kwargs)
    return EDVRSTF(**cfg).eval()


def source(frames=13, period=5, lr_sep=1, offset=0, size=(8, 12)):
    rng = np.random.default_rng(0)
    lr = rng.random((frames, *size), dtype=np.float32)
    hr = rng.random((frames, size[0] * 4, size[1] * 4), dtype=np.float32)
    return FrameSource(lambda t: lr[t], lambda k: hr[k], KeySchedule.every(period, frames, offset), lr_sep)


def collect(inference, src):
    return dict(inference.run(src))


@pytest.mark.parametrize('period,lr_sep,offset', [(5, 1, 0), (3, 2, 0), (20, 1, 0), (4, 3, 2), (1, 1, 0)])
@pytest.mark.parametrize('net_kwargs', [dict(), dict(hr_encoder='unshuffle', base='key_blend'), dict(num_frame_hi=0)])
def test_cached_equals_per_window(period, lr_sep, offset, net_kwargs):
    net = small_net(**net_kwargs)
    src = source(period=period, lr_sep=lr_sep, offset=offset)
    per_window = collect(SequenceInference(net, cached=False), src)
    cached = collect(SequenceInference(net, cached=True), src)
    batched = collect(SequenceInference(net, cached=True, batch=4), src)
    assert sorted(per_window) == list(range(13))
    for t in range(13):
        assert per_window[t].shape == (1, 32, 48)
        assert (cached[t] - per_window[t]).abs().max() < 1e-4, t
        assert (batched[t] - per_window[t]).abs().max() < 1e-4, t


def test_cached_swin_equals_per_window():
    torch.manual_seed(0)
    net = SwinSTF(embed_dim=16, depths=[2], num_heads=[2], window_size=[5, 4, 4], base='key_blend',
                  hr_encoder='unshuffle').eval()
    src = source(frames=9, period=4, lr_sep=2, size=(6, 10))
    per_window = collect(SequenceInference(net, cached=False), src)
    cached = collect(SequenceInference(net, cached=True, batch=3), src)
    assert all((cached[t] - per_window[t]).abs().max() < 1e-4 for t in range(9))


def test_per_window_equals_the_network_forward():
    net = small_net()
    src = source(period=5, lr_sep=2)
    out = collect(SequenceInference(net, cached=False), src)
    t = 12  # near the end: LR window clamped, key frames (10, 10)
    lq = torch.stack([torch.from_numpy(src.read_lr(i))[None] for i in (10, 12, 12)])[None]
    hq = torch.stack([torch.from_numpy(src.read_key(10))[None]] * 2)[None]
    with torch.no_grad():
        ref = net(lq, hq, torch.tensor([[1.0, 0.0]]))[0]
    assert (out[t] - ref).abs().max() < 1e-6


def test_subset_of_times_and_bf16():
    net = small_net()
    src = source()
    some = dict(SequenceInference(net).run(src, times=[7, 3]))
    full = collect(SequenceInference(net), src)
    assert sorted(some) == [3, 7] and torch.allclose(some[7], full[7], atol=1e-5)
    bf16 = collect(SequenceInference(net, precision='bf16'), src)
    assert bf16[5].dtype == torch.float32 and (bf16[5] - full[5]).abs().mean() < 0.05
    with pytest.raises(ValueError):
        SequenceInference(net, precision='fp8')


def test_networks_without_stages_run_per_window():
    class Plain(STFNetwork):
        def forward(self, lq, hq, key_weights=None):
            return hq[:, 0] * key_weights[:, :1, None, None]

    inference = SequenceInference(Plain(), cached=True)
    assert not supports_cache(Plain()) and not inference.cached
    out = collect(inference, source(period=5))
    assert torch.allclose(out[5], torch.from_numpy(source().read_key(5))[None])


def test_a_half_consumed_run_leaves_grad_mode_alone():
    stream = SequenceInference(small_net()).run(source())
    t, out = next(stream)
    assert torch.is_grad_enabled() and not torch.is_inference_mode_enabled()
    out += 1  # outputs are ordinary tensors
