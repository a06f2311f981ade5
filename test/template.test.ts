import * as path from 'path';
import { imageTokenCount } from '../src/model/config';
import { readHfConfig } from '../src/io/hf_config';
import { TextTokenizer } from '../src/tokenizer/text';
import {
  DEFAULT_SYSTEM_PROMPT,
  appendTargetSlots,
  buildEditIds,
  buildT2IIds,
  buildUnderstandingIds,
  editCfgRows,
  editPrompt,
  sftFormat,
  t2iPrompt,
  uncondIds,
  understandingPrompt,
} from '../src/tokenizer/template';

const DIR = path.join(__dirname, 'fixtures', 'tiny-janus', 'safetensors');
const EOS = '<\uff5cend\u2581of\u2581sentence\uff5c>';
const PAD = '<\uff5c\u2581pad\u2581\uff5c>';

describe('prompt strings (janus-spec 6.3, 7.1, 8.1)', () => {
  test('T2I: no space between "<|Assistant|>:" and <begin_of_image>; the prompt is stripped', () => {
    expect(t2iPrompt('a red square')).toBe('<|User|>: a red square\n\n<|Assistant|>:<begin_of_image>');
    expect(t2iPrompt('  a cat on a mat \n')).toBe('<|User|>: a cat on a mat\n\n<|Assistant|>:<begin_of_image>');
  });

  test('TI2I: E block of N placeholders, then X block of N pads, then the instruction', () => {
    expect(editPrompt('make it blue ', 3)).toBe(
      '<|User|>: <begin_of_image><image_placeholder><image_placeholder><image_placeholder><end_of_image>' +
        `<begin_of_image>${PAD}${PAD}${PAD}<end_of_image>make it blue\n\n<|Assistant|>:<begin_of_image>`,
    );
  });

  test('understanding: system prompt, placeholder line, question', () => {
    expect(DEFAULT_SYSTEM_PROMPT).toBe(
      'You are a helpful language and vision assistant. You are able to understand the visual content that the user provides, and assist the user with a variety of tasks using natural language.',
    );
    expect(understandingPrompt('What is in the image?')).toBe(`${DEFAULT_SYSTEM_PROMPT}\n\n<|User|>: <image_placeholder>\nWhat is in the image?\n\n<|Assistant|>:`);
  });

  test('deepseek SFT format: "\\n\\n" after user turns, EOS after assistant turns, empty turn gives "role:"', () => {
    const s = sftFormat([
      { role: '<|User|>', content: ' hi ' },
      { role: '<|Assistant|>', content: 'hello' },
      { role: '<|User|>', content: 'bye' },
      { role: '<|Assistant|>', content: '' },
    ]);
    expect(s).toBe(`<|User|>: hi\n\n<|Assistant|>: hello${EOS}<|User|>: bye\n\n<|Assistant|>:`);
    expect(sftFormat([{ role: 'User', content: 'q' }], 'sys')).toBe('sys\n\nUser: q');
  });
});

describe('token-id builders', () => {
  const tok = TextTokenizer.fromDir(DIR);
  const n = imageTokenCount(readHfConfig(path.join(DIR, 'config.json')));
  const sp = tok.special;

  test('N comes from the config (16 for the fixture), not 576', () => {
    expect(n).toBe(16);
  });

  test('T2I ids are the tokenised T2I string: BOS first, BOI last', () => {
    const ids = buildT2IIds(tok, 'a red square');
    expect(ids).toEqual(tok.encode('<|User|>: a red square\n\n<|Assistant|>:<begin_of_image>'));
    expect(ids[0]).toBe(sp.bos);
    expect(ids[ids.length - 1]).toBe(sp.boi);
  });

  test('TI2I ids equal the tokenised edit string, with the E and X blocks located', () => {
    const { ids, eBlock, xBlock } = buildEditIds(tok, 'make the circle larger ', n);
    expect(ids).toEqual(tok.encode(editPrompt('make the circle larger ', n)));
    expect(eBlock[1] - eBlock[0]).toBe(n);
    expect(xBlock[1] - xBlock[0]).toBe(n);
    expect(ids.slice(...eBlock).every((i) => i === sp.imagePlaceholder)).toBe(true);
    expect(ids.slice(...xBlock).every((i) => i === sp.pad)).toBe(true);
    expect([ids[eBlock[0] - 1], ids[eBlock[1]], ids[xBlock[0] - 1], ids[xBlock[1]]]).toEqual([sp.boi, sp.eoi, sp.boi, sp.eoi]);
    // The X block starts just past the second BOI: EOI(E) + 2 (janus-spec 8.1).
    expect(xBlock[0]).toBe(eBlock[1] + 2);
    expect(ids[ids.length - 1]).toBe(sp.boi);
    expect(buildEditIds(tok, '', n).ids).toEqual(tok.encode(editPrompt('', n)));
  });

  test('understanding ids expand the single placeholder to BOI + N placeholders + EOI', () => {
    const { ids, imageBlock } = buildUnderstandingIds(tok, 'What is this?', n, { system: 'Be brief.' });
    const base = tok.encode(understandingPrompt('What is this?', { system: 'Be brief.' }));
    const at = base.indexOf(sp.imagePlaceholder);
    expect(ids).toEqual([...base.slice(0, at), sp.boi, ...Array(n).fill(sp.imagePlaceholder), sp.eoi, ...base.slice(at + 1)]);
    expect(imageBlock).toEqual([at + 1, at + 1 + n]);
    expect(() => buildUnderstandingIds(tok, 'a <image_placeholder> b', n)).toThrow(/exactly one image placeholder/);
  });

  test('CFG unconditional row: pads everywhere except BOS and the final BOI', () => {
    const ids = buildT2IIds(tok, 'a red square');
    const u = uncondIds(ids, sp.pad);
    expect(u).toHaveLength(ids.length);
    expect(u[0]).toBe(sp.bos);
    expect(u[u.length - 1]).toBe(sp.boi);
    expect(u.slice(1, -1).every((i) => i === sp.pad)).toBe(true);
    expect(uncondIds(buildEditIds(tok, 'x', n).ids, sp.pad).filter((i) => i !== sp.pad)).toEqual([sp.bos, sp.boi]);
  });

  test('TI2I CFG rows: [full, part, uncond], full and part share ids, only full gets X, uncond gets nothing', () => {
    const edit = buildEditIds(tok, 'make it blue', n);
    const rows = editCfgRows(edit, sp.pad);
    expect(rows.ids[0]).toEqual(edit.ids);
    expect(rows.ids[1]).toEqual(edit.ids);
    expect(rows.ids[2]).toEqual(uncondIds(edit.ids, sp.pad));
    expect(rows.injectE).toEqual([true, true, false]);
    expect(rows.injectX).toEqual([true, false, false]);
  });

  test('training rows get N pad target slots after the final BOI', () => {
    const ids = buildT2IIds(tok, 'a red square');
    const { ids: row, target } = appendTargetSlots(ids, n, sp.pad);
    expect(row.slice(0, ids.length)).toEqual(ids);
    expect(target).toEqual([ids.length, ids.length + n]);
    expect(row.slice(...target)).toEqual(Array(n).fill(sp.pad));
    expect(() => appendTargetSlots(ids, 0, sp.pad)).toThrow(/positive integer/);
  });
});
