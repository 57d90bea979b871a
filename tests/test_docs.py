"""What a reader needs is inside the repository (README, Layout: docs/): nothing tracked leans on documents kept
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



# Spelt so that this file does not match itself: "issue" and a number, and the manual named as a
# document (the product's own 手动 trigger, "a manual run", is a word, not a citation).
HISTORY = re.compile("iss" + r"ue #?\d", re.IGNORECASE)
MANUAL = re.compile(r"\bthe manual\b|\bmanual:|\bmanual's\b|\(manual\)", re.IGNORECASE)
CODE_SUFFIXES = (".py", ".html", ".js", ".css")


def test_code_and_tests_cite_the_repository_not_its_history():
    """A comment says where the rule lives (docs/<name>.md, section; README, section), never which issue
    brought it or a manual the repository does not hold: a reader taking the code over has only the
    repository."""
    offenders = []
    for path in repository_files():
        relative = path.relative_to(ROOT)
        if relative.parts[0] not in ("webapp", "jobs", "channels", "tests") and relative.name not in (
                "wsgi.py", "settings.py", "gunicorn.conf.py"):
            continue
        if path.suffix not in CODE_SUFFIXES or path.resolve() == Path(__file__).resolve():
            continue
        for number, line in enumerate(text_of(path).splitlines(), 1):
            if HISTORY.search(line) or MANUAL.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == [], "cite docs/ or the README instead:\n" + "\n".join(offenders)
