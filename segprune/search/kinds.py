"""What pruning does differently for a Mask R-CNN or a Segment Anything model than for a segmentation network.

`segprune.prune` and the searches narrow one functional graph. For a segmentation network that graph is the
model; for a `MaskRCNN` it is the trunk (encoder, FPN, shared RPN head): budgets price the trunk's MACs, the
timing times the trunk, and the RoI heads are carried along as copies (or narrowed first by a ratio of their own,
`prune`'s `heads`, with the pyramid they pool); for a Segment Anything model it is the
image encoder, and the prompt encoder and mask decoder are the copies. Everything else that differs between the
kinds is a method of the model's kind (`model_kind`): which methods and options apply, what data they train on,
how a candidate is scored (Dice or validation mask AP), how the result is fine-tuned and saved.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import keras

from segprune import defaults
from segprune._io import save_model
from segprune.data.dataset import SegmentationDataset
from segprune.data.instances import InstanceDataset
from segprune.data.python import as_dataset, check_fingerprintable
from segprune.graph.groups import ChannelGraph
from segprune.instance_metrics import evaluate_instances
from segprune.metrics import check_fits_data, evaluate
from segprune.models.loading import copy_model, load_model
from segprune.models.mask_rcnn import MaskRCNN, fit_mask_rcnn, is_mask_rcnn_file, load_mask_rcnn, save_mask_rcnn
from segprune.models.outputs import output_kind
from segprune.models.sam import image_encoder, is_sam, neck_layers, save_sam, with_image_encoder
from segprune.runtime.detector_latency import check_detector_timing, time_detectors
from segprune.runtime.latency import time_models
from segprune.search.space import shrink
from segprune.structured.context import RunContext
from segprune.structured.heads import HeadsSummary, prune_heads
from segprune.structured.importance import CRITERIA, DATA_CRITERIA
from segprune.training import DistillConfig, TrainResult, train_phase
from segprune.training.run_state import RunState, run_identity

# Criteria that need no data: the data-driven ones read a segmentation dataset, which a detector does not train on.
MASK_RCNN_METHODS = tuple(criterion for criterion in CRITERIA if criterion not in DATA_CRITERIA)


class ModelKind(ABC):
    """What pruning asks of a kind of model; `model_kind` picks the one that answers for a model."""

    detector: bool

    # ------------------------------------------------------------------------------ the network and its copies
    @abstractmethod
    def network(self, model: keras.Model) -> keras.Model:
        """The functional graph that is narrowed, priced and timed."""

    @abstractmethod
    def with_network(self, model: keras.Model, network: keras.Model) -> keras.Model:
        """`model` with its network replaced by `network` (a pruned one); anything else is copied."""

    def kept_whole(self, model: keras.Model) -> tuple[str, ...]:
        """Layers of the network whose channels this kind always keeps, added to `prune`'s `ignore`."""
        return ()

    def prune_heads(
        self, model: keras.Model, ratio: float | None, method: str, round_to: int, ignore: Iterable[str] = (), pyramid: float | None = None
    ) -> tuple[keras.Model, HeadsSummary | None]:
        """`model` with its per-region heads narrowed by `ratio` (`prune`'s `heads`) and the features they read by
        `pyramid`, ranked by `method`'s criterion, `ignore`'s layers kept whole, and their cost per region before and
        after; unchanged when both are None. Only a detector has such heads."""
        for name, option, value in (("heads", "--prune-heads", ratio), ("pyramid", "--prune-pyramid", pyramid)):
            if value is not None:
                raise ValueError(
                    f"{name}={value!r} ({option}) prunes a Mask R-CNN's RoI heads or the pyramid they pool; this model "
                    f"({type(model).__name__}) has none. Leave it out: ratio= or target= prune the whole network."
                )
        return model, None

    @abstractmethod
    def copy(self, model: keras.Model) -> keras.Model:
        """A copy with the same weights."""

    @abstractmethod
    def save(self, model: keras.Model, path: str | Path) -> Path:
        """Saves `model` as one file that `load_parent` reads back."""

    @abstractmethod
    def score(self, model: keras.Model, data, split: str) -> float:
        """What candidates are compared by on `split` (higher is better)."""

    def time(self, models: Sequence[keras.Model], settings) -> list[float]:
        """Median ms of each model as it ships, interleaved in one run, at a search's `settings` (`image_size`, `threads`,
        `runtime`, `precision`): its network, where whatever else it has is not timed."""
        return time_models([self.network(model) for model in models], settings.image_size, settings.threads, settings.runtime, settings.precision)

    def shrink(
        self, model: keras.Model, current: Mapping[str, int], wanted: Mapping[str, int], importance: str = "l1", data=None,
        graph: ChannelGraph | None = None,
    ) -> keras.Model:
        """`space.shrink` of the network (`graph`: its channel graph, when built already); the rest is copied."""
        network = shrink(self.network(model), current, wanted, importance, self.criterion_data(data), graph)
        return self.with_network(model, network)

    # ------------------------------------------------------------------------------------ what prune asks
    @abstractmethod
    def check_request(self, method: str, family: str, options: Mapping[str, object]) -> None:
        """Refuses a method (of a family: `"oneshot"`, `"regularised"`, `"search"`) or an option of `prune`
        (`train_config`, `distill`, `folder`, `resume` as given, and the method's settings given) this kind cannot take."""

    @abstractmethod
    def default_finetune_epochs(self, family: str) -> int:
        """The fine-tune's epochs when `prune` is given none."""

    @abstractmethod
    def distillation(self, distill: DistillConfig | bool | None) -> DistillConfig | None:
        """`prune`'s `distill` argument as the fine-tune reads it."""

    @abstractmethod
    def training_data(self, model: keras.Model, data, context: RunContext, resuming: bool):
        """`data` as the dataset the call trains on, checked against `model` before any work or run state."""

    @abstractmethod
    def criterion_data(self, data):
        """The data the importance criteria and the bias compensation read."""

    @abstractmethod
    def open_run(self, model: keras.Model, context: RunContext, settings: dict) -> RunState:
        """The run's state (`settings` identify it, so that a resume refuses another run's)."""

    @abstractmethod
    def finetune(self, pruned: keras.Model, dense: keras.Model, context: RunContext, run: RunState) -> tuple[list[TrainResult], list[str]]:
        """The fine-tune every method ends with (none with `finetune_epochs=0`): its training runs and notes."""

    @abstractmethod
    def complete(self, run: RunState, model: keras.Model, context: RunContext) -> None:
        """Saves the finished model to `context.checkpoint_path` (when given) and ends the run."""


