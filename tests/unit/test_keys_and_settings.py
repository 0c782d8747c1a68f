import pytest

from yoloq import keys
from yoloq.settings import Settings


def test_result_parts_sort_in_chunk_order() -> None:
    parts = [keys.result_part_key("j", n, 1) for n in (10, 2, 100, 1)]
    assert sorted(parts) == [keys.result_part_key("j", n, 1) for n in (1, 2, 10, 100)]
    # Two deliveries of one chunk write two parts, never one over the other.
    assert keys.result_part_key("j", 3, 1) != keys.result_part_key("j", 3, 2)


def test_s3_layout_is_per_job() -> None:
    assert keys.results_key("abc") == "jobs/abc/results.jsonl"
    assert keys.manifest_key("abc") == "jobs/abc/manifest.json"
    assert keys.result_part_key("abc", 3, 2) == "jobs/abc/parts/000003-2.jsonl"
    assert keys.input_page_key("abc", 1) == "jobs/abc/inputs/000001.jsonl"


def test_redis_keys_carry_the_prefix() -> None:
    names = keys.RedisKeys("pfx")
    for key in (
        names.job("a"),
        names.job_items("a"),
        names.job_chunks_done("a"),
        names.workers(),
        names.worker("gpu0@h"),
    ):
        assert key.startswith("pfx:")
    assert len({names.job("a"), names.job_items("a"), names.job_chunks_done("a")}) == 3


def test_job_ids_are_uuid4_hex_only() -> None:
    assert keys.JOB_ID_PATTERN.fullmatch("0123456789abcdef0123456789abcdef")
    assert not keys.JOB_ID_PATTERN.fullmatch("../../etc/passwd")


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLOQ_INPUT_BUCKETS", "cams, line-3 ,")
    monkeypatch.setenv("YOLOQ_UPLOADS_BUCKET", "ups")
    monkeypatch.setenv("YOLOQ_MODEL", "s3://models/detectors/factory-v3.pt")
    monkeypatch.setenv("YOLOQ_CHUNK_SIZE", "32")
    settings = Settings()
    assert settings.input_buckets == ["cams", "line-3"]
    assert settings.queue_model_name == "factory-v3"
    assert keys.queue_name(settings.queue_model_name) == "yoloq.infer.factory-v3"
    assert settings.chunk_size == 32


def test_settings_refuse_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLOQ_CHUNK_SIZE", "0")
    with pytest.raises(ValueError, match="chunk_size"):
        Settings()


def test_explicit_model_name_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("YOLOQ_MODEL", "/models/a.pt")
    monkeypatch.setenv("YOLOQ_MODEL_NAME", "traffic")
    assert Settings().queue_model_name == "traffic"


@pytest.mark.parametrize(
    ("soft", "hard", "visibility"),
    [("900", "600", "3600"), ("600", "900", "800"), ("600", "600", "3600")],
)
def test_chunk_limits_must_be_in_order(
    monkeypatch: pytest.MonkeyPatch, soft: str, hard: str, visibility: str
) -> None:
    monkeypatch.setenv("YOLOQ_CHUNK_SOFT_LIMIT_S", soft)
    monkeypatch.setenv("YOLOQ_CHUNK_HARD_LIMIT_S", hard)
    monkeypatch.setenv("YOLOQ_VISIBILITY_TIMEOUT_S", visibility)
    with pytest.raises(ValueError, match=r"YOLOQ_CHUNK_SOFT_LIMIT_S .* < YOLOQ_CHUNK_HARD_LIMIT_S"):
        Settings()


def test_default_chunk_limits_are_in_order() -> None:
    settings = Settings()
    assert settings.chunk_soft_limit_s < settings.chunk_hard_limit_s
    assert settings.chunk_hard_limit_s < settings.visibility_timeout_s
