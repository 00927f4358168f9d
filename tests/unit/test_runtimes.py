"""Inference runtimes with tiny random towers: choice, export caching, fidelity floors, calibration, batching."""

from __future__ import annotations

import copy
import io
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from models.runtimes import (
    DynamicBatcher,
    Fidelity,
    FidelityError,
    FidelityFloors,
    OpenedRuntime,
    RuntimeUnavailableError,
    create_encoder,
    list_runtimes,
    open_runtime,
)
from models.runtimes.batching import BatcherClosedError
from models.runtimes.calibration import BATCH_SIZES, calibrated_batch_size
from models.runtimes.fidelity import fidelity_frames, measure_fidelity
from models.runtimes.records import read_record
from models.runtimes.selection import CHOICE_FILE
from models.zero_shot import ZeroShotConfig, ZeroShotScorer, create_zero_shot_scorer
from models.zero_shot.runtime import clip_encoder_source
from tests.conftest import TINY_CLIP


def _source(scorer: ZeroShotScorer, root):
    return clip_encoder_source(scorer.clip, root)


def _frames(scorer: ZeroShotScorer, count: int = 6) -> np.ndarray:
    return fidelity_frames(count, scorer.clip.image_size, seed=7)


# runtime choice -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("runtime", list_runtimes())
def test_each_runtime_reproduces_fp32_torch(tiny_clip, tmp_path, runtime):
    source = _source(tiny_clip, tmp_path)
    try:
        encoder = create_encoder(runtime, source)
    except RuntimeUnavailableError as exc:
        pytest.skip(f"{runtime} cannot run on this machine: {exc}")
    frames = _frames(tiny_clip)
    expected = tiny_clip.encode_images(list(frames))  # the default scorer runs fp32 torch
    actual = encoder.encode(frames)
    assert encoder.runtime == runtime
    assert actual.shape == expected.shape and actual.dtype == np.float32
    fidelity = measure_fidelity(expected, actual)
    assert fidelity.mean_cosine > 0.99, fidelity.describe()


def test_unknown_runtime_and_cpu_runtimes_on_a_gpu_are_refused(tiny_clip, tmp_path):
    with pytest.raises(ValueError, match="unknown runtime 'tensorrt'"):
        create_encoder("tensorrt", _source(tiny_clip, tmp_path))
    gpu_source = _source(tiny_clip, tmp_path)
    gpu_source.device = torch.device("cuda")
    with pytest.raises(RuntimeUnavailableError, match="onnx runs on the CPU"):
        create_encoder("onnx", gpu_source)


def test_exported_runtimes_need_a_cache_directory(tiny_clip):
    with pytest.raises(RuntimeUnavailableError, match="cache directory"):
        create_encoder("onnx", _source(tiny_clip, None))


def test_auto_picks_a_passing_runtime_and_records_it(tiny_clip, tmp_path):
    source = _source(tiny_clip, tmp_path)
    opened = open_runtime("auto", source, verdicts=tiny_clip.verdicts, candidates=("torch", "onnx"))
    assert opened.runtime in ("torch", "onnx")
    assert set(opened.candidates) == {"torch", "onnx"}
    assert all("frames/s" in text for text in opened.candidates.values())
    records = (tmp_path / CHOICE_FILE).read_text()
    assert opened.runtime in records
    again = open_runtime("auto", _source(tiny_clip, tmp_path), candidates=("torch", "onnx"))
    assert again.runtime == opened.runtime and again.candidates == opened.candidates


def test_auto_leaves_out_runtimes_below_the_floors(tiny_clip, tmp_path):
    floors = FidelityFloors(mean_cosine=1.0001, verdict_agreement=1.0)  # nothing but the reference meets this
    opened = open_runtime("auto", _source(tiny_clip, tmp_path), floors, candidates=("torch", "onnx"))
    assert opened.runtime == "torch"  # whichever timed faster: onnx, when checked, is refused
    with pytest.raises(RuntimeUnavailableError, match="left out: runtime 'onnx' refused"):
        open_runtime("auto", _source(tiny_clip, tmp_path), floors, candidates=("onnx",))


