import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { roundToBf16 } from '../src/io/dtypes';
import { openWeights } from '../src/io/pretrained';
import { SafetensorsFile } from '../src/io/safetensors';
import { TorchCheckpoint } from '../src/io/torch';
import { ZipReader } from '../src/io/zip';

const FIX = path.join(__dirname, 'fixtures', 'tiny-janus');
const MARKER = '/tmp/janus4o-hostile-marker';

// Every temporary file of this suite lives under one folder, removed at the end.
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-pt-'));
afterAll(() => fs.rmSync(TMP, { recursive: true, force: true }));

function bits(x: Float32Array): number[] {
  return Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
}

// ---- a minimal stored-zip writer (optionally ZIP64 everywhere), to build archives the fixtures cannot ----
function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v);
  return b;
}
function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}
function u64(v: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(v));
  return b;
}

function makeZip(entries: { name: string; data: Uint8Array; claimedSize?: number }[], zip64 = false): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const size = e.claimedSize ?? e.data.length;
    const localExtra = zip64 ? Buffer.concat([u16(1), u16(16), u64(size), u64(size)]) : Buffer.alloc(0);
    const s32 = zip64 ? 0xffffffff : size;
    const local = Buffer.concat([u32(0x04034b50), u16(45), u16(0), u16(0), u32(0), u32(0), u32(s32), u32(s32), u16(name.length), u16(localExtra.length), name, localExtra, Buffer.from(e.data)]);
    const cdExtra = zip64 ? Buffer.concat([u16(1), u16(24), u64(size), u64(size), u64(offset)]) : Buffer.alloc(0);
    central.push(
      Buffer.concat([u32(0x02014b50), u16(45), u16(45), u16(0), u16(0), u32(0), u32(0), u32(s32), u32(s32), u16(name.length), u16(cdExtra.length), u16(0), u16(0), u16(0), u32(0), u32(zip64 ? 0xffffffff : offset), name, cdExtra]),
    );
    parts.push(local);
    offset += local.length;
  }
  const cd = Buffer.concat(central);
  const tail: Buffer[] = [];
  if (zip64) {
    const z64At = offset + cd.length;
    tail.push(Buffer.concat([u32(0x06064b50), u64(44), u16(45), u16(45), u32(0), u32(0), u64(entries.length), u64(entries.length), u64(cd.length), u64(offset)]));
    tail.push(Buffer.concat([u32(0x07064b50), u32(0), u64(z64At), u32(1)]));
    tail.push(Buffer.concat([u32(0x06054b50), u16(0), u16(0), u16(0xffff), u16(0xffff), u32(0xffffffff), u32(0xffffffff), u16(0)]));
  } else {
    tail.push(Buffer.concat([u32(0x06054b50), u16(0), u16(0), u16(entries.length), u16(entries.length), u32(cd.length), u32(offset), u16(0)]));
  }
  return Buffer.concat([...parts, cd, ...tail]);
}

// ---- pickle bytes (protocol 2 opcodes) ----
const op = (...b: number[]) => Buffer.from(b);
const str = (s: string) => Buffer.concat([op(0x58), u32(Buffer.byteLength(s)), Buffer.from(s)]);
const glob = (m: string, n: string) => Buffer.from(`c${m}\n${n}\n`, 'latin1');
const int = (v: number) => Buffer.concat([op(0x4a), u32(v)]);
const MARK = op(0x28);
const TUPLE = op(0x74);
const REDUCE = op(0x52);

/** A state dict {name: float tensor of `shape`} over storage "0" of `numel` floats (torch.save's own pickle shape). */
function stateDictPickle(name: string, shape: number[], stride: number[], offset: number, numel: number): Buffer {
  return Buffer.concat([
    op(0x80, 2),
    glob('collections', 'OrderedDict'),
    op(0x29),
    REDUCE,
    MARK,
    str(name),
    glob('torch._utils', '_rebuild_tensor_v2'),
    MARK,
    MARK,
    str('storage'),
    glob('torch', 'FloatStorage'),
    str('0'),
    str('cpu'),
    int(numel),
    TUPLE,
    op(0x51),
    int(offset),
    MARK,
    ...shape.map(int),
    TUPLE,
    MARK,
    ...stride.map(int),
    TUPLE,
    op(0x89),
    glob('collections', 'OrderedDict'),
    op(0x29),
    REDUCE,
    TUPLE,
    REDUCE,
    op(0x75),
    op(0x2e),
  ]);
}

