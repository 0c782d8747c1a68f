import pytest

from yoloq.webhooks import host_allowed, sign, verify


def test_signature_round_trip() -> None:
    body = b'{"id": "abc", "status": "succeeded"}'
    signature = sign("s3cret", 1_700_000_000, body)
    assert signature.startswith("sha256=")
    assert verify("s3cret", "1700000000", body, signature, now=1_700_000_010)


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now"),
    [
        ("other", "1700000000", b"{}", 1_700_000_000),  # wrong secret
        ("s3cret", "1700000001", b"{}", 1_700_000_000),  # timestamp changed
        ("s3cret", "1700000000", b"{ }", 1_700_000_000),  # body changed
        ("s3cret", "1700000000", b"{}", 1_700_001_000),  # too old: a replay
        ("s3cret", "soon", b"{}", 1_700_000_000),
    ],
)
def test_verify_refuses_anything_else(secret: str, timestamp: str, body: bytes, now: int) -> None:
    signature = sign("s3cret", 1_700_000_000, b"{}")
    assert not verify(secret, timestamp, body, signature, now=now)


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/yoloq", True),
        ("http://ci.example.com:8080/x", True),  # *.example.com
        ("https://example.com/x", False),  # the bare domain is not a subdomain
        ("https://evil.com/?x=hooks.example.com", False),
        ("https://hooks.example.com.evil.com/", False),
        ("http://169.254.169.254/latest/meta-data", False),
        ("file:///etc/passwd", False),
        ("https://user:pw@hooks.example.com/", False),
    ],
)
def test_only_listed_hosts(url: str, allowed: bool) -> None:
    assert host_allowed(url, ["hooks.example.com", "*.example.com"]) is allowed
