"""The multigram-circuit measures on synthetic curves: turnaround, coupling, relative gaps, and
claims 6 and 7 on tables written by hand."""

import numpy as np
import pandas as pd
import pytest

from rllc.analysis import composition, refinement
from rllc.analysis.stages import stage_of
from rllc.report import claims, tables

STEPS = np.array([0, 100, 200, 400, 800, 1600, 3200, 6400, 12800])
STAGES = pd.DataFrame({"stage": ["LM1", "LM2", "LM3"], "start": [0, 400, 3200], "end": [400, 3200, 12800]})


def curves(shape, pairs):
    rows = []
    for src, dst in pairs:
        for s, v in zip(STEPS, shape(src, dst), strict=True):
            rows.append({"step": int(s), "src": src, "dst": dst, "score": float(v)})
    return pd.DataFrame(rows)


def test_turnaround_finds_interior_minima_and_rejects_monotone_curves():
    pairs = [("0:0", "1:0"), ("0:0", "1:1")]
    u = curves(lambda s, d: [0.06, 0.06, 0.05, 0.04, 0.02, 0.015, 0.03, 0.05, 0.06], pairs)
    t = composition.turnaround(u, min_step=100, sigma=0)
    assert t["turns"].all() and (t["min_step"] == 1600).all()
    assert t["fall"].iloc[0] == pytest.approx(0.045) and t["recovery"].iloc[0] == pytest.approx(0.045)
    down = curves(lambda s, d: np.linspace(0.06, 0.01, len(STEPS)), pairs)
    assert not composition.turnaround(down, min_step=100, sigma=0)["turns"].any()
    small = curves(lambda s, d: [0.06, 0.06, 0.05, 0.04, 0.02, 0.015, 0.016, 0.017, 0.018], pairs)
    assert not composition.turnaround(small, min_step=100, sigma=0, recovery_fraction=0.2)["turns"].any()


def test_coupling_tells_senders_from_receivers():
    pairs = [(f"0:{a}", f"1:{b}") for a in range(3) for b in range(4)]
    by_sender = curves(lambda s, d: np.full(len(STEPS), 0.02 * (1 + int(s[2]))), pairs)
    c = composition.coupling(by_sender, from_step=1600)
    assert c["across_receivers"] == 0 and c["ratio"] == 0
    by_receiver = curves(lambda s, d: np.full(len(STEPS), 0.02 * (1 + int(d[2]))), pairs)
    assert composition.coupling(by_receiver, from_step=1600)["ratio"] == np.inf or \
        np.isnan(composition.coupling(by_receiver, from_step=1600)["ratio"])
    with pytest.raises(ValueError, match="no composition scores"):
        composition.coupling(by_sender, from_step=10**6)


def test_relative_gap_before_and_after_a_boundary():
    rows = []
    for comp, late_gap in (("0:0", 0.5), ("1:0", 0.1)):
        for s in STEPS[1:]:
            wr = 1.0
            dr = wr * (1 - (late_gap if s >= 1600 else 0.05))
            rows += [{"component": comp, "step": int(s), "data": "train", "llc_mean": wr},
                     {"component": comp, "step": int(s), "data": "model:L1", "llc_mean": dr}]
    gaps = refinement.relative_gap(pd.DataFrame(rows), "model:L1")
    assert gaps["gap"].between(0.05 - 1e-9, 0.5 + 1e-9).all()
    by = refinement.gap_before_after(gaps, 1600, {"a": ["0:0"], "b": ["1:0"]}).set_index("group")
    assert by.loc["a", "increase"] == pytest.approx(0.45) and by.loc["b", "increase"] == pytest.approx(0.05)


def test_stage_lookup():
    assert stage_of(STAGES, 100) == "LM1" and stage_of(STAGES, 400) == "LM2" and stage_of(STAGES, 12800) == "LM3"


def _write(run, name, df):
    tables.write(run, name, df)


def test_claims_6_and_7_pass_fail_and_undefined(tmp_path):
    gap = pd.DataFrame({"group": ["all", "named", "layer-1 multigram"], "n_heads": [16, 10, 6], "boundary": 1600,
                        "gap_before": [0.0, 0.0, 0.0], "gap_after": [0.2, 0.3, 0.1], "candidates": False})
    gap["increase"] = gap["gap_after"] - gap["gap_before"]
    _write(tmp_path, "l1_gap_by_type", gap)
    turn = pd.DataFrame({"src": ["0:0"] * 3, "dst": ["1:0", "1:1", "1:2"], "start": 0.06,
                         "min_step": [6400, 6400, 3200], "min_value": 0.02, "end": 0.05, "fall": 0.04,
                         "recovery": 0.03, "turns": [True, True, True],
                         "stage": ["LM3", "LM3", "LM2"], "candidates": False})
    _write(tmp_path, "composition_turnaround", turn)
    _write(tmp_path, "composition_coupling", pd.DataFrame({"from_step": [4000], "across_receivers": [0.001],
                                                           "across_senders": [0.01], "ratio": [0.1],
                                                           "candidates": [False]}))
    status = claims.scorecard(tmp_path).set_index("notebook")["status"]
    assert (status["04_multigram_circuit"] == claims.PASS).all()

    _write(tmp_path, "l1_gap_by_type", gap.assign(gap_after=[0.2, 0.05, 0.1], increase=[0.2, 0.05, 0.1]))
    # no two adjacent stages hold two thirds of the minima
    _write(tmp_path, "composition_turnaround", turn.assign(stage=["LM1", "LM3", "LM5"]))
    card = claims.scorecard(tmp_path).set_index("notebook")
    assert (card.loc["04_multigram_circuit", "status"] == claims.FAIL).all()

    _write(tmp_path, "composition_turnaround", turn.assign(candidates=True))
    card = claims.scorecard(tmp_path)
    row = card[card["claim"].str.startswith("7.")].iloc[0]
    assert row["status"] == claims.UNDEFINED and "candidates" in row["value"]


