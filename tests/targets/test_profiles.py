import pytest

from edgec.targets import TargetError, builtin_target_names, load_target


def test_builtin_targets_load():
    assert {"x86", "arm", "gpu", "android", "ios"} <= set(builtin_target_names())
    for name in builtin_target_names():
        profile = load_target(name)
        assert profile.name == name and profile.execution_providers[-1] == "CPUExecutionProvider"
        assert 0 < profile.min_cosine <= 1 and profile.pipeline


def test_unknown_target_lists_known_ones():
    with pytest.raises(TargetError, match="unknown target 'nope'.*arm.*x86"):
        load_target("nope")


def test_user_profile_from_toml(tmp_path):
    path = tmp_path / "board.toml"
    path.write_text('name = "myboard"\nthreads = 2\nmin_cosine = 0.95\n'
                    'execution_providers = ["XnnpackExecutionProvider", "CPUExecutionProvider"]\n'
                    '[passes.cleanup]\nfold_constants = false\n')
    profile = load_target(str(path))
    assert profile.name == "myboard" and profile.threads == 2 and profile.min_cosine == 0.95
    assert profile.execution_providers == ("XnnpackExecutionProvider", "CPUExecutionProvider")
    assert profile.options_for("cleanup") == {"fold_constants": False}


@pytest.mark.parametrize("text, message", [
    ("fallback = 'sometimes'", "fallback"),
    ("bogus_key = 1", "unknown keys"),
    ("min_cosine = 2.0", "min_cosine"),
    ("this is not toml", "not a valid TOML"),
])
def test_bad_profiles_are_clear_errors(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(TargetError, match=message):
        load_target(str(path))


def test_missing_profile_file(tmp_path):
    with pytest.raises(TargetError, match="not found"):
        load_target(str(tmp_path / "missing.toml"))


def test_a_folder_named_like_a_builtin_target_does_not_shadow_it(tmp_path, monkeypatch):
    (tmp_path / "arm").mkdir()
    monkeypatch.chdir(tmp_path)
    assert load_target("arm").name == "arm"
