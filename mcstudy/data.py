"""The study's data: loading a text dataset (local files or the hub) with its label names, held-out
test split and stratified subsets, the hashes that identify its rows, label noise and label checks,
tokenizing into an EncodedSplit, and the baseline's bucketed epoch plan."""
from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

import mclearn_core as core
from mcstudy.config import _names_a_local_path, Config, EMBEDDED_DATA, local_copy, replace_config


class DataError(ValueError):
    """A dataset problem the user can fix; the message names the parameter to change."""


KNOWN_LABEL_NAMES = {
    "ag_news": ["World", "Sports", "Business", "Sci/Tech"],
    "sst2": ["negative", "positive"],
}


# The text column of hub datasets whose text is not in a column named "text".
HUB_TEXT_COLUMNS = {"glue/sst2": "sentence"}


@dataclass
class TextSplit:
    texts: list[str]
    labels: np.ndarray  # int64 class ids


@dataclass
class DataBundle:
    train: TextSplit
    eval: TextSplit
    label_names: list[str]
    source: str
    test: TextSplit | None = None  # cfg.test_split, when set
    flipped_rows: np.ndarray | None = None  # training rows whose label flip_labels changed (label_noise)
    splits: dict[str, str | None] = dataclasses.field(default_factory=dict)  # split read as train/eval/test
    sha256: str = ""  # what the run read (data_sha256): its files' bytes, or its rows (rows_sha256)


def _split_files(folder: Path, split: str) -> list[Path]:
    patterns = [f"{split}.parquet", f"{split}-*.parquet", f"{split}.csv", f"{split}-*.csv",
                f"*/{split}.parquet", f"*/{split}-*.parquet"]
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found
    return []


def _split_names(folder: Path) -> list[str]:
    """Return the split names of a local data folder's parquet and CSV files (shards as one)."""
    stems = [p.stem for p in [*folder.glob("*.parquet"), *folder.glob("*.csv"), *folder.glob("*/*.parquet")]]
    return sorted({re.sub(r"-\d+-of-\d+$", "", stem) for stem in stems})


def _read_frames(files: list[Path]):
    import pandas as pd

    frames = [pd.read_parquet(p) if p.suffix == ".parquet" else pd.read_csv(p) for p in files]
    return pd.concat(frames, ignore_index=True)


def eval_split_candidates(cfg: Config) -> tuple[str, ...]:
    """Return the splits the evaluation split is chosen from, in order: eval_split alone when it
    was set (cfg.explicit), else eval_split, then validation, then test."""
    if "eval_split" in cfg.explicit:
        return (cfg.eval_split,)
    return tuple(dict.fromkeys((cfg.eval_split, "validation", "test")))


def _choose_eval_split(cfg: Config, frames: Callable[[str], Any], source: str,
                       present: Sequence[str]) -> tuple[str, Any]:
    """Return (name, frame) of the evaluation split from `frames(name)` (None where a split is
    absent): cfg.eval_split; when it was not set (cfg.explicit), the first of eval_split, validation
    and test that is there and labeled (GLUE test splits, label -1 throughout, are passed over),
    said in a note when it is not eval_split. Raises DataError naming the `present` splits when there
    is none, and when the split chosen is the train split."""
    for name in eval_split_candidates(cfg):
        frame = frames(name)
        if frame is None:
            continue
        labels = frame[cfg.label_column] if cfg.label_column in frame.columns else None
        unlabeled = labels is not None and len(labels) > 0 and bool((labels < 0).all())
        if not unlabeled or "eval_split" in cfg.explicit:
            if name == cfg.train_split:
                raise DataError(f"The evaluation split of {source} would be {name!r}, the train split: a run "
                                f"would be scored on the rows it trains on. Set eval_split= to another split "
                                f"(splits there: {', '.join(present)}).")
            if name != cfg.eval_split:
                print(f"note: {source} has no labeled split {cfg.eval_split!r}: evaluating on {name!r} "
                      f"(set eval_split= to choose)", flush=True)
            return name, frame
    asked = f"split {cfg.eval_split!r}" if "eval_split" in cfg.explicit else \
        f"evaluation split ({cfg.eval_split!r}, nor validation or test)"
    raise DataError(f"No labeled {asked} in {source} (splits there: {', '.join(present) or 'none'}). Set "
                    f"eval_split= to one of them.")


