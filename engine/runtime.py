"""Attaching to Ray: a running cluster when one is named, else a local one."""

from __future__ import annotations

import logging
import os
import threading

import ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> bool:
    """Make sure this process is connected to Ray; return True if this call started it.

    ``address`` (or ``RAY_ADDRESS``) attaches to a running cluster; without
    either, a local Ray is started in this process.  An existing connection is
    reused as it is.

    A local Ray's processes stop when the thread that started them ends
    (their parent-death signal is per thread): start it from a thread that
    lives as long as the process, as the service does from its main thread.
    """
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS")
    kwargs = dict(
        ignore_reinit_error=True,
        logging_level=logging.WARNING,
        log_to_driver=True,
        configure_logging=True,
    )
    if address:
        ray.init(address=address, **kwargs)
        return False
    if threading.current_thread() is not threading.main_thread():
        logging.getLogger(__name__).warning(
            "starting a local Ray from thread %r: its processes stop when this thread ends; call "
            "engine.connect() once from the main thread first", threading.current_thread().name)
    ray.init(
        address="local",  # never attach to a cluster some other process left running
        num_cpus=num_cpus,
        include_dashboard=False,
        **kwargs,
    )
    return True
