import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../src/backend';
import { readShareGPT4o } from '../src/data/sharegpt4o';
import { ImageEncoder, ImageLoader, ShardDataset, prepareShards } from '../src/data/shards';
import { synthesize } from '../src/shapeworld/synth';
import { WordTokenizer } from '../src/tokenizer/word';
import { WORDS, fixtureModel } from './train_fixture';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { fakeEncoder, fakeLoader } = require('./workers/fake_vq') as { fakeEncoder: () => ImageEncoder; fakeLoader: ImageLoader };

const ROOT = path.resolve(__dirname, '..');

function filesOf(dir: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const f of fs.readdirSync(dir).sort()) out.set(f, fs.readFileSync(path.join(dir, f)));
  return out;
}

describe('prepare (VQ-code shards)', () => {
  let tmp: string;
  let data: string;

  beforeAll(async () => {
    await initBackend('cpu');
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-shards-'));
    data = path.join(tmp, 'data');
    await synthesize({ out: data, t2i: 20, edit: 20, size: 64, seed: 3 });
  });
  afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

  test('killed mid-way and restarted, prepare writes the same shards as an uninterrupted run', async () => {
    const { records } = await readShareGPT4o({ root: data });
    const whole = path.join(tmp, 'whole');
    const index = await prepareShards({ records, root: data, outDir: whole, encoder: fakeEncoder(), loadImage: fakeLoader, shardSize: 8 });
    expect(index.shards).toHaveLength(5);

    const crashed = path.join(tmp, 'crashed');
    const child = spawn(process.execPath, [path.join(__dirname, 'workers', 'prepare_child.js'), data, crashed, '1'], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        if (d.toString().includes('STOPPED')) {
          child.kill('SIGKILL');
          resolve();
        }
      });
      child.on('exit', (code) => (code === 0 ? reject(new Error('child finished instead of stopping')) : undefined));
    });
    await new Promise((r) => child.on('close', r));
    expect(fs.existsSync(path.join(crashed, 'index.json'))).toBe(false);
    expect(fs.existsSync(path.join(crashed, 'shard-00001.jsonl'))).toBe(true);
    expect(fs.existsSync(path.join(crashed, 'shard-00002.bin'))).toBe(false);
    const committed: number[] = [];
    await prepareShards({ records, root: data, outDir: crashed, encoder: fakeEncoder(), loadImage: fakeLoader, shardSize: 8, onShard: (s) => committed.push(s) });
    expect(committed).toEqual([2, 3, 4]); // finished shards were skipped
    expect(filesOf(crashed)).toEqual(filesOf(whole));
  });

  test('the dataset reads back ids, prompts and provenance; corruption is detected', async () => {
    const ds = ShardDataset.load(path.join(tmp, 'whole'), data);
    expect(ds.size).toBe(40);
    const edits = Array.from({ length: ds.size }, (_, i) => i).filter((i) => ds.meta(i).task === 'edit');
    expect(edits).toHaveLength(20);
    const s = ds.sample(edits[0]);
    expect(s.target).toHaveLength(64);
    expect(s.source).toHaveLength(64);
    expect(fs.existsSync(ds.sourcePath(edits[0]))).toBe(true);
    // Ids equal a fresh encode of the same image.
    const img = await fakeLoader(path.join(data, ds.meta(edits[0]).output_image), 64);
    const ids = fakeEncoder().encode(img);
    expect(Array.from(s.target)).toEqual(Array.from(await ids.data()));
    img.dispose();
    ids.dispose();
    const bin = path.join(tmp, 'whole', 'shard-00003.bin');
    const bytes = fs.readFileSync(bin);
    bytes[10] ^= 1;
    fs.writeFileSync(bin, bytes);
    expect(() => ShardDataset.load(path.join(tmp, 'whole'), data)).toThrow(/shard-00003: checksum mismatch/);
  });

  test('shards of another encoder are never mixed in', async () => {
    const { records } = await readShareGPT4o({ root: data });
    const other = { ...fakeEncoder(), fingerprint: 'other' };
    await expect(prepareShards({ records, root: data, outDir: path.join(tmp, 'crashed'), encoder: other, loadImage: fakeLoader })).rejects.toThrow(/holds shards of another VQ encoder/);
  });

  test('janus4o prepare: shards with the model\'s VQ tokenizer and a report of skipped records', () => {
    const out = path.join(tmp, 'cli');
    // A saved model folder (config.json + model.safetensors + tokenizer.json) whose VQ encodes 32 px images.
    const modelDir = path.join(tmp, 'model');
    const model = fixtureModel(4);
    model.save(modelDir);
    model.dispose();
    fs.writeFileSync(path.join(modelDir, 'tokenizer.json'), WordTokenizer.build(WORDS).toJSON());
    // One broken record out of 41 (2.4%): allowed with --max-bad-fraction 0.05, listed in report.json.
    const file = path.join(data, 'text_to_image.json');
    const original = fs.readFileSync(file, 'utf8');
    const recs = JSON.parse(original) as unknown[];
    fs.writeFileSync(file, JSON.stringify([...recs, { input_prompt: 'a circle', output_image: '../outside.png' }]));
    const args = ['prepare', '--data', data, '--checkpoint', modelDir, '--out', out, '--backend', 'cpu', '--no-progress', '--max-bad-fraction', '0.05', '--shard-size', '16'];
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), ...args], { cwd: ROOT, encoding: 'utf8' });
    fs.writeFileSync(file, original);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    if (r.status !== 0) throw new Error(r.stderr);
    const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as { records: number; shards: number; skipped: number };
    expect(res).toMatchObject({ records: 40, shards: 3, skipped: 1 });
    const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')) as { bad: { index: number; kind: string }[] };
    expect(report.bad).toHaveLength(1);
    expect(report.bad[0].index).toBe(recs.length);
  });
});
