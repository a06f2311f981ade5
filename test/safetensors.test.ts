import { spawnSync } from 'child_process';
import fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { decodeInto, roundToBf16, roundToF16, toBf16Bits, toF16Bits } from '../src/io/dtypes';
import { SafetensorsFile, TensorToWrite, writeSafetensors, writeShardedSafetensors } from '../src/io/safetensors';
import { convertCheckpoint } from '../src/cli/convert';
import { UserError } from '../src/errors';

const FIX = path.join(__dirname, 'fixtures', 'tiny-janus');
const HOSTILE = path.join(FIX, 'hostile');
const ROOT = path.resolve(__dirname, '..');

// Every temporary file of this suite lives under one folder, removed at the end.
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-st-'));
afterAll(() => fs.rmSync(TMP, { recursive: true, force: true }));

function tmpDir(): string {
  return fs.mkdtempSync(path.join(TMP, 'd-'));
}

function bits(x: Float32Array): number[] {
  return Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
}

function tensor(name: string, shape: number[], values: number[]): TensorToWrite {
  return { name, shape, values: () => Float32Array.from(values) };
}

describe('safetensors reading', () => {
  test('the fixture (written by the Python generator) opens with every tensor, shape and metadata', () => {
    const f = SafetensorsFile.open(path.join(FIX, 'safetensors', 'model.safetensors'));
    try {
      expect(f.names()).toHaveLength(222);
      expect(f.metadata).toEqual({ format: 'pt' });
      expect(f.info('language_model.model.embed_tokens.weight')).toEqual({ dtype: 'F32', shape: [320, 16] });
      expect(f.info('vision_model.vision_tower.pos_embed')).toEqual({ dtype: 'F32', shape: [1, 16, 8] });
      // inv_freq is a deterministic buffer: 1 / 1000^(2i/8) (torch computes it in float32, hence the tolerance).
      const inv = f.read('language_model.model.layers.0.self_attn.rotary_emb.inv_freq');
      [0, 1, 2, 3].forEach((i) => expect(inv[i]).toBeCloseTo(1 / 1000 ** ((2 * i) / 8), 7));
    } finally {
      f.close();
    }
  });

  test('reads tensor by tensor with positioned reads, never the whole file', () => {
    const file = path.join(FIX, 'safetensors', 'model.safetensors');
    const headerBytes = Number(fs.readFileSync(file).readBigUInt64LE(0));
    const readSync = jest.spyOn(fs, 'readSync');
    const readFileSync = jest.spyOn(fs, 'readFileSync');
    try {
      const f = SafetensorsFile.open(file);
      const biggest = Math.max(...f.names().map((n) => f.read(n).byteLength));
      f.close();
      expect(readFileSync).not.toHaveBeenCalled();
      // (fd, buffer, offset, length, position): the typings only describe the options-object overload.
      const calls = readSync.mock.calls as unknown as [number, Uint8Array, number, number, number | null][];
      const lengths = calls.map((c) => c[3]);
      expect(Math.max(...lengths)).toBeLessThanOrEqual(Math.max(biggest, headerBytes));
      expect(Math.max(...lengths)).toBeLessThan(fs.statSync(file).size / 4);
      expect(calls.every((c) => typeof c[4] === 'number')).toBe(true);
    } finally {
      readSync.mockRestore();
      readFileSync.mockRestore();
    }
  });
});

