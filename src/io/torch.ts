/**
 * PyTorch `torch.save` checkpoints (the zip format, PyTorch >= 1.6): `<archive>/data.pkl` holds the state dict
 * as a pickle whose tensors point, through persistent ids, at raw little-endian storages `<archive>/data/<key>`.
 * The pickle goes through the restricted unpickler with the allow-list below; tensors become references
 * (storage, offset, size, stride) and their bytes are read one tensor at a time, only when asked for.
 */
import { DTYPE_BYTES, StoredDtype, TensorInfo, TensorSource, decodeInto, numelOf } from './dtypes';
import { GlobalHandler, PickleDict, PickleGlobal, PickleObject, PickleTuple, PickleValue, registerBuilt, unpickle } from './pickle';
import { ZipEntry, ZipReader } from './zip';

/** A Janus-7B data.pkl is ~100 KB; a pickle this large is not a state dict. */
const MAX_PICKLE_BYTES = 256 * 1024 * 1024;

const STORAGE_DTYPES: Readonly<Record<string, StoredDtype>> = {
  FloatStorage: 'F32',
  DoubleStorage: 'F64',
  HalfStorage: 'F16',
  BFloat16Storage: 'BF16',
  LongStorage: 'I64',
  IntStorage: 'I32',
  ShortStorage: 'I16',
  CharStorage: 'I8',
  ByteStorage: 'U8',
  BoolStorage: 'BOOL',
};

class StorageRef extends PickleObject {
  readonly kind = 'storage';
  constructor(readonly dtype: StoredDtype, readonly key: string, readonly numel: number) {
    super();
  }
}

class TensorRef extends PickleObject {
  readonly kind = 'tensor';
  constructor(readonly storage: StorageRef, readonly offset: number, readonly shape: number[], readonly stride: number[]) {
    super();
  }
}

const isInt = (v: PickleValue): v is number => typeof v === 'number' && Number.isSafeInteger(v);

function intTuple(v: PickleValue, what: string): number[] {
  if (!(v instanceof PickleTuple) || !v.items.every(isInt)) throw new Error(`torch checkpoint: ${what} is not a tuple of integers`);
  return v.items as number[];
}

function rebuildTensor(args: PickleValue[]): TensorRef {
  const [storage, offset, size, stride] = args;
  if (!(storage instanceof StorageRef)) throw new Error('torch checkpoint: _rebuild_tensor without a storage');
  if (!isInt(offset) || offset < 0) throw new Error('torch checkpoint: invalid storage offset');
  const shape = intTuple(size, 'tensor size');
  const strides = intTuple(stride, 'tensor stride');
  if (shape.length !== strides.length) throw new Error('torch checkpoint: size and stride lengths differ');
  if (strides.some((s) => s < 0) || shape.some((d) => d < 0)) throw new Error('torch checkpoint: negative size or stride');
  const count = numelOf(shape, 'torch tensor');
  if (count > 0) {
    let last = offset;
    for (let i = 0; i < shape.length; i++) last += (shape[i] - 1) * strides[i];
    if (last >= storage.numel) throw new Error(`torch checkpoint: tensor view reaches element ${last} of a ${storage.numel}-element storage`);
  }
  return new TensorRef(storage, offset, shape, strides);
}

const dictHandler: GlobalHandler = {
  call: (args) => {
    if (args.length !== 0) throw new Error('torch checkpoint: OrderedDict with constructor arguments is not supported');
    return registerBuilt(new Map(), dictHandler);
  },
  // A state dict's BUILD state is `{_metadata: ...}` (module versions); it carries no weights.
  build: (obj) => obj,
};

function allowList(): Map<string, GlobalHandler> {
  const m = new Map<string, GlobalHandler>();
  m.set('collections.OrderedDict', dictHandler);
  m.set('torch._utils._rebuild_tensor', { call: rebuildTensor });
  m.set('torch._utils._rebuild_tensor_v2', { call: rebuildTensor });
  // nn.Parameter saved directly: (data, requires_grad, backward_hooks) -> data.
  m.set('torch._utils._rebuild_parameter', { call: (a) => a[0] });
  m.set('torch._utils._rebuild_parameter_with_state', { call: (a) => a[0] });
  // Tensor subclasses: (func, type, args, state) -> func(*args); func must itself be an allowed global.
  m.set('torch._tensor._rebuild_from_type_v2', {
    call: (a) => {
      const [fn, , args] = a;
      if (!(fn instanceof PickleGlobal) || !fn.handler.call || !(args instanceof PickleTuple)) throw new Error('torch checkpoint: malformed _rebuild_from_type_v2');
      return fn.handler.call(args.items);
    },
  });
  m.set('torch._tensor.Tensor', {});
  m.set('torch.Tensor', {});
  m.set('torch.nn.parameter.Parameter', {});
  // Storage types only appear inside persistent ids, as names; they are never called.
  for (const name of Object.keys(STORAGE_DTYPES)) m.set(`torch.${name}`, {});
  return m;
}

const ALLOWED = allowList();

/** The storage-type global in a persistent id, resolved to a dtype (globals are inert until called). */
function storageDtype(v: PickleValue): StoredDtype {
  if (v instanceof PickleGlobal && v.module === 'torch' && STORAGE_DTYPES[v.name]) return STORAGE_DTYPES[v.name];
  throw new Error('torch checkpoint: persistent id without a known storage type');
}

