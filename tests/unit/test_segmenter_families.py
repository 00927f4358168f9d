import numpy as np
import pytest
import torch

from models.segmenter import FAMILIES, MaskGate, Segmenter, SegmenterSpec, create_segmenter
from models.segmenter.stitching import window_starts
from models.zero_shot.loading import WeightsUnavailableError
from training.progress import JobProgress
from training.segment import SegmenterConfig, train_segmenter
from training.synthetic import make_frames

TINY_ENCODER = {"Mask2Former": "tiny", "DPT": "tu-test_vit"}
SIDE = {"PAN": 128}  # PAN's pyramid pooling needs at least 4x4 features at 1/32


def tiny_frames(count=4, width=64, height=64, seed=0):
    frames = make_frames(count, width, height, dirty_fraction=0.5, seed=seed)
    return [np.asarray(f.image) for f in frames], [f.mask for f in frames]


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_every_family_trains_one_step_predicts_and_round_trips(arch, tmp_path):
    side = SIDE.get(arch, 64)
    pixels, masks = tiny_frames(width=side, height=side)
    config = SegmenterConfig(
        arch=arch,
        encoder=TINY_ENCODER.get(arch, "tu-test_resnet"),
        encoder_weights=None,
        image_size=(side, side),
        epochs=1,
        batch_size=2,
        device="cpu",
    )
    segmenter = train_segmenter(pixels, masks, np.arange(2), np.arange(2, 4), config, JobProgress())
    predicted = segmenter.predict_masks(pixels)
    assert predicted.shape == (4, side, side) and predicted.dtype == np.uint8 and predicted.max() < 4
    coverage = segmenter.predict_coverage(pixels, (2, 2))
    assert coverage.shape == (4, 2, 2, 4)
    np.testing.assert_allclose(coverage.sum(-1), 1, atol=1e-5)
    loaded = Segmenter.load(tmp_path, segmenter.save(tmp_path), device="cpu")
    np.testing.assert_array_equal(loaded.predict_masks(pixels), predicted)
    assert loaded.arch == arch and loaded.predicts_tiles == (arch == "TileHead")


def test_tile_head_masks_are_one_class_per_tile_and_its_loss_is_tile_coverage_cross_entropy():
    segmenter = create_segmenter(SegmenterSpec("TileHead", "tu-test_resnet", None, (64, 64), device="cpu"))
    segmenter.model.tile_grid = (2, 2)
    pixels, _ = tiny_frames(2)
    masks = segmenter.predict_masks(pixels)
    for mask in masks:
        for tile in (mask[:32, :32], mask[:32, 32:], mask[32:, :32], mask[32:, 32:]):
            assert len(np.unique(tile)) == 1
    truth = np.zeros((64, 64), np.int64)
    truth[:16, :32] = 3  # top-left tile: half opaque
    x = segmenter.to_tensor(np.stack(pixels[:1]))
    segmenter.model.eval()
    pixel_loss = torch.nn.functional.cross_entropy(segmenter.model(x), torch.as_tensor(truth)[None])
    log_p = segmenter.model.tile_logits(x).log_softmax(1)[0]  # C x rows x cols
    coverage = torch.zeros(4, 2, 2)
    coverage[0] = 1
    coverage[:, 0, 0] = torch.tensor([0.5, 0, 0, 0.5])
    tile_loss = -(coverage * log_p).sum(0).mean()
    assert pixel_loss.item() == pytest.approx(tile_loss.item(), rel=1e-5)


def test_window_starts_cover_the_frame_back_to_back_or_overlapping():
    assert window_starts(256, 128, 0.0) == [0, 128]
    assert window_starts(256, 128, 0.5) == [0, 64, 128]
    assert window_starts(128, 128, 0.5) == [0]


def pointwise_segmenter(tiles=(2, 2), overlap=0.0, flips=()):
    """A per-pixel network (1x1 convolution): its output cannot depend on where windows fall."""
    torch.manual_seed(0)
    network = torch.nn.Conv2d(3, 4, 1)
    spec = SegmenterSpec("Unet", "none", None, (128, 64), tiles, overlap, flips, device="cpu")
    return Segmenter(network, spec, torch.device("cpu"))


