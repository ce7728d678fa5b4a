"""Render fingerprints: the same machine twice is bit-identical, a changed renderer setting is caught.

calvin renders on the CPU (TinyRenderer) and takes a fraction of a second; simpler needs
ManiSkill and a Vulkan driver (about 10 s per fingerprint on lavapipe) and skips without them.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest

from vlaeval.envs.fingerprint import (
    DEFAULT_TOLERANCE,
    compare_render,
    frame_fingerprint,
    identical_frames,
    load_reference,
    render_fingerprint,
)


@pytest.fixture(scope="module")
def calvin_fp() -> dict:
    return render_fingerprint("calvin")


def test_calvin_fingerprint_is_identical_on_the_same_machine(calvin_fp: dict) -> None:
    again = render_fingerprint("calvin")
    assert again == calvin_fp
    assert compare_render(again, calvin_fp) == []
    assert identical_frames(again, calvin_fp) == (6, 6)
    # first, middle and last of the 1000 chains, both cameras, at the protocol's resolutions
    assert [(f["episode"], f["camera"], f["shape"]) for f in calvin_fp["frames"]] == [
        (e, cam, shape) for e in (0, 500, 999) for cam, shape in (("rgb_static", [200, 200, 3]), ("rgb_gripper", [84, 84, 3]))
    ]
    assert calvin_fp["renderer"]["renderer"] == "pybullet TinyRenderer"


def test_calvin_matches_the_committed_reference(calvin_fp: dict) -> None:
    reference = load_reference("calvin")
    assert reference is not None
    if reference["renderer"] != calvin_fp["renderer"]:
        pytest.skip(f"another pybullet build or CPU than the reference's ({reference['renderer']}); doctor reports this as a warning")
    assert compare_render(calvin_fp, reference) == []
    assert identical_frames(calvin_fp, reference) == (6, 6)


def test_a_different_camera_resolution_is_caught(calvin_fp: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    from vlaeval.envs.calvin.suite import CalvinSuite

    env_kwargs = CalvinSuite.env_kwargs
    monkeypatch.setattr(CalvinSuite, "env_kwargs", lambda self, *a: {**env_kwargs(self, *a), "static_size": 128})
    differences = compare_render(render_fingerprint("calvin"), calvin_fp)
    assert differences == [f"episode {e} rgb_static: frame shape (200, 200, 3) in the reference, (128, 128, 3) here" for e in (0, 500, 999)]


def test_a_slightly_wider_field_of_view_is_caught(calvin_fp: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import vlaeval.envs.calvin.cameras as cameras

    monkeypatch.setattr(cameras, "STATIC", cameras.CameraSpec(fov=cameras.STATIC.fov * 1.005, near=cameras.STATIC.near, far=cameras.STATIC.far))
    changed = render_fingerprint("calvin")
    differences = compare_render(changed, calvin_fp)
    assert len(differences) == 3 and all(d.startswith(f"episode {e} rgb_static: pixels differ") for d, e in zip(differences, (0, 500, 999)))
    assert identical_frames(changed, calvin_fp) == (3, 6)  # the gripper camera did not change


def test_a_changed_renderer_is_named_even_when_pixels_agree(calvin_fp: dict) -> None:
    other = copy.deepcopy(calvin_fp)
    other["renderer"]["pybullet"] = "9.9.9"
    assert compare_render(other, calvin_fp) == [f"renderer changed: pybullet {calvin_fp['renderer']['pybullet']!r} in the reference, '9.9.9' here"]


def test_frames_within_tolerance_match_but_are_not_called_identical() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 200, 3), dtype=np.uint8)
    nudged = image.copy()
    nudged[100, 100] ^= 1  # one pixel, one level: another hash, the same thumbnail to within a level
    far = image.copy()
    far[:50, :50] = 255 - far[:50, :50]  # a quarter of the image changed
    base = {"suite": "s", "suite_version": "1", "setting": "x", "renderer": {}}

    def fingerprint(frame: np.ndarray) -> dict:
        return {**base, "frames": [{"episode": 0, "camera": "rgb", **frame_fingerprint(frame)}]}

    reference = {**fingerprint(image), "tolerance": DEFAULT_TOLERANCE}
    assert compare_render(fingerprint(nudged), reference) == []
    assert identical_frames(fingerprint(nudged), reference) == (0, 1)
    (line,) = compare_render(fingerprint(far), reference)
    assert line.startswith("episode 0 rgb: pixels differ: thumbnail mean |diff|") and "tolerance 1 / 12" in line
    assert compare_render({**base, "frames": []}, reference) == ["episode 0 rgb: in the reference, not rendered here"]


@pytest.mark.slow
def test_simpler_fingerprint_is_identical_and_a_changed_light_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mani_skill", reason="mani_skill not installed (pip install 'vlaeval[simpler]')")
    try:
        first = render_fingerprint("simpler")
    except RuntimeError as exc:  # no Vulkan ICD / renderer
        pytest.skip(f"no working Vulkan renderer ({exc}); install mesa-vulkan-drivers >= 24.3")
    assert render_fingerprint("simpler") == first
    reference = load_reference("simpler")
    if reference["renderer"] == first["renderer"]:
        assert compare_render(first, reference) == []
    from vlaeval.envs.simpler.catalogue import LIGHTING

    monkeypatch.setitem(LIGHTING, "base", 1.3)  # the visual-matching scenes are lit by "base"
    differences = compare_render(render_fingerprint("simpler"), first)
    assert len(differences) == 3 and all("rgb: pixels differ" in d for d in differences)
