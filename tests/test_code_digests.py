import ast
import os

import pytest

from sftmix.code_digests import ROOT, code_digests, syntax_text

CONVERTER = '''"""A converter."""
import json
from pkg.core import record  # another package: the sftmix version stands for it
from pkg.rooms.common import helper
from pkg.rooms import shared
from .relative import thing


def convert(row):
    """Its docstring."""
    from pkg.rooms.lazy import late
    return helper(json.loads(row))
'''


def _tree(tmp_path, converter=CONVERTER):
    for name, text in {"core.py": "record = 1\n", "rooms/__init__.py": "", "rooms/converter.py": converter,
                       "rooms/common.py": "from pkg.rooms.deeper import x\n", "rooms/deeper.py": "x = 1\n",
                       "rooms/shared.py": "", "rooms/relative.py": "thing = 1\n", "rooms/lazy.py": "late = 1\n",
                       "rooms/unused.py": ""}.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return code_digests(["pkg.rooms.converter"], root=tmp_path)


def test_a_module_and_the_modules_of_its_own_package_it_imports_are_digested(tmp_path):
    digests = _tree(tmp_path)
    assert sorted(digests) == ["pkg/rooms/common.py", "pkg/rooms/converter.py", "pkg/rooms/deeper.py",
                               "pkg/rooms/lazy.py", "pkg/rooms/relative.py", "pkg/rooms/shared.py"]
    assert all(len(d) == 16 and int(d, 16) >= 0 for d in digests.values())


@pytest.mark.parametrize("order", [1, -1])
def test_a_module_reached_from_two_packages_is_followed_within_each_whatever_the_order(tmp_path, order):
    """`sftmix.sources.common` is a converter's own-package import and `sftmix.normalize`'s: the
    sftmix modules it imports belong to the record path whichever of the two reached it first."""
    for name, text in {"runner.py": "from pkg.rooms.common import helper\n", "core.py": "",
                       "rooms/converter.py": "from pkg.rooms.common import helper\n",
                       "rooms/common.py": "from pkg.core import record\nhelper = 1\n"}.items():
        path = tmp_path / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    digests = code_digests(["pkg.runner", "pkg.rooms.converter"][::order], root=tmp_path)
    assert sorted(digests) == ["pkg/core.py", "pkg/rooms/common.py", "pkg/rooms/converter.py", "pkg/runner.py"]


@pytest.mark.parametrize("edit, changed", [
    (lambda t: t.replace("# another package", "# an other package"), False),
    (lambda t: t.replace('"""Its docstring."""', '"""Another docstring,\n    on two lines."""'), False),
    (lambda t: t.replace('"""A converter."""', '"""Renamed."""'), False),
    (lambda t: t.replace("helper(json.loads(row))", "helper( json.loads( row ) )\n\n"), False),
    (lambda t: t.replace("json.loads(row)", "json.loads(row.strip())"), True),
    (lambda t: t.replace('    """Its docstring."""\n', ""), False),
    (lambda t: t + "\nLIMIT = 2\n", True),
])
def test_comments_formatting_and_docstrings_do_not_change_a_digest_code_does(tmp_path, edit, changed):
    before = _tree(tmp_path / "a")
    after = _tree(tmp_path / "b", edit(CONVERTER))
    assert edit(CONVERTER) != CONVERTER
    assert (before["pkg/rooms/converter.py"] != after["pkg/rooms/converter.py"]) is changed
    assert {k: v for k, v in before.items() if k != "pkg/rooms/converter.py"} == \
           {k: v for k, v in after.items() if k != "pkg/rooms/converter.py"}


def test_a_module_edited_while_the_process_runs_is_read_again(tmp_path):
    before = _tree(tmp_path)
    deeper = tmp_path / "pkg" / "rooms" / "deeper.py"
    deeper.write_text("x = 22\n")
    os.utime(deeper, ns=(1, 1))  # not even a later modification time is needed: the state differs
    after = code_digests(["pkg.rooms.converter"], root=tmp_path)
    assert [k for k in before if before[k] != after[k]] == ["pkg/rooms/deeper.py"]


def test_data_files_are_digested_byte_for_byte(tmp_path):
    _tree(tmp_path)
    template = tmp_path / "pkg" / "rooms" / "prompt.txt"
    template.write_text("Answer $question.\n")
    before = code_digests(["pkg.rooms.converter"], [template], root=tmp_path)
    template.write_text("Answer $question. \n")
    after = code_digests(["pkg.rooms.converter"], [template], root=tmp_path)
    assert before["pkg/rooms/prompt.txt"] != after["pkg/rooms/prompt.txt"]


def test_a_module_without_a_source_file_is_an_error_that_names_it(tmp_path):
    _tree(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"^no source file for module 'pkg.rooms.gone' under {tmp_path}$"):
        code_digests(["pkg.rooms.gone"], root=tmp_path)


def test_the_project_root_holds_the_converters_rules_and_generators():
    digests = code_digests(["sftmix.sources.toucan", "filters.repetition", "generators.eif_augmentation",
                            "generators.translation"])
    assert {"sftmix/sources/toucan.py", "sftmix/sources/common.py", "filters/repetition.py", "filters/words.py",
            "generators/eif_augmentation.py", "generators/eif.py", "generators/base.py",
            "generators/code_math.py"} <= digests.keys()
    assert not any(key.startswith(("sftmix/record", "sftmix/normalize")) for key in digests)
    assert (ROOT / "sftmix" / "code_digests.py").is_file()


def test_a_field_a_newer_python_adds_empty_does_not_change_the_text_of_a_tree(monkeypatch):
    """Python 3.12 gives every function `type_params=[]`: `ast.dump` would write it, and every digest
    taken on 3.11 would differ."""
    before = ast.parse(CONVERTER)
    after = ast.parse(CONVERTER)
    monkeypatch.setattr(ast.FunctionDef, "_fields", ast.FunctionDef._fields + ("type_params",))
    for node in ast.walk(after):
        if isinstance(node, ast.FunctionDef):
            node.type_params = []
    assert ast.dump(before) != ast.dump(after)
    assert syntax_text(before) == syntax_text(after)
    assert syntax_text(ast.parse("f(x, None)")) != syntax_text(ast.parse("f(x)"))


def test_the_licence_rule_a_generator_reads_its_inputs_by_is_in_a_generated_source_s_code():
    """`derivative_problem` lived in sftmix/manifest.py, which no stage digests: a change to which
    row-licensed inputs a generator may derive from left its records current (an audit)."""
    from generators import base
    from sftmix.build import LLM_CLIENT, RECORD_PATH

    assert base.derivative_problem.__module__ == "sftmix.record"
    assert "sftmix/record.py" in code_digests([*RECORD_PATH, LLM_CLIENT, "generators.translation"])
