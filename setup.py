"""The build step that makes a wheel carry the web app (pyproject.toml holds everything else).

A wheel without `llmvis/static/` would install a server with no UI, so building one is refused
unless the app is there: built by `make web` / `make dist` in a checkout, or already inside the
sdist (which `make dist` builds after the app). From a checkout without the build, it is built
here when Node.js is available; otherwise the build stops with a message saying what to run.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
STATIC = ROOT / "src" / "llmvis" / "static"
WEB = ROOT / "web"
NEEDED = ("index.html", "report.html")


def _app_built() -> bool:
    return all((STATIC / name).is_file() for name in NEEDED) and any((STATIC / "assets").glob("*.js"))


def _build_app() -> None:
    """npm ci + the API types + vite, as `make web` does (the OpenAPI file must be there)."""
    npm = shutil.which("npm")
    schema = WEB / "openapi.json"
    if npm is None or not (WEB / "package.json").is_file() or not schema.is_file():
        raise SystemExit(
            "llmvis: the web app is not built, so this wheel would have no UI. "
            "Build it first with `make dist` (or `make web`) in a checkout; that needs Node.js and npm."
        )
    for args in (["ci", "--no-audit", "--no-fund", "--loglevel=error"], ["run", "gen-api"], ["run", "build"]):
        subprocess.run([npm, *args], cwd=WEB, check=True)


class BuildWithApp(build_py):
    def run(self) -> None:
        if getattr(self, "editable_mode", False):  # `pip install -e .`: `make web` builds the app
            super().run()
            return
        if not _app_built():
            _build_app()
        if not _app_built():
            raise SystemExit("llmvis: the web app build did not produce static/index.html and report.html")
        super().run()


setup(cmdclass={"build_py": BuildWithApp})