def _load_local(folder: Path, cfg: Config) -> tuple[Any, tuple[str, Any], Any, list[str] | None, str]:
    train_files = _split_files(folder, cfg.train_split)
    if not train_files:
        raise DataError(f"No '{cfg.train_split}' split in {folder}: expected {cfg.train_split}.parquet "
                        f"or {cfg.train_split}.csv. Set train_split= to the file's name.")
    chosen = _choose_eval_split(cfg, lambda s: _read_frames(_split_files(folder, s)) if _split_files(folder, s)
                                else None, f"local:{folder}", _split_names(folder))
    test_frame = None
    if cfg.test_split:
        test_files = _split_files(folder, cfg.test_split)
        if not test_files:
            raise DataError(f"No '{cfg.test_split}' split in {folder} for test_split=. Set test_split= to a "
                            f"split's file name, or to '' to evaluate on {chosen[0]!r} alone.")
        test_frame = _read_frames(test_files)
    names = None
    labels_file = folder / "labels.json"
    if labels_file.exists():
        names = read_label_names(labels_file)
    else:
        names = KNOWN_LABEL_NAMES.get(folder.name)
    return _read_frames(train_files), chosen, test_frame, names, f"local:{folder}"


def read_label_names(path: Path) -> list[str]:
    """Return the class names in a labels.json file (a JSON list, class id i named by item i);
    raise DataError naming the file when it is not one."""
    fix = 'write the class names as a JSON list, e.g. ["World", "Sports"], or delete it to name the classes 0..C-1'
    try:
        names = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err.msg}: line {err.lineno} column {err.colno}): {fix}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path} cannot be read ({err}): {fix}") from None
    if not isinstance(names, list) or not names:
        raise DataError(f"{path} holds {type(names).__name__} {str(names)[:40]!r}, not a list of class names: {fix}")
    return [str(n) for n in names]


