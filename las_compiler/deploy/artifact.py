"""The artifact directory of a compiled LAS network.

Layout::

    out/
      model.so        TVM ``export_library`` of the Relax VM executable: kernels, VM bytecode
                      and the BN-folded, packed weights (embedded constants)
      metadata.json   model name, S per block, block pipelines, target, input spec, versions

The directory is built under a temporary name beside the destination and renamed into place,
so a failed or interrupted export never leaves a half-written artifact; an existing artifact
at the destination is replaced only after the new one is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

LIBRARY_FILE = "model.so"
METADATA_FILE = "metadata.json"
FORMAT = "las-compiler-artifact/1"


class ArtifactError(ValueError):
    """An artifact directory is missing, incomplete or corrupt."""


def cross_linker(target_json: str):
    """``fcompile`` for ``export_library`` when the target's triple is not this machine's:
    TVM's cross compiler driver around ``<triple>-gcc``; None for native targets."""
    import platform

    try:
        triple = str(json.loads(target_json).get("mtriple", ""))
    except json.JSONDecodeError:
        return None
    if not triple or triple.split("-")[0] == platform.machine():
        return None
    gcc = shutil.which(f"{triple}-gcc")
    if gcc is None:
        arch = triple.split("-")[0]
        raise ArtifactError(f"exporting for {triple} needs a cross linker, but {triple}-gcc is "
                            f"not on PATH (Debian/Ubuntu: apt install gcc-{arch}-linux-gnu)")
    from tvm.support import cc

    return cc.cross_compiler(gcc)


def write_artifact(directory: str | os.PathLike, executable, metadata: dict,
                   fcompile=None) -> Path:
    """Export ``executable`` and ``metadata`` to ``directory`` atomically; returns the path.

    ``fcompile``: the linker for ``export_library`` (see :func:`cross_linker`)."""
    dest = Path(directory).resolve()
    parent = dest.parent
    if dest.exists() and not dest.is_dir():
        raise ArtifactError(f"output path {dest} exists and is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=parent))
    except OSError as err:
        raise ArtifactError(f"cannot write the artifact to {dest}: {err.strerror}") from None
    try:
        if fcompile is None:
            executable.export_library(str(staging / LIBRARY_FILE))
        else:
            executable.export_library(str(staging / LIBRARY_FILE), fcompile=fcompile)
        (staging / METADATA_FILE).write_text(json.dumps({"format": FORMAT, **metadata},
                                                        indent=2, sort_keys=True) + "\n")
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=parent))
            os.replace(dest, old / "artifact")
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def check_writable(directory: str | os.PathLike) -> Path:
    """Fail early (before a long compile) if the artifact cannot be written at ``directory``."""
    dest = Path(directory).resolve()
    if dest.exists() and not dest.is_dir():
        raise ArtifactError(f"output path {dest} exists and is not a directory")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=dest.parent):
            pass
    except OSError as err:
        raise ArtifactError(f"cannot write the artifact to {dest}: {err.strerror}") from None
    return dest


def read_metadata(directory: str | os.PathLike) -> dict:
    path = Path(directory)
    if not path.is_dir():
        raise ArtifactError(f"{path} is not an artifact directory (expected {LIBRARY_FILE} and "
                            f"{METADATA_FILE})")
    meta_path = path / METADATA_FILE
    try:
        metadata = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing {METADATA_FILE}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ArtifactError(f"{meta_path}: corrupt metadata ({err})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ArtifactError(f"{meta_path}: not a {FORMAT} metadata file")
    return metadata


def load_artifact(directory: str | os.PathLike):
    """(runtime module, metadata) of an artifact; needs only ``tvm.runtime``."""
    import tvm

    metadata = read_metadata(directory)
    library = Path(directory) / LIBRARY_FILE
    if not library.is_file():
        raise ArtifactError(f"{directory}: missing {LIBRARY_FILE}")
    try:
        module = tvm.runtime.load_module(str(library))
    except Exception as err:  # noqa: BLE001 - the loader raises several FFI error types
        raise ArtifactError(f"{library}: cannot load the compiled library "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
                            ) from None
    return module, metadata
