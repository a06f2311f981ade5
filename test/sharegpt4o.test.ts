import { promises as fs } from 'fs';
import * as os from 'os';
import * as path from 'path';
import sharp from 'sharp';
import { DatasetAbortError, EDIT_FILE, T2I_FILE, formatReport, readShareGPT4o } from '../src/data/sharegpt4o';
import { ArrayElement, JsonArrayScanner, readJsonArrayFile } from '../src/data/sharegpt4o_json';
import { checkImageFile } from '../src/data/sharegpt4o_checks';

let tmp: string;
beforeAll(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), 'sharegpt4o-'));
});
afterAll(async () => {
  await fs.rm(tmp, { recursive: true, force: true });
});

const png = (r: number): Promise<Buffer> => sharp({ create: { width: 12, height: 12, channels: 3, background: { r, g: 10, b: 10 } } }).png().toBuffer();
const jpeg = (): Promise<Buffer> => sharp({ create: { width: 16, height: 16, channels: 3, background: { r: 1, g: 2, b: 3 } } }).jpeg().toBuffer();

function scanAll(text: string, chunk: number): ArrayElement[] {
  const s = new JsonArrayScanner('t');
  const out: ArrayElement[] = [];
  for (let i = 0; i < text.length; i += chunk) out.push(...s.push(text.slice(i, i + chunk)));
  s.end();
  return out;
}