def shorten(text: str, limit: int = 200) -> str:
    """Return `text` on one line, cut at the last word boundary before `limit` characters (" ..."
    marks the cut), so a quoted error never ends mid-word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 4)
    return text[:cut if cut > 0 else limit - 4] + " ..."


_OFFLINE_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@functools.lru_cache(maxsize=1)
def _hub_answers(timeout: float = 3.0) -> bool:
    """Return True when a TCP connection to the Hugging Face hub (HF_ENDPOINT) opens within `timeout` s."""
    import socket
    import urllib.parse

    url = urllib.parse.urlsplit(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def hub_offline() -> bool:
    """Return True when the hub must not be asked: an offline switch is set (HF_HUB_OFFLINE,
    TRANSFORMERS_OFFLINE, HF_DATASETS_OFFLINE) or the hub does not answer within 3 s. When it does
    not answer, the hub libraries are switched to their local caches, so they fail at once instead
    of retrying for a minute."""
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in _OFFLINE_SWITCHES):
        return True
    if _hub_answers():
        return False
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        import datasets.config

        datasets.config.HF_HUB_OFFLINE = True
    except ImportError:
        pass
    return True


def _load_hub(name: str, cfg: Config) -> tuple[Any, tuple[str, Any], Any, list[str] | None, str]:
    try:
        import datasets
    except ImportError as err:
        raise DataError(f"Loading {name!r} from the hub needs the `datasets` package "
                        f"(pip install datasets), or set dataset= to a local folder of "
                        f"parquet/CSV files.") from err
    offline = hub_offline()
    try:
        parts = name.split("/")
        ds = datasets.load_dataset(*parts) if len(parts) == 2 and parts[0] == "glue" else \
            datasets.load_dataset(name)
    except Exception as err:  # the hub raises many types (connection, not found, offline)
        where = "the hub is not reachable from here and it is not in the local cache" if offline else \
            f"{type(err).__name__}: {shorten(str(err))}"
        raise DataError(
            f"Could not load dataset {name!r} from the Hugging Face hub ({where}). "
            f"Set --dataset (dataset=) to a local "
            f"folder with {cfg.train_split}.parquet/.csv and {cfg.eval_split}.parquet/.csv "
            f"(columns {cfg.text_column!r}, {cfg.label_column!r}), e.g. dataset='{EMBEDDED_DATA}'."
        ) from err
    if cfg.train_split not in ds:
        raise DataError(f"Dataset {name!r} has no split {cfg.train_split!r} (has {list(ds)}). "
                        f"Set train_split=.")
    chosen = _choose_eval_split(cfg, lambda s: ds[s].to_pandas() if s in ds else None, f"hub:{name}", list(ds))
    if cfg.test_split and cfg.test_split not in ds:
        raise DataError(f"Dataset {name!r} has no split {cfg.test_split!r} for test_split= (has {list(ds)}). "
                        f"Set test_split= to one of them, or to '' for none.")
    feature = ds[cfg.train_split].features.get(cfg.label_column)
    names = list(getattr(feature, "names", []) or []) or None
    frames = [ds[cfg.train_split].to_pandas(), chosen[1], ds[cfg.test_split].to_pandas() if cfg.test_split else None]
    hub_column = HUB_TEXT_COLUMNS.get(name)
    if hub_column and "text_column" not in cfg.explicit and cfg.text_column not in frames[0].columns:
        frames = [f if f is None else f.rename(columns={hub_column: cfg.text_column}) for f in frames]
    return frames[0], (chosen[0], frames[1]), frames[2], names, f"hub:{name}"


def _rows_text(rows: np.ndarray) -> str:
    """Return the first row numbers of `rows` as text: "rows 3, 8, 9 ..."."""
    return "rows " + ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")


def _frame_to_split(frame, cfg: Config, which: str, limit: int | None, limit_key: str = "") -> TextSplit:
    for column, knob in ((cfg.text_column, "text_column"), (cfg.label_column, "label_column")):
        if column not in frame.columns:
            raise DataError(f"The {which} split has no column {column!r} (columns: "
                            f"{list(frame.columns)}). Set {knob}= to the right column.")
    if len(frame) == 0:
        raise DataError(f"The {which} split is empty. Point dataset= at data with rows, or "
                        f"choose another {which}_split=.")
    missing = frame[cfg.text_column].isna().to_numpy()
    empty = ~missing & (frame[cfg.text_column].astype(str).str.strip() == "").to_numpy()
    if missing.any() or empty.any():
        raise DataError(f"The {which} split has {int(missing.sum())} missing and {int(empty.sum())} empty texts of "
                        f"{len(frame)} in column {cfg.text_column!r} ({_rows_text(np.flatnonzero(missing | empty))}): "
                        f"drop or fill those rows, or set text_column= to the column that holds the text.")
    unlabeled = frame[cfg.label_column].isna().to_numpy()
    if unlabeled.any():
        raise DataError(f"The {which} split has {int(unlabeled.sum())} missing labels (NaN/None) of {len(frame)} in "
                        f"column {cfg.label_column!r} ({_rows_text(np.flatnonzero(unlabeled))}): drop those rows "
                        f"or give them class ids 0..C-1 (label_column= names the column).")
    labels = frame[cfg.label_column].to_numpy()
    if labels.dtype.kind not in "iu":
        raise DataError(f"Column {cfg.label_column!r} of the {which} split must hold integer class "
                        f"ids, found {labels.dtype}. Map the labels to 0..C-1 first.")
    if (labels < 0).any():
        raise DataError(f"The {which} split has unlabeled rows (label < 0), as GLUE test splits do. "
                        f"Use a labeled split (eval_split='validation').")
    texts = frame[cfg.text_column].astype(str).tolist()
    split = TextSplit(texts=texts, labels=labels.astype(np.int64))
    classes = len(np.unique(split.labels))
    if limit and limit < min(classes, len(texts)):
        raise DataError(f"{limit_key}={limit} is below the {classes} classes of the {which} split: its stratified "
                        f"subset keeps a row of each class, so it would hold {classes} rows. Set {limit_key}= to at "
                        f"least {classes}, or to 0 for every row.")
    return stratified_subset(split, limit) if limit else split


def _stratified_rows(labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Return at most `limit` row indices (at least one row per class, so never fewer than the
    classes) drawn class by class in proportion to the class counts, in random order. Where the
    one-row floor of rare classes would exceed `limit`, the largest classes give up a row each."""
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * limit)).astype(int)
    for _ in range(int(quota.sum()) - max(limit, len(classes))):
        quota[np.argmax(quota)] -= 1
    keep = []
    for cls, n in zip(classes, quota):
        rows = np.flatnonzero(labels == cls)
        keep.append(rng.choice(rows, size=min(n, len(rows)), replace=False))
    return rng.permutation(np.concatenate(keep))


