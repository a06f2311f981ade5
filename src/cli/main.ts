#!/usr/bin/env node
/** The `janus4o` command line. One file per command under src/cli/; this file only wires them up. */
import yargs, { MiddlewareFunction } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { COMMANDS, KnownOptions, unknownOption } from './commands';
import { UserError, reportCliError } from '../errors';
import { setConfigOverrides } from './overrides';
import { splitOverrideArgs } from '../train/config';

async function main(): Promise<void> {
  const { overrides, rest } = splitOverrideArgs(hideBin(process.argv));
  setConfigOverrides(overrides);
  const commands = new Set(COMMANDS.map((c) => String(c.command).split(' ')[0]));
  let cli = yargs(rest)
    .scriptName('janus4o')
    .strict()
    .demandCommand(1, 'Name a command (see --help).')
    .recommendCommands()
    .help()
    // Before yargs' own validation: a mistyped flag gets its suggestion even when it also leaves a required option unset.
    // (yargs passes its instance as the second argument; its type declarations leave that and getOptions() out.)
    .middleware(((argv: { _: (string | number)[] }, y: { getOptions(): KnownOptions }) => {
      const command = String(argv._[0] ?? '');
      if (!commands.has(command)) return;
      const err = unknownOption(rest.slice(rest.indexOf(command) + 1), command, y.getOptions());
      if (err) throw err;
    }) as unknown as MiddlewareFunction, true)
    .fail((msg, err) => {
      // recommendCommands() says only "Did you mean train?": name what was typed.
      const first = rest.find((x) => !x.startsWith('-'));
      throw err ?? new UserError(/^Did you mean /.test(msg) && first ? `unknown command ${first}: ${msg.charAt(0).toLowerCase()}${msg.slice(1)}` : msg);
    });
  for (const c of COMMANDS) cli = cli.command(c);
  await cli.parseAsync();
}

main().catch((e: unknown) => {
  process.exitCode = reportCliError(e);
});
