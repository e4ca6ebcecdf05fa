"""docs/results.md and the README's tables are rendered from the measurement records, never typed by hand."""
import importlib.util
import json

import pytest

from helpers import ROOT

spec = importlib.util.spec_from_file_location('render_results', ROOT / 'benchmarks' / 'render_results.py')
render_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render_results)


def test_committed_pages_are_what_the_records_give():
    assert render_results.main(['--check']) == 0, 'run python benchmarks/render_results.py'


def fake_demo_record() -> dict:
    """Two sequences, one setting beside the headline one; stf below bayes on one sequence of one setting."""
    methods = ['bicubic', 'key_copy', 'temporal', 'bayes', 'stf']
    cells = []
    for period, b0 in ((20, '1000'), (20, 'none')):
        for i, method in enumerate(methods):
            per_sequence = {'seq_a': 20.0 + i, 'seq_b': 21.0 + i}
            if (b0, method) == ('none', 'stf'):
                per_sequence['seq_b'] = 23.5  # bayes has 24.0 there
            cells.append({'period': period, 'b0': b0, 'method': method, 'frames': 10, 'ssim': 0.5 + i / 10,
                          'aad': 9.0 - i, 'psnr': sum(per_sequence.values()) / 2, 'per_sequence': per_sequence})
    return {'command': 'python benchmarks/demo_results.py', 'date': '2000-01-01',
            'machine': {'cpu': 'Test CPU', 'cpu_count': 2, 'threads': 2, 'torch': '0', 'device': 'cpu'},
            'data': 'datasets/demo/xray/test', 'lr_sep': 1, 'headline': {'period': 20, 'b0': '1000'},
            'periods': [20], 'b0s': ['none', '1000'], 'methods': methods, 'describe': {'stf': 'the network'},
            'sequences': ['seq_a', 'seq_b'], 'make_demo': None, 'cells': cells}


def test_every_figure_comes_from_the_record(tmp_path, monkeypatch):
    (tmp_path / 'demo.json').write_text(json.dumps(fake_demo_record()))
    monkeypatch.setattr(render_results, 'RECORDS', tmp_path)
    page = render_results.results_page()
    assert '`python benchmarks/demo_results.py`, 2000-01-01, on Test CPU (2 cores' in page
    assert '| **stf** | the network | 24.50 | 0.9000 | 5.00 |' in page  # the headline setting, period 20 b0 1000
    assert '| 20 | clean | 20.50 | 21.50 | 22.50 | 23.50 | **23.75** |' in page  # the best of a row in bold
    assert '+1.00 (bayes) | -0.50 (bayes) |' in page and 'in 3 of 4 cells' in page
    assert 'Not measured yet' in page  # the records that are missing say how to make them
    readme = render_results.with_blocks('a\n<!-- results:demo -->\nold\n<!-- /results:demo -->\nb\n',
                                        render_results.readme_blocks())
    assert 'old' not in readme and '| **stf** | the network | 24.50 |' in readme and readme.endswith('-->\nb\n')


def test_the_seed_table_gives_mean_and_spread_and_marks_a_recipe_below_classical(tmp_path, monkeypatch):
    cells = []
    for family, base in (('wing', 30.0), ('bubbles', 25.0)):
        for i, method in enumerate(('bicubic', 'key_copy', 'temporal', 'bayes')):
            cells.append({'family': family, 'period': 20, 'b0': '1000', 'method': method, 'psnr': base - 3 + i})
        for seed, offset in ((10, 0.2), (11, -0.2)):  # stf: 1 dB above bayes on wing, 0.5 below on bubbles
            psnr = base + 1 + offset if family == 'wing' else base - 0.5 + offset
            cells.append({'family': family, 'period': 20, 'b0': '1000', 'method': f'stf_s{seed}', 'psnr': psnr})
    part = {'data': 'x', 'families': {'seq_000': 'wing', 'seq_001': 'bubbles'}, 'cells': cells}
    record = {'command': 'python benchmarks/seed_table.py', 'date': '2000-01-01',
              'machine': {'cpu': 'Test CPU', 'cpu_count': 2, 'threads': 2, 'torch': '0', 'device': 'cpu'},
              'recipes': {'stf': ['options/demo/finetune_xray_prop_demo.yml']}, 'describe': {'stf': 'the network'},
              'seeds': [10, 11], 'sets': {'test': part, 'val': part}}
    (tmp_path / 'seeds.json').write_text(json.dumps(record))
    monkeypatch.setattr(render_results, 'RECORDS', tmp_path)
    page = render_results.results_page()
    assert '| wing | 20 | b0 1000 | 27.00 | 28.00 | 29.00 | **30.00** | 31.00 ± 0.20 |' in page
    assert '| bubbles | 20 | b0 1000 | 22.00 | 23.00 | 24.00 | **25.00** | 24.50 ± 0.20 (below) |' in page
    assert '| stf | 27.75 | 0.40 | 2 of 4 |' in page  # seed means 27.95 and 27.55; bubbles below in both seeds


