"""One webhook POST to a checked address: short timeouts, one hard deadline, no redirects, a capped answer.

The receiver is untrusted: the whole attempt (connect, TLS, headers, body) ends within twice the timeout
(:mod:`batchq.webhooks.deadline`), its answer is read only up to ``MAX_ANSWER_BYTES`` (kept for the delivery log,
never parsed), a redirect is a failure (never followed), and ``trust_env=False`` keeps environment proxies out of
the path.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpcore
import httpx

from batchq.webhooks.deadline import AttemptDeadline
from batchq.webhooks.targets import Resolver, Target, WebhookTargetError, resolve_target, system_resolver

#: Bytes of the receiver's answer kept (for the delivery log).
MAX_ANSWER_BYTES = 2048
#: Sent with every delivery.
USER_AGENT = "batchq-webhooks/1.0"


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    """The receiver's HTTP status; None when no answer came (refused target, connect error, timeout)."""
    error: str | None
    """Why it failed without a status, or a short note; None on an answer."""
    answer: str
    """The start of the receiver's answer body (untrusted text, for the log)."""
    retry_after_s: float | None = None
    """The receiver's Retry-After, in seconds, when it sent a usable one."""
    permanent: bool = False
    """True when retrying cannot help (the URL is refused)."""

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post_webhook(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    timeout_s: float,
    resolver: Resolver = system_resolver,
    transport: httpx.BaseTransport | None = None,
) -> AttemptResult:
    """Resolve and check ``url`` again (its DNS may have changed), then POST ``body`` to the checked address."""
    try:
        target = resolve_target(url, allow_private=allow_private, resolver=resolver)
    except WebhookTargetError as exc:
        return AttemptResult(None, f"refused: {exc}", "", permanent=True)
    return _post(target, body, headers, timeout_s=timeout_s, transport=transport)


def _post(
    target: Target, body: bytes, headers: dict[str, str], *, timeout_s: float, transport: httpx.BaseTransport | None
) -> AttemptResult:
    request_headers = {
        "host": target.host_header,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "accept-encoding": "identity",  # the answer is read raw (no decompression of untrusted bytes)
        **headers,
    }
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0), pool=1.0)
    with AttemptDeadline(2 * timeout_s) as deadline:
        try:
            with httpx.Client(
                timeout=timeout, follow_redirects=False, trust_env=False, transport=transport or deadline.transport()
            ) as client:
                request = client.build_request(
                    "POST", target.connect_url, content=body, headers=request_headers, extensions=extensions
                )
                response = client.send(request, stream=True)
                try:
                    answer = _read_answer(response, deadline)
                finally:
                    response.close()
                return AttemptResult(
                    response.status_code,
                    None,
                    answer.decode("utf-8", "replace"),
                    retry_after_s=_retry_after(response.headers.get("retry-after")),
                )
        except Exception as exc:  # noqa: BLE001 - whatever the receiver does (bad TLS, garbage HTTP) is a failed attempt
            return AttemptResult(None, _failure_note(exc, deadline), "")


def _read_answer(response: httpx.Response, deadline: AttemptDeadline) -> bytearray:
    """The start of the answer, for the log. A body cut off by the deadline is no failure: its status came."""
    answer = bytearray()
    try:
        for chunk in response.iter_raw():
            answer += chunk[: MAX_ANSWER_BYTES - len(answer)]
            if len(answer) >= MAX_ANSWER_BYTES:
                break  # enough for the log; closing the stream drops the rest
    except Exception:
        if not deadline.expired:
            raise
    return answer


def _failure_note(exc: Exception, deadline: AttemptDeadline) -> str:
    """What the delivery log says of an attempt without an answer."""
    if deadline.expired:
        return f"deadline: no complete answer within {deadline.seconds:g} s"
    if isinstance(exc, httpx.TimeoutException | httpcore.TimeoutException):
        return "timeout"
    return f"{type(exc).__name__}: {str(exc)[:200]}"


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if 0 <= seconds < 1e7 else None
