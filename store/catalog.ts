import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { compareSemver, type Catalog, type CatalogAddon } from '../domain/addon.js';

/** The charts folder of this repository: the catalog's source, published as a chart repository. */
export const defaultChartsDir = fileURLToPath(new URL('../charts', import.meta.url));

/** A field of the values refused by the chart's schema. */
export interface ValuesError {
  field: string;
  message: string;
}

/** The add-on catalog with each chart's values schema compiled once. */
export class AddonCatalog {
  private readonly validators = new Map<string, ValidateFunction>();

  private constructor(readonly catalog: Catalog) {
    const ajv = new Ajv({ allErrors: true, strict: false });
    for (const addon of catalog.addons) this.validators.set(addon.name, ajv.compile(addon.valuesSchema));
  }

  /** Reads `catalog.json` and every chart's `values.schema.json` from the charts folder. */
  static load(dir: string = defaultChartsDir): AddonCatalog {
    const raw = JSON.parse(readFileSync(join(dir, 'catalog.json'), 'utf8')) as { addons: Array<Omit<CatalogAddon, 'valuesSchema'>> };
    const addons = raw.addons.map((entry) => ({
      ...entry,
      versions: [...entry.versions].sort((a, b) => compareSemver(a.version, b.version)),
      valuesSchema: JSON.parse(readFileSync(join(dir, entry.chart, 'values.schema.json'), 'utf8')) as Record<string, unknown>,
    }));
    return new AddonCatalog({ addons });
  }

  get addons(): CatalogAddon[] {
    return this.catalog.addons;
  }

  find(name: string): CatalogAddon | undefined {
    return this.catalog.addons.find((addon) => addon.name === name);
  }

  latest(addon: CatalogAddon): string {
    const last = addon.versions.at(-1);
    if (!last) throw new Error(`add-on ${addon.name} has no published version`);
    return last.version;
  }

  /** The fields the chart's schema refuses, empty when the values are fine. `prefix` names where they sit in the request. */
  validate(name: string, values: Record<string, unknown>, prefix = 'values'): ValuesError[] {
    const validate = this.validators.get(name);
    if (!validate) throw new Error(`unknown add-on ${name}`);
    if (validate(values)) return [];
    return (validate.errors ?? []).map((error) => toValuesError(error, prefix));
  }
}

function toValuesError(error: ErrorObject, prefix: string): ValuesError {
  const path = error.instancePath
    .split('/')
    .slice(1)
    .map((part) => part.replace(/~1/g, '/').replace(/~0/g, '~'));
  const params = error.params as { additionalProperty?: string; missingProperty?: string };
  if (error.keyword === 'additionalProperties' && params.additionalProperty) {
    return { field: [prefix, ...path, params.additionalProperty].join('.'), message: 'is not a value this chart accepts' };
  }
  if (error.keyword === 'required' && params.missingProperty) {
    return { field: [prefix, ...path, params.missingProperty].join('.'), message: 'is required' };
  }
  return { field: [prefix, ...path].join('.'), message: error.message ?? 'is invalid' };
}
