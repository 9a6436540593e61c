"""Section 8, runs: result files, resumable sweeps, summary.csv and the report table."""
import dataclasses
import gzip
import os
import sys

import pandas as pd
import pytest
import torch

import mcstudy as ms
import mcstudy.train
from conftest import stored_run
from test_cv_trainer import fake_clock, flat_step_costs


def test_run_path():
    assert ms.run_path("res", "study1", "mclearn", 3).as_posix() == "res/runs/study1/mclearn-seed3.json.gz"


def test_interrupted_sweep_resumes_only_missing_runs(prepared, smoke_cfg, monkeypatch):
    real = ms.train_method
    calls = []

    def interrupt_on_second(method, cfg, prep, seed, **kwargs):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(method, cfg, prep, seed, **kwargs)

    monkeypatch.setattr("mcstudy.runs.train_method", interrupt_on_second)
    with pytest.raises(KeyboardInterrupt):
        ms.run_sweep(smoke_cfg, ["baseline"], [1, 2, 3], prepared=prepared, progress=False)
    paths = [ms.run_path(smoke_cfg.results_dir, smoke_cfg.study, "baseline", s) for s in (1, 2, 3)]
    assert [p.exists() for p in paths] == [True, False, False]
    first_bytes, first_mtime = paths[0].read_bytes(), paths[0].stat().st_mtime_ns

    calls.clear()

    def counting(method, cfg, prep, seed, **kwargs):
        calls.append(seed)
        return real(method, cfg, prep, seed, **kwargs)

    monkeypatch.setattr("mcstudy.runs.train_method", counting)
    records = ms.run_sweep(smoke_cfg, ["baseline"], [1, 2, 3], prepared=prepared, progress=False)
    assert calls == [2, 3]  # exactly the two missing runs
    assert [r["seed"] for r in records] == [1, 2, 3]
    assert all(p.exists() for p in paths)
    assert paths[0].read_bytes() == first_bytes and paths[0].stat().st_mtime_ns == first_mtime
    # a third call finds everything done and trains nothing
    calls.clear()
    ms.run_sweep(smoke_cfg, ["baseline"], [1, 2, 3], prepared=prepared, progress=False)
    assert calls == []

    # summary.csv from the real runs: exact columns, one row per run
    ms.summarize(smoke_cfg.results_dir, show=False)
    summary = pd.read_csv(f"{smoke_cfg.results_dir}/summary.csv")
    assert list(summary.columns) == ["study", "method", "seed", "device", "train_seconds",
                                     "accuracy", "examples_backward", "examples_scored", "time_budget",
                                     "graphed", "test_accuracy", "diverged"]
    assert summary["time_budget"].tolist() == [0.0] * 3 and summary["test_accuracy"].isna().all()
    assert summary["seed"].tolist() == [1, 2, 3] and set(summary["method"]) == {"baseline"}


def test_unknown_method_is_rejected(smoke_cfg):
    with pytest.raises(ValueError, match="Unknown method"):
        ms.run_sweep(smoke_cfg, ["no-such-method"], [1], progress=False)


def _fake_run(results, study, method, seed, seconds, accuracy, device="cpu (x86_64, 1 threads)"):
    record = {"study": study, "method": method, "seed": seed, "device": device,
              "train_seconds": seconds, "accuracy": accuracy, "examples_backward": 100 * seed,
              "examples_scored": 0, "extra": "ignored"}
    ms.write_json_atomic(ms.run_path(results, study, method, seed), record)


def test_summarize_writes_exact_columns_and_report(tmp_path):
    for seed, (base_s, mc_s, base_acc, mc_acc) in enumerate([(10, 4, 0.90, 0.89), (12, 6, 0.92, 0.90)], 1):
        _fake_run(tmp_path, "s1", "baseline", seed, base_s, base_acc)
        _fake_run(tmp_path, "s1", "mclearn", seed, mc_s, mc_acc)
    _fake_run(tmp_path, "s2", "mclearn", 1, 5, 0.5)  # a study without a baseline
    (tmp_path / "runs" / "s1" / "mclearn-seed1.jsonl.gz").write_bytes(gzip.compress(b"{}\n"))  # logs are not runs
    table = ms.summarize(tmp_path, show=False)
    text = (tmp_path / "summary.csv").read_text().splitlines()
    assert text[0] == ("study,method,seed,device,train_seconds,accuracy,examples_backward,examples_scored,"
                       "time_budget,graphed,test_accuracy,diverged")
    assert len(text) == 1 + 5
    assert not list(tmp_path.glob(".summary*"))  # the temp file was renamed away
    row = table[(table["study"] == "s1") & (table["method"] == "mclearn")].iloc[0]
    assert row["seeds"] == 2
    assert row["speed-up vs baseline"] == "2.20x"  # median 11 s / median 5 s
    assert row["train seconds"] == "5.00 [4.00–6.00]" and row["seconds / baseline"] == "0.45"
    assert row["budget"] == "—" and row["reaches budget"] == "—" and row["graphed"] == "no"
    assert "test accuracy (%)" not in table  # no run has a test split
    assert row["accuracy change (pt)"] == "-1.50"  # 89.5 - 91.0
    assert row["accuracy (%)"] == "89.50 ± 0.71"
    assert table[table["study"] == "s2"].iloc[0]["speed-up vs baseline"] == "n/a"
    assert table[table["study"] == "s2"].iloc[0]["accuracy (%)"] == "50.00"  # one seed: no "± 0.00" spread
    only_s2 = ms.summarize(tmp_path, study="s2", show=False)
    assert only_s2["study"].tolist() == ["s2"]


def test_load_runs_by_study(tmp_path):
    _fake_run(tmp_path, "a", "baseline", 1, 1.0, 0.5)
    _fake_run(tmp_path, "b", "baseline", 1, 1.0, 0.5)
    assert len(ms.load_runs(tmp_path)) == 2
    assert [r["study"] for r in ms.load_runs(tmp_path, "b")] == ["b"]
    assert ms.load_runs(tmp_path / "empty") == []


