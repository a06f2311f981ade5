/**
 * User-facing failures: a one-paragraph message and a non-zero exit, never a bare stack trace. Set
 * JANUS4O_DEBUG=1 to see stacks.
 */
export class UserError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
    this.name = 'UserError';
  }
}

export function reportCliError(e: unknown): number {
  const err = e instanceof Error ? e : new Error(String(e));
  const debug = process.env.JANUS4O_DEBUG === '1';
  process.stderr.write(`janus4o: error: ${err.message}\n`);
  if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
  else if (!(err instanceof UserError)) process.stderr.write('(set JANUS4O_DEBUG=1 for a stack trace)\n');
  return err instanceof UserError ? err.exitCode : 1;
}
