"""The `las` command line: the main job's report and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from las_compiler.cli import main
from las_compiler.cli.compile import CompiledBlockRow, CompileReport


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
def test_bad_input_is_one_error_line(argv, message, capfd):
    assert _las_error(argv, capfd).count(message) == 1


def _las_error(argv, capfd) -> str:
    """``las ARGV`` in this process (a subprocess per case cost ~8 s of imports): it must exit
    with status 2 and one error line on stderr (argparse may print its usage before it), and
    print nothing else at the file-descriptor level (no LLVM messages); an unexpected
    exception fails the test, as a traceback would."""
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capfd.readouterr().err
    assert exit_info.value.code == 2, err
    assert sum("error" in line.lower() for line in err.splitlines()) == 1, err
    return err


def test_a_real_process_prints_one_error_line_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "las_compiler", "compile", "--target",
                           "nonsense"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "unknown target 'nonsense'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """The main job at a small input size: (artifact directory, JSON report)."""
    out = tmp_path_factory.mktemp("cli") / "art"
    proc = subprocess.run([sys.executable, "-m", "las_compiler", "compile", "--input-size", "64",
                           "--repeats", "3", "-o", str(out), "--json"], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out, json.loads(proc.stdout)


@pytest.fixture()
def artifact(compiled):
    return compiled[0]


def test_compile_report_and_artifact(compiled):
    out, report = compiled
    assert report["model"] == "las_resnet50" and report["snet"] == "4-4-2-1"
    assert report["masks_equal"] and report["max_abs_error"] < 1e-3
    assert report["las_ms"] > 0 and report["dense_ms"] > 0
    assert len(report["blocks"]) == 16 and len(report["stage_activation"]) == 4
    assert 0.3 < report["flops_ratio"] < 0.9
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["model"] == "las_resnet50" and meta["snet"] == "4-4-2-1" and meta["rate"] == 0.5
    # auto: the predictor's choice per block, recorded per block
    assert {b["pipeline"] for b in meta["blocks"]} <= {"fused", "halo", "dense"}
    assert [b["pipeline"] for b in report["blocks"]] == [b["pipeline"] for b in meta["blocks"]]
    text = CompileReport(**{**report, "blocks": [CompiledBlockRow(**b) for b in
                                                 report["blocks"]]}).format()
    assert "masks identical" in text and "dense (same network" in text and "stage 4:" in text


def test_run_and_bench_use_the_artifact(artifact, tmp_path, capsys):
    image = tmp_path / "img.npy"
    np.save(image, np.random.default_rng(0).standard_normal((3, 64, 64)).astype("float32"))
    assert main(["run", str(artifact), "--image", str(image), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["top"][0]) == 5 and len(result["activation"]) == 16
    assert main(["bench", str(artifact), "--vs", "dense", "--repeats", "3", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["median_ms"]
    assert set(rows) == {"las", "dense_onnxruntime", "dense_openvino", "dense_torch_eager"}
    assert all(v > 0 for v in rows.values())


@pytest.mark.parametrize("argv, message", [
    (["compile", "--target", "nonsense"], "unknown target 'nonsense'"),
    (["compile", "--target", "nvidia/jetson-nano"], "CUDA arch sm_53 is not supported"),
    (["compile", "--input-size", "64", "--checkpoint", "{ckpt}"], "checkpoint does not fit"),
    (["compile", "--input-size", "64", "-o", "{file}/art"], "cannot write the artifact"),
    (["run", "{file}"], "is not an artifact directory"),
    (["run", "{artifact}", "--image", "{file}"], "not a valid .npy array"),
    (["run", "{artifact}", "--image", "{nan}"], "input holds 1 NaN and 0 infinite values"),
    (["run", "{artifact}", "--top", "-3"], "-3 is not a positive number"),
    (["bench", "{artifact}", "--repeats", "0"], "0 is not a positive number"),
    (["compile", "--target", '{{"kind": "llvm", "mcpu": "bogus"}}'], "unknown mcpu 'bogus'"),
])
def test_compile_and_run_errors(argv, message, artifact, tmp_path, capfd):
    ckpt = tmp_path / "small.pth"
    import torch

    torch.save({"fc.weight": torch.zeros(3, 3)}, ckpt)
    bad = tmp_path / "file.npy"
    bad.write_text("not an array")
    nan = tmp_path / "nan.npy"
    image = np.zeros((3, 64, 64), np.float32)
    image[0, 0, 0] = np.nan
    np.save(nan, image)
    argv = [a.format(ckpt=ckpt, file=bad, artifact=artifact, nan=nan) for a in argv]
    assert message in _las_error(argv, capfd)
    assert not (tmp_path / "art").exists()


def test_compile_for_a_gpu_here(tmp_path, capfd):
    """`las compile --target nvidia/nvidia-h100` on a machine without a GPU: an artifact with
    host code for this CPU and the kernels' device binary (a fatbin nvcc built for sm_90, no
    spills), not run; loading it here is one clear error."""
    from las_compiler.compiler import resolve_target
    from las_compiler.schedules.cuda import toolchain
    from las_compiler.schedules.cuda.device_binary import FATBIN_MAGIC, device_payloads

    out = tmp_path / "gpu"
    capfd.readouterr()
    assert main(["compile", "--target", "nvidia/nvidia-h100", "--input-size", "64", "-o",
                 str(out), "--json"]) == 0
    report = json.loads(capfd.readouterr().out)
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["target_kind"] == "cuda" and report["las_ms"] is None
    notes = " ".join(report["notes"])
    assert "not run here" in notes
    if toolchain.toolchain_available(resolve_target("nvidia/nvidia-h100")) is None:
        assert "device code in the library: fatbin (sm_90 cubin + PTX" in notes, notes
        assert "no register spills" in notes and metadata["device_code"]["format"] == "fatbin"
        # the library's CUDA module holds the fatbin itself, every kernel of its table in it
        (payload,) = device_payloads(out / "model.so")
        assert payload.fmt == "fatbin" and payload.code[:4] == FATBIN_MAGIC
        assert len(payload.kernels) == metadata["device_code"]["kernels"]
        assert all(kernel.encode() in payload.code for kernel in payload.kernels)
    assert "no CUDA device" in _las_error(["run", str(out)], capfd)


@pytest.mark.parametrize("target", [
    '{"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a57"}',
    "nvidia/jetson-tx2"])  # a Jetson's host code is aarch64 too
def test_cross_target_without_linker_fails_before_compiling(tmp_path, target, capfd,
                                                            monkeypatch):
    """Neither zig cc (the boards extra) nor Debian's cross gcc: one line naming both fixes."""
    import shutil

    from las_compiler.deploy import cross

    monkeypatch.setattr(cross, "zig_available", lambda: False)
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    message = _las_error(["compile", "--target", target, "-o", str(tmp_path / "art")], capfd)
    assert "needs a cross linker, and none is installed: pip install 'las-compiler[boards]'" \
        in message and "apt install gcc-aarch64-linux-gnu" in message
    assert not (tmp_path / "art").exists()


