"""report.html (evaluate, check, fuse --report) and the .mp4 for slides; the player in a real headless browser."""
import json
import re
import subprocess

import imageio_ffmpeg
import numpy as np
import pytest
from test_consistency import identity_checkpoint, static_experiment  # noqa: F401  (a fixture)
from test_evaluate import checkpoint

from helpers import HANG_GUARD_S, moving_scene, write_pair_sequence
from xfusion.camera import area_average
from xfusion.fusion.config import EvaluateConfig, FuseConfig, RunOptions, SourceOptions
from xfusion.fusion.evaluate import evaluate
from xfusion.fusion.fuse import fuse
from xfusion.report import Player, Section, display_window, markdown_html, upsampled, write_report


def report_data(path) -> dict:
    text = path.read_text()
    block = re.search(r'<script type="application/json" id="xf-data">(.*?)</script>', text, re.S).group(1)
    return json.loads(block)


def demo_player(frames: int = 12, size: int = 32, noise: bool = False) -> Player:
    scene = moving_scene(frames, (size, size), seed=2)
    if noise:  # poorly compressible frames
        scene = np.random.default_rng(0).random(scene.shape)
    player = Player('demo sequence', ['LR (upsampled)', 'fused', 'nearest key frame', 'ground truth'],
                    display_window(scene[:2]), [0, 6], frames)
    for t in range(frames):
        player.add(t, [upsampled(area_average(scene[t]), (size, size)), scene[t], scene[0], scene[t]])
    player.series = {'a': {t: 30.0 + t for t in range(frames)},
                     'b': {t: float('inf') if t in (0, 6) else 25.0 for t in range(frames)}}
    return player


def test_report_is_self_contained_and_holds_its_players(tmp_path):
    size = write_report(tmp_path / 'report.html', 'title', 'subtitle', [demo_player()],
                        [Section('Summary', 'markdown', '## Table\n\n| a | b |\n|---|---|\n| 1 | `x` |\n')],
                        {'period': 3, 'methods': ['a', 'b']})
    text = (tmp_path / 'report.html').read_text()
    assert size == len(text.encode()) and not (tmp_path / 'report.html.partial').exists()
    # nothing is fetched: no links, scripts or images from elsewhere (the SVG namespace is a name, not a fetch)
    assert not re.search(r'(src|href)="(https?:)?//', text) and '@import' not in text and '<link' not in text
    data = report_data(tmp_path / 'report.html')
    (player,) = data['players']
    assert [f['t'] for f in player['frames']] == list(range(12)) and player['keys'] == [0, 6]
    assert all(f['src'].startswith('data:image/jpeg;base64,') for f in player['frames'])
    assert dict(map(tuple, player['series']['b']))[0] is None  # inf (a key frame copied) is no point
    assert '<table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td><code>x</code></td>' in text
    assert '<th>period</th>' in text


def test_reports_too_large_to_send_drop_frames(tmp_path):
    player = demo_player(40, 64, noise=True)
    full = write_report(tmp_path / 'full.html', 't', 's', [player], [], {})
    player = demo_player(40, 64, noise=True)
    small = write_report(tmp_path / 'small.html', 't', 's', [player], [], {}, size_limit=full // 3)
    assert small <= full // 3 and 8 <= len(report_data(tmp_path / 'small.html')['players'][0]['frames']) < 20


def test_markdown_headings_paragraphs_and_lists():
    out = markdown_html('# Title\n\nsome **bold** text\ngoes on\n\n- item\n')
    assert out == '<h2>Title</h2>\n<p>some <b>bold</b> text goes on</p>\n<ul><li>item</li></ul>'


def video_frames(path) -> int:
    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]


