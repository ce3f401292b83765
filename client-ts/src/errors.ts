import { Code, ConnectError } from "@connectrpc/connect";

/** Codes worth retrying: the server or the path to it was away, not the request wrong. */
const RETRYABLE = new Set([Code.Unavailable, Code.Unknown, Code.Internal, Code.DeadlineExceeded, Code.Aborted]);

export function isRetryable(err: ConnectError): boolean {
  return RETRYABLE.has(err.code);
}

/** What to tell a person, in one sentence. */
export function describeError(err: unknown): string {
  const e = ConnectError.from(err);
  switch (e.code) {
    case Code.InvalidArgument:
      return `Invalid input: ${e.rawMessage}`;
    case Code.FailedPrecondition:
      return `Rejected: ${e.rawMessage}`;
    case Code.NotFound:
      return `Not found: ${e.rawMessage}`;
    case Code.PermissionDenied:
      return `Not allowed: ${e.rawMessage}`;
    case Code.Unauthenticated:
      return `Not signed in, or the sign-in has expired: ${e.rawMessage}`;
    case Code.Unavailable:
      return "The server is unavailable. Try again in a moment.";
    case Code.DeadlineExceeded:
      return "The server took too long to answer.";
    case Code.Unimplemented:
      return `Not supported: ${e.rawMessage}`;
    default:
      return e.rawMessage || `Error (${Code[e.code]})`;
  }
}
