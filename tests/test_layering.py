"""Import layering, read from the source (ast, nothing imported): see docs/architecture.md.

* ``gsv_jax/models/`` holds pure Flax modules: it must not import the converters, training, data,
  inference engines, the server or the command lines (they all build on models/, not the reverse).
* No module uses another module's underscore-private names (``from gsv_jax.x import _y`` or
  ``x._y`` on an imported gsv_jax module): what is shared gets a public name.
"""
import ast
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = REPO / "gsv_jax"

# what models/ may not import: packages above it, and the command-line scripts at the top of the repo
FORBIDDEN_IN_MODELS = ("gsv_jax.convert", "gsv_jax.train", "gsv_jax.data", "gsv_jax.inference", "gsv_jax.serve",
                       "infer", "train", "data", "bench")

# Known uses of another module's private names, as "file: module.name". This list may only shrink:
# an entry that no longer occurs fails the test too (delete it), a new use fails until made public.
ALLOWED_PRIVATE: set[str] = set()


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_package(path: pathlib.Path) -> bool:
    return path.name == "__init__.py"


def _resolve(path: pathlib.Path, node: ast.ImportFrom) -> str:
    """Absolute module name of ``from <module> import ...`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = _module_name(path).split(".")
    if not _is_package(path):
        base = base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _is_gsv_module(name: str) -> bool:
    rel = pathlib.Path(*name.split("."))
    return name.split(".")[0] == "gsv_jax" and ((REPO / rel).with_suffix(".py").exists()
                                                or (REPO / rel / "__init__.py").exists())


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _sources():
    files = sorted(PACKAGE.rglob("*.py"))
    files += [REPO / "infer.py", REPO / "train.py", *sorted((REPO / "data").glob("*.py"))]
    return [f for f in files if f.exists()]


def imports_of(path: pathlib.Path) -> set:
    """Every module name a file imports (``from m import x`` counts as m and m.x)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(path, node)
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def private_uses(path: pathlib.Path) -> set:
    """``"file: module.name"`` for every private name of another gsv_jax module this file uses."""
    tree = ast.parse(path.read_text(), str(path))
    own = _module_name(path)
    where = str(path.relative_to(REPO))
    found = set()
    aliases = {}  # local name -> gsv_jax module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "gsv_jax":
                    if a.asname:
                        aliases[a.asname] = a.name
                    else:
                        aliases["gsv_jax"] = "gsv_jax"
        elif isinstance(node, ast.ImportFrom):
            mod = _resolve(path, node)
            if not _is_gsv_module(mod):
                continue
            for a in node.names:
                full = f"{mod}.{a.name}"
                if _is_gsv_module(full):
                    aliases[a.asname or a.name] = full
                elif _private(a.name) and mod != own:
                    found.add(f"{where}: {full}")
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain, base = [node.attr], node.value
        while isinstance(base, ast.Attribute):
            chain.append(base.attr)
            base = base.value
        if not isinstance(base, ast.Name) or base.id not in aliases:
            continue
        mod = aliases[base.id]
        for attr in reversed(chain):
            if _is_gsv_module(f"{mod}.{attr}"):
                mod = f"{mod}.{attr}"
                continue
            if _private(attr) and mod != own:
                found.add(f"{where}: {mod}.{attr}")
            break
    return found


def test_models_do_not_import_the_layers_above():
    files = sorted((PACKAGE / "models").rglob("*.py"))
    assert len(files) > 10
    bad = []
    for f in files:
        for name in sorted(imports_of(f)):
            if any(name == p or name.startswith(p + ".") for p in FORBIDDEN_IN_MODELS):
                bad.append(f"{f.relative_to(REPO)} imports {name}")
    assert not bad, "models/ must stay below convert/train/data/inference/serve:\n" + "\n".join(bad)


def test_no_module_uses_another_modules_private_names():
    found = set()
    for f in _sources():
        found |= private_uses(f)
    new = sorted(found - ALLOWED_PRIVATE)
    stale = sorted(ALLOWED_PRIVATE - found)
    assert not new, "private names used across modules (give them a public name):\n" + "\n".join(new)
    assert not stale, "no longer used, delete from ALLOWED_PRIVATE:\n" + "\n".join(stale)


def test_the_checks_catch_what_they_should(tmp_path, monkeypatch):
    """The detectors themselves: a forbidden import and both kinds of private use are found."""
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    pkg = tmp_path / "gsv_jax"
    (pkg / "models").mkdir(parents=True)
    (pkg / "convert").mkdir()
    for d in (pkg, pkg / "models", pkg / "convert"):
        (d / "__init__.py").write_text("")
    (pkg / "convert" / "s2.py").write_text("def _helper(): pass\n")
    bad = pkg / "models" / "bad.py"
    bad.write_text("from ..convert import s2\nfrom gsv_jax.convert.s2 import _helper\n"
                   "import gsv_jax.convert.s2 as conv\nconv._helper()\ns2._helper()\n")
    assert "gsv_jax.convert.s2" in imports_of(bad)
    assert private_uses(bad) == {"gsv_jax/models/bad.py: gsv_jax.convert.s2._helper"}
    only_attr = pkg / "models" / "attr.py"
    only_attr.write_text("import gsv_jax.convert.s2\ngsv_jax.convert.s2._helper()\nx = gsv_jax.convert.s2.__name__\n")
    assert private_uses(only_attr) == {"gsv_jax/models/attr.py: gsv_jax.convert.s2._helper"}
