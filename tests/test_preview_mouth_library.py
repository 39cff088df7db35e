"""The video persona's mouth library: shapes, the mapping of speech onto the footage's own openings, the
choice of entries (continuity, resume), and the paste (a real portrait, real MediaPipe landmarks)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipelines.engines.preview.mouth_library import (
    WINDOW,
    MouthLibrary,
    MouthStore,
    beyond_widest,
    build_library,
    choose_entries,
    jump_sources,
    mouth_shapes,
    paste_mouth,
    target_shapes,
)
from pipelines.face.landmarks import detect_faces
from pipelines.qc.measure import mouth_opening
from tests.preview_helpers import prepared


def _library(openings) -> MouthLibrary:
    openings = np.asarray(openings, np.float64)
    return MouthLibrary(np.arange(len(openings)), openings, np.full(len(openings), 0.9))


def test_footage_whose_mouth_does_not_move_gives_no_library_and_says_why():
    points = np.repeat(prepared().points, 30, axis=0)
    library, why = build_library(points, np.ones(30, bool))
    assert library is None and "barely moves" in why
    library, why = build_library(points[:5], np.ones(5, bool))
    assert library is None and "5 frames" in why


def test_shapes_are_in_pupil_distances():
    pts = prepared().points
    opening, width = mouth_shapes(pts)
    assert opening.shape == (1,) and 0.0 <= opening[0] < 0.5
    assert 0.5 < width[0] < 1.5  # a mouth is about as wide as the eyes are apart


def test_silence_maps_to_the_most_closed_mouth_and_the_loudest_to_the_widest():
    library = _library(np.linspace(0.0, 0.4, 41))
    speech = np.r_[np.zeros(20), np.linspace(0.1, 1.0, 20)]
    t_open, _ = target_shapes(library, speech, np.zeros(40))
    assert np.allclose(t_open[:20], 0.0)
    assert t_open[-1] == pytest.approx(0.4)
    assert np.all(np.diff(t_open[20:]) >= 0)


def test_footage_without_a_wide_opening_says_in_the_record_that_wider_openings_are_opened_further():
    narrow = _library(np.linspace(0.0, 0.15, 31))
    t_open, _ = target_shapes(narrow, np.linspace(0.0, 1.0, 40), np.zeros(40))
    assert t_open.max() == pytest.approx(0.15)  # the widest speech gets the footage's widest entry...
    facts = narrow.facts()
    assert facts["opening_max"] == 0.15 and "0.15 pupil distances" in facts["extended"]
    assert "extended" not in _library(np.linspace(0.0, 0.5, 31)).facts()  # it shows every opening speech asks


def test_frames_asking_beyond_the_widest_mouth_open_further_by_the_difference_from_zero():
    """...and opened further by what the speech asks beyond it: 0 up to the widest entry, then growing from 0
    (no jump at the threshold)."""
    narrow = _library(np.linspace(0.0, 0.15, 31))
    asked = np.array([0.0, 0.1, 0.15, 0.152, 0.16, 0.2, 0.36])
    beyond = beyond_widest(narrow, asked)
    assert np.allclose(beyond, [0.0, 0.0, 0.0, 0.0, 0.01, 0.05, 0.21])
    assert np.abs(np.diff(beyond_widest(narrow, np.linspace(0.0, 0.36, 200)))).max() < 0.01


def test_the_path_follows_the_target_and_prefers_runs_of_real_motion():
    # footage that opens and closes twice: the target (one slow opening) is best met by playing a rising run
    openings = np.r_[np.linspace(0, 0.4, 20), np.linspace(0.4, 0, 20), np.linspace(0, 0.4, 20)]
    library = _library(openings)
    target = np.linspace(0.0, 0.4, 20)
    path = choose_entries(library, target, np.full(20, 0.9))
    assert np.abs(openings[path] - target).max() < 0.05
    steps = np.diff(path)
    assert (steps == 1).mean() > 0.8, "consecutive source frames, not jumps"


def test_a_pause_shows_a_closed_mouth_even_where_a_run_of_real_motion_would_carry_into_it():
    # footage that opens slowly from a nearly closed mouth and ends closed: playing the opening run from its start
    # across the pause into the speech would be free continuity, but the pause must show a closed entry
    openings = np.r_[np.linspace(0.05, 0.4, 20), np.zeros(5)]
    library = _library(openings)
    t_open = np.r_[np.zeros(4), np.linspace(0.12, 0.4, 16)]
    path = choose_entries(library, t_open, np.full(len(t_open), 0.9))
    assert np.all(openings[path[:4]] == 0.0), f"the pause shows openings {openings[path[:4]]}"
    assert np.abs(openings[path[4:]] - t_open[4:]).max() < 0.05


def test_a_resumed_render_chooses_what_a_full_render_chose():
    rng = np.random.default_rng(0)
    library = _library(rng.uniform(0, 0.4, 80))
    t_open = np.abs(np.sin(np.arange(2 * WINDOW + 30) / 7.0)) * 0.4
    t_width = np.full(len(t_open), 0.9)
    full = choose_entries(library, t_open, t_width)
    for start in (1, WINDOW - 1, WINDOW + 17):
        assert np.array_equal(choose_entries(library, t_open, t_width, start), full[start:])


def test_a_pasted_mouth_takes_the_entrys_opening_in_the_current_frames_place():
    prep = prepared()
    frame = np.ascontiguousarray(prep.frame[..., :3])
    closed_pts = prep.points[0]
    rig = prep.rig
    opened = np.ascontiguousarray(rig.apply(prep.frame, {"mouth_open": 1.0})[..., :3]).copy()
    opened_pts = detect_faces(opened, max_faces=1)[0].points
    # the entry comes from another moment: the head a little to the side
    shift = np.float32([[1, 0, 6], [0, 1, -4]])
    import cv2

    moved = cv2.warpAffine(opened, shift, opened.shape[1::-1], borderMode=cv2.BORDER_REFLECT101)
    store = MouthStore()
    store.add(7, moved, opened_pts + [6, -4])
    crop, origin = store.crop(7)
    out = paste_mouth(frame.copy(), closed_pts, crop, origin, opened_pts + [6, -4])
    found = detect_faces(out, max_faces=1)[0].points
    # (MediaPipe fits its mesh to the whole composite, whose jaw is the closed frame's: it reads the pasted
    # mouth 0.05-0.08 less open than the entry at openings 0.6-1.0, with either painted interior)
    assert mouth_opening(found) == pytest.approx(mouth_opening(opened_pts), abs=0.08)
    assert mouth_opening(found) > mouth_opening(closed_pts) + 0.1
    # only the lower face changes: the eyes and brows are the frame's own
    top = int(closed_pts[[1, 2]][:, 1].min())
    assert np.abs(out[: top - 5].astype(int) - frame[: top - 5]).max() == 0


def test_the_faint_tail_of_an_opening_closes_like_silence():
    library = _library(np.linspace(0.0, 0.4, 41))
    speech = np.r_[np.zeros(30), [0.02, 0.01], np.linspace(0.3, 1.0, 10)]
    t_open, t_width = target_shapes(library, speech, np.linspace(-1, 1, 42))
    assert np.allclose(t_open[:32], 0.0)
    assert np.all(np.diff(t_width) >= 0) and t_width.max() == pytest.approx(0.9)  # widths are all 0.9 here


def test_a_jump_cross_fades_from_the_continuation_of_the_previous_mouth():
    library = MouthLibrary(np.array([0, 1, 2, 3, 10, 11]), np.zeros(6), np.zeros(6))
    path = np.array([0, 1, 4, 5, 5, 2])
    assert jump_sources(library, path, None).tolist() == [-1, -1, 2, -1, -1, 11]
    assert jump_sources(library, path[2:], 1).tolist() == [2, -1, -1, 11]  # resumed: the same fades


def test_spoken_frames_rank_among_themselves_however_long_the_pauses():
    """Speech with long pauses opens as wide while it speaks as speech without them: its spoken frames map onto
    the footage's whole range, not its upper part."""
    library = _library(np.linspace(0.0, 0.4, 41))
    spoken = np.linspace(0.2, 1.0, 50)
    for pause in (0, 50, 200):
        t_open, _ = target_shapes(library, np.r_[np.zeros(pause), spoken], np.zeros(pause + 50))
        assert np.median(t_open[pause:]) == pytest.approx(0.2, abs=0.01)
        assert np.allclose(t_open[:pause], 0.0)


@pytest.mark.parametrize("sigma", [5.0, 18.0, 30.0])
def test_a_large_feather_blurred_small_is_the_feather(sigma):
    # a 1080x1920 face's paste mask (sigma ~18 px) is blurred at a fraction of its size and scaled up
    from pipelines.engines.preview.mouth_library import _feathered

    mask = np.zeros((400, 520), np.float32)
    cv2.fillPoly(mask, [np.array([[60, 80], [460, 60], [430, 330], [90, 300]], np.int32)], 1.0, cv2.LINE_AA)
    exact = cv2.GaussianBlur(mask, (0, 0), sigma)
    assert np.abs(_feathered(mask, sigma) - exact).max() < 0.02
