"""Argument checks of run_server, which run before BentoML starts."""

from __future__ import annotations

import pytest

from serving.server import run_server


def test_hostname_rejected():
    with pytest.raises(ValueError, match="invalid host 'localhost': expected an IP"):
        run_server(host="localhost", port=3000)


@pytest.mark.parametrize("port", [0, 65536])
def test_port_out_of_range(port):
    with pytest.raises(ValueError, match=f"invalid port {port}: expected a TCP port"):
        run_server(host="127.0.0.1", port=port)
