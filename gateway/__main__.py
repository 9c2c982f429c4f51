"""`python -m gateway`: validate CT_* settings, then run the gateway under gunicorn."""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.config import ConfigError, Settings

CONFIG_FILE = Path(__file__).with_name("gunicorn.conf.py")
APP = "gateway.app:create_asgi_app()"


def main() -> int:
    try:
        Settings.from_env()  # fail here, clearly, before gunicorn starts any worker
    except ConfigError as exc:
        print(f"ct-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    from gunicorn.app.wsgiapp import WSGIApplication

    sys.argv = ["ct-gateway", "--config", str(CONFIG_FILE), APP]
    WSGIApplication("%(prog)s [OPTIONS] [APP_MODULE]").run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
