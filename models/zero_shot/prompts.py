"""Versioned prompt sets: several phrasings per class, plus prompts for soiling types."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from models.labels import normalise_label

BUNDLED_PROMPT_SETS = Path(__file__).resolve().parent.parent / "prompt_sets"
BINARY_CLASSES = ("clean", "dirty")
PROMPTS_KIND = "prompts"  # registry kind of the prompt set a project serves
PROMPTS_FILE = "prompts.json"


class PromptSetError(ValueError):
    pass


@dataclass(frozen=True)
class SoilingType:
    name: str
    prompts: tuple[str, ...]
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromptSet:
    name: str
    version: str
    classes: dict[str, tuple[str, ...]]
    types: dict[str, SoilingType] = field(default_factory=dict)
    type_templates: tuple[str, ...] = ("a camera lens covered with {}",)
    threshold: float = 0.5  # P(dirty) at or above which a frame is called dirty

    @property
    def tag(self) -> str:
        """Short, stable identity used in model_version: name, version, a content hash, a non-default threshold."""
        tag = f"{self.name}-v{self.version}-{self.digest[:6]}"
        return tag if self.threshold == 0.5 else f"{tag}-t{self.threshold:.3f}"

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "classes": {c: list(p) for c, p in self.classes.items()},
            "types": {k: {"aliases": list(t.aliases), "prompts": list(t.prompts)} for k, t in self.types.items()},
            "type_templates": list(self.type_templates),
            "threshold": self.threshold,
        }

    @property
    def digest(self) -> str:
        payload = json.dumps(
            {
                "classes": self.classes,
                "types": {k: [t.prompts, t.aliases] for k, t in self.types.items()},
                "templates": self.type_templates,
            },
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def prompts_for_type(self, label: str) -> tuple[str, ...]:
        """Prompts for a soiling-type label from a labeling config; unknown labels get templated prompts."""
        key = normalise_label(label)
        for soiling_type in self.types.values():
            names = {normalise_label(soiling_type.name), *map(normalise_label, soiling_type.aliases)}
            if key in names:
                return soiling_type.prompts
        return tuple(template.format(label) for template in self.type_templates)


def _string_list(value: object, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise PromptSetError(f"{where} must be a non-empty list of non-empty strings")
    return tuple(value)


def parse_prompt_set(data: dict, source: str = "<dict>") -> PromptSet:
    if not isinstance(data, dict):
        raise PromptSetError(f"prompt set {source}: top level must be an object")
    classes = data.get("classes")
    if not isinstance(classes, dict) or set(classes) != set(BINARY_CLASSES):
        raise PromptSetError(f"prompt set {source}: 'classes' must have exactly the keys {list(BINARY_CLASSES)}")
    types = {}
    for name, entry in (data.get("types") or {}).items():
        if not isinstance(entry, dict):
            raise PromptSetError(f"prompt set {source}: types.{name} must be an object")
        types[name] = SoilingType(
            name=name,
            prompts=_string_list(entry.get("prompts"), f"prompt set {source}: types.{name}.prompts"),
            aliases=tuple(entry.get("aliases") or ()),
        )
    templates = data.get("type_templates") or ["a camera lens covered with {}"]
    templates = _string_list(templates, f"prompt set {source}: type_templates")
    if not all("{}" in t for t in templates):
        raise PromptSetError(f"prompt set {source}: every type template needs a '{{}}' placeholder")
    threshold = data.get("threshold", 0.5)
    if not isinstance(threshold, int | float) or not 0 < threshold < 1:
        raise PromptSetError(f"prompt set {source}: threshold must be a number between 0 and 1")
    return PromptSet(
        name=str(data.get("name") or Path(source).stem),
        version=str(data.get("version") or "0"),
        classes={c: _string_list(classes[c], f"prompt set {source}: classes.{c}") for c in BINARY_CLASSES},
        types=types,
        type_templates=templates,
        threshold=float(threshold),
    )


def load_prompt_set(name_or_path: str | Path) -> PromptSet:
    """Load a bundled prompt set by name ('soiling-v1') or any JSON file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = BUNDLED_PROMPT_SETS / f"{name_or_path}.json"
    if not path.is_file():
        bundled = sorted(p.stem for p in BUNDLED_PROMPT_SETS.glob("*.json"))
        raise PromptSetError(f"prompt set {name_or_path!s} not found (bundled sets: {', '.join(bundled)})")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PromptSetError(f"prompt set {path}: invalid JSON ({exc})") from exc
    return parse_prompt_set(data, str(path))
