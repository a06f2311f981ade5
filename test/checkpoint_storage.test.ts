/**
 * A checkpoint that cannot be written (disk full, read-only or unwritable folder) ends the run with a message that
 * says so, names the checkpoint folder and the last good step; the previous checkpoint stays valid, and once the
 * space is back the run resumes from it bit-identical to one that never failed. Faults are injected through the
 * seam of src/io/atomic.ts (setWriteFault), at every stage of a save.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../src/backend';
import { UserError } from '../src/errors';
import { setWriteFault } from '../src/io/atomic';
import { findLatestCheckpoint, loadCheckpoint } from '../src/io/checkpoint';
import { Trainer } from '../src/train/trainer';
import { fixtureData, fixtureModel, fixtureTemplates, fixtureTrainConfig } from './train_fixture';

let tmp: string;
beforeAll(async () => {
  await initBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-ckpt-storage-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
afterEach(() => setWriteFault(null));

const STEPS = 4;

function trainer(dir: string): Trainer {
  const { data, tok } = fixtureData(12);
  const cfg = fixtureTrainConfig(dir, { max_steps: STEPS, micro_batch: 2, grad_accum: 1 });
  cfg.checkpoint.keep = 10;
  return new Trainer(fixtureModel(4), cfg, data, fixtureTemplates(tok));
}

function errnoError(code: string, syscall: string, file: string): NodeJS.ErrnoException {
  const text: Record<string, string> = { ENOSPC: 'no space left on device', EROFS: 'read-only file system', EACCES: 'permission denied' };
  return Object.assign(new Error(`${code}: ${text[code]}, ${syscall} '${file}'`), { code, syscall, path: file, errno: -1 });
}

const bytes = (dir: string, f: string) => fs.readFileSync(path.join(dir, f));

let straight: string;
beforeAll(async () => {
  straight = path.join(tmp, 'straight');
  const t = trainer(straight);
  await t.run();
  t.model.dispose();
});

const inStep3 = (file: string) => file.includes('.tmp-step-000003');
describe.each([
  ['ENOSPC', 'writing an optimizer shard', (op: string, f: string) => op === 'write' && inStep3(f) && f.includes('optimizer'), /the disk is full \(ENOSPC\)/, /Free space on that disk/],
  ['ENOSPC', 'writing model.safetensors', (op: string, f: string) => op === 'write' && inStep3(f) && f.endsWith('model.safetensors'), /the disk is full \(ENOSPC\)/, /Free space on that disk/],
  ['ENOSPC', 'writing the latest pointer', (op: string, f: string) => op === 'write' && path.basename(f).startsWith('latest.tmp-') && fs.existsSync(path.join(path.dirname(f), 'step-000003')), /the disk is full \(ENOSPC\)/, /Free space on that disk/],
  ['EROFS', 'creating the temp folder', (op: string, f: string) => op === 'mkdir' && inStep3(f), /the file system is read-only \(EROFS\)/, /writable/],
  ['EACCES', 'renaming it into place', (op: string, f: string) => op === 'rename' && f.endsWith('step-000003'), /permission denied: the folder is not writable \(EACCES\)/, /writable/],
] as const)('%s while %s of the step-3 checkpoint', (code, what, when, says, fix) => {
  test('says so with the folder and the last good step; step 2 stays valid; resume after the fix is bit-identical', async () => {
    const run = path.join(tmp, `${code}-${what.replace(/\W/g, '-')}`);
    setWriteFault((op, file) => {
      if (when(op, file)) throw errnoError(code, op, file);
    });
    const t = trainer(run);
    let err: unknown = null;
    await t.run().catch((e: unknown) => (err = e));
    t.model.dispose();
    setWriteFault(null);
    // The message: what happened, where, the last good step and how to go on, one paragraph.
    expect(err).toBeInstanceOf(UserError);
    const msg = (err as Error).message;
    expect(msg).not.toMatch(/\n/);
    expect(msg).toContain(`Cannot write the checkpoint of step 3 in ${run}`);
    expect(msg).toMatch(says);
    expect(msg).toMatch(fix);
    expect(msg).toContain(`The last good checkpoint is ${path.join(run, 'step-000002')} (step 2)`);
    expect(msg).toContain(`janus4o resume --checkpoint ${run}`);
    // The previous checkpoint is intact and is what `latest` names; the failed save left nothing half-written.
    expect(fs.readFileSync(path.join(run, 'latest'), 'utf8').trim()).toBe('step-000002');
    const latest = await findLatestCheckpoint(run);
    expect(latest).toBe(path.join(run, 'step-000002'));
    const ck = await loadCheckpoint(latest!);
    expect(ck.trainerState.step).toBe(2);
    expect(fs.readdirSync(run).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
    // Space freed (fault gone): resuming from the last good checkpoint ends exactly where the straight run ended.
    const again = trainer(run);
    await again.restore(ck);
    await again.run();
    again.model.dispose();
    const last = `step-${String(STEPS).padStart(6, '0')}`;
    for (const f of ['model.safetensors', 'optimizer/rank-00000-of-00001.safetensors']) {
      expect(Buffer.compare(bytes(path.join(straight, last), f), bytes(path.join(run, last), f))).toBe(0);
    }
  });
});

test('a disk that fills before any checkpoint says there is none yet', async () => {
  const run = path.join(tmp, 'first');
  setWriteFault((o, file) => {
    if (o === 'write' && file.includes('.tmp-step-000001')) throw errnoError('ENOSPC', o, file);
  });
  const t = trainer(run);
  const err = await t.run().then(() => null, (e: unknown) => e);
  t.model.dispose();
  expect(err).toBeInstanceOf(UserError);
  expect((err as Error).message).toMatch(/Cannot write the checkpoint of step 1 in .*first.*the disk is full \(ENOSPC\)\. No checkpoint of this run had been completed yet\./);
  expect(await findLatestCheckpoint(run)).toBeNull();
});

test('other errors are not dressed up as storage errors', async () => {
  const run = path.join(tmp, 'other');
  setWriteFault((o, file) => {
    if (file.includes('.tmp-step-000002')) throw new Error('something else');
  });
  const t = trainer(run);
  const err = await t.run().then(() => null, (e: unknown) => e);
  t.model.dispose();
  expect(err).not.toBeInstanceOf(UserError);
  expect((err as Error).message).toBe('something else');
});

test('a full disk at the training log says so too', async () => {
  const run = path.join(tmp, 'log');
  const realFs = jest.requireActual<typeof fs>('fs');
  const spy = jest.spyOn(realFs, 'appendFileSync').mockImplementationOnce((file) => {
    throw errnoError('ENOSPC', 'write', String(file));
  });
  try {
    const t = trainer(run);
    const err = await t.run().then(() => null, (e: unknown) => e);
    t.model.dispose();
    expect(err).toBeInstanceOf(UserError);
    expect((err as Error).message).toBe(
      `Cannot write step 1 to the training log ${path.join(run, 'train_log.jsonl')}: the disk is full (ENOSPC). No checkpoint of this run had been completed yet. Free space on that disk, then start the run again.`,
    );
  } finally {
    spy.mockRestore();
  }
});
