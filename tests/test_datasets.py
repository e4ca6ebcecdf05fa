import random

import numpy as np
import pytest
import torch
from basicsr.data import build_dataset

from helpers import moving_scene, reds_dataset_opt, write_pair_sequence
from xfusion.camera import area_average
from xfusion.data.reds_stf_dataset import REDSSTFDataset, validation_clips
from xfusion.data.stf_sampling import sample_schedule


def test_schedule_sampling_respects_the_protocol():
    rng = random.Random(0)
    gaps, seps = set(), set()
    for _ in range(2000):
        s = sample_schedule(30, (2, 8), [1, 3], 3, rng)
        assert s['k0'] <= s['t'] <= s['k1'] and s['k1'] - s['k0'] == s['period']
        assert 2 <= s['period'] <= 8 and 0 <= s['k0'] and s['k1'] <= 29
        r = s['lr_sep']
        assert s['lr_indices'] == [max(s['t'] - r, 0), s['t'], min(s['t'] + r, 29)]
        gaps.add(s['period'])
        seps.add(r)
    assert gaps == set(range(2, 9)) and seps == {1, 3}
    # gaps longer than the sequence are clamped to it
    assert sample_schedule(5, (20, 40), [1], 3, rng)['period'] == 4


def test_reds_dataset_holds_out_the_validation_partition_and_uses_meta_counts(reds_root):
    ds = build_dataset(reds_dataset_opt(reds_root))
    assert isinstance(ds, REDSSTFDataset)
    assert sorted(s.name for s in ds.sequences) == ['001', '002']  # 000 is in REDS4
    assert len(ds) == 2 * 12
    official = build_dataset(reds_dataset_opt(reds_root, val_partition='official'))
    assert len(official.sequences) == 3
    assert validation_clips('REDS4') == ['000', '011', '015', '020'] and len(validation_clips('official')) == 30


def test_meta_file_frame_count_is_checked(reds_root, tmp_path):
    meta = tmp_path / 'meta.txt'
    meta.write_text('001 11 (64,64,1)\n')
    with pytest.raises(ValueError, match='meta file says 11'):
        build_dataset(reds_dataset_opt(reds_root, meta_info_file=str(meta)))


def test_samples_are_aligned_crops_with_the_same_augmentation(reds_root):
    """LR frames were made as 4x4 averages of HR: after crop and flips the pair must still match."""
    random.seed(3)
    np.random.seed(3)
    ds = build_dataset(reds_dataset_opt(reds_root))
    for i in range(40):
        s = ds[i % len(ds)]
        assert s['lq'].shape == (3, 1, 8, 8) and s['hq'].shape == (2, 1, 32, 32) and s['gt'].shape == (1, 32, 32)
        assert s['lq'].dtype == torch.float32
        assert 0 <= s['idx'] < 12 and s['key_weights'].sum() == pytest.approx(1.0)
        center = s['lq'][1, 0].numpy()
        assert np.abs(center - area_average(s['gt'][0].numpy())).max() < 2.5 / 255
        # the key frames' own LR equivalents are consistent too (same crop, same flips)
        k0 = area_average(s['hq'][0, 0].numpy())
        assert k0.shape == center.shape


def test_lr_poisson_noise_and_lr_only(reds_root):
    random.seed(0)
    np.random.seed(0)
    clean = build_dataset(reds_dataset_opt(reds_root, use_hflip=False, use_rot=False))
    noisy = build_dataset(reds_dataset_opt(reds_root, use_hflip=False, use_rot=False, b0_log10_range=[2, 2]))
    random.seed(1)
    a = clean[0]
    random.seed(1)
    b = noisy[0]
    assert torch.equal(a['gt'], b['gt']) and torch.equal(a['hq'], b['hq'])
    diff = (b['lq'] - a['lq']).numpy()
    # Poisson at b0 = 100: variance x / b0
    assert diff.std() == pytest.approx(np.sqrt(a['lq'].numpy().mean() / 100), rel=0.3)
    lr_only = build_dataset(reds_dataset_opt(reds_root, num_frame_hi=0))
    assert lr_only[0]['hq'].shape[0] == 0


def test_bad_training_options(reds_root):
    with pytest.raises(ValueError, match='multiple of the scale'):
        build_dataset(reds_dataset_opt(reds_root, gt_size=30))
    with pytest.raises(ValueError, match='smaller than gt_size'):
        build_dataset(reds_dataset_opt(reds_root, gt_size=128))
    with pytest.raises(ValueError, match='period_range'):
        build_dataset(reds_dataset_opt(reds_root, period_range=[8, 2]))
    with pytest.raises(ValueError, match='val_partition'):
        build_dataset(reds_dataset_opt(reds_root, val_partition='REDS5'))


