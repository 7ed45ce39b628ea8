"""The README's commands work as written.

Every command line in the README's fenced code blocks that starts with
``python -m pipelines.`` is checked (one test per line, named by its line number and the
command):

- ``python -m pipelines.run ...`` composes: it is run with ``--cfg job`` appended, which
  prints the composed config and trains nothing. Hydra refuses ``--cfg`` together with
  ``-m``, so a sweep is composed job by job, as the basic sweeper would split it
  (``model=mlp,convnet`` is two compositions), with ``hydra.mode=MULTIRUN`` kept so that
  what needs a sweep (``hparams_search=optuna``) is still in one.
- Every other ``python -m pipelines.<command>`` names a real module, whose ``--help``
  exits 0.
- A line whose trailing comment says it finishes **in seconds** (``# runs in seconds``,
  ``# a quick look, in seconds``: the comment contains the words "in seconds") is also run
  for real, in an empty working folder as after a fresh clone: it must exit 0, and every
  MLflow run it made be FINISHED. In a non-``run`` command so marked, ``RUN_ID`` stands for
  the id of a fresh 2-epoch default run made in that folder first.

How a line is read: a trailing ``\\`` joins the next line; ``# comments`` are cut off; a
line may chain commands (``... && python -m pipelines.run``) and start with environment
variables (``CI=1 python -m ...``); an optional part written ``[...]`` between spaces
(``[--split val]``) is taken as given (``--split val``), a bare ``...`` is dropped, and the
placeholders ``RUN_ID`` and file names (``a.png``) matter only to lines run for real.
Shell transcripts (``$ python -m ...`` followed by output) are examples, often of errors,
and are not checked here. A line that cannot compose because it needs an extra the test
environment lacks (``pip install -e ".[ray]"`` earlier in its block) is skipped, saying so.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import math
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

#: the words in a command's trailing comment that have it run for real
RUNS_IN_SECONDS = re.compile(r"\bin seconds\b", re.IGNORECASE)
#: at least this many `python -m pipelines.run` lines: fewer means the extraction broke
MIN_RUN_LINES = 5
#: a sweep of more jobs than this is composed on a subset that still uses every value
MAX_JOBS = 8


def test_ci_runs_the_readme_test_command() -> None:
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    command = next(line for line in ci_lines if "pytest" in line)
    assert command in README.read_text()


# --- reading the README -------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One ``python -m pipelines.X`` command of the README."""

    line: int  # where it starts in README.md (1-based)
    text: str  # as written, comment cut off
    env: tuple[tuple[str, str], ...]  # VAR=value before it
    module: str  # pipelines.run, pipelines.evaluate, ...
    args: tuple[str, ...]  # optional parts taken as given, `...` dropped
    comment: str
    extras: tuple[str, ...]  # `pip install -e ".[X]"` earlier in its block

    @property
    def runs_in_seconds(self) -> bool:
        return bool(RUNS_IN_SECONDS.search(self.comment))

    @property
    def id(self) -> str:
        return f"L{self.line}: {self.text}"


_FENCE = re.compile(r"^\s{0,3}(```+|~~~+)")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_OPTIONAL = re.compile(r"(?<!\S)\[([^\[\]]*)\](?!\S)")
_PIPELINES = re.compile(r"(^|\s)python3? -m pipelines\.")
_EXTRAS = re.compile(r"pip install\b.*?\.\[([\w,\s-]+)\]")


def _split_comment(line: str) -> tuple[str, str]:
    """``command # comment`` -> (command, comment); a # inside quotes or a word stays."""
    quote = None
    for i, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def _logical_lines(text: str):
    """(first line number, line, its comment, extras installed earlier in its block) of
    each line in a fenced block, ``\\`` continuations joined."""
    fence = None
    pending, start, extras = "", 0, ()
    for number, raw in enumerate(text.splitlines(), start=1):
        opened = _FENCE.match(raw)
        if fence is None:
            if opened:
                fence, extras = opened.group(1), ()
            continue
        if opened and raw.strip().startswith(fence) and not raw.strip().strip(fence[0]):
            fence, pending = None, ""
            continue
        code, comment = _split_comment(raw)
        if not pending:
            start = number
        if code.endswith("\\"):
            pending += code[:-1] + " "
            continue
        line, pending = (pending + code).strip(), ""
        found = _EXTRAS.search(line)
        if found:
            extras = tuple(e.strip() for e in found.group(1).split(",") if e.strip())
        yield start, line, comment, extras


