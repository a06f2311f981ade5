import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { pngGrid, readDpgPrompts, readGenEvalMetadata, writeDpgGrid, writeGenEvalPrompt, writePromptSamples } from '../src/generate/export';

const OFFICIAL = '/work/shared/data/geneval/evaluation_metadata.jsonl';

async function solid(r: number, g: number, b: number, size = 8): Promise<Buffer> {
  return sharp({ create: { width: size, height: size, channels: 3, background: { r, g, b } } }).png().toBuffer();
}

/** Every file under dir, relative, sorted. */
async function tree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string) => {
    for (const e of await fs.readdir(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else out.push(path.relative(dir, p));
    }
  };
  await walk(dir);
  return out.sort();
}

let tmp: string;
beforeEach(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'janus4o-export-'));
});
afterEach(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

describe('GenEval layout', () => {
  test('3 prompts give exactly the official tree, metadata lines verbatim', async () => {
    const all = await readGenEvalMetadata(OFFICIAL);
    expect(all).toHaveLength(553);
    const imgs = await Promise.all([0, 1, 2, 3].map((i) => solid(60 * i, 0, 0)));
    for (const p of all.slice(0, 3)) await writeGenEvalPrompt(tmp, p, imgs, p.index === 0);
    expect(await tree(tmp)).toEqual([
      '00000/grid.png',
      '00000/metadata.jsonl',
      '00000/samples/0000.png',
      '00000/samples/0001.png',
      '00000/samples/0002.png',
      '00000/samples/0003.png',
      '00001/metadata.jsonl',
      '00001/samples/0000.png',
      '00001/samples/0001.png',
      '00001/samples/0002.png',
      '00001/samples/0003.png',
      '00002/metadata.jsonl',
      '00002/samples/0000.png',
      '00002/samples/0001.png',
      '00002/samples/0002.png',
      '00002/samples/0003.png',
    ]);
    const lines = (await fs.readFile(OFFICIAL, 'utf8')).split('\n');
    for (let i = 0; i < 3; i++) {
      const written = await fs.readFile(path.join(tmp, `0000${i}`, 'metadata.jsonl'), 'utf8');
      expect(written).toBe(`${lines[i]}\n`);
      expect(JSON.parse(written)).toEqual(JSON.parse(lines[i]));
    }
    expect(Buffer.compare(await fs.readFile(path.join(tmp, '00001/samples/0002.png')), imgs[2])).toBe(0);
    const grid = await sharp(await fs.readFile(path.join(tmp, '00000/grid.png'))).metadata();
    expect([grid.width, grid.height]).toEqual([16, 16]);
  });

  test('bad metadata lines are named', async () => {
    const f = path.join(tmp, 'm.jsonl');
    await fs.writeFile(f, '{"prompt": "a cat", "tag": "single_object"}\n{"tag": "x"}\n');
    await expect(readGenEvalMetadata(f)).rejects.toThrow(/m.jsonl:2: expected an object with a string "prompt"/);
    await fs.writeFile(f, 'not json\n');
    await expect(readGenEvalMetadata(f)).rejects.toThrow(/m.jsonl:1: not a JSON line/);
  });
});

describe('DPG-Bench and plain layouts', () => {
  test('a 2x2 grid per prompt, named by the prompt file id, samples in row-major order', async () => {
    const pdir = path.join(tmp, 'prompts');
    await fs.mkdir(pdir);
    await fs.writeFile(path.join(pdir, 'partiprompts12.txt'), 'A cat on a mat.\n');
    await fs.writeFile(path.join(pdir, 'coco3.txt'), 'Two dogs.');
    await fs.writeFile(path.join(pdir, 'README.md'), 'ignored');
    const prompts = await readDpgPrompts(pdir);
    expect(prompts).toEqual([
      { id: 'coco3', prompt: 'Two dogs.' },
      { id: 'partiprompts12', prompt: 'A cat on a mat.' },
    ]);
    const colours: [number, number, number][] = [
      [255, 0, 0],
      [0, 255, 0],
      [0, 0, 255],
      [255, 255, 0],
    ];
    const imgs = await Promise.all(colours.map((c) => solid(...c)));
    const out = path.join(tmp, 'dpg');
    for (const p of prompts) await writeDpgGrid(out, p, imgs);
    expect(await tree(out)).toEqual(['coco3.png', 'partiprompts12.png']);
    const { data, info } = await sharp(path.join(out, 'coco3.png')).raw().toBuffer({ resolveWithObject: true });
    expect([info.width, info.height]).toEqual([16, 16]);
    const at = (x: number, y: number) => Array.from(data.subarray((y * 16 + x) * info.channels, (y * 16 + x) * info.channels + 3));
    expect([at(2, 2), at(12, 2), at(2, 12), at(12, 12)]).toEqual(colours);
    await expect(writeDpgGrid(out, prompts[0], imgs.slice(0, 3))).rejects.toThrow(/exactly 4/);
  });

  test('plain layout: a sidecar JSON per image and a grid', async () => {
    const imgs = [await solid(1, 2, 3), await solid(4, 5, 6)];
    const rec = (i: number) => ({ prompt: 'a red circle', seed: 7, prompt_index: 0, sample_index: i, cfg: 5, temperature: 1, checkpoint: '/ck', backend: 'cpu', seconds: 1.5 });
    await writePromptSamples(tmp, 3, imgs, [rec(0), rec(1)], true);
    expect(await tree(tmp)).toEqual(['00003/0000.json', '00003/0000.png', '00003/0001.json', '00003/0001.png', '00003/grid.png', '00003/prompt.txt']);
    expect(JSON.parse(await fs.readFile(path.join(tmp, '00003/0001.json'), 'utf8'))).toEqual(rec(1));
    const g = await sharp(await pngGrid(imgs)).metadata();
    expect([g.width, g.height]).toEqual([16, 8]);
  });
});
