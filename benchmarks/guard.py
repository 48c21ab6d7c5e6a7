"""What the domain-shift guard costs beside a prediction (a benchmark, not a test).

Times, in one process on the same films: the model's Grad-CAM pass (forward, backward to layer4, maps; it also
yields the pooled features), and the guard on top of it (input checks on each file, then the distance of the
features). Prints both and their ratio, and writes bench-results/guard.json.

    python benchmarks/guard.py --checkpoint RUN/train/model.pt --data ../shared/data/kermany224 [--n 256]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    import numpy as np

    from pneumocam.anatomy.focus import focus_images
    from pneumocam.core.provenance import environment, library_versions
    from pneumocam.data import discover, load_images
    from pneumocam.explain.cam import make_cam
    from pneumocam.model.guard import load_guard, verdicts
    from pneumocam.model.network import load_checkpoint

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    args = parser.parse_args()

    model, meta = load_checkpoint(args.checkpoint)
    guard = load_guard(args.checkpoint)
    if guard is None:
        raise SystemExit(f"{args.checkpoint} has no guard: run `pneumocam guard fit --checkpoint ...` first")
    samples = discover(args.data).split(args.split)
    samples = [samples[i] for i in sorted(np.random.default_rng(0).choice(len(samples), args.n, replace=False))]
    loaded = load_images(samples, int(meta["image_size"]), use_cache=False)
    inputs = focus_images(loaded, meta.get("focus", "none")).images  # what the model reads (its --focus)
    began = time.perf_counter()
    result = make_cam(model, "gradcam")(inputs, description="Grad-CAM")
    cam_s = time.perf_counter() - began
    began = time.perf_counter()
    found = verdicts(guard, result.features, loaded.paths, loaded.images)
    guard_s = time.perf_counter() - began
    again = verdicts(guard, result.features, loaded.paths, loaded.images)
    row = {
        "n_images": len(found),
        "gradcam_pass_s": cam_s,
        "guard_s": guard_s,
        "guard_share_of_prediction": guard_s / cam_s,
        "flagged": int(sum(not v.in_distribution for v in found)),
        "deterministic": [v.to_dict() for v in found] == [v.to_dict() for v in again],
        "checkpoint": args.checkpoint,
        "versions": library_versions(),
        "environment": environment(),
    }
    print(json.dumps({k: row[k] for k in list(row)[:6]}, indent=2))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "guard.json").write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
