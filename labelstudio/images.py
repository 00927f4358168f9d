"""Fetch task images: Label Studio URLs with the connection's token, other hosts only when allowed and only on
public addresses (or allow-listed networks), connecting to the very address that was checked."""

from __future__ import annotations

import base64
import ipaddress
import posixpath
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from urllib.parse import unquote, urlencode, urljoin, urlsplit, urlunsplit

import httpx

from labelstudio.tokens import LabelStudioAuth, LabelStudioAuthError

MAX_URL_CHARS = 8192
CLOUD_SCHEMES = ("s3", "gs", "azure-blob")
REDIRECTS = (301, 302, 303, 307, 308)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[..., list]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class ImageFetchError(RuntimeError):
    """One task's image could not be had; the message names no internal URL, status code or token."""


@dataclass(frozen=True)
class Target:
    url: str  # what is requested (for other hosts: with the checked IP in place of the name)
    host_header: str | None = None
    sni_hostname: str | None = None
    to_label_studio: bool = False  # carries the token
    source: str = ""  # the URL as named (relative redirects are resolved against it)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.scheme, f"{(parts.hostname or '').lower()}:{port}"


def parse_networks(values: Sequence[str]) -> list[Network]:
    """'10.0.0.5', '10.1.0.0/16', 'fd00::/8' -> networks (a bare address is a /32 or /128)."""
    return [ipaddress.ip_network(value.strip(), strict=False) for value in values if value.strip()]


