/**
 * The caller's arguments, checked once before anything is sent (the same rules as the
 * Python SDK's agentfirewall/client/_base.py): a mistake throws at once, names the
 * argument and says what to pass instead. Pure functions; the only input besides the
 * arguments is the environment the client reads its defaults from.
 *
 * - a wrong type (`apiKey: 42`, an id that is not a string, an options object that is a
 *   string, an option name that does not exist) is a TypeError, and so is a base URL
 *   that is not one;
 * - a number out of range is a RangeError;
 * - an API key that no key can be (empty, a space, a control character, a non-ASCII
 *   letter) is an AuthenticationError, whose message never shows the key.
 */
export declare const DEFAULT_BASE_URL = "http://localhost:3000/api";
/** What `value` is, for a message: `a number`, `an object`, `null`, `undefined`. */
export declare function kindOf(value: unknown): string;
/** The options object of `what` (absent: `{}`); an unknown name is a TypeError. */
export declare function optionsOf<T extends object>(value: T | undefined, what: string, known: readonly string[]): T;
/** The suggestion for a mistyped field name, or "" (for ActionSpecError messages). */
export declare function spellingHint(name: string, known: readonly string[]): string;
/** The key: surrounding whitespace dropped (a line break read from a file); never echoed. */
export declare function apiKeyOf(value: unknown): string;
/** The API root: an absolute http(s) URL without credentials, query, fragment or `/v1`,
 * and without a trailing slash. `key` is never shown, even when given as the URL. */
export declare function apiRootOf(value: unknown, key: string): string;
/** The `jwksUrl` option: an absolute http(s) URL without credentials (the keys are public:
 * nothing secret is sent), without a trailing slash. `key` is never shown. */
export declare function jwksUrlOf(value: unknown, key: string): string;
/** `value` when it is a number >= `min` (finite unless `infinite`; absent: `fallback`),
 * else a RangeError. */
export declare function seconds(name: string, value: unknown, fallback: number, min?: number, infinite?: boolean): number;
/** The id of an action as a caller must pass it: `result.action_request_id`. */
export declare function actionIdOf(value: unknown): string;
