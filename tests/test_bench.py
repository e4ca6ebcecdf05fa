import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from helpers import HANG_GUARD_S, ROOT
from xfusion.commands.bench import case_key, cases_for, run_case, table
from xfusion.options import packaged_option_file
from xfusion.pretrained import packaged_models

TINY_NET = dict(type='EDVRSTF', num_feat=8, deformable_groups=2, num_extract_block=1, num_reconstruct_block=1,
                hr_encoder='unshuffle', base='key_blend')


def test_quick_bench_covers_both_modes_and_encoders_of_the_paper_network():
    cases = cases_for('cpu', quick=True, threads=2)
    paper = {(c['encoder'], c['mode']) for c in cases
             if c['network'] == 'edvr-paper' and c['lr_size'] == [100, 256]}
    assert {('pool', 'per_window'), ('pool', 'cached'), ('unshuffle', 'per_window'), ('unshuffle', 'cached')} <= paper
    assert any(c['mode'] == 'train' and c['network'] == 'edvr-demo' for c in cases)
    assert len({case_key(c) for c in cases}) == len(cases)
    assert all(os.path.isfile(c['opt']) and c['family'] in ('EDVRSTF', 'SwinSTF', 'PropSTF') for c in cases)
    # the segment family at paper and demo scale, beside the paper window network at the same size
    assert {(c['network'], c['mode']) for c in cases if c['family'] == 'PropSTF' and c.get('lr_size') == [100, 256]} \
        == {('prop-paper', 'segment'), ('prop-demo', 'segment')}


def test_option_files_choose_the_networks(tmp_path):
    (tmp_path / 'mine.yml').write_text(yaml.safe_dump({'network_g': TINY_NET}))
    cases = cases_for('cpu', quick=True, threads=1, option_files=[str(tmp_path / 'mine.yml')])
    assert {(c['network'], c['mode']) for c in cases} == {('mine', 'per_window'), ('mine', 'cached'),
                                                           ('mine', 'train')}
    assert all(c['family'] == 'EDVRSTF' for c in cases)


@pytest.mark.slow
def test_cases_run_and_report_the_contract_fields():
    base = dict(family='EDVRSTF', network='edvr-demo', opt=str(packaged_option_file('demo/finetune_xray_demo.yml')),
                encoder=None, lr_size=[16, 16], precision='fp32', dcn='grid_sample', device='cpu', repeats=1,
                threads=1)
    results = [run_case(dict(base, mode='per_window')), run_case(dict(base, mode='cached'))]
    proc = subprocess.run([sys.executable, '-m', 'xfusion.commands.bench', '--case',
                           json.dumps(dict(base, lr_size=None, mode='train', patch=32, batch=2))],
                          capture_output=True, text=True)
    results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    for r in results:
        assert {'network', 'encoder', 'lr_size', 'mode', 'device', 'precision', 'peak_mem_mb'} <= set(r)
        assert r.get('seconds_per_frame', r.get('seconds_per_iter')) > 0 and r['peak_mem_mb'] > 0
    text = table(results)
    assert 'cached / per-window' in text and 'train patch 32' in text


def test_full_bench_times_the_fast_paths_against_plain_cached_inference():
    cases = cases_for('cpu', quick=False, threads=2)
    cached = [c for c in cases if c['network'] == 'edvr-paper' and c['mode'] == 'cached'
              and c['lr_size'] == [100, 256] and c['encoder'] == 'pool' and c['precision'] == 'fp32']
    assert {(c.get('channels_last', False), c.get('compile', False)) for c in cached} == \
        {(False, False), (True, False), (False, True)}
    assert {tuple(c['lr_size']) for c in cases if c['network'] == 'edvr-paper' and c['mode'] != 'train'} >= \
        {(100, 256), (256, 256)}


