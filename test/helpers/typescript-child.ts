/**
 * Node arguments for a child process that runs a TypeScript fixture: the
 * loader the tests run with (tsx, from package.json's `tap.node-arg`) and
 * source maps, without tap's own hooks.
 */
export const typescriptChildArgs: readonly string[] = ['--import=tsx', '--enable-source-maps'];
