"""torch.compile on this machine (issue 45's question): the training step and the Grad-CAM pass, eager against
compiled (inductor), interleaved, images per second after warm-up, and what compiling costs once.

    python benchmarks/compile.py [--size 128] [--batch 32] [--steps 6] [--record compile]

The training step is the `full` mode's: forward, BCE-with-logits loss, backward, AdamW step, on a random-init
ResNet50 in channels_last. Grad-CAM: pneumocam's GradCAM (explain.cam) on the eager and on the compiled network.
Exits 1 when compiling fails (the record says why).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record import stamp, write_record  # noqa: E402

from pneumocam.model.network import build_model  # noqa: E402


def timed(step, steps: int) -> float:
    """Seconds per call, the mean over `steps` calls after one warm-up call."""
    step()
    began = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - began) / steps


def training_step(model, x, y):
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step():
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(model(x).flatten(), y)
        loss.backward()
        optimiser.step()

    return step


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--record", default=None)
    args = parser.parse_args(argv)
    stamped = stamp()
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = (torch.arange(args.batch) % 2).float()
    eager, _ = build_model("none", seed=0)
    eager = eager.to(memory_format=torch.channels_last).train()
    figures = {"size": args.size, "batch": args.batch, "steps": args.steps, "threads": torch.get_num_threads()}
    try:
        compiled = build_model("none", seed=0)[0].to(memory_format=torch.channels_last).train()
        compiled.compile()  # in place: its layers keep their names, so Grad-CAM's hooks find layer4
        began = time.perf_counter()
        training_step(compiled, x, y)()
        figures["compile_train_s"] = time.perf_counter() - began
    except Exception as exc:  # noqa: BLE001  (any compiler failure is the answer here)
        figures["compile_error"] = f"{type(exc).__name__}: {exc}"[:500]
        print(figures["compile_error"], file=sys.stderr)
        if args.record:
            write_record(args.record, figures, note="torch.compile failed", stamped=stamped)
        return 1
    rounds = {"eager": [], "compiled": []}
    for _ in range(2):  # interleaved: the machine's load moves both alike
        rounds["eager"].append(timed(training_step(eager, x, y), args.steps))
        rounds["compiled"].append(timed(training_step(compiled, x, y), args.steps))
    train = {k: args.batch / float(np.median(v)) for k, v in rounds.items()}
    figures["train_images_per_s"] = train
    figures["train_speedup"] = train["compiled"] / train["eager"]

    from pneumocam.explain.cam import make_cam

    films = np.random.default_rng(0).integers(0, 255, (args.batch, args.size, args.size), dtype=np.uint8)
    eager.eval()
    compiled.eval()
    began = time.perf_counter()
    make_cam(compiled, "gradcam", batch_size=args.batch)(films)
    figures["compile_gradcam_s"] = time.perf_counter() - began
    cam = {}
    for name, net in (("eager", eager), ("compiled", compiled)):
        method = make_cam(net, "gradcam", batch_size=args.batch)
        cam[name] = args.batch / timed(lambda method=method: method(films), max(2, args.steps // 2))
    figures["gradcam_images_per_s"] = cam
    figures["gradcam_speedup"] = cam["compiled"] / cam["eager"]
    print(
        f"training: eager {train['eager']:.1f} img/s, compiled {train['compiled']:.1f} img/s "
        f"({figures['train_speedup']:.2f}x; compiling took {figures['compile_train_s']:.0f} s); Grad-CAM: "
        f"{figures['gradcam_speedup']:.2f}x (compiling took {figures['compile_gradcam_s']:.0f} s)"
    )
    if args.record:
        write_record(args.record, figures, note="random-init ResNet50, full mode; interleaved rounds", stamped=stamped)
    return 0


if __name__ == "__main__":
    sys.exit(main())
