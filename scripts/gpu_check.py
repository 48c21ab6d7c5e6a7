"""The CUDA and NCCL paths, checked on a machine with a GPU: one short script, a JSON summary of what it saw.

    python scripts/gpu_check.py --out DIR [--device cuda]

Steps (each recorded with its outcome, so one failure does not hide the others):
  1. the environment (torch, CUDA, the GPU, NCCL);
  2. phantoms (64 px) written with `pneumocam phantoms`;
  3. frozen training on the CPU and on the GPU from the same seed: the heads must agree (float sums differ only
     in order);
  4. torchrun with 2 processes on the device (nccl on CUDA; on one GPU NCCL may refuse two ranks on the same
     device, which is recorded as such) against one process with the same global batch;
  5. `pneumocam run` end to end on the device (full training with the attention penalty and --focus lungs,
     Grad-CAM, regions, trust checks, report);
  6. Grad-CAM at 224 px, batch 32, on the device: pneumocam's against pytorch-grad-cam's (maps and speed).
On a machine without a GPU, `--device cpu` runs the same steps (torchrun then uses gloo), to test the script.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def pneumocam(*args: str, launcher: list[str] | None = None, timeout: int = 240) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, *(launcher or []), "-m", "pneumocam", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)


def median_seconds(fn, device: str, repeats: int, warmup: int = 1) -> float:
    """Median wall time of fn after warm-up calls; on CUDA the queue is drained before and after each call."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def only_folder(parent: Path) -> Path:
    (folder,) = [p for p in parent.iterdir() if p.is_dir()]
    return folder


def train(data: Path, out: Path, device: str, batch: int, launcher=None, timeout: int = 240) -> Path:
    done = pneumocam(
        "train", "--data", str(data), "--mode", "frozen", "--weights", "none", "--image-size", "64",
        "--epochs", "2", "--batch-size", str(batch), "--val-source", "dataset", "--seed", "3",
        "--device", device, "--out", str(out), launcher=launcher, timeout=timeout,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {(done.stdout + done.stderr)[-2500:]}")
    return only_folder(out)


def heads_differ(a: Path, b: Path) -> dict:
    from pneumocam.model.network import load_checkpoint

    model_a, _ = load_checkpoint(a / "model.pt")
    model_b, _ = load_checkpoint(b / "model.pt")
    model_a, model_b = model_a.requires_grad_(False), model_b.requires_grad_(False)
    history = [json.loads((run / "history.json").read_text()) for run in (a, b)]
    return {
        "fc_weight_max_abs_diff": float((model_a.fc.weight - model_b.fc.weight).abs().max()),
        "fc_weight_scale": float(model_a.fc.weight.abs().mean()),
        "val_auc": [[round(r["val_auc"], 6) for r in h] for h in history],
        "world_sizes": [json.loads((run / "config.json").read_text())["world_size"] for run in (a, b)],
        "backend": json.loads((a / "config.json").read_text())["distributed"].get("backend"),
    }


def step_environment(device: str, work: Path) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__}
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info |= {
            "cuda": torch.version.cuda,
            "gpu": torch.cuda.get_device_name(0),
            "gpus": torch.cuda.device_count(),
            "nccl": ".".join(map(str, torch.cuda.nccl.version())),
            "capability": list(torch.cuda.get_device_capability(0)),
        }
    return info


def step_phantoms(device: str, work: Path) -> dict:
    done = pneumocam("phantoms", str(work / "ph"), "--train", "48", "--val", "16", "--test", "24", "--image-size", "64")
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return {"folders": sorted(p.name for p in (work / "ph").iterdir())}


def step_cpu_vs_device(device: str, work: Path) -> dict:
    on_cpu = train(work / "ph" / "images", work / "frozen-reference-cpu", "cpu", 16)
    on_device = train(work / "ph" / "images", work / f"frozen-{device}", device, 16)
    return heads_differ(on_device, on_cpu)


