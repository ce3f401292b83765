import { getContext, setContext } from "svelte";
import type { Commands } from "./commands.js";
import type { LiveSession } from "./live-session.svelte.js";

/** What the app's components reach the backend through; built once in main.ts. */
export interface Myko {
  session: LiveSession;
  commands: Commands;
}

const KEY = Symbol("myko");

export function setMyko(myko: Myko): Myko {
  return setContext(KEY, myko);
}

export function getMyko(): Myko {
  const myko = getContext<Myko | undefined>(KEY);
  if (!myko) throw new Error("getMyko(): no Myko in context; wrap the component in <MykoProvider>");
  return myko;
}

/** The context map to render a component with (tests, islands) without a provider. */
export function mykoContext(myko: Myko): Map<symbol, Myko> {
  return new Map([[KEY, myko]]);
}
