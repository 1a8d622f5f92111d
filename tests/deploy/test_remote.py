"""Artifacts on a board over TVM RPC (``las deploy``, ``las run/bench --rpc/--tracker``),
against a tracker and a server started here (this CPU is the board), and the faults a board
brings: a server gone before or during a run, a hung one, the tracker down, a wrong key, a
board of another architecture, too little memory, a damaged artifact. Each is one clear
error within a bounded time, and nothing is left on the board."""

import json
import os
import shutil
import signal
import time

import pytest
import torch

import las_compiler
from las_compiler.cli import main
from las_compiler.deploy import ArtifactError, cross
from las_compiler.deploy.boards import get_board
from las_compiler.deploy.remote import Board, RemoteError, RemoteModel, _load_problem
from las_compiler.models import LASResNet, calibrate

from ..rpc_farm import Farm, free_port

X = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))


def _model():
    torch.manual_seed(0)
    model = LASResNet((1, 1, 1, 1), "4-2-2-1", num_classes=10, base_channels=16).eval()
    calibrate(model, 0.5, torch.randn(2, 3, 32, 32))
    return model


@pytest.fixture(scope="module")
def host_artifact(tmp_path_factory):
    compiled = las_compiler.compile(_model(), X, "host", tuning_logs=False)
    return compiled.export(tmp_path_factory.mktemp("remote") / "host")


@pytest.fixture(scope="module")
def arm_artifact(tmp_path_factory):
    """The same network for a Jetson TX2's Cortex-A57 cores, linked against its glibc."""
    if not cross.zig_available() and shutil.which("aarch64-linux-gnu-gcc") is None:
        pytest.skip("no cross linker (pip install 'las-compiler[boards]')")
    board = get_board("jetson-tx2-cpu")
    compiled = las_compiler.compile(_model(), X, board.target, tuning_logs=False,
                                    metadata={"board": board.name, "glibc": board.glibc})
    return compiled.export(tmp_path_factory.mktemp("remote") / "arm")


@pytest.fixture(scope="module")
def farm():
    farm = Farm(tracker=True, direct=True)
    yield farm
    farm.stop()


def _error(argv, capfd) -> str:
    capfd.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    return capfd.readouterr().err


def test_deploy_checks_and_times_the_artifact_on_the_board(host_artifact, farm, capfd):
    capfd.readouterr()
    assert main(["deploy", str(host_artifact), "--rpc", farm.rpc, "--repeats", "3",
                 "--json"]) == 0
    result = json.loads(capfd.readouterr().out)
    assert result["check_passed"] and result["mask_cells_differing"] == 0
    assert result["max_abs_error"] <= 1e-4 * result["output_scale"]
    assert result["measured_ms"] > 0 and result["runs"] == 3
    assert result["predicted_ms"] is None and "no prediction" in result["profile"]  # narrow
    assert main(["deploy", str(host_artifact), "--tracker", farm.tracker_address, "--key",
                 Farm.KEY, "--repeats", "2"]) == 0
    text = capfd.readouterr().out
    assert "masks identical: passed" in text and "ms measured (median of 2)" in text
    assert not farm.files_left()


def test_run_and_bench_on_the_board_equal_a_run_here(host_artifact, farm, capfd):
    capfd.readouterr()
    assert main(["run", str(host_artifact), "--rpc", farm.rpc, "--json"]) == 0
    remote = json.loads(capfd.readouterr().out)
    assert main(["run", str(host_artifact), "--json"]) == 0
    here = json.loads(capfd.readouterr().out)
    assert remote["top"] == here["top"] and remote["activation"] == here["activation"]
    assert main(["bench", str(host_artifact), "--tracker", farm.tracker_address, "--key",
                 Farm.KEY, "--repeats", "3", "--json"]) == 0
    assert json.loads(capfd.readouterr().out)["median_ms"]["las"] > 0


def test_unreachable_boards_are_named_at_once(host_artifact, farm, capfd):
    start = time.time()
    assert "cannot reach the RPC server at 127.0.0.1:" in _error(
        ["deploy", str(host_artifact), "--rpc", f"127.0.0.1:{free_port()}"], capfd)
    assert "cannot reach the RPC tracker at 127.0.0.1:" in _error(
        ["deploy", str(host_artifact), "--tracker", f"127.0.0.1:{free_port()}", "--key", "tx2"],
        capfd)
    assert "no device with key 'tx2'" in _error(
        ["run", str(host_artifact), "--tracker", farm.tracker_address, "--key", "tx2"], capfd)
    assert time.time() - start < 30


def test_a_board_of_another_architecture_cannot_load_it(arm_artifact, farm, capfd):
    message = _error(["deploy", str(arm_artifact), "--rpc", farm.rpc], capfd)
    assert "the board cannot load the library (aarch64 code for llvm cortex-a57" in message
    assert "the board is not aarch64" in message
    assert not farm.files_left()


def test_a_board_library_is_stripped_and_needs_no_newer_glibc(arm_artifact):
    facts = cross.read_elf(arm_artifact / "model.so")
    assert facts.machine == "aarch64" and facts.stripped
    assert tuple(map(int, facts.glibc.split("."))) <= (2, 27)  # JetPack 4.6
    library = json.loads((arm_artifact / "metadata.json").read_text())["library"]
    assert library["machine"] == "aarch64" and library["glibc"] == facts.glibc
    with pytest.raises(cross.CrossLinkError, match=f"needs GLIBC_{facts.glibc}, newer than "
                                                    "the board's glibc 2.16"):
        cross.check_library(arm_artifact / "model.so", "aarch64", "2.16")
    with pytest.raises(cross.CrossLinkError, match="linked for aarch64, not x86_64"):
        cross.check_library(arm_artifact / "model.so", "x86_64", "2.27")