def test_stale_run_is_refused_not_mixed_in(prepared, smoke_cfg):
    ms.run_sweep(smoke_cfg, ["baseline"], [1], prepared=prepared, progress=False)
    other = ms.replace_config(smoke_cfg, batch_size=smoke_cfg.batch_size * 2)
    with pytest.raises(ValueError, match="batch_size differ"):
        ms.run_sweep(other, ["baseline"], [1], prepared=prepared, progress=False)
    # the same settings resume without retraining
    again = ms.run_sweep(smoke_cfg, ["baseline"], [1], prepared=prepared, progress=False)
    assert again[0]["seed"] == 1


def _other_value(value):
    """Return a value of the same kind as a Config value that differs from it."""
    if isinstance(value, bool) or value is None:
        return not value if isinstance(value, bool) else 7
    if isinstance(value, tuple):
        return tuple(v + 1 for v in value) if value else (0.5,)
    if isinstance(value, (int, float)):
        return value + 1 if isinstance(value, int) else value * 0.5 + 0.125
    return value + "-changed"


def _owner(key):
    """Return a method whose stored runs must match `key` (the baseline, unless only others read it)."""
    return next(m for m in ["baseline", *ms.METHODS] if key in ms.run_key_fields(m))


@pytest.mark.parametrize("key", ms.RUN_KEY_FIELDS)
def test_a_changed_training_key_never_returns_the_stored_run(tmp_path, key):
    """Every Config key but the bookkeeping ones is compared on resume (kappa_schedule
    and w_clip were not, and a re-run returned the old runs): a change stops with the fix; a key
    only other methods read keeps the stored baseline."""
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path))
    method = _owner(key)
    path = stored_run(cfg, method, 1)
    assert ms.read_finished_run(path, cfg, method) is not None  # the same settings: reused
    changed = ms.with_explicit(cfg, **{key: _other_value(getattr(ms.config_for_method(cfg, method), key))})
    with pytest.raises(ValueError, match=rf"{path} was trained with a different config \({key} differ: {key} .* "
                                         rf"stored, .* now\)\. Use another study="):
        ms.read_finished_run(path, changed, method)
    if method != "baseline":
        base = stored_run(cfg, "baseline", 1, config=ms.portable_config(cfg))
        assert ms.read_finished_run(base, changed, "baseline") is not None


# Another value of each key the stale guard never compares (RUN_BOOKKEEPING_FIELDS); any other key
# walked as if it were one gets _other_value's.
BOOKKEEPING_OTHER = {"results_dir": "elsewhere", "study": "another-study", "seeds": (1, 2, 3),
                     "explicit": ("lr", "epochs"), "device": "cpu", "record_passes": False}


def _walk_value(value):
    """Return another value of a Config value, far enough off to change a smoke run where the key
    can (an int doubled: 64 examples as 65 give the same stratified subset of 4 classes)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return 2 * value
    return _other_value(value)


def _what_a_run_trains_and_scores(cfg, method, monkeypatch):
    """Return what a run of `method` (seed 1) under `cfg` trained on and how it was scored: the data
    it read, its steps and backward passes, its eval predictions, probabilities and loss, its eval
    curve, on a fake clock and a flat step-cost table (MC-Learn plans from measured seconds)."""
    prepared = ms.prepare(cfg)
    prepared = dataclasses.replace(prepared, step_costs=flat_step_costs(cfg, 1 / 64))
    with monkeypatch.context() as patch:
        fake_clock(patch, row_seconds=2.5e-4, update_seconds=1 / 64)
        record = ms.train_method(method, cfg, prepared, seed=1, progress=False)
    kept = ("train_examples", "eval_examples", "label_names", "flipped_rows", "steps", "examples_backward",
            "examples_scored", "accuracy", "eval_loss", "eval_predictions", "eval_true_prob", "test_accuracy")
    return {"identity": prepared.identity, "curve": [point["accuracy"] for point in record["eval_curve"]],
            **{key: record[key] for key in kept}}


@pytest.fixture(scope="module")
def walked_runs():
    """What a run of baseline and of mclearn trains on and scores under the walk's config (filled once)."""
    return {}


@pytest.mark.parametrize("key", [f.name for f in dataclasses.fields(ms.Config)])
def test_every_config_key_that_changes_a_run_is_compared_by_the_stale_guard(tmp_path, monkeypatch, walked_runs, key):
    """Walk every Config field: one the stale guard compares refuses a stored run trained with another
    value (for a method that reads it); one it treats as bookkeeping (RUN_BOOKKEEPING_FIELDS) must
    change nothing a run trains on or is scored on: with another value, a baseline and an mclearn run
    read the same data and give the same steps, predictions, probabilities, loss and eval curve (on the
    CPU: keys that act only on a GPU, such as cuda_graphs, cannot show here). A key that changes the
    data a run sees, moved among the bookkeeping keys by mistake, fails here."""
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path), max_train_examples=64, max_eval_examples=32)
    if key in ms.RUN_KEY_FIELDS:
        method = _owner(key)
        record = {"config": ms.portable_config(ms.config_for_method(cfg, method))}
        changed = ms.with_explicit(cfg, **{key: _other_value(getattr(ms.config_for_method(cfg, method), key))})
        assert (ms.stale_reason(record, changed, method) or "").startswith(f"{key} differ"), key
        return
    value = BOOKKEEPING_OTHER[key] if key in BOOKKEEPING_OTHER else _walk_value(getattr(cfg, key))
    changed = ms.replace_config(cfg, **{key: value})
    for method in ("baseline", "mclearn"):
        if method not in walked_runs:
            walked_runs[method] = _what_a_run_trains_and_scores(cfg, method, monkeypatch)
        assert _what_a_run_trains_and_scores(changed, method, monkeypatch) == walked_runs[method], \
            f"{key}={value!r} changes what a {method} run trains on or how it is scored, but the stale guard " \
            f"treats it as bookkeeping (RUN_BOOKKEEPING_FIELDS)"


