from collections.abc import Callable

import pytest

from tests import image_factory as make
from workers.images import ImageError, decode_image
from yoloq.schemas import ItemErrorCode


@pytest.mark.parametrize(
    "make_bytes",
    [make.jpeg, make.png, make.gray_png, make.rgba_png, make.png16],
    ids=["jpeg", "png", "gray", "rgba", "png16"],
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
