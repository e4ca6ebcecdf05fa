"""The packaged networks (xfusion/pretrained): strict loading, their stored outputs, the default of fuse / check /
evaluate, names in --model and in path.pretrain_network_g, and xfusion models."""
import csv
import json
import shutil

import numpy as np
import pytest
import tifffile
import torch
import yaml

from helpers import moving_scene, run_script, training_options, workspace, write_pair_sequence
from xfusion.checkpoint import load_network, state_dict_of
from xfusion.commands import main
from xfusion.errors import InputError
from xfusion.inference import SequenceInference
from xfusion.options import load_option_file
from xfusion.options_check import check_checkpoint
from xfusion.pipelines import start_from_packaged_model
from xfusion.pretrained import FOLDER, model_file, packaged_models, recommended_model
from xfusion.schedule import FrameSource, KeySchedule

REFERENCES = FOLDER.parents[1] / 'tests' / 'data' / 'pretrained'


def test_the_package_carries_the_recommended_network_and_its_lr_only_variant():
    models = packaged_models()
    assert recommended_model() in models and len(models) == 2
    kinds = {load_network(name)[0].uses_keys for name in models}
    assert kinds == {True, False}  # one fuses key frames, one is LR-only
    for model in models.values():
        card = model.card
        assert card['name'] == model.name and card['parameters'] > 0
        assert model.checkpoint.stat().st_size < 4e6  # small enough for git and the wheel
        assert card['test']['rows'] and set(card['test']['families']).isdisjoint(
            {f for s in card['trained_on']['sets'] for f in s['families']})
        assert set(torch.load(model.checkpoint, weights_only=True)) == {'params'}  # the weights alone


def test_a_card_names_the_pretraining_its_recipe_began_with():
    models = packaged_models()
    assert models['propstf'].card['pretrained_by'] == []  # trained from random weights on the x-ray sequences
    (step,) = models['propvsr'].card['pretrained_by']  # the LR-only recipe: the REDS-layout clips first
    assert step['recipe'] == 'options/demo/pretrain_reds_prop_lronly_demo.yml' and step['clips'] > 0
    pretrained = load_option_file(FOLDER.parents[1] / step['recipe'])['network_g']
    packaged = load_network('propvsr')[1]
    assert packaged.pop('self_ensemble') is True  # how the finished network runs, not what the pretraining built
    assert pretrained == packaged
    page = (FOLDER / 'propvsr' / 'card.md').read_text()
    assert f"Pretrained first by `{step['recipe']}`, {step['total_iter']} iterations" in page


@pytest.mark.parametrize('name', sorted(packaged_models()))
def test_packaged_weights_load_strictly_and_reproduce_their_stored_output(name):
    net, net_opt = load_network(name)  # strict: every parameter, no extra one (xfusion.checkpoint)
    assert net_opt == load_option_file(packaged_models()[name].option_file)['network_g']
    ref = np.load(REFERENCES / f'{name}.npz')
    lr, keys, key_times = ref['lr'], ref['keys'], [int(k) for k in ref['key_times']]
    key_of = dict(zip(key_times, keys))
    source = FrameSource(lambda t: lr[t], lambda k: key_of[k], KeySchedule(tuple(key_times), len(lr)), 1)
    out = np.stack([frame[0].numpy() for _, frame in SequenceInference(net).run(source)])
    assert out.shape == ref['output'].shape == (len(lr), 64, 64)
    assert np.abs(out - ref['output'].astype(np.float32)).max() < 2e-3  # float16 storage: 5e-4 at most
    assert np.abs(out - ref['output'].astype(np.float32)).mean() < 2e-4


def test_a_model_value_is_a_file_or_a_packaged_name(tmp_path, monkeypatch):
    name = recommended_model()
    assert model_file(name) == packaged_models()[name].checkpoint
    monkeypatch.chdir(tmp_path)
    (tmp_path / name).write_bytes(b'mine')  # a file of that name is the file, never the packaged model
    assert model_file(name).resolve() == (tmp_path / name).resolve()
    with pytest.raises(InputError, match=f'not the name of a packaged model .*{name}'):
        model_file('propstf_v9')


def test_xfusion_models_lists_the_packaged_networks_and_shows_a_card(capsys):
    assert main(['models']) == 0
    listing = capsys.readouterr().out
    for name in packaged_models():
        assert name in listing
    assert f'{recommended_model()} (recommended' in listing and 'dB against' in listing
    assert main(['models', recommended_model()]) == 0
    card = capsys.readouterr().out
    assert '## Test families' in card and '## Limits' in card and 'net_g.pth' in card
    assert main(['models', 'nothing']) == 2
    assert 'not a packaged model' in capsys.readouterr().err


