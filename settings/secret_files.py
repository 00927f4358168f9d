"""Settings from files: `LENSGUARD_<NAME>_FILE=/path` gives setting NAME the file's content (Docker and
Kubernetes secrets, or the token file `lensguard init` writes), so secrets need not sit in the environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_settings import PydanticBaseSettingsSource

PREFIX = "LENSGUARD_"


class SecretFileSettings(PydanticBaseSettingsSource):
    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ reads every field at once

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            variable = f"{PREFIX}{name.upper()}_FILE"
            path = os.environ.get(variable)
            if not path:
                continue
            try:
                value = Path(path).read_text().strip()
            except OSError as exc:
                raise ValueError(f"{variable}={path}: {exc.strerror}") from None
            alias = field.validation_alias
            values[alias.choices[0] if isinstance(alias, AliasChoices) else name] = value
        return values
