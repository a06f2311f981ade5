/**
 * A restricted unpickler. It interprets the pickle opcodes a PyTorch state dict uses (protocols 2-5: containers,
 * scalars, strings, memo, GLOBAL/STACK_GLOBAL, REDUCE, BUILD, BINPERSID) as pure data, and it never runs
 * anything: a GLOBAL is only a name looked up in the caller's allow-list, whose handlers build plain data. Any
 * name not on the list stops the load with an error naming it, before the callable could be used. Opcodes that
 * instantiate classes by other routes (INST, OBJ, NEWOBJ, EXT*) are refused outright.
 *
 * Resource bounds: every length field is checked against the bytes left, so a hostile size cannot cause a large
 * allocation; stack, memo and container sizes are bounded by the input length.
 */

/** A Python tuple (kept distinct from lists, because torch's rebuild functions take tuples). */
export class PickleTuple {
  constructor(readonly items: PickleValue[]) {}
}

/** A global that passed the allow-list; calling it goes through its handler. */
export class PickleGlobal {
  constructor(readonly module: string, readonly name: string, readonly handler: GlobalHandler) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** Values a handler produces that are not plain data (tensors, storages): subclass this. */
export abstract class PickleObject {
  abstract readonly kind: string;
}

export type PickleKey = string | number | bigint | boolean | null;
export type PickleDict = Map<PickleKey, PickleValue>;
export type PickleValue = null | boolean | number | bigint | string | Uint8Array | PickleValue[] | PickleTuple | PickleDict | PickleGlobal | PickleObject;

export interface GlobalHandler {
  /** REDUCE (a call) with positional arguments; absent for globals that are only types (e.g. torch.Tensor). */
  call?: (args: PickleValue[]) => PickleValue;
  /** BUILD on an object this global made: absorb or ignore `state`, return the object. */
  build?: (obj: PickleValue, state: PickleValue) => PickleValue;
}

export interface UnpickleOptions {
  /** The allow-list: a handler for `module.name`, or undefined to refuse it. */
  resolveGlobal: (module: string, name: string) => GlobalHandler | undefined;
  /** BINPERSID: turns a persistent id into a value (torch: storage references). */
  persistentLoad: (pid: PickleValue) => PickleValue;
  /** Source name for error messages. */
  source: string;
}

class Mark {}
const MARK = new Mark();
type StackItem = PickleValue | Mark;

export function unpickle(data: Uint8Array, opts: UnpickleOptions): PickleValue {
  const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const stack: StackItem[] = [];
  const memo = new Map<number, PickleValue>();
  let pos = 0;
  const fail = (msg: string): never => {
    throw new Error(`unpickle ${opts.source}: ${msg} (at byte ${pos})`);
  };
  const need = (n: number) => {
    if (!Number.isSafeInteger(n) || n < 0 || pos + n > data.length) fail(`truncated input: ${n} bytes claimed, ${data.length - pos} left`);
  };
  const u8 = () => (need(1), data[pos++]);
  const u16 = () => (need(2), (pos += 2), dv.getUint16(pos - 2, true));
  const i32 = () => (need(4), (pos += 4), dv.getInt32(pos - 4, true));
  const u32 = () => (need(4), (pos += 4), dv.getUint32(pos - 4, true));
  const u64 = () => {
    need(8);
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(data.length)) fail(`length ${v} exceeds the input`);
    return Number(v);
  };
  const bytes = (n: number) => (need(n), (pos += n), data.subarray(pos - n, pos));
  const utf8 = (n: number) => Buffer.from(bytes(n)).toString('utf8');
  const line = () => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated text line');
    const s = Buffer.from(data.subarray(pos, end)).toString('latin1');
    pos = end + 1;
    return s;
  };
  const pop = (): PickleValue => {
    const v = stack.pop();
    if (v === undefined) fail('stack underflow');
    if (v instanceof Mark) fail('unexpected MARK');
    return v as PickleValue;
  };
  const top = (): PickleValue => {
    const v = stack[stack.length - 1];
    if (v === undefined || v instanceof Mark) fail('stack underflow');
    return v as PickleValue;
  };
  const popMark = (): PickleValue[] => {
    let i = stack.length - 1;
    while (i >= 0 && !(stack[i] instanceof Mark)) i--;
    if (i < 0) fail('no MARK on the stack');
    const items = stack.splice(i + 1) as PickleValue[];
    stack.pop();
    return items;
  };
  const global = (module: string, name: string): PickleGlobal => {
    const h = opts.resolveGlobal(module, name);
    if (!h) fail(`refusing global ${module}.${name}: only the PyTorch state-dict allow-list may be loaded (the file may be malicious, or not a plain state dict)`);
    return new PickleGlobal(module, name, h as GlobalHandler);
  };
  const setItems = (dict: PickleValue, kv: PickleValue[]) => {
    if (!(dict instanceof Map)) fail('SETITEM on a non-dict');
    if (kv.length % 2) fail('odd number of SETITEMS values');
    for (let i = 0; i < kv.length; i += 2) {
      const k = kv[i];
      if (k !== null && typeof k === 'object') fail('unsupported dict key type');
      (dict as PickleDict).set(k as PickleKey, kv[i + 1]);
    }
  };
  const memoize = (idx: number) => memo.set(idx, top());

  for (;;) {
    const op = u8();
    switch (op) {
      case 0x80: // PROTO
        if (u8() > 5) fail('unsupported pickle protocol');
        break;
      case 0x95: // FRAME (length only; frames are not needed for in-memory data)
        u64();
        break;
      case 0x2e: // STOP
        if (stack.length !== 1) fail(`STOP with ${stack.length} stack items`);
        return pop();
      case 0x28: // MARK
        stack.push(MARK);
        break;
      case 0x30: // POP
        stack.pop();
        break;
      case 0x31: // POP_MARK
        popMark();
        break;
      case 0x32: // DUP
        stack.push(top());
        break;
      case 0x4e: // NONE
        stack.push(null);
        break;
      case 0x88: // NEWTRUE
        stack.push(true);
        break;
      case 0x89: // NEWFALSE
        stack.push(false);
        break;
      case 0x4a: // BININT
        stack.push(i32());
        break;
      case 0x4b: // BININT1
        stack.push(u8());
        break;
      case 0x4d: // BININT2
        stack.push(u16());
        break;
      case 0x8a: // LONG1
      case 0x8b: {
        // LONG4
        const n = op === 0x8a ? u8() : u32();
        if (n > 64) fail(`integer of ${n} bytes is too large`);
        stack.push(littleSigned(bytes(n)));
        break;
      }
      case 0x47: // BINFLOAT (big-endian double)
        need(8);
        stack.push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      case 0x58: // BINUNICODE
        stack.push(utf8(u32()));
        break;
      case 0x8c: // SHORT_BINUNICODE
        stack.push(utf8(u8()));
        break;
      case 0x8d: // BINUNICODE8
        stack.push(utf8(u64()));
        break;
      case 0x54: // BINSTRING (python 2 str)
        stack.push(Buffer.from(bytes(i32())).toString('latin1'));
        break;
      case 0x55: // SHORT_BINSTRING
        stack.push(Buffer.from(bytes(u8())).toString('latin1'));
        break;
      case 0x42: // BINBYTES
        stack.push(bytes(u32()).slice());
        break;
      case 0x43: // SHORT_BINBYTES
        stack.push(bytes(u8()).slice());
        break;
      case 0x8e: // BINBYTES8
        stack.push(bytes(u64()).slice());
        break;
      case 0x29: // EMPTY_TUPLE
        stack.push(new PickleTuple([]));
        break;
      case 0x74: // TUPLE
        stack.push(new PickleTuple(popMark()));
        break;
      case 0x85: // TUPLE1
      case 0x86: // TUPLE2
      case 0x87: {
        // TUPLE3
        const n = op - 0x84;
        const items: PickleValue[] = [];
        for (let i = 0; i < n; i++) items.unshift(pop());
        stack.push(new PickleTuple(items));
        break;
      }
      case 0x5d: // EMPTY_LIST
        stack.push([]);
        break;
      case 0x6c: // LIST
        stack.push(popMark());
        break;
      case 0x61: {
        // APPEND
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) fail('APPEND on a non-list');
        (list as PickleValue[]).push(v);
        break;
      }
      case 0x65: {
        // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) fail('APPENDS on a non-list');
        for (const v of items) (list as PickleValue[]).push(v);
        break;
      }
      case 0x7d: // EMPTY_DICT
        stack.push(new Map());
        break;
      case 0x64: {
        // DICT
        const d: PickleDict = new Map();
        setItems(d, popMark());
        stack.push(d);
        break;
      }
      case 0x73: {
        // SETITEM
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case 0x75: {
        // SETITEMS
        const kv = popMark();
        setItems(top(), kv);
        break;
      }
      case 0x71: // BINPUT
        memoize(u8());
        break;
      case 0x72: // LONG_BINPUT
        memoize(u32());
        break;
      case 0x94: // MEMOIZE
        memoize(memo.size);
        break;
      case 0x68: // BINGET
      case 0x6a: {
        // LONG_BINGET
        const idx = op === 0x68 ? u8() : u32();
        if (!memo.has(idx)) fail(`memo ${idx} is undefined`);
        stack.push(memo.get(idx)!);
        break;
      }
      case 0x63: {
        // GLOBAL "module\nname\n"
        const module = line();
        stack.push(global(module, line()));
        break;
      }
      case 0x93: {
        // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x52: {
        // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PickleGlobal)) fail('REDUCE on something that is not an allowed global');
        const g = fn as PickleGlobal;
        if (!(args instanceof PickleTuple)) fail(`REDUCE of ${g.qualified} without an argument tuple`);
        if (!g.handler.call) fail(`${g.qualified} is not callable here`);
        stack.push(g.handler.call!((args as PickleTuple).items));
        break;
      }
      case 0x62: {
        // BUILD
        const state = pop();
        const obj = pop();
        stack.push(buildObject(obj, state, fail));
        break;
      }
      case 0x51: // BINPERSID
        stack.push(opts.persistentLoad(pop()));
        break;
      default:
        fail(`refusing pickle opcode 0x${op.toString(16).padStart(2, '0')} (${OPCODE_NAMES[op] ?? 'unknown'}): not used by state dicts`);
    }
  }
}

