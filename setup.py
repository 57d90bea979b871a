"""Packaging's one dynamic part; everything else is in pyproject.toml.

templates/ sits at the repository's root (the layout in README.md), outside every package, so no
package discovery finds it: the wheel carries it as the package data of `webapp.templates`, mapped
from that folder, which a list in pyproject.toml could only name beside every package written out by
hand. webapp/__init__.py looks for the templates in both places.
"""
from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["webapp*", "jobs*", "channels*"]), "webapp.templates"],
    package_dir={"webapp.templates": "templates"},
)
