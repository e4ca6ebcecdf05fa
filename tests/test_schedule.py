import pytest

from xfusion.schedule import bracketing_keys, is_key_frame, key_frames_for, key_weights, lr_window


def test_lr_window_is_clamped_at_the_ends():
    assert lr_window(5, 2, 10) == [3, 5, 7]
    assert lr_window(0, 1, 10) == [0, 0, 1]
    assert lr_window(9, 3, 10) == [6, 9, 9]
    assert lr_window(4, 1, 10, num_lr=5) == [2, 3, 4, 5, 6]
    with pytest.raises(ValueError):
        lr_window(4, 1, 10, num_lr=2)


def test_key_frames_bracket_t_and_clamp_to_the_last_key():
    # 23 frames, period 10: keys at 0, 10, 20
    assert key_frames_for(0, 10, 23) == (0, 10)
    assert key_frames_for(7, 10, 23) == (0, 10)
    assert key_frames_for(10, 10, 23) == (10, 20)
    assert key_frames_for(21, 10, 23) == (20, 20)
    for t in range(23):
        k0, k1 = key_frames_for(t, 10, 23)
        assert k0 <= t and (t <= k1 or k1 == 20) and k1 - k0 in (0, 10)
    with pytest.raises(ValueError):
        key_frames_for(0, 0, 10)


def test_key_frames_with_offset_and_explicit_index_agree():
    for t in range(30):
        assert key_frames_for(t, 7, 30, offset=3) == bracketing_keys(t, list(range(3, 30, 7)))
    assert bracketing_keys(5, [2, 9, 20]) == (2, 9)
    assert bracketing_keys(1, [2, 9, 20]) == (2, 2)
    assert bracketing_keys(25, [2, 9, 20]) == (20, 20)


def test_key_weights_and_is_key():
    assert key_weights(0, 0, 10) == (1.0, 0.0)
    assert key_weights(5, 0, 10) == (0.5, 0.5)
    w0, w1 = key_weights(8, 0, 10)
    assert w0 == pytest.approx(0.2) and w1 == pytest.approx(0.8)
    assert key_weights(3, 3, 3) == (1.0, 0.0)
    assert is_key_frame(20, 10) and not is_key_frame(21, 10) and is_key_frame(13, 10, offset=3)