def test_a_damaged_artifact_is_refused_before_anything_is_sent(host_artifact, tmp_path):
    copy = tmp_path / "art"
    shutil.copytree(host_artifact, copy)
    data = bytearray((copy / "model.so").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "model.so").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="damaged library"):  # not "cannot reach"
        RemoteModel(copy, Board(rpc=f"127.0.0.1:{free_port()}"))


class _FakeDevice:
    def __init__(self, exist, memory):
        self.exist, self.total_global_memory = exist, memory


class _FakeSession:
    def __init__(self, exist=True, memory=1 << 20):
        self.device_args = []
        self.exist, self.memory = exist, memory

    def device(self, kind, index):
        self.device_args.append(kind)
        return _FakeDevice(self.exist, self.memory)

    def upload(self, *_args):
        raise AssertionError("nothing is uploaded to a board that cannot run it")

    def remove(self, _name):
        pass


@pytest.mark.parametrize("session, message", [
    (_FakeSession(memory=1 << 20), "the board's cpu device has 1 MiB of memory; loading this "
                                   "artifact takes about"),
    (_FakeSession(exist=False), "the board has no CPU device")])
def test_a_board_that_cannot_hold_it_is_told_before_upload(host_artifact, monkeypatch,
                                                          session, message):
    monkeypatch.setattr(Board, "connect", lambda self: session)
    with pytest.raises(RemoteError, match=message):
        RemoteModel(host_artifact, Board(rpc="127.0.0.1:9"))


def test_load_failures_say_what_the_board_lacks(host_artifact):
    metadata = json.loads((host_artifact / "metadata.json").read_text())
    library = host_artifact / "model.so"
    version = _load_problem("undefined symbol: TVMFFIEnvGetStream", metadata, library)
    assert "TVM runtime is another version" in version and metadata["versions"]["tvm"] in version
    assert "x86_64 code" in _load_problem("wrong ELF class: ELFCLASS64", metadata, library)


@pytest.mark.parametrize("argv, message", [
    (["deploy", "{art}"], "give either --rpc host:port or --tracker host:port with --key"),
    (["deploy", "{art}", "--tracker", "127.0.0.1:9190"], "--tracker needs --key"),
    (["deploy", "{art}", "--rpc", "board"], "--rpc must be host:port, got 'board'"),
    (["run", "{art}", "--key", "tx2"], "--key goes with --tracker"),
    (["bench", "{art}", "--rpc", "127.0.0.1:9", "--vs", "dense"], "--vs dense times the dense"),
    (["deploy", "{art}", "--rpc", "127.0.0.1:9", "--timeout", "0"], "--timeout must be positive"),
])
def test_bad_board_options(host_artifact, argv, message, capfd):
    argv = [a.replace("{art}", str(host_artifact)) for a in argv]
    assert message in _error(argv, capfd)


def test_code_only_artifacts_are_refused_with_the_way_out(host_artifact, tmp_path):
    """Over RPC TVM cannot hand a module a tuple of weights: a board refuses code-only builds
    (their weights load beside them where they run: tests/deploy/test_weights_as_inputs.py)."""
    copy = tmp_path / "art"
    shutil.copytree(host_artifact, copy)
    metadata = json.loads((copy / "metadata.json").read_text())
    (copy / "metadata.json").write_text(json.dumps({**metadata, "weights": ["conv1.weight"]}))
    with pytest.raises(RemoteError, match="code only .*deploy a weight-carrying build"):
        RemoteModel(copy, Board(rpc=f"127.0.0.1:{free_port()}"))
    with pytest.raises(ValueError, match="weights_beside is for code-only modules"):
        las_compiler.load(host_artifact).export(tmp_path / "baked", weights_beside=True)
    assert not (tmp_path / "baked").exists()


def test_a_board_needs_only_the_runtime(host_artifact):
    """The artifact loads, runs and passes its stored check with TVM's runtime library alone
    (no compiler library mapped) and torch unimportable, as on a board."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "sys.modules['torch'] = None  # a board has no torch: importing it fails\n"
        "import las_compiler\n"
        "m = las_compiler.load(sys.argv[1])\n"
        "check = m.check_data\n"
        "out, masks = m.run_with_masks(check.input)\n"
        "agreement = check.compare([out], masks)\n"
        "assert agreement.masks_equal and agreement.max_abs_error < 1e-4, agreement\n"
        "with open('/proc/self/maps') as f:\n"
        "    assert not any('libtvm_compiler' in line for line in f)\n")
    proc = subprocess.run([sys.executable, "-c", script, str(host_artifact)],
                          env={**os.environ, "TVM_USE_RUNTIME_LIB": "1"}, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_server_that_hangs_or_dies_mid_run_is_an_error_in_bounded_time(host_artifact, farm):
    """Last in this file: it stops and then kills the module's servers."""
    remote = RemoteModel(host_artifact, Board(rpc=farm.rpc, timeout=3))
    x = remote.check_data.input
    remote.run_with_masks(x)
    os.killpg(farm.server.pid, signal.SIGSTOP)  # hangs: answers nothing
    start = time.time()
    with pytest.raises(RemoteError, match="no answer from the board within 3 s"):
        remote.run_with_masks(x)
    assert time.time() - start < 6
    farm.kill("server")  # dies
    start = time.time()
    with pytest.raises(RemoteError):
        remote.benchmark(x, repeat=2)
    assert time.time() - start < 60
    remote.close()