@pytest.mark.parametrize(("overlap", "flips"), [(0.0, ()), (0.5, ()), (0.25, ("h", "v"))])
def test_constant_frame_gives_a_constant_mask_without_seams(overlap, flips):
    frame = np.full((64, 128, 3), (90, 140, 200), np.uint8)
    whole = pointwise_segmenter(tiles=(1, 1))
    tiled = pointwise_segmenter(overlap=overlap, flips=flips)
    probabilities = tiled.predict_probabilities([frame])[0]
    np.testing.assert_allclose(probabilities, probabilities[:, :1, :1] * np.ones_like(probabilities), atol=1e-6)
    np.testing.assert_allclose(probabilities, whole.predict_probabilities([frame])[0], atol=1e-6)
    assert len(np.unique(tiled.predict_masks([frame]))) == 1
    textured = np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        tiled.predict_probabilities([textured]), whole.predict_probabilities([textured]), atol=1e-5
    )


def test_blended_windows_smooth_the_seam_of_a_real_network():
    """A real convolutional network sees window borders (padding); blending removes the jump at the seam."""
    torch.manual_seed(0)
    spec = SegmenterSpec("FPN", "tu-test_resnet", None, (128, 64), (2, 1), device="cpu")
    hard = create_segmenter(spec)
    soft = hard.with_options(overlap=0.5)
    frame = np.full((64, 128, 3), 128, np.uint8)

    def seam_jump(segmenter):
        p = segmenter.predict_probabilities([frame])[0]
        return np.abs(p[:, :, 64] - p[:, :, 63]).max()

    assert seam_jump(soft) < seam_jump(hard) / 2


def test_flips_average_the_flipped_passes():
    frame = np.random.default_rng(1).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    plain = create_segmenter(SegmenterSpec("Unet", "tu-test_resnet", None, (128, 64), device="cpu"))
    flipped = plain.with_options(flips=("h",))
    expected = (plain.predict_probabilities([frame]) + plain.predict_probabilities([frame[:, ::-1]])[..., ::-1]) / 2
    np.testing.assert_allclose(flipped.predict_probabilities([frame]), expected, atol=1e-5)


def test_gate_drops_unsure_pixels_and_small_areas():
    probabilities = np.zeros((4, 10, 10), np.float32)
    probabilities[0] = 1.0
    probabilities[:, :2, :] = np.array([0.3, 0.0, 0.0, 0.7])[:, None, None]  # 20% of the frame, P(opaque) 0.7
    assert (MaskGate().apply(probabilities) == 3).sum() == 20
    assert (MaskGate(min_confidence=(0.0, 0.0, 0.8)).apply(probabilities) == 3).sum() == 0
    assert MaskGate(min_area=0.25).apply(probabilities).max() == 0
    assert (MaskGate(min_area=0.15, min_confidence=(0.9, 0.9, 0.6)).apply(probabilities) == 3).sum() == 20


def test_gate_and_options_travel_with_a_saved_version(tmp_path):
    spec = SegmenterSpec("Linknet", "tu-test_resnet", None, (128, 64), (2, 1), 0.5, ("h",), device="cpu")
    segmenter = create_segmenter(spec).with_options(gate=MaskGate(0.02, (0.5, 0.6, 0.7)))
    loaded = Segmenter.load(tmp_path, segmenter.save(tmp_path), device="cpu")
    assert loaded.gate == segmenter.gate and loaded.spec.overlap == 0.5 and loaded.spec.flips == ("h",)


