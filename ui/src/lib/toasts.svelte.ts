import { getContext, setContext } from "svelte";

export interface Toast {
  id: number;
  kind: "ok" | "error";
  text: string;
}

/** Short-lived messages: command outcomes, including errors the user must see. */
export class Toasts {
  items = $state<Toast[]>([]);
  #next = 0;

  show(kind: Toast["kind"], text: string, ms = kind === "error" ? 8000 : 3500): void {
    const toast = { id: ++this.#next, kind, text };
    this.items = [...this.items, toast];
    setTimeout(() => this.dismiss(toast.id), ms);
  }

  dismiss(id: number): void {
    this.items = this.items.filter((t) => t.id !== id);
  }
}

const KEY = Symbol("toasts");

/** The app's one toast queue, for every page and component below App. */
export function setToasts(toasts: Toasts): Toasts {
  return setContext(KEY, toasts);
}

export function getToasts(): Toasts {
  const toasts = getContext<Toasts | undefined>(KEY);
  if (!toasts) throw new Error("getToasts(): no toast queue in context (App sets it)");
  return toasts;
}
