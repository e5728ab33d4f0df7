"""The house's rules, read from the source: who may import whom.

Every ``import`` counts, those inside functions too (grid-ops imports lazily, so a rule
checked only at module level would miss most of them). README.md's Architecture section
says the same in words.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "grid_ops"
# The entry point of 'python -m grid_ops': it starts the CLI, like the console script.
ENTRY_POINTS = {"grid_ops.__main__"}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every module ``path`` (module ``name``) imports, anywhere in it, as absolute
    dotted names; ``from X import y`` gives X and X.y (y may be a module)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return found


def graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module name -> what it imports, for every module under ``root``."""
    return {module_name(p, root): imports_of(p, module_name(p, root)) for p in root.rglob("*.py")}


def inside(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def offenders(
    edges: dict[str, set[str]],
    importer: str,
    imported: str,
    allowed: frozenset[str] | set[str] = frozenset(),
) -> list[str]:
    """'A imports B' for each module A in package ``importer`` (but not in ``allowed``)
    that imports B in package ``imported``."""
    return sorted(
        f"{source} imports {target}"
        for source, targets in edges.items()
        if inside(source, importer) and source not in allowed
        for target in targets
        if inside(target, imported)
    )


GRAPH = graph()


def outside(package: str) -> dict[str, set[str]]:
    return {k: v for k, v in GRAPH.items() if not inside(k, package) and k not in ENTRY_POINTS}


def test_nothing_outside_the_cli_imports_it() -> None:
    """The CLI parses and presents; what a command does is below it (grid_ops.actions),
    so the server, the actions and the model never reach up into it."""
    assert offenders(outside("grid_ops.cli"), "grid_ops", "grid_ops.cli") == []


def test_the_actions_do_not_import_the_server() -> None:
    assert offenders(GRAPH, "grid_ops.actions", "grid_ops.server") == []


def test_nothing_below_the_server_imports_it() -> None:
    """Only the CLI's 'serve' starts the server."""
    below = {k: v for k, v in outside("grid_ops.server").items() if not inside(k, "grid_ops.cli")}
    assert offenders(below, "grid_ops", "grid_ops.server") == []


def test_only_the_cli_and_the_server_call_the_actions() -> None:
    """The use cases sit below the CLI and the API server, and above everything else."""
    below = {k: v for k, v in outside("grid_ops.cli").items() if not inside(k, "grid_ops.server")}
    below = {k: v for k, v in below.items() if not inside(k, "grid_ops.actions")}
    assert offenders(below, "grid_ops", "grid_ops.actions") == []


@pytest.mark.parametrize(
    ("package", "never"),
    [
        ("grid_ops.drivers", ["grid_ops.actions", "grid_ops.server", "grid_ops.lab"]),
        ("grid_ops.model", ["grid_ops.drivers", "grid_ops.actions", "grid_ops.server"]),
        ("grid_ops.lab", ["grid_ops.actions", "grid_ops.drivers", "grid_ops.server"]),
    ],
)
def test_the_lower_packages_do_not_reach_up(package: str, never: list[str]) -> None:
    """The drivers reach the nodes and know no use case; the model is data and rules
    and reaches no node; the lab makes nodes and knows nothing of clusters' use."""
    assert [o for target in never for o in offenders(GRAPH, package, target)] == []


def test_only_the_cli_uses_the_lab() -> None:
    assert offenders(outside("grid_ops.cli"), "grid_ops", "grid_ops.lab", {"grid_ops.lab"}) == []


def test_only_the_ansible_module_imports_ansible_runner_and_only_the_runtime_ray() -> None:
    runner = offenders(GRAPH, "grid_ops", "ansible_runner", {"grid_ops.drivers.ansible"})
    ray = [
        line
        for line in offenders(GRAPH, "grid_ops", "ray")
        if not inside(line.split()[0], "grid_ops.runtime")
    ]
    assert runner == [] and ray == []


def test_the_graph_sees_imports_inside_functions(tmp_path: Path) -> None:
    """The check can fail: a lazy import of the CLI inside a function of a model module,
    and a relative one, are both found."""
    package = tmp_path / "grid_ops"
    (package / "cli").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli" / "__init__.py").write_text("")
    (package / "cli" / "views.py").write_text("")
    (package / "model.py").write_text(
        "def f():\n    from grid_ops.cli import views\n    return views\n"
    )
    (package / "health.py").write_text("def g():\n    from .cli.views import x\n")
    edges = graph(package)
    assert offenders(edges, "grid_ops", "grid_ops.cli", {"grid_ops.cli", "grid_ops.cli.views"}) == [
        "grid_ops.health imports grid_ops.cli.views",
        "grid_ops.health imports grid_ops.cli.views.x",
        "grid_ops.model imports grid_ops.cli",
        "grid_ops.model imports grid_ops.cli.views",
    ]


@pytest.mark.parametrize("module", ["grid_ops.cli.app", "grid_ops.server.api"])
def test_the_graph_knows_the_modules_it_checks(module: str) -> None:
    """A renamed tree would leave the rules above checking nothing."""
    assert GRAPH.get(module)


def node_side() -> set[str]:
    """The modules of layout.NODE_PACKAGE: what the nodes get."""
    from grid_ops import layout

    names = set()
    for entry in layout.NODE_PACKAGE:
        if entry == "__init__.py":
            names.add("grid_ops")
        else:
            names |= {m for m in GRAPH if inside(m, f"grid_ops.{entry.removesuffix('.py')}")}
    return names


def test_the_node_side_imports_only_the_node_side() -> None:
    """A node has only the node side of the package (the runtime push is that include
    list), so an import of anything else would fail there, and only there."""
    node = node_side()
    assert {"grid_ops.runtime.controller", "grid_ops.jobs", "grid_ops.layout"} <= node
    outside_node = [
        f"{source} imports {target}"
        for source in sorted(node)
        for target in sorted(GRAPH[source])
        if target in GRAPH and target not in node  # a module (not a name from one)
    ]
    assert outside_node == []


def test_the_roles_run_node_side_modules_only() -> None:
    """What the roles run on the nodes with ``python -m`` is in the node side."""
    import re

    node = node_side()
    run = set()
    for path in (REPO / "roles").rglob("*.yml"):
        run |= set(re.findall(r"\bgrid_ops(?:\.[a-z_]+)+", path.read_text()))
    assert "grid_ops.runtime.digest" in run
    assert sorted(m for m in run if m not in node) == []


def fixed_time_limits(path: Path) -> list[str]:
    """Numbers written in as a time limit: ``timeout=``/``wait=`` with a number, such a
    parameter's numeric default, ``time.monotonic() + N``."""
    names = {"timeout", "wait", "deadline", "timeout_s"}
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.keyword) and node.arg in names:
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, int | float):
                found.append(f"{node.arg}={node.value.value} (line {node.value.lineno})")
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            params = node.args.args + node.args.kwonlyargs
            defaults = [None] * (len(node.args.args) - len(node.args.defaults))
            defaults += [*node.args.defaults, *node.args.kw_defaults]
            for param, default in zip(params, defaults, strict=True):
                if (
                    param.arg in names
                    and isinstance(default, ast.Constant)
                    and isinstance(default.value, int | float)
                ):
                    found.append(f"{node.name}({param.arg}={default.value})")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
            call = node.left
            if (
                isinstance(call, ast.Call)
                and isinstance(call.func, ast.Attribute)
                and call.func.attr == "monotonic"
                and isinstance(node.right, ast.Constant)
            ):
                found.append(f"monotonic() + {node.right.value} (line {node.lineno})")
    return found


