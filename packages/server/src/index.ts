/**
 * @tslcc/server: the compile server. `tslcc serve` starts it; `startServer()` embeds it.
 *
 * @example
 * ```ts
 * const { url, close } = await startServer({ host: '127.0.0.1', port: 7655, token: 'secret' });
 * ```
 */
export { CompileServer, startServer, type ServerOptions } from './server.js';
export { Metrics } from './metrics.js';
export { Sandbox, badFlag } from './sandbox.js';
