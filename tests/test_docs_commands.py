"""Every command shown in README.md, docs/*.md and model_zoo/README.md parses as typed (issue 12).

One case per command (``README.md:49:train_yolo3``; how commands are read: tests/docs_commands.py).
Each flag it shows must exist in the script's parser (exact spelling, no abbreviations); the
arguments, placeholders replaced by a value of the flag's type, must parse with that parser
(``parse_known_args``: no unknown flag, no argparse error); scripts with a ``parse_args`` of
their own also run it, under ``WORLD_SIZE`` = the torchrun processes shown, so that their checks
after parsing apply (--mixup with no epoch to mix, a batch the processes do not split, ...); a
refusal because a file the command names does not exist yet is not a failure here (the slow test
runs the commands that write those files).
``ablation.py`` commands also run with ``--dry-run``, which parses every row's training command.
Inline mentions (```scripts/benchmark_zoo.py --write```) only need their flags to exist.

The slow counterpart, which runs every command in a small form: tests/test_docs_commands_slow.py.
"""
import contextlib
import io
import shlex

import pytest

from docs_commands import PH, capture_parser, fill_placeholders, import_target, shown_commands, unknown_flags

COMMANDS = shown_commands()
IDS = [f"{c.where}:{c.name.rsplit('.', 1)[-1]}" for c in COMMANDS]
# the training script an option string of another script is passed to
NESTED = {("ablation", "--base-args"): lambda args: "scripts/train_faster_rcnn.py"
          if args[args.index("--detector") + 1:][:1] == ["frcnn"] else "scripts/train_yolo3.py"}
EVAL_SOURCES = ("eval_yolo3", "eval_faster_rcnn", "demo")


def test_commands_are_found():
    """The extraction sees the documented commands (a guard against a reader that finds nothing)."""
    targets = {c.target for c in COMMANDS if c.kind == "run"}
    assert {"scripts/train_yolo3.py", "scripts/train_faster_rcnn.py", "scripts/train_imagenet.py",
            "scripts/eval_yolo3.py", "scripts/eval_faster_rcnn.py", "scripts/demo.py", "scripts/ablation.py",
            "gluon_bof.data.synthetic", "gluon_bof.data.convert"} <= targets
    assert len(COMMANDS) >= 50
    assert any(c.nproc == 8 and c.nnodes == 2 for c in COMMANDS)  # torchrun options read


@pytest.mark.parametrize("cmd", COMMANDS, ids=IDS)
def test_shown_command_parses(cmd, monkeypatch):
    print(f"{cmd.where}: {cmd.text}")
    parser = capture_parser(cmd.target, monkeypatch)
    unknown = unknown_flags(parser, cmd.args)
    assert not unknown, f"{cmd.where}: {cmd.target} has no flag {unknown}: {cmd.text}"
    for (script, flag), nested in NESTED.items():
        if cmd.name == script and flag in cmd.args:
            inner = nested(cmd.args)
            words = shlex.split(cmd.args[cmd.args.index(flag) + 1])
            missing = unknown_flags(capture_parser(inner, monkeypatch), words)
            assert not missing, f"{cmd.where}: {flag} passes {missing}, which {inner} does not have"
    if cmd.kind == "mention":
        return
    argv = fill_placeholders(parser, cmd.args)
    err = io.StringIO()
    monkeypatch.setenv("WORLD_SIZE", str(cmd.world_size))
    with contextlib.redirect_stderr(err):
        try:
            _, extra = parser.parse_known_args(argv)
        except SystemExit:
            pytest.fail(f"{cmd.where}: {cmd.text}\n{err.getvalue().strip().splitlines()[-1]}")
    assert not extra, f"{cmd.where}: arguments {cmd.target} does not take: {extra}"
    # refusals that come after parsing (once the data is read), checked here too
    if cmd.name in EVAL_SOURCES and "--model" in argv:  # load_eval_model: random weights measure nothing
        assert "--pretrained" in argv, f"{cmd.where}: --model without --pretrained [FILE] is refused: {cmd.text}"
    if cmd.name == "train_imagenet" and "--last-gamma" in argv:  # build_model: ResNets only
        model = argv[argv.index("--model") + 1]
        assert model.startswith("resnet"), f"{cmd.where}: --last-gamma is refused for {model}: {cmd.text}"
    module = import_target(cmd.target)
    if hasattr(module, "parse_args"):
        with contextlib.redirect_stderr(err):
            try:
                module.parse_args(argv)
            except SystemExit:
                message = err.getvalue().strip().splitlines()[-1]
                if not _missing_input(message, cmd.args):
                    pytest.fail(f"{cmd.where}: {cmd.text}\n{message}")
    if cmd.name == "ablation":
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            try:
                module.main([*argv, "--dry-run"])
            except SystemExit as e:
                pytest.fail(f"{cmd.where}: {cmd.text}\nablation.py --dry-run: {e.code}")


def _missing_input(message: str, args) -> bool:
    """A refusal because a file the command names does not exist here: an input that an earlier
    command writes (the slow test runs them) or that the reader brings, not a wrong command."""
    return "no such file" in message.lower() and any(a in message for a in args if len(a) > 3)


def test_placeholders_get_values_of_their_flag(monkeypatch):
    parser = capture_parser("scripts/benchmark_memory.py", monkeypatch)
    args = ["--repeat", "2", "--batch-size", PH + "B", "--size", PH + "H", PH + "W", PH + "..."]  # last: "more flags"
    assert fill_placeholders(parser, args) == ["--repeat", "2", "--batch-size", "1", "--size", "1", "1"]


def test_a_flag_that_does_not_exist_fails(monkeypatch):
    from docs_commands import parse_command

    cmd = parse_command("x.md:1", "python scripts/train_yolo3.py --network darknet53 --mixup-epochs 20 ...")
    assert unknown_flags(capture_parser(cmd.target, monkeypatch), cmd.args) == ["--mixup-epochs"]
