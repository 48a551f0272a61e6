"""Synthetic bracket sentences for path patching (rLLC paper, Figure 6), in two variants.

Each window is BOS followed by groups of eight words with two bracket pairs:

    unnested:  w0 w1 ( w2 w3 ) w4 ( w5 w6 ) w7 .
    nested:    w0 w1 ( w2 w3 ( w4 w5 ) w6 ) w7 .

Both variants of a window draw the same words in the same order and hold the same tokens in the
same number: only where the brackets stand differs (depth 1 against depth 2). Sentences are
tokenised piece by piece (" word", "(", ")", "."; the text reads "w1( w2 w3) w4", as code spaces
brackets, since byte-level BPEs trained on code have no " )" token), so a closing bracket is
always one token of its own, whatever the tokenizer would merge in running text; :attr:`BracketSet.merged_in_text`
reports how often encoding the whole text at once would have merged a closing bracket into a
neighbour (then the set differs from running text there).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tokenizers import Tokenizer

from .tokenizer import bos_id

VARIANTS = ("unnested", "nested")
OPEN, CLOSE, STOP = "(", ")", "."
# Bracket positions within a group, as indices into its 8 words: "(" before, ")" after
LAYOUT = {"unnested": ({2, 5}, {3, 6}), "nested": ({2, 4}, {5, 6})}
WORDS = (
    "the", "a", "report", "plan", "city", "river", "old", "new", "small", "house", "road", "team",
    "said", "made", "found", "took", "gave", "saw", "kept", "left", "over", "under", "near", "after",
    "before", "with", "from", "into", "time", "day", "year", "water", "light", "word", "work", "hand",
    "long", "great", "little", "other", "first", "last", "same", "good", "king", "people", "world", "life",
)


@dataclass(frozen=True)
class BracketSet:
    variant: str
    tokens: torch.Tensor  # [n, length] int64, BOS first
    depth: torch.Tensor  # [n, length] bracket depth after each token
    closing: torch.Tensor  # [n, length - 1] bool: the token after this position is a closing bracket
    open_id: int
    close_id: int
    merged_in_text: float  # fraction of closing brackets that whole-text encoding would merge


def _group(rng: np.random.Generator, variant: str) -> list[str]:
    words = [" " + w for w in rng.choice(WORDS, size=8)]
    opens, closes = LAYOUT[variant]
    pieces: list[str] = []
    for i, w in enumerate(words):
        if i in opens:
            pieces.append(OPEN)
        pieces.append(w)
        if i in closes:
            pieces.append(CLOSE)
    return [*pieces, STOP]


def _single_id(tok: Tokenizer, piece: str) -> int:
    ids = tok.encode(piece, add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError(f"the tokenizer splits {piece!r} into {len(ids)} tokens; a bracket must be one token")
    return ids[0]


def bracket_set(tok: Tokenizer, variant: str, n: int, length: int, seed: int = 0) -> BracketSet:
    """``n`` windows of ``length`` tokens of one variant; the same ``seed`` gives the same words in
    both variants."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {VARIANTS}")
    open_id, close_id = _single_id(tok, OPEN), _single_id(tok, CLOSE)
    cache: dict[str, list[int]] = {}

    def ids(piece: str) -> list[int]:
        if piece not in cache:
            cache[piece] = tok.encode(piece, add_special_tokens=False).ids
        return cache[piece]

    bos = bos_id(tok)
    rows, merged, total_close = [], 0, 0
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        seq, text = [bos], ""
        while len(seq) < length:
            group = _group(rng, variant)
            for piece in group:
                seq.extend(ids(piece))
            text += "".join(group)
        rows.append(seq[:length])
        whole = tok.encode(text, add_special_tokens=False).ids
        total_close += text.count(CLOSE)
        merged += max(0, text.count(CLOSE) - whole.count(close_id))
    tokens = torch.tensor(rows, dtype=torch.long)
    step = (tokens == open_id).long() - (tokens == close_id).long()
    depth = step.cumsum(1)
    closing = tokens[:, 1:] == close_id
    return BracketSet(variant, tokens, depth, closing, open_id, close_id,
                      merged / total_close if total_close else 0.0)
