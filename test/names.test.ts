import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { roundToF16 } from '../src/io/dtypes';
import { checkAgainst, detectNaming, isUnusedTensor, janusToNative, janusView, nativeToJanus, toNativeTensors } from '../src/io/names';
import { SafetensorsFile, writeSafetensors } from '../src/io/safetensors';
import { ParamStore } from '../src/model/params';

const FIX = path.join(__dirname, 'fixtures', 'tiny-janus');

// Every temporary file of this suite lives under one folder, removed at the end.
const TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'janus4o-names-'));
afterAll(() => fs.rmSync(TMP, { recursive: true, force: true }));

function bits(x: Float32Array): number[] {
  return Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
}

function original(): SafetensorsFile {
  return SafetensorsFile.open(path.join(FIX, 'safetensors', 'model.safetensors'));
}

describe('checkpoint names', () => {
  test('unused tensors: SigLIP attn_pool, VQ codebook_used, rotary inv_freq', () => {
    const st = original();
    const unused = st.names().filter(isUnusedTensor);
    st.close();
    expect(unused.sort()).toEqual(
      [
        'gen_vision_model.quantize.codebook_used',
        'language_model.model.layers.0.self_attn.rotary_emb.inv_freq',
        'language_model.model.layers.1.self_attn.rotary_emb.inv_freq',
        ...['latent', 'q.weight', 'q.bias', 'kv.weight', 'kv.bias', 'proj.weight', 'proj.bias', 'norm.weight', 'norm.bias', 'mlp.fc1.weight', 'mlp.fc1.bias', 'mlp.fc2.weight', 'mlp.fc2.bias'].map(
          (s) => `vision_model.vision_tower.attn_pool.${s}`,
        ),
      ].sort(),
    );
  });

  test('the table maps every Janus name to the native names the Python generator wrote (janus-spec 5.3), and back', () => {
    const st = original();
    const nat = SafetensorsFile.open(path.join(FIX, 'native-f16', 'model.safetensors'));
    try {
      const mapped = st.names().flatMap(janusToNative);
      expect(new Set(mapped)).toEqual(new Set(nat.names()));
      expect(mapped).toHaveLength(nat.names().length);
      for (const n of st.names().filter((x) => !isUnusedTensor(x))) {
        const natives = janusToNative(n);
        natives.forEach((m, i) => expect(nativeToJanus(m)).toEqual({ name: n, part: natives.length > 1 ? i : null }));
      }
      expect(janusToNative('vision_model.vision_tower.blocks.0.attn.qkv.weight')).toEqual([
        'model.vision_model.encoder.layers.0.self_attn.q_proj.weight',
        'model.vision_model.encoder.layers.0.self_attn.k_proj.weight',
        'model.vision_model.encoder.layers.0.self_attn.v_proj.weight',
      ]);
      expect(janusToNative('gen_vision_model.decoder.mid.1.proj_out.weight')).toEqual(['model.vqmodel.decoder.mid.attn_1.proj_out.weight']);
      expect(janusToNative('gen_vision_model.encoder.conv_blocks.1.res.0.nin_shortcut.bias')).toEqual(['model.vqmodel.encoder.down.1.block.0.nin_shortcut.bias']);
      expect(janusToNative('language_model.lm_head.weight')).toEqual(['lm_head.weight']);
      expect(detectNaming(st.names())).toBe('janus');
      expect(detectNaming(nat.names())).toBe('transformers');
    } finally {
      st.close();
      nat.close();
    }
  });

  test('a transformers-native F16 checkpoint reads back as the Janus tensors: qkv merged, pos_embed unsqueezed', () => {
    const st = original();
    const view = janusView(SafetensorsFile.open(path.join(FIX, 'native-f16', 'model.safetensors')));
    try {
      const used = st.names().filter((n) => !isUnusedTensor(n));
      expect(new Set(view.names())).toEqual(new Set(used));
      for (const n of used) {
        expect(view.info(n)).toEqual({ dtype: 'F16', shape: st.info(n).shape });
        // The generator rounded with numpy's float16; our rounding must agree bit for bit.
        expect(bits(view.read(n))).toEqual(bits(roundToF16(st.read(n))));
      }
    } finally {
      st.close();
      view.close();
    }
  });

  test('split and merge round trip: Janus tensors -> native file -> Janus view is bit-exact', () => {
    const st = original();
    const file = path.join(fs.mkdtempSync(path.join(TMP, 'd-')), 'native.safetensors');
    const used = st.names().filter((n) => !isUnusedTensor(n));
    writeSafetensors(file, toNativeTensors(used.map((name) => ({ name, shape: st.info(name).shape, values: () => st.read(name) }))));
    const view = janusView(SafetensorsFile.open(file));
    try {
      expect(view.info('vision_model.vision_tower.pos_embed').shape).toEqual([1, 16, 8]);
      for (const n of used) expect(bits(view.read(n))).toEqual(bits(st.read(n)));
    } finally {
      st.close();
      view.close();
    }
  });

  test('a native checkpoint with a missing q/k/v part is refused, naming it', () => {
    const file = path.join(fs.mkdtempSync(path.join(TMP, 'd-')), 'broken.safetensors');
    writeSafetensors(file, [
      { name: 'model.vision_model.encoder.layers.0.self_attn.q_proj.weight', shape: [2, 2], values: () => new Float32Array(4) },
      { name: 'model.vision_model.encoder.layers.0.self_attn.v_proj.weight', shape: [2, 2], values: () => new Float32Array(4) },
    ]);
    expect(() => janusView(SafetensorsFile.open(file))).toThrow(/"vision_model.vision_tower.blocks.0.attn.qkv.weight" needs 3 native tensors/);
  });
});

