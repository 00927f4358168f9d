"""The segmenter kind through the training pipeline's steps (dataset -> fit -> predict -> figures -> version),
on synthetic frames and masks."""

from __future__ import annotations

import numpy as np

from settings import Settings
from training.progress import JobProgress
from training.segment import segmentation_metrics
from training.segmenter_trainer import MaskedFrames, SegmenterTrainer
from training.synthetic import make_frames


def test_the_segmenter_trainer_fits_predicts_scores_and_writes_a_version(tmp_path):
    settings = Settings(
        _env_file=None,
        segmenter_encoder="tu-test_resnet",
        segmenter_encoder_weights="none",
        segmenter_image_size="64x64",
        segmenter_epochs=2,
        segmenter_batch_size=4,
        device="cpu",
        data_dir=tmp_path,
    )
    frames = make_frames(12, 64, 64, dirty_fraction=0.5, seed=3)
    data = MaskedFrames(
        [np.asarray(f.image) for f in frames],
        [f.mask for f in frames],
        [{"id": i} for i in range(12)],
        [f"g{i}" for i in range(12)],
    )
    trainer = SegmenterTrainer(1, settings)
    train, val, evaluation = np.arange(8), np.arange(8, 10), np.arange(10, 12)
    model = trainer.calibrate(trainer.fit(data, train, val, JobProgress()), data, val)
    predicted = {"segmenter": trainer.predict(model, data, evaluation)}
    assert [m.shape for m in predicted["segmenter"]] == [(64, 64), (64, 64)]
    metrics = {"segmenter": trainer.metrics(data, evaluation, predicted["segmenter"])}
    assert trainer.score(data, evaluation, predicted["segmenter"]) == metrics["segmenter"]["miou"]
    expected = segmentation_metrics([data.masks[i] for i in evaluation], predicted["segmenter"], (4, 4))["miou"]
    assert metrics["segmenter"]["miou"] == expected
    config = trainer.write(model, tmp_path, data, evaluation, predicted, metrics)
    assert config["arch"] == settings.segmenter_arch and (tmp_path / "report.png").is_file()
