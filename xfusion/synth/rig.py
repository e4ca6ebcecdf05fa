"""A real two-camera rig as a virtual experiment: ``xfusion synth xray --rig NAME``.

The rig's two cameras film one synthetic x-ray scene (``xfusion.synth.xray.Scene``) as they would: each its own
pixel size, field of view, frame rate and bit depth, the HR camera mirrored left-right against the LR camera,
turned a little, its pixels a little taller than wide, its field of view around the LR camera's. The experiment is
written in the cameras' own files, with the ground truth beside it, so that ``info``, ``register``, ``fuse`` and
``check`` can be tried end to end:

    <out>/experiment/LR.tif + LR.ini    the LR camera: a multi-page TIFF and the Shimadzu .ini (frame interval)
    <out>/experiment/HR.tif + HR.xml    the HR camera: a multi-page TIFF and the Phantom .xml (bit depth, times)
    <out>/truth/grid/<t:08d>.png        HR-quality frames on the x4 grid of the LR camera, at every LR step
    <out>/truth/transform.json          the true HR pixel -> x4 grid map (as xfusion register writes one)
    <out>/rig.json                      the rig: cameras, pixel sizes, frame rates, geometry, seed

The scene is rendered on the x4 grid of the LR camera (a quarter of its pixel), over the HR camera's field of view;
the LR camera sees it through its wider blur and 4x4 pixels, the HR camera resamples it onto its own pixels.
``scale`` shrinks both fields of view (the pixel counts, not the pixel sizes) for a laptop.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile
from tqdm import tqdm

from xfusion.camera import SCALE, poisson_noise
from xfusion.errors import InputError
from xfusion.io.frames import write_frame
from xfusion.io.intensity import IntensityScale
from xfusion.io.metadata.phantom_xml import write_phantom_xml
from xfusion.io.metadata.shimadzu_ini import write_shimadzu_ini
from xfusion.registration import decompose
from xfusion.synth.xray import FLAT_UNIT, Scene, families_of


@dataclass(frozen=True)
class Camera:
    name: str
    size: tuple[int, int]  # (height, width) in pixels
    pixel_um: float
    fps: float
    bits: int


@dataclass(frozen=True)
class Rig:
    lr: Camera
    hr: Camera
    frames: int  # LR frames of one shot
    mirrored: bool  # the HR camera sees the scene mirrored left-right
    aspect: float  # height over width of an HR pixel on the sample (not square to the same degree as the LR's)
    rotation_deg: float  # of the HR camera against the LR camera
    offset_um: tuple[float, float]  # (x, y) of the LR field's centre from the HR field's


RIGS = {
    # the XFusion group's rig: Shimadzu HPV-X2 (LR, 1 Mfps) and Phantom TMX7510 (HR, 71,428.6 fps: every 14th LR
    # step); pixel ratio 3.82 / 1.31 = 2.92; mirroring, the 1 % aspect and the 0.5 degree are this model's
    'hpvx2-tmx7510': Rig(lr=Camera('Shimadzu HPV-X2', (250, 400), 3.82, 1e6, 10),
                         hr=Camera('Phantom TMX7510', (800, 1280), 1.31, 71428.6, 12),
                         frames=256, mirrored=True, aspect=1.01, rotation_deg=0.5, offset_um=(25.0, -15.0)),
}


def hr_to_grid(rig: Rig, hr_size: tuple[int, int], lr_size: tuple[int, int]) -> np.ndarray:
    """The true 2x3 map from HR-camera pixels onto the LR camera's x4 grid."""
    grid_um = rig.lr.pixel_um / SCALE
    s = rig.hr.pixel_um / grid_um
    th = math.radians(rig.rotation_deg)
    a = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]]) @ np.diag([s, s * rig.aspect])
    if rig.mirrored:
        a = a @ np.diag([-1.0, 1.0])
    hr_centre = np.array([(hr_size[1] - 1) / 2, (hr_size[0] - 1) / 2])
    grid_centre = np.array([SCALE * lr_size[1] - 1, SCALE * lr_size[0] - 1]) / 2
    t = grid_centre - np.array(rig.offset_um) / grid_um - a @ hr_centre
    return np.hstack([a, t[:, None]])


