import { getContext, setContext } from "svelte";
import { UserManager, WebStorageStateStore, type User } from "oidc-client-ts";
import type { TokenSource } from "@myko/client";

/**
 * Sign-in for the UI: OpenID Connect authorization code + PKCE with oidc-client-ts,
 * against the issuer the gateway names at /myko-auth.json (the local identity
 * provider under `make run`, any OIDC provider in production).
 *
 * It is the app's TokenSource: the transport sends its access token on every call
 * and the LiveSession reopens its stream when the token changes. Tokens are renewed
 * with the refresh token well before they expire (a third of their lifetime ahead,
 * at most a minute), so live views never see an expired token; a renewal that fails
 * is retried until the token runs out, then the page says the session expired.
 */

/** What /myko-auth.json says (myko/gateway/ui_auth.py). */
export interface AuthConfig {
  disabled?: boolean;
  issuer?: string;
  clientId?: string;
  scope?: string;
}

/** Who is signed in, from the ID token (for display and for which controls to offer). */
export interface Identity {
  subject: string;
  name: string;
  roles: string[];
  tenant: string | null;
}

export type AuthStatus =
  | "starting"
  /** The deployment runs without authentication (MYKO_AUTH_DISABLED=true). */
  | "disabled"
  | "signed-in"
  | "signed-out"
  /** On the way to the identity provider (sign-in or sign-out). */
  | "redirecting"
  /** The sign-in ran out and could not be renewed: sign in again. */
  | "expired"
  | "error";

/** The part of oidc-client-ts's UserManager used here (a fake one in unit tests). */
export interface OidcClient {
  getUser(): Promise<User | null>;
  signinRedirect(args?: { state?: unknown }): Promise<void>;
  signinRedirectCallback(url?: string): Promise<User>;
  signinSilent(): Promise<User | null>;
  signoutRedirect(args?: { id_token_hint?: string }): Promise<void>;
  removeUser(): Promise<void>;
}

export const CALLBACK_PATH = "/auth/callback";
export const SIGNED_OUT_PATH = "/signed-out";
export const CONFIG_PATH = "/myko-auth.json";
/** Renew this long before expiry at most (a third of the lifetime for short-lived tokens). */
const MAX_RENEW_LEAD_S = 60;
const RETRY_RENEW_S = 2;
/** A server refusing a token asks for a renewal at most this often. */
const MIN_REJECTED_RENEW_MS = 5_000;

interface ReturnState {
  returnTo?: string;
}

function identityOf(user: User): Identity {
  const p = user.profile as Record<string, unknown>;
  const roles = Array.isArray(p.roles) ? p.roles.filter((r): r is string => typeof r === "string") : [];
  const name = typeof p.name === "string" ? p.name : typeof p.preferred_username === "string" ? p.preferred_username : user.profile.sub;
  return { subject: user.profile.sub, name, roles, tenant: typeof p.tenant === "string" ? p.tenant : null };
}

export class Auth implements TokenSource {
  status = $state<AuthStatus>("starting");
  identity = $state<Identity | null>(null);
  /** Why sign-in failed (status "error"). */
  problem = $state("");

  readonly #window: Window;
  readonly #newClient: (config: AuthConfig, origin: string) => OidcClient;
  #client: OidcClient | null = null;
  #token: string | null = null;
  #idToken: string | undefined;
  readonly #listeners = new Set<() => void>();
  #renewTimer?: ReturnType<typeof setTimeout>;
  #renewing: Promise<void> | null = null;
  #expiresAt = 0;
  #lastRejectedRenew = 0;

  constructor(window: Window, newClient: (config: AuthConfig, origin: string) => OidcClient = userManager) {
    this.#window = window;
    this.#newClient = newClient;
  }

  /** Whether someone may use the app's data now (signed in, or auth switched off). */
  get ready(): boolean {
    return this.status === "signed-in" || this.status === "disabled";
  }

  // -- TokenSource ---------------------------------------------------------------------------

