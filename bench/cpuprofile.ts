import { readFileSync } from 'node:fs';

/**
 * Summarises `node --cpu-prof` profiles (e.g. the simulator's, from
 * `BENCH_FLEET_PROFILE=1`): the functions with the most self time and the most
 * inclusive time. `node --import tsx bench/cpuprofile.ts <file.cpuprofile>...`
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export function summarise(profile: Profile, top = 15): { totalMs: number; self: Array<[string, number]>; inclusive: Array<[string, number]> } {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const parent = new Map<number, number>();
  for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id);
  const label = (node: ProfileNode) => `${node.callFrame.functionName || '(anonymous)'} ${node.callFrame.url.split('/').slice(-2).join('/')}`;
  const timeOf = new Map<number, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    timeOf.set(id, (timeOf.get(id) ?? 0) + dt);
    total += dt;
  });
  const self = new Map<string, number>();
  const inclusive = new Map<string, number>();
  for (const [id, time] of timeOf) {
    const node = byId.get(id);
    if (!node) continue;
    self.set(label(node), (self.get(label(node)) ?? 0) + time);
    const seen = new Set<string>();
    for (let current: number | undefined = id; current !== undefined; current = parent.get(current)) {
      const frame = byId.get(current);
      if (!frame || seen.has(label(frame))) continue;
      seen.add(label(frame));
      inclusive.set(label(frame), (inclusive.get(label(frame)) ?? 0) + time);
    }
  }
  const ranked = (map: Map<string, number>) => [...map].sort((a, b) => b[1] - a[1]).slice(0, top).map(([name, us]): [string, number] => [name, us / 1000]);
  return { totalMs: total / 1000, self: ranked(self), inclusive: ranked(inclusive) };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const file of process.argv.slice(2)) {
    const { totalMs, self, inclusive } = summarise(JSON.parse(readFileSync(file, 'utf8')) as Profile);
    console.log(`\n${file}: ${(totalMs / 1000).toFixed(1)} s sampled`);
    console.log('  self time');
    for (const [name, ms] of self) console.log(`  ${(ms / 1000).toFixed(2).padStart(7)} s  ${name}`);
    console.log('  inclusive time');
    for (const [name, ms] of inclusive) console.log(`  ${(ms / 1000).toFixed(2).padStart(7)} s  ${name}`);
  }
}
