"""Emotion track -> per-frame expression parameters: smooth ramps, entries without end, seeded idle life."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from pipelines.expression.build import build_expression_track
from pipelines.expression.emotions import BUILTIN_EMOTIONS
from pipelines.expression.track import PARAMS

FPS = 25.0
EMOTION_PARAMS = [i for i, p in enumerate(PARAMS) if not p.startswith("head_") and p != "blink"]


def test_builtin_names():
    assert set(BUILTIN_EMOTIONS) == {"neutral", "happy", "sad", "angry", "surprised", "thinking"}
    for values in BUILTIN_EMOTIONS.values():
        assert set(values) <= set(PARAMS)


def test_onsets_and_releases_are_smooth_and_reach_the_target():
    entries = [(1.0, 3.0, "happy", 1.0), (3.0, 5.0, "angry", 1.0), (5.0, None, "surprised", 1.0)]
    track = build_expression_track(entries, int(7 * FPS), FPS, seed=0, idle=0.0)
    v = track.values[:, EMOTION_PARAMS]
    # no pops: the largest swing here is smile 1 -> -0.35 (happy -> angry), spread over a 0.4 s smoothstep
    # whose steepest slope is 1.5 x its mean
    assert np.abs(np.diff(v, axis=0)).max() <= 1.5 * 1.35 / (0.4 * FPS) + 1e-6
    assert track.param("smile")[int(2.0 * FPS)] == pytest.approx(1.0)
    assert track.param("brow_lower")[int(4.0 * FPS)] == pytest.approx(1.0)
    assert track.param("smile")[0] == 0.0  # before the first entry: the resting face
    # the open-ended last entry lasts to the end of the clip
    assert track.param("brow_raise")[-1] == pytest.approx(1.0)


def test_entry_without_end_lasts_until_the_next_one():
    track = build_expression_track([(0, None, "happy", 0.5), (2.0, None, "sad", 1.0)], 100, FPS, 0, idle=0)
    smile = track.param("smile")
    assert smile[int(1.5 * FPS)] == pytest.approx(0.5)
    assert smile[int(3.0 * FPS)] == pytest.approx(-0.6)
    assert smile[0] == pytest.approx(0.5)  # an entry at 0 is there from the first frame


def test_objects_and_tuples_give_the_same_track():
    entries = [(0.5, 2.0, "thinking", 0.7)]
    objects = [SimpleNamespace(start=0.5, end=2.0, emotion="thinking", intensity=0.7)]
    a = build_expression_track(entries, 75, FPS, 3)
    b = build_expression_track(objects, 75, FPS, 3)
    np.testing.assert_array_equal(a.values, b.values)


def test_custom_emotions_and_unknown_names():
    custom = {"wink": {"blink": 0.4}, "happy": {"smile": 0.3}}
    track = build_expression_track([(0, None, "happy", 1.0)], 10, FPS, 0, idle=0, custom_emotions=custom)
    assert track.param("smile")[5] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="unknown emotion 'bored'.*known: angry, happy"):
        build_expression_track([(0, None, "bored", 1.0)], 10, FPS, 0)
    with pytest.raises(ValueError, match="unknown parameter 'grin'"):
        build_expression_track([], 10, FPS, 0, custom_emotions={"x": {"grin": 1.0}})


def _blink_onsets(track) -> np.ndarray:
    b = track.param("blink")
    return np.flatnonzero((b[1:] >= 0.5) & (b[:-1] < 0.5)) + 1


def test_blinks_are_seeded_irregular_and_close_the_eyes():
    n = int(60 * FPS)
    a = build_expression_track([], n, FPS, seed=7)
    again = build_expression_track([], n, FPS, seed=7)
    other = build_expression_track([], n, FPS, seed=8)
    np.testing.assert_array_equal(a.values, again.values)
    assert not np.array_equal(_blink_onsets(a), _blink_onsets(other))
    onsets = _blink_onsets(a)
    assert 8 <= len(onsets) <= 30  # people blink ~10-20 times a minute
    gaps = np.diff(onsets) / FPS
    assert gaps.std() > 0.4  # irregular, not a metronome
    assert a.param("blink").max() == pytest.approx(1.0)
    assert a.param("blink")[0] == 0.0


def test_idle_head_motion_is_small_smooth_and_scales_with_idle():
    n = int(20 * FPS)
    still = build_expression_track([], n, FPS, seed=1, idle=0.0)
    assert not still.values.any()
    calm = build_expression_track([], n, FPS, seed=1, idle=0.5)
    lively = build_expression_track([], n, FPS, seed=1, idle=1.0)
    for name in ("head_yaw", "head_pitch", "head_roll"):
        h = lively.param(name)
        assert 0.2 < np.abs(h).max() < 5.0  # degrees
        assert np.abs(np.diff(h)).max() < 0.2  # smooth: no jumps between frames
        np.testing.assert_allclose(calm.param(name), h / 2, atol=1e-5)
