import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const packageJson = require('../package.json') as { version: string };

/** endocap's version, from package.json; written into SoftwareVersions (0018,1020). */
export const SOFTWARE_VERSION: string = packageJson.version;