def test_bookkeeping_keys_and_keys_an_old_file_lacks_are_no_difference(tmp_path):
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path))
    assert set(ms.RUN_KEY_FIELDS) | set(ms.RUN_BOOKKEEPING_FIELDS) == {f.name for f in dataclasses.fields(ms.Config)}
    old = ms.portable_config(cfg)
    del old["candidate_share"], old["epochs"]  # written before these keys existed
    path = stored_run(cfg, "baseline", 1, config=old)
    moved = ms.replace_config(cfg, results_dir=str(tmp_path / "elsewhere"), study="other", seeds=(1, 2),
                              device="cpu", explicit=("lr",), epochs=5)
    assert ms.read_finished_run(path, moved, "baseline") is not None
    # a budget plan's knobs are planned from measured costs: compared through the run's time_budget
    path = stored_run(cfg, "selective-backprop", 1, config=ms.portable_config(ms.replace_config(cfg, sb_beta=2.5)),
                      knobs={"sb_beta": 2.5})
    assert ms.read_finished_run(path, ms.replace_config(cfg, sb_beta=2.4), "selective-backprop") is not None


def test_uniform_with_a_matched_share_resumes_and_its_share_is_compared(tmp_path, monkeypatch):
    """uniform's stored share was matched to mclearn's measured time: resume compares it with the
    share the sweep's finished runs give now, so it is read back, not refused as changed."""
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path))
    for method, seconds in (("baseline", 4.0), ("mclearn", 1.0)):
        stored_run(cfg, method, 1, train_seconds=seconds)
    stored_run(cfg, "uniform", 1, config=ms.portable_config(ms.replace_config(cfg, uniform_fraction=0.25)))
    monkeypatch.setattr("mcstudy.runs.train_method", lambda *a, **k: pytest.fail("a finished run was retrained"))
    records = ms.run_sweep(cfg, ["baseline", "mclearn", "uniform"], [1], progress=False)
    assert [r["method"] for r in records] == ["baseline", "mclearn", "uniform"]
    stored_run(cfg, "mclearn", 1, train_seconds=2.0)
    with pytest.raises(ValueError, match="uniform_fraction differ: uniform_fraction 0.25 stored, 0.5 now"):
        ms.run_sweep(cfg, ["baseline", "mclearn", "uniform"], [1], progress=False)


def test_each_method_reads_no_key_owned_by_other_methods(prepared, smoke_cfg, monkeypatch):
    """METHOD_OWN_FIELDS says which keys only some methods read (so the others' stored runs stay
    valid when they change): a run of every method records the Config keys it reads."""
    rows = torch.arange(64)
    small = dataclasses.replace(prepared, train=ms.subset_split(prepared.train, rows), test=None,
                                   eval=ms.subset_split(prepared.eval, rows[:32]))
    cfg = ms.replace_config(smoke_cfg, eval_points=1, uniform_fraction=0.5)
    read: set[str] = set()
    fields = {f.name for f in dataclasses.fields(ms.Config)}

    def recording(self, name):  # copies (dataclasses.replace, asdict) read every field: not a use
        if name in fields and sys._getframe(1).f_globals.get("__name__") != "dataclasses":
            read.add(name)
        return object.__getattribute__(self, name)

    for method in ms.METHODS:
        read.clear()
        with monkeypatch.context() as patch:
            patch.setattr(ms.Config, "__getattribute__", recording)
            ms.train_method(method, cfg, small, seed=1, progress=False)
        foreign = read - set(ms.run_key_fields(method)) - set(ms.RUN_BOOKKEEPING_FIELDS)
        assert not foreign, f"{method} reads {sorted(foreign)}, listed in METHOD_OWN_FIELDS for other methods only"


def test_records_are_portable_across_checkouts():
    inside = str(ms.REPO_ROOT / "data" / "ag_news_sample")
    assert ms.portable_path(inside) == "data/ag_news_sample"
    assert ms.portable_path("local:" + inside) == "local:data/ag_news_sample"
    assert ms.portable_path("/elsewhere/data") == "/elsewhere/data"
    cfg = ms.make_config("cpu-smoke")  # the preset's dataset is an absolute path in this checkout
    assert ms.portable_config(cfg)["dataset"] == "data/ag_news_sample"


def test_study_name_keeps_devices_apart():
    assert ms.study_name("flagship", "t4") == "flagship-t4"
    assert ms.study_name("flagship", "auto") == f"flagship-{ms.detect_preset()}"


# ----------------------------------------------------------------------------- faults
def test_a_corrupt_run_file_is_set_aside_and_redone(prepared, smoke_cfg, capsys):
    """A truncated run JSON is named in a warning, kept as <name>.corrupt and its run redone; a
    corrupt file of another study stops neither this sweep nor the summary (left out of it, named,
    not moved), and a table read of it (load_runs, as make_readme.py reads) refuses it."""
    path = ms.run_path(smoke_cfg.results_dir, smoke_cfg.study, "baseline", 1)
    other = ms.run_path(smoke_cfg.results_dir, "another-study", "baseline", 1)
    for p in (path, other):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(gzip.compress(b'{"study": "s", "accur'))  # truncated mid-write (e.g. a full disk)
    records = ms.run_sweep(smoke_cfg, ["baseline"], [1], prepared=prepared, progress=False)
    assert records[0]["seed"] == 1 and ms.read_run(path)["seed"] == 1  # redone
    assert gzip.decompress(path.with_name(path.name + ".corrupt").read_bytes()) == b'{"study": "s", "accur'  # kept
    err = " ".join(capsys.readouterr().err.split())  # as one line: mc.say wraps at 100 columns
    assert f"warning: {path} is not a readable run file (JSONDecodeError" in err
    assert "moved it to baseline-seed1.json.gz.corrupt and its run will be redone" in err
    table = ms.summarize(smoke_cfg.results_dir, show=False)  # the other study's file is left out, named
    assert table["study"].tolist() == [smoke_cfg.study]
    assert other.exists() and not other.with_name(other.name + ".corrupt").exists()  # its own sweep redoes it
    assert f"warning: {other} is not a readable run file (JSONDecodeError" in capsys.readouterr().err
    with pytest.raises(ms.RunFileError, match=f"{other} is not a readable run file .*: restore it"):
        ms.load_runs(smoke_cfg.results_dir)  # as make_readme.py reads: refused, not left out


