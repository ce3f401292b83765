// The local OpenID Connect provider of `make run`, `myko run --idp` and the tests.
//
//     node idp/server.mjs --config .run/idp/config.json
//
// oidc-provider (OpenID-certified) on 127.0.0.1 with what myko/local/idp.py writes
// into the config file: the signing keys (a JWKS file; the first key signs, every
// key listed is published, so rotation is "put the new key first, keep the old
// one"), the demo users, the UI's public client (authorization code + PKCE, refresh
// tokens) and the service clients (client credentials). Access tokens are JWTs for
// one resource server, the Myko API: `aud` is its audience, with the caller's
// `roles` and `tenant` as claims. Everything is held in memory: a restart signs
// everyone out. Never a production identity provider (docs/security.md).
//
// In a container (idp/Dockerfile, the Swarm stack) what depends on where it is
// deployed comes from the environment instead, so that the configuration (users,
// client secrets: a Swarm secret) is made once: MYKO_IDP_ISSUER (its public URL),
// MYKO_IDP_HOST / MYKO_IDP_PORT (where it listens), MYKO_IDP_UI_ORIGINS (the UI's
// origins, comma-separated) and MYKO_IDP_TLS_CERT / MYKO_IDP_TLS_KEY (PEM files:
// HTTPS instead of HTTP).

import { readFileSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { createServer as createHttpsServer } from "node:https";
import { parseArgs } from "node:util";
import Provider, { errors } from "oidc-provider";

const MAX_FORM_BYTES = 4096;
// Who may sign in with which password: looked up per request, never logged.
const { values: args } = parseArgs({ options: { config: { type: "string" } } });
if (!args.config) {
  console.error("usage: node server.mjs --config CONFIG.json");
  process.exit(2);
}
const config = JSON.parse(readFileSync(args.config, "utf8"));
const env = process.env;
if (env.MYKO_IDP_ISSUER) config.issuer = env.MYKO_IDP_ISSUER.replace(/\/+$/, "");
if (env.MYKO_IDP_HOST) config.host = env.MYKO_IDP_HOST;
if (env.MYKO_IDP_PORT) config.port = Number(env.MYKO_IDP_PORT);
if (env.MYKO_IDP_UI_ORIGINS) {
  // The paths are the UI's (ui/src/lib/auth.svelte.ts), as myko/local/idp.py writes them.
  const origins = env.MYKO_IDP_UI_ORIGINS.split(",").map((o) => o.trim().replace(/\/+$/, "")).filter(Boolean);
  config.uiClient.origins = origins;
  config.uiClient.redirectUris = origins.map((o) => `${o}/auth/callback`);
  config.uiClient.postLogoutRedirectUris = origins.map((o) => `${o}/signed-out`);
}
const tls =
  env.MYKO_IDP_TLS_CERT && env.MYKO_IDP_TLS_KEY
    ? { cert: readFileSync(env.MYKO_IDP_TLS_CERT), key: readFileSync(env.MYKO_IDP_TLS_KEY) }
    : undefined;
const jwks = JSON.parse(readFileSync(config.jwksFile, "utf8"));
const users = new Map(config.users.map((u) => [u.username, u]));
const serviceClients = new Map(config.serviceClients.map((c) => [c.clientId, c]));
const audience = config.audience;
const resourceScope = [...new Set(config.serviceClients.flatMap((c) => (c.scope ? c.scope.split(" ") : [])))].join(" ");

function account(username) {
  const user = users.get(username);
  if (!user) return undefined;
  return {
    accountId: user.username,
    // Profile claims go into the ID token, which the UI reads to show who is signed in
    // and which controls to offer; the API trusts only the access token's copy.
    async claims() {
      return {
        sub: user.username,
        name: user.name,
        preferred_username: user.username,
        roles: user.roles,
        tenant: user.tenant ?? undefined,
      };
    },
  };
}

/** The roles and tenant an access token carries: the user's, or the service client's. */
function identityClaims(token) {
  const holder = token.accountId ? users.get(token.accountId) : serviceClients.get(token.clientId);
  if (!holder) return undefined;
  return { roles: holder.roles, ...(holder.tenant ? { tenant: holder.tenant } : {}) };
}

const uiClient = {
  client_id: config.uiClient.clientId,
  client_name: "Myko UI",
  application_type: "web",
  token_endpoint_auth_method: "none",
  grant_types: ["authorization_code", "refresh_token"],
  response_types: ["code"],
  redirect_uris: config.uiClient.redirectUris,
  post_logout_redirect_uris: config.uiClient.postLogoutRedirectUris,
};

const provider = new Provider(config.issuer, {
  clients: [
    uiClient,
    ...config.serviceClients.map((c) => ({
      client_id: c.clientId,
      client_secret: c.secret,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      ...(c.scope ? { scope: c.scope } : {}),
    })),
  ],
  jwks,
  cookies: { keys: config.cookieKeys },
  findAccount: async (_ctx, sub) => account(sub),
  claims: {
    openid: ["sub"],
    profile: ["name", "preferred_username", "roles", "tenant"],
  },
  // Profile claims in the ID token of a code flow too: the UI has no userinfo call
  // (its access token is for the Myko API, not for this provider).
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: { enabled: true, logoutSource, postLogoutSuccessSource },
    resourceIndicators: {
      enabled: true,
      // Every token is for the Myko API, asked for or not: the UI and services
      // need not pass `resource` on each request (and refresh) to get a JWT.
      defaultResource: async () => audience,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, indicator) => {
        if (indicator !== audience) throw new errors.InvalidTarget();
        return {
          audience,
          scope: resourceScope,
          accessTokenFormat: "jwt",
          accessTokenTTL: config.accessTokenTtlS,
          jwt: { sign: { alg: "RS256" } },
        };
      },
    },
  },
  extraTokenClaims: async (_ctx, token) => identityClaims(token),
  // The UI keeps its views live past one access token by refreshing: a refresh token
  // for every sign-in of a client allowed the grant, ending with the IdP session.
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed("refresh_token"),
  // First-party clients only, so no consent screen: the grant is made at sign-in.
  loadExistingGrant,
  clientBasedCORS: (_ctx, origin, client) =>
    client.clientId === uiClient.client_id && config.uiClient.origins.includes(origin),
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: {
    AccessToken: config.accessTokenTtlS,
    ClientCredentials: config.accessTokenTtlS,
    IdToken: config.accessTokenTtlS,
    AuthorizationCode: 60,
    Interaction: 600,
    RefreshToken: config.sessionTtlS,
    Session: config.sessionTtlS,
    Grant: config.sessionTtlS,
  },
  renderError,
});
provider.on("server_error", (_ctx, err) => console.error("idp: server error:", err));
provider.on("grant.error", (_ctx, err) => console.error(`idp: token request refused: ${err.message} (${err.error_description ?? ""})`));

