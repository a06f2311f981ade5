/**
 * `node dist/distributed/cli.js --nproc N [--nnodes M --node-rank K] [--gpus] [--master-addr A]
 *  [--master-port P] [--grace-ms MS] [--] script.js [args...]`: the launcher as a process, exiting non-zero with the
 * failure report on stderr when a worker dies. The train command's --nproc calls `launch` directly.
 */
import { launch, LaunchOptions } from './launcher';

export function parseLaunchArgs(argv: string[]): LaunchOptions {
  let nproc = 1;
  let nnodes: number | undefined;
  let nodeRank: number | undefined;
  let gpus = false;
  let masterAddr: string | undefined;
  let masterPort: number | undefined;
  let graceMs: number | undefined;
  let i = 0;
  const value = (flag: string): string => {
    const v = argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    return v;
  };
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('--')) break;
    if (a === '--nproc') nproc = Number(value(a));
    else if (a === '--nnodes') nnodes = Number(value(a));
    else if (a === '--node-rank') nodeRank = Number(value(a));
    else if (a === '--gpus') gpus = true;
    else if (a === '--master-addr') masterAddr = value(a);
    else if (a === '--master-port') masterPort = Number(value(a));
    else if (a === '--grace-ms') graceMs = Number(value(a));
    else throw new Error(`unknown option ${a}`);
  }
  const script = argv[i];
  if (script === undefined) throw new Error('usage: cli.js --nproc N [--nnodes M --node-rank K] [--gpus] [--master-addr A] [--master-port P] [--grace-ms MS] [--] script.js [args...]');
  return { script, args: argv.slice(i + 1), nproc, nnodes, nodeRank, gpus, masterAddr, masterPort, graceMs };
}

export async function main(argv: string[]): Promise<number> {
  const options = parseLaunchArgs(argv);
  const result = await launch(options);
  if (result.message !== null) process.stderr.write(`janus4o launch: ${result.message}\n`);
  return result.exitCode;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`janus4o launch: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
