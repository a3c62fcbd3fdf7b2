"""The package's folders are its layers; this test keeps data flowing down.

Every ``import`` in every module (also those inside functions, which load lazily)
is read from the source with :mod:`ast`, so a late import cannot hide a reach
back up. The rule, from the layers' docstrings (rnn_sweep/*/__init__.py):

| layer    | may import (rnn_sweep)  | must not import           |
|----------|-------------------------|---------------------------|
| task     | -                       | TensorFlow, Keras, Hydra  |
| model    | task                    | Hydra                     |
| run      | task, model             | Hydra                     |
| analysis | task, run               | TensorFlow, Keras, Hydra  |
| launch   | everything              | -                         |
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rnn_sweep"
ALLOWED = {"task": set(), "model": {"task"}, "run": {"task", "model"}, "analysis": {"task", "run"},
           "launch": {"task", "model", "run", "analysis"}}
TF = {"tensorflow", "keras"}
HYDRA = {"hydra", "omegaconf"}
FORBIDDEN = {"task": TF | HYDRA, "model": HYDRA, "run": HYDRA, "analysis": TF | HYDRA, "launch": set()}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, dotted module) of every absolute import in ``path``, at any depth.

    ``from rnn_sweep.run import train`` yields ``rnn_sweep.run.train``; ``from X import y``
    of any other module yields ``X`` (only its top level matters here).
    """
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.count(".") == 1 and node.module.startswith("rnn_sweep."):  # from a layer package
                out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
            else:
                out.append((node.lineno, node.module))
    return sorted(set(out))


def violations(package: Path) -> list[str]:
    """One line per import that breaks the layer rule: file, line, module and the rule."""
    found = []
    for layer in ALLOWED:
        for path in sorted((package / layer).glob("*.py")):
            for line, module in imports_of(path):
                parts = module.split(".")
                where = f"{path.relative_to(package.parent)}:{line} imports {module}"
                if parts[0] in FORBIDDEN[layer]:
                    found.append(f"{where} ({layer} must not import {parts[0]})")
                elif parts[0] == "rnn_sweep" and len(parts) > 1 and parts[1] in ALLOWED and parts[1] != layer \
                        and parts[1] not in ALLOWED[layer]:
                    found.append(f"{where} ({layer} may import only {sorted(ALLOWED[layer]) or 'nothing'})")
    return found


def test_every_module_lives_in_a_layer():
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert loose == [], f"modules outside a layer folder: {loose}"
    assert {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()} == set(ALLOWED)


def test_layers_import_only_downwards():
    assert violations(PACKAGE) == []


@pytest.mark.parametrize("layer,module,bad", [
    ("task", "import tensorflow as tf\n", "task must not import tensorflow"),
    ("analysis", "def f():\n    from hydra.core.utils import JobReturn\n", "analysis must not import hydra"),
    ("model", "from rnn_sweep.run.packing import make_packs\n", "model may import only ['task']"),
    ("run", "from rnn_sweep.launch import cli\n", "run may import only ['model', 'task']"),
])
def test_layer_check_can_fail(tmp_path, layer, module, bad):
    """A reach back up, even inside a function, is reported with file, line and rule."""
    for name in ALLOWED:
        (tmp_path / "rnn_sweep" / name).mkdir(parents=True)
        (tmp_path / "rnn_sweep" / name / "__init__.py").write_text("")
    (tmp_path / "rnn_sweep" / layer / "bad.py").write_text(module)
    found = violations(tmp_path / "rnn_sweep")
    assert len(found) == 1 and found[0].startswith(f"rnn_sweep/{layer}/bad.py:") and bad in found[0], found
