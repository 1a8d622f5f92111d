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


class Farm:
    """A board farm: with ``tracker``, a tracker on ``port`` and a server registered with it
    under the key ``local-board`` (a server in tracker mode takes only the tracker's
    clients); with ``direct``, a server of its own on ``server_port`` for ``--rpc``. Servers
    are processes of their own group (they fork the processes that run kernels, so stopping
    one means killing the group); the tracker runs in TVM's own worker process, started from
    here while the servers' processes import TVM, so the farm is up in one import's time."""

    KEY = "local-board"

    def __init__(self, tracker: bool = True, direct: bool = False):
        self.port = free_port()
        self.server_port = free_port()
        self.tracker = None
        self.servers = []
        self.workdir = tempfile.mkdtemp(prefix="las-farm-")  # the servers' session folders
        base = [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1"]
        try:
            if direct:
                self.servers.append(self._start([*base, "--port", str(self.server_port),
                                                 "--port-end", str(self.server_port + 1)]))
            if tracker:
                port = free_port()
                self.servers.append(self._start([
                    *base, "--port", str(port), "--port-end", str(port + 1),
                    "--tracker", f"127.0.0.1:{self.port}", "--key", self.KEY]))
                from tvm.rpc.tracker import Tracker

                self.tracker = Tracker("127.0.0.1", self.port, self.port + 1, silent=True)
                wait_for_key(self.port, self.KEY)
            if direct:
                wait_for_port(self.server_port)
        except BaseException:
            self.stop()
            raise

    def _start(self, argv):
        return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True, env={**os.environ,
                                                             "TMPDIR": self.workdir})

    def files_left(self, pattern: str = "*") -> list[str]:
        """Files the servers' session folders still hold."""
        return glob.glob(os.path.join(self.workdir, "*", pattern))

    @property
    def server(self):
        """The first server (the direct one when there is one)."""
        return self.servers[0]

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
            self.tracker.proc.kill()

    def stop(self) -> None:
        self.kill("server")
        self.kill("tracker")
        shutil.rmtree(self.workdir, ignore_errors=True)
