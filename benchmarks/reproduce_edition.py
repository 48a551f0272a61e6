"""Does a run's model reproduce? Train its L2 again in another process, on another core layout, and compare.

Trains L2 of the run's profile (``rllc train``, which pins the numerics itself) into a fresh run
directory, by default under ``taskset -c 0`` (the profile's threads on one core, where the run
had two cores; OpenMP's threads then wait passively), then compares it with the run's own L2:

* every checkpoint the two share, tensor by tensor, bit for bit (the count of tensors that differ);
* the final test loss of the training log (the number 00 prints);
* the score types of the last checkpoint under the project's rule (``head_types.classify`` of
  ``scores.head_scores``), and each head's previous-token and current-token shares (the measures
  whose values moved the types of a retrain on another machine).

The two runs' model identities must match (same settings, same numerics record); a retrain that
was stopped resumes. Prints what it measured; asserts nothing. Run it alone on the machine.

    python benchmarks/reproduce_edition.py runs/cpu [--cores 0] [--out runs/cpu-reproduce]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from rllc.analysis import head_types as ht
from rllc.analysis.scores import head_scores
from rllc.data import tokens as tokens_mod
from rllc.data.tokenizer import bos_id
from rllc.run import Run, open_run, resolve_path


def train(profile: str, out: Path, cores: str) -> float:
    """Train L2 into ``out`` under ``taskset -c cores``; the training loop's own seconds."""
    cmd = [sys.executable, "-m", "rllc.cli", "train", "--profile", profile, "--run-dir", str(out), "--models", "L2",
           "--quiet"]
    env = os.environ.copy()
    if cores:
        cmd = ["taskset", "-c", cores, *cmd]
        # threads that share a core should sleep, not spin, while they wait for each other: a
        # scheduling setting only (which thread sums which part is fixed by the thread count)
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    subprocess.run(cmd, check=True, env=env)
    return float(torch.load(out / "models" / "L2" / "resume.pt", weights_only=False).get("seconds", float("nan")))


def differing(a: Run, b: Run) -> tuple[int, int, list[int]]:
    """(tensors that differ, tensors compared, steps compared) over the checkpoints both hold."""
    steps = sorted(set(a.steps("L2")) & set(b.steps("L2")))
    bad = total = 0
    for s in steps:
        wa, wb = a.store("L2").load_weights(s), b.store("L2").load_weights(s)
        for name, t in wa.items():
            total += 1
            bad += int(name not in wb or not torch.equal(t, wb[name]))
    return bad, total, steps


def final_test_loss(run: Run) -> tuple[int, float]:
    log = pd.read_csv(run.store("L2").log_path)
    test = log[log["split"] == "test"].sort_values("step")
    return int(test["step"].iloc[-1]), float(test["loss"].iloc[-1])


def score_types(run: Run) -> pd.DataFrame:
    """Per head at the last checkpoint: the rule's shares and induction measure, and the score type."""
    cfg = run.cfg
    model = run.load_model("L2", "last")
    rows = head_scores(model, cfg.scores, bos=bos_id(tokens_mod.prepare(cfg).tokenizer), seed=cfg.seed,
                       text=tokens_mod.load_tokens(cfg, "test"))
    measures = ht.rule_measures(rows[["component", "score", "value"]])
    wide = measures.pivot_table(index="component", columns="score", values="value")
    return wide.join(ht.classify(rows[["component", "score", "value"]]).rename("type"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", help="the run whose L2 is retrained (e.g. the published edition's)")
    ap.add_argument("--cores", default="0", help="taskset's CPU list for the retrain ('' for no taskset)")
    ap.add_argument("--out", default="", help="the retrain's run directory (default: <run_dir>-reproduce)")
    args = ap.parse_args()
    run = open_run(args.run_dir)
    out = resolve_path(args.out) if args.out else run.path.with_name(run.path.name + "-reproduce")
    seconds = train(run.cfg.profile, out, args.cores)
    again = open_run(out)
    same_identity = (json.loads((run.path / "models" / "L2" / "identity.json").read_text())
                     == json.loads((out / "models" / "L2" / "identity.json").read_text()))
    bad, total, steps = differing(run, again)
    (step_a, loss_a), (step_b, loss_b) = final_test_loss(run), final_test_loss(again)
    types_a, types_b = score_types(run), score_types(again)
    changed = types_a.index[types_a["type"] != types_b["type"]].tolist()
    shares = pd.merge(types_a[["previous_token", "current_token"]], types_b[["previous_token", "current_token"]],
                      left_index=True, right_index=True, suffixes=("", "_again"))
    print(json.dumps({"run": str(run.path), "retrain": str(out), "taskset": args.cores or None,
                      "training_seconds": round(seconds, 1), "identity_equal": same_identity,
                      "checkpoints_compared": len(steps), "tensors_compared": total, "tensors_differing": bad,
                      "final_test_loss": {"run": [step_a, loss_a], "retrain": [step_b, loss_b]},
                      "score_types_differing": changed,
                      "score_types": types_a["type"].to_dict()}, indent=2))
    print(shares.round(6).to_string())


if __name__ == "__main__":
    main()
