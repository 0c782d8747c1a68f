from collections.abc import Callable

import pytest

from tests import image_factory as make
from workers.images import ImageError, decode_image
from yoloq.schemas import ItemErrorCode


@pytest.mark.parametrize(
    "make_bytes",
    [
        make.jpeg,
        make.png,
        make.gray_png,
        make.rgba_png,
        make.png16,
        make.cmyk_jpeg,
        make.tiff,
        make.bmp,
        lambda: make.animated("GIF"),
        lambda: make.animated("WEBP"),
    ],
    ids=["jpeg", "png", "gray", "rgba", "png16", "cmyk", "tiff", "bmp", "gif", "webp"],
)
def test_decodes_to_8bit_bgr(make_bytes: Callable[[], bytes]) -> None:
    image = decode_image(make_bytes())
    assert image.shape == (240, 320, 3)
    assert image.dtype.name == "uint8"


def test_sixteen_bit_is_scaled_not_clipped() -> None:
    assert decode_image(make.png16()).max() > 200


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", ItemErrorCode.EMPTY),
        (make.html(), ItemErrorCode.NOT_AN_IMAGE),
        (make.random_bytes(), ItemErrorCode.NOT_AN_IMAGE),
        (make.truncated_jpeg(), ItemErrorCode.DECODE_FAILED),
        (make.png()[:300], ItemErrorCode.DECODE_FAILED),
    ],
    ids=["empty", "html", "random", "truncated-jpeg", "truncated-png"],
)
def test_bad_bytes_get_a_stable_code_and_a_message(data: bytes, code: ItemErrorCode) -> None:
    with pytest.raises(ImageError) as caught:
        decode_image(data)
    assert caught.value.code == code
    assert len(caught.value.message) > 10


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animations_give_their_first_frame(fmt: str) -> None:
    first = make.picture(320, 240)
    decoded = decode_image(make.animated(fmt))
    # The first frame, not its negative (lossy formats: compare loosely).
    assert abs(int(decoded.mean()) - int(first.mean())) < 30
    assert abs(int(decoded.mean()) - int((255 - first).mean())) > 30


def test_cmyk_colours_survive() -> None:
    decoded = decode_image(make.cmyk_jpeg()).astype(int)
    original = make.picture(320, 240).astype(int)
    assert abs(decoded - original).mean() < 12


def test_a_gigapixel_header_is_refused_before_decoding() -> None:
    bomb = make.png_claiming(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(ImageError) as caught:
        decode_image(bomb, max_pixels=100_000_000)
    assert caught.value.code == ItemErrorCode.TOO_MANY_PIXELS
    assert "100000x100000" in caught.value.message
    assert "YOLOQ_MAX_PIXELS" in caught.value.message


def test_images_under_the_pixel_limit_decode() -> None:
    assert decode_image(make.jpeg(320, 240), max_pixels=320 * 240).shape == (240, 320, 3)
    with pytest.raises(ImageError):
        decode_image(make.jpeg(320, 240), max_pixels=320 * 240 - 1)
