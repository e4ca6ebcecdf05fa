"""Global translation between two LR frames, classically, in torch (batched, on the network's device).

When the whole sample moves (a translation stage, a vibrating mount), every LR step of an
ultra-high-speed camera shifts the image by a fraction of a pixel, and over a key-frame gap of 20
or 40 steps by tens of pixels. A small flow network trained for minutes on 16x16 crops does not
learn that (it learns the local motions); the dominant translation of a frame pair is what phase
correlation finds, and a few Gauss-Newton (Lucas-Kanade) steps make it sub-pixel. The propagation
network starts its flow at this estimate and learns the rest.

``refine_against_key`` then makes the shifts of a segment sub-pixel against the HR key frame itself, seen
through the LR camera: the key frame, blurred as the LR camera's optics blur it (the extra blur fitted on
the LR frame recorded at the key frame's time, as ``xfusion.camera.fit_lr_camera`` fits it for ``fuse``),
warped at HR and averaged over each LR pixel, is compared with each LR frame. A tenth of an LR pixel
is 0.4 HR pixels of misplaced key-frame detail, which the network does not correct.

``global_shift(ref, supp)`` -> (B, 2) flow (x, y) in pixels, in ``flow_warp``'s convention:
``flow_warp(supp, flow)`` matches ``ref``. Local motions (a rotor, particles) take a small part of
the frame: the Gauss-Newton steps weigh pixels down where the residual is large (Tukey), so the
estimate follows the sample, not the moving parts. ``prefer_still`` keeps "no motion" where the
measured shift does not explain a frame clearly better (shot noise alone moves the estimate).
"""
from __future__ import annotations

import math

import torch
from basicsr.archs.arch_util import flow_warp
from torch.nn import functional as F

