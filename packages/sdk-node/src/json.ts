/**
 * JSON read the way the Python verifier reads a decision token's header and claims
 * (agentfirewall/tokens.py, `_json_object`), so that both SDKs accept the same texts:
 *
 * - an object member may appear once: `{"alg": "none", "alg": "ES256"}` is refused, not
 *   read as its last member (JSON.parse) or its first (some other parser);
 * - a number written with a fraction or an exponent (`1.0`, `1e9`) stays a `JsonFraction`,
 *   which no time claim may be (Python reads it as a float, never an int);
 * - an integer of more than 4,300 digits is refused (Python's limit on reading an int);
 * - nesting deeper than 100 is refused (Python's stops at its recursion limit, about 1,000:
 *   what is refused there is refused here too; no token the server signs nests at all).
 *
 * Objects have no prototype, so a member named `__proto__` or `constructor` is data.
 * Anything else is RFC 8259, as Python's `json` and JSON.parse read it. Pure functions.
 */

const MAX_DEPTH = 100;
const MAX_INTEGER_DIGITS = 4300;
const NUMBER = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;
const HEX4 = /^[0-9a-fA-F]{4}$/;
const ESCAPES: Readonly<Record<string, string>> = {
  '"': '"',
  "\\": "\\",
  "/": "/",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
};

/** A number written with a fraction or an exponent: not an integer, whatever its value. */
export class JsonFraction {
  constructor(readonly value: number) {}
}

export type StrictJson = string | number | boolean | null | JsonFraction | StrictJson[] | StrictObject;
export type StrictObject = { [member: string]: StrictJson };

/** `text` as one JSON value; a SyntaxError for anything the rules above refuse. */
export function parseStrictJson(text: string): StrictJson {
  const reader = new Reader(text);
  const value = reader.value(0);
  reader.space();
  if (reader.at < text.length) reader.fail("extra data");
  return value;
}

/** The member `name` of `object` when it has one of its own, else `undefined`. */
export function member(object: StrictObject, name: string): StrictJson | undefined {
  return Object.hasOwn(object, name) ? object[name] : undefined;
}

class Reader {
  at = 0;

  constructor(readonly text: string) {}

  fail(what: string): never {
    throw new SyntaxError(`not JSON: ${what} at character ${this.at}`);
  }

  space(): void {
    for (let c = this.text[this.at]; c === " " || c === "\t" || c === "\n" || c === "\r"; c = this.text[this.at]) {
      this.at += 1;
    }
  }

  value(depth: number): StrictJson {
    this.space();
    const c = this.text[this.at];
    if (c === "{" || c === "[") {
      if (depth >= MAX_DEPTH) this.fail(`nesting deeper than ${MAX_DEPTH}`);
      return c === "{" ? this.object(depth + 1) : this.array(depth + 1);
    }
    if (c === '"') return this.string();
    for (const [word, meaning] of [
      ["true", true],
      ["false", false],
      ["null", null],
    ] as const) {
      if (this.text.startsWith(word, this.at)) {
        this.at += word.length;
        return meaning;
      }
    }
    return this.number();
  }

  object(depth: number): StrictObject {
    const found: StrictObject = Object.create(null) as StrictObject;
    this.at += 1;
    this.space();
    if (this.text[this.at] === "}") {
      this.at += 1;
      return found;
    }
    for (;;) {
      this.space();
      if (this.text[this.at] !== '"') this.fail("expected a member name");
      const name = this.string();
      this.space();
      if (this.text[this.at] !== ":") this.fail("expected `:`");
      this.at += 1;
      const value = this.value(depth);
      if (Object.hasOwn(found, name)) this.fail(`member \`${name.slice(0, 40)}\` appears twice`);
      Object.defineProperty(found, name, { value, enumerable: true, writable: true, configurable: true });
      if (this.separator("}")) return found;
    }
  }

  array(depth: number): StrictJson[] {
    const items: StrictJson[] = [];
    this.at += 1;
    this.space();
    if (this.text[this.at] === "]") {
      this.at += 1;
      return items;
    }
    for (;;) {
      items.push(this.value(depth));
      if (this.separator("]")) return items;
    }
  }

  /** After an item: true at the closing `end`, false after a comma. */
  separator(end: string): boolean {
    this.space();
    const c = this.text[this.at];
    if (c !== "," && c !== end) this.fail(`expected \`,\` or \`${end}\``);
    this.at += 1;
    return c === end;
  }

  string(): string {
    let out = "";
    let start = (this.at += 1);
    for (;;) {
      const code = this.text.charCodeAt(this.at);
      if (Number.isNaN(code)) this.fail("unterminated string");
      if (code < 0x20) this.fail("a control character in a string");
      if (code === 0x22) break;
      if (code !== 0x5c) {
        this.at += 1;
        continue;
      }
      out += this.text.slice(start, this.at);
      out += this.escape();
      start = this.at;
    }
    out += this.text.slice(start, this.at);
    this.at += 1;
    return out;
  }

  escape(): string {
    const kind = this.text[this.at + 1] ?? "";
    const simple = ESCAPES[kind];
    if (simple !== undefined) {
      this.at += 2;
      return simple;
    }
    const hex = this.text.slice(this.at + 2, this.at + 6);
    if (kind !== "u" || !HEX4.test(hex)) this.fail("a bad escape");
    this.at += 6;
    return String.fromCharCode(parseInt(hex, 16));
  }

  number(): number | JsonFraction {
    NUMBER.lastIndex = this.at;
    const found = NUMBER.exec(this.text);
    if (found === null) this.fail("expected a value");
    this.at += found[0].length;
    if (found[1] !== undefined || found[2] !== undefined) return new JsonFraction(Number(found[0]));
    if (found[0].replace("-", "").length > MAX_INTEGER_DIGITS) this.fail("an integer of too many digits");
    return Number(found[0]);
  }
}
