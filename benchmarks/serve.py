"""Latency and throughput of `pneumocam serve` against the model's own Grad-CAM cost (a benchmark, not a test).

In one process: the model's single-image forward + Grad-CAM time and its batch-32 throughput; then a real server
(uvicorn on a free local port) answering 224 px JPEGs: median latency one request at a time (upload to JSON
with overlay), and throughput with 8 concurrent clients, each answer checked against the sequential one.

    python benchmarks/serve.py --checkpoint RUN/train/model.pt --data ../shared/data/kermany224 [--out bench-results]
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def main() -> None:
    import httpx
    import numpy as np
    import uvicorn
    from PIL import Image

    from pneumocam.cam import make_cam
    from pneumocam.data import discover
    from pneumocam.data.readers import read_resized
    from pneumocam.model import load_checkpoint
    from pneumocam.provenance import environment, library_versions
    from pneumocam.serve.app import create_app

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument(
        "--server",
        choices=["process", "thread"],
        default="process",
        help="`pneumocam serve` apart, or in this process.",
    )
    args = parser.parse_args()

    model, meta = load_checkpoint(args.checkpoint)
    size = int(meta["image_size"])
    samples = discover(args.data).split("train")
    picks = [samples[i] for i in np.random.default_rng(0).choice(len(samples), 64, replace=False)]
    grays = np.stack([read_resized(s.path, size) for s in picks])
    jpegs = []
    for gray in grays[: args.clients]:
        buffer = io.BytesIO()
        Image.fromarray(gray).save(buffer, format="JPEG", quality=95)
        jpegs.append(buffer.getvalue())

    cam = make_cam(model, "gradcam", batch_size=32)
    cam(grays[:2], description="warm-up")
    single = []
    for i in range(args.requests):
        began = time.perf_counter()
        cam(grays[i % len(grays)][None], description="single")
        single.append(time.perf_counter() - began)
    began = time.perf_counter()
    cam(grays, description="batch 32")
    batch_throughput = len(grays) / (time.perf_counter() - began)

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    if args.server == "process":  # as users run it: `pneumocam serve` in its own process
        command = [sys.executable, "-m", "pneumocam", "serve", "--checkpoint", args.checkpoint, "--port", str(port)]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(1200):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        stop = process.terminate
    else:  # in this process: client and server threads share one interpreter lock
        server = uvicorn.Server(
            uvicorn.Config(create_app(args.checkpoint), host="127.0.0.1", port=port, log_level="error")
        )
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)

        def stop():
            server.should_exit = True

    url = f"http://127.0.0.1:{port}/api/predict"

    connections = threading.local()

    def ask(index: int) -> tuple[int, float, float]:
        # One kept-alive connection per client, as a browser keeps one: a new httpx client per request would add its
        # own setup (~30 ms here) to every measurement.
        if not hasattr(connections, "client"):
            connections.client = httpx.Client(timeout=300)
        began = time.perf_counter()
        reply = connections.client.post(url, files={"file": (f"{index}.jpeg", jpegs[index], "image/jpeg")})
        reply.raise_for_status()
        return index, reply.json()["probability"], time.perf_counter() - began

    ask(0)
    sequential = [ask(i % len(jpegs)) for i in range(args.requests)]
    alone = {i: p for i, p, _ in sequential}
    began = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        together = list(pool.map(ask, [i % len(jpegs) for i in range(args.clients * 8)]))
    concurrent_throughput = len(together) / (time.perf_counter() - began)
    stop()

    row = {
        "image_size": size,
        "model_single_image_gradcam_s": statistics.median(single),
        "server_median_latency_s": statistics.median(t for _, _, t in sequential),
        "latency_ratio": statistics.median(t for _, _, t in sequential) / statistics.median(single),
        "model_batch32_gradcam_images_per_s": batch_throughput,
        "server_images_per_s_with_clients": concurrent_throughput,
        "throughput_ratio": concurrent_throughput / batch_throughput,
        "clients": args.clients,
        "server": args.server,
        "answers_match_sequential": all(abs(alone[i] - p) < 1e-6 for i, p, _ in together),
        "checkpoint": args.checkpoint,
        "versions": library_versions(),
        "environment": environment(),
    }
    print(json.dumps({k: row[k] for k in list(row)[:9]}, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
