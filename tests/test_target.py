"""Tests for las_compiler.target: host targets derived from /proc/cpuinfo must never SIGILL."""

from __future__ import annotations

import platform

import numpy as np
import pytest
import tvm
from hypothesis import given, settings
from hypothesis import strategies as st
from tvm import te
from tvm.target import codegen

from las_compiler.target import _isa_flags, host_target, host_target_dict, read_cpu_flags

from .machines import ZEN3_AVX2_FLAGS

# (a) An AMD EPYC (Zen 3) VM with AVX2 and FMA but no AVX-512 (tests/machines.py).
AMD_FLAGS = ZEN3_AVX2_FLAGS
AMD_EPYC_VM = f"""processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC
stepping\t: 1
microcode\t: 0x1000065
cpu MHz\t\t: 2445.404
cache size\t: 512 KB
physical id\t: 0
siblings\t: 2
core id\t\t: 0
cpu cores\t: 2
apicid\t\t: 0
initial apicid\t: 0
fpu\t\t: yes
fpu_exception\t: yes
cpuid level\t: 16
wp\t\t: yes
flags\t\t: {AMD_FLAGS}
bugs\t\t: sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass srso ibpb_no_ret spectre_v2_user
bogomips\t: 4890.80
TLB size\t: 2560 4K pages
clflush size\t: 64
cache_alignment\t: 64
address sizes\t: 48 bits physical, 48 bits virtual
power management:

"""

# (b) Intel Skylake-SP (Xeon Platinum 8124M) with AVX-512 F/CD/BW/DQ/VL.
SKX_FLAGS = (
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr "
    "sse sse2 ss ht syscall nx pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology "
    "nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 "
    "sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm "
    "abm 3dnowprefetch invpcid_single pti fsgsbase tsc_adjust bmi1 hle avx2 smep bmi2 erms "
    "invpcid rtm mpx avx512f avx512dq rdseed adx smap clflushopt clwb avx512cd avx512bw "
    "avx512vl xsaveopt xsavec xgetbv1 xsaves ida arat pku ospke"
)


def _intel(model: str, flags: str, cpus: int = 2) -> str:
    block = (
        "processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 85\n"
        f"model name\t: {model}\nstepping\t: 4\nflags\t\t: {flags}\nbogomips\t: 5999.99\n\n"
    )
    return "".join(block.replace("{n}", str(i)) for i in range(cpus))


INTEL_SKX = _intel("Intel(R) Xeon(R) Platinum 8124M CPU @ 3.00GHz", SKX_FLAGS)
# (c) A Cascade Lake whose hypervisor hides AVX-512 (and AVX512-VNNI) from the guest.
INTEL_HIDDEN_AVX512 = _intel(
    "Intel(R) Xeon(R) Platinum 8259CL CPU @ 2.50GHz",
    " ".join(f for f in SKX_FLAGS.split() if not f.startswith("avx512") and f != "mpx")
    + " md_clear flush_l1d arch_capabilities",
)
# (d) Nehalem (Xeon X5570): SSE4.2 and POPCNT, no AVX, no AES, no MOVBE.
INTEL_NEHALEM = _intel(
    "Intel(R) Xeon(R) CPU           X5570  @ 2.93GHz",
    "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi "
    "mmx fxsr sse sse2 ss ht tm pbe syscall nx rdtscp lm constant_tsc arch_perfmon pebs bts "
    "rep_good nopl xtopology nonstop_tsc cpuid aperfmperf pni dtes64 monitor ds_cpl vmx est tm2 "
    "ssse3 cx16 xtpr pdcm dca sse4_1 sse4_2 popcnt lahf_lm pti tpr_shadow vnmi flexpriority ept "
    "vpid dtherm ida",
    cpus=4,
)


def _arm(cores: list[tuple[str, str, str]], features: str, tail: str = "") -> str:
    """cpuinfo for cores given as (implementer, part, revision) sharing one Features line."""
    return (
        "".join(
            f"processor\t: {n}\nmodel name\t: ARMv8 Processor rev {rev} (v8l)\nBogoMIPS\t: 62.50\n"
            f"Features\t: {features}\nCPU implementer\t: {impl}\nCPU architecture: 8\n"
            f"CPU variant\t: 0x1\nCPU part\t: {part}\nCPU revision\t: {rev}\n\n"
            for n, (impl, part, rev) in enumerate(cores)
        )
        + tail
    )


A57, DENVER = ("0x41", "0xd07", "3"), ("0x4e", "0x003", "0")
# (e) Jetson TX2: two NVIDIA Denver cores and four Cortex-A57s.
JETSON_TX2 = _arm(
    [A57, DENVER, DENVER, A57, A57, A57], "fp asimd evtstrm aes pmull sha1 sha2 crc32"
)
# (f) Raspberry Pi 4 (BCM2711): four Cortex-A72s without the crypto extension.
RPI4 = _arm(
    [("0x41", "0xd08", "3")] * 4,
    "fp asimd evtstrm crc32 cpuid",
    "Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n",
)

