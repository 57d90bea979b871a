"""What a reader needs is inside the repository (issue 10): nothing tracked leans on documents kept
elsewhere (the specification folder beside the checkout, the product manual's file), and every
docs/<name>.md the code cites exists, with the section it names."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Spelt in pieces so that this file does not name them itself.
OUTSIDE = ("domain" + ".md", "design" + ".md", "manual" + "-zh", "../" + "shared", "/work/" + "shared")
CITATION = re.compile(r"docs/([A-Za-z0-9_-]+\.md)(?:, ([^,.;)\]\n'\"`]+))?")


def repository_files() -> list[Path]:
    """Every file git tracks, and new ones not ignored (so the check bites before the commit)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode()
    return [ROOT / name for name in out.split("\0") if name and (ROOT / name).is_file()]


def text_of(path: Path) -> str:
    return path.read_bytes().decode("utf-8", errors="ignore")


def citations() -> list[tuple[str, str, str | None]]:
    """(file, cited doc, cited section or None) for every docs/<name>.md named in the repository."""
    found = []
    for path in repository_files():
        for match in CITATION.finditer(text_of(path)):
            section = match.group(2).strip() if match.group(2) else None
            found.append((str(path.relative_to(ROOT)), match.group(1), section))
    return found


def headings(doc: Path) -> list[str]:
    return [line.lstrip("#").strip().lower() for line in doc.read_text().splitlines() if line.startswith("#")]


def test_nothing_in_the_repository_points_outside_it():
    me = Path(__file__).resolve()
    offenders = [f"{path.relative_to(ROOT)}: {name}" for path in repository_files() if path.resolve() != me
                 for name in OUTSIDE if name in text_of(path)]
    assert offenders == [], "cite docs/ instead: " + "; ".join(offenders)


def test_every_cited_doc_exists():
    missing = sorted({f"{where}: docs/{doc}" for where, doc, _ in citations() if not (ROOT / "docs" / doc).is_file()})
    assert missing == []


def test_every_cited_section_is_a_heading_of_its_doc():
    """'docs/codes.md, 入账状态' names a heading of docs/codes.md (a line break may cut the name short)."""
    wrong = []
    for where, doc, section in citations():
        path = ROOT / "docs" / doc
        if section and path.is_file() and not any(section.lower() in h for h in headings(path)):
            wrong.append(f"{where}: docs/{doc}, {section}")
    assert wrong == []

