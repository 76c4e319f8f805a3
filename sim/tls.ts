/**
 * The simulator's TLS key and self-signed certificate, so that it can serve
 * HTTPS like a real Rancher. Kubernetes clients such as helm (client-go) do not
 * send a bearer token over plain HTTP, so the kubeconfig must point at HTTPS.
 *
 * Node cannot make X.509 certificates, so the `openssl` command makes them.
 * They are kept in a folder (next to the state file) and reused while valid
 * and covering the wanted names; otherwise they are made again.
 */
import { execFileSync } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";

export interface TlsMaterial {
  /** PEM private key. */
  key: string;
  /** PEM self-signed certificate; also the CA a client must trust. */
  cert: string;
  /** Folder holding `key.pem` and `cert.pem`. */
  dir: string;
  /** Removes the folder if it was made only for this run (no state file). */
  dispose(): void;
}

const KEY_FILE = "key.pem";
const CERT_FILE = "cert.pem";
const VALID_DAYS = 365;
/** A certificate that expires sooner than this is made again. */
const RENEW_BEFORE_MS = 24 * 60 * 60 * 1000;

/** The names the certificate covers: loopback always, plus a specific listen address. */
export function tlsNames(listenHost: string): { ips: string[]; dns: string[] } {
  const ips = ["127.0.0.1", "::1"];
  const dns = ["localhost"];
  const host = listenHost.replace(/^\[|\]$/g, "");
  if (isIP(host) !== 0) {
    if (host !== "0.0.0.0" && host !== "::" && !ips.includes(host)) ips.push(host);
  } else if (host !== "" && !dns.includes(host.toLowerCase())) {
    dns.push(host.toLowerCase());
  }
  return { ips, dns };
}

function usable(dir: string, names: { ips: string[]; dns: string[] }, now: number): { key: string; cert: string } | null {
  const keyPath = join(dir, KEY_FILE);
  const certPath = join(dir, CERT_FILE);
  if (!existsSync(keyPath) || !existsSync(certPath)) return null;
  try {
    const key = readFileSync(keyPath, "utf8");
    const cert = readFileSync(certPath, "utf8");
    const x509 = new X509Certificate(cert);
    if (Date.parse(x509.validFrom) > now || Date.parse(x509.validTo) - RENEW_BEFORE_MS < now) return null;
    if (!names.ips.every((ip) => x509.checkIP(ip) !== undefined)) return null;
    if (!names.dns.every((name) => x509.checkHost(name, { wildcards: false }) !== undefined)) return null;
    if (!x509.checkPrivateKey(createPrivateKey(key))) return null;
    return { key, cert };
  } catch {
    return null;
  }
}

function opensslConfig(names: { ips: string[]; dns: string[] }): string {
  const san = [...names.ips.map((ip) => `IP:${ip}`), ...names.dns.map((name) => `DNS:${name}`)].join(", ");
  return [
    "[req]",
    "distinguished_name = dn",
    "x509_extensions = ext",
    "prompt = no",
    "[dn]",
    "O = Kumo",
    "CN = rancher-simulator",
    "[ext]",
    // Self-signed and its own CA: clients trust it through certificate-authority-data.
    "basicConstraints = critical, CA:TRUE",
    "keyUsage = critical, digitalSignature, keyCertSign",
    "extendedKeyUsage = serverAuth",
    `subjectAltName = ${san}`,
    "subjectKeyIdentifier = hash",
    "",
  ].join("\n");
}

function generate(dir: string, names: { ips: string[]; dns: string[] }): { key: string; cert: string } {
  mkdirSync(dirname(dir), { recursive: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const work = mkdtempSync(join(dir, ".new-"));
  try {
    const configPath = join(work, "openssl.cnf");
    const keyPath = join(work, KEY_FILE);
    const certPath = join(work, CERT_FILE);
    writeFileSync(configPath, opensslConfig(names));
    try {
      execFileSync(
        "openssl",
        ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-sha256", "-days", String(VALID_DAYS), "-config", configPath, "-keyout", keyPath, "-out", certPath],
        { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, OPENSSL_CONF: configPath } },
      );
    } catch (err) {
      const e = err as NodeJS.ErrnoException & { stderr?: Buffer };
      if (e.code === "ENOENT") {
        throw new Error("rancher simulator: the `openssl` command was not found; it is needed to make the simulator's TLS certificate (Debian/Ubuntu: apt-get install openssl)");
      }
      const detail = e.stderr?.toString("utf8").trim() ?? e.message;
      throw new Error(`rancher simulator: openssl could not make the TLS certificate: ${detail}`);
    }
    chmodSync(keyPath, 0o600);
    const key = readFileSync(keyPath, "utf8");
    const cert = readFileSync(certPath, "utf8");
    // Key first, then certificate: a reader that sees the new certificate also sees its key.
    renameSync(keyPath, join(dir, KEY_FILE));
    renameSync(certPath, join(dir, CERT_FILE));
    return { key, cert };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A key and self-signed certificate for `names`: reused from `dir` while
 * valid, otherwise made with openssl. With `dir` null a temporary folder is
 * used, removed by `dispose()`.
 *
 * @throws when openssl is missing or fails.
 */
export function ensureTlsMaterial(dir: string | null, names: { ips: string[]; dns: string[] }, now = Date.now()): TlsMaterial {
  const temporary = dir === null;
  const folder = dir ?? mkdtempSync(join(tmpdir(), "rancher-sim-tls-"));
  const dispose = (): void => {
    if (temporary) rmSync(folder, { recursive: true, force: true });
  };
  try {
    const found = usable(folder, names, now) ?? generate(folder, names);
    return { ...found, dir: folder, dispose };
  } catch (err) {
    dispose();
    throw err;
  }
}
