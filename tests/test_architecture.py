"""The architecture as a contributor meets it: a family is one file, checkpoints carry their options, the
command lines fail in one line."""
import csv
import os
import shutil

import numpy as np
import pytest
import torch

from helpers import ROOT, moving_scene, run_script, training_options, workspace, write_pair_sequence
from xfusion.archs.edvrstf_arch import EDVRSTF
from xfusion.archs.stf_base import STFNetwork
from xfusion.archs.swinstf_arch import SwinSTF
from xfusion.commands.arguments import named
from xfusion.errors import InputError

FAMILY_FILE = '''"""A network family in one file: EDVRSTF whose LR features are doubled (a test of the plug-in path)."""
from basicsr.utils.registry import ARCH_REGISTRY

from xfusion.archs.edvrstf_arch import EDVRSTF


@ARCH_REGISTRY.register()
class {name}(EDVRSTF):
    def encode(self, frames, key=False):
        features = super().encode(frames, key)
        return features if key else tuple(2 * level for level in features)
'''


def key_frames_of(lr_dir, hr_dir, out, period):
    """A real experiment's inputs from a virtual one: all LR frames, the HR frames every `period` steps."""
    shutil.copytree(lr_dir, out / 'lr')
    (out / 'hr').mkdir()
    for i, frame in enumerate(sorted(hr_dir.iterdir())):
        if i % period == 0:
            shutil.copy(frame, out / 'hr' / frame.name)
    return out / 'lr', out / 'hr'


def test_every_network_follows_the_protocol():
    for net in (EDVRSTF(num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1),
                SwinSTF(embed_dim=16, depths=[1], num_heads=[2], window_size=[5, 4, 4])):
        assert isinstance(net, STFNetwork) and net.kind == 'window' and net.scale == 4
        assert net.num_frame == 3 and net.num_frame_hi == 2 and net.center_frame_idx == 1 and net.uses_keys
    assert EDVRSTF.lr_multiple == 4 and SwinSTF.lr_multiple == 1
    with pytest.raises(InputError, match='multiples of 4'):
        EDVRSTF(num_feat=8, deformable_groups=2)(torch.rand(1, 3, 1, 6, 8), torch.rand(1, 2, 1, 24, 32))


def test_model_arguments_name_the_methods():
    assert named(['a.pth'], '--model') == {'stf': 'a.pth'}
    assert named(['prop=runs/a=b/net.pth', 'dir/x=1.pth'], '--model') == {'prop': 'runs/a=b/net.pth',
                                                                          'stf': 'dir/x=1.pth'}
    with pytest.raises(InputError, match='given twice'):
        named(['a.pth', 'stf=b.pth'], '--model')
    with pytest.raises(InputError, match='is a baseline'):
        named(['bayes=b.pth'], '--model')


@pytest.mark.slow
def test_a_family_in_one_new_file_trains_validates_fuses_and_evaluates(reds_root, tmp_path):
    name = f'PluginSTF{os.getpid()}'
    family = ROOT / 'xfusion' / 'archs' / f'plugin{os.getpid()}_arch.py'
    family.write_text(FAMILY_FILE.format(name=name))
    try:
        opt = training_options(reds_root, **{'train:total_iter': 2, 'val:val_freq': 2})
        opt['network_g']['type'] = name
        workspace(tmp_path, opt)
        out = run_script(tmp_path, 'train.py', '-opt', 'e2e.yml')
        assert 'Validation val' in out and name in out
        ckpt = tmp_path / 'experiments' / 'e2e' / 'models' / 'net_g_latest.pth'
        lr, hr = key_frames_of(reds_root / 'train_sharp_bicubic_gray' / 'X4' / '000', reds_root / 'train_sharp_gray' /
                               '000', tmp_path, period=5)
        run_script(tmp_path, '-m', 'xfusion', 'fuse', '--lr', str(lr), '--hr', str(hr), '--period', '5', '--model',
                   str(ckpt), '--out', str(tmp_path / 'fused'))
        assert len(list((tmp_path / 'fused').glob('*.tif'))) == 12
        xray = tmp_path / 'xray'
        write_pair_sequence(xray / 's' / 'HR', xray / 's' / 'LR', moving_scene(8, (32, 32)), np.uint16)
        run_script(tmp_path, '-m', 'xfusion', 'evaluate', '--data', str(xray), '--out', str(tmp_path / 'eval'),
                   '--model', f'mine={ckpt}', '--methods', 'bicubic,mine', '--period', '4')
        with open(tmp_path / 'eval' / 'metrics.csv') as f:
            rows = list(csv.DictReader(f))
        assert {r['method'] for r in rows} == {'bicubic', 'mine'} and len(rows) == 2 * 8
    finally:
        family.unlink()


