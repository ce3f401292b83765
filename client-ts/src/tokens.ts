import type { Interceptor } from "@connectrpc/connect";

/**
 * Where requests get their bearer token. The app owns it (an OIDC client such as
 * oidc-client-ts, a fixed token in a script or test); @myko/client only reads it:
 * every request carries the current token as `authorization: Bearer …`
 * (`gatewayTransport({ tokens })`), and a `LiveSession` given the same source
 * reopens its stream when the token changes, so live views outlast each token.
 */
export interface TokenSource {
  /** The access token to send now; null when signed out. */
  token(): string | null;
  /** Calls `listener` after every change of token (sign-in, refresh, sign-out); returns the unsubscribe. */
  subscribe(listener: () => void): () => void;
  /** The server refused the current token (expired, revoked): get a new one if you can. */
  rejected?(): void;
}

/** A token set by hand: scripts, tests, or an app that refreshes tokens itself. */
export class BearerToken implements TokenSource {
  #token: string | null;
  readonly #listeners = new Set<() => void>();

  constructor(token: string | null = null) {
    this.#token = token;
  }

  token(): string | null {
    return this.#token;
  }

  set(token: string | null): void {
    if (token === this.#token) return;
    this.#token = token;
    for (const listener of [...this.#listeners]) listener();
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
}

/** Adds the source's current token to every request (none while it has none). */
export function bearer(tokens: TokenSource): Interceptor {
  return (next) => (req) => {
    const token = tokens.token();
    if (token) req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}
