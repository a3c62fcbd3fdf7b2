"""The documentation cannot drift from the code (fast; no TensorFlow).

* docs/configuration.md has exactly one row per key of the RunConfig schema, with the
  schema's default, and names no key the schema lacks;
* every ``KEY=VALUE`` in ``rnn-sweep --help``'s footer (conf/config.yaml) is a schema key
  or a documented option, and a knob's value there is its default;
* every option of ``rnn-sweep-aggregate --help`` is documented in docs/;
* every config-group option in conf/ is named in docs/configuration.md, and every
  option named there exists.

Each check is a function returning its problems; the ``*_can_fail`` tests feed each
one a deliberately broken document and expect it to say what is wrong.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path

import pytest
import yaml

from conftest import run_cli
from rnn_sweep.task.config import REQUIRED, RunConfig

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
CONFIGURATION_MD = ROOT / "docs" / "configuration.md"
AGGREGATE_DOCS = (ROOT / "docs" / "figures.md", ROOT / "docs" / "outputs.md")
KEY_HEADER = "| key | default | meaning |"
GROUP_HEADER_START = "| group |"
KNOB_HEADER_START = "| knob |"
ENV_HEADER_START = "| variable |"
GROUPS = ("data", "model", "train", "truncation", "experiment", "hydra/launcher")
NO_VALUE = object()  # a default cell that is not a single literal


# --- independent readers: the schema by dataclass introspection, the docs as markdown -----------

def schema_keys(cls: type = RunConfig, prefix: str = "") -> dict[str, object]:
    """Every key of the schema with its default, found by walking ``dataclasses.fields``.

    A list of dataclasses (``data.dependencies``) is a key itself and contributes
    ``data.dependencies[].<field>`` for each field of its element class.
    """
    hints = typing.get_type_hints(cls)
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        key, tp = prefix + f.name, hints[f.name]
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(tp):
            out.update(schema_keys(tp, key + "."))
        elif typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            out[key] = [dataclasses.asdict(d) for d in default]
            out.update(schema_keys(typing.get_args(tp)[0], key + "[]."))
        else:
            out[key] = default
    return out


def table(text: str, header_start: str) -> list[list[str]]:
    """The body rows (cells split on ``|``) of the first markdown table whose header starts so."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip().startswith(header_start)]
    if not starts:
        return []
    rows = []
    for line in lines[starts[0] + 2:]:
        if not line.strip().startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def ticked(cell: str) -> list[str]:
    """The `backticked` names in a table cell."""
    return re.findall(r"`([^`]+)`", cell)


def doc_value(cell: str) -> object:
    """A default cell as a value: `5` -> 5, `1e-8` -> 1e-08, `null` -> None, 'none (required)'."""
    m = re.fullmatch(r"`([^`]*)`", cell.strip())
    if m is None:
        return REQUIRED if "required" in cell else NO_VALUE
    return literal(m.group(1))


def literal(text: str) -> object:
    """A command-line / YAML literal as a value (YAML 1.1 reads ``1e-8`` as a string)."""
    value = yaml.safe_load(text)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


# --- the checks ---------------------------------------------------------------------------------

def key_table_problems(text: str, schema: dict[str, object]) -> list[str]:
    """(a) One row per schema key, with the schema's default; no row for a key that does not exist."""
    rows = table(text, KEY_HEADER)
    if not rows:
        return [f"no table with the header {KEY_HEADER!r}"]
    problems, seen = [], {}
    for row in rows:
        names = ticked(row[0])
        if len(names) != 1:
            problems.append(f"row {row[0]!r} must name exactly one key")
            continue
        key = names[0]
        seen[key] = seen.get(key, 0) + 1
        if key not in schema:
            problems.append(f"{key}: documented, but not a key of the RunConfig schema")
        elif doc_value(row[1]) != schema[key]:
            problems.append(f"{key}: documented default {row[1]} differs from the schema's {schema[key]!r}")
    problems += [f"{key}: no row in the key table" for key in schema if key not in seen]
    problems += [f"{key}: {n} rows (must be exactly one)" for key, n in seen.items() if n > 1]
    return problems


