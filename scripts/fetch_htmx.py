"""Fetch the pinned htmx into webapp/static/vendor/, checked against pinned checksums.

Why: an on-premises page loads nothing from the internet, so we serve htmx ourselves; but we do
not keep a vendored binary blob in git. This script fetches the npm tarball of one pinned 2.0.x
release with `npm pack` (npm's `latest` is a 4.x rewrite; npm's own registry settings apply),
verifies its sha256, and extracts dist/htmx.min.js.
It does nothing when the file is already there with the expected checksum.

Usage: python scripts/fetch_htmx.py
To move to another release, change VERSION and both checksums (and say so in the commit).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VERSION = "2.0.11"
PACKAGE = f"htmx.org@{VERSION}"
TARBALL_SHA256 = "165a2655073e9e6e55e307a7c74e8ebcdb76afb7701f9c16cfd106a13add408e"
MIN_JS_SHA256 = "d6fdc75f204e6bdefa99b69bf1e6d4ac69b8a364f77929f45c13476b4000f717"
MEMBER = "package/dist/htmx.min.js"
TARGET = Path(__file__).resolve().parents[1] / "webapp" / "static" / "vendor" / "htmx.min.js"


def sha256(data: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def fail(message: str) -> None:
    """Stop with a message that says what went wrong and what to do."""
    sys.exit(f"fetch_htmx: {message}")


def download() -> bytes:
    """The release tarball, fetched by npm from whatever registry npm is configured to use."""
    npm = shutil.which("npm")
    if npm is None:
        fail("npm is needed to fetch htmx (install Node.js and npm, e.g. apt-get install npm)")
    print(f"fetching {PACKAGE} with npm pack")
    with tempfile.TemporaryDirectory() as folder:
        result = subprocess.run([npm, "pack", PACKAGE, "--pack-destination", folder, "--silent"],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            fail(f"npm pack {PACKAGE} failed: {result.stderr.strip()}")
        tarballs = list(Path(folder).glob("*.tgz"))
        if len(tarballs) != 1:
            fail(f"npm pack {PACKAGE} produced no tarball")
        return tarballs[0].read_bytes()


def main() -> None:
    """Make TARGET hold the pinned htmx.min.js, downloading only when it is missing or wrong."""
    if TARGET.exists() and sha256(TARGET.read_bytes()) == MIN_JS_SHA256:
        print(f"htmx {VERSION} already present: {TARGET}")
        return

    tarball = download()

    if sha256(tarball) != TARBALL_SHA256:
        fail(
            f"CHECKSUM MISMATCH for {PACKAGE}\n"
            f"  expected sha256 {TARBALL_SHA256}\n"
            f"  got      sha256 {sha256(tarball)}\n"
            "The download is not the release we pinned; refusing to use it."
        )

    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
        try:
            member = archive.extractfile(MEMBER)
        except KeyError:
            member = None
        if member is None:
            fail(f"{MEMBER} not found in {PACKAGE}")
        script = member.read()

    if sha256(script) != MIN_JS_SHA256:
        fail(
            f"CHECKSUM MISMATCH for {MEMBER} inside a verified tarball\n"
            f"  expected sha256 {MIN_JS_SHA256}\n"
            f"  got      sha256 {sha256(script)}\n"
            "VERSION and the pinned checksums disagree; fix them together."
        )

    TARGET.parent.mkdir(parents=True, exist_ok=True)
    partial = TARGET.with_suffix(".js.part")
    partial.write_bytes(script)
    partial.replace(TARGET)  # atomic: a reader never sees half a file
    print(f"htmx {VERSION} written to {TARGET}")


if __name__ == "__main__":
    main()
