/**
 * Kernels that training needs and the stock backends lack or run too slowly. Registered once, before a
 * backend initialises (see ../backend.ts).
 */
import { registerUnsortedSegmentSum } from './unsorted_segment_sum';

let registered = false;

export function registerTrainingKernels(): void {
  if (registered) return;
  registered = true;
  // Import the backends' own kernel tables first, so that ours replace theirs and not the other way round.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('@tensorflow/tfjs-backend-cpu');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  require('@tensorflow/tfjs-backend-wasm');
  registerUnsortedSegmentSum();
}
