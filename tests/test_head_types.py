"""The type rule (rllc.analysis.head_types) pinned on hand-made attention patterns.

A model's attention patterns are overwritten by a hook with patterns whose shares are known, and
differ between random tokens (sequences that start with BOS) and text (windows that do not); the
scores are then measured by ``scores.head_scores`` as on a real model, and typed by the rule. The
oracle is the shares written into the patterns."""

import pandas as pd
import pytest
import torch

from rllc import config
from rllc.analysis import head_types as ht
from rllc.analysis import scores
from rllc.model.build import build_model

BOS = 0
MARK = 1000.0  # the BOS embedding's first coordinate: how the hook tells random tokens from text

# head -> {data: (share to itself, to the previous token, to the first position)}; the rest of each
# row is spread evenly over the other earlier positions
SPECS = {
    0: {"random": (0.90, 0.05, 0.00), "text": (0.90, 0.05, 0.00)},  # 90% to itself on text: current-token
    1: {"random": (0.25, 0.05, 0.00), "text": (0.05, 0.10, 0.00)},  # 25% on random, elsewhere on text: not
    2: {"random": (0.52, 0.10, 0.00), "text": (0.52, 0.10, 0.00)},  # just above the majority: current-token
    3: {"random": (0.48, 0.10, 0.00), "text": (0.90, 0.05, 0.00)},  # just below on random: not systematic
    4: {"random": (0.30, 0.10, 0.50), "text": (0.30, 0.10, 0.50)},  # 0.3 raw, 0.6 of content: current-token
    5: {"random": (0.05, 0.60, 0.00), "text": (0.10, 0.70, 0.00)},  # previous-token
    6: {"random": (0.40, 0.40, 0.00), "text": (0.40, 0.40, 0.00)},  # split between the two: multigram
    7: {"random": (0.20, 0.20, 0.50), "text": (0.20, 0.20, 0.50)},  # 0.4 / 0.4 of content: multigram
}
EXPECTED = {0: ht.CURRENT_TOKEN, 1: ht.MULTIGRAM, 2: ht.CURRENT_TOKEN, 3: ht.MULTIGRAM, 4: ht.CURRENT_TOKEN,
            5: ht.PREVIOUS_TOKEN, 6: ht.MULTIGRAM, 7: ht.MULTIGRAM}


def _pattern(n: int, cur: float, prev: float, first: float) -> torch.Tensor:
    p = torch.zeros(n, n)
    p[0, 0] = 1.0
    p[1, 0], p[1, 1] = 1 - cur, cur
    for q in range(2, n):
        rest = 1 - cur - prev - first
        p[q, 0], p[q, q - 1], p[q, q] = first, prev, cur
        if q > 2:
            p[q, 1:q - 1] += rest / (q - 2)
        else:
            p[q, 0] += rest
    return p


@pytest.fixture(scope="module")
def scored():
    cfg = config.load_config("ci", {"model": {"n_heads": 8}})
    model = build_model(cfg, "L2", d_vocab=50).eval()
    with torch.no_grad():
        model.W_E[BOS] = 0.0
        model.W_E[BOS, 0] = MARK
    state = {}

    def see(embed, hook):
        state["random"] = bool((embed[:, 0, 0] == MARK).all())
        return embed

    def plant(pattern, hook):
        data = "random" if state["random"] else "text"
        n = pattern.shape[-1]
        for head, spec in SPECS.items():
            pattern[:, head] = _pattern(n, *spec[data])
        return pattern

    model.add_hook("hook_embed", see)
    model.add_hook("blocks.0.attn.hook_pattern", plant)
    sc = config.ScoreConfig(n_samples=40, min_len=16, max_len=32, induction_len=16, batch_size=20,
                            text_windows=6, text_min_pos=8)
    text = torch.randint(1, 50, (6, model.cfg.n_ctx), generator=torch.Generator().manual_seed(0))
    try:
        s = scores.head_scores(model, sc, bos=BOS, seed=0, text=text)
    finally:
        model.reset_hooks()
    return s[s["layer"] == 0]