class SegmentationKind(ModelKind):
    """A segmentation network: the model is the graph that is pruned; scored by Dice; trained (resumably) by `train`."""

    detector = False

    def network(self, model: keras.Model) -> keras.Model:
        return model

    def with_network(self, model: keras.Model, network: keras.Model) -> keras.Model:
        return network

    def copy(self, model: keras.Model) -> keras.Model:
        return copy_model(model)

    def save(self, model: keras.Model, path: str | Path) -> Path:
        return save_model(model, path)

    def score(self, model: keras.Model, data, split: str) -> float:
        return float(evaluate(model, data, split).dice)  # Dice

    def check_request(self, method: str, family: str, options: Mapping[str, object]) -> None:
        return None  # a segmentation network takes every method and option

    def default_finetune_epochs(self, family: str) -> int:
        return defaults.ONESHOT_FINETUNE_EPOCHS if family == "oneshot" else defaults.FINETUNE_EPOCHS

    def distillation(self, distill: DistillConfig | bool | None) -> DistillConfig | None:
        """True is the default distillation, False or None none."""
        if isinstance(distill, DistillConfig) or distill is None:
            return distill
        if isinstance(distill, bool):
            return DistillConfig() if distill else None
        raise ValueError(f"distill takes True, False or a DistillConfig(temperature=..., weight=...), got {distill!r}.")

    def training_data(self, model: keras.Model, data, context: RunContext, resuming: bool):
        """Python data (arrays, a `tf.data.Dataset`, ...) are read once with the classes `model` predicts; data are
        needed by a fine-tune and every trained method, and must match the model's output."""
        data = segmentation_data(model, data, resuming)
        if data is None and context.trains:
            needs = "fine-tuning" if context.family == "oneshot" else f"method {context.method!r}"
            raise ValueError(f"{needs} trains on data: pass data=segprune.load_data(...) (or --data on the command line).")
        if data is not None:
            check_fits_data(model, data)  # a classifier or another class count is refused now
        return data

    def criterion_data(self, data):
        return data

    def open_run(self, model: keras.Model, context: RunContext, settings: dict) -> RunState:
        """Kept beside the checkpoint while `prune` trains (so that it resumes), else in memory."""
        identity = run_identity("prune", context.method, model, context.data, settings)
        return RunState.open(context.checkpoint_path if context.keeps_state else None, identity, context.resume)

    def finetune(self, pruned: keras.Model, dense: keras.Model, context: RunContext, run: RunState) -> tuple[list[TrainResult], list[str]]:
        """The run's `finetune` phase, taught by `dense` when distilling."""
        if not context.finetune_epochs:
            return [], []
        teacher = dense if context.distill is not None else None
        training = train_phase(
            run, "finetune", pruned, context.data, context.finetune_epochs, context.train_config, context.on_epoch, teacher=teacher,
            distill=context.distill,
        )
        return [training], []

    def complete(self, run: RunState, model: keras.Model, context: RunContext) -> None:
        """Saves the finished model, then removes the run's state."""
        run.complete(model, context.checkpoint_path)


