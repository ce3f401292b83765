import { User } from "oidc-client-ts";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { accessOf } from "./access.svelte";
import { Auth, CALLBACK_PATH, SIGNED_OUT_PATH, type AuthConfig, type OidcClient } from "./auth.svelte";

const CONFIG: AuthConfig = { issuer: "http://127.0.0.1:8090", clientId: "myko-ui" };

function user(token: string, lifetimeS: number, roles = ["operator"], state?: unknown): User {
  return new User({
    access_token: token,
    token_type: "Bearer",
    refresh_token: `refresh-${token}`,
    id_token: `id-${token}`,
    profile: { sub: "alice", iss: CONFIG.issuer!, aud: "myko-ui", exp: 0, iat: 0, name: "Alice", roles, tenant: "north" },
    expires_at: Math.floor(Date.now() / 1000) + lifetimeS,
    userState: state,
  });
}

/** oidc-client-ts's UserManager as Auth uses it, scripted by the test. */
class FakeOidc implements OidcClient {
  stored: User | null = null;
  callbackUser: User | null = null;
  renewals: (() => Promise<User | null>)[] = [];
  renewCalls = 0;
  redirects: unknown[] = [];
  signouts: { id_token_hint?: string }[] = [];

  async getUser() {
    return this.stored;
  }
  async signinRedirect(args?: { state?: unknown }) {
    this.redirects.push(args?.state);
  }
  async signinRedirectCallback() {
    if (!this.callbackUser) throw new Error("no sign-in response");
    return this.callbackUser;
  }
  async signinSilent() {
    this.renewCalls += 1;
    const next = this.renewals.shift();
    if (!next) throw new Error("refresh refused");
    return next();
  }
  async signoutRedirect(args?: { id_token_hint?: string }) {
    this.signouts.push(args ?? {});
  }
  async removeUser() {
    this.stored = null;
  }
}

function fakeWindow(path: string) {
  const replaced: string[] = [];
  const win = {
    location: { pathname: path, search: "", origin: "http://127.0.0.1:8080", href: `http://127.0.0.1:8080${path}?code=c&state=s` },
    history: { replaceState: (_s: unknown, _t: string, url: string) => replaced.push(url) },
  };
  return { win: win as unknown as Window, replaced };
}

describe("Auth", () => {
  let oidc: FakeOidc;

  beforeEach(() => {
    vi.useFakeTimers();
    oidc = new FakeOidc();
  });
  afterEach(() => vi.useRealTimers());

  function auth(path = "/") {
    const { win, replaced } = fakeWindow(path);
    return { auth: new Auth(win, () => oidc), replaced };
  }

  it("with auth switched off at the gateway, everyone is let in without a token", async () => {
    const { auth: a } = auth();
    await a.start({ disabled: true });
    expect(a.status).toBe("disabled");
    expect(a.ready).toBe(true);
    expect(a.token()).toBeNull();
    expect(accessOf(a).canWrite).toBe(true);
  });

  it("with nobody signed in, goes to the identity provider and asks to come back here", async () => {
    const { win } = fakeWindow("/zones");
    const a = new Auth(win, () => oidc);
    await a.start(CONFIG);
    expect(a.status).toBe("redirecting");
    expect(oidc.redirects).toEqual([{ returnTo: "/zones" }]);
  });

  it("back from the provider: takes the user, returns to where they were, offers controls by role", async () => {
    oidc.callbackUser = user("t1", 300, ["viewer"], { returnTo: "/wall" });
    const { auth: a, replaced } = auth(CALLBACK_PATH);
    await a.start(CONFIG);
    expect(a.status).toBe("signed-in");
    expect(a.token()).toBe("t1");
    expect(a.identity).toEqual({ subject: "alice", name: "Alice", roles: ["viewer"], tenant: "north" });
    expect(replaced).toEqual(["/wall"]);
    expect(accessOf(a).canWrite).toBe(false);
    expect(accessOf(a).readOnlyReason).toContain("operator");
  });

  it("renews ahead of expiry, and tells the live session each new token", async () => {
    oidc.stored = user("t1", 30);
    oidc.renewals.push(async () => user("t2", 30));
    const { auth: a } = auth();
    const seen: (string | null)[] = [];
    a.subscribe(() => seen.push(a.token()));
    await a.start(CONFIG);
    expect(a.token()).toBe("t1");
    // A third of a 30 s lifetime ahead: not at 19 s, done by 20 s.
    await vi.advanceTimersByTimeAsync(19_000);
    expect(oidc.renewCalls).toBe(0);
    await vi.advanceTimersByTimeAsync(1_500);
    expect(oidc.renewCalls).toBe(1);
    expect(seen).toEqual(["t1", "t2"]);
    expect(a.status).toBe("signed-in");
  });

  it("a failed renewal is retried while the token lasts, then the session says it expired", async () => {
    oidc.stored = user("t1", 9);
    const { auth: a } = auth();
    await a.start(CONFIG);
    await vi.advanceTimersByTimeAsync(12_000);
    expect(oidc.renewCalls).toBeGreaterThan(1);
    expect(a.status).toBe("expired");
    expect(a.token()).toBeNull();
    expect(a.ready).toBe(false);
  });

  it("a token the server refused is renewed at once, but not in a storm", async () => {
    oidc.stored = user("t1", 300);
    oidc.renewals.push(async () => user("t2", 300));
    const { auth: a } = auth();
    await a.start(CONFIG);
    a.rejected();
    a.rejected();
    await vi.advanceTimersByTimeAsync(0);
    expect(oidc.renewCalls).toBe(1);
    expect(a.token()).toBe("t2");
  });

  it("signing out drops the token before leaving for the provider", async () => {
    oidc.stored = user("t1", 300);
    const { auth: a } = auth();
    await a.start(CONFIG);
    const seen: (string | null)[] = [];
    a.subscribe(() => seen.push(a.token()));
    await a.signOut();
    expect(seen).toEqual([null]);
    expect(oidc.signouts).toEqual([{ id_token_hint: "id-t1" }]);
    // No renewal comes back to life afterwards.
    await vi.advanceTimersByTimeAsync(400_000);
    expect(oidc.renewCalls).toBe(0);
  });

  it("after signing out, the page offers to sign in rather than signing in by itself", async () => {
    const { auth: a } = auth(SIGNED_OUT_PATH);
    await a.start(CONFIG);
    expect(a.status).toBe("signed-out");
    expect(oidc.redirects).toEqual([]);
    await a.signIn();
    expect(oidc.redirects).toEqual([{ returnTo: "/" }]);
  });
});
