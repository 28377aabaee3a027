"""Reading upload bodies for `fracture-edge serve`: bounded in size, in time and in how many at once.

A request body must arrive whole within `timeout_s` (a slow sender gets 408 and its connection is closed),
at most `max_receiving` bodies are read at once (the next gets 503), so slow clients can neither hold the
model queue (a request joins it only once its body is in) nor make the server hold unbounded memory
(at most max_receiving x limit bytes are being received).
"""
from __future__ import annotations

from dataclasses import dataclass, field

CLOSE = {"Connection": "close"}


class ApiError(Exception):
    """A request the server refuses: the HTTP status, the message for {"error": ...} and extra headers."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


@dataclass
class UploadReader:
    limit: int                  # bytes
    timeout_s: float
    max_receiving: int
    receiving: int = field(default=0)     # bodies being read now (touched only on the event loop)

    async def read(self, request) -> bytes:
        """The whole body, or ApiError 503 (too many being received), 413, 408 or 400 (client went away)."""
        import anyio
        from starlette.requests import ClientDisconnect

        self._check_declared(request.headers.get("content-length"))
        if self.receiving >= self.max_receiving:
            raise ApiError(503, f"busy: {self.max_receiving} uploads being received, try again shortly",
                           {"Retry-After": "1"})
        self.receiving += 1
        try:
            with anyio.fail_after(self.timeout_s):
                return await self._collect(request)
        except TimeoutError:
            raise ApiError(408, f"upload too slow: the body did not arrive within {self.timeout_s:g} s",
                           CLOSE) from None
        except ClientDisconnect:
            raise ApiError(400, "the client went away during the upload", CLOSE) from None
        finally:
            self.receiving -= 1

    def _check_declared(self, declared: str | None) -> None:
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            raise ApiError(413, f"upload too large: {declared[:40]} bytes, limit {self.limit} bytes", CLOSE)

    async def _collect(self, request) -> bytes:
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self.limit:
                raise ApiError(413, f"upload too large: over the limit of {self.limit} bytes", CLOSE)
            chunks.append(chunk)
        return b"".join(chunks)
