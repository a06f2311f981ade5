/**
 * Error types of the distributed layer. A distinct class per failure family lets the trainer tell a
 * configuration mistake (mismatch: fix the job and rerun) from a lost peer (the job died elsewhere) or a
 * timeout (a rank is stuck or never started), and lets tests assert the family, not only the text.
 */

export type DistributedErrorCode =
  | 'TIMEOUT'
  | 'MISMATCH'
  | 'PEER_LOST'
  | 'ABORTED'
  | 'AUTH'
  | 'PROTOCOL'
  | 'CONFIG'
  | 'CLOSED';

export class DistributedError extends Error {
  readonly code: DistributedErrorCode;
  constructor(code: DistributedErrorCode, message: string) {
    super(message);
    // The code in the name lands in every printed stack, which is how the launcher tells a worker that
    // failed only because a peer died (PEER_LOST, ABORTED) from the one that caused it.
    this.name = `DistributedError [${code}]`;
    this.code = code;
  }
}

/** Matches the output of a worker whose failure was a consequence of another rank's. */
export const SECONDARY_FAILURE = /DistributedError \[(PEER_LOST|ABORTED)\]/;

export type Logger = (message: string) => void;

/** The default logger writes to stderr so that stdout stays free for a worker's own results. */
export function stderrLogger(prefix: string): Logger {
  return (message: string) => {
    process.stderr.write(`${prefix} ${message}\n`);
  };
}
