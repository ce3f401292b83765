import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { Commands } from "@myko/client";

/** Where the stack under test is (set by global-setup.ts). */
export function gatewayUrl(): string {
  const url = process.env.MYKO_E2E_GATEWAY;
  if (!url) throw new Error("MYKO_E2E_GATEWAY is not set: run through `playwright test`");
  return url;
}

export function controlUrl(): string | undefined {
  return process.env.MYKO_E2E_CONTROL;
}

/** Restarts one service of the stack and waits until it is healthy again. */
export async function restart(service: string): Promise<void> {
  const res = await fetch(`${controlUrl()}/restart/${service}`, { method: "POST" });
  if (!res.ok) throw new Error(`restart ${service}: HTTP ${res.status} ${await res.text()}`);
}

/** The same command client the UI uses, from Node over grpc-web (for seeding). */
export function nodeCommands(): Commands {
  return new Commands(createGrpcWebTransport({ baseUrl: gatewayUrl(), useBinaryFormat: true }));
}
