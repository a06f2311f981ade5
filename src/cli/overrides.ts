/**
 * Dotted config overrides (`--train.lr 1e-5`) are taken off the command line before yargs sees it (yargs would
 * turn them into nested objects and strict mode would reject them); train and resume read them from here.
 */
import { Override } from '../train/config';

let current: Override[] = [];

export function setConfigOverrides(o: Override[]): void {
  current = o;
}

export function configOverrides(): Override[] {
  return current;
}
