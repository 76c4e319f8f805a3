import type { Client } from '@temporalio/client';
import type { Config } from '../domain/config.js';
import type { Store } from '../store/index.js';

/** What the API's handlers use: the store, the Temporal client and the configuration. */
export interface ApiDeps {
  store: Store;
  temporal: Client;
  config: Config;
}
