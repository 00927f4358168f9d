"""A personal access token for lensguard, made from the Label Studio admin's login (what `lensguard init` does).

Label Studio allows one personal access token per user: creating one logs in like the browser (the login form
with its CSRF token), asks `/api/token/` for a token, and when one exists already (its copy was lost) revokes
it (`/api/token/blacklist/`, as the account page does) and asks again.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import httpx

from labelstudio.tokens import LabelStudioAuth, LabelStudioAuthError


class AdminLoginError(RuntimeError):
    pass


def token_works(url: str, token: str) -> bool:
    try:
        LabelStudioAuth(url, token).header()
    except LabelStudioAuthError:
        return False
    return True


def admin_session(url: str, email: str, password: str, timeout: float = 30.0) -> httpx.Client:
    """An httpx client logged in as the user, sending the CSRF header Label Studio wants on API writes."""
    client = httpx.Client(base_url=url.rstrip("/"), timeout=timeout, follow_redirects=False)
    login = f"{client.base_url}/user/login/"
    client.get("/user/login/")
    csrf = client.cookies.get("csrftoken", "")
    response = client.post(
        "/user/login/",
        data={"email": email, "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": login},
    )
    if response.status_code != 302 or "sessionid" not in client.cookies:
        client.close()
        raise AdminLoginError(f"Label Studio at {url} refused the login of {email}: check the admin's password")
    client.headers.update({"X-CSRFToken": client.cookies.get("csrftoken", csrf), "Referer": login})
    return client


def create_personal_access_token(session: httpx.Client) -> str:
    """A new personal access token; an existing one (whose copy is lost) is revoked first."""
    response = session.post("/api/token/")
    if response.status_code == 409:
        for existing in session.get("/api/token/").raise_for_status().json():
            session.post("/api/token/blacklist/", json={"refresh": existing["token"]})
        response = session.post("/api/token/")
    if response.status_code >= 400:
        raise AdminLoginError(f"Label Studio refused to create a personal access token: HTTP {response.status_code}")
    return response.json()["token"]


def write_secret(path: Path, value: str) -> None:
    """Written mode 600 through a temporary file, so a reader never sees half a token."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def wait_until_up(url: str, wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if httpx.get(f"{url.rstrip('/')}/health", timeout=10).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise AdminLoginError(f"Label Studio at {url} was not up after {wait_seconds:.0f} s")
        time.sleep(2)


def ensure_token_file(url: str, email: str, password: str, token_file: Path, wait_seconds: float = 300.0) -> str:
    """'kept' when the file's token still works, else 'created' after writing a new one."""
    wait_until_up(url, wait_seconds)
    if token_file.is_file() and token_works(url, token_file.read_text().strip()):
        return "kept"
    session = admin_session(url, email, password)
    try:
        write_secret(token_file, create_personal_access_token(session))
    finally:
        session.close()
    return "created"
