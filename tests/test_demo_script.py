"""scripts/demo.py: steps side by side, the cores shared out, every log kept, a failure stops the demo."""
import importlib.util
import sys

import pytest

from helpers import ROOT

spec = importlib.util.spec_from_file_location('demo', ROOT / 'scripts' / 'demo.py')
demo = importlib.util.module_from_spec(spec)
spec.loader.exec_module(demo)


def python(code: str) -> list[str]:
    return [sys.executable, '-c', code]


@pytest.fixture
def logs(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, 'LOGS', tmp_path / 'logs')
    return tmp_path / 'logs'


def test_lanes_run_at_the_same_time_on_their_share_of_the_cores(tmp_path, logs, monkeypatch):
    monkeypatch.setattr(demo.os, 'cpu_count', lambda: 4)
    # each lane's step waits for the other's mark: one after the other, neither would end
    meet = '''
import os, pathlib, time, sys
here = pathlib.Path(sys.argv[1])
(here / sys.argv[2]).write_text(os.environ.get('OMP_NUM_THREADS', 'unset'))
deadline = time.time() + 120
while not (here / sys.argv[3]).exists():
    assert time.time() < deadline, 'the other lane never started'
    time.sleep(0.05)
print('Results in', sys.argv[2])
'''
    lane_a = [('meet b', python(meet) + [str(tmp_path), 'a', 'b'], 'meet_a')]
    lane_b = [('meet a', python(meet) + [str(tmp_path), 'b', 'a'], 'meet_b'),
              ('after the meeting', python('print("second step of lane b")'), 'after')]
    demo.side_by_side(lane_a, lane_b)
    assert (tmp_path / 'a').read_text() == '2' and (tmp_path / 'b').read_text() == '2'  # 4 cores, 2 lanes
    assert 'Results in a' in (logs / 'meet_a.log').read_text()
    assert 'second step of lane b' in (logs / 'after.log').read_text()


def test_a_failed_step_ends_its_lane_and_then_the_demo(tmp_path, logs):
    lane_a = [('fails', python('import sys; print("broken"); sys.exit(3)'), 'fails'),
              ('never runs', python(f'open({str(tmp_path / "late")!r}, "w")'), 'late')]
    lane_b = [('finishes', python(f'open({str(tmp_path / "done")!r}, "w")'), 'done')]
    with pytest.raises(SystemExit):
        demo.side_by_side(lane_a, lane_b)
    assert (tmp_path / 'done').exists()  # the other lane ran to its end
    assert not (tmp_path / 'late').exists()
    assert 'broken' in (logs / 'fails.log').read_text()


def test_a_step_alone_keeps_every_core(tmp_path, logs, monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    code = demo.step('alone', python('import os; print("threads", os.environ.get("OMP_NUM_THREADS", "all"))'),
                     'alone')
    assert code == 0
    assert 'threads all' in (logs / 'alone.log').read_text()


def test_an_empty_lane_leaves_its_cores_to_the_others(tmp_path, logs, monkeypatch):
    monkeypatch.setattr(demo.os, 'cpu_count', lambda: 4)
    threads = python(f'import os; open({str(tmp_path / "threads")!r}, "w").write(os.environ["OMP_NUM_THREADS"])')
    demo.side_by_side([], [('the only lane', threads, 'only')])
    assert (tmp_path / 'threads').read_text() == '4'


def test_data_sets_are_kept_only_when_the_same_command_made_them(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, 'ROOT', tmp_path)
    monkeypatch.setattr(demo, 'MADE', [])
    out = tmp_path / 'datasets' / 'val'
    (out / 'seq_000').mkdir(parents=True)  # left by an older demo, without a record of what made it
    (steps,) = [demo.synth('xray', out, '--seed', '2', '--families', 'val')]
    assert len(steps) == 1 and steps[0][1][-6:] == ['--out', 'datasets/val', '--seed', '2', '--families', 'val']
    assert not out.exists()  # removed: the step makes it again
    (out / 'seq_000').mkdir(parents=True)
    (out / 'synth.json').write_text(demo.json.dumps(demo.MADE[0][1]))
    assert demo.synth('xray', out, '--seed', '2', '--families', 'val') == []  # the same command: kept
    assert demo.synth('xray', out, '--seed', '3', '--families', 'val') != [] and not out.exists()
