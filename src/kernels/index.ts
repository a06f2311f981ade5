/**
 * Kernels that training needs and the stock backends lack or run too slowly. Registered once, before a
 * backend initialises (see ../backend.ts):
 *  - wasm: Conv2DBackpropFilter (missing), Conv2DBackpropInput (stock is a scalar loop), BatchMatMul (stock
 *    uses XNNPACK only for untransposed unbatched products), UnsortedSegmentSum (missing);
 *    Identity and same-dtype Cast share their input's bytes instead of copying them; Conv2D, and with it all of
 *    the above products, run on the native sgemm when its addon is loaded (./native.ts), else on XNNPACK;
 *    GatherV2 moves whole rows (the stock kernel indexes element by element); Exp runs natively when loaded;
 *  - cpu: UnsortedSegmentSum (stock is O(numSegments * N * D)).
 */
import { registerWasmBatchMatMul } from './batch_mat_mul';
import { registerWasmConv2D } from './conv2d';
import { registerWasmExp } from './exp';
import { registerWasmGatherV2 } from './gather';
import { registerWasmConv2DBackpropFilter } from './conv2d_backprop_filter';
import { registerWasmConv2DBackpropInput } from './conv2d_backprop_input';
import { registerUnsortedSegmentSum } from './unsorted_segment_sum';
import { registerWasmZeroCopy } from './zero_copy';

export { listCpuFallbackOps, kernelNamesUsed } from './coverage';

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
  registerWasmBatchMatMul();
  registerWasmConv2D();
  registerWasmGatherV2();
  registerWasmExp();
  registerWasmConv2DBackpropFilter();
  registerWasmConv2DBackpropInput();
  registerWasmZeroCopy();
}
