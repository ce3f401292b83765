import { create, type DescMessage, type MessageInitShape } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createRouterTransport, type Interceptor, type Transport } from "@connectrpc/connect";
import { CommandBus, CommandResultSchema, type CommandRequest } from "../gen/myko/v1/command_pb.js";
import { WatermarkSchema } from "../gen/myko/v1/item_pb.js";
import { LiveBus, LiveFrameSchema, type LiveFrame, type LiveOpen, type LiveSubscription } from "../gen/myko/v1/live_pb.js";
import { QueryResultSchema } from "../gen/myko/v1/query_pb.js";
import { ReportResultSchema } from "../gen/myko/v1/report_pb.js";

/**
 * An in-memory gateway for component and library tests: LiveBus and CommandBus
 * over connect's router transport, driven by the test.
 *
 *     const gw = new FakeGateway();
 *     const session = new LiveSession(gw.transport);
 *     render(MyPage, { context: mykoContext({ session, commands: new Commands(gw.transport) }) });
 *     await settle();
 *     gw.emitQuery(gw.lastSub().subId, NoteSchema, [{ title: "a" }]);
 */
export class FakeGateway {
  /** Every Open request, oldest first. */
  opens: LiveOpen[] = [];
  /** The `authorization` header of each Open attempt (null: none), refused ones too. */
  openAuthorizations: (string | null)[] = [];
  /** The `authorization` header of each Execute. */
  commandAuthorizations: (string | null)[] = [];
  /** Refuses a call by its `authorization` header, as a gateway checking tokens would (null: accept). */
  authorize: ((authorization: string | null) => ConnectError | null) | null = null;
  /** Streams still open. */
  openStreams = 0;
  commands: CommandRequest[] = [];
  /** The `traceparent` header of each command, in the same order (null when none was sent). */
  commandTraceparents: (string | null)[] = [];
  commandError: ConnectError | null = null;
  /** The topic watermarks and visible_at name. */
  topic = "fake.v1.Entity";
  /** The offset the next command's visible_at asks for. */
  commandOffset = 5n;
  readonly transport: Transport;
  #push: ((f: LiveFrame | Error) => void) | null = null;

  /** `interceptors`: what the app's transport adds to each call (e.g. `bearer(tokens)`). */
  constructor({ interceptors = [] }: { interceptors?: Interceptor[] } = {}) {
    this.transport = createRouterTransport(({ service }) => {
      service(LiveBus, {
        open: (req, ctx) => {
          const authorization = ctx.requestHeader.get("authorization");
          this.openAuthorizations.push(authorization);
          const refused = this.authorize?.(authorization);
          if (refused) throw refused;
          return this.#open(req, ctx.signal);
        },
      });
      service(CommandBus, {
        execute: (req, ctx) => {
          const authorization = ctx.requestHeader.get("authorization");
          this.commandAuthorizations.push(authorization);
          const refused = this.authorize?.(authorization);
          if (refused) throw refused;
          this.commands.push(req);
          this.commandTraceparents.push(ctx.requestHeader.get("traceparent"));
          if (this.commandError) throw this.commandError;
          return create(CommandResultSchema, {
            tx: req.tx,
            commandType: req.command?.typeUrl.split("/").pop() ?? "",
            visibleAt: create(WatermarkSchema, {
              positions: [{ topic: this.topic, partition: 0, offset: this.commandOffset }],
            }),
          });
        },
      });
    }, { transport: { interceptors } });
  }

  get connected(): boolean {
    return this.#push !== null;
  }

  /** The subscriptions of the newest stream. */
  current(): LiveSubscription[] {
    return this.opens.at(-1)?.subscriptions ?? [];
  }

  /** The newest stream's last subscription. */
  lastSub(): LiveSubscription {
    const last = this.current().at(-1);
    if (!last) throw new Error("no subscription yet");
    return last;
  }

  /**
   * A query result for `subId` (several: one grouped frame naming them all);
   * `offset` is the watermark it reflects, `window` where a windowed query's
   * items sit (docs/windows.md).
   */
  emitQuery<Desc extends DescMessage>(
    subId: string | string[],
    itemSchema: Desc,
    items: MessageInitShape<Desc>[],
    offset = 0n,
    window?: { offset: bigint; total: bigint; counted: boolean },
  ): void {
    const result = create(QueryResultSchema, {
      items: items.map((i) => anyPack(itemSchema, create(itemSchema, i))),
      watermark: { positions: [{ topic: this.topic, partition: 0, offset }] },
      seq: 1n,
      window,
    });
    const [first, ...moreSubIds] = typeof subId === "string" ? [subId] : subId;
    this.#send(create(LiveFrameSchema, { subId: first, moreSubIds, body: { case: "query", value: result } }));
  }

  /** A report value for `subId`; `offset` is the watermark it reflects. */
  emitReport<Desc extends DescMessage>(subId: string, schema: Desc, value: MessageInitShape<Desc>, offset = 0n): void {
    const result = create(ReportResultSchema, {
      value: anyPack(schema, create(schema, value)),
      watermark: { positions: [{ topic: this.topic, partition: 0, offset }] },
      seq: 1n,
    });
    this.#send(create(LiveFrameSchema, { subId, body: { case: "report", value: result } }));
  }

  /** The subscription ends with this status (retryable codes make the client resubscribe). */
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

  async *#open(req: LiveOpen, signal: AbortSignal): AsyncGenerator<LiveFrame> {
    this.opens.push(req);
    this.openStreams += 1;
    const queue: (LiveFrame | Error)[] = [];
    let wake: (() => void) | null = null;
    const push = (f: LiveFrame | Error) => {
      queue.push(f);
      wake?.();
    };
    this.#push = push;
    signal.addEventListener("abort", () => wake?.());
    yield create(LiveFrameSchema, {
      body: { case: "opened", value: { heartbeatIntervalMs: 60_000 } },
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
      this.openStreams -= 1;
      if (this.#push === push) this.#push = null;
    }
  }
}

/** Lets pending promises and Svelte effects run. */
export async function settle(rounds = 10): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setTimeout(r, 0));
}