export class TorchCheckpoint implements TensorSource {
  private constructor(
    readonly file: string,
    private readonly zip: ZipReader,
    private readonly tensors: Map<string, { ref: TensorRef; entry: ZipEntry }>,
  ) {}

  static open(file: string): TorchCheckpoint {
    const zip = ZipReader.open(file);
    try {
      return new TorchCheckpoint(file, zip, parse(zip, file));
    } catch (e) {
      zip.close();
      throw e;
    }
  }

  names(): string[] {
    return [...this.tensors.keys()];
  }

  info(name: string): TensorInfo {
    const t = this.get(name);
    return { dtype: t.ref.storage.dtype, shape: t.ref.shape.slice() };
  }

  read(name: string): Float32Array {
    const { ref, entry } = this.get(name);
    const dtype = ref.storage.dtype;
    const size = DTYPE_BYTES[dtype];
    const count = numelOf(ref.shape, name);
    const out = new Float32Array(count);
    if (count === 0) return out;
    if (isContiguous(ref.shape, ref.stride)) {
      const raw = new Uint8Array(count * size);
      this.zip.readRange(entry, ref.offset * size, raw.length, raw);
      decodeInto(raw, dtype, count, out, 0);
      return out;
    }
    // A strided view (slices saved without .contiguous()): read the span it touches and gather.
    let span = 1;
    for (let i = 0; i < ref.shape.length; i++) span += (ref.shape[i] - 1) * ref.stride[i];
    const raw = new Uint8Array(span * size);
    this.zip.readRange(entry, ref.offset * size, raw.length, raw);
    const all = new Float32Array(span);
    decodeInto(raw, dtype, span, all, 0);
    const idx = new Array<number>(ref.shape.length).fill(0);
    for (let o = 0; o < count; o++) {
      let at = 0;
      for (let d = 0; d < idx.length; d++) at += idx[d] * ref.stride[d];
      out[o] = all[at];
      for (let d = idx.length - 1; d >= 0; d--) {
        if (++idx[d] < ref.shape[d]) break;
        idx[d] = 0;
      }
    }
    return out;
  }

  close(): void {
    this.zip.close();
  }

  private get(name: string): { ref: TensorRef; entry: ZipEntry } {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`torch checkpoint ${this.file}: no tensor "${name}"`);
    return t;
  }
}

function isContiguous(shape: number[], stride: number[]): boolean {
  let expect = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] !== 1 && stride[i] !== expect) return false;
    expect *= shape[i];
  }
  return true;
}

function parse(zip: ZipReader, file: string): Map<string, { ref: TensorRef; entry: ZipEntry }> {
  const pkls = [...zip.entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) throw new Error(`torch checkpoint ${file}: expected one <archive>/data.pkl entry, found ${pkls.length} (is this a torch.save zip?)`);
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  const order = zip.entries.get(`${prefix}byteorder`);
  if (order) {
    const b = Buffer.from(zip.readEntry(order.name, 16)).toString('latin1');
    if (b !== 'little') throw new Error(`torch checkpoint ${file}: byte order "${b}" is not supported`);
  }
  const storages = new Map<string, StorageRef>();
  const root = unpickle(zip.readEntry(pkls[0], MAX_PICKLE_BYTES), {
    source: `${file}:${pkls[0]}`,
    resolveGlobal: (module, name) => ALLOWED.get(`${module}.${name}`),
    persistentLoad: (pid) => {
      if (!(pid instanceof PickleTuple) || pid.items.length !== 5 || pid.items[0] !== 'storage') throw new Error(`torch checkpoint ${file}: unsupported persistent id`);
      const [, type, key, , numel] = pid.items;
      if (typeof key !== 'string' || !isInt(numel) || numel < 0) throw new Error(`torch checkpoint ${file}: malformed storage reference`);
      const dtype = storageDtype(type);
      const seen = storages.get(key);
      if (seen) return seen;
      const ref = new StorageRef(dtype, key, numel);
      storages.set(key, ref);
      return ref;
    },
  });
  if (!(root instanceof Map)) throw new Error(`torch checkpoint ${file}: the pickle is not a dict (state dict expected)`);
  const out = new Map<string, { ref: TensorRef; entry: ZipEntry }>();
  for (const [k, v] of root as PickleDict) {
    if (typeof k !== 'string') throw new Error(`torch checkpoint ${file}: non-string key ${String(k)}`);
    if (!(v instanceof TensorRef)) throw new Error(`torch checkpoint ${file}: "${k}" is not a tensor (a plain state dict of tensors is expected)`);
    const entry = zip.entries.get(`${prefix}data/${v.storage.key}`);
    if (!entry) throw new Error(`torch checkpoint ${file}: storage "${v.storage.key}" of "${k}" is missing`);
    const want = v.storage.numel * DTYPE_BYTES[v.storage.dtype];
    if (entry.size < want) throw new Error(`torch checkpoint ${file}: storage "${v.storage.key}" has ${entry.size} bytes, ${want} expected`);
    out.set(k, { ref: v, entry });
  }
  return out;
}
