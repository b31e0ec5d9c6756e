"""README.md and docs/ stay true to the code: every `hashmatch` command they show names a
verb that exists with flags it accepts, every benchmark flag they show is the script's,
every relative link and test name they cite exists, and the README stays short."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from hashmatch.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
REQUIRED_DOCS = (
    "architecture.md",
    "api.md",
    "cli.md",
    "security.md",
    "signals.md",
    "operations.md",
    "performance.md",
)
README_MAX_LINES = 300
API_MD = ROOT / "docs" / "api.md"

FENCE = re.compile(r"^\s*```")
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
TEST_REFERENCE = re.compile(r"(tests/test_\w+\.py)::(\w+)")
# A synopsis line goes on with an indented "[--flag ...]" or "--flag ..." line.
CONTINUATION = re.compile(r"^\s+(\[|--)")
DECORATION = "[](),"


def logical_lines(text: str) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, in a code block) with backslash and synopsis continuations
    joined and shell comments dropped."""
    in_code = False
    pending: tuple[int, str, bool] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        if FENCE.match(raw):
            if pending:
                yield pending
                pending = None
            in_code = not in_code
            continue
        line = re.sub(r"(^|\s)#.*$", "", raw) if in_code else raw
        if pending and in_code and (pending[1].endswith("\\") or CONTINUATION.match(line)):
            pending = (pending[0], pending[1].rstrip("\\") + " " + line.strip(), True)
            continue
        if pending:
            yield pending
        pending = (number, line.rstrip(), in_code)
    if pending:
        yield pending


def segments(line: str) -> list[str]:
    """A command line cut at `&&`, `||`, `;` and pipes, but not at the `|` of a synopsis's
    `[--a | --b]` or `csv|hex`, nor inside quotes."""
    pieces, start, depth, quote = [], 0, 0, ""
    for k, char in enumerate(line):
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "[":
            depth += 1
        elif char == "]":
            depth = max(depth - 1, 0)
        elif depth == 0 and (char == ";" or line.startswith("&&", k) or char == "|"):
            pieces.append(line[start:k])
            start = k + 1
    pieces.append(line[start:])
    return [p.strip("&| ") for p in pieces if p.strip("&| ")]


def is_hashmatch(word: str) -> bool:
    return word == "hashmatch" or word.endswith("/hashmatch")


def split_words(segment: str) -> list[str]:
    try:
        return shlex.split(segment)
    except ValueError:
        return segment.split()


def shown_commands(text: str) -> Iterator[tuple[int, list[str]]]:
    """Every `hashmatch ...` (or `.venv/bin/hashmatch ...`) command in a Markdown text, as
    (line number, the words after `hashmatch`): in code blocks, anywhere in a command line;
    in prose, on lines starting with it and in inline code starting with it."""
    for number, line, in_code in logical_lines(text):
        pieces = [line] if in_code else []
        if not in_code:
            stripped = line.strip()
            if stripped.startswith(("hashmatch ", ".venv/bin/hashmatch ")):
                pieces.append(stripped)
            pieces += [
                code
                for code in INLINE_CODE.findall(line)
                if code.startswith(("hashmatch ", ".venv/bin/hashmatch "))
            ]
        for piece in pieces:
            for segment in segments(piece):
                words = split_words(segment)
                if words and is_hashmatch(words[0]):
                    yield number, words[1:]


def shown_scripts(text: str) -> Iterator[tuple[int, str, list[str]]]:
    """Every benchmark command (`load_tests/X.py ...`, `X.py ...` naming a script there, or
    `experiments/X.py ...`) in code blocks or inline code."""
    for number, line, in_code in logical_lines(text):
        pieces = [line] if in_code else INLINE_CODE.findall(line)
        for piece in pieces:
            for segment in segments(piece):
                words = split_words(segment)
                for k, word in enumerate(words):
                    bench = (ROOT / "load_tests" / word).is_file() and "/" not in word
                    under = word.startswith(("load_tests/", "experiments/"))
                    if word.endswith(".py") and (under or bench):
                        script = word if word.startswith("load_tests/") else f"load_tests/{word}"
                        yield number, script, words[k + 1 :]
                        break


