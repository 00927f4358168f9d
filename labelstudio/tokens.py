"""Authorization headers for Label Studio: legacy tokens as `Token`, personal access tokens via JWT refresh."""

from __future__ import annotations

import base64
import json
import threading
import time

import httpx


class LabelStudioAuthError(RuntimeError):
    pass


def is_jwt(key: str) -> bool:
    return key.count(".") == 2 and key.startswith("ey")


def _jwt_expiry(token: str) -> float:
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        return float(json.loads(base64.urlsafe_b64decode(payload)).get("exp", 0))
    except (ValueError, IndexError):
        return 0.0


class LabelStudioAuth:
    """Gives the header for the configured key; never logs or echoes the key."""

    def __init__(self, base_url: str, api_key: str, timeout: float = 15.0):
        self.base_url = base_url.rstrip("/")
        self._key = api_key
        self._timeout = timeout
        self._access: str | None = None
        self._access_expiry = 0.0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"LabelStudioAuth({self.base_url!r}, api_key=***)"

    def header(self) -> dict[str, str]:
        if not is_jwt(self._key):
            return {"Authorization": f"Token {self._key}"}
        with self._lock:
            if self._access is None or time.time() > self._access_expiry - 30:
                self._refresh()
            return {"Authorization": f"Bearer {self._access}"}

    def invalidate(self) -> None:
        with self._lock:
            self._access = None

    def _refresh(self) -> None:
        try:
            response = httpx.post(
                f"{self.base_url}/api/token/refresh", json={"refresh": self._key}, timeout=self._timeout
            )
        except httpx.HTTPError as exc:
            raise LabelStudioAuthError(f"Label Studio at {self.base_url} unreachable for token refresh: {exc}") from exc
        if response.status_code != 200 or "access" not in response.json():
            raise LabelStudioAuthError(
                f"Label Studio refused the personal access token (HTTP {response.status_code}); "
                "create a new one under Account & Settings"
            )
        self._access = response.json()["access"]
        self._access_expiry = _jwt_expiry(self._access) or time.time() + 240
