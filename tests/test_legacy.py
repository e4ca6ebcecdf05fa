"""Checkpoints and option files of earlier versions still load (``xfusion.archs.legacy``); what no network of
today can do is a clear error."""
import re

import pytest
import torch
import yaml

from xfusion.archs.edvrstf_arch import EDVRSTF
from xfusion.archs.legacy import PARAMETER_RENAMES
from xfusion.archs.propstf_arch import PropSTF
from xfusion.archs.propvsr_arch import PropVSR
from xfusion.checkpoint import CheckpointError, load_network

SMALL_PROP = dict(num_feat=8, flow_feat=8, num_feat_up=8)


def perturbed(net):
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net.eval()


def saved_as_of_old(folder, net, network_g: dict) -> str:
    """net's weights under the parameter names of earlier versions, with an options.yml of that time."""
    old_names = {new: old for old, new in PARAMETER_RENAMES.items()}
    state = {old_names.get(k, k): v for k, v in net.state_dict().items()}
    models = folder / 'models'
    models.mkdir(parents=True)
    torch.save({'params': state}, models / 'net_g_latest.pth')
    (models / 'options.yml').write_text(yaml.safe_dump({'model_type': 'STFModel', 'network_g': network_g}))
    return str(models / 'net_g_latest.pth')


def test_a_propstf_of_an_earlier_version_loads_and_fuses_alike(tmp_path):
    net = perturbed(PropSTF(**SMALL_PROP))
    assert any(k.startswith('blend.logits.') for k in net.state_dict())
    old_options = dict(type='PropSTF', **SMALL_PROP, num_frame_hi=2, hr_encoder='unshuffle', global_motion=True,
                       denoised_temporal=True, still_gate=True, refine_at_hr=True)
    loaded, _ = load_network(saved_as_of_old(tmp_path, net, old_options))
    lq, hq = torch.rand(1, 6, 1, 8, 8), torch.rand(1, 2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(lq, hq, torch.tensor([[0, 5]])), net(lq, hq, torch.tensor([[0, 5]])))


def test_the_lr_only_propstf_of_an_earlier_version_is_a_propvsr(tmp_path):
    net = perturbed(PropVSR(**SMALL_PROP, context=2))
    old_options = dict(type='PropSTF', **SMALL_PROP, num_frame_hi=0, context=2, hr_encoder='unshuffle')
    loaded, net_opt = load_network(saved_as_of_old(tmp_path, net, old_options))
    assert isinstance(loaded, PropVSR) and loaded.context == 2 and net_opt['type'] == 'PropVSR'
    lq = torch.rand(1, 5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(lq), net(lq))


def test_a_key_blend_window_network_of_an_earlier_version_loads(tmp_path):
    cfg = dict(num_feat=8, num_frame=3, num_frame_hi=2, deformable_groups=2, num_extract_block=1,
               num_reconstruct_block=1, hr_encoder='unshuffle', base='key_blend')
    net = perturbed(EDVRSTF(**cfg))
    loaded, _ = load_network(saved_as_of_old(tmp_path, net, dict(type='EDVRSTF', **cfg)))
    lq, hq = torch.rand(1, 3, 1, 8, 8), torch.rand(1, 2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(lq, hq, torch.tensor([[0.5, 0.5]])), net(lq, hq, torch.tensor([[0.5, 0.5]])))


@pytest.mark.parametrize('option, value, message', [
    ('deform_align', True, 'deform_align: True is no longer offered (deformable alignment was removed'),
    ('still_gate', False, 'still_gate: False is no longer offered (the still gate is always there'),
    ('sources', ['bayes', 'lr'], "sources: ['bayes', 'lr'] is no longer offered"),
    ('num_frame_hi', 0, None),  # the LR-only variant: loads as PropVSR (above)
    ('colour', 3, "unexpected option 'colour'"),
])
def test_what_no_network_of_today_does_is_one_clear_error(tmp_path, option, value, message):
    net = PropSTF(**SMALL_PROP)
    ckpt = saved_as_of_old(tmp_path, net, dict(type='PropSTF', **SMALL_PROP, **{option: value}))
    if message is None:
        with pytest.raises(CheckpointError, match='another network layout'):  # key-frame weights, LR-only options
            load_network(ckpt)
        return
    with pytest.raises(CheckpointError, match='options.yml: PropSTF: ' + re.escape(message)):
        load_network(ckpt)
