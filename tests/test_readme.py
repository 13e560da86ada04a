"""The README's `edgec` command lines, run as tests (as Polygraphy runs its README's commands).

README.md is parsed at collection time: every `edgec …` line of its shell code blocks (a trailing backslash
continues a line, `#` starts a comment) and every inline code span that is a whole command line (`edgec VERB`
and at least one argument). Each command runs through the CLI in a temporary folder, the files it reads
replaced by tiny models built here, and is held to what the README says it does. A command that cannot run
here is on SKIPPED with its reason; one the README gets wrong is on KNOWN_BROKEN. A README command on
neither list is run, and fails if this file has no checks for its verb, so the lists cannot rot.
"""

from __future__ import annotations

import json
import re
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from edgec.compiler.bench.regression import load_baseline
from edgec.targets import builtin_target_names, load_target

import models
from clirun import run_cli

README = Path(__file__).resolve().parents[1] / "README.md"
SHELL_BLOCKS = {"", "sh", "bash", "shell", "console", "zsh"}
OUTPUT_OPTIONS = {"-o", "--output", "--junit", "--save-baseline", "--report", "--emit-delta"}
FILE_SUFFIXES = (".onnx", ".npz", ".toml", ".json")

# README command → why it is not run here (an ssh device, a phone, slow qemu, HF checkpoints, a GPU, a cluster).
SKIPPED: dict[str, str] = {
    "edgec compile-many ocr.onnx det.onnx --target x86,arm -o fleet --executor ray://head:10001":
        "needs a Ray cluster at head:10001 (tests/compiler/cli/test_compile_many_cli.py runs one on 127.0.0.1)",
    "edgec compile-many --manifest fleet.toml -o fleet --executor ray:head:6379":
        "needs a Ray cluster at head:6379 (the manifest is tested in tests/compiler/cli/test_compile_many_cli.py)",
}

# README command → (what is wrong with it as printed, the error it exits with today).
KNOWN_BROKEN: dict[str, tuple[str, str]] = {}


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]    # without the leading `edgec`
    comment: str             # the README's `# …` after it, if any

    @property
    def text(self) -> str:
        return shlex.join(("edgec", *self.argv))


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    return re.findall(r"^```[ \t]*([\w+-]*)[^\n]*\n(.*?)^```", text, flags=re.M | re.S)


def readme_commands(text: str) -> list[Command]:
    commands: list[Command] = []
    for lang, body in _fenced_blocks(text):
        if lang.lower() not in SHELL_BLOCKS:
            continue
        for line in re.sub(r"\\\n", " ", body).splitlines():
            line = line.strip().removeprefix("$ ")
            if not line.startswith("edgec "):         # other tools, and comments
                continue
            code, _, comment = line.partition(" #")
            commands.append(Command(tuple(shlex.split(code)[1:]), comment.strip()))
    prose = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    for span in re.findall(r"`(edgec [^`\n]+)`", prose):
        tokens = shlex.split(span)
        if len(tokens) >= 3:                            # `edgec inspect` alone names a verb, runs nothing
            commands.append(Command(tuple(tokens[1:]), ""))
    seen: set[str] = set()
    return [c for c in commands if not (c.text in seen or seen.add(c.text))]      # the first of duplicates


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def readme_board() -> str:
    """The README's own board profile (its ```toml block): the `--target board.toml` of the commands."""
    blocks = [body for lang, body in _fenced_blocks(README.read_text(encoding="utf-8")) if lang == "toml"]
    assert blocks, "a README command reads a .toml target but the README has no ```toml block to build"
    return blocks[0]


def option(argv, *names, default=None):
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in names:
            return value
    return default


def positionals(argv) -> list[str]:
    """The arguments that are neither options nor their values (every edgec option but a flag takes one)."""
    flags = {"--force", "--recover", "--allow-slower", "--allow-synthetic", "--no-measure", "--debug",
             "--per-layer-q"}
    out, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg.startswith("-"):
            skip = arg not in flags and "=" not in arg
        else:
            out.append(arg)
    return out


def input_files(argv) -> list[str]:
    """The file names a command reads: file-like arguments that do not follow an output option."""
    return [a for prev, a in zip(("", *argv), argv, strict=False)
            if a.endswith(FILE_SUFFIXES) and prev not in OUTPUT_OPTIONS]


def slow_model() -> onnx.ModelProto:
    """Same input and output as models.mlp_model(), several times its latency (24 blocks instead of 2)."""
    return models.mlp_model(blocks=24, residual=False)