def documented_options(text: str) -> tuple[dict[str, list[str]], dict[str, str], set[str]]:
    """From configuration.md: {group: options}, {knob: default cell}, environment variables."""
    groups = {ticked(r[0])[0]: ticked(r[1]) for r in table(text, GROUP_HEADER_START) if ticked(r[0])}
    knobs = {name.lstrip("+"): r[1] for r in table(text, KNOB_HEADER_START) for name in ticked(r[0])}
    env = {name for r in table(text, ENV_HEADER_START) for name in ticked(r[0])}
    return groups, knobs, env


def footer_problems(footer: str, text: str, schema: dict[str, object]) -> list[str]:
    """(b) Every KEY=VALUE of the help footer is a schema key, a group (with a real option),
    a documented knob or environment variable; in the "Main knobs" list the value is the
    default (the first of ``a|b|c`` alternatives)."""
    groups, knobs, env = documented_options(text)
    knob_block = footer.split("Examples:")[0]
    problems = []
    for block, is_knobs in ((knob_block, True), (footer[len(knob_block):], False)):
        for key, value in re.findall(r"(?<![\w./+-])\+?([A-Za-z_][\w./]*)=([^\s),;:]*)", block):
            if key == "KEY":  # the placeholder in "KEY=VALUE"
                continue
            if key in groups:
                options = re.split(r"[,|]", value)
                problems += [f"{key}={opt}: not an option of {key} in configuration.md"
                             for opt in options if opt not in groups[key]]
                if is_knobs and groups[key] and options[0] != groups[key][0]:
                    problems.append(f"{key}={value}: the default is {groups[key][0]}")
            elif key in schema or key in knobs:
                default = schema[key] if key in schema else doc_value(knobs[key])
                if is_knobs and literal(value.split("|")[0]) != default:
                    problems.append(f"{key}={value}: the default is {default!r}")
            elif key not in env:
                problems.append(f"{key}=: neither a schema key nor an option documented in configuration.md")
    return problems


