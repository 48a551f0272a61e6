import json
import subprocess
import sys


def _rllc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rllc.cli", *args], capture_output=True, text=True)


def test_describe_prints_config_and_parameter_counts():
    out = _rllc("describe", "--profile", "paper")
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["parameters"]["L2"] == 3_355_016
    assert info["checkpoints"]["L2"] == 107
    assert info["config"]["model"]["n_ctx"] == 1024


def test_unknown_profile_is_a_clear_error():
    out = _rllc("describe", "--profile", "nope")
    assert out.returncode != 0 and "available" in out.stderr


def test_help_lists_the_commands():
    out = _rllc("--help")
    for cmd in ("data", "train", "notebooks", "describe"):
        assert cmd in out.stdout


def test_a_failing_notebook_does_not_stop_the_ones_after_it(tmp_path, monkeypatch) -> None:
    import pytest

    from rllc import runner

    header = '# %% tags=["parameters"]\nprofile = "ci"\nconfig = {}\nrun_dir = ""\n\n'
    (tmp_path / "00_bad.py").write_text(header + "# %%\nassert False, 'a failed check'\n")
    (tmp_path / "01_good.py").write_text(header + "# %%\nfrom pathlib import Path\n"
                                         "Path(run_dir, 'ran.txt').write_text('yes')\n")
    monkeypatch.setattr(runner, "notebook_sources", lambda: sorted(tmp_path.glob("0*.py")))
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(runner.NotebooksFailed, match="00_bad.*a failed check"):
        runner.execute_all("ci", run, progress=False)
    assert (run / "ran.txt").read_text() == "yes"
    assert (run / "notebooks" / "00_bad.ipynb").exists()


BAD_PROFILES = {
    "missing-extends.yaml": ("profile: a\nextends: no-such-profile\nconfig: {}\n",
                             "extends: 'no-such-profile' is neither"),
    "cycle-a.yaml": ("profile: a\nextends: cycle-b.yaml\nconfig: {}\n",
                     "cycle: cycle-a.yaml -> cycle-b.yaml -> cycle-a"),
    "syntax.yaml": ("profile: s\nconfig:\n  train: {steps: {L2: 10}\n  model: {}\n", "YAML syntax error at line 4"),
    "too-short.yaml": ("profile: t\nextends: ci\nconfig:\n  model: {n_ctx: 24}\n",
                       "scores.max_len 32 does not fit model.n_ctx 24"),
    "few-checkpoints.yaml": ("profile: f\nextends: ci\nconfig:\n  llc: {head_checkpoints: 3}\n",
                             "llc.head_checkpoints 3 is below its minimum of 4"),
    # valid YAML, values of the wrong kind: each refused where it is read, not later in a notebook
    "steps-list.yaml": ("profile: w\nextends: ci\nconfig:\n  train:\n    steps: [1, 2: 3]\n",
                        "train.steps: expected a mapping of model to an integer step count"),
    "string-list.yaml": ("profile: w\nextends: ci\nconfig:\n  llc: {head_dr_data: python_tests}\n",
                         "llc.head_dr_data: expected a list, got str 'python_tests'"),
    "string-count.yaml": ("profile: w\nextends: ci\nconfig:\n  sampler: {chains: four}\n",
                          "sampler.chains: expected an integer, got str 'four'"),
    "scalar-section.yaml": ("profile: w\nextends: ci\nconfig:\n  model: 128\n",
                            "profile w.model: expected a mapping, got int 128"),
}


def test_bad_profile_files_get_one_line_errors_and_write_nothing(tmp_path, capsys):
    import pytest

    from rllc import cli

    (tmp_path / "cycle-b.yaml").write_text("profile: b\nextends: cycle-a.yaml\nconfig: {}\n")
    for name, (text, expected) in BAD_PROFILES.items():
        (tmp_path / name).write_text(text)
        for args in (["describe"], ["train", "--run-dir", str(tmp_path / "run")]):
            with pytest.raises(SystemExit) as exit_info:
                cli.main([*args, "--profile", str(tmp_path / name)])
            err = capsys.readouterr().err
            assert exit_info.value.code == 2, (name, err)
            assert expected in err and err.count("\n") == 1 and "Traceback" not in err, (name, err)
            assert not (tmp_path / "run").exists()


