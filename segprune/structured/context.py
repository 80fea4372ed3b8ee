"""What one `segprune.prune` call asked for, checked once and handed to whichever method runs it.

`segprune.prune` reads and checks its arguments (the data, the fine-tune's length, the measurement size), then
gives every method the same `RunContext` instead of a dozen positional arguments, so a method takes what it
needs by name and a new setting is one field here, not one more parameter on every function in between.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segprune.structured.selection import GlobalRanking, Strategy
from segprune.training import DistillConfig, EpochReporter, TrainConfig

FAMILIES = ("oneshot", "regularised", "search")


@dataclass(frozen=True)
class RunContext:
    """One `prune` call's checked settings.

    Attributes:
        method: The method's name (`"l1"`, `"slimming"`, `"greedy"`, ...).
        family: `"oneshot"`, `"regularised"` or `"search"`.
        target: A budget such as `"flops=0.25"`, or None (one-shot by `ratio`).
        ratio: One-shot only: the share of channels to remove, a dict of layer name to ratio, or a strategy.
        data: The training data as a dataset (segmentation or instances), or None where nothing trains.
        finetune_epochs: Epochs of the fine-tune every method ends with (0: none).
        round_to: Every pruned group keeps a multiple of this many channels.
        ignore: Names of layers whose channels stay.
        image_size: (height, width) at which budgets, latency and the summary are measured.
        seed: Seeds Keras, the batches and the searches when given.
        train_config: How a segmentation model's phases train.
        distill: The fine-tune's distillation from the dense model, or None.
        checkpoint_path: Where the finished model is saved (and beside which a run keeps its state).
        folder: A search's folder, or None for a temporary one.
        resume: Continue the interrupted run.
        on_epoch, on_candidate, on_search_start: Progress callbacks (None: silent).
        settings: The method's own settings (`segprune.api.STRUCTURED_SETTINGS[method]` names them).
        heads: A Mask R-CNN's `heads` ratio: the share of its RoI heads' channels removed before the method ran, or
            None (kept whole).
        pyramid: Its `pyramid` ratio: the share of the FPN pyramid's channels removed with the heads, or None.

    Example:
        >>> context = RunContext("l1", "oneshot", target="flops=0.5")
        >>> context.trains
        False
    """

    method: str
    family: str
    target: str | None = None
    ratio: float | Mapping[str, float] | Strategy | None = None
    data: Any = None
    finetune_epochs: int = 0
    round_to: int = 8
    ignore: tuple[str, ...] = ()
    image_size: tuple[int, int] = (256, 256)
    seed: int | None = None
    train_config: TrainConfig | None = None
    distill: DistillConfig | None = None
    checkpoint_path: str | Path | None = None
    folder: str | Path | None = None
    resume: bool = False
    on_epoch: EpochReporter | None = None
    on_candidate: Callable[[dict, dict], None] | None = None
    on_search_start: Callable[[dict], None] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    heads: float | None = None
    pyramid: float | None = None

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}.")

    @property
    def trains(self) -> bool:
        """Whether the call trains on data: a fine-tune, a regularised phase or a search's candidates."""
        return bool(self.finetune_epochs) or self.family != "oneshot"

    @property
    def keeps_state(self) -> bool:
        """Whether `prune` itself trains (a regularised phase or the fine-tune), so that its run keeps a state to resume;
        a search keeps its own in its folder."""
        return bool(self.finetune_epochs) or self.family == "regularised"

    def setting(self, name: str, default: Any = None) -> Any:
        """The method's own setting `name`, or `default` when it was not given."""
        return self.settings.get(name, default)

    def selection(self) -> float | Mapping[str, float] | Strategy:
        """What a one-shot method selects by: `ratio` as given, ranked across groups with `global_ranking`; no
        ratio (a `target` is searched for instead) is 0."""
        if self.ratio is None:
            return 0.0
        if self.setting("global_ranking") and not isinstance(self.ratio, (Mapping, GlobalRanking)):
            return GlobalRanking(float(self.ratio))
        return self.ratio
