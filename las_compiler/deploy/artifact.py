"""The artifact directory of a compiled LAS network.

Layout::

    out/
      model.so        TVM ``export_library`` of the Relax VM executable: kernels, VM bytecode
                      and the BN-folded, packed weights (embedded constants; none in a
                      code-only build, whose ``main_transform_params`` prepares weights given
                      at load time); for GPUs the device binaries (``device_binary``: a
                      fatbin or PTX, not CUDA C)
      metadata.json   model name, S per block, block pipelines, target, input spec, versions;
                      a code-only build's weight names and shapes (``weights``); for a
                      cross build the library's machine and newest glibc symbol
      check.npz       an input and PyTorch's outputs and masks for it (``verify.CheckData``):
                      what ``las deploy`` checks a board's run against, without torch
      weights.params  (code-only builds exported with ``weights_beside``) the weights by
                      name, in TVM's param format: loaded with the runtime alone at start

The directory is built under a temporary name beside the destination and renamed into place,
so a failed or interrupted export never leaves a half-written artifact; an existing artifact
at the destination is replaced only after the new one is complete, and temporary folders an
interrupted export left behind are removed by the next export. Folders are readable by
others as the umask allows (a service account may load them).

The metadata records the library's size and SHA-256, checked before the library is loaded:
a damaged ``model.so`` (a copy cut short, a disk error) is an error naming the file, not a
bus error inside ``dlopen``. The metadata itself is checked against its schema
(:func:`check_metadata`), so a hand-edited or cut file says which key is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

LIBRARY_FILE = "model.so"
METADATA_FILE = "metadata.json"
CHECK_FILE = "check.npz"  # verify.CheckData: an input and the outputs and masks it must give
WEIGHTS_FILE = "weights.params"  # a code-only build's weights, when exported beside it
FORMAT = "las-compiler-artifact/2"
OLD_FORMATS = ("las-compiler-artifact/1",)  # no library checksum; still loaded


class ArtifactError(ValueError):
    """An artifact directory is missing, incomplete or corrupt."""


def cross_triple(target_json: str) -> str | None:
    """The triple of the target's host code (a GPU target's host: a Jetson's aarch64 CPU)
    when it is not this machine's architecture; None for native targets."""
    from ..target import architecture

    try:
        fields = json.loads(target_json)
    except json.JSONDecodeError:
        return None
    triple = str(fields.get("mtriple", "") or (fields.get("host") or {}).get("mtriple", ""))
    if not triple or architecture(triple) == architecture():
        return None
    return triple


