"""Section 1: config, presets, method presets, devices and precision."""
import contextlib

import pytest
import torch

import mcstudy as ms


def test_cpu_smoke_preset_values_and_overrides():
    cfg = ms.make_config("cpu-smoke", batch_size=8, study="s")
    assert cfg.preset == "cpu-smoke"
    assert cfg.model_name == ms.TINY_MODEL
    assert cfg.dataset == str(ms.EMBEDDED_DATA)
    assert cfg.max_train_examples == 480 and cfg.seeds == (42,)
    assert cfg.batch_size == 8 and cfg.study == "s"  # overrides win over the preset
    # an untouched default stays the dataclass default
    assert cfg.label_smoothing == ms.Config().label_smoothing


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(ValueError, match="batch_size"):
        ms.make_config("cpu-smoke", batch_sise=8)
    with pytest.raises(ValueError, match="Unknown config key"):
        ms.replace_config(ms.Config(), zzzz=1)


def test_unknown_preset_lists_the_choices():
    with pytest.raises(ValueError, match="cpu-smoke"):
        ms.make_config("nope")


def test_lists_become_tuples_for_tuple_fields():
    cfg = ms.replace_config(ms.Config(), kappa_schedule=[0.7, 0.6, 0.5], full_prob_bounds=[0.1, 0.2])
    assert cfg.kappa_schedule == (0.7, 0.6, 0.5) and isinstance(cfg.kappa_schedule, tuple)
    assert cfg.full_prob_bounds == (0.1, 0.2) and isinstance(cfg.full_prob_bounds, tuple)


def test_replace_config_returns_a_copy():
    base = ms.Config()
    changed = ms.replace_config(base, lr=1.0)
    assert changed.lr == 1.0 and base.lr != 1.0


def test_method_presets():
    cfg = ms.make_config("cpu-smoke")
    assert ms.config_for_method(cfg, "baseline") == cfg
    ours = ms.config_for_method(cfg, "mclearn")
    assert ours == cfg  # the Config defaults are the mclearn preset: one source per value
    assert "mclearn" not in ms.METHOD_PRESETS
    assert ours.budget_ratio == pytest.approx(1 / 3) and ours.full_rows == 0  # full-size steps, a third of the time
    paper = ms.config_for_method(cfg, "mclearn-paper")
    assert paper.unfreeze_schedule == (0.3, 0.7) and paper.replay_share_bounds == (0.01, 0.9)
    assert paper.class_weight_lr == 0.2 and paper.cost_ema == 0.98  # the published eta and EMA
    assert paper.step_budget_ratio == 0.55  # its per-step budget, a key of its own (not mclearn's budget_ratio)
    # the GPU-only changes of the published notebook are not applied on CPU presets ...
    assert paper.refresh_every == cfg.refresh_every and paper.step_budget_ratio != 0.70
    # ... but are on A100-class presets, and only for mclearn-paper
    gpu = ms.METHOD_PRESETS["mclearn-paper"]["gpu"]
    for preset in ms.PAPER_GPU_PRESETS:
        gpu_paper = ms.config_for_method(ms.make_config(preset), "mclearn-paper")
        for key, value in gpu.items():
            assert getattr(gpu_paper, key) == value, key
        assert ms.config_for_method(ms.make_config(preset), "mclearn").step_budget_ratio == 0.55
    assert gpu["step_budget_ratio"] == 0.70


@pytest.mark.parametrize("old, new", [("rho_init", "replay_share_init"), ("rho_bounds", "replay_share_bounds"),
                                      ("q_bounds", "full_prob_bounds")])
def test_a_renamed_key_names_its_new_name(old, new):
    with pytest.raises(ValueError, match=f"'{old}' is now '{new}'"):
        ms.make_config("cpu-smoke", **{old: 0.1})
    with pytest.raises(ValueError, match=f"set {new}= instead"):
        ms.replace_config(ms.Config(), **{old: 0.1})


def test_detect_preset(monkeypatch):
    monkeypatch.delenv(ms.PRESET_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ms.detect_preset() == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for gpu, bf16, expected in (("Tesla T4", False, "t4"), ("NVIDIA H100 80GB HBM3", True, "h100"),
                                ("NVIDIA A100-SXM4-40GB", True, "a100"), ("Quadro P100", False, "t4")):
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_a, g=gpu: g)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_a, b=bf16: b)
        assert ms.detect_preset() == expected, gpu


