"""Behaviour over training: head scores and ICL score at every checkpoint of a run, cached.

The cache is keyed by the score settings, the token data, the seed and ``SCORES_VERSION`` (bump
it when a change to ``rllc.analysis.scores`` alters the numbers), and filled by checkpoint step; a
computation killed midway keeps what it finished
(each checkpoint's rows are appended and the table rewritten atomically).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from ..config import Config, config_hash
from ..data import tokens as data_mod
from ..data.tokenizer import bos_id
from ..io import write_table
from ..run import checkpoint_steps, load_model
from .scores import SCORES_VERSION, head_scores, icl_score


def behaviour_over_training(cfg: Config, run_dir: str | Path, name: str = "L2",
                            steps: list[int] | None = None, progress: bool = True) -> pd.DataFrame:
    """Tidy rows (model, step, component, score, value) for the previous-token, current-token and
    induction scores of every head, plus component "model" / score "icl" for the ICL score."""
    run = Path(run_dir)
    key = config_hash({"scores": cfg.scores, "tokens": data_mod.tokens_key(cfg), "seed": cfg.seed,
                       "version": SCORES_VERSION})
    path = run / "tables" / f"behaviour_{name}_{key}.parquet"
    done = pd.read_parquet(path) if path.exists() else pd.DataFrame()
    have = set(done["step"]) if len(done) else set()
    todo = [s for s in (steps or checkpoint_steps(run, name)) if s not in have]
    if todo:
        prepared = data_mod.prepare(cfg)
        bos = bos_id(prepared.tokenizer)
        test = data_mod.load_tokens(cfg, "test")
        parts = [done] if len(done) else []
        for step in tqdm(todo, desc=f"scores {name}", disable=not progress):
            model = load_model(run, name, step)
            sc = head_scores(model, cfg.scores, bos=bos, seed=cfg.seed)
            icl = pd.DataFrame([{"layer": -1, "head": -1, "component": "model", "score": "icl",
                                 "value": icl_score(model, test, cfg.scores)}])
            part = pd.concat([sc, icl], ignore_index=True)
            part.insert(0, "step", step)
            part.insert(0, "model", name)
            parts.append(part)
            done = pd.concat(parts, ignore_index=True)
            write_table(done, path)
    wanted = set(steps) if steps else None
    out = done if wanted is None else done[done["step"].isin(wanted)]
    return out.sort_values(["step", "score", "component"]).reset_index(drop=True)
