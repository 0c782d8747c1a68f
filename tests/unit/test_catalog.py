"""Model references, aliases and splits: the catalog's pure rules."""

from __future__ import annotations

import uuid

import pytest

from yoloq.catalog import Alias, CatalogError, ModelReference


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("parts-seg", ModelReference("parts-seg")),
        ("parts-seg:7", ModelReference("parts-seg", version=7)),
        ("parts-seg@production", ModelReference("parts-seg", alias="production")),
        ("yolov8n.pt", ModelReference("yolov8n.pt")),
    ],
)
def test_references_parse_and_print_back(text: str, parsed: ModelReference) -> None:
    assert ModelReference.parse(text) == parsed and str(parsed) == text


@pytest.mark.parametrize("text", ["", "Upper", "a:0", "a:x", "a@", "a:1@b", "-a", "a/b", "a" * 64])
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(CatalogError):
        ModelReference.parse(text)


@pytest.mark.parametrize("text", ["", "7:", "7,7", "a", "7:90,x:10", "0"])
def test_bad_alias_targets_are_refused(text: str) -> None:
    with pytest.raises(CatalogError):
        Alias.parse(text)


def test_a_split_gives_each_version_its_share_and_a_job_always_the_same() -> None:
    alias = Alias.parse("7:90,8:10")
    assert str(alias) == "7:90,8:10" and alias.versions == [7, 8]
    jobs = [uuid.uuid4().hex for _ in range(20_000)]
    share = sum(alias.choose(job) == 8 for job in jobs) / len(jobs)
    assert 0.09 <= share <= 0.11
    assert all(alias.choose(job) == alias.choose(job) for job in jobs[:100])
    assert {Alias.parse("3").choose(job) for job in jobs[:100]} == {3}
