/**
 * The API reference page's script: Scalar's standalone browser build, pinned to an exact version
 * in package.json (devDependency `@scalar/api-reference`) and served from our own origin as a
 * Workers static asset. scripts/build-assets.ts (vendor-assets.ts) copies it into build/assets/ before `wrangler dev`,
 * `wrangler deploy` and the edge tests, and refuses to run if the installed version is not this one.
 */
export const SCALAR_VERSION = "1.76.0";
/** Where the page loads it from; the version in the name makes it safe to cache for ever. */
export const SCALAR_SCRIPT_PATH = `/vendor/scalar-api-reference-${SCALAR_VERSION}.js`;