CASES = {
    "amd_epyc_vm": AMD_EPYC_VM,
    "intel_skx": INTEL_SKX,
    "intel_hidden_avx512": INTEL_HIDDEN_AVX512,
    "intel_nehalem": INTEL_NEHALEM,
    "jetson_tx2": JETSON_TX2,
    "rpi4": RPI4,
}
# Written out independently of the module: LLVM feature -> cpuinfo flag it needs.
X86_NEEDS = {
    "sse3": "pni", "ssse3": "ssse3", "sse4.1": "sse4_1", "sse4.2": "sse4_2", "sse4a": "sse4a",
    "popcnt": "popcnt", "lzcnt": "abm", "movbe": "movbe", "bmi": "bmi1", "bmi2": "bmi2",
    "adx": "adx", "cx16": "cx16", "f16c": "f16c", "fma": "fma", "fma4": "fma4", "xop": "xop",
    "avx": "avx", "avx2": "avx2", "aes": "aes", "pclmul": "pclmulqdq", "vaes": "vaes",
    "vpclmulqdq": "vpclmulqdq", "gfni": "gfni", "sha": "sha_ni", "avxvnni": "avx_vnni",
    "avx512f": "avx512f", "avx512cd": "avx512cd", "avx512bw": "avx512bw",
    "avx512dq": "avx512dq", "avx512vl": "avx512vl", "avx512ifma": "avx512ifma",
    "avx512vbmi": "avx512vbmi", "avx512vbmi2": "avx512_vbmi2", "avx512vnni": "avx512_vnni",
    "avx512bitalg": "avx512_bitalg", "avx512vpopcntdq": "avx512_vpopcntdq",
    "avx512bf16": "avx512_bf16", "avx512fp16": "avx512_fp16", "amx-tile": "amx_tile",
    "amx-int8": "amx_int8", "amx-bf16": "amx_bf16", "prfchw": "3dnowprefetch",
}  # fmt: skip
ARM_NEEDS = {
    "neon": "asimd", "fp-armv8": "fp", "aes": "aes", "sha2": "sha2", "crc": "crc32",
    "lse": "atomics", "rdm": "asimdrdm", "dotprod": "asimddp", "fullfp16": "asimdhp",
    "i8mm": "i8mm", "bf16": "bf16", "sve": "sve", "sve2": "sve2",
}  # fmt: skip


def _features(target: dict) -> set[str]:
    """What LLVM enables for the target dict, ``mattr`` included."""
    return {str(f) for f in codegen.llvm_get_cpu_features(tvm.target.Target(target))}


def _assert_sigill_safe(cpuinfo_text: str) -> dict:
    """Check every ISA feature LLVM enables for the chosen target is in the host's flags."""
    arch, flags = read_cpu_flags(cpuinfo_text)
    target = host_target_dict(cpuinfo_text, num_cores=3)
    assert target["mcpu"] != "native"
    assert codegen.llvm_is_valid_cpu(target["mcpu"], target["mtriple"])
    assert target["num-cores"] == 3
    features = _features(target)
    needs = X86_NEEDS if arch == "x86_64" else ARM_NEEDS
    assert {needs[f] for f in features & needs.keys()} <= flags
    assert set(_isa_flags(arch, frozenset(features)).values()) <= flags
    return target


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_enabled_isa_feature_is_in_the_flags(name: str) -> None:
    _assert_sigill_safe(CASES[name])


def test_this_hosts_cpuinfo_is_safe() -> None:
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip(f"unsupported host {platform.machine()}")
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        _assert_sigill_safe(f.read())
    assert host_target_dict()["mcpu"] != "native"


@settings(max_examples=40, deadline=None)
@given(st.sets(st.sampled_from(sorted(set(X86_NEEDS.values()) & set(SKX_FLAGS.split())))))
def test_hiding_any_isa_flags_stays_safe(hidden: set[str]) -> None:
    flags = " ".join(f for f in SKX_FLAGS.split() if f not in hidden)
    _assert_sigill_safe(_intel("Intel(R) Xeon(R) CPU", flags))


def test_read_cpu_flags() -> None:
    arch, flags = read_cpu_flags(AMD_EPYC_VM)
    assert arch == "x86_64" and {"avx2", "fma", "sha_ni", "pni"} <= flags
    assert "avx512f" not in flags
    assert read_cpu_flags(RPI4) == ("aarch64", frozenset("fp asimd evtstrm crc32 cpuid".split()))
    with pytest.raises(ValueError, match="flags"):
        read_cpu_flags("processor\t: 0\nisa\t\t: rv64imafdc\n")


