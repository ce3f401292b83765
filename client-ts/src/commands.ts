import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { CommandBus, type CommandResult } from "./gen/myko/v1/command_pb.js";
import { pack } from "./requests.js";
import { newTraceparent, traceIdOf } from "./trace.js";

/**
 * Runs commands; each gets a fresh transaction UUID made here, in the browser,
 * and a W3C `traceparent` starting its trace (trace.ts; `traceparent: () => undefined` sends none).
 */
export class Commands {
  readonly #client: Client<typeof CommandBus>;
  readonly #timeoutMs: number;
  readonly #newTx: () => string;
  readonly #traceparent: () => string | undefined;
  /** The trace id of the last command sent, to look it up in a tracing backend or the logs. */
  lastTraceId: string | undefined;

  constructor(
    transport: Transport,
    {
      timeoutMs = 10_000,
      newTx = () => crypto.randomUUID(),
      traceparent = (): string | undefined => newTraceparent(),
    } = {},
  ) {
    this.#client = createClient(CommandBus, transport);
    this.#timeoutMs = timeoutMs;
    this.#newTx = newTx;
    this.#traceparent = traceparent;
  }

  /** Rejects with a ConnectError carrying the service's status (e.g. INVALID_ARGUMENT). */
  execute<Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>, tx = this.#newTx()): Promise<CommandResult> {
    const traceparent = this.#traceparent();
    this.lastTraceId = traceparent === undefined ? undefined : traceIdOf(traceparent);
    return this.#client.execute(
      { tx, command: pack(schema, init) },
      { timeoutMs: this.#timeoutMs, headers: traceparent === undefined ? undefined : { traceparent } },
    );
  }
}
