"""ActionCodec: percentile bounds, clipping, round trips, bins, gripper and serialisation."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from vlaeval.agents.codec import ActionCodec


def _dataset(n: int = 5000, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arm = rng.normal(0.0, [0.1, 0.2, 0.05, 0.3, 0.3, 0.4], size=(n, 6))
    arm[:10] *= 50  # outliers the percentile bounds must ignore
    gripper = rng.choice([-1.0, 1.0], size=(n, 1))
    return np.concatenate([arm, gripper], axis=1)


def test_fit_uses_1st_and_99th_percentiles() -> None:
    data = _dataset()
    codec = ActionCodec.fit(data)
    np.testing.assert_allclose(codec.low, np.percentile(data[:, :6], 1, axis=0))
    np.testing.assert_allclose(codec.high, np.percentile(data[:, :6], 99, axis=0))
    assert max(codec.high) < 5.0, "outliers leaked into the bounds"


def test_normalize_denormalize_round_trip_inside_bounds() -> None:
    codec = ActionCodec.fit(_dataset())
    rng = np.random.default_rng(1)
    low, high = np.array(codec.low), np.array(codec.high)
    arm = rng.uniform(low, high, size=(1000, 6))
    actions = np.concatenate([arm, rng.choice([-1.0, 1.0], size=(1000, 1))], axis=1)
    normalized = codec.normalize(actions)
    assert normalized[:, :6].min() >= -1.0 and normalized[:, :6].max() <= 1.0
    np.testing.assert_allclose(codec.denormalize(normalized), actions, rtol=0, atol=1e-5 * np.abs(high - low).max() + 1e-6)


def test_out_of_bounds_values_are_clipped() -> None:
    codec = ActionCodec.symmetric(0.5)
    actions = np.array([[2.0, -2.0, 0.5, -0.5, 0.0, 0.25, 1.0]])
    np.testing.assert_allclose(codec.normalize(actions)[0, :6], [1, -1, 1, -1, 0, 0.5])
    np.testing.assert_allclose(codec.denormalize(np.array([[3.0, -3.0, 0, 0, 0, 0, 1]]))[0, :2], [0.5, -0.5])


def test_bins_round_trip_within_half_a_bin() -> None:
    codec = ActionCodec.symmetric(1.0)
    x = np.concatenate([np.linspace(-1, 1, 10_001), [-1.0, 1.0, 0.0]])
    bins = codec.to_bins(x)
    assert bins.min() == 0 and bins.max() == codec.n_bins - 1
    assert np.abs(codec.from_bins(bins) - x).max() <= codec.bin_width / 2 + 1e-6
    assert codec.to_bins(np.array([-5.0, 5.0])).tolist() == [0, 255]


def test_bins_round_trip_in_physical_units() -> None:
    codec = ActionCodec.fit(_dataset())
    rng = np.random.default_rng(2)
    low, high = np.array(codec.low), np.array(codec.high)
    actions = np.concatenate([rng.uniform(low, high, size=(500, 6)), np.ones((500, 1))], axis=1)
    normalized = codec.normalize(actions)
    restored_norm = np.concatenate([codec.from_bins(codec.to_bins(normalized[:, :6])), normalized[:, 6:]], axis=1)
    error = np.abs(codec.denormalize(restored_norm) - actions)[:, :6]
    assert np.all(error <= codec.bin_width / 2 * (high - low) / 2 + 1e-6)


def test_gripper_sign_is_preserved_and_binary() -> None:
    codec = ActionCodec.fit(_dataset())
    rng = np.random.default_rng(3)
    gripper = rng.uniform(-1, 1, size=200)
    actions = np.concatenate([np.zeros((200, 6)), gripper[:, None]], axis=1)
    for out in (codec.normalize(actions), codec.denormalize(actions)):
        assert set(np.unique(out[:, 6])) <= {-1.0, 1.0}
        np.testing.assert_array_equal(out[:, 6], np.where(gripper >= 0, 1.0, -1.0))


def test_serialisation_round_trip_through_json() -> None:
    codec = ActionCodec.fit(_dataset(), n_bins=128)
    assert ActionCodec.from_dict(json.loads(json.dumps(codec.to_dict()))) == codec
    with pytest.raises(ValueError, match="format"):
        ActionCodec.from_dict({**codec.to_dict(), "format": 99})


def test_constant_dim_stays_invertible_and_bad_input_is_rejected() -> None:
    data = _dataset()
    data[:, 2] = 0.3
    codec = ActionCodec.fit(data)
    assert codec.low[2] < 0.3 < codec.high[2]
    assert np.isfinite(codec.normalize(data)).all()
    with pytest.raises(ValueError, match="shape"):
        codec.normalize(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="low < high"):
        ActionCodec((0.0,), (0.0,))


def test_codec_and_kosmos_package_import_without_torch() -> None:
    code = (
        "import sys; import vlaeval.agents.codec, vlaeval.agents.kosmos, vlaeval.agents.random; "
        "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
