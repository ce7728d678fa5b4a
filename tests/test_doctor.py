"""``vlaeval doctor`` on this machine (software Vulkan) and with a missing Vulkan driver.

Each check runs in a fresh ``vlaeval`` process, as a user runs it, so the Vulkan loader reads the
environment the test gives it.
"""

from __future__ import annotations

from importlib.util import find_spec

import pytest

from tests.conftest import run_cli_process
from vlaeval.doctor import FAIL, OK, SKIP, WARN, Check, _older_than, format_checks


def _lines(output: str) -> dict[str, str]:
    """'scope name' -> its line, for the check lines of a doctor table."""
    out = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0].lower() in (OK, WARN, FAIL, SKIP):
            out[f"{parts[1]} {parts[2]}"] = line
    return out


def test_calvin_passes_on_this_machine() -> None:
    done = run_cli_process("doctor", "--suite", "calvin")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done.stdout)
    assert lines["system python"].startswith("ok") and "vlaeval" in lines["system python"]
    assert "pybullet" in lines["system packages"]
    assert lines["calvin renderer"].startswith("ok") and "no GPU, OpenGL or EGL needed" in lines["calvin renderer"]
    assert lines["calvin render"].startswith(("ok", "WARN"))  # WARN only on another pybullet build or CPU than the reference's
    assert lines["calvin memory"].startswith(("ok", "WARN")) and "GB available" in lines["calvin memory"]
    assert done.stdout.rstrip().splitlines()[-1].startswith("doctor: ")


@pytest.fixture
def lavapipe() -> str:
    from vlaeval.envs.simpler.vulkan import LAVAPIPE_ICD, NVIDIA_ICDS

    if find_spec("mani_skill") is None:
        pytest.skip("mani_skill not installed (pip install 'vlaeval[simpler]')")

    if any(p.exists() for p in NVIDIA_ICDS) or not LAVAPIPE_ICD.exists():
        pytest.skip("this test is about a machine rendering on lavapipe only")
    return str(LAVAPIPE_ICD)


@pytest.mark.slow
def test_simpler_on_software_vulkan_says_which_driver_it_uses(lavapipe: str) -> None:
    done = run_cli_process("doctor", "--suite", "simpler", env={"VK_ICD_FILENAMES": lavapipe})
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done.stdout)
    assert lines["simpler vulkan"].startswith("ok") and "software rendering on lavapipe" in lines["simpler vulkan"]
    assert "llvmpipe" in lines["simpler vulkan"] and lavapipe in lines["simpler vulkan"]
    assert "simpler render" in lines and "simpler memory" in lines


def test_a_missing_vulkan_driver_fails_with_the_fix(lavapipe: str) -> None:
    done = run_cli_process("doctor", "--suite", "simpler", env={"VK_ICD_FILENAMES": "/nonexistent/vulkan_icd.json"})
    assert done.returncode == 1
    lines = _lines(done.stdout)
    assert lines["simpler vulkan"].startswith("FAIL") and "/nonexistent/vulkan_icd.json, which does not exist" in lines["simpler vulkan"]
    assert "fix: unset VK_ICD_FILENAMES" in done.stdout
    assert "simpler render" not in lines  # nothing can render: the fingerprint is not attempted
    assert done.stdout.rstrip().endswith("1 fail")


def test_a_driver_that_loads_nothing_fails_in_the_probe(lavapipe: str, tmp_path) -> None:
    """An ICD file that exists but names no loadable driver: only SAPIEN's own probe can tell."""
    icd = tmp_path / "broken_icd.json"
    icd.write_text('{"file_format_version": "1.0.0", "ICD": {"library_path": "libvulkan_nothing.so", "api_version": "1.3.0"}}')
    done = run_cli_process("doctor", "--suite", "simpler", env={"VK_ICD_FILENAMES": str(icd)})
    assert done.returncode == 1
    line = _lines(done.stdout)["simpler vulkan"]
    assert line.startswith("FAIL") and "SAPIEN cannot render" in line
    assert "fix: install a Vulkan driver" in done.stdout


def test_a_suite_without_its_simulator_is_skipped_unless_asked_for(monkeypatch: pytest.MonkeyPatch) -> None:
    from vlaeval import doctor
    from vlaeval.plugins.manager import registries

    monkeypatch.setattr(doctor, "SIMULATORS", {e.name: ("no_such_simulator",) for e in registries().suite})
    everything = doctor.run_doctor()
    assert [c.name for c in everything[:2]] == ["python", "packages"]
    assert {(c.name, c.status) for c in everything[2:]} == {("simulator", SKIP)}  # nothing else is tried
    (asked,) = doctor.run_doctor(["calvin"])[2:]
    assert asked == Check("calvin", "simulator", FAIL, "not installed (no_such_simulator missing)", "bash scripts/setup.sh calvin")
    assert doctor.failed([asked]) and not doctor.failed(everything)


def test_software_rendering_next_to_an_nvidia_driver_is_a_warning(lavapipe: str, tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend an NVIDIA ICD is installed while the loader is pointed at lavapipe: the fallback
    that makes a GPU machine's numbers silently differ from its neighbours'."""
    from vlaeval import doctor
    from vlaeval.envs.simpler import vulkan

    nvidia = tmp_path / "nvidia_icd.json"
    nvidia.write_text("{}")
    monkeypatch.setattr(vulkan, "NVIDIA_ICDS", (nvidia,))
    monkeypatch.setenv("VK_ICD_FILENAMES", lavapipe)
    (check,) = doctor._simpler()
    assert check.status == WARN and "software rendering on lavapipe" in check.detail and str(nvidia) in check.detail
    assert "nvidia-smi" in check.fix


def test_device_summaries_are_read_like_sapien_writes_them() -> None:
    from vlaeval.envs.simpler.vulkan import driver_kind, parse_device_summary

    summary = ("GPU: NVIDIA GeForce RTX 4090\n  Supported: 1\n  Present:   1\n  cudaId:    0\n"
               "GPU: llvmpipe (LLVM 15.0.6, 256 bits)\n  Supported: 0\n  Present:   0\n")
    assert parse_device_summary(summary) == [{"name": "NVIDIA GeForce RTX 4090", "supported": True},
                                             {"name": "llvmpipe (LLVM 15.0.6, 256 bits)", "supported": False}]
    assert [driver_kind(d["name"]) for d in parse_device_summary(summary)] == ["NVIDIA", "lavapipe (software)"]
    assert driver_kind("AMD Radeon RX 7900") == "other"


def test_an_unknown_suite_is_a_one_line_error() -> None:
    done = run_cli_process("doctor", "--suite", "calvn")
    assert done.returncode == 2 and "unknown suite 'calvn'" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_table_shows_fixes_for_problems_only() -> None:
    text = format_checks([Check("system", "python", OK, "fine", "never shown"), Check("s", "render", WARN, "differs", "record again"),
                          Check("s", "vulkan", FAIL, "no driver", "install one"), Check("t", "render", SKIP, "not installed")])
    assert "never shown" not in text and "fix: record again" in text and "fix: install one" in text
    assert text.rstrip().splitlines()[-1] == "doctor: 1 ok, 1 warn, 1 fail, 1 skip"
    assert _older_than("22.3.6-1+deb12u1", (24, 3)) and not _older_than("25.0.7-2~bpo12+1", (24, 3)) and not _older_than("unknown", (24, 3))