# The constants of the motion prior, and how each was chosen:
# - CUTOFF: the Gaussian weight of the phase-only spectrum, in cycles per LR pixel: it takes out the high
#   frequencies where shot noise outweighs the content, and gives the correlation peak a shape a parabola fits.
#   Chosen on the validation sequences of the generator's own mix when the motion prior came in (the values
#   tried were not recorded); docs/experiments.md, section 1.
# - STILL_MARGIN: "no motion" unless a shift explains a frame more than 10% better: under shot noise the
#   estimate for a static sample wanders by tenths of a pixel, which blurs a key frame warped by it. Chosen
#   as CUTOFF was.
# - LR_BLURS: the LR camera's extra blurs (HR pixels) that ``as_the_lr_camera_sees`` and ``fit_lr_blur`` try:
#   0 to 3 covers the synthetic cameras (0.9 to 1.9 relative to the HR camera) and leaves room for wider
#   optics; ``fuse``'s own camera fit found 1.49 to 1.72 on sequences whose truth was 1.50 to 1.77 (section 9).
CUTOFF = 0.2
STILL_MARGIN = 0.1
LR_BLURS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def _hann(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    return (torch.hann_window(h, periodic=False, dtype=like.dtype, device=like.device)[:, None]
            * torch.hann_window(w, periodic=False, dtype=like.dtype, device=like.device)[None, :])


def phase_correlation(ref: torch.Tensor, supp: torch.Tensor, radius: float | None = None) -> torch.Tensor:
    """(B, 1, h, w) frames -> (B, 2) integer-plus-parabola shift (x, y) with flow_warp(supp, shift) ~ ref.

    ``radius``: the peak is searched only within this many pixels of no shift (None: everywhere)."""
    b, _, h, w = ref.shape
    window = _hann(h, w, ref)
    a = (ref - ref.mean((2, 3), keepdim=True))[:, 0] * window
    s = (supp - supp.mean((2, 3), keepdim=True))[:, 0] * window
    cross = torch.fft.rfft2(s) * torch.fft.rfft2(a).conj()
    # phase only (whitened), weighted down at high frequencies where shot noise outweighs the content;
    # the weighting also gives the peak a smooth shape that a parabola fits to a fraction of a pixel
    fy = torch.fft.fftfreq(h, device=ref.device, dtype=ref.dtype)[:, None]
    fx = torch.fft.rfftfreq(w, device=ref.device, dtype=ref.dtype)[None, :]
    lowpass = torch.exp(-(fx ** 2 + fy ** 2) / (2 * CUTOFF ** 2))
    corr = torch.fft.irfft2(lowpass * cross / (cross.abs() + 1e-12), s=(h, w))  # peaks at supp's shift against ref
    searched = corr
    if radius is not None:  # the parabola below still reads the unmasked neighbours of the peak
        dy = torch.fft.fftfreq(h, 1 / h, device=ref.device, dtype=ref.dtype)[:, None]
        dx = torch.fft.fftfreq(w, 1 / w, device=ref.device, dtype=ref.dtype)[None, :]
        searched = corr.masked_fill(dx ** 2 + dy ** 2 > radius ** 2, float('-inf'))
    peak = searched.flatten(1).argmax(dim=1)
    py, px = peak // w, peak % w
    rows = torch.arange(b, device=ref.device)

    def refine(p, size, along_y):
        def at(offset):
            q = (p + offset) % size
            return corr[rows, q, px] if along_y else corr[rows, py, q]
        left, mid, right = at(-1), at(0), at(1)
        denom = left - 2 * mid + right
        delta = torch.where(denom.abs() > 1e-12, 0.5 * (left - right) / denom, torch.zeros_like(denom))
        centred = torch.where(p > size // 2, p - size, p).to(ref.dtype)
        return centred + delta.clamp(-0.5, 0.5)

    return torch.stack([refine(px, w, False), refine(py, h, True)], dim=1)


def _as_flow(shift: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, 2) shift -> (B, h, w, 2) constant flow, as flow_warp takes it."""
    return shift[:, :, None, None].expand(-1, 2, h, w).permute(0, 2, 3, 1)


def _inside(flow: torch.Tensor, margin: int = 2) -> torch.Tensor:
    """(B, 1, h, w): 1 where a pixel, away from the border, warped by flow came from inside the frame
    (pixels a shift brought in from outside are not evidence)."""
    b, h, w, _ = flow.shape
    inner = torch.zeros(b, 1, h, w, dtype=flow.dtype, device=flow.device)
    inner[..., margin:h - margin, margin:w - margin] = 1
    return flow_warp(inner, flow, interp_mode='nearest', padding_mode='zeros') * inner


def refine_shift(ref: torch.Tensor, supp: torch.Tensor, shift: torch.Tensor, iterations: int = 3) -> torch.Tensor:
    """Gauss-Newton steps on a (B, 2) shift, robust to local motions (Tukey weights); borders left out."""
    h, w = ref.shape[-2:]
    for it in range(iterations):
        flow = _as_flow(shift, h, w)
        warped = flow_warp(supp, flow, padding_mode='border')
        gx, gy = _gradients(warped)
        shift = shift + _gauss_newton_step(warped - ref, gx, gy, _inside(flow), robust=it > 0)
    return shift


def _gauss_newton_step(err: torch.Tensor, jx: torch.Tensor, jy: torch.Tensor, valid: torch.Tensor,
                       robust: bool) -> torch.Tensor:
    """(B, 2) update of a shift from the residual err and its derivatives jx, jy (all (B, 1, h, w)), over the
    valid pixels; ``robust``: Tukey's biweight at 4.7 robust standard deviations (local motions)."""
    weight = valid
    if robust:
        sigma = 1.4826 * (err.abs() * valid).flatten(1).median(dim=1).values.clamp_min(1e-6)
        u = err / (4.685 * sigma[:, None, None, None])
        weight = valid * ((1 - u ** 2).clamp_min(0) ** 2)
    sxx, sxy, syy = ((weight * p * q).sum((1, 2, 3)) for p, q in ((jx, jx), (jx, jy), (jy, jy)))
    bx, by = (weight * jx * err).sum((1, 2, 3)), (weight * jy * err).sum((1, 2, 3))
    det = (sxx * syy - sxy * sxy).clamp_min(1e-12)
    dx, dy = -(syy * bx - sxy * by) / det, -(sxx * by - sxy * bx) / det
    return torch.stack([dx, dy], 1).clamp(-1, 1)


def _gradients(img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Central differences along x and y of (B, C, h, w), borders replicated."""
    padded = F.pad(img, (1, 1, 1, 1), mode='replicate')
    return ((padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2,
            (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2)


def refine_against_key(frames: torch.Tensor, key: torch.Tensor, shifts: torch.Tensor, ref_pos: torch.Tensor,
                       iterations: int = 3) -> torch.Tensor:
    """(B, N, 1, h, w) LR frames, (B, 1, H, W) the HR key frame at positions ref_pos (B,), (B, N, 2) their shifts
    against it (``shifts_to_reference``) -> (B, N, 2) the same, refined by robust Gauss-Newton steps against
    the key frame warped at HR and averaged over each LR pixel (textures only, borders left out). Frames held
    at the key frame's own shift ("no motion", ``prefer_still``) keep it."""
    b, n, _, h, w = frames.shape
    scale = key.shape[-1] // w
    rows = torch.arange(b, device=ref_pos.device)
    with torch.no_grad(), torch.autocast(frames.device.type, enabled=False):
        frames = frames.float()
        target = _high_pass(frames.flatten(0, 1))
        key = as_the_lr_camera_sees(key.float(), frames[rows, ref_pos])
        key = key[:, None].expand(b, n, *key.shape[1:]).flatten(0, 1)
        shift = shifts.flatten(0, 1).float()
        for it in range(iterations):
            warped = flow_warp(key, _as_flow(scale * shift, *key.shape[-2:]), interp_mode='bicubic',
                               padding_mode='border')
            gx, gy = _gradients(warped)
            # d(area average of the warped key)/d(shift in LR pixels): the HR gradient, scale HR pixels per LR pixel
            jx, jy = (_high_pass(scale * F.avg_pool2d(g, scale)) for g in (gx, gy))
            err = _high_pass(F.avg_pool2d(warped, scale)) - target
            shift = shift + _gauss_newton_step(err, jx, jy, _inside(_as_flow(shift, h, w), margin=3), robust=it > 0)
        refined = shift.unflatten(0, (b, n))
        still = (shifts == shifts[rows, ref_pos][:, None]).all(dim=2, keepdim=True)
        return torch.where(still, shifts, refined.to(shifts))


def as_the_lr_camera_sees(key: torch.Tensor, lr_at_key: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) HR key frames blurred by the LR camera's extra blur (one of ``LR_BLURS``, HR pixels): the one
    whose 4x4 area average best matches the texture of the LR frame recorded at the same time (B, 1, h, w)."""
    candidates, misfit = _blur_candidates(key, lr_at_key)
    return candidates[torch.arange(key.shape[0], device=key.device), misfit.argmin(dim=1)]


def fit_lr_blur(key: torch.Tensor, lr_at_key: torch.Tensor) -> torch.Tensor:
    """(B,) the LR camera's extra blur in HR pixels (one of ``LR_BLURS``), fitted as ``as_the_lr_camera_sees``
    fits it: the HR key frames (B, 1, H, W) against the LR frames recorded at the same times (B, 1, h, w)."""
    with torch.no_grad(), torch.autocast(key.device.type, enabled=False):
        _, misfit = _blur_candidates(key.float(), lr_at_key.float())
        return torch.tensor(LR_BLURS, device=key.device)[misfit.argmin(dim=1)]


def _blur_candidates(key: torch.Tensor, lr_at_key: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The key frames blurred by each of ``LR_BLURS`` (B, S, 1, H, W), and (B, S) how far the 4x4 area average
    of each is from the texture of the LR frame (borders left out)."""
    scale = key.shape[-1] // lr_at_key.shape[-1]
    candidates = torch.stack([_gaussian_blur(key, sigma) for sigma in LR_BLURS], 1)  # (B, S, 1, H, W)
    b, s = candidates.shape[:2]
    pooled = _high_pass(F.avg_pool2d(candidates.flatten(0, 1), scale)).unflatten(0, (b, s))
    misfit = ((pooled - _high_pass(lr_at_key)[:, None]) ** 2)[..., 2:-2, 2:-2].mean((2, 3, 4))
    return candidates, misfit


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, h, w), sigma in pixels (0: unchanged), borders replicated."""
    if sigma <= 0:
        return x
    radius = math.ceil(3 * sigma)
    taps = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = (kernel / kernel.sum()).expand(x.shape[1], 1, -1)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode='replicate'), kernel[:, :, None, :], groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, radius, radius), mode='replicate'), kernel[:, :, :, None], groups=x.shape[1])


def global_shift(ref: torch.Tensor, supp: torch.Tensor, init: torch.Tensor | None = None,
                 iterations: int = 3) -> torch.Tensor:
    """(B, 1, h, w) frames -> (B, 2) shift (x, y) with flow_warp(supp, shift) ~ ref (see the module docstring).

    ``init``: a shift to start the Gauss-Newton steps from, instead of phase correlation.
    """
    with torch.no_grad(), torch.autocast(ref.device.type, enabled=False):
        ref, supp = ref.float(), supp.float()
        shift = phase_correlation(ref, supp) if init is None else init.float()
        # on the texture only: the flat field (fixed to the lab) would pull the shift toward zero
        return refine_shift(_high_pass(ref), _high_pass(supp), shift, iterations)


def shifts_to_reference(frames: torch.Tensor, ref: torch.Tensor, ref_pos: torch.Tensor,
                        still_margin: float) -> torch.Tensor:
    """(B, N, 1, h, w) frames, (B, 1, h, w) a reference taken at positions ref_pos (B,) -> (B, N, 2): each
    frame's shift against the reference (``global_shift``), or the shift measured at ref_pos itself where
    that explains the frame as well (``prefer_still``). The reference's texture is computed once.

    Far from the reference the sample has moved by many pixels and phase correlation against it can
    lock onto the wrong peak (little overlap, moving parts); the shifts between neighbours are small
    and reliable, so their running sum is a second start for the Gauss-Newton steps against the
    reference (which remove what the sum accumulated), and each frame keeps the start whose result
    fits it better."""
    b, n = frames.shape[:2]
    rows = torch.arange(b, device=ref_pos.device)
    with torch.no_grad(), torch.autocast(frames.device.type, enabled=False):
        frames, ref = frames.float(), ref.float()
        flat = frames.flatten(0, 1)

        def repeated(x):
            return x[:, None].expand(b, n, *x.shape[1:]).flatten(0, 1)
        flat_texture, ref_texture = _high_pass(flat), repeated(_high_pass(ref))
        direct = refine_shift(flat_texture, ref_texture, phase_correlation(flat, repeated(ref)))
        shifts = direct
        if n > 1:
            summed = _running_sum(_neighbour_steps(frames, flat_texture.unflatten(0, (b, n))))
            at_ref = direct.unflatten(0, (b, n))[rows, ref_pos]  # (B, 2)
            start = (summed - summed[rows, ref_pos][:, None] + at_ref[:, None]).flatten(0, 1)
            tracked = refine_shift(flat_texture, ref_texture, start)
            closer = _misfit(flat_texture, ref_texture, tracked) < _misfit(flat_texture, ref_texture, direct,
                                                                           like=tracked)
            shifts = torch.where(closer[:, None], tracked, direct)
        still = shifts.unflatten(0, (b, n))[rows, ref_pos]  # (B, 2)
        chosen = _prefer_still(flat_texture, ref_texture, shifts, repeated(still), still_margin)
        return chosen.unflatten(0, (b, n))


def _neighbour_steps(frames: torch.Tensor, textures: torch.Tensor) -> torch.Tensor:
    """(B, N, 1, h, w) frames and their textures -> (B, N-1, 2) steps, flow_warp(frame i, step i) ~ frame i+1:
    phase correlation, then Gauss-Newton steps on the textures."""
    b, n = frames.shape[:2]
    start = phase_correlation(frames[:, 1:].flatten(0, 1), frames[:, :-1].flatten(0, 1))
    return refine_shift(textures[:, 1:].flatten(0, 1), textures[:, :-1].flatten(0, 1), start).unflatten(0, (b, n - 1))


def _running_sum(steps: torch.Tensor) -> torch.Tensor:
    """(B, N-1, 2) steps -> (B, N, 2) their running sum from the first position (0 there)."""
    return torch.cat([steps.new_zeros(steps.shape[0], 1, 2), steps.cumsum(1)], 1)


def prefer_still(ref: torch.Tensor, supp: torch.Tensor, shift: torch.Tensor, still: torch.Tensor,
                 margin: float = 0.0) -> torch.Tensor:
    """(B, 2): ``still`` where it explains ref as well as ``shift`` does (the mean squared difference of
    the textures at most ``1 + margin`` times larger), else ``shift``. Under heavy shot noise the
    estimate of a static scene wanders by tenths of a pixel, which blurs a key frame warped by it;
    ``still`` is what "no motion" means here (the shift measured at the key frame's own time: the two
    cameras' pixel grids need not agree exactly)."""
    with torch.no_grad(), torch.autocast(ref.device.type, enabled=False):
        return _prefer_still(_high_pass(ref.float()), _high_pass(supp.float()), shift.float(), still.float(), margin)


def _prefer_still(ref_texture: torch.Tensor, supp_texture: torch.Tensor, shift: torch.Tensor, still: torch.Tensor,
                  margin: float) -> torch.Tensor:
    moved = _misfit(ref_texture, supp_texture, shift)
    fixed = _misfit(ref_texture, supp_texture, still, like=shift)
    return torch.where((fixed <= (1 + margin) * moved)[:, None], still, shift)


def _misfit(ref: torch.Tensor, supp: torch.Tensor, shift: torch.Tensor,
            like: torch.Tensor | None = None) -> torch.Tensor:
    """(B,) mean squared difference of ref and supp warped by shift, inside the part of the frame that the
    shift ``like`` (shift itself when None) keeps inside: both candidates are compared on the same pixels."""
    h, w = ref.shape[-2:]
    valid = _inside(_as_flow(shift if like is None else like, h, w))
    err = (flow_warp(supp, _as_flow(shift, h, w), padding_mode='border') - ref) ** 2
    return (err * valid).sum((1, 2, 3)) / valid.sum((1, 2, 3)).clamp_min(1)


def _high_pass(x: torch.Tensor, size: int = 7) -> torch.Tensor:
    p = size // 2
    return x - F.avg_pool2d(F.pad(x, (p, p, p, p), mode='replicate'), size, stride=1)

