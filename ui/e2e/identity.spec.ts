import { expect, test, type Browser, type BrowserContext, type Page, type Request } from "@playwright/test";
import { SetTargetSchema } from "$gen/targets/v1/commands_pb";
import { TargetStatus } from "$gen/targets/v1/entities_pb";
import { signIn, type UserName } from "./auth";
import { authEnabled, idpUrl, nodeCommands, tokenTtlS } from "./stack";

// Sign-in through the stack's real identity provider (idp/, oidc-provider) with its
// demo users: alice (operator) and bob (viewer) in tenant north, carol (operator)
// and dave (viewer) in south. Each user gets their own browser context, as two
// people on two machines would.

test.skip(!authEnabled(), "the stack under test runs without sign-in (MYKO_AUTH_DISABLED, no identity provider)");

const run = Date.now().toString(36);
// Targets made here are named "0 ...": the Targets page shows the first page (100 rows)
// of the name order, and a stack that already holds many Targets (the live-swarm
// test's, after its fault phase) would put a later name on another page.
const contexts: BrowserContext[] = [];

test.afterEach(async () => {
  // Closing a context closes its pages, and with them their streams.
  await Promise.all(contexts.splice(0).map((c) => c.close()));
});

async function as(browser: Browser, user: UserName, path = "/"): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  await signIn(page, user, path);
  await expect(page.getByTestId("connection")).toHaveAttribute("data-state", "open");
  return page;
}

function row(page: Page, name: string) {
  return page.getByTestId("target-row").filter({ hasText: name });
}

async function createTarget(page: Page, name: string): Promise<void> {
  await page.getByTestId("new-target").click();
  const editor = page.getByTestId("target-editor");
  await editor.locator("input[name=name]").fill(name);
  await editor.getByRole("button", { name: "Create target" }).click();
  await expect(editor).toBeHidden();
  await expect(row(page, name)).toBeVisible();
}

/** The query's row count as the pager states it: "Rows 1–100 of 1,234", "Rows 1–7", "No rows". */
function rowsInAll(text: string | null): number {
  const t = text ?? "";
  const all = /of ([\d,]+)/.exec(t) ?? /([\d,]+) in all/.exec(t) ?? /–([\d,]+)/.exec(t);
  return all ? Number((all[1] ?? "0").replace(/,/g, "")) : 0;
}

const isLiveBus = (r: Request) => r.url().includes("/myko.v1.LiveBus/Open");

test("two users of two tenants see their own tenant's live data, never the other's", async ({ browser }) => {
  const alice = await as(browser, "alice");
  const carol = await as(browser, "carol");
  const bob = await as(browser, "bob");
  await expect(alice.getByTestId("user")).toContainText("north");
  await expect(carol.getByTestId("user")).toContainText("south");

  const north = `0 North only ${run}`;
  const south = `0 South only ${run}`;
  await createTarget(alice, north);
  await createTarget(carol, south);
  // Same tenant, another user: bob watches alice's tenant live.
  await expect(row(bob, north)).toBeVisible({ timeout: 2_000 });
  // A later write in each tenant reaches that tenant's pages: their streams are live...
  const northLater = `0 North later ${run}`;
  const southLater = `0 South later ${run}`;
  await nodeCommands("north").execute(SetTargetSchema, { name: northLater, status: TargetStatus.ACTIVE });
  await nodeCommands("south").execute(SetTargetSchema, { name: southLater, status: TargetStatus.PAUSED });
  await expect(row(alice, northLater)).toBeVisible({ timeout: 5_000 });
  await expect(row(bob, northLater)).toBeVisible({ timeout: 5_000 });
  await expect(row(carol, southLater)).toBeVisible({ timeout: 5_000 });
  // ...and never carried the other tenant's rows.
  for (const name of [south, southLater]) {
    await expect(row(alice, name)).toHaveCount(0);
    await expect(row(bob, name)).toHaveCount(0);
  }
  for (const name of [north, northLater]) await expect(row(carol, name)).toHaveCount(0);
  // Reports are scoped the same way: each tenant's count is of the rows its query
  // holds (all pages: a long-lived stack has more than one page of a tenant's Targets).
  for (const page of [alice, carol]) {
    await expect
      .poll(async () => {
        const total = Number(await page.getByTestId("status-counts").getByTestId("total").textContent());
        return total === rowsInAll(await page.getByTestId("target-count").textContent());
      })
      .toBe(true);
  }
});

