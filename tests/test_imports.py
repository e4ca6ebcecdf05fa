"""No import cycle among the modules of ``xfusion``.

The graph has an edge from a module to every ``xfusion`` module it imports, at any depth (module level, inside
functions, under ``TYPE_CHECKING``), relative imports resolved: ``import xfusion.x.y`` and ``from xfusion.x.y import
z`` are edges to ``xfusion.x.y`` (and to ``xfusion.x.y.z`` when that is a module); a package's ``__init__`` is the
module named by the package. The imports the packages make with importlib are edges too: ``xfusion/__init__.py``
imports every ``archs/*_arch.py``, ``data/*_dataset.py`` and ``models/*_model.py``, and ``xfusion/commands``
every subcommand of ``COMMANDS``.
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / 'xfusion'
# what xfusion/__init__.py imports with importlib: (subpackage, file suffix)
REGISTERED = (('archs', '_arch.py'), ('data', '_dataset.py'), ('models', '_model.py'))


def module_files() -> dict[str, Path]:
    """Module name -> file, for every module of xfusion (a package's __init__.py under the package's name)."""
    modules = {}
    for path in sorted(PACKAGE_DIR.rglob('*.py')):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts.pop()
        modules['.'.join(parts)] = path
    return modules


def imported_names(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The xfusion modules one module imports, at any depth."""
    is_package = path.name == '__init__.py'
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split('.')
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = '.'.join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ''
            found.add(target)
            found.update(f'{target}.{alias.name}' for alias in node.names)
    return {target for target in found if target in modules and target != name}


def dynamic_imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """The importlib imports of xfusion/__init__.py and xfusion/commands/__init__.py."""
    source = (PACKAGE_DIR / '__init__.py').read_text()
    for package, suffix in REGISTERED:  # the test follows the package's own rule: fail when that rule changes
        assert f"('{package}', '{suffix}')" in source, f'xfusion/__init__.py no longer imports {package}/*{suffix}'
    edges = {'xfusion': {f'xfusion.{package}.{path.name[:-3]}' for package, suffix in REGISTERED
                         for path in (PACKAGE_DIR / package).glob('*' + suffix)}}
    commands = ast.parse((PACKAGE_DIR / 'commands' / '__init__.py').read_text())
    names = [ast.literal_eval(node.value) for node in commands.body if isinstance(node, ast.Assign)
             and any(isinstance(t, ast.Name) and t.id == 'COMMANDS' for t in node.targets)]
    assert names, 'xfusion/commands/__init__.py no longer lists its COMMANDS'
    edges['xfusion.commands'] = {f'xfusion.commands.{command.replace("-", "_")}' for command in names[0]}
    for targets in edges.values():
        missing = targets - set(modules)
        assert not missing, f'importlib imports of modules that are not there: {sorted(missing)}'
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    graph = {name: imported_names(name, path, modules) for name, path in modules.items()}
    for name, targets in dynamic_imports(modules).items():
        graph[name] |= targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search, iterative)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        path, stack = [root], [iter(sorted(graph[root]))]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_finds_one():
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': set()}) is None
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']


def test_graph_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / 'xfusion'
    (pkg / 'sub').mkdir(parents=True)
    (pkg / '__init__.py').write_text('')
    (pkg / 'sub' / '__init__.py').write_text('from .a import x\n')
    (pkg / 'sub' / 'a.py').write_text('def f():\n    from ..b import y\n    import xfusion.sub.c\n')
    (pkg / 'sub' / 'c.py').write_text('from xfusion.sub import a\n')
    (pkg / 'b.py').write_text('from xfusion import sub\n')
    modules: dict[str, Path] = {}
    for path in pkg.rglob('*.py'):
        parts = list(path.relative_to(tmp_path).with_suffix('').parts)
        modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    graph = {name: imported_names(name, path, modules) for name, path in modules.items()}
    assert graph['xfusion.sub'] == {'xfusion.sub.a'}
    assert graph['xfusion.sub.a'] == {'xfusion.b', 'xfusion.sub.c'}
    assert graph['xfusion.sub.c'] == {'xfusion.sub', 'xfusion.sub.a'}
    assert graph['xfusion.b'] == {'xfusion', 'xfusion.sub'}
    assert find_cycle(graph) is not None


def test_no_import_cycle_in_xfusion():
    graph = import_graph()
    assert 'xfusion.commands.fuse' in graph['xfusion.commands']
    assert any(target.endswith('_arch') for target in graph['xfusion'])
    cycle = find_cycle(graph)
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_xfusion_imports_the_io_package_by_its_submodules():
    """``xfusion.io`` re-exports its API for users; inside xfusion it would tie every importer to all of it."""
    importers = sorted(name for name, targets in import_graph().items() if 'xfusion.io' in targets)
    assert importers == [], f'import from the submodules of xfusion.io instead: {importers}'
