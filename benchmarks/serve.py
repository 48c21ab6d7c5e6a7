"""Latency and throughput of `pneumocam serve` against the model's own Grad-CAM cost (a benchmark, not a test).

Three processes, as in use: `pneumocam serve` (uvicorn on a free local port); the reference, a process that holds
the same model and times its single-image forward + Grad-CAM and its batch-32 Grad-CAM; and this one, the client,
which imports no torch (a browser does not either: a client with torch's OpenMP threads spinning beside the server
took its cores and added ~30 ms to every answer).

One request at a time (224 px JPEGs), alternating with the reference on the same film, a pause before each, so
that both see the same moments of a noisy machine: median latency (upload to JSON with overlay) over the
reference's median. Then 8 concurrent clients against the batch-32 Grad-CAM throughput (measured before and after),
each answer checked against the sequential one.

    python benchmarks/serve.py --checkpoint RUN/train/model.pt --data ../shared/data/kermany224 [--out bench-results]

With --abuse RUN (a finished run folder to browse), a bounded soak instead (benchmarks/serve_abuse.py): good
uploads mixed with every bad input from 8 clients; 5xx count, latency and peak memory, recorded under
benchmarks/results/serve-abuse.json.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PAUSE_S = 0.2  # before each timed call: the other process's OpenMP threads stop spinning


def reference_worker(checkpoint: str, data: str, films: Path, clients: int) -> None:
    """The reference process: writes the films as JPEGs, then answers 'single I' / 'batch' with seconds / films per s,
    and 'about' with the versions and the environment."""
    import io

    import numpy as np
    from PIL import Image

    from pneumocam.core.progress import silence_this_thread
    from pneumocam.core.provenance import environment, library_versions
    from pneumocam.data import discover
    from pneumocam.data.readers import read_resized
    from pneumocam.explain.cam import make_cam
    from pneumocam.model.network import load_checkpoint

    silence_this_thread()
    model, meta = load_checkpoint(checkpoint)
    size = int(meta["image_size"])
    samples = discover(data).split("train")
    picks = [samples[i] for i in np.random.default_rng(0).choice(len(samples), 64, replace=False)]
    grays = np.stack([read_resized(s.path, size) for s in picks])
    for i, gray in enumerate(grays[:clients]):
        buffer = io.BytesIO()
        Image.fromarray(gray).save(buffer, format="JPEG", quality=95)
        (films / f"{i}.jpeg").write_bytes(buffer.getvalue())
    cam = make_cam(model, "gradcam", batch_size=32)
    cam(grays[:2])
    print(json.dumps({"ready": True, "image_size": size}), flush=True)
    for line in sys.stdin:
        command = line.split()
        began = time.perf_counter()
        if command[0] == "single":
            cam(grays[int(command[1]) % clients][None])
            answer = {"seconds": time.perf_counter() - began}
        elif command[0] == "batch":
            cam(grays[:32])
            answer = {"images_per_s": 32 / (time.perf_counter() - began)}
        else:
            answer = {"versions": library_versions(), "environment": environment()}
        print(json.dumps(answer), flush=True)


def start_server(checkpoint: str, extra: list[str] = ()) -> tuple[subprocess.Popen, str]:
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "pneumocam", "serve", "--checkpoint", checkpoint, "--port", str(port), *extra]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(1200):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}/api/predict"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--abuse", type=Path, metavar="RUN", help="soak with bad inputs; RUN: a finished run to browse")
    parser.add_argument("--abuse-seconds", type=float, default=60.0)
    parser.add_argument("--record-dir", type=Path, default=None, help="where the record goes (benchmarks/results)")
    parser.add_argument("--reference-worker", type=Path, help=argparse.SUPPRESS)  # internal: the reference process
    args = parser.parse_args()
    if args.abuse:
        import serve_abuse

        films = sorted(Path(args.data).glob("train/*/*.jp*g"))[::97][:16]
        serve_abuse.run(args, start_server, [f.read_bytes() for f in films], args.abuse)
        return
    if args.requests < args.clients:
        parser.error("--requests must be >= --clients: each concurrent answer is checked against a sequential one")
    if args.reference_worker:
        reference_worker(args.checkpoint, args.data, args.reference_worker, args.clients)
        return

    import httpx

    films = Path(tempfile.mkdtemp(prefix="pneumocam-serve-bench-"))
    reference = subprocess.Popen(
        [sys.executable, __file__, "--checkpoint", args.checkpoint, "--data", args.data, "--clients",
         str(args.clients), "--reference-worker", str(films)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip

    def ask_reference(command: str) -> dict:
        reference.stdin.write(command + "\n")
        reference.stdin.flush()
        return json.loads(reference.stdout.readline())

    size = json.loads(reference.stdout.readline())["image_size"]
    jpegs = [(films / f"{i}.jpeg").read_bytes() for i in range(args.clients)]
    server, url = start_server(args.checkpoint)
    connections = threading.local()

    def ask(index: int, display: bool = False) -> tuple[int, float, float]:
        # One kept-alive connection per client, as a browser keeps one: a new httpx client per request would add its
        # own setup (~30 ms here) to every measurement.
        if not hasattr(connections, "client"):
            connections.client = httpx.Client(timeout=300)
        began = time.perf_counter()
        upload = {"file": (f"{index}.jpeg", jpegs[index], "image/jpeg")}
        reply = connections.client.post(url, files=upload, data={"display": "true"} if display else {})
        reply.raise_for_status()
        if display and not reply.json()["display"]:
            raise SystemExit("display=true answered without the viewer's film")
        return index, reply.json()["probability"], time.perf_counter() - began

    try:
        ask(0)
        single, sequential, with_display = [], [], []
        for i in range(args.requests):
            time.sleep(PAUSE_S)
            single.append(ask_reference(f"single {i}")["seconds"])
            time.sleep(PAUSE_S)
            sequential.append(ask(i % len(jpegs)))
            time.sleep(PAUSE_S)  # the viewer's request (display=true) is timed beside the plain one
            with_display.append(ask(i % len(jpegs), display=True)[2])
        alone = {i: p for i, p, _ in sequential}
        time.sleep(PAUSE_S)
        batch_before = ask_reference("batch")["images_per_s"]
        time.sleep(PAUSE_S)
        began = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            together = list(pool.map(ask, [i % len(jpegs) for i in range(args.clients * 8)]))
        concurrent_throughput = len(together) / (time.perf_counter() - began)
        time.sleep(PAUSE_S)
        batch_throughput = (batch_before + ask_reference("batch")["images_per_s"]) / 2
        about = ask_reference("about")
    finally:
        server.terminate()
        reference.stdin.close()
        reference.terminate()

    latencies = [t for _, _, t in sequential]
    row = {
        "image_size": size,
        "model_single_image_gradcam_s": statistics.median(single),
        "server_median_latency_s": statistics.median(latencies),
        "latency_ratio": statistics.median(latencies) / statistics.median(single),
        "latency_ratio_per_pair_median": statistics.median(t / s for t, s in zip(latencies, single)),
        # the page's request adds the film to look at (up to DISPLAY_MAX_SIDE px): asked for only by the viewer
        "server_median_latency_display_s": statistics.median(with_display),
        "display_latency_ratio": statistics.median(with_display) / statistics.median(single),
        "model_batch32_gradcam_images_per_s": batch_throughput,
        "server_images_per_s_with_clients": concurrent_throughput,
        "throughput_ratio": concurrent_throughput / batch_throughput,
        "clients": args.clients,
        "answers_match_sequential": all(abs(alone[i] - p) < 1e-6 for i, p, _ in together),
        "checkpoint": args.checkpoint,
        "pause_s": PAUSE_S,
        **about,
    }
    print(json.dumps({k: row[k] for k in list(row)[:10]}, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(row, indent=2))
    from record import write_record

    print(f"record: {write_record('serve-latency', row, out=args.record_dir)}")
    if not row["answers_match_sequential"]:
        raise SystemExit("FAILED: an answer given beside other requests differs from the same film's answer alone")


if __name__ == "__main__":
    main()
