/** The dataset plugins the CLI knows, by data.kind: ShareGPT-4o-Image (built into the core) and ShapeWorld. */
import { UserError } from '../errors';
import { shapeWorldDataset } from '../shapeworld/plugin';
import { DatasetPlugin, shareGPT4oDataset } from '../train/dataset';

export function datasetPlugin(kind: string): DatasetPlugin {
  if (kind === 'sharegpt4o') return shareGPT4oDataset;
  if (kind === 'shapeworld') return shapeWorldDataset();
  throw new UserError(`data.kind ${kind}: expected sharegpt4o or shapeworld.`);
}
