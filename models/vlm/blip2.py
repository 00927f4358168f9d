"""BLIP-2: a yes/no question mapped to a verdict by a fixed rule, and its caption as the explanation."""

from __future__ import annotations

import re

import torch
from PIL import Image

from models.vlm.answer import VlmAnswer, VlmVerdict
from models.vlm.base import VlmExplainer
from models.vlm.parsing import NO_WORDS, YES_WORDS, yes_no_verdict
from models.vlm.prompts import BLIP2_CAPTION_PROMPT, BLIP2_QUESTION

ANSWER_TOKENS = 8
CAPTION_TOKENS = 30


def _first_token_ids(tokenizer, words: tuple[str, ...]) -> set[int]:
    forms = [form for word in words for form in (word, " " + word, word.capitalize(), " " + word.capitalize())]
    return {ids[0] for form in forms if (ids := tokenizer(form, add_special_tokens=False).input_ids)}


def mentioned_types(text: str, soiling_types: tuple[str, ...]) -> tuple[str, ...]:
    """The project's soiling types named in a caption or answer (whole words, case ignored)."""
    lowered = text.lower()
    return tuple(t for t in soiling_types if re.search(rf"\b{re.escape(t.lower())}", lowered))


class Blip2Explainer(VlmExplainer):
    def __init__(self, loaded, config):
        super().__init__(loaded, config)
        tokenizer = loaded.processor.tokenizer
        yes, no = _first_token_ids(tokenizer, YES_WORDS[:1]), _first_token_ids(tokenizer, NO_WORDS[:1])
        self._yes_ids, self._no_ids = sorted(yes - no), sorted(no - yes)  # a token shared by both tells nothing

    def _p_yes(self, first_scores: torch.Tensor | None) -> list[float | None]:
        """P(yes) / (P(yes) + P(no)) from the first answer token: the answer's log-probabilities as a score."""
        if first_scores is None or not self._yes_ids or not self._no_ids:
            return [None] * (0 if first_scores is None else len(first_scores))
        probs = first_scores.softmax(dim=-1)
        yes, no = probs[:, self._yes_ids].sum(-1), probs[:, self._no_ids].sum(-1)
        total = yes + no
        return [float(y / t) if t > 0 else None for y, t in zip(yes, total, strict=True)]

    def _explain_batch(self, images: list[Image.Image], soiling_types: tuple[str, ...]) -> list[VlmAnswer]:
        processor = self.loaded.processor
        ask = processor(images=images, text=[BLIP2_QUESTION] * len(images), padding=True, return_tensors="pt")
        replies, first_scores = self._generate(ask, ANSWER_TOKENS, with_scores=True)
        p_yes = self._p_yes(first_scores) or [None] * len(images)
        describe = processor(
            images=images, text=[BLIP2_CAPTION_PROMPT] * len(images), padding=True, return_tensors="pt"
        )
        captions = self._generate(describe, min(CAPTION_TOKENS, self.config.max_new_tokens))[0]
        answers = []
        for reply, caption, p in zip(replies, captions, p_yes, strict=True):
            verdict = yes_no_verdict(reply)
            raw = f"answer: {reply!r}; caption: {caption!r}"
            if verdict == VlmVerdict.UNPARSED:
                answers.append(VlmAnswer(verdict, raw=raw, sentence=caption))
                continue
            p_side = 0.5 if p is None else (p if verdict == VlmVerdict.DIRTY else 1 - p)
            dirty = verdict == VlmVerdict.DIRTY
            answers.append(
                VlmAnswer(
                    verdict=verdict,
                    confidence=max(0.0, 2 * p_side - 1),
                    soiling_types=mentioned_types(f"{reply} {caption}", soiling_types) if dirty else (),
                    sentence=f'asked whether the lens is dirty, BLIP-2 answered "{reply}"; it sees: {caption}',
                    raw=raw,
                )
            )
        return answers
