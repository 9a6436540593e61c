"""Convert the run files under <results>/runs/ in the old format (plain JSON, <label>-seed<k>.json)
to today's (gzip-compressed JSON, <label>-seed<k>.json.gz: mcstudy.runs.run_path), in today's
method ids and keys, and compress their step logs (<label>-seed<k>.jsonl -> .jsonl.gz:
mcstudy.runs.run_log_path); the numbers in them are kept as they are.

    python3 benchmarks/migrate_runs.py [RESULTS_DIR] [--dry-run]

Each old file is read, given today's names (today_record), written as its run's .json.gz and
removed; its log (compressed) and -tb folder follow it to its run label. A run file in today's format
whose keys are older than today's (today_record changes it: the budget key budget_ratio) is rewritten
in place, byte for byte as the run store writes it. Running it again converts only what is still
plain (a sweep of older code writes plain files) and rewrites nothing, so it is safe to repeat. A
run stored both ways is refused (one line naming both files) unless the two records are the same.
Then `python make_readme.py` re-summarizes results/summary.csv from the converted files.
"""
from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mclearn_core as mc  # noqa: E402
import mcstudy as ms  # noqa: E402

OLD_BUDGET_KEY = "budget_ratio"  # MC-Learn's share of the baseline's seconds (today's time_budget): today_budget


# Old names in run files -> today's: the config keys and method ids a caller is refused by
# (ms.RENAMED) but OLD_BUDGET_KEY (whose value today_budget decides by method), and the names only
# files hold; "method/key" applies in that method's files only.
FILE_RENAMED: dict[str, str] = {
    **{old: new for old, new in ms.RENAMED.items() if old != OLD_BUDGET_KEY},
    "mclearn-paper/budget_ratio": "step_budget_ratio",  # mclearn-paper's per-step time ratio
    "rho": "replay_share", "q": "full_prob",  # mclearn-paper's logged steps (telemetry)
}


def today_method(method: Any) -> Any:
    """Return today's id of a method id (FILE_RENAMED), or `method` when it has none."""
    return FILE_RENAMED.get(method, method) if FILE_RENAMED.get(method) in ms.METHODS else method


def today_label(label: str) -> str:
    """Return a run label (a method id, then -b<budget> and -lr<lr>) with today's method id."""
    for old in (m for m in FILE_RENAMED if today_method(m) != m):
        if label == old or label.startswith(old + "-"):
            return today_method(old) + label[len(old):]
    return label


def today_keys(names: dict[str, Any], method: Any) -> dict[str, Any]:
    """Return `names` with each old key in today's name (`method`'s own "method/key" entries
    first), unless today's name is there already; values and order kept."""
    out = {}
    for key, value in names.items():
        new = FILE_RENAMED.get(f"{method}/{key}", FILE_RENAMED.get(key, key))
        out[key if new in names else new] = value
    return out


def preset_method(record: dict[str, Any], study: str) -> str | None:
    """Return the method id today's presets give a run of the previous protocol (no "protocol")
    stored under an id whose preset changed: "mclearn" with once_draws off is `mclearn-v1`, and
    "mclearn-once" outside an ablation study is today's `mclearn`; None otherwise."""
    method, config = record.get("method"), record.get("config") or {}
    if "protocol" in record:
        return None
    if method == "mclearn" and not config.get("once_draws", False):
        return "mclearn-v1"
    if method == "mclearn-once" and not ms.is_ablation_study(study, include_sweeps=True):
        return "mclearn"
    return None