def test_sequence_test_dataset_covers_every_time_step(reds_root):
    opt = dict(name='val', type='STFSequenceTestDataset', phase='val', dataroot_gt=str(reds_root / 'train_sharp_gray'),
               dataroot_lq=str(reds_root / 'train_sharp_bicubic_gray' / 'X4'),
               meta_info_file=str(reds_root / 'meta_info_REDS_GT.txt'), val_partition='REDS4', period=5, lr_sep=2)
    ds = build_dataset(opt)
    assert [s.name for s in ds.sequences] == ['000'] and len(ds) == 12
    source = ds.frame_source(ds.sequences[0])  # what validation reads: the one data path
    assert [source.schedule.is_key(t) for t in range(12)] == [t % 5 == 0 for t in range(12)]
    lr_idx, keys, weights = source.window(7, 3)
    assert lr_idx == [5, 7, 9] and keys == (5, 10) and weights == pytest.approx((0.6, 0.4))
    seq = ds.sequences[0]
    assert np.array_equal(source.read_lr(5), seq.read_lr(5)) and np.array_equal(source.read_key(10), seq.read_hr(10))
    assert source.window(0, 3)[2] == (1.0, 0.0)
    assert source.window(11, 3)[1] == (10, 10)  # clamped to the last key frame
    clips = build_dataset(dict(opt, clips=['001', '002']))
    assert len(clips) == 24
    with pytest.raises(ValueError, match='too large'):
        build_dataset(dict(opt, lr_sep=12))
    with pytest.raises(ValueError, match='period'):
        build_dataset(dict(opt, period=0))


def test_datasets_pickle_for_spawned_workers(reds_root):
    """DDP runs start DataLoader workers with 'spawn', which pickles the dataset."""
    import pickle
    ds = build_dataset(reds_dataset_opt(reds_root))
    clone = pickle.loads(pickle.dumps(ds))
    assert len(clone) == len(ds) and clone[0]['lq'].shape == (3, 1, 8, 8)


def test_segment_samples_for_segment_networks(tmp_path):
    root = tmp_path / 'xray'
    for i in range(2):
        write_pair_sequence(root / f's{i}' / 'HR', root / f's{i}' / 'LR', moving_scene(12, (32, 32), seed=i), np.uint16)
    opt = dict(name='x', type='XraySTFDataset', phase='train', dataroot=str(root), segment=True, period_range=[3, 40],
               num_supervised=3, gt_size=16, use_hflip=True, use_rot=True)
    ds = build_dataset(opt)
    assert ds.segment_length == 12  # 1 + the longest gap the sequences allow
    random.seed(0)
    for _ in range(20):
        s = ds[0]
        period = s['period']
        assert s['lq'].shape == (12, 1, 4, 4) and s['gt'].shape == (12, 1, 16, 16)
        assert s['key_pos'].tolist() == [0, period] and 3 <= period <= 11
        assert torch.equal(s['hq'], s['gt'][s['key_pos']])
        assert s['out_pos'].min() >= 0 and s['out_pos'].max() <= period and len(set(s['out_pos'].tolist())) == 3
        assert all(torch.equal(s['gt'][i], s['gt'][period]) for i in range(period, 12))  # padded by the last frame
        # the LR frames are the HR frames' area averages, cropped and flipped alike
        assert torch.allclose(s['lq'][:, 0], torch.nn.functional.avg_pool2d(s['gt'], 4)[:, 0], atol=2 / 65535 + 1e-6)
    single = build_dataset(dict(opt, single_key_prob=1.0))[0]
    assert single['key_pos'][0] == single['key_pos'][1]
    lr_only = build_dataset(dict(opt, num_frame_hi=0))[0]
    assert lr_only['hq'].shape[0] == 0 and lr_only['key_pos'].numel() == 0


def test_the_segments_of_a_batch_share_their_gap_and_the_model_trims_the_batch_to_it(tmp_path):
    from torch.utils.data import DataLoader

    from xfusion.models.segment_stf_model import SegmentSTFModel
    root = tmp_path / 'xray'
    write_pair_sequence(root / 's0' / 'HR', root / 's0' / 'LR', moving_scene(30, (32, 32), seed=0), np.uint16)
    opt = dict(name='x', type='XraySTFDataset', phase='train', dataroot=str(root), segment=True, period_range=[2, 25],
               num_supervised=2, gt_size=16, batch_size_per_gpu=3)
    ds = build_dataset(opt)
    random.seed(1)
    # a DataLoader worker builds whole batches of consecutive samples: each batch has one gap
    batches = list(DataLoader(ds, batch_size=3, shuffle=True, drop_last=True, num_workers=1))
    gaps = [b['period'].tolist() for b in batches]
    assert all(len(set(g)) == 1 for g in gaps) and len({g[0] for g in gaps}) > 1
    assert all(b['lq'].shape[1] == ds.segment_length == 26 for b in batches)  # padded, so that any grouping stacks

    model = SegmentSTFModel.__new__(SegmentSTFModel)  # feed_data alone: no network needed
    model.device = torch.device('cpu')
    model.feed_data(batches[0])
    assert model.lq.shape[1] == model.gt.shape[1] == gaps[0][0] + 1
    assert model.out_pos.max() <= gaps[0][0] and model.key_pos.max() <= gaps[0][0]
