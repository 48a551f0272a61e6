"""Byte-level BPE tokenizer trained on the training mixture only, with a BOS token."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pandas as pd
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from .. import paths
from ..config import TokenizerConfig, config_hash
from ..io import atomic_write

BOS = "<|bos|>"


def _training_texts(docs: pd.DataFrame, max_bytes: int | None) -> list[str]:
    """Documents in content-hash order up to ``max_bytes`` (so sources mix evenly)."""
    docs = docs.sort_values("sha256")
    if max_bytes is not None:
        sizes = docs["text"].str.encode("utf-8").str.len().cumsum()
        docs = docs[(sizes <= max_bytes).values | (sizes.index == docs.index[0])]
    return docs["text"].tolist()


def train_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=[BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def tokenizer_key(cfg: TokenizerConfig, train_docs: pd.DataFrame) -> str:
    return config_hash({"cfg": cfg, "docs": sorted(train_docs["sha256"])})


def get_tokenizer(cfg: TokenizerConfig, train_docs: pd.DataFrame) -> tuple[Tokenizer, Path]:
    """Train (or load the cached) tokenizer for these training documents."""
    path = paths.data_dir() / "tokenizers" / tokenizer_key(cfg, train_docs) / "tokenizer.json"
    if path.exists():
        return Tokenizer.from_file(str(path)), path
    tok = train_tokenizer(_training_texts(train_docs, cfg.train_bytes), cfg.vocab_size, cfg.min_frequency)
    atomic_write(path, lambda p: tok.save(str(p)))
    return tok, path


def bos_id(tok: Tokenizer) -> int:
    idx = tok.token_to_id(BOS)
    if idx is None:
        raise ValueError("tokenizer has no BOS token")
    return idx


def token_decoder(tok: Tokenizer) -> Callable[[int], str]:
    """id → the text of that single token (special tokens included), for displays."""
    return lambda i: tok.decode([int(i)], skip_special_tokens=False)
