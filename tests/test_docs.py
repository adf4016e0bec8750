"""The documentation's commands and code, checked against the real CLI and the real registries.

A reader copies a command from README.md, CONTRIBUTING.md or docs/*.md and expects it to run. The
collector below reads every fenced shell block (bash, sh, shell, console), finds each
``unlearnkit ...`` command (also after ``python -m`` or ``torchrun ... -m``), and checks it the
way the CLI would before any compute: the subcommand exists and parses with its flags (click's own
parser, from ``typer.main.get_command``, read at test time, so new commands and flags are covered
as they land), every named recipe file exists, every ``--method``/``--dataset``/``--model``/
``--metric`` value and every ``-o METHOD.KEY`` resolves, and every ``--forget`` scenario parses, a
``class:NAME`` naming a class of the dataset the command uses. Python blocks must compile, and
every ``uk.X`` and ``from unlearnkit... import X`` they use must exist.

Placeholders a reader replaces (``DIR``, ``RECIPE``, ``FILE.toml``, a trailing ``...``) are not
checked; names a document defines itself (the tutorial's ``forget_relabel``) count as registered.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
import shlex
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n(?P<code>.*?)^(?P=indent)(?P=fence)[ \t]*$",
    re.S | re.M,
)
SHELL = {"bash", "sh", "shell", "console", "zsh"}
CONTROL = {"&&", "||", ";", "|", "&"}
PLACEHOLDER = re.compile(r"[A-Z][A-Z0-9_]*(\.[a-z0-9]+)?")  # DIR, RECIPE, FILE.toml
REGISTRY_OF = {"method": "methods", "methods": "methods", "dataset": "datasets", "model": "models", "metric": "metrics"}


# ------------------------------------------------------------------------------- the collector
@dataclass(frozen=True)
class Block:
    """One fenced block of a document: where it starts, its language and its code."""

    doc: str
    line: int
    lang: str
    code: str


@dataclass(frozen=True)
class Command:
    """One ``unlearnkit`` invocation in a shell block: the words after ``unlearnkit``."""

    doc: str
    line: int
    text: str
    argv: tuple[str, ...]

    @property
    def where(self) -> str:
        return f"{self.doc}:{self.line}"


def blocks(text: str, doc: str) -> list[Block]:
    found = []
    for m in FENCE.finditer(text):
        lang = (m["info"].strip().split() or [""])[0].lower()
        found.append(Block(doc, text.count("\n", 0, m.start()) + 2, lang, textwrap.dedent(m["code"])))
    return found


def shell_lines(block: Block) -> Iterator[tuple[int, str]]:
    """(line number, command line) of a shell block: backslash continuations joined; in a console
    block only the lines after a ``$`` prompt (the rest is output)."""
    pending, start = "", 0
    for offset, raw in enumerate(block.code.splitlines()):
        line = raw.rstrip()
        if block.lang == "console" and not pending:
            if not line.lstrip().startswith("$ "):
                continue
            line = line.lstrip()[2:]
        if not pending:
            start = block.line + offset
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


def words(line: str) -> list[str]:
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)


def invocations(line: str) -> list[tuple[str, ...]]:
    """The argv after each ``unlearnkit`` command of a shell line (``a && unlearnkit run ...``,
    ``python -m unlearnkit ...``, ``torchrun ... -m unlearnkit ...``, ``VAR=1 unlearnkit ...``)."""
    found = []
    current: list[str] = []
    for word in [*words(line), ";"]:
        if word not in CONTROL:
            current.append(word)
            continue
        for i, w in enumerate(current):
            first = all(re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", v) for v in current[:i])
            if w == "unlearnkit" and (first or (i and current[i - 1] == "-m")):
                found.append(tuple(a for a in current[i + 1 :] if a != "..."))
                break
        current = []
    return found


def commands(text: str, doc: str) -> list[Command]:
    return [
        Command(doc, line, cmd, argv)
        for block in blocks(text, doc)
        if block.lang in SHELL
        for line, cmd in shell_lines(block)
        for argv in invocations(cmd)
    ]


def documented_names(text: str) -> set[str]:
    """Plugin names the document's own Python blocks define (``name = "forget_relabel"`` in a class)."""
    names = set()
    for block in blocks(text, ""):
        if block.lang != "python":
            continue
        try:
            tree = ast.parse(block.code)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for stmt in node.body:
                    if (
                        isinstance(stmt, ast.Assign)
                        and [getattr(t, "id", None) for t in stmt.targets] == ["name"]
                        and isinstance(stmt.value, ast.Constant)
                        and isinstance(stmt.value.value, str)
                    ):
                        names.add(stmt.value.value)
    return names


