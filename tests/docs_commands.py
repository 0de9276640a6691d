"""The shell commands shown in README.md, docs/*.md and model_zoo/README.md, as data.

``shown_commands()`` reads every fenced ```bash / ```sh / ``` block, every indented code block and
every inline `python scripts/...` / `python -m gluon_bof...` snippet, and returns one ``Command``
per command that runs a script of this project. How a line becomes a command:

- backslash continuations are joined; comments, ``make``, ``cd``, ``pip``, ``export``, shell
  syntax (``for``, ``done``, ``VAR=$(...)``) and ``#SBATCH`` lines are skipped;
- leading ``VAR=value`` words are the command's environment; ``srun``/``sbatch`` and their options
  are dropped (the ``torchrun`` they start is kept); ``torchrun`` / ``python -m
  torch.distributed.run`` options are read (``--nnodes``, ``--nproc_per_node``) and the script after
  them is the command;
- placeholders become ``PH + the word as shown``: ``...``, ``<name>``, upper-case words (``DIR``, ``PATH``, ``M``),
  and anything with ``$VAR``, ``${...}`` or ``$(...)`` in it, except ``$( [ ... ] && echo FLAGS )``,
  which stands for FLAGS (the variant of a loop that adds them);
- ``[--flag value]`` (an optional part) is shown without its brackets;
- ``...`` right after the script means "the previous command of this script in the same file"
  (as in ``python scripts/ablation.py ... --dry-run``); any other ``...`` is dropped.

Inline snippets that name a script without ``python`` (```scripts/benchmark_zoo.py --write```) are
``Command(kind="mention")``: their flags must exist, nothing else is checked.
"""
import argparse
import glob
import importlib
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ["README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))),
        "model_zoo/README.md"]
PH = "\0"  # marks a placeholder word: PH + the word as shown
SKIP_WORDS = {"make", "cd", "pip", "pip3", "export", "for", "done", "do", "then", "fi", "if", "echo", "source",
              "mkdir", "rm", "ls"}
FENCE = re.compile(r"^(\s*)```\s*([A-Za-z]*)\s*$")
INLINE = re.compile(r"`((?:[A-Z_]+=\S+ )*(?:python3? (?:-m gluon_bof[\w.]*|scripts/[\w/]+\.py)|scripts/[\w/]+\.py "
                    r"-)[^`]*)`")


@dataclass
class Command:
    where: str                      # "README.md:47"
    text: str                       # the command as shown (continuations joined)
    target: str                     # "scripts/train_yolo3.py" or "gluon_bof.data.synthetic"
    args: List[str]                 # the script's arguments, placeholders as PH + the word shown
    kind: str = "run"               # "run" or "mention"
    nproc: Optional[int] = None     # torchrun's --nproc_per_node (None: one plain process)
    nnodes: int = 1
    env: Dict[str, str] = field(default_factory=dict)
    continues: bool = False         # shown as "script ... --more": the previous command's arguments first

    @property
    def name(self) -> str:
        """The module name the script is imported as (train_yolo3, pascal_voc, gluon_bof.data.convert)."""
        return self.target if not self.target.endswith(".py") else os.path.splitext(os.path.basename(self.target))[0]

    @property
    def world_size(self) -> int:
        return (self.nproc or 1) * self.nnodes


def _blocks(lines):
    """``(first line number, [lines])`` of each code block of a Markdown file."""
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m and m.group(2) in ("", "bash", "sh", "shell", "console"):
            start, body = i + 2, []
            i += 1
            while i < len(lines) and not FENCE.match(lines[i]):
                body.append(lines[i][len(m.group(1)):] if lines[i].startswith(m.group(1)) else lines[i])
                i += 1
            yield start, body
        elif m:  # another language: skip the block
            i += 1
            while i < len(lines) and not FENCE.match(lines[i]):
                i += 1
        elif lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()) \
                and not lines[i].lstrip().startswith(("-", "*", "|")):
            start, body = i + 1, []
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                body.append(lines[i][4:])
                i += 1
            yield start, body
            continue
        i += 1


