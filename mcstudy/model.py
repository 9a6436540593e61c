"""The study's model: loading a Hugging Face sequence classifier and its tokenizer (or building the
tiny offline one), checking it fits the data, hashing its files, re-initialising its head, and the
position buckets of a cached attention mask."""
from __future__ import annotations

import collections
import json
import types
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

import mclearn_core as core
from mcstudy.config import Config, ConfigError, local_copy, TINY_MODEL
from mcstudy.data import files_sha256, hub_offline, shorten


def build_tiny_tokenizer(texts: Sequence[str], vocab_size: int):
    """Return a WordPiece tokenizer built from `texts` (no download), as a BertTokenizerFast.

    The vocabulary is chosen deterministically: special tokens, then the most frequent words (ties
    broken alphabetically) up to `vocab_size`; any other word becomes one [UNK]. (The `tokenizers`
    trainer breaks ties differently from one process to the next, which made runs with the same
    seed differ.)
    """
    import collections

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    normalizer = normalizers.BertNormalizer(lowercase=True)
    splitter = pre_tokenizers.BertPreTokenizer()
    counts: collections.Counter[str] = collections.Counter()
    for text in texts:
        counts.update(word for word, _ in splitter.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]  # no "##" pieces: a rare word is one [UNK]
    known = set(vocab)
    for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        if len(vocab) >= vocab_size:
            break
        if word not in known:
            vocab.append(word)
            known.add(word)
    ids = {token: i for i, token in enumerate(vocab)}
    tokenizer = Tokenizer(models.WordPiece(vocab=ids, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = splitter
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])])
    tokenizer.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", sep_token="[SEP]",
                             pad_token="[PAD]", cls_token="[CLS]", mask_token="[MASK]")


def build_tiny_model(tokenizer, num_labels: int, cfg: Config, seed: int = 0):
    """Return a small randomly initialised DistilBERT classifier for offline runs and tests."""
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    torch.manual_seed(seed)
    model_cfg = DistilBertConfig(vocab_size=len(tokenizer), dim=cfg.tiny_dim, n_layers=cfg.tiny_layers,
                                 n_heads=cfg.tiny_heads, hidden_dim=cfg.tiny_hidden_dim,
                                 max_position_embeddings=max(cfg.max_length, 64),
                                 num_labels=num_labels, pad_token_id=tokenizer.pad_token_id)
    return DistilBertForSequenceClassification(model_cfg)


def load_model_and_tokenizer(cfg: Config, num_labels: int, train_texts: Sequence[str] = ()):
    """Return (model, tokenizer) for `cfg.model_name`: "tiny", a local folder or a hub name (read from
    its local_copy when there is one).

    Raises ModelLoadError naming `model_name` when the model cannot be found or reached.
    """
    if cfg.model_name == TINY_MODEL:
        if not train_texts:
            raise core.ModelLoadError("model_name='tiny' trains its tokenizer on the training texts; "
                                 "pass train_texts.")
        tokenizer = build_tiny_tokenizer(train_texts, cfg.tiny_vocab_size)
        return build_tiny_model(tokenizer, num_labels, cfg), tokenizer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    source = local_copy(cfg.model_name)
    offline = not Path(source).expanduser().is_dir() and hub_offline()
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=offline)
        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the "newly initialized classifier" notice is expected
        try:
            model = AutoModelForSequenceClassification.from_pretrained(
                source, num_labels=num_labels, dtype=torch.float32, local_files_only=offline)
        finally:
            hf_logging.set_verbosity(verbosity)
    except (OSError, ValueError) as err:
        where = "the hub is not reachable from here and it is not in the local cache" if offline else \
            f"{type(err).__name__}: {shorten(str(err))}"
        raise core.ModelLoadError(
            f"Could not load model {cfg.model_name!r} ({where}). "
            f"Set --model (model_name=) to a hub name reachable from here, a local folder holding config.json, "
            f"weights and tokenizer files, or 'tiny' for an offline model built from scratch."
        ) from err
    return cache_position_buckets(model), tokenizer


UNKNOWN_TOKEN_SHARE = 0.5  # a tokenizer reading more of the train tokens than this as unknown does not fit


