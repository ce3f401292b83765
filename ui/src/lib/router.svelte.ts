import { getContext, setContext } from "svelte";

export type Route =
  | { page: "targets" }
  | { page: "zones" }
  | { page: "zone"; id: string }
  | { page: "wall" }
  | { page: "missing"; path: string };

export function parseRoute(path: string): Route {
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0 || (parts.length === 1 && parts[0] === "targets")) return { page: "targets" };
  if (parts.length === 1 && parts[0] === "zones") return { page: "zones" };
  if (parts.length === 2 && parts[0] === "zones") return { page: "zone", id: parts[1]! };
  if (parts.length === 1 && parts[0] === "wall") return { page: "wall" };
  return { page: "missing", path };
}

/** History-API routing; the gateway serves index.html for every page path. */
export class Router {
  path = $state("/");
  route = $derived(parseRoute(this.path));
  readonly #window: Window;

  constructor(win: Window) {
    this.#window = win;
    this.path = win.location.pathname;
    win.addEventListener("popstate", () => (this.path = win.location.pathname));
  }

  go(path: string): void {
    if (path === this.path) return;
    this.#window.history.pushState({}, "", path);
    this.path = path;
    this.#window.scrollTo?.(0, 0);
  }
}

const KEY = Symbol("router");

export function setRouter(router: Router): Router {
  return setContext(KEY, router);
}

export function getRouter(): Router {
  return getContext<Router>(KEY);
}
