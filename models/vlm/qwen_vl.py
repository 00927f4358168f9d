"""Qwen2-VL and Qwen2.5-VL chat models: a prompt asking for JSON, strict parsing, one stricter retry."""

from __future__ import annotations

import contextlib

from PIL import Image

from models.vlm.answer import VlmAnswer, unparsed
from models.vlm.base import VlmExplainer
from models.vlm.parsing import AnswerParseError, parse_chat_answer
from models.vlm.prompts import chat_prompt


class QwenVlExplainer(VlmExplainer):
    def _ask(self, images: list[Image.Image], prompt: str) -> list[str]:
        processor = self.loaded.processor
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        size = {"shortest_edge": processor.image_processor.size["shortest_edge"]}
        size["longest_edge"] = max(size["shortest_edge"], self.config.max_image_pixels)
        inputs = processor(text=[text] * len(images), images=images, padding=True, return_tensors="pt", size=size)
        return self._generate(inputs, self.config.max_new_tokens)[0]

    def _explain_batch(self, images: list[Image.Image], soiling_types: tuple[str, ...]) -> list[VlmAnswer]:
        answers: list[VlmAnswer | None] = [None] * len(images)
        texts = [""] * len(images)
        todo = list(range(len(images)))
        attempts = ((1, False), (2, True)) if self.config.retry_unparsed else ((1, False),)
        for attempt, strict in attempts:
            if not todo:
                break
            replies = self._ask([images[i] for i in todo], chat_prompt(soiling_types, strict=strict))
            for i, reply in zip(todo, replies, strict=True):
                texts[i] = reply
                with contextlib.suppress(AnswerParseError):
                    answers[i] = parse_chat_answer(reply, soiling_types, attempts=attempt)
            todo = [i for i in todo if answers[i] is None]
        return [answer or unparsed(texts[i], attempts=len(attempts)) for i, answer in enumerate(answers)]
