"""Training through the frame cache and a DataLoader: the training set holds file paths (not pixels), worker
processes read and augment the batches, and the fine-tune and the segmenter train from cached frames."""

from __future__ import annotations

import os
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from labelstudio.images import ImageFetcher
from labelstudio.label_config import parse_soiling_config
from models.frame_cache import CachedArrays, FrameCache
from models.pipeline import SoilingPipeline
from settings import Settings
from tests.unit.test_vlm_pseudo_labels import annotated
from training.dataset import EmbeddingRows, build_training_set
from training.finetune import FinetuneConfig, finetune
from training.loader import EpochBatches, Joined, Picked, make_loader, stop_workers
from training.progress import JobProgress
from training.segment import CutmixCollate, SegmenterConfig, train_segmenter
from training.segmenter_trainer import MaskedFrames, SegmenterTrainer
from training.synthetic import make_frames


class WhoReads(Dataset):
    """Each item says which process read it."""

    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> tuple[int, int]:
        return index, os.getpid()


def test_batches_are_read_by_worker_processes_kept_across_epochs():
    batches = EpochBatches(range(12), 4, seed=0)
    loader = make_loader(WhoReads(), batches, workers=2, seed=0)
    try:
        epochs = [[(idx.tolist(), pid.tolist()) for idx, pid in loader] for _ in range(2)]
    finally:
        stop_workers(loader)
    readers = [{p for _, pids in epoch for p in pids} for epoch in epochs]
    assert os.getpid() not in readers[0] | readers[1] and len(readers[0]) == 2
    assert readers[0] == readers[1], "persistent workers: the same two processes in every epoch"
    orders = [[i for idx, _ in epoch for i in idx] for epoch in epochs]
    assert sorted(orders[0]) == sorted(orders[1]) == list(range(12)) and orders[0] != orders[1]


def test_epoch_batches_repeat_with_the_seed_and_leave_out_a_single_frame_tail():
    first = [list(EpochBatches(range(9), 4, seed=3)) for _ in range(2)]
    assert first[0] == first[1]
    tails = EpochBatches(range(9), 4, seed=3, min_batch=2)
    batches = list(tails)
    assert [len(b) for b in batches] == [4, 4] and len(tails) == 2
    assert [len(b) for b in EpochBatches([5], 4, seed=0, min_batch=2)] == [1], "a lone frame still trains"


def test_views_pick_and_join_frames_without_reading_them(tmp_path):
    cache = FrameCache(tmp_path)
    frames = CachedArrays(
        [cache.put("frame", (2, 2), f"{i:02d}" * 32, np.full((2, 2, 3), i, np.uint8)) for i in range(4)]
    )
    picked = Picked(frames, np.array([3, 1]))
    assert len(picked) == 2 and picked[0][0, 0, 0] == 3 and [f[0, 0, 0] for f in picked[:]] == [3, 1]
    joined = Joined(frames, [np.full((2, 2, 3), 9, np.uint8)])
    assert len(joined) == 5 and joined[4][0, 0, 0] == 9 and joined[-1][0, 0, 0] == 9
    assert [f[0, 0, 0] for f in joined[2:]] == [2, 3, 9]


def test_cutmix_in_the_collate_moves_frame_and_mask_together():
    images = np.zeros((4, 32, 32, 3), np.uint8)
    masks = np.zeros((4, 32, 32), np.uint8)
    images[0, 8:24, 8:24], masks[0, 8:24, 8:24] = 200, 3  # only frame 0 is soiled
    x, y = CutmixCollate(1.0, seed=0)(list(zip(images, masks, strict=True)))
    assert x.dtype == torch.uint8 and y.dtype == torch.int64
    pasted = (y[1:] == 3).numpy()
    assert pasted.any(), "soiling travels to other frames"
    assert (x[1:].numpy()[pasted] == 200).all(), "where the mask came, the pixels came"


