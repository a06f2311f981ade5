/**
 * The PromptIds of batch.ts for a tokenizer: the Janus-4o layouts built by the prompt templates
 * (src/tokenizer/template.ts, janus-spec 6.3, 7.1, 8.1), so training rows and generation rows are the same ids.
 */
import { PromptIds } from './batch';
import { buildEditIds, buildT2IIds } from '../tokenizer/template';
import { PromptTokenizer } from '../tokenizer/text';

export function promptIds(tok: PromptTokenizer): PromptIds {
  return {
    pad: tok.special.pad,
    t2iPrefix: (prompt) => buildT2IIds(tok, prompt),
    editPrefix: (instruction, n) => buildEditIds(tok, instruction, n),
  };
}
