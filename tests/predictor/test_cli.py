"""``las predict`` and ``las select-s``."""

import json

import pytest

from las_compiler.cli import main
from las_compiler.predictor import get_hardware


def test_predict_json_per_block_and_network(capsys):
    assert main(["predict", "--hardware", "tx2", "--model", "las_resnet101", "--snet",
                 "4-4-2-1", "--rate", "0.5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["S_net"] == "4-4-2-1" and len(report["blocks"]) == 33
    assert report["dynamic_ms"] > 0 and report["dense_ms"] > 0
    assert "tiles of our CUDA rules" in report["note"] and "unvalidated" in report["note"]
    assert {b["S"] for b in report["blocks"]} == {4, 2, 1}


def test_predict_table_and_profile_file(tmp_path, capsys):
    path = get_hardware("tx2-cpu").save(tmp_path / "board.json")
    assert main(["predict", "--hardware", str(path), "--rate", "0.3"]) == 0
    out = capsys.readouterr().out
    assert "on tx2-cpu" in out and "layer4.2" in out and out.strip().splitlines()[-1].startswith(
        "network")


def test_select_s(capsys):
    assert main(["select-s", "--hardware", "v100", "--batch", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["choices"]) == 4 and report["S_net"].count("-") == 3
    assert main(["select-s", "--hardware", "tx2", "--per", "block"]) == 0
    assert "block layer4.2: S=" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["predict", "--hardware", "tpu"], "unknown hardware 'tpu'"),
    (["predict", "--hardware", "tx2-cpu", "--snet", "8-8-8-8"],
     "S=8 does not fit the 7x7 output map of layer4.0"),
    (["predict", "--hardware", "/nonexistent/p.json"], "cannot read hardware profile"),
    (["select-s", "--rate", "2"], "rate 2 is not in"),
])
def test_predict_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