def test_missing_pretrained_weights_name_the_setting_or_fall_back_where_allowed():
    spec = SegmenterSpec("Unet", "resnet18", "no-such-weights", (64, 64), device="cpu")
    with pytest.raises(WeightsUnavailableError, match="LENSGUARD_SEGMENTER_ENCODER_WEIGHTS=none") as error:
        create_segmenter(spec)
    assert "\n" not in str(error.value)
    checkpoint = SegmenterSpec("Mask2Former", "/nonexistent/mask2former", "pretrained", (64, 64), device="cpu")
    with pytest.raises(WeightsUnavailableError, match="LENSGUARD_SEGMENTER_ENCODER"):
        create_segmenter(checkpoint)
    with pytest.raises(WeightsUnavailableError, match="no pretrained weights"):
        create_segmenter(SegmenterSpec("Mask2Former", "tiny", "imagenet", (64, 64), device="cpu"))
    fallback = create_segmenter(
        SegmenterSpec("TileHead", "resnet18", "no-such-weights", (64, 64), allow_random_weights=True, device="cpu")
    )
    assert fallback.weights == "random"


def test_unknown_family_lists_the_known_ones():
    with pytest.raises(ValueError, match="Mask2Former"):
        create_segmenter(SegmenterSpec("NoSuchNet", "resnet18", None, (64, 64), device="cpu"))


def test_mask2former_trains_with_its_own_matching_loss():
    segmenter = create_segmenter(SegmenterSpec("Mask2Former", "tiny", None, (64, 64), device="cpu"))
    pixels, masks = tiny_frames(2)
    segmenter.model.train()
    loss = segmenter.model.training_loss(
        segmenter.to_tensor(np.stack(pixels)),
        torch.as_tensor(np.stack(masks), dtype=torch.long),
        torch.ones(4),
    )
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None for p in segmenter.model.parameters())


def test_dirt_metrics_by_hand():
    from training.segmenter_zoo import dirt_metrics, few_masks

    dirty_truth = np.zeros((4, 4), np.uint8)
    dirty_truth[:2] = 3  # half the frame
    dirty_guess = np.zeros((4, 4), np.uint8)
    dirty_guess[:1] = 3  # a quarter, inside the truth
    clean, flagged = np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8)
    flagged[0, 0] = 1  # 1/16 of a clean frame: a false alarm
    truths, guesses = [dirty_truth, clean, clean], [dirty_guess, flagged, clean]
    cover = np.zeros((3, 1, 1, 4), np.float32)
    cover[:, 0, 0, 0] = 1
    cover[0, 0, 0] = [0.5, 0, 0, 0.5]
    predicted = cover.copy()
    predicted[0, 0, 0] = [0.75, 0, 0, 0.25]
    metrics = dirt_metrics(truths, guesses, cover, predicted)
    assert metrics["dirt_iou_dirty_mean"] == pytest.approx(0.5)
    assert metrics["dirt_iou_pooled"] == pytest.approx(4 / 9)
    assert metrics["false_alarm_rate"] == pytest.approx(0.5)
    assert metrics["tile_coverage_mae"] == pytest.approx(0.25 / 3)
    assert metrics["coverage_auc"] == 1.0
    chosen = few_masks(np.arange(6), np.array([1, 1, 1, 0, 0, 1], bool), 2)
    assert len(chosen) == 4 and {3, 4} <= set(chosen.tolist())


def test_gate_chosen_on_validation_frames_removes_false_alarms_and_keeps_dirt():
    from training.mask_gate import choose_gate, frame_scores

    dirty_truth = np.zeros((20, 20), np.uint8)
    dirty_truth[:10] = 3
    dirty_p = np.zeros((4, 20, 20), np.float32)
    dirty_p[0] = 1
    dirty_p[:, :10] = np.array([0.1, 0, 0, 0.9])[:, None, None]  # sure dirt over the true half
    clean_p = np.zeros((4, 20, 20), np.float32)
    clean_p[0] = 1
    clean_p[:, :1, :4] = np.array([0.4, 0, 0, 0.6])[:, None, None]  # a small unsure false alarm
    probabilities, truths = [dirty_p, clean_p], [dirty_truth, np.zeros((20, 20), np.uint8)]
    assert frame_scores(MaskGate(), probabilities, truths) == pytest.approx(0.5)
    assert frame_scores(MaskGate(min_area=1.0), probabilities, truths) == pytest.approx(0.5), "blanking: no gain"
    gate = choose_gate(probabilities, truths, step=1)
    assert frame_scores(gate, probabilities, truths) == pytest.approx(1.0)
    assert gate.min_confidence[2] > 0.6 or gate.min_area > 0.01


