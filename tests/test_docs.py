"""The docs' commands still parse, and the demo figures they quote are written by scripts/doc_figures.py.

Docs rot quietly: an option is renamed, a config id moves, an overlay is deleted, and the README goes on showing the
old command. Every shell command in a fenced block of the docs, and every inline code span that starts like one, is
checked here as the shell would hand it over, without running anything heavy:

* ``robustseg VERB ...``: :func:`robustseg.cli.build_parser` parses it, and ``summary`` and ``datalist`` pass their
  remainder to their own parsers; the bundle folder and ``--config_file`` overlays named must exist;
* ``python scripts/X.py ...`` (also ``.venv/bin/python`` or ``scripts/X.py``) and ``python -m MODULE ...``: the script
  or module exists, and its ``build_parser()``, or else the argparse parser its ``main(argv)`` builds, accepts the
  arguments (``main`` is stopped right after parsing);
* ``python -m monai.bundle FUNC ...``: ``FUNC`` is a MONAI bundle command, every config, metadata and logging file
  named exists, and every override is an id of the merged configs or of the bundle contract;
* ``torchrun ...``: torchrun's own parser, then the module or script it starts, as above;
* ``mlflow ui ...``: MLflow's command line parses it;
* ``NAME=value scripts/X.sh``: the script exists, is executable and reads ``NAME`` (itself or in what it sources).

Inline spans without options (``robustseg audit``) only name a command: the verb, script or module must exist.
Options quoted on their own (``--attack_seed``) must be known to one of the parsers or configs. Each case is named
by its doc and line (``README.md:41``).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import csv
import importlib
import importlib.util
import inspect
import io
import json
import os
import re
import runpy
import shlex
import string
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, NoReturn
from unittest import mock

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = (
    "README.md",
    "bundles/brats_unet3d/docs/README.md",
    "bundles/natural2d_segmentation/docs/README.md",
    *sorted(p.relative_to(REPO).as_posix() for p in (REPO / "docs").glob("*.md")),
)
SHELL_FENCES = ("bash", "sh", "shell", "console")
"""Fences whose every line is a command; in a bare fence (also used for layouts) only lines that start like one."""
PROGRAMS = ("python", ".venv/bin/python", "robustseg", "torchrun", "mlflow", ".venv/bin/mlflow", "source")
BUILTINS = ("set", "cd", "export")
"""Shell built-ins: nothing to check."""
SEPARATORS = ("&&", "||", ";", "|")
REDIRECTIONS = (">", ">>", "<", "2>", "2>&1", "&>")
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*")
"""Metavariables of a synopsis (``--max_cases N``, ``--root DIR``): replaced by ``1``, which every option accepts."""
ASSIGNMENT = re.compile(r"([A-Za-z_]\w*)=(.*)")
MONAI_FILE_OPTIONS = ("config_file", "meta_file", "logging_file")
"""Options of MONAI's bundle commands that name input files of the repository."""
MONAI_INPUTS = {"verify_metadata": ("filepath",)}
"""Per MONAI command, further options that name an input (``verify_metadata`` downloads its schema without one)."""


@dataclass(frozen=True)
class Command:
    """A command as a doc shows it: backslash continuations joined, variables of its block substituted."""

    doc: str
    line: int
    text: str
    inline: bool = False

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def _without_comment(line: str) -> str:
    """``line`` up to a shell comment: a ``#`` that starts a word outside quotes (``train#trainer`` is no comment)."""
    quote = ""
    for i, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line


def _demo_variables() -> dict[str, str]:
    """The plain assignments of scripts/demo.sh (``BUNDLE=bundles/brats_unet3d``), which docs may use too."""
    found = re.findall(r"^([A-Za-z_]\w*)=([\w./-]+)$", (REPO / "scripts/demo.sh").read_text(), re.MULTILINE)
    return {"PWD": str(REPO), **dict(found)}


def _starts_like_a_command(text: str) -> bool:
    words = text.split()
    while words and ASSIGNMENT.fullmatch(words[0]):
        words = words[1:]
    return bool(words) and (words[0] in PROGRAMS or re.fullmatch(r"scripts/[\w.-]+\.(py|sh)", words[0]) is not None)


