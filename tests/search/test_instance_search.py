"""Greedy and random search on a Mask R-CNN: the trunk narrowed to a budget of its MACs, candidates scored as detectors."""

import numpy as np
import pytest

import segprune
from segprune.cost import flops
from segprune.models.mask_rcnn import MaskRCNN, is_mask_rcnn_file, mask_rcnn
from segprune.search.evaluation import Candidate, CandidateSettings
from segprune.search.instance_evaluation import _EVALUATORS, build_instance_candidate, evaluate_instance_candidate
from segprune.search.kinds import save_parent
from tests.fixtures import TINY_DETECTOR, instance_tiles

SEARCH = dict(target="flops=0.6", round_to=4, image_size=64, candidate_steps=0, time_result=False)  # a candidate's seeded fine-tune: the test below


def _trunk_share(dense: MaskRCNN, pruned: MaskRCNN) -> float:
    return flops(pruned.trunk, (64, 64)).macs / flops(dense.trunk, (64, 64)).macs


@pytest.mark.parametrize(("method", "options"), [("greedy", {"iterations": 1}), ("random-search", {"candidates": 2, "finetune_epochs": 1})])
def test_a_search_narrows_the_trunk_to_its_budget_returns_a_detector_and_resumes_from_its_log(method, options, tmp_path):
    model = mask_rcnn(**TINY_DETECTOR)
    data = instance_tiles()
    scores = []
    result = segprune.prune(
        model, method, data=data, folder=tmp_path / "search", on_candidate=lambda record, best: scores.append(record["score"]), **SEARCH, **options
    )
    pruned = result.model
    assert isinstance(pruned, MaskRCNN) and pruned.trunk is not model.trunk
    share = _trunk_share(model, pruned)
    assert share <= 0.6 and result.summary.macs_ratio == pytest.approx(share)
    assert [o.shape[-1] for o in pruned.trunk.outputs] == [o.shape[-1] for o in model.trunk.outputs]
    assert result.search.candidates == len(scores) > 0 and all(0.0 <= score <= 1.0 for score in scores)
    (detections,) = pruned.detect(data.load("a")[0][None])
    assert len(detections) > 0 and detections.masks.shape[1:] == (64, 64)
    assert is_mask_rcnn_file(tmp_path / "search" / "dense.keras")
    if "finetune_epochs" in options:
        assert "best validation mask AP" in result.notes[-1]

    resumed = segprune.prune(
        model, method, data=data, folder=tmp_path / "search", resume=True,
        on_candidate=lambda record, best: pytest.fail("a resumed search evaluates no logged candidate again"), **SEARCH, **options,
    )
    assert resumed.search.config == result.search.config
    if "finetune_epochs" not in options:  # the chosen candidate, rebuilt from the log, is the one that was scored
        for before, after in zip(pruned.trunk.get_weights(), resumed.model.trunk.get_weights()):
            np.testing.assert_allclose(after, before, atol=1e-5)


def test_a_candidate_is_seeded_by_its_name_so_it_scores_and_builds_the_same_anywhere(tmp_path):
    dense = save_parent(mask_rcnn(**TINY_DETECTOR), tmp_path / "dense.keras")
    data, settings = instance_tiles(), CandidateSettings(finetune_steps=2, seed=3)
    widths = {"fpn_lateral2,fpn_lateral3,fpn_lateral4": 16, "rpn_conv": 16}
    candidate = Candidate("candidate0", str(dense), widths, {**widths, "rpn_conv": 8})
    first = evaluate_instance_candidate(candidate, data, settings)["score"]
    built = build_instance_candidate(candidate, data, settings)
    _EVALUATORS.clear()  # another process, or a resumed search: nothing cached
    rebuilt = build_instance_candidate(candidate, data, settings)
    assert rebuilt is not built and rebuilt.trunk.get_layer("rpn_conv").filters == 8
    for before, after in zip(built.get_weights(), rebuilt.get_weights()):
        np.testing.assert_allclose(after, before, atol=1e-5)
    assert evaluate_instance_candidate(candidate, data, settings)["score"] == first


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 2}, "evaluates its candidates in this process"),
        ({"data": None}, "Searching a Mask R-CNN trains on instances"),
    ],
)
def test_what_a_mask_rcnn_search_cannot_do_is_refused(options, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        segprune.prune(mask_rcnn(**TINY_DETECTOR), "greedy", **{"data": instance_tiles(), **options}, folder=tmp_path / "s", **SEARCH)


def test_greedy_stopped_by_its_time_limit_narrows_the_last_step_of_a_detector_to_the_budget(tmp_path, monkeypatch):
    from segprune.search.progress import SearchClock

    monkeypatch.setattr(SearchClock, "out_of_time", lambda self: self.done >= 2)  # after the first step's two proposals
    model = mask_rcnn(**TINY_DETECTOR)
    result = segprune.prune(model, "greedy", data=instance_tiles(), iterations=1, max_minutes=100, folder=tmp_path / "search", **SEARCH)
    assert isinstance(result.model, MaskRCNN) and _trunk_share(model, result.model) <= 0.6
    assert result.search.candidates == 2 and "stopped at the time limit" in result.notes[0]


def test_a_search_resumed_with_another_heads_ratio_is_refused_naming_both(tmp_path, monkeypatch):
    """`heads=` cuts the dense detector a search starts from (kept in its folder), so the log's header keeps the ratio:
    a resume with another would go on from the other detector's candidates."""

    class Killed(Exception):
        pass

    def killed(*args):
        raise Killed

    monkeypatch.setattr("segprune.search.greedy.parent_score", killed)  # killed after the header is written, before the baseline
    model, data = mask_rcnn(**TINY_DETECTOR), instance_tiles()
    options = dict(data=data, folder=tmp_path / "search", iterations=1, finetune_epochs=0, progress=False, **SEARCH)
    with pytest.raises(Killed):
        segprune.prune(model, "greedy", heads=0.25, **options)
    # (the MACs target, rescaled to the narrowed trunk's, differs too: it is listed after)
    with pytest.raises(ValueError, match=r"other settings \(heads: saved 0\.25, now 0\.5[;)].*resume with the saved values, or choose another --out"):
        segprune.prune(model, "greedy", heads=0.5, resume=True, **options)
    with pytest.raises(Killed):  # the same ratio resumes
        segprune.prune(model, "greedy", heads=0.25, resume=True, **options)
