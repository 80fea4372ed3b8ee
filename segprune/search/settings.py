"""Settings and results shared by greedy and random search."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras

from segprune.runtime.latency import check_runtime
from segprune.search.space import Configuration
from segprune.sizes import as_image_size

EXECUTORS = ("local", "ray")


@dataclass(frozen=True)
class SearchSettings:
    """Settings common to greedy and random search.

    Attributes:
        target: `"flops=F"`, `"params=F"` or `"latency=F"` (fractions of the dense model's).
        image_size: (height, width) at which MACs and latency are measured (batch 1); N is read as NxN.
        threads: ONNX Runtime intra-op threads for latency.
        round_to: Kept widths are multiples of this.
        final_epochs: Epochs of the long fine-tune of the chosen configuration.
        workers: Processes evaluating candidates in parallel (`executor="local"`).
        time_result: Time the result against the dense model at the end (a sweep, which times every
            model together afterwards, turns this off). Latency targets are always timed.
        max_minutes: Stop starting candidates after this many minutes and return the best result so far
            (greedy: the last finished step, narrowed to the budget); `resume` continues past the limit.
        executor: `"local"` (this process, or `workers` processes) or `"ray"` (every candidate a Ray task).
        ray_address: The Ray cluster to use (`"auto"`, `"ray://host:10001"`); None starts a local one.
        runtime: The runtime latency is tabled and timed on (`"onnxruntime"`, `"openvino"`): the one the
            model will ship on.
        precision: `"fp32"`, `"bf16"` (OpenVINO) or `"int8"` (QDQ), the precision the model will ship in.
        heads: Recorded, not applied: the share of a Mask R-CNN's RoI heads' channels that `segprune.prune(...,
            heads=R)` removed before the search, so what the dense model the search starts from (saved in its
            folder) was cut to. The log's header keeps it, so a resume with another ratio is refused.
        pyramid: Recorded like `heads`: the share of the pyramid's channels `prune(..., pyramid=P)` removed.
    """

    target: str = "flops=0.25"
    image_size: tuple[int, int] = (256, 256)
    threads: int = 2
    round_to: int = 8
    final_epochs: int = 40
    workers: int = 1
    time_result: bool = True
    max_minutes: float | None = None
    executor: str = "local"
    ray_address: str | None = None
    runtime: str = "onnxruntime"
    precision: str = "fp32"
    heads: float | None = None
    pyramid: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_size", as_image_size(self.image_size))  # frozen: N or "HxW" read once, here
        check_runtime(self.runtime, self.precision)
        if self.executor not in EXECUTORS:
            raise ValueError(f"Unknown executor {self.executor!r}; choose one of {list(EXECUTORS)}.")
        if self.ray_address is not None and self.executor != "ray":
            raise ValueError("ray_address is the Ray cluster candidates run on: it needs executor='ray' (--executor ray).")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be > 0, got {self.max_minutes}.")


# Settings that change how fast a search runs, never what it chooses: left out of its log's header, so a
# search may be resumed with other values.
RUN_SETTINGS = ("workers", "time_result", "max_minutes", "executor", "ray_address")


@dataclass
class SearchResult:
    """The outcome of a search.

    Attributes:
        model: The chosen configuration, built and fine-tuned (a plain Keras model).
        config: Its width per group.
        resource_fraction: Its estimated share of the dense model's resource (the search's own measure).
        measured: Dense and pruned ONNX Runtime latency (ms) and the speed-up, timed side by side at the end.
        candidates: Candidates evaluated (including those read back from the log on resume).
        seconds: Wall-clock time of the search, fine-tune included.
        latency_source: How latency was estimated during the search (for latency targets).
        notes: Anything the search had to decide.
    """

    model: keras.Model
    config: Configuration
    resource_fraction: float
    measured: dict = field(default_factory=dict)
    candidates: int = 0
    seconds: float = 0.0
    latency_source: str | None = None
    notes: list[str] = field(default_factory=list)
