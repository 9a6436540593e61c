"""Shared fixtures for the MC-Learn test suite (CPU only, offline, fast)."""
import json
import os
import sys
from pathlib import Path

# No test may touch the network: set the HF offline switches before anything imports the hub.
for _var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402
import torch  # noqa: E402

import mclearn_core as mc  # noqa: E402

# One intra-op thread: the suite runs many tiny ops, and on a shared 2-core machine torch's default
# thread pool made the 2-epoch baseline run 7x slower (41 s vs 6 s, measured under load).
torch.set_num_threads(int(os.environ.get("MCLEARN_TEST_THREADS", "1")))


REAL_HOST_LOAD = mc.host_load
IDLE_HOST = {"checked": True, "load_avg": 0.0, "cpu_count": 2, "other_cores": 0.0, "busy_processes": []}


@pytest.fixture(autouse=True)
def idle_host(monkeypatch):
    """Runs in tests see an idle host (mc.host_load watches the machine for 0.2 s per run, and other
    work on it would add warnings); tests of that check call the real one, REAL_HOST_LOAD."""
    monkeypatch.setattr(mc, "host_load", lambda *args, **kwargs: dict(IDLE_HOST))


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """The cpu-smoke preset, prepared once: 480 train / 160 eval examples, tiny model."""
    results = tmp_path_factory.mktemp("session-results")
    return mc.prepare(mc.make_config("cpu-smoke", results_dir=str(results)))


@pytest.fixture
def smoke_cfg(prepared, tmp_path):
    """The prepared run's config with results in this test's own tmp_path."""
    return mc.replace_config(prepared.cfg, results_dir=str(tmp_path / "results"))


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def stored_run(cfg, method, seed, config=None, **fields):
    """Write the run file a sweep of `cfg` on this machine would have stored for (method, seed),
    without training: identity (device, data and model hashes), study, label, `config` (default:
    the method's own config of `cfg`, portable) and `fields` on top; return its path."""
    label = fields.get("run_label", method)
    record = {"study": cfg.study, "method": method, "seed": seed, "run_label": label, "accuracy": 0.5,
              "train_seconds": 1.0, "device": mc.device_name(mc.resolve_device(cfg)),
              "identity": {"data_sha256": mc.data_sha256(cfg), "model_sha256": mc.model_sha256(cfg)},
              "config": mc.portable_config(mc.config_for_method(cfg, method)) if config is None else config,
              **fields}
    path = mc.run_path(cfg.results_dir, cfg.study, label, seed)
    mc.write_json_atomic(path, record)
    return path
