"""The ``yoloq`` command: run the parts (worker, api, demo, compose, export) and use the
service (submit, status, results, workers)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

from yoloq.client import ApiError
from yoloq.commands import add_commands
from yoloq.demo import SAMPLES
from yoloq.export_args import add_export_arguments
from yoloq.model_commands import add_model_commands


def _worker(args: argparse.Namespace) -> int:
    from workers.main import run_worker

    run_worker(
        args.device,
        models=args.model,
        name=args.name,
        concurrency=args.concurrency,
        loglevel=args.loglevel,
    )
    return 0


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    uvicorn.run(
        "api.main:create_app", factory=True, host=args.host, port=args.port, log_level="info"
    )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from yoloq.demo import run_demo

    return run_demo(
        stay=not args.exit, api_port=args.port, images_dir=args.images, tasks=args.tasks
    )


def _export(args: argparse.Namespace) -> int:
    from workers.export import export_from_arguments
    from yoloq.settings import Settings

    path, _ = export_from_arguments(args, args.weights, args.out, Settings())
    print(path)
    return 0


def _compose(args: argparse.Namespace) -> int:
    from yoloq.compose import (
        DEFAULT_OUT,
        load_worker_anchor,
        parse_gpus,
        render_override,
        worker_services,
    )

    out = str(args.out or DEFAULT_OUT)
    command = f"yoloq compose --gpus {args.gpus} --per-gpu {args.per_gpu}"
    command += "".join(f" --model {model}" for model in args.model or [])
    try:
        services = worker_services(parse_gpus(args.gpus), args.per_gpu, args.model)
        anchor = load_worker_anchor(args.base)
    except (ValueError, OSError) as error:
        print(f"yoloq compose: error: {error}", file=sys.stderr)
        return 2
    text = render_override(anchor, services, command=command, base=str(args.base), out=out)
    if args.out:
        args.out.write_text(text)
        print(f"wrote {len(services)} worker services to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yoloq", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    worker = commands.add_parser("worker", help="run an inference worker pinned to one device")
    worker.add_argument(
        "--device", default="auto", help="cpu, cuda:N, or auto (first GPU, else CPU)"
    )
    worker.add_argument(
        "--name",
        help="Celery hostname; %%h is this host's name (default: DEVICE@%%h, e.g. gpu0@host)",
    )
    worker.add_argument(
        "--model",
        action="append",
        metavar="REF",
        help="what to serve, repeatable: a registry reference (parts-seg@production, "
        "defects:3, traffic) or one weights file (a path or s3://bucket/key); "
        "default YOLOQ_MODEL",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        help="Celery threads (YOLOQ_WORKER_CONCURRENCY)",
    )
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(run=_worker)

    api = commands.add_parser("api", help="run the HTTP API under uvicorn")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.set_defaults(run=_api)

    export = commands.add_parser(
        "export",
        help="write .pt weights as ONNX, TorchScript, a TensorRT engine or OpenVINO (FP32, INT8)",
    )
    export.add_argument("weights", type=Path, help="the .pt file")
    export.add_argument("--out", type=Path, help="where to write it (default: beside the .pt)")
    add_export_arguments(export)
    export.set_defaults(run=_export)

    add_commands(commands)
    add_model_commands(commands)

    demo = commands.add_parser(
        "demo", help="start everything locally, run a job on the sample images, print results"
    )
    demo.add_argument("--exit", action="store_true", help="stop everything once the job is done")
    demo.add_argument("--port", type=int, default=8000, help="API port (a free one if taken)")
    demo.add_argument(
        "--images", type=Path, default=SAMPLES, help="folder of images to run (default: samples)"
    )
    demo.add_argument(
        "--tasks",
        action="store_true",
        help="also push a model of every task (segment, pose, OBB, classify) to the registry "
        "and send a job to each",
    )
    demo.set_defaults(run=_demo)

    compose = commands.add_parser(
        "compose",
        help="write a docker compose override with workers for the given GPUs",
    )
    compose.add_argument(
        "--gpus", required=True, help="the host's GPU numbers, comma-separated: 0,1,2,3"
    )
    compose.add_argument("--per-gpu", type=int, default=1, help="workers per GPU (default: 1)")
    compose.add_argument(
        "--model",
        action="append",
        metavar="REF",
        help="what these workers serve, repeatable (parts-seg@production); default YOLOQ_MODEL. "
        "Write one override per pool of models",
    )
    compose.add_argument(
        "--base",
        type=Path,
        default=Path("docker-compose.yml"),
        help="the compose file whose x-worker the workers copy (default: docker-compose.yml)",
    )
    compose.add_argument("--out", type=Path, help="file to write (default: standard output)")
    compose.set_defaults(run=_compose)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        sys.exit(args.run(args))
    except ApiError as error:
        sys.exit(f"yoloq: {error}")
    except httpx.TransportError as error:
        sys.exit(f"yoloq: cannot reach the API at {getattr(args, 'api', '?')}: {error}")
