"""README.md as the acceptance suite reads it: its fenced blocks, their markers, their commands.

A marker is an HTML comment on the line before a fenced block (blank lines between are fine);
readers of the rendered README never see it:

    <!-- acceptance: run -->             bash: run each command, in README order; python: run the block
    <!-- acceptance: file PATH -->       write the block verbatim to PATH in the working folder (a
                                         catalog or a settings file the commands after it can use)
    <!-- acceptance: outputs -->         a layout listing, checked against a real run's output folder
    <!-- acceptance: skip REASON -->     not run, for the reason given (which must be true)

Shell and python blocks must carry one (tests/acceptance/test_readme.py lists every command in a
block without one); other blocks (toml, diff, plain text) are documentation unless marked.
Every run-marked command is picked up as it is: nothing in the suite names README lines.

A bash block meant to run holds one command per line (a trailing `# comment` is fine; no pipes,
`;`, `&&` or redirections), so each line is one command the suite can bind and run.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import REPO

README = REPO / "README.md"

MARKER = re.compile(r"^<!--\s*acceptance:\s*(?P<kind>[a-z]+)\b:?\s*(?P<arg>.*?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<lang>[A-Za-z0-9_+-]*)\s*$")
KINDS = ("run", "file", "outputs", "skip")
SHELL_LANGS = ("bash", "sh", "shell", "console", "zsh")
MUST_BE_MARKED = (*SHELL_LANGS, "python", "py")
SHELL_OPERATORS = ("|", "||", "&&", ";", ">", ">>", "<", "&", "2>", "2>&1")


@dataclass(frozen=True)
class Block:
    lang: str  # "bash", "python", "toml", "" ...
    line: int  # 1-based line of the opening fence
    text: str  # the body, without the fences
    section: str  # the heading it sits under
    kind: str | None  # the marker's kind, None without a marker
    arg: str | None  # a skip's reason, a file's path
    marker_error: str | None = None  # a malformed marker, said plainly

    @property
    def where(self) -> str:
        return f"README.md line {self.line} ({self.section}, ```{self.lang or 'text'})"

    @property
    def is_shell(self) -> bool:
        return self.lang in SHELL_LANGS


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]  # the words, as a POSIX shell splits them (comments dropped)
    text: str  # the line as written (without its comment)
    line: int  # 1-based README line
    block: Block

    @property
    def id(self) -> str:
        return f"L{self.line}: " + re.sub(r"\s+", " ", self.text)[:80]


def read_blocks(path: Path = README) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, section, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#"):
            section = line.lstrip("# ").strip()
        fence = FENCE.match(line)
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise ValueError(f"README.md line {i + 1}: a fenced block that never closes")
        kind = arg = error = None
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        if before.startswith("<!--") and "acceptance" in before:
            found = MARKER.match(before)
            if not found or found["kind"] not in KINDS:
                error = f"malformed marker {before!r}; expected <!-- acceptance: {'|'.join(KINDS)} ... -->"
            else:
                kind, arg = found["kind"], found["arg"] or None
                if kind in ("skip", "file") and not arg:
                    error = f"{before!r}: a {kind} marker needs {'a reason' if kind == 'skip' else 'a path'}"
                elif kind in ("run", "outputs") and arg:
                    error = f"{before!r}: a {kind} marker takes nothing after it"
        blocks.append(Block(fence["lang"].lower(), i + 1, "\n".join(lines[i + 1:end]), section, kind, arg, error))
        i = end + 1
    return blocks


def commands(block: Block) -> list[Command]:
    """The commands of a shell block, one per line (backslash continuations joined)."""
    out, pending, start = [], "", None
    for offset, raw in enumerate(block.text.splitlines(), start=1):
        if start is None:
            start = block.line + offset
        pending += raw
        if raw.rstrip().endswith("\\"):
            pending = pending.rstrip()[:-1] + " "
            continue
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=False)
        lexer.whitespace_split, lexer.commenters = True, "#"
        words = tuple(lexer)
        if words:
            text = re.split(r"\s#", pending, maxsplit=1)[0].strip()
            out.append(Command(words, text, start, block))
        pending, start = "", None
    return out


def shell_operators(command: Command) -> list[str]:
    """Words of a command that a shell would treat as more than one command or a redirection."""
    return [w for w in command.argv if w in SHELL_OPERATORS or w.endswith(";")]


def unmarked_commands(blocks: list[Block] | None = None) -> list[str]:
    """Every command (shell line, python block) the README shows in a block without a marker."""
    found = []
    for block in read_blocks() if blocks is None else blocks:
        if block.kind is not None or block.marker_error or block.lang not in MUST_BE_MARKED:
            continue
        if block.is_shell:
            found += [f"README.md line {c.line} ({block.section}): {c.text}" for c in commands(block)]
        else:
            found.append(f"{block.where}: a python block")
    return found


@dataclass(frozen=True)
class Step:
    """One thing the suite does for the README, in README order: run a command, run a python
    block, or write a file block."""

    kind: str  # "command", "python" or "file"
    block: Block
    command: Command | None = None

    @property
    def line(self) -> int:
        return self.command.line if self.command else self.block.line

    @property
    def id(self) -> str:
        if self.command:
            return self.command.id
        return f"L{self.line}: {self.kind} " + (self.block.arg or self.block.section)[:60]


def steps(blocks: list[Block] | None = None) -> list[Step]:
    out = []
    for block in read_blocks() if blocks is None else blocks:
        if block.kind == "file":
            out.append(Step("file", block))
        elif block.kind == "run" and block.is_shell:
            out += [Step("command", block, c) for c in commands(block)]
        elif block.kind == "run" and block.lang in ("python", "py"):
            out.append(Step("python", block))
    return out