# export caching -------------------------------------------------------------------------------------------
def test_export_is_cached_by_weights_digest_and_invalidated_when_they_change(tiny_clip, tmp_path):
    source = _source(tiny_clip, tmp_path)
    first = create_encoder("onnx", source)
    exported = first.path
    mtime = exported.stat().st_mtime_ns
    second = create_encoder("onnx", source)
    assert second.path == exported and exported.stat().st_mtime_ns == mtime
    assert source.cache.builds == 1 and source.cache.hits == 1

    changed = _source(tiny_clip, tmp_path)
    changed.tower = copy.deepcopy(changed.tower)
    with torch.no_grad():
        changed.tower.encoder.proj.add_(0.01)
    assert changed.digest != source.digest
    rebuilt = create_encoder("onnx", changed)
    assert rebuilt.path != exported
    assert not exported.exists(), "an export must not outlive the weights it came from"
    assert not list(tmp_path.glob("*.tmp")), "no half-written files are left behind"
    frames = _frames(tiny_clip)
    reference = create_encoder("torch", changed).encode(frames)
    assert measure_fidelity(reference, rebuilt.encode(frames)).min_cosine > 0.999


def test_int8_export_is_cached_next_to_fp32(tiny_clip, tmp_path):
    source = _source(tiny_clip, tmp_path)
    encoder = create_encoder("onnx-int8", source)
    assert encoder.path.name.endswith("int8.onnx")
    assert (tmp_path / encoder.path.name.replace("int8", "fp32")).exists()


# fidelity ---------------------------------------------------------------------------------------------------
def test_runtime_below_the_floors_is_refused_with_a_clear_message(tiny_clip, tmp_path):
    floors = FidelityFloors(mean_cosine=1.0001, verdict_agreement=0.99)
    with pytest.raises(FidelityError) as refused:
        open_runtime("onnx", _source(tiny_clip, tmp_path), floors, tiny_clip.verdicts)
    message = str(refused.value)
    assert "runtime 'onnx' refused" in message and "mean cosine 1.0001" in message
    assert "LENSGUARD_RUNTIME" in message


def test_fidelity_reports_cosine_and_verdict_agreement(tiny_clip, tmp_path):
    opened = open_runtime("onnx", _source(tiny_clip, tmp_path), verdicts=tiny_clip.verdicts, fidelity_count=20)
    fidelity = opened.fidelity
    assert fidelity.frames == 20
    assert fidelity.min_cosine <= fidelity.mean_cosine <= 1.0 + 1e-6
    assert fidelity.verdict_agreement == 1.0
    assert opened.to_json()["fidelity"]["mean_cosine"] == fidelity.mean_cosine


def test_measure_fidelity_counts_disagreeing_verdicts():
    reference = np.eye(4, dtype=np.float32)
    candidate = reference.copy()
    candidate[0] = [0.6, 0.8, 0, 0]
    fidelity = measure_fidelity(reference, candidate, verdicts=lambda e: e[:, 0] > 0.7)
    assert fidelity.verdict_agreement == 0.75
    assert fidelity.min_cosine == pytest.approx(0.6)
    assert not fidelity.passes(FidelityFloors())


def test_only_interchangeable_runtimes_share_the_fp32_cache_identity(tiny_clip):
    fp32_like = Fidelity(100, 0.99999, 0.9999, 1.0)
    int8_like = Fidelity(100, 0.998, 0.996, 1.0)
    encoder = tiny_clip.runtime.encoder
    same = ZeroShotScorer(tiny_clip.clip, tiny_clip.prompt_set, 4, OpenedRuntime(encoder, "onnx", fp32_like))
    other = ZeroShotScorer(tiny_clip.clip, tiny_clip.prompt_set, 4, OpenedRuntime(encoder, "onnx", int8_like))
    assert same.encoder_identity == tiny_clip.encoder_identity
    assert other.encoder_identity == f"{tiny_clip.encoder_identity}/{encoder.runtime}"
    assert same.version == tiny_clip.version
    assert other.version == f"{tiny_clip.version}-{encoder.runtime}"


