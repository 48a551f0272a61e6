"""How long ``collect`` takes to assemble a large grid's tables from its records.

Writes ``--records`` synthetic records shaped like the paper profile's (4 chains x (burn-in 20 +
200 draws) steps, 16 heads + full model x 107 checkpoints x distributions) into a temporary run
directory, then times ``rllc.estimate.records.collect``: reading every record, the estimates,
chains and traces tables, and writing them; and, for comparison, the traces table built the plain
way (one DataFrame per chain, as collect did before). Prints seconds, rows and the ratio;
asserts nothing.

    python benchmarks/collect_scale.py --records 15000
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from rllc.config import load_config
from rllc.estimate import records as store
from rllc.io import write_json
from rllc.run import Run


def synthetic_record(i: int, rng: np.random.Generator, chains: int, steps: int) -> dict:
    components = ["full", *[f"{layer}:{h}" for layer in (0, 1) for h in range(8)]]
    comp, rest = components[i % 17], i // 17
    step, data = (rest % 107) * 500, ("train", "python_tests", "rust_stdlib")[(rest // 107) % 3]
    per_chain = rng.normal(20, 2, chains).tolist()
    return {"key": f"{i:016x}", "model": "L2", "step": step, "component": comp, "data": data,
            "mean": float(np.mean(per_chain)), "std": 2.0, "sem": 1.0, "se_kind": "synthetic", "n_ok": chains,
            "per_chain": per_chain, "flags": [[] for _ in range(chains)], "init_loss": 3.0, "n_weights": 1000,
            "seconds": 1.0, "settings": {"chains": chains, "draws": steps - 20, "burnin": 20},
            "estimator_version": 3, "traces": rng.normal(3, 0.1, (chains, steps)).round(5).tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=15000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--steps", type=int, default=220)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), load_config("ci"))  # records alone: no models, no config.yaml read
        start = time.perf_counter()
        for i in range(args.records):
            write_json(store.records_dir(run) / f"{i:016x}.json", synthetic_record(i, rng, args.chains, args.steps))
        written = time.perf_counter() - start
        start = time.perf_counter()
        table = store.collect(run)
        seconds = time.perf_counter() - start
        traces = len(pd.read_parquet(run.tables / "llc_traces.parquet", columns=["loss"]))
        records = store.load_records(run)
        start = time.perf_counter()
        store._traces_table(records)
        vectorised = time.perf_counter() - start
        start = time.perf_counter()
        pd.concat([pd.DataFrame({"key": r["key"], "model": r["model"], "step": r["step"], "component": r["component"],
                                 "data": r["data"], "chain": c, "sgld_step": np.arange(len(t)), "loss": t})
                   for r in records for c, t in enumerate(np.asarray(r["traces"]))], ignore_index=True)
        plain = time.perf_counter() - start
    print(json.dumps({"records": args.records, "trace_rows": traces, "estimate_rows": len(table),
                      "write_records_s": round(written, 1), "collect_s": round(seconds, 1),
                      "traces_table_s": round(vectorised, 2), "traces_one_frame_per_chain_s": round(plain, 2),
                      "ratio": round(plain / vectorised, 1)}, indent=2))


if __name__ == "__main__":
    main()
