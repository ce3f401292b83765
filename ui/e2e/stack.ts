import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { bearer, BearerToken, Commands, type TokenSource } from "@myko/client";

/** Where the stack under test is (set by global-setup.ts). */
export function gatewayUrl(): string {
  const url = process.env.MYKO_E2E_GATEWAY;
  if (!url) throw new Error("MYKO_E2E_GATEWAY is not set: run through `playwright test`");
  return url;
}

export function controlUrl(): string | undefined {
  return process.env.MYKO_E2E_CONTROL;
}

/**
 * Whether the stack under test requires sign-in: global-setup's stack runs the
 * local identity provider, the live-swarm test names the Swarm stack's; a stack
 * given by MYKO_E2E_GATEWAY without MYKO_E2E_IDP (MYKO_AUTH_DISABLED) has none.
 */
export function authEnabled(): boolean {
  return Boolean(process.env.MYKO_E2E_IDP);
}

/** The stack's identity provider (the issuer). */
export function idpUrl(): string {
  const url = process.env.MYKO_E2E_IDP;
  if (!url) throw new Error("MYKO_E2E_IDP is not set: run through `playwright test`");
  return url;
}

/** How long the provider's access tokens live (short: tests run across renewals). */
export function tokenTtlS(): number {
  return Number(process.env.MYKO_E2E_TOKEN_TTL_S ?? "300");
}

/** Restarts one service of the stack and waits until it is healthy again. */
export async function restart(service: string): Promise<void> {
  const res = await fetch(`${controlUrl()}/restart/${service}`, { method: "POST" });
  if (!res.ok) throw new Error(`restart ${service}: HTTP ${res.status} ${await res.text()}`);
}

export type Tenant = "north" | "south";

/**
 * A service identity of one tenant (the provider's `tests-<tenant>` client, an
 * operator there): client-credentials tokens, fetched again shortly before they expire.
 */
class ServiceTokens implements TokenSource {
  readonly #holder = new BearerToken();
  #expiresAt = 0;

  constructor(readonly clientId: string) {}

  token(): string | null {
    return this.#holder.token();
  }

  subscribe(listener: () => void): () => void {
    return this.#holder.subscribe(listener);
  }

  /** A token valid for at least a few more seconds. */
  async fresh(): Promise<void> {
    if (Date.now() < this.#expiresAt - 5_000) return;
    const secret = (JSON.parse(process.env.MYKO_E2E_CLIENTS ?? "{}") as Record<string, string>)[this.clientId];
    if (!secret) throw new Error(`no secret for ${this.clientId} in MYKO_E2E_CLIENTS`);
    const res = await fetch(`${idpUrl()}/token`, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-www-form-urlencoded",
        Authorization: `Basic ${Buffer.from(`${this.clientId}:${secret}`).toString("base64")}`,
      },
      body: "grant_type=client_credentials",
    });
    if (!res.ok) throw new Error(`client credentials for ${this.clientId}: HTTP ${res.status} ${await res.text()}`);
    const body = (await res.json()) as { access_token: string; expires_in: number };
    this.#expiresAt = Date.now() + body.expires_in * 1000;
    this.#holder.set(body.access_token);
  }
}

/** Commands from Node over grpc-web (for seeding), as a service of `tenant`. */
export function nodeCommands(tenant: Tenant = "north"): Commands {
  if (!authEnabled()) {
    return new Commands(createGrpcWebTransport({ baseUrl: gatewayUrl(), useBinaryFormat: true }));
  }
  const tokens = new ServiceTokens(`tests-${tenant}`);
  const transport = createGrpcWebTransport({
    baseUrl: gatewayUrl(),
    useBinaryFormat: true,
    interceptors: [
      (next) => async (req) => {
        await tokens.fresh();
        return next(req);
      },
      bearer(tokens),
    ],
  });
  return new Commands(transport);
}