def test_scores_measure_the_planted_shares(scored):
    v = scored.set_index(["component", "score"])["value"]
    for head, spec in SPECS.items():
        for data, suffix in (("random", ""), ("text", "_text")):
            cur, prev, first = spec[data]
            assert v[(f"0:{head}", f"current_token{suffix}")] == pytest.approx(cur, abs=1e-5)
            assert v[(f"0:{head}", f"previous_token{suffix}")] == pytest.approx(prev, abs=1e-5)
            assert v[(f"0:{head}", f"first_position{suffix}")] == pytest.approx(first, abs=1e-5)


def test_the_rule_types_the_planted_heads(scored):
    types = ht.classify(scored)
    assert types.to_dict() == {f"0:{h}": t for h, t in EXPECTED.items()}


def test_the_rule_measures_are_content_shares_and_the_smaller_over_data(scored):
    m = ht.rule_measures(scored).set_index(["component", "score"])["value"]
    assert m[("0:4", "current_token")] == pytest.approx(0.6, abs=1e-5)  # 0.3 of the 0.5 not on the first
    assert m[("0:3", "current_token")] == pytest.approx(0.48, abs=1e-5)  # random (0.48) < text (0.9)
    assert m[("0:1", "current_token")] == pytest.approx(0.05, abs=1e-5)


def test_rule_v1_and_the_alternatives_differ_where_they_should(scored):
    v1 = ht.classify(scored, "v1")
    assert v1["0:1"] == ht.CURRENT_TOKEN  # 25% to itself on random tokens cleared 0.2
    assert v1["0:6"] != ht.MULTIGRAM  # a head split 0.4 / 0.4 took one of the two types
    assert ht.classify(scored, "random tokens only")["0:3"] == ht.MULTIGRAM  # 0.48 on random
    assert ht.classify(scored, "text only")["0:3"] == ht.CURRENT_TOKEN  # 0.9 on text
    assert ht.classify(scored, "raw shares")["0:4"] == ht.MULTIGRAM  # 0.3 raw
    assert ht.classify(scored, "almost entirely")["0:2"] == ht.MULTIGRAM  # 0.52 < 0.8
    assert ht.classify(scored, "almost entirely")["0:0"] == ht.CURRENT_TOKEN


def test_the_boundaries_are_strict_majorities():
    def rows(share: float) -> pd.DataFrame:
        vals = {"previous_token": 0.1, "previous_token_text": 0.1, "current_token": share,
                "current_token_text": share, "first_position": 0.0, "first_position_text": 0.0, "induction": 0.0}
        return pd.DataFrame({"component": "0:0", "score": list(vals), "value": list(vals.values())})
    assert ht.classify(rows(0.5))["0:0"] == ht.MULTIGRAM
    assert ht.classify(rows(0.5 + 1e-6))["0:0"] == ht.CURRENT_TOKEN


def test_scores_without_text_are_refused():
    df = pd.DataFrame({"component": "0:0", "score": ["previous_token", "current_token", "first_position",
                                                     "induction"], "value": [0.6, 0.1, 0.0, 0.0]})
    with pytest.raises(ValueError, match="previous_token_text"):
        ht.classify(df)
    assert ht.classify(df, "random tokens only").item() == ht.PREVIOUS_TOKEN


def test_fragile_heads_are_those_within_their_own_spread_of_a_threshold():
    """Two heads whose previous-token share wobbles by 0.02 over the last checkpoints: one ends at
    0.51 (0.01 above the 0.5 threshold: fragile), one at 0.90 (settled)."""
    rows = []
    for step, wobble in zip(range(100, 600, 100), (0.02, -0.02, 0.02, -0.02, 0.0), strict=True):
        for c, share in (("0:0", 0.51), ("0:1", 0.90)):
            for score in ("previous_token", "previous_token_text"):
                rows.append({"step": step, "layer": 0, "component": c, "score": score, "value": share + wobble})
            for score in ("current_token", "current_token_text", "first_position", "first_position_text",
                          "induction"):
                rows.append({"step": step, "layer": 0, "component": c, "score": score, "value": 0.0})
    out = ht.fragile_heads(pd.DataFrame(rows)).set_index(["component", "score"])
    assert out.loc[("0:0", "previous_token"), "fragile"] and not out.loc[("0:1", "previous_token"), "fragile"]
    assert out.loc[("0:0", "previous_token"), "value"] == pytest.approx(0.51)
    assert out.loc[("0:0", "previous_token"), "sd"] == pytest.approx(0.02)