class MaskRCNNKind(ModelKind):
    """A `MaskRCNN`: its trunk is the graph that is pruned, its RoI heads are copied (or narrowed first, `prune_heads`); scored by validation mask AP;
    fine-tuned by `fit_mask_rcnn`, which keeps the epoch with the best validation mask AP."""

    detector = True

    def network(self, model: MaskRCNN) -> keras.Model:
        return model.trunk

    def with_network(self, model: MaskRCNN, network: keras.Model) -> MaskRCNN:
        return MaskRCNN(model.config, network, copy_model(model.box_head), copy_model(model.mask_head))

    def prune_heads(
        self, model: MaskRCNN, ratio: float | None, method: str, round_to: int, ignore: Iterable[str] = (), pyramid: float | None = None
    ) -> tuple[MaskRCNN, HeadsSummary | None]:
        """The box and mask heads (`ratio`) and the pyramid they pool (`pyramid`) narrowed first, so that a search scores
        its candidates with the heads that ship and the trunk is pruned at the pyramid's new width; ranked by the one-shot
        criterion, or by l1 for a search (which ranks the trunk's channels by l1 too)."""
        if ratio is None and pyramid is None:
            return model, None
        return prune_heads(model, ratio, method if method in MASK_RCNN_METHODS else "l1", round_to, ignore, pyramid)

    def copy(self, model: MaskRCNN) -> MaskRCNN:
        return self.with_network(model, copy_model(model.trunk))

    def save(self, model: MaskRCNN, path: str | Path) -> Path:
        return save_mask_rcnn(model, path)

    def score(self, model: MaskRCNN, data, split: str) -> float:
        return float(evaluate_instances(model, data, split)["ap"])

    def time(self, models: Sequence[MaskRCNN], settings) -> list[float]:
        """The whole detector exported as one graph (proposals, NMS, RoIAlign, both heads, mask pasting): what the user
        runs, and where the heads, which run per region, cost more than the trunk."""
        return time_detectors(models, settings.image_size, settings.threads, settings.runtime, settings.precision)

    def check_request(self, method: str, family: str, options: Mapping[str, object]) -> None:
        """A detector is pruned one-shot by a data-free criterion or searched; its fine-tune takes neither a
        `train_config` nor a distillation (a resumable run state or a folder only in a search)."""
        if method not in MASK_RCNN_METHODS and family != "search":
            raise ValueError(
                f"A Mask R-CNN is pruned one-shot by a criterion that needs no data ({', '.join(MASK_RCNN_METHODS)}) or searched "
                f"(greedy, random-search); method {method!r} scores segmentation Dice, which a detector has not. "
                "Use method='l1' with target= or ratio=, or a search with target=."
            )
        # distillation is on by default; a detector's fine-tune has no distillation to turn on
        unsupported = {"train_config": options["train_config"], "distill": options["distill"] if isinstance(options["distill"], DistillConfig) else None}
        if family != "search":  # a search keeps its log in folder and resumes from it
            unsupported.update(folder=options["folder"], resume=options["resume"] or None)
        refused = [name for name, value in unsupported.items() if value is not None]
        if refused:
            raise ValueError(f"Pruning a Mask R-CNN does not take {', '.join(refused)}; leave them out.")
        timed = family == "search" and (options.get("time_result", True) or str(options.get("target", "")).startswith("latency"))
        if timed:  # refused now, not after the search has run: a search times the whole exported detector
            check_detector_timing(str(options.get("runtime", "onnxruntime")), str(options.get("precision", "fp32")))

    def default_finetune_epochs(self, family: str) -> int:
        return 0

    def distillation(self, distill) -> None:
        return None  # check_request refused a DistillConfig; True (the default) asks for nothing here

    def training_data(self, model: MaskRCNN, data, context: RunContext, resuming: bool):
        """The instances a search's candidates or the fine-tune train on, with the validation split they are scored on."""
        if not context.trains:
            return data
        search = context.family == "search"
        doing = "Searching" if search else "Fine-tuning"
        if not isinstance(data, InstanceDataset):
            raise ValueError(
                f"{doing} a Mask R-CNN trains on instances: pass data=load_instance_data(DATA, val_fraction=0.15) "
                f"(--data DATA on the command line; a folder with instances/), got {type(data).__name__}."
            )
        if not data.splits.get("val"):
            scored = "Candidates are scored" if search else "Fine-tuning keeps the epoch"
            raise ValueError(f"{scored} by validation mask AP, and {data.name!r} has no val split: load it with val_fraction=0.15.")
        return data

    def criterion_data(self, data) -> None:
        return None  # the detector's criteria need no data (check_request), and its instances are no segmentation data

    def open_run(self, model: MaskRCNN, context: RunContext, settings: dict) -> RunState:
        return RunState(None, {})  # nothing to resume: fit_mask_rcnn keeps the best epoch at the checkpoint path itself

    def finetune(self, pruned: MaskRCNN, dense: MaskRCNN, context: RunContext, run: RunState) -> tuple[list[TrainResult], list[str]]:
        if not context.finetune_epochs:
            return [], []
        data = context.data
        fit = fit_mask_rcnn(
            pruned, data, context.finetune_epochs, score=lambda detector: evaluate_instances(detector, data, "val")["ap"], learning_rate=1e-3,
            seed=0 if context.seed is None else context.seed, checkpoint_path=context.checkpoint_path, on_epoch=context.on_epoch,
        )
        note = f"fine-tuned {context.finetune_epochs} epochs in {fit.seconds:.0f}s; best validation mask AP {fit.best_score:.4f} at epoch {fit.best_epoch}"
        return [], [note]

    def complete(self, run: RunState, model: MaskRCNN, context: RunContext) -> None:
        if context.checkpoint_path is not None and not context.finetune_epochs:  # a fine-tune saved its best epoch there
            save_mask_rcnn(model, context.checkpoint_path)


