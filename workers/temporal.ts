import proto from '@temporalio/proto';
import type { NativeConnection } from '@temporalio/worker';
import type { Connection } from '@temporalio/client';
import { searchAttributes } from '../domain/operation.js';

/** gRPC status code ALREADY_EXISTS. */
const grpcAlreadyExists = 6;

/**
 * Registers Kumo's search attributes (idempotent). Without them Temporal refuses
 * to start a workflow that sets them, so every process that starts or serves
 * workflows calls this first.
 */
export async function ensureSearchAttributes(connection: NativeConnection | Connection, namespace: string): Promise<void> {
  const keyword = proto.temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD;
  const wanted = Object.values(searchAttributes);
  const existing = await connection.operatorService.listSearchAttributes({ namespace });
  const missing = wanted.filter((name) => !(name in (existing.customAttributes ?? {})));
  if (missing.length === 0) return;
  try {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((name) => [name, keyword])),
    });
  } catch (err) {
    // Another process registered them first.
    if ((err as { code?: number }).code !== grpcAlreadyExists) throw err;
  }
}
