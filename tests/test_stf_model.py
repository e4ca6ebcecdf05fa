import copy
import csv

import pytest
import torch
from basicsr.data import build_dataloader, build_dataset
from basicsr.models import build_model

from xfusion.models.stf_model import STFModel, summarize

NET = dict(type='EDVRSTF', num_in_ch=1, num_out_ch=1, num_feat=8, num_frame=3, num_frame_hi=2, deformable_groups=2,
           num_extract_block=1, num_reconstruct_block=1)
METRICS = {'psnr': {'type': 'calculate_psnr_stf'}, 'aad': {'type': 'calculate_aad', 'better': 'lower'}}


def model_opt(tmp_path, is_train=True, **train):
    opt = dict(name='unit', model_type='STFModel', num_gpu=0, dist=False, rank=0, world_size=1, is_train=is_train,
               scale=4, network_g=dict(NET), path=dict(visualization=str(tmp_path / 'vis')),
               val=dict(save_img=False, pbar=False, metrics=copy.deepcopy(METRICS)))
    opt['train'] = dict(optim_g=dict(type='Adam', lr=1e-3), scheduler=dict(type='MultiStepLR', milestones=[100],
                                                                             gamma=0.5), total_iter=10)
    opt['train'].update(train)
    return opt


def batch(b=2):
    torch.manual_seed(0)
    return {'lq': torch.rand(b, 3, 1, 8, 8), 'hq': torch.rand(b, 2, 1, 32, 32), 'gt': torch.rand(b, 1, 32, 32),
            'key_weights': torch.tensor([[0.5, 0.5]] * b)}


def test_trains_on_cpu_with_charbonnier_by_default(tmp_path):
    model = build_model(model_opt(tmp_path))
    assert isinstance(model, STFModel) and model.device.type == 'cpu'
    assert type(model.cri_pix).__name__ == 'CharbonnierLoss'
    data = batch()
    losses = []
    for it in range(1, 16):
        model.feed_data(data)
        model.optimize_parameters(it)
        losses.append(model.get_current_log()['l_pix'])
    assert losses[-1] < losses[0]


def test_configured_loss_and_dcn_lr_mul(tmp_path):
    opt = model_opt(tmp_path, pixel_opt=dict(type='L1Loss', loss_weight=1.0), dcn_lr_mul=0.5)
    model = build_model(opt)
    assert type(model.cri_pix).__name__ == 'L1Loss'
    groups = model.optimizer_g.param_groups
    assert [g['lr'] for g in groups] == [1e-3, 5e-4]
    dcn_names = {n for n, p in model.net_g.named_parameters() if 'dcn' in n}
    assert len(groups[1]['params']) == len(dcn_names) > 0


def test_flow_lr_mul_scales_only_the_flow_estimator_and_zero_holds_it(tmp_path):
    opt = model_opt(tmp_path, flow_lr_mul=0.0, flow_opt={'type': 'CharbonnierLoss', 'loss_weight': 1.0})
    opt['network_g'] = dict(type='PropSTF', num_feat=8, flow_feat=8, num_feat_up=8)
    opt['model_type'] = 'SegmentSTFModel'
    model = build_model(opt)
    groups = model.optimizer_g.param_groups
    assert [g['lr'] for g in groups] == [1e-3, 0.0]
    flow = {id(p) for p in model.net_g.flow.parameters()}
    assert {id(p) for p in groups[1]['params']} == flow
    before = {n: p.detach().clone() for n, p in model.net_g.named_parameters()}
    torch.manual_seed(0)
    gt = torch.rand(2, 5, 1, 32, 32)
    data = {'lq': torch.nn.functional.avg_pool2d(gt.flatten(0, 1), 4).unflatten(0, (2, 5)), 'hq': gt[:, [0, 4]],
            'key_pos': torch.tensor([[0, 4]] * 2), 'out_pos': torch.tensor([[1, 3]] * 2), 'gt': gt}
    for it in range(1, 4):
        model.feed_data(data)
        model.optimize_parameters(it)
    changed = {n for n, p in model.net_g.named_parameters() if not torch.equal(p, before[n])}
    assert changed and not any(n.startswith('flow.') for n in changed)
    with pytest.raises(ValueError, match='no flow module'):
        build_model(model_opt(tmp_path, flow_lr_mul=0.1))  # EDVRSTF aligns with DCN, not a flow network


