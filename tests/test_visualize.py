import numpy as np
import pytest
import torch

from priordepth_core.visualize import colorize_depth, draw_matches, image_grid, to_uint8_image


def test_colorize_depth_marks_invalid_and_orders_by_nearness():
    depth = np.array([[1.0, 2.0], [0.0, np.nan]], dtype=np.float32)
    rgb = colorize_depth(depth, invalid_color=(1, 2, 3))
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    assert rgb[1, 0].tolist() == [1, 2, 3] and rgb[1, 1].tolist() == [1, 2, 3]
    # magma is brighter for larger values: nearer (larger inverse depth) must be brighter.
    assert rgb[0, 0].astype(int).sum() > rgb[0, 1].astype(int).sum()
    with pytest.raises(ValueError, match="depth must be"):
        colorize_depth(np.zeros((2, 2, 2)))


def test_to_uint8_and_grid_and_matches():
    image = to_uint8_image(torch.ones(3, 4, 5) * 0.5)
    assert image.shape == (4, 5, 3) and image[0, 0, 0] == 128
    grid = image_grid([[image, image], [image]], pad=1)
    assert grid.shape == (9, 11, 3)
    canvas = draw_matches(image, image, np.array([[1.0, 1.0]]), np.array([[2.0, 2.0]]), np.array([False]))
    assert canvas.shape == (4, 10, 3)
    assert (canvas == [230, 30, 30]).all(-1).any()  # the outlier line is red
    with pytest.raises(ValueError, match="equal height"):
        draw_matches(image, image[:2], np.zeros((0, 2)), np.zeros((0, 2)))
