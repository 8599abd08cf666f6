import logging

import pytest

from zeroclick.imaging import __version__
from zeroclick.imaging.errors import InvalidSeriesError, ZeroClickError, check_strictness, report_problem


def test_version_and_help(run_cli):
    code, out, _ = run_cli("--version")
    assert code == 0 and __version__ in out
    code, out, _ = run_cli("--help")
    assert code == 0
    for cmd in ("synth", "bench"):
        assert cmd in out
    assert "exit codes" in out


def test_no_command_is_usage_error(run_cli):
    code, out, _ = run_cli()
    assert code == 2 and "usage" in out.lower()


def test_error_tree_inherits_builtins():
    exc = InvalidSeriesError("x")
    assert isinstance(exc, ZeroClickError) and isinstance(exc, ValueError)


def test_strictness_switch(caplog):
    with pytest.raises(InvalidSeriesError, match="gap"):
        report_problem("gap between slices", "raise", error=InvalidSeriesError)
    with pytest.warns(UserWarning, match="gap"):
        report_problem("gap between slices", "warn")
    with caplog.at_level(logging.DEBUG, logger="zeroclick"):
        report_problem("quiet gap", "ignore")
    assert "quiet gap" in caplog.text
    with pytest.raises(ValueError, match="did you mean|one of"):
        check_strictness("strict")


def test_library_does_not_configure_root_logging():
    import subprocess
    import sys

    code = (
        "import logging, zeroclick, zeroclick.imaging, zeroclick.pipelines, zeroclick.pipelines.cli;"
        "assert not logging.getLogger().handlers, logging.getLogger().handlers;"
        "assert any(isinstance(h, logging.NullHandler) for h in logging.getLogger('zeroclick').handlers)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _subcommand_paths(parser, prefix=()):
    """Every (sub)command path of an argparse parser, e.g. ('bench', 'cmr')."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*prefix, name)
                yield from _subcommand_paths(sub, (*prefix, name))


def test_issue_13_every_command_help_answers(capsys):
    """`zeroclick X --help` answers for every command and subcommand (`bench --help` used to crash on '30%')."""
    from zeroclick.pipelines.cli import build_parser

    paths = list(_subcommand_paths(build_parser()))
    assert ("bench", "regression") in paths and ("validate", "cmr") in paths
    for path in [(), *paths]:
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args([*path, "--help"])
        assert exit_info.value.code == 0, path
        assert "usage: zeroclick" in capsys.readouterr().out, path
