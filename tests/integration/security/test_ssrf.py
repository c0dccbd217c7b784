"""SSRF through product images (issue 16): the image loader must not read internal services.

The image host is a real HTTP server on 127.0.0.1, which is exactly the kind of address
production refuses; ``production_netsafety`` turns the development allowance off and,
where a test needs a reachable "public" host, allow-lists it by host:port the way the
sandbox is allowed.
"""

from __future__ import annotations

import pytest

from config import netsafety
from marketplaces.adapters.images import load_image
from orchestration.steps import PermanentStepError, StepContext

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


def ctx(timeout: float = 10.0) -> StepContext:
    return StepContext(
        schema_name="test_alpha",
        job_id=1,
        marketplace="etsy",
        action="publish",
        product_id=1,
        params={},
        step_type="upload_images",
        step_order=2,
        attempt=1,
        timeout=timeout,
        outputs={},
    )


def test_a_loopback_image_url_is_refused(local_server, production_netsafety):
    local_server.routes["/secret.png"] = (200, {"Content-Type": "image/png"}, PNG)

    with pytest.raises(PermanentStepError, match="loopback"):
        load_image(ctx(), local_server.url("/secret.png"), marketplace="etsy")
    assert local_server.hits == []  # not even one request reached it


@pytest.mark.parametrize(
    "url, reason",
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/latest/", "metadata"),
        ("http://10.1.2.3/a.png", "private"),
        ("http://192.168.0.1/a.png", "private"),
        ("http://[::1]/a.png", "loopback"),
        ("http://[::ffff:127.0.0.1]/a.png", "loopback"),
        ("http://0.0.0.0/a.png", "unspecified"),
        ("http://100.64.0.1/a.png", "public"),
        ("http://224.0.0.1/a.png", "multicast"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("file:///etc/passwd", "http and https"),
        ("gopher://127.0.0.1:6379/_FLUSHALL", "http and https"),
        ("http://user:pw@img.example.com/a.png", "credentials"),
    ],
)
def test_internal_addresses_and_other_schemes_are_refused(url, reason, production_netsafety):
    with pytest.raises(PermanentStepError, match=reason):
        load_image(ctx(), url, marketplace="etsy")


def test_metadata_stays_refused_even_where_private_addresses_are_allowed(settings):
    settings.NETSAFETY_ALLOW_PRIVATE = True
    with pytest.raises(PermanentStepError, match="metadata"):
        load_image(ctx(), "http://169.254.169.254/latest/meta-data/", marketplace="etsy")


def test_a_redirect_to_an_internal_address_is_refused(local_server, production_netsafety):
    # The allowed host answers with a redirect to loopback on another port (say Redis).
    production_netsafety(f"127.0.0.1:{local_server.port}")
    local_server.routes["/cover.png"] = (302, {"Location": "http://127.0.0.1:6379/"}, b"")

    with pytest.raises(PermanentStepError, match="loopback"):
        load_image(ctx(), local_server.url("/cover.png"), marketplace="etsy")


def test_an_allowed_host_serves_its_image(local_server, production_netsafety):
    production_netsafety(f"127.0.0.1:{local_server.port}")
    local_server.routes["/a/cover.png"] = (200, {"Content-Type": "image/png"}, PNG)
    local_server.routes["/moved.png"] = (301, {"Location": "/a/cover.png"}, b"")

    image = load_image(ctx(), local_server.url("/moved.png"), marketplace="etsy")
    assert (image.content, image.content_type) == (PNG, "image/png")


def test_size_and_content_type_are_capped(local_server, production_netsafety, settings):
    production_netsafety(f"127.0.0.1:{local_server.port}")
    settings.IMAGE_MAX_BYTES = 1000
    local_server.routes["/big.png"] = (200, {"Content-Type": "image/png"}, b"x" * 5000)
    local_server.routes["/page.png"] = (200, {"Content-Type": "text/html"}, b"<html>")

    with pytest.raises(PermanentStepError, match="more than 1,000"):
        load_image(ctx(), local_server.url("/big.png"), marketplace="etsy")
    with pytest.raises(PermanentStepError, match="text/html, expected image/"):
        load_image(ctx(), local_server.url("/page.png"), marketplace="etsy")


def test_the_transport_checks_the_address_it_connects_to(local_server):
    """DNS rebinding: a name checked once (say while it resolved to a public address) is
    checked again when the connection is made, against the address actually used."""
    local_server.routes["/"] = (200, {"Content-Type": "text/plain"}, b"internal")
    url = f"http://localhost:{local_server.port}/"
    assert netsafety.check_url(url, allow_private=True)  # the earlier, lenient check

    with (
        netsafety.guarded_client(allow_private=False) as client,
        pytest.raises(netsafety.UnsafeURL, match="loopback"),
    ):
        client.get(url)
    assert local_server.hits == []


def test_check_url_returns_the_checked_addresses():
    assert [str(a) for a in netsafety.check_url("http://93.184.215.14/x")] == ["93.184.215.14"]
    with pytest.raises(netsafety.UnsafeURL):
        netsafety.check_url("http://127.0.0.1/", allow_private=False)
