import numpy as np
import pytest
from PIL import Image

from training.synthetic import (
    SOFT_THRESHOLD,
    add_realistic_soiling,
    class_mask,
    draw_haze,
    make_frames,
    soft_region,
    synthetic_scene,
)


@pytest.mark.parametrize("coverage", [0.2, 0.5, 0.9])
def test_soft_regions_cover_the_stated_fraction_with_soft_boundaries(coverage):
    rng = np.random.default_rng(int(coverage * 10))
    alpha = soft_region(320, 180, rng, coverage)
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert (alpha >= SOFT_THRESHOLD).mean() == pytest.approx(coverage, abs=0.01)
    partial = ((alpha > 0.05) & (alpha < 0.95)).mean()
    assert partial > 0.02, "a soft ramp, not a hard edge"


def test_full_frame_haze_covers_everything_softly():
    alpha = soft_region(160, 90, np.random.default_rng(0), 1.0)
    assert (alpha >= SOFT_THRESHOLD).all() and len(np.unique(alpha)) > 100


def test_haze_lowers_contrast_where_it_lies_and_leaves_the_rest():
    rng = np.random.default_rng(3)
    scene = np.asarray(synthetic_scene(320, 180, rng), np.float32)
    hazy, alpha, kind = draw_haze(scene, rng, 0.5)
    assert kind in ("semi-transparent", "opaque")
    assert (alpha >= SOFT_THRESHOLD).mean() == pytest.approx(0.5, abs=0.01)
    covered, clear = alpha > 0.95, alpha < 0.01
    assert hazy[covered].std() < scene[covered].std(), "contrast drops under the haze"
    np.testing.assert_allclose(hazy[clear], scene[clear], atol=3)


def test_realistic_frames_carry_exact_soft_masks_and_the_class_mask_derived_from_them():
    frames = make_frames(12, 160, 96, dirty_fraction=0.75, seed=5, style="realistic")
    dirty = frames[:9]
    for frame in dirty:
        assert frame.soft.shape == (3, 96, 160) and frame.soft.dtype == np.float32
        assert frame.soft.min() >= 0 and frame.soft.max() <= 1
        np.testing.assert_array_equal(frame.mask, class_mask(frame.soft))
    assert all(f.is_dirty for f in dirty) and not any(f.is_dirty for f in frames[9:])
    hazy = [(f.mask > 0).mean() for f in dirty]
    assert max(hazy) >= 0.2, "large films, not only small blobs"


def test_class_mask_takes_the_most_severe_class_over_threshold():
    soft = np.zeros((3, 1, 4), np.float32)
    soft[0] = [[0.9, 0.9, 0.4, 0.0]]
    soft[2] = [[0.6, 0.2, 0.0, 0.0]]
    np.testing.assert_array_equal(class_mask(soft), [[3, 1, 0, 0]])


def test_soiling_can_be_drawn_over_given_clean_frames():
    background = Image.fromarray(np.full((50, 80, 3), 60, np.uint8))
    frames = make_frames(2, 80, 50, dirty_fraction=0.5, seed=1, style="realistic", backgrounds=[background])
    np.testing.assert_array_equal(np.asarray(frames[1].image), np.asarray(background))
    assert frames[0].is_dirty and not np.array_equal(np.asarray(frames[0].image), np.asarray(background))
    soiled = add_realistic_soiling(background, np.random.default_rng(2))
    assert soiled.soft is not None


def test_unknown_style_is_refused():
    with pytest.raises(ValueError, match="realistic"):
        make_frames(1, style="glitter")
