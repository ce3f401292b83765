import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const START_TIMEOUT_MS = 300_000;
const STOP_TIMEOUT_MS = 60_000;

interface Ready {
  gateway: string;
  control: string;
  idp: string;
  tokenTtlS: number;
  clients: Record<string, string>;
}

/**
 * Starts `python -m devtools.ui_stack` (Kafka + the identity provider + services +
 * gateway on free ports) and returns the teardown that stops it. With
 * MYKO_E2E_GATEWAY set, an already running stack is used instead (the restart
 * tests then skip; MYKO_E2E_IDP and MYKO_E2E_CLIENTS must describe its provider).
 */
export default async function globalSetup(): Promise<() => Promise<void>> {
  if (process.env.MYKO_E2E_GATEWAY) return async () => {};
  const python = process.env.MYKO_PYTHON ?? `${ROOT}.venv/bin/python`;
  const child = spawn(python, ["-m", "devtools.ui_stack"], { cwd: ROOT, stdio: ["pipe", "pipe", "inherit"] });
  const ready = await waitReady(child);
  process.env.MYKO_E2E_GATEWAY = ready.gateway;
  process.env.MYKO_E2E_CONTROL = ready.control;
  process.env.MYKO_E2E_IDP = ready.idp;
  process.env.MYKO_E2E_TOKEN_TTL_S = String(ready.tokenTtlS);
  process.env.MYKO_E2E_CLIENTS = JSON.stringify(ready.clients);
  return () => stop(child);
}

function waitReady(child: ChildProcess): Promise<Ready> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void stop(child);
      reject(new Error(`the test stack was not ready within ${START_TIMEOUT_MS / 1000}s`));
    }, START_TIMEOUT_MS);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the test stack exited (${code}) before it was ready; see .run/e2e/logs/`));
    });
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      if (!line.startsWith("{")) return;
      clearTimeout(timer);
      resolve(JSON.parse(line) as Ready);
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  // Closing stdin asks the stack to stop everything it started.
  child.stdin?.end();
  const timer = setTimeout(() => child.kill("SIGTERM"), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
