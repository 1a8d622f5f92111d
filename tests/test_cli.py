"""The `las` command line: the main job's report and one-line errors."""

import json
import subprocess
import sys

import pytest

from las_compiler.cli import main


def test_reference_report_json(capsys):
    assert main(["reference", "--input-size", "96x128", "--rate", "0.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["granularity"] == "4-4-2-1" and len(report["blocks"]) == 16
    assert report["max_abs_error"] < 1e-3
    assert 0.3 < report["flops_ratio"] < 0.9
    rates = [b["activation"] for b in report["blocks"]]  # held-out image: small maps vary
    assert abs(sum(rates) / len(rates) - 0.5) < 0.1
    assert report["blocks"][0]["out_hw"] == [24, 32]


def test_reference_report_table(capsys):
    assert main(["reference", "--model", "las_resnet101", "--snet", "8-4-7-1",
                 "--input-size", "112", "--rate", "none"]) == 0
    out = capsys.readouterr().out
    assert "layer3.22" in out and "ratio 1.000" in out  # fresh maskers: everything on


@pytest.mark.parametrize("argv, message", [
    (["reference", "--snet", "4-4-x-1"], "S_net '4-4-x-1' is not valid"),
    (["reference", "--snet", "8-8-8-8", "--input-size", "224"], "S=8 does not fit block layer4.0"),
    (["reference", "--rate", "1.5"], "rate 1.5 is not in [0, 1]"),
    (["reference", "--input-size", "big"], "input size 'big'"),
    (["reference", "--checkpoint", "/nonexistent/ckpt.pth"], "does not exist"),
])
def test_bad_input_is_one_error_line(argv, message):
    proc = subprocess.run([sys.executable, "-m", "las_compiler", *argv], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