def fenced_commands(doc: str) -> list[Command]:
    """The commands of the doc's fenced blocks, each at the line where it starts."""
    out: list[Command] = []
    fence: str | None = None
    variables: dict[str, str] = {}
    start, parts = 0, []
    for number, raw in enumerate((REPO / doc).read_text().splitlines(), 1):
        line = raw.strip()
        if line.startswith("```"):
            fence = line[3:].strip().lower() if fence is None else None
            variables = _demo_variables()
            continue
        if fence is None or (fence and fence not in SHELL_FENCES):
            continue
        line = _without_comment(line)
        if not parts:
            if not line:
                continue
            start = number
        parts.append(line.removesuffix("\\").strip())
        if line.endswith("\\"):
            continue
        text, parts = " ".join(parts), []
        assignment = ASSIGNMENT.fullmatch(text)
        if assignment and " " not in text:  # NAME=value on its own line: a variable of the block
            variables[assignment[1]] = assignment[2]
        elif fence or _starts_like_a_command(text):
            out.append(Command(doc, start, string.Template(text).safe_substitute(variables)))
    return out


def _prose(doc: str) -> str:
    """The doc with its fenced blocks blanked (their lines kept, so offsets give the same line numbers)."""
    text = (REPO / doc).read_text()
    return re.sub(r"^```.*?^```", lambda m: "\n" * m[0].count("\n"), text, flags=re.MULTILINE | re.DOTALL)


def _inline_spans(doc: str) -> Iterator[tuple[int, str]]:
    """Inline code spans outside fenced blocks (a span may wrap onto the next line), with their line numbers."""
    text = _prose(doc)
    for match in re.finditer(r"`([^`\n]+(?:\n[^`\n]+)?)`", text):
        yield text.count("\n", 0, match.start()) + 1, " ".join(match[1].split())


def inline_commands(doc: str) -> list[Command]:
    return [Command(doc, line, span, inline=True) for line, span in _inline_spans(doc) if _starts_like_a_command(span)]


def all_commands() -> list[Command]:
    return [c for doc in DOCS for c in (*fenced_commands(doc), *inline_commands(doc))]


def split_command(text: str) -> list[tuple[dict[str, str], list[str]]]:
    """The simple commands of a shell line: each with its ``NAME=value`` environment and its words.

    Separators (``&&``, ``|``, ``;``) start a new command; a redirection ends one (what follows is a file). Words
    that are synopsis metavariables become ``1``, and a synopsis's optional brackets (``[--eps 0.05]``) are dropped.
    """
    if " [-" in text:  # a synopsis: unquoted brackets around optional arguments
        text = re.sub(r"(?<=\s)\[(?=-)", "", text)
        text = re.sub(r"\](?=\s|$)", "", text)
    commands: list[tuple[dict[str, str], list[str]]] = []
    env: dict[str, str] = {}
    words: list[str] = []
    redirected = False
    for word in shlex.split(text):
        if word in SEPARATORS:
            commands.append((env, words))
            env, words, redirected = {}, [], False
        elif word in REDIRECTIONS or redirected:
            redirected = True
        elif not words and ASSIGNMENT.fullmatch(word):
            name, value = word.split("=", 1)
            env[name] = value
        else:
            words.append("1" if words and PLACEHOLDER.fullmatch(word) else word)
    commands.append((env, words))
    return [(env, words) for env, words in commands if env or words]


def _refused(where: str, text: str, error: str) -> NoReturn:
    pytest.fail(f"{where}: the docs' `{text}` is refused: {error}", pytrace=False)


@contextlib.contextmanager
def _argparse_errors(where: str, text: str) -> Iterator[None]:
    """Turn argparse's exit on a bad command line into a failure that quotes the doc's line and argparse's message."""
    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr):
            yield
    except SystemExit:
        _refused(where, text, stderr.getvalue().strip().splitlines()[-1] if stderr.getvalue().strip() else "exit")


class _Parsed(Exception):
    """Raised by the patched ``parse_args`` to stop a ``main(argv)`` right after it parsed its arguments."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.namespace = namespace


def parse_in_main(main: Callable[[list[str]], Any], argv: Sequence[str]) -> argparse.Namespace:
    """What ``main(argv)`` parses from ``argv``, without running the rest of ``main``."""
    original = argparse.ArgumentParser.parse_args

    def parse_and_stop(parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Parsed(original(parser, *args, **kwargs))

    with mock.patch.object(argparse.ArgumentParser, "parse_args", parse_and_stop):
        try:
            main(list(argv))
        except _Parsed as parsed:
            return parsed.namespace
    raise AssertionError(f"{main} returned without parsing its arguments")


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    # argparse has no public API that lists a parser's sub-commands or options; _actions has long been stable
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _is_user_path(path: str) -> bool:
    """Paths of the reader's machine (``/data/BraTS``, ``/path/to/bundle``): nothing to check here."""
    return Path(path).is_absolute()


