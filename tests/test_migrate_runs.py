"""The run store's format (gzip-compressed JSON) and benchmarks/migrate_runs.py, which converts run
files of the old format (plain JSON, old method ids and keys) to it."""
import gzip
import json
import sys

import pytest

import mcstudy as ms
from conftest import stored_run

sys.path.insert(0, str(ms.REPO_ROOT / "benchmarks"))
import migrate_runs  # noqa: E402


def old_file(path, record):
    """Write `record` as a run file of the old format (plain JSON) at `path` (<label>-seed<k>.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def old_path(results, study, label, seed):
    return ms.run_path(results, study, label, seed).with_name(f"{label}-seed{seed}.json")


def test_a_run_round_trips_through_the_compressed_store(tmp_path):
    """A record is stored as gzip-compressed JSON under <label>-seed<k>.json.gz, the same bytes for
    the same record (no time stamp), and read back equal, NaN included."""
    record = {"study": "s", "method": "baseline", "seed": 1, "accuracy": float("nan"), "train_seconds": 1.25,
              "curve": [{"step": 1, "loss": 0.5}]}
    path = ms.run_path(tmp_path, "s", "baseline", 1)
    assert path.name == "baseline-seed1.json.gz"
    ms.write_json_atomic(path, record)
    raw = path.read_bytes()
    assert raw[:2] == b"\x1f\x8b"  # gzip's magic number
    assert json.loads(gzip.decompress(raw)) == json.loads(json.dumps(record))
    back = ms.read_run(path)
    assert back["accuracy"] != back["accuracy"] and {k: v for k, v in back.items() if k != "accuracy"} == \
        {k: v for k, v in record.items() if k != "accuracy"}
    ms.write_json_atomic(path, record)
    assert path.read_bytes() == raw
    assert [r["method"] for r in ms.load_runs(tmp_path)] == ["baseline"]


def test_an_old_format_run_file_is_one_line_error_naming_the_migration(tmp_path):
    """A plain .json run file is neither retrained nor left out silently: a sweep's read of its run
    and a table's read of its study raise one line naming the file and benchmarks/migrate_runs.py; a
    summary leaves it out with that line as a warning."""
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path))
    path = old_file(old_path(tmp_path, cfg.study, "baseline", 1),
                    {"study": cfg.study, "method": "baseline", "seed": 1, "accuracy": 0.5, "train_seconds": 1.0})
    fix = f"`python benchmarks/migrate_runs.py {tmp_path}`"
    with pytest.raises(ms.RunFileError, match=f"^{path} is a run file in the old format .*: convert the run files of "
                                              f"{tmp_path} with {fix}, then run again$"):
        ms.read_finished_run(ms.run_path(tmp_path, cfg.study, "baseline", 1), cfg, "baseline")
    with pytest.raises(ms.RunFileError, match=f"^{path} is a run file in the old format"):
        ms.load_runs(tmp_path)
    with pytest.raises(ms.RunFileError, match=f"^{path} is a run file in the old format"):
        ms.read_run(path)
    assert ms.summary_rows(tmp_path).empty


def test_the_command_line_names_the_migration_for_an_old_run_file(tmp_path, capsys):
    path = old_file(old_path(tmp_path, "sweep-cpu-smoke", "baseline", 42),
                    {"study": "sweep-cpu-smoke", "method": "baseline", "seed": 42})
    code = ms.main(["--preset", "cpu-smoke", "--methods", "baseline", "--results-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith(f"error: {path} is a run file in the old format") and "migrate_runs.py" in err[0]
    assert path.exists() and not ms.run_path(tmp_path, "sweep-cpu-smoke", "baseline", 42).exists()


def _old_names(config: dict, method: str) -> dict:
    """Return a portable config as a run file of the old names wrote it (migrate_runs.FILE_RENAMED)."""
    old = {k: v for k, v in config.items() if k != "step_budget_ratio"}  # a key the old names lack
    # mclearn's share of the baseline's seconds (1/3), in every method's config; mclearn-paper's
    # per-step ratio had the same key
    old["budget_ratio"] = config["step_budget_ratio"] if method == "mclearn-paper" else 1 / 3
    back = {new: name for name, new in ms.RENAMED.items() if name != "budget_ratio"}
    return {back.get(k, k): v for k, v in old.items()}


@pytest.mark.parametrize("method", ["mclearn", "mclearn-paper"])
def test_a_run_file_with_old_key_names_is_migrated_and_resumes_as_finished(tmp_path, method):
    """A run file of the old names (rho_init, rho_bounds, q_bounds; mclearn-paper's per-step
    budget_ratio; examples_seen; mclearn-paper's logged "rho" and "q") is migrated to today's names:
    the same settings resume as finished, a changed one is stale and named by its new key."""
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path))
    config = _old_names(ms.portable_config(ms.config_for_method(cfg, method)), method)
    assert {"rho_init", "rho_bounds", "q_bounds"} <= set(config) and "replay_share_init" not in config
    assert config["budget_ratio"] == (0.55 if method == "mclearn-paper" else 1 / 3) and "step_budget_ratio" not in config
    new = stored_run(cfg, method, 1, config=config, examples_seen=7,
                     telemetry={"steps": [{"step": 1, "rho": 0.1, "q": [0.2, 0.3]}]})
    path = old_file(old_path(tmp_path, cfg.study, method, 1), ms.read_run(new))
    new.unlink()
    assert migrate_runs.migrate(tmp_path) == [(path, new)]
    assert not path.exists()
    record = ms.read_finished_run(new, cfg, method)
    assert record is not None and record["examples_backward"] == 7 and "examples_seen" not in record
    assert record["config"]["replay_share_bounds"] == list(ms.config_for_method(cfg, method).replay_share_bounds)
    assert "budget_ratio" not in record["config"] and record["config"]["time_budget"] == 0.0
    assert record["telemetry"]["steps"] == [{"step": 1, "replay_share": 0.1, "full_prob": [0.2, 0.3]}]
    key = "step_budget_ratio" if method == "mclearn-paper" else "replay_share_init"
    changed = ms.with_explicit(cfg, **{key: 0.45})
    with pytest.raises(ValueError, match=rf"\({key} differ: {key} .* stored, 0.45 now\)"):
        ms.read_finished_run(new, changed, method)


def test_a_run_file_under_an_old_method_id_is_migrated_and_resumes_as_finished(prepared, smoke_cfg, monkeypatch):
    """rho_loss-seed1.json (method "rho_loss", the old key names, examples_seen) becomes
    rho-loss-seed1.json.gz in today's names, its log following it; a sweep of "rho-loss" reads it
    back without training; an old id passed to a sweep or a budget study is refused naming the new one."""
    record = ms.train_method("rho-loss", smoke_cfg, prepared, seed=1, progress=False)
    old = dict(record, method="rho_loss", run_label="rho_loss",
               config=_old_names(record["config"], "rho-loss"), examples_seen=record["examples_backward"])
    del old["examples_backward"]
    path = old_file(old_path(smoke_cfg.results_dir, smoke_cfg.study, "rho_loss", 1), old)
    path.with_name("rho_loss-seed1.jsonl").write_text('{"step": 1}\n')
    new = ms.run_path(smoke_cfg.results_dir, smoke_cfg.study, "rho-loss", 1)
    assert migrate_runs.migrate(smoke_cfg.results_dir, dry_run=True) == [(path, new)] and path.exists()
    assert migrate_runs.migrate(smoke_cfg.results_dir) == [(path, new)]
    assert gzip.decompress(ms.run_log_path(new).read_bytes()) == b'{"step": 1}\n'
    monkeypatch.setattr("mcstudy.runs.train_method", lambda *a, **k: pytest.fail("the stored run was retrained"))
    again, = ms.run_sweep(smoke_cfg, ["rho-loss"], [1], prepared=prepared, progress=False)
    assert again["method"] == again["run_label"] == "rho-loss" and again["accuracy"] == record["accuracy"]
    assert again["examples_backward"] == record["examples_backward"] and "examples_seen" not in again
    assert sorted(p.name for p in new.parent.iterdir()) == ["rho-loss-seed1.json.gz", "rho-loss-seed1.jsonl.gz"]
    with pytest.raises(ValueError, match="Method 'rho_loss' is now 'rho-loss': use the new id"):
        ms.run_sweep(smoke_cfg, ["rho_loss"], [1], prepared=prepared, progress=False)
    with pytest.raises(ValueError, match="Method 'selective_backprop' is now 'selective-backprop'"):
        ms.run_budget_study(smoke_cfg, ["baseline", "selective-backprop"], (0.5,), prepared=prepared,
                            method_budgets={"selective_backprop": [0.5]})


def test_migration_is_repeatable_and_refuses_a_run_stored_both_ways_differently(tmp_path):
    """A second run converts nothing; a plain file beside the same run's .json.gz is converted (and
    removed) when the two records are equal, and refused naming both when they differ."""
    record = {"study": "s", "method": "baseline", "seed": 1, "run_label": "baseline", "accuracy": 0.5,
              "train_seconds": 1.0, "examples_seen": 3}
    path = old_file(old_path(tmp_path, "s", "baseline", 1), record)
    new = ms.run_path(tmp_path, "s", "baseline", 1)
    assert migrate_runs.migrate(tmp_path) == [(path, new)] and migrate_runs.migrate(tmp_path) == []
    assert migrate_runs.main([str(tmp_path)]) == 0
    old_file(path, record)  # the same run again, as older code writes it
    assert migrate_runs.migrate(tmp_path) == [(path, new)] and not path.exists()
    old_file(path, dict(record, accuracy=0.6))
    with pytest.raises(ValueError, match=f"{path} would become {new}, which exists and holds another record"):
        migrate_runs.migrate(tmp_path)
    assert path.exists() and ms.read_run(new)["accuracy"] == 0.5


def _preset_run(results, study, method, seed, label, once=None):
    """Write a run file of the old format and previous protocol (no "protocol") with its log."""
    config = {} if once is None else {"once_draws": once}
    path = old_file(old_path(results, study, label, seed),
                    {"study": study, "method": method, "seed": seed, "run_label": label, "config": config,
                     "train_seconds": 1.0, "accuracy": 0.5})
    path.with_name(f"{label}-seed{seed}.jsonl").write_text(f'{{"step": {seed}}}\n')
    return path


def test_migration_names_each_stored_mclearn_run_of_the_previous_protocol_by_its_config(tmp_path):
    """A previous-protocol "mclearn" run with once_draws off is mclearn-v1's, and a "mclearn-once"
    run outside an ablation study is today's mclearn's; ablation runs and runs of the fair protocol
    keep their ids; each log follows its run."""
    _preset_run(tmp_path, "eq", "mclearn", 1, "mclearn-b0.33", once=False)
    _preset_run(tmp_path, "eq", "mclearn", 2, "mclearn-b0.33")  # before the variants: no once_draws
    _preset_run(tmp_path, "eq", "mclearn-once", 1, "mclearn-once-b0.33", once=True)
    _preset_run(tmp_path, "eq-lr", "mclearn-once", 1, "mclearn-once-b0.50-lr1e-03", once=True)
    _preset_run(tmp_path, "x-ablation", "mclearn-once", 1, "mclearn-once-b0.33", once=True)
    _preset_run(tmp_path, "x-ablation-lr", "mclearn-once", 1, "mclearn-once-b0.50-lr1e-03", once=True)
    _preset_run(tmp_path, "eq", "mclearn", 3, "mclearn-b0.33", once=True)  # today's mclearn
    fair = _preset_run(tmp_path, "fair", "mclearn-once", 1, "mclearn-once-b0.33", once=True)
    fair.write_text(json.dumps(dict(json.loads(fair.read_text()), protocol="fair")))
    assert len(migrate_runs.migrate(tmp_path)) == 8
    expect = {("eq", "mclearn-b0.33", 1): "mclearn-once", ("eq", "mclearn-v1-b0.33", 1): "mclearn",
              ("eq", "mclearn-v1-b0.33", 2): "mclearn", ("eq-lr", "mclearn-b0.50-lr1e-03", 1): "mclearn-once",
              ("x-ablation", "mclearn-once-b0.33", 1): None, ("x-ablation-lr", "mclearn-once-b0.50-lr1e-03", 1): None,
              ("eq", "mclearn-b0.33", 3): None, ("fair", "mclearn-once-b0.33", 1): None}
    for (study, label, seed), renamed_from in expect.items():
        path = ms.run_path(tmp_path, study, label, seed)
        record = ms.read_run(path)
        assert record["run_label"] == label and record.get("renamed_from") == renamed_from
        assert gzip.decompress(ms.run_log_path(path).read_bytes()).decode() == f'{{"step": {seed}}}\n'
    assert not list(tmp_path.glob("runs/*/*.json")) and not list(tmp_path.glob("runs/*/*.jsonl"))


def test_migration_refuses_two_old_files_of_one_run(tmp_path):
    _preset_run(tmp_path, "eq", "mclearn", 1, "mclearn-b0.33", once=False)
    _preset_run(tmp_path, "eq", "mclearn-v1", 1, "mclearn-v1-b0.33", once=False)
    with pytest.raises(ValueError, match=r"and another old run file both become .*mclearn-v1-b0.33-seed1.json.gz"):
        migrate_runs.migrate(tmp_path)
    assert len(list(tmp_path.glob("runs/eq/*.json"))) == 2  # nothing converted


def test_the_step_logs_of_migrated_runs_are_compressed_once(tmp_path):
    """A plain step log beside a run in today's format (older code wrote both plain) becomes
    <label>-seed<k>.jsonl.gz with the same lines; a second run compresses nothing."""
    record = {"study": "s", "method": "baseline", "seed": 1, "accuracy": 0.5, "train_seconds": 1.0}
    path = ms.run_path(tmp_path, "s", "baseline", 1)
    ms.write_json_atomic(path, record)
    plain = path.with_name("baseline-seed1.jsonl")
    plain.write_text('{"step": 10, "loss": 1.5}\n')
    assert migrate_runs.compress_logs(tmp_path, dry_run=True) == [plain] and plain.exists()
    assert migrate_runs.main([str(tmp_path)]) == 0
    assert not plain.exists() and sorted(p.name for p in path.parent.iterdir()) == [path.name, "baseline-seed1.jsonl.gz"]
    assert gzip.decompress(ms.run_log_path(path).read_bytes()) == b'{"step": 10, "loss": 1.5}\n'
    assert migrate_runs.compress_logs(tmp_path) == []


def test_a_run_writes_its_step_log_compressed(prepared, smoke_cfg):
    """A sweep's run leaves <label>-seed<k>.jsonl.gz beside its run file: one JSON object a line."""
    ms.run_sweep(smoke_cfg, ["baseline"], [1], prepared=prepared, progress=False)
    log = ms.run_log_path(ms.run_path(smoke_cfg.results_dir, smoke_cfg.study, "baseline", 1))
    assert log.name == "baseline-seed1.jsonl.gz" and log.read_bytes()[:2] == b"\x1f\x8b"
    lines = gzip.decompress(log.read_bytes()).decode().splitlines()
    assert lines and all(isinstance(json.loads(line)["step"], int) for line in lines)


