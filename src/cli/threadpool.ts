// Decoding, encoding and opening video sources run on the libuv thread pool.
// A source that blocks on open would otherwise starve file I/O on the default
// four threads. This must run before anything uses the pool, so it is the
// first import of the entry point.
process.env.UV_THREADPOOL_SIZE ??= '16';