def _require_file(where: str, path: str, what: str) -> None:
    if not _is_user_path(path) and not (REPO / path).exists():
        pytest.fail(f"{where}: {what} {path} does not exist in the repository", pytrace=False)


@cache
def merged_config(files: tuple[str, ...]) -> Any:
    """The raw merged config of ``files`` (read, never resolved: no code of the configs runs)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(REPO / f) for f in files])
    return parser


def _fire_arguments(words: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Positionals and ``--key value`` / ``--key=value`` / ``--flag`` options, as python-fire reads them."""
    positionals: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--"):
            positionals.append(word)
        elif "=" in word:
            key, value = word[2:].split("=", 1)
            options[key] = value
        elif i + 1 < len(words) and not words[i + 1].startswith("--"):
            options[word[2:]] = words[i + 1]
            i += 1
        else:
            options[word[2:]] = "True"
        i += 1
    return positionals, options


def _config_files(value: str) -> list[str]:
    """``--config_file``'s value: a Python list literal of paths, or one path."""
    files = ast.literal_eval(value) if value.startswith("[") else [value]
    return [str(f) for f in files]


def check_monai(where: str, text: str, words: Sequence[str], name_only: bool) -> None:
    from monai.bundle import scripts as monai_scripts

    from robustseg.contract import contract_ids

    function = getattr(monai_scripts, words[0], None) if words else None
    if function is None:
        _refused(where, text, f"monai.bundle has no command {words[0] if words else '(none)'!r}")
    if name_only:
        return
    parameters = inspect.signature(function).parameters
    named = [p for p in parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    positionals, options = _fire_arguments(words[1:])
    for role in (*MONAI_FILE_OPTIONS, *MONAI_INPUTS.get(words[0], ())):
        if role in options:
            for path in _config_files(options[role]) if role == "config_file" else [options[role]]:
                _require_file(where, path, role)
    files = tuple(f for f in _config_files(options.get("config_file", "[]")) if not _is_user_path(f))
    if not files:
        return
    config = merged_config(files)
    ids = [v for p, v in zip(named, positionals, strict=False) if p.name.endswith("_id")]
    ids += [key for key in options if key not in parameters]
    unknown = [i for i in ids if i not in config and i not in contract_ids()]
    if unknown:
        _refused(where, text, f"{unknown} are ids of neither {list(files)} nor the bundle contract")


def check_robustseg(where: str, text: str, words: Sequence[str], name_only: bool) -> None:
    from robustseg.cli import build_parser, parse_args
    from robustseg.data.cli import build_parser as datalist_parser
    from robustseg.workflows.summary import main as summary_main

    parser = build_parser()
    if name_only or "--help" in words or "-h" in words:
        verbs = [w for w in words[:1] if not w.startswith("-")]
        if verbs and verbs[0] not in _subcommands(parser):
            _refused(where, text, f"robustseg has no verb {verbs[0]!r}")
        return
    with _argparse_errors(where, text):
        args = parse_args(list(words))
        if args.verb == "summary":
            parse_in_main(summary_main, args.rest)
        elif args.verb == "datalist":
            datalist_parser().parse_args(args.rest)
    if args.verb == "audit":
        _require_file(where, args.bundle_dir, "the bundle")
        for overlay in args.config_file:
            _require_file(where, overlay, "the overlay")


def _parse_with(where: str, text: str, namespace: dict[str, Any], words: Sequence[str], what: str) -> None:
    """Parse ``words`` with the ``build_parser()``, else the ``main(argv)``, of a module's or script's namespace."""
    with _argparse_errors(where, text):
        if "build_parser" in namespace:
            namespace["build_parser"]().parse_args(list(words))
        elif "main" in namespace:
            parse_in_main(namespace["main"], words)
        elif words:
            _refused(where, text, f"{what} takes no arguments this test can check (no build_parser or main)")


def check_module(where: str, text: str, module: str, words: Sequence[str], name_only: bool) -> None:
    if module == "monai.bundle":
        check_monai(where, text, words, name_only)
    elif module == "robustseg.cli":
        check_robustseg(where, text, words, name_only)
    elif importlib.util.find_spec(module) is None:
        _refused(where, text, f"there is no module {module}")
    elif not name_only and "--help" not in words:
        _parse_with(where, text, vars(importlib.import_module(module)), words, module)


def _sourced(script: Path) -> str:
    """The script's text and that of the scripts beside it that it sources (demo.sh sources setup_env.sh)."""
    text = script.read_text()
    for name in re.findall(r"^\s*(?:source|\.)\s+\S*?([\w-]+\.sh)\b", text, re.MULTILINE):
        if (script.parent / name).is_file():
            text += (script.parent / name).read_text()
    return text


def check_script(
    where: str, text: str, path: str, words: Sequence[str], env: dict[str, str], name_only: bool, direct: bool = False
) -> None:
    """A script of the repository; ``direct`` when the shell runs it itself (not ``python path``)."""
    script = REPO / path
    if not script.is_file():
        _refused(where, text, f"there is no {path}")
    if script.suffix == ".sh":
        if not os.access(script, os.X_OK):
            _refused(where, text, f"{path} is not executable")
        unread = [name for name in env if not re.search(rf"\b{name}\b", _sourced(script))]
        if unread:
            _refused(where, text, f"{path} does not read {unread}")
    elif not name_only and "--help" not in words:
        if direct and not os.access(script, os.X_OK):
            _refused(where, text, f"{path} is not executable: show it as python {path}")
        _parse_with(where, text, runpy.run_path(str(script)), words, path)


def check_torchrun(where: str, text: str, words: Sequence[str], name_only: bool) -> None:
    from torch.distributed.run import get_args_parser

    if name_only:
        return
    with _argparse_errors(where, text):
        args = get_args_parser().parse_args(list(words))
    if args.module:
        check_module(where, text, args.training_script, args.training_script_args, name_only)
    else:
        check_script(where, text, args.training_script, args.training_script_args, {}, name_only)


def check_mlflow(where: str, text: str, words: Sequence[str], name_only: bool) -> None:
    import click
    from mlflow.cli import cli

    command = cli.get_command(click.Context(cli), words[0]) if words else None
    if command is None:
        _refused(where, text, f"mlflow has no command {words[0] if words else '(none)'!r}")
    if not name_only:
        try:
            command.make_context(words[0], list(words[1:]))
        except click.ClickException as error:
            _refused(where, text, error.format_message())


def check(command: Command) -> None:
    """Check every simple command of a doc's command line (see the module docstring for what is checked)."""
    where, text = command.where, command.text
    try:
        simple_commands = split_command(text)
    except ValueError as error:  # unbalanced quotes
        _refused(where, text, f"the shell cannot split it ({error})")
    for env, words in simple_commands:
        if not words:
            continue
        # '...' (or 'scripts/...') stands for arguments left out: only what comes before it names a command
        left_out = next((i for i, w in enumerate(words) if w == "..." or w.endswith("/...")), None)
        program, rest = words[0], words[1:left_out]
        # so does an inline span without options (`robustseg audit`)
        name_only = left_out is not None or (command.inline and not any(w.startswith("-") for w in rest))
        if program in ("python", ".venv/bin/python"):
            if rest[:1] == ["-m"] and len(rest) > 1:
                check_module(where, text, rest[1], rest[2:], name_only)
            elif rest and rest[0].endswith(".py"):
                check_script(where, text, rest[0], rest[1:], env, name_only)
            elif rest or not name_only:
                _refused(where, text, "a python command this test does not know how to check")
        elif program == "robustseg":
            check_robustseg(where, text, rest, name_only)
        elif program == "torchrun":
            check_torchrun(where, text, rest, name_only)
        elif program in ("mlflow", ".venv/bin/mlflow"):
            check_mlflow(where, text, rest, name_only)
        elif program == "source":
            _require_file(where, rest[0], "the sourced script")
        elif program.startswith("scripts/"):
            check_script(where, text, program, rest, env, name_only, direct=True)
        elif program not in BUILTINS:
            _refused(where, text, f"no check for {program!r}: teach tests/test_docs.py how to check it")


COMMANDS = all_commands()


def test_the_docs_show_commands() -> None:
    """The extraction itself works: the docs' fenced blocks hold dozens of commands (a broken parser finds none)."""
    fenced = [c for c in COMMANDS if not c.inline]
    assert len(fenced) >= 20
    assert {c.doc for c in fenced} >= {"README.md", "bundles/brats_unet3d/docs/README.md"}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.where)