def write_fixtures(argv, folder: Path, slow: tuple[str, ...] = ()) -> None:
    """Every file the command reads, as a tiny model (a slow one for the names in `slow`) or its data."""
    for name in input_files(argv):
        path = folder / name
        if name.endswith(".onnx"):
            onnx.save_model(slow_model() if name in slow else models.mlp_model(), str(path))
        elif name.endswith(".npz"):
            rng = np.random.default_rng(0)
            np.savez(path, x=rng.standard_normal((24, 5, models.D)).astype(np.float32))
        elif name.endswith(".toml"):
            path.write_text(readme_board(), encoding="utf-8")
        elif name == option(argv, "--baseline"):         # an earlier `bench --save-baseline` of the model
            earlier = folder / "earlier"
            earlier.mkdir()
            onnx.save_model(slow_model() if name in slow else models.mlp_model(), str(earlier / "model.onnx"))
            code, out = run_cli("bench", earlier / "model.onnx", "--save-baseline", path)
            assert code == 0, out
        else:
            pytest.fail(f"no fixture for '{name}': teach write_fixtures to build it")


def feed_for(path: Path) -> dict[str, np.ndarray]:
    return models.feeds(onnx.load(str(path)), count=1)[0]


# ----- what the README says each verb does


def check_compile(cmd: Command, code: int, out: str, folder: Path) -> None:
    argv = cmd.argv
    model = Path(positionals(argv)[0])
    profile = load_target(option(argv, "--target", "-t", default="x86"))
    default = model.with_name(f"{model.stem}.{profile.name}.onnx")           # MODEL.<target>.onnx
    output = Path(option(argv, "--output", "-o", default=default))
    report = Path(option(argv, "--report", default=output.with_suffix(".report.json")))
    if "--goal" in argv:     # the best point is written either way; none meeting the goal → exit 1
        assert code in (0, 1), out
        assert "goal search:" in out and (code == 0 or "no pipeline meets --goal" in out), out
    else:                    # the gate holds on these models: the default pipeline and explicit flags exit 0
        assert code == 0, out
    assert f"edgec compile → {profile.name}" in out, out
    assert output.is_file() and report.is_file(), sorted(p.name for p in folder.iterdir())
    data = json.loads(report.read_text(encoding="utf-8"))
    assert data["target"] == profile.name and Path(data["output"]).name == output.name
    assert data["ok"] and data["fidelity_ok"], data["notes"]
    if option(argv, "--min-cosine") is not None:
        assert data["min_cosine"] == float(option(argv, "--min-cosine"))
    calib = option(argv, "--calib")
    assert Path(data["calibration"]["source"]).name == (Path(calib).name if calib else "synthesized"), data
    compiled = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    feed = feed_for(model)
    original = models.run(onnx.load(str(model)), feed)
    assert [o.shape for o in compiled.run(None, feed)] == [o.shape for o in original]
    for claimed in re.findall(r"[\w.-]+\.(?:onnx|json|ort|md|html)\b", cmd.comment.partition("→")[2]):
        assert (folder / claimed).is_file(), f"the README says the command writes {claimed}"


def check_inspect(cmd: Command, code: int, out: str, folder: Path) -> None:
    assert code == 0, out
    assert positionals(cmd.argv)[0] in out and "ops:" in out, out
    assert re.search(r"MLP blocks: 2\b", out), out          # models.mlp_model(): two residual MLP blocks


def check_export(cmd: Command, code: int, out: str, folder: Path) -> None:
    assert code == 0, out
    output = folder / option(cmd.argv, "--output", "-o")
    assert output.is_file(), out
    model = onnx.load(str(output))
    onnx.checker.check_model(model)
    batch_dims = [i.type.tensor_type.shape.dim[0] for i in model.graph.input]
    assert batch_dims and all(d.dim_param for d in batch_dims), batch_dims    # "dynamic batch"


def check_targets(cmd: Command, code: int, out: str, folder: Path) -> None:
    assert code == 0, out
    for name in builtin_target_names():
        assert re.search(rf"^{re.escape(name)}\s", out, flags=re.M), f"target {name} missing:\n{out}"
    assert "CPUExecutionProvider" in out, out


def check_bench(cmd: Command, code: int, out: str, folder: Path) -> None:
    assert code == 0, out
    assert "p50" in out and positionals(cmd.argv)[0] in out, out
    baseline = option(cmd.argv, "--save-baseline")
    if baseline:
        assert load_baseline(folder / baseline)["samples_ms"]


