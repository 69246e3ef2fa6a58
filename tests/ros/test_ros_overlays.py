"""Node visualisations: colourised inverse depth (near bright, invalid black) and keypoint tracks (inliers green)."""

from __future__ import annotations

import numpy as np

from priordepth_core.visualize import colorize_depth as reference_colorize
from priordepth_ros.overlays import INLIER_RGB, OUTLIER_RGB, colorize_depth, draw_match_tracks


def test_colorized_depth_matches_the_core_picture_and_blacks_out_invalid_pixels():
    depth = np.where(np.arange(64) < 32, 2.0, 10.0) * np.ones((48, 1))  # half near, half far: a robust percentile
    depth = (depth * np.random.default_rng(0).uniform(1.0, 1.2, (48, 64))).astype(np.float32)
    depth[5, 7], depth[6, 8], depth[7, 9] = np.nan, 0.0, -1.0
    rgb = colorize_depth(depth)
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert not rgb[5, 7].any() and not rgb[6, 8].any() and not rgb[7, 9].any()
    # Same colour map and scale as priordepth_core.visualize (the percentile there is over all pixels, here over a
    # 1/16 subsample, and the table has 256 entries): within a few levels.
    difference = np.abs(rgb.astype(int) - reference_colorize(depth).astype(int))
    assert np.median(difference) <= 2 and np.percentile(difference, 99) <= 8
    near, far = colorize_depth(np.array([[1.0, 40.0]], dtype=np.float32))[0]
    assert near.sum() > far.sum()  # magma: near (large inverse depth) is bright


def test_all_invalid_depth_gives_a_black_image():
    assert not colorize_depth(np.full((4, 5), np.nan, dtype=np.float32)).any()


def test_every_kind_of_invalid_depth_gets_the_invalid_colour_whatever_opencv_does_with_nan():
    depth = np.full((8, 8), 5.0, dtype=np.float32)
    invalid = [(0, 0, np.nan), (1, 1, np.inf), (2, 2, -np.inf), (3, 3, 0.0), (4, 4, -2.0)]
    for y, x, value in invalid:
        depth[y, x] = value
    rgb = colorize_depth(depth, invalid_rgb=(10, 200, 30))
    for y, x, _ in invalid:
        assert tuple(rgb[y, x]) == (10, 200, 30)
    assert tuple(rgb[7, 7]) != (10, 200, 30) and rgb[7, 7].any()  # valid depth keeps its colour


def test_match_tracks_are_drawn_from_previous_to_current_positions():
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    previous = np.array([[10.0, 10.0], [10.0, 30.0]], dtype=np.float32)
    current = np.array([[30.0, 10.0], [30.0, 30.0], [50.0, 20.0]], dtype=np.float32)
    matches = np.array([[0, 0], [1, 1]])
    canvas = draw_match_tracks(image, previous, current, matches, np.array([True, False]))
    assert not image.any()  # the input is left alone
    assert (canvas[10, 20] > 0).any() and canvas[10, 20, 1] > canvas[10, 20, 0]  # inlier line: green
    assert canvas[30, 20, 0] > canvas[30, 20, 1]  # outlier line: red
    assert INLIER_RGB[1] > INLIER_RGB[0] and OUTLIER_RGB[0] > OUTLIER_RGB[1]
    assert canvas[20, 50].any()  # an unmatched keypoint is still marked
    assert not canvas[20, 5].any()
    empty = draw_match_tracks(image, np.zeros((0, 2)), np.zeros((0, 2)), np.zeros((0, 2), int), np.zeros(0, bool))
    assert not empty.any()
