"""HTTP as a part: uvicorn in a thread of its own (so signals stay with the daemon), serving
the API on the context the daemon built."""

from __future__ import annotations

import gc
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from edge.analysis.swap import StartupError
from edge.api.app import create_app
from edge.api.auth import Auth, TokenFileError, exposure_warning
from edge.api.context import ApiContext
from edge.api.guard import GuardedProtocol
from edge.config import HttpConfig
from edge.parts import BasePart

log = logging.getLogger("s3e.http")


class HttpServer:
    """uvicorn with deadlines for slow clients and caps on connections, on uvloop (libuv's
    event loop, quicker per request than asyncio's)."""

    def __init__(self, app: Any, cfg: HttpConfig, port_flag: str = "--port") -> None:
        """`port_flag`: the command line's flag for the port, named when it is taken ("" for
        none)."""
        self.port_flag = port_flag
        config = uvicorn.Config(
            app,
            host=cfg.host,
            port=cfg.port,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
            loop="uvloop",
            http=GuardedProtocol.configure(cfg),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> int:
        """Start serving; the bound port (useful with port 0).

        What exists by now lives as long as the daemon (models, indexes, the app): frozen out
        of the garbage collector's view, so a full collection does not walk it in the middle
        of a request (a pause of tens of milliseconds at 100k records)."""
        self._check_port()
        gc.collect()
        gc.freeze()
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("HTTP server did not start (is the port in use?)")
            time.sleep(0.02)
        return int(self.server.servers[0].sockets[0].getsockname()[1])

    def _check_port(self) -> None:
        """A port another program holds is said plainly, naming the setting and the flag
        (uvicorn would only log the bind error and stop its thread)."""
        config = self.server.config
        if not config.port:
            return
        family = socket.AF_INET6 if ":" in config.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((config.host, config.port))
            except OSError as e:
                flag = f" (or {self.port_flag})" if self.port_flag else ""
                raise RuntimeError(
                    f"cannot listen on {config.host}:{config.port} ({e.strerror}): another "
                    f"program holds it; set http.port{flag} to a free one, or 0 for any"
                ) from None

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        if self.thread.ident is not None:
            self.thread.join(timeout)


class HttpPart(BasePart):
    name = "http"

    def __init__(self, cfg: HttpConfig, ctx: ApiContext) -> None:
        """Reads the token (`http.token_file`) now: a file that cannot be read stops the
        start with the key named."""
        self.cfg = cfg
        try:
            self.auth = Auth(cfg)
        except TokenFileError as e:
            raise StartupError(str(e)) from None
        self.server = HttpServer(create_app(ctx, self.auth), cfg)
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Where clients reach the API: the bound port once started, the configured one
        before."""
        return f"http://{self.cfg.host}:{self.port if self.port is not None else self.cfg.port}"

    def start(self) -> None:
        self.port = self.server.start()
        log.info("search on %s/", self.url)
        warning = exposure_warning(self.cfg, self.auth.token_required)
        if warning:
            log.warning("%s", warning)

    def stop(self, deadline: float) -> None:
        self.server.stop(max(1.0, deadline - time.monotonic()))

    @property
    def threads(self) -> list[threading.Thread]:
        return [self.server.thread]

    def health(self) -> dict[str, Any]:
        return {"port": self.port}
