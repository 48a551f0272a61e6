"""The scale study's bookkeeping (benchmarks/scale_study.py): settings, row keys, the results file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

from rllc import paths
from rllc.config import load_config
from rllc.run import identity


@pytest.fixture(scope="module")
def study():
    path = paths.REPO_ROOT / "benchmarks" / "scale_study.py"
    spec = importlib.util.spec_from_file_location("scale_study", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_base_is_the_cpu_model_and_each_setting_changes_only_its_factor(study) -> None:
    cpu = load_config("cpu")
    base = study.study_config("base")
    # the base setting trains the cpu profile's L2 (same weights: length is not part of the identity)
    assert identity(base, "L2") == identity(cpu, "L2")
    assert base.train.steps["L2"] == max(study.LENGTHS) and 36_000 in base.checkpoint_steps("L2")
    assert set(study.LENGTHS) <= set(base.checkpoint_steps("L2"))
    changed = {}
    for name in study.SETTINGS:
        cfg = study.study_config(name)
        differs = {k for k in ("tokenizer", "model", "corpus") if getattr(cfg, k) != getattr(base, k)}
        changed[name] = differs
        assert (identity(cfg, "L2") == identity(base, "L2")) == (name == "base"), name
    assert changed == {"base": set(), "vocab1024": {"tokenizer"}, "heads4x32": {"model"}, "d256": {"model"},
                       "prose": {"corpus"}}
    assert study.study_config("vocab1024").tokenizer.vocab_size == 1024
    assert study.study_config("d256").model.d_model == 256 == 8 * study.study_config("d256").model.d_head


def test_row_keys_change_with_setting_length_and_code_version(study, monkeypatch) -> None:
    cfg = study.study_config("base")
    key = study.row_key(cfg, "base", 12_000)
    assert key == study.row_key(study.study_config("base"), "base", 12_000)
    assert key != study.row_key(cfg, "base", 24_000)
    assert key != study.row_key(study.study_config("vocab1024"), "vocab1024", 12_000)
    # the run's own seed keeps the key rows had before seeds were a column; another seed changes it
    assert key == study.row_key(cfg, "base", 12_000, cfg.seed)
    assert len({key, study.row_key(cfg, "base", 12_000, 2), study.row_key(cfg, "base", 12_000, 3)}) == 3
    monkeypatch.setattr(study, "STUDY_VERSION", study.STUDY_VERSION + 1)
    assert key != study.row_key(cfg, "base", 12_000)
    monkeypatch.setattr(study, "ESTIMATOR_VERSION", study.ESTIMATOR_VERSION + 1)
    assert key != study.row_key(cfg, "base", 12_000)


def test_rows_are_replaced_per_setting_length_and_seed_and_done_checks_the_key(study, tmp_path: Path) -> None:
    path = tmp_path / "scale-study.csv"
    cfg = study.study_config("base")
    own = cfg.seed
    assert not study.done(cfg, "base", 12_000, path=path)
    study.write_row({"setting": "base", "length": 12_000, "seed": own, "key": study.row_key(cfg, "base", 12_000),
                     "stages": 3}, path)
    study.write_row({"setting": "base", "length": 24_000, "seed": own, "key": "other", "stages": 4}, path)
    study.write_row({"setting": "base", "length": 12_000, "seed": 2, "key": study.row_key(cfg, "base", 12_000, 2),
                     "stages": 6}, path)
    study.write_row({"setting": "base", "length": 12_000, "seed": own, "key": study.row_key(cfg, "base", 12_000),
                     "stages": 5}, path)
    rows = pd.read_csv(path)
    assert len(rows) == 3
    assert rows.set_index(["length", "seed"]).loc[(12_000, own), "stages"] == 5
    assert rows.set_index(["length", "seed"]).loc[(12_000, 2), "stages"] == 6
    assert study.done(cfg, "base", 12_000, path=path) and study.done(cfg, "base", 12_000, 2, path=path)
    assert not study.done(cfg, "base", 12_000, 3, path=path)
    assert not study.done(cfg, "base", 24_000, path=path)  # a row of another key is measured again
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_seed_is_06s_other_initialisation_of_l2(study) -> None:
    cfg = study.study_config("base")
    assert study.model_name(cfg, None) == study.model_name(cfg, cfg.seed) == "L2"
    assert study.model_name(cfg, 2) == "L2-s2"


@pytest.mark.parametrize("argv, message", [(["--settings", "huge"], "unknown setting 'huge'"),
                                           (["--lengths", "5000"], "length 5000 is not one of"),
                                           (["--seeds", "2", "2"], "give distinct non-negative seeds")])
def test_bad_arguments_are_refused_in_one_line(study, argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        study.main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_summary_table_has_one_line_per_row_and_the_rows_numbers(study) -> None:
    row = {"setting": "base", "length": 12_000, "seed": 1, "stages": 3, "types_L0": "previous-token 4; current-token 4",
           "L0_multigram_heads": float("nan"), "induction_heads": "1:0 1:5", "induction_steepest": "4000 4500",
           "induction_intervals": "3500-5000 4000-6000", "claim5": "fail", "ari_L0": -0.12, "null95_L0": 0.16,
           "ari_L1": 0.22, "null95_L1": 0.22, "train_s_per_step": 0.069, "train_min_to_length": 13.8,
           "llc_min": 12.0, "scores_min": 2.5}
    text = study.markdown(pd.DataFrame([row, {**row, "length": 24_000, "stages": 5, "L0_multigram_heads": "0:3"}]))
    lines = text.splitlines()
    assert len(lines) == 4 and len({line.count("|") for line in lines}) == 1
    assert ("| base | 1 | 12,000 | 3 | previous-token 4; current-token 4 | none | 1:0 4000 (3500-5000), 1:5 4500"
            in lines[2])
    assert "| 0:3 |" in lines[3] and "| -0.12 / 0.16 | 0.22 / 0.22 | 0.069 | 13.8 | 14.5 |" in lines[2]
