import numpy as np
import pytest

from models.segmenter import Segmenter, frame_coverage, tile_coverage
from training.segment import class_weights, mask_aware_cutmix, segmentation_metrics


def test_tile_coverage_counts_each_class_per_tile():
    mask = np.zeros((8, 8), np.uint8)
    mask[:4, :4] = 3  # top-left tile fully opaque
    mask[4:, 4:6] = 1  # half of the bottom-right tile transparent
    cover = tile_coverage(mask, (2, 2))
    assert cover.shape == (2, 2, 4)
    np.testing.assert_allclose(cover[0, 0], [0, 0, 0, 1])
    np.testing.assert_allclose(cover[1, 1], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(cover.sum(-1), 1)
    np.testing.assert_allclose(frame_coverage(mask), [0.625, 0.125, 0, 0.25])


def test_segmentation_metrics_by_hand():
    truth = np.zeros((4, 4), np.uint8)
    truth[:2, :2] = 3
    guess = np.zeros((4, 4), np.uint8)
    guess[:2, :3] = 3
    metrics = segmentation_metrics([truth], [guess], grid=(2, 2))
    assert metrics["iou"]["opaque"] == pytest.approx(4 / 6)
    assert metrics["iou"]["clear"] == pytest.approx(10 / 12)
    assert metrics["iou"]["transparent"] is None, "absent from both: not counted in the mean"
    assert metrics["miou"] == pytest.approx((4 / 6 + 10 / 12) / 2)
    assert metrics["pixel_accuracy"] == pytest.approx(14 / 16)
    assert metrics["dirt_iou_per_frame_mean"] == pytest.approx(4 / 6)
    assert metrics["tile_accuracy"] == 1.0  # the top-right tile is half opaque: a tie goes to clear, as in truth
    assert metrics["tile_coverage_mae"] == pytest.approx(np.mean(np.abs([0, 0, 0, 0, 0, 0.5, 0, 0, 0, 0, 0, 0])))


def test_mask_aware_cutmix_moves_image_and_mask_together_and_carries_soiling():
    rng = np.random.default_rng(0)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    masks = np.zeros((2, 32, 32), np.uint8)
    images[1, 10:20, 10:20] = 200
    masks[1, 10:20, 10:20] = 3
    mixed_images, mixed_masks = mask_aware_cutmix(images, masks, rng, probability=1.0)
    assert (mixed_masks[0] == 3).any(), "the box is centred on the other frame's soiling"
    np.testing.assert_array_equal(mixed_images[0][..., 0] == 200, mixed_masks[0] == 3)
    assert masks[0].max() == 0, "inputs are not modified"


def test_class_weights_favour_rare_classes():
    masks = [np.zeros((10, 10), np.uint8)]
    masks[0][:1, :5] = 3
    weights = class_weights(masks)
    assert weights[3] > weights[0] and weights[1] > weights[3]


def test_segmenter_saves_and_loads_identically(tmp_path):
    segmenter = Segmenter.create("Unet", "tu-test_resnet", None, (64, 32), device="cpu")
    config = segmenter.save(tmp_path)
    loaded = Segmenter.load(tmp_path, config, device="cpu")
    frames = [np.random.default_rng(1).integers(0, 255, (32, 64, 3), dtype=np.uint8)]
    np.testing.assert_array_equal(segmenter.predict_masks(frames), loaded.predict_masks(frames))
    assert segmenter.predict_masks(frames).shape == (1, 32, 64)


def test_tiles_split_and_stitch_back_exactly():
    from models.segmenter.tiles import split_tiles, stitch_tiles

    frame = np.arange(6 * 8 * 3).reshape(6, 8, 3)
    parts = split_tiles(frame, (4, 2))
    assert len(parts) == 8 and parts[0].shape == (3, 2, 3)
    np.testing.assert_array_equal(stitch_tiles(parts, (4, 2)), frame)


def test_training_on_tiles_predicts_whole_frames():
    from training.progress import JobProgress
    from training.segment import SegmenterConfig, train_segmenter
    from training.synthetic import make_frames

    frames = make_frames(6, 128, 64, dirty_fraction=0.5, seed=3)
    pixels = [np.asarray(f.image) for f in frames]
    masks = [f.mask for f in frames]
    config = SegmenterConfig(
        encoder="tu-test_resnet",
        encoder_weights=None,
        image_size=(128, 64),
        tiles=(2, 2),
        epochs=1,
        batch_size=4,
        device="cpu",
    )
    segmenter = train_segmenter(pixels, masks, np.arange(4), np.arange(4, 6), config, JobProgress())
    assert segmenter.tiles == (2, 2)
    assert segmenter.predict_masks(pixels[:2]).shape == (2, 64, 128)
    with pytest.raises(ValueError, match="multiples of 32"):
        Segmenter.create("Unet", "tu-test_resnet", None, (96, 64), device="cpu", tiles=(2, 1))
