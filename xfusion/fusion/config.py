"""The options of a fusion run, one record per concern, shared by ``fuse``, ``check`` and ``evaluate``.

The ``xfusion`` commands build these from their arguments (``xfusion.commands.arguments``); Python callers
build them directly.
"""
from __future__ import annotations

from dataclasses import dataclass, field

RECOMMENDED = 'stf'  # the method name of the recommended network (a plain --model CKPT; what reports show first)


@dataclass(frozen=True)
class SourceOptions:
    """The two cameras of a real experiment, and when the HR camera recorded.

    ``period``/``offset`` or ``hr_index`` (a file of LR steps) give the key-frame schedule; with neither, the
    HR frames are matched to LR steps by the sources' frame times (``time_offset`` seconds added to the HR
    times). ``transform``: the JSON of ``xfusion register``. ``value_range``: one fixed intensity range for
    both cameras. ``b0``: the LR camera's photons per unit intensity, for LR consistency (None: estimated).
    """
    lr: str
    hr: str
    period: int | None = None
    offset: int = 0
    hr_index: str | None = None
    time_offset: float = 0.0
    transform: str | None = None
    value_range: tuple[float, float] | None = None
    flat_correction: bool = True
    lr_sep: int = 1
    b0: float | None = None


@dataclass(frozen=True)
class RunOptions:
    """How the networks run: device, time steps per call, precision, tiles, and the optional fast paths."""
    device: str = 'cpu'
    batch: int = 1
    precision: str = 'fp32'
    tile: int = 0
    overlap: int = 8
    cached: bool = True
    compile: bool = False
    channels_last: bool = False
    progress: bool = True


@dataclass(frozen=True)
class FuseConfig:
    """``xfusion fuse``: one network over every time step, written to ``out`` (a TIFF folder or file.h5).

    ``maps``: a new folder for the per-frame LR-consistency maps; ``project``: pull each frame back onto its LR
    frame within noise; ``report``: True (beside the sidecar) or a path for report.html; ``video``: an .mp4."""
    sources: SourceOptions
    model: str
    out: str
    opt: str | None = None
    run: RunOptions = field(default_factory=RunOptions)
    maps: str | None = None
    project: bool = False
    report: bool | str | None = None
    video: str | None = None


@dataclass(frozen=True)
class CheckConfig:
    """``xfusion check``: every interior key frame held out and fused by each method, scored into ``out``.

    ``networks``: {method: checkpoint}; ``options``: {method: option file} where a checkpoint's own options
    should not be used; ``methods``: default the baselines plus every network; ``convention``: the metric
    convention (default: paper for 8-bit data, float otherwise)."""
    sources: SourceOptions
    out: str
    networks: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    methods: list[str] | None = None
    run: RunOptions = field(default_factory=RunOptions)
    convention: str | None = None
    report: bool = True
    video: str | None = None


@dataclass(frozen=True)
class EvaluateConfig:
    """``xfusion evaluate``: every method on every virtual experiment under ``data``, for every period, LR
    separation and LR noise level (``b0s``; None: clean), into ``out``. ``seed``: of the LR noise."""
    data: str
    out: str
    methods: list[str]
    periods: list[int] = field(default_factory=lambda: [20])
    lr_seps: list[int] = field(default_factory=lambda: [1])
    b0s: list[float | None] = field(default_factory=lambda: [None])
    networks: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    run: RunOptions = field(default_factory=lambda: RunOptions(batch=4))
    seed: int = 0
    convention: str = 'paper'
    report: bool = True
    video: str | None = None
