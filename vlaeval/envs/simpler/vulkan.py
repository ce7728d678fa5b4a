"""Choosing the Vulkan driver SAPIEN renders with, and saying which one it got.

On a machine without a GPU driver, SAPIEN needs Mesa's software rasteriser (lavapipe, Mesa >=
24.3; ``scripts/setup.sh simpler`` installs it from bookworm-backports).  Pointing the Vulkan
loader at it here means users need not export ``VK_ICD_FILENAMES`` themselves; an explicit setting
or an installed NVIDIA driver always wins.
"""

from __future__ import annotations

import os
import re
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

LAVAPIPE_ICD = Path("/usr/share/vulkan/icd.d/lvp_icd.json")
NVIDIA_ICDS = (Path("/usr/share/vulkan/icd.d/nvidia_icd.json"), Path("/etc/vulkan/icd.d/nvidia_icd.json"))
#: The variables through which the Vulkan loader is told which driver manifests (ICDs) to load.
ICD_VARIABLES = ("VK_ICD_FILENAMES", "VK_DRIVER_FILES")


def use_software_vulkan_if_needed() -> None:
    if any(name in os.environ for name in ICD_VARIABLES):
        return
    if any(p.exists() for p in NVIDIA_ICDS):
        return
    if LAVAPIPE_ICD.exists():
        os.environ["VK_ICD_FILENAMES"] = str(LAVAPIPE_ICD)


def renderer_info() -> dict[str, Any]:
    """The Vulkan device SAPIEN actually renders with, its driver and how it was chosen.

    Lavapipe and an NVIDIA driver draw the same scene with different rasterisation and shading
    precision, and a loader silently falling back to software is a common cause of numbers that
    do not reproduce; so a fingerprint records the device SAPIEN reports, not the one the user
    meant to use.  Loads Vulkan through SAPIEN; raises ``RuntimeError`` when no device is usable.
    """
    use_software_vulkan_if_needed()
    import sapien

    devices = parse_device_summary(sapien.render.get_device_summary())
    if not devices:
        raise RuntimeError("SAPIEN found no rendering device")
    device = next((d for d in devices if d["supported"]), devices[0])["name"]
    driver = driver_kind(device)
    icd = next((os.environ[name] for name in ICD_VARIABLES if name in os.environ), "")
    info = {
        "renderer": f"SAPIEN {metadata.version('sapien')} on Vulkan",
        "driver": driver,
        "device": device,
        "icd": icd or "Vulkan loader default",
        "mani_skill": metadata.version("mani_skill"),
    }
    if driver.startswith("lavapipe"):
        info["mesa"] = mesa_version() or "unknown"
    return info


def parse_device_summary(summary: str) -> list[dict[str, Any]]:
    """``[{"name": ..., "supported": bool}]`` from ``sapien.render.get_device_summary()``, whose
    text lists each device as ``KIND: name`` followed by indented ``Supported: 0|1`` lines."""
    devices: list[dict[str, Any]] = []
    for line in summary.splitlines():
        head = re.match(r"^\S[^:]*:\s*(.+)$", line)
        if head:
            devices.append({"name": head.group(1).strip(), "supported": False})
        elif devices and re.match(r"^\s+Supported:\s*1\s*$", line):
            devices[-1]["supported"] = True
    return devices


def driver_kind(device: str) -> str:
    """``lavapipe (software)``, ``NVIDIA`` or ``other``: what decides whether frames can match."""
    if "llvmpipe" in device.lower():
        return "lavapipe (software)"
    if re.search(r"nvidia|geforce|quadro|tesla|rtx", device, re.IGNORECASE):
        return "NVIDIA"
    return "other"


def mesa_version() -> str | None:
    """The installed Mesa Vulkan drivers' package version (Debian), or None where dpkg cannot say.

    Lavapipe reports only its LLVM version to SAPIEN, and SAPIEN needs Mesa >= 24.3."""
    try:
        done = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "mesa-vulkan-drivers"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None

