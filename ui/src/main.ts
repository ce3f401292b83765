import { mount } from "svelte";
import App from "./App.svelte";
import "./app.css";
import { Commands, gatewayTransport, LiveSession } from "@myko/client";
import { Router } from "$lib/router.svelte";
import { PAGES } from "./pages";

// Built once here and handed down through context: no module-level singletons.
const transport = gatewayTransport();
const myko = { session: new LiveSession(transport), commands: new Commands(transport) };
const router = new Router(window, PAGES);

mount(App, { target: document.getElementById("app")!, props: { myko, router } });
