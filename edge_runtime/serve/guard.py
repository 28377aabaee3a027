"""HTTP-level guards of `fracture-edge serve`, one ASGI middleware in front of every route.

- Security headers on every response: a Content-Security-Policy that lets the page run only its own
  same-origin script and stylesheet (no inline script, no event-handler attributes, no other origin),
  `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
- Host check against DNS rebinding: without a token only requests whose Host header is a loopback name
  or address (localhost, 127.0.0.0/8, [::1], any port) or a name given with --allowed-host are served;
  with a token every Host is, unless --allowed-host narrows it. Others get 403 with {"error": "..."}.
- Framing: a request with both Content-Length and Transfer-Encoding is refused (400, connection closed),
  the classic request-smuggling ambiguity.
"""
from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer"}
_RAW_SECURITY_HEADERS = [(k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
_HOST_RE = re.compile(r"^(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?$")
_NAME_RE = re.compile(r"^[a-z0-9_-]+(?:\.[a-z0-9_-]+)*$")


def is_loopback(host: str) -> bool:
    """localhost or a loopback address (127.0.0.0/8, ::1); host has no port and no brackets."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(header: str) -> str | None:
    """The host part of a Host header, lower case, without port or brackets; None when malformed."""
    match = _HOST_RE.match(header.strip().lower())
    if not match:
        return None
    if match["v6"] is not None:
        try:
            return str(ipaddress.IPv6Address(match["v6"]))
        except ValueError:
            return None
    return match["name"][:-1] if match["name"].endswith(".") else match["name"]


def normalize_allowed_host(name: str) -> str:
    """An --allowed-host value as host_of would report it; ValueError with the reason when it is not a name."""
    value = name.strip().lower()
    value = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    value = value[:-1] if value.endswith(".") else value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        pass
    if not _NAME_RE.match(value) or len(value) > 253:
        raise ValueError(f"--allowed-host {name!r} is not a host name or address "
                         "(give it without scheme or port, e.g. pi.local)")
    return value


@dataclass(frozen=True)
class HostPolicy:
    """Which Host headers are served: loopback + `allowed`, or any when `any_host` (token set, no list)."""
    allowed: frozenset = frozenset()
    any_host: bool = False

    @classmethod
    def of(cls, token: str | None, allowed_hosts: tuple = ()) -> "HostPolicy":
        return cls(frozenset(normalize_allowed_host(h) for h in allowed_hosts), bool(token) and not allowed_hosts)

    def refusal(self, headers: list) -> str | None:
        """None when the request may be served, else the reason (for a 403)."""
        if self.any_host:
            return None
        values = [value.decode("latin-1") for name, value in headers if name == b"host"]
        if len(values) != 1:
            return f"{'no' if not values else 'more than one'} Host header: refused (DNS-rebinding guard)"
        host = host_of(values[0])
        if host is not None and (is_loopback(host) or host in self.allowed):
            return None
        served = "loopback names (localhost, 127.0.0.1, [::1])" + (
            " and " + ", ".join(sorted(self.allowed)) if self.allowed else "")
        return (f"Host {values[0][:100]!r} is not served here (DNS-rebinding guard): only {served}; "
                "add a name with --allowed-host")


def framing_refusal(headers: list) -> str | None:
    """None for an unambiguous body framing, else the reason (for a 400)."""
    names = {name for name, _ in headers}
    if b"content-length" in names and b"transfer-encoding" in names:
        return "both Content-Length and Transfer-Encoding: ambiguous request body, refused"
    return None


def with_security_headers(send):
    """Wrap an ASGI `send` so every response start carries SECURITY_HEADERS (replacing any of the same name)."""
    names = {name for name, _ in _RAW_SECURITY_HEADERS}

    async def send_with_headers(message):
        if message["type"] == "http.response.start":
            headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
            message = {**message, "headers": headers + _RAW_SECURITY_HEADERS}
        await send(message)

    return send_with_headers


async def send_json_error(send, status: int, message: str, close: bool = False) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class GuardMiddleware:
    """ASGI middleware: security headers, the Host policy and the framing rule, before any route runs."""

    def __init__(self, app, policy: HostPolicy):
        self.app, self.policy = app, policy

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = with_security_headers(send)
        headers = scope.get("headers") or []
        reason = self.policy.refusal(headers)
        if reason:
            await send_json_error(send, 403, reason)
            return
        reason = framing_refusal(headers)
        if reason:
            await send_json_error(send, 400, reason, close=True)
            return
        await self.app(scope, receive, send)
