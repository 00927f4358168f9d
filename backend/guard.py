"""The ASGI gate in front of every route: credentials and the body size are checked before any body is read or
parsed, so an anonymous or oversized request costs a header's worth of work."""

from __future__ import annotations

import json

from backend.auth import CHALLENGE, refusal

OPEN_PATHS = frozenset({"/health"})


async def _answer(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = scope["app"].state.serving.settings
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), value)
        if scope["path"] not in OPEN_PATHS:
            why = refusal(headers.get(b"authorization", b"").decode("latin-1"), settings)
            if why is not None:
                await _answer(send, 401, why, [(b"www-authenticate", CHALLENGE.encode())])
                return
        limit = settings.max_request_bytes
        declared = headers.get(b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _answer(send, 400, "malformed Content-Length")
                return
            if int(declared) > limit:
                await _answer(send, 413, f"request body over the {limit} byte limit (LENSGUARD_MAX_REQUEST_BYTES)")
                return
        body, more = bytearray(), True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > limit:
                await _answer(send, 413, f"request body over the {limit} byte limit (LENSGUARD_MAX_REQUEST_BYTES)")
                return
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
