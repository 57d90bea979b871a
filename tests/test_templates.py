"""Templates: every one lives in templates/ (README.md, Layout), every name the code renders or a
template includes is there, and a non-editable install (a wheel) carries them all."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from jinja2 import Environment, FileSystemLoader, meta

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
SOURCES = ("pyproject.toml", "setup.py", "README.md", "wsgi.py", "settings.py", "webapp", "jobs", "channels",
           "templates")


def _template_names() -> set[str]:
    """Every template in templates/, by the name the code renders it by."""
    return {path.relative_to(TEMPLATES).as_posix() for path in TEMPLATES.rglob("*.html")}


def _named_in_code() -> set[str]:
    """Every template name the Python code names (render_template's argument, or a name chosen before)."""
    names = set()
    for path in (ROOT / "webapp").rglob("*.py"):
        names |= set(re.findall(r"""["']([\w/]+\.html)["']""", path.read_text(encoding="utf-8")))
    return names


def _named_in_templates() -> set[str]:
    """Every template name an extends, include, import or from names in a template."""
    env = Environment(loader=FileSystemLoader(TEMPLATES))
    names = set()
    for name in _template_names():
        source = env.loader.get_source(env, name)[0]
        names |= {ref for ref in meta.find_referenced_templates(env.parse(source)) if ref}
    return names


def test_every_template_lives_in_templates():
    """No page or partial is left in a feature's package: one folder, each feature's in its own."""
    stray = [path.relative_to(ROOT).as_posix() for folder in ("webapp", "jobs", "channels")
             for path in (ROOT / folder).rglob("*.html")]
    assert stray == []
    assert {"base.html", "error.html", "auth/login.html", "pool/_table.html", "admin/audit.html"} <= _template_names()


def test_every_template_named_exists_and_every_template_is_named():
    """A renamed or moved template breaks a page only when it is rendered: check every name at once,
    and that no template is left that nothing renders."""
    named = _named_in_code() | _named_in_templates()
    assert named - _template_names() == set()
    assert _template_names() - named == set()


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel of the sources as they are, built in a copy (so no build/ is left in the checkout)."""
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
                   check=True, capture_output=True)
    return next((tmp_path / "dist").glob("*.whl"))


def _install(wheel: Path, tmp_path: Path) -> Path:
    """The wheel alone in a fresh venv, which sees our pinned libraries through a .pth file (pip
    --no-deps: nothing fetched) but not the checkout: its python runs outside the repository."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "project-libraries.pth").write_text(sysconfig.get_path("purelib") + "\n", encoding="utf-8")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True)
    return python


@pytest.mark.slow  # builds a wheel and a venv: about 8 s
def test_an_installed_wheel_carries_every_template_and_renders_the_login_page(tmp_path):
    """A non-editable install finds its templates: the wheel holds each one, and create_app from that
    install (not the checkout) renders the login page."""
    wheel = _build_wheel(tmp_path)
    packed = {name.removeprefix("webapp/templates/") for name in zipfile.ZipFile(wheel).namelist()
              if name.startswith("webapp/templates/")}
    assert packed == _template_names()

    python = _install(wheel, tmp_path)
    code = ("import wsgi; app = wsgi.create_app(); page = app.test_client().get('/login');"
            "print(*app.jinja_loader.searchpath); print(page.status_code); print(page.get_data(as_text=True))")
    env = {**os.environ, "DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"}
    out = subprocess.run([str(python), "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    searched, status, page = out.stdout.split("\n", 2)
    assert searched.startswith(str(tmp_path / "venv")) and searched.endswith("webapp/templates")
    assert status == "200"
    assert "登录" in page and 'name="password"' in page
