"""gateway: `python -m gateway` (settings: myko.settings.GatewaySettings)."""

from myko.gateway.__main__ import main

main()
