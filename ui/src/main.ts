import { mount } from "svelte";
import App from "./App.svelte";
import "./app.css";
import { Commands, gatewayTransport, LiveSession } from "@myko/client";
import { Auth } from "$lib/auth.svelte";
import { Router } from "$lib/router.svelte";
import { PAGES } from "./pages";

// Built once here and handed down through context: no module-level singletons.
// Sign-in first: it may finish a redirect back from the identity provider, or leave for it.
const auth = new Auth(window);
await auth.start();
// Every call carries the signed-in user's token; a renewed token reopens the live stream.
const tokens = auth.status === "disabled" ? undefined : auth;
const transport = gatewayTransport(window.location.origin, { tokens });
const myko = { session: new LiveSession(transport, { tokens }), commands: new Commands(transport) };
const router = new Router(window, PAGES);

mount(App, { target: document.getElementById("app")!, props: { myko, router, auth } });
