"""Edge boards by name: what to compile for each, and the C library its system ships.

``las compile --board jetson-tx2`` picks the board's target and links the library against the
board's glibc (``deploy.cross``), so the artifact loads there. The glibc is the one of the
newest OS release the board's vendor supports for it; an older image needs an older glibc
(``--glibc``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    target: str | dict  # a TVM tag or target dict: what `las compile --board` compiles for
    glibc: str  # the board's glibc: the library may need no newer symbol version
    system: str  # the OS release that glibc comes from


_A57 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a57", "num-cores": 4}
_A72 = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "num-cores": 4}

BOARDS = {b.name: b for b in [
    Board("jetson-tx2", "NVIDIA Jetson TX2: Pascal GPU (sm_62) and a Cortex-A57 host",
          "nvidia/jetson-tx2", "2.27", "JetPack 4.6 (Ubuntu 18.04)"),
    Board("jetson-tx2-cpu", "NVIDIA Jetson TX2's four Cortex-A57 cores, no GPU",
          _A57, "2.27", "JetPack 4.6 (Ubuntu 18.04)"),
    Board("raspberry-pi-4", "Raspberry Pi 4: four Cortex-A72 cores",
          _A72, "2.31", "Raspberry Pi OS 11 (Debian bullseye) 64-bit"),
    Board("jetson-orin", "NVIDIA Jetson AGX Orin: Ampere GPU (sm_87) and Cortex-A78AE host",
          "nvidia/jetson-agx-orin-32gb", "2.31", "JetPack 5 (Ubuntu 20.04)"),
]}


def get_board(name: str) -> Board:
    board = BOARDS.get(name)
    if board is None:
        raise ValueError(f"unknown board {name!r}: known boards are {', '.join(BOARDS)} (or "
                         "give --target and, for a cross target, --glibc)")
    return board
