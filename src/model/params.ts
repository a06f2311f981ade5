/**
 * Named parameters. Every trainable tensor of the model lives here under its original Janus checkpoint name
 * (`language_model.model.layers.3.self_attn.q_proj.weight`, ...). Loading, saving, sharding and the optimizer
 * all key on these names.
 *
 * Modules *declare* parameters (name, shape, layout, initialiser) when they are built; nothing is allocated
 * until `materialize()` (random init) or `assign()` (checkpoint load). So a 7B model can be planned and counted
 * without a byte of weights.
 *
 * Layout: tensors are kept in the layout the tfjs ops want (Linear [in, out], Conv2d HWIO). `layout` records how
 * the checkpoint stores them (PyTorch Linear [out, in], Conv2d OIHW), so io code can convert losslessly.
 */
import * as tf from '@tensorflow/tfjs-core';
// Gradients of every op (see gradients.ts).
import '../gradients';
import seedrandom from 'seedrandom';

export type ParamLayout = 'plain' | 'linear' | 'conv2d';

export type Init =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'normal'; std: number }
  | { kind: 'uniform'; limit: number };

export interface ParamSpec {
  name: string;
  /** Shape in tfjs layout. */
  shape: number[];
  layout: ParamLayout;
  init: Init;
}

/** Shape as stored in a PyTorch/safetensors checkpoint. */
export function checkpointShape(spec: Pick<ParamSpec, 'shape' | 'layout'>): number[] {
  const s = spec.shape;
  if (spec.layout === 'linear') return [s[1], s[0]];
  if (spec.layout === 'conv2d') return [s[3], s[2], s[0], s[1]];
  return s.slice();
}

export function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

let storeCounter = 0;

export class ParamStore {
  /** tfjs variable names are process-global, so each store prefixes its own (two models can coexist). */
  readonly id = ++storeCounter;
  private readonly specs = new Map<string, ParamSpec>();
  private readonly vars = new Map<string, tf.Variable>();

  declare(name: string, shape: number[], layout: ParamLayout, init: Init): string {
    if (this.specs.has(name)) throw new Error(`Parameter "${name}" declared twice.`);
    if (shape.some((d) => !Number.isInteger(d) || d <= 0)) {
      throw new Error(`Parameter "${name}" has invalid shape [${shape.join(', ')}].`);
    }
    this.specs.set(name, { name, shape, layout, init });
    return name;
  }

  /** Changes a declared parameter's initialiser (before it is allocated: materialize reads it). */
  setInit(name: string, init: Init): void {
    const spec = this.spec(name);
    if (this.vars.has(name)) throw new Error(`Parameter "${name}" is already allocated; set its initialiser before materialize().`);
    this.specs.set(name, { ...spec, init });
  }

  /** Declared specs in declaration order. */
  list(): ParamSpec[] {
    return [...this.specs.values()];
  }

  spec(name: string): ParamSpec {
    const s = this.specs.get(name);
    if (!s) throw new Error(`Unknown parameter "${name}".`);
    return s;
  }

  has(name: string): boolean {
    return this.specs.has(name);
  }

  count(filter: (name: string) => boolean = () => true): number {
    let n = 0;
    for (const s of this.specs.values()) if (filter(s.name)) n += numel(s.shape);
    return n;
  }

  get isMaterialized(): boolean {
    return this.vars.size === this.specs.size && this.specs.size > 0;
  }

  /** The variable for a parameter; throws if weights were never initialised or loaded. */
  get(name: string): tf.Variable {
    const v = this.vars.get(name);
    if (!v) {
      if (!this.specs.has(name)) throw new Error(`Unknown parameter "${name}".`);
      throw new Error(`Parameter "${name}" has no value: call materialize() or load weights first.`);
    }
    return v;
  }

  variables(filter: (name: string) => boolean = () => true): tf.Variable[] {
    return this.list().filter((s) => filter(s.name)).map((s) => this.get(s.name));
  }

  /** Random initialisation from a seed (deterministic across runs and backends). */
  materialize(seed: number | string = 0, filter: (name: string) => boolean = () => true): void {
    for (const spec of this.specs.values()) {
      if (!filter(spec.name)) continue;
      const values = initValues(spec, `${seed}:${spec.name}`);
      this.setValue(spec.name, values);
    }
  }

  /** Sets a parameter from host data in tfjs layout (creates the variable if needed). */
  setValue(name: string, values: Float32Array): void {
    const spec = this.spec(name);
    if (values.length !== numel(spec.shape)) {
      throw new Error(`Parameter "${name}": expected ${numel(spec.shape)} values for shape [${spec.shape}], got ${values.length}.`);
    }
    const existing = this.vars.get(name);
    tf.tidy(() => {
      const t = tf.tensor(values, spec.shape, 'float32');
      if (existing) existing.assign(t);
      else this.vars.set(name, tf.variable(t, true, `s${this.id}/${name}`));
    });
  }

  /** Replaces every value by those in `values` (tfjs layout); used by tests and optimisers. */
  assignAll(values: Map<string, tf.Tensor>): void {
    for (const [name, t] of values) this.get(name).assign(t);
  }

  /** Host copies of every materialised parameter (tfjs layout). */
  async snapshot(): Promise<Map<string, Float32Array>> {
    const out = new Map<string, Float32Array>();
    for (const [name, v] of this.vars) out.set(name, (await v.data()) as Float32Array);
    return out;
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}

function initValues(spec: ParamSpec, seed: string): Float32Array {
  const n = numel(spec.shape);
  const out = new Float32Array(n);
  const init = spec.init;
  if (init.kind === 'zeros') return out;
  if (init.kind === 'ones') return out.fill(1);
  const rng = seedrandom(seed);
  if (init.kind === 'uniform') {
    for (let i = 0; i < n; i++) out[i] = (rng() * 2 - 1) * init.limit;
    return out;
  }
  // Box-Muller normal, truncated at 2 std like LlamaGen/timm init.
  for (let i = 0; i < n; i++) {
    let z: number;
    do {
      const u1 = Math.max(rng(), 1e-12);
      const u2 = rng();
      z = Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
    } while (Math.abs(z) > 2);
    out[i] = z * init.std;
  }
  return out;
}
