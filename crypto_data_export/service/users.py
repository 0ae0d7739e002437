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


def unreachable(user: str, path: Path) -> str | None:
    """Why ``user`` cannot enter or execute ``path`` (a folder on it or on where its links lead is
    closed to them, by mode bits), or None. A user not created yet gets only the "other" bits."""
    entry = pwd.getpwnam(user) if user_exists(user) else None
    uid = entry.pw_uid if entry else -1
    gids = {entry.pw_gid, *(g.gr_gid for g in grp.getgrall() if user in g.gr_mem)} if entry else set()
    real = Path(os.path.realpath(path))
    for step in [*reversed(path.parents), path, *reversed(real.parents), real]:
        info = os.stat(step)
        if not (info.st_mode >> (6 if info.st_uid == uid else 3 if info.st_gid in gids else 0)) & 1:
            mode = f"{stat.filemode(info.st_mode)}, owner {info.st_uid}"
            return f"{user} cannot reach {path}: {step} ({mode}) is closed to it: the unit cannot start (203/EXEC)"
    return None
