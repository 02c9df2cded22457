"""Security headers: a strict Content-Security-Policy on the dashboard, ``nosniff`` and no framing everywhere.

A plain ASGI middleware (not ``BaseHTTPMiddleware``): it only adds headers to the response's start message, so
streamed downloads and uploads pass through untouched.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: The dashboard runs only its own files: no inline script or style, no other origin, never inside a frame.
DASHBOARD_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

#: The JSON API and file contents never render as a page (a file opened in a browser runs nothing).
API_CSP = "default-src 'none'; frame-ancestors 'none'"

_COMMON = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)
DASHBOARD_HEADERS = (
    *_COMMON,
    ("content-security-policy", DASHBOARD_CSP),
    ("cross-origin-opener-policy", "same-origin"),
    # Revalidate every time (ETag): a new release's page and modules are never mixed with old cached ones.
    ("cache-control", "no-cache"),
)
API_HEADERS = (*_COMMON, ("content-security-policy", API_CSP))


class SecurityHeaders:
    """Adds the headers above to every HTTP response (those a handler set itself are kept)."""

    def __init__(self, app: ASGIApp, dashboard_path: str = "/dashboard") -> None:
        self.app = app
        self.dashboard_path = dashboard_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        dashboard = path == self.dashboard_path or path.startswith(self.dashboard_path + "/")
        extra = DASHBOARD_HEADERS if dashboard else API_HEADERS

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in extra:
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
