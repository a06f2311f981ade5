/**
 * The machinery around the training-config schema (config.ts), for any zod schema: walking it by dotted key path,
 * the nearest valid key for a typo, one-line error texts per zod issue, and dotted command-line overrides
 * (`--train.lr 1e-5`) split off argv and coerced to the type their key expects.
 */
import YAML from 'yaml';
import { z } from 'zod';
import { UserError } from '../errors';

// ---------------------------------------------------------------------------------------------------------
// Schema walking: valid keys for suggestions, leaf kinds for override coercion.

export type AnyZod = z.ZodTypeAny;

function unwrap(s: AnyZod): AnyZod {
  for (;;) {
    if (s instanceof z.ZodDefault) s = s._def.innerType;
    else if (s instanceof z.ZodOptional || s instanceof z.ZodNullable) s = s.unwrap();
    else if (s instanceof z.ZodEffects) s = s.innerType();
    else return s;
  }
}

/** The schema at a key path, or the keys valid where the path stops matching. */
function schemaAt(keys: readonly (string | number)[], root: AnyZod): { schema: AnyZod } | { badIndex: number; valid: string[] } {
  let s = unwrap(root);
  for (let i = 0; i < keys.length; i++) {
    if (s instanceof z.ZodObject) {
      const shape = s.shape as Record<string, AnyZod>;
      const next = shape[String(keys[i])];
      if (!next) return { badIndex: i, valid: Object.keys(shape) };
      s = unwrap(next);
    } else if (s instanceof z.ZodRecord) s = unwrap(s.valueSchema as AnyZod);
    else if (s instanceof z.ZodUnknown) return { schema: s };
    else if (s instanceof z.ZodArray) s = unwrap(s.element);
    else if (s instanceof z.ZodTuple) s = unwrap(s.items[Number(keys[i])] ?? s.items[0]);
    else return { badIndex: i, valid: [] };
  }
  return { schema: s };
}

export function levenshtein(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length];
}

/** The closest valid key if it is close enough to be a plausible typo. */
export function nearestKey(key: string, valid: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const v of valid) {
    const d = levenshtein(key.toLowerCase(), v.toLowerCase());
    if (d < bestD) [best, bestD] = [v, d];
  }
  return best !== null && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : null;
}

function unknownKeyText(keyPath: string, key: string, valid: readonly string[]): string {
  const near = nearestKey(key, valid);
  if (near) return `${keyPath}: unknown key (did you mean "${near}"?)`;
  return `${keyPath}: unknown key (valid keys here: ${valid.join(', ')})`;
}

// ---------------------------------------------------------------------------------------------------------
// Error texts.

export interface Override {
  /** Dotted key path, e.g. `train.lr`. */
  key: string;
  /** The raw command-line text. */
  raw: string;
}

function valueAt(raw: unknown, keys: readonly (string | number)[]): unknown {
  let v = raw;
  for (const k of keys) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[String(k)];
  }
  return v;
}

export function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s.length > 60 ? `${s.slice(0, 57)}...` : s;
}

/**
 * One line per problem of a zod issue, naming the dotted key path (and the flag that set it). `issue` is relative
 * to `root` (the whole config, or a plugin's section found at `prefix`).
 */
export function issueText(issue: z.ZodIssue, raw: unknown, fromFlag: ReadonlyMap<string, string>, root: AnyZod, prefix: readonly string[] = []): string[] {
  const keyPath = [...prefix, ...issue.path].join('.') || '(top level)';
  const flag = fromFlag.get(keyPath);
  const where = flag ? ` (set by ${flag})` : '';
  const got = valueAt(raw, issue.path);
  if (issue.code === z.ZodIssueCode.unrecognized_keys) {
    const parent = schemaAt(issue.path, root);
    const valid = 'schema' in parent && parent.schema instanceof z.ZodObject ? Object.keys(parent.schema.shape as object) : [];
    return issue.keys.map((k) => unknownKeyText([...prefix, ...issue.path, k].join('.'), k, valid));
  }
  if (issue.code === z.ZodIssueCode.invalid_type) {
    if (issue.received === 'undefined') return [`${keyPath}: missing (expected ${issue.expected})`];
    return [`${keyPath}: expected ${issue.expected}, got ${issue.received} ${show(got)}${where}`];
  }
  if (issue.code === z.ZodIssueCode.invalid_enum_value) {
    return [`${keyPath}: expected one of ${issue.options.join(', ')}, got ${show(got)}${where}`];
  }
  if (issue.code === z.ZodIssueCode.custom) return [`${keyPath}: ${issue.message}`];
  return [`${keyPath}: ${issue.message}, got ${show(got)}${where}`];
}

