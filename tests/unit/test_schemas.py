import pytest
from pydantic import ValidationError

from yoloq.schemas import ImageRef, InferenceParams, JobCreate, JobStatus


def test_params_defaults_match_ultralytics() -> None:
    params = InferenceParams()
    # imgsz None: the model's training size, as Ultralytics predicts with .pt weights.
    assert (params.conf, params.iou, params.imgsz, params.max_det, params.classes) == (
        0.25,
        0.7,
        None,
        300,
        None,
    )


@pytest.mark.parametrize(
    "bad",
    [
        {"conf": 1.5},
        {"conf": -0.1},
        {"iou": 2},
        {"imgsz": 500},
        {"imgsz": 0},
        {"max_det": 0},
        {"classes": [-1]},
        {"classes": ["person"]},
        {"unknown": 1},
    ],
)
def test_params_refuse_out_of_range(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        InferenceParams.model_validate(bad)


def test_image_ref_key_length() -> None:
    ImageRef(bucket="images", key="k" * 1024)
    with pytest.raises(ValidationError):
        ImageRef(bucket="images", key="k" * 1025)
    with pytest.raises(ValidationError):
        ImageRef(bucket="images", key="")
    with pytest.raises(ValidationError, match="1024 bytes"):
        ImageRef(bucket="images", key="é" * 600)  # 600 characters, 1200 bytes


@pytest.mark.parametrize(
    ("key", "says"),
    [("a/\x00b.jpg", "control"), ("a/\nb.jpg", "control"), ("a/../b.jpg", "'..'"), ("..", "'..'")],
)
def test_image_ref_refuses_unsafe_keys(key: str, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        ImageRef(bucket="images", key=key)


def test_image_ref_allows_dots_inside_names() -> None:
    assert ImageRef(bucket="images", key="cam..1/frame...jpg").key == "cam..1/frame...jpg"


@pytest.mark.parametrize("bucket", ["ab", "Images", "-images", "images_1", "a" * 64])
def test_image_ref_bucket_names_follow_s3_rules(bucket: str) -> None:
    with pytest.raises(ValidationError):
        ImageRef(bucket=bucket, key="a.jpg")


def test_job_needs_at_least_one_image() -> None:
    with pytest.raises(ValidationError):
        JobCreate(images=[])


def test_job_refuses_urls_instead_of_refs() -> None:
    with pytest.raises(ValidationError):
        JobCreate.model_validate({"images": [{"url": "http://169.254.169.254/latest"}]})


def test_final_statuses() -> None:
    assert {s for s in JobStatus if s.is_final} == {
        JobStatus.SUCCEEDED,
        JobStatus.PARTIAL,
        JobStatus.FAILED,
        JobStatus.CANCELLED,
    }