describe('streaming JSON array parser', () => {
  const text =
    '\ufeff [ {"a": "x]}\\"[{", "b": [1, {"c": null}]}, "s,]", 12.5e1 ,true,null, [ ], {"u": "é😀"} ]\n' +
    '[{"second": 1}, {"bad": tru}, {"n": -0}]';
  const expected = [{ a: 'x]}"[{', b: [1, { c: null }] }, 's,]', 125, true, null, [], { u: 'é😀' }, { second: 1 }];

  test.each([1, 2, 3, 7, 1000])('chunk size %i gives the same elements', (chunk) => {
    const els = scanAll(text, chunk);
    expect(els.map((e) => e.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(els.slice(0, 8).map((e) => ('value' in e ? e.value : e.error))).toEqual(expected);
    // A malformed element is reported and the scan goes on.
    expect('error' in els[8]).toBe(true);
    expect(els[9]).toMatchObject({ value: { n: -0 } });
  });

  test.each([
    ['{"a": 1}', /expected "\["/],
    ['[1 2]', /expected "," or "\]"/],
    ['[1, 2,]', /trailing comma/],
    ['[{"a": [1, 2}', /unexpected end/],
    ['', /empty file/],
  ])('structural error in %j', (bad, msg) => {
    expect(() => scanAll(bad, 3)).toThrow(msg);
  });

  test('file reader re-joins multi-byte characters split across tiny chunks', async () => {
    const f = path.join(tmp, 'unicode.json');
    const records = Array.from({ length: 50 }, (_, i) => ({ input_prompt: `ünïcödé 😀 ${i}`, output_image: `x${i}.png` }));
    await fs.writeFile(f, JSON.stringify(records, null, 1));
    const got: unknown[] = [];
    for await (const el of readJsonArrayFile(f, 5)) got.push('value' in el ? el.value : el.error);
    expect(got).toEqual(records);
  });
});

describe('image checks', () => {
  test('header mode tells truncated, non-image, and whole images apart', async () => {
    const good = await png(200);
    const cases: [string, Buffer, string | null][] = [
      ['good.png', good, null],
      ['good.jpg', await jpeg(), null],
      ['cut.png', good.subarray(0, good.length - 20), 'truncated-image'],
      ['stub.png', good.subarray(0, 12), 'truncated-image'],
      ['cut.jpg', (await jpeg()).subarray(0, 200), 'truncated-image'],
      ['text.png', Buffer.from('hello, I am not a picture\n'), 'not-an-image'],
      ['empty.png', Buffer.alloc(0), 'not-an-image'],
    ];
    for (const [name, bytes, kind] of cases) {
      const f = path.join(tmp, name);
      await fs.writeFile(f, bytes);
      const problem = await checkImageFile(f, bytes.length, 'header');
      expect([name, problem?.kind ?? null]).toEqual([name, kind]);
    }
    expect(await checkImageFile(path.join(tmp, 'text.png'), 26, 'none')).toBeNull();
  });
});

type Rec = Record<string, unknown>;

/**
 * A dataset root with `good` valid records and one record of each of the 8 broken kinds, split over the two
 * standard files.
 */
async function makeDataset(name: string, good: number): Promise<{ root: string; brokenAt: Map<string, [string, number]> }> {
  const root = path.join(tmp, name, 'root');
  const outside = path.join(tmp, name, 'outside');
  await fs.mkdir(path.join(root, 'images'), { recursive: true });
  await fs.mkdir(outside, { recursive: true });
  for (let k = 0; k < 4; k++) await fs.writeFile(path.join(root, 'images', `g${k}.png`), await png(40 * k));
  await fs.writeFile(path.join(outside, 'o.png'), await png(7));
  const whole = await png(99);
  await fs.writeFile(path.join(root, 'images', 'cut.png'), whole.subarray(0, Math.floor(whole.length / 2)));
  await fs.writeFile(path.join(root, 'images', 'notes.png'), 'just text');
  await fs.symlink(path.join(outside, 'o.png'), path.join(root, 'images', 'link.png'));
  // A symlink that stays inside the root is fine.
  await fs.symlink(path.join(root, 'images', 'g0.png'), path.join(root, 'images', 'inner.png'));

  const img = (i: number): string => (i % 5 === 4 ? 'images/inner.png' : `images/g${i % 4}.png`);
  const t2i: Rec[] = [];
  const edit: Rec[] = [];
  for (let i = 0; i < good; i++) {
    if (i % 2 === 0) t2i.push({ input_prompt: `draw thing ${i}`, output_image: img(i), ...(i % 6 === 0 ? { input_image: null } : {}) });
    else edit.push({ input_prompt: `edit thing ${i}`, input_image: [img(i + 1)], output_image: img(i) });
  }
  const broken: [string, 't2i' | 'edit', Rec][] = [
    ['missing-field', 't2i', { input_prompt: 'no output' }],
    ['path-escape', 't2i', { input_prompt: 'dots', output_image: '../outside/o.png' }],
    ['absolute-path', 'edit', { input_prompt: 'abs', input_image: [path.join(root, 'images', 'g1.png')], output_image: 'images/g0.png' }],
    ['symlink-escape', 'edit', { input_prompt: 'link', input_image: ['images/g1.png'], output_image: 'images/link.png' }],
    ['truncated-image', 't2i', { input_prompt: 'cut', output_image: 'images/cut.png' }],
    ['not-an-image', 'edit', { input_prompt: 'notes', input_image: ['images/notes.png'], output_image: 'images/g2.png' }],
    ['empty-prompt', 't2i', { input_prompt: '  \n ', output_image: 'images/g3.png' }],
    ['wrong-type', 'edit', { input_prompt: 42, input_image: ['images/g1.png'], output_image: 'images/g3.png' }],
  ];
  const brokenAt = new Map<string, [string, number]>();
  broken.forEach(([kind, task, rec], k) => {
    const list = task === 't2i' ? t2i : edit;
    const at = Math.min(list.length, 3 + k * 17);
    list.splice(at, 0, rec);
    brokenAt.set(kind, [task === 't2i' ? T2I_FILE : EDIT_FILE, at]);
  });
  // Later insertions shift earlier ones in the same list; recompute positions from the final arrays.
  for (const [kind, task, rec] of broken) {
    const list = task === 't2i' ? t2i : edit;
    brokenAt.set(kind, [task === 't2i' ? T2I_FILE : EDIT_FILE, list.indexOf(rec)]);
  }
  await fs.writeFile(path.join(root, T2I_FILE), JSON.stringify(t2i, null, 2));
  await fs.writeFile(path.join(root, EDIT_FILE), JSON.stringify(edit));
  return { root, brokenAt };
}

const KINDS = ['missing-field', 'path-escape', 'absolute-path', 'symlink-escape', 'truncated-image', 'not-an-image', 'empty-prompt', 'wrong-type'];

describe('readShareGPT4o', () => {
  test('3% broken records of 8 kinds: aborts with one summary naming each kind', async () => {
    const { root } = await makeDataset('three', 259); // 8 / 267 = 3.0%
    const err = await readShareGPT4o({ root }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(DatasetAbortError);
    const e = err as DatasetAbortError;
    expect(e.report.total).toBe(267);
    expect(e.report.bad).toHaveLength(8);
    expect(Object.keys(e.report.byKind).sort()).toEqual(KINDS.slice().sort());
    expect(e.message).toMatch(/8 of 267 records bad \(3\.00%\), exceeds the limit of 1\.00%/);
    for (const k of KINDS) expect(e.message.split('\n').filter((l) => l.startsWith(`  ${k}: 1 `))).toHaveLength(1);
  });

  test('0.5% broken: proceeds, and the report lists each skipped record with file, index and reason', async () => {
    const { root, brokenAt } = await makeDataset('half', 1592); // 8 / 1600 = 0.5%
    let progress = 0;
    const { records, report } = await readShareGPT4o({ root, onProgress: (n) => (progress = n) });
    expect(progress).toBe(1600);
    expect(report.total).toBe(1600);
    expect(records).toHaveLength(1592);
    expect(report.good).toBe(1592);
    expect(report.t2i).toBe(796);
    expect(report.edit).toBe(796);
    expect(report.bad.map((b) => b.kind).sort()).toEqual(KINDS.slice().sort());
    for (const b of report.bad) {
      const [file, index] = brokenAt.get(b.kind) ?? ['', -1];
      expect([path.basename(b.file), b.index]).toEqual([file, index]);
      expect(b.reason.length).toBeGreaterThan(5);
    }
    const listing = formatReport(report, { listAll: true });
    expect(listing).toMatch(/within the limit/);
    for (const b of report.bad) expect(listing).toContain(`skipped ${b.file}[${b.index}] ${b.kind}:`);
    // Good records keep file order, resolve to real paths inside the root, and carry provenance.
    const realRoot = await fs.realpath(root);
    const first = records[0];
    expect(first).toMatchObject({ task: 't2i', prompt: 'draw thing 0', file: path.join(root, T2I_FILE), index: 0 });
    for (const r of records) {
      for (const p of [r.outputImage, ...(r.task === 'edit' ? r.inputImages : [])]) expect(p.startsWith(realRoot + path.sep)).toBe(true);
    }
    const inner = records.find((r) => r.prompt === 'draw thing 4');
    expect(inner?.outputImage).toBe(path.join(realRoot, 'images', 'g0.png'));
    const e = records.find((r) => r.task === 'edit');
    expect(e).toMatchObject({ task: 'edit', prompt: 'edit thing 1', inputImages: [path.join(realRoot, 'images', 'g2.png')] });
    // Stricter limit: the same data aborts.
    await expect(readShareGPT4o({ root, maxBadFraction: 0.004 })).rejects.toBeInstanceOf(DatasetAbortError);
  });

  test('prompt budget in characters or via a token counter, and input-image count', async () => {
    const root = path.join(tmp, 'budget');
    await fs.mkdir(root, { recursive: true });
    await fs.writeFile(path.join(root, 'a.png'), await png(1));
    const recs = [
      { input_prompt: 'short one', output_image: 'a.png' },
      { input_prompt: 'x'.repeat(60), output_image: 'a.png' },
      { input_prompt: 'one two three four five six', output_image: 'a.png' },
      { input_prompt: 'two inputs', input_image: ['a.png', 'a.png'], output_image: 'a.png' },
      { input_prompt: 'wrong list', input_image: 'a.png', output_image: 'a.png' },
      'not an object',
    ];
    const file = path.join(root, 'all.json');
    await fs.writeFile(file, JSON.stringify(recs));
    const { report } = await readShareGPT4o({
      files: [file],
      maxPromptChars: 50,
      countTokens: (p) => p.split(' ').length,
      maxPromptTokens: 5,
      maxBadFraction: 1,
    });
    expect(report.bad.map((b) => [b.index, b.kind])).toEqual([
      [1, 'prompt-too-long'],
      [2, 'prompt-too-long'],
      [3, 'too-many-input-images'],
      [4, 'wrong-type'],
      [5, 'not-an-object'],
    ]);
    expect(report.bad[1].reason).toMatch(/6 tokens; the budget is 5/);
  });

  test('file-level problems are user errors naming the file', async () => {
    const root = path.join(tmp, 'broken-json');
    await fs.mkdir(root, { recursive: true });
    await fs.writeFile(path.join(root, T2I_FILE), '[{"input_prompt": "a", "output_image": "b"}');
    await expect(readShareGPT4o({ root })).rejects.toThrow(/text_to_image\.json: not a JSON array file: unexpected end/);
    await expect(readShareGPT4o({ root: path.join(tmp, 'nowhere') })).rejects.toThrow(/no text_to_image\.json/);
  });
});
