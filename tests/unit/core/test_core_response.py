"""The splatted per-bin sums of Eq. 1 equal upsample-then-sum, in value and in gradient."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import imde.core.response as response_module
from _reference import loop_response_sums
from imde.core.bins import digitize, sid_edges
from imde.core.response import band_columns, band_taps, interp_taps, response_sums, splat_band


@pytest.mark.parametrize(("in_size", "out_size"), [(4, 8), (5, 13), (7, 7), (9, 4), (1, 5), (3, 1)])
def test_interp_taps_reproduce_f_interpolate(in_size: int, out_size: int) -> None:
    signal = torch.randn(in_size, dtype=torch.float64)
    expected = F.interpolate(signal.view(1, 1, -1), size=out_size, mode="linear", align_corners=False).flatten()
    i0, i1, w1 = interp_taps(in_size, out_size)
    assert torch.allclose((1 - w1) * signal[i0] + w1 * signal[i1], expected, atol=1e-12)


def test_splat_of_a_single_pixel_is_the_transposed_interpolation_weight() -> None:
    # depth 4x4 from features 2x2: pixel (1, 2) of bin 1 pulls weights wy=(0.75, 0.25) x wx=(0.25, 0.75)
    labels = torch.full((1, 4, 4), -1, dtype=torch.int64)
    labels[0, 1, 2] = 1
    bands = band_taps((2, 2), (4, 4), 2, torch.device("cpu"))
    ((_, _, start, stop, offsets, weights),) = bands
    ((num_columns, row_start, bin_of_column),) = band_columns(labels + 1, 2, bands, 2)
    assert num_columns == 1 and bin_of_column.tolist() == [[1]]  # only bin 1 is present: one column
    splat = splat_band((labels + 1)[:, start:stop], row_start, offsets, weights, num_columns, 4)
    assert splat.view(2, 2).tolist() == [[0.75 * 0.25, 0.75 * 0.75], [0.25 * 0.25, 0.25 * 0.75]]


def test_band_columns_rank_the_bins_present_in_each_image_band() -> None:
    # 2 feature rows -> 4 depth rows, one band per feature row: band 0 reaches depth rows 0-2, band 1 rows 0-3
    # (row 0 reads feature row 1 with weight 0, align_corners=False clamps it: a column may be all-zero)
    labels = torch.tensor([[[0, 0], [3, -1], [3, 3], [2, 2]], [[-1, -1], [-1, -1], [1, 1], [1, 1]]])
    bands = band_taps((2, 1), (4, 2), 1, torch.device("cpu"))
    assert [(band[2], band[3]) for band in bands] == [(0, 3), (0, 4)]
    (c0, start0, bins0), (c1, start1, bins1) = band_columns(labels + 1, 4, bands, 1)
    assert (c0, c1) == (2, 3)  # image 0 has bins {0, 3} then {0, 2, 3}; image 1 has {1} in both bands
    assert bins0.tolist() == [[0, 3], [1, 4]] and bins1.tolist() == [[0, 2, 3], [1, 4, 4]]  # 4 = N_b: unused
    # the spare column C takes invalid pixels (slot 0) and absent bins; a band row has 1 feature pixel here
    assert start0.tolist() == [[2, 0, 2, 2, 1], [2, 2, 0, 2, 2]]
    assert start1.tolist() == [[3, 0, 3, 1, 2], [3, 3, 0, 3, 3]]


@pytest.mark.parametrize(("feature_size", "depth_size"), [((6, 8), (12, 16)), ((5, 7), (13, 11)), ((10, 12), (6, 5))])
@pytest.mark.parametrize("band_rows", [1, 2, 4, 100])
def test_band_taps_give_every_depth_pixel_its_interpolation_weights_once(feature_size, depth_size, band_rows) -> None:
    # summing the bands' taps back over the whole feature map gives W_h^T W_w for every depth pixel (total 1)
    (h, w), (out_h, out_w) = feature_size, depth_size
    total = torch.zeros(out_h, out_w, h * w, dtype=torch.float64)
    for y_start, _, start, stop, offsets, weights in band_taps(
        feature_size, depth_size, band_rows, torch.device("cpu")
    ):
        pixel = torch.arange(start, stop).view(-1, 1) * out_w + torch.arange(out_w)
        flat = (offsets + y_start * w).view(4, -1)
        total.view(-1, h * w).index_put_(
            (pixel.flatten().repeat(4), flat.flatten()), weights.flatten(), accumulate=True
        )
    eye = torch.eye(h * w, dtype=torch.float64).view(h * w, 1, h, w)
    expected = F.interpolate(eye, size=depth_size, mode="bilinear", align_corners=False).view(h * w, -1).T
    assert torch.allclose(total.view(-1, h * w), expected, atol=1e-12)


def test_hand_computed_sums_and_counts() -> None:
    # one unit, 1x2 map [1, 3] upsampled to 1x4: [1, 1.5, 2.5, 3]; bins [0, 1, 1, -1]
    activations = torch.tensor([[[[1.0, 3.0]]]])
    bins = torch.tensor([[[0, 1, 1, -1]]])
    sums, counts = response_sums(activations, bins, 2)
    assert sums.dtype == torch.float64 and counts.dtype == torch.int64
    assert sums.tolist() == [[1.0, 4.0]]
    assert counts.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("feature_size", "depth_size"),
    [((6, 8), (12, 16)), ((5, 7), (13, 11)), ((9, 10), (9, 10)), ((10, 12), (6, 5)), ((1, 3), (4, 4))],
)
@pytest.mark.parametrize("abs_first", [False, True])
def test_fast_sums_equal_the_per_image_per_bin_loop(feature_size, depth_size, abs_first) -> None:
    activations = torch.randn(3, 5, *feature_size, dtype=torch.float64)
    depth = torch.rand(3, *depth_size, dtype=torch.float64) * 11 - 0.5
    bins = digitize(depth, sid_edges(6, 0.75, 10.0))
    sums, counts = response_sums(activations, bins, 6, abs_first=abs_first)
    ref_sums, ref_counts = loop_response_sums(activations, bins, 6, abs_first=abs_first)
    assert torch.equal(counts, ref_counts)
    assert torch.allclose(sums, ref_sums, rtol=1e-10, atol=1e-12)


def test_fast_sums_agree_in_float32_accumulating_in_float64_and_accept_b1hw() -> None:
    activations = torch.relu(torch.randn(2, 4, 8, 10))
    bins = digitize(torch.rand(2, 1, 16, 20) * 10, sid_edges(8, 0.75, 10.0))
    sums, _ = response_sums(activations, bins, 8)
    ref, _ = loop_response_sums(activations, bins, 8)
    assert sums.dtype == torch.float64
    assert torch.allclose(sums, ref, rtol=1e-6)


@pytest.mark.parametrize("tile_pixels", [1, 16, 2048])
def test_gradient_equals_the_gradient_of_the_loop(monkeypatch, tile_pixels) -> None:
    monkeypatch.setattr(response_module, "_TILE_PIXELS", tile_pixels)  # one band per row, a few rows, one band
    activations = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    bins = digitize(torch.rand(2, 7, 9, dtype=torch.float64) * 10, sid_edges(4, 0.75, 10.0))
    weights = torch.randn(3, 4, dtype=torch.float64)
    (grad,) = torch.autograd.grad((response_sums(activations, bins, 4)[0] * weights).sum(), activations)
    (ref,) = torch.autograd.grad((loop_response_sums(activations, bins, 4)[0] * weights).sum(), activations)
    assert torch.allclose(grad, ref, atol=1e-12)


@pytest.mark.parametrize("tile_pixels", [1, 24, 100])
def test_bands_with_different_bins_per_image_equal_the_loop(monkeypatch, tile_pixels) -> None:
    # image 0 has one bin per band, image 1 every bin everywhere, image 2 no valid pixel at all, image 3 one
    # row band without valid pixels: the per-image column ranks, padding and skipped bands must all agree
    monkeypatch.setattr(response_module, "_TILE_PIXELS", tile_pixels)
    activations = torch.randn(4, 6, 8, 12, dtype=torch.float64)
    bins = torch.randint(0, 5, (4, 20, 30))
    bins[0] = (torch.arange(20) // 4).view(20, 1)
    bins[2] = -1
    bins[3, :10] = -1
    sums, counts = response_sums(activations, bins, 5)
    ref_sums, ref_counts = loop_response_sums(activations, bins, 5)
    assert torch.equal(counts, ref_counts)
    assert torch.allclose(sums, ref_sums, rtol=1e-12, atol=1e-12)
    assert response_sums(activations, torch.full_like(bins, -1), 5)[0].abs().max() == 0


def test_bad_inputs_raise() -> None:
    bins = torch.zeros(2, 4, 4, dtype=torch.int64)
    with pytest.raises(ValueError, match=r"activations: expected \[B, K, h, w\]"):
        response_sums(torch.zeros(2, 3, 4), bins, 2)
    with pytest.raises(ValueError, match=r"expected shape \[3, H, W\]"):
        response_sums(torch.zeros(3, 1, 2, 2), bins, 2)
    with pytest.raises(ValueError, match="int64"):
        response_sums(torch.zeros(2, 1, 2, 2), bins.float(), 2)
    with pytest.raises(ValueError, match="out of range"):
        response_sums(torch.zeros(2, 1, 2, 2), bins + 5, 2)


@pytest.mark.parametrize(("feature_size", "depth_size"), [((12, 9), (5, 4)), ((6, 5), (14, 11))])
def test_gradient_is_zero_on_rows_no_valid_pixel_reaches(monkeypatch, feature_size, depth_size) -> None:
    # downsampling skips feature rows; invalid depth rows leave bands without columns: their gradient is 0
    monkeypatch.setattr(response_module, "_TILE_PIXELS", 1)
    activations = torch.randn(2, 3, *feature_size, dtype=torch.float64, requires_grad=True)
    bins = torch.randint(0, 4, (2, *depth_size))
    bins[:, : depth_size[0] // 2] = -1
    weights = torch.randn(3, 4, dtype=torch.float64)
    (grad,) = torch.autograd.grad((response_sums(activations, bins, 4)[0] * weights).sum(), activations)
    (ref,) = torch.autograd.grad((loop_response_sums(activations, bins, 4)[0] * weights).sum(), activations)
    assert ref[:, :, 0].abs().sum() == 0  # the case is exercised: the top rows get no gradient
    assert torch.allclose(grad, ref, atol=1e-12)


@pytest.mark.parametrize("tile_pixels", [16, 2048])
def test_compute_dtype_none_runs_in_the_activations_dtype_and_sums_in_float64(monkeypatch, tile_pixels) -> None:
    monkeypatch.setattr(response_module, "_TILE_PIXELS", tile_pixels)
    activations = torch.relu(torch.randn(3, 5, 9, 11))
    bins = digitize(torch.rand(3, 18, 22) * 10, sid_edges(6, 0.75, 10.0))
    exact, counts = response_sums(activations, bins, 6)  # float64 products
    fast, fast_counts = response_sums(activations, bins, 6, compute_dtype=None)  # float32 products
    assert fast.dtype == torch.float64 and torch.equal(counts, fast_counts)
    assert not torch.equal(fast, exact)  # float32 products differ in the last bits ...
    assert torch.allclose(fast, exact, rtol=1e-6)  # ... and agree to float32 precision
    # float64 activations: compute_dtype=None is the exact path
    double = activations.double()
    assert torch.equal(response_sums(double, bins, 6, compute_dtype=None)[0], response_sums(double, bins, 6)[0])
    # half-precision activations are multiplied in float32: the same sums as their float32 copy (in float16 the
    # splat weights and products would be off by ~1e-4 relative)
    for half in (torch.float16, torch.bfloat16):
        low = activations.to(half)
        assert torch.equal(response_sums(low, bins, 6, compute_dtype=None)[0],
                           response_sums(low.float(), bins, 6, compute_dtype=None)[0])


def test_gradient_of_the_float32_path_equals_the_loop(monkeypatch) -> None:
    monkeypatch.setattr(response_module, "_TILE_PIXELS", 24)
    activations = torch.randn(2, 3, 6, 8, requires_grad=True)
    bins = digitize(torch.rand(2, 12, 16) * 10, sid_edges(4, 0.75, 10.0))
    weights = torch.randn(3, 4, dtype=torch.float64)
    (grad,) = torch.autograd.grad(
        (response_sums(activations, bins, 4, compute_dtype=None)[0] * weights).sum(), activations
    )
    (ref,) = torch.autograd.grad((loop_response_sums(activations, bins, 4)[0] * weights).sum(), activations)
    assert grad.dtype == torch.float32
    assert torch.allclose(grad, ref, rtol=1e-5, atol=1e-6)


def test_splat_into_shared_scratch_equals_a_fresh_splat_and_is_overwritten_by_the_next_band() -> None:
    slots = torch.randint(-1, 5, (2, 6, 8)) + 1
    bands = band_taps((3, 4), (6, 8), 1, torch.device("cpu"))
    columns = band_columns(slots, 5, bands, 4)
    scratch = response_module.Scratch(torch.device("cpu"))

    def splat(index: int, **kwargs) -> torch.Tensor:
        y_start, y_stop, start, stop, offsets, weights = bands[index]
        num_columns, row_start, _ = columns[index]
        pixels = (y_stop - y_start) * 4
        return splat_band(slots[:, start:stop], row_start, offsets, weights, num_columns, pixels, **kwargs)

    fresh, shared = splat(0), splat(0, scratch=scratch, keep=False)
    assert torch.equal(fresh, shared)
    snapshot = shared.clone()
    next_band = splat(1, scratch=scratch, keep=False)
    assert next_band.data_ptr() == shared.data_ptr()  # the same memory, reused ...
    assert not torch.equal(shared, snapshot)  # ... and overwritten
    kept = splat(0, scratch=scratch, keep=True)
    assert kept.data_ptr() != next_band.data_ptr() and torch.equal(kept, snapshot)


def test_per_image_and_pair_sums_equal_single_image_calls() -> None:
    from imde.core.response import response_pair_sums

    generator = torch.Generator().manual_seed(21)
    activations = torch.randn(3, 4, 5, 6, generator=generator, dtype=torch.float64)
    bins = torch.randint(-1, 7, (3, 11, 13), generator=generator)
    per_image, counts = response_sums(activations, bins, 7, per_image=True)
    pairs, pair_counts = response_pair_sums(activations, bins, 7)
    assert torch.equal(counts, pair_counts)
    for i in range(3):
        for j in range(3):
            single, single_counts = response_sums(activations[i : i + 1], bins[j : j + 1], 7)
            assert torch.allclose(pairs[i, j], single, rtol=1e-12, atol=1e-12)
            if i == j:
                assert torch.allclose(per_image[i], single, rtol=1e-12, atol=1e-12)
                assert torch.equal(counts[i], single_counts)


def _hand_bin_sums(activations: torch.Tensor, bins: torch.Tensor, num_bins: int) -> torch.Tensor:
    """``[K, N_b]`` sums of maps at the depth's resolution: a boolean mask per image and bin, in float64."""
    values = activations.double()
    return torch.stack([
        torch.stack([(values[b] * (bins[b] == d)).sum((1, 2)) for b in range(bins.shape[0])]).sum(0)
        for d in range(num_bins)
    ], 1)


