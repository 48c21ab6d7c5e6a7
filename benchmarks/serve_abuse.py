"""The viewer under abuse (a soak benchmark, not a test): `python benchmarks/serve.py --abuse ...` runs this.

`pneumocam serve` is started as users start it, with a runs folder holding one good run beside broken and hostile
ones. First its quiet latency: good uploads one at a time. Then, for a bounded time, 8 clients on 127.0.0.1 send a
mix of good uploads and every bad input the security issue lists: a small PNG declaring 12000 x 12000 px at 16 bits,
a DICOM header declaring 30000 x 30000 px, a chunked upload far over the limit, a Content-Length over it, foreign
Host and Origin headers, a cross-site POST, a slow method, NUL bytes and shard-member names in file names, garbage,
empty and truncated files, a deflated DICOM that inflates to 800 MB, RGBA PNGs over and at the pixel budget, GIF, WebP,
TGA and EPS uploads, and the broken runs (results.json `{}` and not JSON, a run linked out of the folder, no
predictions.csv, a label of 5, a report.html linked to /etc/passwd, NUL bytes in run names and film paths) and the
hostile ones of "A run folder is hostile input too" (a 1 MB heatmaps.npz holding a 16384 x 16384 map, a 1 x 8000 map,
image_size NaN, a 1 GB sparse results.json, results.json nested 100,000 deep, metrics or provenance a string, a run
claiming `//` as its dataset).
Reported: requests, 5xx count, p50/p95 latency of the good uploads against the quiet latency, and the server's
peak RSS over its idle RSS (sampled every 20 ms from /proc). It fails (exit 1) on any 5xx, on a good upload or good
film view that did not get 200, on a connection closed on any request but the over-limit uploads, on peak RSS over
idle + RSS_BOUND_MB, or when the server died.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from pathlib import Path


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bomb_png(width: int = 12000, height: int = 12000) -> bytes:
    """A valid 16-bit grey PNG of zeros: a few hundred KB that decode to width x height x 2 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    packer, row = zlib.compressobj(9), b"\0" * (1 + 2 * width)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def huge_dicom(path: Path) -> bytes:
    """A DICOM whose header declares 30000 x 30000 px (its pixel data is a few bytes)."""
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, generate_uid(), "CR"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = 30000, 30000, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.PixelData = np.zeros(16, np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


RSS_BOUND_MB = 500
MAY_CLOSE = ("chunked_500MB", "content_length_over_limit")  # the server may hang up on these: nothing else


def deflated_dicom(path: Path) -> bytes:
    """A deflated DICOM declaring 20000 x 20000 px of zeros: under a megabyte that pydicom would inflate to 800 MB."""
    import numpy as np
    import pydicom
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    huge_dicom(path)
    ds = pydicom.dcmread(path)
    ds.Rows = ds.Columns = 20000
    ds.PixelData = np.zeros((20000, 20000), np.uint16).tobytes()
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    del ds
    return path.read_bytes()


def image_bytes(fmt: str, mode: str = "L", side: int = 64) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (side, side), 90).save(buffer, format=fmt)
    return buffer.getvalue()


def eps_bytes() -> bytes:
    return b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nshowpage\n"


