import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import yargs from 'yargs';
import { synthCommand } from '../src/cli/synth';
import { UserError } from '../src/errors';
import { renderScene } from '../src/shapeworld/render';
import { readScenes, synthesize } from '../src/shapeworld/synth';
import { readShareGPT4o } from '../src/data/sharegpt4o';
import { applyEdits, checkScene, specHolds, PromptSpec, EditOp } from '../src/shapeworld/samples';
import type { Scene } from '../src/shapeworld/scene';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'synth-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

/** Run `janus4o synth ...` in-process through yargs, so option names and defaults are exercised too. */
async function cli(...args: string[]): Promise<string> {
  let stdout = '';
  const spy = jest.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += String(chunk);
    return true;
  });
  try {
    await yargs(['synth', ...args])
      .command(synthCommand)
      .strict()
      .exitProcess(false)
      .fail((msg, err) => {
        throw err ?? new Error(msg);
      })
      .parseAsync();
  } finally {
    spy.mockRestore();
  }
  return stdout;
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const e of await fs.readdir(dir, { withFileTypes: true })) {
    const rel = path.join(prefix, e.name);
    if (e.isDirectory()) out.push(...(await listFiles(path.join(dir, e.name), rel)));
    else out.push(rel);
  }
  return out.sort();
}

async function expectSameTree(a: string, b: string): Promise<void> {
  const fa = await listFiles(a);
  expect(await listFiles(b)).toEqual(fa);
  for (const f of fa) {
    const [x, y] = await Promise.all([fs.readFile(path.join(a, f)), fs.readFile(path.join(b, f))]);
    if (!x.equals(y)) throw new Error(`${f} differs between ${a} and ${b}`);
  }
}

