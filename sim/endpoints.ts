/**
 * Each downstream cluster's own API endpoint: a TCP listener per cluster on
 * the simulator's host that speaks HTTPS with the simulator's certificate and
 * serves that cluster's Kubernetes API at its root, so `GET /version` there is
 * answered as `GET /k8s/clusters/<id>/version` through the Rancher proxy.
 *
 * To stay cheap with thousands of clusters, a cluster's listener is a plain
 * `net.Server`; its connections are wrapped in TLS with one shared secure
 * context and handed to one shared (not listening) HTTP server. Listeners
 * open lazily (the first time a cluster is rendered), refuse connections while
 * the cluster's agent is disconnected, and close when it is purged, on reset
 * and on close.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from "node:http";
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from "node:net";
import { createSecureContext, TLSSocket, type SecureContext } from "node:tls";

/** Whether a cluster's endpoint should accept connections: "open", refuse them: "closed", or go for good: "gone". */
export type EndpointWanted = "open" | "closed" | "gone";

/** Options for {@link ClusterEndpoints}. */
export interface ClusterEndpointsOptions {
  /** Address to listen on (the simulator's). */
  host: string;
  /** PEM key and certificate the listeners present. */
  key: string;
  cert: string;
  /** What a cluster's listener should be now; asked before every change. */
  wanted: (clusterId: string) => EndpointWanted;
  /** Handles a request whose URL was rewritten to `/k8s/clusters/<id>/…`. */
  onRequest: (req: IncomingMessage, res: ServerResponse) => void;
}

interface Endpoint {
  clusterId: string;
  server: NetServer;
  /** The port it has listened on; 0 before the first listen. */
  port: number;
  listening: boolean;
  /** Raw connections it accepted, destroyed when it closes. */
  sockets: Set<Socket>;
  /** Its changes, one after another. */
  queue: Promise<void>;
}

/** The URL a request on a cluster's own endpoint is served under through the proxy. */
export function proxiedUrl(clusterId: string, url: string | undefined): string {
  const path = url === undefined || url === "" ? "/" : url.startsWith("/") ? url : `/${url}`;
  return `/k8s/clusters/${encodeURIComponent(clusterId)}${path}`;
}

/** The clusters' own HTTPS endpoints; see the module comment. */
export class ClusterEndpoints {
  private readonly byCluster = new Map<string, Endpoint>();
  private readonly context: SecureContext;
  private readonly http: HttpServer;
  /** Which cluster a TLS connection came in for. */
  private readonly owner = new WeakMap<object, string>();
  private readonly pending = new Set<Promise<void>>();
  private readonly urlHost: string;
  private closed = false;

  constructor(private readonly opts: ClusterEndpointsOptions) {
    this.context = createSecureContext({ key: opts.key, cert: opts.cert });
    this.http = createHttpServer((req, res) => {
      const clusterId = this.owner.get(req.socket);
      if (clusterId === undefined) {
        res.destroy();
        return;
      }
      req.url = proxiedUrl(clusterId, req.url);
      opts.onRequest(req, res);
    });
    this.http.on("clientError", (err: NodeJS.ErrnoException, socket) => {
      // A malformed request gets a 400; a failed TLS handshake has nothing to answer on.
      if (socket.writable && (err.code ?? "").startsWith("HPE_")) socket.end("HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n");
      else socket.destroy();
    });
    const host = opts.host;
    this.urlHost = host === "0.0.0.0" || host === "::" || host === "" ? "127.0.0.1" : host.includes(":") ? `[${host}]` : host;
  }

  /** `https://<host>:<port>` of the cluster's endpoint, or undefined before {@link ensure} gave it one. */
  url(clusterId: string): string | undefined {
    const endpoint = this.byCluster.get(clusterId);
    return endpoint === undefined || endpoint.port === 0 ? undefined : `https://${this.urlHost}:${endpoint.port}`;
  }

  /** The port of the cluster's endpoint (0 before it has one), and whether it accepts connections now. */
  state(clusterId: string): { port: number; listening: boolean } {
    const endpoint = this.byCluster.get(clusterId);
    return { port: endpoint?.port ?? 0, listening: endpoint?.listening ?? false };
  }

  /** Gives every one of these clusters that has none an endpoint (open, or closed while it should refuse), and waits for it. */
  async ensure(clusterIds: Iterable<string>): Promise<void> {
    if (this.closed) return;
    const waits: Promise<void>[] = [];
    for (const id of clusterIds) {
      if (this.byCluster.has(id)) continue;
      waits.push(this.settle(this.create(id)));
    }
    if (waits.length > 0) await Promise.all(waits);
  }