def test_boards_by_name(tmp_path, capfd):
    """`--board` sets the target (and the glibc to link against); unknown boards, a board
    with --target, and a malformed glibc are one clear line each."""
    assert "invalid choice: 'jetson-tx3'" in _las_error(
        ["compile", "--board", "jetson-tx3"], capfd)
    assert "--board jetson-tx2 sets the target; give --board or --target" in _las_error(
        ["compile", "--board", "jetson-tx2", "--target", "host"], capfd)
    assert "glibc version '2.x' is not of the form 2.N" in _las_error(
        ["compile", "--board", "raspberry-pi-4", "--glibc", "2.x", "-o",
         str(tmp_path / "art")], capfd)
    assert not (tmp_path / "art").exists()


def test_deploy_predicts_the_artifact_on_its_boards_profile(artifact):
    """`las deploy` prints the predictor's latency beside the measured one: for the main job's
    LAS-ResNet-50 compiled for a TX2's Cortex-A57 cores, the tx2-cpu profile's estimate."""
    from las_compiler.cli.deploy import predicted_ms
    from las_compiler.deploy.boards import get_board

    metadata = json.loads((artifact / "metadata.json").read_text())
    arm = {**metadata, "target": json.dumps(get_board("jetson-tx2-cpu").target)}
    ms, profile = predicted_ms(arm)
    assert profile == "tx2-cpu" and 1 < ms < 1000
    narrow = {**arm, "model": "las_resnet-1-1-1-1"}
    assert predicted_ms(narrow) == (None, "no prediction for las_resnet-1-1-1-1 (unknown "
                                          "model 'las_resnet-1-1-1-1'; choose from "
                                          "['las_resnet101', 'las_resnet50'])")


