"""Fetch task images: Label Studio URLs with the connection's token, other hosts only when allowed."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urljoin, urlsplit

import httpx

from labelstudio.tokens import LabelStudioAuth, LabelStudioAuthError


class ImageFetchError(RuntimeError):
    pass


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, f"{(parts.hostname or '').lower()}:{port}"


class ImageFetcher:
    def __init__(
        self,
        label_studio_url: str,
        auth: LabelStudioAuth | None,
        allowed_hosts: Sequence[str] = (),
        max_bytes: int = 30 * 1024 * 1024,
        timeout: float = 30.0,
        threads: int = 8,
    ):
        self.label_studio_url = label_studio_url.rstrip("/") + "/"
        self._ls_origin = _origin(self.label_studio_url)
        self.auth = auth
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.max_bytes = max_bytes
        self._client = httpx.Client(timeout=timeout, follow_redirects=False)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch")

    def resolve(self, url: str) -> tuple[str, bool]:
        """(absolute URL, whether it goes to Label Studio and so carries the token)."""
        if not isinstance(url, str) or not url.strip():
            raise ImageFetchError("the task has no image URL")
        url = url.strip()
        if url.startswith("/"):
            url = urljoin(self.label_studio_url, url.lstrip("/"))
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ImageFetchError(f"unsupported image URL scheme {parts.scheme or '(none)'!r} in {url[:120]}")
        if _origin(url) == self._ls_origin:
            return url, True
        host = (parts.hostname or "").lower()
        if "*" in self.allowed_hosts or host in self.allowed_hosts or _origin(url)[1] in self.allowed_hosts:
            return url, False
        raise ImageFetchError(
            f"image host {host!r} is not Label Studio ({self.label_studio_url}) and not in "
            "LENSGUARD_ALLOWED_IMAGE_HOSTS"
        )

    def fetch(self, url: str) -> bytes:
        absolute, to_label_studio = self.resolve(url)
        for attempt in range(2):
            headers = {}
            if to_label_studio and self.auth is not None:
                try:
                    headers = self.auth.header()
                except LabelStudioAuthError as exc:
                    raise ImageFetchError(str(exc)) from exc
            try:
                return self._download(absolute, headers)
            except _Unauthorized:
                if attempt == 0 and self.auth is not None and to_label_studio:
                    self.auth.invalidate()
                    continue
                raise ImageFetchError(
                    f"Label Studio refused the image {absolute} (401/403): set LENSGUARD_LABEL_STUDIO_API_KEY "
                    "to a valid token"
                ) from None
        raise AssertionError("unreachable")

    def _download(self, url: str, headers: dict[str, str]) -> bytes:
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code in (401, 403):
                    raise _Unauthorized
                if response.status_code != 200:
                    raise ImageFetchError(f"GET {url} answered HTTP {response.status_code}")
                declared = int(response.headers.get("content-length") or 0)
                if declared > self.max_bytes:
                    raise ImageFetchError(f"image {url} is {declared} bytes, over the {self.max_bytes} limit")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ImageFetchError(f"image {url} is over the {self.max_bytes} byte limit")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise ImageFetchError(f"could not fetch {url}: {exc.__class__.__name__}: {exc}") from exc

    def fetch_many(self, urls: Sequence[str]) -> list[bytes | Exception]:
        def one(url: str) -> bytes | Exception:
            try:
                return self.fetch(url)
            except ImageFetchError as exc:
                return exc

        return list(self._pool.map(one, urls))

    def close(self) -> None:
        self._client.close()
        self._pool.shutdown(wait=False)


class _Unauthorized(Exception):
    pass
