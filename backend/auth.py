"""Credentials: HTTP basic auth (the scheme Label Studio's ML-backend connection offers) and/or a bearer token
(LENSGUARD_API_TOKEN: webhooks, scripts, the CLI). Required unless LENSGUARD_AUTH=off."""

from __future__ import annotations

import base64
import binascii
import secrets

from settings import Settings

CHALLENGE = 'Basic realm="lensguard", Bearer realm="lensguard"'


def _same(given: str, expected: str) -> bool:
    return secrets.compare_digest(given.encode("utf-8", "replace"), expected.encode("utf-8", "replace"))


def configured(settings: Settings) -> bool:
    return bool(settings.api_token or (settings.basic_auth_user and settings.basic_auth_pass))


def auth_warnings(settings: Settings) -> list[str]:
    if not settings.auth:
        return ["LENSGUARD_AUTH=off: every endpoint answers anyone who can reach this backend"]
    if not configured(settings):
        return [
            "no credentials configured (LENSGUARD_API_TOKEN or LENSGUARD_BASIC_AUTH_USER/PASS): every endpoint "
            "but /health answers 401; set them, or LENSGUARD_AUTH=off on a trusted network"
        ]
    return []


def refusal(authorization: str | None, settings: Settings) -> str | None:
    """None when the Authorization header is acceptable, else why not (never echoing what was sent)."""
    if not settings.auth:
        return None
    if not configured(settings):
        return "authentication is required but no credentials are configured on the backend"
    scheme, _, value = (authorization or "").partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if scheme == "bearer" and settings.api_token is not None:
        if _same(value, settings.api_token.get_secret_value()):
            return None
    elif scheme == "basic" and settings.basic_auth_user and settings.basic_auth_pass is not None:
        try:
            user, _, password = base64.b64decode(value, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return "invalid or missing credentials"
        user_ok = _same(user, settings.basic_auth_user)
        if _same(password, settings.basic_auth_pass.get_secret_value()) and user_ok:
            return None
    return "invalid or missing credentials"
