/**
 * Command-line flags through the compiled CLI: a mistyped flag gets the nearest known one (as mistyped config
 * keys and commands do), and --nproc below 1 is refused instead of quietly training one process.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { unknownOption } from '../src/cli/commands';

const ROOT = path.resolve(__dirname, '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'main.js');

function cli(args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, encoding: 'utf8' });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectRefused(r: { code: number | null; stderr: string }, ...parts: (string | RegExp)[]): void {
  expect(r.code).toBe(2);
  expect(r.stderr).not.toMatch(/\n\s+at |JANUS4O_DEBUG/);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  for (const p of parts) expect(r.stderr).toMatch(p);
}

describe('a mistyped flag gets a suggestion', () => {
  test('generate --promt: did you mean --prompt (even though --prompt, required, is then missing)', () => {
    expectRefused(cli(['generate', '--checkpoint', 'x', '--promt', 'a red circle']), /unknown option --promt for `janus4o generate` \(did you mean --prompt\?\)/);
  });
  test('train --confg=FILE, --no-progres, --nporc', () => {
    expectRefused(cli(['train', '--confg=configs/tiny.yaml']), /unknown option --confg .*\(did you mean --config\?\)/);
    expectRefused(cli(['train', '--config', 'configs/tiny.yaml', '--no-progres']), /unknown option --no-progres .*\(did you mean --no-progress\?\)/);
    expectRefused(cli(['resume', '--checkpoint', 'x', '--nporc', '2']), /unknown option --nporc for `janus4o resume` \(did you mean --nproc\?\)/);
  });
  test('nothing close: the command\'s --help is named instead', () => {
    expectRefused(cli(['train', '--config', 'configs/tiny.yaml', '--xyzzy', '1']), /unknown option --xyzzy for `janus4o train`; see `janus4o train --help`/);
  });
  test('a mistyped command names what was typed', () => {
    expectRefused(cli(['trian', '--config', 'configs/tiny.yaml']), /unknown command trian: did you mean train\?/);
  });
  test('known flags in every spelling pass the check', () => {
    const known = { key: { config: true, 'allow-change': true, progress: true, n: true, help: true }, alias: { n: ['num'] } };
    for (const args of [['--config', 'x'], ['--config=x'], ['--allow-change', 'a'], ['--allowChange', 'a'], ['--no-progress'], ['-n', '2'], ['--num', '2'], ['--help'], ['--', '--whatever']]) {
      expect(unknownOption(args, 'train', known)).toBeNull();
    }
    expect(unknownOption(['--alow-change', 'a'], 'train', known)?.message).toMatch(/did you mean --allow-change\?/);
  });
});

describe('--nproc below 1 is refused', () => {
  let tmp: string;
  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-flags-'));
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test.each(['0', '-1', '1.5', 'two'])('train --nproc %s', (n) => {
    const cfg = path.join(tmp, 'c.yaml');
    fs.writeFileSync(cfg, `model:\n  preset: tiny\ndata:\n  kind: shapeworld\n  root: ${path.join(tmp, 'data')}\ncheckpoint:\n  dir: ${path.join(tmp, 'run')}\nbackend: cpu\n`);
    expectRefused(cli(['train', '--config', cfg, '--nproc', n, '--no-progress']), /--nproc must be a positive integer/);
    // Refused before anything ran: no dataset written, no checkpoint folder.
    expect(fs.existsSync(path.join(tmp, 'data'))).toBe(false);
    expect(fs.existsSync(path.join(tmp, 'run'))).toBe(false);
  });
  test('resume --nproc 0', () => {
    expectRefused(cli(['resume', '--checkpoint', path.join(tmp, 'nowhere'), '--nproc', '0']), /--nproc must be a positive integer .*got 0/);
  });
});