def _take(split: TextSplit, rows: np.ndarray) -> TextSplit:
    return TextSplit([split.texts[i] for i in rows], split.labels[rows])


def stratified_subset(split: TextSplit, limit: int, seed: int = 0) -> TextSplit:
    """Return a deterministic class-stratified subset of at most `limit` examples."""
    if limit >= len(split.texts):
        return split
    return _take(split, _stratified_rows(split.labels, limit, np.random.default_rng(seed)))


TEST_HOLDOUT_SEED = 0  # the seed of test_holdout's carve: the same rows for every run, method and seed


def carve_test_split(train: TextSplit, rows: int, seed: int = TEST_HOLDOUT_SEED) -> tuple[TextSplit, TextSplit]:
    """Return (train without the carved rows, the carved test split): a class-stratified draw of
    about `rows` training rows with `seed` (test_holdout, for data that has no test split). The
    remaining train rows keep their order. Raises DataError when fewer than one row per class
    would remain."""
    if not 0 < rows < len(train.texts):
        raise DataError(f"test_holdout={rows} must be between 1 and the train split's {len(train.texts) - 1} rows "
                        f"(e.g. test_holdout=2000), or 0 for none.")
    classes = len(np.unique(train.labels))
    if rows < classes:
        raise DataError(f"test_holdout={rows} is below the {classes} classes of the train split: the carve keeps a "
                        f"row of each class, so it would hold {classes} rows. Set test_holdout= to at least {classes}.")
    held = _stratified_rows(train.labels, rows, np.random.default_rng(seed))
    rest = np.setdiff1d(np.arange(len(train.texts)), held)
    if len(np.unique(train.labels[rest])) < len(np.unique(train.labels)):
        raise DataError(f"test_holdout={rows} leaves a class with no training row: lower test_holdout=.")
    return _take(train, rest), _take(train, np.sort(held))


def load_text_dataset(cfg: Config) -> DataBundle:
    """Return train/eval texts, labels and label names from a local folder or the hub.

    `cfg.dataset` may be a local folder (parquet/CSV files named by split) or a hub name (read from
    its local_copy when there is one). Raises DataError with the parameter to set when the data cannot
    be used.
    """
    folder = Path(local_copy(cfg.dataset)).expanduser()
    if folder.is_dir():
        train_frame, (eval_name, eval_frame), test_frame, names, source = _load_local(folder, cfg)
    elif _names_a_local_path(cfg.dataset):
        raise DataError(f"Dataset folder {cfg.dataset!r} does not exist. Set dataset= to an "
                        f"existing folder or a hub name such as 'ag_news'.")
    else:
        train_frame, (eval_name, eval_frame), test_frame, names, source = _load_hub(cfg.dataset, cfg)
    if cfg.test_split and cfg.test_split == eval_name:
        raise DataError(f"test_split={cfg.test_split!r} is also the evaluation split of {source}: set test_split= "
                        f"to another split, or to '' for none.")
    train = _frame_to_split(train_frame, cfg, "train", cfg.max_train_examples, "max_train_examples")
    evaluation = _frame_to_split(eval_frame, cfg, "eval", cfg.max_eval_examples, "max_eval_examples")
    test = None if test_frame is None else _frame_to_split(test_frame, cfg, "test", cfg.max_eval_examples,
                                                           "max_eval_examples")
    if cfg.test_holdout:
        if test is not None:
            raise DataError(f"test_split={cfg.test_split!r} and test_holdout={cfg.test_holdout} are both set: "
                            f"keep one (test_holdout=0 to use the data's own test split).")
        train, test = carve_test_split(train, cfg.test_holdout)
    names = check_labels(train, evaluation, names, source, test)
    flipped = None
    if cfg.label_noise:
        labels, flipped = flip_labels(train.labels, cfg.label_noise, len(names), cfg.label_noise_seed)
        train = TextSplit(train.texts, labels)
    splits = {"train": cfg.train_split, "eval": eval_name,
              "test": cfg.test_split or (f"{cfg.test_holdout} rows of {cfg.train_split}" if cfg.test_holdout else None)}
    digest = files_sha256(local_data_files(folder, cfg), folder) if folder.is_dir() else \
        rows_sha256({"train": train, "eval": evaluation, "test": test})
    return validate_data(DataBundle(train=train, eval=evaluation, label_names=names, source=source, test=test,
                                    flipped_rows=flipped, splits=splits, sha256=digest))


