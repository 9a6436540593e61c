"""The command line end to end (section 8's main): every bad input or fault gives one line
"error: ..." (or "interrupted: ...") on stderr and a non-zero exit code; finished work is kept."""
import gzip
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

import mclearn_core as mc
import mcstudy as ms
import mcstudy.train

TINY = ["--preset", "cpu-smoke", "--set", "max_train_examples=64", "max_eval_examples=32"]


def logical_lines(text):
    """Return the lines of printed text with mc.say's continuation lines (indented two spaces) joined
    to the line they continue."""
    lines = []
    for line in text.splitlines():
        if line.startswith("  ") and lines:
            lines[-1] += " " + line.strip()
        else:
            lines.append(line)
    return lines


def run_cli(capsys, *argv):
    """Return (exit code, stderr lines without progress bars, each one logical line, stdout) of ms.main(argv)."""
    code = ms.main(list(argv))
    out = capsys.readouterr()
    lines = [line for line in logical_lines(out.err) if line.strip() and "it/s]" not in line and "|" not in line]
    return code, lines, out.out


def assert_one_error(lines, message):
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message in lines[0], lines[0]


@pytest.mark.parametrize("items, message", [
    (["epochs=two"], "error: --set epochs=two: epochs expects int, e.g. epochs=1"),
    (["batch_size=1.5"], "error: --set batch_size=1.5: batch_size expects int, e.g. batch_size=64"),
    (["epochs"], "error: --set takes KEY=VALUE items, got 'epochs'"),
    (["batch_sise=8"], "Did you mean 'batch_size'?"),
])
def test_bad_set_values_exit_2_with_one_line(capsys, tmp_path, items, message):
    code, lines, _ = run_cli(capsys, "--preset", "cpu-smoke", "--results-dir", str(tmp_path), "--set", *items)
    assert code == 2
    assert_one_error(lines, message)
    assert not (tmp_path / "runs").exists()


def test_a_time_budget_outside_a_budget_study_is_refused_before_anything_runs(capsys, tmp_path, smoke_cfg):
    """time_budget set for a plain sweep labelled its mclearn run -b0.50, stored it under the plain
    name and then stopped on a run-label error: it is refused up front, naming the key and the fix
    (budget studies set it per run), by the command line (exit 2, nothing written) and by run_sweep;
    the old name budget_ratio names time_budget and where it is set. budget_seconds (a run's clock,
    the share x the reference's seconds) is refused the same way."""
    refused = {  # key=value: (its line on the command line, the value given to run_sweep, a method reading it)
        "time_budget": ("time_budget=0.5 is set per run by budget studies, not by a sweep (which trains mclearn at "
                        "1/3 of the baseline's time): drop time_budget=, or run a budget study (notebook 04, or "
                        "ms.run_budget_study with time_budgets=[0.5])", 0.25, "mclearn"),
        "budget_seconds": ("budget_seconds=0.5 is set per run by budget studies (its share of the reference's "
                           "seconds), not by a sweep: drop budget_seconds=, or run a budget study (notebook 04, or "
                           "ms.run_budget_study with time_budgets=[...])", 12.0, "short-schedule"),
    }
    for key, (line, value, method) in refused.items():
        code, lines, _ = run_cli(capsys, *TINY, f"{key}=0.5", "--methods", "baseline", method,
                                 "--results-dir", str(tmp_path))
        assert code == 2 and not (tmp_path / "runs").exists()
        assert_one_error(lines, f"error: {line}")
        with pytest.raises(ValueError, match=rf"^{key}={value:g} is set per run by budget studies"):
            ms.run_sweep(ms.with_explicit(smoke_cfg, **{key: value}), [method], progress=False)
        assert not ms.run_path(smoke_cfg.results_dir, smoke_cfg.study, method, 42).exists()
    code, lines, _ = run_cli(capsys, *TINY, "budget_ratio=0.5", "--results-dir", str(tmp_path))
    assert code == 2
    assert_one_error(lines, "error: Config key 'budget_ratio' is now 'time_budget': it is set per run by budget "
                            "studies (notebook 04's time_budgets, ms.run_budget_study).")


@pytest.mark.parametrize("argv, message", [
    (["--set", "epochs=0"], "error: epochs=0 is out of range: epochs must be >= 1, e.g. epochs=1"),
    (["--set", "batch_size=-4"], "error: batch_size=-4 is out of range: batch_size must be >= 1"),
    (["--set", "batch_size=0"], "error: batch_size=0 is out of range"),
    (["--set", "seeds=[]"], "error: seeds is empty: give at least one value"),
    (["--set", "time_budget=1.5"], "error: time_budget=1.5 is out of range: time_budget must be in [0, 1]"),
    (["--set", "eval_points=0"], "error: eval_points=0 is out of range"),
    (["--set", "grad_accum_steps=0"], "error: grad_accum_steps=0 is out of range"),
    (["--set", "max_train_examples=2"], "error: max_train_examples=2 is out of range"),
    (["--set", "max_length=0"], "error: max_length=0 is out of range"),
    (["--set", "pad_multiple=0"], "error: pad_multiple=0 is out of range"),
    (["--study", "../../x"], "error: study='../../x' must be one folder name inside results_dir/runs"),
    (["--model", "./no/such/model"], "error: Model folder './no/such/model' does not exist: set model_name= (--model)"),
])
def test_degenerate_settings_exit_2_before_anything_runs(capsys, tmp_path, argv, message):
    code, lines, _ = run_cli(capsys, "--preset", "cpu-smoke", "--results-dir", str(tmp_path), *argv)
    assert code == 2
    assert_one_error(lines, message)
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "x").exists()


