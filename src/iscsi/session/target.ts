/**
 * One iSCSI target node as the sessions see it: its name, ACL and CHAP, portals, the live sessions (for
 * TSIH allocation, reinstatement and asynchronous events) and the SCSI target behind them. The export
 * backend updates the ACL; connections consult it at login and register themselves once logged in.
 */
import type { ChapCredentials } from '../../exports/types.js';
import type {
  InitiatorAccess,
  LoginPolicy,
  LoginResult,
  SendTargetsTarget,
  TargetParams,
  TargetPortal,
} from '../login/index.js';
import { nexusKey } from '../scsi/index.js';
import type { IscsiConnection } from './connection.js';
import {
  DEFAULT_SESSION_LIMITS,
  type IscsiLogger,
  type LoginThrottleLike,
  NULL_LOGGER,
  type ScsiExecutor,
  type SessionLimits,
} from './types.js';
import { TargetWarnLimiter } from './warn-limiter.js';

export interface IscsiTargetOptions {
  targetName: string;
  targetAlias?: string;
  /** Our one target portal group; default 1. */
  portalGroupTag?: number;
  scsi: ScsiExecutor;
  logger?: IscsiLogger;
  limits?: Partial<SessionLimits>;
  /** Our side of the login negotiation (digests allowed, burst sizes…). */
  loginParams?: Partial<TargetParams>;
  /** Slows down answers to repeated failed logins from one address. */
  throttle?: LoginThrottleLike;
}

const WILDCARDS = new Set(['0.0.0.0', '::', '']);

/** The iSCSI target: ACL, portals and the registry of live sessions. */
export class IscsiTarget {
  targetName: string;
  readonly targetAlias: string | undefined;
  readonly portalGroupTag: number;
  readonly scsi: ScsiExecutor;
  readonly logger: IscsiLogger;
  /** Target-wide cap on warning lines, shared by every connection. */
  readonly warnings: TargetWarnLimiter;
  readonly limits: Readonly<SessionLimits>;
  readonly loginParams: Partial<TargetParams> | undefined;
  readonly throttle: LoginThrottleLike | undefined;
  private access = new Map<string, InitiatorAccess>();
  private portals: TargetPortal[] = [];
  private readonly connections = new Set<IscsiConnection>();
  private readonly sessions = new Map<number, IscsiConnection>();
  private readonly nexusOwners = new Map<string, IscsiConnection>();
  private nextTsih = 1;
  private stopping = false;
  /** Bytes all connections hold (see SessionLimits.maxTargetPendingBytes), kept up to date incrementally. */
  private held = 0;
  private readonly budget: number;
  /** Low-water mark: connections waiting on the budget are woken when the total falls to this. */
  private readonly budgetLow: number;
  /** Connections held back by the target-wide budget (paused, or an R2T or command start deferred). */
  private readonly budgetWaiters = new Set<IscsiConnection>();

  constructor(opts: IscsiTargetOptions) {
    this.targetName = opts.targetName;
    this.targetAlias = opts.targetAlias;
    this.portalGroupTag = opts.portalGroupTag ?? 1;
    this.scsi = opts.scsi;
    this.logger = opts.logger ?? NULL_LOGGER;
    this.warnings = new TargetWarnLimiter(this.logger);
    this.limits = { ...DEFAULT_SESSION_LIMITS, ...opts.limits };
    this.budget = this.limits.maxTargetPendingBytes;
    this.budgetLow = Math.floor(this.budget / 2);
    this.loginParams = opts.loginParams;
    this.throttle = opts.throttle;
  }

  /**
   * Replaces the ACL: who may log in and with which CHAP secrets. Sessions of initiators that lost access
   * are asked to log out (and dropped after a grace period); those that regained it are left alone.
   */
  setAccess(entries: Iterable<readonly [string, InitiatorAccess]>): void {
    const next = new Map<string, InitiatorAccess>();
    for (const [iqn, a] of entries) next.set(iqn.toLowerCase(), { allowed: a.allowed, auth: a.auth });
    this.access = next;
    for (const c of this.connections) {
      const s = c.sessionInfo;
      if (s?.type !== 'Normal') continue;
      if (this.lookupInitiator(s.initiatorName)?.allowed) c.cancelRevocation();
      else c.revoke(this.limits.revokeGraceMs);
    }
  }

