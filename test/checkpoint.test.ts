import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';
import seedrandom from 'seedrandom';
import { initBackend } from '../src/backend';
import { UserError } from '../src/errors';
import { ParamStore } from '../src/model/params';
import {
  cleanStaleCheckpointFiles,
  commitCheckpoint,
  findLatestCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  loadWeightsIntoStore,
  paramStoreWeights,
  prepareCheckpoint,
  pruneCheckpoints,
  resolveCheckpoint,
  saveCheckpoint,
  TrainerState,
  writeCheckpointFiles,
  writeOptimizerShard,
} from '../src/io/checkpoint';
import { AdamW } from '../src/train/optimizer';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const { expectedContent } = require('./workers/checkpoint_writer.js') as {
  expectedContent(step: number): {
    weights: Map<string, { shape: number[]; data: Float32Array }>;
    shards: { meta: { segments: { name: string }[] }; tensors: Map<string, Float32Array> }[];
  };
};

let tmp: string;
beforeAll(async () => {
  await initBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-ckpt-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function freshRoot(name: string): string {
  const d = path.join(tmp, name);
  fs.mkdirSync(d, { recursive: true });
  return d;
}

function state(step: number): TrainerState {
  return { step, epoch: 1, sampler: { epoch: 1, position: 17 }, rng: { mask: [1, 2, 3] }, schedule: { kind: 'warmup_cosine', position: step }, config_hash: 'ab'.repeat(32) };
}

/** A small model with linear, conv and plain parameters, and an AdamW that has taken two steps. */
async function trainedModel(): Promise<{ store: ParamStore; opt: AdamW }> {
  const store = new ParamStore();
  store.declare('language_model.model.layers.0.self_attn.q_proj.weight', [6, 4], 'linear', { kind: 'normal', std: 0.5 });
  store.declare('gen_vision_model.encoder.conv_in.weight', [3, 3, 2, 5], 'conv2d', { kind: 'normal', std: 0.5 });
  store.declare('gen_head.vision_head.bias', [7], 'plain', { kind: 'uniform', limit: 1 });
  store.materialize(3);
  const opt = new AdamW(store.list(), { weightDecay: 0.1 });
  const rng = seedrandom('g');
  for (let k = 0; k < 2; k++) {
    const grads = new Map(store.list().map((s) => [s.name, tf.tensor(Float32Array.from({ length: s.shape.reduce((a, b) => a * b, 1) }, () => rng() - 0.5), s.shape)] as const));
    opt.step(store, grads, 1e-2);
    for (const g of grads.values()) g.dispose();
  }
  return { store, opt };
}

async function simpleSave(root: string, step: number, keep: number, store: ParamStore, opt: AdamW, tokenizer: string[] = []): Promise<string> {
  return saveCheckpoint(root, { step, weights: paramStoreWeights(store), modelConfig: { model_type: 'multi_modality' }, trainConfig: { train: { lr: 0.1 } }, trainerState: state(step), tokenizerFiles: tokenizer }, [await opt.exportState()], keep);
}

describe('save and load', () => {
  test('round trip is bit-exact for weights and optimizer moments; the layout is as documented', async () => {
    const root = freshRoot('roundtrip');
    const { store, opt } = await trainedModel();
    const tok = path.join(tmp, 'tokenizer.json');
    fs.writeFileSync(tok, '{"model": {}}');
    const dir = await simpleSave(root, 123, 3, store, opt, [tok]);
    expect(path.basename(dir)).toBe('step-000123');
    expect(fs.readFileSync(path.join(root, 'latest'), 'utf8').trim()).toBe('step-000123');
    for (const f of ['model.safetensors', 'config.json', 'train_config.json', 'trainer_state.json', 'tokenizer.json', 'checkpoint.json', 'optimizer/rank-00000-of-00001.safetensors']) {
      expect(fs.existsSync(path.join(dir, f))).toBe(true);
    }
    const ck = await loadCheckpoint(await resolveCheckpoint('latest', root));
    expect(ck.trainerState).toEqual(state(123));
    expect(ck.modelConfig).toEqual({ model_type: 'multi_modality' });
    expect(ck.extraFiles.map((f) => path.basename(f))).toEqual(['tokenizer.json']);
    // Linear weights are stored [out, in] like PyTorch.
    expect(ck.weights.entries.get('language_model.model.layers.0.self_attn.q_proj.weight')!.shape).toEqual([4, 6]);
    const copy = new ParamStore();
    for (const s of store.list()) copy.declare(s.name, s.shape, s.layout, s.init);
    await loadWeightsIntoStore(ck.weights, copy);
    const a = await store.snapshot();
    const b = await copy.snapshot();
    for (const [name, data] of a) expect(Buffer.from(b.get(name)!.buffer).equals(Buffer.from(data.buffer))).toBe(true);
    const restored = new AdamW(store.list(), { weightDecay: 0.1 });
    await restored.importState(ck.optimizer);
    const before = await opt.exportState();
    const after = await restored.exportState();
    expect(after.meta).toEqual(before.meta);
    expect([...after.tensors.keys()]).toEqual([...before.tensors.keys()]);
    for (const [k, v] of before.tensors) expect(Buffer.from(after.tensors.get(k)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    // An asynchronous weight source (buffered before writing) gives the same bytes.
    const sync = paramStoreWeights(store);
    const asyncDir = await saveCheckpoint(
      freshRoot('roundtrip-async'),
      { step: 1, weights: { entries: sync.entries, read: async (n) => sync.read(n) }, modelConfig: {}, trainConfig: {}, trainerState: state(1) },
      [await opt.exportState()],
      1,
    );
    expect(fs.readFileSync(path.join(asyncDir, 'model.safetensors')).equals(fs.readFileSync(path.join(dir, 'model.safetensors')))).toBe(true);
    for (const o of [opt, restored]) o.dispose();
    store.dispose();
    copy.dispose();
  });

  test('ZeRO protocol: per-rank shards, committed once, re-sharded on load', async () => {
    const root = freshRoot('zero');
    const { store, opt } = await trainedModel();
    const ranks = [0, 1].map((r) => new AdamW(store.list(), { weightDecay: 0.1 }, { rank: r, worldSize: 2 }));
    const full = await opt.exportState();
    for (const r of ranks) await r.importState([{ meta: full.meta, read: async (k) => full.tensors.get(k)! }]);
    const tmpDir = await prepareCheckpoint(root, 5);
    await writeOptimizerShard(tmpDir, await ranks[0].exportState());
    await writeCheckpointFiles(tmpDir, { step: 5, weights: paramStoreWeights(store), modelConfig: {}, trainConfig: {}, trainerState: state(5) });
    // Rank 1 has not written yet: committing now must fail and leave no checkpoint.
    await expect(commitCheckpoint(root, tmpDir, 5, 2)).rejects.toThrow(/exactly one shard per rank/);
    expect(await findLatestCheckpoint(root)).toBeNull();
    await writeOptimizerShard(tmpDir, await ranks[1].exportState());
    const dir = await commitCheckpoint(root, tmpDir, 5, 2);
    const ck = await loadCheckpoint(dir);
    expect(ck.optimizer.map((s) => [s.meta.rank, s.meta.worldSize])).toEqual([[0, 2], [1, 2]]);
    const single = new AdamW(store.list(), { weightDecay: 0.1 });
    await single.importState(ck.optimizer);
    const again = await single.exportState();
    for (const [k, v] of full.tensors) expect(Buffer.from(again.tensors.get(k)!.buffer).equals(Buffer.from(v.buffer))).toBe(true);
    for (const o of [opt, single, ...ranks]) o.dispose();
    store.dispose();
  });

  test('keep-K prunes by commit order, never the one latest names; a rewound step gets a suffixed name', async () => {
    const root = freshRoot('keep');
    const { store, opt } = await trainedModel();
    for (const s of [1, 2, 3, 4, 5]) await simpleSave(root, s, 2, store, opt);
    expect((await listCheckpoints(root)).map((c) => c.name)).toEqual(['step-000004', 'step-000005']);
    // Resumed from step 3's state and reached step 5 again: both kept, the newer is latest.
    await simpleSave(root, 5, 3, store, opt);
    expect((await listCheckpoints(root)).map((c) => c.name)).toEqual(['step-000004', 'step-000005', 'step-000005-2']);
    expect(fs.readFileSync(path.join(root, 'latest'), 'utf8').trim()).toBe('step-000005-2');
    fs.writeFileSync(path.join(root, 'latest'), 'step-000004\n');
    expect(await pruneCheckpoints(root, 1)).toEqual(['step-000005']);
    expect((await listCheckpoints(root)).map((c) => c.name)).toEqual(['step-000004', 'step-000005-2']);
    opt.dispose();
    store.dispose();
  });

  test('resolveCheckpoint accepts latest, a root or a checkpoint, and explains failures', async () => {
    const root = freshRoot('resolve');
    const { store, opt } = await trainedModel();
    const d1 = await simpleSave(root, 1, 5, store, opt);
    const d2 = await simpleSave(root, 2, 5, store, opt);
    expect(await resolveCheckpoint('latest', root)).toBe(d2);
    expect(await resolveCheckpoint(root)).toBe(d2);
    expect(await resolveCheckpoint(d1)).toBe(d1);
    await expect(resolveCheckpoint(path.join(root, 'nope'))).rejects.toThrow(UserError);
    await expect(resolveCheckpoint('latest', freshRoot('empty'))).rejects.toThrow(/No complete checkpoint/);
    // A hand-deleted target: fall back to the newest complete checkpoint and say so.
    fs.rmSync(d2, { recursive: true });
    const warnings: string[] = [];
    expect(await resolveCheckpoint('latest', root, (m) => warnings.push(m))).toBe(d1);
    expect(warnings[0]).toMatch(/names step-000002, which is missing or incomplete; using step-000001/);
    opt.dispose();
    store.dispose();
  });

  test('load validates every file and names the bad one', async () => {
    const root = freshRoot('corrupt');
    const { store, opt } = await trainedModel();
    const dir = await simpleSave(root, 9, 5, store, opt);
    const copy = (name: string) => {
      const d = path.join(root, name);
      fs.cpSync(dir, d, { recursive: true });
      return d;
    };
    const trunc = copy('t1');
    fs.truncateSync(path.join(trunc, 'model.safetensors'), 100);
    await expect(loadCheckpoint(trunc)).rejects.toThrow(`Checkpoint file ${path.join(trunc, 'model.safetensors')} has 100 bytes, the manifest says`);
    const badJson = copy('t2');
    const stateFile = path.join(badJson, 'trainer_state.json');
    fs.writeFileSync(stateFile, '{"step": 9, "epoch": 1, "config_hash": "x"'.padEnd(fs.statSync(stateFile).size, ' '));
    await expect(loadCheckpoint(badJson)).rejects.toThrow(`Checkpoint file ${stateFile} is not valid JSON`);
    const noShard = copy('t3');
    fs.rmSync(path.join(noShard, 'optimizer/rank-00000-of-00001.safetensors'));
    await expect(loadCheckpoint(noShard)).rejects.toThrow(`Checkpoint file ${path.join(noShard, 'optimizer/rank-00000-of-00001.safetensors')} is missing`);
    const garbage = copy('t4');
    const w = path.join(garbage, 'model.safetensors');
    const buf = fs.readFileSync(w);
    buf.writeBigUInt64LE(BigInt(1e12), 0);
    fs.writeFileSync(w, buf);
    await expect(loadCheckpoint(garbage)).rejects.toThrow(`Checkpoint file ${w} cannot be read: safetensors ${w}: header length`);
    opt.dispose();
    store.dispose();
  });

  test('start-up cleanup removes only interrupted saves', async () => {
    const root = freshRoot('stale');
    const { store, opt } = await trainedModel();
    await simpleSave(root, 1, 5, store, opt);
    fs.mkdirSync(path.join(root, '.tmp-step-000002/optimizer'), { recursive: true });
    fs.mkdirSync(path.join(root, '.trash-step-000000'));
    fs.writeFileSync(path.join(root, 'latest.tmp-99-abcd'), 'step-000002');
    fs.mkdirSync(path.join(root, 'Janus-Pro-7B'));
    expect((await cleanStaleCheckpointFiles(root)).sort()).toEqual(['removed .tmp-step-000002', 'removed .trash-step-000000', 'removed latest.tmp-99-abcd']);
    expect(fs.readdirSync(root).sort()).toEqual(['Janus-Pro-7B', 'latest', 'step-000001']);
    // A save killed between its rename and the latest update: recovery publishes the complete checkpoint.
    await simpleSave(root, 2, 5, store, opt);
    fs.writeFileSync(path.join(root, 'latest'), 'step-000001\n');
    expect(await cleanStaleCheckpointFiles(root)).toEqual(['latest -> step-000002']);
    expect(fs.readFileSync(path.join(root, 'latest'), 'utf8')).toBe('step-000002\n');
    expect(await cleanStaleCheckpointFiles(root)).toEqual([]);
    // A save killed before its prune: recovery with keep prunes.
    expect(await cleanStaleCheckpointFiles(root, 1)).toEqual(['pruned step-000001']);
    opt.dispose();
    store.dispose();
  });
});

describe('crash safety', () => {
  const WORKER = path.join(__dirname, 'workers/checkpoint_writer.js');

  function runUntilKilled(root: string, delayMs: number): Promise<{ committed: number[]; out: string }> {
    return new Promise((resolve, reject) => {
      const child: ChildProcess = spawn(process.execPath, [WORKER, root, '2'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, CHECKPOINT_WRITER_CACHE: path.join(tmp, 'ts-cache') },
      });
      let out = '';
      let err = '';
      let timer: NodeJS.Timeout | undefined;
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        if (!timer && out.includes('ready')) timer = setTimeout(() => child.kill('SIGKILL'), delayMs);
      });
      child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
      child.on('exit', (code, signal) => {
        if (signal !== 'SIGKILL') reject(new Error(`worker exited with ${code}/${signal}: ${err}`));
        else resolve({ committed: [...out.matchAll(/committed (\d+)/g)].map((m) => Number(m[1])), out });
      });
    });
  }

  async function checkLatestIsComplete(root: string, minStep: number): Promise<number> {
    const latest = fs.readFileSync(path.join(root, 'latest'), 'utf8').trim();
    const ck = await loadCheckpoint(path.join(root, latest));
    const step = ck.trainerState.step;
    expect(step).toBeGreaterThanOrEqual(minStep);
    const want = expectedContent(step);
    for (const [name, t] of want.weights) {
      expect(ck.weights.entries.get(name)!.shape).toEqual(t.shape);
      expect(Buffer.from((await ck.weights.read(name)).buffer).equals(Buffer.from(t.data.buffer))).toBe(true);
    }
    for (const [rank, shard] of want.shards.entries()) {
      for (const [key, data] of shard.tensors) expect(Buffer.from((await ck.optimizer[rank].read(key)).buffer).equals(Buffer.from(data.buffer))).toBe(true);
    }
    return step;
  }

  test('SIGKILL at random moments never leaves latest naming an incomplete checkpoint (16 trials)', async () => {
    const root = freshRoot('crash');
    const rng = seedrandom('kills');
    let lastStep = 0;
    let interruptedSaves = 0;
    for (let trial = 0; trial < 16; trial++) {
      const { committed } = await runUntilKilled(root, Math.floor(rng() * 400));
      const entries = fs.readdirSync(root);
      if (entries.some((e) => e.startsWith('.tmp-') || e.startsWith('.trash-') || e.startsWith('latest.tmp'))) interruptedSaves++;
      if (!entries.includes('latest')) {
        // Killed before the first save published itself: at most that one complete, unpublished checkpoint.
        expect(committed).toEqual([]);
        expect((await listCheckpoints(root)).length).toBeLessThanOrEqual(1);
        continue;
      }
      const step = await checkLatestIsComplete(root, Math.max(lastStep, ...committed));
      // Never more than keep + 1 (a kill between commit and prune) complete checkpoints.
      expect((await listCheckpoints(root)).length).toBeLessThanOrEqual(3);
      lastStep = step;
    }
    // The kills did land inside saves, not only between them.
    expect(interruptedSaves).toBeGreaterThan(0);
    expect(lastStep).toBeGreaterThan(0);
    // The next start's recovery leaves no leftovers and latest naming the newest complete checkpoint.
    await cleanStaleCheckpointFiles(root, 2);
    expect(fs.readdirSync(root).filter((e) => e.startsWith('.') || e.includes('.tmp'))).toEqual([]);
    const all = await listCheckpoints(root);
    expect(fs.readFileSync(path.join(root, 'latest'), 'utf8').trim()).toBe(all[all.length - 1].name);
  }, 120000);
});
