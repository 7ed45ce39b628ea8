"""Plugin keys noted between runs: a misspelt key refused before torch is imported, and a
note that no longer holds (a source file changed) never used."""

from __future__ import annotations

import importlib.util
import inspect
import os
import sys
import time
import typing
from pathlib import Path

import pytest

from conftest import run_cli
from pipelines import plugin_keys
from pipelines.validation import parameters_of, type_hints_of
from test_help import heavy_modules


@pytest.fixture(autouse=True)
def nothing_noted_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test is a process of its own as far as noting goes (a note is taken once per
    plugin and process)."""
    monkeypatch.setattr(plugin_keys, "_NOTED_IN_THIS_PROCESS", set())


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PIPELINES_CACHE_DIR", str(folder))
    return folder


def _as_if_started_now() -> None:
    """Files written by the test count as written before "this process" started (a note is
    not taken of files changed while a process runs: it may hold their old version)."""
    plugin_keys._PROCESS_STARTED_NS = time.time_ns() + 1
    plugin_keys._NOTED_IN_THIS_PROCESS.clear()


def _plugin_module(folder: Path, name: str, source: str):
    """A plugin class in a module file of its own, imported from there."""
    path = folder / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module, path


BASE = "class Base:\n    def __init__(self, rate: float = 0.1, **kwargs) -> None: ...\n"
PLUGIN = (
    "from __future__ import annotations\n"
    "from keys_base import Base\n"
    "class Plugin(Base):\n"
    "    def __init__(self, units: int = 8, rate: float = 0.1) -> None: ...\n"
)


def test_only_plain_types_are_noted() -> None:
    """A note holds types it can write as JSON and read back without running code."""
    from typing import Literal, Optional

    optional = Optional[str]  # noqa: UP045 -- as older plugins write it
    for annotation in (int, float | None, optional, Literal["sgd", "adam"], bool):
        described = plugin_keys._describe(annotation)
        assert described is not None, annotation
        rebuilt = plugin_keys._rebuild(described)
        assert plugin_keys._describe(rebuilt) == described
    for annotation in (tuple[int, ...], list[int], int | str, dict, Path):
        assert plugin_keys._describe(annotation) is None, annotation


def _note(tmp_path: Path) -> tuple[type, Path, Path]:
    _, base_path = _plugin_module(tmp_path, "keys_base", BASE)
    module, path = _plugin_module(tmp_path, "keys_plugin", PLUGIN)
    _as_if_started_now()
    plugin = module.Plugin
    plugin_keys.remember(
        "model", "keys_plugin:Plugin", plugin, parameters_of(plugin), type_hints_of(plugin)
    )
    return plugin, path, base_path


def test_keys_noted_on_import_are_recalled_while_the_files_are_unchanged(
    cache: Path, tmp_path: Path
) -> None:
    _note(tmp_path)
    noted = plugin_keys.recall("model", "keys_plugin:Plugin")
    assert noted == plugin_keys.NotedKeys(["units", "rate"], False, {"units": int, "rate": float})
    assert plugin_keys.recall("model", "other:Plugin") is None  # another entry point
    assert plugin_keys.recall("data", "keys_plugin:Plugin") is None  # another kind


@pytest.mark.parametrize("changed", ["plugin", "base"])
def test_a_changed_source_file_voids_the_note(cache: Path, tmp_path: Path, changed: str) -> None:
    """The constructor may be inherited: a base class's file counts as much as its own."""
    _, path, base_path = _note(tmp_path)
    edited = path if changed == "plugin" else base_path
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert plugin_keys.recall("model", "keys_plugin:Plugin") is None


def test_a_broken_or_unwritable_note_is_ignored(cache: Path, tmp_path: Path) -> None:
    cache.mkdir()
    plugin_keys.cache_file().write_text("{not json")
    assert plugin_keys.recall("model", "keys_plugin:Plugin") is None
    _note(tmp_path)  # replaces the broken note
    assert plugin_keys.recall("model", "keys_plugin:Plugin") is not None
    if os.geteuid() != 0:  # root writes anywhere
        cache.chmod(0o500)
        try:
            plugin_keys.cache_file().unlink(missing_ok=True)
            _note(tmp_path)  # no error, nothing noted
        finally:
            cache.chmod(0o700)


def test_a_class_made_from_a_string_is_not_noted(cache: Path) -> None:
    """Its module (here pytest's __main__) has a file, but its constructor was not in it."""
    namespace: dict = {}
    exec("class Made:\n    def __init__(self, a: int = 1) -> None: ...\n", namespace)
    made = namespace["Made"]
    made.__module__ = "__main__"
    assert inspect.isclass(made)
    plugin_keys.remember("model", "made:Made", made, parameters_of(made), type_hints_of(made))
    assert plugin_keys.recall("model", "made:Made") is None


