"""SSRF checks of webhook URLs, and the one POST to the checked address (httpx.MockTransport stands in)."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from batchq.webhooks.schedule import JITTER, RETRY_DELAYS_S, retry_delay
from batchq.webhooks.targets import WebhookTargetError, is_public, resolve_target
from batchq.webhooks.transport import MAX_ANSWER_BYTES, post_webhook

DENIED = [
    "10.0.0.1", "172.16.5.4", "192.168.1.1", "127.0.0.1", "0.0.0.0", "169.254.169.254", "100.64.0.1",
    "224.0.0.1", "240.0.0.1", "255.255.255.255", "198.18.0.1", "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254",
    "ff02::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001:db8::1",
    # the rest of IANA's IPv6 special-purpose registry: site-local (deprecated), discard-only, dummy prefix,
    # Teredo, benchmarking, ORCHID(v2), local-use NAT64, documentation (3fff::/20), SRv6 SIDs, IPv4-compatible
    # and IPv4-translated forms
    "fec0::1", "feff:ffff::1", "100::1", "100:0:0:1::1", "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "2001:2::1", "2001:10::1", "2001:20::1", "64:ff9b:1::1", "3fff::1", "5f00::1", "::7f00:1", "::ffff:0:a00:1",
]  # fmt: skip
ALLOWED = ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", DENIED)
def test_non_public_addresses_are_denied(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_are_allowed(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


def resolver_for(mapping: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in mapping:
            raise OSError("no such host")
        return mapping[host]

    return resolve


def test_private_literal_is_refused_unless_allowed() -> None:
    with pytest.raises(WebhookTargetError, match="10.0.0.1"):
        resolve_target("http://10.0.0.1/", allow_private=False)
    target = resolve_target("http://10.0.0.1/hook?x=1", allow_private=True)
    assert target.connect_url == "http://10.0.0.1:80/hook?x=1" and target.host_header == "10.0.0.1"


def test_every_resolved_address_is_checked() -> None:
    # Given a name with one public and one private address (a rebinding setup)
    resolve = resolver_for({"mixed.example": ["93.184.215.14", "10.1.2.3"], "ok.example": ["93.184.215.14"]})
    with pytest.raises(WebhookTargetError, match="public addresses"):
        resolve_target("https://mixed.example/", allow_private=False, resolver=resolve)
    target = resolve_target("https://OK.example:8443/h", allow_private=False, resolver=resolve)
    assert (target.address, target.host, target.host_header) == ("93.184.215.14", "ok.example", "ok.example:8443")
    with pytest.raises(WebhookTargetError, match="public addresses"):
        resolve_target("https://nowhere.example/", allow_private=False, resolver=resolve)


def test_refusals_of_a_name_never_quote_what_it_resolved_to() -> None:
    # Given names that resolve to a private address, to a mix, or not at all (a tenant probing internal names)
    resolve = resolver_for({"vllm.internal": ["10.9.8.7"], "mixed.example": ["93.184.215.14", "fd00::7"]})
    messages = []
    for url in ("http://vllm.internal/", "http://mixed.example/", "http://nowhere.internal/"):
        with pytest.raises(WebhookTargetError) as refused:
            resolve_target(url, allow_private=False, resolver=resolve)
        messages.append(str(refused.value))
    # Then one message for all three: no address, no resolver error, nothing that tells them apart
    assert len(set(messages)) == 1, messages
    assert not any(leak in messages[0] for leak in ("10.9.8.7", "fd00", "resolves to", "Errno", "no such host"))
    # And a literal address the tenant wrote may be named back to them
    with pytest.raises(WebhookTargetError, match="10.0.0.1"):
        resolve_target("http://10.0.0.1/", allow_private=False, resolver=resolve)


@pytest.mark.parametrize(
    "url",
    ["ftp://93.184.215.14/", "http:///x", "http://user:pw@93.184.215.14/", "http://93.184.215.14:99999/", "x", "",
     "http://93.184.215.14/a b", "http://93.184.215.14/#frag"],
)  # fmt: skip
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(WebhookTargetError):
        resolve_target(url, allow_private=True)


def test_post_goes_to_the_checked_address_with_host_and_sni() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=httpx.ByteStream(b"x" * (MAX_ANSWER_BYTES * 4)))

    resolve = resolver_for({"hooks.example": ["93.184.215.14"]})
    result = post_webhook(
        "https://hooks.example/in",
        b"{}",
        {"webhook-id": "msg_1"},
        allow_private=False,
        timeout_s=2,
        resolver=resolve,
        transport=httpx.MockTransport(handler),
    )
    assert result.ok and len(result.answer) == MAX_ANSWER_BYTES
    request = seen[0]
    assert str(request.url) == "https://93.184.215.14/in"
    assert request.headers["host"] == "hooks.example" and request.headers["webhook-id"] == "msg_1"
    assert request.extensions["sni_hostname"] == "hooks.example"


def test_redirect_is_a_failure_and_not_followed() -> None:
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        location = {"location": "http://169.254.169.254/latest/meta-data"}
        return httpx.Response(302, headers=location, stream=httpx.ByteStream(b""))

    result = post_webhook(
        "http://93.184.215.14/", b"{}", {}, allow_private=False, timeout_s=2, transport=httpx.MockTransport(handler)
    )
    assert not result.ok and result.status_code == 302 and calls == ["http://93.184.215.14/"]


def test_refused_target_is_permanent_and_sends_nothing() -> None:
    result = post_webhook("http://127.0.0.1:1/", b"{}", {}, allow_private=False, timeout_s=1)
    assert result.permanent and result.status_code is None and "refused" in (result.error or "")


def test_first_three_retries_come_within_a_minute_then_grow() -> None:
    worst = sum(d * (1 + JITTER) for d in RETRY_DELAYS_S[:3])
    assert worst < 60
    delays = [retry_delay(n) for n in range(1, 10)]
    assert all(d > 0 for d in delays)
    assert RETRY_DELAYS_S[3] * (1 - JITTER) > 60 and list(RETRY_DELAYS_S) == sorted(RETRY_DELAYS_S)
    assert retry_delay(1, retry_after_s=120) >= 120 and retry_delay(1, retry_after_s=10**6) <= 3600


def test_idn_host_goes_out_in_ascii() -> None:
    seen: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        seen.append(host)
        return ["93.184.215.14"]

    target = resolve_target("https://bücher.example/x", allow_private=False, resolver=resolve)
    assert seen == ["xn--bcher-kva.example"] and target.host_header == "xn--bcher-kva.example"
