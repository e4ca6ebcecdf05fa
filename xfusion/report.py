"""The report a person looks at: one self-contained ``report.html`` (and an optional ``.mp4`` for slides).

Used by ``xfusion evaluate``, ``xfusion check`` and ``xfusion fuse --report``. The HTML file holds everything
it shows (frames as base64 JPEG, plots as base64 PNG, the data as JSON, the player as a few lines of
JavaScript), so it opens offline in any browser and can be e-mailed:

- a **player** per sequence: the frames side by side (LR upsampled | fused | nearest key frame | ground truth
  or the LR-consistency map), stepped or played, with a slider;
- a **timeline** under each player: the per-frame score (PSNR where there is ground truth, chi2 where there
  is not) of each method, the key frames marked, the shown frame as a cursor; a click jumps to a frame;
- the summary tables, the plots, and the run's settings.

Size: panels are downscaled to ``DISPLAY_PX`` on their long side, long sequences keep ``MAX_FRAMES`` frames
evenly spread, and a report still above ``SIZE_LIMIT`` drops every other frame until it fits. All gray panels
of a player share one display window (fixed percentiles of a reference frame), so that brightness compares
honestly across panels and frames.

Opening ``report.html#play`` starts every player at once (the browser test uses it). The page keeps the
shown frame of each player in its ``data-frame`` attribute and the number of frames shown in the body's
``data-shown``.
"""
from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from xfusion.errors import InputError

DISPLAY_PX = 256  # long side of a panel in the report
VIDEO_PX = 384  # long side of a panel in the video
MAX_FRAMES = 240  # frames a player keeps (evenly spread over a longer sequence)
SIZE_LIMIT = 38 * 2 ** 20  # bytes: comfortably under 40 MB, small enough to e-mail
JPEG_QUALITY = 88
Z_LIMIT = 5.0  # the consistency map's colour scale: z in [-5, 5] noise sd
GAP = 4  # pixels between panels


# ---------------------------------------------------------------------------------------------- images


def display_window(images: Sequence[np.ndarray]) -> tuple[float, float]:
    """(low, high) intensities shown black and white: the 0.5 and 99.5 percentiles of reference frames."""
    values = np.concatenate([np.asarray(img, np.float32).ravel() for img in images])
    lo, hi = np.percentile(values, [0.5, 99.5])
    return float(lo), float(max(hi, lo + 1e-6))