def local_data_files(folder: Path, cfg: Config) -> list[Path]:
    """Return the files of a local data folder that loading `cfg` can read: its train and test
    splits' files, those of every candidate evaluation split (eval_split_candidates) and
    labels.json."""
    names = dict.fromkeys((cfg.train_split, *eval_split_candidates(cfg), *([cfg.test_split] if cfg.test_split else [])))
    files = [f for name in names for f in _split_files(folder, name)]
    return sorted(dict.fromkeys(files + [p for p in [folder / "labels.json"] if p.is_file()]))


def files_sha256(files: Sequence[Path], root: Path) -> str:
    """Return the SHA-256 of `files` (each one's path relative to `root`, size and bytes, in the
    given order), read once per process for a file of the same size, inode and times."""
    stats = []
    for path in files:
        st = path.stat()
        stats.append((str(path), path.relative_to(root).as_posix(), st.st_size, st.st_ino, st.st_mtime_ns,
                      st.st_ctime_ns))
    return _stats_sha256(tuple(stats))


@functools.lru_cache(maxsize=64)
def _stats_sha256(stats: tuple[tuple[str, str, int, int, int, int], ...]) -> str:
    """Return the SHA-256 of the files listed by files_sha256 (path, name, size, inode, times)."""
    import hashlib

    digest = hashlib.sha256()
    for path, name, size, *_ in stats:
        digest.update(f"{name}\0{size}\0".encode())
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def rows_sha256(splits: dict[str, TextSplit | None]) -> str:
    """Return the SHA-256 of the rows of each split (its name, then every text and label)."""
    import hashlib

    digest = hashlib.sha256()
    for name, split in splits.items():
        if split is None:
            continue
        digest.update(f"{name}\0{len(split.texts)}\0".encode())
        for text, label in zip(split.texts, split.labels.tolist()):
            digest.update(f"{text}\x1f{label}\x1e".encode())
    return digest.hexdigest()


# The Config keys that decide which rows a dataset gives (data_sha256 of a hub dataset reloads with them).
DATA_KEYS = ("dataset", "train_split", "eval_split", "test_split", "test_holdout", "text_column", "label_column",
             "max_train_examples", "max_eval_examples", "label_noise", "label_noise_seed")


def data_sha256(cfg: Config) -> str:
    """Return the SHA-256 of the data `cfg` reads, as load_text_dataset computes it: a local
    folder's files (local_data_files, read once per process while they do not change), or a hub
    dataset's rows (loaded once per process for the same DATA_KEYS)."""
    folder = Path(local_copy(cfg.dataset)).expanduser()
    if folder.is_dir():
        return files_sha256(local_data_files(folder, cfg), folder)
    return _hub_rows_sha256(tuple((k, getattr(cfg, k)) for k in DATA_KEYS), "eval_split" in cfg.explicit)


@functools.lru_cache(maxsize=8)
def _hub_rows_sha256(keys: tuple[tuple[str, Any], ...], eval_split_set: bool) -> str:
    """Return load_text_dataset's sha256 of the hub dataset that the DATA_KEYS values `keys` read."""
    cfg = replace_config(Config(), explicit=("eval_split",) if eval_split_set else (), **dict(keys))
    return load_text_dataset(cfg).sha256


def validate_data(bundle: DataBundle) -> DataBundle:
    """Return `bundle` after checking it can train a classifier (check_labels: at least two classes
    in its train split, a name for each label, no eval or test class the train split lacks).
    Missing or empty texts and missing labels are refused as the splits are read (_frame_to_split).
    Raises DataError."""
    check_labels(bundle.train, bundle.eval, bundle.label_names, bundle.source, bundle.test)
    return bundle


