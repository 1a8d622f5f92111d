"""A board farm on 127.0.0.1 for tests: a TVM RPC tracker and a server (this machine's CPU as
the board), started by the test and stopped by it, faults included."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_key(port: int, key: str, timeout: float = 60.0) -> None:
    from tvm import rpc

    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if key in rpc.connect_tracker("127.0.0.1", port).summary()["queue_info"]:
                return
        except (RuntimeError, OSError):
            pass
        time.sleep(0.25)
    raise AssertionError(f"RPC server {key} did not register")


def wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the group outlives a leader that exited
    except ProcessLookupError:
        pass
    proc.wait()


# a board has TVM's runtime and no torch: the farm's processes start that way, in a second
# instead of six (importing tvm imports torch where it is installed, and the compiler library)
_LEAN = ("import runpy, sys; sys.modules['torch'] = None; "
         "runpy.run_module(sys.argv.pop(1), run_name='__main__', alter_sys=True)")


class Farm:
    """A board farm: with ``tracker``, a tracker on ``port`` and a server registered with it
    under the key ``local-board`` (a server in tracker mode takes only the tracker's
    clients); with ``direct``, a server of its own on ``server_port`` for ``--rpc``. Each is a
    process of its own group, with TVM's runtime alone and no torch, as on a board (a server
    forks the processes that run kernels, so stopping one means killing the group)."""

    KEY = "local-board"

    def __init__(self, tracker: bool = True, direct: bool = False):
        self.port = free_port()
        self.server_port = free_port()
        self.tracker = None
        self.servers = []
        self.workdir = tempfile.mkdtemp(prefix="las-farm-")  # the servers' session folders
        server = ["tvm.exec.rpc_server", "--host", "127.0.0.1"]
        try:
            if tracker:
                self.tracker = self._start(["tvm.exec.rpc_tracker", "--host", "127.0.0.1",
                                            "--port", str(self.port),
                                            "--port-end", str(self.port + 1)])
                port = free_port()
                self.servers.append(self._start([
                    *server, "--port", str(port), "--port-end", str(port + 1),
                    "--tracker", f"127.0.0.1:{self.port}", "--key", self.KEY]))
            if direct:
                self.servers.append(self._start([*server, "--port", str(self.server_port),
                                                 "--port-end", str(self.server_port + 1)]))
            if tracker:
                wait_for_key(self.port, self.KEY)
            if direct:
                wait_for_port(self.server_port)
        except BaseException:
            self.stop()
            raise

    def _start(self, argv):
        return subprocess.Popen(
            [sys.executable, "-c", _LEAN, *argv], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
            env={**os.environ, "TMPDIR": self.workdir, "TVM_USE_RUNTIME_LIB": "1"})

    def files_left(self, pattern: str = "*") -> list[str]:
        """Files the servers' session folders still hold."""
        return glob.glob(os.path.join(self.workdir, "*", pattern))

    @property
    def server(self):
        """The direct server when there is one, else the tracker's."""
        return self.servers[-1]

    @property
    def rpc(self) -> str:
        return f"127.0.0.1:{self.server_port}"

    @property
    def tracker_address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self, victim: str) -> None:
        """Stop ``victim`` ("server": every server, or "tracker") the way a crash would: no
        goodbye."""
        if victim == "server":
            for server in self.servers:
                kill_group(server)
        elif self.tracker is not None:
            kill_group(self.tracker)

    def stop(self) -> None:
        self.kill("server")
        self.kill("tracker")
        shutil.rmtree(self.workdir, ignore_errors=True)
