"""House rule (DESIGN §1): the engine never imports Odoo."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENGINE_DIRS = ("application", "providers", "repositories")


def _engine_files():
    for addon in sorted(ROOT.glob("maildesk_mail_client*")):
        for name in ENGINE_DIRS:
            yield from sorted((addon / name).rglob("*.py"))


def _imports_odoo(path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "odoo" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "odoo":
            return True
    return False


def test_engine_does_not_import_odoo():
    files = list(_engine_files())
    assert len(files) > 10, "the engine packages were not found"
    offenders = [str(path.relative_to(ROOT)) for path in files if _imports_odoo(path)]
    assert offenders == []


def test_the_check_catches_an_odoo_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from odoo.fields import Integer\n")
    assert _imports_odoo(bad)