  /** The ACL verdict for an initiator (case-insensitive), or undefined when it is unknown. */
  lookupInitiator(iqn: string): InitiatorAccess | undefined {
    return this.access.get(iqn.toLowerCase());
  }

  /**
   * CHAP for a Discovery session: the initiator's own credentials when it has any, so a name that needs
   * CHAP to log in cannot be used to probe the target list without it.
   */
  discoveryAuth(iqn: string): ChapCredentials | null {
    const auth = this.lookupInitiator(iqn)?.auth ?? null;
    return auth?.in_user && auth.in_pass ? auth : null;
  }

  /** Sets the portals SendTargets reports (wildcard addresses stand for the address a connection came in on). */
  setPortals(portals: readonly TargetPortal[]): void {
    this.portals = [...portals];
  }

  /** Portals as seen from a connection to localAddress:localPort. */
  portalsFor(localAddress: string, localPort: number): TargetPortal[] {
    const local = localAddress.startsWith('::ffff:') ? localAddress.slice(7) : localAddress;
    if (this.portals.length === 0)
      return [{ address: local, port: localPort, portalGroupTag: this.portalGroupTag }];
    const seen = new Set<string>();
    const out: TargetPortal[] = [];
    for (const p of this.portals) {
      const address = WILDCARDS.has(p.address) ? local : p.address;
      const key = `${address}|${p.port}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ address, port: p.port, portalGroupTag: p.portalGroupTag });
    }
    return out;
  }

  /** SendTargets answer material for one initiator on one connection. */
  sendTargetsFor(initiator: string, localAddress: string, localPort: number): SendTargetsTarget[] {
    return [
      {
        name: this.targetName,
        portals: this.portalsFor(localAddress, localPort),
        visible: this.lookupInitiator(initiator)?.allowed === true,
      },
    ];
  }

  /** The LoginPolicy a connection's LoginHandler consults. */
  loginPolicy(): LoginPolicy {
    const policy: LoginPolicy = {
      targetName: this.targetName,
      portalGroupTag: this.portalGroupTag,
      lookupInitiator: (iqn) => this.lookupInitiator(iqn),
      discoveryAuth: (iqn) => this.discoveryAuth(iqn),
      allocateTsih: () => this.allocateTsih(),
      sessionExists: (name, isid, tsih) => {
        const s = this.sessions.get(tsih)?.sessionInfo;
        return !!s && s.initiatorName.toLowerCase() === name.toLowerCase() && s.isid.equals(isid);
      },
    };
    if (this.targetAlias !== undefined) policy.targetAlias = this.targetAlias;
    return policy;
  }

  /** True while the target refuses new connections (shutting down). */
  get isStopping(): boolean {
    return this.stopping;
  }

  /** Number of connections (logged in or not). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Live sessions (logged in), for inspection. */
  liveSessions(): IscsiConnection[] {
    return [...this.sessions.values()];
  }

  // ---- latency: polling after a response ----

  private hotUntil = 0;
  private spinning = false;
  private readonly spin = (): void => {
    if (performance.now() < this.hotUntil && !this.stopping) setImmediate(this.spin);
    else this.spinning = false;
  };

  /** True while the event loop is being kept polling after a response. */
  get polling(): boolean {
    return this.spinning;
  }

  /** Keeps the event loop polling (not sleeping) briefly after a response, when the next command is likely near. */
  stayHot(): void {
    const ms = this.limits.pollAfterResponseMs;
    if (ms <= 0) return;
    this.hotUntil = performance.now() + ms;
    if (!this.spinning) {
      this.spinning = true;
      setImmediate(this.spin);
    }
  }

  // ---- target-wide memory budget ----

  /** Bytes all connections hold right now (see SessionLimits.maxTargetPendingBytes). */
  get pendingBytes(): number {
    return this.held;
  }

  /**
   * Whether `bytes` more fit in the target-wide budget. Callers that hold nothing of the kind being
   * admitted go ahead regardless (one per connection), so a full budget never deadlocks.
   */
  budgetFits(bytes: number): boolean {
    return this.held + bytes <= this.budget;
  }

  /** Whether the total is over the budget (`stillHeld`: a connection already paused waits for the low-water mark). */
  overBudget(stillHeld: boolean): boolean {
    return this.held > (stillHeld ? this.budgetLow : this.budget);
  }

  /**
   * A connection's change of the bytes it holds (negative: released). O(1); on a release that leaves the
   * total at or under the low-water mark, the connections waiting on the budget are nudged.
   */
  charge(delta: number): void {
    this.held += delta;
    if (delta < 0 && this.held <= this.budgetLow && this.budgetWaiters.size > 0) this.wakeBudgetWaiters();
  }

  /**
   * Registers a connection held back by the budget. Without this nudge a paused connection would never see
   * another event of its own, and would stay paused for good.
   */
  waitForBudget(conn: IscsiConnection): void {
    if (!conn.isClosed) this.budgetWaiters.add(conn);
  }

  /** Connections currently waiting on the target-wide budget (for tests and inspection). */
  get budgetWaiterCount(): number {
    return this.budgetWaiters.size;
  }

  private wakeBudgetWaiters(): void {
    // budgetFreed() only schedules work, so nothing re-enters charge() while the set is walked.
    for (const c of this.budgetWaiters) c.budgetFreed();
    this.budgetWaiters.clear();
  }

  /** Called by a connection when it is created. */
  attach(conn: IscsiConnection): void {
    this.connections.add(conn);
  }

  /**
   * Called when a login completes: reinstates (closes) an older session of the same initiator port, takes
   * over a session whose TSIH the login named, and opens the I_T nexus of a Normal session.
   */
  sessionStarted(conn: IscsiConnection, result: LoginResult): void {
    const s = conn.sessionInfo!;
    const name = result.initiatorName.toLowerCase();
    for (const other of [...this.sessions.values()]) {
      const o = other.sessionInfo;
      if (!o || other === conn || o.type !== s.type) continue;
      const samePort = o.initiatorName.toLowerCase() === name && o.isid.equals(result.isid);
      if (samePort && (result.newSession || o.tsih === result.tsih)) {
        this.logger.info(
          { initiator: o.initiatorName, isid: o.isidHex, tsih: o.tsih },
          result.newSession
            ? 'session reinstated: closing the old one'
            : 'connection reinstated: closing the old one',
        );
        other.destroy('reinstated by a new login');
      }
    }
    this.sessions.set(result.tsih, conn);
    if (s.type === 'Normal') {
      const key = nexusKey(s.nexus);
      this.nexusOwners.set(key, conn);
      this.scsi.nexusOpened(s.nexus);
    }
  }

  /** Called once when a connection is gone. */
  detach(conn: IscsiConnection): void {
    this.connections.delete(conn);
    this.budgetWaiters.delete(conn);
    const s = conn.sessionInfo;
    if (!s) return;
    if (this.sessions.get(s.tsih) === conn) this.sessions.delete(s.tsih);
    if (s.type === 'Normal') {
      const key = nexusKey(s.nexus);
      // A reinstating session already owns the nexus: closing it here would wipe the new session's state.
      if (this.nexusOwners.get(key) === conn) {
        this.nexusOwners.delete(key);
        this.scsi.nexusClosed(s.nexus);
      }
    }
  }

  /** Tells the sessions of `initiator` that its LUN inventory changed (AsyncEvent 0, sense 3F/0E). */
  lunMapChanged(initiator: string): void {
    const name = initiator.toLowerCase();
    for (const c of this.sessions.values()) {
      const s = c.sessionInfo;
      if (s?.type === 'Normal' && s.initiatorName.toLowerCase() === name) c.notifyLunsChanged();
    }
  }

  /**
   * Stops accepting logins and closes every connection: sessions get a logout request, then their
   * executing commands are given up to drainTimeoutMs to finish before the sockets close.
   */
  async shutdown(): Promise<void> {
    this.stopping = true;
    await Promise.all([...this.connections].map((c) => c.shutdown()));
  }

  private allocateTsih(): number {
    for (let i = 0; i < 0xffff; i++) {
      const t = this.nextTsih;
      this.nextTsih = t >= 0xffff ? 1 : t + 1;
      if (!this.sessions.has(t)) return t;
    }
    return 0;
  }
}
