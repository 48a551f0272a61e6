"""The numerics the project pins (rllc.numerics): environment, threads, what a run records, and
that a model's weights do not depend on how the machine would have chosen them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rllc import config, numerics, paths, train
from rllc.model import checkpoints


def test_apply_env_replaces_other_values_and_says_so(capsys, monkeypatch):
    monkeypatch.setattr(numerics, "is_x86", lambda: True)
    env = {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AVX2,STRICT", "OTHER": "x"}
    out = numerics.apply_env(env)
    assert {k: out[k] for k in numerics.PINNED_ENV} == numerics.PINNED_ENV and out["OTHER"] == "x"
    said = capsys.readouterr().err.strip().splitlines()
    assert said == ["rllc: ATEN_CPU_CAPABILITY=default in the environment replaced by avx2 (the project's "
                    "numerics; docs/using.md)"]  # one line, for the one value that differed
    monkeypatch.setattr(numerics, "is_x86", lambda: False)
    assert numerics.pinned_env() == {} and numerics.replaced({"ATEN_CPU_CAPABILITY": "default"}) == {}


def test_the_makefile_pins_what_the_package_pins():
    text = (paths.REPO_ROOT / "Makefile").read_text()
    found = dict(re.findall(r"^export (ATEN_CPU_CAPABILITY|MKL_CBWR|ONEDNN_MAX_CPU_ISA) := (\S+)$", text, re.M))
    assert found == numerics.PINNED_ENV


def test_threads_come_from_the_profile_and_another_seed_gets_its_share():
    cfg = config.load_config("cpu")
    assert numerics.threads(cfg, "L2") == cfg.train.threads == 2
    assert numerics.threads(cfg, "L2-s3") == cfg.train.threads // cfg.seeds.processes == 1
    assert numerics.threads(config.load_config("ci"), "L2") == 1


def test_a_run_records_its_numerics_and_a_resume_under_others_is_refused(tiny_cfg, ci_prepared, tmp_path):
    train.train_model(tiny_cfg, "L0", tmp_path, progress=False)
    recorded = yaml.safe_load((tmp_path / "config.yaml").read_text())["provenance"]["numerics"]
    assert recorded["threads"] == tiny_cfg.train.threads and recorded["torch_capability"]
    assert {"vendor", "family", "model", "flags"} <= set(recorded["cpu"]) and set(recorded["env"]) == set(
        numerics.PINNED_ENV)
    identity = checkpoints.read_json(tmp_path / "models" / "L0" / "identity.json")
    assert identity["numerics"] == numerics.numerics_record(tiny_cfg.train.threads)
    other = config.load_config("ci", {"train": {**tiny_cfg.to_dict()["train"], "threads": 2}})
    with pytest.raises(RuntimeError, match="numerics differ"):
        train.train_model(other, "L0", tmp_path, progress=False)


def test_the_provenance_line_names_cpu_flags_capability_and_threads():
    line = numerics.summary_line(numerics.describe(2))
    assert "torch capability" in line and "2 threads" in line and "ATEN_CPU_CAPABILITY=" in line
    assert numerics.cpu_info()["vendor"] is not None


def _train(run: Path, profile: Path, env: dict[str, str], prefix: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    cmd = [*prefix, sys.executable, "-m", "rllc.cli", "train", "--profile", str(profile), "--run-dir", str(run),
           "--models", "L2", "--quiet"]
    subprocess.run(cmd, check=True, env=env, capture_output=True)
    return checkpoints.CheckpointStore.for_model(run, "L2").load_weights("last")


@pytest.mark.slow
@pytest.mark.skipif(not numerics.is_x86(), reason="the pinned capability is x86's")
def test_weights_do_not_depend_on_the_callers_environment_or_cores(ci_prepared, tmp_path):
    """The ci profile's L2 trained by the command line: once as the caller's environment has it,
    once with ATEN_CPU_CAPABILITY=default set (no SIMD: other weights, were it used), and, where
    taskset exists, once confined to one core. The command pins capability and threads itself:
    every weight is bit-identical."""
    raw = yaml.safe_load((paths.PROFILES_DIR / "ci.yaml").read_text())
    raw["config"]["train"]["threads"] = 2  # two threads, so that one core has to share them
    profile = tmp_path / "ci-two-threads.yaml"
    profile.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k != "RLLC_NO_REEXEC"}
    ref = _train(tmp_path / "ref", profile, env)
    runs = {"capability preset to default": _train(tmp_path / "default", profile,
                                                   {**env, "ATEN_CPU_CAPABILITY": "default"})}
    if shutil.which("taskset"):
        runs["one core"] = _train(tmp_path / "one-core", profile, env, ("taskset", "-c", "0"))
    for what, weights in runs.items():
        assert weights.keys() == ref.keys(), what
        for k in ref:
            assert torch.equal(weights[k], ref[k]), f"{what}: {k}"