def _head_table(types: dict[str, str], top: dict[str, str] | None = None, ngram: dict[str, float] | None = None,
                dyck: dict[str, float] | None = None) -> pd.DataFrame:
    heads = list(types)
    return pd.DataFrame({"component": heads, "type": [types[h] for h in heads],
                         "top_pattern": [(top or {}).get(h, "skip_ngram") for h in heads],
                         "frac_ngram": [(ngram or {}).get(h, 0.0) for h in heads],
                         "frac_dyck": [(dyck or {}).get(h, 0.0) for h in heads],
                         "induction": [0.0] * len(heads)})


def test_the_circuit_heads_and_their_fallbacks():
    from rllc.analysis import focus
    from rllc.analysis import head_types as ht

    t = {"0:0": ht.PREVIOUS_TOKEN, "0:1": ht.MULTIGRAM, "0:2": ht.DYCK, "1:0": ht.INDUCTION, "1:1": ht.MULTIGRAM,
         "1:2": ht.DYCK}
    f = focus.circuit_focus(_head_table(t))
    assert (f.l0_multigram, f.l0_candidates, f.l1_multigram, f.dyck, f.dyck_candidate) == (
        ["0:1", "0:2"], False, ["1:1", "1:2"], ["1:2"], False)  # Dyck heads are multigram heads (Table 1)
    # no layer-0 multigram head: the non-previous-token heads whose top pattern is an n-gram ...
    t0 = {**t, "0:1": ht.CURRENT_TOKEN, "0:2": ht.CURRENT_TOKEN, "0:3": ht.CURRENT_TOKEN, "1:2": ht.MULTIGRAM}
    f = focus.circuit_focus(_head_table(t0, top={"0:0": "ngram", "0:3": "ngram"}, dyck={"1:0": 0.3, "1:1": 0.5}))
    assert (f.l0_multigram, f.l0_candidates, f.dyck, f.dyck_candidate) == (["0:3"], True, ["1:1"], True)
    # ... else the two of largest n-gram fraction
    f = focus.circuit_focus(_head_table(t0, ngram={"0:0": 0.9, "0:1": 0.2, "0:2": 0.5, "0:3": 0.4}))
    assert f.l0_multigram == ["0:2", "0:3"] and f.l0_candidates


def test_the_induction_heads_and_their_candidates():
    from rllc.analysis import focus
    from rllc.analysis import head_types as ht

    types = pd.Series({"0:0": ht.MULTIGRAM, "1:0": ht.INDUCTION, "1:1": ht.MULTIGRAM, "1:2": ht.DYCK})
    scores = pd.DataFrame({"component": list(types.index), "induction": [0.9, 0.5, 0.4, 0.1]})
    f = focus.induction_focus(types, scores)
    assert (f.induction, f.multigram, f.candidates) == (["1:0"], ["0:0", "1:1", "1:2"], False)
    f = focus.induction_focus(types.replace(ht.INDUCTION, ht.MULTIGRAM), scores)  # none: layer 1's top two
    assert (f.induction, f.multigram, f.candidates) == (["1:0", "1:1"], ["0:0", "1:2"], True)


def test_path_patching_over_training_is_cached_by_checkpoint(tmp_path, monkeypatch):
    import torch

    from rllc.analysis import patching
    from rllc.config import load_config
    from rllc.data.brackets import BracketSet
    from rllc.run import Run
    from tests._models import markov_data, tiny_model

    models = {s: tiny_model(seed=s) for s in (0, 10, 20)}
    calls = []

    def fake_load(self, name, step):
        calls.append(step)
        return models[step]

    monkeypatch.setattr(Run, "load_model", fake_load)
    run = Run(tmp_path, load_config("ci"))
    tokens = markov_data(6, seed=1)
    closing = torch.zeros(6, 15, dtype=torch.bool)
    closing[:, 5::4] = True
    sets = {"nested": BracketSet("nested", tokens, torch.zeros_like(tokens), closing, 1, 2, 0.0)}
    first = patching.path_patching_over_training(run, sets, ["0:0"], ["1:1"], [0, 10], batch_size=4, progress=False)
    again = patching.path_patching_over_training(run, sets, ["0:0"], ["1:1"], [0, 10, 20], batch_size=4,
                                                 progress=False)
    assert calls == [0, 10, 20]  # 0 and 10 came from the cache the second time
    pd.testing.assert_frame_equal(first, again[again["step"] < 20].reset_index(drop=True))
    direct = patching.path_patching_at(models[20], sets, ["0:0"], ["1:1"], batch_size=4)
    pd.testing.assert_frame_equal(again[again["step"] == 20].drop(columns="step").reset_index(drop=True), direct)
    assert set(again["condition"]) == {"clean", "receiver_ablated", "path_patched"}
