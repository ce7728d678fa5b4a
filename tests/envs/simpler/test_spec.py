"""The simpler suite without a simulator: spec, episode lists, variants, overlay, action maths."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from vlaeval.envs.simpler.actions import axis_angle_to_euler_xyz, probe_scale, to_controller
from vlaeval.envs.simpler.episodes import task_layouts
from vlaeval.envs.simpler.overlay import composite, load_background, make_default_background
from vlaeval.envs.simpler.spec import SIMPLER_SPEC, TASK_INFO, TASKS, variants_for
from vlaeval.envs.simpler.suite import SimplerSuite


def test_spec_imports_no_simulator():
    code = ("import sys, vlaeval.envs.simpler.suite, vlaeval.envs.simpler.overlay, vlaeval.envs.simpler.actions;"
            "bad=[m for m in ('mani_skill','sapien','torch') if m in sys.modules]; print(bad); assert not bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tasks_budgets_and_protocol():
    assert len(TASKS) >= 8
    budgets = {t: TASK_INFO[t].budget for t in TASKS}
    assert budgets["pick_coke_can"] == 80 and budgets["move_near"] == 80
    assert budgets["open_drawer"] == budgets["close_drawer"] == 113
    assert budgets["place_apple_in_closed_drawer"] == 200
    assert budgets["put_eggplant_in_basket"] == 120
    assert SIMPLER_SPEC.protocol.max_steps == max(budgets.values())
    assert SIMPLER_SPEC.conventions.rotation == "axis_angle"
    lengths = {s.name: len(SimplerSuite().episodes(s.name, 0)) for s in SIMPLER_SPEC.settings}
    assert lengths == {"visual-matching": 114, "variant-aggregation": 972, "camera-variants": 228}
    assert SIMPLER_SPEC.protocol.episodes == max(lengths.values())


def test_variant_counts():
    assert len(variants_for("pick_coke_can", "variant-aggregation")) == 9
    assert len(variants_for("open_drawer", "variant-aggregation")) == 7
    assert len(variants_for("move_near", "camera-variants")) == 2
    axes = [v for _, v in variants_for("open_drawer", "variant-aggregation")]
    assert all(v["distractors"] == "none" and v["table"] == "base" for v in axes)


def test_episode_lists_are_fixed_and_deterministic():
    suite = SimplerSuite()
    a = suite.episodes("variant-aggregation", 0)
    b = suite.episodes("variant-aggregation", 0)
    assert [e.to_json() for e in a] == [e.to_json() for e in b]
    n = sum(len(task_layouts(t)) * len(variants_for(t, "variant-aggregation")) for t in TASKS)
    assert len(a) == n
    assert {e.tasks[0] for e in a} == set(TASKS)
    # the initial conditions do not depend on the run seed (only episode seeds do)
    c = suite.episodes("variant-aggregation", 7)
    assert [e.options["layout"] for e in a] == [e.options["layout"] for e in c]
    move = next(e for e in a if e.tasks[0] == "move_near")
    assert move.instructions[0].startswith("move ") and " near " in move.instructions[0]


def test_overlay_composite():
    rgb = np.full((4, 6, 3), 200, np.uint8)
    seg = np.zeros((4, 6, 1), np.int32)
    seg[1, 2] = 5  # robot
    seg[2, 3] = 7  # task object
    seg[3, 0] = 9  # table: replaced
    bg = np.arange(4 * 6 * 3, dtype=np.uint8).reshape(4, 6, 3)
    out = composite(rgb, seg, {5, 7}, bg)
    assert (out[1, 2] == 200).all() and (out[2, 3] == 200).all()
    keep = np.zeros((4, 6), bool)
    keep[1, 2] = keep[2, 3] = True
    assert (out[~keep] == bg[~keep]).all()
    # a background of another size is resized to the camera image
    big = np.zeros((8, 12, 3), np.uint8)
    assert composite(rgb, seg, {5}, big).shape == rgb.shape


def test_default_background_ships():
    img = load_background()
    assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8
    assert np.array_equal(make_default_background(48, 64), make_default_background(48, 64))
    with pytest.raises(FileNotFoundError):
        load_background("/nonexistent/bg.png")


def test_axis_angle_to_euler_matches_pytorch3d_convention():
    rotvec = np.array([0.2, -0.1, 0.3])
    a, b, c = axis_angle_to_euler_xyz(rotvec)
    rx, ry, rz = (Rotation.from_euler(ax, v).as_matrix() for ax, v in zip("xyz", (a, b, c)))
    # pytorch3d euler_angles_to_matrix(·, "XYZ") = R_x(a) @ R_y(b) @ R_z(c)
    assert np.allclose(rx @ ry @ rz, Rotation.from_rotvec(rotvec).as_matrix(), atol=1e-9)


def test_to_controller_undoes_the_sign_bug():
    # ManiSkill 3.0.1 scales normalised rotations by rot_lower (negative): ±0.5 per unit, flipped.
    def buggy(a):
        a = np.asarray(a, dtype=float)
        return np.concatenate([a[:3] * 0.1, a[3:] * -0.5])

    pos_scale, rot_scale = probe_scale(buggy, 0.5)
    assert np.allclose(rot_scale, -0.5) and np.allclose(pos_scale, 0.1)
    ctrl = to_controller([0.05, 0, 0, 0, 0, 0.2, -1], pos_scale, rot_scale)
    assert ctrl[0] == pytest.approx(0.5) and ctrl[5] == pytest.approx(-0.4) and ctrl[6] == -1
    assert np.allclose(buggy(ctrl[:6])[3:], [0, 0, 0.2], atol=1e-6)
