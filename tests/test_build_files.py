"""Every module, tool, benchmark and test is covered by a Bazel target, and every dep resolves.

The BUILD files are Starlark; the subset used here is Python syntax, so they are executed with
recording stand-ins for the rules. CI additionally runs the real `bazel query //...`.
"""
import glob
import os

import pytest

from tests.conftest import ROOT

RULES = ('py_library', 'py_binary', 'py_test', 'filegroup')


def load_targets():
  """{label: (rule, package_dir, attrs)} over every BUILD file in the repository."""
  targets = {}
  for build in glob.glob(os.path.join(ROOT, '**', 'BUILD'), recursive=True):
    if '/.venv/' in build or '/bazel-' in build:
      continue
    package = os.path.relpath(os.path.dirname(build), ROOT)
    package = '' if package == '.' else package

    def rule(kind):
      def record(name, **attrs):
        targets[f'//{package}:{name}'] = (kind, package, attrs)
      return record

    scope = {kind: rule(kind) for kind in RULES}
    scope.update(package=lambda **kw: None, glob=lambda *a, **kw: [])
    with open(build) as f:
      exec(compile(f.read(), build, 'exec'), scope)  # noqa: S102 - our own BUILD files
  return targets


def resolve(label, package):
  if label.startswith(':'):
    return f'//{package}{label}'
  if ':' not in label:
    return f'{label}:{label.rsplit("/", 1)[-1]}'
  return label


TARGETS = load_targets()


def covered(kind_filter):
  files = set()
  for kind, package, attrs in TARGETS.values():
    if kind in kind_filter:
      files.update(os.path.join(package, src) for src in attrs.get('srcs', []))
  return files


def py_files(pattern):
  return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern),
                                                              recursive=True))


def test_library_modules_are_in_py_library():
  missing = set(py_files('official/**/*.py')) - covered({'py_library'})
  assert not missing, f'modules without a py_library: {sorted(missing)}'


def test_each_tool_and_benchmark_is_a_py_binary():
  binaries = {os.path.join(p, a['srcs'][0]) for k, p, a in TARGETS.values() if k == 'py_binary'}
  wanted = [p for p in py_files('tools/*.py') + py_files('benchmarks/*.py')
            if os.path.basename(p) not in ('__init__.py', 'common.py')]
  missing = set(wanted) - binaries
  assert not missing, f'tools/benchmarks without a py_binary: {sorted(missing)}'


def test_each_test_module_is_a_py_test():
  tests = {os.path.join(p, a['srcs'][0]) for k, p, a in TARGETS.values() if k == 'py_test'}
  missing = set(py_files('tests/test_*.py')) - tests
  assert not missing, f'test modules without a py_test: {sorted(missing)}'


@pytest.mark.parametrize('label', sorted(TARGETS))
def test_deps_name_existing_targets(label):
  _, package, attrs = TARGETS[label]
  for dep in attrs.get('deps', []) + attrs.get('data', []):
    assert resolve(dep, package) in TARGETS, f'{label}: dep {dep} names no target'
  for name in ('deps', 'data', 'srcs'):  # Bazel refuses a label listed twice
    labels = [resolve(d, package) for d in attrs.get(name, [])]
    assert len(labels) == len(set(labels)), f'{label}: a label repeated in {name}'


def test_srcs_exist():
  for label, (_, package, attrs) in TARGETS.items():
    for src in attrs.get('srcs', []):
      assert os.path.isfile(os.path.join(ROOT, package, src)), f'{label}: no file {src}'


def _imported_files(path):
  """The repository's .py files that `path` imports (function bodies included)."""
  import ast
  with open(path) as f:
    tree = ast.parse(f.read())
  def found(name):
    for candidate in (name.replace('.', '/') + '.py', name.replace('.', '/') + '/__init__.py'):
      if os.path.isfile(os.path.join(ROOT, candidate)):
        return candidate
    return None

  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module and not node.level:
      if node.module.split('.')[0] in ('official', 'tools', 'tests'):
        for alias in node.names:  # a module of the package, else a name in the module
          path = found(f'{node.module}.{alias.name}') or found(node.module)
          if path:
            yield path
    elif isinstance(node, ast.Import):
      for alias in node.names:
        if alias.name.split('.')[0] in ('official', 'tools', 'tests') and found(alias.name):
          yield found(alias.name)


def test_deps_cover_every_import():
  """Each target lists the targets of the repository modules its sources import: Bazel would
  build what the tests import, not something else."""
  owner = {os.path.normpath(os.path.join(p, src)): label
           for label, (_, p, a) in TARGETS.items() for src in a.get('srcs', [])}
  missing = []
  for label, (kind, package, attrs) in TARGETS.items():
    deps = {resolve(d, package) for d in attrs.get('deps', [])}
    for src in attrs.get('srcs', []):
      if not src.endswith('.py'):
        continue
      for imported in _imported_files(os.path.join(ROOT, package, src)):
        target = owner.get(os.path.normpath(imported))
        if target and target != label and target not in deps:
          missing.append(f'{label} imports {imported} without {target}')
  assert not missing, '\n'.join(sorted(set(missing)))
