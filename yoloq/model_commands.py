"""``yoloq models``: push weights to the registry, move aliases, list what is served.

``push`` and ``export`` write to the registry in object storage directly, with this
machine's S3 credentials (weights are too large for the API's body limit, and reading
them needs torch). ``list`` and ``show`` ask the API, which also knows the live workers
and the queues. ``alias`` goes through the API with an admin key when ``--api`` or
``YOLOQ_API_URL`` is given, else straight to the registry.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from yoloq.catalog import Alias, CatalogError, ModelReference, ModelStatus
from yoloq.client import Client
from yoloq.commands import add_api_option, table
from yoloq.export_args import add_export_arguments
from yoloq.registry import ModelRegistry


def _registry() -> ModelRegistry:
    from yoloq.object_store import ObjectStore
    from yoloq.settings import Settings

    settings = Settings()
    return ModelRegistry(ObjectStore.from_settings(settings), settings.models_bucket)


def push(args: argparse.Namespace) -> int:
    from workers.model import configure_offline
    from workers.weights_info import read_weights_info
    from yoloq.settings import Settings

    configure_offline(Settings().cache_dir / "ultralytics")
    registry = _registry()
    try:
        ModelReference.parse(args.name)
        # stdout carries only the version id, for scripts: Ultralytics talks to stderr.
        with contextlib.redirect_stdout(sys.stderr):
            info = read_weights_info(args.weights)
        version, created = registry.push(args.weights, args.name, info)
        if args.alias:
            registry.set_alias(args.name, args.alias, Alias.parse(str(version.version)))
    except (CatalogError, FileNotFoundError, ValueError) as error:
        raise SystemExit(f"yoloq models push: {error}") from error
    what = "pushed" if created else "already there (same bytes) as"
    print(
        f"{what} {version.id}: {version.task}, {len(version.class_names)} classes, "
        f"trained at {version.imgsz}, sha256 {version.sha256[:12]}"
        + (f"; {args.alias} -> {version.version}" if args.alias else ""),
        file=sys.stderr,
    )
    print(version.id)
    return 0


def export(args: argparse.Namespace) -> int:
    """Export a version's .pt to another format and add it to that version, with its
    accuracy when a labelled set is given."""
    from workers.export import export_from_arguments
    from workers.weights_info import read_weights_info
    from yoloq.settings import Settings

    settings = Settings()
    registry = _registry()
    try:
        reference = ModelReference.parse(args.version)
        if reference.version is None:
            raise CatalogError(f"name the version to export: {reference.name}:N")
        version = registry.version(reference.name, reference.version)
        weights = registry.download(version, "pt", settings.cache_dir)
        name = f"{version.sha256}{'_int8' if args.int8 else ''}"
        exports = settings.cache_dir / "exports"
        out = exports / (
            f"{name}_openvino_model" if args.format == "openvino" else f"{name}.{args.format}"
        )
        path, accuracy = export_from_arguments(args, weights, out, settings)
        version = registry.add_file(
            version.name, version.version, path, read_weights_info(path), accuracy
        )
    except (CatalogError, ValueError) as error:
        raise SystemExit(f"yoloq models export: {error}") from error
    print(f"{version.id} now has: {', '.join(f.format for f in version.files)}", file=sys.stderr)
    return 0


def alias(args: argparse.Namespace) -> int:
    try:
        target = Alias.parse(args.target)
        if args.api:
            with Client(args.api, api_key=args.api_key) as client:
                shown = client.set_alias(args.name, args.alias, str(target))
                aliases = shown.aliases
        else:
            aliases = _registry().set_alias(args.name, args.alias, target).aliases
    except CatalogError as error:
        raise SystemExit(f"yoloq models alias: {error}") from error
    print(f"{args.name}@{args.alias} -> {aliases[args.alias]}")
    return 0


def _aliases(model: ModelStatus) -> str:
    return ", ".join(f"{name}={target}" for name, target in sorted(model.aliases.items()))


def list_models(args: argparse.Namespace) -> int:
    with Client(args.api, api_key=args.api_key) as client:
        models = client.models()
    if not models:
        print("no models: push one with `yoloq models push weights.pt --name NAME`")
        return 1
    rows = [
        [
            m.name,
            str(m.task or "?"),
            ",".join(str(v.version) for v in m.versions) or "(file)",
            _aliases(m) or "-",
            str(len(m.workers)),
            str(m.queued_images),
        ]
        for m in models
    ]
    print(table(rows, ["MODEL", "TASK", "VERSIONS", "ALIASES", "WORKERS", "QUEUED"]))
    return 0


def show(args: argparse.Namespace) -> int:
    with Client(args.api, api_key=args.api_key) as client:
        model = client.model(args.name)
    print(f"{model.name}: {model.task}; aliases: {_aliases(model) or 'none'}")
    rows = [
        [
            str(v.version),
            str(v.task),
            str(v.imgsz),
            v.sha256[:12],
            ",".join(f.format for f in v.files),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            ", ".join(v.workers) or "-",
            str(v.queued_images),
        ]
        for v in model.versions
    ]
    header = ["VERSION", "TASK", "IMGSZ", "SHA256", "FILES", "CREATED", "WORKERS", "QUEUED"]
    print(table(rows, header))
    return 0


def add_model_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    models = commands.add_parser("models", help="the model registry: push, alias, list, show")
    sub = models.add_subparsers(dest="models_command", required=True)

    pushing = sub.add_parser("push", help="upload weights as a new version (same bytes: same one)")
    pushing.add_argument("weights", type=Path, help=".pt (or .onnx / .torchscript) weights")
    pushing.add_argument("--name", required=True, help="the model's name, e.g. parts-seg")
    pushing.add_argument("--alias", help="also point this alias at the version, e.g. staging")
    pushing.set_defaults(run=push)

    exporting = sub.add_parser(
        "export", help="add an ONNX / TorchScript / engine / OpenVINO export to a version"
    )
    exporting.add_argument("version", help="name:N")
    add_export_arguments(exporting)
    exporting.set_defaults(run=export)

    aliasing = sub.add_parser("alias", help="point an alias at a version, or split it: 7:90,8:10")
    aliasing.add_argument("name")
    aliasing.add_argument("alias", help="e.g. production")
    aliasing.add_argument("target", help="a version (7) or a split (7:90,8:10)")
    aliasing.add_argument(
        "--api",
        default=os.environ.get("YOLOQ_API_URL"),
        help="through the API (an admin key) instead of straight to the registry",
    )
    aliasing.add_argument("--api-key", default=os.environ.get("YOLOQ_API_KEY"))
    aliasing.set_defaults(run=alias)

    listing = sub.add_parser("list", help="every model: versions, aliases, workers, queue")
    add_api_option(listing)
    listing.set_defaults(run=list_models)

    showing = sub.add_parser("show", help="one model's versions and who serves them")
    showing.add_argument("name")
    add_api_option(showing)
    showing.set_defaults(run=show)