describe('safetensors writing', () => {
  test('F32 round trip is bit-exact, including -0, NaN, infinities and subnormals', () => {
    const dir = tmpDir();
    const special = [0, -0, NaN, Infinity, -Infinity, 1e-45, -3.4e38, 1 / 3, 123456.789];
    const file = path.join(dir, 'a.safetensors');
    writeSafetensors(file, [tensor('x', [3, 3], special), tensor('empty', [0, 4], []), tensor('s', [], [2.5])], { metadata: { note: 'hi' } });
    const f = SafetensorsFile.open(file);
    try {
      expect(bits(f.read('x'))).toEqual(bits(Float32Array.from(special)));
      expect(f.read('empty')).toHaveLength(0);
      expect(Array.from(f.read('s'))).toEqual([2.5]);
      expect(f.metadata).toEqual({ format: 'pt', note: 'hi' });
      // The data section starts 8-byte aligned, like the reference writer's.
      const n = Number(fs.readFileSync(file).readBigUInt64LE(0));
      expect((8 + n) % 8).toBe(0);
    } finally {
      f.close();
    }
  });

  test('BF16 and F16 use round-to-nearest-even with the IEEE edge cases', () => {
    // bf16: 1 + 2^-8 is a tie -> even (1.0); 1 + 3*2^-8 is a tie -> even (1 + 2^-6).
    expect(Array.from(toBf16Bits(Float32Array.from([1, 1 + 2 ** -8, 1 + 3 * 2 ** -8, -2, 3.4028234663852886e38])))).toEqual([0x3f80, 0x3f80, 0x3f82, 0xc000, 0x7f80]);
    expect(Number.isNaN(roundToBf16(Float32Array.from([NaN]))[0])).toBe(true);
    // f16: max, overflow by rounding, smallest subnormal, a subnormal tie to even (0), -0, 1/3.
    expect(Array.from(toF16Bits(Float32Array.from([1, 65504, 65520, 2 ** -24, 2 ** -25, 3 * 2 ** -26, -0, 1 / 3, 1e-8, -1e6])))).toEqual([
      0x3c00, 0x7bff, 0x7c00, 0x0001, 0x0000, 0x0001, 0x8000, 0x3555, 0x0000, 0xfc00,
    ]);
    expect(Number.isNaN(roundToF16(Float32Array.from([NaN]))[0])).toBe(true);
    const back = new Float32Array(3);
    decodeInto(new Uint8Array(Uint16Array.from([0x3c00, 0x0001, 0xfbff]).buffer), 'F16', 3, back, 0);
    expect(Array.from(back)).toEqual([1, 2 ** -24, -65504]);
  });

  test('BF16 / F16 files hold the rounded values and half the bytes', () => {
    const dir = tmpDir();
    const vals = Array.from({ length: 64 }, (_, i) => Math.sin(i) * 10 ** ((i % 9) - 4));
    for (const dtype of ['BF16', 'F16'] as const) {
      const file = path.join(dir, `${dtype}.safetensors`);
      writeSafetensors(file, [tensor('w', [8, 8], vals)], { dtype });
      const f = SafetensorsFile.open(file);
      expect(f.info('w').dtype).toBe(dtype);
      const want = dtype === 'BF16' ? roundToBf16(Float32Array.from(vals)) : roundToF16(Float32Array.from(vals));
      expect(bits(f.read('w'))).toEqual(bits(want));
      f.close();
      expect(fs.statSync(file).size).toBeLessThan(64 * 4);
    }
  });

  test('sharding follows the HF convention: numbered shards plus an index with weight_map and total_size', () => {
    const dir = tmpDir();
    const ts = Array.from({ length: 5 }, (_, i) => tensor(`t${i}`, [10], Array.from({ length: 10 }, (_, j) => i * 10 + j)));
    const files = writeShardedSafetensors(dir, ts, { maxShardBytes: 100 });
    expect(files).toEqual([
      'model-00001-of-00003.safetensors',
      'model-00002-of-00003.safetensors',
      'model-00003-of-00003.safetensors',
      'model.safetensors.index.json',
    ]);
    const index = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
    expect(index.metadata.total_size).toBe(5 * 40);
    expect(index.weight_map).toEqual({
      t0: 'model-00001-of-00003.safetensors',
      t1: 'model-00001-of-00003.safetensors',
      t2: 'model-00002-of-00003.safetensors',
      t3: 'model-00002-of-00003.safetensors',
      t4: 'model-00003-of-00003.safetensors',
    });
    for (const [name, file] of Object.entries(index.weight_map)) {
      const f = SafetensorsFile.open(path.join(dir, file));
      expect(Array.from(f.read(name))).toEqual(Array.from({ length: 10 }, (_, j) => Number(name.slice(1)) * 10 + j));
      f.close();
    }
    // Everything in one shard: a single model.safetensors and no index.
    const one = tmpDir();
    expect(writeShardedSafetensors(one, ts)).toEqual(['model.safetensors']);
  });

  test('a failing value source leaves no partial file behind', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'x.safetensors');
    expect(() => writeSafetensors(file, [{ name: 'w', shape: [4], values: () => new Float32Array(3) }])).toThrow(/"w" has 3 values for shape \[4\]/);
    expect(fs.readdirSync(dir)).toEqual([]);
  });
});