def test_a_training_set_keeps_its_frames_in_the_cache_and_the_finetune_trains_from_it_with_workers(
    file_server, tiny_clip, soiling_config, tmp_path
):
    frames = make_frames(12, 160, 90, dirty_fraction=0.5, seed=5)
    for i, frame in enumerate(frames):
        file_server.files[f"/data/upload/1/f{i}.jpg"] = frame.jpeg()
    tasks = [annotated(i, "dirty" if f.is_dirty else "clean") for i, f in enumerate(frames)]
    cache = FrameCache(tmp_path / "frames")

    def build():
        return build_training_set(
            tasks,
            parse_soiling_config(soiling_config),
            SoilingPipeline(tiny_clip, None),
            ImageFetcher(file_server.url, None),
            JobProgress(),
            pixel_size=32,
            frame_cache=cache,
        )

    data = build()
    assert isinstance(data.pixels, CachedArrays) and len(data.pixels) == 12
    assert {p.parent.parent for p in data.pixels.paths} == {tmp_path / "frames" / "frame-32x32"}
    assert data.pixels[0].shape == (32, 32, 3) and data.embeddings.shape[0] == 12
    again = build()
    assert again.pixels.paths == data.pixels.paths and len(list(cache.files())) == 12, "stored once"

    config = FinetuneConfig(
        arch="test_efficientnet", pretrained=False, image_size=32, epochs=2, batch_size=4, device="cpu"
    )
    assert config.loader_workers == 2
    lines: list[str] = []
    progress = JobProgress(echo=lines.append)
    labels = data.labels
    train, val = np.arange(8), np.arange(8, 12)
    model = finetune(data.pixels, labels, data.weights, train, val, replace(config, mixup=0.4), progress)
    assert model.predict_proba(Picked(data.pixels, val)).shape == (4,)
    assert any("2/2" in line and "val_roc_auc=" in line for line in lines), "both epochs ran"


def test_the_segmenter_trains_on_cached_tiles_with_workers_and_synthetic_frames(tmp_path):
    cache = FrameCache(tmp_path)
    frames = make_frames(8, 64, 64, dirty_fraction=0.5, seed=2)
    pixels = CachedArrays(
        [cache.put("frame", (64, 64), array_hash_of(i), np.asarray(f.image)) for i, f in enumerate(frames)]
    )
    masks = CachedArrays([cache.mask(f.mask, (64, 64)) for f in frames])
    settings = Settings(
        _env_file=None,
        segmenter_encoder="tu-test_resnet",
        segmenter_encoder_weights="none",
        segmenter_image_size="64x64",
        segmenter_tiles="2x1",
        segmenter_synthetic_frames=4,
        segmenter_epochs=2,
        segmenter_batch_size=4,
        device="cpu",
        data_dir=tmp_path / "data",
    )
    trainer = SegmenterTrainer(1, settings)
    assert trainer.config.loader_workers == 2
    data = MaskedFrames(pixels, masks, [{"id": i} for i in range(8)], [f"g{i}" for i in range(8)])
    assert data.labels.tolist() == [int(f.mask.any()) for f in frames]
    model = trainer.fit(data, np.arange(6), np.arange(6, 8), JobProgress())
    assert data.summary["train"] == 6 + 4
    predicted = trainer.predict(model, data, np.arange(6, 8))
    assert [m.shape for m in predicted] == [(64, 64), (64, 64)]


def test_train_segmenter_reads_the_same_with_and_without_workers():
    frames = make_frames(6, 64, 64, dirty_fraction=0.5, seed=4)
    pixels, masks = [np.asarray(f.image) for f in frames], [f.mask for f in frames]
    config = SegmenterConfig(
        encoder="tu-test_resnet", encoder_weights=None, image_size=(64, 64), epochs=1, batch_size=2, device="cpu"
    )
    for workers in (0, 2):
        lines: list[str] = []
        segmenter = train_segmenter(
            pixels,
            masks,
            np.arange(4),
            np.arange(4, 6),
            replace(config, loader_workers=workers),
            JobProgress(lines.append),
        )
        assert any("1/1" in line for line in lines) and segmenter.predict_masks(pixels[:1]).shape == (1, 64, 64)


def array_hash_of(i: int) -> str:
    return f"{i:02d}" * 32


def test_embeddings_are_written_into_a_memory_map_and_pixels_need_a_frame_cache(file_server, tiny_clip, soiling_config):
    rows = EmbeddingRows(capacity=5)
    for i in range(3):
        rows.append(np.full(4, i, np.float32))
    matrix = rows.matrix()
    assert isinstance(matrix, np.memmap) and matrix.shape == (3, 4) and matrix[:, 0].tolist() == [0, 1, 2]
    assert EmbeddingRows(0).matrix().shape == (0, 0)
    with pytest.raises(ValueError, match="frame cache"):
        build_training_set(
            [annotated(0, "clean")],
            parse_soiling_config(soiling_config),
            SoilingPipeline(tiny_clip, None),
            ImageFetcher(file_server.url, None),
            JobProgress(),
            pixel_size=32,
        )
