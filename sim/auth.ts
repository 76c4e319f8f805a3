/**
 * Token checks: the simulator's API token for everything, and the tokens
 * `generateKubeconfig` mints for the Kubernetes proxy. Minted tokens are
 * signed with the API token (HMAC), so they stay valid across restarts
 * without being stored.
 */
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { randomId } from "./state.js";

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

const MINTED_RE = /^(kubeconfig-user-[a-z0-9]{5}):([0-9a-f]{54})$/;

export class Tokens {
  private readonly expected: Buffer;

  constructor(private readonly token: string) {
    this.expected = digest(token);
  }

  private presented(header: string | undefined): string | null {
    if (header === undefined) return null;
    const match = /^(Bearer|Basic)\s+(\S+)\s*$/i.exec(header);
    if (!match) return null;
    const scheme = (match[1] ?? "").toLowerCase();
    const value = match[2] ?? "";
    return scheme === "basic" ? Buffer.from(value, "base64").toString("utf8") : value;
  }

  private isApiToken(presented: string): boolean {
    // Hashing first makes both sides the same length, which timingSafeEqual needs.
    return timingSafeEqual(digest(presented), this.expected);
  }

  private signature(user: string): string {
    return createHmac("sha256", this.token).update(user, "utf8").digest("hex").slice(0, 54);
  }

  /**
   * The v3 API: the API token as `Bearer <token>`, or as Basic `user:password`
   * because Rancher tokens (`token-xxxxx:secret`) are commonly sent that way.
   */
  authorizedV3(header: string | undefined): boolean {
    const presented = this.presented(header);
    return presented !== null && this.isApiToken(presented);
  }

  /** The Kubernetes proxy: the API token, or a token minted by generateKubeconfig. */
  authorizedKube(header: string | undefined): boolean {
    const presented = this.presented(header);
    if (presented === null) return false;
    if (this.isApiToken(presented)) return true;
    const minted = MINTED_RE.exec(presented);
    if (!minted) return false;
    return timingSafeEqual(Buffer.from(this.signature(minted[1] ?? ""), "utf8"), Buffer.from(minted[2] ?? "", "utf8"));
  }

  /** A fresh kubeconfig token, `kubeconfig-user-xxxxx:<secret>`, as Rancher mints one per generateKubeconfig call. */
  mintKubeconfigToken(): string {
    const user = `kubeconfig-user-${randomId(5)}`;
    return `${user}:${this.signature(user)}`;
  }
}
