"""Section 3: model loading, encoder parts, truncated encoder, head re-initialisation."""
from copy import deepcopy

import pytest
import torch
from torch import nn

import mclearn_core as mc
import mclearn_paper as mp
import mcstudy as ms


def _tiny_classifier(kind: str, **sizes):
    """A seeded, randomly initialised 3-class transformers classifier of `kind` (Bert, MPNet)."""
    import transformers

    torch.manual_seed(0)
    cfg = getattr(transformers, f"{kind}Config")(vocab_size=100, hidden_size=16, num_attention_heads=2,
                                                 intermediate_size=32, num_labels=3, **sizes)
    return getattr(transformers, f"{kind}ForSequenceClassification")(cfg).eval()


@pytest.fixture(scope="module")
def tiny_bert():
    return _tiny_classifier("Bert", num_hidden_layers=3, max_position_embeddings=32)


@pytest.fixture(scope="module")
def tiny_mpnet():
    return _tiny_classifier("MPNet", num_hidden_layers=2, max_position_embeddings=40)


def _inputs(vocab: int = 100, batch: int = 3, length: int = 10):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, vocab, (batch, length), generator=g)
    mask = torch.ones_like(ids)
    mask[0, 6:] = 0  # one padded row
    return ids, mask


def test_tiny_model_offline():
    cfg = ms.make_config("cpu-smoke")
    texts = ["the market rallied today", "the team won the final", "new chip design unveiled"] * 20
    model, tok = ms.load_model_and_tokenizer(cfg, num_labels=4, train_texts=texts)
    assert model.config.num_labels == 4 and model.config.n_layers == cfg.tiny_layers
    assert len(tok) <= cfg.tiny_vocab_size and tok.pad_token_id is not None
    enc = tok(["the market won"], return_tensors="pt")
    assert model(**enc).logits.shape == (1, 4)


def test_tiny_model_needs_texts():
    with pytest.raises(mc.ModelLoadError, match="train_texts"):
        ms.load_model_and_tokenizer(ms.make_config("cpu-smoke"), 4)


def test_unknown_model_raises_modelloaderror_naming_model_name(monkeypatch):
    import transformers

    calls = []

    def unreachable(name, *args, **kwargs):
        calls.append(name)
        raise OSError(f"{name} is not a local folder and is not a valid model identifier")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", unreachable)
    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", unreachable)
    cfg = ms.make_config("cpu-smoke", model_name="no-such-org/no-such-model")
    with pytest.raises(mc.ModelLoadError, match="model_name=") as info:
        ms.load_model_and_tokenizer(cfg, 4)
    assert "no-such-org/no-such-model" in str(info.value)
    assert isinstance(info.value.__cause__, OSError) and calls == ["no-such-org/no-such-model"]


def test_encoder_parts_distilbert(prepared):
    parts = mc.encoder_parts(prepared.base_model)
    assert parts.base is prepared.base_model.distilbert
    assert len(parts.layers) == prepared.cfg.tiny_layers
    assert parts.layer_owner is prepared.base_model.distilbert.transformer
    assert set(parts.head) == {"pre_classifier", "classifier"}


def test_encoder_parts_bert(tiny_bert):
    parts = mc.encoder_parts(tiny_bert)
    assert parts.base is tiny_bert.bert and parts.layer_owner is tiny_bert.bert.encoder
    assert len(parts.layers) == 3 and parts.embeddings is tiny_bert.bert.embeddings
    assert set(parts.head) == {"classifier", "pooler"}


def test_encoder_parts_rejects_other_models():
    class NotAnEncoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.base_model = nn.Linear(2, 2)

    with pytest.raises(mc.ModelLoadError, match="DistilBERT/BERT"):
        mc.encoder_parts(NotAnEncoder())


