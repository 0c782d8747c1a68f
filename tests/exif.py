"""Adding an EXIF orientation tag to JPEG bytes, as phone and camera images carry."""

from __future__ import annotations

import struct


def with_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The same JPEG with an APP1 EXIF segment holding one tag: Orientation (0x0112)."""
    assert jpeg[:2] == b"\xff\xd8", "not a JPEG"
    entry = struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0)  # SHORT, count 1, padded
    ifd = struct.pack("<H", 1) + entry + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    segment = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + segment + jpeg[2:]