class SAMKind(ModelKind):
    """A Segment Anything model (keras-hub's `SAMImageSegmenter`): its image encoder is the graph that is pruned,
    priced and timed; its prompt encoder and mask decoder are copied whole. Pruned one-shot by a criterion that
    needs no data; nothing fine-tunes (keras-hub cannot train a SAM: its `fit` raises)."""

    detector = False

    def network(self, model: keras.Model) -> keras.Model:
        return image_encoder(model)

    def with_network(self, model: keras.Model, network: keras.Model) -> keras.Model:
        return with_image_encoder(model, network)

    def kept_whole(self, model: keras.Model) -> tuple[str, ...]:
        """The encoder's neck: LayerNormalization over its channels makes pruning them inexact, and nothing
        fine-tunes a SAM afterwards to recover (heads and MLP units prune exactly)."""
        return neck_layers(model)

    def copy(self, model: keras.Model) -> keras.Model:
        return with_image_encoder(model, copy_model(image_encoder(model)))

    def save(self, model: keras.Model, path: str | Path) -> Path:
        return save_sam(model, path)

    def score(self, model: keras.Model, data, split: str) -> float:
        raise ValueError("A Segment Anything model has no score segprune can compare candidates by; prune it one-shot (method='l1').")

    def check_request(self, method: str, family: str, options: Mapping[str, object]) -> None:
        """One-shot by a data-free criterion; no training settings (nothing trains)."""
        if family != "oneshot" or method not in MASK_RCNN_METHODS:
            raise ValueError(
                f"A Segment Anything model is pruned one-shot by a criterion that needs no data ({', '.join(MASK_RCNN_METHODS)}); "
                f"method {method!r} trains or scores it, which keras-hub's SAM does not support. Use method='l1' with target= or ratio=."
            )
        unsupported = {
            "train_config": options["train_config"], "distill": options["distill"] if isinstance(options["distill"], DistillConfig) else None,
            "folder": options["folder"], "resume": options["resume"] or None,
        }
        refused = [name for name, value in unsupported.items() if value is not None]
        if refused:
            raise ValueError(f"Pruning a Segment Anything model does not take {', '.join(refused)}: nothing trains. Leave them out.")

    def default_finetune_epochs(self, family: str) -> int:
        return 0

    def distillation(self, distill) -> None:
        return None

    def training_data(self, model: keras.Model, data, context: RunContext, resuming: bool):
        if context.finetune_epochs or data is not None:
            raise ValueError(
                "A Segment Anything model is pruned without data and not fine-tuned (keras-hub cannot train a SAM); "
                "leave out data and finetune_epochs (--data, --finetune-epochs)."
            )
        return None

    def criterion_data(self, data) -> None:
        return None

    def open_run(self, model: keras.Model, context: RunContext, settings: dict) -> RunState:
        return RunState(None, {})  # nothing trains, so there is nothing to resume

    def finetune(self, pruned: keras.Model, dense: keras.Model, context: RunContext, run: RunState) -> tuple[list[TrainResult], list[str]]:
        return [], []

    def complete(self, run: RunState, model: keras.Model, context: RunContext) -> None:
        if context.checkpoint_path is not None:
            save_sam(model, context.checkpoint_path)


