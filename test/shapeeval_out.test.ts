/**
 * Issue 24, items 12 and 9: `janus4o eval --suite shapeeval --out DIR` keeps every generated image with its
 * prompt (GenEval's folder layout) or edit (input image, instruction, outputs), with the detector's reading and
 * the verdict per image, so a result can be inspected and rescored; `eval` prints a table by default and the
 * JSON object with --json.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { initBackend } from '../src/backend';
import { UserError } from '../src/errors';
import { readGenEvalMetadata } from '../src/generate/export';
import { EvalArgs, EvalResult, evalCommand, formatShapeEvalTable, shapeEvalSummaryJson } from '../src/cli/eval';
import { renderScene } from '../src/shapeworld/render';
import { Scene } from '../src/shapeworld/scene';
import { detectPng } from '../src/shapeworld/detect';
import { Clause, T2ICategory, checkEdit, scoreT2I } from '../src/shapeworld/shapeeval';
import { runShapeEval, shapeEvalEdits, shapeEvalFolder, shapeEvalT2IPrompts } from '../src/shapeworld/shapeeval_run';

const SIZE = 64;
const SEED = 5;
let root: string;
beforeAll(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'shapeeval-out-'));
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Draws the witness scene for every prompt and the target for every edit, except a blank image as the second of each. */
async function oracle() {
  const witness = new Map(shapeEvalT2IPrompts(SEED, 2).map((p) => [p.prompt.text, p.scene]));
  const target = new Map(shapeEvalEdits(SEED, 1).map((e) => [e.instruction, e.target]));
  const blank = await sharp({ create: { width: SIZE, height: SIZE, channels: 3, background: { r: 250, g: 250, b: 250 } } }).png().toBuffer();
  const draw = async (scene: Scene, n: number) => [await renderScene(scene, SIZE), ...Array<Buffer>(n - 1).fill(blank)];
  return {
    t2i: (prompts: readonly string[], n: number) => Promise.all(prompts.map((p) => draw(witness.get(p)!, n))),
    edit: (its: readonly { instruction: string; source: Buffer }[], n: number) => Promise.all(its.map((it) => draw(target.get(it.instruction)!, n))),
  };
}

const digitFolders = (dir: string) => fs.readdirSync(dir).filter((f) => /^\d+$/.test(f) && fs.statSync(path.join(dir, f)).isDirectory()).sort();