def is_public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return is_public(address.ipv4_mapped)
        embedded = address.sixtofour or (address.teredo[1] if address.teredo else None)
        if embedded is not None and not is_public(embedded):
            return False
        if address in _NAT64:
            return is_public(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def label_studio_path(path: str) -> str:
    """The normalised path of a Label Studio URL, if the token may go there: /data/, /api/, or a storage resolve."""
    segments = unquote(path).split("/")
    if any(s in ("..", ".") or "\\" in s for s in segments):
        raise ImageFetchError("image URL refused: '..' or '.' segments are not allowed")
    normal = posixpath.normpath("/" + path.lstrip("/"))
    parts = normal.strip("/").split("/")
    storage_resolve = len(parts) == 3 and parts[0] in ("tasks", "projects") and parts[1].isdigit()
    if parts[0] in ("data", "api") or (storage_resolve and parts[2] in ("resolve", "presign")):
        return normal + ("/" if path.endswith("/") and normal != "/" else "")
    raise ImageFetchError("image URL refused: the token only goes to Label Studio's /data/ and /api/ paths")


class ImageFetcher:
    def __init__(
        self,
        label_studio_url: str,
        auth: LabelStudioAuth | None,
        allowed_hosts: Sequence[str] = (),
        max_bytes: int = 30 * 1024 * 1024,
        timeout: float = 30.0,
        threads: int = 8,
        allowed_networks: Sequence[str] = (),
        per_request_threads: int = 8,
        resolver: Resolver = socket.getaddrinfo,
    ):
        self.label_studio_url = label_studio_url.rstrip("/") + "/"
        self._ls_origin = _origin(self.label_studio_url)
        self.auth = auth
        self.allowed_hosts = {h.lower() for h in allowed_hosts}
        self.allowed_networks = parse_networks(allowed_networks)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.per_request_threads = max(1, min(per_request_threads, threads))
        self.resolver = resolver
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="fetch")

    # where a URL may go -------------------------------------------------------------------------------
    def resolve(self, url: str, task_id: int | None = None, project: str | None = None) -> Target:
        if not isinstance(url, str) or not url.strip():
            raise ImageFetchError("the task has no image URL")
        url = url.strip()
        if len(url) > MAX_URL_CHARS:
            raise ImageFetchError(f"image URL refused: longer than {MAX_URL_CHARS} characters")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise ImageFetchError("image URL refused: it contains control characters")
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 -- raises ValueError on a port out of range or not a number
        except ValueError:
            raise ImageFetchError("image URL refused: it is not a valid URL") from None
        if parts.scheme in CLOUD_SCHEMES:
            return self._storage_resolve(url, task_id, project)
        if not parts.scheme and not parts.netloc and url.startswith("/"):
            return self._to_label_studio(parts.path, parts.query)
        if parts.scheme not in ("http", "https"):
            raise ImageFetchError(f"image URL refused: unsupported scheme {parts.scheme[:16] or '(none)'!r}")
        if not parts.hostname:
            raise ImageFetchError("image URL refused: it names no host")
        if _origin(url) == self._ls_origin:
            return self._to_label_studio(parts.path, parts.query)
        return self._external(parts)

    def _to_label_studio(self, path: str, query: str) -> Target:
        base = urlsplit(self.label_studio_url)
        prefix = base.path.rstrip("/")
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix) :]
        full = urlunsplit(base._replace(path=prefix + label_studio_path(path), query=query, fragment=""))
        return Target(full, to_label_studio=True)

    def _storage_resolve(self, uri: str, task_id: int | None, project: str | None) -> Target:
        """s3://, gs://, azure-blob://: Label Studio resolves them (proxying, or redirecting to a presigned URL)."""
        if task_id is not None:
            path = f"/tasks/{int(task_id)}/resolve/"
        elif project and str(project).isdigit():
            path = f"/projects/{int(project)}/resolve/"
        else:
            raise ImageFetchError("cloud-storage image refused: the task names no task or project id to resolve it")
        query = urlencode({"fileuri": base64.urlsafe_b64encode(uri.encode()).decode()})
        return self._to_label_studio(path, query)

    def _external(self, parts) -> Target:
        host = parts.hostname.lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if not ("*" in self.allowed_hosts or host in self.allowed_hosts or f"{host}:{port}" in self.allowed_hosts):
            raise ImageFetchError("image host refused: not Label Studio and not in LENSGUARD_ALLOWED_IMAGE_HOSTS")
        address = self._checked_address(host, port)
        literal = f"[{address}]" if address.version == 6 else str(address)
        netloc = f"{literal}:{port}"
        host_header = parts.netloc.rsplit("@", 1)[-1]
        pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
        source = urlunsplit((parts.scheme, host_header, parts.path or "/", parts.query, ""))
        sni = host if parts.scheme == "https" else None
        return Target(pinned, host_header=host_header, sni_hostname=sni, source=source)

    def _checked_address(self, host: str, port: int) -> Address:
        """The first address of `host` that may be contacted: public, or inside LENSGUARD_ALLOWED_IMAGE_NETWORKS."""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
            candidates = [literal]
        except ValueError:
            try:
                infos = self.resolver(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError, ValueError):
                raise ImageFetchError("image host unavailable: its name does not resolve") from None
            candidates = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
        for address in candidates:
            mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
            if is_public(address) or any(a in n for n in self.allowed_networks for a in (address, mapped) if a):
                return address
        raise ImageFetchError(
            "image host refused: it resolves to a private, loopback, link-local or reserved address "
            "(allow it with LENSGUARD_ALLOWED_IMAGE_NETWORKS)"
        )

    # fetching ----------------------------------------------------------------------------------------
    def fetch(
        self, url: str, task_id: int | None = None, project: str | None = None, deadline: float | None = None
    ) -> bytes:
        target = self.resolve(url, task_id, project)
        for hop in range(2):
            result = self._fetch_target(target, deadline)
            if isinstance(result, bytes):
                return result
            if hop == 1:
                break
            target = self._redirect_target(target, result)
        raise ImageFetchError("image unavailable: more than one redirect")

    def _redirect_target(self, previous: Target, location: str) -> Target:
        try:
            absolute = urljoin(previous.source or previous.url, location)
        except ValueError:
            raise ImageFetchError("image unavailable: invalid redirect") from None
        target = self.resolve(absolute)
        if target.to_label_studio and not previous.to_label_studio:
            raise ImageFetchError("image refused: a redirect from another host to Label Studio")
        return target

    def _fetch_target(self, target: Target, deadline: float | None) -> bytes | str:
        """The image bytes, or the location of the one redirect hop allowed."""
        for attempt in range(2):
            headers = {}
            if target.to_label_studio and self.auth is not None:
                try:
                    headers = self.auth.header()
                except LabelStudioAuthError as exc:
                    raise ImageFetchError(str(exc)) from exc
            if target.host_header:
                headers["Host"] = target.host_header
            try:
                return self._download(target, headers, deadline)
            except _Unauthorized:
                if attempt == 0 and self.auth is not None and target.to_label_studio:
                    self.auth.invalidate()
                    continue
                if target.to_label_studio:
                    raise ImageFetchError(
                        "Label Studio refused the image: set LENSGUARD_LABEL_STUDIO_API_KEY to a valid token"
                    ) from None
                raise ImageFetchError("image refused by its host") from None
        raise AssertionError("unreachable")

    def _download(self, target: Target, headers: dict[str, str], deadline: float | None) -> bytes | str:
        timeout = self.timeout
        if deadline is not None:
            timeout = min(timeout, deadline - time.monotonic())
            if timeout <= 0:
                raise ImageFetchError("image not fetched: the request's time budget ran out")
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
        until = time.monotonic() + timeout
        try:
            with self._client.stream(
                "GET", target.url, headers=headers, timeout=timeout, extensions=extensions
            ) as response:
                if response.status_code in (401, 403):
                    raise _Unauthorized
                if response.status_code in REDIRECTS and response.headers.get("location"):
                    return response.headers["location"]
                if response.status_code != 200:
                    raise ImageFetchError("image unavailable: its host did not serve it")
                declared = response.headers.get("content-length")
                if declared is not None and (not declared.strip().isdigit() or int(declared) > self.max_bytes):
                    raise ImageFetchError(f"image unavailable: over the {self.max_bytes} byte limit or size unknown")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise ImageFetchError(f"image unavailable: over the {self.max_bytes} byte limit")
                    if time.monotonic() > until:
                        raise ImageFetchError("image unavailable: its host is too slow")
                    chunks.append(chunk)
                return b"".join(chunks)
        except (httpx.HTTPError, httpx.InvalidURL, ValueError, UnicodeError, OSError) as exc:
            raise ImageFetchError(f"image unavailable: {_reason(exc)}") from None

    def fetch_many(
        self,
        urls: Sequence[str],
        task_ids: Sequence[int | None] | None = None,
        project: str | None = None,
        deadline: float | None = None,
    ) -> list[bytes | Exception]:
        """Each URL's bytes or error, in order; at most `per_request_threads` of the shared pool's threads at once,
        so one slow batch cannot hold every thread; URLs not started by `deadline` get a time-budget error."""
        ids = list(task_ids) if task_ids is not None else [None] * len(urls)
        results: list[bytes | Exception | None] = [None] * len(urls)

        def one(index: int) -> None:
            try:
                results[index] = self.fetch(urls[index], ids[index], project, deadline)
            except ImageFetchError as exc:
                results[index] = exc
            except Exception as exc:  # one task's surprise never fails the batch
                results[index] = ImageFetchError(f"image unavailable: {exc.__class__.__name__}")

        pending: set[Future] = set()
        for index in range(len(urls)):
            if deadline is not None and time.monotonic() > deadline:
                results[index] = ImageFetchError("image not fetched: the request's time budget ran out")
                continue
            if len(pending) >= self.per_request_threads:
                _, pending = wait(pending, return_when=FIRST_COMPLETED)
            pending.add(self._pool.submit(one, index))
        wait(pending)
        return [r if r is not None else ImageFetchError("image unavailable") for r in results]

    @property
    def closed(self) -> bool:
        return self._client.is_closed

    def close(self) -> None:
        """Ends the HTTP client's connections and the thread pool (running fetches finish first)."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError | OSError):
        return "could not connect"
    return "the transfer failed"


class _Unauthorized(Exception):
    pass
