"""The serial pattern classifier on hand-written token sequences: each pattern, and near misses."""

import pandas as pd
import pytest

from rllc.analysis import patterns as P


class Vocab:
    """Words ↔ ids for hand-written sequences (each piece is one token, spaces included)."""

    def __init__(self):
        self.ids: dict[str, int] = {}
        self.words: list[str] = []

    def encode(self, pieces: list[str]) -> list[int]:
        out = []
        for p in pieces:
            if p not in self.ids:
                self.ids[p] = len(self.words)
                self.words.append(p)
            out.append(self.ids[p])
        return out

    def decode(self, i: int) -> str:
        return self.words[i]


def classify_one(pieces: list[str], max_attn: int, vocab: Vocab | None = None) -> str:
    """Pattern of the token in context at the second-to-last piece (the last is the next token)."""
    vocab = vocab or Vocab()
    seq = vocab.encode(pieces)
    ctx = pd.DataFrame({"sample": [0], "pos": [len(seq) - 2], "max_attn": [max_attn]})
    return P.classify_contexts(ctx, [seq], vocab.decode)["pattern"].iloc[0]


# --- induction ------------------------------------------------------------------------------

def test_induction_via_earlier_b():
    pieces = [" the", " Quee", "queg", " said", " to", " Quee", "queg"]
    assert classify_one(pieces, max_attn=2) == "induction"  # attends to the first "queg"


def test_induction_via_current_a():
    pieces = [" the", " Quee", "queg", " said", " to", " Quee", "queg"]
    assert classify_one(pieces, max_attn=5) == "induction"  # attends to the current " Quee"


def test_induction_near_miss_wrong_attention():
    pieces = [" the", " Quee", "queg", " said", " to", " Quee", "queg"]
    # attends to " said": not the induction circuit's token, and the span is unique → unexplained
    assert classify_one(pieces, max_attn=3) == "unexplained"


def test_induction_near_miss_different_continuation():
    pieces = [" the", " Quee", "queg", " said", " to", " Quee", " was"]
    assert classify_one(pieces, max_attn=2) == "unexplained"


# --- Dyck ----------------------------------------------------------------------------------

def test_dyck_bracket_with_valid_nesting():
    pieces = ["f", "(", "a", "[", "1", "]", ",", " b", ")"]
    assert classify_one(pieces, max_attn=1) == "dyck"


def test_dyck_near_miss_invalid_nesting():
    pieces = ["f", "(", "a", "[", "1", ",", " b", ")"]  # "[" still open: ")" cannot close "("
    assert classify_one(pieces, max_attn=1) != "dyck"


def test_dyck_near_miss_no_opener():
    pieces = ["x", " =", " a", " +", " b", ")"]
    assert classify_one(pieces, max_attn=0) != "dyck"


def test_dyck_quotation():
    pieces = [" He", " wrote", " \"", "call", " me", " Ishmael", "\""]
    assert classify_one(pieces, max_attn=2) == "dyck"


def test_dyck_quotation_near_miss_opening_quote():
    # the next quote opens (it follows a space), it does not close
    pieces = [" He", " wrote", " \"", "call", "\"", " and", " \""]
    assert classify_one(pieces, max_attn=2) != "dyck"


def test_dyck_underscore_in_identifier_is_not_markdown():
    pieces = ["my", "_", "var", " =", " other", "_"]
    assert classify_one(pieces, max_attn=0) != "dyck"


def test_dyck_markdown_emphasis():
    pieces = [" a", " _", "very", " good", "_"]
    assert classify_one(pieces, max_attn=1) == "dyck"


def test_dyck_split_construction():
    pieces = [" It", " was", " both", " cold", " and"]
    assert classify_one(pieces, max_attn=2) == "dyck"


def test_dyck_split_construction_near_miss_across_sentences():
    pieces = [" It", " was", " both", ".", " Cold", " and"]
    assert classify_one(pieces, max_attn=2) != "dyck"


def test_dyck_question():
    pieces = [" Why", " did", " he", " go", "?"]
    assert classify_one(pieces, max_attn=0) == "dyck"


def test_dyck_comparative():
    pieces = [" it", " is", " more", " useful", " than"]
    assert classify_one(pieces, max_attn=2) == "dyck"


# --- skip n-grams ----------------------------------------------------------------------------

def test_skip_ngram_post_quotation():
    pieces = [" \"", "Go", " home", ".\"", " said"]
    assert classify_one(pieces, max_attn=3) == "skip_ngram"


def test_skip_ngram_phrasal_verb():
    pieces = [" to", " prevent", " the", " flood", " from"]
    assert classify_one(pieces, max_attn=1) == "skip_ngram"


def test_skip_ngram_near_miss_unlisted_verb():
    pieces = [" to", " watch", " the", " flood", " from"]
    assert classify_one(pieces, max_attn=1) != "skip_ngram"


def test_skip_ngram_abbreviation():
    pieces = [" the", " N", ".", "A", ".", "S", "."]
    assert classify_one(pieces, max_attn=1) == "skip_ngram"


# --- n-grams and summaries ------------------------------------------------------------------

def test_ngram_needs_two_occurrences():
    vocab = Vocab()
    a = vocab.encode([" in", " the", " morning", " of", " the", " day"])
    b = vocab.encode([" late", " in", " the", " morning", " he"])
    c = vocab.encode([" under", " the", " sea", " we"])
    ctx = pd.DataFrame({"sample": [0, 1, 2], "pos": [1, 2, 1], "max_attn": [0, 1, 0]})
    out = P.classify_contexts(ctx, [a, b, c], vocab.decode)
    # " in the" → " morning" twice (samples 0 and 1); " under the" → " sea" once
    assert out["pattern"].tolist() == ["ngram", "ngram", "unexplained"]


def test_summary_fractions_and_counts():
    classified = pd.DataFrame({
        "component": ["1:0"] * 4 + ["1:1"] * 2,
        "pattern": ["ngram", "ngram", "dyck", "unexplained", "induction", "unexplained"],
        "key": ["a", "a", "b", "c", "d", "e"],
    })
    s = P.pattern_summary(classified).set_index("component")
    assert s.loc["1:0", "frac_ngram"] == pytest.approx(0.5)
    assert s.loc["1:0", "n_ngram"] == 1 and s.loc["1:0", "n_dyck"] == 1
    assert s.loc["1:0", "n_multigrams"] == 2
    assert s.loc["1:0", "top_pattern"] == "ngram"
    assert s.loc["1:1", "top_pattern"] == "induction"
    assert s.loc["1:1", "n_multigrams"] == 0


def test_bad_positions_raise():
    vocab = Vocab()
    seq = vocab.encode(["a", "b", "c"])
    with pytest.raises(ValueError, match="no token after"):
        P.classify_contexts(pd.DataFrame({"sample": [0], "pos": [2], "max_attn": [0]}), [seq], vocab.decode)
    with pytest.raises(ValueError, match="causal"):
        P.classify_contexts(pd.DataFrame({"sample": [0], "pos": [0], "max_attn": [1]}), [seq], vocab.decode)
