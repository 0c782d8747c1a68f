"""Listing a prefix or reading a manifest a page at a time, from a cursor.

The cursor is all a planner keeps between pages (in the job's hash), so a planner that
dies resumes where the last counted page ended:

- a prefix: the last key listed, given back to S3 as ``StartAfter``. Unlike a
  continuation token it never expires and names a place any server understands.
- a manifest: ``offset:line``, the byte offset of the next line to read and its number.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field

from pydantic import ValidationError

from yoloq import keys
from yoloq.object_store import ObjectStore
from yoloq.schemas import ImageRef, ManifestSource, PlanSpec, PrefixSource

READ_BYTES = 1024 * 1024
"""A manifest is read this much at a time (one ranged GET)."""


@dataclass
class Listed:
    images: list[ImageRef] = field(default_factory=list)
    invalid: dict[int, str] = field(default_factory=dict)
    """Index in ``images`` -> why that manifest line names no image (its place in
    ``images`` holds a stand-in naming the line)."""
    cursor: str = ""
    exhausted: bool = False
    """Nothing is left after ``cursor``."""


def list_next(store: ObjectStore, spec: PlanSpec, cursor: str, most: int) -> Listed:
    """Up to ``most`` images after ``cursor``; fewer only if the source is exhausted."""
    if isinstance(spec.source, PrefixSource):
        return _list_prefix(store, spec.source, cursor, most)
    return _read_manifest(store, spec, spec.source, cursor, most)


def _list_prefix(store: ObjectStore, source: PrefixSource, cursor: str, most: int) -> Listed:
    listed = Listed(cursor=cursor)
    while len(listed.images) < most:
        # Never more keys than images wanted, so the cursor is exactly where this page ends.
        found, more = store.list_page(
            source.bucket, source.prefix, listed.cursor, most - len(listed.images)
        )
        for key in found:
            listed.cursor = key
            if key.lower().endswith(tuple(keys.IMAGE_SUFFIXES)):
                listed.images.append(ImageRef(bucket=source.bucket, key=key))
        if not more:
            listed.exhausted = True
            break
    return listed


def _read_manifest(
    store: ObjectStore, spec: PlanSpec, source: ManifestSource, cursor: str, most: int
) -> Listed:
    offset, line_number = (int(part) for part in (cursor or "0:1").split(":"))
    listed = Listed(cursor=f"{offset}:{line_number}")
    as_csv = source.key.lower().endswith(".csv")
    buffer = b""
    at_end = False
    while len(listed.images) < most:
        if b"\n" not in buffer and not at_end:
            data = store.get_range(source.bucket, source.key, offset + len(buffer), READ_BYTES)
            at_end = len(data) < READ_BYTES
            buffer += data
            continue
        if not buffer:
            listed.exhausted = True
            break
        line, newline, rest = buffer.partition(b"\n")
        if not newline and not at_end:
            continue  # a line longer than one read: read on
        buffer = rest
        offset += len(line) + len(newline)
        text = line.decode("utf-8", errors="replace").strip()
        if text:
            ref, why = _manifest_line(spec, source, text, as_csv, line_number)
            if why is not None:
                listed.invalid[len(listed.images)] = why
            listed.images.append(ref)
        line_number += 1
        listed.cursor = f"{offset}:{line_number}"
    if not buffer and at_end:
        listed.exhausted = True
    return listed


def _manifest_line(
    spec: PlanSpec, source: ManifestSource, text: str, as_csv: bool, number: int
) -> tuple[ImageRef, str | None]:
    """The image a line names, or a stand-in and why it names none."""
    stand_in = ImageRef(bucket=source.bucket, key=f"{source.key}#line={number}")
    try:
        if as_csv:
            fields = next(csv.reader([text]))
            bucket, key = (source.bucket, fields[0]) if len(fields) == 1 else fields[:2]
        else:
            entry = json.loads(text)
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                return stand_in, f"line {number}: not a JSON object with a string 'key'"
            bucket, key = entry.get("bucket", source.bucket), entry["key"]
        ref = ImageRef(bucket=bucket, key=key)
    except json.JSONDecodeError as error:
        return stand_in, f"line {number}: not JSON ({error.msg})"
    except ValidationError as error:
        reason = "; ".join(e["msg"] for e in error.errors())
        return stand_in, f"line {number}: not an image reference ({reason})"
    except (csv.Error, StopIteration) as error:
        return stand_in, f"line {number}: not a CSV line ({error})"
    if not spec.may_read(ref):
        return stand_in, f"line {number}: this API key may not read s3://{ref.bucket}/{ref.key}"
    return ref, None
