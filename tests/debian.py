"""Debian tools the operations tests run (promtool, prometheus, docker-compose), installed with
apt-get when missing, so a clean CI machine gets them the same way as a developer's."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def debian_file(path: str, package: str) -> str:
    """``path`` (a font, say), installing ``package`` with apt-get first when it is missing."""
    if not os.path.exists(path):
        _install(path, package)
    assert os.path.exists(path), f"{package} installed but {path} is missing"
    return path


def debian_tool(command: str, package: str) -> str:
    """The path of ``command``; install ``package`` with apt-get first when it is missing."""
    found = shutil.which(command)
    if found:
        return found
    _install(command, package)
    found = shutil.which(command)
    assert found, f"{package} installed but {command} not on PATH"
    return found


def _install(what: str, package: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"{what} is missing: install the Debian package {package!r}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    subprocess.run(["apt-get", *lock, "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", package],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
