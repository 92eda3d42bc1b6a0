"""The HTTP API as a Ray Serve deployment, so it scales with replicas on a cluster.

``petrel serve --ray-serve --replicas N`` calls :func:`deploy`: each replica
builds its own :class:`~engine.service.core.Service` (its own sessions on the
shared warehouse, the same token store) and serves the same Starlette app
that uvicorn serves on one machine; Ray Serve's proxies spread requests over
the replicas.  Needs the ``ray-serve`` extra (``ray[serve]``).
"""

from __future__ import annotations

from typing import Any

from engine.runtime import ensure_ray
from engine.service.core import Service, ServiceConfig
from engine.service.http import build_app

APP_NAME = "petrel"


def application(config: ServiceConfig, replicas: int = 2, num_cpus: float = 0.5) -> Any:
    """The bound Ray Serve application: ``replicas`` copies of the HTTP API over ``config``."""
    from ray import serve

    @serve.ingress()
    class PetrelHttp:
        """One replica: a service over the warehouse and its ASGI app."""

        def __init__(self, config: ServiceConfig) -> None:
            self.service = Service(config)

        def __serve_build_asgi_app__(self) -> Any:
            return build_app(self.service)

    deployment = serve.deployment(PetrelHttp, name="petrel-http", num_replicas=replicas,
                                  ray_actor_options={"num_cpus": num_cpus})
    return deployment.bind(config)


def deploy(config: ServiceConfig, host: str = "127.0.0.1", port: int = 8000, replicas: int = 2,
           blocking: bool = True) -> None:
    """Deploy the HTTP API on the Ray cluster ``config.ray_address`` names (or a local Ray)."""
    from ray import serve

    ensure_ray(config.ray_address)
    serve.start(http_options={"host": host, "port": port})
    serve.run(application(config, replicas), name=APP_NAME, route_prefix="/", blocking=blocking)
