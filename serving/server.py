"""Run the scoring service in the foreground, for the ``ajoissa serve`` command."""

from __future__ import annotations

import logging
import os

from models.store import home_dir

logger = logging.getLogger(__name__)


def run_server(
    host: str = "127.0.0.1", port: int = 3000, model_name: str | None = None
) -> None:
    """Serve :class:`serving.service.ScoringService` until the process is stopped.

    Blocks until the server exits (Ctrl+C or SIGTERM). BentoML starts the
    service in worker subprocesses, so the configuration reaches them through
    the environment of this process, which this function changes:
    ``AJOISSA_MODEL_NAME`` is set when ``model_name`` is given, and
    ``AJOISSA_HOME`` is made absolute so that workers find the same store
    whatever their working directory.

    Parameters
    ----------
    host
        IP address to bind. The default serves only this machine. Use
        ``0.0.0.0`` to accept connections from other hosts.
    port
        TCP port to listen on.
    model_name
        Registered model whose ``champion`` version is served. ``None`` keeps
        ``AJOISSA_MODEL_NAME`` or, if that is unset, the default model name.

    Raises
    ------
    bentoml.exceptions.BentoMLConfigException
        If ``host`` is not an IP address.
    """
    import bentoml

    from serving.service import MODEL_NAME_ENV, ScoringService

    if model_name is not None:
        os.environ[MODEL_NAME_ENV] = model_name
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        os.environ["AJOISSA_HOME"] = str(home_dir())
    logger.info("starting scoring server on http://%s:%d", host, port)
    # bentoml.serve defaults to 0.0.0.0 when host is None, so it is always given.
    bentoml.serve(ScoringService, host=host, port=port, blocking=True)
