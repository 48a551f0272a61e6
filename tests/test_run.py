"""Run directories: finding never writes, one profile per run, the same run from any cwd,
provenance in config.yaml, figures stamped, clear errors for corrupt checkpoints."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
import yaml

from rllc import config, paths, provenance, run
from rllc.model.checkpoints import CheckpointStore, CorruptCheckpoint


def test_finding_a_run_never_writes(tmp_path: Path) -> None:
    missing = tmp_path / "nothing"
    with pytest.raises(FileNotFoundError, match="neither a run directory"):
        run.open_run(missing)
    assert not missing.exists()


def test_create_run_records_provenance_and_refuses_another_profile(tmp_path: Path, capsys) -> None:
    ci = config.load_config("ci")
    r = run.create_run(ci, tmp_path / "r")
    doc = yaml.safe_load((r.path / "config.yaml").read_text())
    assert doc["provenance"]["package_version"] == provenance.package_version()
    assert run.open_run(r.path).cfg == ci  # the provenance block does not leak into the config
    run.create_run(config.load_config("ci", {"sampler": {"nbeta": 3.0}}), tmp_path / "r")
    assert capsys.readouterr().err == "rllc: r: using the profile's sampler.nbeta = 3.0 (the run had 30.0)\n"
    with pytest.raises(run.ProfileMismatch, match="made with profile 'ci'"):
        run.create_run(config.load_config("cpu"), tmp_path / "r")
    with pytest.raises(run.SettingsMismatch, match="tokenizer.vocab_size 512 in the run, 384 in the profile"):
        run.create_run(config.load_config("ci", {"tokenizer": {"vocab_size": 384}}), tmp_path / "r")


def test_the_weight_settings_are_what_a_models_identity_is_made_of() -> None:
    """Each setting the rule refuses changes a model's identity or its token datasets (the oracle:
    ``run.identity``); a setting it lets through changes neither."""
    base = config.load_config("ci")
    changes = {"seed": 7, "tokenizer": {"vocab_size": 384}, "model": {"d_model": 64}, "corpus": {"test_fraction": 0.1},
               "train": {"lr": 0.5}}
    for key, value in changes.items():
        other = config.load_config("ci", {key: value})
        names = run.changed_settings(base, other)
        assert names and all(run.is_weight_setting(n) for n in names), names
        assert run.identity(other, "L2") != run.identity(base, "L2")
    for key, value in {"sampler": {"draws": 7}, "llc": {"head_checkpoints": 6}, "train": {"steps": {"L2": 99}}}.items():
        other = config.load_config("ci", {key: value})
        assert not any(run.is_weight_setting(n) for n in run.changed_settings(base, other))
        assert run.identity(other, "L2") == run.identity(base, "L2")


def test_relative_run_dirs_resolve_against_the_repository(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run.resolve_path("runs/x") == paths.REPO_ROOT / "runs" / "x"
    assert run.resolve_path(tmp_path / "y") == tmp_path / "y"


def test_a_notebook_finds_the_same_run_from_another_folder(tmp_path: Path) -> None:
    """Papermill runs kernels in the caller's folder and nbval in the notebook's: a relative
    run_dir parameter must name the same run from both."""
    import papermill

    from rllc import runner

    name = f"runs/.cwd-probe-{uuid.uuid4().hex[:8]}"
    source = tmp_path / "probe.py"
    source.write_text('# %% tags=["parameters"]\nprofile = "ci"\nconfig = {}\nrun_dir = ""\n\n'
                      "# %%\nfrom pathlib import Path\nfrom rllc.notebook import setup\n"
                      "nb = setup(profile, config, run_dir, sampler_line=False)\n"
                      "Path(__import__('os').environ['PROBE_OUT']).write_text(str(nb.run.path))\n")
    import nbformat

    nbformat.write(runner.to_ipynb(source), tmp_path / "probe.ipynb")
    try:
        for i, cwd in enumerate((tmp_path, paths.REPO_ROOT / "notebooks")):
            out = tmp_path / f"out{i}.txt"
            os.environ["PROBE_OUT"] = str(out)
            papermill.execute_notebook(str(tmp_path / "probe.ipynb"), str(tmp_path / f"ran{i}.ipynb"),
                                       parameters={"run_dir": name}, kernel_name="python3", progress_bar=False,
                                       cwd=str(cwd))
            assert Path(out.read_text()) == paths.REPO_ROOT / name
    finally:
        os.environ.pop("PROBE_OUT", None)
        shutil.rmtree(paths.REPO_ROOT / name, ignore_errors=True)
    assert Path(runner.profile_parameters("ci", Path("runs/ci-test"))["run_dir"]).is_absolute()


def test_savefig_stamps_profile_run_and_commit(tmp_path: Path) -> None:
    from rllc.report import figures

    r = run.create_run(config.load_config("ci"), tmp_path / "r")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    figures.mark_sampler(fig, config.SamplerConfig(epsilon=1e-3, gamma=100.0, nbeta=30.0, chains=2, draws=5,
                                                   burnin=1, batch_size=4, reference="paired", seed=1))
    path = figures.savefig(fig, r, "probe")
    stamp = "\n".join(t.get_text() for t in fig.texts)
    assert path.exists() and "profile ci" in stamp and str(r.path) in stamp
    assert provenance.short_commit() in stamp and "SGLD ε=0.001" in stamp
    plt.close(fig)


def test_a_truncated_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    import torch

    store = CheckpointStore(tmp_path / "models" / "L2")
    store.save_weights(0, {"w": torch.zeros(1000)})
    data = store.path(0).read_bytes()
    store.path(0).write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptCheckpoint, match="truncated or corrupt.*rllc train"):
        store.load_weights(0)


def test_llc_command_refuses_a_profile_other_than_the_runs(tmp_path: Path) -> None:
    r = run.create_run(config.load_config("ci"), tmp_path / "r")
    out = subprocess.run([sys.executable, "-m", "rllc.cli", "llc", "--profile", "cpu", "--run-dir", str(r.path)],
                         capture_output=True, text=True, env={**os.environ, "RLLC_NO_REEXEC": "1"})
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "made with profile 'ci'" in out.stderr, out.stderr


def test_sampler_flags_are_typed_from_the_annotations() -> None:
    from rllc.cli import _sampler_types

    types = _sampler_types()
    assert types["epsilon"] is float and types["chains"] is int and types["reference"] is str
    assert types["diverge_margin"] is float  # float | None


def test_a_profile_file_outside_the_repository_reaches_the_notebooks_with_its_extends(tmp_path):
    from rllc import runner
    from rllc.config import load_config

    mine = tmp_path / "elsewhere" / "my-ci.yaml"
    mine.parent.mkdir()
    mine.write_text("profile: my-ci\nextends: ci\nconfig:\n  train: {batch_size: 3}\n")
    params = runner.profile_parameters(str(mine), tmp_path / "run")
    assert params["profile"] == str(mine.resolve())  # the file, not its name (no profiles/my-ci.yaml exists)
    assert params["config"]["train"]["batch_size"] == 3 and "model" in params["config"]  # ci's settings merged
    # what a notebook resolves from its parameters is what the file says, extends included
    cfg = load_config(params["profile"], params["config"])
    assert cfg == load_config(mine) and cfg.train.batch_size == 3 and cfg.model == load_config("ci").model
    assert runner.profile_parameters("ci", tmp_path / "run")["profile"] == "ci"
