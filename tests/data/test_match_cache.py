"""The frozen match cache: native-resolution SIFT matches and essential poses per sequence, and the samples built
from it (parallax-chosen context frames, match tensors at the sample resolution)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from priordepth_core.data import match_cache
from priordepth_core.data.match_cache import LOW_PARALLAX, OK, MatchCacheSettings, load_or_build
from priordepth_core.data.sample import FrameSamples, flip_sample
from priordepth_core.data.suite import SyntheticSuiteReader
from priordepth_core.data.synthetic import SequenceSpec, make_sequence, write_sequence
from priordepth_core.geometry.se3 import rotation_error_deg, translation_direction_error_deg

SETTINGS = MatchCacheSettings(max_offset=2, max_matches=120)


@pytest.fixture(scope="module")
def street(tmp_path_factory):
    """Eight frames of the synthetic street at 640x192, car motion, exact depth and poses."""
    root = tmp_path_factory.mktemp("street") / "seq"
    write_sequence(make_sequence(SequenceSpec("street", "car", 8, 640, 192, seed=5)), root, "tum", progress=False)
    return root


@pytest.fixture(scope="module")
def street_cache(street, tmp_path_factory):
    reader = SyntheticSuiteReader(street)
    cache_dir = tmp_path_factory.mktemp("cache")
    return reader, load_or_build(reader, reader.sequences[0], SETTINGS, cache_dir), cache_dir


def _relative(frames, target, context):
    return np.linalg.inv(frames[context].T_world_cam) @ frames[target].T_world_cam


def test_cached_poses_and_triangulations_match_ground_truth(street_cache):
    reader, cache, _ = street_cache
    frames = reader.sequences[0]
    for target, context in ((0, 1), (3, 5), (5, 3), (7, 6)):
        pair = cache.pair(target, context)
        truth = _relative(frames, target, context)
        assert pair.status in (OK, LOW_PARALLAX)
        assert len(pair.x_target) >= 30
        T = torch.tensor(pair.T_context_target)[None]
        assert float(rotation_error_deg(T[:, :3, :3], torch.tensor(truth[:3, :3])[None])) < 0.3
        assert float(translation_direction_error_deg(T[:, :3, 3], torch.tensor(truth[:3, 3])[None])) < 5.0
        # Unit-baseline depths times the true baseline are the true depths at the matches.
        depth = reader.load_depth(frames[target])
        pixels = np.round(pair.x_target).astype(int)
        true_depth = depth[pixels[:, 1], pixels[:, 0]]
        usable = (true_depth > 0) & (pair.parallax_deg > 0.5) & (pair.depth_target > 0)
        ratio = pair.depth_target[usable] * np.linalg.norm(truth[:3, 3]) / true_depth[usable]
        assert usable.sum() >= 10
        assert abs(np.median(np.log(ratio))) < 0.05


def test_reverse_pair_is_the_inverse(street_cache):
    _, cache, _ = street_cache
    forward, backward = cache.pair(2, 4), cache.pair(4, 2)
    np.testing.assert_allclose(forward.T_context_target @ backward.T_context_target, np.eye(4), atol=1e-9)
    np.testing.assert_array_equal(forward.x_target, backward.x_context)


def test_pairs_outside_the_cache_raise(street_cache):
    _, cache, _ = street_cache
    for target, context in ((0, 0), (0, 3), (7, 8), (-1, 0)):
        with pytest.raises(KeyError, match="not in the cache"):
            cache.pair(target, context)


def test_cache_is_reused_and_rebuilt_when_its_inputs_change(street_cache, monkeypatch):
    reader, _, cache_dir = street_cache
    files = sorted(cache_dir.glob("*.npz"))
    assert len(files) == 1 and files[0].stat().st_size < 2_000_000

    def no_build(*args, **kwargs):
        raise AssertionError("the cache was rebuilt although nothing changed")

    monkeypatch.setattr(match_cache, "build_sequence_cache", no_build)
    again = load_or_build(reader, reader.sequences[0], SETTINGS, cache_dir)
    assert again.num_frames == 8
    # Other settings (or other frames) are another key, so another file.
    with pytest.raises(AssertionError, match="rebuilt"):
        load_or_build(reader, reader.sequences[0], MatchCacheSettings(max_offset=1, max_matches=120), cache_dir)
    with pytest.raises(AssertionError, match="rebuilt"):
        load_or_build(reader, reader.sequences[0][:6], SETTINGS, cache_dir)


def test_unknown_keypoints_are_refused():
    with pytest.raises(ValueError, match="unknown keypoints 'surf'"):
        MatchCacheSettings(keypoints="surf")


def test_samples_carry_matches_at_the_sample_resolution(street, street_cache):
    reader, cache, cache_dir = street_cache
    samples = FrameSamples(reader, (96, 320), (-1, 1), match_settings=SETTINGS, cache_dir=str(cache_dir))
    sample = samples[2]
    S, N = 2, SETTINGS.max_matches
    assert sample["match_x_target"].shape == (S, N, 2) and sample["match_weight"].shape == (S, N)
    assert sample["essential_T_context_target"].shape == (S, 4, 4) and sample["essential_status"].shape == (S,)
    pair = cache.pair(int(sample["frame_index"]), int(sample["frame_index"]) - 1)
    n = len(pair.x_target)
    assert float(sample["match_weight"][0].sum()) == n
    # Native 640x192 -> 320x96: pixel centres at integers, x' = (x + 0.5) / 2 - 0.5.
    np.testing.assert_allclose(sample["match_x_target"][0, :n].numpy(), (pair.x_target + 0.5) / 2 - 0.5, atol=1e-5)
    flipped = flip_sample({key: value.clone() if isinstance(value, torch.Tensor) else value
                           for key, value in sample.items()})
    np.testing.assert_allclose(flipped["match_x_target"][..., 0].numpy(),
                               319 - sample["match_x_target"][..., 0].numpy())


def test_context_frames_are_chosen_by_parallax(street_cache):
    reader, cache, cache_dir = street_cache
    by_index = FrameSamples(reader, (96, 320), (-1, 1), match_settings=SETTINGS, cache_dir=str(cache_dir))
    by_parallax = FrameSamples(reader, (96, 320), (-1, 1), match_settings=SETTINGS, cache_dir=str(cache_dir),
                               min_context_parallax_px=1e6)
    # Nothing reaches an impossible threshold: each side takes its frame with the most parallax, within max_offset.
    for index in range(len(by_parallax)):
        target = int(by_parallax[index]["frame_index"])
        offsets = by_parallax[index]["context_offsets"].tolist()
        assert offsets[0] < 0 < offsets[1] and max(abs(o) for o in offsets) <= SETTINGS.max_offset
        for offset in offsets:
            candidates = [o for o in range(1, SETTINGS.max_offset + 1) if 0 <= target + np.sign(offset) * o < 8]
            best = max(cache.pair_parallax_px(target, target + int(np.sign(offset)) * o) for o in candidates)
            assert cache.pair_parallax_px(target, target + offset) == best
    assert all(by_index[i]["context_offsets"].tolist() == [-1, 1] for i in range(len(by_index)))
    # A threshold every neighbour reaches keeps the nearest frames.
    low = FrameSamples(reader, (96, 320), (-1, 1), match_settings=SETTINGS, cache_dir=str(cache_dir),
                       min_context_parallax_px=1e-3)
    assert all(low[i]["context_offsets"].tolist() == [-1, 1] for i in range(len(low)))


def test_parallax_choice_needs_a_cache(street):
    with pytest.raises(ValueError, match="needs a match cache"):
        FrameSamples(SyntheticSuiteReader(street), (96, 320), (-1, 1), min_context_parallax_px=2.0)
