/**
 * The PromptIds of batch.ts for a tokenizer: the Janus-4o layouts built by the prompt templates
 * (src/tokenizer/template.ts, janus-spec 6.3, 7.1, 8.1), so training rows and generation rows are the same ids.
 */
import { EditPrefix, PromptIds } from './batch';
import { ImagePositions, editPrefixPositions, isReference } from '../model/positions';
import { buildEditIds, buildT2IIds } from '../tokenizer/template';
import { PromptTokenizer } from '../tokenizer/text';

/**
 * `imagePositions`: the model config's (JanusConfig.imagePositions); with it, edit prefixes carry their position
 * ids and image slots are numbered with its stride.
 */
export function promptIds(tok: PromptTokenizer, imagePositions?: ImagePositions): PromptIds {
  const scheme = isReference(imagePositions) ? undefined : imagePositions;
  return {
    pad: tok.special.pad,
    t2iPrefix: (prompt) => buildT2IIds(tok, prompt),
    editPrefix: (instruction, n): EditPrefix => {
      const e = buildEditIds(tok, instruction, n);
      return scheme ? { ...e, positions: editPrefixPositions(e.ids.length, e.xBlock, scheme) } : e;
    },
    ...(scheme ? { imagePositions: scheme } : {}),
  };
}