def read(doc: Path) -> str:
    return doc.read_text(encoding="utf-8")


def all_commands() -> list[Command]:
    return [c for doc in DOCUMENTS for c in commands(read(doc), str(doc.relative_to(ROOT)))]


def python_blocks() -> list[Block]:
    return [b for doc in DOCUMENTS for b in blocks(read(doc), str(doc.relative_to(ROOT))) if b.lang == "python"]


# ------------------------------------------------------------------------------- the checker
def placeholder(value: object) -> bool:
    return PLACEHOLDER.fullmatch(str(value)) is not None


class Checker:
    """Checks one command's argv against the CLI and the registries; returns the problems found."""

    def __init__(self, registries, cache_dir: Path) -> None:
        import typer

        from unlearnkit.cli import CLICK_ERRORS, app

        self.root = typer.main.get_command(app)
        self.errors = CLICK_ERRORS
        self.registries = registries
        self.cache_dir = cache_dir
        self._classes: dict[str, list[str] | None] = {}

    def problems(self, argv: tuple[str, ...], defined: set[str] = frozenset()) -> list[str]:
        if not argv or argv[0].startswith("-"):
            known = {o for p in self.root.params for o in [*p.opts, *p.secondary_opts]}
            return [f"no such option {a} of unlearnkit" for a in argv if a.startswith("-") and a not in known]
        name, *args = argv
        command = self.root.commands.get(name)
        if command is None:
            return [f"no command '{name}' (commands: {', '.join(sorted(self.root.commands))})"]
        try:
            with command.make_context(f"unlearnkit {name}", list(args)) as ctx:
                params = dict(ctx.params)
        except self.errors as err:
            return [" ".join(err.format_message().split())]
        return list(self.values(name, params, defined))

    def values(self, command: str, params: dict, defined: set[str]) -> Iterator[str]:
        from unlearnkit.discovery.registry import KINDS

        for param, registry in REGISTRY_OF.items():
            for value in self.listed(params.get(param)):
                if not (value == "all" and registry == "methods"):
                    yield from self.resolves(registry, value, defined)
        recipe = params.get("recipe")
        if recipe is not None and not placeholder(recipe) and not (ROOT / recipe).is_file():
            yield f"recipe file {recipe} does not exist"
        yield from self.train_recipe(params.get("train_recipe"))
        yield from self.options(params.get("option") or (), self.listed(params.get("method")), defined)
        if params.get("forget") is not None:
            yield from self.scenario(str(params["forget"]), params.get("dataset"))
        kind = str(params.get("kind", "")).rstrip("s")
        if command == "show" and kind in KINDS:
            yield from self.resolves(f"{kind}s", str(params["name"]), defined)
        if command == "list" and str(params.get("what", "")).rstrip("s") not in (*KINDS, "recipe"):
            yield f"`unlearnkit list` has no kind '{params.get('what')}'"

    @staticmethod
    def listed(value: object) -> list[str]:
        items = value if isinstance(value, list | tuple) else [] if value is None else [value]
        return [v.strip() for item in items for v in str(item).split(",") if v.strip() and not placeholder(v.strip())]

    def resolves(self, registry: str, value: str, defined: set[str]) -> Iterator[str]:
        from unlearnkit.errors import UnlearnkitError

        if value in defined:
            return
        try:
            if registry == "models":
                self.registries.model(value)
            else:
                self.registries.by_kind(registry[:-1]).get(value)
        except UnlearnkitError as err:
            yield str(err)

    def train_recipe(self, value: str | None) -> Iterator[str]:
        from unlearnkit.loops.training import builtin_recipes

        if value is None or placeholder(value) or value in builtin_recipes():
            return
        if not (value.endswith(".toml") and (ROOT / value).is_file()):
            yield f"training recipe '{value}' is neither one of {', '.join(builtin_recipes())} nor a .toml file here"

    def options(self, pairs: object, methods: list[str], defined: set[str]) -> Iterator[str]:
        for pair in self.listed(pairs):
            key = pair.partition("=")[0]
            owner, _, field = key.rpartition(".")
            owners = [owner] if owner else methods
            plugins = [self.plugin(o) for o in owners if o not in defined]
            if owner and owner not in defined and plugins == [None]:
                yield f"-o {pair}: '{owner}' is neither a method nor a metric"
            elif owners and plugins and all(p is not None and field not in p.Options.model_fields for p in plugins):
                yield f"-o {pair}: no option '{field}' on {', '.join(owners)}"

    def plugin(self, name: str):
        for kind in ("methods", "metrics"):
            registry = getattr(self.registries, kind)
            if name in registry:
                return registry.get(name).cls
        return None

    def scenario(self, text: str, dataset: str | None) -> Iterator[str]:
        import numpy as np

        from unlearnkit.api.scenarios import ScenarioData
        from unlearnkit.engine.splits import parse_scenario
        from unlearnkit.errors import UnlearnkitError

        try:
            scenario = parse_scenario(text)
        except UnlearnkitError as err:
            yield str(err)
            return
        if not scenario.forgets_whole_classes or placeholder(scenario.params) or scenario.requests > 1:
            return
        name = dataset or self.registries.datasets.default().name
        classes = self.class_names(name)
        if classes is None:
            yield f"--forget {text}: the classes of '{name}' are known only from its files; use a class id"
            return
        one_each = np.arange(len(classes))  # one image per class: drawing resolves the class named
        try:
            scenario.draw(ScenarioData(one_each, one_each, classes), 0)
        except UnlearnkitError as err:
            yield f"{err} (dataset '{name}'{'' if dataset else ', the default'})"

    def class_names(self, dataset: str) -> list[str] | None:
        """The classes a dataset declares, or (embedded data, no files) the ones it loads."""
        if dataset not in self._classes:
            cls = self.registries.datasets.get(dataset).cls
            declared = list(getattr(cls, "class_names", ()) or ())
            if not declared and cls.embedded:
                declared = list(cls().load(None, self.cache_dir).class_names)
            self._classes[dataset] = declared or None
        return self._classes[dataset]