def test_documented_command_parses(command: Command) -> None:
    check(command)


@cache
def _parser_options() -> frozenset[str]:
    """Every option of robustseg audit, the scripts' parsers and MONAI's bundle commands."""
    from monai.bundle import scripts as monai_scripts

    from robustseg.cli import build_parser
    from robustseg.data.cli import build_parser as datalist_parser

    options = _options(_subcommands(build_parser())["audit"]) | _options(datalist_parser())
    for script in sorted((REPO / "scripts").glob("*.py")):
        namespace = runpy.run_path(str(script))
        if "build_parser" in namespace:
            options |= _options(namespace["build_parser"]())
    for function in ("run", "verify_metadata", "verify_net_in_out", "ckpt_export"):
        options |= {f"--{p}" for p in inspect.signature(getattr(monai_scripts, function)).parameters}
    return frozenset(options)


def _config_sets() -> list[tuple[str, ...]]:
    """Every config as a bundle run reads it: the bundle's ``train.json``, the overlays it needs, then itself."""
    from robustseg.contract import OVERLAY_REQUIRES

    def needs(overlay: str) -> list[str]:
        return [f for need in OVERLAY_REQUIRES.get(overlay, ()) for f in (*needs(need), f"configs/{need}")]

    out = []
    for train in sorted((REPO / "bundles").glob("*/configs/train.json")):
        base = str(train.relative_to(REPO))
        out += [(base, str(p.relative_to(REPO))) for p in sorted(train.parent.glob("*.json")) if p != train]
        out += [(base, *needs(p.name), f"configs/{p.name}") for p in sorted((REPO / "configs").glob("*.json"))]
    return out


