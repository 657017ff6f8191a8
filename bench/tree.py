"""Import ``onnx_snn_compress`` from a named source tree, whatever is installed.

    from tree import use_tree          # this folder is on sys.path when a bench script runs
    use_tree("/work/wt/other")         # before anything imports the library
    python bench/tree.py TREE -c CODE  # or: -m MODULE [ARGS...], SCRIPT [ARGS...]

The project maps ``onnx_snn_compress.kernels``, ``.cli`` and ``.samples`` to top-level folders
(``[tool.setuptools.package-dir]`` in pyproject.toml). An editable install adds a finder to
``sys.meta_path`` that maps those names to the *installed* tree's folders, so putting another tree
first on ``sys.path`` or PYTHONPATH loads that tree's ``onnx_snn_compress`` but the installed
tree's kernels, cli and samples. ``use_tree`` puts a finder at ``sys.meta_path[0]`` that maps the
library and every package its tree's pyproject.toml places elsewhere to that tree's folders; their
submodules then import from those folders by the ordinary path search. Numba's on-disk caches
(``cache=True``) are keyed by the source file's path, so two trees never share a cache entry.

Run as a script, it calls ``use_tree(TREE)`` and then runs the code, module or script given after
it with the rest of the arguments (as ``python -c``/``-m``/``SCRIPT`` would): a child process of a
bench script that compares trees starts this way.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import runpy
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - depends on the Python version
    import tomli as tomllib

LIBRARY = "onnx_snn_compress"
OWN_TREE = Path(__file__).resolve().parent.parent  # the tree this bench/ folder belongs to


def package_folders(tree: str | Path) -> dict[str, Path]:
    """The folder of each package of the library in ``tree`` that must be mapped by name: the
    library itself and every entry of the tree's ``[tool.setuptools.package-dir]`` (absolute paths;
    a mapped folder that is missing stays mapped, so its import fails instead of finding the
    installed tree's). Raises FileNotFoundError when ``tree`` has no ``onnx_snn_compress`` folder."""
    tree = Path(tree).resolve()
    directories = {}
    pyproject = tree / "pyproject.toml"
    if pyproject.is_file():
        with open(pyproject, "rb") as file:
            directories = tomllib.load(file).get("tool", {}).get("setuptools", {}).get("package-dir", {})
    root = tree / directories.get("", ".")
    folders = {LIBRARY: root / LIBRARY}
    folders.update({name: tree / folder for name, folder in directories.items()
                    if name == LIBRARY or name.startswith(LIBRARY + ".")})
    if not (folders[LIBRARY] / "__init__.py").is_file():
        raise FileNotFoundError(f"{tree} has no {LIBRARY} package ({folders[LIBRARY]}/__init__.py)")
    return {name: folder.resolve() for name, folder in folders.items()}


class TreeFinder(importlib.abc.MetaPathFinder):
    """Finds the packages of :func:`package_folders` (name -> folder) in their folders."""

    def __init__(self, tree: Path, folders: dict[str, Path]):
        self.tree, self.folders = tree, folders

    def find_spec(self, fullname, path=None, target=None):
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])



def add_tree_option(parser) -> None:
    """``--tree PATH`` on an argparse parser: the source tree whose library the script runs
    (default: :data:`OWN_TREE`, the script's own, whatever is installed)."""
    parser.add_argument("--tree", type=Path, default=OWN_TREE,
                        help="the source tree whose library runs (default: this script's)")

def use_tree(tree: str | Path) -> Path:
    """Make ``import onnx_snn_compress`` (and its subpackages, as the tree's pyproject.toml maps
    them) load from ``tree`` in this process, whatever is installed; returns the tree's absolute
    path. Call it before anything imports the library: raises RuntimeError when a module of the
    library is already imported from another folder, another tree was chosen before (a second
    call with the same tree does nothing) or PYTHONPATH names another tree (the old way to choose
    one, which loads the installed tree's kernels), and FileNotFoundError when ``tree`` has no
    library."""
    tree = Path(tree).resolve()
    for finder in sys.meta_path:
        if isinstance(finder, TreeFinder):
            if finder.tree != tree:
                raise RuntimeError(f"use_tree({tree}): this process already imports from {finder.tree}")
            return tree
    folders = package_folders(tree)
    for entry in filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep)):
        if (Path(entry) / LIBRARY / "__init__.py").is_file() and Path(entry).resolve() != tree:
            raise RuntimeError(f"use_tree({tree}): PYTHONPATH names the library of {entry}; "
                               "choose the tree with --tree (use_tree), not PYTHONPATH")
    loaded = {name: module for name, module in sys.modules.items()
              if name == LIBRARY or name.startswith(LIBRARY + ".")}
    for name, module in loaded.items():
        file = getattr(module, "__file__", None)
        if file is None or not any(Path(file).resolve().is_relative_to(folder) for folder in folders.values()):
            raise RuntimeError(f"use_tree({tree}): {name} is already imported from {file}; "
                               "call use_tree before anything imports the library")
    sys.meta_path.insert(0, TreeFinder(tree, folders))
    return tree


def main(arguments: list[str]) -> None:
    """``TREE -c CODE | -m MODULE | SCRIPT`` followed by the arguments of what runs."""
    if len(arguments) < 2 or arguments[1] in ("-c", "-m") and len(arguments) < 3:
        sys.exit(__doc__)
    use_tree(arguments[0])
    if arguments[1] == "-c":
        sys.argv = ["-c", *arguments[3:]]
        exec(compile(arguments[2], "<string>", "exec"), {"__name__": "__main__"})
    elif arguments[1] == "-m":
        sys.argv = [arguments[2], *arguments[3:]]
        runpy.run_module(arguments[2], run_name="__main__", alter_sys=True)
    else:
        sys.argv = arguments[1:]
        runpy.run_path(arguments[1], run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