@pytest.fixture(scope="module")
def checker(tmp_path_factory):
    from unlearnkit.discovery.host import PluginHost

    return Checker(PluginHost().registries, tmp_path_factory.mktemp("dataset-cache"))


# ---------------------------------------------------------------------------- the documents
COMMANDS = all_commands()
DEFINED = {str(doc.relative_to(ROOT)): documented_names(read(doc)) for doc in DOCUMENTS}


def test_the_collector_finds_the_commands_of_every_document():
    where = {c.doc for c in COMMANDS}
    assert {"README.md", "CONTRIBUTING.md"} <= where and any(d.startswith("docs/") for d in where), where
    firsts = {c.argv[0] for c in COMMANDS if c.argv}
    assert {"run", "sweep", "leaderboard", "audit", "tune", "list", "show"} <= firsts, firsts
    # the README's first block: the command after `pip install ... &&`
    assert ("run", "--method", "lotus", "--model", "vit") in {c.argv for c in COMMANDS if c.doc == "README.md"}


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: f"{c.where}:{' '.join(c.argv[:2])}")
def test_documented_command_is_valid(command, checker):
    problems = checker.problems(command.argv, DEFINED[command.doc])
    assert not problems, f"{command.where} `{command.text.strip()}`: " + "; ".join(problems)


PYTHON = python_blocks()


