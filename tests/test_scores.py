import pandas as pd
import pytest
import torch

from rllc import config
from rllc.analysis import head_types, interventions, scores
from rllc.model.build import build_model


@pytest.fixture(scope="module")
def l2():
    cfg = config.load_config("ci")
    return build_model(cfg, "L2", d_vocab=100)


def _force_patterns(model, kinds: dict[int, str], layer: int):
    """Hook that overwrites head patterns with an exact previous-/current-token or induction pattern."""
    def hook(pattern, hook):
        q = pattern.shape[-2]
        for head, kind in kinds.items():
            p = torch.zeros(q, q)
            if kind == "previous":
                p[0, 0] = 1
                p[torch.arange(1, q), torch.arange(0, q - 1)] = 1
            elif kind == "current":
                p = torch.eye(q)
            elif kind == "induction":
                # sequences are BOS + r + r with |r| = T = (q - 1) / 2
                T = (q - 1) // 2
                p = torch.eye(q)
                for qi in range(1 + T, q):
                    p[qi] = 0
                    p[qi, qi - T + 1] = 1
            pattern[:, head] = p
        return pattern
    model.add_hook(f"blocks.{layer}.attn.hook_pattern", hook)


def test_scores_recover_planted_patterns(l2):
    cfg = config.ScoreConfig(n_samples=20, min_len=8, max_len=24, induction_len=10, batch_size=7)
    try:
        _force_patterns(l2, {0: "previous", 1: "current"}, layer=0)
        _force_patterns(l2, {2: "induction"}, layer=1)
        s = scores.head_scores(l2, cfg, bos=0, seed=3)
    finally:
        l2.reset_hooks()
    v = s.set_index(["component", "score"])["value"]
    assert v[("0:0", "previous_token")] == pytest.approx(1.0)
    assert v[("0:0", "current_token")] == pytest.approx(0.0)
    assert v[("0:1", "current_token")] == pytest.approx(1.0)
    assert v[("0:1", "previous_token")] == pytest.approx(0.0)
    assert v[("1:2", "induction")] == pytest.approx(1.0)
    assert v[("1:2", "previous_token")] < 0.5
    untouched = s[~s["component"].isin(["0:0", "0:1", "1:2"])]
    assert (untouched["value"] < 0.5).all()  # a random-init head attends diffusely


def test_scores_are_deterministic_and_tidy(l2):
    cfg = config.ScoreConfig(n_samples=16, min_len=8, max_len=16, induction_len=8, batch_size=16)
    a, b = scores.head_scores(l2, cfg, seed=1), scores.head_scores(l2, cfg, seed=1)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 2 * 4 * 4 and set(a["score"]) == {*head_types.SCORE_TYPES, "first_position"}


def test_score_sequences_must_fit_the_context(l2):
    with pytest.raises(ValueError, match="n_ctx"):
        scores.head_scores(l2, config.ScoreConfig(n_samples=2, induction_len=64, max_len=16), seed=0)


def test_random_sequences_never_contain_bos_after_the_first_token():
    seqs = scores.random_sequences(50, 30, d_vocab=5, bos=2, seed=0)
    assert (seqs[:, 0] == 2).all() and not (seqs[:, 1:] == 2).any()
    assert set(seqs[:, 1:].unique().tolist()) == {0, 1, 3, 4}


def test_icl_positions_scale_with_context():
    cfg = config.ScoreConfig()
    assert scores.icl_positions(1024, cfg) == (50, 500)
    assert scores.icl_positions(128, cfg) == (6, 62)


def test_icl_score_is_late_minus_early_loss(l2):
    cfg = config.ScoreConfig(icl_batches=1, batch_size=4)
    tokens = torch.randint(0, 100, (4, l2.cfg.n_ctx), generator=torch.Generator().manual_seed(0))
    losses = interventions.per_token_loss(l2, tokens, 4)
    early, late = scores.icl_positions(l2.cfg.n_ctx, cfg)
    assert scores.icl_score(l2, tokens, cfg) == pytest.approx(float(losses[late] - losses[early]))
    wide = config.ScoreConfig(icl_batches=1, batch_size=4, icl_halfwidth=2)
    expected = losses[late - 2:late + 3].mean() - losses[early - 2:early + 3].mean()
    assert scores.icl_score(l2, tokens, wide) == pytest.approx(float(expected))


def test_classification_by_thresholds():
    rows = [("0:0", "previous_token", 0.6), ("0:0", "current_token", 0.1), ("0:0", "induction", 0.0),
            ("0:1", "previous_token", 0.05), ("0:1", "current_token", 0.05), ("0:1", "induction", 0.02),
            ("1:0", "previous_token", 0.3), ("1:0", "current_token", 0.0), ("1:0", "induction", 0.7)]
    df = pd.DataFrame(rows, columns=["component", "score", "value"])
    types = head_types.classify_by_scores(df, {"previous_token": 0.2, "current_token": 0.2, "induction": 0.2})
    assert types.to_dict() == {"0:0": "previous-token", "0:1": "multigram", "1:0": "induction"}
