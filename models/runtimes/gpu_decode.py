"""GPU-side frame decoding: JPEGs decoded by nvJPEG and resized on the GPU, in batches.

Other formats (PNG, WebP, ...) and JPEGs nvJPEG rejects are decoded on the CPU by `cpu_decode` and copied from
pinned memory without blocking. Decoding runs on its own CUDA stream, so the upload of one batch overlaps the
encoder's work on the previous one; the encoder's stream waits for it (`ready`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

JPEG_MAGIC = b"\xff\xd8\xff"
CpuDecode = Callable[[bytes], np.ndarray]  # bytes -> uint8 HxWx3 at the target size, raising on bad input


class GpuFrameDecoder:
    def __init__(self, size: tuple[int, int], device: torch.device, cpu_decode: CpuDecode, max_pixels: int):
        if device.type != "cuda" or not torch.cuda.is_available():
            raise RuntimeError("GPU-side decoding needs a CUDA device")
        self.width, self.height = size
        self.device = device
        self.cpu_decode = cpu_decode
        self.max_pixels = max_pixels
        self.stream = torch.cuda.Stream(device)

    def ready(self) -> None:
        """Make the current stream wait for the frames decoded so far."""
        torch.cuda.current_stream(self.device).wait_stream(self.stream)

    def decode(self, images: Sequence[bytes]) -> tuple[torch.Tensor, list[Exception | None]]:
        """uint8 (N, H, W, 3) on the GPU for the readable images (in order) and one error slot per image."""
        from torchvision.io import ImageReadMode, decode_jpeg

        errors: list[Exception | None] = [None] * len(images)
        frames: dict[int, torch.Tensor] = {}
        jpegs = [i for i, data in enumerate(images) if data[:3] == JPEG_MAGIC and self._within_limit(data, i, errors)]
        with torch.cuda.stream(self.stream):
            if jpegs:
                encoded = [torch.frombuffer(bytearray(images[i]), dtype=torch.uint8) for i in jpegs]
                try:
                    decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
                except RuntimeError:  # one bad JPEG fails the batch: retry them one by one
                    decoded = [self._decode_one(tensor) for tensor in encoded]
                for i, chw in zip(jpegs, decoded, strict=True):
                    if chw is None:
                        self._cpu_frame(images[i], i, frames, errors)
                    else:
                        frames[i] = self._resize(chw)
            for i, data in enumerate(images):
                if i not in frames and errors[i] is None:
                    self._cpu_frame(data, i, frames, errors)
            good = [frames[i] for i in range(len(images)) if i in frames]
            batch = torch.stack(good) if good else torch.zeros((0, self.height, self.width, 3), dtype=torch.uint8)
        return batch, errors

    def _within_limit(self, data: bytes, index: int, errors: list[Exception | None]) -> bool:
        try:
            width, height = Image.open(io.BytesIO(data)).size  # header only
        except Exception as exc:
            errors[index] = ValueError(f"not a readable image ({exc})")
            return False
        if width * height > self.max_pixels:
            errors[index] = ValueError(f"image is {width}x{height}, over the limit of {self.max_pixels} pixels")
            return False
        return True

    def _decode_one(self, encoded: torch.Tensor) -> torch.Tensor | None:
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return decode_jpeg(encoded, mode=ImageReadMode.RGB, device=self.device)
        except RuntimeError:
            return None

    def _resize(self, chw: torch.Tensor) -> torch.Tensor:
        """CHW uint8 on the GPU -> HWC uint8 at the model size, the whole frame squashed (as the CPU path)."""
        x = chw[None].float()
        x = F.interpolate(x, size=(self.height, self.width), mode="bicubic", antialias=True, align_corners=False)
        return x[0].round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0)

    def _cpu_frame(self, data: bytes, index: int, frames: dict, errors: list[Exception | None]) -> None:
        try:
            pixels = self.cpu_decode(data)
        except Exception as exc:
            errors[index] = exc
            return
        frames[index] = torch.from_numpy(np.ascontiguousarray(pixels)).pin_memory().to(self.device, non_blocking=True)
