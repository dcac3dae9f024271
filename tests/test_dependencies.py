"""The lock and pyproject.toml agree, and what is installed is what the lock says (docs/dependencies.md)."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)==(?P<version>[^\s;]+)(?:\s*;\s*(?P<marker>[^\\]+?))?\s*\\?$")


def locked() -> dict[str, str]:
    """Canonical package name -> locked version, for every pin that applies on this machine."""
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        match = PIN.match(line)
        if not match:
            continue
        marker = match["marker"]
        if marker and not Requirement(f"x; {marker}").marker.evaluate():
            continue
        pins[canonicalize_name(match["name"])] = match["version"]
    return pins


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project.get("optional-dependencies", {})
    return [Requirement(spec) for spec in [*project["dependencies"], *(s for group in extras.values() for s in group)]]


def test_every_declared_dependency_is_locked_within_its_range():
    pins = locked()
    assert pins, "requirements.lock holds no pin"
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is in pyproject.toml but not in requirements.lock: run make lock"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"{requirement.name} is locked at {pins[name]}, outside pyproject.toml's {requirement.specifier}:"
            " run make lock"
        )
        for extra in requirement.extras:  # psycopg[binary] -> psycopg-binary
            assert canonicalize_name(f"{requirement.name}-{extra}") in pins, f"{requirement} extra is not locked"


def test_every_pin_carries_hashes():
    text = (ROOT / "requirements.lock").read_text()
    blocks = re.split(r"\n(?=[A-Za-z0-9])", text)
    pinned = [block for block in blocks if PIN.match(block.splitlines()[0])]
    assert pinned and all("--hash=sha256:" in block for block in pinned)


def test_the_installed_packages_are_the_locked_ones():
    pins = locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in metadata.distributions()}
    wrong = {name: (version, installed.get(name)) for name, version in pins.items() if installed.get(name) != version}
    assert not wrong, f"installed versions differ from requirements.lock (locked, installed): {wrong}; run make install"