// ---------------------------------------------------------------------------------------------------------
// Command-line overrides.

/**
 * Splits dotted `--a.b value` / `--a.b=value` arguments (config overrides; no other flag has a dot) off an argv
 * list. Other arguments are returned untouched in `rest`. Unknown keys are reported by applyOverrides.
 */
export function splitOverrideArgs(argv: readonly string[]): { overrides: Override[]; rest: string[] } {
  const overrides: Override[] = [];
  const rest: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([A-Za-z_][\w-]*(?:\.[\w-]+)+)(?:=(.*))?$/s.exec(argv[i]);
    if (!m) {
      rest.push(argv[i]);
      continue;
    }
    if (m[2] !== undefined) overrides.push({ key: m[1], raw: m[2] });
    else if (i + 1 < argv.length) overrides.push({ key: m[1], raw: argv[++i] });
    else throw new UserError(`Command-line override --${m[1]} needs a value (e.g. --${m[1]} VALUE).`);
  }
  return { overrides, rest };
}

function coerce(schema: AnyZod, raw: string): unknown {
  const t = raw.trim();
  if (t === 'null' || t === '~') return undefined;
  if (schema instanceof z.ZodNumber) {
    const n = t === '' ? NaN : Number(t);
    return Number.isNaN(n) ? raw : n;
  }
  if (schema instanceof z.ZodBoolean) {
    if (/^(true|yes|on|1)$/i.test(t)) return true;
    if (/^(false|no|off|0)$/i.test(t)) return false;
    return raw;
  }
  if (schema instanceof z.ZodArray || schema instanceof z.ZodTuple) {
    const items: unknown[] = t.startsWith('[') ? (YAML.parse(t) as unknown[]) : t === '' ? [] : t.split(',');
    if (!Array.isArray(items)) return raw;
    return items.map((x, i) => {
      const el = unwrap(schema instanceof z.ZodArray ? schema.element : (schema.items[i] ?? schema.items[0]));
      return typeof x === 'string' ? coerce(el, x) : x;
    });
  }
  // A plugin's section (data.synth, report) is validated by its plugin: take the value as YAML reads it.
  if (schema instanceof z.ZodObject || schema instanceof z.ZodUnknown) return YAML.parse(t) as unknown;
  return raw;
}

/** Applies overrides to a raw (unvalidated) config object, coercing each value to the type its key expects in `root`. */
export function applyOverridesWith(root: AnyZod, raw: Record<string, unknown>, overrides: readonly Override[], source: string): Record<string, unknown> {
  const out = structuredClone(raw);
  for (const o of overrides) {
    const keys = o.key.split('.');
    const at = schemaAt(keys, root);
    if ('badIndex' in at) {
      const keyPath = keys.slice(0, at.badIndex + 1).join('.');
      throw new UserError(`Invalid command-line override --${o.key} for ${source}: ${unknownKeyText(keyPath, keys[at.badIndex], at.valid)}.`);
    }
    let value: unknown;
    try {
      value = coerce(at.schema, o.raw);
    } catch (e) {
      throw new UserError(`Invalid command-line override --${o.key} for ${source}: cannot parse ${show(o.raw)} (${(e as Error).message.split('\n')[0]}).`);
    }
    let node = out;
    for (const k of keys.slice(0, -1)) {
      const child = node[k];
      if (child === null || typeof child !== 'object') node[k] = {};
      node = node[k] as Record<string, unknown>;
    }
    if (value === undefined) delete node[keys[keys.length - 1]];
    else node[keys[keys.length - 1]] = value;
  }
  return out;
}
