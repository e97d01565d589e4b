export * from './chap.js';
export * from './login.js';
export * from './negotiate.js';
export * from './sendtargets.js';
export * from './text.js';
