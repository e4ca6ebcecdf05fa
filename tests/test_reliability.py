"""Bad input is refused up front; checkpoints survive kills; runs are reproducible; DDP on CPU (gloo)."""
import copy
import re
import shutil
import sys

import h5py
import numpy as np
import pytest
import tifffile
import torch
from basicsr.data.data_sampler import EnlargedSampler

from helpers import (
    free_port,
    moving_scene,
    run_script,
    training_options,
    workspace,
    write_pair_sequence,
)
from xfusion.archs.edvrstf_arch import EDVRSTF
from xfusion.errors import InputError
from xfusion.io.frames import write_frame
from xfusion.options_check import check_options


def parsed(opt: dict, root) -> dict:
    """What BasicSR's parse_options hands over: phases set, training flags, the root folder."""
    opt = copy.deepcopy(opt)
    for phase, ds in opt['datasets'].items():
        ds['phase'] = phase.split('_')[0]
    opt.update(is_train=True, auto_resume=False, root_path=str(root), dist=False, rank=0, world_size=1)
    return opt


def copy_reds(reds_root, tmp_path):
    root = tmp_path / 'reds'
    shutil.copytree(reds_root, root)
    return root


def refused(opt, root, match):
    with pytest.raises(InputError, match=match) as error:
        check_options(parsed(opt, root))
    assert '\n' not in str(error.value)
    return str(error.value)


def test_the_example_options_pass(reds_root, tmp_path):
    check_options(parsed(training_options(reds_root), tmp_path))


@pytest.mark.parametrize('key,value,match', [
    ('trian', {}, "unknown option 'trian' \\(did you mean 'train'\\?\\)"),
    ('datasets:train:gt_sise', 32, "datasets:train: unknown option 'gt_sise' \\(did you mean 'gt_size'\\?\\)"),
    ('network_g:num_feats', 8, "network_g: unknown option 'num_feats' \\(did you mean 'num_feat'\\?\\)"),
    ('val:metrics:psnr:convension', 'paper', "did you mean 'convention'"),
    ('network_g:type', 'EDVRSFT', "'EDVRSFT' is not a registered name \\(did you mean 'EDVRSTF'\\?\\)"),
    ('model_type', 'STFModle', "did you mean 'STFModel'"),
    ('datasets:train:type', 'REDSSTFDatset', "did you mean 'REDSSTFDataset'"),
    ('val:metrics:psnr:type', 'calculate_psnr_st', "did you mean 'calculate_psnr_stf'"),
    ('train:scheduler:type', 'CosineAnnealingLR', "did you mean 'CosineAnnealingRestartLR'"),
    ('datasets:train:dataroot_gt', '/nonexistent/gt', '/nonexistent/gt does not exist'),
    ('datasets:train:gt_size', 30, 'gt_size: 30 is not divisible by the scale 4'),
    ('datasets:val:period', 0, 'datasets:val:period must be an integer >= 1'),
    ('datasets:val:lr_sep', 12, 'lr_sep 12 is too large for a sequence of 12 frames'),
])
def test_bad_options_are_named_with_a_fix(reds_root, tmp_path, key, value, match):
    refused(training_options(reds_root, **{key: value}), tmp_path, match)


def test_each_kind_of_network_trains_with_its_own_model_and_retired_options_are_named(reds_root, tmp_path):
    opt = training_options(reds_root)
    opt['network_g'] = dict(type='PropSTF', num_feat=8, flow_feat=8, num_feat_up=8)
    refused(opt, tmp_path, 'model_type: PropSTF is a segment network; train it with model_type: SegmentSTFModel')
    opt['model_type'] = 'SegmentSTFModel'
    opt['network_g']['still_gate'] = True  # an option of earlier versions, at the value the network always has
    check_options(parsed(opt, tmp_path))
    opt['network_g']['deform_align'] = True
    refused(opt, tmp_path, 'network_g: PropSTF: deform_align: True is no longer offered')
    opt = training_options(reds_root, model_type='SegmentSTFModel')
    refused(opt, tmp_path, 'model_type: EDVRSTF is a window network; train it with model_type: STFModel')