def is_known_option(option: str) -> bool:
    """An option of a parser (:func:`_parser_options`), or a bundle override: an id of some config or the contract."""
    from robustseg.contract import contract_ids

    key = option.removeprefix("--")
    return option in _parser_options() or key in contract_ids() or any(key in merged_config(c) for c in _config_sets())


def _inline_options() -> list[tuple[str, str]]:
    """``(doc:line, --option)`` for every option in an inline code span that is not itself a command."""
    out = []
    for doc in DOCS:
        for line, span in _inline_spans(doc):
            if not _starts_like_a_command(span):
                out += [(f"{doc}:{line}", o) for o in re.findall(r"(?<![\w-])--[a-z][\w-]*", span)]
    return out


@pytest.mark.parametrize(("where", "option"), _inline_options(), ids=[f"{w}:{o}" for w, o in _inline_options()])
def test_quoted_option_exists(where: str, option: str) -> None:
    assert is_known_option(option), f"{where}: {option} is no option of robustseg, the scripts, MONAI or a config"


def test_demo_settings_in_the_docs_are_read_by_the_demo() -> None:
    """``DEMO_CERTIFY=plain`` and the other demo settings the docs name exist in scripts/demo.sh."""
    demo = (REPO / "scripts/demo.sh").read_text()
    named = {name for doc in DOCS for name in re.findall(r"\b(DEMO_[A-Z]+|NUM_CASES)\b", (REPO / doc).read_text())}
    assert named, "the docs name no demo setting: is the pattern still right?"
    assert sorted(n for n in named if not re.search(rf"\b{n}\b", demo)) == []


def test_a_broken_command_fails() -> None:
    """The checks can fail: a renamed option, a missing overlay and an unknown override are each refused."""
    broken = [
        "robustseg audit bundles/brats_unet3d --data_dir data/phantoms",
        "robustseg audit bundles/brats_unet3d --config_file configs/no_such_profile.json",
        "python -m monai.bundle run --config_file bundles/brats_unet3d/configs/train.json --no_such_id 1",
        "DEMO_NO_SUCH_SETTING=1 scripts/demo.sh",
        "robustseg summary bundles/brats_unet3d/eval --no-such-option",
        "robustseg datalist stray-word --root /data/BraTS",
        "torchrun --nproc_per_node 2 -m robustseg.cli audit",
        "mlflow ui --no-such-option",
        "scripts/make_phantoms.py --output data/phantoms --num-cases 60",  # not executable: python scripts/...
    ]
    for text in broken:
        with pytest.raises(pytest.fail.Exception):
            check(Command("synthetic.md", 1, text))


