"""The CPU's peak from /proc/cpuinfo: cores, FMA pipes and width, MACs per lane per precision, clock."""

import pytest

from segprune.runtime.peak import cpu_from_cpuinfo, detect_cpu, peak_gmacs


def cpuinfo(vendor, family, model, name, flags, logical=4, threads_per_core=1, mhz="2600.000"):
    blocks = [
        f"processor\t: {index}\nvendor_id\t: {vendor}\ncpu family\t: {family}\nmodel\t\t: {model}\nmodel name\t: {name}\n"
        f"cpu MHz\t\t: {mhz}\nphysical id\t: 0\ncore id\t\t: {index // threads_per_core}\nflags\t\t: {flags}\n"
        for index in range(logical)
    ]
    return "\n".join(blocks)


ZEN4 = cpuinfo("AuthenticAMD", 25, 17, "AMD EPYC", "fpu avx avx2 fma avx512f avx512bw avx512_bf16 avx512_vnni", logical=2)
SAPPHIRE_RAPIDS = cpuinfo(
    "GenuineIntel", 6, 143, "Intel(R) Xeon(R) Platinum 8480+", "avx2 fma avx512f avx512_bf16 avx512_vnni amx_bf16 amx_int8 amx_tile",
    logical=8, threads_per_core=2,
)
HASWELL = cpuinfo("GenuineIntel", 6, 63, "Intel(R) Xeon(R) CPU E5-2680 v3 @ 2.50GHz", "avx avx2 fma", logical=4, threads_per_core=2)
ALDER_LAKE = cpuinfo("GenuineIntel", 6, 151, "12th Gen Intel(R) Core(TM) i7-12700", "avx avx2 fma avx_vnni")
ICE_LAKE_CLIENT = cpuinfo("GenuineIntel", 6, 126, "Intel(R) Core(TM) i7-1065G7 CPU @ 1.30GHz", "avx2 fma avx512f avx512_vnni")


def test_zen4_double_pumps_avx512_on_two_256_bit_pipes():
    cpu = cpu_from_cpuinfo(ZEN4, clock=(3.7, "given"))
    assert (cpu.cores, cpu.fma_pipes, cpu.pipe_bits) == (2, 2, 256)
    assert [cpu.macs_per_cycle(p) for p in ("fp32", "bf16", "int8")] == [16, 32, 64]
    assert cpu.peak_gmacs("fp32") == pytest.approx(2 * 16 * 3.7)
    assert cpu.peak_gmacs("int8", threads=1) == pytest.approx(64 * 3.7)
    assert cpu.peak_gmacs("fp32", threads=8) == cpu.peak_gmacs("fp32")  # more threads than cores: no more peak


def test_hyperthreads_of_one_core_count_once_and_amx_sets_the_low_precision_peak():
    cpu = cpu_from_cpuinfo(SAPPHIRE_RAPIDS, clock=(2.0, "given"))
    assert (cpu.cores, cpu.threads_per_core) == (4, 2)
    assert cpu.microarchitecture == "Intel Xeon with AVX-512 and AMX"  # a card names the units its peak counts
    assert [cpu.macs_per_cycle(p) for p in ("fp32", "bf16", "int8")] == [32, 512, 1024]
    only_one_core = cpu_from_cpuinfo(SAPPHIRE_RAPIDS, allowed={0, 1}, clock=(2.0, "given"))
    assert only_one_core.cores == 1


def test_without_dot_product_instructions_a_precision_has_no_peak():
    cpu = cpu_from_cpuinfo(HASWELL, clock=(2.5, "given"))
    assert cpu.macs_per_cycle("fp32") == 16 and not cpu.supports("bf16") and cpu.peak_gmacs("int8") is None
    alder = cpu_from_cpuinfo(ALDER_LAKE, clock=(4.0, "given"))
    assert (alder.macs_per_cycle("int8"), alder.supports("bf16")) == (64, False)  # AVX-VNNI: 256-bit
    client = cpu_from_cpuinfo(ICE_LAKE_CLIENT, clock=(3.9, "given"))
    assert (client.fma_pipes, client.macs_per_cycle("fp32"), client.macs_per_cycle("int8")) == (1, 16, 64)


def test_clock_from_the_model_name_when_cpufreq_and_measurement_are_missing(monkeypatch):
    import segprune.runtime.peak as peak

    monkeypatch.setattr(peak, "_CPUFREQ_MAX", peak.Path("/nonexistent"))
    monkeypatch.setattr(peak, "measure_clock_ghz", lambda: None)
    peak._clock.cache_clear()
    assert cpu_from_cpuinfo(HASWELL).clock_ghz == 2.5 and "model name" in cpu_from_cpuinfo(HASWELL).clock_source
    assert cpu_from_cpuinfo(ZEN4).clock_source.startswith("/proc/cpuinfo") and cpu_from_cpuinfo(ZEN4).clock_ghz == pytest.approx(2.6)
    peak._clock.cache_clear()


def test_this_machine_and_precision_names():
    cpu = detect_cpu()
    assert cpu.cores >= 1 and 0.5 < cpu.clock_ghz < 7.0
    assert peak_gmacs("int8 (fp32 fallback)", 1) == cpu.peak_gmacs("int8", 1)
    assert peak_gmacs("fp16", 1) is None
    with pytest.raises(ValueError, match="Unknown precision 'int4'"):
        cpu.macs_per_cycle("int4")