def test_bad_frames_are_found_before_training(reds_root, tmp_path):
    root = copy_reds(reds_root, tmp_path)
    clip_lr = root / 'train_sharp_bicubic_gray' / 'X4' / '001'
    opt = training_options(root)
    # LR not 4x smaller
    write_frame(clip_lr / '00000000.png', np.zeros((15, 16), np.uint8))
    refused(opt, tmp_path, 'HR must be exactly 4x LR')
    # a frame missing in one camera
    (clip_lr / '00000000.png').unlink()
    refused(opt, tmp_path, '12 frames but .* has 11')
    # mixed bit depths between the cameras
    write_frame(clip_lr / '00000000.png', np.zeros((16, 16), np.uint16))
    refused(opt, tmp_path, 'both cameras must have the same bit depth')
    # a corrupt image
    (clip_lr / '00000000.png').write_bytes(b'\x89PNG garbage')
    refused(opt, tmp_path, '001/00000000.png: unreadable frame')


def xray_root(tmp_path, name='xray'):
    root = tmp_path / name
    write_pair_sequence(root / 'seq' / 'HR', root / 'seq' / 'LR', moving_scene(6, (32, 32)), np.uint16)
    return root


def xray_options(reds_root, root):
    opt = training_options(reds_root)
    opt['datasets']['train'] = dict(name='x', type='XraySTFDataset', dataroot=str(root), period_range=[2, 4],
                                    lr_sep=[1], gt_size=32, num_worker_per_gpu=0, batch_size_per_gpu=2)
    return opt


def test_corrupt_tiff_hdf5_and_nan_frames(reds_root, tmp_path):
    root = xray_root(tmp_path)
    (root / 'broken.h5').write_bytes(b'not an hdf5 file')
    refused(xray_options(reds_root, root), tmp_path, 'broken.h5: unreadable HDF5 file')
    (root / 'broken.h5').unlink()
    with h5py.File(root / 'nan.h5', 'w') as f:
        lr = np.full((4, 8, 8), 0.5, np.float32)
        lr[0, 2, 2] = np.nan
        f['lr'], f['hr'] = lr, np.full((4, 32, 32), 0.5, np.float32)
    from xfusion.io.sequence import Sequence
    with pytest.raises(InputError, match=r'nan.h5:lr\[0\]: frame holds NaN or Inf'):
        Sequence.from_h5(root / 'nan.h5').read_lr(0)
    (root / 'nan.h5').unlink()
    tiff_root = tmp_path / 'tiff'
    hr = np.full((32, 32), 0.5, np.float32)
    hr[0, 0] = np.inf
    (tiff_root / 's' / 'HR').mkdir(parents=True)
    (tiff_root / 's' / 'LR').mkdir()
    tifffile.imwrite(tiff_root / 's' / 'HR' / '0.tif', hr)
    tifffile.imwrite(tiff_root / 's' / 'LR' / '0.tif', np.full((8, 8), 0.5, np.float32))
    refused(xray_options(reds_root, tiff_root), tmp_path, 'HR/0.tif: frame holds NaN or Inf')
    (tiff_root / 's' / 'HR' / '0.tif').write_bytes(b'II*\x00corrupt')
    refused(xray_options(reds_root, tiff_root), tmp_path, 'HR/0.tif: unreadable frame')