def _logical_lines(start, body):
    """``(line number, text)`` with backslash continuations joined."""
    buf, first = "", None
    for k, line in enumerate(body):
        if first is None:
            first = start + k
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield first, buf.strip()
        buf, first = "", None
    if buf.strip():
        yield first, buf.strip()


def _dollar_parens(text: str) -> str:
    """``$(...)`` -> FLAGS for ``$( [ ... ] && echo FLAGS )``, else a placeholder mark."""
    out, i = "", 0
    while i < len(text):
        if text.startswith("$(", i):
            depth, j = 1, i + 2
            while j < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            inner = text[i + 2:j - 1]
            m = re.match(r"^\s*\[.*\]\s*&&\s*echo\s+(.*?)\s*$", inner)
            out += m.group(1) if m else "__PH__"
            i = j
        else:
            out += text[i]
            i += 1
    return re.sub(r"\$\{[^}]*\}", "__PH__", out)


def _is_placeholder(tok: str) -> bool:
    return ("__PH__" in tok or "$" in tok or "..." in tok or re.fullmatch(r"<[^>]+>", tok) is not None
            or re.fullmatch(r"[A-Z][A-Z0-9_]*", tok) is not None)


def mark_placeholders(words) -> List[str]:
    """``words`` with each placeholder marked (``PH + word``)."""
    return [PH + w if _is_placeholder(w) else w for w in words]


def _words(text: str) -> List[str]:
    words = []
    for tok in shlex.split(_dollar_parens(text), comments=True):
        if tok.startswith("[") and tok != "[":
            tok = tok[1:]
        if tok.endswith("]") and not tok.endswith("[]") and tok != "]":
            tok = tok[:-1]
        words.append(tok)
    return words


def _int_or(value: str, default: int) -> int:
    return int(value) if value.isdigit() else default


def parse_command(where: str, text: str, kind: str = "run") -> Optional[Command]:
    """The Command a shown line runs, or None (not a command of this project)."""
    words = _words(text)
    env = {}
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if not words or words[0] in SKIP_WORDS or words[0].startswith("#"):
        return None
    if words[0] in ("srun", "sbatch"):
        while words and words[0] not in ("torchrun", "python", "python3"):
            words.pop(0)
    nproc, nnodes = None, 1
    if words[:1] == ["torchrun"] or words[:3] in (["python", "-m", "torch.distributed.run"],
                                                  ["python3", "-m", "torch.distributed.run"]):
        words = words[1:] if words[0] == "torchrun" else words[3:]
        nproc = 1
        while words and not words[0].endswith(".py"):
            opt = words.pop(0)
            value = words[0] if words and not words[0].startswith("-") and not words[0].endswith(".py") else ""
            if opt in ("--nproc_per_node", "--nproc-per-node"):
                nproc = _int_or(value, 1)
            elif opt == "--nnodes":
                nnodes = _int_or(value, 1)
        target = words.pop(0) if words else None
    elif words[0] in ("python", "python3"):
        words.pop(0)
        if words[:1] == ["-m"]:
            target = words[1]
            words = words[2:]
        else:
            target = words.pop(0) if words else None
    elif words[0].startswith("scripts/") and words[0].endswith(".py"):
        target = words.pop(0)
    else:
        return None
    if not target or not (target.startswith("scripts/") or target.startswith("gluon_bof")):
        return None
    continues = words[:1] == ["..."]
    args = mark_placeholders(words[continues:])
    return Command(where, text, target, args, kind, nproc, nnodes, env, continues)