describe('hostile safetensors', () => {
  const cases: [string, RegExp][] = [
    ['huge_header', /header length 1000000000000000 exceeds the 104857600-byte limit/],
    ['huge_tensor', /"w": data_offsets \[0, 1000000000000000\] run past the end of the file/],
    ['offset_past_eof', /"b": data_offsets \[4096, 4112\] run past the end of the file/],
    ['overlap', /tensors "a" and "b" overlap/],
    ['size_mismatch', /"a": shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 16\] hold 16/],
    ['not_json', /header is not valid JSON/],
  ];
  test.each(cases)('%s is refused with a clear error and no large allocation', (name, message) => {
    const before = process.memoryUsage().arrayBuffers;
    expect(() => SafetensorsFile.open(path.join(HOSTILE, `${name}.safetensors`))).toThrow(message);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 * 1024);
  });

  test('a header length that is allocatable but larger than the file is refused before allocating it', () => {
    const file = path.join(tmpDir(), 'h.safetensors');
    const b = Buffer.alloc(64);
    b.writeBigUInt64LE(BigInt(60 * 1024 * 1024));
    fs.writeFileSync(file, b);
    const before = process.memoryUsage().arrayBuffers;
    expect(() => SafetensorsFile.open(file)).toThrow(/header length 62914560 runs past the end of the 64-byte file/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 * 1024);
  });

  test('bad dtypes, shapes and offsets are named', () => {
    const dir = tmpDir();
    const write = (header: object, dataBytes = 16) => {
      const raw = Buffer.from(JSON.stringify(header));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(raw.length));
      const f = path.join(dir, `${Math.random()}.safetensors`);
      fs.writeFileSync(f, Buffer.concat([len, raw, Buffer.alloc(dataBytes)]));
      return f;
    };
    expect(() => SafetensorsFile.open(write({ a: { dtype: 'Q8', shape: [4], data_offsets: [0, 4] } }))).toThrow(/"a" has unsupported dtype "Q8"/);
    expect(() => SafetensorsFile.open(write({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }))).toThrow(/invalid dimension -1/);
    expect(() => SafetensorsFile.open(write({ a: { dtype: 'F32', shape: [1], data_offsets: [8, 4] } }))).toThrow(/invalid data_offsets \[8,4\]/);
    expect(() => SafetensorsFile.open(write([1, 2]))).toThrow(/header is not a JSON object/);
    expect(() => SafetensorsFile.open(write({ __metadata__: { a: 1 } }))).toThrow(/__metadata__ value for "a" is not a string/);
  });
});

