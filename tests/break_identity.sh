#!/usr/bin/env bash
# Break what makes a stored run what it says and every setting take effect, and the stale
# guard's walk over the Config keys, on purpose: each run makes one edit of mclearn_core.py (or
# the mcstudy module it names, make_readme.py, run_notebooks.py) in a scratch copy and runs the
# tests of its check class there; every line of output must say "failed". Writes nothing;
# `bash tests/break_identity.sh | tee results/identity_breakages/break_identity.log` keeps the log
# (about 20 minutes on 2 cores; not part of test.sh).
source "$(dirname "$0")/breakage_lib.sh"
IDENTITY=(tests/test_cli.py -k "read_back_only or changed_data")
SETTINGS=(tests/test_cli.py -k "takes_effect or cannot_honour")
NOTEBOOK=(tests/test_tool_errors.py -k "notebook_parameter or bad_notebook_parameter or checks_every_parameter")
README=(tests/test_tool_errors.py -k "make_readme")
RUNNER=(tests/test_tool_errors.py -k "run_notebooks")
STORE=(tests/test_migrate_runs.py)
BREAK_TESTS=("${IDENTITY[@]}")
# -- identity: data, model, device, method, seed, study, missing config, non-run JSON, previous protocol
BREAK_FILE=mcstudy/runs.py run "identity: the data hash is not compared" \
  'for key, what, name in (("data_sha256", "data", cfg.dataset), ("model_sha256", "model", cfg.model_name)):' \
  'for key, what, name in (("model_sha256", "model", cfg.model_name),):'
BREAK_FILE=mcstudy/runs.py run "identity: the model hash is not compared" \
  'for key, what, name in (("data_sha256", "data", cfg.dataset), ("model_sha256", "model", cfg.model_name)):' \
  'for key, what, name in (("data_sha256", "data", cfg.dataset),):'
BREAK_FILE=mcstudy/data.py run "identity: the data hash reads the files' names and sizes, not their bytes" \
  'digest.update(chunk)' 'pass'
BREAK_FILE=mcstudy/model.py run "identity: the model hash leaves out the weight files" \
  'MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model")' \
  'MODEL_FILE_SUFFIXES = (".json", ".txt", ".model")'
BREAK_FILE=mcstudy/runs.py run "identity: the device that timed a run is not compared" \
  'if record.get("device") != device:' 'if False:'
BREAK_FILE=mcstudy/runs.py run "identity: a record's study is not checked against its folder" \
  'if record["study"] != path.parent.name or str(record["seed"]) != name["seed"] or \' \
  'if str(record["seed"]) != name["seed"] or \'
BREAK_FILE=mcstudy/runs.py run "identity: a record's seed is not checked against its file name" \
  'if record["study"] != path.parent.name or str(record["seed"]) != name["seed"] or \' \
  'if record["study"] != path.parent.name or \'
BREAK_FILE=mcstudy/runs.py run "identity: a record's run label is not checked against its file name" \
  'label != name["label"] or not own_label:' 'not own_label:'
BREAK_FILE=mcstudy/runs.py run "identity: a record without its config is read back" \
  'if not isinstance(record.get("config"), dict):' 'if False:'
BREAK_FILE=mcstudy/runs.py run "identity: a JSON whose name is no run file's is read as a run" \
  'name = RUN_FILE_NAME.fullmatch(path.name)' 'name = RUN_FILE_NAME.fullmatch(path.name) or re.fullmatch(r"(?P<label>.+)(?P<seed>)", path.stem)'
BREAK_FILE=mcstudy/runs.py run "identity: a run of the previous protocol is reused, its hashes taken as today's" \
  'identity = record.get("identity")' \
  'identity = record.get("identity") or {"data_sha256": data_sha256(cfg), "model_sha256": model_sha256(cfg)}'
# -- settings: each takes effect or is refused
BREAK_TESTS=("${SETTINGS[@]}")
BREAK_FILE=mcstudy/cli.py run "settings: two --set flags, the last kept" \
  'parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="KEY=VALUE",' \
  'parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",'
BREAK_FILE=mcstudy/config.py run "settings: a key given twice in --set, the last kept" \
  'if key in overrides and overrides[key] != value:' 'if False:'
BREAK_FILE=mcstudy/cli.py run "settings: an empty flag value is the default's" \
  '            if value is not None:' '            if value:'
BREAK_FILE=mcstudy/config.py run "settings: train split and eval split may be one" \
  'if cfg.train_split == cfg.eval_split:' 'if False:'
BREAK_FILE=mcstudy/data.py run "settings: an absent eval split falls back although set" \
  'if "eval_split" in cfg.explicit:' 'if False:'
BREAK_FILE=mcstudy/data.py run "settings: an example limit below the classes" \
  'if limit and limit < min(classes, len(texts)):' 'if False:'
