"""The gateway's runner in this repository; the gateway itself is myko.gateway."""
