"""Which unprivileged user the systemd unit runs the exporter as."""

from __future__ import annotations

import getpass
import grp
import os
import pwd
import re
import stat
from collections.abc import Mapping
from pathlib import Path

DEFAULT_SERVICE_USER = "crypto-export"
USER_NAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}\$?", re.IGNORECASE)


def default_service_user(environ: Mapping[str, str], euid: int, current_user: str) -> str:
    """The sudo caller, else the current user, never root."""
    sudo_user = environ.get("SUDO_USER", "")
    if sudo_user and sudo_user != "root":
        return sudo_user
    return current_user if euid != 0 else DEFAULT_SERVICE_USER


def check_service_user(user: str) -> str | None:
    """Why ``user`` cannot run the service, or None."""
    if not USER_NAME.fullmatch(user):
        return f"--user {user!r} is not a valid user name"
    if user == "root" or (user_exists(user) and pwd.getpwnam(user).pw_uid == 0):
        return f"--user {user}: refusing to run the exporter as root; give an unprivileged user"
    return None


def user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def current_user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return getpass.getuser()


def _identity(user: str) -> tuple[int, set[int]]:
    """(uid, gids) of ``user``; one not created yet is nobody's: only "other" bits apply."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return -1, set()
    return entry.pw_uid, {entry.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}


def first_denied(user: str, path: Path, bit: int) -> str | None:
    """The first folder on ``path`` (and on the path its links lead to) that ``user`` cannot
    enter, or ``path`` itself if it lacks ``bit`` (4 read, 1 execute) for them: None if all is
    open. Mode bits only (an ACL may open more)."""
    uid, gids = _identity(user)
    for route in dict.fromkeys((path, Path(os.path.realpath(path)))):
        for step, need in [*((p, 1) for p in reversed(route.parents)), (route, bit)]:
            try:
                info = os.stat(step)
            except OSError as exc:
                return f"{step} ({exc.strerror})"
            shift = 6 if info.st_uid == uid else (3 if info.st_gid in gids else 0)
            if not (info.st_mode >> shift) & need:
                return f"{step} (mode {stat.filemode(info.st_mode)}, owner {info.st_uid})"
    return None
