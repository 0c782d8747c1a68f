import pytest

from yoloq.chunking import split_into_chunks
from yoloq.schemas import ImageRef, InferenceParams


def _refs(n: int) -> list[ImageRef]:
    return [ImageRef(bucket="images", key=f"{i}.jpg") for i in range(n)]


@pytest.mark.parametrize(("n", "size", "sizes"), [(10, 4, [4, 4, 2]), (8, 4, [4, 4]), (1, 16, [1])])
def test_chunks_cover_every_image_once_in_order(n: int, size: int, sizes: list[int]) -> None:
    images = _refs(n)
    chunks = split_into_chunks("j" * 32, "m", images, InferenceParams(), size)
    assert [len(c.images) for c in chunks] == sizes
    assert [c.chunk for c in chunks] == list(range(len(sizes)))
    assert [ref for c in chunks for ref in c.images] == images
    for chunk in chunks:
        assert images[chunk.start] == chunk.images[0]


def test_chunks_carry_the_job_and_params() -> None:
    params = InferenceParams(conf=0.5)
    chunks = split_into_chunks("abc", "m", _refs(3), params, 2)
    assert all(c.job_id == "abc" and c.model == "m" and c.params == params for c in chunks)


def test_chunk_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        split_into_chunks("abc", "m", _refs(3), InferenceParams(), 0)
