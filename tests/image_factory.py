"""Image bytes of every kind the tests feed the service, good and bad."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt


def picture(width: int, height: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    """A smooth gradient with a few filled shapes: compresses like a photo, not like noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.zeros((height, width, 3), np.uint8)
    image[..., 0] = (x * 255 // max(1, width - 1)).astype(np.uint8)
    image[..., 1] = (y * 255 // max(1, height - 1)).astype(np.uint8)
    image[..., 2] = rng.integers(0, 255)
    for _ in range(3):
        center = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.circle(image, center, int(rng.integers(10, 60)), color, -1)
    return image


def encode(image: npt.NDArray[Any], ext: str) -> bytes:
    ok, data = cv2.imencode(ext, image)
    assert ok
    return bytes(data.tobytes())


def jpeg(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    return encode(picture(width, height, seed), ".jpg")


def png(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    return encode(picture(width, height, seed), ".png")


def gray_png(width: int = 320, height: int = 240) -> bytes:
    return encode(cv2.cvtColor(picture(width, height), cv2.COLOR_BGR2GRAY), ".png")


def rgba_png(width: int = 320, height: int = 240) -> bytes:
    image = cv2.cvtColor(picture(width, height), cv2.COLOR_BGR2BGRA)
    image[..., 3] = 200
    return encode(image, ".png")


def png16(width: int = 320, height: int = 240) -> bytes:
    return encode(picture(width, height).astype(np.uint16) * 257, ".png")


def truncated_jpeg() -> bytes:
    data = jpeg(640, 480)
    return data[: len(data) // 2]


def html() -> bytes:
    return b"<!doctype html><html><body>Access denied</body></html>"


def random_bytes(n: int = 4096, seed: int = 1) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _pillow(image: npt.NDArray[np.uint8], fmt: str, mode: str = "RGB", **options: Any) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(image[..., ::-1]).convert(mode).save(out, fmt, **options)
    return out.getvalue()


def cmyk_jpeg(width: int = 320, height: int = 240) -> bytes:
    return _pillow(picture(width, height), "JPEG", "CMYK")


def tiff(width: int = 320, height: int = 240) -> bytes:
    return _pillow(picture(width, height), "TIFF")


def bmp(width: int = 320, height: int = 240) -> bytes:
    return _pillow(picture(width, height), "BMP")


def animated(fmt: str, width: int = 320, height: int = 240) -> bytes:
    """A two-frame GIF or WebP: the first frame is ``picture``, the second its negative."""
    from PIL import Image

    first = picture(width, height)
    frames = [Image.fromarray(first[..., ::-1]), Image.fromarray(255 - first[..., ::-1])]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:])
    return out.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny, valid-looking PNG whose header claims ``width`` x ``height``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
