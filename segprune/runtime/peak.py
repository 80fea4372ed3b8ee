"""The CPU's theoretical peak in multiply-accumulates per second, per precision, computed from the CPU itself.

peak = cores x MACs per cycle per core x clock, where

- **cores**: the physical cores this process may run on (`os.sched_getaffinity`, mapped to distinct
  (physical id, core id) pairs of `/proc/cpuinfo`, so two hyperthreads of one core count once), capped by
  the threads a run uses;
- **MACs per cycle per core**: FMA pipes x 32-bit lanes per pipe x MACs per lane. The lanes come from the
  vector width the pipes execute (AVX-512 on 256-bit pipes, as on AMD Zen 4, is double-pumped: a 512-bit
  FMA takes both pipes, so the width that counts is the pipes', not the instruction's). MACs per 32-bit lane:
  fp32 FMA 1; bf16 `vdpbf16ps` (AVX512_BF16) 2; int8 `vpdpbusd` (AVX512_VNNI / AVX_VNNI) 4. AMX tiles
  (Intel Sapphire Rapids and later) do 512 bf16 or 1024 int8 MACs per cycle per core (Intel's 1024 and
  2048 "operations", each MAC two);
- **clock**: in this order, cpufreq's `cpuinfo_max_freq` (what `lscpu` prints as "CPU max MHz"), the clock
  measured by timing a chain of dependent 1-cycle integer additions on x86-64 Linux (virtual machines
  usually hide cpufreq, and their "cpu MHz" is the nominal TSC rate, below what the cores run at), the
  "@ x.xxGHz" of the model name, and last `/proc/cpuinfo`'s "cpu MHz". `Cpu.clock_source` names the one used.

FMA pipes per microarchitecture, the one assumption not read from the CPU (vendor, family, model and flags
are): Intel server cores with AVX-512 (Xeon Skylake-SP and later): 2 x 512-bit (Xeon Bronze and some
Silver parts have one; their peak reads twice too high); Intel client cores with AVX-512: 1 x 512-bit (ports
0 and 1 fused); Intel without AVX-512: 2 x 256-bit; AMD Zen 1 (family 0x17 below model 0x30): 2 x 128-bit;
Zen 2, Zen 3 and Zen 4 (Zen 4 = family 0x19 with AVX-512): 2 x 256-bit; Zen 5 (family 0x1A): 2 x 512-bit
(mobile Zen 5 double-pumps on 256-bit pipes; its peak reads twice too high). On an AMD EPYC Zen 4 the
measured instruction throughputs agree: one 512-bit `vfmadd231ps`, `vdpbf16ps` or `vpdpbusd` per cycle per
core, two 256-bit ones (benchmarks/cpu_peak.py checks the peak against oneDNN matrix multiplies).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import re
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "int8")
_CPUFREQ_MAX = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
_AMX_MACS_PER_CYCLE = {"bf16": 512, "int8": 1024}
_MACS_PER_LANE = {"fp32": 1, "bf16": 2, "int8": 4}


@dataclass(frozen=True)
class Cpu:
    """What the peak is computed from; `describe()` says it in a line."""

    model_name: str
    vendor: str
    family: int
    model: int
    microarchitecture: str
    cores: int  # physical cores this process may use
    threads_per_core: int
    flags: frozenset[str]
    fma_pipes: int
    pipe_bits: int  # the width each FMA pipe executes (256 on Zen 4: AVX-512 is double-pumped)
    clock_ghz: float
    clock_source: str

    def supports(self, precision: str) -> bool:
        """Whether the CPU has instructions that run `precision` at its own rate (fp32 always)."""
        return self.macs_per_cycle(precision) is not None

    def macs_per_cycle(self, precision: str) -> int | None:
        """Multiply-accumulates one core can complete per cycle at `precision`; None without the instructions."""
        if precision not in PRECISIONS:
            raise ValueError(f"Unknown precision {precision!r}; choose one of {list(PRECISIONS)}.")
        if precision in _AMX_MACS_PER_CYCLE and f"amx_{precision}" in self.flags:
            return _AMX_MACS_PER_CYCLE[precision]
        lanes = self.fma_pipes * self.pipe_bits // 32
        if precision == "bf16" and "avx512_bf16" not in self.flags:
            return None
        if precision == "int8" and not {"avx512_vnni", "avx_vnni"} & self.flags:
            return None
        if precision == "int8" and "avx512_vnni" not in self.flags:
            lanes = self.fma_pipes * min(self.pipe_bits, 256) // 32  # AVX-VNNI is 256-bit only
        return lanes * _MACS_PER_LANE[precision]

    def peak_gmacs(self, precision: str = "fp32", threads: int | None = None) -> float | None:
        """Billions of multiply-accumulates per second `threads` threads (default: every core) can reach at `precision`.

        Example:
            >>> cpu = detect_cpu()
            >>> cpu.peak_gmacs("fp32", threads=2)
            115.2
        """
        per_cycle = self.macs_per_cycle(precision)
        if per_cycle is None:
            return None
        cores = self.cores if threads is None else max(1, min(threads, self.cores))
        return cores * per_cycle * self.clock_ghz

    def describe(self) -> str:
        return (
            f"{self.model_name} ({self.microarchitecture}), {self.cores} core(s) x {self.threads_per_core} thread(s), "
            f"{self.fma_pipes} x {self.pipe_bits}-bit FMA pipes per core, {self.clock_ghz:.2f} GHz ({self.clock_source})"
        )


@lru_cache(maxsize=1)
def detect_cpu() -> Cpu:
    """The CPU this process runs on (read once per process; the clock may be measured, ~0.1 s)."""
    return cpu_from_cpuinfo(_read("/proc/cpuinfo"), os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None)


def cpu_from_cpuinfo(cpuinfo: str, allowed: set[int] | None = None, clock: tuple[float, str] | None = None) -> Cpu:
    """The CPU described by `/proc/cpuinfo` text; `allowed` the logical CPUs the process may use (None: all).

    `clock` is (GHz, source); by default it is found as the module says.
    """
    processors = [_fields(block) for block in cpuinfo.strip().split("\n\n") if "processor" in block]
    if not processors:
        raise ValueError("No processor found in the /proc/cpuinfo text; expected blocks with 'processor', 'flags', 'model name'.")
    usable = [fields for fields in processors if allowed is None or int(fields.get("processor", -1)) in allowed] or processors
    first = usable[0]
    physical = {(fields.get("physical id", "0"), fields.get("core id", fields.get("processor"))) for fields in usable}
    flags = frozenset(first.get("flags", "").split())
    vendor, family, model = first.get("vendor_id", ""), int(first.get("cpu family", "0")), int(first.get("model", "0"))
    name = first.get("model name", "unknown CPU")
    microarchitecture, fma_pipes, pipe_bits = _fma_units(vendor, family, model, name, flags)
    clock = clock or _clock(name, first.get("cpu MHz", ""))
    return Cpu(
        model_name=name,
        vendor=vendor,
        family=family,
        model=model,
        microarchitecture=microarchitecture,
        cores=len(physical),
        threads_per_core=max(1, len(usable) // len(physical)),
        flags=flags,
        fma_pipes=fma_pipes,
        pipe_bits=pipe_bits,
        clock_ghz=clock[0],
        clock_source=clock[1],
    )


def _fma_units(vendor: str, family: int, model: int, name: str, flags: frozenset[str]) -> tuple[str, int, int]:
    """(microarchitecture, FMA pipes per core, bits per pipe): the table in the module docstring."""
    avx512 = "avx512f" in flags
    widest = 512 if avx512 else 256 if "avx2" in flags or "avx" in flags else 128
    if vendor == "AuthenticAMD":
        if family == 0x17:
            return ("AMD Zen/Zen+", 2, 128) if model < 0x30 else ("AMD Zen 2", 2, 256)
        if family == 0x19:
            return ("AMD Zen 4 (AVX-512 double-pumped)", 2, 256) if avx512 else ("AMD Zen 3", 2, 256)
        if family == 0x1A:
            return "AMD Zen 5", 2, widest
    if vendor == "GenuineIntel" and family == 6:
        if avx512 and "xeon" not in name.lower():
            return "Intel client core with AVX-512 (ports 0+1 fused)", 1, 512
        if avx512:
            return ("Intel Xeon with AVX-512 and AMX" if "amx_tile" in flags else "Intel Xeon with AVX-512"), 2, 512
        return "Intel core without AVX-512", 2, widest
    return f"unknown ({vendor or 'no vendor'} family {family:#x}; assumed 2 FMA pipes of the widest vector)", 2, widest


@lru_cache(maxsize=8)
def _clock(name: str, cpu_mhz: str) -> tuple[float, str]:
    """(GHz, source): the first of the sources the module docstring lists that this machine offers."""
    maximum = _read(_CPUFREQ_MAX).strip()
    if maximum:
        return int(maximum) / 1e6, "cpufreq cpuinfo_max_freq"
    measured = measure_clock_ghz()
    if measured:
        return measured, "measured: dependent 1-cycle additions"
    named = re.search(r"@\s*([\d.]+)\s*GHz", name)
    if named:
        return float(named.group(1)), "the model name"
    if cpu_mhz:
        return float(cpu_mhz) / 1000, "/proc/cpuinfo cpu MHz (nominal)"
    raise ValueError(f"Cannot tell the clock of {name!r}: no cpufreq, no measurement, no GHz in the name, no 'cpu MHz'.")


# x86-64, System V: xor eax, eax; loop: 100 x (add rax, rsi); dec rdi; jnz loop; ret, called as (passes, 1).
# Each addition waits for the one before it (1 cycle latency on every x86-64 core), so the loop runs 100 cycles per
# pass. The addend is a register the renamer cannot know: Intel cores since Golden Cove (Alder Lake, Sapphire
# Rapids) fold a chain of `add rax, 1` (an immediate) at rename, several per cycle, which made the same loop with
# an immediate read 24 GHz on a 2.6 GHz Xeon with AMX.
_ADDITIONS = 100
_CLOCK_LOOP = (
    bytes.fromhex("31c0") + bytes.fromhex("4801f0") * _ADDITIONS + bytes.fromhex("48ffcf") + b"\x0f\x85"
    + (-(3 * _ADDITIONS + 3 + 6)).to_bytes(4, "little", signed=True) + bytes.fromhex("c3")
)


def measure_clock_ghz(passes: int = 5_000, repeats: int = 100) -> float | None:
    """The clock one core runs at (GHz), from a loop of dependent additions; None off x86-64 Linux or where
    executable memory is refused.

    The best of many short runs (0.1 ms each at 3.5 GHz, ~60 ms in all): a core shared with other processes
    (a virtual CPU, a busy machine) runs some of them uninterrupted, at its real clock.
    """
    if platform.machine() not in ("x86_64", "AMD64") or not hasattr(mmap, "PROT_EXEC"):
        return None
    try:
        memory = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    except (OSError, ValueError):
        return None
    memory.write(_CLOCK_LOOP)
    loop = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)(ctypes.addressof(ctypes.c_char.from_buffer(memory)))
    if loop(3, 1) != 3 * _ADDITIONS:
        return None
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        loop(passes, 1)
        best = max(best, passes * _ADDITIONS / (time.perf_counter() - started) / 1e9)
    del loop
    return best


def _fields(block: str) -> dict[str, str]:
    pairs = (line.split(":", 1) for line in block.splitlines() if ":" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def peak_gmacs(precision: str, threads: int) -> float | None:
    """This machine's peak GMAC/s at `precision` ("fp32", "bf16", "int8", or an executed precision such as
    "int8 (fp32 fallback)": its leading name) for `threads` threads; None where the CPU cannot be read or lacks
    the instructions.

    Example:
        >>> peak_gmacs("bf16", threads=2)
        235.9
    """
    name = precision.split()[0]
    if name not in PRECISIONS:
        return None
    try:
        return detect_cpu().peak_gmacs(name, threads)
    except ValueError:  # no /proc/cpuinfo (not Linux) or no clock
        return None