def option_names(command: click.Command) -> set[str]:
    names = {"--help"}
    for param in command.params:
        if isinstance(param, click.Option):
            names.update(param.opts)
            names.update(param.secondary_opts)
    return names


def command_problems(words: list[str]) -> list[str]:
    """What is wrong with `hashmatch WORDS` as a command line: a verb or sub-verb that does
    not exist, or a flag the verb does not take. Values and placeholders are not judged."""
    command: click.Command = main
    ctx = click.Context(main, info_name="hashmatch")
    path = ["hashmatch"]
    problems = []
    for raw in words:
        choices = [
            w.strip(DECORATION).removesuffix("...").strip(DECORATION) for w in raw.split("|")
        ]
        for word in filter(None, choices):
            if word.startswith("-") and word != "-" and not word[1:2].isdigit():
                flag = word.split("=", 1)[0]
                if flag not in option_names(command):
                    problems.append(f"`{' '.join(path)}` has no option {flag}")
            elif isinstance(command, click.Group) and len(choices) == 1:
                sub = command.get_command(ctx, word)
                if sub is None:
                    problems.append(f"`{' '.join(path)}` has no verb {word!r}")
                    return problems
                command = sub
                path.append(word)
    return problems


def script_problems(script: str, words: list[str]) -> list[str]:
    path = ROOT / script
    if not path.is_file():
        return [f"{script} does not exist"]
    source = path.read_text()
    problems = []
    for raw in words:
        word = raw.strip(DECORATION)
        if word.startswith("--"):
            flag = word.split("=", 1)[0]
            if f'"{flag}"' not in source:
                problems.append(f"{script} takes no {flag}")
    return problems


def doc_problems(text: str, where: str) -> list[str]:
    found = []
    for number, words in shown_commands(text):
        found += [f"{where}:{number}: {p}" for p in command_problems(words)]
    for number, script, words in shown_scripts(text):
        found += [f"{where}:{number}: {p}" for p in script_problems(script, words)]
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {
        slug(line.lstrip("#"))
        for _, line, in_code in logical_lines(path.read_text())
        if line.startswith("#") and not in_code
    }


def link_problems(text: str, doc: Path) -> list[str]:
    """Relative links (and their #anchors) that lead nowhere."""
    problems = []
    for number, line, in_code in logical_lines(text):
        if in_code:
            continue
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                continue  # http:, https:, mailto:
            file_part, _, anchor = target.partition("#")
            resolved = (doc.parent / file_part).resolve() if file_part else doc
            if not resolved.exists():
                problems.append(f"{doc.name}:{number}: {target} does not exist")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{doc.name}:{number}: {target}: no heading #{anchor}")
    return problems


def cited_test_problems(text: str, where: str) -> list[str]:
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        for file, name in TEST_REFERENCE.findall(line):
            path = ROOT / file
            if not path.is_file() or not re.search(rf"^def {name}\(", path.read_text(), re.M):
                problems.append(f"{where}:{number}: {file}::{name} does not exist")
    return problems