BREAK_FILE=mcstudy/config.py run "settings: a tiny model's scorer may run every layer" \
  'if cfg.model_name == TINY_MODEL and cfg.score_layer >= cfg.tiny_layers:' 'if False:'
BREAK_FILE=mcstudy/data.py run "settings: eval classes the train split lacks pass where labels.json names them" \
  '                                f"0..{len(names) - 1}. Fix the labels or the names list.")
    for which, split in held_out:' \
  '                                f"0..{len(names) - 1}. Fix the labels or the names list.")
        return list(names)
    for which, split in held_out:'
BREAK_FILE=mcstudy/model.py run "settings: a tokenizer reading the data as unknown tokens fits" \
  'UNKNOWN_TOKEN_SHARE = 0.5' 'UNKNOWN_TOKEN_SHARE = 1.0'
BREAK_FILE=mcstudy/runs.py run "settings: a key no method of the sweep reads is taken" \
  'if key in RUN_KEY_FIELDS and all(key not in run_key_fields(m) for m in methods):' 'if False:'
# -- notebook parameters
BREAK_TESTS=("${NOTEBOOK[@]}")
BREAK_FILE=mcstudy/cli.py run "notebook parameters: a name the notebook does not declare passes" '    if new:' '    if False:'
BREAK_FILE=mcstudy/cli.py run "notebook parameters: a Config key's type is not checked" \
  '            check_type(name, value)' '            pass'
BREAK_FILE=mcstudy/cli.py run "notebook parameters: draws may be 0" \
  '"draws": ("int", Range(2), "5000")' '"draws": ("int", Range(0), "5000")'
# -- make_readme.py
BREAK_TESTS=("${README[@]}")
BREAK_FILE=make_readme.py run "make_readme: no run files is no error" \
  'if not runs.is_dir() or not any(runs.glob(f"*/*{ms.RUN_FILE_SUFFIX}")):' 'if False:'
BREAK_FILE=make_readme.py run "make_readme: runs gone from what summary.csv published pass" \
  'if gone and not allow_fewer:' 'if False:'
BREAK_FILE=make_readme.py run "make_readme: an unreadable run file is left out" \
  'rows = ms.summary_rows(results_dir, unreadable="refuse")' 'rows = ms.summary_rows(results_dir, unreadable="skip")'
# -- run_notebooks.py
BREAK_TESTS=("${RUNNER[@]}")
BREAK_FILE=run_notebooks.py run "run_notebooks: --only matching nothing runs nothing, exit 0" \
  '    if not rows:' '    if False:'
BREAK_FILE=run_notebooks.py run "run_notebooks: a --param no notebook declares is dropped" \
  '    if unknown:' '    if False:'
BREAK_FILE=run_notebooks.py run "run_notebooks: --clean reads a missing file" \
  '        if not Path(path).is_file():' '        if False:'
# -- the stale guard's keys: a key that changes the data a run sees treated as bookkeeping
BREAK_TESTS=(tests/test_results.py -k "every_config_key")
BREAK_FILE=mcstudy/runs.py run "stale guard: label_noise treated as bookkeeping" \
  'RUN_BOOKKEEPING_FIELDS = ("results_dir", "study", "seeds", "explicit", "device", "record_passes")' \
  'RUN_BOOKKEEPING_FIELDS = ("results_dir", "study", "seeds", "explicit", "device", "record_passes", "label_noise")'
BREAK_FILE=mcstudy/runs.py run "stale guard: max_train_examples treated as bookkeeping" \
  'RUN_BOOKKEEPING_FIELDS = ("results_dir", "study", "seeds", "explicit", "device", "record_passes")' \
  'RUN_BOOKKEEPING_FIELDS = ("results_dir", "study", "seeds", "explicit", "device", "record_passes", "max_train_examples")'
# -- the run store's format and its migration (benchmarks/migrate_runs.py)
BREAK_TESTS=("${STORE[@]}")
BREAK_FILE=mcstudy/train.py run "run store: run files are written plain" \
  'gzip.compress(text.encode(), mtime=0) if path.name.endswith(".gz") else text.encode()' 'text.encode()'
BREAK_FILE=mcstudy/runs.py run "run store: a sweep retrains a run stored in the old format" '    check_no_old_run_file(path)' '    pass'
BREAK_FILE=mcstudy/tables.py run "run store: a table leaves a run file of the old format out without a word" \
  'for path in sorted(root.glob(f"{folders}*{OLD_RUN_FILE_SUFFIX}")):' 'for path in []:'
BREAK_FILE=benchmarks/migrate_runs.py run "migration: examples_seen is kept as it is" \
  '    if "examples_seen" in record:' '    if False:'
BREAK_FILE=benchmarks/migrate_runs.py run "migration: a run stored both ways is overwritten" \
  'if new.exists() and compact(ms.read_run(new)) != compact(record):' 'if False:'