# Limits that are not grid-ops' to set: a local pipe's last read after its process was
# killed; the demo's patience with its own job.
LOCAL_LIMITS = {
    "grid_ops/drivers/remote.py": ["timeout=2 (line"],
    "grid_ops/cli/demo.py": ["monotonic() + 300"],
}


def test_every_time_limit_of_the_operator_side_is_a_deadline() -> None:
    """The operator's side takes its time limits from the model's Deadlines (config
    keys, or the fixed limits named in grid_ops.model), not from numbers written in."""
    node = {m.replace(".", "/") for m in node_side()}
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.removesuffix(".py").removesuffix("/__init__") in node or rel.startswith(
            "grid_ops/lab/"
        ):
            continue  # the nodes' own limits, and the lab's
        allowed = LOCAL_LIMITS.get(rel, [])
        left = [f for f in fixed_time_limits(path) if not any(f.startswith(a) for a in allowed)]
        if left:
            found[rel] = left
    assert found == {}


def test_the_time_limit_check_finds_numbers_written_in(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "import subprocess, time\n"
        "def call(x, timeout: float = 180):\n"
        "    subprocess.run(x, timeout=60)\n"
        "    return time.monotonic() + 30\n"
    )
    assert sorted(fixed_time_limits(source)) == [
        "call(timeout=180)", "monotonic() + 30 (line 4)", "timeout=60 (line 3)"
    ]  # fmt: skip


