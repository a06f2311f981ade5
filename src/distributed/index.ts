/** Data-parallel communication layer: environment, rendezvous, ring collectives, launcher. Re-exports only. */
export { DistributedError, stderrLogger, SECONDARY_FAILURE } from './errors';
export type { DistributedErrorCode, Logger } from './errors';
export { readDistEnv, expandNodeList, firstNode, DEFAULT_MASTER_PORT } from './env';
export type { DistEnv, DistSource, EnvVars } from './env';
export { rendezvous, DEFAULT_RENDEZVOUS_TIMEOUT_MS } from './rendezvous';
export type { RendezvousOptions } from './rendezvous';
export { RingCommunicator, DEFAULT_CHUNK_ELEMENTS, DEFAULT_OP_TIMEOUT_MS } from './collectives';
export type { Communicator, CollectiveOptions, ReduceOptions, BroadcastOptions, RingOptions } from './collectives';
export { shardRange, referenceAllReduce } from './layout';
export type { Range } from './layout';
export { initDistributed, LAUNCHER_PID_VAR } from './init';
export type { InitOptions, DistributedContext } from './init';
export { launch, freePort, deviceList } from './launcher';
export { runAllReduceBench } from './bench';
export type { AllReduceBenchOptions, AllReduceBenchReport, AllReduceBenchRow } from './bench';
export type { BenchPoint } from './bench_worker';
export type { LaunchOptions, LaunchResult, WorkerExit } from './launcher';
