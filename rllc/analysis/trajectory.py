"""Behaviour over training: head scores and ICL score at every checkpoint of a run, cached.

The cache is keyed by the score settings, the token data, the seed and ``SCORES_VERSION`` (bump
it when a change to ``rllc.analysis.scores`` alters the numbers), and filled by checkpoint step; a
computation killed midway keeps what it finished
(each checkpoint's rows are appended and the table rewritten atomically).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..config import config_hash
from ..data import tokens as tokens_mod
from ..data.tokenizer import bos_id
from ..io import write_table
from ..run import Run
from .scores import SCORES_VERSION, head_scores, icl_score, per_head_icl


def behaviour_over_training(run: Run, name: str = "L2", steps: list[int] | None = None, progress: bool = True,
                            icl: bool = True) -> pd.DataFrame:
    """Tidy rows (model, step, component, score, value) for the previous-token, current-token and
    induction scores of every head, plus component "model" / score "icl" for the ICL score (unless
    ``icl`` is False: it costs as much as all head scores together; cached apart)."""
    cfg = run.cfg
    key = config_hash({"scores": cfg.scores, "tokens": tokens_mod.tokens_key(cfg), "seed": cfg.seed,
                       "version": SCORES_VERSION, **({} if icl else {"icl": False})})
    path = run.tables / f"behaviour_{name}_{key}.parquet"
    state: dict = {}

    def compute(step: int) -> pd.DataFrame:
        if not state:  # data for the scores, loaded only when a checkpoint is missing
            state["bos"] = bos_id(tokens_mod.prepare(cfg).tokenizer)
            state["test"] = tokens_mod.load_tokens(cfg, "test")
        model = run.load_model(name, step)
        part = head_scores(model, cfg.scores, bos=state["bos"], seed=cfg.seed, text=state["test"])
        if icl:
            part = pd.concat([part, pd.DataFrame([{"layer": -1, "head": -1, "component": "model", "score": "icl",
                                                   "value": icl_score(model, state["test"], cfg.scores)}])],
                             ignore_index=True)
        part.insert(0, "step", step)
        part.insert(0, "model", name)
        return part

    out = cached_by_step(path, steps or run.steps(name), compute, f"scores {name}", progress)
    return out.sort_values(["step", "score", "component"]).reset_index(drop=True)


def icl_per_head_over_training(run: Run, heads: list[str], name: str = "L2", steps: list[int] | None = None,
                               progress: bool = True) -> pd.DataFrame:
    """``scores.per_head_icl`` of ``heads`` (each with the others mean-ablated, each ablated, and
    the model) at every checkpoint: rows (step, component, variant, value), cached by step and
    keyed like ``behaviour_over_training`` plus the heads followed."""
    cfg = run.cfg
    key = config_hash({"scores": cfg.scores, "tokens": tokens_mod.tokens_key(cfg), "heads": sorted(heads),
                       "version": SCORES_VERSION})
    path = run.tables / f"icl_heads_{name}_{key}.parquet"
    state: dict = {}

    def compute(step: int) -> pd.DataFrame:
        if not state:
            state["test"] = tokens_mod.load_tokens(cfg, "test")
        part = per_head_icl(run.load_model(name, step), state["test"], cfg.scores, heads)
        part.insert(0, "step", step)
        return part

    out = cached_by_step(path, steps or run.steps(name), compute, f"per-head ICL {name}", progress)
    return out.sort_values(["step", "component", "variant"]).reset_index(drop=True)


def cached_by_step(path: Path, steps: list[int], compute: Callable[[int], pd.DataFrame], desc: str,
                   progress: bool = True) -> pd.DataFrame:
    """Rows of ``steps`` from the table cached at ``path`` (a ``step`` column), computing the
    missing checkpoints with ``compute(step)`` one by one and rewriting the cache atomically after
    each, so a computation killed midway keeps what it finished."""
    done = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    have = set(done["step"]) if len(done) else set()
    parts = [done] if len(done) else []
    for step in tqdm([s for s in steps if s not in have], desc=desc, disable=not progress):
        parts.append(compute(step))
        done = pd.concat(parts, ignore_index=True)
        write_table(done, path)
    return done[done["step"].isin(set(steps))]