  token(): string | null {
    return this.#token;
  }

  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  rejected(): void {
    // The server saw this token as expired or revoked: try a renewal now, not on schedule.
    const now = Date.now();
    if (this.status !== "signed-in" || now - this.#lastRejectedRenew < MIN_REJECTED_RENEW_MS) return;
    this.#lastRejectedRenew = now;
    void this.#renew();
  }

  // -- sign-in and sign-out ------------------------------------------------------------------

  /** Finds out how to sign in, finishes a sign-in coming back, or starts one. */
  async start(config?: AuthConfig): Promise<void> {
    try {
      config ??= await this.#fetchConfig();
    } catch (e) {
      this.#fail(`The sign-in settings could not be loaded (${String(e)}).`);
      return;
    }
    if (config.disabled) {
      this.status = "disabled";
      return;
    }
    if (!config.issuer || !config.clientId) {
      this.#fail("The sign-in settings name no issuer or client.");
      return;
    }
    const location = this.#window.location;
    this.#client = this.#newClient(config, location.origin);
    if (location.pathname === CALLBACK_PATH) {
      try {
        const user = await this.#client.signinRedirectCallback(location.href);
        const returnTo = (user.state as ReturnState | undefined)?.returnTo ?? "/";
        this.#window.history.replaceState(null, "", returnTo.startsWith("/") ? returnTo : "/");
        this.#use(user);
      } catch (e) {
        this.#fail(`Sign-in did not complete: ${e instanceof Error ? e.message : String(e)}`);
      }
      return;
    }
    if (location.pathname === SIGNED_OUT_PATH) {
      this.status = "signed-out";
      return;
    }
    const user = await this.#client.getUser();
    if (user && !user.expired) {
      this.#use(user);
      return;
    }
    if (user?.refresh_token) {
      // Back after the token ran out (a sleeping laptop): a refresh may still work.
      this.status = "signed-in";
      this.identity = identityOf(user);
      await this.#renew();
      if (this.status === "signed-in") return;
    }
    await this.signIn();
  }

  /** To the identity provider's sign-in page; back to this page afterwards. */
  async signIn(): Promise<void> {
    if (!this.#client) return;
    const { pathname, search } = this.#window.location;
    const here = pathname === SIGNED_OUT_PATH || pathname === CALLBACK_PATH ? "/" : pathname + search;
    this.status = "redirecting";
    await this.#client.signinRedirect({ state: { returnTo: here } satisfies ReturnState });
  }

  /**
   * Ends the live streams at once (the token goes first), revokes the refresh token
   * and signs out at the identity provider, which sends the browser back to /signed-out.
   */
  async signOut(): Promise<void> {
    if (!this.#client) return;
    clearTimeout(this.#renewTimer);
    const idToken = this.#idToken;
    this.#setToken(null);
    this.identity = null;
    this.status = "redirecting";
    try {
      await this.#client.signoutRedirect({ id_token_hint: idToken });
    } catch (e) {
      // The provider could not be reached: signed out here all the same (no token is kept).
      await this.#client.removeUser().catch(() => undefined);
      this.problem = `Signed out of this page, but not at the identity provider: ${e instanceof Error ? e.message : String(e)}`;
      console.error(this.problem);
      this.status = "signed-out";
    }
  }

  // -- internals -----------------------------------------------------------------------------

  async #fetchConfig(): Promise<AuthConfig> {
    const reply = await this.#window.fetch(CONFIG_PATH, { headers: { Accept: "application/json" } });
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    return (await reply.json()) as AuthConfig;
  }

  #use(user: User): void {
    this.identity = identityOf(user);
    this.#idToken = user.id_token;
    this.status = "signed-in";
    const lifetime = user.expires_in ?? 0;
    this.#expiresAt = Date.now() + lifetime * 1000;
    this.#setToken(user.access_token);
    const lead = Math.min(MAX_RENEW_LEAD_S, lifetime / 3);
    this.#scheduleRenew(Math.max(1, lifetime - lead));
  }

  #scheduleRenew(inSeconds: number): void {
    clearTimeout(this.#renewTimer);
    this.#renewTimer = setTimeout(() => void this.#renew(), inSeconds * 1000);
  }

  #renew(): Promise<void> {
    this.#renewing ??= this.#renewOnce().finally(() => (this.#renewing = null));
    return this.#renewing;
  }

  async #renewOnce(): Promise<void> {
    if (!this.#client || this.status !== "signed-in") return;
    try {
      const user = await this.#client.signinSilent();
      if (user) {
        this.#use(user);
        return;
      }
    } catch {
      // The provider is unreachable or refused the refresh token: retried below while time is left.
    }
    if (Date.now() + RETRY_RENEW_S * 1000 < this.#expiresAt) {
      this.#scheduleRenew(RETRY_RENEW_S);
      return;
    }
    // Out of time: no token rather than an expired one; the page asks to sign in again.
    await this.#client.removeUser().catch(() => undefined);
    this.#setToken(null);
    this.status = "expired";
  }

  #fail(problem: string): void {
    this.problem = problem;
    this.status = "error";
  }

  #setToken(token: string | null): void {
    if (token === this.#token) return;
    this.#token = token;
    for (const listener of [...this.#listeners]) listener();
  }
}

/** oidc-client-ts for one issuer and this origin: code + PKCE, refresh tokens, no iframes. */
export function userManager(config: AuthConfig, origin: string): OidcClient {
  return new UserManager({
    authority: config.issuer!,
    client_id: config.clientId!,
    redirect_uri: origin + CALLBACK_PATH,
    post_logout_redirect_uri: origin + SIGNED_OUT_PATH,
    response_type: "code",
    scope: config.scope ?? "openid profile",
    // Renewal is scheduled by Auth from each token's own lifetime (short in tests).
    automaticSilentRenew: false,
    // The access token is for the Myko API; who signed in comes from the ID token.
    loadUserInfo: false,
    monitorSession: false,
    // A sign-out leaves no refresh token that still works.
    revokeTokensOnSignout: true,
    revokeTokenTypes: ["refresh_token"],
    // RFC 7009 leaves the (empty) body's type open; oidc-provider sends text/plain.
    revokeTokenAdditionalContentTypes: ["text/plain"],
    // Per tab: each tab refreshes its own tokens (rotating refresh tokens are not shared).
    userStore: new WebStorageStateStore({ store: window.sessionStorage }),
  });
}

const KEY = Symbol("auth");

export function setAuth(auth: Auth): Auth {
  return setContext(KEY, auth);
}

export function getAuth(): Auth {
  const auth = getContext<Auth | undefined>(KEY);
  if (!auth) throw new Error("getAuth(): no Auth in context (App sets it)");
  return auth;
}