def test_readme_is_short_and_docs_hold_the_rest() -> None:
    lines = len((ROOT / "README.md").read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move detail to docs/"
    missing = [name for name in REQUIRED_DOCS if not (ROOT / "docs" / name).is_file()]
    assert not missing, missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_command_shown_exists_with_its_flags(doc: Path) -> None:
    problems = doc_problems(doc.read_text(), doc.name)
    assert not problems, "\n".join(problems)


def test_the_docs_show_every_verb_and_sub_verb() -> None:
    """cli.md is the reference: it shows each verb the installed command has."""
    shown = {
        " ".join(words[:2]) for _, words in shown_commands((ROOT / "docs" / "cli.md").read_text())
    }
    ctx = click.Context(main, info_name="hashmatch")
    missing = []
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            missing += [
                f"{name} {sub}"
                for sub in command.list_commands(ctx)
                if not any(s.startswith(f"{name} {sub}") for s in shown)
            ]
        elif not any(s.split(" ")[0] == name for s in shown):
            missing.append(name)
    assert not missing, f"docs/cli.md shows no `hashmatch {missing}`"


def every_command() -> Iterator[tuple[str, click.Command]]:
    """Each verb and sub-verb of the installed command, named as typed after `hashmatch`."""
    ctx = click.Context(main, info_name="hashmatch")
    for name in main.list_commands(ctx):
        command = main.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            for sub_name in command.list_commands(ctx):
                sub = command.get_command(ctx, sub_name)
                assert sub is not None
                yield f"{name} {sub_name}", sub
        else:
            yield name, command


def unshown_flags(text: str) -> list[str]:
    """`verb --flag` for each flag of the installed command that `text` never names."""
    missing = []
    for name, command in every_command():
        for param in command.params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            flags = [*param.opts, *param.secondary_opts]
            if not any(re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text) for f in flags):
                missing.append(f"{name} {flags[0]}")
    return missing


def test_cli_md_names_every_flag_of_every_verb() -> None:
    """cli.md is the reference: a flag the code gained and cli.md never names is one an
    operator does not find."""
    missing = unshown_flags((ROOT / "docs" / "cli.md").read_text())
    assert not missing, f"docs/cli.md never names: {missing}"


def documented_metrics(text: str) -> set[str]:
    """The metric names in the first column of api.md's metrics table."""
    section = text.split("\n## Metrics\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `hashmatch_")]
    return {m for row in rows for m in re.findall(r"`(hashmatch_\w+)", row.split(" | ")[0])}


def exported_metrics() -> set[str]:
    """The names of every hashmatch_ metric the server registers (counters without the
    `_total` Prometheus adds)."""
    from prometheus_client.metrics import MetricWrapperBase

    from service import metrics

    return {
        family.name
        for value in vars(metrics).values()
        if isinstance(value, MetricWrapperBase)
        for family in value.describe()
        if family.name.startswith("hashmatch_")
    }


def test_api_md_lists_every_metric_and_only_those() -> None:
    """A metric renamed or removed in code (an alert on it would never fire) or added
    without a line in api.md fails here."""
    shown = {m.removesuffix("_total") for m in documented_metrics(API_MD.read_text())}
    exported = exported_metrics()
    assert len(exported) >= 20
    assert shown - exported == set(), f"api.md lists metrics not exported: {shown - exported}"
    assert exported - shown == set(), f"api.md does not list: {exported - shown}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(doc: Path) -> None:
    problems = link_problems(doc.read_text(), doc)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_test_cited_exists(doc: Path) -> None:
    problems = cited_test_problems(doc.read_text(), doc.name)
    assert not problems, "\n".join(problems)


# The checks themselves, attacked with doc lines that must fail them.

FAKE_DOC = """\
Run `hashmatch serve --index DIR --no-such-flag` in prose.

```sh
hashmatch frobnicate --store URL
.venv/bin/hashmatch keys create --store URL --tenant T --role check --bogus-rate 5
hashmatch check --server HOST:PORT --store URL IMAGE      # --store is import's, not check's
hashmatch serve --index DIR --listen HOST:PORT
                [--compact-at N] [--compact-every S]
python3 -m venv .venv && .venv/bin/hashmatch demo --fast
hashmatch index rebuild --store URL --out DIR
.venv/bin/python load_tests/grpc_load.py --n 1M --turbo
.venv/bin/python load_tests/no_such_benchmark.py --n 1M
```

Timed with `engine_benchmark.py --crossover --warp 9`.
Then `experiments/gather_limit.py --n 1M --warp 9` and `experiments/nope.py`.

hashmatch audit --store URL --since 5
"""