def shown_commands(docs=DOCS) -> List[Command]:
    """Every project command shown in ``docs`` (paths relative to the repository root), in order."""
    out = []
    for doc in docs:
        path = os.path.join(ROOT, doc)
        if not os.path.exists(path):
            continue
        with open(path) as f:
            lines = f.read().splitlines()
        in_block = set()
        previous = {}
        for start, body in _blocks(lines):
            in_block.update(range(start - 1, start + len(body)))
            for num, text in _logical_lines(start, body):
                cmd = parse_command(f"{doc}:{num}", text)
                if cmd is None:
                    continue
                if cmd.continues and cmd.target in previous:
                    cmd.args = previous[cmd.target].args + cmd.args
                else:
                    previous[cmd.target] = cmd
                out.append(cmd)
        for num, line in enumerate(lines, 1):
            if num in in_block:
                continue
            for m in INLINE.finditer(line):
                snippet = m.group(1)
                kind = "run" if re.match(r"(?:[A-Z_]+=\S+ )*python", snippet) else "mention"
                cmd = parse_command(f"{doc}:{num}", snippet, kind)
                if cmd is not None:
                    out.append(cmd)
    return sorted(out, key=lambda c: (docs.index(c.where.rsplit(":", 1)[0]), int(c.where.rsplit(":", 1)[1])))


# -- the scripts' own parsers ------------------------------------------------------------------

class _Captured(Exception):
    pass


def import_target(target: str):
    """The module of a shown target: scripts/x.py, scripts/datasets/x.py or gluon_bof.x."""
    if target.startswith("gluon_bof"):
        return importlib.import_module(target)
    folder = os.path.join(ROOT, os.path.dirname(target))
    for p in (os.path.join(ROOT, "scripts"), folder):
        if p not in sys.path:
            sys.path.insert(0, p)
    return importlib.import_module(os.path.splitext(os.path.basename(target))[0])


def capture_parser(target: str, monkeypatch) -> argparse.ArgumentParser:
    """The ArgumentParser a script builds, caught at its parse_args call (as tests/scripts/test_help.py)."""
    seen = {}

    def capture(self, *args, **kwargs):
        seen["parser"] = self
        raise _Captured

    module = import_target(target)
    with monkeypatch.context() as m:
        m.setattr(argparse.ArgumentParser, "parse_args", capture)
        entry = getattr(module, "parse_args", None) or module.main
        try:
            entry([])
        except _Captured:
            pass
    return seen["parser"]


def flag_of(token: str) -> Optional[str]:
    """The option a token names ('--epochs' of '--epochs=3'), None for values."""
    if not token.startswith("-") or token == "-" or re.fullmatch(r"-\d+(\.\d*)?", token) or re.search(r"\s", token):
        return None
    return token.split("=", 1)[0]


def is_placeholder(word: str) -> bool:
    return word.startswith(PH)


def unknown_flags(parser: argparse.ArgumentParser, args) -> List[str]:
    return [f for f in map(flag_of, (a for a in args if not is_placeholder(a)))
            if f and f not in parser._option_string_actions]


def governing_action(parser, args, i):
    """The parser action whose value ``args[i]`` is, or None (a placeholder for more flags)."""
    for j in range(i - 1, -1, -1):
        f = None if is_placeholder(args[j]) else flag_of(args[j])
        if f:
            action = parser._option_string_actions.get(f)
            if action is None or "=" in args[j]:
                return None
            room = {None: 1, "?": 1, "+": len(args), "*": len(args)}.get(action.nargs, action.nargs)
            return action if isinstance(room, int) and i - j <= room else None
    return None


def harmless_value(action) -> str:
    if action is not None and action.choices:
        return str(list(action.choices)[0])
    if action is not None and action.type in (int, float):
        return "1"
    return "placeholder"


def fill_placeholders(parser, args) -> List[str]:
    """``args`` with each placeholder replaced by a value its flag accepts (a flag-less one dropped)."""
    out = []
    for i, a in enumerate(args):
        if not is_placeholder(a):
            out.append(a)
            continue
        action = governing_action(parser, args, i)
        if action is not None:
            out.append(harmless_value(action))
    return out