@pytest.mark.parametrize("argv, message", [
    (["--methods", "baseline", "rho_loss"], "error: argument --methods: method 'rho_loss' is now 'rho-loss': "
                                            "pass --methods rho-loss"),
    (["--methods", "selective_backprop"], "is now 'selective-backprop'"),
    (["--methods", "short_schedule"], "is now 'short-schedule'"),
    (["--set", "rho_init=0.3"], "error: Config key 'rho_init' is now 'replay_share_init': set "
                                "replay_share_init= instead."),
    (["--set", "q_bounds=0.1,0.2"], "'q_bounds' is now 'full_prob_bounds'"),
])
def test_an_old_method_id_or_key_exits_2_naming_the_new_one(capsys, tmp_path, argv, message):
    code, lines, _ = run_cli(capsys, "--preset", "cpu-smoke", "--results-dir", str(tmp_path), *argv)
    assert code == 2
    assert_one_error(lines, message)
    assert not (tmp_path / "runs").exists()


def test_a_file_where_a_folder_belongs_exits_2_naming_it(capsys, tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("text,label\na,0\n")
    code, lines, _ = run_cli(capsys, *TINY, "--dataset", str(data), "--results-dir", str(tmp_path / "r"))
    assert code == 2
    assert_one_error(lines, f"error: dataset='{data}' is a file: set dataset= (--dataset) to the folder that holds it")
    code, lines, _ = run_cli(capsys, *TINY, "--model", str(data), "--results-dir", str(tmp_path / "r"))
    assert code == 2
    assert_one_error(lines, f"error: model_name='{data}' is a file: set model_name= (--model) to a folder holding "
                            f"config.json, the weights and the tokenizer files, a hub name, or 'tiny'")
    (tmp_path / "model").mkdir()
    code, lines, _ = run_cli(capsys, *TINY, "--model", str(tmp_path / "model"), "--results-dir", str(tmp_path / "r"))
    assert code == 2
    assert_one_error(lines, f"error: Model folder '{tmp_path / 'model'}' has no config.json: set model_name= (--model)")
    code, lines, _ = run_cli(capsys, *TINY, "--results-dir", str(data))
    assert code == 2
    assert_one_error(lines, f"error: results_dir='{data}' is a file: set results_dir= (--results-dir) to a folder")


def _write_split(folder, name, texts, labels):
    folder.mkdir(exist_ok=True)
    pd.DataFrame({"text": texts, "label": labels}).to_csv(folder / f"{name}.csv", index=False)


@pytest.mark.parametrize("case, message", [
    ("missing texts", "error: The train split has 2 missing and 0 empty texts of 40 in column 'text' (rows 3, 7)"),
    ("empty texts", "error: The train split has 0 missing and 40 empty texts of 40 in column 'text'"),
    ("missing labels", "error: The train split has 1 missing labels (NaN/None) of 40 in column 'label' (rows 5)"),
    ("one class", "has one class (label 1, 40 rows): a classifier needs at least two"),
    ("bad labels.json", "labels.json is not valid JSON (Expecting value: line 2 column 1): write the class names"),
    ("eval classes", "has labels 2 that the train split never has (train has 0, 1). Use splits with the same classes"),
])
def test_degenerate_data_exits_1_naming_the_column_or_file(capsys, tmp_path, case, message):
    data = tmp_path / "data"
    texts, labels = [f"text number {i}" for i in range(40)], [i % 2 for i in range(40)]
    if case == "missing texts":
        texts[3] = texts[7] = None
    if case == "empty texts":
        texts = ["  "] * 40  # (an empty CSV field reads as missing)
    if case == "missing labels":
        labels[5] = None
    if case == "one class":
        labels = [1] * 40
    _write_split(data, "train", texts, labels)
    _write_split(data, "test", [f"eval {i}" for i in range(8)], [i % (3 if case == "eval classes" else 2) for i in range(8)])
    if case == "bad labels.json":
        (data / "labels.json").write_text('["neg", "pos",\n')
    code, lines, _ = run_cli(capsys, *TINY, "--dataset", str(data), "--results-dir", str(tmp_path / "r"))
    assert code == 1
    assert_one_error(lines, message)
    assert not list((tmp_path / "r").glob("runs/*/*.json"))


def test_bad_choices_exit_2_with_one_line(capsys, tmp_path):
    code, lines, _ = run_cli(capsys, "--preset", "cpu-smoke", "--methods", "nope")
    assert code == 2
    assert_one_error(lines, "argument --methods: invalid choice: 'nope'")
    code, lines, _ = run_cli(capsys, "--preset", "cpu-9000")
    assert code == 2
    assert_one_error(lines, "Unknown preset 'cpu-9000'. Choose one of: auto,")


def test_valid_values_that_json_could_not_read_run(capsys, tmp_path):
    """precision=fp16 and lr=.001 went through json.loads and crashed; they are a str and a float."""
    code, _, out = run_cli(capsys, *TINY, "precision=fp16", "lr=.001", "--methods", "baseline",
                           "--results-dir", str(tmp_path))
    assert code == 0
    record = ms.read_run(ms.run_path(tmp_path, "sweep-cpu-smoke", "baseline", 42))
    assert record["config"]["precision"] == "fp16" and record["config"]["lr"] == 0.001
    assert "baseline" in out  # the summary table


def test_labels_beyond_labels_json_exit_1_naming_the_split(capsys, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    texts = [f"text number {i}" for i in range(40)]
    pd.DataFrame({"text": texts, "label": np.arange(40) % 4 + 7}).to_parquet(data / "train.parquet")
    pd.DataFrame({"text": texts[:8], "label": np.arange(8) % 4}).to_parquet(data / "test.parquet")
    (data / "labels.json").write_text(json.dumps(["a", "b", "c", "d"]))
    code, lines, _ = run_cli(capsys, *TINY, "--dataset", str(data), "--results-dir", str(tmp_path / "r"))
    assert code == 1
    assert_one_error(lines, "The train split of local:")
    assert "has labels 7, 8, 9, 10, but its class names (labels.json, or the hub's) list 4 classes" in lines[0]


def test_diverged_mclearn_exits_1_with_the_shared_message(capsys, tmp_path):
    code, lines, _ = run_cli(capsys, "--preset", "cpu-smoke", "--methods", "mclearn", "--set", "lr=1e6",
                             "--results-dir", str(tmp_path))
    assert code == 1
    assert_one_error(lines, "error: mclearn: the training loss became nan at step")
    assert "Lower lr=" in lines[0]
    assert list((tmp_path / "runs" / "sweep-cpu-smoke").iterdir()) == []  # no run file, no partial log


@pytest.mark.parametrize("flag, knob", [("--model", "--model (model_name=)"),
                                        ("--dataset", "--dataset (dataset=)")])
def test_hub_names_fail_within_seconds_when_offline(capsys, tmp_path, monkeypatch, flag, knob):
    """No offline switch set and no hub answering: a hub name fails at once, naming the local-path
    parameter, without the hub libraries' retries (they back off with time.sleep, about 49 s in all,
    and chain three tracebacks): the sleeps asked for are counted, not the host's wall time."""
    for var in ms._OFFLINE_SWITCHES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused at once
    ms._hub_answers.cache_clear()
    slept = []
    monkeypatch.setattr(time, "sleep", slept.append)
    try:
        code, lines, _ = run_cli(capsys, *TINY, flag, "no-such-thing", "--results-dir", str(tmp_path))
    finally:
        ms._hub_answers.cache_clear()
    assert sum(slept) < 1.0, slept
    assert code == 1
    assert_one_error(lines, "the hub is not reachable from here and it is not in the local cache")
    assert "'no-such-thing'" in lines[0] and knob in lines[0]


def test_ctrl_c_exits_130_keeps_finished_runs_and_resumes(capsys, tmp_path, monkeypatch):
    argv = [*TINY, "--methods", "baseline", "--seeds", "1", "2", "--results-dir", str(tmp_path)]
    real = ms.Baseline.step

    def ctrl_c_in_seed_2(self, i):
        if self.ctx.generator.initial_seed() == 2 and i == 2:
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(ms.Baseline, "step", ctrl_c_in_seed_2)
    code, lines, _ = run_cli(capsys, *argv)
    assert code == 130
    assert lines[-1] == ("interrupted: finished runs are kept and the unfinished run left no file; run the "
                         "same command again to resume")
    assert all(line.startswith("warning: baseline seed 1:") for line in lines[:-1])  # its chance warning
    folder = tmp_path / "runs" / "sweep-cpu-smoke"
    assert sorted(p.name for p in folder.iterdir()) == ["baseline-seed1.json.gz", "baseline-seed1.jsonl.gz"]
    finished = (folder / "baseline-seed1.json.gz").read_bytes()
    monkeypatch.setattr(ms.Baseline, "step", real)
    code, _, _ = run_cli(capsys, *argv)
    assert code == 0 and (folder / "baseline-seed1.json.gz").read_bytes() == finished  # kept, not retrained
    assert (folder / "baseline-seed2.json.gz").exists()


def test_quick_start_writes_to_an_ignored_folder():
    """README Quick start step 2 must not dirty the tracked results/: it writes to runs-local/."""
    readme = (ms.REPO_ROOT / "README.md").read_text()
    quick = readme[readme.index("## Quick start"):readme.index("## Notebooks")]
    step2 = next(line for line in quick.splitlines() if line.startswith("python -m mcstudy"))
    assert "--results-dir runs-local" in step2
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs-local/runs/x.json"], cwd=ms.REPO_ROOT)
    if ignored.returncode == 128:
        pytest.skip("this copy has no .git")
    assert ignored.returncode == 0


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(capsys, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise KeyError("boom")

    monkeypatch.setattr("mcstudy.cli.run_sweep", broken)
    code, lines, _ = run_cli(capsys, *TINY, "--results-dir", str(tmp_path))
    assert code == 1
    assert_one_error(lines, "error: KeyError: 'boom' (--debug shows the traceback)")
    with pytest.raises(KeyError):
        ms.main([*TINY, "--results-dir", str(tmp_path), "--debug"])


def test_provenance_prints_environment_assignments(capsys):
    code, _, out = run_cli(capsys, "--provenance")
    assert code == 0
    names = [line.split("=")[0] for line in out.splitlines()]
    assert names[:2] == ["MCLEARN_COMMIT", "MCLEARN_GIT_CLEAN"]


def test_the_script_itself_exits_with_the_code_and_one_line(tmp_path):
    """`python -m mcstudy` (not just main()): the exit code reaches the shell, no traceback."""
    done = subprocess.run([sys.executable, "-m", "mcstudy", "--preset", "cpu-smoke",
                           "--results-dir", str(tmp_path), "--set", "lr=fast"],
                          capture_output=True, text=True, timeout=120, cwd=ms.REPO_ROOT)
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["error: --set lr=fast: lr expects float, e.g. lr=2e-05"]


def test_set_none_means_none_not_the_presets_value(capsys, monkeypatch):
    """--set max_train_examples=none lifts cpu-smoke's 480-example limit (make_config alone would
    read None as "keep the preset's value")."""
    seen = []
    monkeypatch.setattr("mcstudy.cli.run_sweep", lambda cfg, *a, **k: seen.append(cfg) or [])
    monkeypatch.setattr("mcstudy.cli.summarize", lambda *a, **k: pd.DataFrame())
    code, _, _ = run_cli(capsys, "--preset", "cpu-smoke", "--set", "max_train_examples=none", "epochs=2")
    assert code == 0
    assert seen[0].max_train_examples is None and seen[0].max_eval_examples == 160 and seen[0].epochs == 2
    assert {"max_train_examples", "epochs"} <= set(seen[0].explicit)


def test_a_busy_host_is_repeated_under_the_final_table(capsys, tmp_path, monkeypatch):
    busy = {"checked": True, "load_avg": 3.0, "cpu_count": 2, "other_cores": 1.9, "busy_processes": []}
    monkeypatch.setattr(mcstudy.train, "host_load", lambda *a, **k: busy)
    code, lines, out = run_cli(capsys, *TINY, "--methods", "baseline", "--results-dir", str(tmp_path))
    assert code == 0
    warning = ms.host_load_warning(busy)
    assert lines[0] == f"warning: baseline seed 42: {warning}"  # as the run started
    table, _, below = out.partition("baseline ")
    assert f"warning: baseline seed 42: {warning}" in logical_lines(below)  # and under the table
    assert ms.read_run(ms.run_path(tmp_path, "sweep-cpu-smoke", "baseline", 42))["warnings"][0] == warning


def test_every_line_the_command_prints_fits_100_columns(capsys, tmp_path, monkeypatch):
    """--help listed the methods on 508-column lines, the busy-host warning ran to 398 columns and
    mclearn's re-plan warning past 100: help, warnings, run lines, table and notes all fit 100 columns
    (paths kept whole: the results folder here is short)."""
    monkeypatch.setenv("COLUMNS", "300")  # a wide terminal: argparse would fill it
    with pytest.raises(SystemExit):
        ms.main(["--help"])
    help_lines = capsys.readouterr().out.splitlines()
    assert any("selective-backprop" in line for line in help_lines)
    busy = {"checked": True, "load_avg": 3.0, "cpu_count": 2, "other_cores": 1.9,
            "busy_processes": [{"pid": 4242, "cores": 1.0, "command": "/usr/bin/python3 " + "train.py --x " * 5}]}
    monkeypatch.setattr(mcstudy.train, "host_load", lambda *a, **k: busy)
    charged = mc.MCLearn.charged_seconds
    monkeypatch.setattr(mc.MCLearn, "charged_seconds",  # over budget at the first refresh: a re-plan
                        lambda self: max(charged(self), 0.9 * self.budget["budget_seconds"]))
    monkeypatch.chdir(tmp_path)
    code = ms.main(["--preset", "cpu-smoke", "--methods", "baseline", "mclearn", "--results-dir", "r",
                    "--set", "refresh_every=2"])  # a refresh, so a re-plan, within the run's few steps
    out = capsys.readouterr()
    assert code == 0
    printed = [part for line in (out.out + out.err).splitlines() for part in line.split("\r")
               if "it/s" not in part and "s/it" not in part]  # progress bars redraw their own line
    assert "warning (mclearn budget)" in "\n".join(printed) and "host was busy" in "\n".join(printed)
    assert any(line.startswith("A wiring check, not the answer") for line in printed)
    too_wide = [line for line in help_lines + printed if len(line) > 100]
    assert too_wide == []


def test_a_line_says_what_is_loading_before_anything_loads(capsys, tmp_path, monkeypatch):
    """The CPU quick start printed nothing while it built the model, before the first progress bar."""
    printed_before = []
    real = ms.load_text_dataset

    def load(cfg):
        printed_before.append(capsys.readouterr().out)
        return real(cfg)

    monkeypatch.setattr("mcstudy.train.load_text_dataset", load)
    code, _, _ = run_cli(capsys, *TINY, "--methods", "baseline", "--results-dir", str(tmp_path))
    assert code == 0
    assert logical_lines(printed_before[0]) == [
        "preparing: loading dataset data/ag_news_sample and the tiny model (2 layers, width 32, built from scratch "
        "with a tokenizer trained on the data) onto cpu, then tokenizing; the runs follow"]


def test_a_second_sweep_on_the_same_study_exits_1_naming_the_holder(capsys, tmp_path):
    from test_results import _hold_lock

    folder = tmp_path / "runs" / "sweep-cpu-smoke"
    folder.mkdir(parents=True)
    holder = _hold_lock(folder / ms.STUDY_LOCK)
    try:
        code, lines, _ = run_cli(capsys, *TINY, "--results-dir", str(tmp_path))
    finally:
        holder.kill()
        holder.wait()
    assert code == 1
    assert_one_error(lines, f"error: {folder} is in use by another sweep (pid 4242 on other-host since today): "
                            f"wait until it ends, or set study= (--study) to another name")


def _sweep_waiting_in_its_last_seed(results, seeds):
    """Start a CLI sweep of the baseline over `seeds` in a child process; return it once it waits (for
    a minute) inside the last seed's run, its log being written, the earlier seeds done."""
    script = (
        "import sys, time\n"
        f"sys.path.insert(0, {str(ms.REPO_ROOT)!r})\n"
        "import mcstudy as ms\n"
        "real = ms.Baseline.step\n"
        "def step(self, i):\n"
        f"    if self.ctx.generator.initial_seed() == {seeds[-1]} and i == 1:\n"
        "        print('waiting', flush=True)\n"
        "        time.sleep(60)\n"
        "    return real(self, i)\n"
        "ms.Baseline.step = step\n"
        f"sys.exit(ms.main({[*TINY, '--methods', 'baseline', '--seeds', *map(str, seeds), '--results-dir', str(results)]!r}))\n")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "waiting" in (line.strip() for line in child.stdout)  # read up to it (earlier seeds' lines first)
    except BaseException:
        child.kill()
        child.communicate()
        raise
    return child


def test_sigterm_exits_143_like_ctrl_c_keeping_finished_runs(tmp_path):
    """SIGTERM (a job scheduler's stop) left a hidden .tmp log and no message (exit 143); it now
    cleans up as Ctrl-C does. The child trains seed 1, then waits inside seed 2's run to be stopped."""
    import os
    import signal

    child = _sweep_waiting_in_its_last_seed(tmp_path, [1, 2])
    try:
        folder = tmp_path / "runs" / "sweep-cpu-smoke"
        assert any(p.name.endswith(".tmp") for p in folder.iterdir())  # seed 2's log, being written
        os.kill(child.pid, signal.SIGTERM)
        _, err = child.communicate(timeout=60)
    finally:
        child.kill()
    assert child.returncode == 143
    assert logical_lines(err)[-1] == ("terminated (SIGTERM): finished runs are kept and the unfinished run left no "
                                    "file; run the same command again to resume")
    assert sorted(p.name for p in folder.iterdir()) == ["baseline-seed1.json.gz", "baseline-seed1.jsonl.gz"]  # no .tmp, no .lock


def test_a_killed_sweeps_temp_file_is_removed_by_the_next_sweep(capsys, tmp_path):
    """A sweep killed outright (SIGKILL, a GPU machine taken back) cannot clean up: it left a 0-byte
    .<name>.<pid>.tmp log, later committed. The next sweep of the study, holding its lock, removes it."""
    import os
    import signal

    child = _sweep_waiting_in_its_last_seed(tmp_path, [1])
    try:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=60)
    finally:
        child.kill()
        child.communicate()
    folder = tmp_path / "runs" / "sweep-cpu-smoke"
    left = [p.name for p in folder.iterdir() if ms.TEMP_FILE.fullmatch(p.name)]
    assert left == [f".baseline-seed1.jsonl.gz.{child.pid}.tmp"]  # the killed run's log
    code, lines, _ = run_cli(capsys, *TINY, "--methods", "baseline", "--seeds", "1", "--results-dir", str(tmp_path))
    assert code == 0
    assert sorted(p.name for p in folder.iterdir()) == ["baseline-seed1.json.gz", "baseline-seed1.jsonl.gz"]
    assert f"note: removed 1 temp file(s) that a killed sweep left in {folder}: {left[0]}" in lines


def test_no_tracked_file_is_a_temp_file():
    """A killed sweep's 0-byte .jsonl.gz.<pid>.tmp was committed with its study's run files."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ms.REPO_ROOT, capture_output=True, text=True)
    if tracked.returncode:
        pytest.skip("not a git checkout")
    names = [path for path in tracked.stdout.split("\0") if path]
    assert len(names) > 100
    assert [path for path in names if ms.TEMP_FILE.fullmatch(path.rsplit("/", 1)[-1])] == []
    ignored = subprocess.run(["git", "check-ignore", "-q", "results/runs/x/.baseline-seed42.jsonl.gz.123.tmp"],
                             cwd=ms.REPO_ROOT)
    assert ignored.returncode == 0  # `git add results/` leaves one out


def test_a_full_disk_names_the_file_it_could_not_write(capsys, tmp_path, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("mcstudy.runs.prepare", lambda cfg: None)
    monkeypatch.setattr("mcstudy.runs.train_method", lambda method, cfg, *a, **k: {"method": method, "seed": 42})
    monkeypatch.setattr(gzip, "compress", full)
    code, lines, _ = run_cli(capsys, *TINY, "--methods", "baseline", "--results-dir", str(tmp_path))
    path = ms.run_path(tmp_path, "sweep-cpu-smoke", "baseline", 42)
    assert code == 1
    assert_one_error(lines, f"error: No space left on device: {path}. Check that path (free space, permissions) "
                            f"or set --results-dir to another folder")
    assert list(path.parent.iterdir()) == []  # neither the run's temp file nor the lock is left


def test_a_model_that_cannot_load_is_quoted_in_whole_words(capsys, tmp_path, monkeypatch):
    import transformers

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "vocab.txt").write_text("[PAD]\n")
    long = "Unrecognized model in " + str(folder) + ". Should have a `model_type` key in its config.json, " * 5

    def broken(*args, **kwargs):
        raise ValueError(long)

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", broken)
    code, lines, _ = run_cli(capsys, *TINY, "--model", str(folder), "--results-dir", str(tmp_path / "r"))
    assert code == 1
    assert_one_error(lines, f"error: Could not load model '{folder}' (ValueError: Unrecognized model in {folder}.")
    quoted = lines[0].split("(ValueError: ", 1)[1].split(" ...)", 1)[0]
    assert len(quoted) <= 200 and " ".join(long.split()).startswith(quoted + " ")  # cut between words


def _budget_study_runs(results, study):
    """Write the run files of a budget study with long method names, a test split and two seeds."""
    for method, budgets in [("baseline", [0.0]), ("selective-backprop", [1 / 3, 0.5]), ("mclearn-paper", [0.0]),
                            ("mclearn", [1 / 3, 0.5]), ("uniform", [1 / 3, 0.5])]:
        for budget in budgets:
            for seed in (42, 43):
                ms.write_json_atomic(ms.run_path(results, study, ms.run_label(method, budget), seed), {
                    "study": study, "method": method, "seed": seed, "device": "cpu (x86_64, 2 threads)",
                    "train_seconds": 123.456 * seed / 42 * (budget or 1), "accuracy": 0.8123, "examples_backward": 123456,
                    "examples_scored": 4800, "time_budget": budget, "graphed": False, "test_accuracy": 0.79})


def test_the_final_table_fits_100_columns_and_wide_shows_every_column(capsys, tmp_path, monkeypatch):
    """The table was 236-252 characters wide: every row wrapped three times at 100 columns."""
    _budget_study_runs(tmp_path, "sweep-cpu-smoke")
    monkeypatch.setattr("mcstudy.cli.run_sweep", lambda *a, **k: [])
    code, _, out = run_cli(capsys, "--preset", "cpu-smoke", "--results-dir", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert max(map(len, lines)) <= 100, max(lines, key=len)
    notes = ms.table_notes(ms.make_config("cpu-smoke")).splitlines()
    assert logical_lines("\n".join(lines[2 + 8 + 2:])) == notes  # under the table: the spread's label, tiny's caveat
    lines = lines[:2 + 8 + 2]
    assert lines[0] == "study sweep-cpu-smoke on cpu (x86_64, 2 threads)"
    assert lines[1].split() == ["method", "budget", "seeds", "accuracy", "(%)", "train", "s", "speed-up", "acc",
                                "change", "(pt)"]
    assert " ".join(lines[-2:]).startswith(
        "left out to fit 100 columns (--wide shows them): test acc (%), reaches budget, s / baseline, graphed, "
        "backward, scored (fwd)")
    code, _, wide = run_cli(capsys, "--preset", "cpu-smoke", "--results-dir", str(tmp_path), "--wide")
    assert code == 0 and len(wide[:wide.index("accuracy (%): mean ±")].splitlines()) == 1 + 8
    header = wide.splitlines()[0]
    assert max(map(len, wide.splitlines())) > 200 and "examples scored (forward only)" in header and "study" in header


def _fake_training(monkeypatch):
    """Make the CLI's sweep write complete run records without loading data or training."""
    def train(method, cfg, prepared, seed, **kwargs):
        return {"study": cfg.study, "method": method, "seed": seed, "device": ms.device_name(ms.resolve_device(cfg)),
                "identity": {"data_sha256": ms.data_sha256(cfg), "model_sha256": ms.model_sha256(cfg)},
                "train_seconds": 1.0, "accuracy": 0.5, "examples_backward": 64, "examples_scored": 0, "graphed": False,
                "warnings": [], "config": ms.portable_config(ms.config_for_method(cfg, method))}

    monkeypatch.setattr("mcstudy.runs.prepare", lambda cfg: None)
    monkeypatch.setattr("mcstudy.runs.train_method", train)


def test_a_changed_training_key_exits_1_naming_it(capsys, tmp_path, monkeypatch):
    """Re-running after changing a key that changes training (w_clip) returned the old runs with exit 0."""
    _fake_training(monkeypatch)
    argv = ["--methods", "mclearn", "--results-dir", str(tmp_path)]
    assert run_cli(capsys, *TINY, "w_clip=5", *argv)[0] == 0
    code, lines, _ = run_cli(capsys, *TINY, "w_clip=8", *argv)
    path = ms.run_path(tmp_path, "sweep-cpu-smoke", "mclearn", 42)
    assert code == 1
    assert_one_error(lines, f"error: {path} was trained with a different config (w_clip differ: w_clip "
                            f"5.0 stored, 8.0 now). Use another study= or results_dir=, or delete the file to retrain it.")


def test_a_corrupt_run_file_is_set_aside_and_the_sweep_exits_0(capsys, tmp_path, monkeypatch):
    _fake_training(monkeypatch)
    path = ms.run_path(tmp_path, "sweep-cpu-smoke", "baseline", 42)
    path.parent.mkdir(parents=True)
    path.write_bytes(gzip.compress(b'{"study": "s", "accur'))
    code, lines, _ = run_cli(capsys, *TINY, "--methods", "baseline", "--results-dir", str(tmp_path))
    assert code == 0
    assert lines == [f"warning: {path} is not a readable run file (JSONDecodeError: Unterminated string starting at: "
                     f"line 1 column 16 (char 15)); moved it to baseline-seed42.json.gz.corrupt and its run will be redone"]
    assert ms.read_run(path)["seed"] == 42


def test_the_lock_of_a_killed_sweep_is_taken_over_with_a_note(capsys, tmp_path, monkeypatch):
    _fake_training(monkeypatch)
    lock = tmp_path / "runs" / "sweep-cpu-smoke" / ms.STUDY_LOCK
    lock.parent.mkdir(parents=True)
    lock.write_text("pid 999999 on host since yesterday\n")
    code, lines, _ = run_cli(capsys, *TINY, "--methods", "baseline", "--results-dir", str(tmp_path))
    assert code == 0 and not lock.exists()
    assert lines == [f"note: took over the lock of {lock.parent} from a sweep that is no longer running "
                     f"(pid 999999 on host since yesterday)"]


def test_a_run_at_chance_on_an_eval_set_that_can_tell_warns_and_exits_0(capsys, tmp_path):
    """320 eval rows of 4 classes: 2 standard errors of chance are 4.8 points, small enough to tell."""
    code, lines, out = run_cli(capsys, "--preset", "cpu-smoke", "--set", "max_train_examples=64", "lr=10",
                               "max_eval_examples=320", "--methods", "baseline", "--results-dir", str(tmp_path))
    assert code == 0
    assert len(lines) == 1 and lines[0].startswith("warning: baseline seed 42: accuracy 0.2500 is at chance (majority "
                                                   "class 0.2500 + 2 standard errors = 0.2984 on 320 eval examples")
    assert logical_lines(out)[-1] == lines[0]  # repeated under the table


# ----------------------------------------------------------------------------- a run is what it says
def _two_class_data(folder, classes=2, rows=40):
    """A local data folder: `rows` train and 8 test rows over `classes` classes."""
    _write_split(folder, "train", [f"word{i % 7} text {i}" for i in range(rows)], [i % classes for i in range(rows)])
    _write_split(folder, "test", [f"word{i % 7} eval {i}" for i in range(8)], [i % 2 for i in range(8)])
    return folder


def _tiny_model_folder(folder, data, seed=0):
    """Save a tiny DistilBERT with its tokenizer (built from `data`'s train texts) to `folder`."""
    cfg = ms.make_config("cpu-smoke")
    tokenizer = ms.build_tiny_tokenizer(pd.read_csv(data / "train.csv")["text"].tolist(), cfg.tiny_vocab_size)
    ms.build_tiny_model(tokenizer, 2, cfg, seed=seed).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def stored_study(tmp_path_factory):
    """A baseline run (seed 1, study s) trained from a local data folder and a local model folder;
    return (its results folder, the command line that trained it, less --results-dir)."""
    root = tmp_path_factory.mktemp("stored-study")
    data = _two_class_data(root / "data")
    model = _tiny_model_folder(root / "model", data)
    argv = [*TINY, "--dataset", str(data), "--model", str(model), "--methods", "baseline", "--seeds", "1",
            "--study", "s"]
    assert ms.main([*argv, "--results-dir", str(root / "r")]) == 0
    return root / "r", argv


def _edit(path, **changes):
    """Rewrite the run file at `path` with `changes` (a value None deletes the key)."""
    record = ms.read_run(path)
    record.update(changes)
    ms.write_json_atomic(path, {k: v for k, v in record.items() if v is not None})


@pytest.mark.parametrize("fault, message", [
    ("seed", "runs/s/baseline-seed2.json.gz holds the run of baseline (run label baseline) seed 1 in study s, by its "
             "record: a run is read only under its own name; move it back to"),
    ("method", "runs/s/uniform-seed1.json.gz holds the run of baseline (run label baseline) seed 1 in study s"),
    ("study", "runs/t/baseline-seed1.json.gz holds the run of baseline (run label baseline) seed 1 in study s"),
    ("missing config", "runs/s/baseline-seed1.json.gz has no config (the settings it trained with), so it cannot be "
                       "checked against today's: delete it to retrain its run, or use another study="),
    ("non-run JSON", "runs/s/notes.json is not a run file (its name is not <run label>-seed<k>.json.gz): "
                     "results/runs/<study>/ holds only the run files sweeps write; move it out of"),
    ("not a run", "runs/s/baseline-seed1.json.gz is not a run file (it has no accuracy, train_seconds)"),
    ("previous protocol", "runs/s holds runs of the previous protocol (baseline-seed1.json.gz has no identity: it was "
                          "written before runs recorded the hashes of their data and model), which a sweep never "
                          "reuses: choose another study= (--study), or delete them"),
    ("a hash missing", "runs/s/baseline-seed1.json.gz records no model_sha256, so it cannot be checked"),
    ("device", "runs/s/baseline-seed1.json.gz was timed on NVIDIA H200, not on this machine's cpu"),
])
def test_a_stored_run_is_read_back_only_as_the_run_it_is(capsys, tmp_path, stored_study, fault, message):
    """A stored run is reused only where its record is the run its path names (method, seed, study)
    and the run this command would train here (config, device, data, model): a copy under another
    name, a record without its config or identity, a file that is no run, or a run timed on another
    device stops the sweep with one line naming the file (exit 1); nothing is trained or rewritten."""
    import shutil

    results = tmp_path / "r"
    shutil.copytree(stored_study[0], results)
    argv = [*stored_study[1], "--results-dir", str(results)]
    stored = results / "runs" / "s" / "baseline-seed1.json.gz"
    if fault == "seed":
        shutil.copy(stored, stored.with_name("baseline-seed2.json.gz"))
        argv += ["--seeds", "2"]
    if fault == "method":
        shutil.copy(stored, stored.with_name("uniform-seed1.json.gz"))
        argv += ["--methods", "uniform", "--set", "uniform_fraction=0.5"]
    if fault == "study":
        shutil.copytree(stored.parent, results / "runs" / "t")
        argv += ["--study", "t"]
    if fault in ("missing config", "previous protocol", "not a run"):
        _edit(stored, **{{"missing config": "config", "previous protocol": "identity"}.get(fault, "accuracy"): None})
        if fault == "not a run":
            _edit(stored, train_seconds=None)
    if fault == "non-run JSON":
        (stored.parent / "notes.json").write_text('{"note": "to self"}')
    if fault == "a hash missing":
        _edit(stored, identity={"data_sha256": ms.read_run(stored)["identity"]["data_sha256"]})
    if fault == "device":
        _edit(stored, device="NVIDIA H200")
    files = {p: p.read_bytes() for p in results.rglob("*.json*")}
    code, lines, out = run_cli(capsys, *_last_wins(argv))
    assert code == 1
    assert_one_error(lines, message)
    assert {p: p.read_bytes() for p in results.rglob("*.json*")} == files and out == ""


def _last_wins(argv):
    """Return argv with the one-value flags given twice (--seeds, --methods, --study) kept at their last
    value only, as a user would retype the command line."""
    out, i = [], 0
    flags = {"--seeds", "--methods", "--study"}
    last = {a: k for k, a in enumerate(argv) if a in flags}
    while i < len(argv):
        if argv[i] in flags and last[argv[i]] != i:
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                i += 1
            continue
        out.append(argv[i])
        i += 1
    return out


@pytest.mark.parametrize("changed", ["data", "model"])
def test_changed_data_or_model_under_the_same_name_is_not_read_back(capsys, tmp_path, changed):
    """The labels of the --dataset folder rewritten in place, or other weights saved into the same
    --model folder: the stored run was trained on other data or from another model, and the sweep
    stops naming it (exit 1) instead of returning it as this data's or model's."""
    data = _two_class_data(tmp_path / "data")
    model = _tiny_model_folder(tmp_path / "model", data)
    argv = [*TINY, "--dataset", str(data), "--model", str(model), "--methods", "baseline", "--seeds", "1",
            "--results-dir", str(tmp_path / "r"), "--study", "s"]
    assert run_cli(capsys, *argv)[0] == 0
    assert run_cli(capsys, *argv)[0] == 0  # the same data and model: read back
    if changed == "data":
        train = pd.read_csv(data / "train.csv")
        train.assign(label=1 - train["label"]).to_csv(data / "train.csv", index=False)
    else:
        _tiny_model_folder(model, data, seed=1)
    code, lines, _ = run_cli(capsys, *argv)
    assert code == 1
    where = data if changed == "data" else model
    assert_one_error(lines, f"runs/s/baseline-seed1.json.gz was trained on other {changed}: '{where}' hashes to ")
    assert "(its files changed since). Use another study= or results_dir=, or delete the file to retrain it." \
        in lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--set", "epochs=2", "--set", "epochs=3"], "error: --set gives epochs twice (epochs=2 and epochs=3): keep one"),
    (["--set", "epochs=2", "--set", "lr=0.01", "--methods", "mclearn"], None),  # two --set flags are joined
    (["--study", ""], "error: study='' must be one folder name inside results_dir/runs"),
    (["--study", "a", "--study", "b"], "error: --study is given twice ('a' and 'b'): keep one"),
    (["--results-dir", ""], "error: results_dir='' is empty: give a name, e.g. results_dir=results"),
    (["--dataset", "data/ag_news_sample", "--set", "dataset=elsewhere"],
     "error: dataset is given twice (--dataset data/ag_news_sample and --set dataset=elsewhere): keep one"),
    (["--seeds", "1", "1"], "error: seeds lists 1 more than once: each seed is one run, list it once"),
    (["--methods", "baseline", "--methods", "baseline"],
     "error: Method(s) baseline listed more than once: each method trains once per seed, list it once."),
    (["--set", "train_split=test", "eval_split=test"], "error: train_split and eval_split are both 'test': a run "
                                                      "would be scored on the rows it trains on; set eval_split="),
    (["--set", "test_split=train"], "error: test_split='train' is also the train split: test rows must be rows a run "
                                    "neither trains nor is chosen on"),
    (["--set", "score_layer=99"], "error: score_layer=99 runs all 2 layers of the tiny model: the cheap scorer must "
                                  "run fewer; set score_layer= to 0..1"),
    (["--set", "score_max_length=64"], "error: score_max_length=64 is above max_length=48: texts are cut at "
                                       "max_length tokens; set score_max_length= to at most 48"),
    (["--model", "org/some-model", "--set", "tiny_dim=32"], "error: tiny_dim set for model_name='org/some-model': "
                                                             "the tiny_* keys shape only model_name=tiny"),
    (["--methods", "baseline", "--set", "uniform_fraction=0.5"], "error: uniform_fraction is set, but only uniform "
                                                                 "read it and methods= lists none of them"),
    (["--set", "text_column=label"], "error: text_column and label_column are both 'label': a run would read its "
                                     "labels as its texts"),
])
def test_every_setting_takes_effect_or_exits_2(capsys, tmp_path, monkeypatch, argv, message):
    """A setting that would be dropped or changed without a word (the first of two --set flags, an
    empty study, a key given twice, a train split scored on, a scorer running every layer, ...) is
    refused before anything loads (exit 2); two --set flags with different keys both take effect."""
    _fake_training(monkeypatch)
    monkeypatch.chdir(tmp_path)  # where results/ would go without --results-dir
    where = [] if "--results-dir" in argv else ["--results-dir", str(tmp_path)]
    code, lines, _ = run_cli(capsys, *TINY, *argv, *where)
    if message is None:
        assert code == 0
        config = ms.read_run(ms.run_path(tmp_path, "sweep-cpu-smoke", "mclearn", 42))["config"]
        assert (config["epochs"], config["lr"], config["max_train_examples"]) == (2, 0.01, 64)
        return
    assert code == 2
    assert_one_error(lines, message)
    assert not list(tmp_path.glob("**/runs/*/*.json"))


