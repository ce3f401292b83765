import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createRouterTransport, type Transport } from "@connectrpc/connect";
import { CommandBus, CommandResultSchema, type CommandRequest } from "$gen/myko/v1/command_pb";
import { WatermarkSchema } from "$gen/myko/v1/item_pb";
import { LiveBus, LiveFrameSchema, type LiveFrame, type LiveSubscribe } from "$gen/myko/v1/live_pb";
import { QueryResultSchema } from "$gen/myko/v1/query_pb";
import { ReportResultSchema } from "$gen/myko/v1/report_pb";

/** An in-memory gateway for tests: LiveBus and CommandBus, driven by the test. */
export class FakeGateway {
  subscribes: LiveSubscribe[] = [];
  unsubscribes: string[] = [];
  commands: CommandRequest[] = [];
  opens = 0;
  commandError: ConnectError | null = null;
  readonly transport: Transport;
  #push: ((f: LiveFrame | Error) => void) | null = null;
  #sessionId = "";

  constructor() {
    this.transport = createRouterTransport(({ service }) => {
      service(LiveBus, {
        open: (_req, ctx) => this.#open(ctx.signal),
        subscribe: (req) => {
          if (req.sessionId !== this.#sessionId) throw new ConnectError("no such session", Code.NotFound);
          this.subscribes.push(req);
          return {};
        },
        unsubscribe: (req) => {
          this.unsubscribes.push(req.subId);
          return {};
        },
      });
      service(CommandBus, {
        execute: (req) => {
          this.commands.push(req);
          if (this.commandError) throw this.commandError;
          return create(CommandResultSchema, {
            tx: req.tx,
            commandType: req.command?.typeUrl.split("/").pop() ?? "",
            visibleAt: create(WatermarkSchema, { positions: [{ topic: "app.v1.Target", partition: 0, offset: 5n }] }),
          });
        },
      });
    });
  }

  get connected(): boolean {
    return this.#push !== null;
  }

  /** The latest subscription for a sub id. */
  lastSubscribe(): LiveSubscribe {
    const last = this.subscribes.at(-1);
    if (!last) throw new Error("no subscription yet");
    return last;
  }

  emitQuery<Desc extends DescMessage>(
    subId: string,
    itemSchema: Desc,
    items: MessageInitShape<Desc>[],
    offset = 0n,
  ): void {
    const result = create(QueryResultSchema, {
      items: items.map((i) => anyPack(itemSchema, create(itemSchema, i))),
      watermark: { positions: [{ topic: "app.v1.Target", partition: 0, offset }] },
      seq: 1n,
    });
    this.#send(create(LiveFrameSchema, { subId, body: { case: "query", value: result } }));
  }

  emitReport<Desc extends DescMessage>(subId: string, schema: Desc, value: MessageInitShape<Desc>): void {
    const result = create(ReportResultSchema, { value: anyPack(schema, create(schema, value)), seq: 1n });
    this.#send(create(LiveFrameSchema, { subId, body: { case: "report", value: result } }));
  }

  emitError(subId: string, code: Code, message: string): void {
    this.#send(create(LiveFrameSchema, { subId, body: { case: "error", value: { code, message } } }));
  }

  /** The connection breaks, as when the gateway restarts. */
  drop(): void {
    this.#push?.(new ConnectError("gateway went away", Code.Unavailable));
  }

  #send(frame: LiveFrame): void {
    if (!this.#push) throw new Error("no open session");
    this.#push(frame);
  }

  async *#open(signal: AbortSignal): AsyncGenerator<LiveFrame> {
    this.opens += 1;
    this.#sessionId = `session-${this.opens}`;
    const queue: (LiveFrame | Error)[] = [];
    let wake: (() => void) | null = null;
    this.#push = (f) => {
      queue.push(f);
      wake?.();
    };
    signal.addEventListener("abort", () => wake?.());
    yield create(LiveFrameSchema, {
      body: { case: "opened", value: { sessionId: this.#sessionId, heartbeatIntervalMs: 60_000 } },
    });
    try {
      while (!signal.aborted) {
        const next = queue.shift();
        if (next instanceof Error) throw next;
        if (next) {
          yield next;
          continue;
        }
        await new Promise<void>((r) => (wake = r));
      }
    } finally {
      this.#push = null;
      this.#sessionId = "";
    }
  }
}

/** Lets pending promises and Svelte effects run. */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 0));
}
