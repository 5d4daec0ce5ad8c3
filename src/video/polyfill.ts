/**
 * Installs `Promise.withResolvers` where the runtime lacks it, as Node 20
 * does (it is built in from Node 22). node-av 6.1's `Demuxer.packets()`
 * calls it, and without it the packet generator yields nothing and raises no
 * error. Every module that imports node-av imports this module first.
 */
interface PromiseResolvers<T> {
  promise: Promise<T>;
  resolve: (value: T | PromiseLike<T>) => void;
  reject: (reason?: unknown) => void;
}

function withResolvers<T>(): PromiseResolvers<T> {
  let resolve: PromiseResolvers<T>['resolve'] = () => undefined;
  let reject: PromiseResolvers<T>['reject'] = () => undefined;
  const promise = new Promise<T>((resolvePromise, rejectPromise) => {
    resolve = resolvePromise;
    reject = rejectPromise;
  });
  return { promise, resolve, reject };
}

if (typeof (Promise as { withResolvers?: unknown }).withResolvers !== 'function') {
  Object.defineProperty(Promise, 'withResolvers', { value: withResolvers, writable: true, configurable: true });
}

export {};
