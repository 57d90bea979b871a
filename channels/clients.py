"""Build the two channel clients from the application's configuration.

Configuration keys (a plain dict, e.g. Flask's app.config; channels/ never imports Flask):

- ``LEQI_BASE_URL``: the 乐企 service root, e.g. ``https://lqpt.example.gov.cn``. The word
  ``sandbox`` (the default) means the in-process sandbox tax bureau.
- ``LEQI_APP_ID`` / ``LEQI_APP_SECRET``: the 乐企 app credentials, sent as X-App-Id / X-App-Secret.
- ``RPA_BASE_URL``: the RPA robot service root; ``sandbox`` (the default) as above.
- ``RPA_API_KEY``: the RPA service key, sent as X-Api-Key.
- ``CHANNEL_TIMEOUT``: seconds per HTTP request (default 30). Not applied in-process.
- ``CHANNEL_ATTEMPTS`` / ``CHANNEL_BACKOFF`` (optional): attempts per retried call (default 6)
  and the first wait in seconds (default 0.5, doubling each time).
- ``SANDBOX_DB``: the sandbox's SQLite file; required when either base URL is ``sandbox``.
- ``SANDBOX_CLOCK`` (optional): a callable giving the host's now; the in-process sandbox never
  returns invoices dated after it.
"""
from __future__ import annotations

import httpx

from channels import SANDBOX, is_sandbox
from channels.leqi import LeqiClient
from channels.rpa import RpaClient

SANDBOX_BASE_URL = "http://sandbox"


def make_clients(config: dict) -> tuple[LeqiClient, RpaClient]:
    """(LeqiClient, RpaClient) for this configuration; both share one sandbox app if used."""
    sandbox = _SandboxTransport(config)
    backoff = config.get("CHANNEL_BACKOFF")
    common = {"timeout": float(config.get("CHANNEL_TIMEOUT") or 30),
              "attempts": int(config.get("CHANNEL_ATTEMPTS") or 6),
              "backoff": 0.5 if backoff in (None, "") else float(backoff)}
    leqi_url, leqi_transport = sandbox.route(config.get("LEQI_BASE_URL") or SANDBOX)
    rpa_url, rpa_transport = sandbox.route(config.get("RPA_BASE_URL") or SANDBOX)
    leqi = LeqiClient(leqi_url, config.get("LEQI_APP_ID") or "", config.get("LEQI_APP_SECRET") or "",
                      transport=leqi_transport, **common)
    rpa = RpaClient(rpa_url, config.get("RPA_API_KEY") or "", transport=rpa_transport, **common)
    return leqi, rpa


class _SandboxTransport:
    """Creates the sandbox app once, and only when a base URL asks for it (lazy import: a real
    deployment never loads the sandbox)."""

    def __init__(self, config: dict) -> None:
        """Remember the config; nothing is built yet."""
        self.config = config
        self.transport: httpx.WSGITransport | None = None

    def route(self, base_url: str) -> tuple[str, httpx.BaseTransport | None]:
        """(base_url, transport) for one client: real HTTP, or the sandbox in-process."""
        if not is_sandbox(base_url):
            return base_url, None
        if self.transport is None:
            from channels.sandbox import create_app

            if not self.config.get("SANDBOX_DB"):
                raise ValueError("SANDBOX_DB must be configured when a channel base URL is 'sandbox'")
            self.transport = httpx.WSGITransport(app=create_app({"SANDBOX_DB": self.config["SANDBOX_DB"],
                                                                  "SANDBOX_CLOCK": self.config.get("SANDBOX_CLOCK")}))
        return SANDBOX_BASE_URL, self.transport