def test_preset_env_forces_what_auto_resolves_to(monkeypatch):
    """MCLEARN_PRESET=t4 runs preset "auto" as the T4 code path (fp16 + GradScaler) on any device."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_a: True)
    monkeypatch.setenv(ms.PRESET_ENV, "t4")
    assert ms.detect_preset() == "t4"
    cfg = ms.make_config("auto")
    assert (cfg.preset, cfg.precision) == ("t4", "fp16") and ms.study_name("flagship", "auto") == "flagship-t4"
    assert ms.make_config("h100").precision == "bf16"  # a named preset is not overridden
    monkeypatch.setenv(ms.PRESET_ENV, "")
    assert ms.detect_preset() == "h100"
    monkeypatch.setenv(ms.PRESET_ENV, "T4")
    with pytest.raises(ValueError, match="MCLEARN_PRESET='T4' is not a preset"):
        ms.detect_preset()


def test_resolve_device_and_autocast():
    assert ms.resolve_device(ms.Config(device="cpu")) == torch.device("cpu")
    cfg = ms.Config(precision="fp32")
    assert isinstance(ms.autocast_context(cfg, torch.device("cpu")), contextlib.nullcontext)
    with ms.autocast_context(ms.Config(precision="bf16"), torch.device("cpu")):
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="precision"):
        ms.autocast_context(ms.Config(precision="fp8"), torch.device("cpu"))


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
    ("full_prob_bounds", "[0.1, 0.2]", (0.1, 0.2)),
    ("seeds", "1,2", (1, 2)),
])
def test_set_values_parse_by_the_fields_type(key, text, value):
    parsed = ms.parse_config_value(key, text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("item, message", [
    ("epochs=two", "--set epochs=two: epochs expects int, e.g. epochs=1"),
    ("batch_size=1.5", "--set batch_size=1.5: batch_size expects int, e.g. batch_size=64"),
    ("lr=fast", "lr expects float, e.g. lr=2e-05"),
    ("lr=nan", "lr expects float"),
    ("cuda_graphs=maybe", "cuda_graphs expects bool, e.g. cuda_graphs=false"),
    ("full_prob_bounds=0.1", "full_prob_bounds expects tuple[float, float], e.g. full_prob_bounds=0.12,0.33"),
    ("max_train_examples=all", "max_train_examples expects int or none"),
    ("epochs", "--set takes KEY=VALUE items, got 'epochs'"),
    ("batch_sise=8", "Did you mean 'batch_size'"),
])
def test_bad_set_values_name_the_key_the_type_and_an_example(item, message):
    with pytest.raises(ValueError) as info:
        ms.parse_overrides([item])
    assert message in str(info.value)


def test_every_config_key_is_read_somewhere():
    """A key nothing reads (teacher_ema was one) is a knob that silently does nothing."""
    import dataclasses
    import re

    config = ms.REPO_ROOT / "mcstudy" / "config.py"
    body = config.read_text()[config.read_text().index("PRESETS: dict"):]  # everything after the Config class
    body += (ms.REPO_ROOT / "mclearn_core.py").read_text() + (ms.REPO_ROOT / "mclearn_paper.py").read_text()
    body += "".join(path.read_text() for path in sorted((ms.REPO_ROOT / "mcstudy").rglob("*.py")) if path != config)
    unread = [f.name for f in dataclasses.fields(ms.Config) if not re.search(rf"\.{f.name}\b", body)]
    assert unread == []


# ----------------------------------------------------------------------------- validation
def test_every_numeric_key_has_a_range():
    """A numeric key added later must get a range in CONFIG_RANGES, or this fails."""
    numeric = set(ms.numeric_fields())
    assert {"epochs", "lr", "seeds", "kappa_schedule", "max_train_examples", "uniform_fraction"} <= numeric
    assert "cuda_graphs" not in numeric and "optimizer_fused" not in numeric  # bools are not numbers
    assert sorted(numeric - set(ms.CONFIG_RANGES)) == []
    assert sorted(set(ms.CONFIG_RANGES) - numeric) == []


@pytest.mark.parametrize("preset", sorted(ms.PRESETS))
def test_every_preset_and_method_preset_validates(preset):
    for method in ms.METHODS:
        cfg = ms.config_for_method(ms.make_config(preset), method)
        assert ms.validate_config(cfg) is cfg
    assert ms.validate_config(ms.replace_config(ms.make_config(preset), max_train_examples=0, max_eval_examples=None))


@pytest.mark.parametrize("changes, message", [
    ({"epochs": 0}, "epochs=0 is out of range: epochs must be >= 1, e.g. epochs=1"),
    ({"batch_size": -4}, "batch_size=-4 is out of range: batch_size must be >= 1, e.g. batch_size=64"),
    ({"batch_size": 0}, "batch_size=0 is out of range"),
    ({"grad_accum_steps": 0}, "grad_accum_steps=0 is out of range"),
    ({"eval_points": 0}, "eval_points=0 is out of range"),
    ({"max_length": 0}, "max_length=0 is out of range: max_length must be >= 4"),
    ({"pad_multiple": 0}, "pad_multiple=0 is out of range"),
    ({"max_train_examples": 2}, "max_train_examples=2 is out of range: max_train_examples must be None or 0 or >= 16"),
    ({"budget_ratio": 1.5}, "budget_ratio=1.5 is out of range: budget_ratio must be in (0, 1], e.g. budget_ratio=0.333333"),
    ({"lr": 0.0}, "lr=0.0 is out of range: lr must be > 0"),
    ({"label_noise": 1.0}, "label_noise=1.0 is out of range: label_noise must be in [0, 1)"),
    ({"uniform_fraction": 0.0}, "uniform_fraction=0.0 is out of range: uniform_fraction must be None or in (0, 1]"),
    ({"seeds": ()}, "seeds is empty: give at least one value, each in [0, 4294967295], e.g. seeds=42,43,44"),
    ({"seeds": (1, -2)}, "seeds=1,-2 has -2 out of range"),
    ({"kappa_schedule": ()}, "kappa_schedule is empty"),
    ({"kappa_schedule": (0.6, 1.5)}, "kappa_schedule=0.6,1.5 has 1.5 out of range: each value must be in (0, 1]"),
    ({"full_prob_bounds": (0.3, 0.1)}, "full_prob_bounds=0.3,0.1 is a (low, high) pair with low above high, e.g. full_prob_bounds=0.12,0.33"),
    ({"precision": "fp8"}, "precision='fp8' is not one of fp32, fp16, bf16"),
    ({"tiny_dim": 30, "tiny_heads": 4}, "tiny_dim=30 is not a multiple of tiny_heads=4"),
    ({"study": "../../x"}, "study='../../x' must be one folder name inside results_dir/runs"),
    ({"study": ""}, "study='' must be one folder name"),
])
def test_degenerate_values_are_refused_naming_the_key(changes, message):
    cfg = ms.replace_config(ms.make_config("cpu-smoke"), **changes)
    with pytest.raises(ms.ConfigError) as info:
        ms.validate_config(cfg)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_an_empty_seed_list_passed_to_a_sweep_is_refused(tmp_path):
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path))
    with pytest.raises(ms.ConfigError, match="seeds is empty"):
        ms.run_sweep(cfg, ["baseline"], [], progress=False)
    with pytest.raises(ms.ConfigError, match="seeds is empty"):
        ms.run_budget_study(cfg, ["baseline"], (0.5,), seeds=[], progress=False)
    assert not (tmp_path / "runs").exists()


def test_paths_are_checked_as_what_they_must_be(tmp_path):
    data_file = tmp_path / "train.csv"
    data_file.write_text("text,label\na,0\n")
    model_file = tmp_path / "model.bin"
    model_file.write_bytes(b"\0")
    (tmp_path / "no_config").mkdir()
    cases = [
        (dict(dataset=str(data_file)), f"dataset='{data_file}' is a file: set dataset= (--dataset) to the folder "
                                       f"that holds it ({tmp_path})"),
        (dict(dataset=str(tmp_path / "absent")), "does not exist: set dataset= (--dataset) to an existing folder"),
        (dict(model_name=str(model_file)), f"model_name='{model_file}' is a file: set model_name= (--model) to a "
                                           f"folder holding config.json"),
        (dict(model_name=str(tmp_path / "absent")), f"Model folder '{tmp_path / 'absent'}' does not exist: set "
                                                    f"model_name= (--model)"),
        (dict(model_name=str(tmp_path / "no_config")), "has no config.json"),
        (dict(results_dir=str(data_file)), "is a file: set results_dir= (--results-dir) to a folder"),
    ]
    for changes, message in cases:
        with pytest.raises(ms.ConfigError) as info:
            ms.validate_config(ms.replace_config(ms.make_config("cpu-smoke"), **changes))
        assert message in str(info.value), (changes, str(info.value))
    # hub names are not paths: they are left to the loaders
    ms.validate_config(ms.make_config("cpu-smoke", dataset="glue/sst2", model_name="sentence-transformers/x"))
