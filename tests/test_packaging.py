"""Packaging promises: the dependency lists agree, importing has no side effects, the CLI works."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _environment_pip_requirements() -> list[str]:
    """The `pip:` list of environment.yml (a plain reader: no YAML library needed)."""
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    requirements = []
    for line in lines[start + 1:]:
        match = re.match(r"\s+- (.+)", line)
        if not match:
            break
        requirements.append(match.group(1).strip())
    return requirements


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = _pyproject()["project"]
    expected = project["dependencies"] + project["optional-dependencies"]["test"] + ["-e ."]
    assert sorted(_environment_pip_requirements()) == sorted(expected)


# Import name -> distribution name, for the third-party packages kdkit imports.
DISTRIBUTIONS = {"torch": "torch", "torchvision": "torchvision", "ipywidgets": "ipywidgets",
                 "matplotlib": "matplotlib", "mnist1d": "mnist1d", "tqdm": "tqdm", "numpy": "numpy",
                 "nbformat": "nbformat", "nbclient": "nbclient"}


def _declared() -> set[str]:
    return {re.split(r"[<>=!~ ]", dep)[0] for dep in _pyproject()["project"]["dependencies"]}


def test_every_package_kdkit_imports_is_declared():
    import ast

    imported = set()
    for path in (ROOT / "kdkit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names and name != "kdkit"}
    unknown = third_party - set(DISTRIBUTIONS)
    assert not unknown, f"kdkit imports {sorted(unknown)}: declare them and add them to DISTRIBUTIONS"
    assert {DISTRIBUTIONS[name] for name in third_party} <= _declared()
    # The workbook's own promises: the notebooks' tools are installed by the package too.
    assert {"jupyterlab", "nbval", "torchvision"} <= _declared()


def test_the_installed_torch_satisfies_the_declared_ranges():
    from importlib.metadata import version

    from packaging.requirements import Requirement

    for dep in _pyproject()["project"]["dependencies"]:
        requirement = Requirement(dep)
        if requirement.name in ("torch", "torchvision"):
            installed = version(requirement.name)
            assert requirement.specifier.contains(installed, prereleases=True), (dep, installed)


def test_importing_kdkit_has_no_side_effects(tmp_path):
    code = """
import os, numpy, torch, random
torch_state = torch.random.get_rng_state().clone(); np_state = numpy.random.get_state()[1].copy()
py_state = random.getstate()
import kdkit, kdkit.data, kdkit.models, kdkit.losses, kdkit.objectives, kdkit.train
import kdkit.checkpoints, kdkit.viz, kdkit.widgets, kdkit.experiments.start_here, kdkit.experiments.mnist1d
assert torch.equal(torch_state, torch.random.get_rng_state()), "torch RNG touched"
assert (np_state == numpy.random.get_state()[1]).all(), "numpy RNG touched"
assert py_state == random.getstate(), "random touched"
assert os.listdir(".") == [], os.listdir(".")
assert not os.path.exists(os.environ["KDKIT_CACHE_DIR"]), "cache created on import"
print("clean")
"""
    env = {"KDKIT_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(ROOT), "HOME": str(tmp_path)}
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    out = subprocess.run([sys.executable, "-c", code], cwd=workdir, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "clean"


def test_cli_lists_experiments_and_rejects_unknown_ones():
    listed = subprocess.run([sys.executable, "-m", "kdkit", "list"], capture_output=True, text=True, check=True)
    assert "start_here" in listed.stdout.split()
    bad = subprocess.run([sys.executable, "-m", "kdkit", "reproduce", "nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "start_here" in bad.stderr


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make test" in ci
    assert "make lab" in readme


def test_command_line_lists_experiments_that_can_be_reproduced(capsys):
    import importlib
    import inspect

    from kdkit.__main__ import EXPERIMENTS, main

    assert main(["list"]) == 0
    assert capsys.readouterr().out.split() == sorted(EXPERIMENTS)
    for module_name in EXPERIMENTS.values():
        reproduce = importlib.import_module(module_name).reproduce
        assert list(inspect.signature(reproduce).parameters) == ["seeds"], module_name
    with pytest.raises(SystemExit):
        main(["reproduce", "start_here", "--seeds", "1"])   # one seed has no spread


def test_reproduce_runs_on_one_torch_thread_and_restores_the_count(monkeypatch, capsys):
    """The notebooks' numbers are one-thread numbers; the workers inherit the parent's count."""
    import torch

    from kdkit.__main__ import main
    from kdkit.experiments import start_here

    seen = []
    monkeypatch.setattr(start_here, "reproduce", lambda seeds: seen.append(torch.get_num_threads()) or ["done"])
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert main(["reproduce", "start_here", "--seeds", "2"]) == 0
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "done" in capsys.readouterr().out


def test_the_readme_example_of_a_new_method_runs_and_trains_both_peers(cached_mnist1d, capsys):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### How a new method plugs in"):]
    code = section[section.index("```python") + len("```python"):section.index("```\n", section.index("```python") + 9)]
    exec(compile(code, "README.md", "exec"), {"__name__": "readme_example"})
    peer1, peer2 = (float(v) for v in capsys.readouterr().out.split())
    assert peer1 > 0.4 and peer2 > 0.4, "both peers learned (chance is 0.1)"
