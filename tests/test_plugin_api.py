"""The plugin contract: plugins import only ``pipelines.api``, and the registry checks a
plugin against its kind when it loads it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import lightning as L
import pytest

from pipelines import api, registry
from pipelines.errors import PipelineError

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SOURCES = sorted(
    [*(ROOT / "src" / "plugins").rglob("*.py"), *(ROOT / "tests" / "fixtures").rglob("*.py")]
)


def engine_modules_imported(path: Path) -> set[str]:
    """Every ``pipelines`` module a source file imports, at any depth of its code."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            top = node.module.split(".")[0]
            if top == "pipelines":
                if node.module == "pipelines":
                    found |= {f"pipelines.{alias.name}" for alias in node.names}
                else:
                    found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "pipelines"}
    return found


def test_plugins_import_only_the_api() -> None:
    assert len(PLUGIN_SOURCES) > 40, "the plugin sources were not found"
    wrong = {
        str(path.relative_to(ROOT)): sorted(modules - {"pipelines.api"})
        for path in PLUGIN_SOURCES
        if (modules := engine_modules_imported(path)) - {"pipelines.api"}
    }
    assert not wrong, f"plugins may import only pipelines.api: {wrong}"


def test_the_import_check_sees_every_form(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text(
        "from pipelines import registry\nimport pipelines.errors\n"
        "def f():\n    from pipelines.training.trainer import build_trainer\n"
        "from pipelines.api import RunContext\n"
    )
    assert engine_modules_imported(source) == {
        "pipelines.registry",
        "pipelines.errors",
        "pipelines.training.trainer",
        "pipelines.api",
    }


def test_no_private_lightning_api_in_plugins() -> None:
    private = re.compile(r"_on_before_step|_on_after_step|_current_fx_name|optimizer\.optimizer")
    hits = [
        f"{path.relative_to(ROOT)}:{number}"
        for path in PLUGIN_SOURCES
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if private.search(line)
    ]
    assert not hits, f"private Lightning API in plugins: {hits}"


ENGINE_LOOKUP = re.compile(
    r"(?:getattr|hasattr)\((?:ctx\.)?(datamodule|model|model_class|stage|stages\[index\]|"
    r"registry\.load\(\"stage\"[^)]*\)), \"(\w+)\""
)


def test_every_hook_the_engine_looks_up_is_declared_in_the_api() -> None:
    kinds = {"datamodule": "data", "model": "model", "model_class": "model"}
    # the engine, and the built-in stages (third-party data meets them through the same hooks)
    engine = [
        *(ROOT / "src" / "pipelines").rglob("*.py"),
        *(ROOT / "src" / "plugins" / "stages").rglob("*.py"),
    ]
    undeclared = set()
    for path in engine:
        for subject, hook in ENGINE_LOOKUP.findall(path.read_text()):
            kind = kinds.get(subject, "stage")
            if hook not in api.hooks_of(kind) and hook not in _lightning_names(kind):
                undeclared.add(f"{kind}.{hook} ({path.relative_to(ROOT)})")
    assert not undeclared, (
        f"hooks looked up by name but not declared in pipelines.api: {undeclared}"
    )


def _lightning_names(kind: str) -> set[str]:
    base = {"model": L.LightningModule, "data": L.LightningDataModule}.get(kind, object)
    return set(dir(base))


def test_every_declared_hook_has_a_docstring_or_a_note() -> None:
    for kind, protocol in api.PROTOCOLS.items():
        methods = [name for name in api.hooks_of(kind) if callable(getattr(protocol, name, None))]
        for name in methods:
            assert (getattr(protocol, name).__doc__ or "").strip(), f"{kind}.{name}"
    assert {"run", "check", "uses_configured_model"} <= set(api.hooks_of("stage"))
    assert {"model_kwargs", "encode_inputs", "use_artifacts"} <= set(api.hooks_of("data"))
    assert {"task", "input_kind", "generate"} <= set(api.hooks_of("model"))


@pytest.mark.parametrize("kind", ["model", "data", "stage"])
def test_every_builtin_plugin_passes_its_kind_check(kind: str) -> None:
    for name in registry.names(kind):
        registry.load(kind, name)


def _check(kind: str, factory: object) -> str:
    with pytest.raises(PipelineError) as error:
        registry.check_kind(kind, "mine", "my_package:Mine", factory)
    return str(error.value)


def test_a_misspelt_hook_is_one_paragraph_naming_it() -> None:
    class Data(L.LightningDataModule):
        def model_kwarg(self) -> dict:
            return {}

    message = _check("data", Data)
    assert "'model_kwarg'" in message and "did you mean 'model_kwargs'" in message
    assert "pipelines.api.DataPlugin.model_kwargs" in message and "\n" not in message


def test_a_stage_without_run_is_refused() -> None:
    class Stage:
        def runn(self, ctx: object) -> None: ...

    assert "no 'run' method" in _check("stage", Stage)


def test_a_model_that_is_not_a_lightning_module_is_refused() -> None:
    class Model:
        pass

    message = _check("model", Model)
    assert "is not a `lightning.LightningModule`" in message and "my_package:Mine" in message


def test_a_plugin_of_its_kind_passes() -> None:
    class Stage:
        uses_configured_model = False

        def run(self, ctx: object) -> None: ...

        def check(self, ctx: object) -> None: ...

        def summary(self) -> str:  # a method of its own, near no hook
            return ""

    registry.check_kind("stage", "mine", "my_package:Mine", Stage)
