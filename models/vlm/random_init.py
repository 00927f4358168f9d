"""Randomly initialised VLMs of the real architectures, with byte-level tokenizers built from a local vocabulary.

Used where the user allowed random weights and none could be loaded, by the tests (tiny architectures) and by
the benchmark (tiny and default architectures). No file is downloaded: every piece comes from a config class.
Random weights answer noise; they exercise the code paths and measure speed, nothing else.
"""

from __future__ import annotations

import torch
from tokenizers import pre_tokenizers
from transformers import (
    Blip2Config,
    Blip2ForConditionalGeneration,
    Blip2Processor,
    BlipImageProcessor,
    GPT2Tokenizer,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen2VLImageProcessor,
    Qwen2VLProcessor,
    Qwen2VLVideoProcessor,
)
from transformers.models.qwen2.tokenization_qwen2 import Qwen2Tokenizer

ARCHITECTURES = ("tiny", "default")
QWEN_SPECIAL_TOKENS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Qwen2-VL's chat format for one user turn with images and text (the released template, minus video and tools).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'text' %}{{ part['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Released architectures: Qwen2-VL-2B-Instruct, Qwen2.5-VL-3B-Instruct, BLIP-2 OPT-2.7b (vocabularies included,
# so the embedding and output layers cost what they cost in the real models).
_QWEN_TEXT = {
    "tiny": dict(
        vocab_size=None, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048,
        rope_parameters={"rope_type": "default", "mrope_section": [2, 1, 1], "rope_theta": 10000.0},
    ),
    "qwen2-vl": dict(
        vocab_size=151936, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, max_position_embeddings=32768, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
    ),
    "qwen2.5-vl": dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, max_position_embeddings=128000, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "mrope_section": [16, 24, 24], "rope_theta": 1000000.0},
    ),
}  # fmt: skip
_QWEN_VISION = {
    ("qwen2-vl", "tiny"): dict(depth=2, embed_dim=32, hidden_size=32, num_heads=4),
    ("qwen2-vl", "default"): dict(depth=32, embed_dim=1280, hidden_size=1536, num_heads=16),
    ("qwen2.5-vl", "tiny"): dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=4, out_hidden_size=32, window_size=56,
        fullatt_block_indexes=[1],
    ),
    ("qwen2.5-vl", "default"): dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, window_size=112,
        fullatt_block_indexes=[7, 15, 23, 31],
    ),
}  # fmt: skip
_BLIP2 = {
    "tiny": dict(
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           image_size=56, patch_size=14),
        qformer_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            encoder_hidden_size=32, vocab_size=128, max_position_embeddings=64),
        text_config=dict(hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
                         word_embed_proj_dim=32, max_position_embeddings=512),
        num_query_tokens=4,
    ),
    "default": dict(
        vision_config=dict(hidden_size=1408, intermediate_size=6144, num_hidden_layers=39, num_attention_heads=16,
                           image_size=224, patch_size=14),
        qformer_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                            encoder_hidden_size=1408, vocab_size=30522),
        text_config=dict(vocab_size=50272, hidden_size=2560, ffn_dim=10240, num_hidden_layers=32,
                         num_attention_heads=32, word_embed_proj_dim=2560, max_position_embeddings=2048),
        num_query_tokens=32,
    ),
}  # fmt: skip


def byte_level_vocabulary(special_tokens: tuple[str, ...]) -> dict[str, int]:
    """Special tokens first, then the 256 byte-level symbols: every text encodes, one token per byte."""
    tokens = [*special_tokens, *sorted(pre_tokenizers.ByteLevel.alphabet())]
    return {token: index for index, token in enumerate(tokens)}


def qwen_processor(family: str, max_pixels: int = 448 * 448) -> Qwen2VLProcessor:
    tokenizer = Qwen2Tokenizer(
        vocab=byte_level_vocabulary(("<|endoftext|>",)), merges=[], additional_special_tokens=list(QWEN_SPECIAL_TOKENS)
    )
    processor_class = Qwen2_5_VLProcessor if family == "qwen2.5-vl" else Qwen2VLProcessor
    return processor_class(
        image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * 4, max_pixels=max_pixels),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=QWEN_CHAT_TEMPLATE,
    )


def blip2_processor(architecture: str) -> Blip2Processor:
    tokenizer = GPT2Tokenizer(
        vocab=byte_level_vocabulary(("</s>", "<pad>")),
        merges=[],
        bos_token="</s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="</s>",
    )
    side = _BLIP2[architecture]["vision_config"]["image_size"]
    return Blip2Processor(
        image_processor=BlipImageProcessor(size={"height": side, "width": side}),
        tokenizer=tokenizer,
        num_query_tokens=_BLIP2[architecture]["num_query_tokens"],
    )


def _qwen(family: str, architecture: str, processor) -> torch.nn.Module:
    tokenizer = processor.tokenizer
    ids = dict(zip(QWEN_SPECIAL_TOKENS, tokenizer.convert_tokens_to_ids(list(QWEN_SPECIAL_TOKENS)), strict=True))
    text = dict(_QWEN_TEXT["tiny" if architecture == "tiny" else family])
    text["vocab_size"] = text["vocab_size"] or len(tokenizer)
    text.update(
        bos_token_id=tokenizer.pad_token_id, eos_token_id=ids["<|im_end|>"], pad_token_id=tokenizer.pad_token_id
    )
    config_class, model_class = (
        (Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration)
        if family == "qwen2.5-vl"
        else (Qwen2VLConfig, Qwen2VLForConditionalGeneration)
    )
    config = config_class(
        text_config=text,
        vision_config=_QWEN_VISION[family, architecture],
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=architecture == "default",
    )
    return model_class(config)


def _blip2(architecture: str, processor) -> torch.nn.Module:
    tokenizer = processor.tokenizer
    spec = _BLIP2[architecture]
    text = {"model_type": "opt", **spec["text_config"]}
    text.setdefault("vocab_size", len(tokenizer))
    text.update(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    config = Blip2Config(
        vision_config=spec["vision_config"],
        qformer_config=spec["qformer_config"],
        text_config=text,
        num_query_tokens=spec["num_query_tokens"],
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    return Blip2ForConditionalGeneration(config)


def build_random_vlm(family: str, architecture: str = "tiny", seed: int = 0, max_pixels: int = 448 * 448):
    """(model, processor) of a released architecture ("default") or a tiny one, with random weights."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; use one of {ARCHITECTURES}")
    torch.manual_seed(seed)
    if family == "blip2":
        processor = blip2_processor(architecture)
        return _blip2(architecture, processor).eval(), processor
    processor = qwen_processor(family, max_pixels)
    return _qwen(family, architecture, processor).eval(), processor


def save_random_vlm(family: str, directory, architecture: str = "tiny", max_pixels: int = 448 * 448) -> str:
    """A random VLM saved like a downloaded one (save_pretrained), for LENSGUARD_VLM_MODEL to point at."""
    model, processor = build_random_vlm(family, architecture, max_pixels=max_pixels)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return str(directory)