def renamed_key(names: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    """Return `names` with the key `old` named `new`, in its place (values and order kept)."""
    return {new if key == old else key: value for key, value in names.items()}


def today_budget(record: dict[str, Any]) -> dict[str, Any]:
    """Return a run record without OLD_BUDGET_KEY. The runs of MC-Learn's study method (mclearn,
    mclearn-v1 and the variants: ms.MCLearnMethod) read it as their whole run's share of the
    baseline's seconds, today's time_budget: in the config it goes where it is the share the run
    trained at anyway (the record's time_budget, or MC-Learn's default share outside a budget study),
    else it is kept as the config's time_budget; their budget knob {budget_ratio: x} goes (MC-Learn
    reads time_budget itself) and the budget solver's record (telemetry "budget") names it
    time_budget. The other methods never read it: it goes from their config (mclearn-paper's
    per-step ratio is FILE_RENAMED's). `explicit` names time_budget where the config keeps the
    value, else drops the key."""
    config = record.get("config")
    if record.get("method") == "mclearn-paper" or not isinstance(config, dict) or OLD_BUDGET_KEY not in config:
        return record
    record, config = dict(record), dict(config)
    value = config[OLD_BUDGET_KEY]
    share = record.get("time_budget") or config.get("time_budget") or mc.MCLearnConfig.time_budget
    keep = ms.METHODS.get(record.get("method")) is ms.MCLearnMethod and value != share
    if keep and "time_budget" not in config:
        config = renamed_key(config, OLD_BUDGET_KEY, "time_budget")
    else:
        config.pop(OLD_BUDGET_KEY)
        if keep:
            config["time_budget"] = value
    if isinstance(config.get("explicit"), list):
        named = [("time_budget" if keep else None) if k == OLD_BUDGET_KEY else k for k in config["explicit"]]
        config["explicit"] = list(dict.fromkeys(k for k in named if k is not None))
    record["config"] = config
    if isinstance(record.get("knobs"), dict) and OLD_BUDGET_KEY in record["knobs"]:
        record["knobs"] = {k: v for k, v in record["knobs"].items() if k != OLD_BUDGET_KEY}
    telemetry = record.get("telemetry")
    if isinstance(telemetry, dict) and isinstance(telemetry.get("budget"), dict) and \
            OLD_BUDGET_KEY in telemetry["budget"]:
        record["telemetry"] = {**telemetry, "budget": renamed_key(telemetry["budget"], OLD_BUDGET_KEY, "time_budget")}
    return record


def today_record(record: dict[str, Any], study: str) -> dict[str, Any]:
    """Return a run record in today's names: its method id and run label (FILE_RENAMED, and
    preset_method with "renamed_from" naming the id it was stored under), its config's keys,
    uniform_match and `explicit`, its budget knobs and its logged steps' keys; and examples_seen
    as examples_backward (a file that has examples_backward too counted the forward-only scoring
    passes in examples_seen: they become examples_scored where it has none); the old budget key as
    today_budget says. A record in today's names comes back equal."""
    record = dict(record)
    method = record["method"] = today_method(record.get("method"))
    if isinstance(record.get("run_label"), str):
        record["run_label"] = today_label(record["run_label"])
    if isinstance(record.get("config"), dict):
        config = record["config"] = today_keys(record["config"], method)
        if "uniform_match" in config:
            config["uniform_match"] = today_method(config["uniform_match"])
        if isinstance(config.get("explicit"), (list, tuple)):
            config["explicit"] = [FILE_RENAMED.get(f"{method}/{k}", FILE_RENAMED.get(k, k)) for k in config["explicit"]]
    if isinstance(record.get("knobs"), dict):
        record["knobs"] = today_keys(record["knobs"], method)
    telemetry = record.get("telemetry")
    if isinstance(telemetry, dict) and isinstance(telemetry.get("steps"), list):
        record["telemetry"] = {**telemetry, "steps": [today_keys(s, method) if isinstance(s, dict) else s
                                                      for s in telemetry["steps"]]}
    if "examples_seen" in record:
        seen = record.pop("examples_seen")
        if "examples_backward" not in record:
            record["examples_backward"] = seen
        elif "examples_scored" not in record:
            record["examples_scored"] = seen - record["examples_backward"]
    new = preset_method(record, study)
    if new is not None:
        old = record["method"]
        label = str(record.get("run_label") or old)
        record.update(method=new, run_label=new + label[len(old):], renamed_from=old)
    return today_budget(record)


def compact(record: Any) -> str:
    """Return a record as the run store writes it (compact JSON), to compare two records."""
    return json.dumps(ms._jsonable(record), separators=(",", ":"))


def old_run_files(results_dir: Path) -> list[Path]:
    """Return the run files in the old format under <results_dir>/runs/: <label>-seed<k>.json."""
    return [p for p in sorted(results_dir.glob(f"runs/*/*{ms.OLD_RUN_FILE_SUFFIX}"))
            if ms.RUN_FILE_NAME.fullmatch(p.name.removesuffix(ms.OLD_RUN_FILE_SUFFIX) + ms.RUN_FILE_SUFFIX)]


def migrate(results_dir: str | Path, dry_run: bool = False) -> list[tuple[Path, Path]]:
    """Convert every old run file under <results_dir>/runs/ (old_run_files) to today's format and
    names; return [(old file, new file)] (with dry_run: what would be written, writing nothing).
    Raise ValueError naming both files where the new file exists and holds another record; nothing
    is converted then. Runs that preset_method renames "mclearn" -> "mclearn-v1" go first, so
    a study's "mclearn-once" runs can take the freed name."""
    results_dir = Path(results_dir)
    found = []  # (old file, today's record, new file)
    for path in old_run_files(results_dir):
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not {"method", "seed"} <= set(record):
            raise ValueError(f"{path} holds no run record (no method and seed): move it out of {path.parent}, "
                             f"then run this again")
        record = today_record(record, path.parent.name)
        label = str(record.get("run_label") or ms.run_label(record["method"], float(record.get("time_budget") or 0)))
        found.append((path, record, ms.run_path(results_dir, path.parent.name, label, int(record["seed"]))))
    found.sort(key=lambda item: item[1].get("renamed_from") != "mclearn")
    targets = [new for _, _, new in found]
    for path, record, new in found:
        if targets.count(new) > 1:
            raise ValueError(f"{path} and another old run file both become {new}: move one of them aside")
        if new.exists() and compact(ms.read_run(new)) != compact(record):
            raise ValueError(f"{path} would become {new}, which exists and holds another record: move one of "
                             f"them aside")
    if dry_run:
        return [(path, new) for path, _, new in found]
    for path, record, new in found:
        ms.write_json_atomic(new, record)
        path.unlink()
        old_stem, new_stem = path.name.removesuffix(ms.OLD_RUN_FILE_SUFFIX), new.name.removesuffix(ms.RUN_FILE_SUFFIX)
        log = path.with_name(old_stem + ".jsonl")
        if log.exists():
            compress_log(log, ms.run_log_path(new))
        board, target = path.with_name(old_stem + "-tb"), new.with_name(new_stem + "-tb")  # TensorBoard's (run_logs)
        if board != target and board.exists():
            if target.exists():
                raise ValueError(f"{path} became {new}, but {board} cannot move to {target}, which exists: "
                                 f"move one of them aside, then run this again")
            board.rename(target)
    return [(path, new) for path, _, new in found]


def migrate_stored(results_dir: str | Path, dry_run: bool = False) -> list[Path]:
    """Rewrite in place every run file in today's format under <results_dir>/runs/ whose record
    today_record changes (keys older than today's), as the run store writes it (ms.write_json_atomic);
    return those files (with dry_run: the files it would rewrite, writing nothing). Raise ValueError
    naming the file where today's record would be another run's (another run label or seed);
    nothing is rewritten then."""
    found = []
    for path in sorted(Path(results_dir).glob(f"runs/*/*{ms.RUN_FILE_SUFFIX}")):
        if not ms.RUN_FILE_NAME.fullmatch(path.name):
            continue
        record = ms.read_run(path)
        if not isinstance(record, dict) or "method" not in record:
            continue
        today = today_record(record, path.parent.name)
        if compact(today) == compact(record):
            continue
        label = str(today.get("run_label") or ms.run_label(today["method"], float(today.get("time_budget") or 0)))
        if ms.run_path(results_dir, path.parent.name, label, int(today["seed"])) != path:
            raise ValueError(f"{path} in today's names would be the run {label} seed {today['seed']}: move it aside, "
                             f"then run this again")
        found.append((path, today))
    for path, today in [] if dry_run else found:
        ms.write_json_atomic(path, today)
    return [path for path, _ in found]


def compress_log(path: Path, target: Path) -> None:
    """Write the plain step log `path` gzip compressed to `target`, then remove `path`; where
    `target` exists it must hold the same lines (ValueError naming both otherwise)."""
    text = path.read_bytes()
    if target.exists():
        if gzip.decompress(target.read_bytes()) != text:
            raise ValueError(f"{path} would become {target}, which exists and holds another log: move one of "
                             f"them aside, then run this again")
    else:
        with ms.atomic_target(target) as tmp:
            tmp.write_bytes(gzip.compress(text, mtime=0))
    path.unlink()


def compress_logs(results_dir: str | Path, dry_run: bool = False) -> list[Path]:
    """Compress every plain step log under <results_dir>/runs/ (<label>-seed<k>.jsonl, written by
    older code) to <label>-seed<k>.jsonl.gz (compress_log); return the plain logs (with dry_run:
    those it would compress, compressing nothing)."""
    logs = [p for p in sorted(Path(results_dir).glob("runs/*/*-seed*.jsonl"))  # those beside an old run: migrate's
            if not p.with_name(p.name.removesuffix(".jsonl") + ms.OLD_RUN_FILE_SUFFIX).exists()]
    for path in [] if dry_run else logs:
        compress_log(path, path.with_name(path.name + ".gz"))
    return logs


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="?", default=str(ms.REPO_ROOT / "results"),
                        help="results folder (default: results)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be converted, write nothing")
    args = parser.parse_args(argv)
    if not Path(args.results, "runs").is_dir():
        print(f"error: {Path(args.results, 'runs')} is not a folder: name the results folder that holds runs/",
              file=sys.stderr)
        return 2
    try:
        moves = migrate(args.results, dry_run=args.dry_run)
        stored = migrate_stored(args.results, dry_run=args.dry_run)
        logs = compress_logs(args.results, dry_run=args.dry_run)
    except (ValueError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    for old, new in moves:
        print(f"{'would convert' if args.dry_run else 'converted'} {old} -> {new.name}")
    print(f"{len(moves)} run files {'to convert' if args.dry_run else 'converted'}, "
          f"{len(stored)} in today's format {'to rewrite' if args.dry_run else 'rewritten'} in today's keys, "
          f"{len(logs)} other step logs {'to compress' if args.dry_run else 'compressed'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