def check_model_fits(cfg: Config, model: nn.Module, tokenizer, train: "EncodedSplit") -> None:
    """Raise ModelLoadError (ConfigError for score_layer) naming the fix when the model and its
    tokenizer cannot run `cfg` as set: a tokenizer with more tokens than the model's embedding has
    rows, one that reads most of the train split (`train`, encoded) as its unknown token (a folder
    whose tokenizer does not belong to its weights), or a cheap scorer that would run every layer
    (score_layer >= the encoder's layers)."""
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise core.ModelLoadError(f"The tokenizer of {cfg.model_name!r} has {len(tokenizer)} tokens, but the model's "
                             f"embedding has {rows} rows: they are not one model's. Set model_name= to a folder whose "
                             f"tokenizer files belong to its weights.")
    if tokenizer.unk_token_id is not None and len(train):
        ids = train.input_ids.cpu()
        real = torch.arange(ids.shape[1])[None, :] < train.lengths.cpu()[:, None]
        real &= ~torch.isin(ids, torch.tensor(sorted(set(tokenizer.all_special_ids) - {tokenizer.unk_token_id})))
        unknown = float((ids[real] == tokenizer.unk_token_id).float().mean()) if real.any() else 0.0
        if unknown > UNKNOWN_TOKEN_SHARE:
            fix = "raise tiny_vocab_size=" if cfg.model_name == TINY_MODEL else \
                "set model_name= to a folder whose tokenizer files belong to its weights"
            raise core.ModelLoadError(f"The tokenizer of {cfg.model_name!r} reads {unknown:.0%} of the train split's tokens "
                                 f"as its unknown token {tokenizer.unk_token!r}: the model would see almost no words. "
                                 f"{fix[0].upper() + fix[1:]}.")
    layers = len(core.encoder_parts(model).layers)
    if cfg.score_layer >= layers:
        raise ConfigError(f"score_layer={cfg.score_layer} runs all {layers} encoder layers of {cfg.model_name!r}: the "
                          f"cheap scorer must run fewer; set score_layer= to 0..{layers - 1}")


# The files of a model folder that decide its weights and tokenizer (model_sha256); README and
# other files are not read.
MODEL_FILE_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model")


TINY_KEYS = ("tiny_vocab_size", "tiny_dim", "tiny_layers", "tiny_heads", "tiny_hidden_dim", "max_length")


def model_folder(cfg: Config) -> Path:
    """Return the folder the model of `cfg` loads from: its local folder (local_copy), or its hub
    snapshot in the local hub cache, fetched first (load_model_and_tokenizer) when it is not there.
    Raises ModelLoadError when it cannot be had."""
    folder = Path(local_copy(cfg.model_name)).expanduser()
    if folder.is_dir():
        return folder
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(cfg.model_name, "config.json")
    if not isinstance(found, str):
        load_model_and_tokenizer(cfg, 2)
        found = try_to_load_from_cache(cfg.model_name, "config.json")
    if not isinstance(found, str):
        raise core.ModelLoadError(f"Model {cfg.model_name!r} loaded, but its files are not in the local hub cache, so "
                             f"its weights cannot be hashed: set model_name= to a local folder.")
    return Path(found).parent


def model_sha256(cfg: Config) -> str:
    """Return the SHA-256 of the model `cfg` trains: the weight, config and tokenizer files
    (MODEL_FILE_SUFFIXES) of its folder (model_folder: a local folder or the hub snapshot), read once
    per process while they do not change; for "tiny", of its TINY_KEYS (its tokenizer is built from
    the train split, which data_sha256 covers)."""
    import hashlib

    if cfg.model_name == TINY_MODEL:
        spec = json.dumps({"tiny": {key: getattr(cfg, key) for key in TINY_KEYS}}, sort_keys=True)
        return hashlib.sha256(spec.encode()).hexdigest()
    folder = model_folder(cfg)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES
                   and not p.name.startswith((".", "README")))
    return files_sha256(files, folder)


def reinit_head(model: nn.Module, seed: int) -> None:
    """Re-initialise the classification head with `seed` so each seed starts its own head."""
    torch.manual_seed(seed)
    for module in core.encoder_parts(model).head.values():
        for sub in module.modules():
            if isinstance(sub, nn.Linear):
                sub.weight.data.normal_(0.0, getattr(model.config, "initializer_range", 0.02))
                sub.bias.data.zero_()


def cache_position_buckets(model: nn.Module) -> nn.Module:
    """Return `model` with the relative-position buckets of an MPNet-style encoder (one with
    compute_position_bias and relative_position_bucket) computed on the device and kept per
    sequence length: transformers builds them on the host and copies them over in every forward,
    which no CUDA graph can capture. The first forward of a length (an eager warm-up step) fills
    the cache; the bias itself is still looked up from the model's own embedding. Other models
    are returned unchanged."""
    import types

    encoder = getattr(model.base_model, "encoder", None)
    if encoder is None or not hasattr(encoder, "compute_position_bias") or \
            not hasattr(encoder, "relative_position_bucket"):
        return model
    original = type(encoder).compute_position_bias

    def compute_position_bias(self, x, position_ids=None, num_buckets=32):
        if position_ids is not None:
            return original(self, x, position_ids, num_buckets)
        length = x.size(1)
        key = (length, num_buckets, str(x.device))
        if key not in self.position_bucket_cache:
            positions = torch.arange(length, dtype=torch.long, device=x.device)
            relative = positions[None, :] - positions[:, None]  # memory - context
            self.position_bucket_cache[key] = self.relative_position_bucket(relative, num_buckets=num_buckets)
        values = self.relative_attention_bias(self.position_bucket_cache[key]).permute([2, 0, 1]).unsqueeze(0)
        return values.expand((x.size(0), -1, length, length)).contiguous()

    encoder.position_bucket_cache = {}
    encoder.compute_position_bias = types.MethodType(compute_position_bias, encoder)  # deepcopy rebinds it
    return model
