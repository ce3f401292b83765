import type { Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { bearer, type TokenSource } from "./tokens.js";

export interface GatewayTransportOptions {
  /** Sends its token as `authorization: Bearer …` on every call (LiveBus Open, Execute). */
  tokens?: TokenSource;
}

/** grpc-web to the gateway that served the page (same origin, HTTP/1.1 is enough). */
export function gatewayTransport(
  baseUrl: string = window.location.origin,
  { tokens }: GatewayTransportOptions = {},
): Transport {
  return createGrpcWebTransport({ baseUrl, useBinaryFormat: true, interceptors: tokens ? [bearer(tokens)] : [] });
}