def test_interrupted_run_leaves_no_partial_log(prepared, smoke_cfg, monkeypatch):
    """Ctrl-C inside a step: the run's log (written as it trains) is removed, no temp file stays."""
    real = ms.Baseline.step

    def interrupt_at_step_5(self, i):
        if i == 5:
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(ms.Baseline, "step", interrupt_at_step_5)
    log = ms.run_log_path(ms.run_path(smoke_cfg.results_dir, smoke_cfg.study, "baseline", 1))
    with pytest.raises(KeyboardInterrupt):
        ms.run_sweep(smoke_cfg, ["baseline"], [1], prepared=prepared, progress=False)
    assert list(log.parent.iterdir()) == []
    monkeypatch.setattr(ms.Baseline, "step", real)
    ms.run_sweep(smoke_cfg, ["baseline"], [1], prepared=prepared, progress=False)
    assert sorted(p.name for p in log.parent.iterdir()) == ["baseline-seed1.json.gz", "baseline-seed1.jsonl.gz"]


def test_examples_backward_counts_backward_passes_for_every_method(prepared, smoke_cfg):
    """examples_backward = examples with a backward pass; forward-only scoring is examples_scored
    (one name for each count: no examples_seen beside them)."""
    base = ms.train_method("baseline", smoke_cfg, prepared, seed=1, progress=False)
    sb = ms.train_method("selective-backprop", smoke_cfg, prepared, seed=1, progress=False)
    assert base["examples_backward"] == 480 and base["examples_scored"] == 0 and "examples_seen" not in base
    assert sb["examples_scored"] == 480  # every example is scored once per epoch
    assert sb["examples_backward"] < 480  # only the kept ones train


def test_committed_runs_still_summarize():
    """The repository's own run files load into the summary; none is of the old format (plain JSON:
    benchmarks/migrate_runs.py converts them)."""
    runs = sorted((ms.REPO_ROOT / "results" / "runs").glob(f"*/*{ms.RUN_FILE_SUFFIX}"))
    assert runs and not list((ms.REPO_ROOT / "results" / "runs").glob("*/*.json"))
    table = ms.report_table(pd.DataFrame([ms.summary_row(ms.read_run(p)) for p in runs]))
    trained = ~table["accuracy (%)"].str.startswith("diverged")  # a diverged run has no backward count
    assert len(table) and trained.any() and (table.loc[trained, "examples seen (backward)"] > 0).all()
    assert (table.loc[~trained, "train seconds"] == "—").all()


def test_run_records_trace_their_code(prepared, smoke_cfg):
    import subprocess

    record = ms.train_method("baseline", smoke_cfg, prepared, seed=1, progress=False)
    versions = record["versions"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ms.REPO_ROOT, capture_output=True, text=True)
    if head.returncode:
        pytest.skip("this copy has no .git")
    assert versions["git_commit"] == head.stdout.strip()
    diff = subprocess.run(["git", "diff", "HEAD", "--binary", "--", ".", ":(exclude)results"],
                          cwd=ms.REPO_ROOT, capture_output=True, text=True).stdout
    assert versions["git_clean"] is (diff == "")
    assert (versions["git_diff_sha256"] is None) is versions["git_clean"]


def test_provenance_of_a_dirty_tree_and_of_a_copy_without_git(monkeypatch):
    import hashlib

    for var in ("MCLEARN_COMMIT", "MCLEARN_GIT_CLEAN", "MCLEARN_GIT_DIFF_SHA256"):
        monkeypatch.delenv(var, raising=False)
    answers = {("rev-parse", "HEAD"): "abc123\n"}
    monkeypatch.setattr(mcstudy.train, "_git", lambda *args: answers.get(args[:2], "diff --git a/x b/x\n+1\n"))
    prov = ms.code_provenance()
    assert prov == {"git_commit": "abc123", "git_clean": False,
                    "git_diff_sha256": hashlib.sha256(b"diff --git a/x b/x\n+1\n").hexdigest()}
    monkeypatch.setattr(mcstudy.train, "_git", lambda *args: None)  # no .git: the environment says
    for var in ("MCLEARN_COMMIT", "MCLEARN_GIT_CLEAN", "MCLEARN_GIT_DIFF_SHA256"):
        monkeypatch.delenv(var, raising=False)
    assert ms.code_provenance() == {"git_commit": "unknown", "git_clean": None, "git_diff_sha256": None}
    monkeypatch.setenv("MCLEARN_COMMIT", "def456")
    monkeypatch.setenv("MCLEARN_GIT_CLEAN", "false")
    monkeypatch.setenv("MCLEARN_GIT_DIFF_SHA256", "f" * 64)
    assert ms.code_provenance() == {"git_commit": "def456", "git_clean": False, "git_diff_sha256": "f" * 64}
    # A copy that holds a stale .git (the GPU machine's did): the environment, when set, wins.
    monkeypatch.setattr(mcstudy.train, "_git", lambda *args: answers.get(args[:2], ""))
    assert ms.code_provenance()["git_commit"] == "def456"