def test_flags_are_intersected_across_processors() -> None:
    text = _intel("x", SKX_FLAGS, cpus=1) + _intel("x", SKX_FLAGS.replace(" avx512f", ""), 1)
    assert "avx512f" not in read_cpu_flags(text)[1]


def test_amd_avx2_vm_gets_an_avx2_zen() -> None:
    target = _assert_sigill_safe(AMD_EPYC_VM)
    assert target["kind"] == "llvm" and target["mtriple"] == "x86_64-linux-gnu"
    assert target["mcpu"].startswith("znver")
    features = _features(target)
    assert {"avx2", "fma", "sha"} <= features and "avx512f" not in features


def test_skylake_sp_gets_avx512() -> None:
    target = _assert_sigill_safe(INTEL_SKX)
    assert {"avx512f", "avx512bw", "avx512vl"} <= _features(target)
    assert not target["mcpu"].startswith(("x86-64", "znver"))


def test_hidden_avx512_gets_no_avx512() -> None:
    features = _features(_assert_sigill_safe(INTEL_HIDDEN_AVX512))
    assert "avx2" in features and not any(f.startswith("avx512") for f in features)


def test_sse42_only_cpu() -> None:
    features = _features(_assert_sigill_safe(INTEL_NEHALEM))
    assert {"sse4.2", "popcnt", "cx16"} <= features
    assert not features & {"avx", "aes", "movbe"}


def test_jetson_tx2_picks_the_a57() -> None:
    target = _assert_sigill_safe(JETSON_TX2)
    assert target["mtriple"] == "aarch64-linux-gnu"
    assert target["mcpu"] == "cortex-a57" and target["mattr"] == ["+neon"]


def test_raspberry_pi4_drops_the_missing_crypto() -> None:
    target = _assert_sigill_safe(RPI4)
    assert target["mcpu"] == "cortex-a72"
    assert target["mattr"] == ["+neon", "-aes", "-sha2"]


def test_unknown_arm_cores_fall_back_to_generic() -> None:
    target = _assert_sigill_safe(_arm([DENVER, DENVER], "fp asimd evtstrm"))
    assert target["mcpu"] == "generic"


def test_big_little_uses_the_common_denominator() -> None:
    cores = [("0x41", "0xd03", "4")] * 4 + [("0x41", "0xd08", "2")] * 2  # RK3399
    target = _assert_sigill_safe(_arm(cores, "fp asimd evtstrm aes pmull sha1 sha2 crc32"))
    assert target["mcpu"] == "cortex-a53"


def test_machine_aliases_and_mismatch() -> None:
    assert host_target_dict(AMD_EPYC_VM, 1, "AMD64")["mcpu"].startswith("znver")
    with pytest.raises(ValueError, match="'aarch64'"):
        host_target_dict(AMD_EPYC_VM, 1, "aarch64")


@pytest.mark.parametrize("machine", ["riscv64", "armv7l", "ppc64le"])
def test_unknown_machine_is_rejected(machine: str) -> None:
    with pytest.raises(ValueError, match=rf"{machine}.*aarch64.*x86_64"):
        host_target_dict(AMD_EPYC_VM, num_cores=1, machine=machine)


def test_bad_num_cores_is_rejected() -> None:
    with pytest.raises(ValueError, match="0"):
        host_target_dict(AMD_EPYC_VM, num_cores=0)


def _add_kernel(n: int = 1024) -> tvm.IRModule:
    a = te.placeholder((n,), "float32", name="A")
    b = te.placeholder((n,), "float32", name="B")
    c = te.compute((n,), lambda i: a[i] + b[i], name="C")
    return tvm.IRModule({"main": te.create_prim_func([a, b, c])})


@pytest.mark.parametrize("name", ["jetson_tx2", "rpi4"])
def test_aarch64_targets_cross_compile(name: str) -> None:
    built = tvm.compile(_add_kernel(), target=host_target(CASES[name], num_cores=4))
    assert "ldr" in built.mod.inspect_source("asm")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="runs code on an x86_64 host")
def test_host_target_compiles_and_runs() -> None:
    target = host_target()
    assert target.attrs["mcpu"] != "native"
    built = tvm.compile(_add_kernel(), target=target)
    dev = tvm.cpu()
    x = np.arange(1024, dtype="float32")
    y = np.full(1024, 0.5, dtype="float32")
    out = tvm.runtime.tensor(np.zeros(1024, dtype="float32"), dev)
    built["main"](tvm.runtime.tensor(x, dev), tvm.runtime.tensor(y, dev), out)
    np.testing.assert_allclose(out.numpy(), x + y)
    if "avx2" in _features(host_target_dict()):  # mcpu really reached LLVM: 256-bit adds
        assert "ymm" in built.mod.inspect_source("asm")
