"""docs/results.md and the README's tables are rendered from the measurement records, never typed by hand."""
import importlib.util
import json

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