def _segments(line: str) -> list[str]:
    """The commands of a shell line: split at ``&&``, ``||``, ``;``; a pipe's reader and a
    trailing ``&`` dropped."""
    parts = []
    for part in re.split(r"\s*(?:&&|\|\||;)\s*", line):
        part = re.split(r"\s\|\s", part)[0].strip().removesuffix("&").strip()
        if part:
            parts.append(part)
    return parts


def readme_commands(text: str) -> list[Command]:
    commands = []
    for number, line, comment, extras in _logical_lines(text):
        for segment in _segments(line):
            if not _PIPELINES.search(segment):
                continue  # prose in a block (the book's) may not even split as shell
            try:
                words = shlex.split(_OPTIONAL.sub(r"\1", segment))
            except ValueError:  # unbalanced quotes: split at spaces, still checked
                words = _OPTIONAL.sub(r"\1", segment).split()
            env = []
            while words and _ENV.match(words[0]):
                name, _, value = words.pop(0).partition("=")
                env.append((name, value))
            if len(words) < 3 or words[0] not in ("python", "python3") or words[1] != "-m":
                continue
            if not words[2].startswith("pipelines."):
                continue
            args = tuple(word for word in words[3:] if word not in ("...", "…"))
            commands.append(
                Command(
                    number, " ".join(segment.split()), tuple(env), words[2], args, comment, extras
                )
            )
    return commands


COMMANDS = readme_commands(README.read_text())
RUN_LINES = [c for c in COMMANDS if c.module == "pipelines.run"]
OTHER_LINES = [c for c in COMMANDS if c.module != "pipelines.run"]
QUICK_LINES = [c for c in COMMANDS if c.runs_in_seconds]


def _params(commands: list[Command], none: str) -> list:
    if not commands:
        return [pytest.param(None, marks=pytest.mark.skip(reason=none), id="none")]
    return [pytest.param(c, id=c.id) for c in commands]


def test_the_readme_has_commands_to_check() -> None:
    """Guards the extraction: a parser that finds nothing would pass every check below."""
    assert len(RUN_LINES) >= MIN_RUN_LINES, [c.id for c in COMMANDS]


def test_reading_a_readme_line() -> None:
    text = "\n".join(
        [
            "```bash",
            "pip install -e '.[ray]'",
            "FOO=1 python -m pipelines.run -m seed=1,2 \\",
            "    model.hidden_units=[64,64] ...   # a sweep, in seconds",
            "python3 -m venv .venv && python -m pipelines.run  # set-up",
            "python -m pipelines.evaluate RUN_ID [--split val]  # again",
            "$ python -m pipelines.run model=mpl",
            "```",
            "python -m pipelines.run outside=a_block",
        ]
    )
    sweep, setup, evaluate = readme_commands(text)
    assert sweep.line == 3 and sweep.env == (("FOO", "1"),) and sweep.extras == ("ray",)
    assert sweep.args == ("-m", "seed=1,2", "model.hidden_units=[64,64]")
    assert sweep.runs_in_seconds and not setup.runs_in_seconds
    assert setup.text == "python -m pipelines.run" and setup.args == ()
    assert evaluate.module == "pipelines.evaluate"
    assert evaluate.args == ("RUN_ID", "--split", "val")


# --- composing `python -m pipelines.run` lines --------------------------------------------