describe('matching a checkpoint against declared parameters', () => {
  function storeFor(names: string[], src: SafetensorsFile): ParamStore {
    const store = new ParamStore();
    for (const n of names) {
      const shape = src.info(n).shape;
      const linear = shape.length === 2 && n.endsWith('_proj.weight');
      store.declare(n, linear ? [shape[1], shape[0]] : shape, linear ? 'linear' : 'plain', { kind: 'zeros' });
    }
    return store;
  }

  test('one error names the missing, the unexpected and the wrongly shaped tensor together', () => {
    const st = original();
    try {
      const used = st.names().filter((n) => !isUnusedTensor(n));
      const store = storeFor(used.filter((n) => n !== 'gen_embed.weight'), st);
      store.declare('extra_module.weight', [3], 'plain', { kind: 'zeros' });
      // Redeclare one parameter with a different shape by building the store from a modified list.
      const wrong = new ParamStore();
      for (const s of store.list()) {
        const shape = s.name === 'language_model.model.norm.weight' ? [17] : s.shape;
        wrong.declare(s.name, shape, s.layout, s.init);
      }
      let msg = '';
      try {
        checkAgainst(wrong.list(), st);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toMatch(/1 missing, 1 unexpected, 1 with the wrong shape/);
      expect(msg).toMatch(/missing from the checkpoint \(1\):\n {4}extra_module\.weight/);
      expect(msg).toMatch(/unexpected in the checkpoint \(1\):\n {4}gen_embed\.weight/);
      expect(msg).toMatch(/wrong shape \(1\):\n {4}language_model\.model\.norm\.weight: checkpoint \[16\], model expects \[17\]/);
    } finally {
      st.close();
    }
  });

  test('unused tensors are skipped with a debug line; linear layouts compare transposed; size-1 dims of plain tensors may differ', () => {
    const st = original();
    try {
      const used = st.names().filter((n) => !isUnusedTensor(n));
      const store = storeFor(
        used.filter((n) => n !== 'vision_model.vision_tower.pos_embed'),
        st,
      );
      store.declare('vision_model.vision_tower.pos_embed', [16, 8], 'plain', { kind: 'zeros' });
      const debug: string[] = [];
      const r = checkAgainst(store.list(), st, { debug: (m) => debug.push(m) });
      expect(r.load).toHaveLength(used.length);
      expect(r.skipped).toHaveLength(16);
      expect(debug).toContain('skipping unused checkpoint tensor gen_vision_model.quantize.codebook_used');
      // A linear weight declared untransposed is a shape error (q_proj is square, so use gate_proj [32, 16]).
      const bad = new ParamStore();
      bad.declare('language_model.model.layers.0.mlp.gate_proj.weight', [32, 16], 'linear', { kind: 'zeros' });
      expect(() => checkAgainst(bad.list(), st, { allowUnexpected: () => true })).toThrow(/gate_proj.weight: checkpoint \[32, 16\], model expects \[16, 32\]/);
    } finally {
      st.close();
    }
  });

  test('long lists are cut with a count', () => {
    const st = original();
    try {
      let msg = '';
      try {
        checkAgainst([], st);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toMatch(/0 missing, 206 unexpected, 0 with the wrong shape/);
      expect(msg).toMatch(/\.\.\. and 186 more/);
    } finally {
      st.close();
    }
  });
});
