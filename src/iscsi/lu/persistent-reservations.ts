/** SPC-4 persistent reservation types (PERSISTENT RESERVE OUT TYPE field). */
export const PrType = {
  WRITE_EXCLUSIVE: 0x1,
  EXCLUSIVE_ACCESS: 0x3,
  WRITE_EXCLUSIVE_REGISTRANTS_ONLY: 0x5,
  EXCLUSIVE_ACCESS_REGISTRANTS_ONLY: 0x6,
  WRITE_EXCLUSIVE_ALL_REGISTRANTS: 0x7,
  EXCLUSIVE_ACCESS_ALL_REGISTRANTS: 0x8,
} as const;

/** True for the types whose every registrant is a reservation holder. */
export function isAllRegistrants(type: number): boolean {
  return type === PrType.WRITE_EXCLUSIVE_ALL_REGISTRANTS || type === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
}

/** True for the types that admit every registrant (registrants-only and all-registrants). */
export function admitsRegistrants(type: number): boolean {
  return type >= PrType.WRITE_EXCLUSIVE_REGISTRANTS_ONLY && type <= PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS;
}

/** True for the exclusive-access family, which also blocks reads of non-holders. */
export function isExclusiveAccess(type: number): boolean {
  return (
    type === PrType.EXCLUSIVE_ACCESS ||
    type === PrType.EXCLUSIVE_ACCESS_REGISTRANTS_ONLY ||
    type === PrType.EXCLUSIVE_ACCESS_ALL_REGISTRANTS
  );
}

/** True when `type` is one of the six SPC-4 reservation types. */
export function isValidPrType(type: number): boolean {
  return type === 1 || type === 3 || (type >= 5 && type <= 8);
}

/** JSON-safe persistent-reservation state of one LU, as handed to a PrStore (keys are 16 hex digits). */
export interface PersistedPrState {
  version: 1;
  generation: number;
  aptpl: boolean;
  registrations: { nexus: string; key: string }[];
  reservation?: { holder: string; type: number };
}

/**
 * Where a LU keeps its reservations across daemon restarts (APTPL). `save` is awaited before a PERSISTENT
 * RESERVE OUT that set or relies on APTPL reports GOOD.
 */
export interface PrStore {
  load(): PersistedPrState | undefined;
  save(state: PersistedPrState): Promise<void>;
}

/**
 * The persistent-reservation state of one logical unit, shared by every I_T nexus. Nexuses are named by
 * their initiator port ("iqn…,i,0x<isid>") so a registration survives reconnects of the same port.
 */
export class PersistentReservations {
  generation = 0;
  aptpl = false;
  /** Registered I_T nexus → reservation key, in registration order (READ KEYS lists them so). */
  readonly registrations = new Map<string, bigint>();
  reservation: { holder: string; type: number } | null = null;
  // Whether the store holds state that a later APTPL=0 change must overwrite.
  private persisted = false;

  constructor(private readonly store?: PrStore) {
    const saved = store?.load();
    if (saved?.aptpl) {
      this.generation = saved.generation >>> 0;
      this.aptpl = true;
      for (const r of saved.registrations) this.registrations.set(r.nexus, BigInt(`0x${r.key}`));
      if (saved.reservation && isValidPrType(saved.reservation.type)) {
        this.reservation = { holder: saved.reservation.holder, type: saved.reservation.type };
      }
      this.persisted = true;
    }
  }

  /** Whether APTPL can be honoured (a store was given). */
  get canPersist(): boolean {
    return this.store !== undefined;
  }

  /** Whether `nexus` holds a registration (any key). */
  isRegistered(nexus: string): boolean {
    return this.registrations.has(nexus);
  }

  /** Whether `nexus` holds the reservation (for all-registrants types, any registrant does). */
  isHolder(nexus: string): boolean {
    const r = this.reservation;
    if (!r) return false;
    return isAllRegistrants(r.type) ? this.registrations.has(nexus) : r.holder === nexus;
  }

  /**
   * Whether a command of the given kind from `nexus` conflicts with the current reservation (SPC-4 5.13.1
   * table: 'read' commands conflict only under exclusive-access types, 'write' under all).
   */
  conflicts(nexus: string, access: 'read' | 'write'): boolean {
    const r = this.reservation;
    if (!r || this.isHolder(nexus)) return false;
    if (admitsRegistrants(r.type) && this.registrations.has(nexus)) return false;
    return access === 'write' || isExclusiveAccess(r.type);
  }

  /** Drops `nexus`'s registration, releasing a reservation it alone held; returns true if one was released. */
  unregister(nexus: string): boolean {
    this.registrations.delete(nexus);
    const r = this.reservation;
    if (!r) return false;
    if (isAllRegistrants(r.type) ? this.registrations.size === 0 : r.holder === nexus) {
      this.reservation = null;
      return true;
    }
    return false;
  }

  /** Removes every registration and the reservation. */
  clear(): void {
    this.registrations.clear();
    this.reservation = null;
  }

  /** Serializable snapshot. */
  snapshot(): PersistedPrState {
    return {
      version: 1,
      generation: this.generation,
      aptpl: this.aptpl,
      registrations: [...this.registrations].map(([nexus, key]) => ({
        nexus,
        key: key.toString(16).padStart(16, '0'),
      })),
      ...(this.reservation ? { reservation: { ...this.reservation } } : {}),
    };
  }

  /** Saves the state when APTPL is (or was) in force, so a restart sees exactly what initiators were told. */
  async commit(): Promise<void> {
    if (!this.store || (!this.aptpl && !this.persisted)) return;
    await this.store.save(this.snapshot());
    this.persisted = this.aptpl;
  }
}