def gray8(img: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    lo, hi = window
    return np.clip((np.asarray(img, np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)


def z_colour(z: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An LR consistency map z (noise sd) as RGB at ``shape``: blue where the fused frame holds more than the LR
    camera saw, red where it holds less, white where it agrees within noise; each LR pixel a block."""
    import matplotlib

    rgb = matplotlib.colormaps['RdBu_r']((np.clip(z, -Z_LIMIT, Z_LIMIT) + Z_LIMIT) / (2 * Z_LIMIT))[..., :3]
    rgb = (rgb * 255).astype(np.uint8)
    return cv2.resize(rgb, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def upsampled(lr: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """An LR frame shown at the HR size (bicubic, for display only)."""
    return cv2.resize(np.asarray(lr, np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def _fit(img: np.ndarray, long_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    factor = long_side / max(h, w)
    if factor >= 1:
        return img
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def strip(panels: Sequence[np.ndarray], window: tuple[float, float], long_side: int) -> np.ndarray:
    """The panels side by side as one RGB uint8 image: 2-D float panels are gray (shown in ``window``), (H, W, 3)
    uint8 panels are colour; each is downscaled to ``long_side`` and they are joined with a dark gap."""
    shown = []
    for panel in panels:
        rgb = np.repeat(gray8(panel, window)[..., None], 3, 2) if panel.ndim == 2 else panel
        shown.append(_fit(rgb, long_side))
    height = max(p.shape[0] for p in shown)
    width = sum(p.shape[1] for p in shown) + GAP * (len(shown) - 1)
    out = np.full((height, width, 3), 24, np.uint8)
    x = 0
    for panel in shown:
        out[:panel.shape[0], x:x + panel.shape[1]] = panel
        x += panel.shape[1] + GAP
    return out


def encode_jpeg(rgb: np.ndarray) -> str:
    ok, data = cv2.imencode('.jpg', np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise RuntimeError('JPEG encoding failed')
    return 'data:image/jpeg;base64,' + base64.b64encode(data.tobytes()).decode('ascii')


def png_data(path_or_bytes: str | Path | bytes) -> str:
    data = path_or_bytes if isinstance(path_or_bytes, bytes) else Path(path_or_bytes).read_bytes()
    return 'data:image/png;base64,' + base64.b64encode(data).decode('ascii')


def kept_times(num_frames: int, limit: int = MAX_FRAMES) -> list[int]:
    """The time steps a player keeps: all, or ``limit`` evenly spread."""
    if num_frames <= limit:
        return list(range(num_frames))
    return sorted({int(round(v)) for v in np.linspace(0, num_frames - 1, limit)})


# ---------------------------------------------------------------------------------------------- players


@dataclass
class Player:
    """The frames of one sequence side by side, and the per-frame scores under them.

    ``labels``: one per panel; ``window``: the display window of the gray panels; ``key_times``: marked on
    the timeline; ``metric``: the label of the scores ('PSNR (dB)', 'chi2'), ``log``: a log scale for them.
    ``add(t, panels)`` keeps a frame (panels as for ``strip``); ``series[name][t]`` are the scores.
    """
    name: str
    labels: list[str]
    window: tuple[float, float]
    key_times: list[int]
    num_frames: int
    metric: str = 'PSNR (dB)'
    log: bool = False
    note: str = ''
    panel_px: int = DISPLAY_PX
    times: list[int] | None = None  # the time steps to keep (default: kept_times)
    frames: dict[int, str] = field(default_factory=dict)
    series: dict[str, dict[int, float]] = field(default_factory=dict)

    def __post_init__(self):
        if self.times is None:
            self.times = kept_times(self.num_frames)
        self._wanted = set(self.times)

    def wants(self, t: int) -> bool:
        return t in self._wanted

    def add(self, t: int, panels: Sequence[np.ndarray]) -> None:
        if self.wants(t):
            self.frames[t] = encode_jpeg(strip(panels, self.window, self.panel_px))

    def thin(self) -> None:
        """Drop every other frame (a report too large to send)."""
        times = sorted(self.frames)
        for t in times[1::2]:
            del self.frames[t]

    def as_json(self) -> dict:
        def finite(v):
            return float(v) if v is not None and math.isfinite(v) else None
        times = sorted(self.frames)
        return {'name': self.name, 'labels': self.labels, 'metric': self.metric, 'log': self.log,
                'note': self.note, 'num_frames': self.num_frames, 'keys': list(self.key_times),
                'frames': [{'t': t, 'src': self.frames[t]} for t in times],
                'series': {name: [[t, finite(v)] for t, v in sorted(values.items())]
                           for name, values in self.series.items()}}


# ---------------------------------------------------------------------------------------------- the page


def markdown_html(text: str) -> str:
    """The little markdown the summaries use: '#' headings, '|' tables, paragraphs, `code`, **bold**."""
    def inline(s: str) -> str:
        s = html.escape(s)
        parts = s.split('`')
        s = ''.join(f'<code>{p}</code>' if i % 2 else p for i, p in enumerate(parts))
        parts = s.split('**')
        return ''.join(f'<b>{p}</b>' if i % 2 else p for i, p in enumerate(parts))

    out, table, para = [], [], []

    def flush():
        if table:
            rows = [[c.strip() for c in line.strip().strip('|').split('|')] for line in table
                    if not set(line.replace('|', '').strip()) <= set('-: ')]
            head, body = rows[0], rows[1:]
            out.append('<table><thead><tr>' + ''.join(f'<th>{inline(c)}</th>' for c in head) + '</tr></thead><tbody>'
                       + ''.join('<tr>' + ''.join(f'<td>{inline(c)}</td>' for c in r) + '</tr>' for r in body)
                       + '</tbody></table>')
            table.clear()
        if para:
            out.append('<p>' + inline(' '.join(para)) + '</p>')
            para.clear()

    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith('|'):
            if para:
                flush()
            table.append(stripped)
        elif not stripped:
            flush()
        elif stripped.startswith('#'):
            flush()
            level = min(len(stripped) - len(stripped.lstrip('#')) + 1, 4)  # the page's own title is h1
            out.append(f'<h{level}>{inline(stripped.lstrip("#").strip())}</h{level}>')
        elif stripped.startswith('- '):
            flush()
            out.append(f'<ul><li>{inline(stripped[2:])}</li></ul>')
        else:
            if table:
                flush()
            para.append(stripped)
    flush()
    return '\n'.join(out)


def settings_html(settings: dict) -> str:
    rows = []
    for key, value in settings.items():
        text = value if isinstance(value, str) else json.dumps(value, indent=1, default=str)
        rows.append(f'<tr><th>{html.escape(str(key))}</th><td><pre>{html.escape(text)}</pre></td></tr>')
    return '<table class="settings">' + ''.join(rows) + '</table>'


@dataclass
class Section:
    """A part of the report below the players: ``kind`` 'markdown' (text), 'html', or 'images'
    (a list of (caption, PNG path or bytes))."""
    title: str
    kind: str
    content: object


def render(title: str, subtitle: str, players: list[Player], sections: list[Section], settings: dict) -> str:
    data = json.dumps({'players': [p.as_json() for p in players]}, separators=(',', ':'))
    body = [f'<h1>{html.escape(title)}</h1>', f'<p class="sub">{html.escape(subtitle)}</p>']
    for i in range(len(players)):
        body.append(f'<section class="player" id="player-{i}" data-frame="0"></section>')
    for section in sections:
        body.append(f'<h2>{html.escape(section.title)}</h2>')
        if section.kind == 'markdown':
            body.append(markdown_html(str(section.content)))
        elif section.kind == 'html':
            body.append(str(section.content))
        elif section.kind == 'images':
            body.append('<div class="images">' + ''.join(
                f'<figure><img src="{png_data(src)}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}'
                '</figcaption></figure>' for caption, src in section.content) + '</div>')
        else:
            raise ValueError(f'unknown section kind {section.kind!r}')
    body.append('<h2>Settings of the run</h2>' + settings_html(settings))
    data = data.replace('</', '<\\/')  # no '</script>' inside the data block
    head, rest = _PAGE.split('%BODY%')
    middle, tail = rest.split('%DATA%')
    before, after = tail.split('%SCRIPT%')
    return head.replace('%TITLE%', html.escape(title)) + '\n'.join(body) + middle + data + before + _SCRIPT + after


def write_report(path: str | Path, title: str, subtitle: str, players: list[Player], sections: list[Section],
                 settings: dict, size_limit: int = SIZE_LIMIT) -> int:
    """Write the report (under a temporary name, then renamed); returns its size in bytes. Players drop every
    other frame while the page is larger than ``size_limit``."""
    path = Path(path)
    while True:
        text = render(title, subtitle, players, sections, settings)
        if len(text) <= size_limit or all(len(p.frames) <= 8 for p in players):
            break
        for player in players:
            player.thin()
    tmp = path.with_name(path.name + '.partial')
    tmp.write_text(text, encoding='utf-8')
    os.replace(tmp, path)
    return len(text.encode('utf-8'))


# ---------------------------------------------------------------------------------------------- video


def check_video_path(path: str | Path | None, overwrite: bool = True) -> Path | None:
    """``--video FILE.mp4``: an .mp4 in an existing folder (and, where nothing is overwritten, a new file)."""
    if path is None:
        return None
    path = Path(path)
    if path.suffix.lower() != '.mp4':
        raise InputError(f'--video {path}: give a file name ending in .mp4')
    if not path.parent.is_dir():
        raise InputError(f'--video {path}: the folder {path.parent} does not exist')
    if not overwrite and path.exists():
        raise InputError(f'--video {path}: already exists; choose another name (nothing is overwritten)')
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise InputError('--video needs imageio-ffmpeg: pip install imageio-ffmpeg') from None
    return path


class VideoWriter:
    """Side-by-side frames to an H.264 .mp4 (imageio-ffmpeg, which brings its own ffmpeg), streamed: a title bar
    with the labels and the time step over each strip. Written under a temporary name, renamed by ``close``."""

    def __init__(self, path: str | Path, fps: float = 10.0, panel_px: int = VIDEO_PX):
        self.path, self.fps, self.panel_px = Path(path), fps, panel_px
        self.tmp = self.path.with_name(self.path.stem + '.partial.mp4')
        self._writer, self._size = None, None

    def add(self, panels: Sequence[np.ndarray], window: tuple[float, float], labels: Sequence[str],
            title: str) -> None:
        image = strip(panels, window, self.panel_px)
        bar = np.full((22, image.shape[1], 3), 24, np.uint8)
        widths = [_fit(p if p.ndim == 3 else p[..., None], self.panel_px).shape[1] for p in panels]
        x = 0
        for label, width in zip(labels, widths):
            cv2.putText(bar, label, (x + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (230, 230, 230), 1, cv2.LINE_AA)
            x += width + GAP
        foot = np.full((20, image.shape[1], 3), 24, np.uint8)
        cv2.putText(foot, title, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (200, 200, 200), 1, cv2.LINE_AA)
        frame = np.concatenate([bar, image, foot])
        if self._writer is None:
            import imageio_ffmpeg
            h, w = frame.shape[:2]
            self._size = (w + (-w) % 16, h + (-h) % 16)  # H.264 / yuv420p: whole macro blocks
            self._writer = imageio_ffmpeg.write_frames(str(self.tmp), self._size, fps=self.fps, quality=7,
                                                       macro_block_size=16, ffmpeg_log_level='error')
            self._writer.send(None)
        padded = np.full((self._size[1], self._size[0], 3), 24, np.uint8)
        h, w = min(frame.shape[0], self._size[1]), min(frame.shape[1], self._size[0])
        padded[:h, :w] = frame[:h, :w]
        self._writer.send(np.ascontiguousarray(padded))

    def close(self) -> Path | None:
        if self._writer is None:
            return None
        self._writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # ffmpeg already gone: the partial file is removed all the same
                pass
        if self.tmp.exists():
            self.tmp.unlink()


# ---------------------------------------------------------------------------------------------- page text

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>%TITLE%</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em auto;max-width:1200px;
padding:0 1em;color:#222;background:#fafafa}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
h3{font-size:1.05em} p.sub{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em;background:#fff}
th,td{border:1px solid #ddd;padding:.25em .55em;text-align:left;vertical-align:top}
thead th{background:#f0f0f0} table.settings pre{margin:0;font-size:.92em;white-space:pre-wrap}
section.player{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em;margin:1em 0}
section.player h3{margin:.1em 0 .5em} .labels{display:flex;gap:4px;font-size:.85em;color:#444}
.labels div{flex:1;text-align:center} .frame{width:100%;image-rendering:pixelated;background:#181818;display:block}
.controls{display:flex;align-items:center;gap:.5em;margin:.5em 0;font-size:.9em}
.controls button{font-size:1em;min-width:2.4em;padding:.15em .4em;cursor:pointer}
.controls input[type=range]{flex:1} .note{color:#666;font-size:.85em}
svg.timeline{width:100%;height:170px;background:#fff;cursor:crosshair;display:block}
.legend{font-size:.82em;display:flex;flex-wrap:wrap;gap:1em}
.legend span{display:inline-flex;align-items:center;gap:.3em}
.legend i{display:inline-block;width:1.4em;height:3px}
.images{display:flex;flex-wrap:wrap;gap:1em} .images figure{margin:0;max-width:100%}
.images img{max-width:100%;border:1px solid #ddd;background:#fff} figcaption{font-size:.85em;color:#555}
code{background:#eee;padding:0 .2em;border-radius:3px}
</style></head>
<body data-shown="0">
%BODY%
<script type="application/json" id="xf-data">%DATA%</script>
<script>%SCRIPT%</script>
</body></html>
"""

_SCRIPT = r"""
(function () {
  'use strict';
  const DATA = JSON.parse(document.getElementById('xf-data').textContent);
  const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f',
                   '#bcbd22', '#17becf'];
  const SVG = 'http://www.w3.org/2000/svg';
  let shown = 0;
  const players = [];

  function el(tag, attrs, parent, ns) {
    const node = ns ? document.createElementNS(SVG, tag) : document.createElement(tag);
    for (const k in (attrs || {})) {
      if (k === 'text') node.textContent = attrs[k]; else node.setAttribute(k, attrs[k]);
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  function fmt(v) {
    if (v === null) return '-';
    const a = Math.abs(v);
    return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : a >= 1 ? v.toFixed(2) : v.toPrecision(2);
  }

  function makePlayer(p, index) {
    const root = document.getElementById('player-' + index);
    el('h3', {text: p.name}, root);
    if (p.note) el('div', {class: 'note', text: p.note}, root);
    const labels = el('div', {class: 'labels'}, root);
    p.labels.forEach(function (l) { el('div', {text: l}, labels); });
    const img = el('img', {class: 'frame', alt: p.name}, root);
    const controls = el('div', {class: 'controls'}, root);
    // glyphs every font has (no media-control symbols, which many lack)
    const PLAY = '\u25b6', PAUSE = '\u2759\u2759';
    const first = el('button', {title: 'first frame', text: '\u2759\u25c0'}, controls);
    const prev = el('button', {title: 'previous frame', text: '\u25c0'}, controls);
    const play = el('button', {title: 'play / pause', text: PLAY, class: 'play'}, controls);
    const next = el('button', {title: 'next frame', text: '\u25b6\u2759'}, controls);
    const slider = el('input', {type: 'range', min: 0, max: Math.max(p.frames.length - 1, 0), value: 0}, controls);
    const speed = el('select', {title: 'frames per second'}, controls);
    [2, 5, 10, 20].forEach(function (f) { el('option', {value: f, text: f + ' fps'}, speed); });
    speed.value = 5;
    const info = el('span', {class: 'info'}, controls);

    // ---- timeline
    const W = 1000, H = 170, L = 52, R = 10, T = 20, B = 30;
    const svg = el('svg', {class: 'timeline', viewBox: '0 0 ' + W + ' ' + H, preserveAspectRatio: 'none'}, root, true);
    const tmax = Math.max(p.num_frames - 1, 1);
    const x = function (t) { return L + (W - L - R) * t / tmax; };
    let values = [];
    for (const name in p.series) p.series[name].forEach(function (pt) {
      if (pt[1] !== null && (!p.log || pt[1] > 0)) values.push(p.log ? Math.log10(pt[1]) : pt[1]);
    });
    let lo = values.length ? Math.min.apply(null, values) : 0, hi = values.length ? Math.max.apply(null, values) : 1;
    if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
    const pad = 0.06 * (hi - lo); lo -= pad; hi += pad;
    const y = function (v) { return T + (H - T - B) * (1 - ((p.log ? Math.log10(v) : v) - lo) / (hi - lo)); };
    p.keys.forEach(function (k) {
      el('line', {x1: x(k), x2: x(k), y1: T, y2: H - B, stroke: '#bbb', 'stroke-dasharray': '3,3'}, svg, true);
      el('path', {d: 'M' + (x(k) - 5) + ',' + (H - B + 9) + 'l5,-8l5,8z', fill: '#555'}, svg, true);
    });
    for (let i = 0; i <= 3; i++) {
      const v = lo + (hi - lo) * i / 3, yy = T + (H - T - B) * (1 - i / 3);
      el('line', {x1: L, x2: W - R, y1: yy, y2: yy, stroke: '#eee'}, svg, true);
      el('text', {x: L - 4, y: yy + 4, 'text-anchor': 'end', 'font-size': 11, fill: '#555',
                  text: fmt(p.log ? Math.pow(10, v) : v)}, svg, true);
    }
    el('text', {x: 4, y: 12, 'font-size': 11, fill: '#333', text: p.metric + (p.log ? ' (log scale)' : '')}, svg, true);
    el('text', {x: W - R, y: 12, 'text-anchor': 'end', 'font-size': 11, fill: '#555',
                text: 'time step (\u25b2 key frames); click to jump'}, svg, true);
    const ticks = p.keys.length && p.keys.length <= 16 ? p.keys.concat(p.keys.indexOf(tmax) < 0 ? [tmax] : []) :
      [0, 1, 2, 3, 4].map(function (q) { return Math.round(q * tmax / 4); });
    ticks.forEach(function (t) {
      el('text', {x: x(t), y: H - 4, 'text-anchor': 'middle', 'font-size': 10, fill: '#555', text: t}, svg, true);
    });
    const legend = el('div', {class: 'legend'}, root);
    Object.keys(p.series).forEach(function (name, i) {
      const colour = COLOURS[i % COLOURS.length];
      let d = '', pen = 'M';
      p.series[name].forEach(function (pt) {
        if (pt[1] === null || (p.log && pt[1] <= 0)) { pen = 'M'; return; }
        d += pen + x(pt[0]).toFixed(1) + ',' + y(pt[1]).toFixed(1) + ' '; pen = 'L';
      });
      el('path', {d: d, fill: 'none', stroke: colour, 'stroke-width': 1.6}, svg, true);
      p.series[name].forEach(function (pt) {
        if (pt[1] !== null && (!p.log || pt[1] > 0))
          el('circle', {cx: x(pt[0]), cy: y(pt[1]), r: 2.2, fill: colour}, svg, true);
      });
      const item = el('span', {}, legend);
      el('i', {style: 'background:' + colour}, item);
      el('span', {text: name}, item);
    });
    const cursor = el('line', {y1: T, y2: H - B, stroke: '#000', 'stroke-width': 1.5}, svg, true);

    // ---- state
    let i = 0, timer = null;
    function valueAt(name, t) {
      const pt = p.series[name].find(function (q) { return q[0] === t; });
      return pt ? pt[1] : null;
    }
    function show(j) {
      if (!p.frames.length) return;
      i = ((j % p.frames.length) + p.frames.length) % p.frames.length;
      const f = p.frames[i];
      img.src = f.src;
      slider.value = i;
      cursor.setAttribute('x1', x(f.t)); cursor.setAttribute('x2', x(f.t));
      const scores = Object.keys(p.series).map(function (n) { return n + ' ' + fmt(valueAt(n, f.t)); });
      info.textContent = 'step ' + f.t + (p.keys.indexOf(f.t) >= 0 ? ' (key)' : '') + '  \u00b7  ' +
        (i + 1) + '/' + p.frames.length + (scores.length ? '  \u00b7  ' + p.metric + ': ' + scores.join(', ') : '');
      root.dataset.frame = i; root.dataset.t = f.t;
      shown += 1; document.body.dataset.shown = shown;
    }
    function stop() { if (timer) clearInterval(timer); timer = null; play.textContent = PLAY; }
    function start() {
      stop();
      timer = setInterval(function () { show(i + 1); }, 1000 / Number(speed.value));
      play.textContent = PAUSE;
    }
    play.onclick = function () { timer ? stop() : start(); };
    first.onclick = function () { stop(); show(0); };
    prev.onclick = function () { stop(); show(i - 1); };
    next.onclick = function () { stop(); show(i + 1); };
    slider.oninput = function () { stop(); show(Number(slider.value)); };
    speed.onchange = function () { if (timer) start(); };
    svg.onclick = function (event) {
      const box = svg.getBoundingClientRect();
      const t = ((event.clientX - box.left) / box.width * W - L) / (W - L - R) * tmax;
      let best = 0;
      p.frames.forEach(function (f, j) { if (Math.abs(f.t - t) < Math.abs(p.frames[best].t - t)) best = j; });
      stop(); show(best);
    };
    show(0);
    return {start: start, stop: stop, show: show};
  }

  DATA.players.forEach(function (p, index) { players.push(makePlayer(p, index)); });
  if (location.hash === '#play') players.forEach(function (pl) { pl.start(); });
})();
"""
