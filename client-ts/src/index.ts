export { Backoff } from "./backoff.js";
export { Clock } from "./clock.svelte.js";
export { Commands } from "./commands.js";
export { getMyko, mykoContext, setMyko, type Myko } from "./context.js";
export {
  ContractError,
  declaredResult,
  defineQuery,
  defineReport,
  resolveQuery,
  resolveReport,
  type Query,
  type QueryDef,
  type Report,
  type ReportDef,
} from "./contract.js";
export { describeError, isRetryable } from "./errors.js";
export { LiveQuery } from "./live-query.svelte.js";
export { LiveReport } from "./live-report.svelte.js";
export {
  LiveSession,
  type Connection,
  type LiveListener,
  type LiveRequest,
  type LiveSessionOptions,
} from "./live-session.svelte.js";
export { type LiveStatus } from "./live-value.svelte.js";
export { pack } from "./requests.js";
export { relativeTime } from "./time.js";
export { newTraceparent, traceIdOf } from "./trace.js";
export { bearer, BearerToken, type TokenSource } from "./tokens.js";
export { gatewayTransport, type GatewayTransportOptions } from "./transport.js";
export { covers } from "./watermark.js";
// The framework messages an application handles most.
export type { CommandResult } from "./gen/myko/v1/command_pb.js";
export type { MItem, Watermark } from "./gen/myko/v1/item_pb.js";
// What every service instance reports about itself (a System page's query).
export { ServiceStatuses } from "./gen/myko/v1/system_myko.js";
export { ServiceState, type ServiceStatus } from "./gen/myko/v1/system_pb.js";