const readJsonl = async <T>(file: string): Promise<T[]> =>
  (await fs.readFile(file, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as T);

interface T2IRecordLine {
  task: 't2i';
  index: number;
  prompt: string;
  output_image: string;
  spec: PromptSpec;
  noise: unknown[];
}
interface EditRecordLine {
  task: 'edit';
  index: number;
  category: string;
  ops: EditOp[];
  prompt: string;
  input_image: string;
  output_image: string;
  source_scene: Scene;
  target_scene: Scene;
}

describe('janus4o synth', () => {
  const args = ['--t2i', '30', '--edit', '25', '--size', '64', '--seed', '1'];

  test('byte-identical across runs, and the same as the library call with a numeric seed', async () => {
    const a = path.join(tmp, 'a');
    const b = path.join(tmp, 'b');
    const c = path.join(tmp, 'c');
    const said = await cli(...args, '--out', a);
    expect(said).toMatch(/wrote 30 T2I \+ 25 edit records, 80 images \([\d.]+ MB\) to .*\/a in/);
    await cli(...args, '--out', b);
    await synthesize({ out: c, t2i: 30, edit: 25, size: 64, seed: 1 });
    await expectSameTree(a, b);
    await expectSameTree(a, c);
    const files = await listFiles(a);
    expect(files.filter((f) => f.startsWith('images/'))).toHaveLength(80);
    expect(files.filter((f) => !f.startsWith('images/'))).toEqual(['records.jsonl', 'scenes.jsonl', 'shapeworld.json', 'text_and_image_to_image.json', 'text_to_image.json']);
    // A different seed is a different dataset.
    const d = path.join(tmp, 'd');
    await cli('--t2i', '30', '--edit', '25', '--seed', '2', '--out', d);
    expect((await fs.readFile(path.join(d, 'text_to_image.json'))).equals(await fs.readFile(path.join(a, 'text_to_image.json')))).toBe(false);
  });

  test('every scenes.jsonl entry re-renders to the same bytes, and the JSON passes the reader with zero bad records', async () => {
    const a = path.join(tmp, 'a');
    const scenes = await readScenes(a);
    expect(scenes.size).toBe(80);
    for (const [image, scene] of scenes) {
      checkScene(scene);
      const onDisk = await fs.readFile(path.join(a, image));
      if (!(await renderScene(scene, 64)).equals(onDisk)) throw new Error(`${image} does not re-render from scenes.jsonl`);
    }
    const { records, report } = await readShareGPT4o({ root: a, imageCheck: 'decode', maxBadFraction: 0 });
    expect(report.bad).toEqual([]);
    expect([report.total, report.t2i, report.edit]).toEqual([55, 30, 25]);
    expect(records[30]).toMatchObject({ task: 'edit', inputImages: [path.join(await fs.realpath(a), 'images/edit_000000_src.png')] });
  });

  test('records.jsonl agrees with the JSON files and scenes.jsonl', async () => {
    const a = path.join(tmp, 'a');
    const scenes = await readScenes(a);
    const t2iJson = JSON.parse(await fs.readFile(path.join(a, 'text_to_image.json'), 'utf8')) as { input_prompt: string; output_image: string }[];
    const editJson = JSON.parse(await fs.readFile(path.join(a, 'text_and_image_to_image.json'), 'utf8')) as { input_prompt: string; input_image: string[]; output_image: string }[];
    const lines = await readJsonl<T2IRecordLine | EditRecordLine>(path.join(a, 'records.jsonl'));
    expect(lines).toHaveLength(55);
    lines.forEach((r, k) => {
      if (r.task === 't2i') {
        expect(k).toBe(r.index);
        expect({ input_prompt: r.prompt, output_image: r.output_image }).toEqual(t2iJson[r.index]);
        expect(specHolds(r.spec, scenes.get(r.output_image) as Scene)).toBe(true);
      } else {
        expect(k).toBe(30 + r.index);
        expect({ input_prompt: r.prompt, input_image: [r.input_image], output_image: r.output_image }).toEqual(editJson[r.index]);
        expect(scenes.get(r.input_image)).toEqual(r.source_scene);
        expect(scenes.get(r.output_image)).toEqual(r.target_scene);
        expect(applyEdits(r.source_scene, r.ops)).toEqual(r.target_scene);
      }
    });
    const manifest = JSON.parse(await fs.readFile(path.join(a, 'shapeworld.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest).toMatchObject({ format: 'shapeworld', seed: '1', size: 64, t2i: 30, edit: 25, caption_noise: 0, images: 80 });
  });

  test('smaller counts are a prefix of larger ones', async () => {
    const small = path.join(tmp, 'small');
    await cli('--t2i', '10', '--edit', '5', '--seed', '1', '--out', small);
    const big = JSON.parse(await fs.readFile(path.join(tmp, 'a', 'text_and_image_to_image.json'), 'utf8')) as unknown[];
    const little = JSON.parse(await fs.readFile(path.join(small, 'text_and_image_to_image.json'), 'utf8')) as unknown[];
    expect(little).toEqual(big.slice(0, 5));
  });

  test('--caption-noise changes captions, records the damage, and keeps every image', async () => {
    const n = path.join(tmp, 'noisy');
    await cli(...args, '--caption-noise', '0.4', '--out', n);
    const clean = await readJsonl<T2IRecordLine>(path.join(tmp, 'a', 'records.jsonl'));
    const noisy = await readJsonl<T2IRecordLine>(path.join(n, 'records.jsonl'));
    const changed = noisy.filter((r, i) => r.task === 't2i' && r.prompt !== clean[i].prompt);
    expect(changed.length).toBeGreaterThan(10);
    expect(noisy.filter((r) => r.task === 't2i' && r.noise.length > 0).length).toBeGreaterThanOrEqual(changed.length);
    for (const f of (await listFiles(n)).filter((x) => x.startsWith('images/'))) {
      expect((await fs.readFile(path.join(n, f))).equals(await fs.readFile(path.join(tmp, 'a', f)))).toBe(true);
    }
    // Edit instructions are not noised.
    expect(await fs.readFile(path.join(n, 'text_and_image_to_image.json'), 'utf8')).toBe(await fs.readFile(path.join(tmp, 'a', 'text_and_image_to_image.json'), 'utf8'));
  });

  test('--max-objects 1 writes one object per T2I image and records the cap; edits keep theirs', async () => {
    const one = path.join(tmp, 'one');
    await cli(...args, '--max-objects', '1', '--out', one);
    const records = await readJsonl<{ task: string; output_image: string; source_scene?: unknown }>(path.join(one, 'records.jsonl'));
    const scenes = (await fs.readFile(path.join(one, 'scenes.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l) as { image: string; scene: { objects: unknown[] } });
    const byImage = new Map(scenes.map((x) => [x.image, x.scene]));
    const t2iRecords = records.filter((r) => r.task === 't2i');
    expect(t2iRecords.length).toBe(30);
    for (const r of t2iRecords) expect(byImage.get(r.output_image)?.objects).toHaveLength(1);
    expect(await fs.readFile(path.join(one, 'text_and_image_to_image.json'), 'utf8')).toBe(await fs.readFile(path.join(tmp, 'a', 'text_and_image_to_image.json'), 'utf8'));
    const manifest = JSON.parse(await fs.readFile(path.join(one, 'shapeworld.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest.max_objects).toBe(1);
    expect(JSON.parse(await fs.readFile(path.join(tmp, 'a', 'shapeworld.json'), 'utf8'))).not.toHaveProperty('max_objects');
    await expect(cli('--t2i', '1', '--max-objects', '5', '--out', path.join(tmp, 'm'))).rejects.toThrow(/max-objects/);
    const cls = path.join(tmp, 'class');
    await cli('--t2i', '20', '--edit', '0', '--captions', 'class', '--out', cls);
    const prompts = (JSON.parse(await fs.readFile(path.join(cls, 'text_to_image.json'), 'utf8')) as { input_prompt: string }[]).map((r) => r.input_prompt);
    for (const p of prompts) expect(p).toMatch(/^an? \w+ (circle|square|triangle|diamond) on a \w+ background$/);
    expect(JSON.parse(await fs.readFile(path.join(cls, 'shapeworld.json'), 'utf8'))).toMatchObject({ captions: 'class' });
    await expect(cli('--t2i', '1', '--captions', 'long', '--out', path.join(tmp, 'c'))).rejects.toThrow(/captions/);
  });

  test('refuses to overwrite without --force, and never replaces a directory it did not write', async () => {
    const a = path.join(tmp, 'a');
    await expect(cli(...args, '--out', a)).rejects.toThrow(/pass --force/);
    await cli('--t2i', '3', '--edit', '2', '--out', a, '--force');
    expect((await listFiles(a)).filter((f) => f.startsWith('images/'))).toHaveLength(7);
    const other = path.join(tmp, 'precious');
    await fs.mkdir(other);
    await fs.writeFile(path.join(other, 'keep.txt'), 'mine');
    const err = await cli('--t2i', '3', '--edit', '0', '--out', other, '--force').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UserError);
    expect(String(err)).toMatch(/not a ShapeWorld dataset/);
    expect(await fs.readFile(path.join(other, 'keep.txt'), 'utf8')).toBe('mine');
    expect((await fs.readdir(tmp)).filter((f) => f.includes('.partial-'))).toEqual([]);
    await expect(cli('--t2i', '-1', '--out', path.join(tmp, 'neg'))).rejects.toThrow(/non-negative integer/);
    await expect(cli('--t2i', '1', '--caption-noise', '2', '--out', path.join(tmp, 'p'))).rejects.toThrow(/caption-noise/);
  });
});
