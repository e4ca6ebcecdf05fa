import json
import subprocess
import sys

import pytest

from xfusion.bench import case_key, cases_for, run_case, table


def test_quick_bench_covers_both_modes_and_encoders_of_the_paper_network():
    cases = cases_for('cpu', quick=True, threads=2)
    paper = {(c['encoder'], c['mode']) for c in cases if c['network'] == 'paper' and c['lr_size'] == [100, 256]}
    assert {('pool', 'per_window'), ('pool', 'cached'), ('unshuffle', 'per_window'), ('unshuffle', 'cached')} <= paper
    assert any(c['mode'] == 'train' and c['network'] == 'demo' for c in cases)
    assert len({case_key(c) for c in cases}) == len(cases)


@pytest.mark.slow
def test_cases_run_and_report_the_contract_fields():
    base = dict(family='edvr', network='demo', encoder=None, lr_size=[16, 16], precision='fp32', dcn='grid_sample',
                device='cpu', repeats=1, threads=1)
    results = [run_case(dict(base, mode='per_window')), run_case(dict(base, mode='cached'))]
    proc = subprocess.run([sys.executable, '-m', 'xfusion.bench', '--case',
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
    cached = [c for c in cases if c['network'] == 'paper' and c['mode'] == 'cached' and c['lr_size'] == [100, 256]
              and c['encoder'] == 'pool' and c['precision'] == 'fp32']
    assert {(c.get('channels_last', False), c.get('compile', False)) for c in cached} == \
        {(False, False), (True, False), (False, True)}
    assert {tuple(c['lr_size']) for c in cases if c['network'] == 'paper' and c['mode'] != 'train'} >= \
        {(100, 256), (256, 256)}


def test_a_failed_case_is_reported_and_the_others_compared():
    base = dict(family='edvr', network='paper', encoder='pool', lr_size=[100, 256], precision='fp32',
                dcn='grid_sample', device='cpu', peak_mem_mb=100.0)
    results = [dict(base, mode='per_window', seconds_per_frame=10.0),
               dict(base, mode='cached', seconds_per_frame=5.0),
               dict(base, mode='cached', compile=True, error='RuntimeError: no compiler')]
    text = table(results)
    assert 'failed: RuntimeError: no compiler' in text
    assert 'cached / per-window fp32 = 0.50' in text
