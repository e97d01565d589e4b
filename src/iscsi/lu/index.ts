export {
  type BackingStore,
  FileBackingStore,
  type FileBackingStoreOptions,
  type FileOps,
} from './backing-store.js';
export { LogicalUnit, type LogicalUnitOptions, naaRegisteredExtended } from './logical-unit.js';
export {
  type PersistedPrState,
  PersistentReservations,
  type PrStore,
  PrType,
} from './persistent-reservations.js';
export { RangeLock } from './range-lock.js';