FAKE_PROBLEMS = [
    "fake.md:1: `hashmatch serve` has no option --no-such-flag",
    "fake.md:4: `hashmatch` has no verb 'frobnicate'",
    "fake.md:5: `hashmatch keys create` has no option --bogus-rate",
    "fake.md:6: `hashmatch check` has no option --store",
    "fake.md:7: `hashmatch serve` has no option --compact-every",
    "fake.md:9: `hashmatch demo` has no option --fast",
    "fake.md:10: `hashmatch index` has no verb 'rebuild'",
    "fake.md:18: `hashmatch audit` has no option --since",
    "fake.md:11: load_tests/grpc_load.py takes no --turbo",
    "fake.md:12: load_tests/no_such_benchmark.py does not exist",
    "fake.md:15: load_tests/engine_benchmark.py takes no --warp",
    "fake.md:16: load_tests/experiments/gather_limit.py takes no --warp",
    "fake.md:16: load_tests/experiments/nope.py does not exist",
]


def test_a_doc_showing_a_missing_verb_or_flag_fails() -> None:
    assert doc_problems(FAKE_DOC, "fake.md") == FAKE_PROBLEMS


def test_a_doc_showing_real_verbs_and_flags_passes() -> None:
    real = """\
```sh
hashmatch serve --index DIR --listen HOST:PORT [--no-pin-workers]
                [--store URL [--poll-interval S] [--compact-at N] [--no-compact]]
                [--no-auth | --default-key-rate R]
hashmatch keys create --store URL --tenant T --role check|submit ... [--list NAME ...]
hashmatch export --store URL --list NAME [--format csv|hex|threatexchange] [OUT]
hashmatch list upload --server HOST:PORT NAME FILE --no-progress --api-key K
hashmatch check --server HOST:PORT --hash-file -   # '-' for stdin
.venv/bin/python load_tests/grpc_load.py --n 10M --driver h2load --modes batch100
```
"""
    assert doc_problems(real, "real.md") == []


def test_a_broken_link_or_anchor_fails(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## A section, with words\n")
    doc = tmp_path / "doc.md"
    text = (
        "[fine](other.md#a-section-with-words) [fine](https://example.org/x)\n"
        "[gone](missing.md) ![gone](img/none.png)\n"
        "[no anchor](other.md#no-such-section)\n"
        "```\n[in code](not-checked.md)\n```\n"
    )
    assert link_problems(text, doc) == [
        "doc.md:2: missing.md does not exist",
        "doc.md:2: img/none.png does not exist",
        "doc.md:3: other.md#no-such-section: no heading #no-such-section",
    ]


def test_a_cited_test_that_does_not_exist_fails() -> None:
    text = (
        "`tests/test_readme.py::test_ci_runs_the_readme_test_command` exists;\n"
        "`tests/test_security.py::test_that_was_never_written` does not.\n"
    )
    assert cited_test_problems(text, "fake.md") == [
        "fake.md:2: tests/test_security.py::test_that_was_never_written does not exist"
    ]


def test_a_flag_cli_md_never_names_fails() -> None:
    missing = unshown_flags("hashmatch serve --reflections --insecure-plaintext-ish --match-only")
    assert {"serve --reflection", "serve --insecure-plaintext", "keys create --match-only"} & set(
        missing
    ) == {"serve --reflection", "serve --insecure-plaintext"}


def test_a_metrics_table_naming_a_removed_metric_fails() -> None:
    text = (
        "# API\n\n## Metrics\n\n| metric | what |\n|---|---|\n"
        "| `hashmatch_rpcs_total{method,code}`, `hashmatch_audit_dropped_total` | RPCs |\n"
        "\n## Next\n| `hashmatch_not_in_the_table` | |\n"
    )
    assert documented_metrics(text) == {"hashmatch_rpcs_total", "hashmatch_audit_dropped_total"}
    assert "hashmatch_audit_dropped" not in exported_metrics()
