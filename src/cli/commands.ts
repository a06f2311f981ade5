/** Every `janus4o` sub-command, in help order. */
import type { CommandModule } from 'yargs';
import { UserError } from '../errors';
import { nearestKey } from '../train/config';
import { benchCommand } from './bench';
import { editCommand } from './edit';
import { evalCommand } from './eval';
import { generateCommand } from './generate';
import { convertCommand } from './convert';
import { exportCommand } from './export';
import { planCommand } from './plan';
import { prepareCommand } from './prepare';
import { synthCommand } from './synth';
import { resumeCommand, trainCommand } from './train';
import { trainVQCommand } from './train_vq';

// Commands take heterogeneous argument types; yargs' CommandModule<{}, any> is its own idiom for a list of them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const COMMANDS: CommandModule<object, any>[] = [trainCommand, resumeCommand, trainVQCommand, synthCommand, prepareCommand, generateCommand, editCommand, evalCommand, convertCommand, exportCommand, planCommand, benchCommand];

/** What yargs knows of the options in scope (its getOptions(), which its type declarations leave out). */
export interface KnownOptions {
  key: Record<string, unknown>;
  alias: Record<string, string[]>;
}

const camel = (s: string) => s.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

/**
 * The first `--flag` among `args` that the command does not know, as a UserError with the nearest known one
 * (`unknown option --promt (did you mean --prompt?)`), or null. yargs' strict mode refuses such a flag without a
 * suggestion, and a missing required option would be reported before it. Dotted config overrides were taken off
 * the line before (their typos get suggestions from the config schema).
 */
export function unknownOption(args: readonly string[], command: string, known: KnownOptions): UserError | null {
  const names = new Set<string>();
  for (const k of [...Object.keys(known.key), ...Object.values(known.alias).flat()]) names.add(k).add(camel(k));
  const long = [...names].filter((n) => n.length > 1 && !n.includes('$'));
  for (const arg of args) {
    if (arg === '--') break;
    const m = /^--([^=]+)/.exec(arg);
    if (!m) continue;
    const name = m[1];
    if (names.has(name) || (name.startsWith('no-') && names.has(name.slice(3)))) continue;
    const near = nearestKey(name.startsWith('no-') ? name.slice(3) : name, long);
    const suggestion = near ? ` (did you mean --${name.startsWith('no-') ? 'no-' : ''}${near}?)` : '';
    return new UserError(`unknown option --${name} for \`janus4o ${command}\`${suggestion}; see \`janus4o ${command} --help\` for its options.`);
  }
  return null;
}
