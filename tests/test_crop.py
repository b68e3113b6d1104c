"""The crop policy (fkdbench.faces.crop): detector box <-> crop, the tracking rule, the
fast cut against Pillow's."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fkdbench.data import landmarks
from fkdbench.faces import crop
from fkdbench.faces.crop import (
    BOX_TO_CROP,
    box_for_training_crop,
    crop_from_box,
    crop_from_keypoints,
    crop_image,
    cut,
    reference_shape,
    to_crop,
    to_original,
    whole_image_crop,
)
from fkdbench.faces.detect import FaceBox


def test_the_readers_use_the_same_functions() -> None:
    assert landmarks.crop_box is crop.crop_box and landmarks.crop_image is crop.crop_image
    assert landmarks.to_crop is crop.to_crop and landmarks.to_original is crop.to_original


@pytest.mark.parametrize("detector", sorted(BOX_TO_CROP))
@pytest.mark.parametrize("size", [96, 128])
def test_box_for_training_crop_inverts_crop_from_box(detector: str, size: int) -> None:
    box = box_for_training_crop(detector, size)
    # The box a detector gives for a training crop frames back the whole crop.
    np.testing.assert_allclose(crop_from_box(box, detector, size), [-0.5, -0.5, size, 1.0])
    # And any box: crop_from_box of a moved, scaled box moves and scales with it.
    found = FaceBox(100.0, 50.0, 180.0, 130.0, 3.0)
    first = crop_from_box(found, detector, size)
    bigger = crop_from_box(FaceBox(100.0, 50.0, 260.0, 210.0, 3.0), detector, size)
    assert bigger[2] == pytest.approx(2 * first[2])
    assert first[3] == pytest.approx(size / first[2])


def test_crop_from_box_frames_like_the_mapping_says() -> None:
    scale, dx, dy = BOX_TO_CROP["haar"]
    result = crop_from_box(FaceBox(0.0, 0.0, 100.0, 100.0, 1.0), "haar", 96)
    np.testing.assert_allclose(
        result[:3], [50 + 100 * dx - 50 * scale, 50 + 100 * dy - 50 * scale, 100 * scale]
    )
    with pytest.raises(ValueError, match="no box-to-crop mapping for detector 'nope'"):
        crop_from_box(FaceBox(0.0, 0.0, 1.0, 1.0, 1.0), "nope", 96)


@pytest.mark.parametrize("scheme", ["kaggle15", "ibug68", "wflw98"])
def test_crop_from_keypoints_on_the_reference_gives_the_training_crop(scheme: str) -> None:
    reference = reference_shape(scheme)
    # The reference shape itself, in a 96-pixel crop: the crop is that crop.
    np.testing.assert_allclose(crop_from_keypoints(reference, scheme, 96), [-0.5, -0.5, 96, 1])
    # The same shape at 2.5x somewhere in a photo, some points missing: that crop there.
    placed = np.array([300.0, 120.0, 240.0, 96 / 240])
    points = to_original(reference, np.array([300.0, 120.0, 96.0, 1.0]) * [1, 1, 2.5, 0.4])
    points[::3] = np.nan
    np.testing.assert_allclose(crop_from_keypoints(points, scheme, 96), placed, atol=1e-9)
    np.testing.assert_allclose(to_crop(points, placed)[1], reference[1], atol=1e-9)


def test_crop_from_keypoints_refuses_what_fits_nothing() -> None:
    points = np.full((15, 2), np.nan)
    points[0] = (10.0, 10.0)
    with pytest.raises(ValueError, match="under two keypoints"):
        crop_from_keypoints(points, "kaggle15", 96)
    with pytest.raises(ValueError, match="scheme kaggle15 has 15 points"):
        crop_from_keypoints(np.zeros((4, 2)), "kaggle15", 96)


def _ramp(width: int, height: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    return np.clip(40 + 0.3 * xs + 0.2 * ys, 0, 255).astype(np.uint8)


@pytest.mark.parametrize(
    "box",
    [
        (10.3, 20.7, 57.0),  # enlarging 1.7x
        (30.2, 15.6, 140.0),  # shrinking 1.46x (no block averaging)
        (5.5, 8.25, 290.0),  # shrinking 3x (3x3 blocks first)
        (-40.0, -30.0, 200.0),  # past the picture's edge: zeros there
    ],
)
def test_cut_agrees_with_crop_image(box: tuple[float, float, float]) -> None:
    gray = _ramp(400, 320)
    x0, y0, side = box
    chosen = np.array([x0, y0, side, 96 / side])
    fast = cut(gray, chosen, 96).astype(np.float64)
    slow = np.asarray(crop_image(Image.fromarray(gray), chosen, 96), dtype=np.float64)
    assert fast.shape == (96, 96)
    # Crop pixels two or more from the picture's edge (there the two filters, of other
    # widths, blend the picture with the zeros beyond it differently).
    centres = to_original(np.stack(np.meshgrid(np.arange(96.0), np.arange(96.0)), -1), chosen)
    reach = 2 * side / 96
    inside = np.all((centres >= reach) & (centres <= np.array([399, 319]) - reach), axis=-1)
    difference = np.abs(fast - slow)[inside]
    assert inside.sum() > 1000
    assert np.median(difference) <= 1.0 and difference.max() <= 2.0
    # In position: the ramp's value at a crop pixel is that of the picture point it maps to.
    ((x, y),) = to_original(np.array([[48.0, 40.0]]), chosen)
    if 0 <= x < 399 and 0 <= y < 319:
        assert fast[40, 48] == pytest.approx(40 + 0.3 * x + 0.2 * y, abs=1.0)


def test_cut_outside_the_picture_is_black() -> None:
    far = np.array([1000.0, 1000.0, 50.0, 96 / 50])
    assert not cut(_ramp(100, 80), far, 96).any()
    assert not cut(_ramp(100, 80), np.array([1000.0, 1000.0, 500.0, 96 / 500]), 96).any()


def test_whole_image_crop_pads_to_a_centred_square() -> None:
    np.testing.assert_allclose(whole_image_crop(120, 90, 96), [-0.5, -15.5, 120, 0.8])