describe('data_offsets must tile the data section exactly', () => {
  const RULE = /data_offsets to tile the data section exactly: sorted by begin, the first begins at 0, each begins where the previous ends, and the last ends at the end of the file/;

  /** A file with this header (spaces pad it to 8-byte alignment, as writers do) and `dataBytes` data bytes 0, 1, 2, .... */
  function build(header: object, dataBytes: number, dir = tmpDir()): string {
    let json = JSON.stringify(header);
    json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    const data = Buffer.alloc(dataBytes);
    for (let i = 0; i < dataBytes; i++) data[i] = i & 0xff;
    const file = path.join(dir, 'model.safetensors');
    fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json), data]));
    return file;
  }
  const f32 = (n: number, a: number) => ({ dtype: 'F32', shape: [n], data_offsets: [a, a + 4 * n] });

  /** The UserError that opening `file` throws: one paragraph naming the file and quoting the format's rule. */
  function refusal(file: string): UserError {
    let err: unknown;
    try {
      SafetensorsFile.open(file).close();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(UserError);
    const e = err as UserError;
    expect(e.message.startsWith(`safetensors ${file}: `)).toBe(true);
    expect(e.message).not.toMatch(/\n/);
    expect(e.message).toMatch(RULE);
    return e;
  }

  const refused: [string, object, number, RegExp][] = [
    ['a gap between two tensors', { a: f32(4, 0), b: f32(4, 20) }, 36, /bytes \[16, 20\) of the data section belong to no tensor: "a" \(data_offsets \[0, 16\]\) ends at 16 but the next tensor, "b" \(data_offsets \[20, 36\]\), begins at 20/],
    ['a gap before the first tensor', { a: f32(4, 8) }, 24, /bytes \[0, 8\) of the data section belong to no tensor: the first tensor, "a" \(data_offsets \[8, 24\]\), begins at 8 instead of 0/],
    ['trailing bytes after the last tensor', { a: f32(4, 0), b: f32(2, 16) }, 30, /the data section is 30 bytes but its last tensor, "b" \(data_offsets \[16, 24\]\), ends at 24: 6 trailing bytes belong to no tensor/],
    ['trailing bytes and no tensors at all', { __metadata__: { format: 'pt' } }, 8, /the data section is 8 bytes but the header lists no tensors: 8 trailing bytes belong to no tensor/],
    ['listed out of order and overlapping', { b: f32(4, 8), a: f32(4, 0) }, 24, /tensors "a" and "b" overlap: "b" \(data_offsets \[8, 24\]\) begins at 8, inside "a" \(data_offsets \[0, 16\]\)/],
    ['two tensors on the same bytes', { a: f32(4, 0), b: f32(4, 0) }, 16, /tensors "a" and "b" overlap/],
    ['a zero-size tensor inside another', { a: f32(4, 0), z: { dtype: 'F32', shape: [0], data_offsets: [8, 8] } }, 16, /tensors "a" and "z" overlap: "z" \(data_offsets \[8, 8\]\) begins at 8, inside "a"/],
  ];
  test.each(refused)('%s is refused with one paragraph naming the file', (_what, header, dataBytes, message) => {
    expect(refusal(build(header, dataBytes)).message).toMatch(message);
  });

  test('the hostile overlap fixture is refused under the same rule', () => {
    expect(refusal(path.join(HOSTILE, 'overlap.safetensors')).message).toMatch(/tensors "a" and "b" overlap/);
  });

  test('exact tilings open: any header order, zero-size tensors at a boundary, and an empty file', () => {
    const file = build({ b: f32(2, 16), z0: { dtype: 'F32', shape: [0, 3], data_offsets: [0, 0] }, a: f32(4, 0), z: { dtype: 'F32', shape: [0], data_offsets: [16, 16] }, end: { dtype: 'BF16', shape: [0], data_offsets: [24, 24] } }, 24);
    const f = SafetensorsFile.open(file);
    try {
      expect(f.names().sort()).toEqual(['a', 'b', 'end', 'z', 'z0']);
      const raw = new Float32Array(Uint8Array.from({ length: 24 }, (_, i) => i).buffer);
      expect(bits(f.read('a'))).toEqual(bits(raw.subarray(0, 4)));
      expect(bits(f.read('b'))).toEqual(bits(raw.subarray(4, 6)));
      expect(f.read('z')).toHaveLength(0);
    } finally {
      f.close();
    }
    SafetensorsFile.open(build({}, 0)).close();
    SafetensorsFile.open(build({ __metadata__: { format: 'pt' } }, 0)).close();
  });

  test('our writer\'s files and every non-hostile fixture still open', () => {
    const dir = tmpDir();
    const file = path.join(dir, 'w.safetensors');
    for (const dtype of ['F32', 'BF16', 'F16'] as const) {
      writeSafetensors(file, [tensor('e0', [0], []), tensor('x', [3], [1, 2, 3]), tensor('e1', [2, 0], []), tensor('s', [], [4]), tensor('e2', [0], [])], { dtype });
      const f = SafetensorsFile.open(file);
      expect(Array.from(f.read('x'))).toEqual([1, 2, 3]);
      expect(Array.from(f.read('s'))).toEqual([4]);
      f.close();
    }
    writeSafetensors(file, []);
    SafetensorsFile.open(file).close();
    const found: string[] = [];
    const walk = (d: string): void => {
      for (const ent of fs.readdirSync(d, { withFileTypes: true })) {
        const p = path.join(d, ent.name);
        if (ent.isDirectory() && ent.name !== 'hostile') walk(p);
        else if (ent.isFile() && ent.name.endsWith('.safetensors')) found.push(p);
      }
    };
    walk(path.join(__dirname, 'fixtures'));
    expect(found.length).toBeGreaterThan(3);
    for (const p of found) SafetensorsFile.open(p).close();
  });

  test('convert refuses a file with a gap or trailing bytes and writes nothing', () => {
    for (const [header, dataBytes, message] of [
      [{ a: f32(4, 0), b: f32(4, 20) }, 36, /bytes \[16, 20\) of the data section belong to no tensor/],
      [{ a: f32(4, 0) }, 20, /4 trailing bytes belong to no tensor/],
    ] as [object, number, RegExp][]) {
      const input = build(header, dataBytes);
      const out = path.join(tmpDir(), 'out');
      expect(() => convertCheckpoint(path.dirname(input), out)).toThrow(UserError);
      expect(() => convertCheckpoint(input, out)).toThrow(message);
      expect(fs.existsSync(out)).toBe(false);
    }
  });

  test('`janus4o convert` on such a file exits 2 with the one-paragraph message and no debug hint', () => {
    const input = build({ a: f32(4, 0), b: f32(4, 20) }, 36);
    const out = path.join(tmpDir(), 'out');
    const r = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli', 'main.js'), 'convert', path.dirname(input), out], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr.startsWith(`janus4o: error: safetensors ${input}: bytes [16, 20) of the data section belong to no tensor`)).toBe(true);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).not.toMatch(/JANUS4O_DEBUG/);
    expect(fs.existsSync(out)).toBe(false);
  });
});