def test_headline_states_the_answer_with_its_table(tmp_path):
    assert ms.headline(tmp_path).startswith("_No results yet")
    for seed, (base_s, mc_s, base_acc, mc_acc) in enumerate([(10, 4, 0.90, 0.89), (12, 6, 0.92, 0.90)], 1):
        _fake_run(tmp_path, "cpu-study", "baseline", seed, base_s, base_acc)
        _fake_run(tmp_path, "cpu-study", "mclearn", seed, mc_s, mc_acc)
        _fake_run(tmp_path, "gpu-study", "baseline", seed, 2.0, 0.85, device="NVIDIA H100")
        _fake_run(tmp_path, "gpu-study", "mclearn", seed, 8.0, 0.86, device="NVIDIA H100")
        _fake_run(tmp_path, "gpu-study", "uniform", seed, 1.5, 0.84, device="NVIDIA H100")
    _fake_run(tmp_path, "bigger-cpu-only", "baseline", 1, 1.0, 0.5)  # no mclearn run: never the answer
    ms.summarize(tmp_path, show=False)
    text = ms.headline(tmp_path)  # a GPU study wins over a CPU one
    first, rest = text.split("\n\n", 1)
    assert first == ("In study `gpu-study` (NVIDIA H100, 2 seeds), `mclearn` trained in 8.0 s against the optimized "
                     "baseline's 2.0 s (0.25x) and reached 86.00 % accuracy against 85.00 % (+1.00 points). "
                     "So here it is slower than the full fine-tune but keeps its accuracy (within 0.5 points); "
                     "the uniform-subset control reached 84.00 % in 1.5 s.")
    assert "| NVIDIA H100 | uniform  | —        | 2       | 84.00 ± 0.00" in rest
    cpu = ms.headline(tmp_path, study="cpu-study").split("\n\n")[0]
    assert cpu.endswith("(2.20x) and reached 89.50 % accuracy against 91.00 % (-1.50 points). "
                        "So here it is faster than the full fine-tune but loses 1.50 points of accuracy.")
    with pytest.raises(ValueError, match="study="):
        ms.headline(tmp_path, study="bigger-cpu-only")


def test_headline_answers_for_the_dataset_it_is_given(tmp_path):
    """The flagship trained SST-2 and opened with the Banking77 answer (the largest study): given the
    dataset it trains, the headline takes the largest study of that dataset (without label noise
    unless asked), or says that none has trained it yet. A fair-protocol study of the dataset (the
    README's answer) comes before a larger one of the previous protocol."""
    def run(study, method, seed, dataset, noise=0.0):
        ms.write_json_atomic(ms.run_path(tmp_path, study, method, seed), {
            "study": study, "method": method, "seed": seed, "device": "NVIDIA H200", "train_seconds": 1.0,
            "accuracy": 0.9, "examples_backward": 10, "examples_scored": 0,
            "config": {"dataset": dataset, "label_noise": noise}})

    for seed in (1, 2, 3):
        for method in ("baseline", "mclearn"):
            run("banking77-big", method, seed, "data/banking77")
            run("sst2-noisy", method, seed, "glue/sst2", 0.2)
    for method in ("baseline", "mclearn"):
        run("sst2-small", method, 1, "glue/sst2")
        run("sst2-old", method, 1, "glue/sst2", None)  # written before label_noise existed: none
    run("sst2-old", "mclearn", 2, "glue/sst2", None)
    ms.summarize(tmp_path, show=False)
    assert ms.headline(tmp_path).startswith("In study `banking77-big`")
    assert ms.headline(tmp_path, dataset="glue/sst2").startswith("In study `sst2-old`")
    assert ms.headline(tmp_path, dataset="glue/sst2", label_noise=0.2).startswith("In study `sst2-noisy`")
    assert ms.headline(tmp_path, dataset=str(ms.REPO_ROOT / "data" / "banking77")).startswith(
        "In study `banking77-big`")  # a local folder, as the notebook resolves it
    for method in ("baseline", "mclearn"):
        run("sst2-mpnet-h200-fair", method, 1, "glue/sst2")
    ms.summarize(tmp_path, show=False)
    assert ms.headline(tmp_path, dataset="glue/sst2").startswith("In study `sst2-mpnet-h200-fair`")
    assert ms.headline(tmp_path, dataset="data/banking77").startswith("In study `banking77-big`")
    assert ms.headline(tmp_path, dataset="ag_news") == (
        f"_No study in `{tmp_path / 'summary.csv'}` has both baseline and mclearn runs on `ag_news` yet._")


def test_headline_of_an_equal_time_study_names_the_short_schedule_on_the_test_split(tmp_path):
    """With short-schedule at the budget, the headline compares with it (not with the uniform subset),
    paired over seeds on the test split: mclearn 85, 86, 87 % against 86 % each (differences -1, 0, +1:
    mean 0, sd 1, 95 % half width t(2) 4.3027 / sqrt 3 = 2.48 points, a tie); the eval split (50 %) is not
    what it reports. On one seed there is no interval, and it says so."""
    def run(method, seed, seconds, test, budget):
        record = {"study": "eq", "method": method, "seed": seed, "device": "NVIDIA H200", "train_seconds": seconds,
                  "accuracy": 0.5, "test_accuracy": test, "examples_backward": 10, "examples_scored": 0,
                  "time_budget": budget, "run_label": ms.run_label(method, budget)}
        ms.write_json_atomic(ms.run_path(tmp_path, "eq", record["run_label"], seed), record)

    for seed, ours in zip((1, 2, 3), (0.85, 0.86, 0.87)):
        run("baseline", seed, 3.0, 0.90, 0.0)
        run("mclearn", seed, 1.0, ours, 1 / 3)
        run("short-schedule", seed, 1.02, 0.86, 1 / 3)
        run("uniform", seed, 1.0, 0.80, 1 / 3)
    ms.summarize(tmp_path, show=False)
    first = ms.headline(tmp_path, study="eq").split("\n\n")[0]
    assert first == ("In study `eq` (NVIDIA H200, 3 seeds at 1/3 of the baseline's time), `mclearn` trained in 1.0 s "
                     "against the optimized baseline's 3.0 s (3.00x) and reached 86.00 % test accuracy against 90.00 % "
                     "(-4.00 points). So here it is faster than the full fine-tune but loses 4.00 points of accuracy; "
                     "against `short-schedule`, the full fine-tune cut to the same time (86.00 % in 1.0 s), it is "
                     "+0.00 points [-2.48, +2.48] paired over 3 seeds: tie.")
    for seed in (2, 3):
        ms.run_path(tmp_path, "eq", "mclearn-b0.33", seed).unlink()
    ms.summarize(tmp_path, show=False)
    assert ms.headline(tmp_path, study="eq").split("\n\n")[0].endswith(
        "it is -1.00 points on one seed (too few for an interval).")


