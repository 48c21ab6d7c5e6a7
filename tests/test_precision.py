"""--precision: what auto picks from the processor's flags, and what a bf16 training leaves in model.pt."""

import pytest
import torch

from pneumocam.core import precision
from pneumocam.core.errors import SettingError


@pytest.fixture
def flags(monkeypatch):
    """Set the CPU flags precision.py sees (and let auto decide by them: the suite sets it to fp32)."""
    monkeypatch.delenv("PNEUMOCAM_AUTO_PRECISION", raising=False)

    def set_flags(*names):
        monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset(names))

    return set_flags


def test_auto_uses_bf16_only_where_the_cpu_has_it(flags):
    flags("avx2", "avx512f", "avx512bw")  # AVX-512 without BF16: oneDNN would emulate it, slower than fp32
    chosen = precision.resolve_precision("auto", "cpu")
    assert chosen.used == "fp32" and "neither" in chosen.reason
    flags("avx512f", "avx512_bf16")
    assert precision.resolve_precision("auto", "cpu").used == "bf16"
    flags("amx_tile", "amx_bf16")
    assert precision.resolve_precision("auto", "cpu").used == "bf16"
    flags()
    assert precision.resolve_precision("fp32", "cpu").used == "fp32"
    forced = precision.resolve_precision("bf16", "cpu")  # asked for: done, with a word on what to expect
    assert forced.used == "bf16" and "slower" in forced.reason
    with pytest.raises(SettingError, match="precision must be one of auto, fp32, bf16"):
        precision.resolve_precision("fp16", "cpu")


def test_the_environment_can_say_what_auto_means(flags, monkeypatch):
    flags("avx512_bf16")
    monkeypatch.setenv("PNEUMOCAM_AUTO_PRECISION", "fp32")
    assert precision.resolve_precision("auto", "cpu").used == "fp32"
    assert precision.resolve_precision("bf16", "cpu").used == "bf16"  # an explicit choice still wins
    monkeypatch.setenv("PNEUMOCAM_AUTO_PRECISION", "fp16")
    with pytest.raises(SettingError, match="must be fp32 or bf16"):
        precision.resolve_precision("auto", "cpu")


def test_library_methods_run_in_fp32_under_a_bf16_caller():
    """ScoreCAM and EigenCAM come from pytorch-grad-cam as numpy: under bf16 autocast they failed on bf16 tensors."""
    import numpy as np

    from pneumocam.explain.cam import make_cam
    from pneumocam.model.network import build_model

    model, _ = build_model("none", seed=0)
    films = (np.arange(2 * 64 * 64).reshape(2, 64, 64) % 251).astype(np.uint8)
    with precision.autocast(precision.Precision("bf16", "bf16", "asked for"), "cpu"):
        result = make_cam(model.eval(), "eigencam", batch_size=2)(films)
    assert result.maps.dtype == np.float32 and result.maps.shape[0] == 2


def test_autocast_runs_convolutions_in_bf16_only_under_bf16():
    conv = torch.nn.Conv2d(3, 4, 3)
    x = torch.randn(1, 3, 8, 8)
    with precision.autocast(precision.Precision("bf16", "bf16", "asked for"), "cpu"):
        assert conv(x).dtype == torch.bfloat16
    with precision.autocast(precision.Precision("fp32", "fp32", "asked for"), "cpu"):
        assert conv(x).dtype == torch.float32


def test_a_bf16_training_saves_fp32_weights_shaped_like_an_fp32_one(phantom_data, tmp_path):
    from pneumocam.train.config import TrainConfig
    from pneumocam.train.fit import fit

    saved = {}
    for name in ("fp32", "bf16"):
        config = TrainConfig(
            data=str(phantom_data.images), mode="full", weights="none", image_size=32, epochs=1, batch_size=16,
            val_source="dataset", seed=1, use_cache=False, precision=name,
        )  # fmt: skip
        run = fit(config, runs_dir=tmp_path / name)
        saved[name] = torch.load(run / "model.pt", weights_only=True)
    fp32, bf16 = (saved[k]["state_dict"] for k in ("fp32", "bf16"))
    assert fp32.keys() == bf16.keys()
    for key in fp32:
        assert bf16[key].dtype == fp32[key].dtype and bf16[key].shape == fp32[key].shape, key
    assert {t.dtype for t in bf16.values() if t.is_floating_point()} == {torch.float32}
    recorded = saved["bf16"]["metadata"]["precision"]
    assert (recorded["requested"], recorded["used"]) == ("bf16", "bf16") and recorded["reason"].startswith("asked for")
    # bf16 really trained differently (its arithmetic rounds otherwise), from the same seed and data
    assert not torch.equal(fp32["layer1.0.conv1.weight"], bf16["layer1.0.conv1.weight"])
