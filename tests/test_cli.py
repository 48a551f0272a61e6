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
