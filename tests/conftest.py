"""Shared fixtures for the MC-Learn test suite (CPU only, offline, fast)."""
import gc
import gzip
import importlib
import json
import os
import sys
import time
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
import mcstudy as ms  # noqa: E402
import mcstudy.train  # noqa: E402

# One intra-op thread: the suite runs many tiny ops, and on a shared 2-core machine torch's default
# thread pool made the 2-epoch baseline run 7x slower (41 s vs 6 s, measured under load).
torch.set_num_threads(int(os.environ.get("MCLEARN_TEST_THREADS", "1")))

# What the study imports only when a run, a table or a plot needs it.
LAZY_IMPORTS = ("transformers", "transformers.models.distilbert.modeling_distilbert", "tokenizers",
                "tqdm.auto", "sklearn.metrics", "scipy.stats", "pandas", "matplotlib.pyplot")


def pytest_collection_finish(session):
    """Freeze what exists before the first test (gc.freeze): the modules of torch, transformers,
    scipy and the rest, about 450,000 objects that each full collection would walk again. Every
    run makes two (mcstudy.engine.release_device_memory); on 2 busy cores each took 0.4 s, a
    fifth of the suite's time. What the tests make is collected, and listed by gc.get_objects."""
    for name in LAZY_IMPORTS:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After a test file's last test and its fixtures' teardown, collect and freeze what is left
    (modules its tests imported, session fixtures): a test's collections walk only the objects of
    its own file."""
    yield
    if nextitem is None or nextitem.module is not item.module:
        gc.collect()
        gc.freeze()


REAL_HOST_LOAD = ms.host_load
IDLE_HOST = {"checked": True, "load_avg": 0.0, "cpu_count": 2, "other_cores": 0.0, "busy_processes": []}


@pytest.fixture(autouse=True)
def idle_host(monkeypatch):
    """Runs in tests see an idle host (host_load watches the machine for 0.2 s per run, and other
    work on it would add warnings); tests of that check call the real one, REAL_HOST_LOAD."""
    monkeypatch.setattr(mcstudy.train, "host_load", lambda *args, **kwargs: dict(IDLE_HOST))


@pytest.fixture(scope="session")
def prepared(tmp_path_factory):
    """The cpu-smoke preset, prepared once: 480 train / 160 eval examples, tiny model, on the CPU on
    every host (a GPU host's "auto" would put the data on CUDA beside the CPU contexts tests build, and
    CUDA events would time what the tests' fake clocks are meant to); CUDA tests move to the GPU."""
    results = tmp_path_factory.mktemp("session-results")
    return ms.prepare(ms.make_config("cpu-smoke", results_dir=str(results), device="cpu"))


@pytest.fixture
def smoke_cfg(prepared, tmp_path):
    """The prepared run's config with results in this test's own tmp_path."""
    return ms.replace_config(prepared.cfg, results_dir=str(tmp_path / "results"))


def read_jsonl(path) -> list[dict]:
    """Return the records of a step log, gzip compressed where its name ends in .gz (ms.run_logs)."""
    path = Path(path)
    text = gzip.decompress(path.read_bytes()).decode() if path.name.endswith(".gz") else path.read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


class CostClock:
    """A fake time.perf_counter: time moves only by a cost model, `token_seconds` for each row x
    token of every batch the model is given for an update (mc.make_batch with gradients on), a
    third of that for a forward without gradients (scoring, evaluation) and a twentieth for
    MC-Learn's cheap scorer (its early_features: the embeddings, at score_layer 0), so a run's
    seconds count the work it did and are the same on any host, busy or not. `now` is the time;
    `advance` moves it by hand."""

    def __init__(self, token_seconds: float):
        self.now, self.token_seconds = 1000.0, token_seconds

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def cost_clock(monkeypatch):
    """Return a function that installs a CostClock (its argument: seconds per row x token) as the
    clock of mclearn_core's timings for the rest of the test, and returns it."""
    def install(token_seconds: float = 1e-4) -> CostClock:
        clock = CostClock(token_seconds)
        make_batch = mc.make_batch

        def timed_batch(data, idx, width):
            share = 1.0 if torch.is_grad_enabled() else clock.scorer_share if clock.scoring else 1 / 3
            clock.advance(len(idx) * width * clock.token_seconds * share)
            return make_batch(data, idx, width)

        def early_features(self, data, rows):
            clock.scoring = True
            try:
                return features(self, data, rows)
            finally:
                clock.scoring = False

        features = mc.MCLearn.early_features
        clock.scoring, clock.scorer_share = False, 1 / 20
        monkeypatch.setattr(mc, "make_batch", timed_batch)
        monkeypatch.setattr(mc.MCLearn, "early_features", early_features)
        monkeypatch.setattr(time, "perf_counter", clock)
        return clock

    return install


def fixed_step_costs(cfg, token_seconds: float) -> "mc.StepCosts":
    """A step-cost table of the CostClock's model: an update of r rows at width w costs r w
    token_seconds, at every row count a run prices and every padded width."""
    widths = sorted({mc.padded_length(w, cfg.pad_multiple, cfg.max_length) for w in range(1, cfg.max_length + 1)})
    rows = ms.calibration_rows(cfg, cfg.full_rows or None)
    return mc.StepCosts(seconds={(r, w): r * w * token_seconds for r in rows for w in widths}, graphed=False,
                        capture_seconds=0.0, measure_seconds=0.0, warnings=[])


def stored_run(cfg, method, seed, config=None, **fields):
    """Write the run file a sweep of `cfg` on this machine would have stored for (method, seed),
    without training: identity (device, data and model hashes), study, label, `config` (default:
    the method's own config of `cfg`, portable) and `fields` on top; return its path."""
    label = fields.get("run_label", method)
    record = {"study": cfg.study, "method": method, "seed": seed, "run_label": label, "accuracy": 0.5,
              "train_seconds": 1.0, "device": ms.device_name(ms.resolve_device(cfg)),
              "identity": {"data_sha256": ms.data_sha256(cfg), "model_sha256": ms.model_sha256(cfg)},
              "config": ms.portable_config(ms.config_for_method(cfg, method)) if config is None else config,
              **fields}
    path = ms.run_path(cfg.results_dir, cfg.study, label, seed)
    ms.write_json_atomic(path, record)
    return path