def test_a_misspelt_key_is_refused_before_any_framework_import_once_noted(
    workdir: Path,
) -> None:
    """`+model.dropuot=0.2` took the plugin's import (7.8-9.5 s here) to refuse."""
    args = ["model=convnet", "+model.kernal_size=3"]
    first = run_cli(args, workdir)  # imports the plugin, so notes its keys
    assert first.returncode == 2
    assert "Did you mean 'kernel_size'?" in first.stderr
    assert heavy_modules(args, workdir) == "HEAVY []"
    again = run_cli(args, workdir)
    assert again.returncode == 2 and again.stderr == first.stderr  # the same one paragraph
    # a value of the wrong plain type too, with the message the plugin's import gives
    wrong_type = ["model=convnet", "model.kernel_size=wide"]
    assert heavy_modules(wrong_type, workdir) == "HEAVY []"
    refused = run_cli(wrong_type, workdir)
    assert refused.returncode == 2
    assert "Wrong value for 'model.kernel_size': expected int, got 'wide'" in refused.stderr


def test_a_note_is_not_lent_to_another_checkout_or_environment(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two checkouts share ~/.cache; the same entry point names different files in each."""
    _note(tmp_path)
    monkeypatch.setattr(plugin_keys, "_origin", lambda entry_point: "/elsewhere/keys_plugin.py|")
    assert plugin_keys.recall("model", "keys_plugin:Plugin") is None


def test_files_changed_while_the_process_ran_are_not_noted(cache: Path, tmp_path: Path) -> None:
    """An in-process sweep or a notebook holds the keys it imported, maybe not the file's."""
    _note(tmp_path)
    plugin_keys.cache_file().unlink()
    _, path = _plugin_module(tmp_path, "keys_plugin", PLUGIN)  # rewritten: newer than start
    plugin_keys._PROCESS_STARTED_NS = path.stat().st_mtime_ns - 1
    plugin_keys._NOTED_IN_THIS_PROCESS.clear()
    plugin = sys.modules["keys_plugin"].Plugin
    plugin_keys.remember("model", "keys_plugin:Plugin", plugin, parameters_of(plugin), {})
    assert plugin_keys.recall("model", "keys_plugin:Plugin") is None


def test_types_named_elsewhere_and_signatures_set_by_hand_are_not_noted(
    cache: Path, tmp_path: Path
) -> None:
    _plugin_module(tmp_path, "keys_kinds", "from typing import Literal\nKind = Literal['a', 'b']\n")
    source = (
        "from __future__ import annotations\n"
        "from keys_kinds import Kind\n"
        "class Aliased:\n"
        "    def __init__(self, kind: Kind = 'a', rate: float = 0.1) -> None: ...\n"
    )
    module, _ = _plugin_module(tmp_path, "keys_aliased", source)
    _as_if_started_now()
    aliased = module.Aliased
    plugin_keys.remember(
        "model", "keys_aliased:Aliased", aliased, parameters_of(aliased), type_hints_of(aliased)
    )
    noted = plugin_keys.recall("model", "keys_aliased:Aliased")
    assert noted is not None and noted.keys == ["kind", "rate"]
    assert noted.types == {"rate": float}  # Kind's file is not watched: left to the import

    made = module.Aliased
    made.__signature__ = inspect.signature(lambda seed=0: None)
    plugin_keys.remember("model", "keys_made:Made", made, parameters_of(made), {})
    assert plugin_keys.recall("model", "keys_made:Made") is None
    del made.__signature__


def test_optional_types_are_named_as_the_plugin_wrote_them() -> None:
    from pipelines.validation import _type_name

    for annotation in (typing.Optional[int], int | None):  # noqa: UP045
        rebuilt = plugin_keys._rebuild(plugin_keys._describe(annotation))
        assert _type_name(rebuilt) == _type_name(annotation)


def test_no_home_folder_means_no_note_and_no_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container user without a home: Path.home() raises RuntimeError."""
    monkeypatch.delenv("PIPELINES_CACHE_DIR", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(Path, "home", no_home)
    _note(tmp_path)
    assert plugin_keys.recall("model", "keys_plugin:Plugin") is None


def test_a_base_class_from_an_interactive_session_is_not_noted(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """inspect raises OSError for a class of a __main__ without a file (a notebook, a
    pytest-xdist worker): no note, and no traceback out of loading the plugin."""
    import types

    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    base = type("Session", (), {"__module__": "__main__"})
    _plugin_module(tmp_path, "keys_base", BASE)
    module, _ = _plugin_module(tmp_path, "keys_plugin", PLUGIN)
    _as_if_started_now()
    derived = type("Derived", (module.Plugin, base), {"__module__": "keys_plugin"})
    plugin_keys.remember("model", "keys_plugin:Derived", derived, parameters_of(derived), {})
    assert plugin_keys.recall("model", "keys_plugin:Derived") is None