def step_cpu_vs_device_fp32(device: str, work: Path) -> dict:
    """As above with TF32 off (NVIDIA_TF32_OVERRIDE=0): whatever difference is left is not TF32 rounding."""
    os.environ["NVIDIA_TF32_OVERRIDE"] = "0"
    try:
        on_device = train(work / "ph" / "images", work / f"frozen-fp32-{device}", device, 16)
    finally:
        del os.environ["NVIDIA_TF32_OVERRIDE"]
    return heads_differ(on_device, only_folder(work / "frozen-reference-cpu"))


def step_nccl_one_process(device: str, work: Path) -> dict:
    """pneumocam's collectives (gather, broadcast, barrier) and its DDP wrap, in a one-process group of the device's
    backend (nccl on CUDA): torchrun with one process skips the group, and one GPU cannot hold two NCCL ranks."""
    from pneumocam.core.distributed import Distributed

    class Joined(Distributed):
        active = property(lambda self: True)

    backend = "nccl" if device == "cuda" else "gloo"
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29533"}
    torch.distributed.init_process_group(backend=backend, rank=0, world_size=1)
    try:
        dist = Joined(0, 1, backend)
        gathered = dist.gather(np.arange(3))
        told = dist.broadcast({"run": "folder"})
        dist.barrier()
        torch.manual_seed(0)
        head = torch.nn.Linear(8, 1).to(device)
        reference = torch.nn.Linear(8, 1).to(device)
        reference.load_state_dict(head.state_dict())
        wrapped = dist.wrap(head)
        x = torch.randn(16, 8, device=device)
        for model in (wrapped, reference):
            model(x).pow(2).mean().backward()
        same_gradient = torch.allclose(head.weight.grad, reference.weight.grad, atol=1e-6)
    finally:
        torch.distributed.destroy_process_group()
    return {
        "backend": backend,
        "gather": gathered.tolist(),
        "broadcast": told,
        "ddp_gradient_equals_plain": bool(same_gradient),
    }


def step_torchrun(device: str, work: Path) -> dict:
    launcher = ["-m", "torch.distributed.run", "--nproc-per-node", "2"]
    try:
        two = train(work / "ph" / "images", work / "torchrun-2", device, 8, launcher=launcher, timeout=150)
    except (RuntimeError, subprocess.TimeoutExpired) as failure:
        reasons = [
            line
            for line in str(failure).splitlines()
            if ("Error" in line or line.startswith("error:")) and "ChildFailedError" not in line
        ]
        return {"ok": False, "two_processes": "failed", "reasons": reasons[-6:]}
    one = work / "frozen-one-16"
    one = train(work / "ph" / "images", one, device, 16)
    return {"two_processes": "ran"} | heads_differ(two, one)


