"""Choosing the Vulkan driver SAPIEN renders with.

On a machine without a GPU driver, SAPIEN needs Mesa's software rasteriser (lavapipe, Mesa >=
24.3; ``scripts/setup.sh simpler`` installs it from bookworm-backports).  Pointing the Vulkan
loader at it here means users need not export ``VK_ICD_FILENAMES`` themselves; an explicit setting
or an installed NVIDIA driver always wins.
"""

from __future__ import annotations

import os
from pathlib import Path

LAVAPIPE_ICD = Path("/usr/share/vulkan/icd.d/lvp_icd.json")
NVIDIA_ICDS = (Path("/usr/share/vulkan/icd.d/nvidia_icd.json"), Path("/etc/vulkan/icd.d/nvidia_icd.json"))


def use_software_vulkan_if_needed() -> None:
    if "VK_ICD_FILENAMES" in os.environ or "VK_DRIVER_FILES" in os.environ:
        return
    if any(p.exists() for p in NVIDIA_ICDS):
        return
    if LAVAPIPE_ICD.exists():
        os.environ["VK_ICD_FILENAMES"] = str(LAVAPIPE_ICD)