def segmentation_data(model: keras.Model, data, resuming: bool):
    """`data` as a dataset: Python data are read once with the classes `model` predicts; resuming refuses data it cannot identify."""
    if data is not None and not isinstance(data, (SegmentationDataset, InstanceDataset)):
        data = as_dataset(data, num_classes=output_kind(model).num_classes)
    if resuming:
        check_fingerprintable(data)
    return data


SEGMENTATION = SegmentationKind()
MASK_RCNN = MaskRCNNKind()
SAM = SAMKind()


def model_kind(model: keras.Model) -> ModelKind:
    """The kind of `model`: `MASK_RCNN` for a `MaskRCNN`, `SAM` for keras-hub's `SAMImageSegmenter`, else `SEGMENTATION`."""
    if isinstance(model, MaskRCNN):
        return MASK_RCNN
    return SAM if is_sam(model) else SEGMENTATION


# The searches' entry points, for either kind.
def network(model: keras.Model) -> keras.Model:
    """The functional graph a search narrows, prices and times: a Mask R-CNN's trunk, or the model itself."""
    return model_kind(model).network(model)


def time_parents(models: Sequence[keras.Model], settings) -> list[float]:
    """Median ms of each model (all of one kind) as it ships: a Mask R-CNN's whole detector, else its network."""
    return model_kind(models[0]).time(models, settings)


def network_timer(model: keras.Model, settings) -> Callable[[Sequence[keras.Model]], list[float]]:
    """Times networks as `model` ships them, for a latency budget's calibration: each network (the dense one a search
    narrows, its narrowest) in place of `model`'s, the rest of `model` around it (a Mask R-CNN's heads, NMS, ...)."""
    kind = model_kind(model)
    return lambda networks: kind.time([kind.with_network(model, network) for network in networks], settings)


def load_parent(path: str | Path) -> keras.Model:
    """A model saved in a search folder (the dense model, a greedy step), whichever kind it is."""
    return load_mask_rcnn(path) if is_mask_rcnn_file(path) else load_model(path)


def save_parent(model: keras.Model, path: str | Path) -> Path:
    return model_kind(model).save(model, path)


def copy_parent(model: keras.Model) -> keras.Model:
    """A copy with the same weights; a detector's trunk and heads are each copied."""
    return model_kind(model).copy(model)


def parent_score(model: keras.Model, data, split: str) -> float:
    """What candidates are compared by: validation mask AP for a detector, Dice for a segmentation network."""
    return model_kind(model).score(model, data, split)


def shrink_parent(model: keras.Model, current: Mapping[str, int], wanted: Mapping[str, int], importance: str = "l1", data=None) -> keras.Model:
    """`space.shrink` for either kind: a detector's trunk is rebuilt narrower and its RoI heads are copied."""
    return model_kind(model).shrink(model, current, wanted, importance, data)
