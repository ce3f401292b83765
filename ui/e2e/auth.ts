import { expect, type Page } from "@playwright/test";
import { authEnabled, gatewayUrl } from "./stack";

/** The provider's demo users (myko/local/idp.py); a stack may give their passwords (MYKO_E2E_PASSWORDS). */
export const USERS = {
  alice: { password: "demo", roles: "operator", tenant: "north" },
  bob: { password: "demo", roles: "viewer", tenant: "north" },
  carol: { password: "demo", roles: "operator", tenant: "south" },
  dave: { password: "demo", roles: "viewer", tenant: "south" },
} as const;
export type UserName = keyof typeof USERS;

/** The user's password: the stack's own (the Swarm stack makes them), else the demo one. */
export function password(user: UserName): string {
  const given = JSON.parse(process.env.MYKO_E2E_PASSWORDS ?? "{}") as Record<string, string>;
  return given[user] ?? USERS[user].password;
}

/**
 * Opens `path` as `user`: the UI sends the browser to the identity provider, which
 * asks for the password the first time in this browser context (later pages of
 * the context come straight back: the provider's session), then back to `path`.
 */
export async function signIn(page: Page, user: UserName = "alice", path = "/"): Promise<void> {
  await page.goto(new URL(path, gatewayUrl()).toString());
  if (!authEnabled()) {
    // A stack without sign-in (MYKO_AUTH_DISABLED): the page opens as is.
    await expect(page).toHaveURL(new RegExp(`${path.replace(/[/]/g, "\\/")}$`));
    return;
  }
  const form = page.getByLabel("User name");
  const signedIn = page.getByTestId("user");
  await expect(form.or(signedIn)).toBeVisible({ timeout: 20_000 });
  if (await form.isVisible()) {
    await form.fill(user);
    await page.getByLabel("Password").fill(password(user));
    await page.getByRole("button", { name: "Sign in" }).click();
  }
  await expect(signedIn).toHaveAttribute("data-subject", user, { timeout: 20_000 });
  await expect(page).toHaveURL(new RegExp(`${path.replace(/[/]/g, "\\/")}$`));
}
