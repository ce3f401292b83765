"""The grpc-web gateway: `python -m myko.services.gateway` (settings: myko.settings.GatewaySettings)."""

from myko.gateway.__main__ import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
