/**
 * A readable, self-contained docs page rendered from the OpenAPI document on the
 * server: no scripts or stylesheets from a CDN, so it works on an offline network.
 */
export function renderDocs(doc: unknown): string {
  const spec = doc as {
    info: { title: string; version: string; description?: string };
    paths?: Record<string, Record<string, Operation>>;
  };
  const sections: string[] = [];
  for (const [path, methods] of Object.entries(spec.paths ?? {})) {
    for (const [method, op] of Object.entries(methods)) {
      const params = (op.parameters ?? [])
        .map((p) => `<li><code>${esc(p.name)}</code> <em>${esc(p.in)}</em>${p.required ? ' (required)' : ''}${p.schema ? ` — ${esc(describeSchema(p.schema))}` : ''}</li>`)
        .join('');
      const body = op.requestBody?.content?.['application/json'];
      const responses = Object.entries(op.responses ?? {})
        .map(([status, r]) => `<li><code>${esc(status)}</code> ${esc(r.description ?? '')}</li>`)
        .join('');
      sections.push(`<section>
  <h3><span class="m ${esc(method)}">${esc(method.toUpperCase())}</span> <code>${esc(path.replace(/\{(\w+)\}/g, '{$1}'))}</code></h3>
  <p>${esc(op.summary ?? '')}</p>${op.description ? `<p class="d">${esc(op.description)}</p>` : ''}
  ${params ? `<h4>Parameters</h4><ul>${params}</ul>` : ''}
  ${body ? `<h4>Body</h4><pre>${esc(JSON.stringify(body.example ?? body.schema, null, 2))}</pre>` : ''}
  <h4>Responses</h4><ul>${responses}</ul>
</section>`);
    }
  }
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${esc(spec.info.title)}</title>
<style>body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#1d2330}
section{border-top:1px solid #dde;padding:.5em 0}h3{margin:.3em 0}code,pre{font-family:ui-monospace,monospace}
pre{background:#f5f6f8;padding:.8em;overflow:auto}.m{display:inline-block;min-width:4.5em;font-size:.8em;padding:.1em .4em;border-radius:4px;color:#fff;background:#555}
.get{background:#2f7d4f}.post{background:#1f5fa8}.put,.patch{background:#a86b1f}.delete{background:#a82f2f}.d{color:#555}</style></head>
<body><h1>${esc(spec.info.title)} <small>${esc(spec.info.version)}</small></h1><p>${esc(spec.info.description ?? '')}</p>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. Errors are <code>application/problem+json</code> (RFC 9457); a 400 lists each wrong field in <code>errors</code>.</p>
${sections.join('\n')}</body></html>`;
}

interface Operation {
  summary?: string;
  description?: string;
  parameters?: Array<{ name: string; in: string; required?: boolean; schema?: unknown }>;
  requestBody?: { content?: Record<string, { schema?: unknown; example?: unknown }> };
  responses?: Record<string, { description?: string }>;
}

function describeSchema(schema: unknown): string {
  const s = schema as { type?: string; enum?: unknown[]; default?: unknown; maximum?: number; minimum?: number };
  const parts = [s.type ?? 'value'];
  if (s.enum) parts.push(`one of ${s.enum.join(', ')}`);
  if (s.minimum !== undefined || s.maximum !== undefined) parts.push(`${s.minimum ?? ''}..${s.maximum ?? ''}`);
  if (s.default !== undefined) parts.push(`default ${JSON.stringify(s.default)}`);
  return parts.join(', ');
}

function esc(value: string): string {
  return value.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}
