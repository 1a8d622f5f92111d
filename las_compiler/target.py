"""Host TVM target that is fast and cannot SIGILL: ``mcpu`` chosen from /proc/cpuinfo flags.

TVM 0.27 takes targets only as tags or dicts, and neither obvious way to say "this machine"
works here: ``{"kind": "llvm", "mcpu": "native"}`` silently compiles for a generic CPU (about
5x slower), and ``tvm.target.Target.from_device(tvm.cpu())`` names the CPU *model*, which in a
VM can be one whose AVX-512 the hypervisor hides, so the code dies with SIGILL.  The kernel's
cpuinfo flags list what the CPU will really execute, so we pick the best CPU name LLVM knows
whose instruction-set features are all among them.  Which features each CPU name enables is
asked from LLVM through ``tvm.target.codegen``; no CPU-to-feature table is kept here.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

# fmt: off
_TRIPLES = {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu"}
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}
# LLVM feature -> cpuinfo flag for the instruction-set features LLVM may emit.  Features
# the kernel never prints (APX, avxifma, ...) map to names it never prints, so CPUs that
# need them are never chosen.  Features starting with a prefix listed in _ISA count too.
_X86_ISA = {
    "x87": "fpu", "64bit": "lm", "sahf": "lahf_lm", "lzcnt": "abm", "bmi": "bmi1",
    "prfchw": "3dnowprefetch", "sse3": "pni", "sse4.1": "sse4_1", "sse4.2": "sse4_2",
    "crc32": "sse4_2", "pclmul": "pclmulqdq", "sha": "sha_ni", "avxvnni": "avx_vnni",
    "avx512vnni": "avx512_vnni", "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16",
    "avx512vpopcntdq": "avx512_vpopcntdq", "avx512vbmi2": "avx512_vbmi2",
    "avx512bitalg": "avx512_bitalg", "avx512vp2intersect": "avx512_vp2intersect",
    **dict.fromkeys(("egpr", "ndd", "ppx", "push2pop2", "ccmp", "nf", "cf", "zu"), "apx"),
    **{f: f for f in ("cmov", "cx8", "cx16", "mmx", "fxsr", "nopl", "popcnt", "movbe", "bmi2",
                      "adx", "tbm", "ssse3", "f16c", "fma", "fma4", "xop", "aes", "vaes",
                      "vpclmulqdq", "gfni", "cmpccxadd", "sha512", "sm3", "sm4")},
}
_ARM_ISA = {
    "fp-armv8": "fp", "neon": "asimd", "crc": "crc32", "lse": "atomics", "rdm": "asimdrdm",
    "fullfp16": "asimdhp", "dotprod": "asimddp", "rcpc": "lrcpc", "rcpc-immo": "ilrcpc",
    "complxnum": "fcma", "jsconv": "jscvt", "fp16fml": "asimdfhm", "fptoint": "frint",
    "altnzcv": "flagm2", "f32mm": "svef32mm", "f64mm": "svef64mm",
    **{f: f for f in ("aes", "sha2", "sha3", "sm4", "i8mm", "bf16", "flagm", "mops", "cssc")},
}
_ISA = {"x86_64": (_X86_ISA, ("sse", "avx", "amx")), "aarch64": (_ARM_ISA, ("sve", "sme"))}
# (implementer 0x41 = Arm Ltd) CPU part -> LLVM CPU; other implementers' parts are not Arm's.
_ARM_PARTS = {
    0xD03: "cortex-a53", 0xD04: "cortex-a35", 0xD05: "cortex-a55", 0xD07: "cortex-a57",
    0xD08: "cortex-a72", 0xD09: "cortex-a73", 0xD0A: "cortex-a75", 0xD0B: "cortex-a76",
    0xD0C: "neoverse-n1", 0xD40: "neoverse-v1", 0xD49: "neoverse-n2",
}
_AMD_CPUS = ("znver", "bdver", "btver", "amdfam", "barcelona", "athlon", "opteron", "k8", "k6")
_HOST_VENDORS = {"AuthenticAMD": "amd", "HygonGenuine": "amd", "GenuineIntel": "intel"}
# fmt: on


def architecture(name: str | None = None) -> str:
    """The architecture (``"x86_64"``, ``"aarch64"``, ...) a machine name or target triple
    names, however the platform spells it (``AMD64``, ``arm64``); default: this machine."""
    raw = (name or platform.machine()).split("-")[0].lower()
    return _ALIASES.get(raw, raw)


def _fields(cpuinfo_text: str, key: str) -> list[str]:
    """Return the value of every ``key : value`` line whose lower-cased key is ``key``."""
    out = []
    for line in cpuinfo_text.splitlines():
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == key:
            out.append(value.strip())
    return out


def read_cpu_flags(cpuinfo_text: str) -> tuple[str, frozenset[str]]:
    """Parse the architecture and the CPU feature flags out of /proc/cpuinfo text.

    Parameters
    ----------
    cpuinfo_text : str
        Contents of /proc/cpuinfo.

    Returns
    -------
    tuple of (str, frozenset of str)
        ``"x86_64"`` with the ``flags`` line, or ``"aarch64"`` with the ``Features`` line.
        With several processors, only flags every processor lists are kept.

    Raises
    ------
    ValueError
        If the text has neither a ``flags`` nor a ``Features`` line.
    """
    for arch, key in (("x86_64", "flags"), ("aarch64", "features")):
        if lines := _fields(cpuinfo_text, key):
            return arch, frozenset.intersection(*(frozenset(v.split()) for v in lines))
    raise ValueError(f"cpuinfo text has no 'flags' or 'Features' line: {cpuinfo_text[:80]!r}")


def simd_bits(features) -> int:
    """Widest float SIMD register among ``features`` (LLVM target features, or the cpuinfo
    flags, which spell these the same): 512 (AVX-512), 256 (AVX/AVX2), else 128 (SSE, NEON).
    The CPU rules size their register tiles by it, and the predictor its CPU profiles."""
    features = set(features)
    if "avx512f" in features:
        return 512
    return 256 if "avx" in features else 128


def target_features(target) -> frozenset[str]:
    """The LLVM features an LLVM ``Target`` compiles for (its mcpu's, after its mattr)."""
    from tvm.target import codegen

    return frozenset(str(f) for f in codegen.llvm_get_cpu_features(target))


def cpu_flags_needed(target) -> list[str]:
    """The cpuinfo flags a CPU must list to run code compiled for the LLVM ``target``: the
    instruction-set features LLVM enables for it, as the kernel spells them. Artifacts record
    them (``deploy.host_fit`` checks them). A GPU module's host code (launch glue, compiled
    for the build machine's CPU) is checked by its triple only, as before: [] for it."""
    if target.kind.name != "llvm":
        return []
    arch = architecture(str(target.attrs.get("mtriple", "") or "") or None)
    if arch not in _ISA:
        return []
    return sorted(set(_isa_flags(arch, target_features(target)).values()))


@functools.cache
def _llvm_features(triple: str, cpu: str, mattr: tuple[str, ...] = ()) -> frozenset[str]:
    """Features LLVM enables for ``cpu`` on ``triple`` after applying ``mattr``."""
    import tvm
    from tvm.target import codegen

    target = {"kind": "llvm", "mtriple": triple, "mcpu": cpu, "mattr": list(mattr)}
    return frozenset(str(f) for f in codegen.llvm_get_cpu_features(tvm.target.Target(target)))


def _isa_flags(arch: str, features: frozenset[str]) -> dict[str, str]:
    """Map each instruction-set feature in ``features`` to the cpuinfo flag it needs."""
    table, prefixes = _ISA[arch]
    sep = "_" if arch == "x86_64" else ""
    return {
        f: table.get(f) or f.replace("-", sep).replace(".", sep)
        for f in features
        if f in table or f.startswith(prefixes)
    }


def _x86_cpu(flags: frozenset[str], vendor: str) -> str:
    """Pick the LLVM x86 CPU with the most ISA features that all appear in ``flags``."""
    import tvm
    from tvm.target import codegen

    triple = _TRIPLES["x86_64"]
    host = _HOST_VENDORS.get(vendor)
    best, best_key = "x86-64", None
    archlist = codegen.llvm_get_cpu_archlist(tvm.target.Target({"kind": "llvm", "mtriple": triple}))
    for cpu in map(str, archlist):
        features = _llvm_features(triple, cpu)
        needs = _isa_flags("x86_64", features)
        if not set(needs.values()) <= flags:
            continue
        kind = "amd" if cpu.startswith(_AMD_CPUS) else "intel"
        generic = cpu.startswith(("x86-64", "generic", "i386", "i486", "i586", "i686"))
        key = (len(needs), not generic and kind == host, "_" not in cpu, len(features), cpu)
        if best_key is None or key > best_key:
            best, best_key = cpu, key
    return best


def _arm_cpu(cpuinfo_text: str, flags: frozenset[str]) -> tuple[str, list[str]]:
    """Pick the common-denominator Arm core listed, and ``mattr`` dropping absent features."""
    from tvm.target import codegen

    triple = _TRIPLES["aarch64"]
    parts = set()
    for block in cpuinfo_text.split("\n\n"):  # one block per processor
        implementer, part = _fields(block, "cpu implementer"), _fields(block, "cpu part")
        if implementer and part and int(implementer[0], 16) == 0x41:
            parts.add(int(part[0], 16))
    known = [_ARM_PARTS[p] for p in sorted(parts) if p in _ARM_PARTS]
    known = [c for c in known if codegen.llvm_is_valid_cpu(c, triple)] or ["generic"]
    cpu = min(known, key=lambda c: len(_isa_flags("aarch64", _llvm_features(triple, c))))
    needs = _isa_flags("aarch64", _llvm_features(triple, cpu))
    missing = sorted(f for f, flag in needs.items() if flag not in flags)
    return cpu, ["+neon"] * ("asimd" in flags) + [f"-{f}" for f in missing]


def host_target_dict(
    cpuinfo_text: str | None = None, num_cores: int | None = None, machine: str | None = None
) -> dict:
    """Return a TVM 0.27 LLVM target dict for the host that only uses instructions it has.

    Parameters
    ----------
    cpuinfo_text : str, optional
        /proc/cpuinfo contents; read from the file when omitted.
    num_cores : int, optional
        Threads TVM may use; defaults to ``len(os.sched_getaffinity(0))``.
    machine : str, optional
        ``"x86_64"`` or ``"aarch64"``.  Defaults to ``platform.machine()`` when reading the
        real cpuinfo, else to the architecture ``cpuinfo_text`` describes.

    Returns
    -------
    dict
        ``{"kind": "llvm", "mtriple": ..., "mcpu": ..., "num-cores": ...}``, plus ``"mattr"``
        on aarch64 (``"+neon"`` and ``"-feature"`` for what the CPU's Features line lacks).

    Raises
    ------
    ValueError
        For an unsupported machine, a cpuinfo of another architecture, or ``num_cores < 1``.
    """
    if machine is None and cpuinfo_text is None:
        machine = platform.machine()
    if machine is not None:
        machine = architecture(machine)
        if machine not in _TRIPLES:
            raise ValueError(f"unsupported machine {machine!r}; supported: {sorted(_TRIPLES)}")
    if cpuinfo_text is None:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpuinfo_text = f.read()
    arch, flags = read_cpu_flags(cpuinfo_text)
    if machine is not None and arch != machine:
        raise ValueError(f"cpuinfo describes {arch!r} but machine is {machine!r}")
    n = len(os.sched_getaffinity(0)) if num_cores is None else num_cores
    if n < 1:
        raise ValueError(f"num_cores must be >= 1, got {n!r}")
    target = {"kind": "llvm", "mtriple": _TRIPLES[arch]}
    if arch == "x86_64":
        vendor = next(iter(_fields(cpuinfo_text, "vendor_id")), "")
        target["mcpu"] = _x86_cpu(flags, vendor)
    else:
        target["mcpu"], target["mattr"] = _arm_cpu(cpuinfo_text, flags)
    target["num-cores"] = n
    return target


def host_target(
    cpuinfo_text: str | None = None, num_cores: int | None = None, machine: str | None = None
):
    """Return ``tvm.target.Target(host_target_dict(...))``; see :func:`host_target_dict`."""
    import tvm

    return tvm.target.Target(host_target_dict(cpuinfo_text, num_cores, machine))


def parse_target(spec):
    """What a user typed, as a ``tvm.target.Target`` (the syntax; the compiler's
    :func:`las_compiler.compiler.resolve_target` then lets the target's family complete it).

    Accepts ``"host"`` (this CPU, see :func:`host_target`), a plain target kind as TVM users
    write it (``"llvm"``: this CPU too; ``"cuda"``), a TVM tag (``"nvidia/jetson-tx2"``;
    ``tvm.target.list_tags()``), a target dict, its JSON text, or a ``Target``. An LLVM CPU
    target for this machine's architecture gets what the host needs and it leaves out (``mcpu``
    from the CPU flags, ``num-cores``); an ``mcpu`` LLVM does not know is one clear error, not
    a silent build for a generic CPU. Anything else raises ``ValueError`` naming the input and
    the accepted forms.
    """
    import json

    import tvm

    if isinstance(spec, tvm.target.Target):
        return spec
    if isinstance(spec, dict):
        return _checked(dict(spec))
    text = str(spec).strip()
    if text in ("host", "llvm"):
        return host_target()
    if text.startswith("{"):
        try:
            fields = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"invalid target JSON {text!r}: {err}") from None
        if not isinstance(fields, dict):
            raise ValueError(f"invalid target JSON {text!r}: not an object")
        return _checked(fields)
    if text in tvm.target.list_tags():
        return tvm.target.Target(text)
    if text in tvm.target.Target.list_kinds():  # a bare kind ("cuda"), as TVM users write
        return _checked({"kind": text})
    raise ValueError(f"unknown target {text!r}: use 'host' (or 'llvm'), 'cuda', a TVM target tag "
                     "such as 'nvidia/jetson-tx2' (see tvm.target.list_tags()), or a target JSON "
                     "object such as '{\"kind\": \"llvm\", \"mtriple\": \"aarch64-linux-gnu\"}'")


