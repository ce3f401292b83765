"""grpc-web gateway: serves the UI and forwards the public buses to their gRPC services."""
