export { type BoundPortal, IscsiPortal, type PortalOptions } from './portal.js';
export { LoginThrottle, type LoginThrottleOptions } from './throttle.js';
