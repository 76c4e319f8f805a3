import { z } from '@hono/zod-openapi';

/** A function's name: a DNS label short enough for Knative's revision names (`<name>-<suffix>`). */
export const FunctionNameSchema = z
  .string()
  .min(1)
  .max(40)
  .regex(/^[a-z]([-a-z0-9]*[a-z0-9])?$/, 'lowercase letters, digits and dashes, starting with a letter')
  .openapi({ example: 'on-vm-created' });

const FilePathSchema = z
  .string()
  .min(1)
  .max(200)
  .regex(/^(?!\/)(?!.*(^|\/)\.\.(\/|$))[A-Za-z0-9._\-/]+$/, 'a relative path of letters, digits, dots, dashes and slashes, without ..');

/** Source sizes are bounded: a function is code, not data. */
export const maxSourceBytes = 1024 * 1024;

const EnvNameSchema = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
  .refine((name) => !/^(KUMO_|K_)/.test(name) && !['PORT', 'PYTHONPATH'].includes(name), 'reserved for the runtime');

export const FunctionSpecSchema = z
  .object({
    name: FunctionNameSchema,
    runtime: z.literal('python3.11').default('python3.11'),
    source: z.union([
      z.object({ files: z.record(FilePathSchema, z.string()).refine((files) => Object.keys(files).length > 0, 'at least one file') }).strict(),
      z.object({ tarball: z.string().min(1).openapi({ description: 'A .tar.gz of the source folder, base64-encoded' }) }).strict(),
    ]),
    handler: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\.[A-Za-z_][A-Za-z0-9_]*$/, 'module.function, e.g. handler.handle')
      .default('handler.handle'),
    env: z.record(EnvNameSchema, z.string().max(4096)).default({}),
    concurrency: z.number().int().min(0).max(1000).default(0).openapi({ description: 'Invocations one instance runs at once (Knative containerConcurrency); 0 = no limit. Excess invocations wait, they are not refused.' }),
    eventConcurrency: z.number().int().min(0).max(10_000).default(0).openapi({ description: 'Event deliveries (bindings and pipeline steps) running at once for this function; excess events wait their turn, none is dropped. 0 = no limit beyond Knative\'s.' }),
    timeoutSeconds: z.number().int().min(1).max(900).default(30),
    minScale: z.number().int().min(0).max(100).default(0),
    maxScale: z.number().int().min(1).max(1000).default(10),
  })
  .strict()
  .refine((spec) => spec.maxScale >= spec.minScale, { message: 'maxScale must be at least minScale', path: ['maxScale'] })
  .openapi('FunctionSpec');
export type FunctionSpec = z.infer<typeof FunctionSpecSchema>;

/** What runs: the spec without its source. */
export type FunctionSettings = Omit<FunctionSpec, 'source'>;

export const functionStates = ['deploying', 'ready', 'failed', 'deleting'] as const;
export type FunctionState = (typeof functionStates)[number];

/** A function as the store keeps it. */
export interface FunctionRecord {
  name: string;
  settings: FunctionSettings;
  files: Record<string, string>;
  /** sha256 of the source files, to tell a code change from none. */
  sourceHash: string;
  state: FunctionState;
  /** The image that runs, by digest (`host/repo@sha256:…`), and the Knative revision serving it. */
  image: string | null;
  revision: string | null;
  url: string | null;
  message: string | null;
  lastOperationId: string | null;
  createdAt: string;
  updatedAt: string;
}

/** The workflow id of a function's deploys: one at a time per function. */
export function functionWorkflowId(name: string): string {
  return `function/${name}/deploy`;
}