def test_lr_mul_gives_named_modules_their_own_multiple(tmp_path):
    opt = model_opt(tmp_path, lr_mul={'blend': 10, 'conv_last': 10, 'flow': 0.5})
    opt['network_g'] = dict(type='PropSTF', num_feat=8, flow_feat=8, num_feat_up=8)
    opt['model_type'] = 'SegmentSTFModel'
    model = build_model(opt)
    lrs = {g['lr']: {id(p) for p in g['params']} for g in model.optimizer_g.param_groups}
    assert sorted(lrs) == [5e-4, 1e-3, 1e-2]
    net = model.net_g
    assert lrs[1e-2] == {id(p) for m in (net.blend, net.conv_last) for p in m.parameters()}
    assert lrs[5e-4] == {id(p) for p in net.flow.parameters()}
    assert sum(len(ids) for ids in lrs.values()) == len(list(net.parameters()))
    with pytest.raises(ValueError, match=r'lr_mul.blend is 10, but EDVRSTF has no blend module'):
        build_model(model_opt(tmp_path, lr_mul={'blend': 10}))


def test_tsa_iter_trains_only_the_fusion_module_first(tmp_path):
    model = build_model(model_opt(tmp_path, tsa_iter=3))
    before = {n: p.detach().clone() for n, p in model.net_g.named_parameters()}
    model.feed_data(batch())
    model.optimize_parameters(1)
    changed = {n for n, p in model.net_g.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all('fusion' in n for n in changed)
    model.optimize_parameters(3)  # from tsa_iter on, everything trains
    assert all(p.requires_grad for p in model.net_g.parameters())
    # a run resumed after tsa_iter never freezes
    resumed = build_model(model_opt(tmp_path, tsa_iter=3))
    resumed.feed_data(batch())
    resumed.optimize_parameters(7)
    assert all(p.requires_grad for p in resumed.net_g.parameters())


def test_validation_reports_key_frames_apart_and_writes_images(reds_root, tmp_path, caplog):
    opt = model_opt(tmp_path, is_train=False)
    model = build_model(opt)
    ds_opt = dict(name='val', type='STFSequenceTestDataset', phase='val',
                  dataroot_gt=str(reds_root / 'train_sharp_gray'),
                  dataroot_lq=str(reds_root / 'train_sharp_bicubic_gray' / 'X4'),
                  meta_info_file=str(reds_root / 'meta_info_REDS_GT.txt'), clips=['000'], period=4, lr_sep=1)
    dataset = build_dataset(ds_opt)
    loader = build_dataloader(dataset, ds_opt, num_gpu=0, dist=False)
    model.validation(loader, current_iter='unit', tb_logger=None, save_img=True)
    out_dir = tmp_path / 'vis' / 'val'
    with open(out_dir / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert [int(r['frame']) for r in rows] == list(range(12))
    assert [r['is_key'] for r in rows] == [str(t % 4 == 0) for t in range(12)]
    assert len(list((out_dir / '000').glob('*.png'))) == 12
    summary = model.last_validation
    nonkey = [float(r['psnr']) for r in rows if r['is_key'] == 'False']
    assert summary['all']['psnr'][0] == pytest.approx(sum(nonkey) / len(nonkey))
    assert summary['folders']['000']['aad'][1] == pytest.approx(
        sum(float(r['aad']) for r in rows if r['is_key'] == 'True') / 3)


def test_summarize_separates_key_frames():
    rows = [dict(folder='a', frame=0, is_key=True, psnr=40.0), dict(folder='a', frame=1, is_key=False, psnr=30.0),
            dict(folder='b', frame=1, is_key=False, psnr=20.0)]
    s = summarize(rows, ['psnr'])
    assert s['all']['psnr'] == (25.0, 40.0)
    assert s['folders']['b']['psnr'][0] == 20.0
