/**
 * Token ids of the Janus-4o prompt layouts (janus-spec 6.3, 7.1, 8.1) for any TextTokenizer:
 * T2I  `BOS <|User|>: {prompt}\n\n<|Assistant|>: BOI`
 * edit `BOS <|User|>: BOI PH*n EOI BOI PAD*n EOI {instruction}\n\n<|Assistant|>: BOI`
 * (the E block of placeholders carries SigLIP features, the X block of pads carries the source VQ tokens).
 */
import { PromptIds } from './batch';
import { TextTokenizer } from '../tokenizer/word';

export function promptIds(tok: TextTokenizer): PromptIds {
  const s = tok.special;
  const user = '<|User|>: ';
  const tail = '\n\n<|Assistant|>:';
  return {
    pad: s.pad,
    t2iPrefix(prompt: string): number[] {
      return [s.bos, ...tok.encode(`${user}${prompt.trim()}${tail}`), s.boi];
    },
    editPrefix(instruction: string, n: number) {
      const head = [s.bos, ...tok.encode(user)];
      const eStart = head.length + 1;
      const blocks = [s.boi, ...new Array<number>(n).fill(s.imagePlaceholder), s.eoi, s.boi, ...new Array<number>(n).fill(s.pad), s.eoi];
      const xStart = eStart + n + 2;
      const ids = [...head, ...blocks, ...tok.encode(`${instruction.trim()}${tail}`), s.boi];
      return { ids, eBlock: [eStart, eStart + n] as [number, number], xBlock: [xStart, xStart + n] as [number, number] };
    },
  };
}
