"""``POST /v1/detect`` against in-process inference and a one-process Flask server.

    python bench/detect.py --runs 3     # or: make bench-detect
    python bench/detect.py --smoke      # a few requests per row: checks it runs

Every row uses the same 640x480 JPEGs, the same .pt weights and the same ``imgsz``, and
every request sends its image as a multipart file, as the seed article's clients do:

  in_process       one image decoded and run in-process, all cores (bench/inprocess.py)
  overhead_detect  a lone ``POST /v1/detect`` to an idle warm worker, p50 and p95, minus
                   in_process p50: upload to S3, queue, worker, record, answer
  overhead_flask   the same for a lone ``POST /detect`` to the Flask app
  c8, c32          images/s with 8 and 32 clients posting at once, /v1/detect and Flask,
                   and their ratio (yoloq / Flask)

Flask is ``bench/flask_app.py`` under gunicorn with one sync worker: what that article
deploys. Both servers stay up; each is measured while the other is idle. ``--runs N``
repeats the measurements and prints medians and spreads; JSON goes to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.throughput import Stack, in_process, make_images  # noqa: E402
from yoloq.local_services import ProcessGroup, free_port, wait_until  # noqa: E402
from yoloq.schemas import InferenceParams  # noqa: E402

OVERHEAD_TARGET_MS = 30.0
CLIENTS = (8, 32)


def lone_latencies(post: Any, images: list[bytes], count: int) -> list[float]:
    """Seconds of ``count`` requests sent one after another (the server idle between)."""
    samples = []
    for i in range(count):
        started = time.perf_counter()
        post(images[i % len(images)])
        samples.append(time.perf_counter() - started)
    return samples


def concurrent_rate(make_post: Any, images: list[bytes], clients: int, requests: int) -> float:
    """Images/s with ``clients`` threads posting ``requests`` images in all."""
    counter = iter(range(requests))
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    errors: list[BaseException] = []

    def client() -> None:
        post = make_post()
        start.wait()
        try:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                post(images[i % len(images)])
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return requests / (time.perf_counter() - started)


def yoloq_poster(stack: Stack, imgsz: int) -> Any:
    http = httpx.Client(
        base_url=str(stack.client.http.base_url), headers=stack.client.http.headers, timeout=120
    )

    def post(data: bytes) -> None:
        response = http.post(
            "/v1/detect",
            params={"imgsz": imgsz, "timeout": 110},
            files={"file": ("frame.jpg", data, "image/jpeg")},
        )
        assert response.status_code == 200, response.text

    return post


def flask_poster(url: str) -> Any:
    http = httpx.Client(base_url=url, timeout=120)

    def post(data: bytes) -> None:
        response = http.post("/detect", files={"image": ("frame.jpg", data, "image/jpeg")})
        assert response.status_code == 200, response.text

    return post


def start_flask(group: ProcessGroup, weights: Path, imgsz: int) -> str:
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", "--workers", "1", "--timeout", "300"]
    argv += ["--bind", f"127.0.0.1:{port}", "--chdir", str(ROOT), "bench.flask_app:app"]
    env = {"BENCH_WEIGHTS": str(weights), "BENCH_IMGSZ": str(imgsz)}
    process = group.start("flask", argv, env)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/", timeout=2).status_code == 404
        except httpx.HTTPError:
            return False

    group.wait_ready(process, answers, timeout_s=120)
    return url


def measure(
    stack: Stack, flask_url: str, images: list[bytes], imgsz: int, samples: int, requests: int
) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    post_yoloq, post_flask = yoloq_poster(stack, imgsz), flask_poster(flask_url)
    for post in (post_yoloq, post_flask):  # a first request each, off the clock
        post(images[0])
    rows["detect_lone_s"] = lone_latencies(post_yoloq, images, samples)
    rows["flask_lone_s"] = lone_latencies(post_flask, images, samples)
    for clients in CLIENTS:
        rows[f"c{clients}"] = {
            "yoloq": concurrent_rate(lambda: yoloq_poster(stack, imgsz), images, clients, requests),
            "flask": concurrent_rate(lambda: flask_poster(flask_url), images, clients, requests),
        }
        rows[f"c{clients}"]["ratio"] = rows[f"c{clients}"]["yoloq"] / rows[f"c{clients}"]["flask"]
    return rows


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--weights", type=Path, default=ROOT / "tests/fixtures/shapes_yolov8n.pt")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--samples", type=int, default=40, help="lone requests per row")
    parser.add_argument("--requests", type=int, default=256, help="per concurrent row")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument(
        "--concurrency", type=int, default=16, help="the worker's YOLOQ_WORKER_CONCURRENCY"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--smoke", action="store_true", help="a few requests, one run")
    args = parser.parse_args()
    if args.smoke:
        args.images, args.samples, args.requests, args.runs = 4, 3, 32, 1
    cores = os.cpu_count() or 1
    print(
        f"{args.images} images 640x480, {cores} cores; weights {args.weights.name}, "
        f"imgsz {args.imgsz}; worker concurrency {args.concurrency}; {args.runs} run(s)",
        flush=True,
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="yoloq-bench-detect-") as tmp:
        work = Path(tmp)
        paths = make_images(work / "images", args.images)
        images = [path.read_bytes() for path in paths]
        with ProcessGroup(work / "logs") as group:
            stack = Stack(group, work, InferenceParams(imgsz=args.imgsz), args.imgsz)
            # Enough chunks in hand for one-image jobs to fill the worker's batches.
            stack.env["YOLOQ_WORKER_CONCURRENCY"] = str(args.concurrency)
            stack.start_worker(args.weights)
            wait_until(lambda: stack.heartbeat().warmed, 60, "the worker warm")
            flask_url = start_flask(group, args.weights, args.imgsz)
            for run in range(args.runs):
                lab = in_process(
                    args.weights,
                    work / "images",
                    threads=cores,
                    batch=1,
                    imgsz=args.imgsz,
                    latency=args.samples,
                )
                rows = measure(stack, flask_url, images, args.imgsz, args.samples, args.requests)
                base = statistics.median(lab["latencies_s"])
                rows["in_process_p50_ms"] = 1000 * base
                for name in ("detect", "flask"):
                    lone = rows[f"{name}_lone_s"]
                    rows[f"overhead_{name}"] = {
                        "p50_ms": 1000 * (percentile(lone, 50) - base),
                        "p95_ms": 1000 * (percentile(lone, 95) - base),
                    }
                runs.append(rows)
                print(
                    f"run {run + 1}: in-process {rows['in_process_p50_ms']:.1f} ms; overhead "
                    f"p50 detect {rows['overhead_detect']['p50_ms']:.1f} ms, flask "
                    f"{rows['overhead_flask']['p50_ms']:.1f} ms; "
                    + "; ".join(
                        f"c{c} yoloq {rows[f'c{c}']['yoloq']:.1f} flask "
                        f"{rows[f'c{c}']['flask']:.1f} images/s ({rows[f'c{c}']['ratio']:.2f})"
                        for c in CLIENTS
                    ),
                    flush=True,
                )
            stack.client.close()

    def spread(values: list[float]) -> dict[str, float]:
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    summary = {
        "overhead_detect_p50_ms": spread([r["overhead_detect"]["p50_ms"] for r in runs]),
        "overhead_detect_p95_ms": spread([r["overhead_detect"]["p95_ms"] for r in runs]),
        "overhead_flask_p50_ms": spread([r["overhead_flask"]["p50_ms"] for r in runs]),
        **{f"c{c}/flask": spread([r[f"c{c}"]["ratio"] for r in runs]) for c in CLIENTS},
    }
    met = {
        "overhead_detect_p50_ms": all(
            r["overhead_detect"]["p50_ms"] <= OVERHEAD_TARGET_MS for r in runs
        ),
        **{f"c{c}/flask": all(r[f"c{c}"]["ratio"] > 1.0 for r in runs) for c in CLIENTS},
    }
    print(f"\n{'row':<24}{'median':>8}{'spread':>16}  target (met in every run)")
    targets = {
        "overhead_detect_p50_ms": f"<= {OVERHEAD_TARGET_MS:.0f}",
        **{f"c{c}/flask": "> 1" for c in CLIENTS},
    }
    for name, values in summary.items():
        target = f"{targets[name]}: {'met' if met[name] else 'not met'}" if name in met else ""
        low_high = f"{values['min']:.2f}-{values['max']:.2f}"
        print(f"{name:<24}{values['median']:>8.2f}{low_high:>16}  {target}")
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"detect-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.json"
    report = {
        "images": args.images,
        "imgsz": args.imgsz,
        "cores": cores,
        "smoke": args.smoke,
        "weights": str(args.weights),
        "worker_concurrency": args.concurrency,
        "runs": runs,
        "summary": summary,
        "targets_met": met,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path.write_text(json.dumps(report, indent=2))
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