def test_remainder_verbs_are_parsed_by_their_own_parsers() -> None:
    """``robustseg summary`` hands its arguments on to the summary's parser, which accepts good ones."""
    check(Command("synthetic.md", 1, "robustseg summary bundles/brats_unet3d/eval --metrics-dir eval/metrics"))


def test_robustseg_datalist_takes_its_options() -> None:
    """``robustseg datalist --root DIR``: options right after the verb reach the verb's own parser."""
    check(Command("synthetic.md", 1, "robustseg datalist --root /data/BraTS --skip-invalid --seed 1"))


# scripts/doc_figures.py: the blocks are rewritten from the outputs, and only the blocks


def _doc_figures() -> dict[str, Any]:
    return runpy.run_path(str(REPO / "scripts/doc_figures.py"))


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_doc_figures_rewrites_the_blocks_from_the_outputs(tmp_path: Path) -> None:
    figures = _doc_figures()
    eval_dir = tmp_path / "eval"
    case = "data/ph/BraTS-GLI-X{0}-000/BraTS-GLI-X{0}-000-t1n.nii.gz"
    _write_csv(
        eval_dir / "metrics/val_mean_dice_raw.csv",
        ["filename", "class0", "class1", "class2", "mean"],
        [[case.format(1), 0.8, 0.9, 0.7, 0.8], [case.format(2), 0.6, 0.7, 0.9, 0.733]],
    )
    columns = ["region", "condition", "n", "mean_baseline", "mean_condition", "p_holm", "alternative"]
    _write_csv(
        eval_dir / "attack/report/statistics.csv",
        columns,
        [
            ["ET", "fgsm@0.5", 2, 0.7, 0.5, 0.25, "greater"],
            ["ET", "ifgsm@0.5", 2, 0.7, 0.4, 0.25, "greater"],
            ["ET", "noise@0.5", 2, 0.7, 0.69, 0.5, "greater"],
            ["ET", "worst@0.5", 2, 0.7, 0.35, 0.25, "greater"],
        ],
    )
    found, missing = figures["collect"](eval_dir)
    assert set(missing) == {"demo_runs", "demo_certify", "demo_scenes", "demo_certify_2d"}  # no run file, no 2-D demo
    assert found["demo_audit"]["comparisons"][1]["drop"] == pytest.approx(0.3)
    doc = "\n".join(
        [
            "Intro.",
            "<!-- figures:demo_dice:begin -->",
            "| stale | 0.123 |",
            "<!-- figures:demo_dice:end -->",
            "<!-- figures:demo_headline:begin -->",
            "stale sentence",
            "<!-- figures:demo_headline:end -->",
            "<!-- figures:demo_certify:begin -->",
            "kept 0.995",
            "<!-- figures:demo_certify:end -->",
            "Outro.",
        ]
    )
    new, kept = figures["rewrite"](doc, figures["render"](found))
    assert kept == ["demo_certify"]
    dice_block = new.split("figures:demo_dice:begin -->")[1].split("<!-- figures:demo_dice:end")[0]
    assert "0.123" not in dice_block
    assert "test Dice, 2 held-out cases (mean / median / min)" in dice_block
    assert "ET 0.700 / 0.700 / 0.600, TC 0.800 / 0.800 / 0.700, WT 0.800 / 0.800 / 0.700" in dice_block
    assert "| test mean Dice over ET, TC, WT | 0.767 |" in dice_block
    headline = new.split("figures:demo_headline:begin -->\n")[1].split("\n<!--")[0]
    assert "lowers mean Dice from clean to the worst case over the attacks by 0.350 (ET)" in headline
    assert "Holm p 0.25 each" in headline and "moves it by at most 0.010" in headline
    assert "kept 0.995" in new and new.startswith("Intro.\n") and new.endswith("\nOutro.")
    assert figures["rewrite"](new, figures["render"](found)) == (new, ["demo_certify"])  # rewriting is idempotent
    with pytest.raises(ValueError, match="demo_dice"):
        figures["rewrite"]("<!-- figures:demo_dice:begin -->\nno end\n", {})