def synth_rig(out: str | Path, name: str, frames: int | None = None, scale: float = 1.0, b0: float = 1e3,
              seed: int = 0, family: str = 'wing') -> Path:
    """Write the virtual experiment of the rig ``name`` (``RIGS``) under ``out``; see the module docstring."""
    if name not in RIGS:
        raise InputError(f'--rig: unknown rig {name!r}; the rigs are {", ".join(RIGS)}')
    rig = RIGS[name]
    frames = frames or rig.frames
    if not 0 < scale <= 1:
        raise InputError(f'--rig-scale must be in (0, 1], got {scale}')
    (family,) = families_of(family)
    lr_size = tuple(max(8, round(v * scale)) for v in rig.lr.size)
    hr_size = tuple(max(16, round(v * scale)) for v in rig.hr.size)
    matrix = hr_to_grid(rig, hr_size, lr_size)
    # the scene: on the x4 grid, over the bounding box of both fields of view (and a margin for the blur)
    corners = np.array([[0, 0, 1], [hr_size[1] - 1, 0, 1], [0, hr_size[0] - 1, 1],
                        [hr_size[1] - 1, hr_size[0] - 1, 1]], float) @ matrix.T
    grid_h, grid_w = SCALE * lr_size[0], SCALE * lr_size[1]
    low = np.floor(np.minimum(corners.min(axis=0), 0)) - 8
    high = np.ceil(np.maximum(corners.max(axis=0), [grid_w, grid_h])) + 8
    origin = (low // 16) * 16  # the world's pixel (0, 0) on the grid, so that the LR pixels stay whole
    size = (int(-(-(high[1] - origin[1]) // 16) * 16), int(-(-(high[0] - origin[0]) // 16) * 16))
    scene = Scene(np.random.default_rng([seed, 0]), frames, size, family)
    noise_rng = np.random.default_rng([seed, 0, 1])
    key_step = round(rig.lr.fps / rig.hr.fps)  # 14: the HR camera records at every 14th LR step
    hr_times = list(range(0, frames, key_step))
    world_to_hr = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))[:2] @ np.array(
        [[1, 0, origin[0]], [0, 1, origin[1]], [0, 0, 1]])  # world pixel -> HR pixel
    crop = np.s_[int(-origin[1]):int(-origin[1]) + grid_h, int(-origin[0]):int(-origin[0]) + grid_w]
    lr_crop = np.s_[int(-origin[1]) // SCALE:int(-origin[1]) // SCALE + lr_size[0],
                    int(-origin[0]) // SCALE:int(-origin[0]) // SCALE + lr_size[1]]
    out = Path(out)
    (out / 'experiment').mkdir(parents=True, exist_ok=True)
    truth16 = IntensityScale.for_dtype(np.uint16)
    lr_frames, hr_frames = [], []
    for t in tqdm(range(frames), desc='synth rig', unit='frame'):
        world_hr, world_lr = scene.frame(t)
        on_grid = truth16.from_unit(np.clip(FLAT_UNIT * world_hr[crop], 0, 1))
        write_frame(out / 'truth' / 'grid' / f'{t:08d}.png', on_grid)
        lr = FLAT_UNIT * poisson_noise(world_lr[lr_crop], b0, noise_rng, dtype=np.float64)
        lr_frames.append(np.rint(np.clip(lr, 0, 1) * (2 ** rig.lr.bits - 1)).astype(np.uint16) << (16 - rig.lr.bits))
        if t in hr_times:  # the HR camera's pixels: a pixel-sized box blur, then its own grid
            pixel = cv2.blur(world_hr, (3, 3)) if rig.hr.pixel_um / (rig.lr.pixel_um / SCALE) > 1.2 else world_hr
            seen = cv2.warpAffine(pixel, world_to_hr, (hr_size[1], hr_size[0]), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REFLECT)
            hr = FLAT_UNIT * poisson_noise(seen, b0, noise_rng, dtype=np.float64)
            hr_frames.append(np.rint(np.clip(hr, 0, 1) * (2 ** rig.hr.bits - 1)).astype(np.uint16))
    tifffile.imwrite(out / 'experiment' / 'LR.tif', np.stack(lr_frames), photometric='minisblack')  # a page each
    write_shimadzu_ini(out / 'experiment' / 'LR.ini', f'{1e9 / rig.lr.fps:,.0f} ns', frames=frames)
    tifffile.imwrite(out / 'experiment' / 'HR.tif', np.stack(hr_frames), photometric='minisblack')
    write_phantom_xml(out / 'experiment' / 'HR.xml', len(hr_frames), rig.hr.fps, rig.hr.bits, first=0,
                      stamps=[t / rig.lr.fps for t in hr_times])
    truth = {'matrix': matrix.tolist(), **decompose(matrix), 'model': 'affine', 'residual': 0.0,
             'output_shape': [grid_h, grid_w], 'fit': 'ok', 'truth': True}
    (out / 'truth' / 'transform.json').write_text(json.dumps(truth, indent=2) + '\n')
    record = {'rig': name, **asdict(rig), 'scale': scale, 'lr_size': list(lr_size), 'hr_size': list(hr_size),
              'frames': frames, 'hr_times': hr_times, 'b0': b0, 'seed': seed, 'family': scene.family,
              'lr_storage': f'{rig.lr.bits}-bit values in the top bits of 16-bit words',
              'hr_storage': f'{rig.hr.bits}-bit values in 16-bit words (the .xml says RealBPP {rig.hr.bits})'}
    (out / 'rig.json').write_text(json.dumps(record, indent=1) + '\n')
    return out