  /** Opens or closes the cluster's endpoint to match what it should be now (after a fault changed). */
  sync(clusterId: string): Promise<void> {
    const endpoint = this.byCluster.get(clusterId);
    return endpoint === undefined ? Promise.resolve() : this.settle(endpoint);
  }

  /** Closes the endpoints of clusters that are not in `live` (purged, or all after a reset). */
  prune(live: ReadonlySet<string>): void {
    for (const [id, endpoint] of this.byCluster) {
      if (!live.has(id)) void this.settle(endpoint);
    }
  }

  /** Resolves once every change started so far is done. */
  async flush(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  /** Closes every endpoint and refuses to open more; resolves when all are closed. */
  async close(): Promise<void> {
    this.closed = true;
    for (const endpoint of this.byCluster.values()) void this.settle(endpoint);
    await this.flush();
  }

  private create(clusterId: string): Endpoint {
    const endpoint: Endpoint = { clusterId, server: createNetServer(), port: 0, listening: false, sockets: new Set(), queue: Promise.resolve() };
    endpoint.server.on("connection", (raw: Socket) => this.accept(endpoint, raw));
    this.byCluster.set(clusterId, endpoint);
    return endpoint;
  }

  private accept(endpoint: Endpoint, raw: Socket): void {
    if (!endpoint.listening) {
      raw.destroy();
      return;
    }
    endpoint.sockets.add(raw);
    raw.on("close", () => endpoint.sockets.delete(raw));
    // Errors reach the TLS socket (and the HTTP server's clientError); this keeps a late one from being unhandled.
    raw.on("error", () => raw.destroy());
    const tls = new TLSSocket(raw, { isServer: true, secureContext: this.context, ALPNProtocols: ["http/1.1"] });
    this.owner.set(tls, endpoint.clusterId);
    this.http.emit("connection", tls);
  }

  /** Queues bringing the endpoint to what it should be now. */
  private settle(endpoint: Endpoint): Promise<void> {
    const run = endpoint.queue.then(() => this.apply(endpoint));
    endpoint.queue = run.catch(() => undefined);
    const tracked = run.catch((err: unknown) => {
      console.error(`rancher simulator: the API endpoint of cluster ${endpoint.clusterId} could not be changed: ${(err as Error).message}`);
    });
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
    return tracked;
  }

  private async apply(endpoint: Endpoint): Promise<void> {
    const wanted = this.closed ? "gone" : this.opts.wanted(endpoint.clusterId);
    if (wanted === "gone") {
      if (this.byCluster.get(endpoint.clusterId) === endpoint) this.byCluster.delete(endpoint.clusterId);
      await this.stop(endpoint);
      return;
    }
    if (endpoint.port === 0) {
      // The first listen picks the port apiEndpoint names from then on, also while the endpoint refuses.
      try {
        await this.listen(endpoint, 0);
      } catch (err) {
        // Forgotten, so the next ensure() tries again (e.g. once file descriptors are free).
        if (this.byCluster.get(endpoint.clusterId) === endpoint) this.byCluster.delete(endpoint.clusterId);
        throw err;
      }
      if (wanted === "closed") await this.stop(endpoint);
      return;
    }
    if (wanted === "open" && !endpoint.listening) {
      try {
        await this.listen(endpoint, endpoint.port);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
        // Somebody took the port meanwhile: a new one, as a cluster whose address changed.
        await this.listen(endpoint, 0);
      }
    } else if (wanted === "closed" && endpoint.listening) {
      await this.stop(endpoint);
    }
  }

  private listen(endpoint: Endpoint, port: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      endpoint.server.once("error", onError);
      endpoint.server.listen(port, this.opts.host, () => {
        endpoint.server.off("error", onError);
        endpoint.port = (endpoint.server.address() as AddressInfo).port;
        endpoint.listening = true;
        resolve();
      });
    });
  }

  /** Stops accepting (new connections are refused) and drops the open ones. */
  private stop(endpoint: Endpoint): Promise<void> {
    endpoint.listening = false;
    for (const socket of endpoint.sockets) socket.destroy();
    endpoint.sockets.clear();
    if (!endpoint.server.listening) return Promise.resolve();
    return new Promise<void>((resolve) => endpoint.server.close(() => resolve()));
  }
}
