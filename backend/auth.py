"""Optional HTTP basic auth, the scheme Label Studio's ML-backend connection offers."""

from __future__ import annotations

import secrets

from fastapi import HTTPException, Request, status
from fastapi.security import HTTPBasic, HTTPBasicCredentials

_basic = HTTPBasic(auto_error=False)


async def require_basic_auth(request: Request) -> None:
    settings = request.app.state.serving.settings
    if not settings.basic_auth_user:
        return
    credentials: HTTPBasicCredentials | None = await _basic(request)
    expected_pass = settings.basic_auth_pass.get_secret_value() if settings.basic_auth_pass else ""
    if (
        credentials is None
        or not secrets.compare_digest(credentials.username.encode(), settings.basic_auth_user.encode())
        or not secrets.compare_digest(credentials.password.encode(), expected_pass.encode())
    ):
        raise HTTPException(
            status_code=status.HTTP_401_UNAUTHORIZED,
            detail="invalid or missing basic auth credentials",
            headers={"WWW-Authenticate": "Basic"},
        )