async function loadExistingGrant(ctx) {
  const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
  if (grantId) {
    const grant = await ctx.oidc.provider.Grant.find(grantId);
    if (grant) return grant;
  }
  if (ctx.oidc.client.clientId !== uiClient.client_id) return undefined;
  const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
  grant.addOIDCScope("openid profile offline_access");
  grant.addOIDCClaims(["name", "preferred_username", "roles", "tenant"]);
  // Resource scopes are for service clients; a user's rights are their roles. Marked
  // as seen so a client asking for them gets no consent prompt, only no scope.
  grant.addResourceScope(audience, "");
  if (resourceScope) grant.rejectResourceScope(audience, resourceScope);
  await grant.save();
  return grant;
}

// -- pages: sign-in, sign-out, errors --------------------------------------------------

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)} · Myko local sign-in</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; background: #f4f6f8; color: #1c2430; margin: 0; }
  main { max-width: 24rem; margin: 4rem auto; background: #fff; border: 1px solid #d5dbe1; border-radius: 10px; padding: 1.5rem 1.75rem; }
  h1 { font-size: 1.3rem; margin: 0 0 1rem; }
  label { display: block; font-weight: 600; margin: 0.8rem 0 0.25rem; }
  input { width: 100%; box-sizing: border-box; font: inherit; padding: 0.45rem 0.6rem; border: 1px solid #8795a1; border-radius: 6px; }
  input:focus, button:focus { outline: 3px solid #0f766e; outline-offset: 1px; }
  button { margin-top: 1.2rem; width: 100%; font: inherit; font-weight: 600; padding: 0.55rem; border: 0; border-radius: 6px; background: #0f766e; color: #fff; cursor: pointer; }
  .error { color: #9b1c1c; background: #fde8e8; padding: 0.5rem 0.7rem; border-radius: 6px; }
  .note { color: #4b5563; font-size: 0.9rem; }
  code { font-size: 0.9rem; }
</style>
</head>
<body><main>${body}</main></body>
</html>`;
}

function loginPage(uid, client, { username = "", error = "" } = {}) {
  const demo = config.users
    .map((u) => `<li><code>${escape(u.username)}</code>: ${escape(u.roles.join(", "))}${u.tenant ? ` in ${escape(u.tenant)}` : ""}</li>`)
    .join("");
  return page(
    "Sign in",
    `<h1>Sign in to ${escape(client?.clientName ?? client?.clientId ?? "Myko")}</h1>
${error ? `<p class="error" role="alert" id="login-error">${escape(error)}</p>` : ""}
<form method="post" action="/interaction/${escape(uid)}/login" autocomplete="off">
  <label for="username">User name</label>
  <input id="username" name="username" value="${escape(username)}" required autofocus
    ${error ? 'aria-describedby="login-error" aria-invalid="true"' : ""}>
  <label for="password">Password</label>
  <input id="password" name="password" type="password" required>
  <button type="submit">Sign in</button>
</form>
<p class="note">Local identity provider for development: the demo users are</p>
<ul class="note">${demo}</ul>`,
  );
}

async function logoutSource(ctx, form) {
  // The UI asked to sign out; confirming it here would only add a click.
  ctx.body = page(
    "Signing out",
    `<h1>Signing out…</h1>${form}
<noscript><button type="submit" form="op.logoutForm" name="logout" value="yes">Sign out</button></noscript>
<script>
  const form = document.getElementById("op.logoutForm");
  const yes = document.createElement("input");
  yes.type = "hidden"; yes.name = "logout"; yes.value = "yes";
  form.appendChild(yes);
  form.submit();
</script>`,
  );
}

async function postLogoutSuccessSource(ctx) {
  ctx.body = page("Signed out", "<h1>Signed out</h1><p>You are signed out of the local identity provider.</p>");
}

async function renderError(ctx, out) {
  ctx.type = "html";
  ctx.body = page(
    "Sign-in error",
    `<h1>Sign-in failed</h1><p class="error" role="alert">${escape(out.error)}: ${escape(out.error_description ?? "")}</p>`,
  );
}

// -- interactions: the password sign-in ------------------------------------------------

async function readForm(req) {
  let size = 0;
  const chunks = [];
  for await (const chunk of req) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) throw new Error("form too large");
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

function send(res, status, html) {
  res.writeHead(status, {
    "Content-Type": "text/html; charset=utf-8",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
  });
  res.end(html);
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) {
    send(res, 400, page("Sign-in error", '<p class="error" role="alert">This sign-in page has expired; go back and try again.</p>'));
    return;
  }
  const client = await provider.Client.find(details.params.client_id);
  if (details.prompt.name === "consent") {
    // First-party clients: the grant is what loadExistingGrant gives (no consent screen).
    const grant = details.grantId
      ? await provider.Grant.find(details.grantId)
      : new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
    grant.addOIDCScope("openid profile offline_access");
    grant.addOIDCClaims(["name", "preferred_username", "roles", "tenant"]);
    grant.addResourceScope(audience, "");
    const missing = details.prompt.details.missingResourceScopes?.[audience];
    if (missing?.length) grant.rejectResourceScope(audience, missing.join(" "));
    const grantId = await grant.save();
    await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
    return;
  }
  if (action === "login" && req.method === "POST") {
    const form = await readForm(req);
    const username = (form.get("username") ?? "").trim();
    const user = users.get(username);
    if (!user || user.password !== (form.get("password") ?? "")) {
      send(res, 401, loginPage(uid, client, { username, error: "Wrong user name or password." }));
      return;
    }
    console.log(`idp: ${username} signed in`);
    await provider.interactionFinished(req, res, { login: { accountId: user.username } }, { mergeWithLastSubmission: false });
    return;
  }
  if (action === "" && req.method === "GET") {
    send(res, 200, loginPage(uid, client));
    return;
  }
  send(res, 405, page("Sign-in error", '<p class="error" role="alert">Not allowed.</p>'));
}

const oidc = provider.callback();
const INTERACTION = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login))?\/?$/;

const handler = async (req, res) => {
  const path = new URL(req.url ?? "/", config.issuer).pathname;
  const match = INTERACTION.exec(path);
  if (!match) {
    oidc(req, res);
    return;
  }
  try {
    await interaction(req, res, match[1], match[2] ?? "");
  } catch (err) {
    if (err instanceof errors.SessionNotFound || err instanceof errors.InvalidRequest) {
      send(res, 400, page("Sign-in error", '<p class="error" role="alert">This sign-in page has expired; go back to the application and sign in again.</p>'));
      return;
    }
    console.error("idp: interaction failed:", err);
    if (!res.headersSent) send(res, 500, page("Sign-in error", '<p class="error" role="alert">Sign-in failed.</p>'));
  }
};
const server = tls ? createHttpsServer(tls, handler) : createHttpServer(handler);

server.listen(config.port, config.host, () => {
  console.log(`idp: issuer ${config.issuer} (audience ${audience}, access tokens ${config.accessTokenTtlS}s)`);
});

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    // Open keep-alive connections must not hold the exit up.
    server.closeAllConnections();
  });
}
