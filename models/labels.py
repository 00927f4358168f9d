"""Label names: the one normaliser every config label is matched with, and WoodScape's soiling classes."""

from __future__ import annotations

import re

# WoodScape's soiling classes; mask values are their indices (0 clear .. 3 opaque), severity ascending.
SOILING_CLASSES = ("clear", "transparent", "semi-transparent", "opaque")


def normalise_label(label: str) -> str:
    """'Water-drops ' -> 'water drops', 'Semi_Transparent' -> 'semi transparent'."""
    return re.sub(r"[^a-z0-9]+", " ", label.lower()).strip()


def soiling_class(label: str) -> int | None:
    """The mask value of a brush label naming a soiling class, or None."""
    names = {normalise_label(name): index for index, name in enumerate(SOILING_CLASSES)}
    return names.get(normalise_label(label))