def test_fuse_without_model_uses_the_packaged_network(tmp_path, capsys):
    write_pair_sequence(tmp_path / 'HR', tmp_path / 'LR', moving_scene(7, (32, 32)), np.uint16)
    lr_dir, hr_dir = tmp_path / 'LR', tmp_path / 'keys'
    hr_dir.mkdir()
    for frame in sorted((tmp_path / 'HR').iterdir())[::3]:
        shutil.copy(frame, hr_dir / frame.name)
    assert main(['fuse', '--lr', str(lr_dir), '--hr', str(hr_dir), '--period', '3', '--out', str(tmp_path / 'a')]) == 0
    said = capsys.readouterr().out
    assert f'no --model given: using the packaged network {recommended_model()}' in said
    sidecar = json.loads((tmp_path / 'a' / 'xfusion.json').read_text())
    assert sidecar['model'] == str(packaged_models()[recommended_model()].checkpoint)
    path = str(packaged_models()[recommended_model()].checkpoint)
    assert main(['fuse', '--lr', str(lr_dir), '--hr', str(hr_dir), '--period', '3', '--out', str(tmp_path / 'b'),
                 '--model', path]) == 0
    assert 'no --model given' not in capsys.readouterr().out
    frames = {d: sorted((tmp_path / d).glob('*.tif')) for d in ('a', 'b')}
    assert len(frames['a']) == len(frames['b']) == 7
    for a, b in zip(frames['a'], frames['b']):  # the packaged name and its file are the same network
        a, b = tifffile.imread(a), tifffile.imread(b)
        assert a.shape == (32, 32) and a.dtype == np.uint16 and np.array_equal(a, b)


def test_evaluate_without_model_scores_the_packaged_network(tmp_path, capsys):
    root = tmp_path / 'xray'
    write_pair_sequence(root / 's' / 'HR', root / 's' / 'LR', moving_scene(9, (32, 32)), np.uint16)
    out = tmp_path / 'eval'
    assert main(['evaluate', '--data', str(root), '--out', str(out), '--period', '4', '--methods', 'bayes,stf',
                 '--no-report']) == 0
    assert 'using the packaged network' in capsys.readouterr().out
    with open(out / 'metrics.csv') as f:
        rows = [r for r in csv.DictReader(f) if r['is_key'] == 'False']
    psnr = {m: np.mean([float(r['psnr']) for r in rows if r['method'] == m]) for m in ('bayes', 'stf')}
    assert psnr['stf'] > 20 and np.isfinite(psnr['bayes'])
    # --methods that leave the recommended method out load no network
    assert main(['evaluate', '--data', str(root), '--out', str(tmp_path / 'b'), '--period', '4', '--methods',
                 'bayes', '--no-report']) == 0
    assert 'packaged' not in capsys.readouterr().out


def test_training_options_can_start_from_a_packaged_model():
    name = recommended_model()
    opt = {'path': {'pretrain_network_g': name}}
    start_from_packaged_model(opt)
    assert opt['path']['pretrain_network_g'] == str(packaged_models()[name].checkpoint)
    assert opt['network_g'] == load_option_file(packaged_models()[name].option_file)['network_g']
    check_checkpoint(opt)  # the layout matches
    mine = {'path': {'pretrain_network_g': name}, 'network_g': dict(opt['network_g'], num_feat=8)}
    start_from_packaged_model(mine)  # an option file's own network_g is kept, and must match the weights
    with pytest.raises(InputError, match='another network layout'):
        check_checkpoint(mine)


@pytest.mark.slow
def test_fine_tuning_starts_from_the_packaged_weights(reds_root, tmp_path):
    name = recommended_model()
    opt = training_options(reds_root, **{'train:total_iter': 1, 'val:val_freq': 1000})
    del opt['network_g']
    opt['model_type'] = 'SegmentSTFModel'
    opt['path']['pretrain_network_g'] = name
    opt['datasets']['train'].update(segment=True, period_range=[2, 8], num_supervised=2)
    del opt['datasets']['train']['lr_sep']
    opt['train']['warp_opt'] = opt['train']['flow_opt'] = {'type': 'CharbonnierLoss', 'loss_weight': 0.1}
    workspace(tmp_path, opt)
    out = run_script(tmp_path, 'train.py', '-opt', 'e2e.yml')
    assert str(packaged_models()[name].checkpoint) in out  # BasicSR's "Loading ... model from ..."
    models = tmp_path / 'experiments' / 'e2e' / 'models'
    used = yaml.safe_load((models / 'options.yml').read_text())
    assert used['network_g'] == load_option_file(packaged_models()[name].option_file)['network_g']
    start, _ = state_dict_of(packaged_models()[name].checkpoint)
    tuned, _ = state_dict_of(models / 'net_g_latest.pth')
    assert start.keys() == tuned.keys()
    change = max(float((start[k] - tuned[k]).abs().max()) for k in start)
    assert 0 < change < 0.1  # one step away from the packaged weights, not from a fresh start