def map_bomb(path: Path, shape: tuple, n_paths: int = 1) -> None:
    """heatmaps.npz with maps of `shape` written as streamed zeros (a few MB on disk, gigabytes when loaded)."""
    import zipfile

    import numpy as np

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        with archive.open("maps.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            left, block = int(np.prod(shape)) * 4, bytes(1 << 20)
            while left > 0:
                member.write(block[: min(left, len(block))])
                left -= len(block)
        for key, value in (("paths", np.array([f"{i}.png" for i in range(n_paths)])), ("probs", np.zeros(n_paths)),
                           ("image_size", np.array(224))):  # fmt: skip
            buffer = io.BytesIO()
            np.save(buffer, value)
            archive.writestr(f"{key}.npy", buffer.getvalue())


def hostile_run_folders(good_run: Path, root: Path) -> None:
    """The run folders the run-folder issue listed, beside the good one."""
    import numpy as np

    results = json.loads((good_run / "results.json").read_text())
    for name, change in (("metrics-string", {"metrics": "x"}), ("provenance-string", {"provenance": "x"}),
                         ("claims-root", {"provenance": results["provenance"] | {"data": "//"}})):  # fmt: skip
        shutil.copytree(good_run, root / name, symlinks=True)
        (root / name / "results.json").write_text(json.dumps(results | change))
    (root / "deep").mkdir()
    (root / "deep" / "results.json").write_text('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    (root / "sparse-1GB").mkdir()
    with open(root / "sparse-1GB" / "results.json", "wb") as f:
        f.truncate(2**30)
    for name, shape in (("map-16384", (1, 16384, 16384)), ("map-1x8000", (1, 1, 8000))):
        shutil.copytree(good_run, root / name, symlinks=True)
        map_bomb(root / name / "heatmaps.npz", shape)
    shutil.copytree(good_run, root / "size-nan", symlinks=True)
    with np.load(root / "size-nan" / "heatmaps.npz") as f:
        stored = {k: f[k] for k in f.files}
    np.savez(root / "size-nan" / "heatmaps.npz", **(stored | {"image_size": np.array(float("nan"))}))


def hostile_runs(good_run: Path, root: Path) -> list[str]:
    """A runs folder: the good run and the broken ones; returns the run names."""
    shutil.copytree(good_run, root / "good", symlinks=True)
    (root / "empty-json").mkdir()
    (root / "empty-json" / "results.json").write_text("{}")
    (root / "not-json").mkdir()
    (root / "not-json" / "results.json").write_text("{nope")
    outside = root.parent / "outside-run"
    shutil.copytree(good_run, outside, symlinks=True)
    os.symlink(outside, root / "linked-out")
    shutil.copytree(good_run, root / "no-table", symlinks=True)
    (root / "no-table" / "predictions.csv").unlink()
    shutil.copytree(good_run, root / "label-5", symlinks=True)
    lines = (root / "label-5" / "predictions.csv").read_text().splitlines()
    head, first = lines[0], lines[1].split(",")
    first[1] = "5"
    (root / "label-5" / "predictions.csv").write_text("\n".join([head, ",".join(first), *lines[2:]]) + "\n")
    shutil.copytree(good_run, root / "report-link", symlinks=True)
    (root / "report-link" / "report.html").unlink(missing_ok=True)
    os.symlink("/etc/passwd", root / "report-link" / "report.html")
    hostile_run_folders(good_run, root)
    return sorted(p.name for p in root.iterdir())


def raw_request(port: int, head: str, body_chunks=(), read_first: bool = True) -> int:
    """Status of a hand-written HTTP/1.1 request (chunked bodies, odd headers); 0 when the server closed early."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head.encode("latin-1"))
        for chunk in body_chunks:
            if read_first and _readable(s):
                break
            try:
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = b""
        while b"\r\n" not in answer:
            try:
                data = s.recv(4096)
            except (ConnectionResetError, TimeoutError):
                return 0
            if not data:
                return 0
            answer += data
    return int(answer.split(b" ", 2)[1])


def _readable(s: socket.socket) -> bool:
    import select

    return bool(select.select([s], [], [], 0)[0])


def soak(args, start_server, film_bytes: list[bytes], good_run: Path) -> dict:
    import httpx

    work = Path(tempfile.mkdtemp(prefix="pneumocam-abuse-"))
    runs = work / "runs"
    runs.mkdir()
    names = hostile_runs(good_run, runs)
    data_root = str(Path(args.data).resolve())
    process, url = start_server(
        args.checkpoint, ["--runs", str(runs), "--max-upload-mb", "5", "--data-root", data_root]
    )
    base = url.rsplit("/api/", 1)[0]
    port = int(base.rsplit(":", 1)[1])
    png16 = bomb_png()
    dicom = huge_dicom(work / "huge.dcm")
    deflated = deflated_dicom(work / "deflated.dcm")
    rgba = image_bytes("PNG", "RGBA", 6000)  # 36 MP: inside the 64 MP budget by pixels, over it by its 4 planes
    rgba_largest = image_bytes("PNG", "RGBA", 4000)  # 16 MP x 4 planes: the largest colour film the budget takes
    others = {fmt: image_bytes(fmt) for fmt in ("GIF", "WEBP", "TGA")}
    good_paths = [r["path"] for r in httpx.get(f"{base}/api/runs/good/predictions").json()[:20]]
    samples: list[float] = []
    sampling = threading.Event()

    def sample_rss():
        while not sampling.is_set():
            samples.append(rss_mb(process.pid))
            time.sleep(0.02)

    def post(client, name, content, method="gradcam", headers=None):
        files = {"file": (name, content, "application/octet-stream")}
        return client.post("/api/predict", files=files, data={"method": method}, headers=headers or {}).status_code

    chunked_head = (
        f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nTransfer-Encoding: chunked\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n"
    )
    part_head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n\r\n'
    big_chunks = [part_head] + [b"0" * 65536] * 8000  # 500 MB
    bad_inputs = {
        "png_12000x12000_16bit": lambda c: post(c, "bomb.png", png16),
        "dicom_30000x30000_header": lambda c: post(c, "huge.dcm", dicom),
        "chunked_500MB": lambda c: raw_request(port, chunked_head, big_chunks),
        "content_length_over_limit": lambda c: raw_request(
            port, f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 999999999\r\n\r\n"
        ),
        "foreign_host": lambda c: c.get("/api/runs", headers={"Host": "attacker.example"}).status_code,
        "foreign_origin_post": lambda c: post(
            c, "a.jpeg", film_bytes[0], headers={"Origin": f"http://127.0.0.2:{port}"}
        ),
        "cross_site_post": lambda c: post(c, "a.jpeg", film_bytes[0], headers={"Sec-Fetch-Site": "cross-site"}),
        "slow_method": lambda c: post(c, "a.jpeg", film_bytes[0], method="scorecam"),
        "nul_filename": lambda c: post(c, "a\0b.jpeg", film_bytes[0]),
        "shard_member_filename": lambda c: post(c, "a.tar::zz", film_bytes[0]),
        "garbage": lambda c: post(c, "x.png", os.urandom(2048)),
        "empty_file": lambda c: post(c, "x.png", b""),
        "truncated_png": lambda c: post(c, "x.png", png16[:5000]),
        "run_list": lambda c: c.get("/api/runs").status_code,
        "broken_run_tables": lambda c: max(c.get(f"/api/runs/{n}/predictions").status_code for n in names),
        "report_linked_to_passwd": lambda c: c.get("/runs/report-link/report.html").status_code,
        "nul_run_name": lambda c: c.get("/api/runs/go%00od/predictions").status_code,
        "nul_film_path": lambda c: c.get("/api/runs/good/film", params={"path": good_paths[0] + "\0"}).status_code,
        "film_outside": lambda c: c.get("/api/runs/good/film", params={"path": "/etc/passwd"}).status_code,
        "deflated_dicom_800MB": lambda c: post(c, "deflated.dcm", deflated),
        "rgba_png_36MP": lambda c: post(c, "rgba.png", rgba),
        "rgba_png_16MP_at_the_budget": lambda c: post(c, "rgba.png", rgba_largest),
        "gif_webp_tga_upload": lambda c: max(post(c, f"x.{k.lower()}", v) for k, v in others.items()),
        "eps_upload": lambda c: post(c, "x.eps", eps_bytes()),
        "hostile_run_list": lambda c: c.get("/api/runs").status_code,
        "hostile_run_films": lambda c: max(
            c.get(f"/api/runs/{n}/film", params={"path": good_paths[0]}).status_code
            for n in ("map-16384", "map-1x8000", "size-nan", "provenance-string", "claims-root")
        ),
    }
    statuses: Counter = Counter()
    by_kind: dict[str, Counter] = {k: Counter() for k in [*bad_inputs, "good_upload", "good_film"]}
    good_latencies: list[float] = []
    lock = threading.Lock()

    try:
        with httpx.Client(base_url=base, timeout=120) as client:
            for i in range(3):
                post(client, f"{i}.jpeg", film_bytes[i % len(film_bytes)])
            time.sleep(1.0)
            idle = rss_mb(process.pid)
            quiet = []
            for i in range(args.requests):
                time.sleep(0.2)
                began = time.perf_counter()
                assert post(client, f"{i}.jpeg", film_bytes[i % len(film_bytes)]) == 200
                quiet.append(time.perf_counter() - began)
        threading.Thread(target=sample_rss, daemon=True).start()
        stop_at = time.monotonic() + args.abuse_seconds

        def client_loop(seed: int):
            rng = random.Random(seed)
            kinds = list(bad_inputs)
            with httpx.Client(base_url=base, timeout=120) as client:
                while time.monotonic() < stop_at:
                    roll = rng.random()
                    began = time.perf_counter()
                    if roll < 0.4:
                        kind = "good_upload"
                        status = post(client, "film.jpeg", film_bytes[rng.randrange(len(film_bytes))])
                    elif roll < 0.5:
                        kind = "good_film"
                        status = client.get("/api/runs/good/film", params={"path": rng.choice(good_paths)}).status_code
                    else:
                        kind = rng.choice(kinds)
                        try:
                            status = bad_inputs[kind](client)
                        except httpx.HTTPError as exc:  # counted: only MAY_CLOSE kinds may end like this
                            status = f"closed ({type(exc).__name__})"
                    with lock:
                        statuses[status] += 1
                        by_kind[kind][status] += 1
                        if kind == "good_upload" and status == 200:
                            good_latencies.append(time.perf_counter() - began)

        threads = [threading.Thread(target=client_loop, args=(seed,)) for seed in range(args.clients)]
        began = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - began
        sampling.set()
        time.sleep(0.05)
        alive = httpx.get(f"{base}/api/health", timeout=10).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)

    good_latencies.sort()
    server_errors = sum(n for s, n in statuses.items() if isinstance(s, int) and s >= 500)
    good_not_200 = sum(n for k in ("good_upload", "good_film") for s, n in by_kind[k].items() if s != 200)
    closed = sum(
        n
        for k, found in by_kind.items()
        if k not in MAY_CLOSE
        for s, n in found.items()
        if not isinstance(s, int) or s == 0
    )
    return {
        "seconds": round(elapsed, 1),
        "clients": args.clients,
        "requests": sum(statuses.values()),
        "status_counts": {str(k): v for k, v in sorted(statuses.items(), key=str)},
        "status_by_kind": {k: {str(s): n for s, n in v.items()} for k, v in by_kind.items()},
        "server_errors_5xx": server_errors,
        "quiet_latency_median_s": statistics.median(quiet),
        "good_uploads_answered": len(good_latencies),
        "good_latency_p50_s": good_latencies[len(good_latencies) // 2] if good_latencies else None,
        "good_latency_p95_s": good_latencies[int(0.95 * (len(good_latencies) - 1))] if good_latencies else None,
        "idle_rss_mb": round(idle, 1),
        "peak_rss_mb": round(max(samples), 1) if samples else None,
        "peak_over_idle_mb": round(max(samples) - idle, 1) if samples else None,
        "server_alive_after": alive,
        "good_requests_not_200": good_not_200,
        "closed_connections_unexpected": closed,
        "rss_bound_mb": RSS_BOUND_MB,
    }


def run(args, start_server, reference_films: list[bytes], good_run: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from record import stamp, write_record

    stamped = stamp()  # the tree and machine as measuring starts
    figures = soak(args, start_server, reference_films, good_run)
    print(json.dumps({k: v for k, v in figures.items() if k != "status_by_kind"}, indent=2))
    path = write_record(
        "serve-abuse",
        figures,
        note="8 clients on 127.0.0.1; latency of good 224 px JPEG uploads (Grad-CAM) during the abuse against one at "
        "a time before it; RSS of the server process sampled every 20 ms",
        out=args.record_dir,
        stamped=stamped,
    )
    print(f"record: {path}")
    failed = [
        name
        for name, bad in (
            ("5xx answers", figures["server_errors_5xx"]),
            ("good requests without a 200", figures["good_requests_not_200"]),
            ("connections closed on requests that may not close", figures["closed_connections_unexpected"]),
            (f"memory over idle + {RSS_BOUND_MB} MB", (figures["peak_over_idle_mb"] or 0) > RSS_BOUND_MB),
            ("the server died", not figures["server_alive_after"]),
        )
        if bad
    ]
    if failed:
        raise SystemExit("FAILED: " + "; ".join(failed))


__all__ = ["run", "bomb_png", "io"]
