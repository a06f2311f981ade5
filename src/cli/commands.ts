/** Every `janus4o` sub-command, in help order. */
import type { CommandModule } from 'yargs';
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
