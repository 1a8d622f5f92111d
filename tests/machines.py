"""Recorded CPU machines: /proc/cpuinfo and sysfs cache facts of the three kinds of 2-core VM
this project's sessions and CI have run on, so that profile construction is tested for each
on any machine (nothing here executes their instructions).

- ``zen3_avx2``: an AMD EPYC VM that hides AVX-512 (AVX2 + FMA; TVM's host is ``znver3``),
  recorded 2026-12-02 (the slowest of the three; the suite's time budget holds here).
- ``zen4_avx512``: an AMD EPYC Zen 4 VM with AVX-512 (``znver4``).
- ``sapphire_rapids``: an Intel Xeon Sapphire Rapids VM with AVX-512, AMX and AVX512-FP16.
"""

from las_compiler.predictor.profiles import KB, MB, Machine


def _cpuinfo(vendor: str, family: int, model: int, name: str, mhz: float, flags: str,
             cpus: int = 2) -> str:
    block = (f"processor\t: {{n}}\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
             f"model\t\t: {model}\nmodel name\t: {name}\nstepping\t: 1\ncpu MHz\t\t: {mhz:.3f}\n"
             f"siblings\t: {cpus}\ncpu cores\t: {cpus}\nfpu\t\t: yes\nflags\t\t: {flags}\n"
             "clflush size\t: 64\ncache_alignment\t: 64\n\n")
    return "".join(block.replace("{n}", str(i)) for i in range(cpus))


_BASE = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx "
         "fxsr sse sse2")
ZEN3_AVX2_FLAGS = (
    f"{_BASE} ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
    "xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid "
    "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor "
    "lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext ssbd ibrs "
    "ibpb stibp vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap "
    "clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero xsaveerptr wbnoinvd arat umip "
    "pku ospke vaes vpclmulqdq rdpid fsrm"
)
ZEN4_AVX512_FLAGS = (
    f"{_BASE} ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl "
    "nonstop_tsc cpuid extd_apicid aperfmperf tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid "
    "sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy "
    "cr8_legacy abm sse4a misalignsse 3dnowprefetch topoext perfctr_core invpcid_single ssbd "
    "ibrs ibpb stibp vmmcall fsgsbase bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed "
    "adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec "
    "xgetbv1 xsaves avx512_bf16 clzero xsaveerptr rdpru wbnoinvd arat avx512vbmi pku ospke "
    "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm"
)
SAPPHIRE_RAPIDS_FLAGS = (
    f"{_BASE} ss ht syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon rep_good nopl "
    "xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq ssse3 fma cx16 pdcm "
    "pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand "
    "hypervisor lahf_lm abm 3dnowprefetch cpuid_fault invpcid_single ssbd ibrs ibpb stibp "
    "ibrs_enhanced fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed "
    "adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec "
    "xgetbv1 xsaves avx_vnni avx512_bf16 wbnoinvd ida arat avx512vbmi umip pku ospke waitpkg "
    "avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq rdpid "
    "cldemote movdiri movdir64b md_clear serialize tsxldtrk amx_bf16 avx512_fp16 amx_tile "
    "amx_int8 flush_l1d arch_capabilities"
)

RECORDED = {
    "zen3_avx2": Machine(
        _cpuinfo("AuthenticAMD", 25, 1, "AMD EPYC", 2445.4, ZEN3_AVX2_FLAGS),
        caches={1: 32 * KB, 2: 512 * KB, 3: 32 * MB}, l1_ways=8, l1_way_bytes=4 * KB, cores=2),
    "zen4_avx512": Machine(
        _cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC 9R14", 3545.0, ZEN4_AVX512_FLAGS),
        caches={1: 32 * KB, 2: 1 * MB, 3: 32 * MB}, l1_ways=8, l1_way_bytes=4 * KB, cores=2),
    "sapphire_rapids": Machine(
        _cpuinfo("GenuineIntel", 6, 143, "Intel(R) Xeon(R) Processor", 2100.0,
                 SAPPHIRE_RAPIDS_FLAGS),
        caches={1: 48 * KB, 2: 2 * MB, 3: 105 * MB}, l1_ways=12, l1_way_bytes=4 * KB, cores=2),
}
# What tests that compile for this machine's target price `auto` with: a fixed machine, so
# no test's outcome depends on the caches or clock of the CPU it runs on.
TEST_MACHINE = RECORDED["zen3_avx2"]