@pytest.mark.parametrize("block", PYTHON, ids=lambda b: f"{b.doc}:{b.line}")
def test_documented_python_compiles_and_uses_only_public_names(block):
    import unlearnkit

    tree = compile(block.code, f"{block.doc}:{block.line}", "exec", ast.PyCF_ONLY_AST)
    public = {*unlearnkit._EXPORTS, "__version__"}
    used = {
        n.attr
        for n in ast.walk(tree)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "uk"
    }
    assert used <= public, f"{block.doc}:{block.line} uses uk.{', uk.'.join(sorted(used - public))}, not in _EXPORTS"
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "unlearnkit":
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                exists = hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}")
                assert exists, f"{block.doc}:{block.line}: `from {node.module} import {alias.name}`: no such name"


# --------------------------------------------------------------------- the collector, pinned
SAMPLE = """\
Text.

```bash
pip install x && unlearnkit run --method lotus --model vit   # a comment
unlearnkit run --method lotus,scrub \\
  --forget class:cat -o lotus.alpha=32
UNLEARNKIT_TRACE_HOOKS=1 unlearnkit list methods
torchrun --nproc-per-node 2 -m unlearnkit run -m lotus --dataset cifar10 ...
echo unlearnkit
```

```console
$ unlearnkit leaderboard --format json
unlearnkit leaderboard is not a command here: it is output
```

```text
unlearnkit run --not-checked
```
"""


def test_the_collector_reads_continuations_prompts_and_prefixes():
    found = [(c.line, c.argv) for c in commands(SAMPLE, "sample.md")]
    assert found == [
        (4, ("run", "--method", "lotus", "--model", "vit")),
        (5, ("run", "--method", "lotus,scrub", "--forget", "class:cat", "-o", "lotus.alpha=32")),
        (7, ("list", "methods")),
        (8, ("run", "-m", "lotus", "--dataset", "cifar10")),
        (13, ("leaderboard", "--format", "json")),
    ]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (("run", "--methd", "lotus"), "No such option: --methd"),
        (("runn",), "no command 'runn'"),
        (("run", "--method", "lotsu"), "Unknown method 'lotsu'"),
        (("run", "--model", "resnet99"), "Unknown model 'resnet99'"),
        (("run", "--metric", "acc"), "Unknown metric 'acc'"),
        (("run", "--forget", "class:cat"), "Unknown class 'cat'"),  # the default dataset is digits
        (("run", "--forget", "shard:0.1"), "Bad forget scenario 'shard:0.1'"),
        (("run", "--train-recipe", "slow"), "training recipe 'slow'"),
        (("run", "--method", "scrub", "-o", "scrub.mstep=2"), "no option 'mstep' on scrub"),
        (("run", "--method", "lotus", "-o", "lotsu.alpha=2"), "'lotsu' is neither a method nor a metric"),
        (("sweep", "recipes/cpu-mnst.toml"), "recipe file recipes/cpu-mnst.toml does not exist"),
        (("show", "method", "forget_relabell"), "Unknown method 'forget_relabell'"),
        (("list", "mehtods"), "no kind 'mehtods'"),
        (("leaderboard", "--format"), "requires an argument"),
    ],
)
def test_the_checker_catches_what_a_reader_would_hit(argv, expected, checker):
    problems = checker.problems(argv, {"forget_relabel"})
    assert any(expected in p for p in problems), problems


def test_the_checker_accepts_what_the_cli_accepts(checker):
    for argv in [
        ("run", "--method", "lotus,scrub", "--dataset", "cifar10", "--forget", "class:cat", "-o", "scrub.msteps=2"),
        ("run", "--method", "all", "--model", "timm/convnext_tiny", "--data-dir", "DIR", "--train-recipe", "fast"),
        ("run", "--forget", "class:3", "-o", "alpha=8", "--method", "lotus"),
        ("show", "method", "forget_relabel"),
        ("sweep", "recipes/cpu-mnist.toml", "--data-dir", "DIR"),
        ("audit", "RECIPE", "--estimate"),
    ]:
        assert checker.problems(argv, {"forget_relabel"}) == [], argv
