"""Target profiles: built-in TOML files in this folder, or a user's own board file.

Standard library only: a profile must load on a device that has nothing else installed.
"""

from edgec.targets.profile import (
    LatencySettings,
    TargetError,
    TargetProfile,
    builtin_target_names,
    load_target,
)

__all__ = ["LatencySettings", "TargetError", "TargetProfile", "builtin_target_names", "load_target"]