# ----------------------------------------------------------------------------- budget studies
def _budget_run(method, seed, seconds, accuracy, budget=0.0, graphed=False, test=None, lr=4e-5, study="b",
                curve=()):
    """A run record as train_method writes it (time_budget, run_label, graphed, ...)."""
    label = method if budget == 0 else f"{method}-b{budget:.2f}"
    return {"study": study, "method": method, "seed": seed, "device": "GPU X", "train_seconds": seconds,
            "accuracy": accuracy, "examples_backward": 100, "examples_scored": 0, "time_budget": budget,
            "run_label": label, "knobs": {}, "budget_note": None, "graphed": graphed, "graph_capture_error": None,
            "test_accuracy": test, "test_examples": 0 if test is None else 50,
            "config": {"lr": lr, "dataset": "glue/sst2", "epochs": 1},
            "eval_curve": [{"train_seconds": t, "accuracy": a} for t, a in curve]}


def _budget_study_records():
    """Baseline (median 12 s) and methods at budgets 1/3 and 1/2, given in a scrambled order."""
    third, half = 1 / 3, 1 / 2
    return [
        _budget_run("uniform", 1, 4.0, 0.80, third, test=0.78),
        _budget_run("selective-backprop", 1, 6.36, 0.82, half),  # 0.53 of the baseline: 1.06 x its budget
        _budget_run("baseline", 2, 14.0, 0.91, graphed=True, test=0.90),
        _budget_run("mclearn", 1, 5.0, 0.85, third, graphed=True),
        _budget_run("uniform", 2, 4.1, 0.82, third, graphed=True, test=0.80),
        _budget_run("baseline", 1, 10.0, 0.89, graphed=True, test=0.88),
        _budget_run("mclearn", 2, 6.0, 0.87, third, graphed=True),
        _budget_run("uniform", 1, 6.24, 0.84, half),  # 0.52 of the baseline: 1.04 x its budget
        _budget_run("vcas", 1, 20.0, 0.90),  # cannot reach a budget: runs once at its defaults
        _budget_run("baseline", 3, 12.0, 0.90, graphed=True, test=0.89),
        _budget_run("mclearn", 3, 5.0, 0.86, third, graphed=True),
    ]


def test_report_table_rows_per_method_and_budget():
    records = _budget_study_records()
    table = ms.report_table(pd.DataFrame([ms.summary_row(r) for r in records]))
    assert list(table.columns) == [
        "study", "device", "method", "budget", "seeds", "accuracy (%)", "test accuracy (%)", "train seconds",
        "seconds / baseline", "reaches budget", "speed-up vs baseline", "accuracy change (pt)",
        "examples seen (backward)", "examples scored (forward only)", "graphed"]
    # the baseline first, then by budget, then by method
    assert list(zip(table["method"], table["budget"])) == [
        ("baseline", "—"), ("vcas", "—"), ("mclearn", "1/3"), ("uniform", "1/3"),
        ("selective-backprop", "1/2"), ("uniform", "1/2")]
    rows = table.set_index(["method", "budget"])
    base = rows.loc[("baseline", "—")]
    assert base["seeds"] == 3 and base["train seconds"] == "12.00 [10.00–14.00]"  # median [min–max]
    assert base["seconds / baseline"] == "1.00" and base["reaches budget"] == "—" and base["graphed"] == "yes"
    assert base["accuracy (%)"] == "90.00 ± 1.00" and base["test accuracy (%)"] == "89.00 ± 1.00"
    mclearn = rows.loc[("mclearn", "1/3")]
    assert mclearn["train seconds"] == "5.00 [5.00–6.00]"  # the median, not the mean 5.33
    assert mclearn["seconds / baseline"] == "0.42" and mclearn["speed-up vs baseline"] == "2.40x"
    assert mclearn["reaches budget"] == "no (1.25)"  # 5 s against a 4 s budget
    assert mclearn["test accuracy (%)"] == "—" and mclearn["accuracy change (pt)"] == "-4.00"
    uniform = rows.loc[("uniform", "1/3")]
    assert uniform["reaches budget"] == "yes" and uniform["graphed"] == "mixed"  # 4.05 s: within 5 % of 4 s
    assert uniform["test accuracy (%)"] == "79.00 ± 1.41"
    assert rows.loc[("uniform", "1/2"), "reaches budget"] == "yes"  # 1.04 x its budget
    assert rows.loc[("selective-backprop", "1/2"), "reaches budget"] == "no (1.06)"
    assert rows.loc[("vcas", "—"), "reaches budget"] == "no wall-clock knob" and rows.loc[("vcas", "—"), "graphed"] == "no"


def test_budget_labels():
    assert [ms.format_budget(b) for b in (0.0, 1 / 3, 0.33, 0.5, 0.25, 2 / 3)] == ["—", "1/3", "1/3", "1/2", "0.25",
                                                                                    "2/3"]


def test_summary_row_fills_defaults_for_old_records():
    old = {"study": "s", "method": "baseline", "seed": 1, "device": "d", "train_seconds": 1.0, "accuracy": 0.5,
           "examples_backward": 10, "examples_scored": 0, "telemetry": {}}
    row = ms.summary_row(old)
    assert (row["time_budget"], row["graphed"], row["test_accuracy"]) == (0.0, False, None)
    assert ms.summary_row(dict(old, telemetry={"cuda_graphs": 2}))["graphed"] is True  # the baseline family's count
    assert ms.summary_row(dict(old, telemetry={"graphed": True}))["graphed"] is True
    assert ms.summary_row({k: v for k, v in old.items() if k != "telemetry"})["graphed"] is False
    new = dict(old, time_budget=0.5, graphed=False, test_accuracy=0.7, telemetry={"cuda_graphs": 2})
    assert (ms.summary_row(new)["time_budget"], ms.summary_row(new)["graphed"]) == (0.5, False)  # the record wins
    # a table of old rows only: no budget, no test column
    table = ms.report_table(pd.DataFrame([ms.summary_row(old), ms.summary_row(dict(old, method="uniform"))]))
    assert table["budget"].tolist() == ["—", "—"] and "test accuracy (%)" not in table