def test_scorer_factory_serves_the_configured_runtime(tmp_path):
    config = ZeroShotConfig(
        model_name=TINY_CLIP, pretrained=None, device="cpu", runtime="onnx", runtime_dir=str(tmp_path)
    )
    scorer = create_zero_shot_scorer(config)
    assert scorer.runtime.runtime == "onnx" and scorer.runtime.fidelity.verdict_agreement == 1.0
    assert scorer.batch_size in BATCH_SIZES
    frames = list(_frames(scorer, 3))
    reference = ZeroShotScorer(scorer.clip, scorer.prompt_set)
    assert measure_fidelity(reference.encode_images(frames), scorer.encode_images(frames)).min_cosine > 0.999


# calibration ------------------------------------------------------------------------------------------------
def test_batch_size_is_calibrated_once_per_machine_and_recorded(tiny_clip, tmp_path):
    encoder = tiny_clip.runtime.encoder
    frame = _frames(tiny_clip, 1)[0]
    calls: list[int] = []

    def encode(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return encoder.encode(batch)

    first = calibrated_batch_size(tmp_path, "machine-a", encode, frame, sizes=(1, 4, 8))
    assert not first.cached and set(first.frames_per_s) == {1, 4, 8}
    assert first.batch_size in (1, 4, 8)
    assert sorted(set(calls)) == [1, 4, 8]
    calls.clear()
    again = calibrated_batch_size(tmp_path, "machine-a", encode, frame, sizes=(1, 4, 8))
    assert again.cached and again.batch_size == first.batch_size and not calls
    assert read_record(tmp_path / "calibration.json", "machine-a")["batch_size"] == first.batch_size
    other = calibrated_batch_size(tmp_path, "machine-b", encode, frame, sizes=(1, 4, 8))
    assert not other.cached


def test_calibration_stops_within_its_time_budget(tiny_clip, tmp_path):
    frame = _frames(tiny_clip, 1)[0]
    calibration = calibrated_batch_size(tmp_path, "k", tiny_clip.runtime.encoder.encode, frame, budget_s=0.0)
    assert list(calibration.frames_per_s) == [1] and calibration.batch_size == 1


# dynamic batching -----------------------------------------------------------------------------------------
def test_concurrent_callers_share_batches_and_get_their_own_results_in_order():
    batches: list[int] = []

    def double(items: list[int]) -> list[int]:
        batches.append(len(items))
        time.sleep(0.02)  # while one batch runs, the others queue up and go together
        return [2 * item for item in items]

    batcher = DynamicBatcher(double, max_batch=16, max_wait_s=0.01)
    callers = 24
    start = threading.Barrier(callers)
    results: dict[int, list[int]] = {}

    def call(caller: int) -> None:
        items = [caller * 1000 + k for k in range(caller % 5 + 1)]
        start.wait()
        results[caller] = batcher.submit(items)

    threads = [threading.Thread(target=call, args=(c,)) for c in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    batcher.close()
    assert results == {c: [2 * (c * 1000 + k) for k in range(c % 5 + 1)] for c in range(callers)}
    assert max(batches) <= 16
    assert len(batches) < callers, f"requests were not batched together: {batches}"
    assert batcher.stats.requests == callers and batcher.stats.items == sum(c % 5 + 1 for c in range(callers))


def test_a_request_larger_than_a_batch_is_split_and_reassembled():
    seen: list[list[int]] = []

    def identity(items: list[int]) -> list[int]:
        seen.append(list(items))
        return list(items)

    batcher = DynamicBatcher(identity, max_batch=4, max_wait_s=0.0)
    assert batcher.submit(list(range(10))) == list(range(10))
    assert [len(batch) for batch in seen] == [4, 4, 2]
    assert batcher.submit([]) == []
    batcher.close()
    with pytest.raises(BatcherClosedError):
        batcher.submit([1])


def test_a_failing_batch_raises_in_its_callers_and_the_loop_keeps_serving():
    def picky(items: list[int]) -> list[int]:
        if 13 in items:
            raise ValueError("unlucky")
        return items

    batcher = DynamicBatcher(picky, max_batch=8, max_wait_s=0.0)
    with pytest.raises(ValueError, match="unlucky"):
        batcher.submit([1, 13])
    assert batcher.submit([2, 3]) == [2, 3]
    batcher.close()


def test_scorer_batches_concurrent_encode_calls_through_one_loop(tiny_clip):
    frames = list(_frames(tiny_clip, 12))
    expected = tiny_clip.encode_images(frames)
    scorer = ZeroShotScorer(tiny_clip.clip, tiny_clip.prompt_set, batch_size=8)
    scorer.start_batching(max_wait_s=0.02)
    other_prompts = scorer.with_prompt_set(tiny_clip.prompt_set)
    assert other_prompts.batching is scorer.batching, "prompt-set variants share the one loop"
    out: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        out[i] = (scorer if i % 2 else other_prompts).encode_images(frames[i : i + 3])

    threads = [threading.Thread(target=call, args=(i,)) for i in range(0, 12, 3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    stats = scorer.batching.stats
    scorer.stop_batching()
    assert sorted(out) == [0, 3, 6, 9]
    for i, got in out.items():
        np.testing.assert_allclose(got, expected[i : i + 3], atol=1e-5)
    assert stats.requests == 4 and stats.items == 12


# GPU-side decode ------------------------------------------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU-side JPEG decoding (nvJPEG) needs a CUDA device")
def test_gpu_decode_matches_cpu_decode_and_falls_back_for_other_formats():
    from models.frames import decode_image
    from models.runtimes.gpu_decode import GpuFrameDecoder

    rng = np.random.default_rng(0)
    picture = Image.fromarray(rng.integers(0, 255, (72, 128, 3), dtype=np.uint8).repeat(10, 0).repeat(10, 1))
    jpeg, png = io.BytesIO(), io.BytesIO()
    picture.save(jpeg, "JPEG", quality=95)
    picture.save(png, "PNG")
    decoder = GpuFrameDecoder((224, 224), torch.device("cuda"), lambda d: decode_image(d, (224, 224), 10**8), 10**8)
    batch, errors = decoder.decode([jpeg.getvalue(), png.getvalue(), b"not an image"])
    decoder.ready()
    assert batch.shape == (2, 224, 224, 3) and batch.device.type == "cuda"
    assert errors[0] is None and errors[1] is None and errors[2] is not None
    cpu = decode_image(jpeg.getvalue(), (224, 224), 10**8).astype(np.float32)
    assert np.abs(batch[0].cpu().numpy().astype(np.float32) - cpu).mean() < 6


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU-side JPEG decoding (nvJPEG) needs a CUDA device")
def test_pipeline_on_a_gpu_decodes_jpegs_there_and_matches_the_cpu_path():
    from models.pipeline import SoilingPipeline
    from training.synthetic import make_frames

    jpegs = [frame.jpeg() for frame in make_frames(4, 320, 180, seed=3)]
    gpu = create_zero_shot_scorer(ZeroShotConfig(model_name=TINY_CLIP, pretrained=None, device="cuda"))
    on_gpu = SoilingPipeline(gpu, cache=None)
    on_cpu = SoilingPipeline(gpu, cache=None, gpu_decode=False)
    assert on_gpu._gpu is not None and on_cpu._gpu is None
    got = on_gpu.embed([*jpegs, b"broken"])
    want = on_cpu.embed(jpegs)
    assert isinstance(got[-1], Exception)
    assert measure_fidelity(np.stack(want), np.stack(got[:-1])).mean_cosine > 0.99
