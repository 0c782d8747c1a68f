"""Decoding and validating image bytes, with a stable error code for each way it fails."""

from __future__ import annotations

import io

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image as PillowImage

from yoloq.schemas import ItemErrorCode

Image = npt.NDArray[np.uint8]
"""An 8-bit BGR image, height x width x 3: what Ultralytics takes from OpenCV."""

# Leading bytes of the formats OpenCV decodes. Bytes that start with none of these are
# "not an image"; bytes that do but fail to decode are a damaged image.
_SIGNATURES: tuple[tuple[int, bytes], ...] = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (0, b"BM"),
    (0, b"II*\x00"),  # TIFF, little-endian
    (0, b"MM\x00*"),  # TIFF, big-endian
    (8, b"WEBP"),
    (4, b"ftypavif"),
    (0, b"\x00\x00\x00\x0cjP  "),  # JPEG 2000
)


# The pixel limit is ours (decode_image's max_pixels); Pillow's own would refuse to even
# report the size of a large image.
PillowImage.MAX_IMAGE_PIXELS = None


def header_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header alone (nothing is decoded); None if unreadable."""
    try:
        with PillowImage.open(io.BytesIO(data)) as image:
            width, height = image.size
            return width, height
    except Exception:
        return None


class ImageError(Exception):
    def __init__(self, code: ItemErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def looks_like_image(data: bytes) -> bool:
    return any(data[offset : offset + len(magic)] == magic for offset, magic in _SIGNATURES)


def decode_image(data: bytes, max_pixels: int | None = None) -> Image:
    """Decode to 8-bit BGR the way ``cv2.imread`` (and so Ultralytics) would.

    EXIF orientation is applied (OpenCV's default), so boxes refer to the image as a
    viewer shows it. Grayscale, alpha, 16-bit and CMYK images are converted to 8-bit BGR;
    an animated GIF or WebP gives its first frame. An image whose header claims more than
    ``max_pixels`` is refused before anything is decoded.
    """
    if not data:
        raise ImageError(ItemErrorCode.EMPTY, "the object is empty (0 bytes)")
    if not looks_like_image(data):
        raise ImageError(
            ItemErrorCode.NOT_AN_IMAGE,
            f"the object is not an image this service decodes (it starts with {data[:8]!r}); "
            "send JPEG, PNG, BMP, TIFF, WebP or GIF",
        )
    size = header_size(data)
    if max_pixels is not None and size is not None and size[0] * size[1] > max_pixels:
        width, height = size
        raise ImageError(
            ItemErrorCode.TOO_MANY_PIXELS,
            f"the image header says {width}x{height} ({width * height / 1e6:.0f} megapixels); "
            f"the limit is {max_pixels / 1e6:.0f} megapixels (YOLOQ_MAX_PIXELS)",
        )
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageError(
            ItemErrorCode.DECODE_FAILED,
            f"the image could not be decoded ({len(data)} bytes): it is truncated or corrupt",
        )
    return image.astype(np.uint8, copy=False)
