"""Two runs' registered tables side by side: which are equal, which differ and where.

Used to check that a refactor left the numbers alone, and to see what a rerun changed. Columns
that measure time or carry provenance are ignored; numbers are compared to a tolerance, row
order is normalised by sorting on the shared columns.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .tables import TABLES, path

IGNORED = ("seconds", "minutes", "train minutes", "key", "estimator_version")


def _normalise(df: pd.DataFrame, ignore: tuple[str, ...]) -> pd.DataFrame:
    df = df.drop(columns=[c for c in df.columns if c in ignore])
    df = df[sorted(df.columns)]
    return df.sort_values(list(df.columns), kind="stable", na_position="last").reset_index(drop=True)


def compare_table(a: pd.DataFrame, b: pd.DataFrame, atol: float = 1e-6, rtol: float = 1e-6,
                  ignore: tuple[str, ...] = IGNORED) -> str:
    """"equal", or a short description of the first difference."""
    a, b = _normalise(a, ignore), _normalise(b, ignore)
    if list(a.columns) != list(b.columns):
        return f"columns differ: only in a {sorted(set(a) - set(b))}, only in b {sorted(set(b) - set(a))}"
    if len(a) != len(b):
        return f"{len(a)} rows vs {len(b)}"
    for col in a.columns:
        x, y = a[col], b[col]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            xv, yv = x.to_numpy(dtype=float), y.to_numpy(dtype=float)
            bad = ~(np.isclose(xv, yv, atol=atol, rtol=rtol, equal_nan=True))
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                return f"{col}: {int(bad.sum())} values differ (e.g. {xv[i]!r} vs {yv[i]!r}; max |Δ| " \
                       f"{float(np.nanmax(np.abs(xv - yv))):.3g})"
        elif not x.astype(str).equals(y.astype(str)):
            i = int(np.flatnonzero(x.astype(str).to_numpy() != y.astype(str).to_numpy())[0])
            return f"{col}: values differ (e.g. {x.iloc[i]!r} vs {y.iloc[i]!r})"
    return "equal"


def compare_runs(run_a: str | Path, run_b: str | Path, atol: float = 1e-6, rtol: float = 1e-6) -> pd.DataFrame:
    """One row per registered table: present in a / b, and ``equal`` or the first difference."""
    rows = []
    for name in TABLES:
        pa, pb = path(run_a, name), path(run_b, name)
        if not (pa.exists() and pb.exists()):
            rows.append({"table": name, "in_a": pa.exists(), "in_b": pb.exists(), "result": "missing"})
            continue
        read = pd.read_parquet if pa.suffix == ".parquet" else pd.read_csv
        rows.append({"table": name, "in_a": True, "in_b": True,
                     "result": compare_table(read(pa), read(pb), atol, rtol)})
    return pd.DataFrame(rows)
