import { getContext, setContext } from "svelte";
import type { Auth } from "./auth.svelte";

/**
 * Which controls the signed-in user gets. It mirrors the example's policies
 * (examples/targets: commands need the operator role, queries and reports
 * viewer or operator) so a viewer sees writes disabled rather than refused;
 * the services enforce the policies whatever the page shows.
 */
export const WRITER_ROLES: readonly string[] = ["operator"];

export interface Access {
  /** May change targets and zones. */
  readonly canWrite: boolean;
  /** Why not, for the page to say (empty when allowed). */
  readonly readOnlyReason: string;
}

export function accessOf(auth: Auth): Access {
  return {
    get canWrite() {
      if (auth.status === "disabled") return true;
      return auth.identity?.roles.some((r) => WRITER_ROLES.includes(r)) ?? false;
    },
    get readOnlyReason() {
      if (this.canWrite) return "";
      const roles = auth.identity?.roles.join(", ") || "no role";
      return `Read only: you are signed in as ${roles}; changes need the ${WRITER_ROLES.join(" or ")} role.`;
    },
  };
}

const KEY = Symbol("access");

export function setAccess(access: Access): Access {
  return setContext(KEY, access);
}

export function getAccess(): Access {
  const access = getContext<Access | undefined>(KEY);
  if (!access) throw new Error("getAccess(): no Access in context (App sets it)");
  return access;
}

/** The context for a component test: everything allowed, or read-only. */
export function accessContext(canWrite = true): Map<symbol, Access> {
  return new Map([[KEY, { canWrite, readOnlyReason: canWrite ? "" : "Read only: test viewer." }]]);
}
