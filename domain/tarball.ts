import { gunzipSync } from 'node:zlib';

/** Why a tarball could not be read as a function's source. */
export class TarballError extends Error {
  override readonly name = 'TarballError';
}

/**
 * Reads a base64 .tar.gz (or plain .tar) of a source folder into its text files,
 * by relative path. Directories are skipped; links, devices, absolute paths and
 * `..` are refused; a leading `./` or one common top folder is kept as written.
 * @example filesOfTarball(readFileSync('fn.tgz').toString('base64')) // { 'handler.py': '…' }
 */
export function filesOfTarball(base64: string, maxBytes: number): Record<string, string> {
  let data = Buffer.from(base64, 'base64');
  if (data.length === 0) throw new TarballError('the tarball is empty or not base64');
  if (data[0] === 0x1f && data[1] === 0x8b) {
    try {
      data = gunzipSync(data, { maxOutputLength: maxBytes + 1024 * 1024 });
    } catch (err) {
      throw new TarballError(`not a readable .tar.gz: ${(err as Error).message}`);
    }
  }
  const files: Record<string, string> = {};
  let total = 0;
  let longName: string | null = null;
  let paxPath: string | null = null;
  for (let offset = 0; offset + 512 <= data.length; ) {
    const header = data.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break;
    const field = (start: number, length: number) => header.subarray(start, start + length).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(field(124, 12).trim() || '0', 8);
    if (!Number.isFinite(size) || size < 0) throw new TarballError('a tar header is corrupt');
    const type = field(156, 1) || '0';
    const body = data.subarray(offset + 512, offset + 512 + size);
    offset += 512 + Math.ceil(size / 512) * 512;
    if (type === 'L') {
      longName = body.toString('utf8').replace(/\0.*$/s, '');
      continue;
    }
    if (type === 'x') {
      const match = /(?:^|\n)\d+ path=([^\n]*)\n/.exec(body.toString('utf8'));
      paxPath = match?.[1] ?? null;
      continue;
    }
    if (type === 'g') continue;
    const prefix = field(345, 155);
    const name = paxPath ?? longName ?? (prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    longName = null;
    paxPath = null;
    if (type === '5') continue;
    if (type !== '0' && type !== '7') throw new TarballError(`${name}: only regular files are allowed (no links or devices)`);
    const path = name.replace(/^\.\//, '');
    if (path.startsWith('/') || path.split('/').includes('..')) throw new TarballError(`${name}: absolute paths and .. are not allowed`);
    total += size;
    if (total > maxBytes) throw new TarballError(`the source is larger than ${maxBytes} bytes`);
    files[path] = body.toString('utf8');
  }
  if (Object.keys(files).length === 0) throw new TarballError('the tarball holds no files');
  return files;
}
