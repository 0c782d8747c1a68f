"""The client side of the ``yoloq`` command: submit, detect, status, results, workers."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from pathlib import Path

from yoloq import keys
from yoloq.client import Client
from yoloq.coco import to_coco
from yoloq.progress import JobProgress
from yoloq.results import ResultItem, detections_of
from yoloq.schemas import ImageRef, InferenceParams, ManifestSource, PrefixSource

DEFAULT_API = "http://127.0.0.1:8000"


def add_api_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api",
        default=os.environ.get("YOLOQ_API_URL", DEFAULT_API),
        help=f"the API's URL (YOLOQ_API_URL, default {DEFAULT_API})",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("YOLOQ_API_KEY"),
        help="the API key (YOLOQ_API_KEY; better there than on a command line)",
    )


def _client(args: argparse.Namespace) -> Client:
    return Client(args.api, api_key=args.api_key)


def local_images(paths: list[Path]) -> list[Path]:
    """Files as given, and the images inside directories (recursively, sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in keys.IMAGE_SUFFIXES)
        elif path.is_file():
            found.append(path)
        else:
            raise SystemExit(f"yoloq: {path} does not exist")
    return found


def s3_images(uri: str) -> list[ImageRef]:
    """Images under ``s3://bucket/prefix``, listed with this machine's S3 credentials."""
    from yoloq.object_store import ObjectStore
    from yoloq.settings import Settings

    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    store = ObjectStore.from_settings(Settings())
    found = store.list_keys(bucket, prefix, keys.IMAGE_SUFFIXES, most=sys.maxsize)
    return [ImageRef(bucket=bucket, key=key) for key in found]


def write_results(items: list[ResultItem], out: Path | None, fmt: str) -> None:
    if fmt == "coco":
        text = json.dumps(to_coco(items), indent=2) + "\n"
    else:
        text = "".join(item.model_dump_json() + "\n" for item in items)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


def _params(args: argparse.Namespace) -> InferenceParams:
    classes = [int(c) for c in args.classes.split(",")] if args.classes else None
    return InferenceParams(
        conf=args.conf,
        iou=args.iou,
        imgsz=args.imgsz,
        max_det=args.max_det,
        classes=classes,
        top_k=args.top_k,
    )


def _planned_source(args: argparse.Namespace) -> PrefixSource | ManifestSource | None:
    """A job the service lists itself, of any size: ``--manifest``, or one s3:// prefix
    alone."""
    if args.manifest:
        if args.sources:
            raise SystemExit("yoloq: give either --manifest or sources, not both")
        bucket, _, key = args.manifest.removeprefix("s3://").partition("/")
        return ManifestSource(bucket=bucket, key=key)
    if len(args.sources) == 1 and args.sources[0].startswith("s3://"):
        bucket, _, prefix = args.sources[0].removeprefix("s3://").partition("/")
        return PrefixSource(bucket=bucket, prefix=prefix)
    return None


def submit(args: argparse.Namespace) -> int:
    local: list[Path] = []
    refs: list[ImageRef] = []
    planned = _planned_source(args)
    for source in [] if planned else args.sources:
        if source.startswith("s3://"):
            refs += s3_images(source)
        else:
            local += local_images([Path(source)])
    if not refs and not local and not planned:
        raise SystemExit("yoloq: no images found")
    params = _params(args)
    first_upload = len(refs)  # uploaded images follow the s3:// ones in the job
    with _client(args) as client:
        for n, path in enumerate(local, 1):
            refs.append(client.upload(path))
            print(f"\ruploading {n}/{len(local)}", end="", file=sys.stderr, flush=True)
        if local:
            print(file=sys.stderr)
        accepted = client.submit(planned or refs, params, model=args.model)
        pinned = f" on {accepted.model.id}" if accepted.model else ""
        size = "listed by the workers" if planned else f"{accepted.total} images"
        print(f"job {accepted.id}: {size}{pinned}", file=sys.stderr)
        if args.no_wait:
            print(accepted.id)
            return 0
        job = client.wait(accepted.id, timeout_s=args.timeout, on_progress=JobProgress())
        items = list(client.results(accepted.id))
    write_results(items, args.out, args.format)
    if args.annotate:
        from yoloq.annotate import annotate

        for offset, path in enumerate(local):
            annotate(path, items[first_upload + offset], args.annotate)
        print(f"annotated images in {args.annotate}", file=sys.stderr)
    found = sum(len(detections_of(item)) for item in items)
    print(
        f"job {job.id} {job.status.value}: {job.done} images, {job.failed} failed, "
        f"{found} detections" + (f"; results in {args.out}" if args.out else ""),
        file=sys.stderr,
    )
    return 0 if job.status.value in ("succeeded", "partial") else 1