def test_evaluate_writes_a_report_and_a_video(tmp_path):
    root = tmp_path / 'xray'
    for i in range(2):
        write_pair_sequence(root / f'seq_{i}' / 'HR', root / f'seq_{i}' / 'LR', moving_scene(9, (32, 32), seed=i),
                            np.uint16)
    stf = checkpoint(tmp_path / 'stf')
    methods = ['bicubic', 'key_copy', 'bayes', 'stf']
    evaluate(EvaluateConfig(str(root), str(tmp_path / 'eval'), methods, [4], [1], [None, 1e3], networks={'stf': stf},
                            run=RunOptions(batch=4, progress=False), video=str(tmp_path / 'eval.mp4')))
    data = report_data(tmp_path / 'eval' / 'report.html')
    assert [p['name'] for p in data['players']] == ['seq_0', 'seq_1']
    for player in data['players']:
        assert player['labels'][1] == 'stf' and player['keys'] == [0, 4, 8] and len(player['frames']) == 9
        assert set(player['series']) == set(methods)
        psnr = dict(map(tuple, player['series']['key_copy']))
        assert sorted(psnr) == [1, 2, 3, 5, 6, 7] and psnr[2] > 10  # the non-key frames
    text = (tmp_path / 'eval' / 'report.html').read_text()
    assert text.count('data:image/png;base64,') == 3 + 2  # the three plots and a panel per sequence
    assert 'All settings together' in text
    assert video_frames(tmp_path / 'eval.mp4') == 18


def test_fuse_report_and_video(tmp_path, identity_checkpoint):  # noqa: F811  (the fixture)
    lr_dir, hr_dir = static_experiment(tmp_path)
    out = fuse(FuseConfig(SourceOptions(str(lr_dir), str(hr_dir), period=4), str(identity_checkpoint),
                          str(tmp_path / 'out'), run=RunOptions(progress=False), report=True,
                          video=str(tmp_path / 'fused.mp4')))
    data = report_data(out / 'report.html')
    (player,) = data['players']
    assert player['metric'] == 'chi2' and player['log'] and len(player['frames']) == 9
    chi2 = dict(map(tuple, player['series']['chi2']))
    assert max(chi2, key=chi2.get) == 5  # the frame with the planted LR blob
    assert 'LR consistency' in (out / 'report.html').read_text()
    assert video_frames(tmp_path / 'fused.mp4') == 9 and not list(tmp_path.glob('*.partial*'))


def browse(chromium, url, profile, *extra) -> str:
    command = [chromium, '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
               '--disable-background-networking', '--disable-component-update', '--disable-sync',
               f'--user-data-dir={profile}', '--virtual-time-budget=2000', *extra, url]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def player_state(dom: str) -> tuple[int, int, int]:
    """(data-frame, data-t of player 0, frames shown) in a dumped DOM."""
    section = re.search(r'<section[^>]*id="player-0"[^>]*>', dom).group(0)
    body = re.search(r'<body[^>]*>', dom).group(0)

    def value(tag: str, name: str) -> int:
        return int(re.search(rf'{name}="(\d+)"', tag).group(1))
    return value(section, 'data-frame'), value(section, 'data-t'), value(body, 'data-shown')


@pytest.mark.slow
def test_the_player_advances_frames_in_a_headless_browser(chromium, tmp_path):
    path = tmp_path / 'report.html'
    write_report(path, 'XFusion report', 'browser test', [demo_player(40, 64)], [], {'frames': 40})
    # opened plainly, the player shows the first frame and waits
    frame, t, shown = player_state(browse(chromium, path.as_uri(), tmp_path / 'profile', '--dump-dom'))
    assert (frame, t, shown) == (0, 0, 1)
    # report.html#play plays: 2 s of (virtual) time at 5 frames per second
    frame, t, shown = player_state(browse(chromium, path.as_uri() + '#play', tmp_path / 'profile', '--dump-dom'))
    assert 5 <= frame <= 15 and t == frame and shown == frame + 1
    shot = tmp_path / 'player.png'
    browse(chromium, path.as_uri() + '#play', tmp_path / 'profile', f'--screenshot={shot}', '--window-size=1200,900')
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and shot.stat().st_size > 20_000