def test_a_profile_file_outside_the_repository_works_on_every_route(tmp_path, capsys, ci_prepared):
    """describe, train, llc and sweep take a profile file that lives elsewhere and extends ci; the
    run directory keeps its resolved settings, so later commands need only --run-dir."""
    from rllc import cli
    from rllc.config import load_config
    from rllc.run import find_run, run_config

    mine = tmp_path / "elsewhere" / "mine.yaml"
    mine.parent.mkdir()
    mine.write_text("profile: mine\nextends: ci\nconfig:\n  train: {steps: {L0: 4}}\n")
    cli.main(["describe", "--profile", str(mine)])
    assert json.loads(capsys.readouterr().out)["config"]["train"]["steps"]["L0"] == 4
    run = tmp_path / "run"
    cli.main(["train", "--profile", str(mine), "--run-dir", str(run), "--models", "L0", "--quiet"])
    assert "L0: 4 steps" in capsys.readouterr().out
    assert run_config(run) == load_config(mine)  # the run holds what the file says, extends resolved
    cli.main(["llc", "--profile", str(mine), "--run-dir", str(run), "--model", "L0", "--chains", "1",
              "--draws", "2", "--burnin", "0", "--quiet"])
    estimate = json.loads(capsys.readouterr().out)
    assert len(estimate["per_chain"]) == 1 and estimate["settings"]["draws"] == 2
    cli.main(["sweep", "--run-dir", str(run), "--models", "L0", "--steps", "last", "--status"])  # no --profile
    assert "1 groups" in capsys.readouterr().out
    assert find_run(str(mine)) == find_run("mine")  # the file's default run directory is its name's


def test_a_reader_that_stops_early_gets_no_traceback():
    """`rllc describe | head -1`: the closed pipe ends the command quietly, exit 0. The reader
    closes before the command writes (its imports take seconds), so the write meets the closed pipe."""
    proc = subprocess.Popen([sys.executable, "-m", "rllc.cli", "describe", "--profile", "ci"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_a_profile_and_a_run_directory_follow_one_rule_on_every_command(tmp_path, capsys, ci_prepared):
    """A profile file given with a run directory: a setting the weights or data depend on that
    differs from the run's is refused in one line naming it, on every command, and nothing is
    written; any other setting that differs is used, one line saying so (rllc.run.reconcile)."""
    import pytest

    from rllc import cli
    from rllc.notebook import setup

    base = "profile: ci\nextends: ci\nconfig:\n  train: {steps: {L0: 4}}\n"
    (tmp_path / "base.yaml").write_text(base)
    (tmp_path / "vocab.yaml").write_text(base + "  tokenizer: {vocab_size: 384}\n")
    (tmp_path / "draws.yaml").write_text(base + "  sampler: {draws: 7}\n")
    run = tmp_path / "run"
    cli.main(["train", "--profile", str(tmp_path / "base.yaml"), "--run-dir", str(run), "--models", "L0", "--quiet"])
    capsys.readouterr()
    before = (run / "config.yaml").read_text()
    commands = {"train": ["--models", "L0"], "notebooks": ["--only", "none"],
                "llc": ["--model", "L0", "--chains", "1", "--burnin", "0"],
                "sweep": ["--models", "L0", "--steps", "last", "--status"], "describe": []}
    for command, extra in commands.items():
        with pytest.raises(SystemExit) as exit_info:
            cli.main([command, "--profile", str(tmp_path / "vocab.yaml"), "--run-dir", str(run), "--quiet", *extra])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.count("\n") == 1, (command, err)
        assert "tokenizer.vocab_size 512 in the run, 384 in the profile: refused" in err, (command, err)
        assert (run / "config.yaml").read_text() == before, command
    used = "rllc: run: using the profile's sampler.draws = 7 (the run had "
    for command, extra in commands.items():
        (run / "config.yaml").write_text(before)  # train and notebooks record the settings they used
        cli.main([command, "--profile", str(tmp_path / "draws.yaml"), "--run-dir", str(run), "--quiet", *extra])
        out, err = capsys.readouterr()
        assert err.count(used) == 1, (command, err)
        if command == "llc":
            assert json.loads(out)["settings"]["draws"] == 7  # used, not ignored
        if command == "describe":
            assert json.loads(out)["config"]["sampler"]["draws"] == 7
    (run / "config.yaml").write_text(before)
    setup(str(tmp_path / "draws.yaml"), {}, str(run), progress=False)  # Papermill's parameters: the same rule
    assert used in capsys.readouterr().err
    with pytest.raises(ValueError, match="tokenizer.vocab_size"):
        setup(str(tmp_path / "vocab.yaml"), {}, str(run), progress=False)


def test_publish_refuses_an_earlier_scorecard_without_a_readme_in_one_line(tmp_path):
    out = _rllc("publish", str(tmp_path), "--out", str(tmp_path / "o"), "--before", "docs/scorecard-criteria-v1.csv")
    assert out.returncode != 0 and "give --readme too" in out.stderr and "Traceback" not in out.stderr
