import numpy as np
import pandas as pd
import torch

from rllc.data import corpus
from rllc.data import tokens as tokens_mod
from rllc.data.tokenizer import bos_id


def test_heldout_domains_never_overlap_training_documents(ci_cfg, ci_prepared):
    mix = corpus.build_mixture(ci_cfg.corpus)
    train = set(mix.train["sha256"])
    assert train.isdisjoint(mix.test["sha256"])
    # held-out domains are disjoint from *every* document of every training source
    everything = set().union(*(set(df["sha256"]) for df in corpus.load_sources(ci_cfg.corpus.train_sources).values()))
    assert mix.heldout, "no held-out domain was built"
    for name, df in mix.heldout.items():
        assert len(df) > 0, name
        assert everything.isdisjoint(df["sha256"]), f"{name} shares documents with training"
        assert (df["sha256"] == [corpus.doc_hash(t) for t in df["text"]]).all()


def test_stdlib_code_and_test_suite_are_split(ci_prepared):
    docs = corpus.load_sources(["python_stdlib", "python_tests"])
    assert not docs["python_stdlib"]["doc_id"].str.startswith("test/").any()
    assert docs["python_tests"]["doc_id"].str.startswith("test/").all()


def test_mixture_has_four_prose_sources_and_two_code_languages(ci_cfg, ci_prepared):
    mix = corpus.build_mixture(ci_cfg.corpus)
    kinds = mix.train.groupby("kind")["source"].nunique()
    assert kinds["prose"] >= 4 and kinds["code"] >= 2


def test_manifest_records_hashes_and_counts(ci_prepared):
    manifest = corpus.read_manifest()
    for name in ("shakespeare", "python_stdlib", "bbc_news"):
        entry = manifest[name]
        assert entry["status"] == "ok" and entry["n_documents"] > 0 and entry["n_bytes"] > 0
        assert len(entry["text_sha256"]) == 64
    assert len(manifest["shakespeare"]["file_sha256"]) == 64


def test_token_windows_have_bos_at_document_starts(ci_cfg, ci_prepared):
    tok = ci_prepared.tokenizer
    bos = bos_id(tok)
    stream = tokens_mod.encode_documents(tok, ["hello world", "def f(x):\n    return x"])
    starts = np.flatnonzero(stream == bos)
    assert list(starts) == [0, 1 + len(tok.encode("hello world", add_special_tokens=False).ids)]
    assert tok.decode(stream[1:starts[1]].tolist()) == "hello world"
    for name in ("train", "test", "python_tests", "bbc_news"):
        t = tokens_mod.load_tokens(ci_cfg, name)
        assert t.dtype == torch.int64 and t.shape[1] == ci_cfg.model.n_ctx
        assert int(t.max()) < ci_prepared.vocab_size
    assert (tokens_mod.load_tokens(ci_cfg, "train") == bos).any()


def test_token_cache_is_keyed_by_what_it_depends_on(ci_cfg):
    from rllc import config
    other = config.load_config("ci", {"model": {"n_ctx": 128}})
    assert tokens_mod.tokens_key(other) != tokens_mod.tokens_key(ci_cfg)
    same = config.load_config("ci", {"train": {"batch_size": 3}})
    assert tokens_mod.tokens_key(same) == tokens_mod.tokens_key(ci_cfg)


def test_unknown_distribution_lists_valid_names(ci_cfg, ci_prepared):
    import pytest
    with pytest.raises(KeyError, match="python_tests"):
        tokens_mod.load_tokens(ci_cfg, "klingon")


def test_token_counts_summary(ci_prepared):
    s = ci_prepared.summary
    assert isinstance(s, pd.DataFrame) and (s["tokens"] > 0).all()
    assert {"train", "test", "python_tests", "rust_stdlib", "bbc_news", "brown_learned"} <= set(s["split"])