def _budget_run(cfg, method, label, ratio, time_budget=None, explicit=(), **fields):
    """Write a run file in today's format whose config has the old budget key (budget_ratio, set to
    `ratio`), the record's and config's time_budget `time_budget` (None: a file that predates it)."""
    config = dict(ms.portable_config(ms.config_for_method(cfg, method)), budget_ratio=ratio, explicit=list(explicit))
    if time_budget is None:
        del config["time_budget"]
    else:
        config["time_budget"] = fields["time_budget"] = time_budget
    return stored_run(cfg, method, 42, config=config, run_label=label, **fields)


def test_run_files_with_the_old_budget_key_are_rewritten_in_place_in_todays_keys(tmp_path, capsys):
    """budget_ratio (MC-Learn's share of the baseline's seconds, today's time_budget) in run files in
    today's format: in an MC-Learn run at a budget study's share it goes from the config, its knob
    and `explicit`, and the solver's telemetry names it time_budget; an old mclearn-v1 run at 0.2
    outside a budget study keeps 0.2 as its config's time_budget (so it is stale for today's
    sweep); at the default share (1/3) it goes and the run resumes; the baseline never read it; a
    mclearn-paper file is left byte for byte. Rewritten in place, once: a second pass changes
    nothing."""
    cfg = ms.make_config("cpu-smoke", results_dir=str(tmp_path))
    budget = {"time_budget": 0.5, "steps": 3}
    studied = _budget_run(cfg, "mclearn", "mclearn-b0.50", 0.5, 0.5, ["budget_ratio", "lr", "time_budget"],
                          knobs={"budget_ratio": 0.5}, telemetry={"budget": {"budget_ratio": 0.5, "steps": 3}})
    fixed = _budget_run(cfg, "mclearn-v1", "mclearn-v1", 0.2, None, ["budget_ratio", "study"],
                        telemetry={"budget": {"budget_ratio": 0.2}})
    plain = _budget_run(cfg, "mclearn", "mclearn", 1 / 3, 0.0)
    base = _budget_run(cfg, "baseline", "baseline", 0.55, 0.0, ["budget_ratio"])
    paper = stored_run(cfg, "mclearn-paper", 42)
    before = {p: p.read_bytes() for p in (studied, fixed, plain, base, paper)}
    assert migrate_runs.migrate_stored(tmp_path, dry_run=True) == sorted([studied, fixed, plain, base])
    assert all(p.read_bytes() == raw for p, raw in before.items())
    assert migrate_runs.main([str(tmp_path)]) == 0
    assert "0 run files converted, 4 in today's format rewritten in today's keys" in capsys.readouterr().out
    assert paper.read_bytes() == before[paper] and migrate_runs.migrate_stored(tmp_path) == []
    records = {p: ms.read_run(p) for p in (studied, fixed, plain, base)}
    assert not any('"budget_ratio"' in json.dumps(r) for r in records.values())
    one = records[studied]
    assert one["knobs"] == {} and one["telemetry"]["budget"] == budget
    assert one["config"]["time_budget"] == 0.5 and one["config"]["explicit"] == ["lr", "time_budget"]
    v1 = records[fixed]["config"]
    assert v1["time_budget"] == 0.2 and v1["explicit"] == ["time_budget", "study"]
    assert records[fixed]["telemetry"]["budget"] == {"time_budget": 0.2}
    assert records[base]["config"]["explicit"] == [] and records[base]["config"]["time_budget"] == 0.0
    with pytest.raises(ValueError, match=r"\(time_budget differ: time_budget 0.2 stored, 0.0 now\)"):
        ms.read_finished_run(fixed, cfg, "mclearn-v1")
    assert ms.read_finished_run(plain, cfg, "mclearn") is not None
    assert ms.read_finished_run(base, cfg, "baseline") is not None
    ms.write_json_atomic(studied, one)
    assert migrate_runs.compact(ms.read_run(studied)) == migrate_runs.compact(one)  # the run store's bytes