def test_settings_the_data_or_model_cannot_honour_exit_1(capsys, tmp_path):
    """Settings that only the data or the model can refuse: an eval split that is not there (it
    evaluated on another), a train split that the eval split falls back to, an example limit below
    the classes (it trained on one row per class, more than asked), eval classes that labels.json
    names but the train split lacks, a model folder without tokenizer files (every word [UNK]) and
    a tokenizer that reads the train split as unknown tokens. One line each, nothing written."""
    data = _two_class_data(tmp_path / "data")
    model = _tiny_model_folder(tmp_path / "model", data)
    many = _two_class_data(tmp_path / "many", classes=20)
    no_test = _two_class_data(tmp_path / "no-test")
    (no_test / "test.csv").rename(no_test / "validation.csv")
    unseen = _two_class_data(tmp_path / "unseen")
    _write_split(unseen, "test", [f"eval {i}" for i in range(9)], [i % 3 for i in range(9)])
    (unseen / "labels.json").write_text('["a", "b", "c"]')
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((model / name).read_bytes())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    for name in model.iterdir():
        (foreign / name.name).write_bytes(name.read_bytes())
    (foreign / "tokenizer.json").unlink()
    (foreign / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nzebra\n")
    for argv, code, message in [
        (["--dataset", str(data), "--set", "eval_split=tset"], 1,
         f"error: No labeled split 'tset' in local:{data} (splits there: test, train). Set eval_split= to one of "
         f"them."),
        (["--dataset", str(no_test), "--set", "train_split=validation"], 1,
         f"error: The evaluation split of local:{no_test} would be 'validation', the train split: a run would be "
         f"scored on the rows it trains on. Set eval_split= to another split (splits there: train, validation)."),
        (["--dataset", str(many), "--set", "max_train_examples=16"], 1,
         "error: max_train_examples=16 is below the 20 classes of the train split: its stratified subset keeps a row "
         "of each class, so it would hold 20 rows. Set max_train_examples= to at least 20, or to 0 for every row."),
        (["--dataset", str(unseen)], 1, f"error: The eval split of local:{unseen} has labels 2 that the train split "
                                        f"never has (train has 0, 1)."),
        (["--dataset", str(data), "--model", str(bare)], 2,
         f"error: Model folder '{bare}' has no tokenizer files (tokenizer.json, vocab.txt"),
        (["--dataset", str(data), "--model", str(foreign)], 1,
         f"error: The tokenizer of '{foreign}' reads 100% of the train split's tokens as its unknown token '[UNK]'"),
    ]:
        got, lines, _ = run_cli(capsys, "--preset", "cpu-smoke", "--methods", "baseline", "--results-dir",
                                str(tmp_path / "r"), *argv)
        assert got == code, (argv, lines)
        assert_one_error(lines, message)
    assert not list(tmp_path.glob("r/runs/*/*.json"))
