"""Frames/s of POST /predict over HTTP vs the bare model forward, for batches of 1, 8 and 32 frames (1280x720).

The service path: Label-Studio-style image URLs fetched over local HTTP with a token, JPEG decode, resize,
image encoder, prompt scoring, region formatting, JSON over HTTP. The bare path: the same image encoder on
already-decoded, already-resized tensors. Every request uses frames the embedding cache has never seen.

    .venv/bin/python benchmarks/predict_throughput.py [--model ViT-B-16] [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import httpx
import torch

from benchmarks._common import serve_bytes, timed
from lensguard.launcher import free_port, start_backend, stop, wait_healthy
from models.frames import decode_image
from models.zero_shot import ZeroShotConfig, create_zero_shot_scorer
from training.synthetic import make_frames

TOKEN = "benchmark-token-0123456789"
CONFIG = (Path(__file__).resolve().parent.parent / "labeling_config" / "soiling.xml").read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ViT-B-16")
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]

    total = args.repeats * sum(batches) + max(batches)
    print(f"making {total} distinct 1280x720 JPEG frames...", flush=True)
    jpegs = [f.jpeg() for f in make_frames(total, 1280, 720, seed=99)]
    files = {f"/data/upload/1/f{i}.jpg": data for i, data in enumerate(jpegs)}
    paths = list(files)
    images_url, shutdown_images = serve_bytes(files, TOKEN)

    scorer = create_zero_shot_scorer(ZeroShotConfig(model_name=args.model, pretrained=None, device=args.device))
    pixels = [decode_image(data, scorer.clip.image_size, 10**9) for data in jpegs]
    print(f"model {args.model} (random weights) on {args.device}, torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as state:
        port = free_port()
        env = {
            "LENSGUARD_LABEL_STUDIO_URL": images_url,
            "LENSGUARD_LABEL_STUDIO_API_KEY": TOKEN,
            "LENSGUARD_CLIP_MODEL": args.model,
            "LENSGUARD_CLIP_PRETRAINED": "none",
            "LENSGUARD_ALLOW_RANDOM_WEIGHTS": "true",
            "LENSGUARD_DEVICE": args.device,
            "LENSGUARD_DATA_DIR": state,
        }
        log = Path(state) / "backend.log"
        process = start_backend(port, env, log)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, 300, process, log)
            client = httpx.Client(timeout=600)
            warm = paths[-max(batches) :]
            client.post(f"{url}/predict", json={"tasks": tasks(warm), "label_config": CONFIG}).raise_for_status()
            scorer.encode_images(pixels[: max(batches)])  # warm-up of the bare path too

            print(f"\n{'batch':>5} {'service fr/s':>13} {'bare fr/s':>10} {'overhead':>9}")
            offset = 0
            for batch in batches:
                service_s = bare_s = 0.0
                for _ in range(args.repeats):
                    chosen = list(range(offset, offset + batch))
                    offset += batch
                    body = {"tasks": tasks([paths[i] for i in chosen]), "label_config": CONFIG}

                    def post(body=body):
                        response = client.post(f"{url}/predict", json=body)
                        response.raise_for_status()
                        assert all("result" in r for r in response.json()["results"]), response.text[:300]

                    service_s += timed(post)
                    bare_s += timed(lambda chosen=chosen: scorer.encode_images([pixels[i] for i in chosen]))
                frames = batch * args.repeats
                overhead = service_s / bare_s - 1
                print(f"{batch:>5} {frames / service_s:>13.2f} {frames / bare_s:>10.2f} {overhead:>8.1%}")
            metrics = client.get(f"{url}/metrics").json()
            encoded, hits = metrics["images_encoded"], metrics["embedding_cache_hits"]
            print(f"\nservice: {encoded} frames encoded, {hits} cache hits")
            stages = {k.removeprefix("predict_seconds_"): v for k, v in metrics.items() if k.startswith("predict_s")}
            print(f"service time by stage (s, all requests, warm-up included): {stages}")
            print("target: overhead at batch 32 at most 15%")
        finally:
            stop(process)
            shutdown_images()


def tasks(paths: list[str]) -> list[dict]:
    return [{"id": i, "data": {"image": path}} for i, path in enumerate(paths)]


if __name__ == "__main__":
    main()