@pytest.mark.parametrize("chunk_values", [7, 1 << 19])  # chunks that split rows and images' pixels; one chunk
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_maps_at_the_depth_resolution_add_each_pixel_to_its_bin_exactly(monkeypatch, chunk_values, dtype) -> None:
    monkeypatch.setattr(response_module, "_CHUNK_VALUES", chunk_values)
    generator = torch.Generator().manual_seed(5)
    activations = torch.randn(3, 4, 6, 7, generator=generator).to(dtype)
    bins = torch.randint(-1, 5, (3, 6, 7), generator=generator)
    expected = _hand_bin_sums(activations, bins, 5)
    for compute_dtype in (torch.float64, None):  # exact in float64 either way: no product to round
        sums, counts = response_sums(activations, bins, 5, compute_dtype=compute_dtype)
        assert sums.dtype == torch.float64
        assert torch.allclose(sums, expected, rtol=1e-13, atol=1e-13)
    assert torch.equal(counts, torch.stack([(bins == d).sum() for d in range(5)]))
    per_image, _ = response_sums(activations, bins, 5, per_image=True)
    from imde.core.response import response_pair_sums

    pairs, _ = response_pair_sums(activations, bins, 5)
    for i in range(3):
        assert torch.allclose(per_image[i], _hand_bin_sums(activations[i : i + 1], bins[i : i + 1], 5), rtol=1e-13)
        for j in range(3):  # image i's maps binned by image j's depth
            hand = _hand_bin_sums(activations[i : i + 1], bins[j : j + 1], 5)
            assert torch.allclose(pairs[i, j], hand, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gradient_of_maps_at_the_depth_resolution_is_their_bins_gradient(dtype) -> None:
    activations = torch.randn(2, 3, 5, 4, dtype=dtype, requires_grad=True)
    bins = torch.randint(-1, 4, (2, 5, 4))
    weights = torch.randn(3, 4, dtype=torch.float64)
    (grad,) = torch.autograd.grad((response_sums(activations, bins, 4)[0] * weights).sum(), activations)
    (ref,) = torch.autograd.grad((loop_response_sums(activations, bins, 4)[0] * weights).sum(), activations)
    assert grad.dtype == dtype and grad.shape == activations.shape
    assert torch.allclose(grad, ref.to(dtype), atol=1e-6)
    assert torch.equal(grad[:, 1][bins == -1], torch.zeros_like(grad[:, 1][bins == -1]))  # invalid pixels: none