def test_comparison_table_times_each_method_and_budget():
    records = [_budget_run("baseline", 1, 10.0, 0.90, curve=[(5.0, 0.80), (10.0, 0.90)]),
               _budget_run("uniform", 1, 3.0, 0.89, 1 / 3, curve=[(2.0, 0.70), (3.0, 0.896)]),
               _budget_run("uniform", 1, 5.0, 0.85, 1 / 2, curve=[(2.5, 0.80), (5.0, 0.85)])]
    table = ms.comparison_table(records)
    assert list(zip(table["method"], table["budget"])) == [("baseline", "—"), ("uniform", "1/3"), ("uniform", "1/2")]
    assert table["time to baseline - 0.5 pt"].tolist() == ["10.0s (1/1 seeds)", "3.0s (1/1 seeds)", "never"]


def test_lr_sweep_table_marks_the_best_lr():
    records = [_budget_run("baseline", 1, 10.0, acc, lr=lr, study="b-lr", test=test)
               for lr, acc, test in [(1e-4, 0.85, 0.84), (1e-5, 0.80, None), (3e-5, 0.85, 0.86)]]
    table = ms.lr_sweep_table(records)
    assert list(table.columns) == ["lr", "seed", "accuracy (%)", "test accuracy (%)", "train seconds", "chosen"]
    assert table["lr"].tolist() == [1e-5, 3e-5, 1e-4]
    assert table["chosen"].tolist() == ["", "yes", ""]  # tied at 85 %: the smaller lr
    assert ms.best_lr(records) == 3e-5
    # two seeds per lr: the mean decides
    more = records + [_budget_run("baseline", 2, 10.0, 0.70, lr=3e-5), _budget_run("baseline", 2, 10.0, 0.86, lr=1e-4)]
    assert ms.best_lr(more) == 1e-4
    assert ms.lr_sweep_table(more).query("chosen == 'yes'")["lr"].tolist() == [1e-4, 1e-4]
    no_test = ms.lr_sweep_table([dict(r, test_accuracy=None) for r in records])
    assert "test accuracy (%)" not in no_test
    with pytest.raises(ValueError, match="lrs="):
        ms.best_lr([])


def test_plot_pareto_points_budgets_and_old_records(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = _budget_study_records()
    fig = ms.plot_pareto(records, tmp_path / "pareto.png")
    ax = fig.axes[0]
    assert (tmp_path / "pareto.png").stat().st_size > 0
    assert len(ax.containers) == 6  # one errorbar per (method, budget)
    budget_lines = sorted(line.get_xdata()[0] for line in ax.lines if line.get_linestyle() == "--")
    assert budget_lines == pytest.approx([12.0 / 3, 12.0 / 2])  # budget x the baseline's mean seconds
    assert {t.get_text().strip() for t in ax.texts} == {"1/3 budget", "1/2 budget"}
    assert "b (sst2)" in ax.get_title()
    points = [c.lines[0] for c in ax.containers]
    base = points[0]  # the baseline's point comes first and stands out
    assert base.get_xdata()[0] == pytest.approx(12.0) and base.get_markersize() > points[1].get_markersize()
    assert {p.get_marker() for p in points} == {"o", "s", "^"}
    plt.close(fig)
    # records without time_budget, graphed and config (older files): one point per method, no lines
    old = [{k: v for k, v in r.items() if k not in ("time_budget", "graphed", "config", "run_label")}
           for r in records]
    fig = ms.plot_pareto(old)
    assert len(fig.axes[0].containers) == 5 and not [l for l in fig.axes[0].lines if l.get_linestyle() == "--"]
    plt.close(fig)


# ----------------------------------------------------------------------------- one sweep per study
def _hold_lock(path):
    """Start a process that holds an flock on `path` (as a live sweep's study_lock does) and return it."""
    import subprocess

    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"f = open({str(path)!r}, 'a+'); fcntl.flock(f, fcntl.LOCK_EX)\n"
        "f.write('pid 4242 on other-host since today'); f.flush(); print('locked', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_sweep_on_a_locked_study_stops_naming_the_holder(tmp_path, monkeypatch):
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path))
    folder = tmp_path / "runs" / cfg.study
    folder.mkdir(parents=True)
    monkeypatch.setattr("mcstudy.runs.train_method", lambda *a, **k: pytest.fail("a locked study trained"))
    holder = _hold_lock(folder / ms.STUDY_LOCK)
    try:
        with pytest.raises(ms.StudyBusyError, match=rf"{folder} is in use by another sweep \(pid 4242 on other-host "
                                                    rf"since today\): wait until it ends, or set study= \(--study\)"):
            ms.run_sweep(cfg, ["baseline"], [1], progress=False)
        lr_folder = tmp_path / "runs" / f"{cfg.study}-x-lr"  # a budget study locks its lr sweep's folder too
        lr_folder.mkdir()
        holder.kill()
        holder.wait()
        holder = _hold_lock(lr_folder / ms.STUDY_LOCK)
        with pytest.raises(ms.StudyBusyError, match=f"{lr_folder} is in use"):
            ms.run_budget_study(ms.replace_config(cfg, study=f"{cfg.study}-x"), ["baseline"], (0.5,), progress=False)
        assert not (tmp_path / "runs" / f"{cfg.study}-x" / ms.STUDY_LOCK).exists()  # the first lock was let go
    finally:
        holder.kill()
        holder.wait()


