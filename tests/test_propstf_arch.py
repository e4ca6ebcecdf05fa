"""The key-frame propagation family (PropSTF, a segment network), its classical inputs and segment inference."""
import csv
import shutil

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from torch.nn import functional as F

from helpers import moving_scene, run_script, training_options, workspace, write_pair_sequence
from xfusion.archs import classical
from xfusion.archs.propstf_arch import PropSTF
from xfusion.archs.propvsr_arch import PropVSR
from xfusion.baselines import bayes, estimate_noise_var, estimate_noise_var_temporal, temporal
from xfusion.camera import area_average
from xfusion.inference import DIHEDRAL, SequenceInference, dihedral
from xfusion.io.frames import read_frame
from xfusion.schedule import FrameSource, KeySchedule


def small(**kwargs):
    torch.manual_seed(0)
    return PropSTF(**{**dict(num_feat=8, flow_feat=8, num_feat_up=8), **kwargs}).eval()


def perturbed(net):
    """Random (non-zero) weights everywhere, so that no path is trivially zero (flows, residual, blend)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


def scene(frames=11, size=(8, 12), seed=0):
    rng = np.random.default_rng(seed)
    hr = gaussian_filter(rng.random((frames, size[0] * 4, size[1] * 4)), (0, 1.5, 1.5)).astype(np.float32)
    return area_average(hr).astype(np.float32), hr


def test_shapes_and_the_lr_only_variant():
    lr, hr = scene()
    lq, hq = torch.from_numpy(lr)[None, :, None], torch.from_numpy(hr[[0, 10]])[None, :, None]
    net = small()
    assert net.kind == 'segment' and net.uses_keys and net.scale == 4
    with torch.no_grad():
        out = net(lq, hq, torch.tensor([[0, 10]]), torch.tensor([[1, 5, 9]]))
        assert out.shape == (1, 3, 1, 32, 48)
        lr_only = PropVSR(num_feat=8, flow_feat=8, num_feat_up=8, context=2).eval()
        assert not lr_only.uses_keys and lr_only.kind == 'segment' and not any('_hi' in k for k in lr_only.state_dict())
        assert lr_only(lq).shape == (1, 11, 1, 32, 48)
    with pytest.raises(ValueError, match='key_pos'):
        net(lq, hq, torch.tensor([[0, 11]]))


def test_at_the_start_the_flows_of_a_still_scene_are_zero_and_a_key_frame_warps_to_itself():
    lr, hr = scene()
    lr, hr = np.repeat(lr[:1], 11, axis=0), np.repeat(hr[:1], 11, axis=0)  # the flows start at the whole-frame motion
    lq, hq = torch.from_numpy(lr)[None, :, None], torch.from_numpy(hr[[0, 10]])[None, :, None]
    net = small()
    with torch.no_grad():
        out, aux = net(lq, hq, torch.tensor([[0, 10]]), torch.tensor([[0, 4, 10]]), return_aux=True)
    assert aux['flows'].abs().max() == 0
    assert torch.allclose(aux['key0'][0, 0], hq[0, 0], atol=1e-5)
    assert torch.allclose(aux['key1'][0, 2], hq[0, 1], atol=1e-5)
    assert set(aux) >= {'key0', 'key1', 'bayes', 'bayes_warped', 'temporal', 'lr'}


def test_a_padded_segment_gives_what_the_unpadded_one_gives():
    # training pads segments of a batch to one length: the padding must not leak into the positions before it
    lr, hr = scene(frames=8, size=(16, 16))
    net = perturbed(small())
    lq = torch.from_numpy(lr)[None, :, None]
    hq = torch.from_numpy(hr[[0, 7]])[None, :, None]
    padded = torch.cat([lq, lq[:, -1:].expand(1, 3, -1, -1, -1)], 1)  # positions 8..10 repeat frame 7
    pos = torch.arange(8)[None]
    with torch.no_grad():
        plain = net(lq, hq, torch.tensor([[0, 7]]), pos)
        both = net(torch.cat([padded, padded]), torch.cat([hq, hq]), torch.tensor([[0, 7], [0, 7]]),
                   torch.cat([pos, pos]))
    assert (both[0] - plain[0]).abs().max() < 1e-5


def test_one_key_frame_at_either_end():
    lr, hr = scene(frames=6)
    net = perturbed(small())
    lq = torch.from_numpy(lr)[None, :, None]
    for pos in (0, 5):
        hq = torch.from_numpy(hr[[pos, pos]])[None, :, None]
        with torch.no_grad():
            out = net(lq, hq, torch.tensor([[pos, pos]]))
        assert out.shape == (1, 6, 1, 32, 48) and torch.isfinite(out).all()


def test_segment_inference_runs_each_segment_once_and_matches_the_forward():
    lr, hr = scene(frames=23)
    net = perturbed(small())
    reads = []
    source = FrameSource(lambda t: reads.append(t) or lr[t], lambda k: hr[k], KeySchedule.every(5, 23, offset=2), 1)
    out = list(SequenceInference(net, batch=3).run(source))
    assert [t for t, _ in out] == list(range(23)) and out[0][1].shape == (1, 32, 48)
    # memory is bounded by the period: each LR frame is read once, a segment's end key frame twice
    assert max(reads.count(t) for t in set(reads)) == 2 and len(reads) == 23 + len(source.schedule.key_times)
    lq = torch.from_numpy(lr[7:13])[None, :, None]  # the segment [7, 12): key frames at 7 and 12
    with torch.no_grad():
        full = net(lq, torch.from_numpy(hr[[7, 12]])[None, :, None], torch.tensor([[0, 5]]))
    assert (full[0, 3] - dict(out)[10]).abs().max() < 1e-5
    some = dict(SequenceInference(net).run(source, times=[3, 16]))
    assert sorted(some) == [3, 16] and (some[16] - dict(out)[16]).abs().max() < 1e-5
    lr_only = perturbed(PropVSR(num_feat=8, flow_feat=8, num_feat_up=8, context=2))
    assert len(list(SequenceInference(lr_only, batch=4).run(source))) == 23


def test_the_self_ensemble_averages_the_network_over_the_flips_and_transposes_of_its_frames():
    lr, hr = scene(frames=9, size=(8, 12))
    source = FrameSource(lambda t: lr[t], lambda k: hr[k], KeySchedule.every(4, 9), 1)
    for net in (perturbed(PropVSR(num_feat=8, flow_feat=8, num_feat_up=8, context=2)), perturbed(small())):
        plain = dict(SequenceInference(net).run(source))
        net.self_ensemble = True  # PropVSR's option; any segment network runs so when it is set
        ensemble = dict(SequenceInference(net, batch=3).run(source))
        assert sorted(ensemble) == list(range(9)) and ensemble[4].shape == plain[4].shape == (1, 32, 48)
        # by hand: the network on each transformed sequence (non-square frames: transposed ones are 12x8), turned back
        net.self_ensemble = False
        by_hand = torch.zeros(9, 1, 32, 48)
        for k in range(DIHEDRAL):
            turned = FrameSource(lambda t, k=k: dihedral(torch.from_numpy(lr[t]), k).numpy(),
                                 lambda t, k=k: dihedral(torch.from_numpy(hr[t]), k).numpy(), source.schedule, 1)
            for t, out in SequenceInference(net).run(turned):
                by_hand[t] += dihedral(out, k, inverse=True) / DIHEDRAL
        assert max((ensemble[t] - by_hand[t]).abs().max() for t in range(9)) < 1e-5
        assert max((ensemble[t] - plain[t]).abs().max() for t in range(9)) > 1e-4  # the network is not symmetric
    # each transform undone gives the frame back
    x = torch.arange(12.).reshape(3, 4)
    assert all(torch.equal(dihedral(dihedral(x, k), k, inverse=True), x) for k in range(DIHEDRAL))
    assert len({tuple(dihedral(x, k).flatten().tolist()) for k in range(DIHEDRAL)}) == DIHEDRAL


def test_a_few_training_steps_lower_the_loss():
    lr, hr = scene(frames=9)
    net = small().train()
    lq, gt = torch.from_numpy(lr)[None, :, None], torch.from_numpy(hr)[None, :, None]
    key_pos, out_pos = torch.tensor([[0, 8]]), torch.tensor([[2, 4, 6]])
    optimizer = torch.optim.Adam(net.parameters(), 2e-3)
    losses = []
    for _ in range(30):
        loss = (net(lq, gt[:, [0, 8]], key_pos, out_pos) - gt[:, [2, 4, 6]]).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # the loss falls to about 0.8 of its start within 20 steps on this noise scene, then slowly: leave a margin
    # for the rounding of other CPUs
    assert max(losses[-5:]) < 0.9 * losses[0]


def test_the_denoised_temporal_estimate_keeps_the_key_frame_where_only_noise_changed():
    rng = np.random.default_rng(0)
    hr = np.stack([gaussian_filter(rng.random((64, 64)), 1.5)] * 3).astype(np.float32)
    hr[1, 20:40, 20:40] += 0.3  # something changed here, and nowhere else
    sigma = 0.02
    lr = (area_average(hr) + rng.normal(0, sigma, (3, 16, 16))).astype(np.float32)
    t = [torch.from_numpy(a)[None] for a in (lr[1][None], hr[[0, 2]], lr[[0, 2]], np.array([0.5, 0.5], np.float32))]
    plain = classical.temporal(*t)[0, 0].numpy()
    denoised = classical.temporal(*t, sigma_n2=torch.tensor([sigma ** 2]))[0, 0].numpy()
    def rmse(img, where=np.s_[:, :]):
        return np.sqrt(np.mean((img - hr[1])[where] ** 2))
    still, moved = np.s_[:12, :], np.s_[24:36, 24:36]
    assert rmse(denoised, still) < 0.5 * rmse(plain, still) and rmse(denoised) < rmse(plain)
    assert np.abs(denoised - hr[1])[moved].mean() < 0.2 * 0.3  # the change is kept
    # without noise nothing is shrunk
    clean = [torch.from_numpy(a)[None] for a in (area_average(hr)[1][None].astype(np.float32), hr[[0, 2]],
                                                 area_average(hr)[[0, 2]].astype(np.float32), t[3][0].numpy())]
    assert torch.allclose(classical.temporal(*clean, sigma_n2=torch.tensor([0.0])), classical.temporal(*clean))


def test_the_denoised_temporal_estimate_takes_the_key_frame_that_still_holds_under_noise():
    # a faint part is in the first key frame only (gone by t and at the second): the second key frame is the one
    # to take there. Its LR change beyond the noise says so; the mean |change| of two noisy frames (the weights of
    # the plain estimate) hardly does
    rng = np.random.default_rng(0)
    batch, sigma, contrast = 16, 0.02, 0.04  # 16 draws of the LR noise
    hr = np.stack([gaussian_filter(rng.random((64, 64)), 1.5).astype(np.float32)] * 3)
    hr[0, 20:40, 20:40] += contrast
    lr = (area_average(hr)[None] + rng.normal(0, sigma, (batch, 3, 16, 16))).astype(np.float32)
    y, lq_key = torch.from_numpy(lr[:, 1:2]), torch.from_numpy(lr[:, [0, 2]])
    keys = torch.from_numpy(hr[[0, 2]])[None].expand(batch, -1, -1, -1)

    def estimate(weights):
        return classical.temporal(y, keys, lq_key, torch.tensor([weights] * batch),
                                  sigma_n2=torch.full((batch,), sigma ** 2))[:, 0].numpy()

    mixed, from_first, from_second = estimate([0.5, 0.5]), estimate([1.0, 0.0]), estimate([0.0, 1.0])
    plain_weights = 1 / (classical.box_mean((y - lq_key).abs(), 5) + 1e-3)
    plain_weights = F.interpolate(plain_weights / plain_weights.sum(1, keepdim=True), scale_factor=4,
                                  mode='bilinear', align_corners=False).numpy()
    plain_mix = plain_weights[:, 0] * from_first + plain_weights[:, 1] * from_second
    gone = np.s_[:, 22:38, 22:38]

    def share_of_first(img):
        return (img - from_second)[gone].mean() / (from_first - from_second)[gone].mean()

    assert share_of_first(mixed) < 0.25 and share_of_first(mixed) < 0.5 * share_of_first(plain_mix)


def test_the_still_gate_hands_unchanged_pixels_to_the_temporal_source_and_moving_ones_to_the_blend():
    rng = np.random.default_rng(0)
    still = gaussian_filter(rng.random((64, 64)), 1.5).astype(np.float32)
    hr = np.stack([still] * 9)
    for t in range(9):  # the right half changes from frame to frame; the left half stands still
        hr[t, :, 32:] = gaussian_filter(rng.random((64, 32)), 1.0) * 0.6 + 0.2
    lq, hq = torch.from_numpy(area_average(hr))[None, :, None], torch.from_numpy(hr[[0, 8]])[None, :, None]
    key_pos, pos = torch.tensor([[0, 8]]), torch.tensor([[4]])
    nets = {gate: small() for gate in (False, True)}
    for gate, net in nets.items():  # a blend that takes the upsampled LR frame everywhere; no LR projection
        net.finish = lambda out, *_: out
        with torch.no_grad():
            net.blend.logits.bias.copy_(torch.tensor([60.0 if s == 'lr' else 0.0 for s in net.sources]))
            if not gate:  # the gate shut everywhere
                net.still_gate.conv.bias.fill_(-60.0)
    with torch.no_grad():
        out = {gate: net(lq, hq, key_pos, pos, return_aux=True) for gate, net in nets.items()}
    truth = torch.from_numpy(hr[4])
    gated, (plain, sources) = out[True][0][0, 0, 0], (out[False][0][0, 0, 0], out[False][1])
    left, right = np.s_[4:60, 4:24], np.s_[4:60, 44:60]
    assert torch.allclose(plain, sources['lr'][0, 0, 0], atol=1e-5)  # no gate: the blend's choice
    assert (gated - truth)[left].abs().max() < 0.1 * (plain - truth)[left].abs().max()  # the still key frame
    assert torch.allclose(gated[right], plain[right], atol=0.02)  # where it changed, the blend's choice
    # the whole sample moving 2 LR pixels per frame: nothing is still, the gate stays shut
    moving = np.stack([np.roll(still, 8 * t, axis=1) for t in range(9)])
    lq, hq = torch.from_numpy(area_average(moving))[None, :, None], torch.from_numpy(moving[[0, 8]])[None, :, None]
    with torch.no_grad():
        shut, aux = nets[True](lq, hq, key_pos, pos, return_aux=True)
    assert torch.allclose(shut[0, 0, 0][8:-8, 8:-8], aux['lr'][0, 0, 0][8:-8, 8:-8], atol=0.02)


def test_the_torch_classical_estimates_equal_the_baselines_inside_the_frame():
    rng = np.random.default_rng(0)
    hr = np.stack([gaussian_filter(rng.random((160, 160)), 1.5) for _ in range(3)])
    hr[1] = np.roll(hr[0], 2, axis=1) * 0.9 + 0.05
    lr = area_average(hr) + rng.normal(0, 0.01, (3, 40, 40))
    lq, hq, lq_key = lr[[1, 1, 1]].astype(np.float32), hr[[0, 2]].astype(np.float32), lr[[0, 2]].astype(np.float32)
    weights = np.array([0.5, 0.5], np.float32)
    inner = np.s_[28:-28, 28:-28]  # two 7-pixel box means: borders differ (replicated here, mirrored there)
    t = [torch.from_numpy(a)[None] for a in (lq[1][None], hq, lq_key, weights)]
    assert np.abs(classical.temporal(*t)[0, 0].numpy() - temporal(lq, hq, lq_key, weights, 1))[inner].max() < 1e-5
    fixed = dict(sigma_n2=1e-4)
    np_bayes = bayes(lq, hq, lq_key, weights, 1, **fixed)
    torch_bayes = classical.bayes(*t, sigma_n2=torch.tensor([1e-4]))[0, 0].numpy()
    assert np.abs(np_bayes - torch_bayes)[inner].max() < 1e-4
    y = lq[1].astype(np.float64)  # the same robust noise estimate (medians of even counts differ a little)
    expected = min(estimate_noise_var(y), estimate_noise_var_temporal(y, lq_key))
    assert float(classical.noise_variance(t[0], t[2])[0]) == pytest.approx(expected, rel=0.05)


@pytest.mark.slow
def test_train_validate_fuse_and_evaluate_a_segment_network(reds_root, tmp_path):
    opt = training_options(reds_root, **{'train:total_iter': 2, 'val:val_freq': 2})
    opt['network_g'] = dict(type='PropSTF', num_feat=8, flow_feat=8, num_feat_up=8)
    opt['model_type'] = 'SegmentSTFModel'
    opt['datasets']['train'].update(segment=True, period_range=[2, 8], num_supervised=2)
    del opt['datasets']['train']['lr_sep']
    opt['train']['warp_opt'] = opt['train']['flow_opt'] = {'type': 'CharbonnierLoss', 'loss_weight': 0.1}
    workspace(tmp_path, opt)
    out = run_script(tmp_path, 'train.py', '-opt', 'e2e.yml')
    assert 'l_flow' in out and 'l_warp' in out and 'Validation val' in out
    out = run_script(tmp_path, 'test.py', '-opt', 'e2e.yml')
    with open(tmp_path / 'results' / 'e2e' / 'visualization' / 'val' / 'metrics.csv') as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12 and all(float(r['psnr']) > 10 for r in rows)
    ckpt = tmp_path / 'experiments' / 'e2e' / 'models' / 'net_g_latest.pth'
    clip = '001'
    (tmp_path / 'hr').mkdir()
    for i, frame in enumerate(sorted((reds_root / 'train_sharp_gray' / clip).iterdir())):
        if i % 4 == 0:
            shutil.copy(frame, tmp_path / 'hr' / frame.name)
    run_script(tmp_path, '-m', 'xfusion', 'fuse', '--lr', str(reds_root / 'train_sharp_bicubic_gray' / 'X4' / clip),
               '--hr', str(tmp_path / 'hr'), '--period', '4', '--model', str(ckpt), '--out', str(tmp_path / 'fused'),
               '--tile', '8', '--overlap', '2', '--batch', '3')
    fused = sorted((tmp_path / 'fused').glob('*.tif'))
    assert len(fused) == 12
    key = read_frame(fused[4]).astype(np.float32) / 255
    truth = read_frame(sorted((reds_root / 'train_sharp_gray' / clip).iterdir())[4]).astype(np.float32) / 255
    assert np.abs(key - truth).mean() < 0.05  # at a key frame the base reproduces the recorded frame
    xray = tmp_path / 'xray'
    write_pair_sequence(xray / 's' / 'HR', xray / 's' / 'LR', moving_scene(9, (32, 32)), np.uint16)
    run_script(tmp_path, '-m', 'xfusion', 'evaluate', '--data', str(xray), '--out', str(tmp_path / 'eval'),
               '--model', f'prop={ckpt}', '--methods', 'bayes,prop', '--period', '4')
    with open(tmp_path / 'eval' / 'metrics.csv') as f:
        assert {r['method'] for r in csv.DictReader(f)} == {'bayes', 'prop'}


def test_the_lr_camera_is_fitted_at_the_key_frames_and_a_ghost_is_pulled_onto_the_lr_frame():
    from xfusion.archs.global_motion import fit_lr_blur
    from xfusion.camera import lr_camera
    rng = np.random.default_rng(0)
    truth = gaussian_filter(rng.random((64, 64)), 2.0).astype(np.float32)
    truth = (truth - truth.min()) / np.ptp(truth) * 0.6 + 0.2
    lr = lr_camera(truth, 1.5)  # the LR camera blurs 1.5 HR pixels more than the HR camera
    as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))[None, None]  # noqa: E731
    blur, misfit = classical.fit_lr_camera(as_tensor(truth)[:, None], as_tensor(lr)[:, None], fit_lr_blur)
    assert float(blur[0]) == 1.5 and misfit.shape == (1, 1, 1, 16, 16)
    assert float(misfit[..., 2:-2, 2:-2].max()) < 1e-5  # the model explains the frame (borders: mirrored there)
    var = torch.clamp(misfit[:, 0], min=1e-5)  # as the network does: no correction below the model's own misfit
    kept = classical.project_onto_lr(as_tensor(truth), as_tensor(lr), var, blur)[0, 0].numpy()
    assert np.abs(kept - truth).max() < 2e-3  # a frame the LR frame agrees with stays as it is
    ghost = truth.copy()
    ghost[24:40, 24:40] += 0.25  # key-frame content that the LR frame says has gone
    pulled = classical.project_onto_lr(as_tensor(ghost), as_tensor(lr), var, blur)[0, 0].numpy()
    rmse = lambda a: float(np.sqrt(np.mean((a - truth) ** 2)))  # noqa: E731
    assert rmse(pulled) < 0.4 * rmse(ghost)
    # under noise, residuals within it are left alone: a consistent frame stays close to what it was
    noisy = lr + rng.normal(0, 0.01, lr.shape).astype(np.float32)
    kept = classical.project_onto_lr(as_tensor(truth), as_tensor(noisy), var.clamp(min=1e-4), blur)[0, 0].numpy()
    assert rmse(kept) < 0.003