@pytest.mark.slow
def test_a_checkpoint_trained_with_overrides_fuses_without_its_option_file(reds_root, tmp_path):
    workspace(tmp_path, training_options(reds_root, **{'train:total_iter': 2, 'val:val_freq': 100}))
    run_script(tmp_path, 'train.py', '-opt', 'e2e.yml', '--force_yml', 'network_g:num_feat=12',
               'network_g:deformable_groups=3')
    models = tmp_path / 'experiments' / 'e2e' / 'models'
    assert (models / 'options.yml').is_file()
    state = torch.load(models / 'net_g_latest.pth')['params']
    assert state['conv_first.weight'].shape[0] == 12
    lr, hr = key_frames_of(reds_root / 'train_sharp_bicubic_gray' / 'X4' / '001', reds_root / 'train_sharp_gray' /
                           '001', tmp_path, period=4)
    command = ['-m', 'xfusion', 'fuse', '--lr', str(lr), '--hr', str(hr), '--period', '4', '--model',
               str(models / 'net_g_latest.pth')]
    run_script(tmp_path, *command, '--out', str(tmp_path / 'fused'))
    assert len(list((tmp_path / 'fused').glob('*.tif'))) == 12
    # the raw option file BasicSR copied (num_feat 8) describes another network
    out = run_script(tmp_path, *command, '--out', str(tmp_path / 'fused2'), '--opt',
                     str(tmp_path / 'experiments' / 'e2e' / 'e2e.yml'), expect=2)
    assert 'another network layout' in out and not (tmp_path / 'fused2').exists()


@pytest.mark.slow
@pytest.mark.parametrize('script,args,message', [
    ('train.py', ['-opt', 'e2e.yml', '--force_yml', 'train:total_iter'], 'expected section:key=value'),
    ('train.py', ['-opt', 'e2e.yml', '--force_yml', 'nosuch:total_iter=3'], 'e2e.yml has no option nosuch'),
    ('train.py', ['-opt', 'e2e.yml', '--force_yml', 'datasets:train:lr_sep=[1,2'], 'is not a list of values'),
    ('train.py', ['-opt', 'e2e.yml', '--force_yml', 'val:val_freq=1e9'], "val:val_freq: must be a positive number"),
    ('train.py', ['-opt', 'missing.yml'], 'missing.yml: option file not found'),
    ('train.py', ['-opt', 'e2e.yml', '--launcher', 'mpi'], "invalid choice: 'mpi'"),
    ('train.py', ['-opt', 'broken.yml'], 'broken.yml: not a valid YAML file'),
    ('test.py', [], 'the following arguments are required: -opt'),
])
def test_malformed_command_lines_end_in_one_line(reds_root, tmp_path, script, args, message):
    workspace(tmp_path, training_options(reds_root))
    (tmp_path / 'broken.yml').write_text('name: [unclosed\n')
    out = run_script(tmp_path, script, *args, expect=2)
    lines = [line for line in out.splitlines() if line.strip() and not line.startswith('Disable distributed')]
    assert len(lines) == 1 and lines[0].startswith(f'{script}: error: ') and message in lines[0], out
    assert not (tmp_path / 'experiments').exists()


OPTION_FILES = sorted(str(p.relative_to(ROOT / 'options')) for p in (ROOT / 'options').rglob('*.yml'))


@pytest.mark.parametrize('name', OPTION_FILES)
def test_every_option_file_names_registered_parts_and_known_keys(name):
    from basicsr.utils.registry import ARCH_REGISTRY, DATASET_REGISTRY

    from xfusion.options import load_option_file
    from xfusion.options_check import DATASET_COMMON, check_keys, check_network, check_training
    opt = load_option_file(ROOT / 'options' / name)
    check_network(opt)
    check_training(opt)
    for phase, ds in opt['datasets'].items():
        check_keys(ds, DATASET_COMMON | DATASET_REGISTRY.get(ds['type']).option_keys, f'datasets:{phase}')
    net_opt = dict(opt['network_g'])
    assert isinstance(ARCH_REGISTRY.get(net_opt.pop('type'))(**net_opt), STFNetwork)