def test_version_help_and_feedback(artifact, capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("las-compiler ")
    for command in ("compile", "run", "bench", "predict", "select-s", "tune", "reference"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "(default: " in capsys.readouterr().out, command
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    assert "--tuning-logs TUNING_LOGS, --log TUNING_LOGS" in capsys.readouterr().out
    assert main(["bench", str(artifact), "--repeats", "2"]) == 0
    captured = capsys.readouterr()
    assert "threads)" in captured.out and "s] timing the artifact" in captured.err


def test_official_checkpoint_on_the_command_line(tmp_path, capfd):
    """S_net and input size come from the checkpoint's hyper_set, a contradicting --snet is one
    error line, and --rate over trained maskers is a warning the user sees."""
    from las_compiler.models import parse_granularity
    from las_compiler.models.las_resnet import STAGE_DEPTHS

    from .models.test_official import official_checkpoint

    depths = STAGE_DEPTHS["las_resnet50"]
    path = tmp_path / "checkpoint.pth.tar"
    official_checkpoint(path, "dyn_resnet50", depths, parse_granularity("2-2-2-1", depths), 64)

    argv = ["reference", "--checkpoint", str(path), "--json"]
    capfd.readouterr()
    assert main(argv) == 0
    out, err = capfd.readouterr()
    report = json.loads(out)
    assert report["granularity"] == "2-2-2-1" and report["input_shape"] == [1, 3, 64, 64]
    assert "WARNING" not in err
    assert "--snet 4-4-2-1 contradicts the checkpoint's S_net 2-2-2-1" in _las_error(
        [*argv, "--snet", "4-4-2-1"], capfd)
    assert main([*argv, "--rate", "0.3"]) == 0
    assert "WARNING: --rate 0.3 re-fits the checkpoint's trained maskers" in \
        capfd.readouterr().err


def test_viz_draws_each_stage_over_the_image(artifact, tmp_path, capsys):
    from PIL import Image

    from las_compiler.deploy import load
    from las_compiler.viz import stage_panels

    y, x = np.mgrid[0:64, 0:64]
    photo = np.stack([x * 4, y * 4, np.full_like(x, 128)], axis=2).astype(np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    png = tmp_path / "masks.png"
    assert main(["viz", str(artifact), "--image", str(tmp_path / "photo.png"), "-o", str(png),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["activation"]) == {f"stage {k}" for k in range(1, 5)}
    picture = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)
    assert picture.shape == (396, 1760, 3)  # input + 4 stage panels, 3.2 x 3.6 in at 110 dpi
    panels = np.array_split(picture[60:-20], 5, axis=1)  # below the titles
    assert all(p.std() > 5 for p in panels)  # every panel holds a picture, not blank paper
    # the drawn coverage is the compiled masks, stretched by the official rule
    compiled = load(artifact)
    _, masks = compiled.run_with_masks(np.zeros(compiled.metadata["input"]["shape"],
                                                np.float32))
    for panel in stage_panels(compiled.metadata, masks):
        assert panel.coverage.shape == (64, 64)
        assert 0.0 <= panel.coverage.min() <= panel.coverage.max() <= 1.0
        assert abs(panel.activation - float(np.mean(panel.coverage))) < 0.02


def test_code_only_artifact_runs_with_its_weights(artifact, tmp_path, capfd):
    """`las compile --weights-as-inputs`: an artifact without weights; `las run` needs
    `--weights` (the state_dict it was compiled from) and then gives the weight-carrying
    artifact's classes; without them, or with them for a weight-carrying artifact, one
    clear error."""
    import torch

    from las_compiler.models import prepare_model

    out = tmp_path / "code"
    capfd.readouterr()
    assert main(["compile", "--input-size", "64", "--weights-as-inputs", "--no-dense",
                 "--repeats", "2", "-o", str(out), "--json"]) == 0
    report = json.loads(capfd.readouterr().out)
    assert report["masks_equal"] and any("code only" in n for n in report["notes"])
    assert (out / "model.so").stat().st_size < (artifact / "model.so").stat().st_size / 4
    weights = tmp_path / "weights.pt"
    torch.save(prepare_model(input_size=(64, 64)).model.state_dict(), weights)  # as `compile`
    assert main(["run", str(out), "--weights", str(weights), "--json"]) == 0
    code_only = json.loads(capfd.readouterr().out)
    assert main(["run", str(artifact), "--json"]) == 0
    baked = json.loads(capfd.readouterr().out)
    assert [t["class"] for t in code_only["top"][0]] == [t["class"] for t in baked["top"][0]]
    for argv, message in [(["run", str(out)], "give its weights with --weights"),
                          (["run", str(artifact), "--weights", str(weights)],
                           "carries its weights")]:
        assert message in _las_error(argv, capfd)


@pytest.mark.full_matrix  # two LAS-ResNet-50 compiles (2 minutes); the default tier's ONNX
# round trips are tests/frontend/test_onnx.py's, its official checkpoints models/test_official's
def test_official_checkpoint_through_onnx_equals_compiling_it_from_pytorch(tmp_path, capfd):
    """The README's two ONNX commands on an official-format LASNet checkpoint: `las
    export-onnx` (checked in ONNX Runtime against PyTorch) then `las compile model.onnx`
    (checked against ONNX Runtime); the artifact's logits and masks equal the module compiled
    from PyTorch."""
    import las_compiler
    from las_compiler.models import parse_granularity, prepare_model
    from las_compiler.models.las_resnet import STAGE_DEPTHS

    from .models.test_official import official_checkpoint

    pytest.importorskip("onnxruntime")
    depths = STAGE_DEPTHS["las_resnet50"]
    checkpoint = tmp_path / "checkpoint.pth.tar"
    official_checkpoint(checkpoint, "dyn_resnet50", depths, parse_granularity("4-4-2-1", depths),
                        64, seed=3)
    model_file, out = tmp_path / "model.onnx", tmp_path / "from-onnx"
    capfd.readouterr()
    assert main(["export-onnx", "--checkpoint", str(checkpoint), "-o", str(model_file),
                 "--json"]) == 0
    exported = json.loads(capfd.readouterr().out)
    assert exported["las_nodes"] == 16 and exported["snet"] == "4-4-2-1"
    assert exported["max_abs_error"] < 1e-3 and exported["mask_cells_differing"] == 0
    assert main(["compile", str(model_file), "--repeats", "2", "-o", str(out), "--json"]) == 0
    report = json.loads(capfd.readouterr().out)
    assert report["masks_equal"] and report["max_abs_error"] < 1e-3 and report["las_ms"] > 0
    assert len(report["blocks"]) == 16 and report["snet"] == "4-4-2-1"

    model = prepare_model(checkpoint=str(checkpoint)).model
    x = np.random.default_rng(1).standard_normal((1, 3, 64, 64)).astype("float32")
    from_torch = las_compiler.compile(model, x, "host")
    logits, masks = las_compiler.load(out).run_with_masks(x)
    expected, expected_masks = from_torch.run_with_masks(x)
    np.testing.assert_allclose(logits, expected, rtol=0, atol=1e-4)
    for got, want in zip(masks, expected_masks, strict=True):
        np.testing.assert_array_equal(got, want)
    assert "las: error: --snet does not apply to an ONNX file (model.onnx)" in _las_error(
        ["compile", str(model_file), "--snet", "4-4-4-1"], capfd)