test("a viewer watches but cannot write: controls disabled, a forced call is PERMISSION_DENIED", async ({ browser }) => {
  const alice = await as(browser, "alice");
  const name = `0 Viewed ${run}`;
  await createTarget(alice, name);
  const bob = await as(browser, "bob");
  const target = row(bob, name);
  await expect(target).toBeVisible();
  await expect(bob.getByTestId("user")).toHaveAttribute("data-roles", "viewer");
  await expect(bob.getByTestId("read-only")).toContainText("operator");
  await expect(bob.getByTestId("new-target")).toBeDisabled();
  const hit = target.getByRole("button", { name: `Record a hit on ${name}` });
  for (const control of [hit, target.getByRole("button", { name: "Edit", exact: true }), target.getByRole("button", { name: "Delete", exact: true })]) {
    await expect(control).toBeDisabled();
  }
  await bob.getByRole("link", { name: "Zones" }).click();
  await expect(bob.getByRole("button", { name: "Create zone" })).toBeDisabled();
  await bob.getByRole("link", { name: "Targets" }).click();

  // Forced: the button enabled by hand, as a tampered page would. The service refuses.
  await expect(target).toBeVisible();
  await hit.evaluate((b: HTMLButtonElement) => (b.disabled = false));
  await hit.click();
  const error = bob.getByTestId("toast-error");
  await expect(error).toContainText(`Could not record a hit on “${name}”: Not allowed:`);
  await expect(error).toContainText("needs role operator");
  // Nothing changed, for anyone.
  await expect(target.locator("td.hits")).toHaveText(/^\s*0\b/);
  await expect(row(alice, name).locator("td.hits")).toHaveText(/^\s*0\b/);
});

test("sign-out ends the live stream before leaving, revokes the refresh token and ends the provider's session", async ({
  browser,
}) => {
  const page = await as(browser, "alice");
  const liveEnded: number[] = [];
  const live = new Set<Request>();
  let signOutAt = 0;
  page.on("request", (r) => {
    if (isLiveBus(r)) live.add(r);
    if (r.url().startsWith(idpUrl()) && r.url().includes("/session/end") && !signOutAt) signOutAt = performance.now();
  });
  const ended = (r: Request) => {
    if (isLiveBus(r)) {
      live.delete(r);
      liveEnded.push(performance.now());
    }
  };
  page.on("requestfinished", ended);
  page.on("requestfailed", ended);
  const name = `0 Signed out ${run}`;
  await createTarget(page, name); // a stream is open and carrying data
  const issuer = idpUrl();
  const stored = await page.evaluate(
    (key) => sessionStorage.getItem(key),
    `oidc.user:${issuer}:myko-ui`,
  );
  const refreshToken = (JSON.parse(stored ?? "{}") as { refresh_token?: string }).refresh_token;
  expect(refreshToken).toBeTruthy();

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByTestId("sign-in-screen")).toHaveAttribute("data-state", "signed-out", { timeout: 20_000 });
  await expect(page.getByRole("heading", { name: "You are signed out" })).toBeVisible();
  // No stream left, and the last one ended before the page went to the provider.
  expect(live.size).toBe(0);
  expect(signOutAt).toBeGreaterThan(0);
  expect(Math.max(...liveEnded)).toBeLessThanOrEqual(signOutAt);

  // The refresh token the page held no longer gets a token.
  const refused = await fetch(`${issuer}/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken!, client_id: "myko-ui" }),
  });
  expect(refused.status).toBe(400);
  expect(((await refused.json()) as { error: string }).error).toBe("invalid_grant");

  // Signing in again asks for the password: the provider's session ended too.
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByLabel("User name")).toBeVisible();
});

test("views stay live across token renewals", async ({ browser }) => {
  const ttl = tokenTtlS();
  test.skip(ttl > 60, "needs the test stack's short-lived tokens (MYKO_E2E_TOKEN_TTL_S)");
  test.setTimeout((3 * ttl + 60) * 1000);
  const context = await browser.newContext();
  contexts.push(context);
  const page = await context.newPage();
  const tokens: string[] = [];
  page.on("request", (r) => {
    const auth = r.headers()["authorization"];
    if (isLiveBus(r) && auth && !tokens.includes(auth)) tokens.push(auth);
  });
  await signIn(page, "alice", "/");
  const name = `0 Long lived ${run}`;
  await createTarget(page, name);

  // Watch the page through more than two token lifetimes.
  const states = new Set<string>();
  const stale = new Set<string>();
  const sample = setInterval(() => {
    page.getByTestId("connection").getAttribute("data-state").then((s) => s && states.add(s), () => undefined);
    page.getByTestId("freshness").first().getAttribute("data-stale").then((s) => s && stale.add(s), () => undefined);
  }, 100);
  await page.waitForTimeout(2.5 * ttl * 1000);
  clearInterval(sample);

  // Renewed at least twice, each time on a new stream with the new token...
  expect(tokens.length).toBeGreaterThanOrEqual(3);
  const claims = JSON.parse(Buffer.from(tokens.at(-1)!.split(".")[1]!, "base64url").toString()) as { iat: number; exp: number; sub: string };
  expect(claims.exp - claims.iat).toBe(ttl);
  expect(claims.sub).toBe("alice");
  // ...without the page ever losing its stream or showing stale data.
  expect([...states]).toEqual(["open"]);
  expect([...stale]).toEqual(["false"]);
  // And it is still live now.
  const after = `0 After renewals ${run}`;
  await nodeCommands("north").execute(SetTargetSchema, { name: after, status: TargetStatus.ACTIVE });
  await expect(row(page, after)).toBeVisible({ timeout: 5_000 });
  await expect(row(page, name)).toBeVisible();
});
