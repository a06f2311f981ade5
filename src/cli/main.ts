#!/usr/bin/env node
/** The `janus4o` command line. One file per command under src/cli/; this file only wires them up. */
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { COMMANDS } from './commands';
import { UserError, reportCliError } from '../errors';
import { setConfigOverrides } from './overrides';
import { splitOverrideArgs } from '../train/config';

async function main(): Promise<void> {
  const { overrides, rest } = splitOverrideArgs(hideBin(process.argv));
  setConfigOverrides(overrides);
  let cli = yargs(rest)
    .scriptName('janus4o')
    .strict()
    .demandCommand(1, 'Name a command (see --help).')
    .recommendCommands()
    .help()
    .fail((msg, err) => {
      throw err ?? new UserError(msg);
    });
  for (const c of COMMANDS) cli = cli.command(c);
  await cli.parseAsync();
}

main().catch((e: unknown) => {
  process.exitCode = reportCliError(e);
});
