"""DepthResponse: accumulation is exact whatever the batching, order or split; state round-trips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from _reference import loop_digitize, loop_response_sums
from imde.accumulators import DepthResponse
from imde.core.bins import sid_edges

EDGES = sid_edges(8, 0.75, 10.0)


def _dataset(num_images: int = 6, units: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    activations = torch.randn(num_images, units, 6, 8)
    depth = torch.rand(num_images, 1, 12, 16) * 11.0  # some pixels above beta = 10: invalid
    depth[0, 0, :3] = 0.0  # missing measurements
    return activations, depth


def _accumulate(activations: torch.Tensor, depth: torch.Tensor, splits: list[int]) -> DepthResponse:
    acc = DepthResponse(activations.shape[1], EDGES)
    for a, d in zip(activations.split(splits), depth.split(splits), strict=True):
        acc.update(a, d)
    return acc


def test_hand_computed_mean_response_with_an_empty_bin() -> None:
    acc = DepthResponse(1, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    # 1x2 map [1, 3] upsampled to 1x4 = [1, 1.5, 2.5, 3]; depths in bins 0, 0, 2, invalid
    acc.update(torch.tensor([[[[1.0, 3.0]]]]), torch.tensor([[[0.5, 1.0, 2.5, 0.0]]]))
    mean = acc.mean_response()
    assert mean.dtype == torch.float64
    assert mean[0, 0] == 1.25 and math.isnan(mean[0, 1]) and mean[0, 2] == 2.5
    assert acc.counts.tolist() == [2, 0, 1] and acc.counts.dtype == torch.int64
    assert acc.sums.tolist() == [[2.5, 0.0, 2.5]]


def test_equals_the_loop_reference() -> None:
    activations, depth = _dataset()
    acc = _accumulate(activations, depth, [6])
    sums, counts = loop_response_sums(activations.double(), loop_digitize(depth, EDGES), 8)
    assert torch.equal(acc.counts, counts)
    assert torch.allclose(acc.sums, sums, rtol=1e-10, atol=1e-10)


def test_batched_one_shot_permuted_and_merged_halves_agree() -> None:
    activations, depth = _dataset()
    whole = _accumulate(activations, depth, [6])
    batched = _accumulate(activations, depth, [1, 2, 3])
    order = torch.randperm(6)
    permuted = _accumulate(activations[order], depth[order], [4, 2])
    merged = _accumulate(activations[:2], depth[:2], [2]).merge(_accumulate(activations[2:], depth[2:], [1, 3]))
    for other in (batched, permuted, merged):
        assert torch.equal(other.counts, whole.counts)
        assert torch.allclose(other.sums, whole.sums, rtol=1e-12, atol=1e-12)
        assert torch.allclose(other.mean_response(), whole.mean_response(), rtol=1e-12, equal_nan=True)
    assert merged.num_updates == 1 + 2 and merged.num_images == 6 and batched.num_updates == 3


def test_empty_batches_are_counted_not_errors() -> None:
    acc = DepthResponse(3, EDGES)
    acc.update(torch.rand(2, 3, 4, 4), torch.zeros(2, 8, 8))
    acc.update(torch.rand(1, 3, 4, 4), torch.full((1, 1, 8, 8), 50.0))  # all beyond beta
    mixed = torch.rand(2, 8, 8) * 5 + 1
    mixed[1] = float("nan")
    acc.update(torch.rand(2, 3, 4, 4), mixed)
    assert (acc.num_updates, acc.num_empty_batches, acc.num_images, acc.num_empty_images) == (3, 2, 5, 4)
    assert int(acc.counts.sum()) == 64


def test_reset_state_dict_save_and_load(tmp_path: Path) -> None:
    activations, depth = _dataset()
    acc = _accumulate(activations, depth, [3, 3])
    path = acc.save(tmp_path / "sub" / "resp.pt")
    loaded = DepthResponse.load(path)
    assert torch.equal(loaded.sums, acc.sums) and torch.equal(loaded.counts, acc.counts)
    assert torch.equal(loaded.edges, acc.edges) and loaded.num_images == 6 and loaded.num_updates == 2
    assert list(tmp_path.joinpath("sub").iterdir()) == [path]  # atomic write leaves no temporary file
    acc.reset()
    assert float(acc.sums.abs().sum()) == 0 and int(acc.counts.sum()) == 0 and acc.num_images == 0
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        DepthResponse.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a DepthResponse state"):
        DepthResponse.load(tmp_path / "other.pt")


def test_to_device_keeps_values() -> None:
    activations, depth = _dataset()
    acc = _accumulate(activations, depth, [6]).to("cpu")
    assert acc.device == torch.device("cpu")
    assert repr(acc).startswith("DepthResponse(num_units=5, num_bins=8, images=6")


def test_bad_inputs_raise() -> None:
    acc = DepthResponse(4, EDGES)
    with pytest.raises(ValueError, match=r"activations have 3 units \(shape \(2, 3, 4, 4\)\).*accumulates 4 units"):
        acc.update(torch.rand(2, 3, 4, 4), torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match=r"activations: expected \[B, K, h, w\], got \(4, 4, 4\)"):
        acc.update(torch.rand(4, 4, 4), torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match=r"depth: expected \[B, H, W\] or \[B, 1, H, W\], got \(2, 2, 8, 8\)"):
        acc.update(torch.rand(2, 4, 4, 4), torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match="batch size mismatch"):
        acc.update(torch.rand(2, 4, 4, 4), torch.rand(3, 8, 8))
    bad = torch.rand(2, 4, 4, 4)
    bad[1, 2, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        acc.update(bad, torch.rand(2, 8, 8))
    assert acc.num_updates == 0  # nothing was accumulated by the failed calls
    with pytest.raises(ValueError, match="other has 5 units, this one 4"):
        acc.merge(DepthResponse(5, EDGES))
    with pytest.raises(ValueError, match="different edges"):
        acc.merge(DepthResponse(4, sid_edges(8, 3.0, 80.0)))
    with pytest.raises(ValueError, match="num_units=0"):
        DepthResponse(0, EDGES)
    with pytest.raises(ValueError, match="strictly increasing"):
        DepthResponse(2, torch.tensor([0.0, 2.0, 1.0]))


def test_all_reduce_without_a_process_group_is_a_no_op() -> None:
    activations, depth = _dataset()
    acc = _accumulate(activations, depth, [6])
    before = acc.sums.clone()
    assert acc.all_reduce() is acc and torch.equal(acc.sums, before)


def test_finite_activations_whose_sum_overflows_are_accepted() -> None:
    # the fast finiteness check sums the activations; a float32 sum that overflows must not be taken for inf
    activations = torch.full((1, 1, 2, 2), 3e38)
    assert not torch.isfinite(activations.sum())
    acc = DepthResponse(1, EDGES)
    acc.update(activations, torch.full((1, 1, 4, 4), 5.0))
    assert acc.counts.sum() == 16 and torch.isfinite(acc.sums).all()
    activations[0, 0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        acc.update(activations, torch.full((1, 1, 4, 4), 5.0))


def _resampled(activations: torch.Tensor, depth: torch.Tensor, splits: list[int], offset: int = 0) -> DepthResponse:
    acc = DepthResponse(activations.shape[1], EDGES, bootstrap=7, permutations=5, seed=11)
    start = offset
    for a, d in zip(activations.split(splits), depth.split(splits), strict=True):
        acc.update(a, d, keys=[f"k{i}" for i in range(start, start + a.shape[0])])
        start += a.shape[0]
    return acc


def test_base_merge_state_dict_and_reset_cover_every_declared_state(tmp_path: Path) -> None:
    from imde.accumulators import DepthMetrics

    activations, depth = _dataset()
    whole = _resampled(activations, depth, [2, 4])
    halves = _resampled(activations[:2], depth[:2], [2]).merge(_resampled(activations[2:], depth[2:], [4], offset=2))
    assert set(whole.state_names) >= {"sums", "counts", "boot_sums", "boot_counts", "null_sums", "num_images"}
    merged, reference = halves.state_dict(), whole.state_dict()
    for name in whole.state_names:  # the same batches, merged: every state, replicates included, adds up
        assert torch.allclose(merged[name].double(), reference[name].double(), rtol=1e-6, atol=1e-5), name
    loaded_acc = DepthResponse.load(whole.save(tmp_path / "resp.pt"))
    loaded = loaded_acc.state_dict()
    for name in whole.state_names:
        assert torch.equal(loaded[name], reference[name]), name
    assert (loaded_acc.bootstrap, loaded_acc.permutations, loaded_acc.seed) == (7, 5, 11)
    with pytest.raises(ValueError, match=r"\(bootstrap, permutations, seed\)"):
        whole.merge(DepthResponse(5, EDGES, bootstrap=7, permutations=5, seed=12))
    metrics, left, right = (DepthMetrics(bootstrap=9, seed=2) for _ in range(3))
    gt = torch.rand(6, 1, 5, 5) * 9 + 0.5
    pred = gt + torch.rand(6, 1, 5, 5)
    metrics.update(pred, gt, keys=list("abcdef"))
    left.update(pred[:3], gt[:3], keys=list("abc"))
    right.update(pred[3:], gt[3:], keys=list("def"))
    left.merge(right)
    merged, reference = left.state_dict(), metrics.state_dict()
    for name in metrics.state_names:
        assert torch.allclose(merged[name].double(), reference[name].double(), rtol=1e-12), name
    reloaded = DepthMetrics.load(metrics.save(tmp_path / "metrics.pt"))
    assert reloaded.compute() == metrics.compute() and torch.equal(reloaded.replicates(), metrics.replicates())
    whole.reset()
    cleared = whole.state_dict()
    assert all(float(cleared[name].abs().sum()) == 0 for name in whole.state_names)


def test_default_accumulator_keeps_no_replicates_and_the_same_sums() -> None:
    activations, depth = _dataset()
    plain = _accumulate(activations, depth, [6])
    resampled = _resampled(activations, depth, [6])
    assert set(plain.state_names).isdisjoint({"boot_sums", "boot_counts", "null_sums"})
    assert torch.equal(plain.counts, resampled.counts)
    assert torch.allclose(plain.sums, resampled.sums, rtol=1e-12, atol=1e-12)


def test_a_state_file_without_replicates_still_loads(tmp_path: Path) -> None:
    # files written before the replicates existed hold only the sums, counts and counters
    old = {"num_units": 2, "edges": EDGES, "sums": torch.ones(2, 8, dtype=torch.float64),
           "counts": torch.ones(8, dtype=torch.int64), "num_updates": 1, "num_empty_batches": 0, "num_images": 3,
           "num_empty_images": 0}
    torch.save(old, tmp_path / "old.pt")
    loaded = DepthResponse.load(tmp_path / "old.pt")
    assert (loaded.bootstrap, loaded.permutations, loaded.num_images) == (0, 0, 3)
    assert torch.equal(loaded.sums, old["sums"])


@pytest.mark.parametrize(("bootstrap", "permutations"), [(0, 0), (7, 0), (0, 5), (4, 3)])
def test_updating_several_layers_at_once_equals_updating_each(bootstrap, permutations) -> None:
    from imde.accumulators import update_responses

    generator = torch.Generator().manual_seed(3)
    depth = torch.rand(5, 1, 12, 16, generator=generator) * 11.0
    depth[2] = 0.0  # an image without valid depth
    # two layers on one 6x8 grid share a pass; a 3x4 layer and a 12x16 layer (the depth's size) go alone
    maps = {"a": torch.randn(5, 3, 6, 8, generator=generator), "b": torch.randn(5, 4, 6, 8, generator=generator),
            "c": torch.randn(5, 2, 3, 4, generator=generator), "d": torch.randn(5, 2, 12, 16, generator=generator)}
    options = {"bootstrap": bootstrap, "permutations": permutations, "seed": 11}
    together = {name: DepthResponse(m.shape[1], EDGES, **options) for name, m in maps.items()}
    alone = {name: DepthResponse(m.shape[1], EDGES, **options) for name, m in maps.items()}
    for batch in (slice(0, 3), slice(3, 5)):
        update_responses(list(together.values()), [m[batch] for m in maps.values()], depth[batch])
        for name, m in maps.items():
            alone[name].update(m[batch], depth[batch])
    for name in maps:
        joint, single = together[name].state_dict(), alone[name].state_dict()
        assert joint.keys() == single.keys()
        for key, value in single.items():
            if isinstance(value, torch.Tensor) and value.is_floating_point():
                assert torch.allclose(joint[key], value, rtol=1e-6, atol=1e-9), (name, key)
            elif isinstance(value, torch.Tensor):
                assert torch.equal(joint[key], value), (name, key)
            else:
                assert joint[key] == value, (name, key)
    # and each equals the slow reference loop
    ref_sums, ref_counts = loop_response_sums(maps["b"].double(), loop_digitize(depth[:, 0].double(), EDGES), 8)
    assert torch.allclose(together["b"].sums, ref_sums, rtol=1e-10, atol=1e-12)
    assert torch.equal(together["b"].counts, ref_counts)


def test_updating_several_layers_checks_every_input_before_changing_any_state() -> None:
    from imde.accumulators import update_responses

    first, second = DepthResponse(3, EDGES, bootstrap=2), DepthResponse(4, EDGES, bootstrap=2)
    depth = torch.rand(2, 12, 16) * 10
    with pytest.raises(ValueError, match="this DepthResponse accumulates 4 units"):
        update_responses([first, second], [torch.randn(2, 3, 6, 8), torch.randn(2, 5, 6, 8)], depth)
    with pytest.raises(ValueError, match="keys: expected one str/int per image"):
        update_responses([first, second], [torch.randn(2, 3, 6, 8), torch.randn(2, 4, 6, 8)], depth, keys=["x"])
    assert first.num_images == second.num_images == 0 and first.sums.abs().sum() == 0
    with pytest.raises(ValueError, match="the same accumulator is given twice"):
        update_responses([first, first], [torch.randn(2, 3, 6, 8)] * 2, depth)
    with pytest.raises(ValueError, match="2 accumulators but 1 activations"):
        update_responses([first, second], [torch.randn(2, 3, 6, 8)], depth)


def test_layers_of_one_map_size_share_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four maps on one grid and one at the depth's size: two passes of Eq. 1, not five."""
    import imde.accumulators as accumulators

    calls = []
    real = accumulators.response_sums

    def counting(activations: torch.Tensor, *args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        calls.append(tuple(activations.shape))
        return real(activations, *args, **kwargs)

    monkeypatch.setattr(accumulators, "response_sums", counting)
    maps = [torch.randn(2, 3, 6, 8) for _ in range(4)] + [torch.randn(2, 5, 12, 16)]
    responses = [DepthResponse(m.shape[1], EDGES) for m in maps]
    accumulators.update_responses(responses, maps, torch.rand(2, 12, 16) * 10)
    assert sorted(calls) == [(2, 5, 12, 16), (2, 12, 6, 8)]
