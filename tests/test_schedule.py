import pytest

from xfusion.errors import InputError
from xfusion.schedule import KeySchedule, key_weights, lr_window, read_key_index, schedule_for


def test_lr_window_is_clamped_at_the_ends():
    assert lr_window(5, 2, 10) == [3, 5, 7]
    assert lr_window(0, 1, 10) == [0, 0, 1]
    assert lr_window(9, 3, 10) == [6, 9, 9]
    assert lr_window(4, 1, 10, num_lr=5) == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError):
        lr_window(4, 1, 10, num_lr=2)


def test_key_frames_bracket_t_and_clamp_to_the_last_key():
    # 23 frames, period 10: keys at 0, 10, 20
    schedule = KeySchedule.every(10, 23)
    assert schedule.key_times == (0, 10, 20)
    assert schedule.bracket(0) == (0, 10)
    assert schedule.bracket(7) == (0, 10)
    assert schedule.bracket(10) == (10, 20)
    assert schedule.bracket(21) == (20, 20)
    for t in range(23):
        k0, k1 = schedule.bracket(t)
        assert k0 <= t and (t <= k1 or k1 == 20) and k1 - k0 in (0, 10)
    with pytest.raises(ValueError):
        KeySchedule.every(0, 10)


def test_key_frames_with_offset_and_explicit_index_agree():
    regular, listed = KeySchedule.every(7, 30, offset=3), KeySchedule(tuple(range(3, 30, 7)), 30)
    for t in range(30):
        assert regular.bracket(t) == listed.bracket(t)
    index = KeySchedule((2, 9, 20), 30)
    assert index.bracket(5) == (2, 9)
    assert index.bracket(1) == (2, 2)
    assert index.bracket(25) == (20, 20)
    assert index.without(9).bracket(5) == (2, 20)


def test_schedules_of_real_experiments_and_their_errors(tmp_path):
    (tmp_path / 'index.txt').write_text('0, 7\n15')
    assert schedule_for(20, 3, hr_index=tmp_path / 'index.txt').key_times == (0, 7, 15)
    assert schedule_for(20, 3, period=5, offset=2).key_times == (2, 7, 12)
    assert read_key_index(tmp_path / 'index.txt') == [0, 7, 15]
    for kwargs, match in ((dict(period=None), 'give --period'), (dict(period=0), 'integer >= 1'),
                          (dict(period=9, offset=5), 'beyond the LR sequence'),
                          (dict(hr_index=tmp_path / 'index.txt', period=None), '3 key-frame indices for 4')):
        with pytest.raises(InputError, match=match):
            schedule_for(20, 4 if 'hr_index' in kwargs else 3, **kwargs)
    with pytest.raises(InputError, match='increase strictly'):
        KeySchedule((3, 3), 10)


def test_key_weights_and_is_key():
    assert key_weights(0, 0, 10) == (1.0, 0.0)
    assert key_weights(5, 0, 10) == (0.5, 0.5)
    w0, w1 = key_weights(8, 0, 10)
    assert w0 == pytest.approx(0.2) and w1 == pytest.approx(0.8)
    assert key_weights(3, 3, 3) == (1.0, 0.0)
    assert KeySchedule.every(10, 30).is_key(20) and not KeySchedule.every(10, 30).is_key(21)
    assert KeySchedule.every(10, 30, offset=3).is_key(13) and not KeySchedule.every(10, 30, offset=3).is_key(0)
    assert KeySchedule.every(10, 30).weights(8) == pytest.approx((0.2, 0.8))
