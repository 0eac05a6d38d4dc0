"""Links between the project's Markdown documents lead somewhere: the
file exists and, for ``file#anchor`` or ``#anchor``, a heading of that
file has the anchor GitHub gives it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [
    ROOT / "README.md",
    ROOT / "benchmarks" / "README.md",
    *sorted((ROOT / "docs").glob("*.md")),
]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def anchor_of(heading: str) -> str:
    """GitHub's anchor for a heading's text: lower case, punctuation
    dropped (hyphens and underscores kept), spaces as hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (a repeated one gets
    ``-1``, ``-2``, ... as on GitHub); code blocks are skipped."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        heading = re.match(r"^#{1,6} (.+)$", line)
        if fenced or heading is None:
            continue
        anchor = anchor_of(heading.group(1))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The link targets of a Markdown file, outside code blocks."""
    out: list[str] = []
    fenced = False
    for line in path.read_text().splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out += LINK.findall(line)
    return out


def test_anchor_of_follows_github() -> None:
    assert anchor_of("`GET /timers`") == "get-timers"
    assert (
        anchor_of("The API's own work, seen without stopping it")
        == "the-apis-own-work-seen-without-stopping-it"
    )
    assert anchor_of("Runbook") == "runbook"


def test_a_repeated_heading_gets_a_number(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# A\n\n```\n# not a heading\n```\n\n## A\n")
    assert anchors(doc) == {"a", "a-1"}


@pytest.mark.parametrize(
    "document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT))
)
def test_links_lead_somewhere(document: Path) -> None:
    broken = []
    for target in links(document):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto: not followed from a test
        file_part, _, anchor = target.partition("#")
        linked = (
            document
            if not file_part
            else (document.parent / file_part).resolve()
        )
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif (
            anchor and linked.suffix == ".md" and anchor not in anchors(linked)
        ):
            broken.append(f"{target}: no such heading")
    assert not broken, broken
