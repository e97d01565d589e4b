/**
 * The TCP side of the target: one listening socket per portal address, each accepted socket wrapped in a
 * transport and handed to a new IscsiConnection. Connection counts are bounded in total and per remote
 * address, so one host cannot exhaust the daemon.
 */
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import { IscsiConnection } from '../session/connection.js';
import type { IscsiTarget } from '../session/target.js';
import type { ConnectionTransport, IscsiLogger } from '../session/types.js';

export interface PortalOptions {
  /** IPv4/IPv6 literals (or host names) to listen on; '0.0.0.0' and '::' mean every address. */
  addresses: readonly string[];
  port: number;
  target: IscsiTarget;
  logger?: IscsiLogger;
  maxConnections?: number;
  maxConnectionsPerAddress?: number;
  /** Socket write buffer before write() reports backpressure; Data-In batches are large, so above Node's 16 KiB. */
  writeHighWaterMark?: number;
}

/** A bound listening socket. */
export interface BoundPortal {
  address: string;
  port: number;
  family: string;
}

const IPV4_WILDCARD = '0.0.0.0';
/** How long an ended socket may wait for the peer to close its side. */
const END_GRACE_MS = 5000;

/** Adapts a net.Socket to the connection's transport interface. */
class SocketTransport implements ConnectionTransport {
  constructor(private readonly socket: Socket) {}

  write(parts: readonly Buffer[]): boolean {
    const s = this.socket;
    if (s.destroyed) return true;
    if (parts.length === 1) return s.write(parts[0]!);
    s.cork();
    for (const p of parts) s.write(p);
    // uncork flushes the corked buffers with one writev.
    s.uncork();
    return !s.writableNeedDrain;
  }

  get bufferedBytes(): number {
    return this.socket.writableLength;
  }

  pause(): void {
    this.socket.pause();
  }

  resume(): void {
    this.socket.resume();
  }

  end(): void {
    const s = this.socket;
    s.end();
    // The peer's FIN is only seen by reading; the connection ignores anything else that arrives.
    s.resume();
    // A peer that never closes its side must not keep the descriptor forever.
    setTimeout(() => s.destroy(), END_GRACE_MS).unref();
  }

  destroy(): void {
    this.socket.destroy();
  }
}

/** The TCP listeners of one iSCSI target. */
export class IscsiPortal {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly perAddress = new Map<string, number>();
  private readonly log: IscsiLogger;
  private readonly maxConnections: number;
  private readonly maxPerAddress: number;
  private refused = 0;

  constructor(private readonly opts: PortalOptions) {
    this.log = opts.logger ?? opts.target.logger;
    this.maxConnections = opts.maxConnections ?? 1024;
    this.maxPerAddress = opts.maxConnectionsPerAddress ?? 64;
  }

  /** Number of open TCP connections. */
  get connectionCount(): number {
    return this.sockets.size;
  }

  /** Starts listening on every address; rejects (closing what was opened) if any address fails. */
  async listen(): Promise<BoundPortal[]> {
    const bound: BoundPortal[] = [];
    const v4Wildcard = this.opts.addresses.includes(IPV4_WILDCARD);
    try {
      for (const address of this.opts.addresses) {
        const server = createServer({
          noDelay: true,
          keepAlive: true,
          keepAliveInitialDelay: 30_000,
          highWaterMark: this.opts.writeHighWaterMark ?? 1024 * 1024,
        });
        server.on('connection', (s) => this.accept(s));
        server.on('error', (err) => this.log.warn({ err, address }, 'iSCSI portal error'));
        await new Promise<void>((resolve, reject) => {
          const onError = (err: Error) => reject(err);
          server.once('error', onError);
          // '::' next to '0.0.0.0' must not also claim IPv4, or the second bind would fail.
          const ipv6Only = isIPv6(address) && v4Wildcard;
          server.listen({ host: address, port: this.opts.port, ipv6Only }, () => {
            server.off('error', onError);
            resolve();
          });
        });
        this.servers.push(server);
        const a = server.address();
        if (a && typeof a === 'object') bound.push({ address: a.address, port: a.port, family: a.family });
      }
    } catch (err) {
      await this.closeServers();
      throw err;
    }
    this.opts.target.setPortals(
      this.opts.addresses.map((address, i) => ({
        address,
        port: bound[i]?.port ?? this.opts.port,
        portalGroupTag: this.opts.target.portalGroupTag,
      })),
    );
    return bound;
  }

  /** Stops listening and closes every connection (sessions are asked to log out and drained first). */
  async close(): Promise<void> {
    const servers = this.closeServers();
    await this.opts.target.shutdown();
    for (const s of this.sockets) s.destroy();
    await servers;
  }

  private closeServers(): Promise<void> {
    const all = this.servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    return Promise.all(all).then(() => undefined);
  }

  private accept(socket: Socket): void {
    const remote = socket.remoteAddress ?? 'unknown';
    const count = this.perAddress.get(remote) ?? 0;
    if (this.opts.target.isStopping) {
      socket.destroy();
      return;
    }
    if (this.sockets.size >= this.maxConnections || count >= this.maxPerAddress) {
      // One line per refusal would let a flood fill the log; a few per thousand show what happens.
      if (this.refused++ % 1000 < 20) {
        this.log.warn(
          { remote, total: this.sockets.size, fromAddress: count },
          'iSCSI connection refused: too many connections',
        );
      }
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    this.perAddress.set(remote, count + 1);
    socket.setNoDelay(true);
    const conn = new IscsiConnection(this.opts.target, new SocketTransport(socket), {
      remoteAddress: remote,
      remotePort: socket.remotePort ?? 0,
      localAddress: socket.localAddress ?? '',
      localPort: socket.localPort ?? this.opts.port,
    });
    socket.on('data', (chunk: Buffer) => conn.receive(chunk));
    socket.on('drain', () => conn.drained());
    socket.on('error', (err) => this.log.debug({ err: err.message, remote }, 'iSCSI socket error'));
    socket.on('close', () => {
      this.sockets.delete(socket);
      const n = (this.perAddress.get(remote) ?? 1) - 1;
      if (n <= 0) this.perAddress.delete(remote);
      else this.perAddress.set(remote, n);
      conn.transportClosed();
    });
  }
}