def test_doc_figures_fills_the_certification_block_once_there_are_outputs(tmp_path: Path) -> None:
    figures = _doc_figures()
    columns = ["mode", "sigma", "tau", "radius", "cases", "certified_accuracy", "abstain_rate"]
    columns += ["certified_dice_ET", "base_dice_ET", "certified_dice_WT", "base_dice_WT"]
    _write_csv(
        tmp_path / "certify/report/summary.csv",
        columns,
        [["plain", 0.25, 0.75, 0.1686, 3, 0.9871, 0.0042, 0.81, 0.83, 0.91, 0.92]],
    )
    found, missing = figures["collect"](tmp_path)
    assert "demo_certify" not in missing
    new, kept = figures["rewrite"](
        "<!-- figures:demo_certify:begin -->\nold\n<!-- figures:demo_certify:end -->\n", figures["render"](found)
    )
    assert kept == [] and "old" not in new
    assert "| plain | 0.25 | 0.75 | 0.169 | 3 | 0.987 | 0.004 | 0.810 / 0.830 | 0.910 / 0.920 |" in new


def test_doc_figures_fills_the_2d_certification_block_from_its_report_and_runs(tmp_path: Path) -> None:
    """demo_certify_2d: the summary's mIoU and accuracy, the tests on accuracy, the denoiser's and certify's runs."""
    import time

    from mlflow.tracking import MlflowClient

    figures = _doc_figures()
    eval_2d = tmp_path / "cpu_demo"
    summary = ["mode", "sigma", "tau", "radius", "cases", "certified_accuracy", "abstain_rate"]
    summary += ["certified_dice_horse", "base_dice_horse", "certified_iou_horse", "base_iou_horse"]
    summary += ["certified_iou_mIoU", "base_iou_mIoU"]
    _write_csv(
        eval_2d / "certify/report/summary.csv",
        summary,
        [
            ["denoised", 0.25, 0.75, 0.1686, 12, 0.61, 0.35, 0.2, 0.7, 0.1, 0.6, 0.33, 0.71],
            ["plain", 0.25, 0.75, 0.1686, 12, 0.02, 0.97, 0.0, 0.7, 0.0, 0.6, 0.01, 0.71],
        ],
    )
    stats = ["condition", "metric", "region", "n", "median_baseline", "median_condition", "p_holm"]
    _write_csv(
        eval_2d / "certify/report/statistics.csv",
        stats,
        [
            ["denoised vs plain, sigma=0.25 tau=0.75", "certified_iou", "horse", 12, 0.0, 0.1, 0.04],
            ["denoised vs plain, sigma=0.25 tau=0.75", "certified_accuracy", "voxels", 12, 0.01, 0.63, 0.0039],
        ],
    )
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("natural2d_segmentation")
    denoiser = client.create_run(experiment, run_name="denoiser")
    for key, value in {"epochs": 6, "val_sigma": 0.5}.items():
        client.log_param(denoiser.info.run_id, key, value)
    client.log_metric(denoiser.info.run_id, "val_denoise_mse", 0.0123)
    client.log_metric(denoiser.info.run_id, "val_noisy_mse", 0.25)
    client.set_terminated(denoiser.info.run_id)
    time.sleep(0.01)
    certify = client.create_run(experiment, run_name="certify")
    for key, value in {"n": 100, "alpha": 0.001}.items():
        client.log_param(certify.info.run_id, key, value)
    client.set_terminated(certify.info.run_id)
    (eval_2d / "certify/mlflow_run.json").write_text(json.dumps({"run_id": certify.info.run_id, "tracking_uri": uri}))
    found, missing = figures["collect"](tmp_path / "none", eval_dir_2d=eval_2d)
    assert "demo_certify_2d" not in missing, missing
    new, kept = figures["rewrite"](
        "<!-- figures:demo_certify_2d:begin -->\nold\n<!-- figures:demo_certify_2d:end -->\n", figures["render"](found)
    )
    assert kept == [] and "old" not in new
    assert "| denoised | 0.25 | 0.75 | 0.169 | 12 | 0.610 | 0.350 | 0.330 / 0.710 |" in new
    assert "| plain | 0.25 | 0.75 | 0.169 | 12 | 0.020 | 0.970 | 0.010 / 0.710 |" in new
    text = " ".join(new.split())
    assert "validation MSE at sigma 0.5: 0.0123 against 0.2500 noisy" in text and "trained 6 epochs" in text
    assert "sigma=0.25 tau=0.75: median certified pixel accuracy 0.010 plain, 0.630 denoised over 12 scenes" in text
    assert "Holm p 0.0039" in text and "n 100, alpha 0.001 per image" in text