def aggregate_option_problems(option_strings: list[str], docs_text: str) -> list[str]:
    """(c) Every option string of the aggregator's parser appears in the docs."""
    return [f"{opt}: not documented in {' or '.join(p.name for p in AGGREGATE_DOCS)}"
            for opt in option_strings if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", docs_text)]


def group_option_problems(text: str, option_files: dict[str, list[str]], registered: dict[str, list[str]]
                          ) -> list[str]:
    """(d) Every conf/ option file is in its group's row; every option named there exists."""
    groups, _, _ = documented_options(text)
    problems = []
    for group, files in option_files.items():
        if group not in groups:
            problems.append(f"{group}: no row in the group table")
            continue
        problems += [f"{group}={name}: conf/{group}/{name}.yaml is not named in its row"
                     for name in files if name not in groups[group]]
        problems += [f"{group}={name}: documented, but there is no such option"
                     for name in groups[group] if name not in files and name not in registered.get(group, [])]
    return problems


# --- inputs -------------------------------------------------------------------------------------

def conf_option_files() -> dict[str, list[str]]:
    return {group: sorted(p.stem for p in (CONF / group).glob("*.yaml")) for group in GROUPS}


def registered_launchers() -> dict[str, list[str]]:
    """Options of hydra/launcher registered in code (rnn-sweep's plugin), not as conf/ files."""
    from hydra.core.config_store import ConfigStore

    import hydra_plugins.rnn_sweep_launcher.rnn_sweep_launcher  # noqa: F401  (registers its configs)

    return {"hydra/launcher": [n.removesuffix(".yaml") for n in ConfigStore.instance().list("hydra/launcher")]}


def help_footer() -> str:
    return yaml.safe_load((CONF / "config.yaml").read_text())["hydra"]["help"]["footer"]


def aggregate_option_strings() -> list[str]:
    from rnn_sweep.analysis.aggregate_cli import build_parser

    return [opt for action in build_parser()._actions for opt in action.option_strings]


@pytest.fixture(scope="module")
def configuration_md() -> str:
    return CONFIGURATION_MD.read_text()


# --- the tests ----------------------------------------------------------------------------------

def test_schema_walk_finds_the_keys_a_hand_count_gives():
    keys = schema_keys()
    # By hand from rnn_sweep/task/config.py: 3 top-level + data 6 (+2 dependency fields) + model 3
    # + train 17 (epochs, batch_size, log_every, log_updates, log_data_steps, checkpoints,
    # checkpoint_spacing, checkpoint_eval_length, final_fraction, stop_patience, stop_tolerance,
    # max_data_steps, xla, threads, progress, replicas, diverge_loss) + optimizer 6 + truncation 2.
    assert len(keys) == 39
    assert keys["data.dependencies[].lag"] == REQUIRED and keys["train.optimizer.epsilon"] == 1e-8
    assert keys["data.dependencies"] == [{"lag": 3, "effect": 0.5}, {"lag": 8, "effect": -0.25}]


def test_every_config_key_has_exactly_one_documentation_row(configuration_md):
    assert key_table_problems(configuration_md, schema_keys()) == []


def test_key_table_check_can_fail(configuration_md):
    schema = schema_keys()
    lines = configuration_md.splitlines()
    without = "\n".join(ln for ln in lines if not ln.startswith("| `train.log_every` |"))
    assert key_table_problems(without, schema) == ["train.log_every: no row in the key table"]
    row = next(ln for ln in lines if ln.startswith("| `seed` |"))
    doubled = configuration_md.replace(row, row + "\n" + row)
    assert key_table_problems(doubled, schema) == ["seed: 2 rows (must be exactly one)"]
    bogus = configuration_md.replace(row, row + "\n| `train.momentum` | `0.9` | made up |")
    assert key_table_problems(bogus, schema) == ["train.momentum: documented, but not a key of the RunConfig schema"]
    wrong = configuration_md.replace("| `state_size` | `4` |", "| `state_size` | `8` |")
    assert key_table_problems(wrong, schema) == ["state_size: documented default `8` differs from the schema's 4"]


def test_help_footer_names_only_real_keys_and_options_with_their_defaults(configuration_md):
    footer = help_footer()
    assert "docs/configuration.md" in footer
    assert "experiment=quickstart hydra/launcher=cores" in footer
    assert footer_problems(footer, configuration_md, schema_keys()) == []


def test_help_footer_check_can_fail(configuration_md):
    schema, footer = schema_keys(), help_footer()
    assert footer_problems(footer.replace("num_steps=5", "num_step=5"), configuration_md, schema) == [
        "num_step=: neither a schema key nor an option documented in configuration.md"]
    assert footer_problems(footer.replace("state_size=4 ", "state_size=8 "), configuration_md, schema) == [
        "state_size=8: the default is 4"]
    assert footer_problems(footer.replace("experiment=quickstart", "experiment=quick"), configuration_md,
                           schema) == ["experiment=quick: not an option of experiment in configuration.md"]


def test_help_renders_the_footer(tmp_path):
    """``rnn-sweep --help`` prints the footer as written, every line within 100 columns."""
    out = run_cli("--help", cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    assert help_footer() in out.stdout
    assert max(len(line) for line in help_footer().splitlines()) <= 100
    assert list(tmp_path.iterdir()) == []  # --help writes nothing


def test_every_aggregate_option_is_documented():
    text = "\n".join(p.read_text() for p in AGGREGATE_DOCS)
    options = aggregate_option_strings()
    assert {"--out", "--format", "--no-figures"} <= set(options)
    assert aggregate_option_problems(options, text) == []


def test_aggregate_option_check_can_fail():
    text = "\n".join(p.read_text() for p in AGGREGATE_DOCS)
    assert aggregate_option_problems(["--no-such-option"], text) == [
        "--no-such-option: not documented in figures.md or outputs.md"]
    # "--format" inside "--formats" does not count as documenting it
    assert aggregate_option_problems(["--format"], "use --formats") != []


def test_every_config_group_option_is_documented(configuration_md):
    files = conf_option_files()
    assert files["hydra/launcher"] == ["cores", "local_submitit", "slurm"] and "quickstart" in files["experiment"]
    assert group_option_problems(configuration_md, files, registered_launchers()) == []


def test_group_option_check_can_fail(configuration_md):
    files, registered = conf_option_files(), registered_launchers()
    extra = {**files, "data": files["data"] + ["huge"]}
    assert group_option_problems(configuration_md, extra, registered) == [
        "data=huge: conf/data/huge.yaml is not named in its row"]
    missing = {**files, "model": [n for n in files["model"] if n != "keras"]}
    assert group_option_problems(configuration_md, missing, registered) == [
        "model=keras: documented, but there is no such option"]