def check_compile_many(cmd: Command, code: int, out: str, folder: Path) -> None:
    assert code == 0, out
    argv = cmd.argv
    models_given = [Path(m).stem for m in positionals(argv)]
    targets = option(argv, "--target", "-t", default="x86").split(",")
    out_dir = folder / option(argv, "--out-dir", "-o", default="build/fleet")
    rows = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    assert [(Path(r["model"]).stem, r["target"]) for r in rows] == [(m, t) for m in models_given for t in targets]
    assert all(r["status"] == "ok" for r in rows) and "status" in out, out
    for m in models_given:
        for t in targets:
            assert (out_dir / f"{m}.{t}.onnx").is_file() and (out_dir / f"{m}.{t}.report.json").is_file()


CHECKS = {"compile": check_compile, "inspect": check_inspect, "export": check_export,
          "targets": check_targets, "bench": check_bench, "compile-many": check_compile_many}


def _run(cmd: Command, folder: Path, monkeypatch) -> tuple[int, str]:
    monkeypatch.chdir(folder)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)    # `check` would append to a CI job's summary
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    return run_cli(*cmd.argv)


def _is_check(cmd: Command) -> bool:
    return cmd.argv[:1] == ("check",)


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if not _is_check(c)], ids=lambda c: c.text)
def test_readme_command(cmd: Command, tmp_path, monkeypatch):
    if cmd.text in SKIPPED:
        pytest.skip(SKIPPED[cmd.text])
    write_fixtures(cmd.argv, tmp_path)
    code, out = _run(cmd, tmp_path, monkeypatch)
    if cmd.text in KNOWN_BROKEN:
        reason, error = KNOWN_BROKEN[cmd.text]
        assert code == 2 and error in out, f"exit {code}, not the known failure: off KNOWN_BROKEN\n{out}"
        pytest.xfail(reason)
    if cmd.argv[0] not in CHECKS:
        pytest.fail(f"no checks for `edgec {cmd.argv[0]}`: add them to CHECKS or put `{cmd.text}` on SKIPPED")
    CHECKS[cmd.argv[0]](cmd, code, out, tmp_path)


@pytest.mark.parametrize("slower", [False, True], ids=["faster", "slower"])
@pytest.mark.parametrize("cmd", [c for c in COMMANDS if _is_check(c)], ids=lambda c: c.text)
def test_readme_check_command(cmd: Command, slower: bool, tmp_path, monkeypatch):
    """`check` "exits 1 on a real slowdown": run with the model several times faster than its reference
    (exit 0, OK), then several times slower (exit 1, REGRESSION): a margin no machine's noise can bridge."""
    if cmd.text in SKIPPED:
        pytest.skip(SKIPPED[cmd.text])
    model = positionals(cmd.argv)[0]
    reference = option(cmd.argv, "--against", "--baseline")
    assert reference, f"{cmd.text}: check needs --against or --baseline"
    write_fixtures(cmd.argv, tmp_path, slow=(model,) if slower else (reference,))
    code, out = _run(cmd, tmp_path, monkeypatch)
    status = "REGRESSION" if slower else "OK"
    assert code == (1 if slower else 0) and f"edgec check: {status}: " in out, out
    junit = option(cmd.argv, "--junit")
    if junit:
        suite = ET.parse(tmp_path / junit).getroot()
        assert suite.tag == "testsuite" and suite.get("failures") == str(int(slower)), ET.tostring(suite)


def test_the_readme_commands_are_found_and_every_verb_has_checks_or_a_skip():
    texts = [c.text for c in COMMANDS]
    assert len(texts) >= 5 and "edgec targets" in texts, texts   # the parser still finds the quick start
    covered = {*CHECKS, "check", *(shlex.split(s)[1] for s in SKIPPED)}
    assert {c.argv[0] for c in COMMANDS} <= covered, texts


def test_skipped_and_known_broken_name_only_commands_still_in_the_readme():
    texts = {c.text for c in COMMANDS}
    stale = [c for c in [*SKIPPED, *KNOWN_BROKEN] if c not in texts]
    assert not stale, f"no longer in the README: take them off SKIPPED / KNOWN_BROKEN: {stale}"
    assert not set(SKIPPED) & set(KNOWN_BROKEN)


def test_the_parser_joins_continued_lines_and_drops_comments():
    text = ("```sh\n# edgec inspect not-a-command.onnx\nedgec compile a.onnx \\\n"
            "  --target arm   # → a.arm.onnx\nmake demo\n```\n\n```toml\nedgec = 1\n```\n"
            "See `edgec inspect` and `edgec bench b.onnx --runs 5`.\n")
    assert readme_commands(text) == [Command(("compile", "a.onnx", "--target", "arm"), "→ a.arm.onnx"),
                                     Command(("bench", "b.onnx", "--runs", "5"), "")]
