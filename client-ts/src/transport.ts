import type { Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";

/** grpc-web to the gateway that served the page (same origin, HTTP/1.1 is enough). */
export function gatewayTransport(baseUrl: string = window.location.origin): Transport {
  return createGrpcWebTransport({ baseUrl, useBinaryFormat: true });
}