def load_seed_table(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / 'benchmarks'))  # its own helper module (record.py)
    spec = importlib.util.spec_from_file_location('seed_table', ROOT / 'benchmarks' / 'seed_table.py')
    seed_table = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed_table)
    return seed_table


def test_seed_table_means_each_family_over_its_sequences_non_key_frames(monkeypatch):
    seed_table = load_seed_table(monkeypatch)
    rows = [dict(sequence=s, period=20, b0='1000', method='bayes', is_key=k, psnr=p)
            for s, k, p in (('a', False, 30.0), ('a', True, float('inf')), ('b', False, 32.0), ('c', False, 20.0))]
    means = seed_table.family_means(rows, {'a': 'wing', 'b': 'wing', 'c': 'bubbles'})
    assert {(m['family'], m['psnr'], m['frames']) for m in means} == {('wing', 31.0, 2), ('bubbles', 20.0, 1)}


def test_seed_table_adds_recipes_to_the_record_only_on_the_same_data(monkeypatch, tmp_path):
    seed_table = load_seed_table(monkeypatch)
    machine = {'cpu': 'Test CPU', 'cpu_count': 2, 'threads': 1, 'torch': '0', 'device': 'cpu'}

    def run(recipe: str, psnr: float, bayes: float = 30.0, date: str = '2000-01-01') -> dict:
        cells = [{'family': 'wing', 'period': 20, 'b0': '1000', 'method': m, 'psnr': bayes - i}
                 for i, m in enumerate(('bayes', 'temporal', 'key_copy', 'bicubic'))]
        cells += [{'family': 'wing', 'period': 20, 'b0': '1000', 'method': f'{recipe}_s{s}', 'psnr': psnr + s / 100}
                  for s in (10, 11)]
        part = {'data': 'x', 'families': {'seq_000': 'wing'}, 'cells': cells}
        return {'command': f'python benchmarks/seed_table.py --recipes {recipe}', 'date': date, 'machine': machine,
                'recipes': {recipe: [f'{recipe}.yml']}, 'describe': {recipe: recipe}, 'seeds': [10, 11],
                'training_minutes': {f'{recipe}_s10': 1.0}, 'sets': {'val': part, 'test': part}}

    merged = seed_table.added_to(run('stf', 31.0), run('edvrstf', 29.0, date='2000-01-02'))
    assert list(merged['recipes']) == ['stf', 'edvrstf']
    assert merged['command'] == 'python benchmarks/seed_table.py --recipes stf'  # the record's own provenance stays
    assert merged['additions'][0]['recipes'] == ['edvrstf'] and merged['additions'][0]['date'] == '2000-01-02'
    methods = sorted(c['method'] for c in merged['sets']['val']['cells'])
    assert methods == ['bayes', 'bicubic', 'edvrstf_s10', 'edvrstf_s11', 'key_copy', 'stf_s10', 'stf_s11',
                       'temporal']
    again = seed_table.added_to(merged, run('stf', 32.0))  # a recipe measured again replaces its cells
    assert [c['psnr'] for c in again['sets']['test']['cells'] if c['method'] == 'stf_s10'] == [32.1]
    assert again['additions'][-1]['replaced'] == ['stf'] and merged['additions'][0]['replaced'] == []
    twice = seed_table.added_to(again, run('edvrstf', 29.5, date='2000-01-03'))  # only its latest addition speaks
    assert [(a['recipes'], a['date']) for a in twice['additions']] == [(['stf'], '2000-01-01'),
                                                                       (['edvrstf'], '2000-01-03')]
    with pytest.raises(SystemExit, match='not the ones it was measured on'):
        seed_table.added_to(merged, run('lr_only', 25.0, bayes=30.5))  # other data: the baselines differ

    (tmp_path / 'seeds.json').write_text(json.dumps(merged))
    monkeypatch.setattr(render_results, 'RECORDS', tmp_path)
    page = render_results.results_page()
    assert '`edvrstf` added by `python benchmarks/seed_table.py --recipes edvrstf`, 2000-01-02, on Test CPU' in page
    (tmp_path / 'seeds.json').write_text(json.dumps(again))
    page = render_results.results_page()
    assert '`stf` measured again by `python benchmarks/seed_table.py --recipes stf`, 2000-01-01' in page
