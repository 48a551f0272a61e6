"""The bracket sets: balanced, depth 1 against depth 2, and otherwise the same tokens."""

import pytest
import torch

from rllc.data import brackets
from rllc.data.tokenizer import train_tokenizer

TEXTS = ["the plan ( said the report ) over the road .", "a ( b ( c ) d ) e .", "def f ( x ) : return ( x )"] * 50


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(TEXTS + [" ".join(brackets.WORDS)] * 5, vocab_size=300)


def test_variants_differ_only_in_where_the_brackets_stand(tok):
    sets = {v: brackets.bracket_set(tok, v, n=6, length=80, seed=3) for v in brackets.VARIANTS}
    flat, nest = sets["unnested"], sets["nested"]
    assert flat.tokens.shape == nest.tokens.shape == (6, 80)
    is_bracket = (flat.tokens == flat.open_id) | (flat.tokens == flat.close_id)
    for row in range(6):  # the same words in the same order once the brackets are removed
        a = flat.tokens[row][~is_bracket[row]]
        nb = (nest.tokens[row] == nest.open_id) | (nest.tokens[row] == nest.close_id)
        b = nest.tokens[row][~nb]
        n = min(len(a), len(b))
        assert torch.equal(a[:n], b[:n])
        assert int(is_bracket[row].sum()) - int(nb.sum()) in (-1, 0, 1)  # a window may cut one bracket
    assert not torch.equal(flat.tokens, nest.tokens)


def test_balanced_with_the_stated_depths(tok):
    for variant, deepest in (("unnested", 1), ("nested", 2)):
        s = brackets.bracket_set(tok, variant, n=4, length=120, seed=1)
        assert int(s.depth.min()) == 0 and int(s.depth.max()) == deepest
        # every closing bracket closes an open one: depth never negative, back to 0 after each group
        stops = s.tokens == tok.encode(brackets.STOP, add_special_tokens=False).ids[0]
        assert (s.depth[stops] == 0).all()
        assert torch.equal(s.closing, s.tokens[:, 1:] == s.close_id)
        assert int(s.closing.sum()) > 0 and 0.0 <= s.merged_in_text <= 1.0


def test_same_seed_same_windows_and_bad_variant(tok):
    a = brackets.bracket_set(tok, "nested", n=2, length=40, seed=5)
    b = brackets.bracket_set(tok, "nested", n=2, length=40, seed=5)
    assert torch.equal(a.tokens, b.tokens)
    with pytest.raises(ValueError, match="unknown variant"):
        brackets.bracket_set(tok, "deep", n=1, length=10)
