import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { CommandBus, type CommandResult } from "./gen/myko/v1/command_pb.js";
import { pack } from "./requests.js";

/** Runs commands; each gets a fresh transaction UUID made here, in the browser. */
export class Commands {
  readonly #client: Client<typeof CommandBus>;
  readonly #timeoutMs: number;
  readonly #newTx: () => string;

  constructor(transport: Transport, { timeoutMs = 10_000, newTx = () => crypto.randomUUID() } = {}) {
    this.#client = createClient(CommandBus, transport);
    this.#timeoutMs = timeoutMs;
    this.#newTx = newTx;
  }

  /** Rejects with a ConnectError carrying the service's status (e.g. INVALID_ARGUMENT). */
  execute<Desc extends DescMessage>(schema: Desc, init: MessageInitShape<Desc>, tx = this.#newTx()): Promise<CommandResult> {
    return this.#client.execute({ tx, command: pack(schema, init) }, { timeoutMs: this.#timeoutMs });
  }
}