describe('eval --out: what was scored, kept', () => {
  let dir: string;
  let report: Awaited<ReturnType<typeof runShapeEval>>;
  beforeAll(async () => {
    dir = path.join(root, 'run');
    report = await runShapeEval(await oracle(), { seed: SEED, perCategory: 2, editsPerCategory: 1, imagesPerPrompt: 2, renderSource: (s) => renderScene(s, SIZE), sink: await shapeEvalFolder(dir) });
  });

  test("text-to-image: GenEval's layout (what evaluate_images.py reads: digit folders, metadata.jsonl, samples/<digits>.png)", async () => {
    const folders = digitFolders(dir);
    expect(folders).toEqual(Array.from({ length: 12 }, (_, i) => String(i).padStart(5, '0')));
    const all = await readGenEvalMetadata(path.join(dir, 'evaluation_metadata.jsonl'));
    expect(all.map((p) => p.prompt)).toEqual(report.t2i.items.map((it) => it.prompt));
    for (const [i, f] of folders.entries()) {
      const text = fs.readFileSync(path.join(dir, f, 'metadata.jsonl'), 'utf8');
      expect(text).toBe(`${all[i].line}\n`);
      // GenEval json.load()s the whole file: one object with tag, include and prompt.
      const meta = JSON.parse(text) as { tag: T2ICategory; include: { class: string; count: number }[]; prompt: string };
      expect(meta.tag).toBe(report.t2i.items[i].category);
      expect(meta.include.length).toBeGreaterThan(0);
      expect(fs.readdirSync(path.join(dir, f, 'samples')).sort()).toEqual(['0000.png', '0001.png']);
    }
    // Counting: include n, exclude n + 1, as GenEval writes it.
    const counting = all.find((p) => p.tag === 'counting')!;
    const cm = JSON.parse(counting.line) as { include: { count: number }[]; exclude: { count: number }[] };
    expect(cm.exclude[0].count).toBe(cm.include[0].count + 1);
    // Position: the target first, the object with [relation, 0] second.
    const pos = JSON.parse(all.find((p) => p.tag === 'position')!.line) as { include: { position?: [string, number] }[] };
    expect(pos.include[1].position?.[1]).toBe(0);
    expect(pos.include[0].position).toBeUndefined();
  });

  test('each prompt folder holds the reading and verdict of every image, and rescoring from the folder alone agrees', async () => {
    for (const [i, f] of digitFolders(dir).entries()) {
      const meta = JSON.parse(fs.readFileSync(path.join(dir, f, 'metadata.jsonl'), 'utf8')) as { tag: T2ICategory; prompt: string; clauses: Clause[] };
      const rec = JSON.parse(fs.readFileSync(path.join(dir, f, 'shapeeval.json'), 'utf8')) as {
        prompt: string;
        images: { file: string; correct: boolean; clauses: boolean[]; detected: { objects: unknown[]; rejected: string | null } }[];
      };
      expect(rec.prompt).toBe(meta.prompt);
      expect(rec.images.map((im) => im.correct)).toEqual(report.t2i.items[i].correct);
      // The oracle's first image is the witness (right), the second blank (wrong: no objects read).
      expect(rec.images.map((im) => im.correct)).toEqual([true, false]);
      expect(rec.images[1].detected.objects).toEqual([]);
      for (const im of rec.images) {
        const d = await detectPng(fs.readFileSync(path.join(dir, f, im.file)));
        expect(JSON.parse(JSON.stringify(d))).toEqual(im.detected);
        expect(scoreT2I({ category: meta.tag, text: meta.prompt, clauses: meta.clauses }, d)).toBe(im.correct);
        expect(im.clauses).toHaveLength(meta.clauses.length);
      }
    }
  });

  test('edits: edits/<index>/ holds the instruction, input image, outputs, readings and verdicts', async () => {
    const edits = path.join(dir, 'edits');
    const folders = digitFolders(edits);
    expect(folders).toHaveLength(7);
    expect(fs.readFileSync(path.join(edits, 'edit_metadata.jsonl'), 'utf8').trim().split('\n')).toHaveLength(7);
    for (const [i, f] of folders.entries()) {
      const meta = JSON.parse(fs.readFileSync(path.join(edits, f, 'metadata.jsonl'), 'utf8')) as { tag: string; instruction: string; source: Scene; target: Scene };
      expect(meta.instruction).toBe(report.edit!.items[i].instruction);
      expect(fs.readFileSync(path.join(edits, f, 'input.png')).equals(await renderScene(meta.source, SIZE))).toBe(true);
      const rec = JSON.parse(fs.readFileSync(path.join(edits, f, 'shapeeval.json'), 'utf8')) as { images: { file: string; correct: boolean; targetHolds: boolean; preserved: boolean }[] };
      expect(rec.images.map((im) => im.correct)).toEqual(report.edit!.items[i].correct);
      for (const im of rec.images) {
        const c = checkEdit(meta.tag as 'add', meta.source, meta.target, await detectPng(fs.readFileSync(path.join(edits, f, im.file))));
        expect({ correct: c.correct, targetHolds: c.targetHolds, preserved: c.preserved }).toEqual({ correct: im.correct, targetHolds: im.targetHolds, preserved: im.preserved });
      }
    }
  });

  test('a folder that is not empty is refused before anything runs (runs would mix)', async () => {
    await expect(shapeEvalFolder(dir)).rejects.toThrow(UserError);
    await expect(shapeEvalFolder(dir)).rejects.toThrow(/--out .*not empty.*give a new folder/);
    const file = path.join(root, 'a-file');
    fs.writeFileSync(file, 'x');
    await expect(shapeEvalFolder(file)).rejects.toThrow(/--out .*cannot write the images there \(ENOTDIR\)/);
    // Absent and empty folders are fine.
    fs.mkdirSync(path.join(root, 'empty'));
    await expect(shapeEvalFolder(path.join(root, 'empty'))).resolves.toBeDefined();
    await expect(shapeEvalFolder(path.join(root, 'new', 'deeper'))).resolves.toBeDefined();
  });

  test('the default output is a table of categories x accuracy for T2I and edits; --json is the one-line object', () => {
    const r: EvalResult = { ...report, report: '/x/shapeeval-report.json', out: dir, checkpoint: 'ckpt', temperature: 1, edit_temperature: 0.5 };
    const table = formatShapeEvalTable(r);
    const lines = table.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ShapeEval, seed 5, 2 images per prompt/);
    expect(table).toMatch(/^text-to-image\s+accuracy\s+correct \/ images$/m);
    expect(table).toMatch(/^ {2}single_object\s+50\.0%\s+2 \/ 4$/m);
    expect(table).toMatch(/^ {2}overall\s+50\.0%/m);
    expect(table).toMatch(/^edit\s+accuracy/m);
    expect(table).toMatch(/^ {2}hybrid\s+50\.0%\s+1 \/ 2$/m);
    expect(table).toContain(`images, readings and verdicts: ${dir}`);
    expect(lines.every((l) => l.length < 100)).toBe(true);
    const json = shapeEvalSummaryJson(r);
    expect(json.endsWith('\n') && json.trim().split('\n')).toHaveLength(1);
    expect(JSON.parse(json)).toMatchObject({ suite: 'shapeeval', seed: 5, t2i: { overall: 0.5 }, edit: { overall: 0.5 }, report: '/x/shapeeval-report.json', out: dir });
  });
});

