/**
 * Which ranks share a machine, and so which transport each collective uses.
 *
 * Every rank reports a node key at rendezvous: host name, kernel boot id and the global rank of its node's first
 * worker (RANK - LOCAL_RANK, from the torchrun or Slurm variables). Ranks with equal keys form a shared-memory
 * group (optionally cut into groups of JANUS4O_SHM_GROUP_SIZE, e.g. one per CPU socket). Then:
 *   - one group holding every rank:             'shm'           (all data through /dev/shm)
 *   - several groups, each a contiguous range:  'hierarchical'  (shm inside each group, TCP ring among the
 *                                                               groups' first ranks, the node leaders)
 *   - otherwise (every group one rank, or ranks of a node not contiguous): 'ring' (TCP ring over all ranks).
 * Whether /dev/shm really is shared is proven when the segments are opened (shm.ts); if not, the job uses the ring.
 */
import * as fs from 'fs';
import * as os from 'os';

export type TopologyKind = 'ring' | 'shm' | 'hierarchical';

export interface Topology {
  kind: TopologyKind;
  /** Global ranks of each group, in rank order; groups in order of their first rank. */
  groups: number[][];
  /** Index of this rank's group, and this rank's index in it. */
  group: number;
  localIndex: number;
  /** Why the ring was chosen, when it was. */
  reason: string;
}

function bootId(): string {
  try {
    return fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return '';
  }
}

/** What this process reports at rendezvous; localRank undefined means "unknown", i.e. a node of its own. */
export function nodeKey(rank: number, localRank: number | undefined): string {
  const first = localRank === undefined ? `solo-${rank}` : String(rank - localRank);
  return `${os.hostname()}|${bootId()}|${first}`.slice(0, 300);
}

export function planTopology(nodes: readonly string[], rank: number, groupSize?: number): Topology {
  const byNode = new Map<string, number[]>();
  nodes.forEach((key, r) => {
    const list = byNode.get(key);
    if (list) list.push(r);
    else byNode.set(key, [r]);
  });
  const groups: number[][] = [];
  for (const ranks of byNode.values()) {
    const size = groupSize !== undefined && groupSize > 0 ? groupSize : ranks.length;
    for (let i = 0; i < ranks.length; i += size) groups.push(ranks.slice(i, i + size));
  }
  groups.sort((a, b) => a[0] - b[0]);
  const group = groups.findIndex((g) => g.includes(rank));
  const localIndex = groups[group].indexOf(rank);
  const base = { groups, group, localIndex };
  if (groups.length === 1) return { ...base, kind: 'shm', reason: '' };
  if (groups.every((g) => g.length === 1)) return { ...base, kind: 'ring', reason: 'no two ranks share a node' };
  const contiguous = groups.every((g) => g.every((r, i) => r === g[0] + i));
  if (!contiguous) return { ...base, kind: 'ring', reason: 'the ranks of a node are not numbered consecutively' };
  return { ...base, kind: 'hierarchical', reason: '' };
}

/** One line for the log: "shm: 8 ranks on one node", "hierarchical: 2 nodes x 4 ranks", ... */
export function describeTopology(t: Topology): string {
  const sizes = [...new Set(t.groups.map((g) => g.length))];
  const sizeText = sizes.length === 1 ? `${sizes[0]}` : sizes.join('/');
  if (t.kind === 'shm') return `shared memory: ${t.groups[0].length} ranks in one group`;
  if (t.kind === 'hierarchical') return `hierarchical: ${t.groups.length} groups x ${sizeText} ranks (shared memory inside a group, TCP ring among group leaders)`;
  return `TCP ring${t.reason ? ` (${t.reason})` : ''}`;
}
