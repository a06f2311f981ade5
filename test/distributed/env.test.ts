/** Worker environment: torchrun, Slurm, node lists. */
import { expandNodeList, firstNode, readDistEnv, SLURM_PORT_BASE } from '../../src/distributed/env';
import { initDistributed } from '../../src/distributed/init';

describe('readDistEnv', () => {
  test('torchrun / Kubernetes variables', () => {
    const e = readDistEnv({ RANK: '5', WORLD_SIZE: '16', LOCAL_RANK: '5', LOCAL_WORLD_SIZE: '8', MASTER_ADDR: 'job-master-0', MASTER_PORT: '23456', JANUS4O_JOB_SECRET: 's3cr3t-s3cr3t-s3cr3t' });
    expect(e).toMatchObject({ source: 'torchrun', rank: 5, worldSize: 16, localRank: 5, localWorldSize: 8, masterAddr: 'job-master-0', masterPort: 23456, secret: 's3cr3t-s3cr3t-s3cr3t' });
    // The training operator sets no LOCAL_RANK with one process per pod.
    expect(readDistEnv({ RANK: '1', WORLD_SIZE: '2', MASTER_ADDR: 'm', MASTER_PORT: '1' })).toMatchObject({ localRank: 0, localWorldSize: undefined });
    expect(readDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'm' }).masterPort).toBe(29500);
  });

  test('Slurm variables; rank 0 on the first host of the step node list; port from the job id', () => {
    const e = readDistEnv({
      SLURM_PROCID: '9', SLURM_NTASKS: '16', SLURM_LOCALID: '1', SLURM_TASKS_PER_NODE: '8(x2)',
      SLURM_STEP_NODELIST: 'gpu[07-08]', SLURM_JOB_NODELIST: 'gpu[01-08]', SLURM_JOB_ID: '123456',
    });
    expect(e).toMatchObject({ source: 'slurm', rank: 9, worldSize: 16, localRank: 1, localWorldSize: 8, masterAddr: 'gpu07', masterPort: SLURM_PORT_BASE + (123456 % 20000) });
    expect(readDistEnv({ SLURM_PROCID: '0', SLURM_NTASKS: '2', SLURM_JOB_NODELIST: 'a1,b2', MASTER_PORT: '4000' })).toMatchObject({ masterAddr: 'a1', masterPort: 4000 });
    expect(readDistEnv({ SLURM_PROCID: '0', SLURM_NTASKS: '2', SLURM_JOB_NODELIST: 'a1', MASTER_ADDR: '10.0.0.5' }).masterAddr).toBe('10.0.0.5');
  });

  test('torchrun variables win over Slurm ones (torchrun inside an allocation)', () => {
    const e = readDistEnv({ RANK: '3', WORLD_SIZE: '8', MASTER_ADDR: 'x', SLURM_PROCID: '0', SLURM_NTASKS: '1', SLURM_JOB_NODELIST: 'n1' });
    expect(e).toMatchObject({ source: 'torchrun', rank: 3, worldSize: 8 });
  });

  test('no variables: a single process', () => {
    expect(readDistEnv({})).toMatchObject({ source: 'single', rank: 0, worldSize: 1 });
  });

  test('bad values are reported by name', () => {
    expect(() => readDistEnv({ RANK: '2', WORLD_SIZE: '2', MASTER_ADDR: 'm' })).toThrow(/rank 2 is not below world size 2/);
    expect(() => readDistEnv({ RANK: 'one', WORLD_SIZE: '2', MASTER_ADDR: 'm' })).toThrow(/RANK=one/);
    expect(() => readDistEnv({ RANK: '0', WORLD_SIZE: '2' })).toThrow(/MASTER_ADDR/);
    expect(() => readDistEnv({ RANK: '0', WORLD_SIZE: '0', MASTER_ADDR: 'm' })).toThrow(/WORLD_SIZE=0/);
    expect(() => readDistEnv({ RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: 'm', MASTER_PORT: '70000' })).toThrow(/70000/);
    expect(() => readDistEnv({ SLURM_PROCID: '0', SLURM_NTASKS: '2' })).toThrow(/NODELIST/);
  });

  test('initDistributed refuses a multi-rank job without a secret, and needs no network for one rank', async () => {
    await expect(initDistributed({ env: { RANK: '0', WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: '1' } })).rejects.toThrow(/JANUS4O_JOB_SECRET is not set/);
    const { env, comm } = await initDistributed({ env: {} });
    expect(env.source).toBe('single');
    const x = Float32Array.from([1.5]);
    await comm.allReduce(x, { average: true });
    expect(x[0]).toBe(1.5);
    await comm.close();
  });
});

describe('Slurm node lists', () => {
  test('expansion keeps zero padding, handles several groups and plain names', () => {
    expect(expandNodeList('node[01-04,07]')).toEqual(['node01', 'node02', 'node03', 'node04', 'node07']);
    expect(expandNodeList('a[8-10],b,c[1]')).toEqual(['a8', 'a9', 'a10', 'b', 'c1']);
    expect(expandNodeList('node[098-101]')).toEqual(['node098', 'node099', 'node100', 'node101']);
    expect(expandNodeList('rack[1-2]-gpu[0-1]')).toEqual(['rack1-gpu0', 'rack1-gpu1', 'rack2-gpu0', 'rack2-gpu1']);
    expect(expandNodeList('single')).toEqual(['single']);
  });

  test('first host', () => {
    expect(firstNode('node[01-04,07]')).toBe('node01');
    expect(firstNode('gpu-a[12-13],gpu-b[1-4]')).toBe('gpu-a12');
    expect(firstNode('login1,node[1-1000000000]')).toBe('login1');
    expect(firstNode('node[1-1000000000]')).toBe('node1');
  });

  test('malformed lists are errors', () => {
    expect(() => firstNode('node[01-04')).toThrow(/malformed/);
    expect(() => firstNode('node[x]')).toThrow(/malformed range/);
    expect(() => firstNode('node[5-2]')).toThrow(/descending/);
    expect(() => firstNode('')).toThrow(/empty/);
  });
});
