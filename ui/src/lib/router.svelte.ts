import { getContext, setContext, type Component } from "svelte";

/**
 * One page of the app. `path` segments written `:name` match any one segment and
 * reach the page as the prop `name` (decoded). Pages with a `nav` label are
 * linked from the header; a link is shown active on its path and below it.
 */
export interface Page {
  path: string;
  // Pages declare their own props (the path parameters); any is the one honest type here.
  component: Component<any>;
  nav?: string;
}

export interface Match {
  page: Page;
  params: Record<string, string>;
}

/** The first page whose path matches, with its parameters; null when none does. */
export function matchPage(pages: readonly Page[], path: string): Match | null {
  const parts = path.split("/").filter(Boolean);
  for (const page of pages) {
    const pattern = page.path.split("/").filter(Boolean);
    if (pattern.length !== parts.length) continue;
    const params: Record<string, string> = {};
    const ok = pattern.every((seg, i) => {
      if (seg.startsWith(":")) {
        params[seg.slice(1)] = decodeURIComponent(parts[i]!);
        return true;
      }
      return seg === parts[i];
    });
    if (ok) return { page, params };
  }
  return null;
}

/** History-API routing over a page table; the gateway serves index.html for every page path. */
export class Router {
  path = $state("/");
  readonly pages: readonly Page[];
  match = $derived.by(() => matchPage(this.pages, this.path));
  readonly #window: Window;

  constructor(win: Window, pages: readonly Page[]) {
    this.#window = win;
    this.pages = pages;
    this.path = win.location.pathname;
    win.addEventListener("popstate", () => (this.path = win.location.pathname));
  }

  go(path: string): void {
    if (path === this.path) return;
    this.#window.history.pushState({}, "", path);
    this.path = path;
    this.#window.scrollTo?.(0, 0);
  }

  /** Whether a header link to `href` is the current section. */
  isActive(href: string): boolean {
    const page = this.match?.page;
    if (!page) return false;
    if (href === "/") return page.component === matchPage(this.pages, "/")?.page.component;
    return this.path === href || this.path.startsWith(`${href}/`);
  }
}

const KEY = Symbol("router");

export function setRouter(router: Router): Router {
  return setContext(KEY, router);
}

export function getRouter(): Router {
  return getContext<Router>(KEY);
}