def brush_annotation(mask: np.ndarray) -> list[dict]:
    from labelstudio.brush import mask_to_rle
    from models.labels import SOILING_CLASSES

    choice = "dirty" if mask.any() else "clean"
    result = [{"from_name": "soiling", "to_name": "image", "type": "choices", "value": {"choices": [choice]}}]
    for index in np.unique(mask[mask > 0]):
        result.append(
            {
                "from_name": "dirt_mask",
                "to_name": "image",
                "type": "brushlabels",
                "original_width": mask.shape[1],
                "original_height": mask.shape[0],
                "image_rotation": 0,
                "value": {"format": "rle", "rle": mask_to_rle(mask == index), "brushlabels": [SOILING_CLASSES[index]]},
            }
        )
    return result


@pytest.mark.parametrize("arch", list(FAMILIES))
def test_every_family_trains_through_the_job_and_serves_masks_with_tile_coverage(
    arch, file_server, tmp_path, soiling_config
):
    from fastapi.testclient import TestClient

    from backend.app import create_app
    from labelstudio.label_config import parse_soiling_config
    from serving.components import build_serving
    from settings import Settings
    from training.train_job import train_on_tasks

    side = SIDE.get(arch, 64)
    frames = make_frames(8, side, side, dirty_fraction=0.5, seed=2, style="realistic")
    tasks = []
    for i, frame in enumerate(frames):
        file_server.files[f"/data/upload/1/f{i}.jpg"] = frame.jpeg()
        tasks.append(
            {
                "id": i + 1,
                "data": {"image": f"/data/upload/1/f{i}.jpg", "group": f"g{i}"},
                "annotations": [{"id": i + 1, "result": brush_annotation(frame.mask)}],
            }
        )
    settings = Settings(
        _env_file=None,
        label_studio_url=file_server.url,
        clip_model="lensguard-tiny-ViT",
        clip_pretrained=None,
        allow_random_weights=True,
        device="cpu",
        data_dir=tmp_path,
        segmenter_arch=arch,
        segmenter_encoder=TINY_ENCODER.get(arch, "tu-test_resnet"),
        segmenter_encoder_weights=None,
        segmenter_image_size=(side, side),
        segmenter_epochs=1,
        segmenter_batch_size=4,
        segmenter_min_masked_frames=2,
        segmenter_predraw_band=0.5,  # every frame gets a mask, whatever the untrained classifier says
        segmenter_gate=True,
        auth=False,  # (the serving half: no credentials to send here)
        runtime="torch",
    )
    result = train_on_tasks(1, "segmenter", parse_soiling_config(soiling_config), tasks, settings, JobProgress())
    assert result["status"] == "promoted", result
    with TestClient(create_app(settings, build_serving(settings))) as client:
        body = client.post(
            "/predict", json={"tasks": tasks[:2], "label_config": soiling_config, "project": "1.5"}
        ).json()
    assert body["model_version"].endswith(result["version"])
    for prediction in body["results"]:
        tiles = prediction["meta"]["tile_coverage"]
        assert tiles["grid"] == [4, 4] and np.array(tiles["dirt"]).shape == (4, 4)
        [explanation] = [r for r in prediction["result"] if r["type"] == "textarea"]
        assert "dirt covers" in explanation["value"]["text"][0]
        for region in prediction["result"]:
            if region["type"] == "brushlabels":
                assert (region["original_width"], region["original_height"]) == (side, side)


def test_a_last_batch_of_one_frame_does_not_break_batch_norm_families():
    pixels, masks = tiny_frames(5)
    config = SegmenterConfig(
        arch="DeepLabV3Plus",
        encoder="tu-test_resnet",
        encoder_weights=None,
        image_size=(64, 64),
        epochs=1,
        batch_size=2,
        device="cpu",
    )  # 3 training frames in batches of 2: the last one alone
    segmenter = train_segmenter(pixels, masks, np.arange(3), np.arange(3, 5), config, JobProgress())
    assert segmenter.predict_masks(pixels[:1]).shape == (1, 64, 64)