function writeTmp(buf: Buffer): string {
  const f = path.join(fs.mkdtempSync(path.join(TMP, 'd-')), 'x.bin');
  fs.writeFileSync(f, buf);
  return f;
}

function torchZip(pkl: Buffer, storage = new Float32Array(6).map((_, i) => i + 0.5), zip64 = false): string {
  return writeTmp(makeZip([{ name: 'archive/data.pkl', data: pkl }, { name: 'archive/data/0', data: new Uint8Array(storage.buffer) }, { name: 'archive/version', data: Buffer.from('3\n') }], zip64));
}

describe('PyTorch .bin reading', () => {
  test('the torch.save fixture gives exactly the float32 weights of the safetensors fixture', () => {
    const bin = TorchCheckpoint.open(path.join(FIX, 'bin', 'pytorch_model.bin'));
    const st = SafetensorsFile.open(path.join(FIX, 'safetensors', 'model.safetensors'));
    try {
      expect(bin.names()).toEqual(st.names());
      for (const n of st.names()) {
        expect(bin.info(n)).toEqual(st.info(n));
        expect(bits(bin.read(n))).toEqual(bits(st.read(n)));
      }
    } finally {
      bin.close();
      st.close();
    }
  });

  test('the BF16 sharded fixture (index + 2 shards) gives the bf16-rounded weights', () => {
    const bf = openWeights(path.join(FIX, 'bf16-sharded'));
    const st = SafetensorsFile.open(path.join(FIX, 'safetensors', 'model.safetensors'));
    try {
      expect(new Set(bf.names())).toEqual(new Set(st.names()));
      for (const n of st.names()) {
        expect(bf.info(n)).toEqual({ dtype: 'BF16', shape: st.info(n).shape });
        expect(bits(bf.read(n))).toEqual(bits(roundToBf16(st.read(n))));
      }
    } finally {
      bf.close();
      st.close();
    }
  });

  test('views, offsets, F16, I64, nn.Parameter, empty and 0-d tensors from torch.save', () => {
    const f = TorchCheckpoint.open(path.join(FIX, 'misc.bin'));
    try {
      const base = Array.from({ length: 24 }, (_, i) => i);
      const at = (r: number, c: number) => base[r * 6 + c];
      expect(Array.from(f.read('base'))).toEqual(base);
      expect(f.info('view')).toEqual({ dtype: 'F32', shape: [4, 2] });
      expect(Array.from(f.read('view'))).toEqual([0, 1, 2, 3].flatMap((r) => [at(r, 1), at(r, 3)]));
      expect(Array.from(f.read('transposed'))).toEqual([0, 1, 2, 3, 4, 5].flatMap((c) => [0, 1, 2, 3].map((r) => at(r, c))));
      expect(Array.from(f.read('row'))).toEqual(base.slice(12, 18));
      expect(f.info('half').dtype).toBe('F16');
      expect(Array.from(f.read('half'))).toEqual([0, 0.25, 0.5, 0.75, 1]);
      expect(f.info('long').dtype).toBe('I64');
      expect(Array.from(f.read('long'))).toEqual([-2, -1, 0, 1, 2]);
      expect(Array.from(f.read('param'))).toEqual([1.5, -2]);
      expect(f.info('empty').shape).toEqual([0, 3]);
      expect(f.read('empty')).toHaveLength(0);
      expect(f.info('scalar').shape).toEqual([]);
      expect(Array.from(f.read('scalar'))).toEqual([7]);
    } finally {
      f.close();
    }
  });

  test('ZIP64 archives (as torch writes for shards over 4 GiB) read the same as plain ones', () => {
    const pkl = stateDictPickle('w', [2, 3], [3, 1], 0, 6);
    for (const zip64 of [false, true]) {
      const f = TorchCheckpoint.open(torchZip(pkl, undefined, zip64));
      expect(f.info('w')).toEqual({ dtype: 'F32', shape: [2, 3] });
      expect(Array.from(f.read('w'))).toEqual([0.5, 1.5, 2.5, 3.5, 4.5, 5.5]);
      f.close();
    }
  });

  test('a view reaching past its storage, or a missing storage, is refused', () => {
    expect(() => TorchCheckpoint.open(torchZip(stateDictPickle('w', [2, 3], [3, 1], 1, 6)))).toThrow(/view reaches element 6 of a 6-element storage/);
    const noStorage = writeTmp(makeZip([{ name: 'archive/data.pkl', data: stateDictPickle('w', [2], [1], 0, 2) }]));
    expect(() => TorchCheckpoint.open(noStorage)).toThrow(/storage "0" of "w" is missing/);
  });
});