def test_the_lock_of_a_dead_sweep_is_taken_over_and_removed_at_the_end(tmp_path, monkeypatch, capsys):
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path))
    lock = tmp_path / "runs" / cfg.study / ms.STUDY_LOCK
    lock.parent.mkdir(parents=True)
    lock.write_text("pid 999999 on this-host since yesterday\n")  # killed: its file stayed, its flock did not
    seen = []

    def fake_run(method, run_cfg, prepared, seed, **kwargs):
        seen.append(lock.read_text())
        return {"method": method, "seed": seed, "accuracy": 0.5, "train_seconds": 1.0,
                "config": ms.portable_config(ms.config_for_method(run_cfg, method))}

    monkeypatch.setattr("mcstudy.runs.train_method", fake_run)
    monkeypatch.setattr("mcstudy.runs.prepare", lambda cfg: None)
    ms.run_sweep(cfg, ["baseline"], [1], progress=False)
    assert seen[0].startswith(f"pid {os.getpid()} on ")
    assert ("note: took over the lock of " + str(lock.parent) + " from a sweep that is no longer running "
            "(pid 999999 on this-host since yesterday)") in " ".join(capsys.readouterr().err.split())
    assert not lock.exists()
    with pytest.raises(ms.ConfigError):  # an error inside the sweep lets the lock go too
        ms.run_sweep(ms.replace_config(cfg, epochs=0), ["baseline"], [1], progress=False)
    monkeypatch.setattr("mcstudy.runs.train_method", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        ms.run_sweep(cfg, ["baseline"], [2], progress=False)
    assert not lock.exists()


def test_pool_scoring_table_reads_the_scoring_share_and_the_capture_price_off_run_files():
    """pool_scoring_table: one row per (study, method, budget) of MC-Learn-family runs with a time
    breakdown; the medians over seeds of the scoring seconds and of their share of the train
    seconds, the capture seconds of the step-cost table, and capture / scoring; lr-tuning runs
    (their labels carry the lr) and other methods are left out."""
    def run(method, seed, score, train, capture=0.07, label=None, budget=1 / 3):
        return {"study": "s", "method": method, "seed": seed, "time_budget": budget, "train_seconds": train,
                "run_label": label or ms.run_label(method, budget),
                "telemetry": {"refreshes": 6, "measured_seconds": {"score": score, "update": train - score},
                              "budget": {"step_costs": {"capture_seconds": capture}}}}
    records = [run("mclearn", 42, 0.02, 2.0), run("mclearn", 43, 0.04, 2.0), run("mclearn", 44, 0.09, 3.0),
               run("mclearn", 45, 5.0, 10.0, label="mclearn-b0.33-lr1e-04"), run("uniform", 42, 1.0, 2.0),
               run("mclearn-free", 42, 0.01, 2.0, capture=0.05, budget=0.5)]
    table = ms.pool_scoring_table(records)
    assert list(table["method"]) == ["mclearn", "mclearn-free"]
    row = table.iloc[0]
    assert row["seeds"] == 3 and row["scoring s"] == 0.04 and row["scoring %"] == 2.0  # medians of 1, 2, 3 %
    assert row["capture s"] == 0.07 and row["capture / scoring"] == pytest.approx(0.07 / 0.04, abs=0.01)
    free = table.iloc[1]
    assert free["budget"] == "1/2" and free["scoring %"] == 0.5 and free["capture / scoring"] == 5.0


def test_the_pool_scoring_benchmark_runs_eagerly_on_cpu(prepared):
    """benchmarks/pool_scoring_graph.py on the cpu-smoke data: the product's refresh scoring and the
    static pool-sized batch are timed, the graphed form is skipped off CUDA and says so."""
    sys.path.insert(0, str(ms.REPO_ROOT / "benchmarks"))
    import pool_scoring_graph

    out = pool_scoring_graph.measure(prepared, refreshes=2)
    assert out["graphed"] is False and "no CUDA" in out["note"]
    assert out["pool_rows"] > 0 and out["product_eager_seconds"] > 0 and out["static_eager_seconds"] > 0


def test_an_ablation_study_is_named_by_its_suffix_and_its_sweep_only_on_request():
    assert ms.is_ablation_study("sst2-mpnet-h200-ablation") and not ms.is_ablation_study("sst2-mpnet-h200-equal-time")
    assert not ms.is_ablation_study("sst2-mpnet-h200-ablation-lr")  # the sweep is a study of its own
    assert ms.is_ablation_study("sst2-mpnet-h200-ablation-lr", include_sweeps=True)
    assert not ms.is_ablation_study("sst2-mpnet-h200-equal-time-lr", include_sweeps=True)


def test_headline_of_a_fair_study_gives_the_answers_holm_corrected_verdict(tmp_path):
    """In a fair-protocol study the headline's verdict is the README answer's: Holm over every
    comparison of the fair studies. `mclearn` 0.6, 1.0, 1.4 points above short-schedule at 1/2 on
    s-fair (t = 4.3301 on 2 df, p = 0.04941: "better" on its own) and `uniform` -0.1, 0, +0.1 on
    t-fair (p 1): m = 2, so mclearn's adjusted p is 2 x 0.04941 = 0.099, a tie."""
    from test_equal_time import _fair

    ref = (0.88, 0.89, 0.90)
    for study, method, diffs in (("s-mpnet-h200-fair", "mclearn", (0.006, 0.010, 0.014)),
                                 ("t-mpnet-h200-fair", "uniform", (-0.001, 0.0, 0.001))):
        records = [_fair("baseline", 0.0, s, 0.95, study=study) for s in (1, 2, 3)]
        records += [_fair("short-schedule", 0.5, s, a, study=study) for s, a in zip((1, 2, 3), ref)]
        records += [_fair(method, 0.5, s, a + d, study=study) for s, a, d in zip((1, 2, 3), ref, diffs)]
        for record in records:
            record = {**record, "accuracy": record["test_accuracy"], "device": "NVIDIA H200",
                      "examples_backward": 1, "examples_scored": 0, "config": {"lr": 1e-4}}
            ms.write_json_atomic(ms.run_path(tmp_path, study, record["run_label"], record["seed"]), record)
    ms.summarize(tmp_path, show=False)
    first = ms.headline(tmp_path, study="s-mpnet-h200-fair").split("\n\n")[0]
    assert first.endswith("it is +1.00 points [+0.01, +1.99] paired over 3 seeds: Holm p 0.099 over the 2 "
                          "comparisons of the fair studies: tie."), first
