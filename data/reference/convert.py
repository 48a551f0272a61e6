"""Convert the authors' published curves (timaeus-research/icl, branch stan/ED, analysis/language/)
into the plain CSV files beside this script. Run once, by hand, on a checkout of that repository:

    python data/reference/convert.py /path/to/icl/analysis/language

Pickles are read with a restricted unpickler that admits only numpy arrays, numpy scalars and
builtin containers (anything else raises), so no code from the pickles runs. Nothing in the rllc
package or its tests reads a pickle: they read the CSV files this writes.
"""

from __future__ import annotations

import csv
import io
import pickle
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("collections", "OrderedDict"), ("collections", "defaultdict"),
}


class _Restricted(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 (pickle's own signature)
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"refused {module}.{name}: only numpy arrays and builtin containers")
        return super().find_class(module, name)


def load(path: Path):  # noqa: ANN201 (whatever the pickle holds)
    return _Restricted(io.BytesIO(path.read_bytes())).load()


def _wandb(path: Path) -> dict[int, float]:
    """A W&B export (columns Step, value, value__MIN, value__MAX; one run, so all three agree)."""
    with path.open() as f:
        rows = list(csv.reader(f))[1:]
    return {int(r[0]): float(r[1]) for r in rows}


def _write(name: str, header: list[str], rows: list[list]) -> None:
    with (HERE / name).open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([f"{v:.6g}" if isinstance(v, float) else v for v in r])
    print(f"{name}: {len(rows)} rows")


STEPS = list(range(0, 50_001, 100))  # the pickles' checkpoints: every 100 steps to 50k (501)


def convert(src: Path) -> None:
    for model in ("L2", "L1"):
        mean, std = _wandb(src / f"{model}-llc-mean.csv"), _wandb(src / f"{model}-llc-std.csv")
        _write(f"{model.lower()}_llc.csv", ["step", "llc_mean", "llc_std"],
               [[s, mean[s], std[s]] for s in sorted(mean) if s in std])
    icl = _wandb(src / "L2-icl-score.csv")
    loss = [float(v) for v in load(src / "lm_test_loss.pkl")]
    _write("l2_losses.csv", ["step", "test_loss", "icl_score"],
           [[s, loss[i], icl.get(s, float("nan"))] for i, s in enumerate(STEPS)])
    prefix, prev = np.asarray(load(src / "L2-prefix-scores.pkl")), np.asarray(load(src / "L2-prev-scores.pkl"))
    heads = [f"{layer}:{h}" for layer in range(2) for h in range(8)]
    rows = []
    for i, s in enumerate(STEPS):
        rows += [[s, c, float(prefix[i, int(c[0]), int(c[2])]), float(prev[i, int(c[0]), int(c[2])])] for c in heads]
    _write("l2_head_scores.csv", ["step", "component", "prefix_score", "previous_token_score"], rows)
    kcomp = load(src / "L2-k-comp-scores.pkl")  # (layer-0 head, layer-1 head) -> one value per checkpoint
    pairs = sorted(kcomp)
    _write("l2_k_composition.csv", ["step", *[f"0:{a}->1:{b}" for a, b in pairs]],
           [[s, *[float(kcomp[p][i]) for p in pairs]] for i, s in enumerate(STEPS)])


if __name__ == "__main__":
    convert(Path(sys.argv[1]))