def _check_truncation(model, base, ids, mask):
    """Inside truncated_encoder(k) the encoder has k layers and returns the full model's hidden
    state after block k; afterwards every layer is back."""
    n = len(mc.encoder_parts(model).layers)
    with torch.no_grad():
        reference = base(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        assert len(reference) == n + 1
        for k in range(n + 1):
            with mc.truncated_encoder(model, k) as encoder:
                assert encoder is base and len(mc.encoder_parts(model).layers) == k
                out = encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            torch.testing.assert_close(out, reference[k], rtol=1e-5, atol=1e-5)
            assert len(mc.encoder_parts(model).layers) == n


def test_truncated_encoder_distilbert(prepared):
    model = prepared.base_model.eval()
    ids, mask = _inputs(vocab=len(prepared.tokenizer))
    _check_truncation(model, model.distilbert, ids, mask)


def test_truncated_encoder_bert(tiny_bert):
    ids, mask = _inputs()
    _check_truncation(tiny_bert, tiny_bert.bert, ids, mask)


def test_truncated_encoder_restores_layers_after_an_error(tiny_bert):
    layers = tiny_bert.bert.encoder.layer
    with pytest.raises(RuntimeError):
        with mc.truncated_encoder(tiny_bert, 1):
            raise RuntimeError("boom")
    assert tiny_bert.bert.encoder.layer is layers and len(layers) == 3


def test_apply_head_matches_the_models_own_head(prepared, tiny_bert, tiny_mpnet):
    """apply_head on the [CLS] hidden state reproduces the classifier's logits (eval mode), for
    DistilBERT, BERT and MPNet (whose head reads token 0 of [B, L, H] features itself)."""
    for model, base in ((prepared.base_model.eval(), prepared.base_model.distilbert),
                        (tiny_bert, tiny_bert.bert), (tiny_mpnet, tiny_mpnet.mpnet)):
        ids, mask = _inputs(vocab=model.config.vocab_size)
        with torch.no_grad():
            cls = base(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
            logits = model(input_ids=ids, attention_mask=mask).logits
            torch.testing.assert_close(mp.apply_head(mc.encoder_parts(model).head, cls), logits)


def test_reinit_head_is_seeded_and_touches_only_the_head(prepared):
    a, b = (deepcopy(prepared.base_model) for _ in range(2))
    ms.reinit_head(a, 1)
    ms.reinit_head(b, 1)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert torch.count_nonzero(a.classifier.bias) == 0
    ms.reinit_head(b, 2)
    assert not torch.equal(a.classifier.weight, b.classifier.weight)
    emb = prepared.base_model.distilbert.embeddings.word_embeddings.weight
    assert torch.equal(a.distilbert.embeddings.word_embeddings.weight, emb)


def test_mean_pool_ignores_padding():
    hidden = torch.arange(12, dtype=torch.float32).reshape(1, 4, 3)
    mask = torch.tensor([[1, 1, 0, 0]])
    torch.testing.assert_close(mc.mean_pool(hidden, mask), hidden[0, :2].mean(0, keepdim=True))
    assert torch.equal(mc.mean_pool(hidden, torch.zeros(1, 4)), torch.zeros(1, 3))


def test_build_optimizer_layerwise_lr(prepared):
    cfg = ms.replace_config(prepared.cfg, lr=1e-3, encoder_lr_mult=0.8, layer_decay=0.5)
    model = prepared.base_model
    opt = ms.build_optimizer(model, cfg, torch.device("cpu"))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    # every trainable parameter in exactly one group
    assert sum(len(g["params"]) for g in opt.param_groups) == len(lr_of) == \
        sum(1 for p in model.parameters() if p.requires_grad)
    layers = model.distilbert.transformer.layer
    assert lr_of[id(model.classifier.weight)] == pytest.approx(1e-3)
    assert lr_of[id(layers[-1].ffn.lin1.weight)] == pytest.approx(8e-4)
    assert lr_of[id(layers[0].ffn.lin1.weight)] == pytest.approx(4e-4)
    assert lr_of[id(model.distilbert.embeddings.word_embeddings.weight)] == pytest.approx(2e-4)
    # no weight decay on biases and norms
    wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd_of[id(layers[0].ffn.lin1.bias)] == 0.0
    assert wd_of[id(layers[0].ffn.lin1.weight)] == cfg.weight_decay


def test_tiny_tokenizer_is_the_same_in_every_process():
    # The tokenizers trainer broke frequency ties differently per process, so two runs with the
    # same seed trained different models; the vocabulary must not depend on the process.
    import subprocess
    import sys

    code = ("import hashlib, json, mcstudy as ms; "
            "b = ms.load_text_dataset(ms.make_config('cpu-smoke')); "
            "t = ms.build_tiny_tokenizer(b.train.texts, 2000); "
            "print(hashlib.md5(json.dumps(sorted(t.get_vocab().items())).encode()).hexdigest())")
    hashes = {subprocess.run([sys.executable, "-c", code], cwd=ms.REPO_ROOT, capture_output=True, text=True,
                             check=True).stdout.strip() for _ in range(2)}
    assert len(hashes) == 1


@pytest.mark.parametrize("which", ["distilbert", "bert", "mpnet"])
def test_model_inputs_give_the_same_logits_without_asking_the_host(which, prepared, tiny_bert, tiny_mpnet, monkeypatch):
    """The 4-D mask gives the logits of transformers' own masking (padded and unpadded batches),
    and the host-side padding check (a device sync on a GPU) is never reached; for MPNet (eager
    attention) the additive mask is built on the device, so transformers' host scalar is not."""
    import transformers.masking_utils as masking

    model = {"distilbert": prepared.base_model, "bert": tiny_bert, "mpnet": tiny_mpnet}[which].eval()
    assert model.config._attn_implementation == ("eager" if which == "mpnet" else "sdpa")
    ids, mask = _inputs(vocab=min(100, model.config.vocab_size))
    for batch_mask in (mask, torch.ones_like(mask)):
        batch = {"input_ids": ids, "attention_mask": batch_mask}
        with torch.no_grad():
            expected = model(input_ids=ids, attention_mask=batch_mask).logits
            with monkeypatch.context() as patch:
                def host_check(*args, **kwargs):
                    raise AssertionError("transformers read the padding mask on the host")
                patch.setattr(masking, "_ignore_bidirectional_mask_sdpa", host_check)
                patch.setitem(masking.ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, "eager", host_check)
                got = model(**mc.model_inputs(model, batch)).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_hub_model_name_reads_its_local_copy(tmp_path, monkeypatch):
    texts = ["alpha beta", "gamma delta", "market goal"] * 10
    cfg = ms.make_config("cpu-smoke")
    tokenizer = ms.build_tiny_tokenizer(texts, cfg.tiny_vocab_size)
    folder = tmp_path / "someone" / "tiny-encoder"
    ms.build_tiny_model(tokenizer, 2, cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    hub_cfg = ms.replace_config(cfg, model_name="someone/tiny-encoder")
    monkeypatch.delenv(ms.LOCAL_COPIES_ENV, raising=False)
    with pytest.raises(mc.ModelLoadError, match="model_name="):
        ms.load_model_and_tokenizer(hub_cfg, num_labels=2)  # offline: the hub is not reachable
    monkeypatch.setenv(ms.LOCAL_COPIES_ENV, str(tmp_path))
    model, loaded = ms.load_model_and_tokenizer(hub_cfg, num_labels=2)
    assert model.config.num_labels == 2 and loaded("alpha beta")["input_ids"] == tokenizer("alpha beta")["input_ids"]


def test_cached_position_buckets_give_the_same_logits_and_follow_a_copy(tiny_mpnet):
    """MPNet's relative-position buckets cached on the device (CUDA graphs cannot capture the
    host copy transformers makes): same logits as the model's own code, at two lengths; a deep copy
    (every run trains one) uses its own bias embedding, not the original's."""
    ids, mask = _inputs()
    model = deepcopy(tiny_mpnet).eval()
    with torch.no_grad():
        expected = [model(input_ids=ids[:, :n], attention_mask=mask[:, :n]).logits for n in (10, 7)]
        ms.cache_position_buckets(model)
        got = [model(input_ids=ids[:, :n], attention_mask=mask[:, :n]).logits for n in (10, 7)]
    assert len(model.base_model.encoder.position_bucket_cache) == 2
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)
    copy = deepcopy(model)
    with torch.no_grad():
        copy.base_model.encoder.relative_attention_bias.weight.normal_(0.0, 5.0)  # (a constant shift cancels in softmax)
        changed = copy(input_ids=ids, attention_mask=mask).logits
        same = model(input_ids=ids, attention_mask=mask).logits
    torch.testing.assert_close(same, expected[0])
    assert not torch.allclose(changed, expected[0])


def test_model_sha256_hashes_the_weight_config_and_tokenizer_files_of_the_folder_it_loads(tmp_path, monkeypatch):
    """A local folder: its weight, config and tokenizer files (not a README); a hub name: the files of
    its snapshot in the local hub cache (faked here); 'tiny': its keys. Another weight file, another
    snapshot or another tiny width hash differently; a README edit does not."""
    import huggingface_hub

    folder = tmp_path / "model"
    folder.mkdir()
    for name, text in [("config.json", "{}"), ("model.safetensors", "w1"), ("vocab.txt", "[UNK]"), ("README.md", "a")]:
        (folder / name).write_text(text)
    cfg = ms.make_config("cpu-smoke", model_name=str(folder))
    first = ms.model_sha256(cfg)
    (folder / "README.md").write_text("b")
    assert ms.model_sha256(cfg) == first
    (folder / "model.safetensors").write_text("w2")
    assert ms.model_sha256(cfg) != first
    (folder / "vocab.txt").write_text("[UNK]\nword")
    second = ms.model_sha256(cfg)
    assert len({first, second, ms.model_sha256(ms.replace_config(cfg, model_name=str(folder / "..")))}) == 3
    cache = tmp_path / "hub"  # the hub cache's layout: models--org--name/{refs/main, snapshots/<commit>/...}
    snapshot = cache / "models--org--name" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (cache / "models--org--name" / "refs").mkdir()
    (cache / "models--org--name" / "refs" / "main").write_text("abc123")
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    hub = ms.make_config("cpu-smoke", model_name="org/name")
    assert ms.model_folder(hub) == snapshot and ms.model_sha256(hub) == second  # the same files
    tiny = ms.make_config("cpu-smoke")
    assert ms.model_sha256(tiny) == ms.model_sha256(ms.make_config("cpu-smoke"))
    assert ms.model_sha256(tiny) != ms.model_sha256(ms.replace_config(tiny, tiny_dim=64))
