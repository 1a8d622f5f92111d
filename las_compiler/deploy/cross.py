"""Linking a library for another machine (an aarch64 board), and checking that it fits.

Two linkers serve a cross target, tried in this order:

* **zig cc** (PyPI ``ziglang``, the ``boards`` extra: no root). It links against an exact
  glibc, so a library for a Jetson TX2 (JetPack 4.6, glibc 2.27) asks for no symbol its libc
  lacks. Without a board the oldest aarch64 glibc (2.17) is used: such a library loads on any
  aarch64 Linux.
* **Debian's cross gcc** (``<triple>-gcc``, ``apt install gcc-aarch64-linux-gnu``, root),
  when zig is missing. It links against the machine's cross libc (2.36 on Debian 12); the
  check below tells whether the result still loads on the board.

Either way the library is stripped (``-s``: TVM's LLVM code carries debug information, tens of
MB for a network), and :func:`check_library` then reads the ELF file itself: its machine
must be the target's, and the highest ``GLIBC_x.y`` version it needs must not exceed the
board's. A library that fails is an error naming the symbol version and the fix, and is never
left as an artifact.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

OLDEST_GLIBC = {"aarch64": "2.17", "x86_64": "2.17"}  # the first glibc of each architecture
_ELF_MACHINES = {62: "x86_64", 183: "aarch64"}


class CrossLinkError(ValueError):
    """No linker for a cross target, or a linked library that does not fit the board."""


@dataclass(frozen=True)
class CrossLinker:
    """How to link a shared library for ``triple``, against glibc ``glibc`` or older."""

    name: str  # what the report says: "zig cc (glibc 2.27)", "aarch64-linux-gnu-gcc"
    command: tuple[str, ...]
    triple: str
    glibc: str

    @property
    def arch(self) -> str:
        return self.triple.split("-")[0]

    def fcompile(self):
        """``fcompile`` for ``export_library``: links TVM's objects into a stripped ``.so``,
        then checks it with :func:`check_library`."""
        linker = self

        def link(output: str, objects, options=None) -> None:
            objects = [objects] if isinstance(objects, str) else list(objects)
            cmd = [*linker.command, "-shared", "-fPIC", "-s", "-o", output, *objects,
                   *(options or [])]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise CrossLinkError(f"{linker.name} failed to link {Path(output).name}: "
                                     f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
            check_library(output, linker.arch, linker.glibc)

        link.output_format = "so"
        return link


def zig_available() -> bool:
    return importlib.util.find_spec("ziglang") is not None


def find_linker(triple: str, glibc: str | None = None) -> CrossLinker:
    """The linker for ``triple`` (``"aarch64-linux-gnu"``): zig cc if the ``ziglang`` package
    is installed, else ``<triple>-gcc`` on PATH, else an error naming both fixes.
    ``glibc``: the board's glibc (default: the architecture's oldest)."""
    arch = triple.split("-")[0]
    glibc = glibc or OLDEST_GLIBC.get(arch, "2.17")
    if not re.fullmatch(r"2\.\d+", glibc):
        raise CrossLinkError(f"glibc version {glibc!r} is not of the form 2.N (e.g. 2.27)")
    if zig_available():
        return CrossLinker(f"zig cc (glibc {glibc})",
                           (sys.executable, "-m", "ziglang", "cc", "-target",
                            f"{arch}-linux-gnu.{glibc}"), triple, glibc)
    gcc = shutil.which(f"{triple}-gcc")
    if gcc is not None:
        return CrossLinker(f"{triple}-gcc", (gcc,), triple, glibc)
    raise CrossLinkError(
        f"exporting for {triple} needs a cross linker, and none is installed: "
        "pip install 'las-compiler[boards]' (zig cc, no root; scripts/main.sh installs it), "
        f"or apt install gcc-{arch}-linux-gnu")


@dataclass(frozen=True)
class ElfFacts:
    machine: str  # "aarch64", "x86_64", or "EM_<number>"
    glibc: str | None  # the highest GLIBC_x.y version the library needs, None if none
    stripped: bool  # no .symtab / debug sections


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def read_elf(path: str | Path) -> ElfFacts:
    """The machine, needed glibc version and strip state of a 64-bit little-endian ELF
    library, read from its section headers and ``.gnu.version_r`` (no binutils needed, which
    on x86 do not read aarch64 files)."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise CrossLinkError(f"{path} is not a 64-bit little-endian ELF library")
    machine_id = struct.unpack_from("<H", data, 18)[0]
    shoff, = struct.unpack_from("<Q", data, 40)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 58)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
                for i in range(shnum)]
    names_offset = sections[shstrndx][4]

    def cstring(offset: int) -> str:
        return data[offset:data.index(b"\0", offset)].decode()

    names = [cstring(names_offset + s[0]) for s in sections]
    needed: list[str] = []
    for section in sections:
        if section[1] != 0x6FFFFFFE:  # SHT_GNU_verneed
            continue
        strings = sections[section[6]][4]  # sh_link: its string table
        entry = section[4]
        for _ in range(section[7]):  # sh_info: number of Verneed entries
            _version, count, _file, aux, next_entry = struct.unpack_from("<HHIII", data, entry)
            at = entry + aux
            for _ in range(count):
                _hash, _flags, _other, name, next_aux = struct.unpack_from("<IHHII", data, at)
                needed.append(cstring(strings + name))
                at += next_aux
            entry += next_entry
    glibc = [v.removeprefix("GLIBC_") for v in needed
             if v.startswith("GLIBC_") and v[6:7].isdigit()]
    return ElfFacts(_ELF_MACHINES.get(machine_id, f"EM_{machine_id}"),
                    max(glibc, key=_version_key) if glibc else None,
                    ".symtab" not in names and not any(n.startswith(".debug") for n in names))


def check_library(path: str | Path, arch: str, glibc: str) -> ElfFacts:
    """``CrossLinkError`` unless the library at ``path`` is for ``arch`` and needs no glibc
    newer than ``glibc`` (the board's)."""
    facts = read_elf(path)
    if facts.machine != arch:
        raise CrossLinkError(f"{Path(path).name} is linked for {facts.machine}, not {arch}")
    if facts.glibc is not None and _version_key(facts.glibc) > _version_key(glibc):
        raise CrossLinkError(
            f"{Path(path).name} needs GLIBC_{facts.glibc}, newer than the board's glibc "
            f"{glibc}: it would not load there; link with zig cc for that glibc "
            "(pip install 'las-compiler[boards]')")
    return facts