def _checked(fields: dict):
    """A Target from a dict: host defaults filled in for this machine's CPU, ``mcpu``
    validated against LLVM (before TVM builds the target, which prints LLVM's own errors)."""
    import tvm
    from tvm.target import codegen

    if "kind" not in fields:
        raise ValueError(f"target {fields} has no 'kind' (e.g. 'llvm' or 'cuda')")
    if fields["kind"] == "llvm":
        host = host_target_dict()
        triple = fields.get("mtriple") or host["mtriple"]
        if triple == host["mtriple"]:
            fields = {**{k: v for k, v in host.items() if k not in fields}, **fields}
        mcpu = fields.get("mcpu")
        if mcpu is not None:
            _check_mcpu(str(mcpu), triple, codegen)
    try:
        return tvm.target.Target(fields)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"invalid target {fields}: {str(err).splitlines()[0]}") from None


def _check_mcpu(mcpu: str, triple: str, codegen) -> None:
    import difflib

    import tvm

    if mcpu in ("native",):
        raise ValueError("mcpu 'native' makes TVM 0.27 compile for a generic CPU; use 'host' "
                         "(this CPU's best safe mcpu) or name the CPU")
    if codegen.llvm_is_valid_cpu(mcpu, triple):
        return
    known = [str(c) for c in codegen.llvm_get_cpu_archlist(
        tvm.target.Target({"kind": "llvm", "mtriple": triple}))]
    close = difflib.get_close_matches(mcpu, known, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else f"; LLVM knows {len(known)} CPUs"
    raise ValueError(f"unknown mcpu {mcpu!r} for {triple}{hint}")


def describe_target(target) -> str:
    """Short human label of a target (or its JSON text): ``llvm znver3``, ``cuda sm_62``."""
    import json

    text = str(target)
    try:
        fields = json.loads(text)
    except json.JSONDecodeError:
        return text
    detail = fields.get("mcpu") or fields.get("arch") or fields.get("mtriple") or ""
    return f"{fields.get('kind', '?')} {detail}".strip()


@dataclass(frozen=True)
class EmulatedGPU:
    """Build for ``gpu`` (a CUDA target): schedule with its rules, then run the scheduled
    kernel serially on this CPU (``transform.serialize_gpu``), to check its numbers here."""

    gpu: tvm.target.Target  # noqa: F821 - annotation only

    def __str__(self) -> str:
        return f"emulated {self.gpu}"
