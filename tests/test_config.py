"""Section 1: config, presets, method presets, devices and precision."""
import contextlib

import pytest
import torch

import mclearn_core as mc


def test_cpu_smoke_preset_values_and_overrides():
    cfg = mc.make_config("cpu-smoke", batch_size=8, study="s")
    assert cfg.preset == "cpu-smoke"
    assert cfg.model_name == mc.TINY_MODEL
    assert cfg.dataset == str(mc.EMBEDDED_DATA)
    assert cfg.max_train_examples == 480 and cfg.seeds == (42,)
    assert cfg.batch_size == 8 and cfg.study == "s"  # overrides win over the preset
    # an untouched default stays the dataclass default
    assert cfg.label_smoothing == mc.Config().label_smoothing


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ValueError, match="batch_size"):
        mc.make_config("cpu-smoke", batch_sise=8)
    with pytest.raises(ValueError, match="Unknown config key"):
        mc.replace_config(mc.Config(), zzzz=1)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="cpu-smoke"):
        mc.make_config("nope")


def test_lists_become_tuples_for_tuple_fields():
    cfg = mc.replace_config(mc.Config(), kappa_schedule=[0.7, 0.6, 0.5], q_bounds=[0.1, 0.2])
    assert cfg.kappa_schedule == (0.7, 0.6, 0.5) and isinstance(cfg.kappa_schedule, tuple)
    assert cfg.q_bounds == (0.1, 0.2) and isinstance(cfg.q_bounds, tuple)


def test_replace_config_returns_a_copy():
    base = mc.Config()
    changed = mc.replace_config(base, lr=1.0)
    assert changed.lr == 1.0 and base.lr != 1.0


def test_method_presets():
    cfg = mc.make_config("cpu-smoke")
    assert mc.config_for_method(cfg, "baseline") == cfg
    ours = mc.config_for_method(cfg, "mclearn")
    assert ours.budget_ratio == pytest.approx(1 / 3) and ours.full_rows == 0  # full-size steps, a third of the time
    paper = mc.config_for_method(cfg, "mclearn-paper")
    assert paper.unfreeze_schedule == (0.3, 0.7) and paper.rho_bounds == (0.01, 0.9)
    assert paper.class_weight_lr == 0.2 and paper.cost_ema == 0.98  # the published eta and EMA
    # the GPU-only overrides of the published notebook are not applied on CPU presets ...
    assert paper.refresh_every == cfg.refresh_every
    # ... but are on A100-class presets
    gpu_paper = mc.config_for_method(mc.make_config("a100"), "mclearn-paper")
    for key, value in mc.PAPER_GPU_OVERRIDES.items():
        assert getattr(gpu_paper, key) == value, key


def test_detect_preset(monkeypatch):
    monkeypatch.delenv(mc.PRESET_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert mc.detect_preset() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for gpu, bf16, expected in (("Tesla T4", False, "t4"), ("NVIDIA H100 80GB HBM3", True, "h100"),
                                ("NVIDIA A100-SXM4-40GB", True, "a100"), ("Quadro P100", False, "t4")):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_a, g=gpu: g)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_a, b=bf16: b)
        assert mc.detect_preset() == expected, gpu


def test_preset_env_forces_what_auto_resolves_to(monkeypatch):
    """MCLEARN_PRESET=t4 runs preset "auto" as the T4 code path (fp16 + GradScaler) on any device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_a: True)
    monkeypatch.setenv(mc.PRESET_ENV, "t4")
    assert mc.detect_preset() == "t4"
    cfg = mc.make_config("auto")
    assert (cfg.preset, cfg.precision) == ("t4", "fp16") and mc.study_name("flagship", "auto") == "flagship-t4"
    assert mc.make_config("h100").precision == "bf16"  # a named preset is not overridden
    monkeypatch.setenv(mc.PRESET_ENV, "")
    assert mc.detect_preset() == "h100"
    monkeypatch.setenv(mc.PRESET_ENV, "T4")
    with pytest.raises(ValueError, match="MCLEARN_PRESET='T4' is not a preset"):
        mc.detect_preset()


def test_resolve_device_and_autocast():
    assert mc.resolve_device(mc.Config(device="cpu")) == torch.device("cpu")
    cfg = mc.Config(precision="fp32")
    assert isinstance(mc.autocast_context(cfg, torch.device("cpu")), contextlib.nullcontext)
    with mc.autocast_context(mc.Config(precision="bf16"), torch.device("cpu")):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        mc.autocast_context(mc.Config(precision="fp8"), torch.device("cpu"))


# ----------------------------------------------------------------------------- --set values
@pytest.mark.parametrize("key, text, value", [
    ("precision", "fp16", "fp16"),  # a string that starts with "f" stays a string
    ("model_name", "tiny", "tiny"),
    ("study", "2024-run", "2024-run"),
    ("lr", ".001", 0.001),
    ("lr", "1e6", 1e6),
    ("epochs", "2", 2),
    ("cuda_graphs", "true", True),
    ("optimizer_fused", "none", None),
    ("kappa_schedule", "0.6,0.5,0.4", (0.6, 0.5, 0.4)),
    ("q_bounds", "[0.1, 0.2]", (0.1, 0.2)),
    ("seeds", "1,2", (1, 2)),
])
def test_set_values_parse_by_the_fields_type(key, text, value):
    parsed = mc.parse_config_value(key, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("item, message", [
    ("epochs=two", "--set epochs=two: epochs expects int, e.g. epochs=1"),
    ("batch_size=1.5", "--set batch_size=1.5: batch_size expects int, e.g. batch_size=64"),
    ("lr=fast", "lr expects float, e.g. lr=2e-05"),
    ("lr=nan", "lr expects float"),
    ("cuda_graphs=maybe", "cuda_graphs expects bool, e.g. cuda_graphs=false"),
    ("q_bounds=0.1", "q_bounds expects tuple[float, float], e.g. q_bounds=0.12,0.33"),
    ("max_train_examples=all", "max_train_examples expects int or none"),
    ("epochs", "--set takes KEY=VALUE items, got 'epochs'"),
    ("batch_sise=8", "Did you mean 'batch_size'"),
])
def test_bad_set_values_name_the_key_the_type_and_an_example(item, message):
    with pytest.raises(ValueError) as info:
        mc.parse_overrides([item])
    assert message in str(info.value)


def test_every_config_key_is_read_somewhere():
    """A key nothing reads (teacher_ema was one) is a knob that silently does nothing."""
    import dataclasses
    import re

    source = (mc.REPO_ROOT / "mclearn_core.py").read_text()
    body = source[source.index("PRESETS: dict"):]  # everything after the Config class
    unread = [f.name for f in dataclasses.fields(mc.Config) if not re.search(rf"\.{f.name}\b", body)]
    assert unread == []
