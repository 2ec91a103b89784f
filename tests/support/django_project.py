"""docs/django.md's example project (examples/django), run for real: copied into a tmp dir,
migrated into its own SQLite file, served by ``manage.py runserver`` on a free loopback
port, stopped by PID.

    project = DjangoProject(tmp_path, STAYWIRE_CHECK_EVERY=0.5)
    project.add_user("ann", "pw")
    project.start()         # project.http: http://127.0.0.1:PORT
    project.stop()

Keyword arguments override settings (in a ``test_settings`` module next to the example's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.servers import TIMEOUT_FACTOR, free_port, wait_http

__all__ = ["EXAMPLE", "DjangoProject"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django"


class DjangoProject:
    def __init__(self, root: Path, port: int | None = None, **settings: Any) -> None:
        self.root = root / "project"
        shutil.copytree(EXAMPLE, self.root, ignore=shutil.ignore_patterns("db.sqlite3",
                                                                         "__pycache__"))
        # A password hash costs ~0.5 s with the default PBKDF2: tests log in often.
        settings.setdefault("PASSWORD_HASHERS", ["django.contrib.auth.hashers.MD5PasswordHasher"])
        self.settings: dict[str, Any] = {}
        self.configure(**settings)
        self.port = port or free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.users: dict[str, str] = {}  # username -> pk
        self._log = self.root / "runserver.log"
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("STAYWIRE_TEST_")}
        self._env.update(DJANGO_SETTINGS_MODULE="mysite.test_settings", PYTHONUNBUFFERED="1")
        self.shell("from django.core.management import call_command\n"
                   "call_command('migrate', verbosity=0)")

    def configure(self, **settings: Any) -> None:
        """Override more settings; a running server sees them after ``restart()``."""
        self.settings.update(settings)
        lines = ["from mysite.settings import *  # noqa: F403"]
        lines += [f"{name} = {value!r}" for name, value in self.settings.items()]
        (self.root / "mysite" / "test_settings.py").write_text("\n".join(lines) + "\n")

    def restart(self) -> DjangoProject:
        self.stop()
        return self.start()

    def shell(self, code: str) -> str:
        """Runs ``code`` in ``manage.py shell`` (the ORM, on this project's database); its
        output."""
        return subprocess.run([sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
                              cwd=self.root, env=self._env, check=True, capture_output=True,
                              timeout=60 * TIMEOUT_FACTOR, text=True).stdout

    def add_user(self, username: str, password: str) -> str:
        """A new user of ``django.contrib.auth``; its primary key, as a string."""
        out = self.shell("from django.contrib.auth import get_user_model\n"
                         f"u = get_user_model().objects.create_user({username!r}, "
                         f"password={password!r})\nprint(u.pk)")
        self.users[username] = out.split()[-1]
        return self.users[username]

    def start(self) -> DjangoProject:
        with open(self._log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "runserver", "--noreload", "--skip-checks",
                 f"127.0.0.1:{self.port}"],
                cwd=self.root, env=self._env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        try:
            wait_http(f"{self.http}/accounts/login/", timeout=15,
                      alive=lambda: self.proc is not None and self.proc.poll() is None)
        except TimeoutError:
            self.stop()
            raise RuntimeError(f"runserver did not start:\n{self.log()}") from None
        return self

    def log(self) -> str:
        return self._log.read_text(errors="replace") if self._log.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10 * TIMEOUT_FACTOR)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
