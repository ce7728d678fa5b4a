"""Pearson and MMRV against hand-computed values, with SimplerEnv's (sim, real) argument order."""

from __future__ import annotations

import math

import pytest

from vlaeval.results.realsim import compare, mmrv, pearson, read_real_table, sim_rates

SIM = [0.9, 0.5, 0.2]
REAL = [0.6, 0.8, 0.1]


def test_mmrv_hand_computed():
    # Only the pair (0, 1) is ordered differently (sim: 0 > 1, real: 0 < 1); its *real* gap is
    # |0.6 - 0.8| = 0.2, so RV = (0.2, 0.2, 0) and MMRV = 0.4 / 3.
    assert mmrv(SIM, REAL) == pytest.approx(0.4 / 3)


def test_mmrv_argument_order_matters():
    # Swapping the arguments weights the same violation by the sim gap |0.9 - 0.5| = 0.4.
    assert mmrv(REAL, SIM) == pytest.approx(0.8 / 3)
    assert mmrv(SIM, REAL) != pytest.approx(mmrv(REAL, SIM))


def test_mmrv_ties_count_as_violations_and_perfect_order_is_zero():
    # sim tie vs real strict order: for i=1, (sim_1 > sim_0) = False != (real_1 > real_0) = True.
    assert mmrv([0.5, 0.5], [0.2, 0.4]) == pytest.approx(0.1)
    assert mmrv([0.1, 0.2, 0.3], [0.3, 0.5, 0.9]) == 0.0


def test_pearson_hand_computed():
    # x = sim - mean = (0.3667, -0.0333, -0.3333); y = (0.1, 0.3, -0.4)
    # sum xy = 0.16, sum x^2 = 0.246667, sum y^2 = 0.26
    expected = 0.16 / math.sqrt(0.74 / 3 * 0.26)
    assert pearson(SIM, REAL) == pytest.approx(expected, abs=1e-6)
    assert pearson([0.1, 0.2], [0.1, 0.2]) == 1.0
    assert pearson([0.5, 0.5], [0.2, 0.4]) == 0.0  # constant vector: 0, not NaN


def test_simpler_published_coke_can_numbers():
    """SimplerEnv's own tables (spec §1.4/1.5): MMRV 0.031 (sim, real), 0.062 swapped, r = 0.975."""
    real = [0.907, 0.853, 0.920, 0.760, 0.133, 0.293]
    sim = [0.787, 0.857, 0.710, 0.567, 0.027, 0.170]
    assert mmrv(sim, real) == pytest.approx(0.031, abs=5e-4)
    assert mmrv(real, sim) == pytest.approx(0.062, abs=5e-4)
    assert pearson(sim, real) == pytest.approx(0.975, abs=5e-4)


def test_length_mismatch_raises():
    with pytest.raises(ValueError):
        mmrv([0.1, 0.2], [0.1])


def test_compare_and_csv(tmp_path):
    path = tmp_path / "real.csv"
    path.write_text("agent,task,success\n" + "".join(
        f"{a},pick,{r}\n" for a, r in zip("abc", (60, 80, 10))) + "a,drawer,0.5\n")
    real = read_real_table(path)
    assert real[("b", "pick")] == pytest.approx(0.8)
    rows = [{"agent": a, "task": "pick", "success": s, "variant": v}
            for a, rate in zip("abc", SIM) for v in ("base", "alt")
            for s in [True] * round(rate * 10) + [False] * (10 - round(rate * 10))]
    sim = sim_rates(rows)
    assert sim[("a", "pick")] == pytest.approx(0.9)
    (row,) = compare(sim, real)
    assert row["task"] == "pick" and row["agents"] == 3
    assert row["mmrv"] == pytest.approx(0.4 / 3)
    assert row["pearson"] == pytest.approx(pearson(SIM, REAL))
