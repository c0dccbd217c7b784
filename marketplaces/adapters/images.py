"""Image bytes for marketplaces that want uploads rather than URLs (Etsy, Vinted).

Products hold image URLs. Real ones are downloaded within the step's time budget
through ``config.netsafety`` (no private, loopback, link-local or metadata address,
checked again on every redirect and at connect time; at most ``IMAGE_MAX_BYTES``;
``image/*`` only), so a product URL cannot make a worker read an internal service.
Hosts under ``.test`` (RFC 2606, never resolvable; the demo fixtures use them)
get a small generated PNG instead, so the demo and tests need no image server.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from config import netsafety
from marketplaces.adapters import errors
from orchestration.steps import PermanentStepError, RetryableStepError, StepContext


@dataclass(frozen=True)
class Image:
    filename: str
    content: bytes
    content_type: str


def placeholder_png(seed: str, size: int = 8) -> bytes:
    """A valid ``size`` by ``size`` PNG in one colour derived from ``seed``."""
    r, g, b = hashlib.sha256(seed.encode()).digest()[:3]
    row = b"\x00" + bytes([r, g, b]) * size
    raw = zlib.compress(row * size)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def load_image(ctx: StepContext, url: str, *, marketplace: str) -> Image:
    """The image at ``url`` (or its placeholder), fetched within the step's remaining time."""
    parts = urlsplit(url)
    name = parts.path.rsplit("/", 1)[-1] or "image"
    host = parts.hostname or ""
    if host == "test" or host.endswith(".test"):
        return Image(
            filename=name.rsplit(".", 1)[0] + ".png",
            content=placeholder_png(url),
            content_type="image/png",
        )
    remaining = ctx.remaining()
    if remaining <= 0:
        raise errors.step_timeout(ctx, marketplace=marketplace, operation="download_image")
    try:
        # netsafety: http(s) only, public addresses only (checked at connect time, so
        # also after each redirect and against DNS rebinding), size and content-type caps.
        response = netsafety.fetch(
            url,
            timeout=remaining,
            max_bytes=settings.IMAGE_MAX_BYTES,
            content_types=["image/*"],
        )
    except netsafety.UnsafeURL as exc:
        raise PermanentStepError(
            f"image URL {url!r} refused: {exc}", detail={"step": ctx.step_type}
        ) from exc
    except netsafety.FetchRefused as exc:
        raise PermanentStepError(f"image refused: {exc}", detail={"step": ctx.step_type}) from exc
    except httpx.TimeoutException as exc:
        raise errors.step_timeout(ctx, marketplace=marketplace, operation="download_image") from exc
    except httpx.TransportError as exc:
        raise errors.network_error(
            ctx, marketplace=marketplace, operation="download_image", exc=exc
        ) from exc
    if not response.is_success:
        # The image host is not the marketplace: same classes, a message about the image.
        retryable = response.status_code >= 500 or response.status_code in errors.RETRYABLE_4XX
        error = RetryableStepError if retryable else PermanentStepError
        raise error(
            f"image {url} answered HTTP {response.status_code} in step {ctx.step_type!r}",
            detail={"step": ctx.step_type, "status": response.status_code},
        )
    return Image(
        filename=name,
        content=response.content,
        content_type=response.content_type.split(";", 1)[0].strip() or "image/png",
    )
