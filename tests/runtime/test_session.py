import pytest

from edgec.runtime.session import ProviderUnavailable, SessionConfig, resolve_providers


def test_missing_provider_falls_back_to_cpu_with_a_note():
    resolved = resolve_providers(SessionConfig(("NoSuchExecutionProvider", "CPUExecutionProvider")))
    assert resolved.providers == ("CPUExecutionProvider",)
    assert resolved.missing == ("NoSuchExecutionProvider",)
    assert "NoSuchExecutionProvider" in resolved.notes[0]


def test_error_policy_raises():
    with pytest.raises(ProviderUnavailable, match="NoSuchExecutionProvider"):
        resolve_providers(SessionConfig(("NoSuchExecutionProvider",), fallback="error"))


def test_cpu_is_always_last_resort():
    assert resolve_providers(SessionConfig(("NoSuchExecutionProvider",))).providers == ("CPUExecutionProvider",)
