"""Token datasets: documents joined with BOS and cut into n_ctx windows, cached on disk.

Named distributions of a profile: ``train`` (the training mixture), ``test`` (held-out documents
of the same mixture) and one per held-out domain (``python_tests``, ``rust_stdlib``,
``bbc_news``, ``brown_learned``, ...). Each is an HF ``datasets`` dataset with one column
``input_ids``, saved under ``<data>/tokens/<key>/`` where the key hashes everything the tokens
depend on (documents, tokenizer, n_ctx).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import torch
from tokenizers import Tokenizer

from .. import paths
from ..config import Config, config_hash
from ..io import read_json, write_json
from ..provenance import provenance
from . import corpus
from .tokenizer import bos_id, get_tokenizer, tokenizer_key


def encode_documents(tok: Tokenizer, texts: list[str], batch: int = 256) -> np.ndarray:
    """All documents as one stream: BOS, doc tokens, BOS, doc tokens, ..."""
    bos = bos_id(tok)
    chunks: list[np.ndarray] = []
    for i in range(0, len(texts), batch):
        for enc in tok.encode_batch(texts[i:i + batch], add_special_tokens=False):
            chunks.append(np.asarray([bos, *enc.ids], dtype=np.int32))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int32)


def windows(stream: np.ndarray, n_ctx: int) -> np.ndarray:
    n = len(stream) // n_ctx
    return stream[: n * n_ctx].reshape(n, n_ctx)


def _save_dataset(arr: np.ndarray, target: Path) -> None:
    ds = datasets.Dataset.from_dict(
        {"input_ids": arr.tolist()},
        features=datasets.Features({"input_ids": datasets.Sequence(datasets.Value("int32"))}),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        ds.save_to_disk(str(tmp))
        os.replace(tmp, target)  # atomic for a directory that does not exist yet
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


@dataclass
class Prepared:
    """Everything the data stage produced for a config."""

    tokenizer: Tokenizer
    tokenizer_path: Path
    tokens_dir: Path
    summary: pd.DataFrame  # one row per (split, source): documents, bytes, tokens

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()


def tokens_key(cfg: Config) -> str:
    return config_hash({"corpus": cfg.corpus, "tokenizer": cfg.tokenizer, "n_ctx": cfg.model.n_ctx,
                        "corpus_version": corpus.CORPUS_VERSION})


def tokens_dir(cfg: Config) -> Path:
    return paths.data_dir() / "tokens" / tokens_key(cfg)


def prepare(cfg: Config, force: bool = False) -> Prepared:
    """Fetch corpora, train the tokenizer and write every token dataset of a config (cached)."""
    out = tokens_dir(cfg)
    info_path = out / "info.json"
    if info_path.exists() and not force:
        info = read_json(info_path)
        tok_path = Path(info["tokenizer_path"])
        if tok_path.exists():
            return Prepared(Tokenizer.from_file(str(tok_path)), tok_path, out,
                            pd.read_csv(out / "summary.csv"))
    mix = corpus.build_mixture(cfg.corpus, force=force)
    tok, tok_path = get_tokenizer(cfg.tokenizer, mix.train)
    rows = []
    splits = {"train": mix.train, "test": mix.test, **mix.heldout}
    for split, docs in splits.items():
        stream_parts = []
        for source, part in docs.groupby("source", sort=True):
            ids = encode_documents(tok, part["text"].tolist())
            stream_parts.append(ids)
            rows.append({"split": split, "source": source, "documents": len(part),
                         "bytes": int(part["text"].str.encode("utf-8").str.len().sum()), "tokens": int(len(ids))})
        stream = np.concatenate(stream_parts)
        if split == "train":
            # interleave documents of all sources before cutting windows: a window then mixes
            # sources only at document boundaries, and every epoch sees every source
            stream = _shuffle_documents(stream, bos_id(tok), seed=cfg.seed)
        arr = windows(stream, cfg.model.n_ctx)
        if len(arr) == 0:
            raise ValueError(f"split {split!r} has fewer than n_ctx={cfg.model.n_ctx} tokens")
        target = out / split
        if target.exists():
            shutil.rmtree(target)
        _save_dataset(arr, target)
    summary = pd.DataFrame(rows)
    summary.to_csv(out / "summary.csv", index=False)
    write_json(info_path, {"tokenizer_path": str(tok_path), "tokenizer_key": tokenizer_key(cfg.tokenizer, mix.train),
                           "splits": sorted(splits), "n_ctx": cfg.model.n_ctx, "vocab_size": tok.get_vocab_size(),
                           "provenance": provenance()})
    return Prepared(tok, tok_path, out, summary)


def _shuffle_documents(stream: np.ndarray, bos: int, seed: int) -> np.ndarray:
    starts = np.flatnonzero(stream == bos)
    docs = np.split(stream, starts[1:])
    order = np.random.default_rng(seed).permutation(len(docs))
    return np.concatenate([docs[i] for i in order])


def available_distributions(cfg: Config) -> list[str]:
    info = tokens_dir(cfg) / "info.json"
    if not info.exists():
        raise FileNotFoundError(f"no token datasets for profile {cfg.profile!r} yet; "
                                f"run `rllc data --profile {cfg.profile}`")
    return read_json(info)["splits"]


def load_tokens(cfg: Config, name: str = "train") -> torch.Tensor:
    """A named distribution as a [n_windows, n_ctx] int64 tensor."""
    valid = available_distributions(cfg)
    if name not in valid:
        raise KeyError(f"unknown distribution {name!r}; valid: {valid}")
    ds = datasets.load_from_disk(str(tokens_dir(cfg) / name))
    column = ds.data.column("input_ids").combine_chunks()  # arrow: no per-row Python objects
    flat = column.flatten().to_numpy().astype(np.int64)
    return torch.from_numpy(flat.reshape(len(ds), -1))


def sample_windows(cfg: Config, name: str, n: int, seed: int | None = None) -> torch.Tensor:
    """``n`` windows of a distribution drawn without replacement (the same for a seed)."""
    tokens = load_tokens(cfg, name)
    g = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
    return tokens[torch.randperm(len(tokens), generator=g)[:n]]


def held_in_windows(cfg: Config) -> torch.Tensor:
    """The held-in training windows searched for tokens in context (02) and shown again (03):
    ``classify.tic_samples`` windows of the training split drawn with the run's seed."""
    return sample_windows(cfg, "train", cfg.classify.tic_samples)
