"""Run the scoring service in the foreground, for the ``ajoissa serve`` command."""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import tempfile

from models.store import home_dir

logger = logging.getLogger(__name__)


def run_server(
    host: str = "127.0.0.1", port: int = 3000, model_name: str | None = None
) -> None:
    """Serve :class:`serving.service.ScoringService` until the process is stopped.

    Blocks until the server exits (Ctrl+C or SIGTERM). BentoML starts the
    service in worker subprocesses, which read their configuration from the
    environment. So this function changes the environment of this process. It
    sets ``AJOISSA_MODEL_NAME`` when ``model_name`` is given. Unless
    ``MLFLOW_TRACKING_URI`` is set, it makes ``AJOISSA_HOME`` absolute, so that
    workers find the same store whatever their working directory.

    Parameters
    ----------
    host
        IP address to bind. The default serves only this machine. Use
        ``0.0.0.0`` to accept connections from other hosts. Host names such as
        ``localhost`` are rejected because BentoML 1.4 binds only IP addresses.
    port
        TCP port to listen on, from 1 to 65535.
    model_name
        Registered model whose ``champion`` version is served. ``None`` keeps
        ``AJOISSA_MODEL_NAME`` or, if that is unset, the default model name.

    Raises
    ------
    ValueError
        If ``host`` is not an IP address or ``port`` is out of range.
    """
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"invalid host {host!r}: expected an IP address such as 127.0.0.1 "
            "(this machine only) or 0.0.0.0 (all interfaces)"
        ) from None
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid port {port}: expected a TCP port from 1 to 65535")

    import bentoml

    from serving.service import MODEL_NAME_ENV, ScoringService

    if model_name is not None:
        os.environ[MODEL_NAME_ENV] = model_name
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["AJOISSA_HOME"] = str(home_dir())
    # BentoML 1.4.40 keeps the workers' Prometheus files in one folder under
    # BENTOML_HOME and empties it whenever a server starts, which would wipe
    # the /metrics of a server already running on the machine. Each server
    # gets its own folder instead.
    # NOTE: BentoMLContainer is BentoML's internal configuration; recheck this
    # after a BentoML upgrade (tests/serving/test_server_e2e.py covers it).
    from bentoml._internal.configuration.containers import BentoMLContainer

    metrics_dir = tempfile.mkdtemp(prefix="ajoissa-metrics-")
    BentoMLContainer.prometheus_multiproc_dir.set(metrics_dir)
    logger.info("starting scoring server on http://%s:%d", host, port)
    try:
        # The host is always passed because BentoML's configured default is 0.0.0.0.
        bentoml.serve(ScoringService, host=host, port=port, blocking=True)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