def test_a_segment_network_is_timed_per_segment_and_compared_with_the_paper_window_network(tmp_path):
    opt = packaged_option_file('demo/finetune_xray_prop_demo.yml')
    cases = cases_for('cpu', quick=True, threads=1, option_files=[str(opt)])
    assert {c['mode'] for c in cases} == {'segment', 'train'}
    base = dict(family='PropSTF', network='prop-demo', opt=str(opt), encoder=None, lr_size=[16, 16],
                precision='fp32', dcn='grid_sample', device='cpu', repeats=1, threads=1)
    segment = run_case(dict(base, mode='segment'))
    train = run_case(dict(base, lr_size=None, mode='train', patch=32, batch=2))
    assert segment['seconds_per_frame'] > 0 and segment['frames_timed'] == 20 and train['seconds_per_iter'] > 0
    paper = dict(family='EDVRSTF', network='edvr-paper', encoder='pool', lr_size=[16, 16], mode='cached',
                 precision='fp32', dcn='grid_sample', device='cpu', peak_mem_mb=1.0,
                 seconds_per_frame=4 * segment['seconds_per_frame'])
    assert 'segment / edvr-paper/pool cached = 0.25' in table([segment, train, paper])


def test_a_failed_case_is_reported_and_the_others_compared():
    base = dict(family='EDVRSTF', network='edvr-paper', encoder='pool', lr_size=[100, 256], precision='fp32',
                dcn='grid_sample', device='cpu', peak_mem_mb=100.0)
    results = [dict(base, mode='per_window', seconds_per_frame=10.0),
               dict(base, mode='cached', seconds_per_frame=5.0),
               dict(base, mode='cached', compile=True, error='RuntimeError: no compiler')]
    text = table(results)
    assert 'failed: RuntimeError: no compiler' in text
    assert 'cached / per-window fp32 = 0.50' in text


@pytest.mark.slow
def test_bench_and_the_packaged_models_work_from_an_installed_package_without_the_source_tree(tmp_path):
    source = tmp_path / 'source'  # what a source distribution holds, built into a wheel and installed
    for name in ('setup.py', 'pyproject.toml', 'README.md', 'requirements.txt', 'requirements-test.txt'):
        shutil.copy(ROOT / name, source / name if source.exists() else (source.mkdir() or source / name))
    for folder in ('xfusion', 'options'):
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns('__pycache__'))
    pip = [sys.executable, '-m', 'pip', '-q', '--disable-pip-version-check']
    subprocess.run(pip + ['wheel', '--no-deps', '--no-build-isolation', '-w', str(tmp_path / 'wheel'), str(source)],
                   check=True, timeout=HANG_GUARD_S)
    site = tmp_path / 'site'
    subprocess.run(pip + ['install', '--no-deps', '--target', str(site), *map(str, (tmp_path / 'wheel').glob('*.whl'))],
                   check=True, timeout=HANG_GUARD_S)
    shutil.rmtree(source)
    env = dict(os.environ, PYTHONPATH=str(site))
    work = tmp_path / 'elsewhere'
    work.mkdir()
    listed = subprocess.run([sys.executable, '-m', 'xfusion', 'bench', '--list'], cwd=work, env=env,
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert listed.returncode == 0, listed.stderr
    assert str(site / 'xfusion' / 'option_files' / 'pretrain_reds.yml') in listed.stdout
    (work / 'mine.yml').write_text(yaml.safe_dump({'network_g': TINY_NET}))
    ran = subprocess.run([sys.executable, '-m', 'xfusion', 'bench', '--opt', 'mine.yml', '--quick', '--out', 'b.json'],
                         cwd=work, env=env, capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    results = json.loads((work / 'b.json').read_text())['results']
    assert {r['mode'] for r in results} == {'per_window', 'cached', 'train'}
    assert all(r.get('seconds_per_frame', r.get('seconds_per_iter')) > 0 for r in results)
    # the packaged networks travel in the wheel: listed, their cards shown, loaded by name from the install
    first, last = list(packaged_models())[0], list(packaged_models())[-1]
    models = subprocess.run([sys.executable, '-m', 'xfusion', 'models', first], cwd=work, env=env,
                            capture_output=True, text=True, timeout=HANG_GUARD_S)
    assert models.returncode == 0 and str(site / 'xfusion' / 'pretrained' / first) in models.stdout, models.stderr
    load = ('from xfusion.checkpoint import load_network; '
            f'print(sum(p.numel() for p in load_network("{last}")[0].parameters()))')
    loaded = subprocess.run([sys.executable, '-c', load], cwd=work, env=env, capture_output=True, text=True,
                            timeout=HANG_GUARD_S)
    assert loaded.returncode == 0 and int(loaded.stdout) > 1000, loaded.stderr
