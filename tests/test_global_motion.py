"""The classical global translation (``xfusion.archs.global_motion``) and PropSTF's use of it."""
import numpy as np
import torch
from basicsr.archs.arch_util import flow_warp
from scipy.ndimage import gaussian_filter

import xfusion  # noqa: F401  (the BasicSR adjustments)
from xfusion.archs.global_motion import (
    LR_BLURS,
    as_the_lr_camera_sees,
    global_shift,
    phase_correlation,
    prefer_still,
    refine_against_key,
    shifts_to_reference,
)
from xfusion.archs.propstf_arch import PropSTF
from xfusion.camera import area_average, lr_camera


def texture(size: int, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(gaussian_filter(rng.random((size, size)), 2.0).astype(np.float32))[None, None]


def shifted(img: torch.Tensor, x: float, y: float) -> torch.Tensor:
    """img moved by (x, y): flow_warp(result, (x, y)) gives img back (inside the frame)."""
    flow = torch.tensor([-x, -y]).view(1, 2, 1, 1).expand(1, 2, *img.shape[-2:]).permute(0, 2, 3, 1)
    return flow_warp(img, flow, padding_mode='border')


def test_a_known_translation_is_found_to_a_fraction_of_a_pixel():
    big = texture(96)
    ref = big[..., 16:80, 16:80]
    for x, y in [(0.3, -0.7), (2.4, 1.1), (-9.6, 5.2)]:
        supp = shifted(big, x, y)[..., 16:80, 16:80]
        coarse = phase_correlation(ref, supp)[0]
        fine = global_shift(ref, supp)[0]
        assert (coarse - torch.tensor([x, y])).abs().max() < 0.5  # the right peak
        assert (fine - torch.tensor([x, y])).abs().max() < 0.05  # and sub-pixel after the Gauss-Newton steps


def test_a_small_moving_part_does_not_pull_the_estimate():
    big = texture(96)
    ref = big[..., 16:80, 16:80].clone()
    supp = shifted(big, 1.5, 0.5)[..., 16:80, 16:80].clone()
    part = texture(64, seed=1)[..., :12, :12]  # a part of the same kind that stays where it is
    ref[..., 4:16, 4:16] = part
    supp[..., 4:16, 4:16] = part
    assert (global_shift(ref, supp)[0] - torch.tensor([1.5, 0.5])).abs().max() < 0.1


def test_a_static_noisy_frame_stays_in_place_and_a_moving_one_moves():
    big = texture(96)
    ref = big[..., 16:80, 16:80]
    rng = np.random.default_rng(2)
    noisy = ref + torch.from_numpy(0.01 * rng.standard_normal(ref.shape).astype(np.float32))
    zero = torch.zeros(1, 2)
    wandering = global_shift(noisy, ref)
    assert 0 < wandering.abs().max() < 0.1  # the noise moves the estimate a little
    assert torch.equal(prefer_still(noisy, ref, wandering, zero, 0.1), zero)
    moved = shifted(big, 1.5, 0.5)[..., 16:80, 16:80]
    shift = global_shift(noisy, moved)
    assert torch.equal(prefer_still(noisy, moved, shift, zero, 0.1), shift)


def test_far_from_the_reference_the_shifts_between_neighbours_lead_the_estimate():
    # the sample moves 0.7 px right and 0.3 px down per frame (14 and 6 px over the segment, on a
    # 32x32 frame) behind a band that stays in place: against the reference alone, phase correlation
    # locks onto the band at the far end; the running sum of the steps between neighbours does not
    big, n = texture(96), 21
    moved = torch.tensor([[0.7 * t, 0.3 * t] for t in range(n)])
    frames = torch.stack([shifted(big, x, y)[..., 32:64, 32:64] for x, y in moved.tolist()], 1)
    frames[..., 24:32, :] = texture(64, seed=1)[..., :8, :32][:, None]
    ref = frames[:, 0]
    assert (phase_correlation(ref, frames[:, -1])[0] + moved[-1]).abs().max() > 5  # the wrong peak
    shifts = shifts_to_reference(frames, ref, torch.tensor([0]), 0.1)[0]  # flow_warp(ref, shift) ~ frame
    assert (shifts + moved).abs().max() < 0.6
    from_end = shifts_to_reference(frames, frames[:, -1], torch.tensor([n - 1]), 0.1)[0]  # the other direction
    assert (from_end + moved - moved[-1]).abs().max() < 0.6


def test_an_untrained_network_warps_the_key_frames_of_a_translating_segment():
    # the whole scene moves 2 HR px per frame to the right: the key frames, warped along the flows the
    # network starts with, must match the frames between them far better than the key frames themselves
    frames, speed = 9, 2.0
    rng = np.random.default_rng(3)
    canvas = gaussian_filter(rng.random((96, 128)), 1.5).astype(np.float32)
    hr = np.stack([canvas[16:80, 40 - int(speed * t):104 - int(speed * t)] for t in range(frames)])
    lq = torch.from_numpy(area_average(hr).astype(np.float32))[None, :, None]
    hq = torch.from_numpy(hr[[0, frames - 1]])[None, :, None]
    gt = torch.from_numpy(hr)

    def errors(net):
        with torch.no_grad():
            _, aux = net(lq, hq, torch.tensor([[0, frames - 1]]), return_aux=True)
        inner = np.s_[:, 8:-8, 8:-8]  # away from the borders the warp brings in
        return [float((aux[k][0, 1:-1, 0] - gt[1:-1])[inner].abs().mean()) for k in ('key0', 'key1')]

    torch.manual_seed(0)
    moving = errors(PropSTF(num_feat=8, flow_feat=8, num_feat_up=8).eval())
    inner = np.s_[:, 8:-8, 8:-8]
    unwarped = [float((hq[0, j, 0] - gt[1:-1])[inner].abs().mean()) for j in (0, 1)]
    assert all(m < 0.3 * p for m, p in zip(moving, unwarped))


def test_against_the_hr_key_frame_the_shifts_become_finer_and_still_frames_stay_still():
    # a fine texture translating 1.3 HR px right and 0.55 down per frame, seen by the LR camera (4x4 area
    # average); the reference is the HR key frame at position 0. Against the key frame's own 4x4 average the
    # shifts interpolate a coarse image; against the key frame warped at HR they come out finer
    # (its optics blur 1.5 HR px more than the HR camera's)
    rng = np.random.default_rng(4)
    canvas = torch.from_numpy(gaussian_filter(rng.random((160, 160)), 1.2).astype(np.float32))[None, None]
    n = 9
    moved_hr = torch.tensor([[1.3 * t, 0.55 * t] for t in range(n)])
    hr = torch.stack([shifted(canvas, x, y)[..., 16:144, 16:144] for x, y in moved_hr.tolist()], 1)  # (1, N, 1, H, W)
    lq = torch.from_numpy(np.stack([lr_camera(f, 1.5) for f in hr[0, :, 0].numpy()]))[None, :, None]
    lq[:, 4] = lq[:, 0]  # position 4 did not move
    truth = -moved_hr / 4  # flow_warp(key, shift) ~ frame, in LR pixels
    truth[4] = 0
    key, pos = hr[:, 0], torch.tensor([0])
    coarse = shifts_to_reference(lq, torch.nn.functional.avg_pool2d(key, 4), pos, 0.1)
    fine = refine_against_key(lq, key, coarse, pos)
    moving = [t for t in range(1, n) if t != 4]
    coarse_error = (coarse[0, moving] - truth[moving]).norm(dim=1)
    fine_error = (fine[0, moving] - truth[moving]).norm(dim=1)
    assert fine_error.max() < 0.03
    assert fine_error.mean() < 0.5 * coarse_error.mean()
    assert torch.equal(fine[0, [0, 4]], coarse[0, [0, 4]])  # held still: unchanged


def test_the_lr_camera_blur_is_found_from_the_frame_recorded_at_the_key_frames_time():
    rng = np.random.default_rng(5)
    key = gaussian_filter(rng.random((64, 64)), 1.0).astype(np.float32)
    for sigma in LR_BLURS:
        lr = torch.from_numpy(lr_camera(key, sigma))[None, None]
        seen = as_the_lr_camera_sees(torch.from_numpy(key)[None, None], lr)
        if sigma == 0:
            assert torch.equal(seen, torch.from_numpy(key)[None, None])
        # its 4x4 average is the LR frame, inside the frame (borders are replicated, not mirrored as cv2 does)
        assert (torch.nn.functional.avg_pool2d(seen, 4) - lr)[..., 2:-2, 2:-2].abs().max() < 2e-3
