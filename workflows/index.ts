// The workflow bundle's entry point: every workflow type the worker serves.
export { createCluster, deleteCluster, replaceNode, restoreFromSnapshot, scaleNodePool, scheduledSnapshot, takeSnapshot, updateCluster } from './cluster.js';
export { applyAddon, reconcileAddons, removeAddon, rolloutAddon } from './addon.js';
export { deleteFunction, deployFunction } from './function.js';
export { dispatchEvent, runPipeline, scheduledEvent } from './event.js';
export { sweepFleet } from './health.js';