def step_run(device: str, work: Path) -> dict:
    ph = work / "ph"
    done = pneumocam(
        "run", "--data", str(ph / "images"), "--mode", "full", "--weights", "none", "--epochs", "2",
        "--image-size", "64", "--batch-size", "16", "--device", device, "--focus", "lungs",
        "--focus-masks", str(ph / "lung-masks"), "--attention-penalty", "1",
        "--attention-masks", str(ph / "lung-masks"), "--lung-masks", str(ph / "lung-masks"),
        "--n-per-class", "10", "--n-draws", "100", "--bootstrap", "100", "--trust-images", "4",
        "--out", str(work / "run"), timeout=600,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {(done.stdout + done.stderr)[-2500:]}")
    folder = only_folder(work / "run")
    results = json.loads((folder / "results.json").read_text())
    return {
        "report": (folder / "report.html").is_file(),
        "device_recorded": results["provenance"]["environment"]["cuda"],
        "accuracy": results["metrics"]["threshold_0.5"]["accuracy"],
        "train_outside_lungs_share": [
            r.get("train_outside_lungs_share") for r in json.loads((folder / "train" / "history.json").read_text())
        ],
    }


def step_gradcam(device: str, work: Path) -> dict:
    from pneumocam.core.progress import silence_this_thread
    from pneumocam.data import to_model_input
    from pneumocam.explain.cam import GradCAM
    from pneumocam.model.network import new_resnet50

    silence_this_thread()
    torch.manual_seed(0)
    model = new_resnet50().to(device).eval()
    images = torch.randint(0, 256, (32, 224, 224), dtype=torch.uint8)
    ours = GradCAM(model, batch_size=32, device=device)

    def timed(fn):
        return median_seconds(fn, device, 5 if device == "cuda" else 1)

    result = {"ours_img_s": 32 / timed(lambda: ours(images))}
    try:
        from pytorch_grad_cam import GradCAM as LibraryGradCAM
        from pytorch_grad_cam.utils.model_targets import BinaryClassifierOutputTarget
    except ImportError as missing:
        return result | {"library": f"not installed: {missing}"}
    x = to_model_input(images.to(device), channels_last=False)
    mine = ours(images)

    def library():
        with LibraryGradCAM(model=model, target_layers=[model.layer4]) as cam:
            return cam(input_tensor=x, targets=[BinaryClassifierOutputTarget(int(t)) for t in mine.targets])

    theirs = library()
    upsampled = torch.nn.functional.interpolate(torch.from_numpy(mine.maps)[:, None], size=224, mode="bilinear")[:, 0]
    upsampled = upsampled.numpy()
    low, high = upsampled.min(axis=(1, 2), keepdims=True), upsampled.max(axis=(1, 2), keepdims=True)
    normalised = (upsampled - low) / np.maximum(high - low, 1e-7)
    return result | {
        "library_img_s": 32 / timed(library),
        "maps_max_abs_diff_after_library_normalisation": float(np.abs(normalised - theirs).max()),
    }


def step_training_speed(device: str, work: Path) -> dict:
    """Full-mode training steps at 224 px, batch 32, as `train` runs them (fp32, channels_last)."""
    from pneumocam.model.network import new_resnet50
    from pneumocam.train.loop import weighted_loss

    torch.manual_seed(0)
    model = new_resnet50().to(device).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(32, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    y = (torch.arange(32, device=device) % 2).long()
    weights = torch.ones(2, device=device)

    def step():
        loss = weighted_loss(model(x).flatten(), y, weights)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    first = median_seconds(step, device, 1, warmup=0)
    return {
        "train_img_s": 32 / median_seconds(step, device, 7 if device == "cuda" else 1, warmup=0),
        "first_step_s": first,
    }


STEPS = {
    "environment": step_environment,
    "phantoms": step_phantoms,
    "cpu_vs_device_frozen": step_cpu_vs_device,
    "cpu_vs_device_frozen_tf32_off": step_cpu_vs_device_fp32,
    "nccl_one_process": step_nccl_one_process,
    "torchrun_2_processes": step_torchrun,
    "run_end_to_end": step_run,
    "gradcam_224": step_gradcam,
    "training_speed_224": step_training_speed,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--work", type=Path, default=Path("/tmp/pneumocam-gpu-check"))
    parser.add_argument("--steps", default=",".join(STEPS), help="comma-separated, in this order: " + ",".join(STEPS))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    summary = {"device": args.device}
    for name in args.steps.split(","):
        step = STEPS[name]
        began = time.perf_counter()
        try:
            summary[name] = {"ok": True, **step(args.device, args.work)}
        except Exception as failure:  # one failed step must not hide the others' results
            summary[name] = {"ok": False, "error": "".join(traceback.format_exception(failure))[-2500:]}
        summary[name]["seconds"] = round(time.perf_counter() - began, 1)
        print(name, json.dumps(summary[name])[:1500], flush=True)
        (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=2))
    return 0 if all(part.get("ok", True) for part in summary.values() if isinstance(part, dict)) else 1


if __name__ == "__main__":
    sys.exit(main())
