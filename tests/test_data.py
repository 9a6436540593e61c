"""Section 2: data loading (local parquet/CSV, hub errors) and length-bucketed batching."""
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import pytest
import torch

import mclearn_core as mc
import mcstudy as ms


def _frame(n: int, num_classes: int = 3, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = ["alpha", "beta", "gamma", "delta", "market", "goal", "chip", "vote"]
    texts = [" ".join(rng.choice(words, size=int(rng.integers(2, 12)))) for _ in range(n)]
    return pd.DataFrame({"text": texts, "label": np.arange(n) % num_classes})


def _cfg(folder, **kw):
    # replace_config, not make_config: make_config drops None overrides (see findings)
    return ms.replace_config(ms.make_config("cpu-smoke", dataset=str(folder), **kw),
                             max_train_examples=None, max_eval_examples=None)


def test_local_parquet_folder(tmp_path):
    _frame(30).to_parquet(tmp_path / "train.parquet")
    _frame(9, seed=1).to_parquet(tmp_path / "test.parquet")
    cfg = _cfg(tmp_path)
    bundle = ms.load_text_dataset(cfg)
    assert len(bundle.train.texts) == 30 and len(bundle.eval.texts) == 9
    assert bundle.train.labels.dtype == np.int64
    assert bundle.label_names == ["0", "1", "2"]  # no labels.json, unknown folder name
    assert bundle.source == f"local:{tmp_path}"


def test_local_csv_folder_with_labels_json(tmp_path):
    _frame(20).to_csv(tmp_path / "train.csv", index=False)
    _frame(6, seed=2).to_csv(tmp_path / "validation.csv", index=False)  # eval falls back to validation
    (tmp_path / "labels.json").write_text('["a", "b", "c"]')
    bundle = ms.load_text_dataset(_cfg(tmp_path))
    assert len(bundle.train.texts) == 20 and len(bundle.eval.texts) == 6
    assert bundle.label_names == ["a", "b", "c"]
    assert bundle.train.texts[0] == _frame(20)["text"][0]


def test_embedded_sample():
    cfg = ms.replace_config(ms.make_config("cpu"), max_train_examples=None, max_eval_examples=None)
    bundle = ms.load_text_dataset(cfg)
    assert len(bundle.train.texts) == 6000 and len(bundle.eval.texts) == 1600
    assert bundle.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert np.bincount(bundle.train.labels).tolist() == [1500] * 4


def test_stratified_subset_is_deterministic_and_balanced():
    cfg = ms.make_config("cpu-smoke")  # max_train_examples=480 on a balanced 4-class sample
    a, b = ms.load_text_dataset(cfg), ms.load_text_dataset(cfg)
    assert len(a.train.texts) == 480 and a.train.texts == b.train.texts
    assert np.bincount(a.train.labels).tolist() == [120] * 4


def test_unreachable_hub_name_raises_dataerror_naming_dataset(monkeypatch):
    import datasets

    calls = []

    def offline(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("no network here")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ms.DataError, match="dataset=") as info:
        ms.load_text_dataset(ms.make_config("cpu-smoke", dataset="ag_news"))
    assert "ag_news" in str(info.value) and isinstance(info.value.__cause__, ConnectionError)
    with pytest.raises(ms.DataError, match="dataset="):
        ms.load_text_dataset(ms.make_config("cpu-smoke", dataset="glue/sst2"))
    assert calls == [("ag_news",), ("glue", "sst2")]  # GLUE names are split into (glue, task)


def test_hub_path_with_an_offline_datasetdict(monkeypatch):
    """The hub branch end to end with an in-memory DatasetDict: eval falls back to validation
    and label names come from the ClassLabel feature."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    frame = _frame(10, num_classes=2)
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_pandas(frame, features=features),
        "validation": datasets.Dataset.from_pandas(frame.head(4), features=features)})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: dd)
    bundle = ms.load_text_dataset(ms.replace_config(ms.make_config("cpu-smoke", dataset="some_set"),
                                                    max_train_examples=None, max_eval_examples=None))
    assert bundle.label_names == ["neg", "pos"]
    assert len(bundle.eval.texts) == 4 and bundle.source == "hub:some_set"


def test_missing_label_column_names_label_column(tmp_path):
    _frame(10).rename(columns={"label": "category"}).to_parquet(tmp_path / "train.parquet")
    _frame(5).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ms.DataError, match="label_column="):
        ms.load_text_dataset(_cfg(tmp_path))


def test_missing_text_column_names_text_column(tmp_path):
    _frame(10).to_parquet(tmp_path / "train.parquet")
    _frame(5).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ms.DataError, match="text_column="):
        ms.load_text_dataset(_cfg(tmp_path, text_column="sentence"))


@pytest.mark.parametrize("empty", ["train", "test"])
def test_empty_split_raises(tmp_path, empty):
    for split in ("train", "test"):
        frame = _frame(8)
        (frame.head(0) if split == empty else frame).to_parquet(tmp_path / f"{split}.parquet")
    with pytest.raises(ms.DataError, match="empty"):
        ms.load_text_dataset(_cfg(tmp_path))


def test_nonexistent_folder_raises(tmp_path):
    with pytest.raises(ms.DataError, match="does not exist"):
        ms.load_text_dataset(_cfg(tmp_path / "no_such_folder"))
    with pytest.raises(ms.DataError, match="dataset="):
        ms.load_text_dataset(_cfg("./no_such_folder"))


def test_folder_without_train_split_names_train_split(tmp_path):
    _frame(5).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ms.DataError, match="train_split="):
        ms.load_text_dataset(_cfg(tmp_path))


def test_string_and_negative_labels_raise(tmp_path):
    _frame(6).assign(label=["x", "y"] * 3).to_parquet(tmp_path / "train.parquet")
    _frame(6).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ms.DataError, match="integer"):
        ms.load_text_dataset(_cfg(tmp_path))
    _frame(6).to_parquet(tmp_path / "train.parquet")
    _frame(6).assign(label=-1).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ms.DataError, match="eval_split="):
        ms.load_text_dataset(_cfg(tmp_path))


def test_shared_sst2_if_available():
    root = os.environ.get("MCLEARN_DATA_DIR")
    if not root:
        pytest.skip("MCLEARN_DATA_DIR is not set (CI sets it to ../shared/data); "
                    "skipping the real SST-2 load")
    folder = Path(root).expanduser().resolve() / "sst2"
    if not folder.is_dir():
        pytest.skip(f"MCLEARN_DATA_DIR={root} has no sst2/ folder")
    cfg = ms.replace_config(ms.make_config("cpu-smoke", dataset=str(folder)), max_train_examples=1000,
                            max_eval_examples=None)  # eval_split stays 'test': must fall back
    bundle = ms.load_text_dataset(cfg)
    assert bundle.label_names == ["negative", "positive"]
    # the stratified subset floors each class's quota: at most 1000, at most one short per class
    assert 998 <= len(bundle.train.texts) <= 1000
    assert len(bundle.eval.texts) == 872  # the GLUE SST-2 validation split
    assert set(np.unique(bundle.eval.labels)) == {0, 1}


# ----------------------------------------------------------------------------- the hub path, offline
def _shared_folder(name: str) -> Path:
    root = os.environ.get("MCLEARN_DATA_DIR")
    if not root:
        pytest.skip("MCLEARN_DATA_DIR is not set (CI sets it to ../shared/data); skipping the hub-shaped "
                    f"{name} check")
    folder = Path(root).expanduser().resolve() / name
    if not folder.is_dir():
        pytest.skip(f"MCLEARN_DATA_DIR={root} has no {name}/ folder")
    return folder


def _serve_from_hub(monkeypatch, dataset_dict) -> list:
    """Make datasets.load_dataset (as _load_hub calls it) return `dataset_dict`; return its calls."""
    import datasets

    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append(args) or dataset_dict)
    return calls


def _same_bundles(hub: "ms.DataBundle", local: "ms.DataBundle") -> None:
    assert hub.label_names == local.label_names
    for which in ("train", "eval"):
        a, b = getattr(hub, which), getattr(local, which)
        assert a.texts == b.texts, which
        assert np.array_equal(a.labels, b.labels) and a.labels.dtype == b.labels.dtype == np.int64, which


@pytest.mark.parametrize("limits", [None, "preset"])
def test_hub_ag_news_matches_the_local_folder(tmp_path, monkeypatch, limits):
    """`ag_news` as the hub serves it (train/test; text, label with ClassLabel names) gives the same
    splits as the same rows in a local folder. Offline only the 7,600 test rows exist: a quarter of them
    play the test split, the rest the train split."""
    import datasets

    rows = pd.read_parquet(_shared_folder("ag_news") / "test.parquet")[["text", "label"]]
    splits = {"train": rows[rows.index % 4 != 0].reset_index(drop=True),
              "test": rows[rows.index % 4 == 0].reset_index(drop=True)}
    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["World", "Sports", "Business", "Sci/Tech"])})
    calls = _serve_from_hub(monkeypatch, datasets.DatasetDict(
        {name: datasets.Dataset.from_pandas(frame, features=features, preserve_index=False)
         for name, frame in splits.items()}))
    local = tmp_path / "ag_news"  # the folder name gives the label names, as the hub's ClassLabel does
    local.mkdir()
    for name, frame in splits.items():
        frame.to_parquet(local / f"{name}.parquet")
    cfg = ms.make_config("cpu-smoke", dataset="ag_news")
    if limits is None:
        cfg = ms.replace_config(cfg, max_train_examples=None, max_eval_examples=None)
    hub = ms.load_text_dataset(cfg)
    assert calls == [("ag_news",)] and hub.source == "hub:ag_news"
    _same_bundles(hub, ms.load_text_dataset(ms.replace_config(cfg, dataset=str(local))))
    assert hub.label_names == ["World", "Sports", "Business", "Sci/Tech"]
    assert len(hub.eval.texts) == 1900 if limits is None else 156 <= len(hub.eval.texts) <= 160  # floored quotas


def test_hub_glue_sst2_matches_the_local_folder(monkeypatch):
    """`glue`/`sst2` as the hub serves it (train/validation/test; sentence, label, idx; label -1
    throughout test) gives the splits of the local SST-2 folder: text from `sentence`, evaluation on
    validation (the unlabeled test split is passed over), names from the ClassLabel."""
    import datasets

    folder = _shared_folder("sst2")
    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"]),
                                  "idx": datasets.Value("int32")})

    def served(frame, unlabeled=False):
        frame = pd.DataFrame({"sentence": frame["text"], "label": -1 if unlabeled else frame["label"],
                              "idx": np.arange(len(frame), dtype=np.int32)})
        return datasets.Dataset.from_pandas(frame, features=features, preserve_index=False)

    train, validation = (pd.read_parquet(folder / f"{s}.parquet") for s in ("train", "validation"))
    calls = _serve_from_hub(monkeypatch, datasets.DatasetDict({
        "train": served(train), "validation": served(validation),
        "test": served(train.head(1821), unlabeled=True)}))  # GLUE's test: 1,821 rows, no labels
    cfg = ms.replace_config(ms.make_config("cpu-smoke", dataset="glue/sst2"), max_train_examples=None,
                            max_eval_examples=None)
    hub = ms.load_text_dataset(cfg)
    assert calls == [("glue", "sst2")] and hub.source == "hub:glue/sst2"
    _same_bundles(hub, ms.load_text_dataset(ms.replace_config(cfg, dataset=str(folder))))
    assert len(hub.train.texts) == 67349 and len(hub.eval.texts) == 872
    assert hub.label_names == ["negative", "positive"]
    # Asking for the unlabeled split by name still says what to do.
    with pytest.raises(ms.DataError, match="eval_split='validation'"):
        ms.load_text_dataset(ms.make_config("cpu-smoke", dataset="glue/sst2", eval_split="test"))


def test_hub_names_read_their_local_copy(tmp_path, monkeypatch):
    """With MCLEARN_LOCAL_COPIES set, a hub name whose folder exists there is read from it (no hub
    call); other names and an unset variable go to the hub as before."""
    import datasets

    copy = tmp_path / "glue" / "sst2"
    copy.mkdir(parents=True)
    _frame(12, num_classes=2).to_parquet(copy / "train.parquet")
    _frame(4, num_classes=2).to_parquet(copy / "validation.parquet")
    calls = _serve_from_hub(monkeypatch, datasets.DatasetDict())
    cfg = ms.replace_config(ms.make_config("cpu-smoke", dataset="glue/sst2"), max_train_examples=None,
                            max_eval_examples=None)
    monkeypatch.setenv(ms.LOCAL_COPIES_ENV, str(tmp_path))
    bundle = ms.load_text_dataset(cfg)
    assert bundle.source == f"local:{copy}" and bundle.label_names == ["negative", "positive"]
    assert len(bundle.train.texts) == 12 and calls == []
    assert ms.local_copy("ag_news") == "ag_news" and ms.local_copy(str(copy)) == str(copy)
    monkeypatch.delenv(ms.LOCAL_COPIES_ENV)
    with pytest.raises(ms.DataError):
        ms.load_text_dataset(cfg)  # the stand-in hub holds no splits
    assert calls == [("glue", "sst2")]


# ----------------------------------------------------------------------------- batching
@pytest.fixture(scope="module")
def embedded_lengths(prepared):
    """Token lengths of the whole embedded train sample (6,000 texts) under the smoke tokenizer."""
    frame = pd.read_parquet(ms.EMBEDDED_DATA / "train.parquet")
    split = ms.TextSplit(frame["text"].tolist(), np.array(frame["label"], dtype=np.int64))
    return ms.encode_split(split, prepared.tokenizer, 512).lengths  # untruncated: lengths vary


@pytest.mark.parametrize("batch_size,bucket_mult", [(16, 50), (32, 3), (7, 1)])
def test_bucketed_batches_yield_each_example_once(embedded_lengths, batch_size, bucket_mult):
    g = torch.Generator().manual_seed(0)
    batches = ms.bucketed_batches(embedded_lengths, batch_size, g, bucket_mult)
    seen = torch.cat(batches).sort().values
    assert torch.equal(seen, torch.arange(len(embedded_lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)


def padding_fraction(lengths: torch.Tensor, batches: Sequence[torch.Tensor], pad_multiple: int,
                     cap: int) -> float:
    """Return the fraction of token slots that are padding when batching as given (a measure for
    the test below; no product path needs it)."""
    real = padded = 0
    for idx in batches:
        lens = lengths[idx]
        real += int(lens.sum())
        padded += mc.padded_length(int(lens.max()), pad_multiple, cap) * len(idx)
    return 1.0 - real / max(padded, 1)


def test_bucketing_cuts_padding(embedded_lengths):
    bs, cap = 32, int(embedded_lengths.max())
    g = torch.Generator().manual_seed(0)
    bucketed = ms.bucketed_batches(embedded_lengths, bs, g, bucket_mult=50)
    random = torch.randperm(len(embedded_lengths), generator=g).split(bs)
    pad_bucketed = padding_fraction(embedded_lengths, bucketed, 8, cap)
    pad_random = padding_fraction(embedded_lengths, random, 8, cap)
    print(f"padding fraction: bucketed {pad_bucketed:.3f}, random {pad_random:.3f}")
    assert pad_bucketed < pad_random
    assert pad_bucketed < 0.5 * pad_random  # measured 0.085 vs 0.494 on this sample (seed 0)


def test_bucketed_batches_are_reproducible_and_shuffled(embedded_lengths):
    a = ms.bucketed_batches(embedded_lengths, 16, torch.Generator().manual_seed(3))
    b = ms.bucketed_batches(embedded_lengths, 16, torch.Generator().manual_seed(3))
    c = ms.bucketed_batches(embedded_lengths, 16, torch.Generator().manual_seed(4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))
    # batch order is shuffled: lengths of consecutive batches are not sorted
    maxima = [int(embedded_lengths[idx].max()) for idx in a]
    assert maxima != sorted(maxima)


def test_padded_length_and_plan_epoch(prepared):
    assert mc.padded_length(1, 8, 48) == 8 and mc.padded_length(17, 8, 48) == 24
    assert mc.padded_length(47, 8, 48) == 48 and mc.padded_length(0, 8, 48) == 8
    plan = ms.plan_epoch(prepared.train, prepared.cfg, torch.Generator().manual_seed(0))
    cap = prepared.train.input_ids.shape[1]
    for idx, width in plan:
        longest = int(prepared.train.lengths[idx].max())
        assert longest <= width <= cap and (width % 8 == 0 or width == cap)


def test_make_batch_mask_matches_lengths(prepared):
    idx = torch.tensor([0, 5, 9])
    batch = mc.make_batch(prepared.train, idx, 40)
    assert batch["input_ids"].shape == (3, 40)
    assert torch.equal(batch["attention_mask"].sum(1), prepared.train.lengths[idx].clamp_max(40))
    assert torch.equal(batch["labels"], prepared.train.labels[idx])
    # the mask covers exactly the non-pad tokens
    pad = prepared.tokenizer.pad_token_id
    assert torch.equal(batch["attention_mask"].bool(), batch["input_ids"] != pad)


def test_labels_outside_labels_json_name_the_split_and_values(tmp_path):
    """Train labels 7..10, eval labels 0..3 and four names: an error, not an 11-class model."""
    _frame(20, num_classes=4).assign(label=lambda f: f["label"] + 7).to_parquet(tmp_path / "train.parquet")
    _frame(8, num_classes=4).to_parquet(tmp_path / "test.parquet")
    (tmp_path / "labels.json").write_text('["a", "b", "c", "d"]')
    with pytest.raises(ms.DataError, match=r"The train split .* has labels 7, 8, 9, 10, .* 4 classes, ids 0\.\.3"):
        ms.load_text_dataset(_cfg(tmp_path))
    (tmp_path / "labels.json").write_text('["a", "b"]')  # eval labels beyond the names
    _frame(20, num_classes=2).to_parquet(tmp_path / "train.parquet")
    with pytest.raises(ms.DataError, match="The eval split .* has labels 2, 3,"):
        ms.load_text_dataset(_cfg(tmp_path))


def test_eval_classes_missing_from_train_are_an_error(tmp_path):
    _frame(20, num_classes=4).assign(label=lambda f: f["label"] + 7).to_parquet(tmp_path / "train.parquet")
    _frame(8, num_classes=4).to_parquet(tmp_path / "test.parquet")  # no labels.json
    with pytest.raises(ms.DataError, match=r"eval split .* has labels 0, 1, 2, 3 that the train split never has"):
        ms.load_text_dataset(_cfg(tmp_path))


def test_flip_labels_moves_the_stated_share_to_other_classes():
    """label_noise: round(share * n) distinct rows, each moved to a different class, uniformly
    over the other classes (chi-square-free check: every other class gets 25-42% of 3-class flips
    with 600 flips, seed fixed), the same rows for the same seed."""
    labels = np.arange(3000) % 3
    noisy, rows = ms.flip_labels(labels, 0.2, 3, seed=7)
    assert len(rows) == 600 and len(np.unique(rows)) == 600 and np.all(np.diff(rows) > 0)
    changed = np.flatnonzero(noisy != labels)
    assert np.array_equal(changed, rows)  # exactly the flipped rows, none moved onto itself
    shift = (noisy[rows] - labels[rows]) % 3
    assert 0.4 < np.mean(shift == 1) < 0.6  # the two other classes, about equally
    again, rows_again = ms.flip_labels(labels, 0.2, 3, seed=7)
    assert np.array_equal(again, noisy) and np.array_equal(rows_again, rows)
    assert not np.array_equal(ms.flip_labels(labels, 0.2, 3, seed=8)[1], rows)
    with pytest.raises(ms.DataError, match="label_noise"):
        ms.flip_labels(labels, 1.2, 3, seed=0)


def test_label_noise_flips_train_only_and_test_split_loads(tmp_path):
    _frame(200).to_parquet(tmp_path / "train.parquet")
    _frame(30, seed=1).to_parquet(tmp_path / "validation.parquet")
    _frame(40, seed=2).to_parquet(tmp_path / "test.parquet")
    clean = ms.load_text_dataset(_cfg(tmp_path, eval_split="validation"))
    assert clean.test is None and clean.flipped_rows is None
    bundle = ms.load_text_dataset(_cfg(tmp_path, eval_split="validation", test_split="test", label_noise=0.2))
    assert len(bundle.eval.texts) == 30 and len(bundle.test.texts) == 40
    assert len(bundle.flipped_rows) == 40
    assert np.array_equal(np.flatnonzero(bundle.train.labels != clean.train.labels), bundle.flipped_rows)
    assert np.array_equal(bundle.eval.labels, clean.eval.labels)
    with pytest.raises(ms.DataError, match="test_split"):
        ms.load_text_dataset(_cfg(tmp_path, eval_split="validation", test_split="holdout"))


# ----------------------------------------------------------------------------- degenerate data
@pytest.mark.parametrize("texts, counts", [
    (["a b", None, "c", None, "d", "e"], "2 missing and 0 empty texts of 6 in column 'text' (rows 1, 3)"),
    (["a b", "", "  ", "c", "d", "e"], "0 missing and 2 empty texts of 6 in column 'text' (rows 1, 2)"),
    ([""] * 6, "0 missing and 6 empty texts of 6 in column 'text' (rows 0, 1, 2, 3, 4 ...)"),
])
def test_missing_and_empty_texts_are_counted_naming_the_column(tmp_path, texts, counts):
    pd.DataFrame({"text": texts, "label": [0, 1] * 3}).to_parquet(tmp_path / "train.parquet")
    _frame(6).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ms.DataError) as info:
        ms.load_text_dataset(_cfg(tmp_path))
    assert f"The train split has {counts}: drop or fill those rows, or set text_column=" in str(info.value)


def test_missing_labels_are_counted_naming_the_column(tmp_path):
    pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [0, np.nan, 1, np.nan]}).to_csv(tmp_path / "train.csv", index=False)
    _frame(6).to_csv(tmp_path / "test.csv", index=False)
    with pytest.raises(ms.DataError, match=r"The train split has 2 missing labels \(NaN/None\) of 4 in column "
                                           r"'label' \(rows 1, 3\): drop those rows or give them class ids"):
        ms.load_text_dataset(_cfg(tmp_path))


def test_a_single_class_train_split_is_refused(tmp_path):
    _frame(20).assign(label=2).to_parquet(tmp_path / "train.parquet")
    _frame(6).assign(label=2).to_parquet(tmp_path / "test.parquet")
    with pytest.raises(ms.DataError, match=r"has one class \(label 2, 20 rows\): a classifier needs at least two"):
        ms.load_text_dataset(_cfg(tmp_path))


def test_an_invalid_labels_json_names_the_file(tmp_path):
    _frame(9).to_parquet(tmp_path / "train.parquet")
    _frame(6).to_parquet(tmp_path / "test.parquet")
    labels = tmp_path / "labels.json"
    labels.write_text('["a", "b",\n')
    with pytest.raises(ms.DataError) as info:
        ms.load_text_dataset(_cfg(tmp_path))
    assert str(info.value).startswith(f"{labels} is not valid JSON (Expecting value: line 2 column 1): write the "
                                      f"class names as a JSON list")
    labels.write_text('{"0": "a"}')
    with pytest.raises(ms.DataError, match="holds dict .* not a list of class names"):
        ms.load_text_dataset(_cfg(tmp_path))


def test_data_sha256_is_what_the_run_read(tmp_path, monkeypatch):
    """A local folder: the bytes of the split files it reads and labels.json (a label rewritten in
    place changes it; a split it never reads does not), the same hash load_text_dataset records. A hub
    dataset: its rows (faked DatasetDict), reloaded with the same keys when asked again, so a row
    changed under the same name changes it."""
    import datasets

    _frame(30).to_parquet(tmp_path / "train.parquet")
    _frame(9, seed=1).to_parquet(tmp_path / "test.parquet")
    cfg = _cfg(tmp_path, eval_split="test")
    first = ms.data_sha256(cfg)
    assert ms.load_text_dataset(cfg).sha256 == first and ms.load_text_dataset(cfg).splits == \
        {"train": "train", "eval": "test", "test": None}
    _frame(5, seed=2).to_parquet(tmp_path / "unused.parquet")
    assert ms.data_sha256(cfg) == first
    relabelled = _frame(30)
    relabelled.loc[3, "label"] = 2 - relabelled.loc[3, "label"]
    relabelled.to_parquet(tmp_path / "train.parquet")
    second = ms.data_sha256(cfg)
    assert second != first
    (tmp_path / "labels.json").write_text('["a", "b", "c"]')
    assert ms.data_sha256(cfg) not in (first, second)
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.Value("int64")})
    frame = _frame(10, num_classes=2)
    rows = {"frame": frame}
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict({
        "train": datasets.Dataset.from_pandas(rows["frame"], features=features),
        "validation": datasets.Dataset.from_pandas(frame.head(4), features=features)}))
    hub = _cfg("some_set")
    ms._hub_rows_sha256.cache_clear()
    before = ms.data_sha256(hub)
    bundle = ms.load_text_dataset(hub)
    assert before == bundle.sha256 == ms.rows_sha256({"train": bundle.train, "eval": bundle.eval, "test": None})
    rows["frame"] = frame.assign(label=1 - frame["label"])
    ms._hub_rows_sha256.cache_clear()  # as a new process reads it
    assert ms.data_sha256(hub) != before