def _sweep_jobs(overrides: list[str]) -> list[list[str]]:
    """Each job's overrides, as Hydra's basic sweeper splits a command line; past
    ``MAX_JOBS``, job i takes the i-th value of every swept key (so every value is used)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    axes = []
    for override in OverridesParser.create().parse_overrides(overrides):
        if override.is_sweep_override() and override.is_discrete_sweep():
            key = override.get_key_element()
            axes.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:  # a plain override, or interval(...): an Optuna search's range
            axes.append([override.input_line])
    if math.prod(len(axis) for axis in axes) <= MAX_JOBS:
        return [list(job) for job in itertools.product(*axes)]
    longest = max(len(axis) for axis in axes)
    return [[axis[i % len(axis)] for axis in axes] for i in range(longest)]


#: Hydra's options that take a value (the others are flags)
_VALUED_OPTIONS = {"--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd"}
_VALUED_OPTIONS |= {"--package", "-p", "--experimental-rerun"}
_MULTIRUN_MODE = "hydra.mode=MULTIRUN"


def _compositions(command: Command) -> list[list[str]]:
    """The argument lists that compose what ``command`` would run."""
    args = list(command.args)
    if {"--help", "-h", "--hydra-help", "--cfg", "-c", "--info", "-i"} & set(args):
        return [args]  # prints and exits as it is
    options, overrides, multirun = [], [], False
    words = iter(args)
    for word in words:
        if word in ("-m", "--multirun"):
            multirun = True
        elif word in _VALUED_OPTIONS:
            options += [word, next(words, "")]
        elif word.startswith("-") and "=" not in word:
            options.append(word)
        elif word.replace(" ", "") == _MULTIRUN_MODE:
            multirun = True
        else:
            overrides.append(word)
    if not multirun:
        return [[*options, *overrides, "--cfg", "job"]]
    return [[*options, *job, _MULTIRUN_MODE, "--cfg", "job"] for job in _sweep_jobs(overrides)]


def _missing_extras(extras: tuple[str, ...]) -> list[str]:
    """Of this package's extras, those whose requirements are not all installed."""
    from packaging.requirements import Requirement

    requirements = [Requirement(r) for r in importlib.metadata.requires("pipelines") or []]
    missing = []
    for extra in extras:
        for requirement in requirements:
            if requirement.marker is None or not requirement.marker.evaluate({"extra": extra}):
                continue
            try:
                importlib.metadata.distribution(requirement.name)
            except importlib.metadata.PackageNotFoundError:
                missing.append(extra)
                break
    return missing


@pytest.mark.parametrize("command", _params(RUN_LINES, "no `python -m pipelines.run` line"))
def test_readme_run_line_composes(command: Command, workdir: Path) -> None:
    for args in _compositions(command):
        result = run_cli(args, workdir, env=dict(command.env), timeout=120)
        if result.returncode == 0:
            assert "Traceback" not in result.output, result.output
            continue
        missing = _missing_extras(command.extras)
        if missing:
            pytest.skip(
                f"needs the extra {missing} (`pip install -e '.[{','.join(missing)}]'`, as "
                f"the README says above it): {result.stderr.strip().splitlines()[-1]}"
            )
        pytest.fail(
            f"README line {command.line} does not compose: `python -m pipelines.run "
            f"{shlex.join(args)}` exited {result.returncode}:\n{result.output[-3000:]}"
        )


# --- the other commands -------------------------------------------------------------------


@pytest.mark.parametrize("command", _params(OTHER_LINES, "no other `pipelines.X` command"))
def test_readme_command_is_real(command: Command, workdir: Path) -> None:
    assert importlib.util.find_spec(command.module) is not None, f"no module {command.module}"
    result = run_cli(["--help"], workdir, module=command.module, timeout=120)
    assert result.returncode == 0, result.output
    assert "Traceback" not in result.output, result.output


# --- the lines that run in seconds, for real ----------------------------------------------


def _finished_runs(directory: Path) -> list:
    """Every MLflow run in ``directory``'s default store (``./mlruns/mlflow.db``)."""
    from mlflow import MlflowClient

    database = directory / "mlruns" / "mlflow.db"
    assert database.exists(), f"no MLflow store at {database}"
    client = MlflowClient(tracking_uri=f"sqlite:///{database}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments)
    assert runs, f"no MLflow run in {database}"
    unfinished = {r.info.run_name: r.info.status for r in runs if r.info.status != "FINISHED"}
    assert not unfinished, f"runs not FINISHED: {unfinished}"
    return runs


@pytest.mark.parametrize(
    "command", _params(QUICK_LINES, 'no README command is marked "# ... in seconds"')
)
def test_readme_line_marked_in_seconds_runs(command: Command, tmp_path: Path) -> None:
    workdir = tmp_path / "fresh-clone"
    workdir.mkdir()
    args = list(command.args)
    if any("RUN_ID" in arg for arg in args):
        made = run_cli(["trainer.max_epochs=2"], workdir, timeout=300)
        assert made.returncode == 0, made.output
        (run,) = _finished_runs(workdir)
        args = [arg.replace("RUN_ID", run.info.run_id) for arg in args]
    result = run_cli(args, workdir, env=dict(command.env), module=command.module, timeout=300)
    assert result.returncode == 0, (
        f"README line {command.line} exited {result.returncode}:\n{result.output[-3000:]}"
    )
    if command.module == "pipelines.run" and "tracking=none" not in args:
        _finished_runs(workdir)
