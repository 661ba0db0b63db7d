"""Start the web app: pick a free port, print the URL with its token (like Jupyter), run uvicorn.

Binds 127.0.0.1 unless told otherwise; any other host gets a warning, since everyone who can
reach that address and learns the token can see the run's images. Opens a browser only when
asked (``open_browser=True``).

Example:
    >>> serve("runs/fashion", port=8765)      # blocks; Ctrl-C stops it       # doctest: +SKIP
    mikata serve: http://127.0.0.1:8765/?token=3f9c...
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
import threading

from mikata.errors import MikataError

log = logging.getLogger(__name__)
LOCAL = ("127.0.0.1", "localhost", "::1")


class PortError(MikataError):
    """No free port to listen on."""


def bind_socket(host: str, port: int, tries: int = 20) -> socket.socket:
    """A listening socket on ``port`` or, if it is taken, on the next free one (up to ``tries`` ports)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    last: OSError | None = None
    for p in range(port, port + tries):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # inherited by accepted connections: a response written in pieces (headers, then body) must not
        # wait for the browser's delayed ACK (Nagle's algorithm adds ~40 ms per keep-alive request)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            sock.bind((host, p))
        except OSError as e:
            sock.close()
            last = e
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            raise PortError(f"cannot listen on {host}:{p}: {e}; pass another --host or --port") from e
        sock.listen(128)
        sock.set_inheritable(True)
        return sock
    raise PortError(f"ports {port}..{port + tries - 1} on {host} are all in use ({last}); pass another --port")


def exposure_warning(host: str) -> str | None:
    """The warning printed when the server listens on more than this machine, else None."""
    if host in LOCAL:
        return None
    return (f"warning: serving on {host}, not on 127.0.0.1: anyone who can reach this address and has the token "
            "can see the run's images and maps; use this only on a network you trust")


def _load_model(state) -> None:
    """Load the run's model in the background; if it cannot be loaded, say so now, not on the first map."""
    try:
        state.maps.handle_for()
    except MikataError as e:
        log.warning("warning: attribution maps will not work: %s; restart with `mikata serve %s --model PATH`",
                    e, state.run_dir)


def url_for(host: str, port: int, token: str) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else (f"[{host}]" if ":" in host else host)
    return f"http://{shown}:{port}/?token={token}"


def serve(run_dir: str | os.PathLike, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False,
          model: str | None = None, token: str | None = None, device: str | None = "cpu",
          positive: str | None = None, split: str | None = None, compare: str | os.PathLike | None = None,
          compare_model: str | None = None) -> None:
    """Serve one run until interrupted; prints the URL to open. Maps are computed on ``device``;
    ``split``: only that split's rows; ``compare``: a run B to compare with (``compare_model``: its model
    when the one recorded beside it is not found)."""
    from mikata.models.source import ModelSource

    import uvicorn

    from mikata.server.app import create_app
    from mikata.server.security import new_token

    warning = exposure_warning(host)
    if warning:
        log.warning(warning)
    sock = bind_socket(host, port)
    port = sock.getsockname()[1]
    token = token or new_token()
    app = create_app(run_dir, token=token, host=host, port=port, model=model, device=device, positive=positive,
                     split=split, compare=compare,
                     compare_source=None if compare is None else ModelSource(spec=compare_model, device=device))
    app.run.overview()  # fail now, with the error, not on the first page load
    if app.run.compare is not None:
        app.run.compare.comparison()  # no shared images, other classes: one line now
    threading.Thread(target=_load_model, args=(app.run,), daemon=True).start()  # the first map comes sooner
    url = url_for(host, port, token)
    print(f"mikata serve: {app.run.run_dir}\n    {url}\n(Ctrl-C stops the server)", file=sys.stderr, flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        app.run.close()
