/** Every `janus4o` sub-command, in help order. */
import type { CommandModule } from 'yargs';
import { planCommand } from './plan';
import { synthCommand } from './synth';

// Commands take heterogeneous argument types; yargs' CommandModule<{}, any> is its own idiom for a list of them.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export const COMMANDS: CommandModule<object, any>[] = [planCommand, synthCommand];
