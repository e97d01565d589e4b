export { type BuiltinBackendOptions, BuiltinExportBackend } from './backend.js';