describe('janus4o eval (the command) on the shipped janus4o-tiny', () => {
  const ckpt = path.join(__dirname, '..', 'checkpoints', 'pretrained', 'janus4o-tiny');
  beforeAll(() => initBackend('wasm'));
  const run = async (over: Partial<EvalArgs>): Promise<string> => {
    const out: string[] = [];
    const so = jest.spyOn(process.stdout, 'write').mockImplementation((s: string | Uint8Array) => (out.push(String(s)), true));
    const se = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const args = { checkpoint: ckpt, suite: 'shapeeval', n: 1, 'top-k': 0, 'top-p': 1, seed: '0', cache: true, backend: 'wasm', progress: false, 'per-category': 1, 'edits-per-category': 1, batch: 8, report: path.join(root, `r-${Math.random()}.json`), json: false, ...over } as EvalArgs;
      await (evalCommand.handler as (a: EvalArgs) => Promise<void>)(args);
    } finally {
      so.mockRestore();
      se.mockRestore();
    }
    return out.join('');
  };

  test('prints a table by default, JSON with --json; --out writes the folders', async () => {
    const dir = path.join(root, 'cli');
    const table = await run({ out: dir });
    expect(table).toMatch(/^text-to-image\s+accuracy/m);
    expect(table).toMatch(/^edit\s+accuracy/m);
    expect(() => JSON.parse(table)).toThrow();
    expect(digitFolders(dir)).toHaveLength(6);
    expect(digitFolders(path.join(dir, 'edits'))).toHaveLength(7);
    const json = JSON.parse(await run({ json: true, 'edits-per-category': 0 })) as { suite: string; t2i: { categories: Record<string, unknown> }; edit: null };
    expect(json.suite).toBe('shapeeval');
    expect(Object.keys(json.t2i.categories)).toHaveLength(6);
    expect(json.edit).toBeNull();
    await expect(run({ suite: 'reading', out: dir })).rejects.toThrow(/--out writes ShapeEval's images; --suite reading/);
  });
});