def flip_labels(labels: np.ndarray, share: float, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (noisy labels, flipped rows): round(share * n) rows drawn without replacement with
    `seed`, each given a label drawn uniformly from the other num_classes - 1 classes; the rows come
    sorted. Evaluation splits are never flipped."""
    if not 0.0 <= share < 1.0:
        raise DataError(f"label_noise={share} must be a share in [0, 1), e.g. label_noise=0.2.")
    if num_classes < 2:
        raise DataError("label_noise needs at least two classes to flip between.")
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(labels), size=round(share * len(labels)), replace=False))
    noisy = labels.copy()
    # Adding 1..C-1 (mod C) moves each label to a uniformly drawn other class.
    noisy[rows] = (labels[rows] + rng.integers(1, num_classes, size=len(rows))) % num_classes
    return noisy, rows


def check_labels(train: TextSplit, evaluation: TextSplit, names: Sequence[str] | None, source: str,
                 test: TextSplit | None = None) -> list[str]:
    """Return the class names (given, or "0".."C-1") after checking every split's labels against them.

    Raises DataError naming the split and its offending values when the train split has fewer than
    two classes, a label has no name (labels.json or the hub's names) or the eval (or test) split
    has classes the train split lacks (a model cannot learn a class it never trains on).
    """
    classes, counts = np.unique(train.labels, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"The train split of {source} has one class (label {int(classes[0])}, {int(counts[0])} "
                        f"rows): a classifier needs at least two. Point dataset= at data with several classes "
                        f"(or raise max_train_examples=).")
    held_out = [("eval", evaluation)] + ([("test", test)] if test is not None else [])
    def offending(values: np.ndarray) -> str:
        shown = sorted(int(v) for v in values)
        return ", ".join(map(str, shown[:10])) + (" ..." if len(shown) > 10 else "")

    if names:
        for which, split in [("train", train), *held_out]:
            bad = np.setdiff1d(np.unique(split.labels), np.arange(len(names)))
            if len(bad):
                raise DataError(f"The {which} split of {source} has labels {offending(bad)}, but its class "
                                f"names (labels.json, or the hub's) list {len(names)} classes, ids "
                                f"0..{len(names) - 1}. Fix the labels or the names list.")
    for which, split in held_out:
        unseen = np.setdiff1d(np.unique(split.labels), np.unique(train.labels))
        if len(unseen):
            raise DataError(f"The {which} split of {source} has labels {offending(unseen)} that the train split "
                            f"never has (train has {offending(np.unique(train.labels))}). Use splits with "
                            f"the same classes ({which}_split=, train_split=).")
    if names:
        return list(names)
    return [str(i) for i in range(int(max(train.labels.max(), evaluation.labels.max())) + 1)]


def encode_split(split: TextSplit, tokenizer, max_length: int) -> core.EncodedSplit:
    """Tokenize a split once; return ids padded to its longest example, lengths and labels."""
    enc = tokenizer(split.texts, truncation=True, max_length=max_length, padding="longest",
                    return_tensors="pt")
    lengths = enc["attention_mask"].sum(dim=1)
    return core.EncodedSplit(enc["input_ids"].contiguous(), lengths, torch.as_tensor(split.labels))


def subset_split(data: core.EncodedSplit, rows: np.ndarray | torch.Tensor) -> core.EncodedSplit:
    """Return the rows `rows` of an encoded split as a new EncodedSplit."""
    idx = torch.as_tensor(rows, device=data.input_ids.device)
    return core.EncodedSplit(data.input_ids[idx], data.lengths[idx], data.labels[idx])


def bucketed_batches(lengths: torch.Tensor, batch_size: int, generator: torch.Generator,
                     bucket_mult: int = 50) -> list[torch.Tensor]:
    """Return one epoch of index batches: each example exactly once, similar lengths together.

    Indices are shuffled, cut into buckets of `bucket_mult` batches, sorted by length inside a
    bucket, cut into batches, and the batch order is shuffled.
    """
    n = int(lengths.shape[0])
    order = torch.randperm(n, generator=generator)
    span = max(batch_size * bucket_mult, batch_size)
    batches = []
    lengths_cpu = lengths.cpu()
    for start in range(0, n, span):
        bucket = order[start:start + span]
        bucket = bucket[torch.argsort(lengths_cpu[bucket], stable=True)]
        batches.extend(bucket.split(batch_size))
    shuffle = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in shuffle]


def plan_epoch(data: core.EncodedSplit, cfg: Config, generator: torch.Generator,
               batch_size: int | None = None) -> list[tuple[torch.Tensor, int]]:
    """Return (indices, padded width) per batch for one epoch; widths are computed on the host
    here so the training loop never syncs to read a length."""
    batches = bucketed_batches(data.host_lengths, batch_size or cfg.batch_size, generator, cfg.bucket_mult)
    return [(idx, core.batch_width(data, idx, cfg.pad_multiple)) for idx in batches]