def test_unwritable_output_and_other_checkpoint_layout(reds_root, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    refused(training_options(reds_root), blocker, 'cannot write the output here')
    other = EDVRSTF(num_feat=12, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1,
                    hr_encoder='unshuffle', base='key_blend')
    torch.save({'params': other.state_dict()}, tmp_path / 'other.pth')
    refused(training_options(reds_root, **{'path:pretrain_network_g': str(tmp_path / 'other.pth')}), tmp_path,
            r'parameter conv_first.weight has shape \(12, 1, 3, 3\), the network expects \(8, 1, 3, 3\)')


@pytest.mark.slow
def test_train_py_refuses_bad_options_with_one_line_and_writes_nothing(reds_root, tmp_path):
    workspace(tmp_path, training_options(reds_root, **{'datasets:train:gt_size': 30}))
    out = run_script(tmp_path, 'train.py', '-opt', 'e2e.yml', expect=2)
    errors = [line for line in out.splitlines() if 'error' in line]
    assert errors == ['train.py: error: datasets:train:gt_size: 30 is not divisible by the scale 4; '
                      'use a multiple of 4']
    assert not (tmp_path / 'experiments' / 'e2e').exists()
    workspace(tmp_path, training_options(reds_root))
    out = run_script(tmp_path, 'test.py', '-opt', 'e2e.yml', expect=2)
    assert 'no checkpoint to evaluate' in out and not (tmp_path / 'results' / 'e2e').exists()


@pytest.mark.slow
def test_same_seed_same_first_losses_and_resume_keeps_the_schedule(reds_root, tmp_path):
    def losses_and_lrs(out):
        return re.findall(r'iter:\s+(\d+), lr:\(([\d.e+-]+),\).*l_pix: ([\d.e+-]+)', out)

    opt = training_options(reds_root, **{'train:total_iter': 6, 'val:val_freq': 100,
                                         'logger:save_checkpoint_freq': 3})
    workspace(tmp_path, opt)
    first = losses_and_lrs(run_script(tmp_path, 'train.py', '-opt', 'e2e.yml'))
    second = losses_and_lrs(run_script(tmp_path, 'train.py', '-opt', 'e2e.yml'))
    assert len(first) == 6 and first == second
    # resume from iteration 3 of a fresh run: same iteration count and learning rates onwards
    shutil.rmtree(tmp_path / 'experiments' / 'e2e' / 'training_states')
    shutil.rmtree(tmp_path / 'experiments' / 'e2e' / 'models')
    workspace(tmp_path, training_options(reds_root, **{'train:total_iter': 3, 'val:val_freq': 100,
                                                       'logger:save_checkpoint_freq': 3}))
    run_script(tmp_path, 'train.py', '-opt', 'e2e.yml', '--auto_resume')
    workspace(tmp_path, opt)
    resumed = losses_and_lrs(run_script(tmp_path, 'train.py', '-opt', 'e2e.yml', '--auto_resume'))
    assert [(it, lr) for it, lr, _ in resumed] == [(it, lr) for it, lr, _ in first[3:]]


def test_data_shards_of_ranks_do_not_overlap(reds_root):
    from basicsr.data import build_dataset
    opt = training_options(reds_root)['datasets']['train']
    dataset = build_dataset(dict(opt, phase='train'))
    shards = []
    for rank in range(2):
        sampler = EnlargedSampler(dataset, num_replicas=2, rank=rank, ratio=1)
        sampler.set_epoch(3)
        shards.append(set(sampler))
    assert not shards[0] & shards[1]
    assert shards[0] | shards[1] == set(range(len(dataset)))


@pytest.mark.slow
def test_two_process_ddp_on_cpu_with_gloo(reds_root, tmp_path):
    # one DataLoader worker per rank: DDP starts them with 'spawn', which pickles the dataset;
    # tsa_iter: parameters frozen for the first iterations must not stall DDP's gradient reduction
    opt = training_options(reds_root, **{'train:total_iter': 4, 'train:tsa_iter': 3, 'val:save_img': False,
                                         'datasets:train:num_worker_per_gpu': 1})
    workspace(tmp_path, opt)
    out = run_script(tmp_path, '--nproc_per_node=2', f'--master_port={free_port()}', 'train.py', '-opt', 'e2e.yml',
                     '--launcher', 'pytorch', launcher=[sys.executable, '-m', 'torch.distributed.run'])
    exp = tmp_path / 'experiments' / 'e2e'
    assert "'world_size': 2" in out or 'world_size: 2' in out
    assert 'Train only the TSA fusion module.' in out and 'Train all parameters.' in out
    assert len(list(exp.glob('train_*.log'))) == 1  # only rank 0 writes logs and checkpoints
    state = torch.load(exp / 'models' / 'net_g_latest.pth')['params']
    net = EDVRSTF(**{k: v for k, v in opt['network_g'].items() if k != 'type'})
    net.load_state_dict(state, strict=True)
    # validation gathered from both ranks equals a single-process evaluation of the same checkpoint
    ddp_psnr = re.findall(r'# psnr: ([\d.]+)', out)[-1]
    single = run_script(tmp_path, 'test.py', '-opt', 'e2e.yml')
    assert re.findall(r'# psnr: ([\d.]+)', single)[-1] == ddp_psnr