def detect(args: argparse.Namespace) -> int:
    """One image, answered in one request (``POST /v1/detect``); prints its item."""
    image: Path | ImageRef
    if args.image.startswith("s3://"):
        bucket, _, key = args.image.removeprefix("s3://").partition("/")
        image = ImageRef(bucket=bucket, key=key)
    else:
        image = Path(args.image)
        if not image.is_file():
            raise SystemExit(f"yoloq: {image} does not exist")
    with _client(args) as client:
        result = client.detect(image, _params(args), model=args.model, timeout_s=args.timeout)
    print(result.item.model_dump_json(indent=2 if args.pretty else None, exclude_none=True))
    print(f"job {result.job_id}: {len(detections_of(result.item))} found", file=sys.stderr)
    return 0 if result.item.status == "ok" else 1


def status(args: argparse.Namespace) -> int:
    with _client(args) as client:
        print(client.job(args.job_id).model_dump_json(indent=2))
    return 0


def results(args: argparse.Namespace) -> int:
    with _client(args) as client:
        write_results(list(client.results(args.job_id)), args.out, args.format)
    return 0


def table(rows: Iterable[list[str]], header: list[str]) -> str:
    rows = [header, *rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def workers(args: argparse.Namespace) -> int:
    with _client(args) as client:
        beats = client.workers()
    if not beats:
        print("no live workers")
        return 1
    rows = [
        [
            w.name,
            w.device,
            ", ".join(m.id for m in w.models),
            "yes" if w.warmed else "no",
            str(w.max_batch),
            str(w.images_done),
            w.last_seen.strftime("%H:%M:%S"),
        ]
        for w in beats
    ]
    header = ["NAME", "DEVICE", "MODELS", "WARM", "MAX BATCH", "IMAGES", "LAST SEEN"]
    print(table(rows, header))
    return 0


def _add_params_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--conf", type=float, default=0.25)
    sub.add_argument("--iou", type=float, default=0.7)
    sub.add_argument(
        "--imgsz", type=int, help="inference size (default: the model's training size)"
    )
    sub.add_argument("--max-det", type=int, default=300)
    sub.add_argument("--classes", help="comma-separated class ids to keep")
    sub.add_argument("--model", help="name, name:7 or name@alias (default: the deployment's)")
    sub.add_argument("--top-k", type=int, default=5, help="classify models: classes kept")


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    one = commands.add_parser(
        "detect", help="one image (a file or s3://bucket/key) answered in one request"
    )
    one.add_argument("image", help="an image file, or s3://bucket/key")
    _add_params_options(one)
    one.add_argument("--timeout", type=float, default=30, help="seconds to wait for the answer")
    one.add_argument("--pretty", action="store_true", help="indent the JSON")
    add_api_option(one)
    one.set_defaults(run=detect)

    sub = commands.add_parser(
        "submit", help="upload images (or name s3://bucket/prefix), run a job, write results"
    )
    sub.add_argument(
        "sources",
        nargs="*",
        help="image files, folders, or s3://bucket/prefix (a prefix alone is listed by "
        "the workers, so it may hold any number of images)",
    )
    sub.add_argument(
        "--manifest",
        metavar="S3_URI",
        help="s3://bucket/key of a JSONL or CSV list of images (instead of sources)",
    )
    sub.add_argument("--out", type=Path, help="write results here (default: stdout)")
    sub.add_argument("--format", choices=["jsonl", "coco"], default="jsonl")
    sub.add_argument("--annotate", type=Path, metavar="DIR", help="save local images with boxes")
    _add_params_options(sub)
    sub.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the job")
    sub.add_argument("--no-wait", action="store_true", help="print the job id and return")
    add_api_option(sub)
    sub.set_defaults(run=submit)

    stat = commands.add_parser("status", help="a job's status and counters")
    stat.add_argument("job_id")
    add_api_option(stat)
    stat.set_defaults(run=status)

    res = commands.add_parser("results", help="a job's results")
    res.add_argument("job_id")
    res.add_argument("--out", type=Path)
    res.add_argument("--format", choices=["jsonl", "coco"], default="jsonl")
    add_api_option(res)
    res.set_defaults(run=results)

    work = commands.add_parser("workers", help="the live workers, as a table")
    add_api_option(work)
    work.set_defaults(run=workers)
