"""Every script's --help: each flag explained, defaults shown (issue: flags without help, and
--no-mixup-epochs' hidden default of 20, let --mixup silently do nothing)."""
import argparse
import glob
import importlib
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPTS = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(ROOT, "scripts", "*.py"))
                 if not p.endswith("common.py"))  # common.py: the scripts' shared flags, no entry point


class _Captured(Exception):
    pass


def parser_of(module_name, monkeypatch):
    """The ArgumentParser a script builds, caught at its parse_args call."""
    seen = {}

    def capture(self, *args, **kwargs):
        seen["parser"] = self
        raise _Captured

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    module = importlib.import_module(module_name)
    entry = getattr(module, "parse_args", None) or module.main
    with pytest.raises(_Captured):
        entry([])
    return seen["parser"]


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_flag_has_help_and_defaults_are_shown(name, monkeypatch):
    parser = parser_of(name, monkeypatch)
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help or "").strip()]
    assert not missing, f"scripts/{name}.py: flags without help: {missing}"
    assert issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter), \
        f"scripts/{name}.py: --help does not show the defaults"