# Where a ClusterModel may be made outside grid_ops.model: the CLI's loader (once per
# command: the static model, then what the nodes reported), and apply's model of the
# node set with the removed nodes added back (another cluster: it reaches them once more).
BUILDERS = {"of", "resolve", "with_recorded", "ClusterModel"}
MODEL_MADE = {
    "grid_ops/cli/common.py": ["load_cluster: resolve", "load_cluster: with_recorded"],
    "grid_ops/actions/apply.py": ["plan: of"],
}


def model_builds(path: Path) -> list[str]:
    """``function: builder`` for each call in ``path`` that makes a ClusterModel from a
    config (``model.of(...)``, ``resolve``, ``with_recorded``, ``ClusterModel(...)``)."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if not isinstance(node, ast.Call):
                continue
            callee = node.func
            if isinstance(callee, ast.Attribute) and isinstance(callee.value, ast.Name):
                if callee.value.id == "model" and callee.attr in BUILDERS:
                    found.append(f"{func.name}: {callee.attr}")
            elif isinstance(callee, ast.Name) and callee.id == "ClusterModel":
                found.append(f"{func.name}: ClusterModel")
    return sorted(set(found))


def test_the_model_is_built_once_per_command_and_passed() -> None:
    """Below the CLI's loader, the actions, drivers and server take the ClusterModel
    they are given: none resolves the config again."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith("grid_ops/model/"):
            continue
        builds = model_builds(path)
        if builds:
            found[rel] = builds
    assert found == MODEL_MADE


def test_the_build_check_finds_a_second_resolution(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text(
        "from grid_ops import model\n"
        "def call(cfg):\n"
        "    return model.of(cfg).deadlines\n"
        "def make(**kw):\n"
        "    from grid_ops.model import ClusterModel\n"
        "    return ClusterModel(**kw)\n"
    )
    assert model_builds(source) == ["call: of", "make: ClusterModel"]


def test_below_the_cli_nothing_takes_the_raw_config() -> None:
    """The actions, the server and the drivers speak the resolved model; the config
    behind it is ``cluster.config`` (for the inventory, which renders it, and apply's
    plan). Only the inventory's renderers read a ClusterConfig."""
    takes = {}
    for package in ("actions", "server", "drivers"):
        for path in sorted((PACKAGE / package).rglob("*.py")):
            for func in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for arg in [*func.args.args, *func.args.kwonlyargs]:
                    if arg.annotation is not None and "ClusterConfig" in ast.unparse(
                        arg.annotation
                    ):
                        takes.setdefault(path.relative_to(REPO).as_posix(), []).append(func.name)
    assert takes == {
        "grid_ops/actions/apply.py": ["_with_removed"],
        "grid_ops/drivers/inventory.py": [
            "groups", "host_vars", "cluster_vars", "wheelhouse_dir", "default_dir"
        ],
    }  # fmt: skip