const OPCODE_NAMES: Record<number, string> = {
  0x69: 'INST',
  0x6f: 'OBJ',
  0x81: 'NEWOBJ',
  0x92: 'NEWOBJ_EX',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x50: 'PERSID',
  0x49: 'INT',
  0x4c: 'LONG',
  0x53: 'STRING',
  0x56: 'UNICODE',
  0x46: 'FLOAT',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x96: 'BYTEARRAY8',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

/** Which handler made an object, so BUILD on it (OrderedDict `_metadata`, tensor state) goes back to that handler. */
const buildHandlers = new WeakMap<object, GlobalHandler>();

/** Lets a handler mark an object it made so that BUILD on it is routed back to the handler. */
export function registerBuilt<T extends object>(obj: T, handler: GlobalHandler): T {
  buildHandlers.set(obj, handler);
  return obj;
}

function buildObject(obj: PickleValue, state: PickleValue, fail: (m: string) => never): PickleValue {
  const h = obj !== null && typeof obj === 'object' ? buildHandlers.get(obj) : undefined;
  if (!h || !h.build) fail('BUILD on an object that does not accept state');
  return h!.build!(obj, state);
}

function littleSigned(b: Uint8Array): number | bigint {
  if (b.length === 0) return 0;
  let v = 0n;
  for (let i = b.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
  if (b[b.length - 1] & 0x80) v -= 1n << BigInt(8 * b.length);
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}