def cross_linker(target_json: str, glibc: str | None = None):
    """``fcompile`` for ``export_library`` when the target's host code is for another
    architecture (:mod:`.cross`: zig cc or ``<triple>-gcc``, a stripped library checked
    against the board's ``glibc``); None for native targets."""
    from . import cross

    triple = cross_triple(target_json)
    if triple is None:
        return None
    try:
        return cross.find_linker(triple, glibc).fcompile()
    except cross.CrossLinkError as err:
        raise ArtifactError(str(err)) from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale_staging(parent: Path, name: str) -> None:
    """Temporary folders of exports to ``name`` whose process died (killed mid-export)."""
    pattern = re.compile(rf"^\.{re.escape(name)}\.(tmp|old)-(\d+)-")
    for entry in parent.iterdir() if parent.is_dir() else ():
        match = pattern.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(2))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_artifact(directory: str | os.PathLike, executable, metadata: dict,
                   fcompile=None, device_code=None, check=None, weights=None) -> Path:
    """Export ``executable`` and ``metadata`` to ``directory`` atomically; returns the path.

    ``fcompile``: the linker for ``export_library`` (see :func:`cross_linker`);
    ``device_code``: the compiler's packer for GPU builds
    (``TargetFamily.device_code_packer``, e.g. CUDA's: their device binaries go into
    the library; its summary into the metadata's ``device_code``); ``check``: the
    ``verify.CheckData`` a board is checked against (``check.npz``); ``weights``: a
    code-only build's weights ({name: array}) to store beside it (``weights.params``)."""
    dest = Path(directory).resolve()
    parent = dest.parent
    if dest.exists() and not dest.is_dir():
        raise ArtifactError(f"output path {dest} exists and is not a directory")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_staging(parent, dest.name)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-{os.getpid()}-", dir=parent))
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700
    except OSError as err:
        raise ArtifactError(f"cannot write the artifact to {dest}: {err.strerror}") from None
    try:
        library = staging / LIBRARY_FILE
        options = {"fcompile": fcompile} if fcompile is not None else {}
        if device_code is not None:
            options["fpack_imports"] = device_code
        executable.export_library(str(library), **options)
        if device_code is not None:
            metadata = {**metadata, "device_code": device_code.summary}
        if check is not None:
            check.save(staging / CHECK_FILE)
            metadata = {**metadata, "check": {"file": CHECK_FILE, "source": "pytorch",
                                              "sha256": file_sha256(staging / CHECK_FILE)}}
        if weights is not None:
            import numpy as np
            import tvm

            blob = tvm.runtime.save_param_dict(
                {name: tvm.runtime.tensor(np.ascontiguousarray(value, dtype=np.float32))
                 for name, value in weights.items()})
            (staging / WEIGHTS_FILE).write_bytes(bytes(blob))
            metadata = {**metadata, "weights_file": {
                "file": WEIGHTS_FILE, "sha256": file_sha256(staging / WEIGHTS_FILE)}}
        record = {**metadata, "format": FORMAT,
                  "library": {"file": LIBRARY_FILE, "bytes": library.stat().st_size,
                              "sha256": file_sha256(library), **_elf_facts(library)}}
        check_metadata(record, staging / METADATA_FILE)
        (staging / METADATA_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-{os.getpid()}-", dir=parent))
            os.replace(dest, old / "artifact")
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def _elf_facts(library: Path) -> dict:
    """What a board checks before loading: the library's machine and newest glibc symbol."""
    from .cross import CrossLinkError, read_elf

    try:
        facts = read_elf(library)
    except (CrossLinkError, struct.error, ValueError, IndexError):
        return {}
    return {"machine": facts.machine, "glibc": facts.glibc, "stripped": facts.stripped}


# key -> (type, description) of the metadata every artifact must carry
_SCHEMA = {
    "format": (str, "the artifact format"),
    "model": (str, "the model's name"),
    "snet": (str, "S per stage or block"),
    "input": (dict, "the input's shape, dtype and layout"),
    "outputs": (list, "the names of the module's outputs"),
    "blocks": (list, "every block: name, S, stride, pipeline"),
    "target": (str, "the target (TVM JSON)"),
    "target_kind": (str, "the target's kind"),
}
_BLOCK_KEYS = {"name": str, "S": int, "stride": int, "pipeline": str}


def check_metadata(metadata, where: str | os.PathLike) -> None:
    """``ArtifactError`` naming the first way ``metadata`` does not fit the schema."""
    if not isinstance(metadata, dict):
        raise ArtifactError(f"{where}: metadata is not a JSON object")
    fmt = metadata.get("format")
    if fmt != FORMAT and fmt not in OLD_FORMATS:
        raise ArtifactError(f"{where}: not a {FORMAT} metadata file (format {fmt!r})")
    for key, (kind, what) in _SCHEMA.items():
        if key not in metadata:
            raise ArtifactError(f"{where}: missing key {key!r} ({what})")
        if not isinstance(metadata[key], kind):
            raise ArtifactError(f"{where}: {key!r} must be a {kind.__name__}, got "
                                f"{type(metadata[key]).__name__}")
    shape = metadata["input"].get("shape")
    if not (isinstance(shape, list) and shape and all(isinstance(d, int) and d > 0
                                                     for d in shape)):
        raise ArtifactError(f"{where}: 'input.shape' must be a list of positive ints, got "
                            f"{shape!r}")
    for index, block in enumerate(metadata["blocks"]):
        if not isinstance(block, dict):
            raise ArtifactError(f"{where}: 'blocks[{index}]' is not an object")
        for key, kind in _BLOCK_KEYS.items():
            if not isinstance(block.get(key), kind):
                raise ArtifactError(f"{where}: 'blocks[{index}].{key}' must be a "
                                    f"{kind.__name__}, got {block.get(key)!r}")
    dynamic = sum(b["pipeline"] != "static" for b in metadata["blocks"])
    masks = sum(str(o).startswith("mask:") for o in metadata["outputs"])
    if dynamic != masks:
        raise ArtifactError(f"{where}: 'blocks' lists {dynamic} dynamic blocks but 'outputs' "
                            f"lists {masks} masks")
    if fmt == FORMAT:
        library = metadata.get("library")
        if not (isinstance(library, dict) and isinstance(library.get("bytes"), int)
                and isinstance(library.get("sha256"), str)):
            raise ArtifactError(f"{where}: 'library' must give the library's bytes and sha256")


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
    check_metadata(metadata, meta_path)
    return metadata


def check_library(directory: str | os.PathLike, metadata: dict) -> Path:
    """The library file, its size and checksum checked against the metadata."""
    library = Path(directory) / LIBRARY_FILE
    if not library.is_file():
        raise ArtifactError(f"{directory}: missing {LIBRARY_FILE}")
    expected = metadata.get("library")
    if expected is not None:
        size = library.stat().st_size
        if size != expected["bytes"]:
            raise ArtifactError(f"{library}: damaged library: {size} bytes, the artifact was "
                                f"written with {expected['bytes']} (a cut copy?); export it "
                                "again")
        if file_sha256(library) != expected["sha256"]:
            raise ArtifactError(f"{library}: damaged library: its SHA-256 differs from the one "
                                "recorded at export; export it again")
    return library


def _recorded_file(directory, metadata: dict, key: str, default: str, what: str):
    """The file the metadata's ``key`` records beside the library, its SHA-256 checked; None
    if the artifact has none."""
    record = metadata.get(key)
    if not isinstance(record, dict):
        return None
    path = Path(directory) / record.get("file", default)
    if not path.is_file():
        raise ArtifactError(f"{directory}: missing {path.name}, which its metadata lists")
    if file_sha256(path) != record.get("sha256"):
        raise ArtifactError(f"{path}: damaged {what}: the SHA-256 differs from the one "
                            "recorded at export; export the artifact again")
    return path


def read_check_data(directory: str | os.PathLike, metadata: dict):
    """The artifact's ``verify.CheckData`` (checksum checked), or None if it has none."""
    from ..verify import CheckData

    path = _recorded_file(directory, metadata, "check", CHECK_FILE, "check data")
    return None if path is None else CheckData.load(path)


def read_weights(directory: str | os.PathLike, metadata: dict) -> dict | None:
    """A code-only artifact's weights stored beside it ({name: numpy array}, checksum
    checked; TVM's runtime alone reads them), or None if it has none."""
    import tvm

    path = _recorded_file(directory, metadata, "weights_file", WEIGHTS_FILE, "weights")
    if path is None:
        return None
    return {name: value.numpy() for name, value in
            tvm.runtime.load_param_dict(path.read_bytes()).items()}


def load_private_copy(library: Path):
    """The TVM runtime module of ``library``, loaded from a private copy that is unlinked once
    loaded: the process then runs what it loaded whatever later happens to the artifact's
    file (a library rewritten in place under a process that has it mapped kills the process
    with SIGBUS; an export over the artifact replaces the directory, but a user may not)."""
    import tvm

    fd, private = tempfile.mkstemp(prefix=".las-", suffix=library.suffix)
    try:
        with os.fdopen(fd, "wb") as out, open(library, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        return tvm.runtime.load_module(private)
    finally:
        os.unlink(private)


def runtime_device(metadata: dict):
    """The TVM runtime device (device 0) the artifact's kernels run on: the one its target
    family recorded (``metadata["device"]``); before that was recorded, a CPU for the host
    code's kind (``llvm``) and the kind's own name (a device name too) for a GPU."""
    import tvm

    kind = metadata.get("target_kind", "llvm")
    return tvm.device(metadata.get("device") or ("cpu" if kind == "llvm" else kind), 0)


def _device_name(device) -> str:
    return str(device).split(":")[0].upper()  # cuda:0 -> CUDA


def load_artifact(directory: str | os.PathLike):
    """(runtime module, metadata) of an artifact; needs only ``tvm.runtime``."""
    import tvm

    from .host_fit import unfit_reason

    metadata = read_metadata(directory)
    library = check_library(directory, metadata)
    device = runtime_device(metadata)
    if not device.exist:
        from ..target import describe_target

        raise ArtifactError(f"{library}: compiled for {describe_target(metadata['target'])}, "
                            f"but this machine has no {_device_name(device)} device (or no "
                            "driver for it): run it on the device it was compiled for")
    unfit = unfit_reason(metadata["target"], metadata.get("cpu_flags", ()))
    if unfit is not None:  # before dlopen: code this CPU cannot execute dies with SIGILL
        raise ArtifactError(f"{library}: this machine cannot run it: {unfit}")
    try:
        module = tvm.runtime.load_module(str(library))
    except Exception as err:  # noqa: BLE001 - the loader raises several FFI error types
        raise ArtifactError(f"{library}: cannot load the compiled library "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})"
                            ) from None
    return module, metadata