describe('hostile PyTorch files', () => {
  beforeAll(() => fs.rmSync(MARKER, { force: true }));

  test.each([
    ['os_system.bin', /refusing global posix\.system/],
    ['eval.bin', /refusing global __builtin__\.eval/],
    ['counter.bin', /refusing global collections\.Counter/],
  ])('%s (made by Python pickle) is refused and nothing runs', (file, message) => {
    expect(() => TorchCheckpoint.open(path.join(FIX, 'hostile', file))).toThrow(message);
    expect(fs.existsSync(MARKER)).toBe(false);
  });

  test.each([
    ['traversal.bin', /unsafe entry name "archive\/\.\.\/\.\.\/evil\.txt"/],
    ['absolute.bin', /unsafe entry name "\/etc\/evil\.txt"/],
  ])('%s: a zip with escaping entry names is refused as a whole', (file, message) => {
    expect(() => ZipReader.open(path.join(FIX, 'hostile', file))).toThrow(message);
    expect(() => TorchCheckpoint.open(path.join(FIX, 'hostile', file))).toThrow(message);
  });

  test('backslash, drive-letter and duplicate names are refused too', () => {
    const d = new Uint8Array(1);
    expect(() => ZipReader.open(writeTmp(makeZip([{ name: 'a\\..\\b', data: d }])))).toThrow(/unsafe entry name/);
    expect(() => ZipReader.open(writeTmp(makeZip([{ name: 'C:/x', data: d }])))).toThrow(/unsafe entry name/);
    expect(() => ZipReader.open(writeTmp(makeZip([{ name: 'a/b', data: d }, { name: 'a/b', data: d }])))).toThrow(/duplicate entry "a\/b"/);
  });

  test.each([
    ['STACK_GLOBAL os.system', Buffer.concat([op(0x80, 4), str('os'), str('system'), op(0x93), MARK, str('touch ' + MARKER), TUPLE, REDUCE, op(0x2e)]), /refusing global os\.system/],
    ['GLOBAL subprocess.Popen', Buffer.concat([op(0x80, 2), glob('subprocess', 'Popen'), op(0x2e)]), /refusing global subprocess\.Popen/],
    ['INST', Buffer.concat([op(0x80, 2), MARK, Buffer.from('ios\nsystem\n'), op(0x2e)]), /refusing pickle opcode 0x69 \(INST\)/],
    ['NEWOBJ', Buffer.concat([op(0x80, 2), glob('collections', 'OrderedDict'), op(0x29), op(0x81), op(0x2e)]), /refusing pickle opcode 0x81 \(NEWOBJ\)/],
    ['calling a type-only global', Buffer.concat([op(0x80, 2), glob('torch', 'Tensor'), op(0x29), REDUCE, op(0x2e)]), /torch\.Tensor is not callable here/],
    ['a 2 GiB string claim', Buffer.concat([op(0x80, 2), op(0x58), u32(0x7fffffff), Buffer.from('abc')]), /truncated input: 2147483647 bytes claimed/],
    ['a 2^31-byte integer', Buffer.concat([op(0x80, 2), op(0x8b), u32(0x80000000)]), /integer of 2147483648 bytes is too large/],
    ['a list instead of a state dict', Buffer.concat([op(0x80, 2), op(0x5d), op(0x2e)]), /the pickle is not a dict/],
  ])('crafted pickle: %s', (_name, pkl, message) => {
    const before = process.memoryUsage().arrayBuffers;
    expect(() => TorchCheckpoint.open(torchZip(pkl))).toThrow(message);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 * 1024);
    expect(fs.existsSync(MARKER)).toBe(false);
  });

  test('a zip entry claiming 300 MB in a tiny file is refused before allocating', () => {
    const f = writeTmp(makeZip([{ name: 'archive/data.pkl', data: new Uint8Array(8), claimedSize: 300e6 }], true));
    const before = process.memoryUsage().arrayBuffers;
    expect(() => TorchCheckpoint.open(f)).toThrow(/entry "archive\/data.pkl" data runs past the data area/);
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(8 * 1024 * 1024);
  });

  test('non-zip and legacy (pre-1.6) files get a clear error', () => {
    expect(() => TorchCheckpoint.open(writeTmp(Buffer.from('\x80\x02}q\x00.', 'latin1')))).toThrow(/no end-of-central-directory record.*legacy format/);
  });
});
