"""A NATS server with JetStream on loopback, run as a child process (tests, benchmarks, trying it out).

It listens on a free port of 127.0.0.1 and keeps its JetStream store in its
own folder, so a restart (:meth:`LocalNats.restart`) finds its streams and
consumers again.  The binary is ``nats-server`` (Debian package
``nats-server``) from ``PATH`` or ``/usr/sbin``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time

from storage.errors import PetrelError


def nats_server_binary() -> str:
    """The path of ``nats-server``; PetrelError saying how to install it if there is none."""
    found = shutil.which("nats-server") or next(
        (p for p in ("/usr/sbin/nats-server", "/usr/bin/nats-server") if os.path.exists(p)), None)
    if found is None:
        raise PetrelError("nats-server is not installed; install it with `apt-get install nats-server` "
                          "(or put the binary from nats.io on PATH)")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalNats:
    """A ``nats-server -js`` child process on loopback."""

    def __init__(self, store_dir: str, port: int | None = None) -> None:
        self.store_dir = store_dir
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> LocalNats:
        os.makedirs(self.store_dir, exist_ok=True)
        self.process = subprocess.Popen(
            [nats_server_binary(), "-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", self.store_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PetrelError(f"nats-server exited at start with code {self.process.returncode} "
                                  f"(port {self.port}, store {self.store_dir})")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise PetrelError(f"nats-server did not listen on port {self.port} within {timeout:g} s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """Stop the server and start it again on the same port and store."""
        self.stop()
        self.start()

    def __enter__(self) -> LocalNats:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
