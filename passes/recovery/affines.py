"""Group affines: K groups of contiguous channels per site, one scale γ and one shift β per group, and the
exact fold of `h̃ = γ ⊙ h + β` into the site's constants (weight columns or per-channel scales × γ,
bias → γ·b + β)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgec.passes.recovery.sites import Site
from edgec.runtime.zo.tuner import group_index  # one definition: the tuner on a device expands groups with it


def group_count(channels: int, groups: int) -> int:
    return max(1, min(groups, channels))


@dataclass
class Affine:
    """One site's per-group γ and β (β all zero where the site has no bias to carry it)."""

    gamma: np.ndarray
    beta: np.ndarray

    @classmethod
    def identity(cls, groups: int) -> Affine:
        return cls(np.ones(groups), np.zeros(groups))

    def per_channel(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        index = group_index(channels, len(self.gamma))
        return self.gamma[index], self.beta[index]


def fold(site: Site, affine: Affine) -> None:
    """Write γ and β into the site's constants in place: the graph then computes γ ⊙ h + β at `site.output`."""
    gamma, beta = affine.per_channel(site.channels)
    if np.any(beta) and site.bias is None:
        raise ValueError(f"site {site.output} has no bias to carry a shift")
    for const, axis in site.scales:
        values = const.values
        if values.size == 1 and site.channels > 1:       # a per-tensor scale becomes per-channel
            values = np.full(site.channels, values.reshape(-1)[0], values.dtype)
            axis = 0
        shape = [1] * values.ndim
        shape[axis] = site.channels
        const.values = (values * gamma.reshape(shape)).astype(values.dtype)
    if site.bias is not None:
        b = site.bias.values
        folded = gamma * b.reshape(-1) + beta / site.bias_factor
        site.bias.values = folded.reshape(b.shape).astype(b.dtype)


def trainable_count(sites: list[Site], groups: int) -> int:
    """γ per group everywhere, β per group where the site has a bias."""
    return sum(group_count(s.channels, groups) * (2 if s.shifts else 1) for s in sites)
